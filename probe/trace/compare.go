package trace

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strconv"

	"github.com/synprobe/synprobe/rawsock/wire"
)

// Errors of Compare. A quote that cannot be compared at all says nothing
// of the path; the hop's other facts (its address, RTT) still hold.
var (
	// ErrShortQuote: the quote does not reach the TCP sequence number,
	// the least that ties it to our SYN.
	ErrShortQuote = errors.New("trace: quote too short to compare")
	// ErrNotOurs: the quote is not of our SYN: another IP version or
	// protocol, a fragment, or a header that is not an IP header.
	ErrNotOurs = errors.New("trace: quote is not of the SYN sent")
	// ErrSent: the SYN given as sent cannot be parsed (a caller's bug).
	ErrSent = errors.New("trace: the sent SYN is not a whole TCP/IP packet")
)

// Level is how much of the SYN a quote holds, and so which fields it can
// speak for.
type Level uint8

const (
	// LevelPorts: the IP header and the first 8 bytes of TCP (RFC 792's
	// minimum): addresses, ports, sequence number, and the IP header's
	// fields. A quote of this level is partial.
	LevelPorts Level = iota + 1
	// LevelFixed: also the 20-byte fixed TCP header (flags, window), but
	// not all of its options. Partial too.
	LevelFixed
	// LevelHeader: the whole TCP header, options included.
	LevelHeader
	// LevelWhole: the whole segment, so that its checksum can be checked.
	LevelWhole
)

// Change is one difference between the SYN sent and a quote of it.
type Change struct {
	Field string // e.g. "mss", "window", "dscp" (docs/trace.md lists them)
	Sent  string // the value sent, or "absent"
	Seen  string // the value quoted: "absent", "nop" (replaced by NOPs), "bad" (checksums), …
}

func (c Change) String() string { return c.Field + " " + c.Sent + "→" + c.Seen }

// Comparison is what one quote says of the SYN it quotes.
type Comparison struct {
	Len     int   // bytes of quote received
	Level   Level // how much of the SYN it holds
	Changes []Change
}

// Partial reports whether the quote stops before the end of the TCP
// header: nothing can be said of the fields it lacks.
func (c *Comparison) Partial() bool { return c.Level < LevelHeader }

// Covers reports whether the quote holds what field needs.
func (c *Comparison) Covers(field string) bool { return c.Level >= FieldLevel(field) }

// FieldLevel returns the quote level a field needs.
func FieldLevel(field string) Level {
	switch field {
	case "ack", "doff", "flags", "window", "urgent":
		return LevelFixed
	case "mss", "wscale", "sack-perm", "ts", "tsval", "tsecr", "options":
		return LevelHeader
	case "tcp-checksum":
		return LevelWhole
	}
	return LevelPorts
}

// Compare compares sent, the SYN as we sent it (IP header first), with
// quote, the packet an ICMP error quotes (IP header first, as received),
// and returns every difference but the TTL or hop limit, which every
// router lowers. quote is hostile input: Compare reads only what it
// holds, takes no length field on trust, and never panics.
//
// IPv4 header checksums and TCP checksums are not compared as values
// (every rewrite changes them) but checked against the quoted header or
// segment: "bad" when they do not match it.
func Compare(sent, quote []byte) (Comparison, error) {
	s, err := parseSent(sent)
	if err != nil {
		return Comparison{}, err
	}
	c := Comparison{Len: len(quote)}
	if len(quote) == 0 || quote[0]>>4 != s.version {
		return c, ErrNotOurs
	}
	var q view
	var qtcp []byte // TCP bytes quoted
	if s.version == 4 {
		if len(quote) < wire.IPv4MinimumSize {
			return c, ErrShortQuote
		}
		ip := wire.IPv4(quote)
		hl := ip.HeaderLength()
		switch {
		case hl < wire.IPv4MinimumSize:
			return c, ErrNotOurs
		case len(quote) < hl:
			return c, ErrShortQuote
		case ip.Protocol() != wire.ProtocolTCP || ip.FragmentOffset() != 0:
			return c, ErrNotOurs
		}
		q.ip = quote[:hl]
		qtcp = quote[hl:]
		if tl := int(ip.TotalLength()); tl >= hl && tl < len(quote) {
			qtcp = quote[hl:tl] // padding (RFC 4884) is not the segment
		}
	} else {
		if len(quote) < wire.IPv6MinimumSize {
			return c, ErrShortQuote
		}
		q.ip = quote[:wire.IPv6MinimumSize]
		qtcp = quote[wire.IPv6MinimumSize:]
		if pl := int(wire.IPv6(quote).PayloadLength()); pl < len(qtcp) {
			qtcp = qtcp[:pl]
		}
	}
	q.version = s.version
	c.compareIP(&s, &q)
	if q.version == 6 && wire.IPv6(q.ip).NextHeader() != wire.ProtocolTCP {
		// Extension headers inserted on the way: what follows them is
		// not compared.
		if len(qtcp) < 8 {
			return c, ErrShortQuote
		}
		c.Level = LevelPorts
		return c, nil
	}
	if len(qtcp) < 8 {
		return c, ErrShortQuote
	}
	q.tcp = qtcp
	c.compareTCP(&s, &q)
	return c, nil
}

// view is a parsed SYN, sent or quoted.
type view struct {
	version uint8
	ip      []byte // the IP header
	tcp     []byte // TCP header and payload (as much as quoted)
}

func parseSent(b []byte) (view, error) {
	var p wire.Packet
	if err := wire.ParseChecksums(b, &p, wire.ChecksumsNotReady); err != nil || p.Proto != wire.ProtocolTCP {
		return view{}, ErrSent
	}
	v := view{version: b[0] >> 4}
	if v.version == 4 {
		hl := wire.IPv4(b).HeaderLength()
		v.ip, v.tcp = b[:hl], b[hl:wire.IPv4(b).TotalLength()]
	} else {
		if wire.IPv6(b).NextHeader() != wire.ProtocolTCP {
			return view{}, ErrSent
		}
		v.ip, v.tcp = b[:wire.IPv6MinimumSize], b[wire.IPv6MinimumSize:wire.IPv6MinimumSize+int(wire.IPv6(b).PayloadLength())]
	}
	return v, nil
}

func (c *Comparison) add(field, sent, seen string) {
	if sent != seen {
		c.Changes = append(c.Changes, Change{field, sent, seen})
	}
}

func (c *Comparison) addUint(field string, sent, seen uint64) {
	if sent != seen {
		c.add(field, strconv.FormatUint(sent, 10), strconv.FormatUint(seen, 10))
	}
}

var ecnNames = [4]string{"not-ect", "ect1", "ect0", "ce"}

func setClear(b bool) string {
	if b {
		return "set"
	}
	return "clear"
}

func (c *Comparison) compareIP(s, q *view) {
	var stos, qtos uint8
	var ssrc, sdst, qsrc, qdst netip.Addr
	if s.version == 4 {
		si, qi := wire.IPv4(s.ip), wire.IPv4(q.ip)
		c.addUint("ihl", uint64(si.HeaderLength()), uint64(qi.HeaderLength()))
		stos, qtos = si.TOS(), qi.TOS()
		c.addUint("ip-length", uint64(si.TotalLength()), uint64(qi.TotalLength()))
		if si.ID() != 0 { // the kernel picks an ID for a raw packet's 0
			c.addUint("ip-id", uint64(si.ID()), uint64(qi.ID()))
		}
		c.add("df", setClear(si.DF()), setClear(qi.DF()))
		c.add("mf", setClear(si.MF()), setClear(qi.MF()))
		if wire.Checksum(q.ip, 0) != 0xffff {
			c.add("ip-checksum", "valid", "bad")
		}
		ssrc, sdst, qsrc, qdst = si.SourceAddress(), si.DestinationAddress(), qi.SourceAddress(), qi.DestinationAddress()
	} else {
		si, qi := wire.IPv6(s.ip), wire.IPv6(q.ip)
		stos, qtos = si.TrafficClass(), qi.TrafficClass()
		c.addUint("flow-label", uint64(si.FlowLabel()), uint64(qi.FlowLabel()))
		c.addUint("payload-length", uint64(si.PayloadLength()), uint64(qi.PayloadLength()))
		c.addUint("next-header", uint64(si.NextHeader()), uint64(qi.NextHeader()))
		ssrc, sdst, qsrc, qdst = si.SourceAddress(), si.DestinationAddress(), qi.SourceAddress(), qi.DestinationAddress()
	}
	c.addUint("dscp", uint64(stos>>2), uint64(qtos>>2))
	c.add("ecn", ecnNames[stos&3], ecnNames[qtos&3])
	c.add("src", ssrc.String(), qsrc.String())
	c.add("dst", sdst.String(), qdst.String())
}

func (c *Comparison) compareTCP(s, q *view) {
	st, qt := wire.TCP(s.tcp), wire.TCP(q.tcp)
	c.Level = LevelPorts
	c.addUint("sport", uint64(st.SrcPort()), uint64(qt.SrcPort()))
	c.addUint("dport", uint64(st.DstPort()), uint64(qt.DstPort()))
	c.addUint("seq", uint64(st.Seq()), uint64(qt.Seq()))
	if len(qt) < wire.TCPMinimumSize {
		return
	}
	c.Level = LevelFixed
	c.addUint("ack", uint64(st.Ack()), uint64(qt.Ack()))
	sdoff, qdoff := st.DataOffset(), qt.DataOffset()
	c.addUint("doff", uint64(sdoff), uint64(qdoff))
	c.add("flags", st.Flags().String(), qt.Flags().String())
	c.addUint("window", uint64(st.Window()), uint64(qt.Window()))
	c.addUint("urgent", uint64(st.UrgentPointer()), uint64(qt.UrgentPointer()))
	if qdoff < wire.TCPMinimumSize || qdoff > len(qt) {
		return // options cut short, or a data offset that lies
	}
	c.Level = LevelHeader
	c.compareOptions(s.tcp[wire.TCPMinimumSize:sdoff], q.tcp[wire.TCPMinimumSize:qdoff])
	if !c.wholeSegment(q) {
		return
	}
	c.Level = LevelWhole
	var src, dst netip.Addr
	if q.version == 4 {
		src, dst = wire.IPv4(q.ip).SourceAddress(), wire.IPv4(q.ip).DestinationAddress()
	} else {
		src, dst = wire.IPv6(q.ip).SourceAddress(), wire.IPv6(q.ip).DestinationAddress()
	}
	if len(qt) > 0xffff || wire.Checksum(qt, wire.PseudoHeaderChecksum(wire.ProtocolTCP, src, dst, uint16(len(qt)))) != 0xffff {
		c.add("tcp-checksum", "valid", "bad")
	}
}

// wholeSegment reports whether the quote holds the whole segment its IP
// header announces (q.tcp was cut to that length when the quote was
// longer).
func (c *Comparison) wholeSegment(q *view) bool {
	if q.version == 4 {
		ip := wire.IPv4(q.ip)
		return int(ip.TotalLength()) == len(q.ip)+len(q.tcp)
	}
	return int(wire.IPv6(q.ip).PayloadLength()) == len(q.tcp)
}

// option is one TCP option as found in an options area.
type option struct {
	at, n int // offset and length in the area; n 0: absent
	val   []byte
}

// options indexes the options a SYN negotiates, as Linux reads them
// (tcp_parse_options): it stops at EOL or at a length that runs past the
// end or is below 2; the last of a repeated kind wins; a known kind with
// the wrong length is ignored.
func options(b []byte) (mss, ws, sack, ts option) {
	for i := 0; i < len(b); {
		kind := b[i]
		switch kind {
		case wire.TCPOptionEOL:
			return
		case wire.TCPOptionNOP:
			i++
			continue
		}
		if i+1 >= len(b) {
			return
		}
		n := int(b[i+1])
		if n < 2 || n > len(b)-i {
			return
		}
		o := option{at: i, n: n, val: b[i+2 : i+n]}
		switch {
		case kind == wire.TCPOptionMSS && n == wire.TCPOptionMSSLength:
			mss = o
		case kind == wire.TCPOptionWS && n == wire.TCPOptionWSLength:
			ws = o
		case kind == wire.TCPOptionSACKPermitted && n == wire.TCPOptionSACKPermittedLength:
			sack = o
		case kind == wire.TCPOptionTS && n == wire.TCPOptionTSLength:
			ts = o
		}
		i += n
	}
	return
}

// gone says how an option sent at so is missing from the quoted area q:
// "nop" when NOPs fill its place (nftables' reset tcp option), else
// "absent".
func gone(so option, q []byte) string {
	if so.at+so.n > len(q) {
		return "absent"
	}
	for _, b := range q[so.at : so.at+so.n] {
		if b != wire.TCPOptionNOP {
			return "absent"
		}
	}
	return "nop"
}

func (c *Comparison) compareOptions(sb, qb []byte) {
	smss, sws, ssack, sts := options(sb)
	qmss, qws, qsack, qts := options(qb)
	n0 := len(c.Changes)
	value := func(field string, so, qo option, format func([]byte) string) {
		sv, qv := "absent", "absent"
		if so.n > 0 {
			sv = format(so.val)
		}
		switch {
		case qo.n > 0:
			qv = format(qo.val)
		case so.n > 0:
			qv = gone(so, qb)
		}
		c.add(field, sv, qv)
	}
	u16 := func(v []byte) string { return strconv.Itoa(int(binary.BigEndian.Uint16(v))) }
	u8 := func(v []byte) string { return strconv.Itoa(int(v[0])) }
	yes := func([]byte) string { return "yes" }
	value("mss", smss, qmss, u16)
	value("wscale", sws, qws, u8)
	value("sack-perm", ssack, qsack, yes)
	value("ts", sts, qts, yes)
	if sts.n > 0 && qts.n > 0 {
		c.addUint("tsval", uint64(binary.BigEndian.Uint32(sts.val)), uint64(binary.BigEndian.Uint32(qts.val)))
		c.addUint("tsecr", uint64(binary.BigEndian.Uint32(sts.val[4:])), uint64(binary.BigEndian.Uint32(qts.val[4:])))
	}
	if len(c.Changes) == n0 && string(sb) != string(qb) {
		// Nothing a SYN negotiates changed, yet the bytes did: an option
		// added, reordered or padded otherwise.
		c.add("options", hex.EncodeToString(sb), hex.EncodeToString(qb))
	}
}

// String returns the changes as text, "mss 1460→1200, window 64240→1024".
func (c *Comparison) String() string {
	s := ""
	for i, ch := range c.Changes {
		if i > 0 {
			s += ", "
		}
		s += ch.String()
	}
	if s == "" {
		s = fmt.Sprintf("no change (%d bytes)", c.Len)
	}
	return s
}

//go:build linux

package rawsock

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// TablePrefix starts the name of every nftables table synprobe creates:
// TablePrefix + "<pid>_<8 hex digits>".
const TablePrefix = "synprobe_"

// Netfilter values that golang.org/x/sys/unix does not (yet) define.
const (
	nftTableFlagOwner = 0x2 // NFT_TABLE_F_OWNER, Linux 5.12
	nftaTableUserdata = 0x6 // NFTA_TABLE_USERDATA, Linux 5.10
	nfDrop            = 0   // NF_DROP
	nfAccept          = 1   // NF_ACCEPT
	udataComment      = 0   // NFTNL_UDATA_TABLE_COMMENT: libnftnl's TLV for a table comment
	sizeofNfgenmsg    = 4   // struct nfgenmsg
)

const (
	guardChain = "out"           // the guard table's only chain
	nlTimeout  = 5 * time.Second // longest wait for the kernel's answer to one request
	nlBufSize  = 64 << 10        // more than one netlink dump part can hold
)

// staleTable matches the names of tables made by NewRSTGuard.
var staleTable = regexp.MustCompile(`^` + TablePrefix + `([0-9]+)_[0-9a-f]{8}$`)

// GuardConfig describes what an RSTGuard drops.
type GuardConfig struct {
	// PortLo and PortHi are this run's source ports, both included: the
	// guard drops TCP RSTs from these ports...
	PortLo, PortHi uint16
	// ...or, if set, from the ports of these ranges (a PortBlock's
	// Ranges), one rule each: never from the ports between them, which
	// other sockets hold...
	Ranges []PortRange
	// ...unless they carry this packet mark, which Config.Mark sets on
	// our own send sockets. It must not be zero.
	Mark uint32
	// NoOwner skips the owner flag and creates the ordinary table that
	// kernels older than 5.12 get. For tests.
	NoOwner bool
}

// RSTGuard keeps the kernel's automatic RSTs for our source ports off the
// wire. It is an nftables table in the inet family (IPv4 and IPv6) with an
// output-hook chain and one rule per port range:
//
//	meta l4proto tcp tcp flags & rst == rst tcp sport PORTLO-PORTHI meta mark != MARK counter drop
//
// The netlink socket that created the table stays open until Close. Where
// the kernel supports it (Linux 5.12) the table has the owner flag: the
// kernel deletes it when that socket closes, however the process ends,
// and no other process can change or delete it meanwhile.
//
// The methods may be called from any goroutine.
type RSTGuard struct {
	mu    sync.Mutex
	c     *nlConn // nil after Close
	name  string
	owned bool
	log   *dropLog // nil: Dropped reads the rules' counters
}

// NewRSTGuard creates the table in the calling thread's network namespace.
// It needs CAP_NET_ADMIN; without it the error wraps os.ErrPermission. If
// the kernel refuses the owner flag it creates an ordinary table instead
// (Owned reports which), which only Close or CleanupTables removes.
func NewRSTGuard(cfg GuardConfig) (*RSTGuard, error) {
	if len(cfg.Ranges) == 0 {
		cfg.Ranges = []PortRange{{cfg.PortLo, cfg.PortHi}}
	}
	if err := checkRanges(cfg.Ranges); err != nil {
		return nil, err
	}
	if cfg.Mark == 0 {
		return nil, errors.New("rawsock: the RST guard needs a non-zero packet mark")
	}
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("rawsock: %w", err)
	}
	name := fmt.Sprintf("%s%d_%08x", TablePrefix, os.Getpid(), binary.BigEndian.Uint32(rnd[:]))

	c, err := dialNetfilter()
	if err != nil {
		return nil, err
	}
	// The rules log what they drop to a group of our own, so that
	// Dropped needs no privilege; without nfnetlink_log, Dropped reads
	// the counters, which needs CAP_NET_ADMIN.
	var group uint16
	log, lerr := newDropLog()
	if lerr == nil {
		group = log.group
	}
	owned := !cfg.NoOwner
	err = c.batch(unix.NFPROTO_INET, guardMessages(name, cfg, owned, group)...)
	var ne *nftError
	if owned && errors.As(err, &ne) && ne.msgType == nftType(unix.NFT_MSG_NEWTABLE) &&
		(ne.errno == unix.EOPNOTSUPP || ne.errno == unix.EINVAL) {
		// Before Linux 5.12 the only table flag was "dormant".
		owned = false
		err = c.batch(unix.NFPROTO_INET, guardMessages(name, cfg, false, group)...)
	}
	if err != nil && log != nil && errors.As(err, &ne) && ne.msgType == nftType(unix.NFT_MSG_NEWRULE) {
		// The kernel has no "log" expression or logger for it: count
		// with the counters alone.
		log.Close()
		log, group = nil, 0
		err = c.batch(unix.NFPROTO_INET, guardMessages(name, cfg, owned, 0)...)
	}
	if err != nil {
		c.close()
		if log != nil {
			log.Close()
		}
		return nil, err
	}
	return &RSTGuard{c: c, name: name, owned: owned, log: log}, nil
}

// Owned reports whether the table has the owner flag, so that the kernel
// deletes it when the guard's socket closes, SIGKILL included.
func (g *RSTGuard) Owned() bool { return g.owned }

// Table returns the table's name; its family is inet.
func (g *RSTGuard) Table() string { return g.name }

// Dropped returns how many of the kernel's RSTs the guard has kept off
// the wire so far: the packets its rules logged to the guard's own
// nfnetlink_log group, which needs no privilege to read (the process may
// have dropped them all since NewRSTGuard). Where the kernel cannot log
// to a group it is the sum of the rules' counters, and reading them
// needs CAP_NET_ADMIN.
func (g *RSTGuard) Dropped() (packets uint64, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.c == nil {
		return 0, &net.OpError{Op: "nftables", Net: "rawsock", Err: net.ErrClosed}
	}
	if g.log != nil {
		return g.log.Count(), nil
	}
	return g.counters()
}

// counters returns the sum of the rules' packet counters. g.mu is held.
func (g *RSTGuard) counters() (packets uint64, err error) {
	found := false
	err = g.c.dump(unix.NFT_MSG_GETRULE, unix.NFPROTO_INET, func(w *nlWriter) {
		w.str(unix.NFTA_RULE_TABLE, g.name)
		w.str(unix.NFTA_RULE_CHAIN, guardChain)
	}, func(typ uint16, attrs []byte) error {
		if typ != unix.NFT_MSG_NEWRULE {
			return nil
		}
		n, ok, err := ruleCounter(attrs, g.name)
		if ok {
			packets += n
			found = true
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	if !found {
		return 0, fmt.Errorf("rawsock: nftables table %s has no counter rule", g.name)
	}
	return packets, nil
}

// Close deletes the table and closes the netlink sockets. An owned table
// goes with its socket, which the kernel deletes as the socket closes,
// without any privilege (the process may have dropped them all since
// NewRSTGuard); an ordinary one is deleted by a request, which needs
// CAP_NET_ADMIN. Further calls do nothing.
func (g *RSTGuard) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.c == nil {
		return nil
	}
	var err error
	if !g.owned {
		err = g.c.batch(unix.NFPROTO_INET, delTableMsg(g.name))
		if errors.Is(err, unix.ENOENT) {
			err = nil // somebody deleted it already (nft flush ruleset)
		}
	}
	g.c.close()
	g.c = nil
	if g.log != nil {
		g.log.Close()
	}
	return err
}

// CleanupTables deletes the tables that NewRSTGuard created without the
// owner flag in runs that have ended without Close (killed, or crashed),
// in the calling thread's network namespace, and returns their names. A
// table counts as left over when the process whose pid its name carries
// no longer runs; owned tables are skipped, since the kernel removes those
// itself. It needs CAP_NET_ADMIN.
//
// The pid is the one of the creating process's pid namespace: a run in
// another pid namespace that shares this network namespace may look dead.
func CleanupTables() (removed []string, err error) {
	c, err := dialNetfilter()
	if err != nil {
		return nil, err
	}
	defer c.close()
	var stale []string
	err = c.dump(unix.NFT_MSG_GETTABLE, unix.NFPROTO_INET, nil, func(typ uint16, attrs []byte) error {
		if typ != unix.NFT_MSG_NEWTABLE {
			return nil
		}
		name, flags, err := tableInfo(attrs)
		if err != nil || flags&nftTableFlagOwner != 0 {
			return err
		}
		m := staleTable.FindStringSubmatch(name)
		if m == nil {
			return nil
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil || pid == os.Getpid() || processAlive(pid) {
			return nil
		}
		stale = append(stale, name)
		return nil
	})
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, name := range stale {
		err := c.batch(unix.NFPROTO_INET, delTableMsg(name))
		switch {
		case err == nil:
			removed = append(removed, name)
		case errors.Is(err, unix.ENOENT): // a concurrent cleanup was faster
		default:
			errs = append(errs, err)
		}
	}
	return removed, errors.Join(errs...)
}

// processAlive reports whether pid runs; a zombie does not count.
func processAlive(pid int) bool {
	if err := unix.Kill(pid, 0); err != nil && err != unix.EPERM {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	// "pid (comm) state ..."; comm may itself contain ") ".
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z' && stat[i+2] != 'X'
	}
	return true
}

// guardMessages returns the batch that creates the guard's table, chain
// and rules; a non-zero group has the rules log what they drop to it.
func guardMessages(name string, cfg GuardConfig, owner bool, group uint16) []nftMsg {
	var flags uint32
	if owner {
		flags = nftTableFlagOwner
	}
	ranges := cfg.Ranges
	if len(ranges) == 0 {
		ranges = []PortRange{{cfg.PortLo, cfg.PortHi}}
	}
	comment := fmt.Sprintf("synprobe pid %d: drops the kernel's TCP RSTs from ports %s", os.Getpid(), FormatRanges(ranges))
	msgs := []nftMsg{
		newTableMsg(name, flags, comment),
		{typ: unix.NFT_MSG_NEWCHAIN, flags: unix.NLM_F_CREATE | unix.NLM_F_EXCL, attrs: func(w *nlWriter) {
			w.str(unix.NFTA_CHAIN_TABLE, name)
			w.str(unix.NFTA_CHAIN_NAME, guardChain)
			w.nest(unix.NFTA_CHAIN_HOOK)
			w.u32(unix.NFTA_HOOK_HOOKNUM, unix.NF_INET_LOCAL_OUT)
			w.u32(unix.NFTA_HOOK_PRIORITY, 0) // filter
			w.end()
			w.u32(unix.NFTA_CHAIN_POLICY, nfAccept)
			w.str(unix.NFTA_CHAIN_TYPE, "filter")
		}},
	}
	for _, r := range ranges {
		msgs = append(msgs, nftMsg{typ: unix.NFT_MSG_NEWRULE, flags: unix.NLM_F_CREATE | unix.NLM_F_APPEND, attrs: func(w *nlWriter) {
			w.str(unix.NFTA_RULE_TABLE, name)
			w.str(unix.NFTA_RULE_CHAIN, guardChain)
			w.nest(unix.NFTA_RULE_EXPRESSIONS)
			guardRule(w, r.Lo, r.Hi, cfg.Mark, group)
			w.end()
		}})
	}
	return msgs
}

// newTableMsg creates table name in the batch's family; comment, if not
// empty, is stored as nft's table comment.
func newTableMsg(name string, flags uint32, comment string) nftMsg {
	return nftMsg{typ: unix.NFT_MSG_NEWTABLE, flags: unix.NLM_F_CREATE | unix.NLM_F_EXCL, attrs: func(w *nlWriter) {
		w.str(unix.NFTA_TABLE_NAME, name)
		w.u32(unix.NFTA_TABLE_FLAGS, flags)
		if comment != "" {
			if len(comment) > 127 {
				comment = comment[:127]
			}
			// One TLV (type, length, value), the value NUL-terminated.
			ud := append([]byte{udataComment, byte(len(comment) + 1)}, comment...)
			w.attr(nftaTableUserdata, append(ud, 0))
		}
	}}
}

func delTableMsg(name string) nftMsg {
	return nftMsg{typ: unix.NFT_MSG_DELTABLE, attrs: func(w *nlWriter) {
		w.str(unix.NFTA_TABLE_NAME, name)
	}}
}

// guardRule writes the rule's expressions: each loads a value into
// register 1 or tests it; a failed test ends the rule for the packet.
//
//	meta l4proto tcp         meta load l4proto; cmp eq 6
//	tcp flags & rst == rst   payload load 1 byte at transport+13; bitwise & 0x04 ^ 0; cmp eq 0x04
//	tcp sport lo-hi          payload load 2 bytes at transport+0; range eq lo hi (big-endian)
//	meta mark != mark        meta load mark; cmp neq mark (host byte order)
//	log group G              log to nfnetlink_log group G, one message a packet (if group != 0)
//	counter drop             counter; immediate verdict NF_DROP
func guardRule(w *nlWriter, lo, hi uint16, mark uint32, group uint16) {
	const reg = unix.NFT_REG_1
	w.expr("meta", func() {
		w.u32(unix.NFTA_META_DREG, reg)
		w.u32(unix.NFTA_META_KEY, unix.NFT_META_L4PROTO)
	})
	w.expr("cmp", func() {
		w.u32(unix.NFTA_CMP_SREG, reg)
		w.u32(unix.NFTA_CMP_OP, unix.NFT_CMP_EQ)
		w.data(unix.NFTA_CMP_DATA, []byte{unix.IPPROTO_TCP})
	})
	w.expr("payload", func() {
		w.u32(unix.NFTA_PAYLOAD_DREG, reg)
		w.u32(unix.NFTA_PAYLOAD_BASE, unix.NFT_PAYLOAD_TRANSPORT_HEADER)
		w.u32(unix.NFTA_PAYLOAD_OFFSET, TCPFlagsOffset)
		w.u32(unix.NFTA_PAYLOAD_LEN, 1)
	})
	w.expr("bitwise", func() {
		w.u32(unix.NFTA_BITWISE_SREG, reg)
		w.u32(unix.NFTA_BITWISE_DREG, reg)
		w.u32(unix.NFTA_BITWISE_LEN, 1)
		w.data(unix.NFTA_BITWISE_MASK, []byte{byte(FlagRst)})
		w.data(unix.NFTA_BITWISE_XOR, []byte{0})
	})
	w.expr("cmp", func() {
		w.u32(unix.NFTA_CMP_SREG, reg)
		w.u32(unix.NFTA_CMP_OP, unix.NFT_CMP_EQ)
		w.data(unix.NFTA_CMP_DATA, []byte{byte(FlagRst)})
	})
	w.expr("payload", func() {
		w.u32(unix.NFTA_PAYLOAD_DREG, reg)
		w.u32(unix.NFTA_PAYLOAD_BASE, unix.NFT_PAYLOAD_TRANSPORT_HEADER)
		w.u32(unix.NFTA_PAYLOAD_OFFSET, TCPSrcPortOffset)
		w.u32(unix.NFTA_PAYLOAD_LEN, 2)
	})
	if lo == hi {
		w.expr("cmp", func() {
			w.u32(unix.NFTA_CMP_SREG, reg)
			w.u32(unix.NFTA_CMP_OP, unix.NFT_CMP_EQ)
			w.data(unix.NFTA_CMP_DATA, binary.BigEndian.AppendUint16(nil, lo))
		})
	} else {
		w.expr("range", func() {
			w.u32(unix.NFTA_RANGE_SREG, reg)
			w.u32(unix.NFTA_RANGE_OP, unix.NFT_RANGE_EQ)
			w.data(unix.NFTA_RANGE_FROM_DATA, binary.BigEndian.AppendUint16(nil, lo))
			w.data(unix.NFTA_RANGE_TO_DATA, binary.BigEndian.AppendUint16(nil, hi))
		})
	}
	w.expr("meta", func() {
		w.u32(unix.NFTA_META_DREG, reg)
		w.u32(unix.NFTA_META_KEY, unix.NFT_META_MARK)
	})
	w.expr("cmp", func() {
		w.u32(unix.NFTA_CMP_SREG, reg)
		w.u32(unix.NFTA_CMP_OP, unix.NFT_CMP_NEQ)
		w.data(unix.NFTA_CMP_DATA, binary.NativeEndian.AppendUint32(nil, mark))
	})
	if group != 0 {
		w.expr("log", func() {
			w.attr(unix.NFTA_LOG_GROUP, binary.BigEndian.AppendUint16(nil, group))
			w.attr(unix.NFTA_LOG_QTHRESHOLD, binary.BigEndian.AppendUint16(nil, 1))
		})
	}
	w.expr("counter", func() {
		w.u64(unix.NFTA_COUNTER_BYTES, 0)
		w.u64(unix.NFTA_COUNTER_PACKETS, 0)
	})
	w.expr("immediate", func() {
		w.u32(unix.NFTA_IMMEDIATE_DREG, unix.NFT_REG_VERDICT)
		w.nest(unix.NFTA_IMMEDIATE_DATA)
		w.nest(unix.NFTA_DATA_VERDICT)
		w.u32(unix.NFTA_VERDICT_CODE, nfDrop)
		w.end()
		w.end()
	})
}

// tableInfo reads the name and flags of a table message's attributes.
func tableInfo(attrs []byte) (name string, flags uint32, err error) {
	err = walkAttrs(attrs, func(typ uint16, data []byte) error {
		switch typ {
		case unix.NFTA_TABLE_NAME:
			name = cString(data)
		case unix.NFTA_TABLE_FLAGS:
			if len(data) >= 4 {
				flags = binary.BigEndian.Uint32(data)
			}
		}
		return nil
	})
	return name, flags, err
}

// ruleCounter finds the packet count of the counter expression in a rule
// message of table; ok is false if the rule has none or is another
// table's.
func ruleCounter(attrs []byte, table string) (packets uint64, ok bool, err error) {
	var exprs []byte
	var tbl string
	if err := walkAttrs(attrs, func(typ uint16, data []byte) error {
		switch typ {
		case unix.NFTA_RULE_TABLE:
			tbl = cString(data)
		case unix.NFTA_RULE_EXPRESSIONS:
			exprs = data
		}
		return nil
	}); err != nil || tbl != table {
		return 0, false, err
	}
	err = walkAttrs(exprs, func(typ uint16, elem []byte) error {
		if typ != unix.NFTA_LIST_ELEM {
			return nil
		}
		var name string
		var data []byte
		if err := walkAttrs(elem, func(typ uint16, d []byte) error {
			switch typ {
			case unix.NFTA_EXPR_NAME:
				name = cString(d)
			case unix.NFTA_EXPR_DATA:
				data = d
			}
			return nil
		}); err != nil || name != "counter" {
			return err
		}
		return walkAttrs(data, func(typ uint16, d []byte) error {
			if typ == unix.NFTA_COUNTER_PACKETS && len(d) == 8 {
				packets, ok = binary.BigEndian.Uint64(d), true
			}
			return nil
		})
	})
	return packets, ok, err
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// nlWriter appends netlink messages and attributes to b. Message and
// attribute headers are in host byte order, nftables' integer attributes
// in network byte order; every message and attribute is padded to 4 bytes
// (NLMSG_ALIGN, NLA_ALIGN), and an attribute's length leaves its own
// padding out.
type nlWriter struct {
	b     []byte
	msg   int   // offset of the open message
	nests []int // offsets of the open nested attributes
}

// begin starts a netfilter message: nlmsghdr and nfgenmsg. resID is in
// host byte order.
func (w *nlWriter) begin(typ, flags uint16, seq uint32, family uint8, resID uint16) {
	w.msg = len(w.b)
	w.b = binary.NativeEndian.AppendUint32(w.b, 0) // length, set by finish
	w.b = binary.NativeEndian.AppendUint16(w.b, typ)
	w.b = binary.NativeEndian.AppendUint16(w.b, flags)
	w.b = binary.NativeEndian.AppendUint32(w.b, seq)
	w.b = binary.NativeEndian.AppendUint32(w.b, 0) // port id: the kernel's
	w.b = append(w.b, family, unix.NFNETLINK_V0)
	w.b = binary.BigEndian.AppendUint16(w.b, resID)
}

// finish sets the length of the message begun last.
func (w *nlWriter) finish() {
	w.pad()
	binary.NativeEndian.PutUint32(w.b[w.msg:], uint32(len(w.b)-w.msg))
}

func (w *nlWriter) pad() {
	for len(w.b)%unix.NLA_ALIGNTO != 0 {
		w.b = append(w.b, 0)
	}
}

func (w *nlWriter) attr(typ uint16, data []byte) {
	w.b = binary.NativeEndian.AppendUint16(w.b, uint16(unix.NLA_HDRLEN+len(data)))
	w.b = binary.NativeEndian.AppendUint16(w.b, typ)
	w.b = append(w.b, data...)
	w.pad()
}

func (w *nlWriter) str(typ uint16, s string) {
	w.attr(typ, append([]byte(s), 0))
}

func (w *nlWriter) u32(typ uint16, v uint32) {
	w.attr(typ, binary.BigEndian.AppendUint32(nil, v))
}

func (w *nlWriter) u64(typ uint16, v uint64) {
	w.attr(typ, binary.BigEndian.AppendUint64(nil, v))
}

// nest opens a nested attribute; end closes it.
func (w *nlWriter) nest(typ uint16) {
	w.nests = append(w.nests, len(w.b))
	w.b = binary.NativeEndian.AppendUint16(w.b, 0)
	w.b = binary.NativeEndian.AppendUint16(w.b, typ|unix.NLA_F_NESTED)
}

func (w *nlWriter) end() {
	i := w.nests[len(w.nests)-1]
	w.nests = w.nests[:len(w.nests)-1]
	binary.NativeEndian.PutUint16(w.b[i:], uint16(len(w.b)-i))
}

// data writes an nft_data value: typ { NFTA_DATA_VALUE { v } }.
func (w *nlWriter) data(typ uint16, v []byte) {
	w.nest(typ)
	w.attr(unix.NFTA_DATA_VALUE, v)
	w.end()
}

// expr writes one element of a rule's expression list.
func (w *nlWriter) expr(name string, body func()) {
	w.nest(unix.NFTA_LIST_ELEM)
	w.str(unix.NFTA_EXPR_NAME, name)
	w.nest(unix.NFTA_EXPR_DATA)
	body()
	w.end()
	w.end()
}

// walkAttrs calls fn for each attribute in b, with the nested and
// byte-order flags cleared from its type.
func walkAttrs(b []byte, fn func(typ uint16, data []byte) error) error {
	for len(b) > 0 {
		if len(b) < unix.NLA_HDRLEN {
			return errNetlinkMalformed
		}
		l := int(binary.NativeEndian.Uint16(b))
		typ := binary.NativeEndian.Uint16(b[2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if l < unix.NLA_HDRLEN || l > len(b) {
			return errNetlinkMalformed
		}
		if err := fn(typ, b[unix.NLA_HDRLEN:l]); err != nil {
			return err
		}
		l = (l + unix.NLA_ALIGNTO - 1) &^ (unix.NLA_ALIGNTO - 1)
		if l > len(b) {
			l = len(b)
		}
		b = b[l:]
	}
	return nil
}

var errNetlinkMalformed = errors.New("rawsock: malformed netlink message")

// walkMsgs calls fn for each netlink message in b.
func walkMsgs(b []byte, fn func(h unix.NlMsghdr, body []byte) error) error {
	for len(b) > 0 {
		if len(b) < unix.NLMSG_HDRLEN {
			return errNetlinkMalformed
		}
		h := unix.NlMsghdr{
			Len:   binary.NativeEndian.Uint32(b),
			Type:  binary.NativeEndian.Uint16(b[4:]),
			Flags: binary.NativeEndian.Uint16(b[6:]),
			Seq:   binary.NativeEndian.Uint32(b[8:]),
			Pid:   binary.NativeEndian.Uint32(b[12:]),
		}
		if h.Len < unix.NLMSG_HDRLEN || int(h.Len) > len(b) {
			return errNetlinkMalformed
		}
		if err := fn(h, b[unix.NLMSG_HDRLEN:h.Len]); err != nil {
			return err
		}
		l := (int(h.Len) + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1)
		if l > len(b) {
			l = len(b)
		}
		b = b[l:]
	}
	return nil
}

// parseAck reads the body of an NLMSG_ERROR message: the error number (0
// for an acknowledgement) and the kernel's extended-ack text, if any.
func parseAck(h unix.NlMsghdr, body []byte) (errno unix.Errno, text string, err error) {
	if len(body) < unix.SizeofNlMsgerr {
		return 0, "", errNetlinkMalformed
	}
	code := int32(binary.NativeEndian.Uint32(body))
	errno = unix.Errno(-code)
	if h.Flags&unix.NLM_F_ACK_TLVS == 0 {
		return errno, "", nil
	}
	// The TLVs follow the quoted request: its header alone if capped.
	off := unix.SizeofNlMsgerr
	if h.Flags&unix.NLM_F_CAPPED == 0 {
		ql := int(binary.NativeEndian.Uint32(body[4:]))
		off = 4 + (ql+unix.NLMSG_ALIGNTO-1)&^(unix.NLMSG_ALIGNTO-1)
	}
	if off > len(body) {
		return errno, "", nil
	}
	_ = walkAttrs(body[off:], func(typ uint16, data []byte) error {
		if typ == unix.NLMSGERR_ATTR_MSG {
			text = cString(data)
		}
		return nil
	})
	return errno, text, nil
}

// nftMsg is one nftables request of a batch.
type nftMsg struct {
	typ   uint16 // NFT_MSG_*
	flags uint16 // besides NLM_F_REQUEST and NLM_F_ACK
	attrs func(w *nlWriter)
}

// encodeBatch frames msgs, numbered from seq+1, between a batch begin
// (seq) and a batch end (seq+len(msgs)+1) for the nftables subsystem.
// Each message asks for an acknowledgement.
func encodeBatch(seq uint32, family uint8, msgs []nftMsg) []byte {
	var w nlWriter
	w.begin(unix.NFNL_MSG_BATCH_BEGIN, unix.NLM_F_REQUEST, seq, unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES)
	w.finish()
	for i, m := range msgs {
		w.begin(nftType(m.typ), unix.NLM_F_REQUEST|unix.NLM_F_ACK|m.flags, seq+1+uint32(i), family, 0)
		if m.attrs != nil {
			m.attrs(&w)
		}
		w.finish()
	}
	w.begin(unix.NFNL_MSG_BATCH_END, unix.NLM_F_REQUEST, seq+1+uint32(len(msgs)), unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES)
	w.finish()
	return w.b
}

func nftType(msg uint16) uint16 { return unix.NFNL_SUBSYS_NFTABLES<<8 | msg }

// nftMsgNames name the message types in errors.
var nftMsgNames = map[uint16]string{
	unix.NFT_MSG_NEWTABLE: "NFT_MSG_NEWTABLE",
	unix.NFT_MSG_GETTABLE: "NFT_MSG_GETTABLE",
	unix.NFT_MSG_DELTABLE: "NFT_MSG_DELTABLE",
	unix.NFT_MSG_NEWCHAIN: "NFT_MSG_NEWCHAIN",
	unix.NFT_MSG_NEWRULE:  "NFT_MSG_NEWRULE",
	unix.NFT_MSG_GETRULE:  "NFT_MSG_GETRULE",
}

func nftMsgName(typ uint16) string {
	switch typ {
	case unix.NFNL_MSG_BATCH_BEGIN:
		return "NFNL_MSG_BATCH_BEGIN"
	case unix.NFNL_MSG_BATCH_END:
		return "NFNL_MSG_BATCH_END"
	}
	if typ>>8 == unix.NFNL_SUBSYS_NFTABLES {
		if s, ok := nftMsgNames[typ&0xff]; ok {
			return s
		}
	}
	return fmt.Sprintf("netlink message type %#x", typ)
}

// nftError is the kernel's answer to a failed request.
type nftError struct {
	msgType uint16 // netlink type of the failed message
	errno   unix.Errno
	text    string // extended ack
}

func (e *nftError) Error() string {
	if e.text == "" {
		return e.errno.Error()
	}
	return e.errno.Error() + " (" + e.text + ")"
}

func (e *nftError) Unwrap() error { return e.errno }

// nlConn is a NETLINK_NETFILTER socket. It is not safe for concurrent use.
type nlConn struct {
	fd  int
	seq uint32
	buf []byte
}

func dialNetfilter() (*nlConn, error) {
	// SOCK_CLOEXEC matters: a child that inherited the socket would keep
	// an owned table alive after we exit.
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, opError("socket", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, opError("bind", err)
	}
	// Error messages in the acknowledgements, without a copy of the
	// request. Both are optional.
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	tv := unix.NsecToTimeval(nlTimeout.Nanoseconds())
	for _, opt := range []int{unix.SO_RCVTIMEO, unix.SO_SNDTIMEO} {
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, opt, &tv); err != nil {
			unix.Close(fd)
			return nil, opError("setsockopt", err)
		}
	}
	return &nlConn{fd: fd, seq: uint32(time.Now().Unix()), buf: make([]byte, nlBufSize)}, nil
}

func (c *nlConn) close() { unix.Close(c.fd) }

// nextSeq reserves n sequence numbers and returns the first.
func (c *nlConn) nextSeq(n int) uint32 {
	s := c.seq
	c.seq += uint32(n)
	return s
}

func (c *nlConn) send(b []byte) error {
	for {
		err := unix.Sendto(c.fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return opError("sendto", err)
		}
		return nil
	}
}

// receive reads the kernel's messages with sequence numbers in [lo, hi]
// and passes them to fn until fn reports done; answers to earlier
// requests are skipped. It gives up after nlTimeout.
func (c *nlConn) receive(lo, hi uint32, fn func(h unix.NlMsghdr, body []byte) (done bool, err error)) error {
	deadline := time.Now().Add(nlTimeout)
	for {
		n, _, mflags, err := recvmsg(c.fd, c.buf, nil, 0, nil)
		switch {
		case err == unix.EINTR && time.Now().Before(deadline):
			continue
		case err == unix.EAGAIN || err == unix.EINTR:
			return opError("recvmsg", unix.ETIMEDOUT)
		case err != nil:
			return opError("recvmsg", err)
		case mflags&unix.MSG_TRUNC != 0:
			return opError("recvmsg", unix.EMSGSIZE)
		}
		done := false
		err = walkMsgs(c.buf[:n], func(h unix.NlMsghdr, body []byte) error {
			if done || h.Seq < lo || h.Seq > hi {
				return nil
			}
			var err error
			done, err = fn(h, body)
			return err
		})
		if err != nil || done {
			return err
		}
		if time.Now().After(deadline) {
			return opError("recvmsg", unix.ETIMEDOUT)
		}
	}
}

// batch sends msgs as one transaction and waits for every
// acknowledgement. The first failure is returned, naming its message.
func (c *nlConn) batch(family uint8, msgs ...nftMsg) error {
	seq := c.nextSeq(len(msgs) + 2)
	if err := c.send(encodeBatch(seq, family, msgs)); err != nil {
		return err
	}
	last := seq + uint32(len(msgs)) + 1
	var first *nftError
	acked := 0
	err := c.receive(seq, last, func(h unix.NlMsghdr, body []byte) (bool, error) {
		if h.Type != unix.NLMSG_ERROR {
			return false, nil
		}
		errno, text, err := parseAck(h, body)
		if err != nil {
			return true, err
		}
		typ := uint16(unix.NFNL_MSG_BATCH_BEGIN)
		switch i := h.Seq - seq; {
		case i == uint32(len(msgs))+1:
			typ = unix.NFNL_MSG_BATCH_END
		case i > 0:
			typ = nftType(msgs[i-1].typ)
		}
		if errno != 0 && first == nil {
			first = &nftError{msgType: typ, errno: errno, text: text}
		}
		if h.Seq == seq || h.Seq == last {
			// The batch as a whole was refused (no CAP_NET_ADMIN,
			// commit failure): no per-message answers follow.
			return true, nil
		}
		acked++
		return acked == len(msgs), nil
	})
	if first != nil {
		return &net.OpError{Op: "nftables", Net: "rawsock", Err: os.NewSyscallError(nftMsgName(first.msgType), first)}
	}
	return err
}

// dump requests every object of type typ (NFT_MSG_GET*) in family that
// matches the attributes attrs writes, and passes each answer's NFT_MSG_*
// type and attributes to fn.
func (c *nlConn) dump(typ uint16, family uint8, attrs func(*nlWriter), fn func(typ uint16, attrs []byte) error) error {
	seq := c.nextSeq(1)
	var w nlWriter
	w.begin(nftType(typ), unix.NLM_F_REQUEST|unix.NLM_F_DUMP, seq, family, 0)
	if attrs != nil {
		attrs(&w)
	}
	w.finish()
	if err := c.send(w.b); err != nil {
		return err
	}
	var ferr error
	err := c.receive(seq, seq, func(h unix.NlMsghdr, body []byte) (bool, error) {
		switch {
		case h.Type == unix.NLMSG_DONE:
			return true, nil
		case h.Type == unix.NLMSG_ERROR:
			errno, text, err := parseAck(h, body)
			if err != nil {
				return true, err
			}
			if errno != 0 {
				ferr = &net.OpError{Op: "nftables", Net: "rawsock",
					Err: os.NewSyscallError(nftMsgName(nftType(typ)), &nftError{msgType: nftType(typ), errno: errno, text: text})}
				return true, nil
			}
		case h.Type>>8 == unix.NFNL_SUBSYS_NFTABLES && len(body) >= sizeofNfgenmsg:
			if err := fn(h.Type&0xff, body[sizeofNfgenmsg:]); err != nil {
				return true, err
			}
		}
		return false, nil
	})
	if ferr != nil {
		return ferr
	}
	return err
}

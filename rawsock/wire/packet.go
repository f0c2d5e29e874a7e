package wire

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// IP protocol numbers.
const (
	ProtocolICMP   = 1
	ProtocolTCP    = 6
	ProtocolICMPv6 = 58
)

// Errors returned by Parse and Segment.Build. Callers compare with
// errors.Is.
var (
	// ErrTruncated means the packet is shorter than its headers or
	// length fields say.
	ErrTruncated = errors.New("rawsock: truncated packet")
	// ErrMalformed means the header fields are inconsistent (bad version
	// or IHL, a data offset below 20 or beyond the packet, ...).
	ErrMalformed = errors.New("rawsock: malformed packet")
	// ErrUnsupported means a well-formed packet Parse does not handle:
	// neither TCP nor an ICMP error quoting TCP, or a non-first fragment.
	ErrUnsupported = errors.New("rawsock: unsupported packet")
	// ErrShortBuffer means the buffer given to Build is too small.
	ErrShortBuffer = errors.New("rawsock: short buffer")
	// ErrChecksum means a checksum is wrong: the IPv4 header's, the TCP
	// segment's or the ICMP message's. The receiving kernel drops such a
	// packet, so it is never an answer.
	ErrChecksum = errors.New("rawsock: bad checksum")
)

// Checksums says what the kernel told about a received packet's TCP or
// ICMP checksum, for ParseChecksums.
type Checksums uint8

const (
	// ChecksumsUnknown: nothing is known, as on a raw IP socket. The TCP
	// checksum must verify, or hold exactly the sum of the pseudo header:
	// the form a sender on this host leaves for the device to complete
	// (the kernel's CHECKSUM_PARTIAL: packets over loopback and veth from
	// a local TCP stack, segments merged by GRO), which the receiving
	// kernel takes without verifying. ICMP checksums must verify.
	ChecksumsUnknown Checksums = iota
	// ChecksumsNotReady: the kernel said the checksum was never computed
	// (TP_STATUS_CSUMNOTREADY, CHECKSUM_PARTIAL): the receiving kernel
	// does not verify it, and neither does ParseChecksums.
	ChecksumsNotReady
	// ChecksumsVerify: the kernel said the checksum is not a partial one:
	// it must verify. A pseudo-header sum alone is corruption here.
	ChecksumsVerify
)

var (
	errAddrFamily    = errors.New("rawsock: source and destination must be both IPv4 or both IPv6")
	errOptionsLength = errors.New("rawsock: tcp options length must be a multiple of 4 and at most 40")
	errTooLong       = errors.New("rawsock: segment too long for an ip packet")
)

// Segment describes an outgoing TCP/IP packet.
//
// Zero fields are written as zero: pick a TTL (64) and a window.
type Segment struct {
	Src, Dst         netip.Addr // both IPv4 (or 4-in-6, Unmap them) or both IPv6
	TTL              uint8      // hop limit for IPv6
	TOS              uint8      // traffic class for IPv6
	ID               uint16     // IPv4 only
	DF               bool       // IPv4 only
	FlowLabel        uint32     // IPv6 only (low 20 bits)
	SrcPort, DstPort uint16
	Seq, Ack         uint32
	Flags            TCPFlags
	Window           uint16
	Options          []byte // raw TCP options; length must be a multiple of 4 and <= 40 (else error)
	Payload          []byte
}

// Len returns the length of the packet Build writes, or 0 if the addresses
// are not both IPv4 or both IPv6.
func (s *Segment) Len() int {
	n := TCPMinimumSize + len(s.Options) + len(s.Payload)
	src, dst := s.Src.Unmap(), s.Dst.Unmap()
	switch {
	case src.Is4() && dst.Is4():
		return IPv4MinimumSize + n
	case src.Is6() && dst.Is6():
		return IPv6MinimumSize + n
	}
	return 0
}

// Build writes the packet into b and returns its length: an IPv4 header
// (20 bytes, no options, header checksum filled in) or an IPv6 header (40
// bytes, no extension headers), then the TCP header with s.Options, then
// s.Payload, with the TCP checksum computed.
//
// It returns ErrShortBuffer if b is too small, and an error if the address
// families differ or are invalid, if the options length is wrong, or if the
// packet would not fit the IP length field. It does not allocate.
func (s *Segment) Build(b []byte) (int, error) {
	if len(s.Options)%4 != 0 || len(s.Options) > MaxOptionsSize {
		return 0, errOptionsLength
	}
	src, dst := s.Src.Unmap(), s.Dst.Unmap()
	tcpLen := TCPMinimumSize + len(s.Options) + len(s.Payload)
	var hl int
	switch {
	case src.Is4() && dst.Is4():
		hl = IPv4MinimumSize
		if hl+tcpLen > 0xffff {
			return 0, errTooLong
		}
	case src.Is6() && dst.Is6():
		hl = IPv6MinimumSize
		if tcpLen > 0xffff {
			return 0, errTooLong
		}
	default:
		return 0, errAddrFamily
	}
	n := hl + tcpLen
	if len(b) < n {
		return 0, ErrShortBuffer
	}
	b = b[:n]

	if hl == IPv4MinimumSize {
		ip := IPv4(b)
		ip.SetHeaderLength(IPv4MinimumSize)
		ip.SetTOS(s.TOS)
		ip.SetTotalLength(uint16(n))
		ip.SetID(s.ID)
		var flags uint8
		if s.DF {
			flags = IPv4FlagDontFragment
		}
		ip.SetFlagsFragmentOffset(flags, 0)
		ip.SetTTL(s.TTL)
		ip.SetProtocol(ProtocolTCP)
		ip.SetSourceAddress(src)
		ip.SetDestinationAddress(dst)
		ip.SetChecksum(0)
		ip.SetChecksum(ip.CalculateChecksum())
	} else {
		ip := IPv6(b)
		binary.BigEndian.PutUint32(ip[IPv6VersTCFLOffset:],
			IPv6Version<<28|uint32(s.TOS)<<20|s.FlowLabel&0xfffff)
		ip.SetPayloadLength(uint16(tcpLen))
		ip.SetNextHeader(ProtocolTCP)
		ip.SetHopLimit(s.TTL)
		ip.SetSourceAddress(src)
		ip.SetDestinationAddress(dst)
	}

	tcp := TCP(b[hl:])
	tcp.SetSrcPort(s.SrcPort)
	tcp.SetDstPort(s.DstPort)
	tcp.SetSeq(s.Seq)
	tcp.SetAck(s.Ack)
	tcp.SetDataOffset(TCPMinimumSize + len(s.Options))
	tcp.SetFlags(s.Flags)
	tcp.SetWindow(s.Window)
	tcp.SetChecksum(0)
	tcp.SetUrgentPointer(0)
	copy(tcp[TCPMinimumSize:], s.Options)
	copy(tcp[TCPMinimumSize+len(s.Options):], s.Payload)
	sum := Checksum(tcp, PseudoHeaderChecksum(ProtocolTCP, src, dst, uint16(tcpLen)))
	tcp.SetChecksum(^sum)
	return n, nil
}

// Packet is a parsed inbound packet; reuse one value across calls (Parse
// resets every field).
type Packet struct {
	Src, Dst netip.Addr // outer IP header
	TTL      uint8      // TTL / hop limit
	TOS      uint8      // TOS / traffic class byte (ECN in low 2 bits)
	ID       uint16     // IPv4 only
	DF       bool       // IPv4 only
	Proto    uint8      // 6 TCP, 1 ICMP, 58 ICMPv6 (the upper-layer protocol after extension headers)

	// TCP (Proto == 6)
	SrcPort, DstPort uint16
	Seq, Ack         uint32
	Flags            TCPFlags
	Window           uint16
	Options          SYNOptions // WScale is -1 unless a TCP packet carries it
	PayloadLen       int

	// ICMP errors (Proto == 1 or 58): destination unreachable, time
	// exceeded, parameter problem, packet too big (v6) / frag-needed (v4
	// is dest-unreach code 4).
	ICMPType, ICMPCode uint8
	Quoted             Quote // the offending packet quoted in the error (must be TCP)
}

// IsICMP reports whether p holds an ICMP or ICMPv6 error (Proto 1 or 58).
func (p *Packet) IsICMP() bool { return p.Proto == ProtocolICMP || p.Proto == ProtocolICMPv6 }

// Quote is the start of the TCP packet quoted in an ICMP error.
type Quote struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Seq              uint32
	HasSeq           bool   // the quote was long enough to hold the sequence number (8 bytes of TCP hdr)
	ID               uint16 // the quoted IPv4 header's ID; 0 for IPv6
	// Offset is where the quoted IP header starts in the packet Parse
	// was given, and Length how many bytes of quote follow it, to the
	// end of the ICMP message; both 0 unless Parse returned nil.
	Offset, Length int
}

// Parse parses b, a whole IP packet (the version comes from the first
// nibble), into p. It accepts TCP segments and ICMP or ICMPv6 errors
// (destination unreachable, time exceeded, parameter problem, packet too
// big) that quote a TCP segment, and skips IPv6 extension headers.
//
// It returns ErrTruncated when b is shorter than its headers or length
// fields say, ErrMalformed when header fields are inconsistent,
// ErrUnsupported for any other protocol, ICMP message or quote, and for
// fragments (a fragment's checksum cannot be verified), and ErrChecksum
// when a checksum is wrong. Fields parsed before an error is found (such
// as the IP addresses) are left set; all others are zero. Bytes beyond the
// IP length (link-layer padding) are ignored.
//
// Parse verifies checksums as the receiving kernel would when it knows
// nothing of how the packet was built (ChecksumsUnknown): the IPv4 header
// checksum, the TCP checksum, which may also be in the partial form a
// sender on this host leaves (see ChecksumsUnknown), and the ICMP or
// ICMPv6 checksum. A quoted packet's checksums are not verified: quotes
// are cut short. Parse never panics and does not allocate.
func Parse(b []byte, p *Packet) error { return ParseChecksums(b, p, ChecksumsUnknown) }

// ParseChecksums is Parse for a packet whose checksum state the kernel
// reported, as a packet socket does (TP_STATUS_CSUMNOTREADY).
func ParseChecksums(b []byte, p *Packet, cs Checksums) error {
	*p = Packet{Options: SYNOptions{WScale: -1}}
	if len(b) == 0 {
		return ErrTruncated
	}
	switch b[0] >> 4 {
	case IPv4Version:
		return parseIPv4(b, p, cs)
	case IPv6Version:
		return parseIPv6(b, p, cs)
	}
	return ErrMalformed
}

// tcpChecksumOK reports whether the TCP segment b between src and dst
// has a checksum the receiving kernel would take.
func tcpChecksumOK(b []byte, src, dst netip.Addr, cs Checksums) bool {
	if cs == ChecksumsNotReady {
		return true
	}
	pseudo := PseudoHeaderChecksum(ProtocolTCP, src, dst, uint16(len(b)))
	if cs == ChecksumsUnknown && TCP(b).Checksum() == pseudo {
		return true // CHECKSUM_PARTIAL: the device was to finish the sum
	}
	return Checksum(b, pseudo) == 0xffff
}

// MaybePartial reports whether b may be a TCP segment whose checksum
// field holds its pseudo-header sum alone: the partial form Parse takes
// when it knows nothing of the packet. It is false when that is cheap to
// rule out: an ICMP message, or TCP in an IPv4 header without options or
// an IPv6 header without extensions whose field is anything else. (A
// packet socket that knows the checksum is not partial must then verify
// in full only when it is true.)
func MaybePartial(b []byte) bool {
	switch {
	case len(b) >= IPv4MinimumSize+ICMPHeaderSize && b[0] == 0x45 && b[IPv4ProtocolOffset] == ProtocolICMP:
		return false
	case len(b) >= IPv6MinimumSize+ICMPHeaderSize && b[0]>>4 == IPv6Version && b[6] == ProtocolICMPv6:
		return false
	case len(b) >= IPv4MinimumSize+TCPMinimumSize && b[0] == 0x45 && b[IPv4ProtocolOffset] == ProtocolTCP:
		ip := IPv4(b)
		tl := int(ip.TotalLength())
		if tl < IPv4MinimumSize+TCPMinimumSize || tl > len(b) {
			return true
		}
		seg := TCP(b[IPv4MinimumSize:tl])
		return seg.Checksum() == PseudoHeaderChecksum(ProtocolTCP, ip.SourceAddress(), ip.DestinationAddress(), uint16(len(seg)))
	case len(b) >= IPv6MinimumSize+TCPMinimumSize && b[0]>>4 == IPv6Version && b[6] == ProtocolTCP:
		ip := IPv6(b)
		end := IPv6MinimumSize + int(ip.PayloadLength())
		if end < IPv6MinimumSize+TCPMinimumSize || end > len(b) {
			return true
		}
		seg := TCP(b[IPv6MinimumSize:end])
		return seg.Checksum() == PseudoHeaderChecksum(ProtocolTCP, ip.SourceAddress(), ip.DestinationAddress(), uint16(len(seg)))
	}
	return true
}

func parseIPv4(b []byte, p *Packet, cs Checksums) error {
	if len(b) < IPv4MinimumSize {
		return ErrTruncated
	}
	ip := IPv4(b)
	hl, tl := ip.HeaderLength(), int(ip.TotalLength())
	switch {
	case hl < IPv4MinimumSize || tl < hl:
		return ErrMalformed
	case tl > len(b):
		return ErrTruncated
	}
	p.Src, p.Dst = ip.SourceAddress(), ip.DestinationAddress()
	p.TTL, p.TOS, p.ID, p.DF = ip.TTL(), ip.TOS(), ip.ID(), ip.DF()
	p.Proto = ip.Protocol()
	if ip.FragmentOffset() != 0 || ip.MF() {
		return ErrUnsupported
	}
	// The kernel drops a header with a bad checksum before anything else
	// (ip_rcv_core); a raw IP socket never sees one, a packet tap does.
	if Checksum(b[:hl], 0) != 0xffff {
		return ErrChecksum
	}
	payload := b[hl:tl]
	switch p.Proto {
	case ProtocolTCP:
		return parseTCP(payload, p, cs)
	case ProtocolICMP:
		err := parseICMPv4(payload, p, cs)
		if err == nil {
			p.Quoted.Offset, p.Quoted.Length = hl+ICMPHeaderSize, len(payload)-ICMPHeaderSize
		}
		return err
	}
	return ErrUnsupported
}

func parseIPv6(b []byte, p *Packet, cs Checksums) error {
	if len(b) < IPv6MinimumSize {
		return ErrTruncated
	}
	ip := IPv6(b)
	end := IPv6MinimumSize + int(ip.PayloadLength())
	if end > len(b) {
		return ErrTruncated
	}
	p.Src, p.Dst = ip.SourceAddress(), ip.DestinationAddress()
	p.TTL, p.TOS = ip.HopLimit(), ip.TrafficClass()
	nh, payload, err := skipExtHeaders(ip.NextHeader(), b[IPv6MinimumSize:end], false)
	p.Proto = nh
	if err != nil {
		return err
	}
	switch nh {
	case ProtocolTCP:
		return parseTCP(payload, p, cs)
	case ProtocolICMPv6:
		err := parseICMPv6(payload, p, cs)
		if err == nil {
			p.Quoted.Offset, p.Quoted.Length = end-len(payload)+ICMPHeaderSize, len(payload)-ICMPHeaderSize
		}
		return err
	}
	return ErrUnsupported
}

func parseTCP(b []byte, p *Packet, cs Checksums) error {
	if len(b) < TCPMinimumSize {
		return ErrTruncated
	}
	tcp := TCP(b)
	doff := tcp.DataOffset()
	if doff < TCPMinimumSize || doff > len(b) {
		return ErrMalformed
	}
	if len(b) > 0xffff {
		return ErrMalformed // no pseudo header can hold its length
	}
	if !tcpChecksumOK(b, p.Src, p.Dst, cs) {
		return ErrChecksum
	}
	p.SrcPort, p.DstPort = tcp.SrcPort(), tcp.DstPort()
	p.Seq, p.Ack = tcp.Seq(), tcp.Ack()
	p.Flags, p.Window = tcp.Flags(), tcp.Window()
	p.Options = ParseSYNOptions(b[TCPMinimumSize:doff])
	p.PayloadLen = len(b) - doff
	return nil
}

// ICMP header layout shared by ICMPv4 and ICMPv6.
const (
	ICMPTypeOffset     = 0
	ICMPCodeOffset     = 1
	ICMPChecksumOffset = 2
	// ICMPHeaderSize is the size of the ICMP header before the payload
	// (type, code, checksum and 4 bytes that depend on the type).
	ICMPHeaderSize = 8
)

// ICMPv4 error types understood by Parse.
const (
	ICMPv4DestinationUnreachable = 3
	ICMPv4TimeExceeded           = 11
	ICMPv4ParameterProblem       = 12
)

// ICMPv6 error types understood by Parse.
const (
	ICMPv6DestinationUnreachable = 1
	ICMPv6PacketTooBig           = 2
	ICMPv6TimeExceeded           = 3
	ICMPv6ParameterProblem       = 4
)

// ICMPv4 is a view of an ICMP message. Accessors assume the buffer holds at
// least ICMPHeaderSize bytes.
type ICMPv4 []byte

// Type returns the message type.
func (b ICMPv4) Type() uint8 { return b[ICMPTypeOffset] }

// Code returns the message code.
func (b ICMPv4) Code() uint8 { return b[ICMPCodeOffset] }

// Checksum returns the checksum field.
func (b ICMPv4) Checksum() uint16 { return binary.BigEndian.Uint16(b[ICMPChecksumOffset:]) }

// Payload returns the bytes after the 8-byte header: for errors, the
// quoted packet.
func (b ICMPv4) Payload() []byte { return b[ICMPHeaderSize:] }

// SetType sets the message type.
func (b ICMPv4) SetType(t uint8) { b[ICMPTypeOffset] = t }

// SetCode sets the message code.
func (b ICMPv4) SetCode(c uint8) { b[ICMPCodeOffset] = c }

// SetChecksum sets the checksum field: ^Checksum(b, 0) computed with the
// field zeroed.
func (b ICMPv4) SetChecksum(c uint16) { binary.BigEndian.PutUint16(b[ICMPChecksumOffset:], c) }

// IsError reports whether the type is an error Parse understands.
func (b ICMPv4) IsError() bool { return isICMPv4Error(b.Type()) }

// ICMPv6 is a view of an ICMPv6 message. Accessors assume the buffer holds
// at least ICMPHeaderSize bytes.
type ICMPv6 []byte

// Type returns the message type.
func (b ICMPv6) Type() uint8 { return b[ICMPTypeOffset] }

// Code returns the message code.
func (b ICMPv6) Code() uint8 { return b[ICMPCodeOffset] }

// Checksum returns the checksum field.
func (b ICMPv6) Checksum() uint16 { return binary.BigEndian.Uint16(b[ICMPChecksumOffset:]) }

// Payload returns the bytes after the 8-byte header: for errors, the
// quoted packet.
func (b ICMPv6) Payload() []byte { return b[ICMPHeaderSize:] }

// SetType sets the message type.
func (b ICMPv6) SetType(t uint8) { b[ICMPTypeOffset] = t }

// SetCode sets the message code.
func (b ICMPv6) SetCode(c uint8) { b[ICMPCodeOffset] = c }

// SetChecksum sets the checksum field: ^Checksum(b, pseudo) computed with
// the field zeroed, where pseudo is PseudoHeaderChecksum(ProtocolICMPv6, ...).
func (b ICMPv6) SetChecksum(c uint16) { binary.BigEndian.PutUint16(b[ICMPChecksumOffset:], c) }

// IsError reports whether the type is an error Parse understands.
func (b ICMPv6) IsError() bool { return isICMPv6Error(b.Type()) }

func isICMPv4Error(t uint8) bool {
	return t == ICMPv4DestinationUnreachable || t == ICMPv4TimeExceeded || t == ICMPv4ParameterProblem
}

func isICMPv6Error(t uint8) bool {
	return t >= ICMPv6DestinationUnreachable && t <= ICMPv6ParameterProblem
}

func parseICMPv4(b []byte, p *Packet, cs Checksums) error {
	if len(b) < ICMPHeaderSize {
		return ErrTruncated
	}
	icmp := ICMPv4(b)
	p.ICMPType, p.ICMPCode = icmp.Type(), icmp.Code()
	if !icmp.IsError() {
		return ErrUnsupported
	}
	// Linux computes every ICMP checksum it sends in full; the receiving
	// kernel verifies it (icmp_rcv), a raw ICMP socket does not.
	if cs != ChecksumsNotReady && Checksum(b, 0) != 0xffff {
		return ErrChecksum
	}
	// The quote is the original header and at least 8 bytes of payload
	// (RFC 792), often more (RFC 1812). Its total length is not trusted:
	// the quote is cut short, and RFC 4884 may pad it.
	q := icmp.Payload()
	if len(q) < IPv4MinimumSize {
		return ErrTruncated
	}
	ip := IPv4(q)
	hl := ip.HeaderLength()
	switch {
	case ip.Version() != IPv4Version || hl < IPv4MinimumSize:
		return ErrMalformed
	case hl > len(q):
		return ErrTruncated
	}
	p.Quoted.Src, p.Quoted.Dst, p.Quoted.ID = ip.SourceAddress(), ip.DestinationAddress(), ip.ID()
	if ip.Protocol() != ProtocolTCP || ip.FragmentOffset() != 0 {
		return ErrUnsupported
	}
	return parseQuotedTCP(q[hl:], &p.Quoted)
}

func parseICMPv6(b []byte, p *Packet, cs Checksums) error {
	if len(b) < ICMPHeaderSize {
		return ErrTruncated
	}
	icmp := ICMPv6(b)
	p.ICMPType, p.ICMPCode = icmp.Type(), icmp.Code()
	if !icmp.IsError() {
		return ErrUnsupported
	}
	if len(b) > 0xffff {
		return ErrMalformed
	}
	if cs != ChecksumsNotReady && Checksum(b, PseudoHeaderChecksum(ProtocolICMPv6, p.Src, p.Dst, uint16(len(b)))) != 0xffff {
		return ErrChecksum
	}
	q := icmp.Payload()
	if len(q) < IPv6MinimumSize {
		return ErrTruncated
	}
	ip := IPv6(q)
	if ip.Version() != IPv6Version {
		return ErrMalformed
	}
	p.Quoted.Src, p.Quoted.Dst = ip.SourceAddress(), ip.DestinationAddress()
	nh, tcp, err := skipExtHeaders(ip.NextHeader(), q[IPv6MinimumSize:], true)
	if err != nil {
		return err
	}
	if nh != ProtocolTCP {
		return ErrUnsupported
	}
	return parseQuotedTCP(tcp, &p.Quoted)
}

func parseQuotedTCP(b []byte, q *Quote) error {
	if len(b) < 4 {
		return ErrTruncated
	}
	tcp := TCP(b)
	q.SrcPort, q.DstPort = tcp.SrcPort(), tcp.DstPort()
	if len(b) >= 8 {
		q.Seq, q.HasSeq = tcp.Seq(), true
	}
	return nil
}

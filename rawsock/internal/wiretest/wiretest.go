// Package wiretest holds the packets and BPF helpers that the tests of
// rawsock/wire and rawsock share: a probe SYN and its SYN-ACK, ICMP
// errors quoting them, IPv4 options and IPv6 extension headers to insert,
// and a run of a classic BPF program in the x/net/bpf VM. Test code only.
package wiretest

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/bpf"

	"github.com/synprobe/synprobe/rawsock/wire"
)

// Addresses of the test packets: us (A), the target (B) and a router (R).
var (
	V4A = netip.MustParseAddr("192.0.2.1")     // us
	V4B = netip.MustParseAddr("198.51.100.7")  // target
	V4R = netip.MustParseAddr("203.0.113.254") // router
	V6A = netip.MustParseAddr("2001:db8::1")
	V6B = netip.MustParseAddr("2001:db8:ffff::7")
	V6R = netip.MustParseAddr("2001:db8:aaaa::fe")
)

// LinuxSYNOptions are the options of a Linux client's SYN.
var LinuxSYNOptions = wire.SYNOptions{MSS: 1460, WScale: 7, SACKPermitted: true, Timestamps: true, TSVal: 0x11223344}

// EncodeOptions returns o encoded.
func EncodeOptions(o wire.SYNOptions) []byte {
	b := make([]byte, wire.MaxOptionsSize)
	return b[:o.Encode(b)]
}

// MustBuild returns the packet s builds, or fails the test.
func MustBuild(tb testing.TB, s wire.Segment) []byte {
	tb.Helper()
	b := make([]byte, 1500)
	n, err := s.Build(b)
	if err != nil {
		tb.Fatalf("Build: %v", err)
	}
	return b[:n]
}

// ProbeSYN is a probe from us to the target.
func ProbeSYN(src, dst netip.Addr, sport uint16) wire.Segment {
	return wire.Segment{
		Src: src, Dst: dst, TTL: 64, ID: 0x4242, DF: true, FlowLabel: 0x12345,
		SrcPort: sport, DstPort: 443, Seq: 0xc0ffee00, Flags: wire.FlagSyn,
		Window: 64240, Options: EncodeOptions(LinuxSYNOptions),
	}
}

// SYNACK is the target's answer to ProbeSYN.
func SYNACK(src, dst netip.Addr, dport uint16) wire.Segment {
	return wire.Segment{
		Src: src, Dst: dst, TTL: 57, TOS: 0x02, ID: 0, DF: true,
		SrcPort: 443, DstPort: dport, Seq: 0x01020304, Ack: 0xc0ffee01, Flags: wire.FlagSyn | wire.FlagAck,
		Window: 65160, Options: EncodeOptions(wire.SYNOptions{MSS: 1400, WScale: 10, SACKPermitted: true,
			Timestamps: true, TSVal: 0xaabbccdd, TSEcr: 0x11223344}),
	}
}

// ICMP4Error wraps quote in an ICMP error from the address from to the
// address to.
func ICMP4Error(typ, code uint8, from, to netip.Addr, quote []byte) []byte {
	b := make([]byte, wire.IPv4MinimumSize+wire.ICMPHeaderSize+len(quote))
	ip := wire.IPv4(b)
	ip.SetHeaderLength(wire.IPv4MinimumSize)
	ip.SetTOS(0xc0)
	ip.SetTotalLength(uint16(len(b)))
	ip.SetID(7)
	ip.SetTTL(250)
	ip.SetProtocol(wire.ProtocolICMP)
	ip.SetSourceAddress(from)
	ip.SetDestinationAddress(to)
	ip.SetChecksum(ip.CalculateChecksum())
	icmp := wire.ICMPv4(b[wire.IPv4MinimumSize:])
	icmp.SetType(typ)
	icmp.SetCode(code)
	copy(icmp.Payload(), quote)
	icmp.SetChecksum(^wire.Checksum(icmp, 0))
	return b
}

// ICMP6Error wraps quote in an ICMPv6 error from the address from to the
// address to.
func ICMP6Error(typ, code uint8, from, to netip.Addr, quote []byte) []byte {
	b := make([]byte, wire.IPv6MinimumSize+wire.ICMPHeaderSize+len(quote))
	ip := wire.IPv6(b)
	ip.SetTrafficClass(0xc0)
	ip.SetPayloadLength(uint16(len(b) - wire.IPv6MinimumSize))
	ip.SetNextHeader(wire.ProtocolICMPv6)
	ip.SetHopLimit(63)
	ip.SetSourceAddress(from)
	ip.SetDestinationAddress(to)
	icmp := wire.ICMPv6(b[wire.IPv6MinimumSize:])
	icmp.SetType(typ)
	icmp.SetCode(code)
	copy(icmp.Payload(), quote)
	icmp.SetChecksum(^wire.Checksum(icmp, wire.PseudoHeaderChecksum(wire.ProtocolICMPv6, from, to, uint16(len(icmp)))))
	return b
}

// WithIPv4Options returns pkt with n bytes of IP options (NOPs then EOL)
// after its 20-byte header.
func WithIPv4Options(pkt []byte, n int) []byte {
	opts := bytes.Repeat([]byte{1}, n)
	opts[n-1] = 0
	b := append(append(append([]byte{}, pkt[:wire.IPv4MinimumSize]...), opts...), pkt[wire.IPv4MinimumSize:]...)
	ip := wire.IPv4(b)
	ip.SetHeaderLength(wire.IPv4MinimumSize + n)
	ip.SetTotalLength(uint16(len(b)))
	ip.SetChecksum(ip.CalculateChecksum())
	return b
}

// ExtHeader is an IPv6 extension header to insert with WithExtHeaders:
// Kind, and Body, whose length must be 6 mod 8 (or 6 for a fragment).
type ExtHeader struct {
	Kind uint8
	Body []byte
}

// WithExtHeaders inserts extension headers between pkt's IPv6 header and
// its payload.
func WithExtHeaders(pkt []byte, hdrs ...ExtHeader) []byte {
	ip := wire.IPv6(pkt)
	var ext []byte
	next := ip.NextHeader()
	for i := len(hdrs) - 1; i >= 0; i-- {
		h := hdrs[i]
		l := uint8((2+len(h.Body))/8 - 1)
		if h.Kind == wire.IPv6FragmentHeader {
			l = 0
		}
		ext = append(append([]byte{next, l}, h.Body...), ext...)
		next = h.Kind
	}
	b := append(append(append([]byte{}, pkt[:wire.IPv6MinimumSize]...), ext...), pkt[wire.IPv6MinimumSize:]...)
	wire.IPv6(b).SetNextHeader(next)
	wire.IPv6(b).SetPayloadLength(uint16(len(b) - wire.IPv6MinimumSize))
	return b
}

// RunFilter runs prog on pkt in the x/net/bpf VM and reports whether it
// accepts the packet (whole).
func RunFilter(t *testing.T, prog []bpf.Instruction, pkt []byte) bool {
	t.Helper()
	if _, err := bpf.Assemble(prog); err != nil {
		t.Fatalf("Assemble: %v", err)
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatalf("NewVM: %v", err)
	}
	n, err := vm.Run(pkt)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n != 0 && n < len(pkt) {
		t.Fatalf("filter keeps %d of %d bytes", n, len(pkt))
	}
	return n != 0
}

// FilterCase is a packet and whether a filter must accept it.
type FilterCase struct {
	Name   string
	Pkt    []byte
	Accept bool
}

// CheckFilter runs prog on each case's packet and reports the verdicts
// that differ from the case's.
func CheckFilter(t *testing.T, prog []bpf.Instruction, cases []FilterCase) {
	t.Helper()
	for _, tc := range cases {
		if got := RunFilter(t, prog, tc.Pkt); got != tc.Accept {
			t.Errorf("%s: accept = %v, want %v", tc.Name, got, tc.Accept)
		}
	}
}

// Edited returns a copy of b changed by f.
func Edited(b []byte, f func(b []byte)) []byte {
	b = append([]byte{}, b...)
	f(b)
	return b
}

// FilterLo..FilterHi is the port range the filter tests use.
const (
	FilterLo = 40000
	FilterHi = 40999
)

// WithAncillary returns prog with its ancillary loads replaced by constant
// loads of the given values, so that the x/net/bpf VM, which knows none of
// them, can run the whole program. Jump offsets stay valid: one
// instruction replaces another.
func WithAncillary(t *testing.T, prog []bpf.Instruction, pktType, mark, proto uint32) []bpf.Instruction {
	t.Helper()
	out := append([]bpf.Instruction{}, prog...)
	for i, ins := range out {
		ext, ok := ins.(bpf.LoadExtension)
		if !ok {
			continue
		}
		var v uint32
		switch ext.Num {
		case bpf.ExtType:
			v = pktType
		case bpf.ExtMark:
			v = mark
		case bpf.ExtProto:
			v = proto
		default:
			t.Fatalf("instruction %d: unexpected extension %d", i, ext.Num)
		}
		out[i] = bpf.LoadConstant{Dst: bpf.RegA, Val: v}
	}
	return out
}

// Shared by the privileged tests of rawsock and rawsock/rstguard.
const (
	// NeedsNetRaw is the reason a test skips without CAP_NET_RAW.
	NeedsNetRaw = "needs CAP_NET_RAW: run as root (sudo go test ./rawsock/...)"
	// Settle is how long a test waits for packets that should not come:
	// a late or duplicate one would be counted by then.
	Settle = 50 * time.Millisecond
)

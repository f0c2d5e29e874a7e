package wire_test

import (
	"fmt"
	"net/netip"

	"github.com/synprobe/synprobe/rawsock/wire"
)

// A probe: a SYN whose sequence number is a cookie, with Linux's options.
func ExampleSegment_Build() {
	cookie := wire.NewCookie([16]byte{}) // use NewRandomCookie
	src, dst := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.7")

	opts := wire.SYNOptions{MSS: 1460, WScale: 7, SACKPermitted: true, Timestamps: true, TSVal: 1}
	var optBuf [wire.MaxOptionsSize]byte
	s := wire.Segment{
		Src: src, Dst: dst, TTL: 64, DF: true,
		SrcPort: 40000, DstPort: 443,
		Seq:   cookie.ISN(src, dst, 40000, 443, 0),
		Flags: wire.FlagSyn, Window: 64240,
		Options: optBuf[:opts.Encode(optBuf[:])],
	}
	var buf [128]byte
	n, err := s.Build(buf[:])
	if err != nil {
		panic(err)
	}
	fmt.Println(n, wire.TCP(buf[20:n]).Flags(), len(wire.TCP(buf[20:n]).Options()))
	// Output: 60 S 20
}

// Checking a reply against the cookie of the probe it answers.
func ExampleParse() {
	cookie := wire.NewCookie([16]byte{})
	us, them := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	isn := cookie.ISN(us, them, 40000, 443, 0)

	// The reply, as a raw socket would read it.
	reply := wire.Segment{Src: them, Dst: us, TTL: 57, SrcPort: 443, DstPort: 40000,
		Seq: 1234, Ack: isn + 1, Flags: wire.FlagSyn | wire.FlagAck, Window: 65535}
	var buf [128]byte
	n, _ := reply.Build(buf[:])

	var p wire.Packet // reuse across reads
	if err := wire.Parse(buf[:n], &p); err != nil {
		panic(err)
	}
	ours := p.Ack-1 == cookie.ISN(p.Dst, p.Src, p.DstPort, p.SrcPort, 0)
	fmt.Println(p.Src, p.Flags, "ttl", p.TTL, "ours", ours)
	// Output: 2001:db8::2 SA ttl 57 ours true
}

func ExampleICMPReason() {
	fmt.Println(wire.ICMPReason(false, 3, 13))
	fmt.Println(wire.ICMPReason(true, 1, 1))
	fmt.Println(wire.ICMPReason(true, 1, 4))
	// Output:
	// icmp-admin-prohibited
	// icmp-admin-prohibited
	// icmp-port-unreachable
}

package rawsock

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
)

var (
	v4a = netip.MustParseAddr("192.0.2.1")     // us
	v4b = netip.MustParseAddr("198.51.100.7")  // target
	v4r = netip.MustParseAddr("203.0.113.254") // router
	v6a = netip.MustParseAddr("2001:db8::1")
	v6b = netip.MustParseAddr("2001:db8:ffff::7")
	v6r = netip.MustParseAddr("2001:db8:aaaa::fe")
)

var linuxSYNOptions = SYNOptions{MSS: 1460, WScale: 7, SACKPermitted: true, Timestamps: true, TSVal: 0x11223344}

func encodeOptions(o SYNOptions) []byte {
	b := make([]byte, MaxOptionsSize)
	return b[:o.Encode(b)]
}

func mustBuild(tb testing.TB, s Segment) []byte {
	tb.Helper()
	b := make([]byte, 1500)
	n, err := s.Build(b)
	if err != nil {
		tb.Fatalf("Build: %v", err)
	}
	return b[:n]
}

// probeSYN is a probe from us to the target.
func probeSYN(src, dst netip.Addr, sport uint16) Segment {
	return Segment{
		Src: src, Dst: dst, TTL: 64, ID: 0x4242, DF: true, FlowLabel: 0x12345,
		SrcPort: sport, DstPort: 443, Seq: 0xc0ffee00, Flags: FlagSyn,
		Window: 64240, Options: encodeOptions(linuxSYNOptions),
	}
}

// synACK is the target's answer to probeSYN.
func synACK(src, dst netip.Addr, dport uint16) Segment {
	return Segment{
		Src: src, Dst: dst, TTL: 57, TOS: 0x02, ID: 0, DF: true,
		SrcPort: 443, DstPort: dport, Seq: 0x01020304, Ack: 0xc0ffee01, Flags: FlagSyn | FlagAck,
		Window: 65160, Options: encodeOptions(SYNOptions{MSS: 1400, WScale: 10, SACKPermitted: true,
			Timestamps: true, TSVal: 0xaabbccdd, TSEcr: 0x11223344}),
	}
}

// icmp4Error wraps quote in an ICMP error from the router to dst.
func icmp4Error(typ, code uint8, from, to netip.Addr, quote []byte) []byte {
	b := make([]byte, IPv4MinimumSize+ICMPHeaderSize+len(quote))
	ip := IPv4(b)
	ip.SetHeaderLength(IPv4MinimumSize)
	ip.SetTOS(0xc0)
	ip.SetTotalLength(uint16(len(b)))
	ip.SetID(7)
	ip.SetTTL(250)
	ip.SetProtocol(ProtocolICMP)
	ip.SetSourceAddress(from)
	ip.SetDestinationAddress(to)
	ip.SetChecksum(ip.CalculateChecksum())
	icmp := ICMPv4(b[IPv4MinimumSize:])
	icmp.SetType(typ)
	icmp.SetCode(code)
	copy(icmp.Payload(), quote)
	icmp.SetChecksum(^Checksum(icmp, 0))
	return b
}

// icmp6Error wraps quote in an ICMPv6 error from the router to dst.
func icmp6Error(typ, code uint8, from, to netip.Addr, quote []byte) []byte {
	b := make([]byte, IPv6MinimumSize+ICMPHeaderSize+len(quote))
	ip := IPv6(b)
	ip.SetTrafficClass(0xc0)
	ip.SetPayloadLength(uint16(len(b) - IPv6MinimumSize))
	ip.SetNextHeader(ProtocolICMPv6)
	ip.SetHopLimit(63)
	ip.SetSourceAddress(from)
	ip.SetDestinationAddress(to)
	icmp := ICMPv6(b[IPv6MinimumSize:])
	icmp.SetType(typ)
	icmp.SetCode(code)
	copy(icmp.Payload(), quote)
	icmp.SetChecksum(^Checksum(icmp, PseudoHeaderChecksum(ProtocolICMPv6, from, to, uint16(len(icmp)))))
	return b
}

// withIPv4Options returns pkt with n bytes of IP options (NOPs then EOL)
// after its 20-byte header.
func withIPv4Options(pkt []byte, n int) []byte {
	opts := bytes.Repeat([]byte{1}, n)
	opts[n-1] = 0
	b := append(append(append([]byte{}, pkt[:IPv4MinimumSize]...), opts...), pkt[IPv4MinimumSize:]...)
	ip := IPv4(b)
	ip.SetHeaderLength(IPv4MinimumSize + n)
	ip.SetTotalLength(uint16(len(b)))
	ip.SetChecksum(ip.CalculateChecksum())
	return b
}

// extHeader is an IPv6 extension header to insert with withExtHeaders:
// kind, and body, whose length must be 6 mod 8 (or 6 for a fragment).
type extHeader struct {
	kind uint8
	body []byte
}

// withExtHeaders inserts extension headers between pkt's IPv6 header and
// its payload.
func withExtHeaders(pkt []byte, hdrs ...extHeader) []byte {
	ip := IPv6(pkt)
	var ext []byte
	next := ip.NextHeader()
	for i := len(hdrs) - 1; i >= 0; i-- {
		h := hdrs[i]
		l := uint8((2+len(h.body))/8 - 1)
		if h.kind == IPv6FragmentHeader {
			l = 0
		}
		ext = append(append([]byte{next, l}, h.body...), ext...)
		next = h.kind
	}
	b := append(append(append([]byte{}, pkt[:IPv6MinimumSize]...), ext...), pkt[IPv6MinimumSize:]...)
	IPv6(b).SetNextHeader(next)
	IPv6(b).SetPayloadLength(uint16(len(b) - IPv6MinimumSize))
	return b
}

func TestBuildParseRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    Segment
	}{
		{"v4 SYN with options", probeSYN(v4a, v4b, 40000)},
		{"v6 SYN with options", probeSYN(v6a, v6b, 40000)},
		{"v4 SYN-ACK", synACK(v4b, v4a, 40000)},
		{"v6 SYN-ACK", synACK(v6b, v6a, 40000)},
		{"v4 RST", Segment{Src: v4a, Dst: v4b, TTL: 64, SrcPort: 40001, DstPort: 80, Seq: 0xc0ffee01, Flags: FlagRst}},
		{"v6 RST-ACK", Segment{Src: v6b, Dst: v6a, TTL: 255, TOS: 0xff, FlowLabel: 0xfffff, SrcPort: 22, DstPort: 65535, Ack: 1, Flags: FlagRst | FlagAck}},
		{"v4 PSH-ACK with payload", Segment{Src: v4a, Dst: v4b, TTL: 1, TOS: 0xb8, ID: 0xffff, SrcPort: 1, DstPort: 2, Seq: 3, Ack: 4,
			Flags: FlagPsh | FlagAck, Window: 5, Payload: []byte("GET / HTTP/1.0\r\n\r\n")}},
		{"v6 with odd payload", Segment{Src: v6a, Dst: v6b, TTL: 64, SrcPort: 1, DstPort: 2, Flags: FlagAck, Payload: []byte("odd")}},
		{"v4-mapped", Segment{Src: netip.MustParseAddr("::ffff:192.0.2.1"), Dst: v4b, TTL: 64, SrcPort: 7, DstPort: 9, Flags: FlagSyn}},
		{"all flags, max options", Segment{Src: v4a, Dst: v4b, Flags: 0xff, Options: bytes.Repeat([]byte{1}, 40)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.s
			pkt := mustBuild(t, s)
			src, dst := s.Src.Unmap(), s.Dst.Unmap()
			v4 := src.Is4()
			hl := IPv6MinimumSize
			if v4 {
				hl = IPv4MinimumSize
			}
			if want := hl + TCPMinimumSize + len(s.Options) + len(s.Payload); len(pkt) != want || s.Len() != want {
				t.Fatalf("Build = %d bytes, Len = %d, want %d", len(pkt), s.Len(), want)
			}

			// Header fields, through the views.
			if v4 {
				ip := IPv4(pkt)
				if !ip.IsValid(len(pkt)) || !ip.IsChecksumValid() ||
					naiveChecksum(pkt[:IPv4MinimumSize], 0) != 0xffff {
					t.Errorf("bad IPv4 header % x", pkt[:20])
				}
				if pkt[0] != 0x45 || ip.TOS() != s.TOS || int(ip.TotalLength()) != len(pkt) || ip.ID() != s.ID ||
					ip.DF() != s.DF || ip.MF() || ip.FragmentOffset() != 0 || ip.TTL() != s.TTL ||
					ip.Protocol() != 6 || ip.SourceAddress() != src || ip.DestinationAddress() != dst {
					t.Errorf("IPv4 header % x", pkt[:20])
				}
			} else {
				ip := IPv6(pkt)
				if !ip.IsValid(len(pkt)) || pkt[0]>>4 != 6 || ip.TrafficClass() != s.TOS ||
					ip.FlowLabel() != s.FlowLabel || int(ip.PayloadLength()) != len(pkt)-40 ||
					ip.NextHeader() != 6 || ip.HopLimit() != s.TTL ||
					ip.SourceAddress() != src || ip.DestinationAddress() != dst {
					t.Errorf("IPv6 header % x", pkt[:40])
				}
			}
			tcp := TCP(pkt[hl:])
			if tcp.SrcPort() != s.SrcPort || tcp.DstPort() != s.DstPort || tcp.Seq() != s.Seq || tcp.Ack() != s.Ack ||
				tcp.DataOffset() != 20+len(s.Options) || tcp.Flags() != s.Flags || tcp.Window() != s.Window ||
				tcp.UrgentPointer() != 0 || !bytes.Equal(tcp.Options(), s.Options) || !bytes.Equal(tcp.Payload(), s.Payload) {
				t.Errorf("TCP header % x", tcp)
			}
			// Checksum against the naive reference.
			ph := naivePseudoHeader(6, src, dst, uint16(len(tcp)))
			if sum := naiveChecksum(append(ph, tcp...), 0); sum != 0xffff {
				t.Errorf("TCP checksum %#04x does not verify (sum %#04x)", tcp.Checksum(), sum)
			}
			if !tcp.IsChecksumValid(PseudoHeaderChecksum(6, src, dst, uint16(len(tcp)))) {
				t.Error("IsChecksumValid = false")
			}
			if got := tcp.CalculateChecksum(PseudoHeaderChecksum(6, src, dst, uint16(len(tcp)))); got != tcp.Checksum() {
				t.Errorf("CalculateChecksum = %#04x, field %#04x", got, tcp.Checksum())
			}

			var p Packet
			if err := Parse(pkt, &p); err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := Packet{
				Src: src, Dst: dst, TTL: s.TTL, TOS: s.TOS, Proto: 6,
				SrcPort: s.SrcPort, DstPort: s.DstPort, Seq: s.Seq, Ack: s.Ack, Flags: s.Flags,
				Window: s.Window, Options: ParseSYNOptions(s.Options), PayloadLen: len(s.Payload),
			}
			if v4 {
				want.ID, want.DF = s.ID, s.DF
			}
			if p != want {
				t.Errorf("Parse =\n%+v\nwant\n%+v", p, want)
			}
			if p.IsICMP() {
				t.Error("IsICMP")
			}

			// Link-layer padding after the packet is ignored.
			padded := append(append([]byte{}, pkt...), 0, 0, 0, 0, 0, 0)
			if err := Parse(padded, &p); err != nil || p != want {
				t.Errorf("padded: %v, %+v", err, p)
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	buf := make([]byte, 200)
	for _, tc := range []struct {
		name string
		s    Segment
		buf  []byte
		want error
	}{
		{"v4 short", Segment{Src: v4a, Dst: v4b}, buf[:39], ErrShortBuffer},
		{"v6 short", Segment{Src: v6a, Dst: v6b}, buf[:59], ErrShortBuffer},
		{"short for payload", Segment{Src: v4a, Dst: v4b, Payload: make([]byte, 2)}, buf[:41], ErrShortBuffer},
		{"nil buffer", Segment{Src: v4a, Dst: v4b}, nil, ErrShortBuffer},
		{"mixed families", Segment{Src: v4a, Dst: v6b}, buf, errAddrFamily},
		{"zero addresses", Segment{}, buf, errAddrFamily},
		{"zero dst", Segment{Src: v6a}, buf, errAddrFamily},
		{"options not multiple of 4", Segment{Src: v4a, Dst: v4b, Options: []byte{1, 1, 1}}, buf, errOptionsLength},
		{"options too long", Segment{Src: v4a, Dst: v4b, Options: make([]byte, 44)}, buf, errOptionsLength},
		{"v4 too long", Segment{Src: v4a, Dst: v4b, Payload: make([]byte, 65536-40)}, make([]byte, 70000), errTooLong},
		{"v6 too long", Segment{Src: v6a, Dst: v6b, Payload: make([]byte, 65536-20)}, make([]byte, 70000), errTooLong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := tc.s.Build(tc.buf)
			if !errors.Is(err, tc.want) || n != 0 {
				t.Errorf("Build = %d, %v; want 0, %v", n, err, tc.want)
			}
		})
	}
	// The largest packets still build.
	for _, s := range []Segment{
		{Src: v4a, Dst: v4b, Payload: make([]byte, 65535-40)},
		{Src: v6a, Dst: v6b, Payload: make([]byte, 65535-20)},
	} {
		if _, err := s.Build(make([]byte, 70000)); err != nil {
			t.Errorf("max size: %v", err)
		}
	}
}

func TestParseICMPErrors(t *testing.T) {
	syn4 := mustBuild(t, probeSYN(v4a, v4b, 40000))
	syn6 := mustBuild(t, probeSYN(v6a, v6b, 40000))
	quote4 := Quote{Src: v4a, Dst: v4b, SrcPort: 40000, DstPort: 443, Seq: 0xc0ffee00, HasSeq: true}
	quote6 := Quote{Src: v6a, Dst: v6b, SrcPort: 40000, DstPort: 443, Seq: 0xc0ffee00, HasSeq: true}
	base4 := Packet{Src: v4r, Dst: v4a, TTL: 250, TOS: 0xc0, ID: 7, Proto: 1, Options: SYNOptions{WScale: -1}}
	base6 := Packet{Src: v6r, Dst: v6a, TTL: 63, TOS: 0xc0, Proto: 58, Options: SYNOptions{WScale: -1}}
	with := func(p Packet, typ, code uint8, q Quote) Packet {
		p.ICMPType, p.ICMPCode, p.Quoted = typ, code, q
		return p
	}
	for _, tc := range []struct {
		name string
		pkt  []byte
		want Packet
	}{
		{"v4 admin prohibited, 8 bytes of TCP", icmp4Error(3, 13, v4r, v4a, syn4[:28]), with(base4, 3, 13, quote4)},
		{"v4 port unreachable, whole quote", icmp4Error(3, 3, v4r, v4a, syn4), with(base4, 3, 3, quote4)},
		{"v4 frag needed", icmp4Error(3, 4, v4r, v4a, syn4[:28]), with(base4, 3, 4, quote4)},
		{"v4 time exceeded", icmp4Error(11, 0, v4r, v4a, syn4[:28]), with(base4, 11, 0, quote4)},
		{"v4 parameter problem", icmp4Error(12, 0, v4r, v4a, syn4), with(base4, 12, 0, quote4)},
		{"v4 ports only", icmp4Error(3, 1, v4r, v4a, syn4[:24]), with(base4, 3, 1, Quote{Src: v4a, Dst: v4b, SrcPort: 40000, DstPort: 443})},
		{"v4 quote with IP options", icmp4Error(3, 1, v4r, v4a, withIPv4Options(syn4, 8)[:36]), with(base4, 3, 1, quote4)},
		{"v4 RFC 4884 padding", icmp4Error(11, 0, v4r, v4a, append(append([]byte{}, syn4[:28]...), make([]byte, 100)...)), with(base4, 11, 0, quote4)},
		{"v6 no route", icmp6Error(1, 0, v6r, v6a, syn6[:48]), with(base6, 1, 0, quote6)},
		{"v6 admin prohibited, whole quote", icmp6Error(1, 1, v6r, v6a, syn6), with(base6, 1, 1, quote6)},
		{"v6 packet too big", icmp6Error(2, 0, v6r, v6a, syn6), with(base6, 2, 0, quote6)},
		{"v6 time exceeded", icmp6Error(3, 0, v6r, v6a, syn6), with(base6, 3, 0, quote6)},
		{"v6 parameter problem", icmp6Error(4, 1, v6r, v6a, syn6), with(base6, 4, 1, quote6)},
		{"v6 ports only", icmp6Error(1, 4, v6r, v6a, syn6[:44]), with(base6, 1, 4, Quote{Src: v6a, Dst: v6b, SrcPort: 40000, DstPort: 443})},
		{"v6 quote with ext headers", icmp6Error(1, 4, v6r, v6a, withExtHeaders(syn6, extHeader{0, make([]byte, 6)},
			extHeader{60, make([]byte, 14)}, extHeader{44, []byte{0, 1, 0, 0, 0, 1}})[:40+8+16+8+8]), with(base6, 1, 4, quote6)},
		{"v6 error with ext headers", withExtHeaders(icmp6Error(3, 0, v6r, v6a, syn6), extHeader{0, make([]byte, 6)}), with(base6, 3, 0, quote6)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p Packet
			if err := Parse(tc.pkt, &p); err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if p != tc.want {
				t.Errorf("Parse =\n%+v\nwant\n%+v", p, tc.want)
			}
			if !p.IsICMP() {
				t.Error("IsICMP = false")
			}
		})
	}
}

func TestParseQuoteLengths(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		var pkt []byte
		hl := IPv4MinimumSize
		if v6 {
			pkt, hl = mustBuild(t, probeSYN(v6a, v6b, 40000)), IPv6MinimumSize
		} else {
			pkt = mustBuild(t, probeSYN(v4a, v4b, 40000))
		}
		for n := 0; n <= len(pkt); n++ {
			var b []byte
			if v6 {
				b = icmp6Error(1, 3, v6r, v6a, pkt[:n])
			} else {
				b = icmp4Error(3, 1, v4r, v4a, pkt[:n])
			}
			var p Packet
			err := Parse(b, &p)
			switch {
			case n < hl+4:
				if err != ErrTruncated {
					t.Errorf("v6=%v quote %d bytes: %v, want ErrTruncated", v6, n, err)
				}
			case n < hl+8:
				if err != nil || p.Quoted.SrcPort != 40000 || p.Quoted.DstPort != 443 || p.Quoted.HasSeq || p.Quoted.Seq != 0 {
					t.Errorf("v6=%v quote %d bytes: %v, %+v", v6, n, err, p.Quoted)
				}
			default:
				if err != nil || p.Quoted.SrcPort != 40000 || !p.Quoted.HasSeq || p.Quoted.Seq != 0xc0ffee00 {
					t.Errorf("v6=%v quote %d bytes: %v, %+v", v6, n, err, p.Quoted)
				}
			}
		}
	}
}

func TestParseTruncatedEverywhere(t *testing.T) {
	syn4 := mustBuild(t, probeSYN(v4a, v4b, 40000))
	syn6 := mustBuild(t, probeSYN(v6a, v6b, 40000))
	for _, tc := range []struct {
		name string
		pkt  []byte
	}{
		{"v4 SYN-ACK", mustBuild(t, synACK(v4b, v4a, 40000))},
		{"v6 SYN-ACK", mustBuild(t, synACK(v6b, v6a, 40000))},
		{"v4 SYN-ACK with IP options", withIPv4Options(mustBuild(t, synACK(v4b, v4a, 40000)), 12)},
		{"v6 SYN-ACK with ext headers", withExtHeaders(mustBuild(t, synACK(v6b, v6a, 40000)), extHeader{0, make([]byte, 6)}, extHeader{43, make([]byte, 22)})},
		{"v4 ICMP error", icmp4Error(3, 13, v4r, v4a, syn4)},
		{"v6 ICMP error", icmp6Error(1, 1, v6r, v6a, syn6)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p Packet
			if err := Parse(tc.pkt, &p); err != nil {
				t.Fatalf("whole packet: %v", err)
			}
			for n := range len(tc.pkt) {
				if err := Parse(tc.pkt[:n], &p); err != ErrTruncated {
					t.Errorf("truncated to %d bytes: %v, want ErrTruncated", n, err)
				}
			}
		})
	}
}

func TestParseHostile(t *testing.T) {
	synack4 := mustBuild(t, synACK(v4b, v4a, 40000))
	synack6 := mustBuild(t, synACK(v6b, v6a, 40000))
	syn4 := mustBuild(t, probeSYN(v4a, v4b, 40000))
	syn6 := mustBuild(t, probeSYN(v6a, v6b, 40000))
	// edit changes a copy of b and fixes its IPv4 header checksum, so that
	// each case fails for the reason it names.
	edit := func(b []byte, f func(b []byte)) []byte {
		b = append([]byte{}, b...)
		f(b)
		if len(b) >= IPv4MinimumSize && b[0]>>4 == 4 {
			ip := IPv4(b)
			ip.SetChecksum(ip.CalculateChecksum())
		}
		return b
	}
	udp4 := edit(syn4, func(b []byte) { b[9] = 17 })
	udp6 := edit(syn6, func(b []byte) { b[6] = 17 })
	destOpts := func(n int) []extHeader {
		h := make([]extHeader, n)
		for i := range h {
			h[i] = extHeader{60, make([]byte, 6)}
		}
		return h
	}
	for _, tc := range []struct {
		name string
		pkt  []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"version 0", edit(synack4, func(b []byte) { b[0] = 0x05 }), ErrMalformed},
		{"version 5", edit(synack4, func(b []byte) { b[0] = 0x55 }), ErrMalformed},
		{"IHL 0", edit(synack4, func(b []byte) { b[0] = 0x40 }), ErrMalformed},
		{"IHL 4", edit(synack4, func(b []byte) { b[0] = 0x44 }), ErrMalformed},
		{"IHL beyond total length", edit(synack4, func(b []byte) { b[0] = 0x4f; IPv4(b).SetTotalLength(40) }), ErrMalformed},
		{"IHL beyond buffer", edit(synack4[:24], func(b []byte) { b[0] = 0x46; IPv4(b).SetTotalLength(24) }), ErrTruncated},
		{"total length below IHL", edit(synack4, func(b []byte) { IPv4(b).SetTotalLength(19) }), ErrMalformed},
		{"total length beyond buffer", edit(synack4, func(b []byte) { IPv4(b).SetTotalLength(uint16(len(b) + 1)) }), ErrTruncated},
		{"total length cuts TCP", edit(synack4, func(b []byte) { IPv4(b).SetTotalLength(39) }), ErrTruncated},
		{"total length cuts options", edit(synack4, func(b []byte) { IPv4(b).SetTotalLength(44) }), ErrMalformed},
		{"data offset 0", edit(synack4, func(b []byte) { b[20+12] = 0x00 }), ErrMalformed},
		{"data offset 4", edit(synack4, func(b []byte) { b[20+12] = 0x40 }), ErrMalformed},
		{"data offset 15", edit(synack4, func(b []byte) { b[20+12] = 0xf0 }), ErrMalformed},
		{"v6 data offset 15", edit(synack6, func(b []byte) { b[40+12] = 0xf0 }), ErrMalformed},
		{"v4 UDP", udp4, ErrUnsupported},
		{"v6 UDP", udp6, ErrUnsupported},
		{"v6 no next header", edit(synack6, func(b []byte) { b[6] = 59 }), ErrUnsupported},
		{"v4 non-first fragment", edit(synack4, func(b []byte) { IPv4(b).SetFlagsFragmentOffset(0, 8) }), ErrUnsupported},
		{"v4 last fragment", edit(synack4, func(b []byte) { IPv4(b).SetFlagsFragmentOffset(IPv4FlagDontFragment, 1480) }), ErrUnsupported},
		{"v4 first fragment", edit(synack4, func(b []byte) { IPv4(b).SetFlagsFragmentOffset(IPv4FlagMoreFragments, 0) }), ErrUnsupported},
		{"v4 IP options", withIPv4Options(synack4, 4), nil},
		{"v4 IP options 40", withIPv4Options(synack4, 40), nil},
		{"v6 hop-by-hop, routing, dest opts", withExtHeaders(synack6, extHeader{0, make([]byte, 14)}, extHeader{43, make([]byte, 6)}, extHeader{60, make([]byte, 6)}), nil},
		{"v6 first fragment", withExtHeaders(synack6, extHeader{44, []byte{0, 1, 1, 2, 3, 4}}), ErrUnsupported},
		{"v6 atomic fragment", withExtHeaders(synack6, extHeader{44, []byte{0, 0, 1, 2, 3, 4}}), nil},
		{"v6 non-first fragment", withExtHeaders(synack6, extHeader{44, []byte{0, 8, 1, 2, 3, 4}}), ErrUnsupported},
		{"v6 fragment reserved bits", withExtHeaders(synack6, extHeader{44, []byte{0, 6, 1, 2, 3, 4}}), nil},
		{"v6 8 ext headers", withExtHeaders(synack6, destOpts(8)...), nil},
		{"v6 9 ext headers", withExtHeaders(synack6, destOpts(9)...), ErrUnsupported},
		{"v6 ext header chain that loops", withExtHeaders(synack6[:40], destOpts(10)...), ErrUnsupported},
		{"v6 ext header length beyond payload", edit(withExtHeaders(synack6, extHeader{60, make([]byte, 6)}), func(b []byte) { b[41] = 200 }), ErrMalformed},
		{"v6 ext header cut", edit(synack6[:44], func(b []byte) { b[6] = 0; IPv6(b).SetPayloadLength(4) }), ErrTruncated},
		{"v6 fragment header cut", edit(synack6[:44], func(b []byte) { b[6] = 44; IPv6(b).SetPayloadLength(4) }), ErrTruncated},
		{"v4 ICMP echo request", icmp4Error(8, 0, v4r, v4a, syn4), ErrUnsupported},
		{"v4 ICMP echo reply", icmp4Error(0, 0, v4r, v4a, nil), ErrUnsupported},
		{"v4 ICMP source quench", icmp4Error(4, 0, v4r, v4a, syn4), ErrUnsupported},
		{"v4 ICMP redirect", icmp4Error(5, 1, v4r, v4a, syn4), ErrUnsupported},
		{"v4 ICMP short", icmp4Error(3, 0, v4r, v4a, nil)[:27], ErrTruncated},
		{"v4 ICMP quoting UDP", icmp4Error(3, 3, v4r, v4a, udp4[:28]), ErrUnsupported},
		{"v4 ICMP quoting ICMP", icmp4Error(3, 3, v4r, v4a, icmp4Error(8, 0, v4a, v4b, nil)), ErrUnsupported},
		{"v4 ICMP quoting IPv6", icmp4Error(3, 3, v4r, v4a, syn6), ErrMalformed},
		{"v4 ICMP quote IHL 4", icmp4Error(3, 3, v4r, v4a, edit(syn4, func(b []byte) { b[0] = 0x44 })), ErrMalformed},
		{"v4 ICMP quote IHL beyond quote", icmp4Error(3, 3, v4r, v4a, edit(syn4[:28], func(b []byte) { b[0] = 0x48 })), ErrTruncated},
		{"v4 ICMP quoting a non-first fragment", icmp4Error(11, 1, v4r, v4a, edit(syn4, func(b []byte) { IPv4(b).SetFlagsFragmentOffset(0, 64) })), ErrUnsupported},
		{"v6 ICMPv6 echo request", icmp6Error(128, 0, v6r, v6a, syn6), ErrUnsupported},
		{"v6 ICMPv6 neighbor solicitation", icmp6Error(135, 0, v6r, v6a, nil), ErrUnsupported},
		{"v6 ICMPv6 type 0", icmp6Error(0, 0, v6r, v6a, syn6), ErrUnsupported},
		{"v6 ICMPv6 short", icmp6Error(1, 0, v6r, v6a, nil)[:47], ErrTruncated},
		{"v6 ICMPv6 quoting UDP", icmp6Error(1, 4, v6r, v6a, udp6), ErrUnsupported},
		{"v6 ICMPv6 quoting IPv4", icmp6Error(1, 4, v6r, v6a, append(syn4, make([]byte, 40)...)), ErrMalformed},
		{"v6 ICMPv6 quote ext header cut", icmp6Error(1, 4, v6r, v6a, withExtHeaders(syn6, extHeader{60, make([]byte, 22)})[:60]), ErrTruncated},
		{"v6 ICMPv6 quoting a non-first fragment", icmp6Error(1, 4, v6r, v6a, withExtHeaders(syn6, extHeader{44, []byte{0, 16, 0, 0, 0, 1}})), ErrUnsupported},
		{"v6 ICMPv6 quote with 9 ext headers", icmp6Error(1, 4, v6r, v6a, withExtHeaders(syn6, destOpts(9)...)), ErrUnsupported},
		{"v4 ICMP in IPv6", edit(icmp6Error(3, 3, v6r, v6a, syn4), func(b []byte) { b[6] = 1 }), ErrUnsupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p Packet
			if err := Parse(tc.pkt, &p); err != tc.want {
				t.Errorf("Parse = %v, want %v (%+v)", err, tc.want, p)
			}
		})
	}
}

func TestParseResets(t *testing.T) {
	synack := mustBuild(t, synACK(v4b, v4a, 40000))
	icmp := icmp6Error(1, 1, v6r, v6a, mustBuild(t, probeSYN(v6a, v6b, 40000)))
	var a, b Packet
	if err := Parse(icmp, &a); err != nil {
		t.Fatal(err)
	}
	if err := Parse(synack, &a); err != nil {
		t.Fatal(err)
	}
	if err := Parse(synack, &b); err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Errorf("reused Packet %+v, fresh %+v", a, b)
	}
	_ = Parse(nil, &a)
	if a != (Packet{Options: SYNOptions{WScale: -1}}) {
		t.Errorf("after error: %+v", a)
	}
}

func TestIPv4View(t *testing.T) {
	b := make(IPv4, 24)
	b.SetHeaderLength(24)
	b.SetTOS(0xb8)
	b.SetTotalLength(24)
	b.SetID(0xabcd)
	b.SetFlagsFragmentOffset(IPv4FlagDontFragment|IPv4FlagMoreFragments, 0x1fff*8)
	b.SetTTL(3)
	b.SetProtocol(17)
	b.SetSourceAddress(v4a)
	b.SetDestinationAddress(netip.MustParseAddr("::ffff:198.51.100.7"))
	b.SetChecksum(b.CalculateChecksum())
	if b.Version() != 4 || b.HeaderLength() != 24 || b.TOS() != 0xb8 || b.TotalLength() != 24 || b.ID() != 0xabcd ||
		b.Flags() != 3 || !b.DF() || !b.MF() || b.FragmentOffset() != 0x1fff*8 || b.TTL() != 3 || b.Protocol() != 17 ||
		b.SourceAddress() != v4a || b.DestinationAddress() != v4b || !b.IsChecksumValid() || len(b.Options()) != 4 ||
		len(b.Payload()) != 0 || !b.IsValid(24) || b.IsValid(23) {
		t.Errorf("IPv4 view % x", b)
	}
	b.SetFlagsFragmentOffset(0, 8)
	if b.Flags() != 0 || b.DF() || b.MF() || b.FragmentOffset() != 8 {
		t.Errorf("flags % x", b[6:8])
	}
	b.SetHeaderLength(60)
	if b.Payload() != nil || b.Options() != nil || b.IsValid(100) {
		t.Error("IHL 15 in 24 bytes")
	}
}

func TestIPv6View(t *testing.T) {
	b := make(IPv6, 48)
	b.SetTrafficClass(0xab)
	b.SetFlowLabel(0xfedcba9)
	b.SetPayloadLength(8)
	b.SetNextHeader(6)
	b.SetHopLimit(255)
	b.SetSourceAddress(v6a)
	b.SetDestinationAddress(v6b)
	if b.Version() != 6 || b.TrafficClass() != 0xab || b.FlowLabel() != 0xdcba9 || b.PayloadLength() != 8 ||
		b.NextHeader() != 6 || b.HopLimit() != 255 || b.SourceAddress() != v6a || b.DestinationAddress() != v6b ||
		len(b.Payload()) != 8 || !b.IsValid(48) || b.IsValid(47) {
		t.Errorf("IPv6 view % x", b)
	}
	b.SetTrafficClass(0x01)
	if b.FlowLabel() != 0xdcba9 || b.TrafficClass() != 1 || b[0] != 0x60 {
		t.Errorf("SetTrafficClass % x", b[:4])
	}
	b.SetPayloadLength(100)
	if len(b.Payload()) != 8 || b.IsValid(1000) {
		t.Error("payload length beyond buffer")
	}
}

func TestZeroAllocs(t *testing.T) {
	buf := make([]byte, 1500)
	syn4, syn6 := probeSYN(v4a, v4b, 40000), probeSYN(v6a, v6b, 40000)
	synack := mustBuild(t, synACK(v4b, v4a, 40000))
	icmp6 := withExtHeaders(icmp6Error(1, 1, v6r, v6a, mustBuild(t, probeSYN(v6a, v6b, 40000))), extHeader{0, make([]byte, 6)})
	c := NewCookie([16]byte{1, 2, 3})
	var p Packet
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"Build v4", func() { _, _ = syn4.Build(buf) }},
		{"Build v6", func() { _, _ = syn6.Build(buf) }},
		{"Parse v4 SYN-ACK", func() { _ = Parse(synack, &p) }},
		{"Parse v6 ICMPv6", func() { _ = Parse(icmp6, &p) }},
		{"Parse error", func() { _ = Parse(synack[:30], &p) }},
		{"ISN", func() { _ = c.ISN(v6a, v6b, 40000, 443, 1) }},
		{"ICMPReason", func() { _ = ICMPReason(true, 1, 1) }},
		{"TCPFlags.String", func() { _ = FlagRst.String() }},
	} {
		if n := testing.AllocsPerRun(100, tc.f); n != 0 {
			t.Errorf("%s: %v allocs, want 0", tc.name, n)
		}
	}
}

func BenchmarkBuildSYN(b *testing.B) {
	for _, s := range []Segment{probeSYN(v4a, v4b, 40000), probeSYN(v6a, v6b, 40000)} {
		name := "IPv4"
		if s.Src.Is6() {
			name = "IPv6"
		}
		b.Run(name, func(b *testing.B) {
			buf := make([]byte, 128)
			b.ReportAllocs()
			for b.Loop() {
				s.Seq++
				if _, err := s.Build(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	syn6 := mustBuild(b, probeSYN(v6a, v6b, 40000))
	for _, tc := range []struct {
		name string
		pkt  []byte
	}{
		{"IPv4SYNACK", mustBuild(b, synACK(v4b, v4a, 40000))},
		{"IPv6SYNACK", mustBuild(b, synACK(v6b, v6a, 40000))},
		{"ICMPv6", icmp6Error(1, 1, v6r, v6a, syn6)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var p Packet
			b.ReportAllocs()
			for b.Loop() {
				if err := Parse(tc.pkt, &p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestParseChecksums: what each checksum mode takes. A wrong IPv4 header
// checksum is refused whatever the kernel said of the TCP or ICMP one; a
// partial TCP checksum (the pseudo-header sum alone) is taken unless the
// kernel said the sum is not partial.
func TestParseChecksums(t *testing.T) {
	rst4 := mustBuild(t, Segment{Src: v4b, Dst: v4a, TTL: 64, SrcPort: 443, DstPort: 40000, Ack: 1, Flags: FlagRst | FlagAck})
	synack6 := mustBuild(t, synACK(v6b, v6a, 40000))
	data4 := mustBuild(t, Segment{Src: v4b, Dst: v4a, TTL: 64, SrcPort: 443, DstPort: 40000, Flags: FlagAck | FlagPsh, Payload: []byte("odd-length payload")})
	icmp4 := icmp4Error(3, 13, v4r, v4a, mustBuild(t, probeSYN(v4a, v4b, 40000))[:28])
	icmp6 := icmp6Error(1, 4, v6r, v6a, mustBuild(t, probeSYN(v6a, v6b, 40000)))
	tcpSum4 := IPv4MinimumSize + TCPChecksumOffset
	type want [3]error // ChecksumsUnknown, ChecksumsNotReady, ChecksumsVerify
	for _, tc := range []struct {
		name string
		pkt  []byte
		want want
	}{
		{"v4 RST", rst4, want{nil, nil, nil}},
		{"v6 SYN-ACK", synack6, want{nil, nil, nil}},
		{"v4 data, odd length", data4, want{nil, nil, nil}},
		{"v4 ICMP", icmp4, want{nil, nil, nil}},
		{"v6 ICMPv6", icmp6, want{nil, nil, nil}},
		{"v4 RST, TCP sum off by one", badSum(rst4, tcpSum4), want{ErrChecksum, nil, ErrChecksum}},
		{"v4 RST, TCP sum zero", edited(rst4, func(b []byte) { TCP(b[IPv4MinimumSize:]).SetChecksum(0) }), want{ErrChecksum, nil, ErrChecksum}},
		{"v4 RST, ack bit flipped", edited(rst4, func(b []byte) { b[IPv4MinimumSize+13] ^= 0x10 }), want{ErrChecksum, nil, ErrChecksum}},
		{"v4 data, payload byte changed", edited(data4, func(b []byte) { b[len(b)-1] ^= 1 }), want{ErrChecksum, nil, ErrChecksum}},
		{"v6 SYN-ACK, TCP sum off by one", badSum(synack6, IPv6MinimumSize+TCPChecksumOffset), want{ErrChecksum, nil, ErrChecksum}},
		{"v4 RST, partial sum", partialSum(rst4), want{nil, nil, ErrChecksum}},
		{"v4 data, partial sum", partialSum(data4), want{nil, nil, ErrChecksum}},
		{"v6 SYN-ACK, partial sum", partialSum(synack6), want{nil, nil, ErrChecksum}},
		{"v4 RST, IP header sum off by one", badSum(rst4, IPv4ChecksumOffset), want{ErrChecksum, ErrChecksum, ErrChecksum}},
		{"v4 RST, TTL changed", edited(rst4, func(b []byte) { b[IPv4TTLOffset]-- }), want{ErrChecksum, ErrChecksum, ErrChecksum}},
		{"v4 ICMP sum off by one", badSum(icmp4, IPv4MinimumSize+ICMPChecksumOffset), want{ErrChecksum, nil, ErrChecksum}},
		{"v4 ICMP quote changed", edited(icmp4, func(b []byte) { b[len(b)-1] ^= 0x80 }), want{ErrChecksum, nil, ErrChecksum}},
		{"v6 ICMPv6 sum off by one", badSum(icmp6, IPv6MinimumSize+ICMPChecksumOffset), want{ErrChecksum, nil, ErrChecksum}},
		{"v6 ICMPv6 to another address", edited(icmp6, func(b []byte) { b[39] ^= 1 }), want{ErrChecksum, nil, ErrChecksum}},
	} {
		for i, cs := range []Checksums{ChecksumsUnknown, ChecksumsNotReady, ChecksumsVerify} {
			var p Packet
			if err := ParseChecksums(tc.pkt, &p, cs); err != tc.want[i] {
				t.Errorf("%s, mode %d: %v, want %v", tc.name, cs, err, tc.want[i])
			}
		}
		var p Packet
		if err := Parse(tc.pkt, &p); err != tc.want[0] {
			t.Errorf("%s: Parse = %v, want %v", tc.name, err, tc.want[0])
		}
	}
}

// TestMaybePartial: the Ring's cheap test for the partial checksum form
// rules out only what cannot be in it.
func TestMaybePartial(t *testing.T) {
	rst4 := mustBuild(t, Segment{Src: v4b, Dst: v4a, TTL: 64, SrcPort: 443, DstPort: 40000, Ack: 1, Flags: FlagRst | FlagAck})
	synack6 := mustBuild(t, synACK(v6b, v6a, 40000))
	for _, tc := range []struct {
		name string
		pkt  []byte
		want bool
	}{
		{"v4 full", rst4, false},
		{"v4 partial", partialSum(rst4), true},
		{"v4 wrong", badSum(rst4, IPv4MinimumSize+TCPChecksumOffset), false},
		{"v6 full", synack6, false},
		{"v6 partial", partialSum(synack6), true},
		{"v4 IP options: not looked into", withIPv4Options(rst4, 4), true},
		{"v6 extension headers: not looked into", withExtHeaders(synack6, extHeader{60, make([]byte, 6)}), true},
		{"v4 ICMP", icmp4Error(3, 13, v4r, v4a, mustBuild(t, probeSYN(v4a, v4b, 40000))[:28]), false},
		{"v6 ICMPv6", icmp6Error(1, 4, v6r, v6a, mustBuild(t, probeSYN(v6a, v6b, 40000))), false},
		{"v4 total length beyond the buffer", edited(rst4, func(b []byte) { IPv4(b).SetTotalLength(200) }), true},
		{"short", rst4[:30], true},
	} {
		if got := maybePartial(tc.pkt); got != tc.want {
			t.Errorf("%s: maybePartial = %v, want %v", tc.name, got, tc.want)
		}
	}
}

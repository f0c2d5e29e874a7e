package wire_test

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"

	"github.com/synprobe/synprobe/rawsock/internal/wiretest"
	"github.com/synprobe/synprobe/rawsock/wire"
)

func TestBuildParseRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    wire.Segment
	}{
		{"v4 SYN with options", wiretest.ProbeSYN(wiretest.V4A, wiretest.V4B, 40000)},
		{"v6 SYN with options", wiretest.ProbeSYN(wiretest.V6A, wiretest.V6B, 40000)},
		{"v4 SYN-ACK", wiretest.SYNACK(wiretest.V4B, wiretest.V4A, 40000)},
		{"v6 SYN-ACK", wiretest.SYNACK(wiretest.V6B, wiretest.V6A, 40000)},
		{"v4 RST", wire.Segment{Src: wiretest.V4A, Dst: wiretest.V4B, TTL: 64, SrcPort: 40001, DstPort: 80, Seq: 0xc0ffee01, Flags: wire.FlagRst}},
		{"v6 RST-ACK", wire.Segment{Src: wiretest.V6B, Dst: wiretest.V6A, TTL: 255, TOS: 0xff, FlowLabel: 0xfffff, SrcPort: 22, DstPort: 65535, Ack: 1, Flags: wire.FlagRst | wire.FlagAck}},
		{"v4 PSH-ACK with payload", wire.Segment{Src: wiretest.V4A, Dst: wiretest.V4B, TTL: 1, TOS: 0xb8, ID: 0xffff, SrcPort: 1, DstPort: 2, Seq: 3, Ack: 4,
			Flags: wire.FlagPsh | wire.FlagAck, Window: 5, Payload: []byte("GET / HTTP/1.0\r\n\r\n")}},
		{"v6 with odd payload", wire.Segment{Src: wiretest.V6A, Dst: wiretest.V6B, TTL: 64, SrcPort: 1, DstPort: 2, Flags: wire.FlagAck, Payload: []byte("odd")}},
		{"v4-mapped", wire.Segment{Src: netip.MustParseAddr("::ffff:192.0.2.1"), Dst: wiretest.V4B, TTL: 64, SrcPort: 7, DstPort: 9, Flags: wire.FlagSyn}},
		{"all flags, max options", wire.Segment{Src: wiretest.V4A, Dst: wiretest.V4B, Flags: 0xff, Options: bytes.Repeat([]byte{1}, 40)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.s
			pkt := wiretest.MustBuild(t, s)
			src, dst := s.Src.Unmap(), s.Dst.Unmap()
			v4 := src.Is4()
			hl := wire.IPv6MinimumSize
			if v4 {
				hl = wire.IPv4MinimumSize
			}
			if want := hl + wire.TCPMinimumSize + len(s.Options) + len(s.Payload); len(pkt) != want || s.Len() != want {
				t.Fatalf("Build = %d bytes, Len = %d, want %d", len(pkt), s.Len(), want)
			}

			// Header fields, through the views.
			if v4 {
				ip := wire.IPv4(pkt)
				if !ip.IsValid(len(pkt)) || !ip.IsChecksumValid() ||
					naiveChecksum(pkt[:wire.IPv4MinimumSize], 0) != 0xffff {
					t.Errorf("bad IPv4 header % x", pkt[:20])
				}
				if pkt[0] != 0x45 || ip.TOS() != s.TOS || int(ip.TotalLength()) != len(pkt) || ip.ID() != s.ID ||
					ip.DF() != s.DF || ip.MF() || ip.FragmentOffset() != 0 || ip.TTL() != s.TTL ||
					ip.Protocol() != 6 || ip.SourceAddress() != src || ip.DestinationAddress() != dst {
					t.Errorf("IPv4 header % x", pkt[:20])
				}
			} else {
				ip := wire.IPv6(pkt)
				if !ip.IsValid(len(pkt)) || pkt[0]>>4 != 6 || ip.TrafficClass() != s.TOS ||
					ip.FlowLabel() != s.FlowLabel || int(ip.PayloadLength()) != len(pkt)-40 ||
					ip.NextHeader() != 6 || ip.HopLimit() != s.TTL ||
					ip.SourceAddress() != src || ip.DestinationAddress() != dst {
					t.Errorf("IPv6 header % x", pkt[:40])
				}
			}
			tcp := wire.TCP(pkt[hl:])
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
			if !tcp.IsChecksumValid(wire.PseudoHeaderChecksum(6, src, dst, uint16(len(tcp)))) {
				t.Error("IsChecksumValid = false")
			}
			if got := tcp.CalculateChecksum(wire.PseudoHeaderChecksum(6, src, dst, uint16(len(tcp)))); got != tcp.Checksum() {
				t.Errorf("CalculateChecksum = %#04x, field %#04x", got, tcp.Checksum())
			}

			var p wire.Packet
			if err := wire.Parse(pkt, &p); err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := wire.Packet{
				Src: src, Dst: dst, TTL: s.TTL, TOS: s.TOS, Proto: 6,
				SrcPort: s.SrcPort, DstPort: s.DstPort, Seq: s.Seq, Ack: s.Ack, Flags: s.Flags,
				Window: s.Window, Options: wire.ParseSYNOptions(s.Options), PayloadLen: len(s.Payload),
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
			if err := wire.Parse(padded, &p); err != nil || p != want {
				t.Errorf("padded: %v, %+v", err, p)
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	buf := make([]byte, 200)
	for _, tc := range []struct {
		name string
		s    wire.Segment
		buf  []byte
		want error
	}{
		{"v4 short", wire.Segment{Src: wiretest.V4A, Dst: wiretest.V4B}, buf[:39], wire.ErrShortBuffer},
		{"v6 short", wire.Segment{Src: wiretest.V6A, Dst: wiretest.V6B}, buf[:59], wire.ErrShortBuffer},
		{"short for payload", wire.Segment{Src: wiretest.V4A, Dst: wiretest.V4B, Payload: make([]byte, 2)}, buf[:41], wire.ErrShortBuffer},
		{"nil buffer", wire.Segment{Src: wiretest.V4A, Dst: wiretest.V4B}, nil, wire.ErrShortBuffer},
		{"mixed families", wire.Segment{Src: wiretest.V4A, Dst: wiretest.V6B}, buf, wire.ErrAddrFamily},
		{"zero addresses", wire.Segment{}, buf, wire.ErrAddrFamily},
		{"zero dst", wire.Segment{Src: wiretest.V6A}, buf, wire.ErrAddrFamily},
		{"options not multiple of 4", wire.Segment{Src: wiretest.V4A, Dst: wiretest.V4B, Options: []byte{1, 1, 1}}, buf, wire.ErrOptionsLength},
		{"options too long", wire.Segment{Src: wiretest.V4A, Dst: wiretest.V4B, Options: make([]byte, 44)}, buf, wire.ErrOptionsLength},
		{"v4 too long", wire.Segment{Src: wiretest.V4A, Dst: wiretest.V4B, Payload: make([]byte, 65536-40)}, make([]byte, 70000), wire.ErrTooLong},
		{"v6 too long", wire.Segment{Src: wiretest.V6A, Dst: wiretest.V6B, Payload: make([]byte, 65536-20)}, make([]byte, 70000), wire.ErrTooLong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := tc.s.Build(tc.buf)
			if !errors.Is(err, tc.want) || n != 0 {
				t.Errorf("Build = %d, %v; want 0, %v", n, err, tc.want)
			}
		})
	}
	// The largest packets still build.
	for _, s := range []wire.Segment{
		{Src: wiretest.V4A, Dst: wiretest.V4B, Payload: make([]byte, 65535-40)},
		{Src: wiretest.V6A, Dst: wiretest.V6B, Payload: make([]byte, 65535-20)},
	} {
		if _, err := s.Build(make([]byte, 70000)); err != nil {
			t.Errorf("max size: %v", err)
		}
	}
}

func TestParseICMPErrors(t *testing.T) {
	syn4 := wiretest.MustBuild(t, wiretest.ProbeSYN(wiretest.V4A, wiretest.V4B, 40000))
	syn6 := wiretest.MustBuild(t, wiretest.ProbeSYN(wiretest.V6A, wiretest.V6B, 40000))
	quote4 := wire.Quote{Src: wiretest.V4A, Dst: wiretest.V4B, SrcPort: 40000, DstPort: 443, Seq: 0xc0ffee00, HasSeq: true, ID: 0x4242}
	quote6 := wire.Quote{Src: wiretest.V6A, Dst: wiretest.V6B, SrcPort: 40000, DstPort: 443, Seq: 0xc0ffee00, HasSeq: true}
	base4 := wire.Packet{Src: wiretest.V4R, Dst: wiretest.V4A, TTL: 250, TOS: 0xc0, ID: 7, Proto: 1, Options: wire.SYNOptions{WScale: -1}}
	base6 := wire.Packet{Src: wiretest.V6R, Dst: wiretest.V6A, TTL: 63, TOS: 0xc0, Proto: 58, Options: wire.SYNOptions{WScale: -1}}
	with := func(p wire.Packet, typ, code uint8, q wire.Quote) wire.Packet {
		p.ICMPType, p.ICMPCode, p.Quoted = typ, code, q
		return p
	}
	for _, tc := range []struct {
		name string
		pkt  []byte
		want wire.Packet
	}{
		{"v4 admin prohibited, 8 bytes of TCP", wiretest.ICMP4Error(3, 13, wiretest.V4R, wiretest.V4A, syn4[:28]), with(base4, 3, 13, quote4)},
		{"v4 port unreachable, whole quote", wiretest.ICMP4Error(3, 3, wiretest.V4R, wiretest.V4A, syn4), with(base4, 3, 3, quote4)},
		{"v4 frag needed", wiretest.ICMP4Error(3, 4, wiretest.V4R, wiretest.V4A, syn4[:28]), with(base4, 3, 4, quote4)},
		{"v4 time exceeded", wiretest.ICMP4Error(11, 0, wiretest.V4R, wiretest.V4A, syn4[:28]), with(base4, 11, 0, quote4)},
		{"v4 parameter problem", wiretest.ICMP4Error(12, 0, wiretest.V4R, wiretest.V4A, syn4), with(base4, 12, 0, quote4)},
		{"v4 ports only", wiretest.ICMP4Error(3, 1, wiretest.V4R, wiretest.V4A, syn4[:24]), with(base4, 3, 1, wire.Quote{Src: wiretest.V4A, Dst: wiretest.V4B, SrcPort: 40000, DstPort: 443, ID: 0x4242})},
		{"v4 quote with IP options", wiretest.ICMP4Error(3, 1, wiretest.V4R, wiretest.V4A, wiretest.WithIPv4Options(syn4, 8)[:36]), with(base4, 3, 1, quote4)},
		{"v4 RFC 4884 padding", wiretest.ICMP4Error(11, 0, wiretest.V4R, wiretest.V4A, append(append([]byte{}, syn4[:28]...), make([]byte, 100)...)), with(base4, 11, 0, quote4)},
		{"v6 no route", wiretest.ICMP6Error(1, 0, wiretest.V6R, wiretest.V6A, syn6[:48]), with(base6, 1, 0, quote6)},
		{"v6 admin prohibited, whole quote", wiretest.ICMP6Error(1, 1, wiretest.V6R, wiretest.V6A, syn6), with(base6, 1, 1, quote6)},
		{"v6 packet too big", wiretest.ICMP6Error(2, 0, wiretest.V6R, wiretest.V6A, syn6), with(base6, 2, 0, quote6)},
		{"v6 time exceeded", wiretest.ICMP6Error(3, 0, wiretest.V6R, wiretest.V6A, syn6), with(base6, 3, 0, quote6)},
		{"v6 parameter problem", wiretest.ICMP6Error(4, 1, wiretest.V6R, wiretest.V6A, syn6), with(base6, 4, 1, quote6)},
		{"v6 ports only", wiretest.ICMP6Error(1, 4, wiretest.V6R, wiretest.V6A, syn6[:44]), with(base6, 1, 4, wire.Quote{Src: wiretest.V6A, Dst: wiretest.V6B, SrcPort: 40000, DstPort: 443})},
		{"v6 quote with ext headers", wiretest.ICMP6Error(1, 4, wiretest.V6R, wiretest.V6A, wiretest.WithExtHeaders(syn6, wiretest.ExtHeader{Kind: 0, Body: make([]byte, 6)},
			wiretest.ExtHeader{Kind: 60, Body: make([]byte, 14)}, wiretest.ExtHeader{Kind: 44, Body: []byte{0, 1, 0, 0, 0, 1}})[:40+8+16+8+8]), with(base6, 1, 4, quote6)},
		{"v6 error with ext headers", wiretest.WithExtHeaders(wiretest.ICMP6Error(3, 0, wiretest.V6R, wiretest.V6A, syn6), wiretest.ExtHeader{Kind: 0, Body: make([]byte, 6)}), with(base6, 3, 0, quote6)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p wire.Packet
			if err := wire.Parse(tc.pkt, &p); err != nil {
				t.Fatalf("Parse: %v", err)
			}
			// The quote runs from Offset to the end of the message.
			q := &p.Quoted
			if q.Offset+q.Length != len(tc.pkt) || q.Length < 8 || tc.pkt[q.Offset]>>4 != tc.pkt[0]>>4 {
				t.Errorf("quote at %d, %d bytes, in %d", q.Offset, q.Length, len(tc.pkt))
			}
			q.Offset, q.Length = 0, 0
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
		hl := wire.IPv4MinimumSize
		if v6 {
			pkt, hl = wiretest.MustBuild(t, wiretest.ProbeSYN(wiretest.V6A, wiretest.V6B, 40000)), wire.IPv6MinimumSize
		} else {
			pkt = wiretest.MustBuild(t, wiretest.ProbeSYN(wiretest.V4A, wiretest.V4B, 40000))
		}
		for n := 0; n <= len(pkt); n++ {
			var b []byte
			if v6 {
				b = wiretest.ICMP6Error(1, 3, wiretest.V6R, wiretest.V6A, pkt[:n])
			} else {
				b = wiretest.ICMP4Error(3, 1, wiretest.V4R, wiretest.V4A, pkt[:n])
			}
			var p wire.Packet
			err := wire.Parse(b, &p)
			switch {
			case n < hl+4:
				if err != wire.ErrTruncated {
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
	syn4 := wiretest.MustBuild(t, wiretest.ProbeSYN(wiretest.V4A, wiretest.V4B, 40000))
	syn6 := wiretest.MustBuild(t, wiretest.ProbeSYN(wiretest.V6A, wiretest.V6B, 40000))
	for _, tc := range []struct {
		name string
		pkt  []byte
	}{
		{"v4 SYN-ACK", wiretest.MustBuild(t, wiretest.SYNACK(wiretest.V4B, wiretest.V4A, 40000))},
		{"v6 SYN-ACK", wiretest.MustBuild(t, wiretest.SYNACK(wiretest.V6B, wiretest.V6A, 40000))},
		{"v4 SYN-ACK with IP options", wiretest.WithIPv4Options(wiretest.MustBuild(t, wiretest.SYNACK(wiretest.V4B, wiretest.V4A, 40000)), 12)},
		{"v6 SYN-ACK with ext headers", wiretest.WithExtHeaders(wiretest.MustBuild(t, wiretest.SYNACK(wiretest.V6B, wiretest.V6A, 40000)), wiretest.ExtHeader{Kind: 0, Body: make([]byte, 6)}, wiretest.ExtHeader{Kind: 43, Body: make([]byte, 22)})},
		{"v4 ICMP error", wiretest.ICMP4Error(3, 13, wiretest.V4R, wiretest.V4A, syn4)},
		{"v6 ICMP error", wiretest.ICMP6Error(1, 1, wiretest.V6R, wiretest.V6A, syn6)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p wire.Packet
			if err := wire.Parse(tc.pkt, &p); err != nil {
				t.Fatalf("whole packet: %v", err)
			}
			for n := range len(tc.pkt) {
				if err := wire.Parse(tc.pkt[:n], &p); err != wire.ErrTruncated {
					t.Errorf("truncated to %d bytes: %v, want ErrTruncated", n, err)
				}
			}
		})
	}
}

func TestParseHostile(t *testing.T) {
	synack4 := wiretest.MustBuild(t, wiretest.SYNACK(wiretest.V4B, wiretest.V4A, 40000))
	synack6 := wiretest.MustBuild(t, wiretest.SYNACK(wiretest.V6B, wiretest.V6A, 40000))
	syn4 := wiretest.MustBuild(t, wiretest.ProbeSYN(wiretest.V4A, wiretest.V4B, 40000))
	syn6 := wiretest.MustBuild(t, wiretest.ProbeSYN(wiretest.V6A, wiretest.V6B, 40000))
	// edit changes a copy of b and fixes its IPv4 header checksum, so that
	// each case fails for the reason it names.
	edit := func(b []byte, f func(b []byte)) []byte {
		b = append([]byte{}, b...)
		f(b)
		if len(b) >= wire.IPv4MinimumSize && b[0]>>4 == 4 {
			ip := wire.IPv4(b)
			ip.SetChecksum(ip.CalculateChecksum())
		}
		return b
	}
	udp4 := edit(syn4, func(b []byte) { b[9] = 17 })
	udp6 := edit(syn6, func(b []byte) { b[6] = 17 })
	destOpts := func(n int) []wiretest.ExtHeader {
		h := make([]wiretest.ExtHeader, n)
		for i := range h {
			h[i] = wiretest.ExtHeader{Kind: 60, Body: make([]byte, 6)}
		}
		return h
	}
	for _, tc := range []struct {
		name string
		pkt  []byte
		want error
	}{
		{"empty", nil, wire.ErrTruncated},
		{"version 0", edit(synack4, func(b []byte) { b[0] = 0x05 }), wire.ErrMalformed},
		{"version 5", edit(synack4, func(b []byte) { b[0] = 0x55 }), wire.ErrMalformed},
		{"IHL 0", edit(synack4, func(b []byte) { b[0] = 0x40 }), wire.ErrMalformed},
		{"IHL 4", edit(synack4, func(b []byte) { b[0] = 0x44 }), wire.ErrMalformed},
		{"IHL beyond total length", edit(synack4, func(b []byte) { b[0] = 0x4f; wire.IPv4(b).SetTotalLength(40) }), wire.ErrMalformed},
		{"IHL beyond buffer", edit(synack4[:24], func(b []byte) { b[0] = 0x46; wire.IPv4(b).SetTotalLength(24) }), wire.ErrTruncated},
		{"total length below IHL", edit(synack4, func(b []byte) { wire.IPv4(b).SetTotalLength(19) }), wire.ErrMalformed},
		{"total length beyond buffer", edit(synack4, func(b []byte) { wire.IPv4(b).SetTotalLength(uint16(len(b) + 1)) }), wire.ErrTruncated},
		{"total length cuts TCP", edit(synack4, func(b []byte) { wire.IPv4(b).SetTotalLength(39) }), wire.ErrTruncated},
		{"total length cuts options", edit(synack4, func(b []byte) { wire.IPv4(b).SetTotalLength(44) }), wire.ErrMalformed},
		{"data offset 0", edit(synack4, func(b []byte) { b[20+12] = 0x00 }), wire.ErrMalformed},
		{"data offset 4", edit(synack4, func(b []byte) { b[20+12] = 0x40 }), wire.ErrMalformed},
		{"data offset 15", edit(synack4, func(b []byte) { b[20+12] = 0xf0 }), wire.ErrMalformed},
		{"v6 data offset 15", edit(synack6, func(b []byte) { b[40+12] = 0xf0 }), wire.ErrMalformed},
		{"v4 UDP", udp4, wire.ErrUnsupported},
		{"v6 UDP", udp6, wire.ErrUnsupported},
		{"v6 no next header", edit(synack6, func(b []byte) { b[6] = 59 }), wire.ErrUnsupported},
		{"v4 non-first fragment", edit(synack4, func(b []byte) { wire.IPv4(b).SetFlagsFragmentOffset(0, 8) }), wire.ErrUnsupported},
		{"v4 last fragment", edit(synack4, func(b []byte) { wire.IPv4(b).SetFlagsFragmentOffset(wire.IPv4FlagDontFragment, 1480) }), wire.ErrUnsupported},
		{"v4 first fragment", edit(synack4, func(b []byte) { wire.IPv4(b).SetFlagsFragmentOffset(wire.IPv4FlagMoreFragments, 0) }), wire.ErrUnsupported},
		{"v4 IP options", wiretest.WithIPv4Options(synack4, 4), nil},
		{"v4 IP options 40", wiretest.WithIPv4Options(synack4, 40), nil},
		{"v6 hop-by-hop, routing, dest opts", wiretest.WithExtHeaders(synack6, wiretest.ExtHeader{Kind: 0, Body: make([]byte, 14)}, wiretest.ExtHeader{Kind: 43, Body: make([]byte, 6)}, wiretest.ExtHeader{Kind: 60, Body: make([]byte, 6)}), nil},
		{"v6 first fragment", wiretest.WithExtHeaders(synack6, wiretest.ExtHeader{Kind: 44, Body: []byte{0, 1, 1, 2, 3, 4}}), wire.ErrUnsupported},
		{"v6 atomic fragment", wiretest.WithExtHeaders(synack6, wiretest.ExtHeader{Kind: 44, Body: []byte{0, 0, 1, 2, 3, 4}}), nil},
		{"v6 non-first fragment", wiretest.WithExtHeaders(synack6, wiretest.ExtHeader{Kind: 44, Body: []byte{0, 8, 1, 2, 3, 4}}), wire.ErrUnsupported},
		{"v6 fragment reserved bits", wiretest.WithExtHeaders(synack6, wiretest.ExtHeader{Kind: 44, Body: []byte{0, 6, 1, 2, 3, 4}}), nil},
		{"v6 8 ext headers", wiretest.WithExtHeaders(synack6, destOpts(8)...), nil},
		{"v6 9 ext headers", wiretest.WithExtHeaders(synack6, destOpts(9)...), wire.ErrUnsupported},
		{"v6 ext header chain that loops", wiretest.WithExtHeaders(synack6[:40], destOpts(10)...), wire.ErrUnsupported},
		{"v6 ext header length beyond payload", edit(wiretest.WithExtHeaders(synack6, wiretest.ExtHeader{Kind: 60, Body: make([]byte, 6)}), func(b []byte) { b[41] = 200 }), wire.ErrMalformed},
		{"v6 ext header cut", edit(synack6[:44], func(b []byte) { b[6] = 0; wire.IPv6(b).SetPayloadLength(4) }), wire.ErrTruncated},
		{"v6 fragment header cut", edit(synack6[:44], func(b []byte) { b[6] = 44; wire.IPv6(b).SetPayloadLength(4) }), wire.ErrTruncated},
		{"v4 ICMP echo request", wiretest.ICMP4Error(8, 0, wiretest.V4R, wiretest.V4A, syn4), wire.ErrUnsupported},
		{"v4 ICMP echo reply", wiretest.ICMP4Error(0, 0, wiretest.V4R, wiretest.V4A, nil), wire.ErrUnsupported},
		{"v4 ICMP source quench", wiretest.ICMP4Error(4, 0, wiretest.V4R, wiretest.V4A, syn4), wire.ErrUnsupported},
		{"v4 ICMP redirect", wiretest.ICMP4Error(5, 1, wiretest.V4R, wiretest.V4A, syn4), wire.ErrUnsupported},
		{"v4 ICMP short", wiretest.ICMP4Error(3, 0, wiretest.V4R, wiretest.V4A, nil)[:27], wire.ErrTruncated},
		{"v4 ICMP quoting UDP", wiretest.ICMP4Error(3, 3, wiretest.V4R, wiretest.V4A, udp4[:28]), wire.ErrUnsupported},
		{"v4 ICMP quoting ICMP", wiretest.ICMP4Error(3, 3, wiretest.V4R, wiretest.V4A, wiretest.ICMP4Error(8, 0, wiretest.V4A, wiretest.V4B, nil)), wire.ErrUnsupported},
		{"v4 ICMP quoting IPv6", wiretest.ICMP4Error(3, 3, wiretest.V4R, wiretest.V4A, syn6), wire.ErrMalformed},
		{"v4 ICMP quote IHL 4", wiretest.ICMP4Error(3, 3, wiretest.V4R, wiretest.V4A, edit(syn4, func(b []byte) { b[0] = 0x44 })), wire.ErrMalformed},
		{"v4 ICMP quote IHL beyond quote", wiretest.ICMP4Error(3, 3, wiretest.V4R, wiretest.V4A, edit(syn4[:28], func(b []byte) { b[0] = 0x48 })), wire.ErrTruncated},
		{"v4 ICMP quoting a non-first fragment", wiretest.ICMP4Error(11, 1, wiretest.V4R, wiretest.V4A, edit(syn4, func(b []byte) { wire.IPv4(b).SetFlagsFragmentOffset(0, 64) })), wire.ErrUnsupported},
		{"v6 ICMPv6 echo request", wiretest.ICMP6Error(128, 0, wiretest.V6R, wiretest.V6A, syn6), wire.ErrUnsupported},
		{"v6 ICMPv6 neighbor solicitation", wiretest.ICMP6Error(135, 0, wiretest.V6R, wiretest.V6A, nil), wire.ErrUnsupported},
		{"v6 ICMPv6 type 0", wiretest.ICMP6Error(0, 0, wiretest.V6R, wiretest.V6A, syn6), wire.ErrUnsupported},
		{"v6 ICMPv6 short", wiretest.ICMP6Error(1, 0, wiretest.V6R, wiretest.V6A, nil)[:47], wire.ErrTruncated},
		{"v6 ICMPv6 quoting UDP", wiretest.ICMP6Error(1, 4, wiretest.V6R, wiretest.V6A, udp6), wire.ErrUnsupported},
		{"v6 ICMPv6 quoting IPv4", wiretest.ICMP6Error(1, 4, wiretest.V6R, wiretest.V6A, append(syn4, make([]byte, 40)...)), wire.ErrMalformed},
		{"v6 ICMPv6 quote ext header cut", wiretest.ICMP6Error(1, 4, wiretest.V6R, wiretest.V6A, wiretest.WithExtHeaders(syn6, wiretest.ExtHeader{Kind: 60, Body: make([]byte, 22)})[:60]), wire.ErrTruncated},
		{"v6 ICMPv6 quoting a non-first fragment", wiretest.ICMP6Error(1, 4, wiretest.V6R, wiretest.V6A, wiretest.WithExtHeaders(syn6, wiretest.ExtHeader{Kind: 44, Body: []byte{0, 16, 0, 0, 0, 1}})), wire.ErrUnsupported},
		{"v6 ICMPv6 quote with 9 ext headers", wiretest.ICMP6Error(1, 4, wiretest.V6R, wiretest.V6A, wiretest.WithExtHeaders(syn6, destOpts(9)...)), wire.ErrUnsupported},
		{"v4 ICMP in IPv6", edit(wiretest.ICMP6Error(3, 3, wiretest.V6R, wiretest.V6A, syn4), func(b []byte) { b[6] = 1 }), wire.ErrUnsupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p wire.Packet
			if err := wire.Parse(tc.pkt, &p); err != tc.want {
				t.Errorf("Parse = %v, want %v (%+v)", err, tc.want, p)
			}
		})
	}
}

func TestParseResets(t *testing.T) {
	synack := wiretest.MustBuild(t, wiretest.SYNACK(wiretest.V4B, wiretest.V4A, 40000))
	icmp := wiretest.ICMP6Error(1, 1, wiretest.V6R, wiretest.V6A, wiretest.MustBuild(t, wiretest.ProbeSYN(wiretest.V6A, wiretest.V6B, 40000)))
	var a, b wire.Packet
	if err := wire.Parse(icmp, &a); err != nil {
		t.Fatal(err)
	}
	if err := wire.Parse(synack, &a); err != nil {
		t.Fatal(err)
	}
	if err := wire.Parse(synack, &b); err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Errorf("reused Packet %+v, fresh %+v", a, b)
	}
	_ = wire.Parse(nil, &a)
	if a != (wire.Packet{Options: wire.SYNOptions{WScale: -1}}) {
		t.Errorf("after error: %+v", a)
	}
}

func TestIPv4View(t *testing.T) {
	b := make(wire.IPv4, 24)
	b.SetHeaderLength(24)
	b.SetTOS(0xb8)
	b.SetTotalLength(24)
	b.SetID(0xabcd)
	b.SetFlagsFragmentOffset(wire.IPv4FlagDontFragment|wire.IPv4FlagMoreFragments, 0x1fff*8)
	b.SetTTL(3)
	b.SetProtocol(17)
	b.SetSourceAddress(wiretest.V4A)
	b.SetDestinationAddress(netip.MustParseAddr("::ffff:198.51.100.7"))
	b.SetChecksum(b.CalculateChecksum())
	if b.Version() != 4 || b.HeaderLength() != 24 || b.TOS() != 0xb8 || b.TotalLength() != 24 || b.ID() != 0xabcd ||
		b.Flags() != 3 || !b.DF() || !b.MF() || b.FragmentOffset() != 0x1fff*8 || b.TTL() != 3 || b.Protocol() != 17 ||
		b.SourceAddress() != wiretest.V4A || b.DestinationAddress() != wiretest.V4B || !b.IsChecksumValid() || len(b.Options()) != 4 ||
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
	b := make(wire.IPv6, 48)
	b.SetTrafficClass(0xab)
	b.SetFlowLabel(0xfedcba9)
	b.SetPayloadLength(8)
	b.SetNextHeader(6)
	b.SetHopLimit(255)
	b.SetSourceAddress(wiretest.V6A)
	b.SetDestinationAddress(wiretest.V6B)
	if b.Version() != 6 || b.TrafficClass() != 0xab || b.FlowLabel() != 0xdcba9 || b.PayloadLength() != 8 ||
		b.NextHeader() != 6 || b.HopLimit() != 255 || b.SourceAddress() != wiretest.V6A || b.DestinationAddress() != wiretest.V6B ||
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
	syn4, syn6 := wiretest.ProbeSYN(wiretest.V4A, wiretest.V4B, 40000), wiretest.ProbeSYN(wiretest.V6A, wiretest.V6B, 40000)
	synack := wiretest.MustBuild(t, wiretest.SYNACK(wiretest.V4B, wiretest.V4A, 40000))
	icmp6 := wiretest.WithExtHeaders(wiretest.ICMP6Error(1, 1, wiretest.V6R, wiretest.V6A, wiretest.MustBuild(t, wiretest.ProbeSYN(wiretest.V6A, wiretest.V6B, 40000))), wiretest.ExtHeader{Kind: 0, Body: make([]byte, 6)})
	c := wire.NewCookie([16]byte{1, 2, 3})
	var p wire.Packet
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"Build v4", func() { _, _ = syn4.Build(buf) }},
		{"Build v6", func() { _, _ = syn6.Build(buf) }},
		{"Parse v4 SYN-ACK", func() { _ = wire.Parse(synack, &p) }},
		{"Parse v6 ICMPv6", func() { _ = wire.Parse(icmp6, &p) }},
		{"Parse error", func() { _ = wire.Parse(synack[:30], &p) }},
		{"ISN", func() { _ = c.ISN(wiretest.V6A, wiretest.V6B, 40000, 443, 1) }},
		{"ICMPReason", func() { _ = wire.ICMPReason(true, 1, 1) }},
		{"TCPFlags.String", func() { _ = wire.FlagRst.String() }},
	} {
		if n := testing.AllocsPerRun(100, tc.f); n != 0 {
			t.Errorf("%s: %v allocs, want 0", tc.name, n)
		}
	}
}

func BenchmarkBuildSYN(b *testing.B) {
	for _, s := range []wire.Segment{wiretest.ProbeSYN(wiretest.V4A, wiretest.V4B, 40000), wiretest.ProbeSYN(wiretest.V6A, wiretest.V6B, 40000)} {
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
	syn6 := wiretest.MustBuild(b, wiretest.ProbeSYN(wiretest.V6A, wiretest.V6B, 40000))
	for _, tc := range []struct {
		name string
		pkt  []byte
	}{
		{"IPv4SYNACK", wiretest.MustBuild(b, wiretest.SYNACK(wiretest.V4B, wiretest.V4A, 40000))},
		{"IPv6SYNACK", wiretest.MustBuild(b, wiretest.SYNACK(wiretest.V6B, wiretest.V6A, 40000))},
		{"ICMPv6", wiretest.ICMP6Error(1, 1, wiretest.V6R, wiretest.V6A, syn6)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var p wire.Packet
			b.ReportAllocs()
			for b.Loop() {
				if err := wire.Parse(tc.pkt, &p); err != nil {
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
	rst4 := wiretest.MustBuild(t, wire.Segment{Src: wiretest.V4B, Dst: wiretest.V4A, TTL: 64, SrcPort: 443, DstPort: 40000, Ack: 1, Flags: wire.FlagRst | wire.FlagAck})
	synack6 := wiretest.MustBuild(t, wiretest.SYNACK(wiretest.V6B, wiretest.V6A, 40000))
	data4 := wiretest.MustBuild(t, wire.Segment{Src: wiretest.V4B, Dst: wiretest.V4A, TTL: 64, SrcPort: 443, DstPort: 40000, Flags: wire.FlagAck | wire.FlagPsh, Payload: []byte("odd-length payload")})
	icmp4 := wiretest.ICMP4Error(3, 13, wiretest.V4R, wiretest.V4A, wiretest.MustBuild(t, wiretest.ProbeSYN(wiretest.V4A, wiretest.V4B, 40000))[:28])
	icmp6 := wiretest.ICMP6Error(1, 4, wiretest.V6R, wiretest.V6A, wiretest.MustBuild(t, wiretest.ProbeSYN(wiretest.V6A, wiretest.V6B, 40000)))
	tcpSum4 := wire.IPv4MinimumSize + wire.TCPChecksumOffset
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
		{"v4 RST, TCP sum off by one", badSum(rst4, tcpSum4), want{wire.ErrChecksum, nil, wire.ErrChecksum}},
		{"v4 RST, TCP sum zero", wiretest.Edited(rst4, func(b []byte) { wire.TCP(b[wire.IPv4MinimumSize:]).SetChecksum(0) }), want{wire.ErrChecksum, nil, wire.ErrChecksum}},
		{"v4 RST, ack bit flipped", wiretest.Edited(rst4, func(b []byte) { b[wire.IPv4MinimumSize+13] ^= 0x10 }), want{wire.ErrChecksum, nil, wire.ErrChecksum}},
		{"v4 data, payload byte changed", wiretest.Edited(data4, func(b []byte) { b[len(b)-1] ^= 1 }), want{wire.ErrChecksum, nil, wire.ErrChecksum}},
		{"v6 SYN-ACK, TCP sum off by one", badSum(synack6, wire.IPv6MinimumSize+wire.TCPChecksumOffset), want{wire.ErrChecksum, nil, wire.ErrChecksum}},
		{"v4 RST, partial sum", partialSum(rst4), want{nil, nil, wire.ErrChecksum}},
		{"v4 data, partial sum", partialSum(data4), want{nil, nil, wire.ErrChecksum}},
		{"v6 SYN-ACK, partial sum", partialSum(synack6), want{nil, nil, wire.ErrChecksum}},
		{"v4 RST, IP header sum off by one", badSum(rst4, wire.IPv4ChecksumOffset), want{wire.ErrChecksum, wire.ErrChecksum, wire.ErrChecksum}},
		{"v4 RST, TTL changed", wiretest.Edited(rst4, func(b []byte) { b[wire.IPv4TTLOffset]-- }), want{wire.ErrChecksum, wire.ErrChecksum, wire.ErrChecksum}},
		{"v4 ICMP sum off by one", badSum(icmp4, wire.IPv4MinimumSize+wire.ICMPChecksumOffset), want{wire.ErrChecksum, nil, wire.ErrChecksum}},
		{"v4 ICMP quote changed", wiretest.Edited(icmp4, func(b []byte) { b[len(b)-1] ^= 0x80 }), want{wire.ErrChecksum, nil, wire.ErrChecksum}},
		{"v6 ICMPv6 sum off by one", badSum(icmp6, wire.IPv6MinimumSize+wire.ICMPChecksumOffset), want{wire.ErrChecksum, nil, wire.ErrChecksum}},
		{"v6 ICMPv6 to another address", wiretest.Edited(icmp6, func(b []byte) { b[39] ^= 1 }), want{wire.ErrChecksum, nil, wire.ErrChecksum}},
	} {
		for i, cs := range []wire.Checksums{wire.ChecksumsUnknown, wire.ChecksumsNotReady, wire.ChecksumsVerify} {
			var p wire.Packet
			if err := wire.ParseChecksums(tc.pkt, &p, cs); err != tc.want[i] {
				t.Errorf("%s, mode %d: %v, want %v", tc.name, cs, err, tc.want[i])
			}
		}
		var p wire.Packet
		if err := wire.Parse(tc.pkt, &p); err != tc.want[0] {
			t.Errorf("%s: Parse = %v, want %v", tc.name, err, tc.want[0])
		}
	}
}

// TestMaybePartial: the Ring's cheap test for the partial checksum form
// rules out only what cannot be in it.
func TestMaybePartial(t *testing.T) {
	rst4 := wiretest.MustBuild(t, wire.Segment{Src: wiretest.V4B, Dst: wiretest.V4A, TTL: 64, SrcPort: 443, DstPort: 40000, Ack: 1, Flags: wire.FlagRst | wire.FlagAck})
	synack6 := wiretest.MustBuild(t, wiretest.SYNACK(wiretest.V6B, wiretest.V6A, 40000))
	for _, tc := range []struct {
		name string
		pkt  []byte
		want bool
	}{
		{"v4 full", rst4, false},
		{"v4 partial", partialSum(rst4), true},
		{"v4 wrong", badSum(rst4, wire.IPv4MinimumSize+wire.TCPChecksumOffset), false},
		{"v6 full", synack6, false},
		{"v6 partial", partialSum(synack6), true},
		{"v4 IP options: not looked into", wiretest.WithIPv4Options(rst4, 4), true},
		{"v6 extension headers: not looked into", wiretest.WithExtHeaders(synack6, wiretest.ExtHeader{Kind: 60, Body: make([]byte, 6)}), true},
		{"v4 ICMP", wiretest.ICMP4Error(3, 13, wiretest.V4R, wiretest.V4A, wiretest.MustBuild(t, wiretest.ProbeSYN(wiretest.V4A, wiretest.V4B, 40000))[:28]), false},
		{"v6 ICMPv6", wiretest.ICMP6Error(1, 4, wiretest.V6R, wiretest.V6A, wiretest.MustBuild(t, wiretest.ProbeSYN(wiretest.V6A, wiretest.V6B, 40000))), false},
		{"v4 total length beyond the buffer", wiretest.Edited(rst4, func(b []byte) { wire.IPv4(b).SetTotalLength(200) }), true},
		{"short", rst4[:30], true},
	} {
		if got := wire.MaybePartial(tc.pkt); got != tc.want {
			t.Errorf("%s: MaybePartial = %v, want %v", tc.name, got, tc.want)
		}
	}
}

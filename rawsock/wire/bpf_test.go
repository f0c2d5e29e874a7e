package wire_test

import (
	"fmt"
	"net/netip"
	"testing"

	"golang.org/x/net/bpf"

	"github.com/synprobe/synprobe/rawsock/internal/wiretest"
	"github.com/synprobe/synprobe/rawsock/wire"
)

func TestTCPFilterIPv4(t *testing.T) {
	reply := func(dport uint16) []byte {
		return wiretest.MustBuild(t, wiretest.SYNACK(wiretest.V4B, wiretest.V4A, dport))
	}
	in := reply(40500)
	// A reply whose real destination port is outside the range, but with IP
	// options such that the bytes at offset 22 of a 20-byte header would be
	// in range: the filter must use the IHL.
	opt := wiretest.WithIPv4Options(reply(80), 4)
	opt[wire.IPv4MinimumSize+2], opt[wire.IPv4MinimumSize+3] = byte(40500>>8), byte(40500&0xff)
	wiretest.CheckFilter(t, wire.TCPFilterIPv4(wiretest.FilterLo, wiretest.FilterHi), []wiretest.FilterCase{
		{Name: "lo", Pkt: reply(wiretest.FilterLo), Accept: true},
		{Name: "hi", Pkt: reply(wiretest.FilterHi), Accept: true},
		{Name: "inside", Pkt: in, Accept: true},
		{Name: "below", Pkt: reply(wiretest.FilterLo - 1), Accept: false},
		{Name: "above", Pkt: reply(wiretest.FilterHi + 1), Accept: false},
		{Name: "port 0", Pkt: reply(0), Accept: false},
		{Name: "port 65535", Pkt: reply(65535), Accept: false},
		{Name: "RST", Pkt: wiretest.MustBuild(t, wire.Segment{Src: wiretest.V4B, Dst: wiretest.V4A, SrcPort: 443, DstPort: 40000, Flags: wire.FlagRst | wire.FlagAck}), Accept: true},
		{Name: "source port in range only", Pkt: wiretest.MustBuild(t, wire.Segment{Src: wiretest.V4B, Dst: wiretest.V4A, SrcPort: 40500, DstPort: 443}), Accept: false},
		{Name: "IHL 6", Pkt: wiretest.WithIPv4Options(in, 4), Accept: true},
		{Name: "IHL 15", Pkt: wiretest.WithIPv4Options(in, 40), Accept: true},
		{Name: "IHL 6, port beyond 20-byte header", Pkt: opt, Accept: false},
		{Name: "UDP", Pkt: wiretest.Edited(in, func(b []byte) { b[9] = 17 }), Accept: false},
		{Name: "ICMP", Pkt: wiretest.Edited(in, func(b []byte) { b[9] = 1 }), Accept: false},
		{Name: "non-first fragment", Pkt: wiretest.Edited(in, func(b []byte) { wire.IPv4(b).SetFlagsFragmentOffset(0, 8) }), Accept: false},
		{Name: "last fragment", Pkt: wiretest.Edited(in, func(b []byte) { wire.IPv4(b).SetFlagsFragmentOffset(wire.IPv4FlagDontFragment, 0x1fff*8) }), Accept: false},
		{Name: "first fragment", Pkt: wiretest.Edited(in, func(b []byte) { wire.IPv4(b).SetFlagsFragmentOffset(wire.IPv4FlagMoreFragments, 0) }), Accept: true},
		{Name: "DF", Pkt: wiretest.Edited(in, func(b []byte) { wire.IPv4(b).SetFlagsFragmentOffset(wire.IPv4FlagDontFragment, 0) }), Accept: true},
		{Name: "short: no ports", Pkt: in[:22], Accept: false},
		{Name: "short: half a port", Pkt: in[:23], Accept: false},
		{Name: "short: ports only", Pkt: in[:24], Accept: true},
		{Name: "short: no protocol", Pkt: in[:9], Accept: false},
		{Name: "empty", Pkt: nil, Accept: false},
	})
	wiretest.CheckFilter(t, wire.TCPFilterIPv4(443, 443), []wiretest.FilterCase{
		{Name: "single port", Pkt: reply(443), Accept: true},
		{Name: "single port, next", Pkt: reply(444), Accept: false},
	})
	wiretest.CheckFilter(t, wire.TCPFilterIPv4(0, 65535), []wiretest.FilterCase{
		{Name: "full range 0", Pkt: reply(0), Accept: true},
		{Name: "full range 65535", Pkt: reply(65535), Accept: true},
	})
	wiretest.CheckFilter(t, wire.TCPFilterIPv4(wiretest.FilterHi, wiretest.FilterLo), []wiretest.FilterCase{
		{Name: "lo > hi", Pkt: in, Accept: false},
	})
}

func TestTCPFilterIPv6(t *testing.T) {
	// AF_INET6 raw sockets deliver the TCP header first.
	reply := func(dport uint16) []byte {
		return wiretest.MustBuild(t, wiretest.SYNACK(wiretest.V6B, wiretest.V6A, dport))[wire.IPv6MinimumSize:]
	}
	wiretest.CheckFilter(t, wire.TCPFilterIPv6(wiretest.FilterLo, wiretest.FilterHi), []wiretest.FilterCase{
		{Name: "lo", Pkt: reply(wiretest.FilterLo), Accept: true},
		{Name: "hi", Pkt: reply(wiretest.FilterHi), Accept: true},
		{Name: "inside", Pkt: reply(40123), Accept: true},
		{Name: "below", Pkt: reply(wiretest.FilterLo - 1), Accept: false},
		{Name: "above", Pkt: reply(wiretest.FilterHi + 1), Accept: false},
		{Name: "source port in range only", Pkt: wiretest.MustBuild(t, wire.Segment{Src: wiretest.V6B, Dst: wiretest.V6A, SrcPort: 40500, DstPort: 443})[wire.IPv6MinimumSize:], Accept: false},
		{Name: "short", Pkt: reply(40123)[:3], Accept: false},
		{Name: "ports only", Pkt: reply(40123)[:4], Accept: true},
		{Name: "empty", Pkt: nil, Accept: false},
	})
}

func TestICMPFilterIPv4(t *testing.T) {
	syn := func(sport uint16) []byte {
		return wiretest.MustBuild(t, wiretest.ProbeSYN(wiretest.V4A, wiretest.V4B, sport))
	}
	icmp := func(typ uint8, quote []byte) []byte {
		return wiretest.ICMP4Error(typ, 0, wiretest.V4R, wiretest.V4A, quote)
	}
	in := syn(40500)
	// Quote whose real source port is outside the range but with bytes in
	// range where a 20-byte quoted header would put it.
	opt := wiretest.WithIPv4Options(syn(80), 4)
	opt[wire.IPv4MinimumSize], opt[wire.IPv4MinimumSize+1] = byte(40500>>8), byte(40500&0xff)
	wiretest.CheckFilter(t, wire.ICMPFilterIPv4(wiretest.FilterLo, wiretest.FilterHi), []wiretest.FilterCase{
		{Name: "dest unreachable", Pkt: icmp(3, in[:28]), Accept: true},
		{Name: "time exceeded", Pkt: icmp(11, in[:28]), Accept: true},
		{Name: "parameter problem", Pkt: icmp(12, in), Accept: true},
		{Name: "lo", Pkt: icmp(3, syn(wiretest.FilterLo)[:28]), Accept: true},
		{Name: "hi", Pkt: icmp(3, syn(wiretest.FilterHi)[:28]), Accept: true},
		{Name: "below", Pkt: icmp(3, syn(wiretest.FilterLo - 1)[:28]), Accept: false},
		{Name: "above", Pkt: icmp(3, syn(wiretest.FilterHi + 1)[:28]), Accept: false},
		{Name: "destination port in range only", Pkt: icmp(3, wiretest.MustBuild(t, wire.Segment{Src: wiretest.V4A, Dst: wiretest.V4B, SrcPort: 80, DstPort: 40500})), Accept: false},
		{Name: "echo reply", Pkt: icmp(0, in[:28]), Accept: false},
		{Name: "echo request", Pkt: icmp(8, in[:28]), Accept: false},
		{Name: "source quench", Pkt: icmp(4, in[:28]), Accept: false},
		{Name: "redirect", Pkt: icmp(5, in[:28]), Accept: false},
		{Name: "timestamp", Pkt: icmp(13, in[:28]), Accept: false},
		{Name: "quoting UDP", Pkt: icmp(3, wiretest.Edited(in[:28], func(b []byte) { b[9] = 17 })), Accept: false},
		{Name: "quoting a non-first fragment", Pkt: icmp(3, wiretest.Edited(in[:28], func(b []byte) { wire.IPv4(b).SetFlagsFragmentOffset(0, 8) })), Accept: false},
		{Name: "quoting a first fragment", Pkt: icmp(3, wiretest.Edited(in[:28], func(b []byte) { wire.IPv4(b).SetFlagsFragmentOffset(wire.IPv4FlagMoreFragments, 0) })), Accept: true},
		{Name: "quoting IPv6", Pkt: icmp(3, wiretest.Edited(in[:28], func(b []byte) { b[0] = 0x65 })), Accept: false},
		{Name: "quoted IHL 4", Pkt: icmp(3, wiretest.Edited(in[:28], func(b []byte) { b[0] = 0x44 })), Accept: false},
		{Name: "quoted IHL 6", Pkt: icmp(3, wiretest.WithIPv4Options(in, 4)[:32]), Accept: true},
		{Name: "quoted IHL 15", Pkt: icmp(3, wiretest.WithIPv4Options(in, 40)[:68]), Accept: true},
		{Name: "quoted IHL 6, port beyond a 20-byte header", Pkt: icmp(3, opt[:32]), Accept: false},
		{Name: "outer IHL 6", Pkt: wiretest.WithIPv4Options(icmp(3, in[:28]), 4), Accept: true},
		{Name: "outer IHL 15 and quoted IHL 15", Pkt: wiretest.WithIPv4Options(icmp(11, wiretest.WithIPv4Options(in, 40)[:68]), 40), Accept: true},
		{Name: "outer not ICMP", Pkt: wiretest.Edited(icmp(3, in[:28]), func(b []byte) { b[9] = 6 }), Accept: false},
		{Name: "outer non-first fragment", Pkt: wiretest.Edited(icmp(3, in[:28]), func(b []byte) { wire.IPv4(b).SetFlagsFragmentOffset(0, 8) }), Accept: false},
		{Name: "quote: ports only", Pkt: icmp(3, in[:24]), Accept: true},
		{Name: "quote: half a port", Pkt: icmp(3, in[:21]), Accept: false},
		{Name: "quote: IP header only", Pkt: icmp(3, in[:20]), Accept: false},
		{Name: "quote: cut IP header", Pkt: icmp(3, in[:12]), Accept: false},
		{Name: "no quote", Pkt: icmp(3, nil), Accept: false},
		{Name: "short", Pkt: icmp(3, in[:28])[:22], Accept: false},
		{Name: "empty", Pkt: nil, Accept: false},
	})
	wiretest.CheckFilter(t, wire.ICMPFilterIPv4(wiretest.FilterHi, wiretest.FilterLo), []wiretest.FilterCase{
		{Name: "lo > hi", Pkt: icmp(3, in), Accept: false},
	})
}

func TestICMPFilterIPv6(t *testing.T) {
	syn := func(sport uint16) []byte {
		return wiretest.MustBuild(t, wiretest.ProbeSYN(wiretest.V6A, wiretest.V6B, sport))
	}
	// AF_INET6 raw sockets deliver the ICMPv6 header first.
	icmp := func(typ uint8, quote []byte) []byte {
		return wiretest.ICMP6Error(typ, 0, wiretest.V6R, wiretest.V6A, quote)[wire.IPv6MinimumSize:]
	}
	in := syn(40500)
	wiretest.CheckFilter(t, wire.ICMPFilterIPv6(wiretest.FilterLo, wiretest.FilterHi), []wiretest.FilterCase{
		{Name: "dest unreachable", Pkt: icmp(1, in), Accept: true},
		{Name: "packet too big", Pkt: icmp(2, in), Accept: true},
		{Name: "time exceeded", Pkt: icmp(3, in), Accept: true},
		{Name: "parameter problem", Pkt: icmp(4, in), Accept: true},
		{Name: "lo", Pkt: icmp(1, syn(wiretest.FilterLo)), Accept: true},
		{Name: "hi", Pkt: icmp(1, syn(wiretest.FilterHi)), Accept: true},
		{Name: "below", Pkt: icmp(1, syn(wiretest.FilterLo-1)), Accept: false},
		{Name: "above", Pkt: icmp(1, syn(wiretest.FilterHi+1)), Accept: false},
		{Name: "destination port in range only", Pkt: icmp(1, wiretest.MustBuild(t, wire.Segment{Src: wiretest.V6A, Dst: wiretest.V6B, SrcPort: 80, DstPort: 40500})), Accept: false},
		{Name: "type 0", Pkt: icmp(0, in), Accept: false},
		{Name: "type 5", Pkt: icmp(5, in), Accept: false},
		{Name: "echo request", Pkt: icmp(128, in), Accept: false},
		{Name: "echo reply", Pkt: icmp(129, in), Accept: false},
		{Name: "neighbor advertisement", Pkt: icmp(136, in), Accept: false},
		{Name: "quoting UDP", Pkt: icmp(1, wiretest.Edited(in, func(b []byte) { b[6] = 17 })), Accept: false},
		{Name: "quoting ext headers", Pkt: icmp(1, wiretest.WithExtHeaders(in, wiretest.ExtHeader{Kind: 60, Body: make([]byte, 6)})), Accept: false},
		{Name: "quote: ports only", Pkt: icmp(1, in[:44]), Accept: true},
		{Name: "quote: half a port", Pkt: icmp(1, in[:41]), Accept: false},
		{Name: "quote: IP header only", Pkt: icmp(1, in[:40]), Accept: false},
		{Name: "no quote", Pkt: icmp(1, nil), Accept: false},
		{Name: "empty", Pkt: nil, Accept: false},
	})
}

// TestFiltersAgreeWithParse checks that what the filters accept, Parse
// accepts with the port in range.
func TestFiltersAgreeWithParse(t *testing.T) {
	ports := []uint16{0, wiretest.FilterLo - 1, wiretest.FilterLo, 40500, wiretest.FilterHi, wiretest.FilterHi + 1, 65535}
	for _, port := range ports {
		for _, pkt := range [][]byte{
			wiretest.MustBuild(t, wiretest.SYNACK(wiretest.V4B, wiretest.V4A, port)),
			wiretest.ICMP4Error(3, 13, wiretest.V4R, wiretest.V4A, wiretest.MustBuild(t, wiretest.ProbeSYN(wiretest.V4A, wiretest.V4B, port))[:28]),
			wiretest.MustBuild(t, wiretest.SYNACK(wiretest.V6B, wiretest.V6A, port)),
			wiretest.ICMP6Error(1, 1, wiretest.V6R, wiretest.V6A, wiretest.MustBuild(t, wiretest.ProbeSYN(wiretest.V6A, wiretest.V6B, port))),
		} {
			var prog []bpf.Instruction
			data := pkt
			v6 := pkt[0]>>4 == 6
			isICMP := !v6 && pkt[9] == wire.ProtocolICMP || v6 && pkt[6] == wire.ProtocolICMPv6
			switch {
			case !v6 && !isICMP:
				prog = wire.TCPFilterIPv4(wiretest.FilterLo, wiretest.FilterHi)
			case !v6:
				prog = wire.ICMPFilterIPv4(wiretest.FilterLo, wiretest.FilterHi)
			case !isICMP:
				prog, data = wire.TCPFilterIPv6(wiretest.FilterLo, wiretest.FilterHi), pkt[wire.IPv6MinimumSize:]
			default:
				prog, data = wire.ICMPFilterIPv6(wiretest.FilterLo, wiretest.FilterHi), pkt[wire.IPv6MinimumSize:]
			}
			var p wire.Packet
			if err := wire.Parse(pkt, &p); err != nil {
				t.Fatal(err)
			}
			ours := p.DstPort
			if p.IsICMP() {
				ours = p.Quoted.SrcPort
			}
			want := ours >= wiretest.FilterLo && ours <= wiretest.FilterHi
			if got := wiretest.RunFilter(t, prog, data); got != want {
				t.Errorf("%v proto %d port %d: filter %v, parsed port %d", p.Src, p.Proto, port, got, ours)
			}
		}
	}
}

// The Ring's filter bodies see whole IP packets (an AF_PACKET SOCK_DGRAM
// socket's data) and check the destination address before the Conn's
// filters run on them.
func TestRingFilterBodyIPv4(t *testing.T) {
	reply := func(dst netip.Addr, dport uint16) []byte {
		return wiretest.MustBuild(t, wiretest.SYNACK(wiretest.V4B, dst, dport))
	}
	syn := func(src netip.Addr, sport uint16) []byte {
		return wiretest.MustBuild(t, wiretest.ProbeSYN(src, wiretest.V4B, sport))
	}
	icmp := func(to netip.Addr, quote []byte) []byte { return wiretest.ICMP4Error(3, 13, wiretest.V4R, to, quote) }
	other := netip.MustParseAddr("192.0.2.77")
	wiretest.CheckFilter(t, wire.ReplyFilter([]netip.Addr{wiretest.V4A}, wiretest.FilterLo, wiretest.FilterHi, false), []wiretest.FilterCase{
		{Name: "SYN-ACK", Pkt: reply(wiretest.V4A, 40500), Accept: true},
		{Name: "RST", Pkt: wiretest.MustBuild(t, wire.Segment{Src: wiretest.V4B, Dst: wiretest.V4A, SrcPort: 443, DstPort: wiretest.FilterHi, Flags: wire.FlagRst | wire.FlagAck}), Accept: true},
		{Name: "SYN-ACK, IHL 6", Pkt: wiretest.WithIPv4Options(reply(wiretest.V4A, 40500), 4), Accept: true},
		{Name: "SYN-ACK to another address", Pkt: reply(other, 40500), Accept: false},
		{Name: "SYN-ACK to an address differing in its last bit", Pkt: reply(wiretest.V4A.Next(), 40500), Accept: false},
		{Name: "port below", Pkt: reply(wiretest.V4A, wiretest.FilterLo-1), Accept: false},
		{Name: "port above", Pkt: reply(wiretest.V4A, wiretest.FilterHi+1), Accept: false},
		{Name: "ICMP error quoting our SYN", Pkt: icmp(wiretest.V4A, syn(wiretest.V4A, 40500)[:28]), Accept: true},
		{Name: "ICMP error quoting another port", Pkt: icmp(wiretest.V4A, syn(wiretest.V4A, 80)[:28]), Accept: false},
		{Name: "ICMP error to another address", Pkt: icmp(other, syn(wiretest.V4A, 40500)[:28]), Accept: false},
		{Name: "echo reply", Pkt: wiretest.Edited(icmp(wiretest.V4A, syn(wiretest.V4A, 40500)[:28]), func(b []byte) { b[wire.IPv4MinimumSize] = 0 }), Accept: false},
		{Name: "UDP", Pkt: wiretest.Edited(reply(wiretest.V4A, 40500), func(b []byte) { b[9] = 17 }), Accept: false},
		{Name: "non-first fragment", Pkt: wiretest.Edited(reply(wiretest.V4A, 40500), func(b []byte) { wire.IPv4(b).SetFlagsFragmentOffset(0, 8) }), Accept: false},
		{Name: "short", Pkt: reply(wiretest.V4A, 40500)[:18], Accept: false},
		{Name: "empty", Pkt: nil, Accept: false},
	})
	wiretest.CheckFilter(t, wire.ReplyFilter(nil, wiretest.FilterLo, wiretest.FilterHi, false), []wiretest.FilterCase{
		{Name: "no IPv4 address", Pkt: reply(wiretest.V4A, 40500), Accept: false},
	})
	wiretest.CheckFilter(t, wire.ReplyFilter([]netip.Addr{wiretest.V6A}, wiretest.FilterLo, wiretest.FilterHi, false), []wiretest.FilterCase{
		{Name: "IPv6 address for the IPv4 body", Pkt: reply(wiretest.V4A, 40500), Accept: false},
	})
}

func TestRingFilterBodyIPv6(t *testing.T) {
	reply := func(dst netip.Addr, dport uint16) []byte {
		return wiretest.MustBuild(t, wiretest.SYNACK(wiretest.V6B, dst, dport))
	}
	syn := func(sport uint16) []byte {
		return wiretest.MustBuild(t, wiretest.ProbeSYN(wiretest.V6A, wiretest.V6B, sport))
	}
	icmp := func(to netip.Addr, typ uint8, quote []byte) []byte {
		return wiretest.ICMP6Error(typ, 0, wiretest.V6R, to, quote)
	}
	other := netip.MustParseAddr("2001:db8:ffff::77")
	// Each 32-bit word of the address is checked.
	near := make([]netip.Addr, 4)
	for w := range near {
		b := wiretest.V6A.As16()
		b[w*4+3] ^= 1
		near[w] = netip.AddrFrom16(b)
	}
	cases := []wiretest.FilterCase{
		{Name: "SYN-ACK", Pkt: reply(wiretest.V6A, 40500), Accept: true},
		{Name: "RST", Pkt: wiretest.MustBuild(t, wire.Segment{Src: wiretest.V6B, Dst: wiretest.V6A, SrcPort: 443, DstPort: wiretest.FilterLo, Flags: wire.FlagRst | wire.FlagAck}), Accept: true},
		{Name: "SYN-ACK to another address", Pkt: reply(other, 40500), Accept: false},
		{Name: "port below", Pkt: reply(wiretest.V6A, wiretest.FilterLo-1), Accept: false},
		{Name: "port above", Pkt: reply(wiretest.V6A, wiretest.FilterHi+1), Accept: false},
		{Name: "source port in range only", Pkt: wiretest.MustBuild(t, wire.Segment{Src: wiretest.V6B, Dst: wiretest.V6A, SrcPort: 40500, DstPort: 443}), Accept: false},
		{Name: "ICMPv6 unreachable quoting our SYN", Pkt: icmp(wiretest.V6A, 1, syn(40500)), Accept: true},
		{Name: "ICMPv6 packet too big quoting our SYN", Pkt: icmp(wiretest.V6A, 2, syn(40500)), Accept: true},
		{Name: "ICMPv6 quoting another port", Pkt: icmp(wiretest.V6A, 1, syn(80)), Accept: false},
		{Name: "ICMPv6 to another address", Pkt: icmp(other, 1, syn(40500)), Accept: false},
		{Name: "ICMPv6 echo request", Pkt: icmp(wiretest.V6A, 128, syn(40500)), Accept: false},
		{Name: "TCP after an extension header", Pkt: wiretest.WithExtHeaders(reply(wiretest.V6A, 40500), wiretest.ExtHeader{Kind: 60, Body: make([]byte, 6)}), Accept: false},
		{Name: "UDP", Pkt: wiretest.Edited(reply(wiretest.V6A, 40500), func(b []byte) { b[6] = 17 }), Accept: false},
		{Name: "short", Pkt: reply(wiretest.V6A, 40500)[:30], Accept: false},
		{Name: "empty", Pkt: nil, Accept: false},
	}
	for w, a := range near {
		cases = append(cases, wiretest.FilterCase{Name: fmt.Sprintf("address differing in word %d", w), Pkt: reply(a, 40500), Accept: false})
	}
	wiretest.CheckFilter(t, wire.ReplyFilter([]netip.Addr{wiretest.V6A}, wiretest.FilterLo, wiretest.FilterHi, true), cases)
	wiretest.CheckFilter(t, wire.ReplyFilter([]netip.Addr{wiretest.V4A}, wiretest.FilterLo, wiretest.FilterHi, true), []wiretest.FilterCase{
		{Name: "IPv4 address for the IPv6 body", Pkt: reply(wiretest.V6A, 40500), Accept: false},
	})
}

// A scan may send from several addresses: the filter takes packets to any
// of them, each checked in full; with too many to check, packets to any
// address.
func TestRingFilterBodyAddrs(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		var addrs []netip.Addr
		for i := range 5 {
			a := netip.AddrFrom4([4]byte{198, 18, 7, byte(10 + i)})
			if v6 {
				a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 7, 15: byte(10 + i)})
			}
			addrs = append(addrs, a)
		}
		peer := wiretest.V4B
		if v6 {
			peer = wiretest.V6B
		}
		reply := func(dst netip.Addr) []byte { return wiretest.MustBuild(t, wiretest.SYNACK(peer, dst, 40500)) }
		other := addrs[4].Next()
		var cases []wiretest.FilterCase
		for _, a := range addrs {
			cases = append(cases, wiretest.FilterCase{Name: "to " + a.String(), Pkt: reply(a), Accept: true})
		}
		cases = append(cases, wiretest.FilterCase{Name: "to " + other.String(), Pkt: reply(other), Accept: false},
			wiretest.FilterCase{Name: "to " + addrs[0].Prev().String(), Pkt: reply(addrs[0].Prev()), Accept: false},
			wiretest.FilterCase{Name: "port out of range", Pkt: wiretest.MustBuild(t, wiretest.SYNACK(peer, addrs[2], wiretest.FilterHi+1)), Accept: false})
		mixed := append([]netip.Addr{wiretest.V4A, wiretest.V6A}, addrs...)
		wiretest.CheckFilter(t, wire.ReplyFilter(mixed, wiretest.FilterLo, wiretest.FilterHi, v6), cases)
		var many []netip.Addr
		for a := addrs[0]; len(many) <= wire.MaxFilterAddrs; a = a.Next() {
			many = append(many, a)
		}
		wiretest.CheckFilter(t, wire.ReplyFilter(many, wiretest.FilterLo, wiretest.FilterHi, v6), []wiretest.FilterCase{
			{Name: "too many to check: any address", Pkt: reply(netip.MustParseAddr(map[bool]string{false: "192.0.2.1", true: "2001:db8:ff::1"}[v6])), Accept: true},
			{Name: "too many to check: the port still", Pkt: wiretest.MustBuild(t, wiretest.SYNACK(peer, addrs[2], wiretest.FilterHi+1)), Accept: false},
		})
	}
}

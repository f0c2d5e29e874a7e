package rawsock

import (
	"fmt"
	"net/netip"
	"testing"

	"golang.org/x/net/bpf"
)

// runFilter runs prog on pkt in the x/net/bpf VM and reports whether it
// accepts the packet (whole).
func runFilter(t *testing.T, prog []bpf.Instruction, pkt []byte) bool {
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

type filterCase struct {
	name   string
	pkt    []byte
	accept bool
}

func checkFilter(t *testing.T, prog []bpf.Instruction, cases []filterCase) {
	t.Helper()
	for _, tc := range cases {
		if got := runFilter(t, prog, tc.pkt); got != tc.accept {
			t.Errorf("%s: accept = %v, want %v", tc.name, got, tc.accept)
		}
	}
}

func edited(b []byte, f func(b []byte)) []byte {
	b = append([]byte{}, b...)
	f(b)
	return b
}

const (
	filterLo = 40000
	filterHi = 40999
)

func TestTCPFilterIPv4(t *testing.T) {
	reply := func(dport uint16) []byte { return mustBuild(t, synACK(v4b, v4a, dport)) }
	in := reply(40500)
	// A reply whose real destination port is outside the range, but with IP
	// options such that the bytes at offset 22 of a 20-byte header would be
	// in range: the filter must use the IHL.
	opt := withIPv4Options(reply(80), 4)
	opt[IPv4MinimumSize+2], opt[IPv4MinimumSize+3] = byte(40500>>8), byte(40500&0xff)
	checkFilter(t, TCPFilterIPv4(filterLo, filterHi), []filterCase{
		{"lo", reply(filterLo), true},
		{"hi", reply(filterHi), true},
		{"inside", in, true},
		{"below", reply(filterLo - 1), false},
		{"above", reply(filterHi + 1), false},
		{"port 0", reply(0), false},
		{"port 65535", reply(65535), false},
		{"RST", mustBuild(t, Segment{Src: v4b, Dst: v4a, SrcPort: 443, DstPort: 40000, Flags: FlagRst | FlagAck}), true},
		{"source port in range only", mustBuild(t, Segment{Src: v4b, Dst: v4a, SrcPort: 40500, DstPort: 443}), false},
		{"IHL 6", withIPv4Options(in, 4), true},
		{"IHL 15", withIPv4Options(in, 40), true},
		{"IHL 6, port beyond 20-byte header", opt, false},
		{"UDP", edited(in, func(b []byte) { b[9] = 17 }), false},
		{"ICMP", edited(in, func(b []byte) { b[9] = 1 }), false},
		{"non-first fragment", edited(in, func(b []byte) { IPv4(b).SetFlagsFragmentOffset(0, 8) }), false},
		{"last fragment", edited(in, func(b []byte) { IPv4(b).SetFlagsFragmentOffset(IPv4FlagDontFragment, 0x1fff*8) }), false},
		{"first fragment", edited(in, func(b []byte) { IPv4(b).SetFlagsFragmentOffset(IPv4FlagMoreFragments, 0) }), true},
		{"DF", edited(in, func(b []byte) { IPv4(b).SetFlagsFragmentOffset(IPv4FlagDontFragment, 0) }), true},
		{"short: no ports", in[:22], false},
		{"short: half a port", in[:23], false},
		{"short: ports only", in[:24], true},
		{"short: no protocol", in[:9], false},
		{"empty", nil, false},
	})
	checkFilter(t, TCPFilterIPv4(443, 443), []filterCase{
		{"single port", reply(443), true},
		{"single port, next", reply(444), false},
	})
	checkFilter(t, TCPFilterIPv4(0, 65535), []filterCase{
		{"full range 0", reply(0), true},
		{"full range 65535", reply(65535), true},
	})
	checkFilter(t, TCPFilterIPv4(filterHi, filterLo), []filterCase{
		{"lo > hi", in, false},
	})
}

func TestTCPFilterIPv6(t *testing.T) {
	// AF_INET6 raw sockets deliver the TCP header first.
	reply := func(dport uint16) []byte { return mustBuild(t, synACK(v6b, v6a, dport))[IPv6MinimumSize:] }
	checkFilter(t, TCPFilterIPv6(filterLo, filterHi), []filterCase{
		{"lo", reply(filterLo), true},
		{"hi", reply(filterHi), true},
		{"inside", reply(40123), true},
		{"below", reply(filterLo - 1), false},
		{"above", reply(filterHi + 1), false},
		{"source port in range only", mustBuild(t, Segment{Src: v6b, Dst: v6a, SrcPort: 40500, DstPort: 443})[IPv6MinimumSize:], false},
		{"short", reply(40123)[:3], false},
		{"ports only", reply(40123)[:4], true},
		{"empty", nil, false},
	})
}

func TestICMPFilterIPv4(t *testing.T) {
	syn := func(sport uint16) []byte { return mustBuild(t, probeSYN(v4a, v4b, sport)) }
	icmp := func(typ uint8, quote []byte) []byte { return icmp4Error(typ, 0, v4r, v4a, quote) }
	in := syn(40500)
	// Quote whose real source port is outside the range but with bytes in
	// range where a 20-byte quoted header would put it.
	opt := withIPv4Options(syn(80), 4)
	opt[IPv4MinimumSize], opt[IPv4MinimumSize+1] = byte(40500>>8), byte(40500&0xff)
	checkFilter(t, ICMPFilterIPv4(filterLo, filterHi), []filterCase{
		{"dest unreachable", icmp(3, in[:28]), true},
		{"time exceeded", icmp(11, in[:28]), true},
		{"parameter problem", icmp(12, in), true},
		{"lo", icmp(3, syn(filterLo)[:28]), true},
		{"hi", icmp(3, syn(filterHi)[:28]), true},
		{"below", icmp(3, syn(filterLo - 1)[:28]), false},
		{"above", icmp(3, syn(filterHi + 1)[:28]), false},
		{"destination port in range only", icmp(3, mustBuild(t, Segment{Src: v4a, Dst: v4b, SrcPort: 80, DstPort: 40500})), false},
		{"echo reply", icmp(0, in[:28]), false},
		{"echo request", icmp(8, in[:28]), false},
		{"source quench", icmp(4, in[:28]), false},
		{"redirect", icmp(5, in[:28]), false},
		{"timestamp", icmp(13, in[:28]), false},
		{"quoting UDP", icmp(3, edited(in[:28], func(b []byte) { b[9] = 17 })), false},
		{"quoting a non-first fragment", icmp(3, edited(in[:28], func(b []byte) { IPv4(b).SetFlagsFragmentOffset(0, 8) })), false},
		{"quoting a first fragment", icmp(3, edited(in[:28], func(b []byte) { IPv4(b).SetFlagsFragmentOffset(IPv4FlagMoreFragments, 0) })), true},
		{"quoting IPv6", icmp(3, edited(in[:28], func(b []byte) { b[0] = 0x65 })), false},
		{"quoted IHL 4", icmp(3, edited(in[:28], func(b []byte) { b[0] = 0x44 })), false},
		{"quoted IHL 6", icmp(3, withIPv4Options(in, 4)[:32]), true},
		{"quoted IHL 15", icmp(3, withIPv4Options(in, 40)[:68]), true},
		{"quoted IHL 6, port beyond a 20-byte header", icmp(3, opt[:32]), false},
		{"outer IHL 6", withIPv4Options(icmp(3, in[:28]), 4), true},
		{"outer IHL 15 and quoted IHL 15", withIPv4Options(icmp(11, withIPv4Options(in, 40)[:68]), 40), true},
		{"outer not ICMP", edited(icmp(3, in[:28]), func(b []byte) { b[9] = 6 }), false},
		{"outer non-first fragment", edited(icmp(3, in[:28]), func(b []byte) { IPv4(b).SetFlagsFragmentOffset(0, 8) }), false},
		{"quote: ports only", icmp(3, in[:24]), true},
		{"quote: half a port", icmp(3, in[:21]), false},
		{"quote: IP header only", icmp(3, in[:20]), false},
		{"quote: cut IP header", icmp(3, in[:12]), false},
		{"no quote", icmp(3, nil), false},
		{"short", icmp(3, in[:28])[:22], false},
		{"empty", nil, false},
	})
	checkFilter(t, ICMPFilterIPv4(filterHi, filterLo), []filterCase{
		{"lo > hi", icmp(3, in), false},
	})
}

func TestICMPFilterIPv6(t *testing.T) {
	syn := func(sport uint16) []byte { return mustBuild(t, probeSYN(v6a, v6b, sport)) }
	// AF_INET6 raw sockets deliver the ICMPv6 header first.
	icmp := func(typ uint8, quote []byte) []byte {
		return icmp6Error(typ, 0, v6r, v6a, quote)[IPv6MinimumSize:]
	}
	in := syn(40500)
	checkFilter(t, ICMPFilterIPv6(filterLo, filterHi), []filterCase{
		{"dest unreachable", icmp(1, in), true},
		{"packet too big", icmp(2, in), true},
		{"time exceeded", icmp(3, in), true},
		{"parameter problem", icmp(4, in), true},
		{"lo", icmp(1, syn(filterLo)), true},
		{"hi", icmp(1, syn(filterHi)), true},
		{"below", icmp(1, syn(filterLo-1)), false},
		{"above", icmp(1, syn(filterHi+1)), false},
		{"destination port in range only", icmp(1, mustBuild(t, Segment{Src: v6a, Dst: v6b, SrcPort: 80, DstPort: 40500})), false},
		{"type 0", icmp(0, in), false},
		{"type 5", icmp(5, in), false},
		{"echo request", icmp(128, in), false},
		{"echo reply", icmp(129, in), false},
		{"neighbor advertisement", icmp(136, in), false},
		{"quoting UDP", icmp(1, edited(in, func(b []byte) { b[6] = 17 })), false},
		{"quoting ext headers", icmp(1, withExtHeaders(in, extHeader{60, make([]byte, 6)})), false},
		{"quote: ports only", icmp(1, in[:44]), true},
		{"quote: half a port", icmp(1, in[:41]), false},
		{"quote: IP header only", icmp(1, in[:40]), false},
		{"no quote", icmp(1, nil), false},
		{"empty", nil, false},
	})
}

// TestFiltersAgreeWithParse checks that what the filters accept, Parse
// accepts with the port in range.
func TestFiltersAgreeWithParse(t *testing.T) {
	ports := []uint16{0, filterLo - 1, filterLo, 40500, filterHi, filterHi + 1, 65535}
	for _, port := range ports {
		for _, pkt := range [][]byte{
			mustBuild(t, synACK(v4b, v4a, port)),
			icmp4Error(3, 13, v4r, v4a, mustBuild(t, probeSYN(v4a, v4b, port))[:28]),
			mustBuild(t, synACK(v6b, v6a, port)),
			icmp6Error(1, 1, v6r, v6a, mustBuild(t, probeSYN(v6a, v6b, port))),
		} {
			var prog []bpf.Instruction
			data := pkt
			v6 := pkt[0]>>4 == 6
			isICMP := !v6 && pkt[9] == ProtocolICMP || v6 && pkt[6] == ProtocolICMPv6
			switch {
			case !v6 && !isICMP:
				prog = TCPFilterIPv4(filterLo, filterHi)
			case !v6:
				prog = ICMPFilterIPv4(filterLo, filterHi)
			case !isICMP:
				prog, data = TCPFilterIPv6(filterLo, filterHi), pkt[IPv6MinimumSize:]
			default:
				prog, data = ICMPFilterIPv6(filterLo, filterHi), pkt[IPv6MinimumSize:]
			}
			var p Packet
			if err := Parse(pkt, &p); err != nil {
				t.Fatal(err)
			}
			ours := p.DstPort
			if p.IsICMP() {
				ours = p.Quoted.SrcPort
			}
			want := ours >= filterLo && ours <= filterHi
			if got := runFilter(t, prog, data); got != want {
				t.Errorf("%v proto %d port %d: filter %v, parsed port %d", p.Src, p.Proto, port, got, ours)
			}
		}
	}
}

// The Ring's filter bodies see whole IP packets (an AF_PACKET SOCK_DGRAM
// socket's data) and check the destination address before the Conn's
// filters run on them.
func TestRingFilterBodyIPv4(t *testing.T) {
	reply := func(dst netip.Addr, dport uint16) []byte { return mustBuild(t, synACK(v4b, dst, dport)) }
	syn := func(src netip.Addr, sport uint16) []byte { return mustBuild(t, probeSYN(src, v4b, sport)) }
	icmp := func(to netip.Addr, quote []byte) []byte { return icmp4Error(3, 13, v4r, to, quote) }
	other := netip.MustParseAddr("192.0.2.77")
	checkFilter(t, ringFilterBody([]netip.Addr{v4a}, filterLo, filterHi, false), []filterCase{
		{"SYN-ACK", reply(v4a, 40500), true},
		{"RST", mustBuild(t, Segment{Src: v4b, Dst: v4a, SrcPort: 443, DstPort: filterHi, Flags: FlagRst | FlagAck}), true},
		{"SYN-ACK, IHL 6", withIPv4Options(reply(v4a, 40500), 4), true},
		{"SYN-ACK to another address", reply(other, 40500), false},
		{"SYN-ACK to an address differing in its last bit", reply(v4a.Next(), 40500), false},
		{"port below", reply(v4a, filterLo-1), false},
		{"port above", reply(v4a, filterHi+1), false},
		{"ICMP error quoting our SYN", icmp(v4a, syn(v4a, 40500)[:28]), true},
		{"ICMP error quoting another port", icmp(v4a, syn(v4a, 80)[:28]), false},
		{"ICMP error to another address", icmp(other, syn(v4a, 40500)[:28]), false},
		{"echo reply", edited(icmp(v4a, syn(v4a, 40500)[:28]), func(b []byte) { b[IPv4MinimumSize] = 0 }), false},
		{"UDP", edited(reply(v4a, 40500), func(b []byte) { b[9] = 17 }), false},
		{"non-first fragment", edited(reply(v4a, 40500), func(b []byte) { IPv4(b).SetFlagsFragmentOffset(0, 8) }), false},
		{"short", reply(v4a, 40500)[:18], false},
		{"empty", nil, false},
	})
	checkFilter(t, ringFilterBody(nil, filterLo, filterHi, false), []filterCase{
		{"no IPv4 address", reply(v4a, 40500), false},
	})
	checkFilter(t, ringFilterBody([]netip.Addr{v6a}, filterLo, filterHi, false), []filterCase{
		{"IPv6 address for the IPv4 body", reply(v4a, 40500), false},
	})
}

func TestRingFilterBodyIPv6(t *testing.T) {
	reply := func(dst netip.Addr, dport uint16) []byte { return mustBuild(t, synACK(v6b, dst, dport)) }
	syn := func(sport uint16) []byte { return mustBuild(t, probeSYN(v6a, v6b, sport)) }
	icmp := func(to netip.Addr, typ uint8, quote []byte) []byte { return icmp6Error(typ, 0, v6r, to, quote) }
	other := netip.MustParseAddr("2001:db8:ffff::77")
	// Each 32-bit word of the address is checked.
	near := make([]netip.Addr, 4)
	for w := range near {
		b := v6a.As16()
		b[w*4+3] ^= 1
		near[w] = netip.AddrFrom16(b)
	}
	cases := []filterCase{
		{"SYN-ACK", reply(v6a, 40500), true},
		{"RST", mustBuild(t, Segment{Src: v6b, Dst: v6a, SrcPort: 443, DstPort: filterLo, Flags: FlagRst | FlagAck}), true},
		{"SYN-ACK to another address", reply(other, 40500), false},
		{"port below", reply(v6a, filterLo-1), false},
		{"port above", reply(v6a, filterHi+1), false},
		{"source port in range only", mustBuild(t, Segment{Src: v6b, Dst: v6a, SrcPort: 40500, DstPort: 443}), false},
		{"ICMPv6 unreachable quoting our SYN", icmp(v6a, 1, syn(40500)), true},
		{"ICMPv6 packet too big quoting our SYN", icmp(v6a, 2, syn(40500)), true},
		{"ICMPv6 quoting another port", icmp(v6a, 1, syn(80)), false},
		{"ICMPv6 to another address", icmp(other, 1, syn(40500)), false},
		{"ICMPv6 echo request", icmp(v6a, 128, syn(40500)), false},
		{"TCP after an extension header", withExtHeaders(reply(v6a, 40500), extHeader{60, make([]byte, 6)}), false},
		{"UDP", edited(reply(v6a, 40500), func(b []byte) { b[6] = 17 }), false},
		{"short", reply(v6a, 40500)[:30], false},
		{"empty", nil, false},
	}
	for w, a := range near {
		cases = append(cases, filterCase{fmt.Sprintf("address differing in word %d", w), reply(a, 40500), false})
	}
	checkFilter(t, ringFilterBody([]netip.Addr{v6a}, filterLo, filterHi, true), cases)
	checkFilter(t, ringFilterBody([]netip.Addr{v4a}, filterLo, filterHi, true), []filterCase{
		{"IPv4 address for the IPv6 body", reply(v6a, 40500), false},
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
		peer := v4b
		if v6 {
			peer = v6b
		}
		reply := func(dst netip.Addr) []byte { return mustBuild(t, synACK(peer, dst, 40500)) }
		other := addrs[4].Next()
		var cases []filterCase
		for _, a := range addrs {
			cases = append(cases, filterCase{"to " + a.String(), reply(a), true})
		}
		cases = append(cases, filterCase{"to " + other.String(), reply(other), false},
			filterCase{"to " + addrs[0].Prev().String(), reply(addrs[0].Prev()), false},
			filterCase{"port out of range", mustBuild(t, synACK(peer, addrs[2], filterHi+1)), false})
		mixed := append([]netip.Addr{v4a, v6a}, addrs...)
		checkFilter(t, ringFilterBody(mixed, filterLo, filterHi, v6), cases)
		var many []netip.Addr
		for a := addrs[0]; len(many) <= maxRingAddrs; a = a.Next() {
			many = append(many, a)
		}
		checkFilter(t, ringFilterBody(many, filterLo, filterHi, v6), []filterCase{
			{"too many to check: any address", reply(netip.MustParseAddr(map[bool]string{false: "192.0.2.1", true: "2001:db8:ff::1"}[v6])), true},
			{"too many to check: the port still", mustBuild(t, synACK(peer, addrs[2], filterHi+1)), false},
		})
	}
}

// TestPortRangeChecks runs the range checks behind a load of the port,
// with one range, with holes and with the most ranges a block may have.
func TestPortRangeChecks(t *testing.T) {
	many := make([]PortRange, maxPortRanges)
	for i := range many {
		p := uint16(10000 + 2*i)
		many[i] = PortRange{p, p} // every other port
	}
	for _, tt := range []struct {
		ranges []PortRange
		in     []uint16
		out    []uint16
	}{
		{[]PortRange{{61000, 61511}}, []uint16{61000, 61200, 61511}, []uint16{0, 60999, 61512, 65535}},
		{[]PortRange{{100, 101}, {104, 110}, {200, 200}}, []uint16{100, 101, 104, 110, 200}, []uint16{99, 102, 103, 111, 199, 201}},
		{many, []uint16{10000, 10002, 10000 + 2*(maxPortRanges-1)}, []uint16{9999, 10001, 10003, 10000 + 2*maxPortRanges}},
	} {
		prog := append([]bpf.Instruction{bpf.LoadAbsolute{Off: 0, Size: 2}}, portRangeChecks(tt.ranges)...)
		vm, err := bpf.NewVM(prog)
		if err != nil {
			t.Fatalf("%v: %v", tt.ranges, err)
		}
		for _, want := range []bool{true, false} {
			ports := tt.in
			if !want {
				ports = tt.out
			}
			for _, p := range ports {
				n, err := vm.Run([]byte{byte(p >> 8), byte(p)})
				if err != nil || (n != 0) != want {
					t.Errorf("%d ranges: port %d: accept %d, %v; want %v", len(tt.ranges), p, n, err, want)
				}
			}
		}
	}
	if err := checkRanges(append(many, PortRange{1, 1})); err == nil {
		t.Error("checkRanges accepted more than maxPortRanges ranges")
	}
	for _, bad := range [][]PortRange{nil, {{0, 5}}, {{6, 5}}} {
		if err := checkRanges(bad); err == nil {
			t.Errorf("checkRanges(%v) accepted", bad)
		}
	}
}

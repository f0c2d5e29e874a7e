package scan

import (
	"net/netip"
	"slices"

	"github.com/synprobe/synprobe/probe"
)

var (
	multicast4 = netip.MustParsePrefix("224.0.0.0/4")
	multicast6 = netip.MustParsePrefix("ff00::/8")
	limitedBC  = netip.AddrFrom4([4]byte{255, 255, 255, 255})
)

// Unusable is probe.Unusable: why addr cannot be the destination of a
// probe, or "" if it can.
func Unusable(addr netip.Addr, bcast map[netip.Addr]string) string {
	return probe.Unusable(addr, bcast)
}

// CheckBlock examines the addresses of block p. A block that holds an
// address Unusable refuses for itself (unspecified, multicast, limited
// broadcast) reaches outside unicast space: bad is that address and why
// says what it is. Directed broadcasts in a block of several addresses
// (198.18.0.255 in 198.18.0.0/16, say) are only the edges of subnets, and
// are returned in skip, sorted, for the caller to leave out; a block of
// one address refuses them too.
func CheckBlock(p netip.Prefix, bcast map[netip.Addr]string) (bad netip.Addr, why string, skip []netip.Addr) {
	p = p.Masked()
	a := p.Addr()
	mc := multicast4
	if a.Is6() {
		mc = multicast6
	}
	switch {
	case p.Contains(netip.IPv4Unspecified()) || p.Contains(netip.IPv6Unspecified()):
		bad = netip.IPv4Unspecified()
		if a.Is6() {
			bad = netip.IPv6Unspecified()
		}
	case p.Overlaps(mc):
		bad = mc.Addr()
		if p.Bits() >= mc.Bits() {
			bad = a
		}
	case p.Contains(limitedBC):
		bad = limitedBC
	}
	if bad.IsValid() {
		return bad, Unusable(bad, nil), nil
	}
	for b := range bcast {
		if p.Contains(b) {
			skip = append(skip, b)
		}
	}
	slices.SortFunc(skip, netip.Addr.Compare)
	if p.IsSingleIP() && len(skip) > 0 {
		return a, Unusable(a, bcast), nil
	}
	return netip.Addr{}, "", skip
}

// Without returns the prefixes that together hold the addresses of p but
// those of skip, smallest addresses first: at most p's host bits of them
// per address left out.
func Without(p netip.Prefix, skip []netip.Addr) []netip.Prefix {
	p = p.Masked()
	var inside []netip.Addr
	for _, a := range skip {
		if p.Contains(a) {
			inside = append(inside, a)
		}
	}
	if len(inside) == 0 {
		return []netip.Prefix{p}
	}
	if p.IsSingleIP() {
		return nil
	}
	lo := netip.PrefixFrom(p.Addr(), p.Bits()+1)
	hi := netip.PrefixFrom(upperHalf(p), p.Bits()+1)
	return append(Without(lo, inside), Without(hi, inside)...)
}

// upperHalf returns the first address of the upper half of p.
func upperHalf(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	bit := p.Bits()
	b[bit/8] |= 0x80 >> (bit % 8)
	a, _ := netip.AddrFromSlice(b)
	return a
}

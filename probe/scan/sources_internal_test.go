package scan

import (
	"net/netip"
	"testing"
)

// TestSourcesSplit: a block that holds a more specific route is asked
// its sources in parts, each of whose addresses share their routes: the
// pairs behind 198.18.2.0/31 (through another interface, with another
// source) get that source, the rest the block's. Without the routes, the
// first address's source served the whole block.
func TestSourcesSplit(t *testing.T) {
	var blocks []Block
	for _, a := range []string{"198.18.2.0/29:80,443", "[2001:db8:2::/125]:80", "198.18.9.9:22"} {
		spec, err := ParseSpec(a)
		if err != nil {
			t.Fatal(err)
		}
		blocks = append(blocks, Block{Spec: &spec})
	}
	set, err := NewSet(blocks...)
	if err != nil {
		t.Fatal(err)
	}
	routes := []netip.Prefix{
		netip.MustParsePrefix("198.18.2.0/31"),
		netip.MustParsePrefix("198.18.2.6/32"),
		netip.MustParsePrefix("2001:db8:2::4/126"),
	}
	other := func(a netip.Addr) bool {
		for _, r := range routes {
			if r.Contains(a) {
				return true
			}
		}
		return false
	}
	source := func(dst netip.Addr) netip.Addr {
		switch {
		case dst.Is4() && other(dst):
			return netip.MustParseAddr("198.18.3.2")
		case dst.Is4():
			return netip.MustParseAddr("198.18.1.2")
		case other(dst):
			return netip.MustParseAddr("2001:db8:3::2")
		}
		return netip.MustParseAddr("2001:db8:1::2")
	}
	asked := 0
	srcs := sourcesSplit(set, routes, func(p netip.Prefix) netip.Addr { asked++; return source(p.Addr()) })
	k := 0
	for i := uint64(0); i < set.Len(); i++ {
		for srcs[k].End <= i {
			k++
		}
		if addr, port, _ := set.Pair(i); srcs[k].Addr != source(addr) {
			t.Errorf("%v port %d: source %v, want %v", addr, port, srcs[k].Addr, source(addr))
		}
	}
	// .0/31 | .2/31 | .4/31 | .6 | .7, ::/126 | ::4/126, and 198.18.9.9.
	if asked != 8 {
		t.Errorf("%d sources asked, want 8", asked)
	}
	if plain := Sources(set, func(p netip.Prefix) netip.Addr { return source(p.Addr()) }); len(plain) != 3 {
		t.Errorf("without routes: %d ranges, want one per block (3)", len(plain))
	}
}

package scan

import (
	"fmt"
	"math"
	"net/netip"
	"testing"
)

func mustSpec(tb testing.TB, s string) *Spec {
	tb.Helper()
	spec, err := ParseSpec(s)
	if err != nil {
		tb.Fatal(err)
	}
	return &spec
}

type pair struct {
	addr netip.Addr
	port uint16
	spec *Spec
}

// naivePairs expands blocks the obvious way: every address of the prefix
// or list, host-major, every port of every range.
func naivePairs(blocks []Block) []pair {
	var out []pair
	for _, b := range blocks {
		var addrs []netip.Addr
		if b.Addrs != nil {
			for _, a := range b.Addrs {
				addrs = append(addrs, a.Unmap())
			}
		} else if b.Spec.Host == "" {
			p := b.Spec.Prefix.Masked()
			for a := p.Addr(); p.Contains(a); a = a.Next() {
				addrs = append(addrs, a)
			}
		}
		for _, a := range addrs {
			for _, r := range b.Spec.Ports {
				for port := int(r.Lo); port <= int(r.Hi); port++ {
					out = append(out, pair{a, uint16(port), b.Spec})
				}
			}
		}
	}
	return out
}

func mixedBlocks(tb testing.TB) []Block {
	return []Block{
		{Spec: mustSpec(tb, "198.18.0.4/30:22,80")},
		{Spec: mustSpec(tb, "unresolved:443")}, // no addresses: no pairs
		{Spec: mustSpec(tb, "host:8080"), Addrs: []netip.Addr{
			netip.MustParseAddr("198.18.9.9"),
			netip.MustParseAddr("::ffff:198.18.9.10"), // as LookupNetIP may return it
		}},
		{Spec: mustSpec(tb, "empty:1"), Addrs: []netip.Addr{}},
		{Spec: mustSpec(tb, "[2001:db8::7/126]:443")},
		{Spec: mustSpec(tb, "198.18.0.1:1-3,10")},
	}
}

func TestSetPair(t *testing.T) {
	blocks := mixedBlocks(t)
	want := naivePairs(blocks)
	s := NewSet(blocks...)
	if s.Len() != uint64(len(want)) || len(want) != 4*2+2+4+4 {
		t.Fatalf("Len = %d, naive expansion has %d", s.Len(), len(want))
	}
	for i, w := range want {
		addr, port, spec := s.Pair(uint64(i))
		if addr != w.addr || port != w.port || spec != w.spec {
			t.Errorf("Pair(%d) = %v, %d, %s; want %v, %d, %s", i, addr, port, spec.Arg, w.addr, w.port, w.spec.Arg)
		}
	}
	// Spot checks of the order.
	for i, w := range map[uint64]string{0: "198.18.0.4:22", 1: "198.18.0.4:80", 7: "198.18.0.7:80",
		8: "198.18.9.9:8080", 9: "198.18.9.10:8080", 10: "[2001:db8::4]:443", 13: "[2001:db8::7]:443",
		14: "198.18.0.1:1", 17: "198.18.0.1:10"} {
		addr, port, _ := s.Pair(i)
		if got := netip.AddrPortFrom(addr, port).String(); got != w {
			t.Errorf("Pair(%d) = %s, want %s", i, got, w)
		}
	}
}

func TestSetLarge(t *testing.T) {
	s := NewSet(Block{Spec: mustSpec(t, "0.0.0.0/0:1-65535")}, Block{Spec: mustSpec(t, "[2001:db8::/112]:1-65535")})
	const v4 = (1 << 32) * 65535
	if s.Len() != v4+65536*65535 || s.Len() > MaxPairs {
		t.Fatalf("Len = %d", s.Len())
	}
	for _, tt := range []struct {
		i    uint64
		want string
	}{
		{0, "0.0.0.0:1"},
		{65535, "0.0.0.1:1"},
		{v4 - 1, "255.255.255.255:65535"},
		{v4, "[2001:db8::]:1"},
		{s.Len() - 1, "[2001:db8::ffff]:65535"},
	} {
		addr, port, _ := s.Pair(tt.i)
		if got := netip.AddrPortFrom(addr, port).String(); got != tt.want {
			t.Errorf("Pair(%d) = %s, want %s", tt.i, got, tt.want)
		}
	}
}

func TestSetEmpty(t *testing.T) {
	if n := NewSet().Len(); n != 0 {
		t.Errorf("NewSet().Len() = %d", n)
	}
	if n := NewSet(Block{Spec: mustSpec(t, "host:80")}).Len(); n != 0 {
		t.Errorf("unresolved host: Len() = %d", n)
	}
	expectPanic(t, "Pair on an empty set", func() { NewSet().Pair(0) })
	expectPanic(t, "Pair(Len())", func() { NewSet(mixedBlocks(t)...).Pair(18) })
}

func TestSetOverflow(t *testing.T) {
	// ParseSpec refuses these; a Spec built by hand can still hold them.
	for _, p := range []string{"2001:db8::/64", "::/0"} {
		s := NewSet(Block{Spec: &Spec{Prefix: netip.MustParsePrefix(p), Ports: []PortRange{{1, 1}}}})
		if s.Len() != math.MaxUint64 {
			t.Errorf("%s: Len = %d, want MaxUint64", p, s.Len())
		}
		expectPanic(t, "Pair on an overflowed set", func() { s.Pair(0) })
	}
	// 2^16+1 blocks of 2^48-2^32 pairs overflow in the sum.
	blocks := make([]Block, 1<<16+2)
	spec := mustSpec(t, "0.0.0.0/0:1-65535")
	for i := range blocks {
		blocks[i].Spec = spec
	}
	if s := NewSet(blocks...); s.Len() != math.MaxUint64 {
		t.Errorf("sum overflow: Len = %d", s.Len())
	}
}

func expectPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s did not panic", what)
		}
	}()
	f()
}

func ExampleSet() {
	a, _ := ParseSpec("198.18.0.4/31:22,80")
	b, _ := ParseSpec("db:5432")
	set := NewSet(Block{Spec: &a}, Block{Spec: &b, Addrs: []netip.Addr{netip.MustParseAddr("2001:db8::5")}})
	for i := range set.Len() {
		addr, port, spec := set.Pair(i)
		fmt.Println(i, netip.AddrPortFrom(addr, port), spec.Arg)
	}
	// Output:
	// 0 198.18.0.4:22 198.18.0.4/31:22,80
	// 1 198.18.0.4:80 198.18.0.4/31:22,80
	// 2 198.18.0.5:22 198.18.0.4/31:22,80
	// 3 198.18.0.5:80 198.18.0.4/31:22,80
	// 4 [2001:db8::5]:5432 db:5432
}

// TestIndex: Index inverts Pair for every pair of mixed blocks, and
// refuses pairs outside the set.
func TestIndex(t *testing.T) {
	s := NewSet(Block{Spec: mustSpec(t, "198.18.1.0/30:22,80")}, Block{Spec: mustSpec(t, "198.18.9.9:443")},
		Block{Spec: mustSpec(t, "lab.test:7"), Addrs: []netip.Addr{netip.MustParseAddr("198.18.5.5"), netip.MustParseAddr("2001:db8::9")}},
		Block{Spec: mustSpec(t, "[2001:db8::/126]:8000-8002")})
	for i := uint64(0); i < s.Len(); i++ {
		a, p, _ := s.Pair(i)
		if got, ok := s.Index(a, p); !ok || got != i {
			t.Errorf("Index(Pair(%d) = %v:%d) = %d, %v", i, a, p, got, ok)
		}
	}
	for _, tt := range []struct {
		a    string
		port uint16
	}{{"198.18.1.4", 22}, {"198.18.1.1", 23}, {"198.18.9.9", 80}, {"2001:db8::4", 8000}, {"2001:db8::1", 8003}, {"198.18.5.6", 7}} {
		if i, ok := s.Index(netip.MustParseAddr(tt.a), tt.port); ok {
			t.Errorf("Index(%s:%d) = %d, want not found", tt.a, tt.port, i)
		}
	}
}

package scan

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"slices"
	"strings"
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

func mustNewSet(tb testing.TB, blocks ...Block) *Set {
	tb.Helper()
	s, err := NewSet(blocks...)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

type pair struct {
	addr netip.Addr
	port uint16
	arg  string // the winning expression
}

// naivePairs is the Set's contract the obvious way: expand every block to
// every (address, port), keep per pair the most specific expression
// (longest prefix, then narrowest port range holding the port, then the
// first given), sort by family, address and port. It returns an error
// string when two equally specific expressions expect different states.
func naivePairs(blocks []Block) ([]pair, string) {
	type claim struct {
		bits, size, order int
		spec              *Spec
	}
	claims := map[netip.AddrPort][]claim{}
	for order, b := range blocks {
		var addrs []netip.Addr
		bits := 0
		if b.Addrs != nil {
			for _, a := range b.Addrs {
				addrs = append(addrs, a.Unmap())
			}
		} else if b.Spec.Host == "" {
			p := b.Spec.Prefix.Masked()
			bits = p.Bits()
			for a := p.Addr(); p.Contains(a); a = a.Next() {
				addrs = append(addrs, a)
			}
		}
		for _, a := range addrs {
			ab := bits
			if b.Addrs != nil {
				ab = a.BitLen()
			}
			for _, r := range b.Spec.Ports {
				for port := int(r.Lo); port <= int(r.Hi); port++ {
					ap := netip.AddrPortFrom(a, uint16(port))
					claims[ap] = append(claims[ap], claim{ab, r.Len(), order, b.Spec})
				}
			}
		}
	}
	var out []pair
	conflict := ""
	for ap, cs := range claims {
		best := cs[0]
		for _, c := range cs[1:] {
			if c.bits > best.bits || c.bits == best.bits && c.size < best.size {
				best = c
			}
		}
		for _, c := range cs {
			if c.bits == best.bits && c.size == best.size && c.spec.Expect != best.spec.Expect {
				conflict = ap.String()
			}
		}
		out = append(out, pair{ap.Addr(), ap.Port(), best.spec.Arg})
	}
	slices.SortFunc(out, func(a, b pair) int {
		if a.addr.Is4() != b.addr.Is4() {
			if a.addr.Is4() {
				return -1
			}
			return 1
		}
		return cmp.Or(a.addr.Compare(b.addr), cmp.Compare(a.port, b.port))
	})
	return out, conflict
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

func checkPairs(t *testing.T, s *Set, want []pair) {
	t.Helper()
	if s.Len() != uint64(len(want)) {
		t.Fatalf("Len = %d, the naive expansion has %d", s.Len(), len(want))
	}
	for i, w := range want {
		addr, port, o := s.Pair(uint64(i))
		if addr != w.addr || port != w.port || o.Arg() != w.arg {
			t.Errorf("Pair(%d) = %v, %d, %s; want %v, %d, %s", i, addr, port, o.Arg(), w.addr, w.port, w.arg)
		}
		j, o2, ok := s.Index(addr, port)
		if !ok || j != uint64(i) || o2 != o {
			t.Errorf("Index(%v:%d) = %d, %v, %v; want %d", addr, port, j, o2.Arg(), ok, i)
		}
		a, first, end := s.HostOf(uint64(i))
		if a != addr || uint64(i) < first || uint64(i) >= end {
			t.Errorf("HostOf(%d) = %v, [%d, %d)", i, a, first, end)
		}
	}
}

func TestSetPair(t *testing.T) {
	blocks := mixedBlocks(t)
	want, _ := naivePairs(blocks)
	if len(want) != 4*2+2+4+4 {
		t.Fatalf("naive expansion has %d pairs", len(want))
	}
	s := mustNewSet(t, blocks...)
	checkPairs(t, s, want)
	// Spot checks of the order: by address, IPv4 first, ports ascending.
	for i, w := range map[uint64]string{0: "198.18.0.1:1", 3: "198.18.0.1:10", 4: "198.18.0.4:22", 5: "198.18.0.4:80",
		11: "198.18.0.7:80", 12: "198.18.9.9:8080", 13: "198.18.9.10:8080", 14: "[2001:db8::4]:443", 17: "[2001:db8::7]:443"} {
		addr, port, _ := s.Pair(i)
		if got := netip.AddrPortFrom(addr, port).String(); got != w {
			t.Errorf("Pair(%d) = %s, want %s", i, got, w)
		}
	}
}

// TestSetSpecific: overlapping expressions name each pair once, from the
// most specific one, with its expectation.
func TestSetSpecific(t *testing.T) {
	web := []netip.Addr{netip.MustParseAddr("198.18.0.2")}
	for _, tt := range []struct {
		name   string
		blocks []Block
		n      uint64
		expect map[string]string // pair -> "arg=expect"
	}{
		{"exact port over a range (--help's example)", []Block{
			{Spec: mustSpec(t, "fw:1-1024"), Addrs: web}, {Spec: mustSpec(t, "fw:443=open"), Addrs: web},
		}, 1024, map[string]string{"198.18.0.2:443": "fw:443=open open", "198.18.0.2:22": "fw:1-1024 ", "198.18.0.2:1024": "fw:1-1024 "}},
		{"the same, the other way round", []Block{
			{Spec: mustSpec(t, "fw:443=open"), Addrs: web}, {Spec: mustSpec(t, "fw:1-1024=closed"), Addrs: web},
		}, 1024, map[string]string{"198.18.0.2:443": "fw:443=open open", "198.18.0.2:442": "fw:1-1024=closed closed"}},
		{"a longer prefix over a shorter one", []Block{
			{Spec: mustSpec(t, "198.18.0.0/24:80=closed")}, {Spec: mustSpec(t, "198.18.0.0/28:80=filtered")}, {Spec: mustSpec(t, "198.18.0.5:80=open")},
		}, 256, map[string]string{"198.18.0.5:80": "198.18.0.5:80=open open", "198.18.0.4:80": "198.18.0.0/28:80=filtered filtered",
			"198.18.0.16:80": "198.18.0.0/24:80=closed closed", "198.18.0.255:80": "198.18.0.0/24:80=closed closed"}},
		{"a host's address over its block, more ports from the block", []Block{
			{Spec: mustSpec(t, "198.18.0.0/30:22,80=closed")}, {Spec: mustSpec(t, "web:443=open"), Addrs: web},
		}, 4*2 + 1, map[string]string{"198.18.0.2:443": "web:443=open open", "198.18.0.2:80": "198.18.0.0/30:22,80=closed closed"}},
		{"an address over a port range of its block", []Block{
			{Spec: mustSpec(t, "198.18.0.0/24:443=open")}, {Spec: mustSpec(t, "198.18.0.7:1-1024=closed")},
		}, 255 + 1024, map[string]string{"198.18.0.7:443": "198.18.0.7:1-1024=closed closed", "198.18.0.6:443": "198.18.0.0/24:443=open open"}},
		{"the same target twice", []Block{
			{Spec: mustSpec(t, "198.18.0.1:80")}, {Spec: mustSpec(t, "198.18.0.1:80")}, {Spec: mustSpec(t, "198.18.0.1:80,81")},
		}, 2, map[string]string{"198.18.0.1:80": "198.18.0.1:80 ", "198.18.0.1:81": "198.18.0.1:80,81 "}},
		{"two names of one address", []Block{
			{Spec: mustSpec(t, "www:80"), Addrs: web}, {Spec: mustSpec(t, "web:80"), Addrs: web},
		}, 1, map[string]string{"198.18.0.2:80": "www:80 "}},
		{"a conflict decided by something more specific", []Block{
			{Spec: mustSpec(t, "198.18.0.0/24:80=open")}, {Spec: mustSpec(t, "198.18.0.0/24:80=closed")}, {Spec: mustSpec(t, "198.18.0.0/24:1-1024")},
		}, 0, nil}, // a conflict: both /24:80 are equally specific
	} {
		t.Run(tt.name, func(t *testing.T) {
			want, conflict := naivePairs(tt.blocks)
			s, err := NewSet(tt.blocks...)
			if conflict != "" || tt.expect == nil {
				var ce *ConflictError
				if !errors.As(err, &ce) {
					t.Fatalf("NewSet: %v, want a conflict (naive: %q)", err, conflict)
				}
				t.Log(err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Len() != tt.n {
				t.Errorf("Len = %d, want %d", s.Len(), tt.n)
			}
			checkPairs(t, s, want)
			for ap, w := range tt.expect {
				a := netip.MustParseAddrPort(ap)
				_, o, ok := s.Index(a.Addr(), a.Port())
				if got := o.Arg() + " " + o.Expect(); !ok || got != w {
					t.Errorf("%s: %q, want %q", ap, got, w)
				}
			}
		})
	}
}

func TestSetConflict(t *testing.T) {
	web := []netip.Addr{netip.MustParseAddr("198.18.0.2")}
	for _, blocks := range [][]Block{
		{{Spec: mustSpec(t, "fw:443=open"), Addrs: web}, {Spec: mustSpec(t, "fw:443=closed"), Addrs: web}},
		{{Spec: mustSpec(t, "fw:443"), Addrs: web}, {Spec: mustSpec(t, "198.18.0.2:443=closed")}},
		{{Spec: mustSpec(t, "198.18.0.0/24:1-10=open")}, {Spec: mustSpec(t, "198.18.0.0/24:6-15=filtered")}},
	} {
		_, err := NewSet(blocks...)
		var ce *ConflictError
		if !errors.As(err, &ce) {
			t.Errorf("%s %s: %v, want a conflict", blocks[0].Spec.Arg, blocks[1].Spec.Arg, err)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, blocks[0].Spec.Arg) || !strings.Contains(msg, blocks[1].Spec.Arg) {
			t.Errorf("message does not name both targets: %s", msg)
		}
	}
}

// TestSetRandom checks random overlapping expressions against the naive
// expansion.
func TestSetRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	expects := []string{"", "=open", "=closed", "=filtered"}
	for iter := range 300 {
		var blocks []Block
		for range 1 + rng.IntN(6) {
			bits := 24 + rng.IntN(9)
			a := netip.AddrFrom4([4]byte{198, 18, 0, byte(rng.IntN(256))})
			lo := 1 + rng.IntN(20)
			hi := lo + rng.IntN(3)*rng.IntN(8)
			var ports string
			if hi == lo {
				ports = fmt.Sprint(lo)
			} else {
				ports = fmt.Sprintf("%d-%d", lo, hi)
			}
			if rng.IntN(3) == 0 {
				ports += fmt.Sprintf(",%d", 30+rng.IntN(3))
			}
			arg := fmt.Sprintf("%s:%s%s", netip.PrefixFrom(a, bits).Masked(), ports, expects[rng.IntN(len(expects))])
			if rng.IntN(4) == 0 {
				arg = fmt.Sprintf("[2001:db8::%x/%d]:%s%s", rng.IntN(64), 120+rng.IntN(9), ports, expects[rng.IntN(len(expects))])
			}
			blocks = append(blocks, Block{Spec: mustSpec(t, arg)})
		}
		want, conflict := naivePairs(blocks)
		s, err := NewSet(blocks...)
		if err != nil {
			var ce *ConflictError
			if !errors.As(err, &ce) {
				t.Fatal(err)
			}
			// The naive expansion sees the first conflict it meets,
			// the Set the first in its own order: both must see one.
			if conflict == "" {
				t.Errorf("iteration %d: %v, naive sees no conflict in %v", iter, err, args(blocks))
			}
			continue
		}
		if conflict != "" {
			t.Errorf("iteration %d: naive sees a conflict at %s in %v, the Set none", iter, conflict, args(blocks))
			continue
		}
		checkPairs(t, s, want)
		if t.Failed() {
			t.Fatalf("iteration %d: %v", iter, args(blocks))
		}
	}
}

func args(blocks []Block) []string {
	var out []string
	for _, b := range blocks {
		out = append(out, b.Spec.Arg)
	}
	return out
}

func TestSetLarge(t *testing.T) {
	s := mustNewSet(t, Block{Spec: mustSpec(t, "0.0.0.0/0:1-65535")}, Block{Spec: mustSpec(t, "[2001:db8::/112]:1-65535")})
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
	// A hole in the middle of the /0.
	s = mustNewSet(t, Block{Spec: mustSpec(t, "0.0.0.0/0:80")}, Block{Spec: mustSpec(t, "198.18.7.0/24:80,443")})
	if s.Len() != 1<<32+256 {
		t.Errorf("Len = %d", s.Len())
	}
	if i, o, ok := s.Index(netip.MustParseAddr("198.18.7.9"), 443); !ok || o.Arg() != "198.18.7.0/24:80,443" {
		t.Errorf("Index(198.18.7.9:443) = %d, %v, %v", i, o, ok)
	}
	if _, o, ok := s.Index(netip.MustParseAddr("198.18.8.9"), 80); !ok || o.Arg() != "0.0.0.0/0:80" {
		t.Errorf("Index(198.18.8.9:80) = %v, %v", o, ok)
	}
	if _, _, ok := s.Index(netip.MustParseAddr("198.18.8.9"), 443); ok {
		t.Error("198.18.8.9:443 is not in the set")
	}
}

func TestSetEmpty(t *testing.T) {
	if n := mustNewSet(t).Len(); n != 0 {
		t.Errorf("NewSet().Len() = %d", n)
	}
	if n := mustNewSet(t, Block{Spec: mustSpec(t, "host:80")}).Len(); n != 0 {
		t.Errorf("unresolved host: Len() = %d", n)
	}
	expectPanic(t, "Pair on an empty set", func() { mustNewSet(t).Pair(0) })
	expectPanic(t, "Pair(Len())", func() { mustNewSet(t, mixedBlocks(t)...).Pair(18) })
	if _, _, ok := mustNewSet(t).Index(netip.MustParseAddr("198.18.0.1"), 80); ok {
		t.Error("Index found a pair in an empty set")
	}
}

func TestSetOverflow(t *testing.T) {
	// ParseSpec refuses these; a Spec built by hand can still hold them.
	for _, p := range []string{"2001:db8::/64", "::/0"} {
		s := mustNewSet(t, Block{Spec: &Spec{Prefix: netip.MustParsePrefix(p), Ports: []PortRange{{1, 1}}}})
		if s.Len() != math.MaxUint64 {
			t.Errorf("%s: Len = %d, want MaxUint64", p, s.Len())
		}
		expectPanic(t, "Pair on an overflowed set", func() { s.Pair(0) })
	}
	// 2^16+1 disjoint blocks of 2^40-ish pairs overflow in the sum.
	var blocks []Block
	for i := range 1<<16 + 2 {
		a := netip.AddrFrom4([4]byte{byte(i >> 8), byte(i), 0, 0})
		blocks = append(blocks, Block{Spec: &Spec{Prefix: netip.PrefixFrom(a, 16), Ports: []PortRange{{1, 65535}}}})
	}
	for i := range blocks[1<<16:] {
		blocks[1<<16+i].Spec = &Spec{Prefix: netip.MustParsePrefix(fmt.Sprintf("2001:db8:%d::/80", i)), Ports: []PortRange{{1, 65535}}}
	}
	if s := mustNewSet(t, blocks...); s.Len() != math.MaxUint64 {
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
	b, _ := ParseSpec("198.18.0.5:80=open")
	c, _ := ParseSpec("db:5432")
	set, _ := NewSet(Block{Spec: &a}, Block{Spec: &b}, Block{Spec: &c, Addrs: []netip.Addr{netip.MustParseAddr("2001:db8::5")}})
	for i := range set.Len() {
		addr, port, o := set.Pair(i)
		fmt.Printf("%d %v from %s %q\n", i, netip.AddrPortFrom(addr, port), o.Arg(), o.Expect())
	}
	// Output:
	// 0 198.18.0.4:22 from 198.18.0.4/31:22,80 ""
	// 1 198.18.0.4:80 from 198.18.0.4/31:22,80 ""
	// 2 198.18.0.5:22 from 198.18.0.4/31:22,80 ""
	// 3 198.18.0.5:80 from 198.18.0.5:80=open "open"
	// 4 [2001:db8::5]:5432 from db:5432 ""
}

// TestIndex: Index refuses pairs outside the set.
func TestIndex(t *testing.T) {
	s := mustNewSet(t, Block{Spec: mustSpec(t, "198.18.1.0/30:22,80")}, Block{Spec: mustSpec(t, "198.18.9.9:443")},
		Block{Spec: mustSpec(t, "lab.test:7"), Addrs: []netip.Addr{netip.MustParseAddr("198.18.5.5"), netip.MustParseAddr("2001:db8::9")}},
		Block{Spec: mustSpec(t, "[2001:db8::/126]:8000-8002")})
	for _, tt := range []struct {
		a    string
		port uint16
	}{{"198.18.1.4", 22}, {"198.18.1.1", 23}, {"198.18.9.9", 80}, {"2001:db8::4", 8000}, {"2001:db8::1", 8003},
		{"198.18.5.6", 7}, {"0.0.0.0", 7}, {"::", 8000}, {"255.255.255.255", 22}, {"2001:db8::8", 7}} {
		if i, _, ok := s.Index(netip.MustParseAddr(tt.a), tt.port); ok {
			t.Errorf("Index(%s:%d) = %d, want not found", tt.a, tt.port, i)
		}
	}
	if _, _, ok := s.Index(netip.Addr{}, 22); ok {
		t.Error("Index of the zero Addr found a pair")
	}
}

// TestBuilderFile: expressions from a file keep their file and line, and
// their text in canonical form.
func TestBuilderFile(t *testing.T) {
	var b Builder
	b.AddArg(mustSpec(t, "198.18.0.1:80"))
	specs := map[int]string{3: "198.18.0.0/30:443,80=open", 7: "web:22", 9: "[2001:db8::1]:22", 12: "[2001:db8::/127]:1-3"}
	for _, line := range []int{3, 7, 9, 12} {
		b.AddLine("targets.txt", line, mustSpec(t, specs[line]))
	}
	if !b.HasExpectation() || b.Len() != 5 {
		t.Errorf("HasExpectation %v, Len %d", b.HasExpectation(), b.Len())
	}
	if h := b.Hosts(); !slices.Equal(h, []string{"web"}) {
		t.Errorf("Hosts = %v", h)
	}
	s, err := b.Build(map[string][]netip.Addr{"web": {netip.MustParseAddr("198.18.3.3")}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		pair, arg, file string
		line            int
	}{
		{"198.18.0.1:80", "198.18.0.1:80", "", 0},
		{"198.18.0.1:443", "198.18.0.0/30:80,443=open", "targets.txt", 3},
		{"198.18.3.3:22", "web:22", "targets.txt", 7},
		{"[2001:db8::1]:22", "[2001:db8::1]:22", "targets.txt", 9},
		{"[2001:db8::1]:3", "[2001:db8::/127]:1-3", "targets.txt", 12},
	} {
		ap := netip.MustParseAddrPort(tt.pair)
		_, o, ok := s.Index(ap.Addr(), ap.Port())
		f, line := o.File()
		if !ok || o.Arg() != tt.arg || f != tt.file || line != tt.line {
			t.Errorf("%s: %q from %s:%d, want %q from %s:%d", tt.pair, o.Arg(), f, line, tt.arg, tt.file, tt.line)
		}
	}
}

// TestBuilderMemory: a million one-address lines cost well under 100
// bytes each once built (the text is not kept).
func TestBuilderMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	const n = 1 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var b Builder
	for i := range n {
		spec, err := ParseSpec(fmt.Sprintf("198.%d.%d.%d:443=open", 18+i>>16, i>>8&255, i&255))
		if err != nil {
			t.Fatal(err)
		}
		b.AddLine("big.txt", i+1, &spec)
	}
	s, err := b.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("%d lines: %.1f bytes a line", n, per)
	if s.Len() != n || per > 100 {
		t.Errorf("Len %d, %.1f bytes a line", s.Len(), per)
	}
	runtime.KeepAlive(s)
}

// TestBuilderExclude: excluded addresses leave the blocks that hold them,
// whatever names them; the rest of each block stays, in order.
func TestBuilderExclude(t *testing.T) {
	var b Builder
	b.AddArg(mustSpec(t, "198.18.0.0/24:80,443"))
	b.AddArg(mustSpec(t, "198.18.0.128:22"))
	b.AddArg(mustSpec(t, "[2001:db8::/120]:80"))
	out := []netip.Addr{netip.MustParseAddr("198.18.0.0"), netip.MustParseAddr("198.18.0.255"),
		netip.MustParseAddr("198.18.0.128"), netip.MustParseAddr("2001:db8::ff"), netip.MustParseAddr("198.18.9.255")}
	b.Exclude(out...)
	s, err := b.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(253*2 + 255); s.Len() != want {
		t.Errorf("Len = %d, want %d", s.Len(), want)
	}
	for _, a := range out {
		for _, port := range []uint16{22, 80, 443} {
			if _, _, ok := s.Index(a, port); ok {
				t.Errorf("%v:%d is in the set", a, port)
			}
		}
	}
	if got := s.Excluded(); len(got) != 4 {
		t.Errorf("Excluded = %v, want the four inside the set", got)
	}
	// Index inverts Pair, and pairs are in address order.
	var prev netip.Addr
	for i := range s.Len() {
		a, p, _ := s.Pair(i)
		if j, _, ok := s.Index(a, p); !ok || j != i {
			t.Fatalf("Index(Pair(%d) = %v:%d) = %d, %v", i, a, p, j, ok)
		}
		if prev.IsValid() && a.Less(prev) {
			t.Fatalf("Pair(%d) = %v after %v", i, a, prev)
		}
		prev = a
	}
}

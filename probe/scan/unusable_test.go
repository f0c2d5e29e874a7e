package scan

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

func TestUnusable(t *testing.T) {
	bcast := map[netip.Addr]string{netip.MustParseAddr("198.18.0.255"): "eth0"}
	for addr, want := range map[string]string{
		"0.0.0.0":          "the unspecified address",
		"::":               "the unspecified address",
		"::ffff:0.0.0.0":   "the unspecified address",
		"224.0.0.1":        "a multicast address",
		"239.255.255.255":  "a multicast address",
		"::ffff:224.0.0.5": "a multicast address",
		"ff02::1":          "a multicast address",
		"ff0e::1234":       "a multicast address",
		"255.255.255.255":  "the limited broadcast address",
		"198.18.0.255":     "the broadcast address of a subnet on eth0",
		"198.18.0.254":     "",
		"198.18.1.255":     "",
		"223.255.255.255":  "",
		"240.0.0.1":        "",
		"0.0.0.1":          "",
		"127.0.0.1":        "",
		"::1":              "",
		"2001:db8::ff":     "",
		"fe80::1":          "",
	} {
		if got := Unusable(netip.MustParseAddr(addr), bcast); got != want {
			t.Errorf("Unusable(%s) = %q, want %q", addr, got, want)
		}
	}
}

func TestCheckBlock(t *testing.T) {
	bcast := map[netip.Addr]string{
		netip.MustParseAddr("198.18.0.255"):    "eth0",
		netip.MustParseAddr("198.18.3.127"):    "eth1",
		netip.MustParseAddr("127.255.255.255"): "lo",
	}
	for _, tt := range []struct {
		prefix, bad, why string
		skip             []string
	}{
		{"198.18.0.0/24", "", "", []string{"198.18.0.255"}},
		{"198.18.0.0/16", "", "", []string{"198.18.0.255", "198.18.3.127"}},
		{"198.18.0.0/25", "", "", nil},
		{"198.18.0.255/32", "198.18.0.255", "the broadcast address of a subnet on eth0", nil},
		{"127.0.0.0/8", "", "", []string{"127.255.255.255"}},
		{"0.0.0.0/8", "0.0.0.0", "the unspecified address", nil},
		{"0.0.0.0/0", "0.0.0.0", "the unspecified address", nil},
		{"0.0.0.1/32", "", "", nil},
		{"224.0.0.0/24", "224.0.0.0", "a multicast address", nil},
		{"239.1.2.0/23", "239.1.2.0", "a multicast address", nil},
		{"224.0.0.0/3", "224.0.0.0", "a multicast address", nil},
		{"128.0.0.0/1", "224.0.0.0", "a multicast address", nil},
		{"255.255.255.0/24", "255.255.255.255", "the limited broadcast address", nil},
		{"240.0.0.0/4", "255.255.255.255", "the limited broadcast address", nil},
		{"223.255.255.0/24", "", "", nil},
		{"::/112", "::", "the unspecified address", nil},
		{"ff02::/120", "ff02::", "a multicast address", nil},
		{"2001:db8::/112", "", "", nil},
	} {
		bad, why, skip := CheckBlock(netip.MustParsePrefix(tt.prefix), bcast)
		var want netip.Addr
		if tt.bad != "" {
			want = netip.MustParseAddr(tt.bad)
		}
		if bad != want || why != tt.why || len(skip) != len(tt.skip) {
			t.Errorf("CheckBlock(%s) = %v %q %v, want %v %q %v", tt.prefix, bad, why, skip, want, tt.why, tt.skip)
			continue
		}
		for i := range skip {
			if skip[i].String() != tt.skip[i] {
				t.Errorf("CheckBlock(%s) skips %v, want %v", tt.prefix, skip, tt.skip)
			}
		}
	}
}

// TestWithout: the parts hold every address of the block but those left
// out, once each, in order.
func TestWithout(t *testing.T) {
	p := netip.MustParsePrefix("198.18.0.0/24")
	parts := Without(p, []netip.Addr{netip.MustParseAddr("198.18.0.255")})
	if len(parts) != 8 || parts[0].String() != "198.18.0.0/25" || parts[7].String() != "198.18.0.254/32" {
		t.Errorf("Without(/24, .255) = %v", parts)
	}
	if got := Without(p, nil); len(got) != 1 || got[0] != p {
		t.Errorf("Without(/24, nothing) = %v", got)
	}
	if got := Without(netip.MustParsePrefix("198.18.0.7/32"), []netip.Addr{netip.MustParseAddr("198.18.0.7")}); len(got) != 0 {
		t.Errorf("Without(a, a) = %v", got)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		bits := 20 + rng.IntN(13)
		base := netip.AddrFrom4([4]byte{198, 18, byte(rng.IntN(256)), byte(rng.IntN(256))})
		p := netip.PrefixFrom(base, bits).Masked()
		size := uint32(1) << (32 - bits)
		first := p.Addr().As4()
		firstN := uint32(first[0])<<24 | uint32(first[1])<<16 | uint32(first[2])<<8 | uint32(first[3])
		skip := map[uint32]bool{}
		var skipAddrs []netip.Addr
		for range rng.IntN(5) {
			n := firstN + rng.Uint32N(size)
			skip[n] = true
			skipAddrs = append(skipAddrs, netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}))
		}
		skipAddrs = append(skipAddrs, netip.MustParseAddr("10.0.0.1")) // outside: no effect
		next := firstN
		for _, q := range Without(p, skipAddrs) {
			a := q.Addr().As4()
			start := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
			for ; next < start; next++ {
				if !skip[next] {
					t.Fatalf("%v without %v: %d.%d left out", p, skipAddrs, next>>8&255, next&255)
				}
			}
			end := start + uint32(1)<<(32-q.Bits())
			for n := start; n < end; n++ {
				if skip[n] {
					t.Fatalf("%v without %v: part %v holds a skipped address", p, skipAddrs, q)
				}
			}
			next = end
		}
		for ; next < firstN+size; next++ {
			if !skip[next] {
				t.Fatalf("%v without %v: tail left out", p, skipAddrs)
			}
		}
	}
}

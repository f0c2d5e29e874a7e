package scan

import (
	"encoding/binary"
	"fmt"
	"github.com/synprobe/synprobe/rawsock/wire"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"testing"
)

var testKey = [16]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}

func TestPermBijection(t *testing.T) {
	for _, n := range []uint64{1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 100, 255, 256, 257, 1000, 65537, 256000} {
		p := NewPerm(n, testKey)
		seen := NewBitmap(n)
		for i := range n {
			x := p.At(i)
			if x >= n {
				t.Fatalf("n=%d: At(%d) = %d, out of range", n, i, x)
			}
			if seen.TestAndSet(x) {
				t.Fatalf("n=%d: At(%d) = %d, seen before", n, i, x)
			}
		}
		if seen.Count() != n {
			t.Fatalf("n=%d: %d distinct images", n, seen.Count())
		}
	}
}

func TestPermKeys(t *testing.T) {
	const n = 1000
	a, b := NewPerm(n, testKey), NewPerm(n, [16]byte{1})
	a2 := NewPerm(n, testKey)
	same, identity := 0, 0
	for i := range uint64(n) {
		if a.At(i) != a2.At(i) {
			t.Fatalf("same key, At(%d) differs", i)
		}
		if a.At(i) == b.At(i) {
			same++
		}
		if a.At(i) == i {
			identity++
		}
	}
	// A random pair of permutations agrees in about one place.
	if same > 10 || identity > 10 {
		t.Errorf("different keys agree at %d of %d indices; %d fixed points", same, n, identity)
	}
}

// TestPermSpread: 256 hosts x 1000 ports in Set order (host-major); the
// first 1000 probes must reach at least 200 hosts (a random order reaches
// about 251), and no host gets more than a handful.
func TestPermSpread(t *testing.T) {
	const hosts, ports = 256, 1000
	for k := range byte(8) {
		p := NewPerm(hosts*ports, [16]byte{k, 0x5c})
		perHost := make(map[uint64]int)
		for i := range uint64(ports) {
			perHost[p.At(i)/ports]++
		}
		most := 0
		for _, c := range perHost {
			most = max(most, c)
		}
		if len(perHost) < 200 || most > 16 {
			t.Errorf("key %d: the first %d probes hit %d hosts, at most %d probes per host", k, ports, len(perHost), most)
		}
	}
}

// TestPermWalk checks the cost of cycle walking: over all i, the walks
// visit each element of the Feistel domain at most once, so the average
// is at most 4^h/n < 4 encryptions.
func TestPermWalk(t *testing.T) {
	for _, n := range []uint64{1, 2, 5, 17, 257, 1000, 4097, 65537, 262145} {
		p := NewPerm(n, testKey)
		domain := uint64(1) << (2 * p.half)
		if domain >= 4*n && n > 1 || domain < n {
			t.Errorf("n=%d: domain %d", n, domain)
		}
		total := 0
		for i := range n {
			_, evals := p.walk(i)
			total += evals
		}
		avg := float64(total) / float64(n)
		if uint64(total) > domain || avg >= 4 {
			t.Errorf("n=%d: %d encryptions in all (domain %d), %.2f on average", n, total, domain, avg)
		}
	}
}

func TestPermLimits(t *testing.T) {
	p := NewPerm(MaxPairs, testKey)
	if p.half != 24 {
		t.Errorf("2^48: half = %d", p.half)
	}
	for _, i := range []uint64{0, 1, MaxPairs - 1} {
		if x := p.At(i); x >= MaxPairs {
			t.Errorf("At(%d) = %d", i, x)
		}
	}
	if x := NewPerm(1, testKey).At(0); x != 0 {
		t.Errorf("n=1: At(0) = %d", x)
	}
	expectPanic(t, "NewPerm(0)", func() { NewPerm(0, testKey) })
	expectPanic(t, "NewPerm(2^48+1)", func() { NewPerm(MaxPairs+1, testKey) })
	expectPanic(t, "At(n)", func() { NewPerm(10, testKey).At(10) })
}

// refSipHash is SipHash-2-4 of any message, written from the paper.
func refSipHash(k0, k1 uint64, msg []byte) uint64 {
	v0, v1 := k0^0x736f6d6570736575, k1^0x646f72616e646f6d
	v2, v3 := k0^0x6c7967656e657261, k1^0x7465646279746573
	round := func() {
		v0 += v1
		v1 = bits.RotateLeft64(v1, 13) ^ v0
		v0 = bits.RotateLeft64(v0, 32)
		v2 += v3
		v3 = bits.RotateLeft64(v3, 16) ^ v2
		v0 += v3
		v3 = bits.RotateLeft64(v3, 21) ^ v0
		v2 += v1
		v1 = bits.RotateLeft64(v1, 17) ^ v2
		v2 = bits.RotateLeft64(v2, 32)
	}
	b := append([]byte(nil), msg...)
	for len(b)%8 != 7 {
		b = append(b, 0)
	}
	b = append(b, byte(len(msg)))
	for ; len(b) > 0; b = b[8:] {
		m := binary.LittleEndian.Uint64(b)
		v3 ^= m
		round()
		round()
		v0 ^= m
	}
	v2 ^= 0xff
	round()
	round()
	round()
	round()
	return v0 ^ v1 ^ v2 ^ v3
}

func TestSipHash(t *testing.T) {
	// Test vectors from the SipHash paper (key 00..0f, message 00..n-1).
	k0 := binary.LittleEndian.Uint64(testKey[:8])
	k1 := binary.LittleEndian.Uint64(testKey[8:])
	msg := []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}
	for n, want := range map[int]uint64{0: 0x726fdb47dd0e0e31, 7: 0xab0200f58b01d137, 8: 0x93f5f5799a932462, 15: 0xa129ca6149be45e5} {
		if got := refSipHash(k0, k1, msg[:n]); got != want {
			t.Errorf("refSipHash(%d bytes) = %#x, want %#x", n, got, want)
		}
	}
	if got := wire.NewCookie(testKey).Hash64(0x0706050403020100); got != 0x93f5f5799a932462 {
		t.Errorf("Hash64 = %#x, want %#x", got, uint64(0x93f5f5799a932462))
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		var key [16]byte
		k0, k1, m := r.Uint64(), r.Uint64(), r.Uint64()
		binary.LittleEndian.PutUint64(key[:8], k0)
		binary.LittleEndian.PutUint64(key[8:], k1)
		if got, want := wire.NewCookie(key).Hash64(m), refSipHash(k0, k1, binary.LittleEndian.AppendUint64(nil, m)); got != want {
			t.Fatalf("Hash64(%#x, %#x, %#x) = %#x, want %#x", k0, k1, m, got, want)
		}
	}
}

func ExamplePerm() {
	spec, _ := ParseSpec("198.18.0.0/30:80,443")
	set, _ := NewSet(Block{Spec: &spec})
	var key [16]byte // a per-run secret, e.g. from crypto/rand
	perm := NewPerm(set.Len(), key)
	for i := range set.Len() {
		addr, port, _ := set.Pair(perm.At(i))
		fmt.Println(netip.AddrPortFrom(addr, port))
	}
	// Output:
	// 198.18.0.2:443
	// 198.18.0.0:80
	// 198.18.0.2:80
	// 198.18.0.3:80
	// 198.18.0.1:80
	// 198.18.0.3:443
	// 198.18.0.1:443
	// 198.18.0.0:443
}

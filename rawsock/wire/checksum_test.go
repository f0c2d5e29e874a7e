package wire_test

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/synprobe/synprobe/rawsock/wire"
)

// naiveChecksum is the reference: RFC 1071 16-bit words, one at a time.
func naiveChecksum(b []byte, initial uint16) uint16 {
	sum := uint64(initial)
	for i := 0; i < len(b); i += 2 {
		w := uint64(b[i]) << 8
		if i+1 < len(b) {
			w |= uint64(b[i+1])
		}
		sum += w
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}

// combine adds two ones'-complement sums.
func combine(a, b uint16) uint16 {
	s := uint32(a) + uint32(b)
	return uint16(s>>16 + s&0xffff)
}

func swap16(x uint16) uint16 { return x<<8 | x>>8 }

// chainedChecksum sums b[:k] then b[k:], byte-swapping the sum of the second
// part when it starts at an odd offset (RFC 1071, 2(B)).
func chainedChecksum(b []byte, k int, initial uint16) uint16 {
	first := wire.Checksum(b[:k], initial)
	if k%2 == 0 {
		return wire.Checksum(b[k:], first)
	}
	return combine(first, swap16(wire.Checksum(b[k:], 0)))
}

func TestChecksumRFC1071(t *testing.T) {
	// RFC 1071, section 3: the folded sum of these bytes is ddf2.
	b := []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}
	if got := wire.Checksum(b, 0); got != 0xddf2 {
		t.Errorf("Checksum = %#04x, want 0xddf2", got)
	}
	if got := ^wire.Checksum(b, 0); got != 0x220d {
		t.Errorf("^Checksum = %#04x, want 0x220d", got)
	}
}

func TestChecksumIPv4HeaderVector(t *testing.T) {
	// A classic example header whose checksum field holds b861.
	h := wire.IPv4{0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
		0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7}
	if got := h.CalculateChecksum(); got != 0xb861 {
		t.Errorf("CalculateChecksum = %#04x, want 0xb861", got)
	}
	if !h.IsChecksumValid() {
		t.Error("IsChecksumValid = false")
	}
	h.SetChecksum(0)
	if got := ^wire.Checksum(h, 0); got != 0xb861 {
		t.Errorf("^Checksum with zero field = %#04x, want 0xb861", got)
	}
}

func TestChecksumEdgeCases(t *testing.T) {
	for _, tc := range []struct {
		b       []byte
		initial uint16
		want    uint16
	}{
		{nil, 0, 0},
		{nil, 0x1234, 0x1234},
		{[]byte{0xab}, 0, 0xab00},
		{[]byte{0xff, 0xff}, 0, 0xffff},
		{[]byte{0xff, 0xff}, 1, 1},           // 0xffff + 1 = 0x10000 -> 1
		{[]byte{0x00, 0x00}, 0xffff, 0xffff}, // never turns into zero
		{[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 0, 0xffff},
		{make([]byte, 64), 0, 0},
	} {
		if got := wire.Checksum(tc.b, tc.initial); got != tc.want {
			t.Errorf("Checksum(%x, %#x) = %#04x, want %#04x", tc.b, tc.initial, got, tc.want)
		}
	}
	// All ones, long enough to carry many times in the 64-bit accumulator.
	ones := make([]byte, 4096+7)
	for i := range ones {
		ones[i] = 0xff
	}
	for n := range len(ones) {
		if got, want := wire.Checksum(ones[:n], 0xffff), naiveChecksum(ones[:n], 0xffff); got != want {
			t.Fatalf("all ones, len %d: Checksum = %#04x, want %#04x", n, got, want)
		}
	}
}

func TestChecksumRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 256)
	for n := 0; n <= 200; n++ {
		for range 20 {
			for i := range buf {
				buf[i] = byte(rng.Uint32())
			}
			// Unaligned starts too.
			off := rng.IntN(8)
			b := buf[off : off+n]
			initial := uint16(rng.Uint32())
			want := naiveChecksum(b, initial)
			if got := wire.Checksum(b, initial); got != want {
				t.Fatalf("len %d: Checksum = %#04x, want %#04x (%x)", n, got, want, b)
			}
			for k := 0; k <= n; k++ {
				if got := chainedChecksum(b, k, initial); got != want {
					t.Fatalf("len %d split %d: chained = %#04x, want %#04x (%x)", n, k, got, want, b)
				}
			}
		}
	}
}

func naivePseudoHeader(proto uint8, src, dst netip.Addr, length uint16) []byte {
	src, dst = src.Unmap(), dst.Unmap()
	if src.Is4() && dst.Is4() {
		s, d := src.As4(), dst.As4()
		return append(append(s[:], d[:]...), 0, proto, byte(length>>8), byte(length))
	}
	s, d := src.As16(), dst.As16()
	b := append(s[:], d[:]...)
	return append(b, 0, 0, byte(length>>8), byte(length), 0, 0, 0, proto)
}

func TestPseudoHeaderChecksum(t *testing.T) {
	for _, tc := range []struct{ src, dst string }{
		{"192.0.2.1", "198.51.100.7"},
		{"::ffff:192.0.2.1", "198.51.100.7"},
		{"::ffff:192.0.2.1", "::ffff:198.51.100.7"},
		{"2001:db8::1", "2001:db8:ffff::2"},
		{"fe80::1%eth0", "ff02::1"},
		{"255.255.255.255", "255.255.255.255"},
	} {
		src, dst := netip.MustParseAddr(tc.src), netip.MustParseAddr(tc.dst)
		for _, length := range []uint16{0, 20, 40, 1480, 0xffff} {
			want := naiveChecksum(naivePseudoHeader(6, src, dst, length), 0)
			if got := wire.PseudoHeaderChecksum(6, src, dst, length); got != want {
				t.Errorf("PseudoHeaderChecksum(%v, %v, %d) = %#04x, want %#04x", src, dst, length, got, want)
			}
		}
	}
	// IPv4-mapped gives the IPv4 sum.
	a := wire.PseudoHeaderChecksum(6, netip.MustParseAddr("::ffff:10.0.0.1"), netip.MustParseAddr("::ffff:10.0.0.2"), 40)
	b := wire.PseudoHeaderChecksum(6, netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 40)
	if a != b {
		t.Errorf("v4-mapped %#04x != v4 %#04x", a, b)
	}
}

func FuzzChecksum(f *testing.F) {
	f.Add([]byte{}, uint(0), uint16(0))                                                          // empty
	f.Add([]byte{0xab}, uint(1), uint16(0))                                                      // odd, one byte
	f.Add([]byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}, uint(3), uint16(0))            // RFC 1071, odd split
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, uint(8), uint16(0xffff)) // carries
	f.Add(make([]byte, 33), uint(32), uint16(1))                                                 // 32-byte loop then tail
	f.Fuzz(func(t *testing.T, b []byte, split uint, initial uint16) {
		want := naiveChecksum(b, initial)
		if got := wire.Checksum(b, initial); got != want {
			t.Fatalf("Checksum = %#04x, want %#04x", got, want)
		}
		k := int(split % uint(len(b)+1))
		if got := chainedChecksum(b, k, initial); got != want {
			t.Fatalf("split %d: chained = %#04x, want %#04x", k, got, want)
		}
	})
}

func TestChecksumAllocs(t *testing.T) {
	b := make([]byte, 1500)
	src, dst := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	if n := testing.AllocsPerRun(100, func() {
		wire.Checksum(b, wire.PseudoHeaderChecksum(6, src, dst, 1500))
	}); n != 0 {
		t.Errorf("allocs = %v, want 0", n)
	}
}

func BenchmarkChecksum1500(b *testing.B) {
	buf := make([]byte, 1500)
	for i := range buf {
		buf[i] = byte(i)
	}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		wire.Checksum(buf, 0)
	}
}

func BenchmarkChecksumNaive1500(b *testing.B) {
	buf := make([]byte, 1500)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		naiveChecksum(buf, 0)
	}
}

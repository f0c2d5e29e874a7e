package wire_test

import (
	"net/netip"
	"testing"

	"github.com/synprobe/synprobe/rawsock/internal/wiretest"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// sipHashVectors are the 64-bit SipHash-2-4 outputs for key 00 01 .. 0f and
// messages 00 01 .. (n-1), n = 0..63, from the reference implementation
// (vectors.h in github.com/veorq/SipHash, the SipHash paper's appendix).
var sipHashVectors = [64]uint64{
	0x726fdb47dd0e0e31, 0x74f839c593dc67fd, 0x0d6c8009d9a94f5a, 0x85676696d7fb7e2d,
	0xcf2794e0277187b7, 0x18765564cd99a68d, 0xcbc9466e58fee3ce, 0xab0200f58b01d137,
	0x93f5f5799a932462, 0x9e0082df0ba9e4b0, 0x7a5dbbc594ddb9f3, 0xf4b32f46226bada7,
	0x751e8fbc860ee5fb, 0x14ea5627c0843d90, 0xf723ca908e7af2ee, 0xa129ca6149be45e5,
	0x3f2acc7f57c29bdb, 0x699ae9f52cbe4794, 0x4bc1b3f0968dd39c, 0xbb6dc91da77961bd,
	0xbed65cf21aa2ee98, 0xd0f2cbb02e3b67c7, 0x93536795e3a33e88, 0xa80c038ccd5ccec8,
	0xb8ad50c6f649af94, 0xbce192de8a85b8ea, 0x17d835b85bbb15f3, 0x2f2e6163076bcfad,
	0xde4daaaca71dc9a5, 0xa6a2506687956571, 0xad87a3535c49ef28, 0x32d892fad841c342,
	0x7127512f72f27cce, 0xa7f32346f95978e3, 0x12e0b01abb051238, 0x15e034d40fa197ae,
	0x314dffbe0815a3b4, 0x027990f029623981, 0xcadcd4e59ef40c4d, 0x9abfd8766a33735c,
	0x0e3ea96b5304a7d0, 0xad0c42d6fc585992, 0x187306c89bc215a9, 0xd4a60abcf3792b95,
	0xf935451de4f21df2, 0xa9538f0419755787, 0xdb9acddff56ca510, 0xd06c98cd5c0975eb,
	0xe612a3cb9ecba951, 0xc766e62cfcadaf96, 0xee64435a9752fe72, 0xa192d576b245165a,
	0x0a8787bf8ecb74b2, 0x81b3e73d20b49b6f, 0x7fa8220ba3b2ecea, 0x245731c13ca42499,
	0xb78dbfaf3a8d83bd, 0xea1ad565322a1a0b, 0x60e61c23a3795013, 0x6606d7e446282b93,
	0x6ca4ecb15c5f91e1, 0x9f626da15c9625f3, 0xe51b38608ef25f57, 0x958a324ceb064572,
}

func TestSipHashVectors(t *testing.T) {
	var key [16]byte
	var msg [64]byte
	for i := range key {
		key[i] = byte(i)
	}
	for i := range msg {
		msg[i] = byte(i)
	}
	c := wire.NewCookie(key)
	for n, want := range sipHashVectors {
		if got := wire.SipHash24(c, msg[:n]); got != want {
			t.Errorf("SipHash-2-4 of %d bytes = %#016x, want %#016x", n, got, want)
		}
	}
}

func TestCookieISN(t *testing.T) {
	var key [16]byte
	for i := range key {
		key[i] = byte(i)
	}
	c := wire.NewCookie(key)

	// The ISN is the low 32 bits of SipHash-2-4 of the documented message.
	msg := append(append(wiretest.V6A.AsSlice(), wiretest.V6B.AsSlice()...), 0x9c, 0x40, 0x01, 0xbb, 0xde, 0xad, 0xbe, 0xef)
	if got, want := c.ISN(wiretest.V6A, wiretest.V6B, 40000, 443, 0xdeadbeef), uint32(wire.SipHash24(c, msg)); got != want {
		t.Errorf("ISN = %#08x, want %#08x", got, want)
	}
	// Deterministic.
	if c.ISN(wiretest.V4A, wiretest.V4B, 1, 2, 3) != wire.NewCookie(key).ISN(wiretest.V4A, wiretest.V4B, 1, 2, 3) {
		t.Error("not deterministic")
	}
	// IPv4 and IPv4-mapped agree; zones are ignored.
	mapped := func(a netip.Addr) netip.Addr { return netip.AddrFrom16(a.As16()) }
	if c.ISN(wiretest.V4A, wiretest.V4B, 1, 2, 3) != c.ISN(mapped(wiretest.V4A), mapped(wiretest.V4B), 1, 2, 3) {
		t.Error("v4 and v4-mapped differ")
	}
	if c.ISN(wiretest.V6A.WithZone("eth0"), wiretest.V6B, 1, 2, 3) != c.ISN(wiretest.V6A, wiretest.V6B, 1, 2, 3) {
		t.Error("zone changes the ISN")
	}

	// Changing any input changes the ISN.
	base := c.ISN(wiretest.V4A, wiretest.V4B, 40000, 443, 7)
	other := wire.NewCookie([16]byte{15: 1})
	for _, tc := range []struct {
		name string
		isn  uint32
	}{
		{"src", c.ISN(netip.MustParseAddr("192.0.2.2"), wiretest.V4B, 40000, 443, 7)},
		{"dst", c.ISN(wiretest.V4A, netip.MustParseAddr("198.51.100.8"), 40000, 443, 7)},
		{"swapped addresses", c.ISN(wiretest.V4B, wiretest.V4A, 40000, 443, 7)},
		{"sport", c.ISN(wiretest.V4A, wiretest.V4B, 40001, 443, 7)},
		{"dport", c.ISN(wiretest.V4A, wiretest.V4B, 40000, 444, 7)},
		{"swapped ports", c.ISN(wiretest.V4A, wiretest.V4B, 443, 40000, 7)},
		{"salt", c.ISN(wiretest.V4A, wiretest.V4B, 40000, 443, 8)},
		{"key", other.ISN(wiretest.V4A, wiretest.V4B, 40000, 443, 7)},
		{"zero cookie", wire.Cookie{}.ISN(wiretest.V4A, wiretest.V4B, 40000, 443, 7)},
		{"family", c.ISN(netip.MustParseAddr("::192.0.2.1"), netip.MustParseAddr("::198.51.100.7"), 40000, 443, 7)},
	} {
		if tc.isn == base {
			t.Errorf("changing %s leaves the ISN at %#08x", tc.name, base)
		}
	}

	// Distinct over many ports: a 32-bit PRF should essentially never
	// collide on a thousand inputs.
	seen := make(map[uint32]bool)
	for port := range 1000 {
		isn := c.ISN(wiretest.V4A, wiretest.V4B, uint16(port), 443, 0)
		if seen[isn] {
			t.Fatalf("collision at port %d", port)
		}
		seen[isn] = true
	}
}

func TestNewRandomCookie(t *testing.T) {
	a, err := wire.NewRandomCookie()
	if err != nil {
		t.Fatal(err)
	}
	b, err := wire.NewRandomCookie()
	if err != nil {
		t.Fatal(err)
	}
	if a == b || a == (wire.Cookie{}) {
		t.Errorf("random cookies %+v %+v", a, b)
	}
}

func BenchmarkISN(b *testing.B) {
	c := wire.NewCookie([16]byte{1, 2, 3, 4})
	b.ReportAllocs()
	var port uint16
	for b.Loop() {
		port++
		_ = c.ISN(wiretest.V6A, wiretest.V6B, port, 443, 0)
	}
}

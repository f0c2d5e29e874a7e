package wire_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/synprobe/synprobe/rawsock/internal/wiretest"
	"github.com/synprobe/synprobe/rawsock/wire"
)

func TestSYNOptionsEncodeExact(t *testing.T) {
	ts := []byte{0x01, 0x02, 0x03, 0x04, 0xa1, 0xa2, 0xa3, 0xa4}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, tc := range []struct {
		name string
		o    wire.SYNOptions
		want []byte
	}{
		{"all", wire.SYNOptions{MSS: 1460, WScale: 7, SACKPermitted: true, Timestamps: true, TSVal: 0x01020304, TSEcr: 0xa1a2a3a4},
			cat([]byte{2, 4, 0x05, 0xb4, 4, 2, 8, 10}, ts, []byte{1, 3, 3, 7})},
		{"no sack", wire.SYNOptions{MSS: 1460, WScale: 7, Timestamps: true, TSVal: 0x01020304, TSEcr: 0xa1a2a3a4},
			cat([]byte{2, 4, 0x05, 0xb4, 1, 1, 8, 10}, ts, []byte{1, 3, 3, 7})},
		{"no ts", wire.SYNOptions{MSS: 1460, WScale: 7, SACKPermitted: true},
			[]byte{2, 4, 0x05, 0xb4, 1, 1, 4, 2, 1, 3, 3, 7}},
		{"mss ws", wire.SYNOptions{MSS: 1460, WScale: 7},
			[]byte{2, 4, 0x05, 0xb4, 1, 3, 3, 7}},
		{"mss", wire.SYNOptions{MSS: 536, WScale: -1}, []byte{2, 4, 0x02, 0x18}},
		{"ws 0", wire.SYNOptions{}, []byte{1, 3, 3, 0}},
		{"sack", wire.SYNOptions{WScale: -1, SACKPermitted: true}, []byte{1, 1, 4, 2}},
		{"ts", wire.SYNOptions{WScale: -1, Timestamps: true, TSVal: 0x01020304, TSEcr: 0xa1a2a3a4},
			cat([]byte{1, 1, 8, 10}, ts)},
		{"ws clamped", wire.SYNOptions{WScale: 300}, []byte{1, 3, 3, 255}},
		{"none", wire.SYNOptions{WScale: -1, TSVal: 5}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf [wire.MaxOptionsSize]byte
			n := tc.o.Encode(buf[:])
			if !bytes.Equal(buf[:n], tc.want) {
				t.Errorf("Encode = % x, want % x", buf[:n], tc.want)
			}
			if n != tc.o.Len() {
				t.Errorf("Encode = %d bytes, Len = %d", n, tc.o.Len())
			}
			// Exactly the right size is enough; one byte less is not.
			if n > 0 {
				if m := tc.o.Encode(make([]byte, n)); m != n {
					t.Errorf("Encode into %d bytes = %d", n, m)
				}
				if m := tc.o.Encode(make([]byte, n-1)); m != 0 {
					t.Errorf("Encode into %d bytes = %d, want 0", n-1, m)
				}
			}
		})
	}
}

func TestSYNOptionsRoundTripAllCombos(t *testing.T) {
	for mask := range 16 {
		o := wire.SYNOptions{WScale: -1}
		if mask&1 != 0 {
			o.MSS = 1220 + uint16(mask)
		}
		if mask&2 != 0 {
			o.WScale = mask % 15
		}
		if mask&4 != 0 {
			o.SACKPermitted = true
		}
		if mask&8 != 0 {
			o.Timestamps, o.TSVal, o.TSEcr = true, 0xdeadbeef+uint32(mask), uint32(mask)
		}
		t.Run(fmt.Sprintf("%04b", mask), func(t *testing.T) {
			var buf [wire.MaxOptionsSize]byte
			n := o.Encode(buf[:])
			if n%4 != 0 || n > 20 || (mask == 0) != (n == 0) {
				t.Fatalf("Encode = %d bytes", n)
			}
			if got := wire.ParseSYNOptions(buf[:n]); got != o {
				t.Errorf("ParseSYNOptions(% x) = %+v, want %+v", buf[:n], got, o)
			}
			// Inside a built segment too.
			s := wire.Segment{Src: wiretest.V4A, Dst: wiretest.V4B, Flags: wire.FlagSyn, Options: buf[:n]}
			pkt := make([]byte, 100)
			m, err := s.Build(pkt)
			if err != nil {
				t.Fatal(err)
			}
			var p wire.Packet
			if err := wire.Parse(pkt[:m], &p); err != nil {
				t.Fatal(err)
			}
			if p.Options != o {
				t.Errorf("parsed options %+v, want %+v", p.Options, o)
			}
		})
	}
}

func TestParseSYNOptionsHostile(t *testing.T) {
	absent := wire.SYNOptions{WScale: -1}
	mss := wire.SYNOptions{MSS: 1460, WScale: -1}
	for _, tc := range []struct {
		name string
		in   []byte
		want wire.SYNOptions
	}{
		{"nil", nil, absent},
		{"empty", []byte{}, absent},
		{"only nops", []byte{1, 1, 1, 1}, absent},
		{"eol", []byte{0, 2, 4, 5, 0xb4}, absent},
		{"eol mid-way", []byte{2, 4, 5, 0xb4, 0, 3, 3, 7}, mss},
		{"zero length", []byte{2, 4, 5, 0xb4, 0x22, 0, 3, 3, 7}, mss},
		{"length one", []byte{2, 4, 5, 0xb4, 0x22, 1, 3, 3, 7}, mss},
		{"length beyond end", []byte{2, 4, 5, 0xb4, 3, 4, 7}, mss},
		{"kind without length", []byte{2, 4, 5, 0xb4, 3}, mss},
		{"mss cut", []byte{2, 4, 5}, absent},
		{"unknown kinds skipped", []byte{0x1e, 6, 9, 9, 9, 9, 2, 4, 5, 0xb4, 0xfe, 2, 3, 3, 9}, wire.SYNOptions{MSS: 1460, WScale: 9}},
		{"sack blocks skipped", []byte{5, 10, 0, 0, 0, 1, 0, 0, 0, 2, 4, 2}, wire.SYNOptions{WScale: -1, SACKPermitted: true}},
		{"mss wrong length", []byte{2, 6, 5, 0xb4, 0, 0, 3, 3, 2}, wire.SYNOptions{WScale: 2}},
		{"mss short length", []byte{2, 3, 5, 4, 2}, wire.SYNOptions{WScale: -1, SACKPermitted: true}},
		{"ws wrong length", []byte{3, 4, 7, 7, 2, 4, 1, 0}, wire.SYNOptions{MSS: 256, WScale: -1}},
		{"sack perm wrong length", []byte{4, 3, 0, 1, 1}, absent},
		{"ts wrong length", []byte{8, 8, 1, 2, 3, 4, 5, 6}, absent},
		{"ts", []byte{8, 10, 0, 0, 0, 1, 0, 0, 0, 2}, wire.SYNOptions{WScale: -1, Timestamps: true, TSVal: 1, TSEcr: 2}},
		{"duplicate: last wins", []byte{2, 4, 0, 1, 2, 4, 0, 2}, wire.SYNOptions{MSS: 2, WScale: -1}},
		{"ws above 14 kept", []byte{3, 3, 200}, wire.SYNOptions{WScale: 200}},
		{"length 255", []byte{3, 3, 1, 0x99, 255, 1, 1}, wire.SYNOptions{WScale: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := wire.ParseSYNOptions(tc.in); got != tc.want {
				t.Errorf("ParseSYNOptions(% x) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

func TestSYNOptionsAllocs(t *testing.T) {
	o := wire.SYNOptions{MSS: 1460, WScale: 7, SACKPermitted: true, Timestamps: true, TSVal: 1}
	var buf [wire.MaxOptionsSize]byte
	if n := testing.AllocsPerRun(100, func() {
		n := o.Encode(buf[:])
		_ = wire.ParseSYNOptions(buf[:n])
	}); n != 0 {
		t.Errorf("allocs = %v, want 0", n)
	}
}

func FuzzParseSYNOptions(f *testing.F) {
	f.Add([]byte{2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7}) // Linux SYN
	f.Add([]byte{2, 4, 5, 0xb4, 1, 1, 4, 2, 1, 3, 3, 7})                          // Linux SYN without TS
	f.Add([]byte{2, 0, 3, 3})                                                     // zero length
	f.Add([]byte{8, 200, 1})                                                      // length past the end
	f.Add([]byte{1, 1, 0, 2, 4})                                                  // EOL before an option
	f.Add([]byte{3})                                                              // kind without a length byte
	f.Fuzz(func(t *testing.T, b []byte) {
		o := wire.ParseSYNOptions(b)
		if o.WScale < -1 || o.WScale > 255 {
			t.Fatalf("WScale %d", o.WScale)
		}
		if !o.Timestamps && (o.TSVal != 0 || o.TSEcr != 0) {
			t.Fatalf("timestamps without TS option: %+v", o)
		}
		// Whatever was parsed re-encodes to the same options.
		var buf [wire.MaxOptionsSize]byte
		n := o.Encode(buf[:])
		if n%4 != 0 || n > 20 {
			t.Fatalf("Encode = %d", n)
		}
		if got := wire.ParseSYNOptions(buf[:n]); got != o {
			t.Fatalf("round trip: %+v, want %+v", got, o)
		}
	})
}

package netlab

import (
	"encoding/binary"
	"math"
	"testing"
)

// testFrame returns a forwarder frame (virtio_net_hdr, Ethernet) carrying
// an IPv4 packet whose first payload byte is tag, or an ARP frame.
func testFrame(ip bool, tag byte) []byte {
	f := make([]byte, vnetHdrLen+14+21)
	typ := uint16(0x0806)
	if ip {
		typ = 0x0800
	}
	binary.BigEndian.PutUint16(f[vnetHdrLen+12:], typ)
	f[vnetHdrLen+14] = 0x45
	f[vnetHdrLen+14+20] = tag
	return f
}

func TestDropperRates(t *testing.T) {
	d, err := newDropper(Loss{ToTarget: 0.1, ToProber: 0.3, Seed: 42})
	if err != nil {
		t.Fatal(err)
	}
	const n = 100000
	for i := range n {
		d.drop(ToTarget, testFrame(i%2 == 0, 0))
		d.drop(ToProber, testFrame(true, 0))
	}
	s := d.snapshot()
	for _, c := range []struct {
		dir Direction
		p   float64
	}{{ToTarget, 0.1}, {ToProber, 0.3}} {
		got := float64(s.Random[c.dir]) / n
		// 5 standard deviations of a binomial share: never flaky.
		if sd := math.Sqrt(c.p * (1 - c.p) / n); math.Abs(got-c.p) > 5*sd {
			t.Errorf("%v: dropped %.4f, want %.2f", c.dir, got, c.p)
		}
		if s.Random[c.dir]+s.Forwarded[c.dir] != n || s.Hook[c.dir] != 0 {
			t.Errorf("%v: counts %+v", c.dir, s)
		}
	}
}

// TestDropperReplay: the same seed drops the same frames, each direction
// from its own stream, whatever the other direction carries.
func TestDropperReplay(t *testing.T) {
	pattern := func(seed uint64, otherFrames int) []bool {
		d, err := newDropper(Loss{ToTarget: 0.5, ToProber: 0.5, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		var out []bool
		for i := range 200 {
			for range otherFrames * (i % 3) {
				d.drop(ToProber, testFrame(true, 0))
			}
			out = append(out, d.drop(ToTarget, testFrame(true, 0)))
		}
		return out
	}
	a, b, c := pattern(7, 0), pattern(7, 5), pattern(8, 0)
	same := func(x, y []bool) bool {
		for i := range x {
			if x[i] != y[i] {
				return false
			}
		}
		return true
	}
	if !same(a, b) {
		t.Error("frames to the prober shifted the drops to the target")
	}
	if same(a, c) {
		t.Error("seeds 7 and 8 dropped the same 200 frames")
	}
}

// TestDropperHook: the hook sees the IP packet (nil for ARP), drops what it
// picks, is counted apart, and does not shift the random draws.
func TestDropperHook(t *testing.T) {
	var seen []byte
	arps := 0
	hook := func(dir Direction, ip []byte) bool {
		if ip == nil {
			arps++
			return false
		}
		seen = append(seen, ip[20])
		return dir == ToProber && ip[20] == 7 // "the first segment with tag 7"
	}
	with, err := newDropper(Loss{ToProber: 0.2, Seed: 99, Drop: hook})
	if err != nil {
		t.Fatal(err)
	}
	without, _ := newDropper(Loss{ToProber: 0.2, Seed: 99})
	for i := range 1000 {
		tag := byte(i % 10)
		gotW := with.drop(ToProber, testFrame(true, tag))
		gotWO := without.drop(ToProber, testFrame(true, tag))
		if tag == 7 && !gotW {
			t.Fatalf("frame %d: the hook's pick was forwarded", i)
		}
		if tag != 7 && gotW != gotWO {
			t.Fatalf("frame %d: the hook changed a random draw", i)
		}
	}
	with.drop(ToTarget, testFrame(false, 0))
	s := with.snapshot()
	if s.Hook[ToProber] != 100 || s.Hook[ToTarget] != 0 || arps != 1 || len(seen) != 1000 {
		t.Errorf("hook drops %v, %d ARP frames, %d IP frames seen", s.Hook, arps, len(seen))
	}
	if s.Random[ToProber]+s.Hook[ToProber]+s.Forwarded[ToProber] != 1000 || s.Forwarded[ToTarget] != 1 {
		t.Errorf("counts %+v", s)
	}
}

func TestDropperRejects(t *testing.T) {
	for _, l := range []Loss{{ToTarget: -0.1}, {ToProber: 1.5}, {ToTarget: math.NaN()}} {
		if _, err := newDropper(l); err == nil {
			t.Errorf("newDropper(%+v) accepted it", l)
		}
	}
	t.Setenv(SeedEnv, "1234")
	d, err := newDropper(Loss{ToTarget: 0.5})
	if err != nil || d.seed != 1234 {
		t.Errorf("seed from $%s: %v, %v", SeedEnv, d, err)
	}
	if d, _ := newDropper(Loss{ToTarget: 0.5, Seed: 5}); d.seed != 5 {
		t.Errorf("an explicit seed lost to $%s", SeedEnv)
	}
	t.Setenv(SeedEnv, "nope")
	if _, err := newDropper(Loss{}); err == nil {
		t.Errorf("bad $%s accepted", SeedEnv)
	}
}

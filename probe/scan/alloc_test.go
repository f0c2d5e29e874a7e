package scan

import (
	"testing"
	"time"
)

// The per-probe operations must not allocate: a scan of 2^32 pairs calls
// each of them billions of times.
func TestZeroAllocs(t *testing.T) {
	set := mustNewSet(t, mixedBlocks(t)...)
	perm := NewPerm(256000, testKey)
	lim := NewLimiter(1e6, 100)
	bm := NewBitmap(1 << 20)
	now := t0
	var i uint64
	for _, tt := range []struct {
		name string
		f    func()
	}{
		{"Set.Pair", func() { set.Pair(i % set.Len()) }},
		{"Perm.At", func() { perm.At(i % perm.Len()) }},
		{"Limiter.Reserve", func() {
			now = now.Add(time.Microsecond)
			lim.Reserve(now, 3)
		}},
		{"Bitmap.TestAndSet", func() { bm.TestAndSet(i % bm.Len()) }},
		{"Bitmap.Test", func() { bm.Test(i % bm.Len()) }},
	} {
		allocs := testing.AllocsPerRun(1000, func() {
			tt.f()
			i += 7
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per call", tt.name, allocs)
		}
	}
}

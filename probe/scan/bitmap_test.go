package scan

import (
	"sync"
	"sync/atomic"
	"testing"
)

func TestBitmap(t *testing.T) {
	for _, n := range []uint64{1, 63, 64, 65, 1000} {
		b := NewBitmap(n)
		if b.Len() != n || b.Count() != 0 {
			t.Fatalf("n=%d: Len %d, Count %d", n, b.Len(), b.Count())
		}
		for i := uint64(0); i < n; i += 3 {
			if b.TestAndSet(i) {
				t.Fatalf("n=%d: bit %d set before", n, i)
			}
			if !b.TestAndSet(i) {
				t.Fatalf("n=%d: bit %d not set after", n, i)
			}
		}
		for i := range n {
			if b.Test(i) != (i%3 == 0) {
				t.Fatalf("n=%d: Test(%d) = %v", n, i, b.Test(i))
			}
		}
		if want := (n + 2) / 3; b.Count() != want {
			t.Errorf("n=%d: Count = %d, want %d", n, b.Count(), want)
		}
		expectPanic(t, "TestAndSet(n)", func() { b.TestAndSet(n) })
		expectPanic(t, "Test(n)", func() { b.Test(n) })
	}
}

// TestBitmapConcurrent: 4 goroutines set every bit of a shared bitmap
// (neighbouring bits share words, so the ORs race); for each bit exactly
// one of them must see it clear.
func TestBitmapConcurrent(t *testing.T) {
	const n, workers = 100_000, 4
	b := NewBitmap(n)
	var firsts atomic.Uint64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			var mine uint64
			for k := range uint64(n) {
				// Each worker walks the bits in a different order
				// (multipliers coprime with n).
				i := (k*[workers]uint64{1, 3, 7, 9}[w] + uint64(w)*7919) % n
				if !b.TestAndSet(i) {
					mine++
				}
			}
			firsts.Add(mine)
		})
	}
	wg.Wait()
	if firsts.Load() != n || b.Count() != n {
		t.Errorf("%d first sets, Count %d; want %d", firsts.Load(), b.Count(), n)
	}
	for i := range uint64(n) {
		if !b.Test(i) {
			t.Fatalf("bit %d clear", i)
		}
	}
}

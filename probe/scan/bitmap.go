package scan

import (
	"fmt"
	"math/bits"
	"sync/atomic"
)

// Bitmap is one bit per pair of a Set: the "answered" bookkeeping for
// retries and duplicate suppression. It takes n/8 bytes (8 MiB for a /16
// with 1000 ports). It is safe for concurrent use.
type Bitmap struct {
	n     uint64
	words []uint64
	count atomic.Uint64
}

// NewBitmap returns a Bitmap of n clear bits.
func NewBitmap(n uint64) *Bitmap {
	return &Bitmap{n: n, words: make([]uint64, (n+63)/64)}
}

// Len returns n.
func (b *Bitmap) Len() uint64 { return b.n }

// TestAndSet sets bit i and reports whether it was already set. Exactly
// one of several concurrent calls for the same clear bit returns false.
func (b *Bitmap) TestAndSet(i uint64) (was bool) {
	b.check(i)
	bit := uint64(1) << (i & 63)
	was = atomic.OrUint64(&b.words[i>>6], bit)&bit != 0
	if !was {
		b.count.Add(1)
	}
	return was
}

// Test reports whether bit i is set.
func (b *Bitmap) Test(i uint64) bool {
	b.check(i)
	return atomic.LoadUint64(&b.words[i>>6])&(1<<(i&63)) != 0
}

// Count returns the number of set bits.
func (b *Bitmap) Count() uint64 { return b.count.Load() }

func (b *Bitmap) check(i uint64) {
	if i >= b.n {
		panic(fmt.Sprintf("scan: bit %d out of range [0, %d)", i, b.n))
	}
}

// NextClear returns the first clear bit at or after i, and false when
// there is none.
func (b *Bitmap) NextClear(i uint64) (uint64, bool) {
	for i < b.n {
		w := ^atomic.LoadUint64(&b.words[i>>6]) >> (i & 63)
		if w != 0 {
			j := i + uint64(bits.TrailingZeros64(w))
			return j, j < b.n
		}
		i = (i | 63) + 1
	}
	return 0, false
}

package scan

import (
	"fmt"
	"github.com/synprobe/synprobe/rawsock/wire"
	"math/bits"
)

// permRounds is the number of Feistel rounds. Four rounds of a PRF make a
// strong pseudo-random permutation (Luby and Rackoff, 1988).
const permRounds = 4

// Perm is a keyed pseudo-random bijection of [0, n): the scan order. The
// scanner walks i = 0, 1, 2, ... and probes Set.Pair(p.At(i)), which
// visits every pair exactly once, spread over hosts and ports, without a
// shuffled list in memory.
//
// It is a balanced Feistel network on the smallest even number of bits
// 2h >= 2 with 4^h >= n, whose round function is SipHash-2-4 under the key,
// with cycle walking: an index that lands at n or above is encrypted
// again until it falls below n. As 4^h < 4n, that takes fewer than four
// encryptions on average.
//
// A Perm is immutable and safe for concurrent use.
type Perm struct {
	n    uint64
	half uint   // h: bits per Feistel half
	mask uint64 // 2^h - 1
	key  wire.Cookie
}

// NewPerm returns the permutation of [0, n) under key. It panics unless
// 1 <= n <= MaxPairs. The same n and key give the same order; the key is
// used as wire.NewCookie uses it (SipHash key bytes, little-endian
// halves), so one per-run secret may serve both: the messages hashed here
// are 8 bytes long and never equal a cookie's 40-byte message.
func NewPerm(n uint64, key [16]byte) *Perm {
	if n < 1 || n > MaxPairs {
		panic(fmt.Sprintf("scan: NewPerm(%d): n must be 1 to 2^48", n))
	}
	b := uint(bits.Len64(n - 1))
	b += b & 1
	if b == 0 {
		b = 2
	}
	half := b / 2
	return &Perm{
		n:    n,
		half: half,
		mask: 1<<half - 1,
		key:  wire.NewCookie(key),
	}
}

// Len returns n.
func (p *Perm) Len() uint64 { return p.n }

// At returns the image of i, 0 <= i < n. It does not allocate.
func (p *Perm) At(i uint64) uint64 {
	x, _ := p.walk(i)
	return x
}

// walk is At, also returning the number of Feistel encryptions it took.
func (p *Perm) walk(i uint64) (x uint64, evals int) {
	if i >= p.n {
		panic(fmt.Sprintf("scan: permutation index %d out of range [0, %d)", i, p.n))
	}
	x = i
	for {
		x = p.encrypt(x)
		evals++
		if x < p.n {
			return x, evals
		}
	}
}

// encrypt is the Feistel network on 2h bits.
func (p *Perm) encrypt(x uint64) uint64 {
	l, r := x>>p.half, x&p.mask
	for round := range uint64(permRounds) {
		// The message: the right half (< 2^24), the half width and the
		// round, so that rounds and domain sizes use unrelated functions.
		m := r | uint64(p.half)<<48 | round<<56
		l, r = r, l^(p.key.Hash64(m)&p.mask)
	}
	return l<<p.half | r
}

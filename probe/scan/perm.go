package scan

import (
	"encoding/binary"
	"fmt"
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
	n      uint64
	half   uint   // h: bits per Feistel half
	mask   uint64 // 2^h - 1
	k0, k1 uint64
}

// NewPerm returns the permutation of [0, n) under key. It panics unless
// 1 <= n <= MaxPairs. The same n and key give the same order; the key is
// used as rawsock.NewCookie uses it (SipHash key bytes, little-endian
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
		k0:   binary.LittleEndian.Uint64(key[0:8]),
		k1:   binary.LittleEndian.Uint64(key[8:16]),
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
		l, r = r, l^(sipHash64(p.k0, p.k1, m)&p.mask)
	}
	return l<<p.half | r
}

// sipHash64 is SipHash-2-4 (Aumasson and Bernstein, 2012) under the key
// (k0, k1) of the 8-byte message that is m in little-endian order; the
// same value as rawsock's SipHash of those 8 bytes.
func sipHash64(k0, k1, m uint64) uint64 {
	v0 := k0 ^ 0x736f6d6570736575
	v1 := k1 ^ 0x646f72616e646f6d
	v2 := k0 ^ 0x6c7967656e657261
	v3 := k1 ^ 0x7465646279746573

	// The one message block.
	v3 ^= m
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0 ^= m

	// The last block: no bytes left, the length (8) in the top byte.
	const last = 8 << 56
	v3 ^= last
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0 ^= last

	v2 ^= 0xff
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	return v0 ^ v1 ^ v2 ^ v3
}

// sipRound is one SipRound.
func sipRound(v0, v1, v2, v3 uint64) (uint64, uint64, uint64, uint64) {
	v0 += v1
	v1 = bits.RotateLeft64(v1, 13)
	v1 ^= v0
	v0 = bits.RotateLeft64(v0, 32)
	v2 += v3
	v3 = bits.RotateLeft64(v3, 16)
	v3 ^= v2
	v0 += v3
	v3 = bits.RotateLeft64(v3, 21)
	v3 ^= v0
	v2 += v1
	v1 = bits.RotateLeft64(v1, 17)
	v1 ^= v2
	v2 = bits.RotateLeft64(v2, 32)
	return v0, v1, v2, v3
}

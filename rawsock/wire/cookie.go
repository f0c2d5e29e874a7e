package wire

import (
	"crypto/rand"
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// Cookie computes keyed initial sequence numbers for SYN probes, in the
// style of zmap and masscan: the ISN of a probe is a hash of its addresses,
// ports and a salt under a per-run secret key, so a SYN-ACK, RST or ICMP
// quote can be checked against the probe that caused it without keeping
// state, and replies to another run or forged by a third party fail the
// check.
//
// The hash is SipHash-2-4, a keyed PRF. A Cookie is a small value, safe for
// concurrent use.
type Cookie struct {
	k0, k1 uint64
}

// NewCookie returns a Cookie with the given key (the SipHash key bytes,
// little endian halves).
func NewCookie(key [16]byte) Cookie {
	return Cookie{
		k0: binary.LittleEndian.Uint64(key[0:8]),
		k1: binary.LittleEndian.Uint64(key[8:16]),
	}
}

// NewRandomCookie returns a Cookie with a key from crypto/rand.
func NewRandomCookie() (Cookie, error) {
	var key [16]byte
	if _, err := rand.Read(key[:]); err != nil {
		return Cookie{}, err
	}
	return NewCookie(key), nil
}

// ISN returns the sequence number for a probe from src:sport to dst:dport:
// the low 32 bits of SipHash-2-4 of the 40-byte message
//
//	src.As16() | dst.As16() | sport | dport | salt   (big endian)
//
// IPv4 and IPv4-mapped addresses give the same result; zones are ignored.
// The salt lets a caller vary the ISN, e.g. per attempt. It does not
// allocate.
func (c Cookie) ISN(src, dst netip.Addr, sport, dport uint16, salt uint32) uint32 {
	var m [40]byte
	s, d := src.Unmap().As16(), dst.Unmap().As16()
	copy(m[0:16], s[:])
	copy(m[16:32], d[:])
	binary.BigEndian.PutUint16(m[32:], sport)
	binary.BigEndian.PutUint16(m[34:], dport)
	binary.BigEndian.PutUint32(m[36:], salt)
	return uint32(sipHash24(c.k0, c.k1, m[:]))
}

// Hash64 is SipHash-2-4 under the cookie's key of the 8 bytes of m
// (little-endian): a keyed hash for the run's other secrets, such as the
// scan order. It never equals an ISN's hash, whose message is 40 bytes
// long. It does not allocate.
func (c Cookie) Hash64(m uint64) uint64 {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], m)
	return sipHash24(c.k0, c.k1, b[:])
}

// sipHash24 is SipHash-2-4 (Aumasson and Bernstein, 2012) of msg under the
// key (k0, k1), with 64-bit output.
func sipHash24(k0, k1 uint64, msg []byte) uint64 {
	v0 := k0 ^ 0x736f6d6570736575
	v1 := k1 ^ 0x646f72616e646f6d
	v2 := k0 ^ 0x6c7967656e657261
	v3 := k1 ^ 0x7465646279746573

	n := len(msg)
	for len(msg) >= 8 {
		m := binary.LittleEndian.Uint64(msg)
		v3 ^= m
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
		v0 ^= m
		msg = msg[8:]
	}
	// Last block: the remaining bytes, and the length's low byte on top.
	var tail [8]byte
	copy(tail[:], msg)
	tail[7] = byte(n)
	m := binary.LittleEndian.Uint64(tail[:])
	v3 ^= m
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0 ^= m

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

package wire

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// Checksum returns the 16-bit ones'-complement sum of b added to initial,
// folded to 16 bits but not complemented. An odd-length b is summed as if a
// zero byte were appended.
//
// The result can be fed back as initial to continue the sum over the next
// buffer, as long as every buffer but the last has an even length:
//
//	sum := Checksum(hdr, PseudoHeaderChecksum(ProtocolTCP, src, dst, n))
//	sum = Checksum(payload, sum)
//	tcp.SetChecksum(^sum)
//
// (To chain after an odd-length buffer, byte-swap the sum of the buffer that
// follows it, as described in RFC 1071, section 2(B).)
func Checksum(b []byte, initial uint16) uint16 {
	// Sum big-endian 64-bit words with end-around carry: since 2^16 ≡ 1
	// modulo 2^16-1, the 64-bit ones'-complement sum folds to the same value
	// as the 16-bit one, and it never turns a non-zero sum into zero.
	acc := uint64(initial)
	var c uint64
	for len(b) >= 32 {
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[0:8]), c)
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[8:16]), c)
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[16:24]), c)
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[24:32]), c)
		b = b[32:]
	}
	for len(b) >= 8 {
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[0:8]), c)
		b = b[8:]
	}
	if len(b) > 0 {
		// The tail starts at an even offset: left-align it in a word so that
		// each byte keeps its position within its 16-bit word, and the
		// padding of an odd tail is the zero low byte of the last one.
		var tail [8]byte
		copy(tail[:], b)
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(tail[:]), c)
	}
	acc, c = bits.Add64(acc, 0, c)
	acc += c // acc was all ones, now 0: the carry makes it 1, never overflows

	// Fold 64 -> 32 -> 16 bits, keeping the end-around carries.
	acc = (acc >> 32) + (acc & 0xffffffff)
	acc = (acc >> 32) + (acc & 0xffffffff)
	acc = (acc >> 16) + (acc & 0xffff)
	acc = (acc >> 16) + (acc & 0xffff)
	return uint16(acc)
}

// PseudoHeaderChecksum returns the ones'-complement sum (not complemented)
// of the IPv4 (RFC 793) or IPv6 (RFC 8200, section 8.1) pseudo header for an
// upper-layer packet of the given protocol and length.
//
// IPv4-mapped IPv6 addresses are treated as IPv4. If src and dst are both
// IPv4 the IPv4 pseudo header is used, otherwise the IPv6 one, with any IPv4
// address in its IPv4-mapped form. Zones are ignored.
func PseudoHeaderChecksum(proto uint8, src, dst netip.Addr, length uint16) uint16 {
	s, d := src.As16(), dst.As16()
	if src.Unmap().Is4() && dst.Unmap().Is4() {
		var ph [12]byte
		copy(ph[0:4], s[12:16])
		copy(ph[4:8], d[12:16])
		ph[9] = proto
		binary.BigEndian.PutUint16(ph[10:12], length)
		return Checksum(ph[:], 0)
	}
	var ph [40]byte
	copy(ph[0:16], s[:])
	copy(ph[16:32], d[:])
	binary.BigEndian.PutUint32(ph[32:36], uint32(length))
	ph[39] = proto
	return Checksum(ph[:], 0)
}

package scan

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"net/netip"
)

// MaxPairs is the largest number of (address, port) pairs a scan may have:
// the largest n NewPerm takes. 0.0.0.0/0:1-65535 is just below it.
const MaxPairs = 1 << 48

// Block is the addresses and ports of one Spec: Spec.Prefix with
// Spec.Ports, or, for a host name, the resolved Addrs with Spec.Ports.
// A Block for a host name without Addrs has no pairs.
type Block struct {
	Spec  *Spec
	Addrs []netip.Addr // a resolved host's addresses; nil for a Prefix
}

// Set is the (address, port) pairs of a list of Blocks, indexed from 0 to
// Len()-1 without storing them: block by block in the given order, and
// within a block address by address (host-major), each address with all
// its ports in ascending order. Memory is proportional to the number of
// blocks and port ranges, not pairs.
//
// Overlapping blocks (198.18.0.0/24:80 and 198.18.0.7:80, or a name that
// resolves to a listed address) are not merged: their common pairs appear
// once per block.
//
// A Set is immutable and safe for concurrent use; it keeps references to
// the Specs and Addrs slices, which must not change.
type Set struct {
	idx      index
	blocks   []setBlock
	len      uint64
	overflow bool
}

type setBlock struct {
	end      uint64 // index after the block's last pair
	nports   uint64
	spec     *Spec
	addrs    []netip.Addr // nil: a prefix starting at base
	hi, lo   uint64       // base address as a 128-bit number (IPv4: lo only)
	is4      bool
	portEnds []uint32 // portEnds[k]: ports in spec.Ports[:k+1]
}

// NewSet returns the Set of the blocks' pairs. If their number does not fit
// in a uint64 (it takes 2^16 /0 blocks of 65535 ports), Len returns
// math.MaxUint64 and Pair panics; callers refuse sets larger than MaxPairs.
func NewSet(blocks ...Block) *Set {
	s := &Set{blocks: make([]setBlock, 0, len(blocks))}
	var total uint64
	for _, b := range blocks {
		sb := setBlock{spec: b.Spec}
		var naddrs uint64
		switch {
		case b.Addrs != nil:
			sb.addrs = b.Addrs
			naddrs = uint64(len(b.Addrs))
		case b.Spec.Host == "" && b.Spec.Prefix.IsValid():
			p := b.Spec.Prefix.Masked()
			hostBits := p.Addr().BitLen() - p.Bits()
			if hostBits >= 64 {
				s.overflow = true
				continue
			}
			naddrs = 1 << hostBits
			sb.is4 = p.Addr().Is4()
			a := p.Addr().As16()
			sb.hi, sb.lo = binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:])
		}
		var nports uint32
		sb.portEnds = make([]uint32, len(b.Spec.Ports))
		for k, r := range b.Spec.Ports {
			nports += uint32(r.Len())
			sb.portEnds[k] = nports
		}
		sb.nports = uint64(nports)
		hi, n := bits.Mul64(naddrs, sb.nports)
		var carry uint64
		total, carry = bits.Add64(total, n, 0)
		if hi != 0 || carry != 0 {
			s.overflow = true
		}
		sb.end = total
		s.blocks = append(s.blocks, sb)
		s.len = total
	}
	if s.overflow {
		s.len = math.MaxUint64
	}
	s.buildIndex()
	return s
}

// Len returns the number of pairs (math.MaxUint64 if it overflowed).
func (s *Set) Len() uint64 { return s.len }

// Pair returns the i-th pair, 0 <= i < Len(), and the Spec it comes from.
// IPv4-mapped addresses of resolved hosts are returned as IPv4. It takes
// O(log blocks + log port ranges) time and does not allocate.
func (s *Set) Pair(i uint64) (addr netip.Addr, port uint16, spec *Spec) {
	if s.overflow {
		panic("scan: Pair on a Set larger than 2^64 pairs")
	}
	if i >= s.len {
		panic(fmt.Sprintf("scan: pair index %d out of range [0, %d)", i, s.len))
	}
	// The first block that ends after i; empty blocks end where the
	// previous one does, so they are never chosen.
	lo, hi := 0, len(s.blocks)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if s.blocks[m].end <= i {
			lo = m + 1
		} else {
			hi = m
		}
	}
	b := &s.blocks[lo]
	var start uint64
	if lo > 0 {
		start = s.blocks[lo-1].end
	}
	j := i - start
	ai, pi := j/b.nports, uint32(j%b.nports)

	if b.addrs != nil {
		addr = b.addrs[ai].Unmap()
	} else if b.is4 {
		addr = netip.AddrFrom4(v4Bytes(uint32(b.lo) + uint32(ai)))
	} else {
		l, carry := bits.Add64(b.lo, ai, 0)
		var a [16]byte
		binary.BigEndian.PutUint64(a[:8], b.hi+carry)
		binary.BigEndian.PutUint64(a[8:], l)
		addr = netip.AddrFrom16(a)
	}

	// The first port range that ends after pi.
	lo, hi = 0, len(b.portEnds)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if b.portEnds[m] <= pi {
			lo = m + 1
		} else {
			hi = m
		}
	}
	var pstart uint32
	if lo > 0 {
		pstart = b.portEnds[lo-1]
	}
	port = b.spec.Ports[lo].Lo + uint16(pi-pstart)
	return addr, port, b.spec
}

func v4Bytes(v uint32) [4]byte {
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], v)
	return a
}

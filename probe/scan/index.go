package scan

import (
	"encoding/binary"
	"net/netip"
	"sort"
)

// index finds pairs by address: single addresses through a map, CIDR
// blocks by a scan (they are few).
type index struct {
	byAddr map[netip.Addr][]int // block indices holding the address
	cidrs  []int                // blocks that are true CIDR ranges
}

func (s *Set) buildIndex() {
	s.idx.byAddr = map[netip.Addr][]int{}
	for bi := range s.blocks {
		b := &s.blocks[bi]
		switch {
		case b.addrs != nil:
			for _, a := range b.addrs {
				a = a.Unmap()
				s.idx.byAddr[a] = append(s.idx.byAddr[a], bi)
			}
		case b.nports > 0 && b.spec.Prefix.IsSingleIP():
			a := b.spec.Prefix.Addr().Unmap()
			s.idx.byAddr[a] = append(s.idx.byAddr[a], bi)
		default:
			s.idx.cidrs = append(s.idx.cidrs, bi)
		}
	}
}

// Index returns the index of the pair (addr, port): the inverse of Pair.
// When blocks overlap it returns the first block's index. ok is false
// when the pair is not in the Set.
func (s *Set) Index(addr netip.Addr, port uint16) (i uint64, ok bool) {
	addr = addr.Unmap()
	for _, bi := range s.idx.byAddr[addr] {
		if i, ok := s.blockIndex(bi, addr, port); ok {
			return i, true
		}
	}
	for _, bi := range s.idx.cidrs {
		if i, ok := s.blockIndex(bi, addr, port); ok {
			return i, true
		}
	}
	return 0, false
}

// EachIndex calls fn with the index of (addr, port) in every block that
// holds it: overlapping targets ("198.18.0.0/24:80" and "web:80") share
// the answer, each with its own Spec.
func (s *Set) EachIndex(addr netip.Addr, port uint16, fn func(i uint64)) {
	addr = addr.Unmap()
	for _, bi := range s.idx.byAddr[addr] {
		if i, ok := s.blockIndex(bi, addr, port); ok {
			fn(i)
		}
	}
	for _, bi := range s.idx.cidrs {
		if i, ok := s.blockIndex(bi, addr, port); ok {
			fn(i)
		}
	}
}

// blockIndex locates (addr, port) inside block bi.
func (s *Set) blockIndex(bi int, addr netip.Addr, port uint16) (uint64, bool) {
	b := &s.blocks[bi]
	var ai uint64
	switch {
	case b.addrs != nil:
		found := false
		for k, a := range b.addrs {
			if a.Unmap() == addr {
				ai, found = uint64(k), true
				break
			}
		}
		if !found {
			return 0, false
		}
	default:
		p := b.spec.Prefix.Masked()
		if !p.Contains(addr) {
			return 0, false
		}
		a := addr.As16()
		if b.is4 {
			ai = uint64(uint32(binary.BigEndian.Uint64(a[8:])) - uint32(b.lo))
		} else {
			ai = binary.BigEndian.Uint64(a[8:]) - b.lo
		}
	}
	ports := b.spec.Ports
	k := sort.Search(len(ports), func(k int) bool { return ports[k].Hi >= port })
	if k == len(ports) || ports[k].Lo > port {
		return 0, false
	}
	pi := uint64(port - ports[k].Lo)
	if k > 0 {
		pi += uint64(b.portEnds[k-1])
	}
	var start uint64
	if bi > 0 {
		start = s.blocks[bi-1].end
	}
	return start + ai*b.nports + pi, true
}

package scan

import (
	"cmp"
	"container/heap"
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// MaxPairs is the largest number of (address, port) pairs a Set may hold:
// the largest n NewPerm takes. 0.0.0.0/0:1-65535 is just below it. A scan
// needs one bit of memory per pair, so callers bound it further by the
// memory they can spare (see MaxScanPairs).
const MaxPairs = 1 << 48

// MaxScanPairs is the most pairs one scan may have: a bitmap of 512 MiB,
// 0.0.0.0/0 with one port.
const MaxScanPairs = 1 << 32

// Block is the addresses and ports of one Spec: Spec.Prefix with
// Spec.Ports, or, for a host name, the resolved Addrs with Spec.Ports.
// A Block for a host name without Addrs has no pairs.
type Block struct {
	Spec  *Spec
	Addrs []netip.Addr // a resolved host's addresses; nil for a Prefix
}

// A Set is the (address, port) pairs named by a list of target
// expressions, each pair once, numbered from 0 to Len()-1 without storing
// them. When expressions overlap, the most specific one names the pair
// and gives its expectation:
//
//   - a longer prefix wins over a shorter one (an address, or a host name's
//     address, is a /32 or /128);
//   - for the same prefix, the expression whose port range holding the
//     port is narrower wins (443 over 1-1024);
//   - two expressions equal in both name the pair once; if their
//     expectations differ, NewSet and Builder.Build fail.
//
// So `fw:1-1024=closed fw:443=open` probes 1024 pairs, 443 expected open.
//
// Pairs are numbered region by region (disjoint address blocks, in
// address order, IPv4 first), within a region address by address, each
// address with its ports in ascending order. Memory is proportional to
// the number of expressions and the overlaps between them, not to the
// number of pairs: an expression costs about 40 bytes.
//
// A Set is immutable and safe for concurrent use.
type Set struct {
	entries  []entry
	names    []string // host names; entry.host-1 indexes it
	sources  []source
	ports    []portList
	regions  []region
	overlays []overlay
	excluded []netip.Addr // to leave out; after build, those that were in
	len      uint64
	overflow bool
}

// Expectation codes of an entry.
const (
	expectNone uint8 = iota
	expectOpen
	expectClosed
	expectFiltered
)

var expectNames = [...]string{"", ExpectOpen, ExpectClosed, ExpectFiltered}

func expectCode(s string) uint8 {
	for i, n := range expectNames {
		if s == n {
			return uint8(i)
		}
	}
	return expectNone
}

// entry is one target expression with one address: a prefix (an address
// is a /32 or /128) and an interned port list.
type entry struct {
	hi, lo uint64 // first address, 128 bits; IPv4 in lo's low 32 bits
	bits   uint8  // prefix length in its family
	v6     bool
	expect uint8
	ports  uint32 // index into Set.ports
	src    uint32 // index into Set.sources
	line   uint32 // line in a file; 0 for an argument
	host   uint32 // index into Set.names + 1; 0 for an address
}

// source is a command-line argument or a file.
type source struct {
	arg  string // the argument as given; "" for a file
	file string
}

// portList is a sorted, disjoint port list with running counts.
type portList struct {
	r    []PortRange
	ends []uint32 // ends[k]: ports in r[:k+1]
}

func newPortList(r []PortRange) portList {
	l := portList{r: r, ends: make([]uint32, len(r))}
	var n uint32
	for k, pr := range r {
		n += uint32(pr.Len())
		l.ends[k] = n
	}
	return l
}

func (l *portList) n() uint32 { return l.ends[len(l.ends)-1] }

// at returns the pi-th port, 0 <= pi < n(), and the range holding it.
func (l *portList) at(pi uint32) (uint16, int) {
	k, _ := slices.BinarySearch(l.ends, pi+1)
	var start uint32
	if k > 0 {
		start = l.ends[k-1]
	}
	return l.r[k].Lo + uint16(pi-start), k
}

// index returns the position of port in the list and the range holding
// it; ok is false when the list does not hold it.
func (l *portList) index(port uint16) (pi uint32, k int, ok bool) {
	k = sortSearch(len(l.r), func(k int) bool { return l.r[k].Hi >= port })
	if k == len(l.r) || l.r[k].Lo > port {
		return 0, 0, false
	}
	pi = uint32(port - l.r[k].Lo)
	if k > 0 {
		pi += l.ends[k-1]
	}
	return pi, k, true
}

// region is a block of addresses (a CIDR prefix) that no more specific
// expression splits, with the ports named for it: all of one entry's
// (ovl < 0), or an overlay of several entries' ports.
type region struct {
	hi, lo uint64
	end    uint64 // index after the region's last pair
	entry  uint32 // ovl < 0: the entry naming every port
	ovl    int32  // index into Set.overlays, or -1
	nports uint32
	bits   uint8
	v6     bool
}

// overlay is the ports of a region that several entries name: disjoint,
// ascending ranges, each with the entry that wins it.
type overlay struct {
	portList
	entries []uint32 // entries[k] names ranges r[k]
}

type segment struct {
	lo, hi uint16
	entry  uint32
}

// Origin is where a pair of a Set came from: the target expression that
// names it (the most specific one). The zero Origin is not valid.
type Origin struct {
	s *Set
	e uint32
}

// IsValid reports whether o names an expression.
func (o Origin) IsValid() bool { return o.s != nil }

func (o Origin) entry() *entry { return &o.s.entries[o.e] }

// Compare orders two origins of one Set as they were given: by argument
// or file, in the order the Builder took them, then by line.
func (o Origin) Compare(p Origin) int {
	a, b := o.entry(), p.entry()
	return cmp.Or(cmp.Compare(a.src, b.src), cmp.Compare(a.line, b.line))
}

// Expect returns the expression's expected state ("" when none).
func (o Origin) Expect() string { return expectNames[o.entry().expect] }

// Host returns the host name the expression gave, "" for an address.
func (o Origin) Host() string {
	if h := o.entry().host; h > 0 {
		return o.s.names[h-1]
	}
	return ""
}

// File returns the file and line the expression was read from; name is ""
// for a command-line argument.
func (o Origin) File() (name string, line int) {
	e := o.entry()
	return o.s.sources[e.src].file, int(e.line)
}

// Arg returns the expression: a command-line argument as given, a line of
// a file in canonical form (see Spec.String).
func (o Origin) Arg() string {
	if src := &o.s.sources[o.entry().src]; src.file == "" {
		return src.arg
	}
	return string(o.AppendArg(nil))
}

// AppendArg appends Arg to b.
func (o Origin) AppendArg(b []byte) []byte {
	e := o.entry()
	if src := &o.s.sources[e.src]; src.file == "" {
		return append(b, src.arg...)
	}
	v6 := e.v6
	switch {
	case e.host > 0:
		b = append(b, o.s.names[e.host-1]...)
	case !v6:
		b = netip.AddrFrom4(v4Bytes(uint32(e.lo))).AppendTo(b)
		if e.bits < 32 {
			b = append(b, '/')
			b = strconv.AppendUint(b, uint64(e.bits), 10)
		}
	default:
		b = append(b, '[')
		b = addr128(e.hi, e.lo).AppendTo(b)
		if e.bits < 128 {
			b = append(b, '/')
			b = strconv.AppendUint(b, uint64(e.bits), 10)
		}
		b = append(b, ']')
	}
	b = append(b, ':')
	for i, r := range o.s.ports[e.ports].r {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(r.Lo), 10)
		if r.Hi != r.Lo {
			b = append(b, '-')
			b = strconv.AppendUint(b, uint64(r.Hi), 10)
		}
	}
	if e.expect != expectNone {
		b = append(b, '=')
		b = append(b, expectNames[e.expect]...)
	}
	return b
}

// String returns Arg, with the file and line for an expression from a
// file: "targets.txt:12: 198.18.0.5:443=open".
func (o Origin) String() string {
	if !o.IsValid() {
		return ""
	}
	if f, line := o.File(); f != "" {
		return f + ":" + strconv.Itoa(line) + ": " + o.Arg()
	}
	return o.Arg()
}

// Builder collects target expressions, one at a time, for a Set: a file of
// a million lines costs about 40 bytes a line, not the text. The zero
// value is ready to use.
type Builder struct {
	s       Set
	portIdx map[string]uint32
	nameIdx map[string]uint32
	file    map[string]uint32 // source index of each file
	expect  bool
	// nameFrom says where each name of s.names was first given.
	nameFrom []nameSource
	// lastPorts is the port list of the last expression added.
	lastPorts uint32
	chunks    [][]entry // the entries so far
	n         int
}

// nameSource is where a host name was first given, and whether a
// command-line argument gives it.
type nameSource struct {
	src, line uint32
	arg       bool
}

// entryChunk is how many entries a Builder allocates at a time, once it
// holds that many; it starts at firstChunk and doubles.
const entryChunk, firstChunk = 1 << 14, 16

// AddArg adds a command-line argument.
func (b *Builder) AddArg(spec *Spec) {
	b.s.sources = append(b.s.sources, source{arg: spec.Arg})
	b.add(spec, uint32(len(b.s.sources)-1), 0)
}

// AddLine adds the expression on a line of a file.
func (b *Builder) AddLine(file string, line int, spec *Spec) {
	if b.file == nil {
		b.file = map[string]uint32{}
	}
	src, ok := b.file[file]
	if !ok {
		b.s.sources = append(b.s.sources, source{file: file})
		src = uint32(len(b.s.sources) - 1)
		b.file[file] = src
	}
	b.add(spec, src, uint32(line))
}

func (b *Builder) add(spec *Spec, src, line uint32) {
	if b.portIdx == nil {
		b.portIdx = map[string]uint32{}
		b.nameIdx = map[string]uint32{}
	}
	// Files repeat one port list line after line: the last one first.
	pi, ok := b.lastPorts, len(b.s.ports) > 0 && slices.Equal(b.s.ports[b.lastPorts].r, spec.Ports)
	if !ok {
		pi, ok = b.portIdx[FormatPorts(spec.Ports)]
	}
	if !ok {
		b.s.ports = append(b.s.ports, newPortList(slices.Clone(spec.Ports)))
		pi = uint32(len(b.s.ports) - 1)
		b.portIdx[FormatPorts(spec.Ports)] = pi
	}
	b.lastPorts = pi
	e := entry{expect: expectCode(spec.Expect), ports: pi, src: src, line: line}
	b.expect = b.expect || e.expect != expectNone
	if spec.Host != "" {
		hi, ok := b.nameIdx[spec.Host]
		isArg := b.s.sources[src].file == ""
		if !ok {
			b.s.names = append(b.s.names, strings.Clone(spec.Host))
			hi = uint32(len(b.s.names))
			b.nameIdx[spec.Host] = hi
			b.nameFrom = append(b.nameFrom, nameSource{src: src, line: line, arg: isArg})
		} else if isArg {
			b.nameFrom[hi-1].arg = true
		}
		e.host = hi
	} else {
		e.setPrefix(spec.Prefix)
	}
	// In chunks: a growing slice would copy itself over and over, some
	// five times the final size in all. The first ones small and
	// doubling: one target's run (ping -c 1) need not allocate and fault
	// in 640 KB.
	if n := len(b.chunks); n == 0 || len(b.chunks[n-1]) == cap(b.chunks[n-1]) {
		size := firstChunk
		if n > 0 {
			size = min(2*cap(b.chunks[n-1]), entryChunk)
		}
		b.chunks = append(b.chunks, make([]entry, 0, size))
	}
	c := &b.chunks[len(b.chunks)-1]
	*c = append(*c, e)
	b.n++
}

func (e *entry) setPrefix(p netip.Prefix) {
	p = p.Masked()
	a := p.Addr().Unmap()
	e.v6 = a.Is6()
	e.bits = uint8(p.Bits())
	if !e.v6 {
		e.bits = uint8(min(p.Bits(), 32))
		e.hi, e.lo = 0, uint64(binary.BigEndian.Uint32(a.AsSlice()))
		return
	}
	a16 := a.As16()
	e.hi, e.lo = binary.BigEndian.Uint64(a16[:8]), binary.BigEndian.Uint64(a16[8:])
}

// Len returns the number of expressions added.
func (b *Builder) Len() int { return b.n }

// HasExpectation reports whether any expression carries an expectation.
func (b *Builder) HasExpectation() bool { return b.expect }

// Exclude leaves addresses out of the Set, whatever names them (this
// host's subnets' broadcast addresses inside a scanned block, say).
func (b *Builder) Exclude(addrs ...netip.Addr) {
	for _, a := range addrs {
		b.s.excluded = append(b.s.excluded, a.Unmap())
	}
}

// Excluded returns the addresses Builder.Exclude left out that the
// expressions named, sorted.
func (s *Set) Excluded() []netip.Addr { return s.excluded }

// Hosts returns the host names the expressions name, each once, in the
// order first given: resolve them for Build.
func (b *Builder) Hosts() []string { return slices.Clone(b.s.names) }

// HostSource returns the file and line that first gave a host name, for
// messages that must not quote a file: file is "" when a command-line
// argument gives the name (or no expression does).
func (b *Builder) HostSource(name string) (file string, line int) {
	hi, ok := b.nameIdx[name]
	if !ok || b.nameFrom[hi-1].arg {
		return "", 0
	}
	ns := b.nameFrom[hi-1]
	return b.s.sources[ns.src].file, int(ns.line)
}

// ConflictError reports two equally specific expressions that expect
// different states of the same pair.
type ConflictError struct {
	Addr netip.Addr
	Port uint16
	A, B Origin // in the order given
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%s and %s both name %v, expecting %s and %s: say which (a more specific target wins)",
		quoteOrigin(e.A), quoteOrigin(e.B), netip.AddrPortFrom(e.Addr, e.Port), orNone(e.A.Expect()), orNone(e.B.Expect()))
}

// quoteOrigin names an expression: a command-line argument as given, a
// file's line by its file and number alone (the file may hold what must
// not be shown).
func quoteOrigin(o Origin) string {
	if f, line := o.File(); f != "" {
		return fmt.Sprintf("%s:%d", f, line)
	}
	return strconv.Quote(o.Arg())
}

func orNone(s string) string {
	if s == "" {
		return "nothing"
	}
	return s
}

// Build returns the Set. addrs gives each host name's addresses (an
// unresolved name names no pairs). The Builder must not be used again.
func (b *Builder) Build(addrs map[string][]netip.Addr) (*Set, error) {
	s := new(Set)
	*s = b.s
	chunks, n := b.chunks, b.n
	*b = Builder{}
	// Host names become one entry per address.
	for _, c := range chunks {
		for _, e := range c {
			if e.host > 0 {
				n += len(addrs[s.names[e.host-1]]) - 1
			}
		}
	}
	s.entries = make([]entry, 0, n)
	for i, c := range chunks {
		for _, e := range c {
			if e.host == 0 {
				s.entries = append(s.entries, e)
				continue
			}
			for _, a := range addrs[s.names[e.host-1]] {
				a = a.Unmap()
				e.setPrefix(netip.PrefixFrom(a, a.BitLen()))
				s.entries = append(s.entries, e)
			}
		}
		chunks[i] = nil
	}
	if err := s.build(); err != nil {
		return nil, err
	}
	return s, nil
}

// NewSet returns the Set of the blocks' pairs, each Spec a command-line
// argument. If the number of pairs does not fit in a uint64 (it takes a
// /64 IPv6 block, which ParseSpec refuses, or 2^16 /0 blocks of 65535
// ports), Len returns math.MaxUint64 and Pair panics.
func NewSet(blocks ...Block) (*Set, error) {
	var b Builder
	addrs := map[string][]netip.Addr{}
	for i, bl := range blocks {
		spec := *bl.Spec
		if bl.Addrs != nil {
			// Each block's addresses are its own, even when two
			// blocks give one name.
			spec.Host = fmt.Sprintf("%s\x00%d", spec.Host, i)
			addrs[spec.Host] = bl.Addrs
		}
		b.AddArg(&spec)
	}
	s, err := b.Build(addrs)
	if err != nil {
		return nil, err
	}
	for i := range s.names {
		s.names[i], _, _ = strings.Cut(s.names[i], "\x00")
	}
	return s, nil
}

// node is a distinct prefix with the entries that name it. Nodes are in
// sorted order: a node's subtree (the prefixes inside it) follows it,
// and ends at end.
type node struct {
	first, last int32 // entries[first:last], sorted
	parent      int32 // -1 for a root
	end         int32 // index after the node's subtree
}

// build turns the entries into disjoint regions.
func (s *Set) build() error {
	es := s.entries
	if len(es) > math.MaxInt32 {
		return fmt.Errorf("scan: %d target expressions are too many", len(es))
	}
	for i := range es {
		if addrBits(es[i].v6)-int(es[i].bits) >= 64 {
			// More pairs than a uint64 counts (ParseSpec refuses
			// such blocks).
			s.overflow, s.len = true, math.MaxUint64
			return nil
		}
	}
	// Stable: among equal prefixes, input order stays, and ties go to
	// the first given.
	slices.SortStableFunc(es, func(a, b entry) int {
		if a.v6 != b.v6 {
			if a.v6 {
				return 1
			}
			return -1
		}
		return cmp.Or(cmp.Compare(a.hi, b.hi), cmp.Compare(a.lo, b.lo), cmp.Compare(a.bits, b.bits))
	})
	// Distinct prefixes, in sorted order: a parent comes before its
	// children, and a node's subtree is contiguous.
	var nodes []node
	var stack []int32
	pop := func() {
		nodes[stack[len(stack)-1]].end = int32(len(nodes))
		stack = stack[:len(stack)-1]
	}
	for i := 0; i < len(es); {
		j := i + 1
		for j < len(es) && es[j].v6 == es[i].v6 && es[j].hi == es[i].hi && es[j].lo == es[i].lo && es[j].bits == es[i].bits {
			j++
		}
		n := node{first: int32(i), last: int32(j), parent: -1}
		for len(stack) > 0 && !contains(&es[nodes[stack[len(stack)-1]].first], &es[i]) {
			pop()
		}
		if len(stack) > 0 {
			n.parent = stack[len(stack)-1]
		}
		nodes = append(nodes, n)
		stack = append(stack, int32(len(nodes)-1))
		i = j
	}
	for len(stack) > 0 {
		pop()
	}
	s.regions = make([]region, 0, len(nodes)+len(nodes)/8)
	var chain []int32
	var sc scratch
	for k := range nodes {
		n := &nodes[k]
		chain = chain[:0]
		for a := int32(k); a >= 0; a = nodes[a].parent {
			chain = append(chain, a)
		}
		slices.Reverse(chain)
		ent, ovl, err := s.overlayFor(nodes, chain, &sc)
		if err != nil {
			return err
		}
		// The node's own space: its prefix without its children's
		// (the nodes of its subtree whose parent it is).
		e := &es[n.first]
		start := e.lo
		end := start + (1<<hostBits(e) - 1) // inclusive
		next := start
		for c := int32(k) + 1; c < n.end; c = nodes[c].end {
			ce := &es[nodes[c].first]
			if ce.lo > next {
				s.addRange(e, next, ce.lo-1, ent, ovl)
			}
			next = ce.lo + (1 << hostBits(ce))
		}
		if next <= end && next >= start {
			s.addRange(e, next, end, ent, ovl)
		}
	}
	slices.SortFunc(s.regions, func(a, b region) int {
		if a.v6 != b.v6 {
			if a.v6 {
				return 1
			}
			return -1
		}
		return cmp.Or(cmp.Compare(a.hi, b.hi), cmp.Compare(a.lo, b.lo))
	})
	s.exclude()
	var total uint64
	for i := range s.regions {
		r := &s.regions[i]
		hb := addrBits(r.v6) - int(r.bits)
		if hb >= 64 {
			s.overflow = true
			continue
		}
		hi, n := bits.Mul64(1<<hb, uint64(r.nports))
		var carry uint64
		total, carry = bits.Add64(total, n, 0)
		if hi != 0 || carry != 0 {
			s.overflow = true
		}
		r.end = total
	}
	s.len = total
	s.regions = slices.Clip(s.regions)
	if s.overflow {
		s.len = math.MaxUint64
	}
	return nil
}

func addrBits(v6 bool) int {
	if v6 {
		return 128
	}
	return 32
}

// hostBits returns the host part's width of e's prefix. IPv6 prefixes
// shorter than /64 overflow a Set anyway; they are clamped so that range
// arithmetic on the low 64 bits stays within bounds.
func hostBits(e *entry) int { return min(addrBits(e.v6)-int(e.bits), 63) }

// contains reports whether a's prefix holds b's.
func contains(a, b *entry) bool {
	if a.v6 != b.v6 || a.bits > b.bits {
		return false
	}
	if !a.v6 {
		m := ^uint64(0) << (32 - a.bits) & 0xffffffff
		return a.lo&m == b.lo&m
	}
	ah, al := mask128(a.hi, a.lo, int(a.bits))
	bh, bl := mask128(b.hi, b.lo, int(a.bits))
	return ah == bh && al == bl
}

func mask128(hi, lo uint64, n int) (uint64, uint64) {
	switch {
	case n <= 0:
		return 0, 0
	case n < 64:
		return hi & (^uint64(0) << (64 - n)), 0
	case n == 64:
		return hi, 0
	case n < 128:
		return hi, lo & (^uint64(0) << (128 - n))
	}
	return hi, lo
}

// addRange adds the addresses first..last of e's block (low bits) as
// regions, in CIDR-aligned pieces.
func (s *Set) addRange(e *entry, first, last uint64, ent uint32, ovl int32) {
	var nports uint32
	if ovl >= 0 {
		nports = s.overlays[ovl].n()
	} else {
		nports = s.ports[s.entries[ent].ports].n()
	}
	s.regions = appendRange(s.regions, region{hi: e.hi, v6: e.v6, entry: ent, ovl: ovl, nports: nports}, first, last)
}

// appendRange appends the addresses first..last (low bits) as copies of
// region r, in CIDR-aligned pieces.
func appendRange(regions []region, r region, first, last uint64) []region {
	for first <= last {
		// The largest aligned block at first that ends by last.
		size := uint64(1)
		if first != 0 {
			size = first & -first
		} else {
			size = 1 << 63
		}
		for size > last-first+1 {
			size >>= 1
		}
		r.lo = first
		r.bits = uint8(addrBits(r.v6) - bits.TrailingZeros64(size))
		regions = append(regions, r)
		if first+size-1 == last {
			break
		}
		first += size
	}
	return regions
}

// exclude cuts the excluded addresses out of the regions (sorted).
func (s *Set) exclude() {
	if len(s.excluded) == 0 {
		return
	}
	slices.SortFunc(s.excluded, netip.Addr.Compare)
	s.excluded = slices.Compact(s.excluded)
	var out []region
	var skipped []netip.Addr
	for _, r := range s.regions {
		first := r.lo
		last := first + (1<<min(addrBits(r.v6)-int(r.bits), 63) - 1)
		lo, hi := regionAddr(&r, first), regionAddr(&r, last)
		k, _ := slices.BinarySearchFunc(s.excluded, lo, netip.Addr.Compare)
		if k == len(s.excluded) || s.excluded[k].Compare(hi) > 0 {
			out = append(out, r)
			continue
		}
		for ; k < len(s.excluded) && s.excluded[k].Compare(hi) <= 0; k++ {
			x := lowBits(s.excluded[k])
			if x > first {
				out = appendRange(out, r, first, x-1)
			}
			first = x + 1
			skipped = append(skipped, s.excluded[k])
		}
		if first <= last {
			out = appendRange(out, r, first, last)
		}
	}
	s.regions, s.excluded = out, skipped
}

// regionAddr returns the address of region r whose low bits are lo.
func regionAddr(r *region, lo uint64) netip.Addr {
	if r.v6 {
		return addr128(r.hi, lo)
	}
	return netip.AddrFrom4(v4Bytes(uint32(lo)))
}

// lowBits returns the low 64 bits of a (IPv4: the 32-bit value).
func lowBits(a netip.Addr) uint64 {
	a = a.Unmap()
	if a.Is4() {
		return uint64(binary.BigEndian.Uint32(a.AsSlice()))
	}
	b := a.As16()
	return binary.BigEndian.Uint64(b[8:])
}

// scratch is overlayFor's reused working memory.
type scratch struct {
	claims []claim
	events []event
	active claimHeap
	groups map[[2]int][4]int // (depth, size) -> active claims per expectation
}

// claim is one port range of one entry, with its precedence.
type claim struct {
	lo, hi uint16
	depth  int    // deeper: a longer prefix
	size   int    // smaller: a narrower range
	entry  uint32 // index into entries
	ended  bool
}

// beats orders claims: the deeper, then the narrower, then the first
// given (entries are sorted stably, so the lower index).
func (a *claim) beats(b *claim) bool {
	if a.depth != b.depth {
		return a.depth > b.depth
	}
	if a.size != b.size {
		return a.size < b.size
	}
	return a.entry < b.entry
}

// event starts (on) or ends a claim at port pos.
type event struct {
	pos   int
	claim int
	on    bool
}

// claimHeap is a max-heap of claim indices by precedence.
type claimHeap struct {
	idx    []int
	claims []claim
}

func (h *claimHeap) Len() int           { return len(h.idx) }
func (h *claimHeap) Less(i, j int) bool { return h.claims[h.idx[i]].beats(&h.claims[h.idx[j]]) }
func (h *claimHeap) Swap(i, j int)      { h.idx[i], h.idx[j] = h.idx[j], h.idx[i] }
func (h *claimHeap) Push(x any)         { h.idx = append(h.idx, x.(int)) }
func (h *claimHeap) Pop() any {
	x := h.idx[len(h.idx)-1]
	h.idx = h.idx[:len(h.idx)-1]
	return x
}

// overlayFor works out which entry names each port of a node's own
// space: the deepest node of the chain naming the port, and there the
// narrowest range, and among equals the first given, which must agree
// with the others on what to expect. It returns the entry when one names
// every port alone. It sweeps the port ranges once, keeping the claims in
// force in a heap: O(n log n) in the claims of the chain.
func (s *Set) overlayFor(nodes []node, chain []int32, sc *scratch) (uint32, int32, error) {
	es := s.entries
	last := &nodes[chain[len(chain)-1]]
	if len(chain) == 1 && last.last-last.first == 1 {
		return uint32(last.first), -1, nil
	}
	claims, events := sc.claims[:0], sc.events[:0]
	defer func() { sc.claims, sc.events = claims, events }()
	for d, k := range chain {
		n := &nodes[k]
		for i := n.first; i < n.last; i++ {
			for _, r := range s.ports[es[i].ports].r {
				events = append(events, event{int(r.Lo), len(claims), true}, event{int(r.Hi) + 1, len(claims), false})
				claims = append(claims, claim{lo: r.Lo, hi: r.Hi, depth: d, size: r.Len(), entry: uint32(i)})
			}
		}
	}
	slices.SortFunc(events, func(a, b event) int { return cmp.Compare(a.pos, b.pos) })
	if sc.groups == nil {
		sc.groups = map[[2]int][4]int{}
	}
	clear(sc.groups)
	h := &sc.active
	h.idx, h.claims = h.idx[:0], claims
	var segs []segment
	for i := 0; i < len(events); {
		pos := events[i].pos
		for ; i < len(events) && events[i].pos == pos; i++ {
			ev := &events[i]
			c := &claims[ev.claim]
			g := [2]int{c.depth, c.size}
			n := sc.groups[g]
			if ev.on {
				n[es[c.entry].expect]++
				heap.Push(h, ev.claim)
			} else {
				n[es[c.entry].expect]--
				c.ended = true
			}
			sc.groups[g] = n
		}
		for h.Len() > 0 && claims[h.idx[0]].ended {
			heap.Pop(h)
		}
		if h.Len() == 0 || i == len(events) {
			continue
		}
		best := &claims[h.idx[0]]
		lo, hi := pos, events[i].pos-1
		// Its equals must expect the same.
		kinds := 0
		for _, n := range sc.groups[[2]int{best.depth, best.size}] {
			if n > 0 {
				kinds++
			}
		}
		if kinds > 1 {
			var other *claim
			for j := range claims {
				c := &claims[j]
				if int(c.lo) <= lo && int(c.hi) >= hi && c.depth == best.depth && c.size == best.size && es[c.entry].expect != es[best.entry].expect {
					other = c
					break
				}
			}
			e := &es[last.first]
			addr := netip.AddrFrom4(v4Bytes(uint32(e.lo)))
			if e.v6 {
				addr = addr128(e.hi, e.lo)
			}
			a, b := min(best.entry, other.entry), max(best.entry, other.entry)
			return 0, 0, &ConflictError{Addr: addr, Port: uint16(lo), A: Origin{s, a}, B: Origin{s, b}}
		}
		if n := len(segs); n > 0 && segs[n-1].entry == best.entry && int(segs[n-1].hi)+1 == lo {
			segs[n-1].hi = uint16(hi)
			continue
		}
		segs = append(segs, segment{lo: uint16(lo), hi: uint16(hi), entry: best.entry})
	}
	// One entry naming exactly its own ports needs no overlay.
	if e := segs[0].entry; allOf(segs, e) && samePorts(segs, s.ports[es[e].ports].r) {
		return e, -1, nil
	}
	r := make([]PortRange, len(segs))
	o := overlay{entries: make([]uint32, len(segs))}
	for k, sg := range segs {
		r[k], o.entries[k] = PortRange{sg.lo, sg.hi}, sg.entry
	}
	o.portList = newPortList(r)
	s.overlays = append(s.overlays, o)
	return 0, int32(len(s.overlays) - 1), nil
}

func allOf(segs []segment, e uint32) bool {
	for _, sg := range segs {
		if sg.entry != e {
			return false
		}
	}
	return true
}

// samePorts reports whether segs, merged, are exactly r.
func samePorts(segs []segment, r []PortRange) bool {
	var merged []PortRange
	for _, sg := range segs {
		if n := len(merged); n > 0 && int(merged[n-1].Hi)+1 == int(sg.lo) {
			merged[n-1].Hi = sg.hi
			continue
		}
		merged = append(merged, PortRange{sg.lo, sg.hi})
	}
	return slices.Equal(merged, r)
}

func addr128(hi, lo uint64) netip.Addr {
	var a [16]byte
	binary.BigEndian.PutUint64(a[:8], hi)
	binary.BigEndian.PutUint64(a[8:], lo)
	return netip.AddrFrom16(a)
}

// Len returns the number of pairs (math.MaxUint64 if it overflowed).
func (s *Set) Len() uint64 { return s.len }

// Addrs returns the number of addresses with pairs (at most Len).
func (s *Set) Addrs() uint64 {
	var n uint64
	for i := range s.regions {
		if r := &s.regions[i]; r.nports > 0 {
			n += 1 << min(addrBits(r.v6)-int(r.bits), 63)
		}
	}
	return n
}

// Pair returns the i-th pair, 0 <= i < Len(), and its Origin. It takes
// O(log regions + log port ranges) time and does not allocate.
func (s *Set) Pair(i uint64) (addr netip.Addr, port uint16, o Origin) {
	if s.overflow {
		panic("scan: Pair on a Set larger than 2^64 pairs")
	}
	if i >= s.len {
		panic(fmt.Sprintf("scan: pair index %d out of range [0, %d)", i, s.len))
	}
	// The first region that ends after i; empty ones end where the
	// previous one does, so they are never chosen.
	k, _ := slices.BinarySearchFunc(s.regions, i+1, func(r region, t uint64) int { return cmp.Compare(r.end, t) })
	r := &s.regions[k]
	var start uint64
	if k > 0 {
		start = s.regions[k-1].end
	}
	j := i - start
	ai, pi := j/uint64(r.nports), uint32(j%uint64(r.nports))
	if r.v6 {
		addr = addr128(r.hi, r.lo+ai)
	} else {
		addr = netip.AddrFrom4(v4Bytes(uint32(r.lo + ai)))
	}
	port, e := s.portAt(r, pi)
	return addr, port, Origin{s, e}
}

// portAt returns the pi-th port of region r and the entry naming it.
func (s *Set) portAt(r *region, pi uint32) (uint16, uint32) {
	if r.ovl >= 0 {
		o := &s.overlays[r.ovl]
		port, k := o.at(pi)
		return port, o.entries[k]
	}
	port, _ := s.ports[s.entries[r.entry].ports].at(pi)
	return port, r.entry
}

// Index returns the index of the pair (addr, port), the inverse of Pair,
// and its Origin; ok is false when the pair is not in the Set.
func (s *Set) Index(addr netip.Addr, port uint16) (i uint64, o Origin, ok bool) {
	addr = addr.Unmap()
	var hi, lo uint64
	v6 := addr.Is6()
	if v6 {
		a := addr.As16()
		hi, lo = binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:])
	} else if addr.Is4() {
		lo = uint64(binary.BigEndian.Uint32(addr.AsSlice()))
	} else {
		return 0, Origin{}, false
	}
	// The last region starting at or before addr.
	k, found := slices.BinarySearchFunc(s.regions, addr, func(r region, _ netip.Addr) int {
		if r.v6 != v6 {
			if r.v6 {
				return 1
			}
			return -1
		}
		return cmp.Or(cmp.Compare(r.hi, hi), cmp.Compare(r.lo, lo))
	})
	if !found {
		k--
	}
	if k < 0 {
		return 0, Origin{}, false
	}
	r := &s.regions[k]
	hb := min(addrBits(r.v6)-int(r.bits), 63)
	if r.v6 != v6 || r.hi != hi || lo-r.lo >= 1<<hb || lo < r.lo {
		return 0, Origin{}, false
	}
	pi, e, ok := s.portIndex(r, port)
	if !ok {
		return 0, Origin{}, false
	}
	var start uint64
	if k > 0 {
		start = s.regions[k-1].end
	}
	return start + (lo-r.lo)*uint64(r.nports) + uint64(pi), Origin{s, e}, true
}

// portIndex locates port among region r's ports.
func (s *Set) portIndex(r *region, port uint16) (uint32, uint32, bool) {
	if r.ovl >= 0 {
		o := &s.overlays[r.ovl]
		pi, k, ok := o.index(port)
		if !ok {
			return 0, 0, false
		}
		return pi, o.entries[k], true
	}
	pi, _, ok := s.ports[s.entries[r.entry].ports].index(port)
	return pi, r.entry, ok
}

func sortSearch(n int, f func(int) bool) int {
	lo, hi := 0, n
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if !f(m) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// Hosts calls fn for every address of the Set, in index order, with the
// index range [first, end) of its pairs; fn returns false to stop.
func (s *Set) Hosts(fn func(addr netip.Addr, first, end uint64) bool) {
	var start uint64
	for k := range s.regions {
		r := &s.regions[k]
		if n := uint64(r.nports); n > 0 {
			for a := uint64(0); start+a*n < r.end; a++ {
				var addr netip.Addr
				if r.v6 {
					addr = addr128(r.hi, r.lo+a)
				} else {
					addr = netip.AddrFrom4(v4Bytes(uint32(r.lo + a)))
				}
				first := start + a*n
				if !fn(addr, first, first+n) {
					return
				}
			}
		}
		start = r.end
	}
}

// Prefixes returns the address blocks of the Set, disjoint, in index
// order (IPv4 first).
func (s *Set) Prefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(s.regions))
	s.Blocks(func(p netip.Prefix, _, _ uint64) bool {
		out = append(out, p)
		return true
	})
	return out
}

func v4Bytes(v uint32) [4]byte {
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], v)
	return a
}

// HostOf returns the address of pair i and the index range [first, end)
// of that address's pairs.
func (s *Set) HostOf(i uint64) (addr netip.Addr, first, end uint64) {
	if s.overflow || i >= s.len {
		panic(fmt.Sprintf("scan: pair index %d out of range [0, %d)", i, s.len))
	}
	k, _ := slices.BinarySearchFunc(s.regions, i+1, func(r region, t uint64) int { return cmp.Compare(r.end, t) })
	r := &s.regions[k]
	var start uint64
	if k > 0 {
		start = s.regions[k-1].end
	}
	ai := (i - start) / uint64(r.nports)
	if r.v6 {
		addr = addr128(r.hi, r.lo+ai)
	} else {
		addr = netip.AddrFrom4(v4Bytes(uint32(r.lo + ai)))
	}
	first = start + ai*uint64(r.nports)
	return addr, first, first + uint64(r.nports)
}

// Blocks calls fn for every block of addresses of the Set, disjoint, in
// index order, with the index range [first, end) of its pairs; fn returns
// false to stop.
func (s *Set) Blocks(fn func(p netip.Prefix, first, end uint64) bool) {
	var start uint64
	for k := range s.regions {
		r := &s.regions[k]
		if r.end > start {
			a := netip.AddrFrom4(v4Bytes(uint32(r.lo)))
			if r.v6 {
				a = addr128(r.hi, r.lo)
			}
			if !fn(netip.PrefixFrom(a, int(r.bits)), start, r.end) {
				return
			}
		}
		start = r.end
	}
}

// SourceRange is the source address of the pairs of a Set below index
// End, and at or above the previous range's End.
type SourceRange struct {
	End  uint64
	Addr netip.Addr
}

// Sources returns the source address of every pair of the Set as ranges
// of indices: src is asked once per block (see Blocks), and neighbours
// that agree are merged.
func Sources(set *Set, src func(p netip.Prefix) netip.Addr) []SourceRange {
	return sourcesSplit(set, nil, src)
}

// sourcesSplit is Sources, but a block that holds one of routes (sorted
// by address; both families) is asked in parts: halves, and their
// halves, until no part holds one. Every address of a part is then
// routed alike (whatever routes cover the part cover all of it), so its
// first address's source is every address's.
func sourcesSplit(set *Set, routes []netip.Prefix, src func(p netip.Prefix) netip.Addr) []SourceRange {
	var out []SourceRange
	emit := func(p netip.Prefix, end uint64) {
		a := src(p)
		if n := len(out); n > 0 && out[n-1].Addr == a {
			out[n-1].End = end
		} else {
			out = append(out, SourceRange{End: end, Addr: a})
		}
	}
	// holds reports whether a route more specific than p lies inside p.
	holds := func(p netip.Prefix) bool {
		k, _ := slices.BinarySearchFunc(routes, p.Addr(), func(r netip.Prefix, a netip.Addr) int { return r.Addr().Compare(a) })
		for ; k < len(routes) && p.Contains(routes[k].Addr()); k++ {
			if routes[k].Bits() > p.Bits() {
				return true
			}
		}
		return false
	}
	var split func(p netip.Prefix, first, end uint64)
	split = func(p netip.Prefix, first, end uint64) {
		if p.IsSingleIP() || !holds(p) {
			emit(p, end)
			return
		}
		// The halves of a block have as many pairs each (its pairs go
		// address by address): the second begins at the middle pair.
		mid := first + (end-first)/2
		second, _, _ := set.Pair(mid)
		split(netip.PrefixFrom(p.Addr(), p.Bits()+1), first, mid)
		split(netip.PrefixFrom(second, p.Bits()+1), mid, end)
	}
	set.Blocks(func(p netip.Prefix, first, end uint64) bool {
		split(p, first, end)
		return true
	})
	return out
}

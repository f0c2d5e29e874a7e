package scan

import (
	"math/bits"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/synprobe/synprobe/rawsock"
)

// sendTimes remembers when recent probes left, by pair index and pass, in
// a table sized by the rate and timeout (the probes that can be in
// flight), not by the number of pairs. A pair and pass hash to a bucket
// of four slots (ways), and a probe takes the bucket's free slot or the
// one written longest ago: a probe loses its time (its answer then has
// no RTT) only when four later probes hash to its bucket before its
// answer is read. With one slot per probe, one later probe did that: at
// 10,000 probes a second through a 100 ms path, 1.5% of the answers had
// no RTT.
//
// Each slot holds the user-space time taken just before its probe's batch
// was handed to the kernel and, once the kernel reports it, the probe's
// transmit stamp. The kernel reports a stamp with the id that put
// returned for the probe: rawsock.BulkStamp, then in 30 bits the slot's
// index and the low bits of a counter of the slot's writes (its
// generation). A stamp is taken only by the slot
// and generation it names, and only if it is not earlier than the user
// time (the kernel stamps the packet after that time was taken): a late
// stamp of a probe whose slot was reused finds another generation, and
// would also be too early for the probe that reused it.
type sendTimes struct {
	slots []stSlot
	mask  uint64
	bits  uint // log2(len(slots))
}

type stSlot struct {
	key  atomic.Uint64 // stKey(idx, pass); 0: never written; keyBusy: being written
	user atomic.Int64  // unix nanoseconds, user-space clock before the send
	// kern is the generation (high 32 bits) and the kernel's transmit
	// stamp less user (low 32 bits, ns), or noStamp while none came.
	kern atomic.Uint64
}

// keyBusy is a slot's key while a sender writes it.
const keyBusy = ^uint64(0)

// noStamp in a slot's kern says that no kernel stamp came (yet).
const noStamp = 1<<32 - 1

// Every stamp id of a scan carries rawsock.BulkStamp, the scan's half
// of the id space of the client's sockets, which they share with the
// engine's packets: their stamps are read in bulk (ReadTxStamps), the
// engine's one by one. stampIDBit is set in the ids of stamped packets
// other than probes (the RSTs): no probe's id has it. A probe's id is
// its slot and the slot's generation in the idBits below them.
const (
	stampIDBit = 1 << 30
	idBits     = 30
	idMask     = 1<<idBits - 1
)

func newSendTimes(rate float64, timeout time.Duration) *sendTimes {
	if rate <= 0 {
		rate = 300000 // about what one machine sends
	}
	want := uint64(4 * rate * max(timeout, 100*time.Millisecond).Seconds())
	size := uint64(4096)
	for size < want && size < 1<<19 {
		size <<= 1
	}
	return &sendTimes{slots: make([]stSlot, size), mask: size - 1, bits: uint(bits.TrailingZeros64(size))}
}

// ways is the slots in a bucket: four slots of 24 bytes, in one or two
// cache lines.
const ways = 4

// bucket spreads pairs and passes over the table and returns the first
// slot of the pair's bucket: a retry does not overwrite the time of the
// probe before it, whose answer may still come.
func (t *sendTimes) bucket(idx uint64, pass int) uint64 {
	return ((idx + uint64(pass)*0xd1b54a32d192ed03) * 0x9e3779b97f4a7c15 >> 20) & t.mask &^ (ways - 1)
}

// find returns the slot that holds the probe to pair idx in pass, if one
// does.
func (t *sendTimes) find(idx uint64, pass int) (uint64, *stSlot, bool) {
	want := stKey(idx, pass)
	b := t.bucket(idx, pass)
	for i := b; i < b+ways; i++ {
		if t.slots[i].key.Load() == want {
			return i, &t.slots[i], true
		}
	}
	return 0, nil, false
}

// stKey packs a pair index (below MaxPairs, 2^48) and a pass into a
// non-zero key.
func stKey(idx uint64, pass int) uint64 { return (idx<<16 | uint64(min(pass, 0xfffe))) + 1 }

// id returns the stamp id of generation gen of slot i.
func (t *sendTimes) id(i uint64, gen uint32) uint32 {
	return (gen<<t.bits|uint32(i))&idMask | rawsock.BulkStamp
}

// put records that the probe to pair idx in pass leaves now (ns, by the
// user-space clock), and returns the id its kernel stamp is to carry.
func (t *sendTimes) put(idx uint64, pass int, ns int64) uint32 {
	i, s := t.claim(t.bucket(idx, pass))
	gen := uint32(s.kern.Load()>>32) + 1
	// The generation first, then the time: a stamp read with the old
	// generation fails its compare-and-swap once the time has changed.
	s.kern.Store(uint64(gen)<<32 | noStamp)
	s.user.Store(ns)
	s.key.Store(stKey(idx, pass))
	return t.id(i, gen)
}

// claim marks a slot of the bucket starting at b as being written, and
// returns it: a free one, else the one written longest ago. Two senders
// may write a bucket at once. The bucket's first slot, if never written,
// is claimed without reading the bucket first: a read would map the
// kernel's zero page, and the write after it fault again, with a TLB
// flush on every CPU; the compare-and-swap maps the page for writing.
func (t *sendTimes) claim(b uint64) (uint64, *stSlot) {
	if t.slots[b].key.CompareAndSwap(0, keyBusy) {
		return b, &t.slots[b]
	}
	for {
		pick, key, oldest := uint64(0), keyBusy, int64(0)
		for i := b; i < b+ways; i++ {
			s := &t.slots[i]
			k := s.key.Load()
			if k == keyBusy {
				continue
			}
			if k == 0 {
				pick, key = i, 0
				break
			}
			if u := s.user.Load(); key == keyBusy || u < oldest {
				pick, key, oldest = i, k, u
			}
		}
		if key != keyBusy && t.slots[pick].key.CompareAndSwap(key, keyBusy) {
			return pick, &t.slots[pick]
		}
		runtime.Gosched()
	}
}

// stamp records the kernel's transmit stamp (ns) of the probe sent with
// id, if that probe still holds its slot, and reports whether it did.
func (t *sendTimes) stamp(id uint32, ns int64) bool {
	if id&rawsock.BulkStamp == 0 || id&stampIDBit != 0 {
		return false
	}
	id &= idMask
	s := &t.slots[uint64(id)&t.mask]
	k := s.key.Load()
	old := s.kern.Load()
	if k == 0 || k == keyBusy || uint32(old>>32)&(1<<(idBits-t.bits)-1) != id>>t.bits {
		return false
	}
	return s.record(k, old, ns)
}

// stampPair records the kernel's transmit stamp (ns) of the probe to pair
// idx in pass, seen leaving (wiring.ProbeCopies), if it still holds its
// slot, and reports whether it did.
func (t *sendTimes) stampPair(idx uint64, pass int, ns int64) bool {
	_, s, ok := t.find(idx, pass)
	if !ok {
		return false
	}
	k := s.key.Load()
	if k != stKey(idx, pass) {
		return false
	}
	return s.record(k, s.kern.Load(), ns)
}

// idOf returns the stamp id of the probe to pair idx in pass, while it
// holds its slot.
func (t *sendTimes) idOf(idx uint64, pass int) (uint32, bool) {
	i, s, ok := t.find(idx, pass)
	if !ok {
		return 0, false
	}
	id := t.id(i, uint32(s.kern.Load()>>32))
	if s.key.Load() != stKey(idx, pass) {
		return 0, false // rewritten while we read it
	}
	return id, true
}

// record stores stamp ns in the slot, which held key k and kern old when
// the caller checked them, unless it has a stamp, was rewritten since, or
// ns is before its user time (the kernel stamps the packet after that).
func (s *stSlot) record(k, old uint64, ns int64) bool {
	if uint32(old) != noStamp {
		return false
	}
	d := ns - s.user.Load()
	if d < 0 || d >= noStamp || s.key.Load() != k {
		return false
	}
	return s.kern.CompareAndSwap(old, old&^noStamp|uint64(d))
}

// get returns when the probe to pair idx in pass left: its kernel stamp
// (kernel true) or, while none came, the user-space time before its send.
func (t *sendTimes) get(idx uint64, pass int) (ns int64, kernel, ok bool) {
	_, s, ok := t.find(idx, pass)
	if !ok {
		return 0, false, false
	}
	want := stKey(idx, pass)
	u := s.user.Load()
	kw := s.kern.Load()
	if s.key.Load() != want {
		return 0, false, false
	}
	if d := uint32(kw); d != noStamp {
		return u + int64(d), true, true
	}
	return u, false, true
}

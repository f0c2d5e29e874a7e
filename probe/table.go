package probe

import "time"

// tableSize bounds the probes in flight at once. It is a power of two; the
// table is kept at most half full.
const tableSize = 4096

// pstate is where one probe's exchange stands.
type pstate uint8

const (
	stateFree    pstate = iota
	stateSynSent        // SYN out, waiting for SYN-ACK, RST or ICMP
)

// pending is one probe in flight.
type pending struct {
	state    pstate
	isn      uint32 // our initial sequence number: the table key
	id       uint32 // transmit-timestamp id of the SYN
	job      *job
	target   int32 // index into job.targets
	seq      int32 // probe number for that target
	live     bool  // its result is still to come (Prober.live)
	sport    uint16
	sent     time.Time // user-space clock at send
	deadline time.Time // when the timer fires
	gen      uint32    // timer generation (see timerHeap)
	c        *tcb      // the connection (ModeFIN) or trace; nil otherwise
}

// t returns the target of probe e.
func (e *pending) t() *Target { return &e.job.targets[e.target] }

// table holds the probes in flight, keyed by ISN. ISNs are keyed hashes, so
// their low bits index the table directly; collisions probe linearly and
// deletion shifts entries back (no tombstones).
type table struct {
	e [tableSize]pending
	n int
}

func (t *table) full() bool { return t.n >= tableSize/2 }

// insert adds a probe and returns its index; the caller checks full first.
func (t *table) insert(p pending) int {
	for i := p.isn % tableSize; ; i = (i + 1) % tableSize {
		if t.e[i].state == stateFree {
			t.e[i] = p
			t.n++
			return int(i)
		}
	}
}

// lookup returns the index of the in-flight probe whose ISN is isn and
// whose source port is sport, or -1.
func (t *table) lookup(isn uint32, sport uint16) int {
	for i := isn % tableSize; ; i = (i + 1) % tableSize {
		e := &t.e[i]
		if e.state == stateFree {
			return -1
		}
		if e.isn == isn && e.sport == sport {
			return int(i)
		}
	}
}

// remove deletes entry i.
func (t *table) remove(i int) {
	// Backward-shift deletion: an entry later in the same run moves into
	// the hole unless its home slot lies cyclically in (hole, j].
	hole := uint32(i)
	for j := (hole + 1) % tableSize; t.e[j].state != stateFree; j = (j + 1) % tableSize {
		home := t.e[j].isn % tableSize
		if (j-home)%tableSize >= (j-hole)%tableSize {
			t.e[hole] = t.e[j]
			hole = j
		}
	}
	t.e[hole] = pending{}
	t.n--
}

package probe

import "time"

// timerHeap is a min-heap of probe deadlines. Re-arming a probe's timer
// pushes a new entry with the probe's next generation; entries whose
// generation no longer matches are skipped when they surface. Written out
// by hand: container/heap boxes every element in an interface.
type timerHeap []timerEntry

type timerEntry struct {
	at    time.Time
	isn   uint32
	sport uint16
	gen   uint32
}

func (h *timerHeap) push(e timerEntry) {
	*h = append(*h, e)
	s := *h
	for i := len(s) - 1; i > 0; {
		parent := (i - 1) / 2
		if !s[i].at.Before(s[parent].at) {
			break
		}
		s[i], s[parent] = s[parent], s[i]
		i = parent
	}
}

func (h *timerHeap) pop() timerEntry {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s = s[:last]
	s.down(0)
	*h = s
	return top
}

// compact drops the entries whose probe has left the table or re-armed its
// timer since: without it, answered probes' entries would stay until
// their deadlines, and a long timeout at a high rate would grow the heap
// without bound. Called when stale entries are the majority, it costs O(1)
// per push, amortised, and the heap stays within twice the table.
func (h *timerHeap) compact(t *table) {
	s := *h
	keep := s[:0]
	for _, e := range s {
		if i := t.lookup(e.isn, e.sport); i >= 0 && t.e[i].gen == e.gen {
			keep = append(keep, e)
		}
	}
	clear(s[len(keep):])
	for i := len(keep)/2 - 1; i >= 0; i-- {
		keep.down(i)
	}
	*h = keep
}

// down restores the heap property below i.
func (h timerHeap) down(i int) {
	for {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(h) && h[l].at.Before(h[m].at) {
			m = l
		}
		if r < len(h) && h[r].at.Before(h[m].at) {
			m = r
		}
		if m == i {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// live returns the table index of the probe the earliest valid entry
// belongs to, dropping stale entries on the way.
func (h *timerHeap) live(t *table) (int, bool) {
	for len(*h) > 0 {
		top := (*h)[0]
		if i := t.lookup(top.isn, top.sport); i >= 0 && t.e[i].gen == top.gen {
			return i, true
		}
		h.pop()
	}
	return -1, false
}

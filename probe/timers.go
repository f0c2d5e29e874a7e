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
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(s) && s[l].at.Before(s[m].at) {
			m = l
		}
		if r < len(s) && s[r].at.Before(s[m].at) {
			m = r
		}
		if m == i {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
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

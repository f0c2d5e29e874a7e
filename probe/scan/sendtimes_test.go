package scan

import (
	"sync"
	"testing"
	"time"
)

// TestSendTimesStamps: a probe's time is the user-space one until the
// kernel's stamp comes with the probe's id (or its copy is seen); a stamp
// with another id, of an earlier probe in the same slot, or earlier than
// the user-space time is not taken.
func TestSendTimesStamps(t *testing.T) {
	st := newSendTimes(1000, time.Second) // 4096 slots
	const user = int64(1_700_000_000_000_000_000)
	id := st.put(7, 0, user)
	if ns, kernel, ok := st.get(7, 0); !ok || kernel || ns != user {
		t.Fatalf("before any stamp: %d, kernel %v, ok %v", ns, kernel, ok)
	}
	if _, _, ok := st.get(7, 1); ok {
		t.Error("pass 1 of pair 7 found, never sent")
	}
	if st.stamp(id|stampIDBit, user+10) {
		t.Error("an id with the RST bit taken")
	}
	if st.stamp(id, user-1) {
		t.Error("a stamp before the user-space time taken")
	}
	if st.stamp(id+1<<st.bits, user+10) {
		t.Error("another generation's stamp taken")
	}
	if !st.stamp(id, user+2500) {
		t.Fatal("the probe's own stamp not taken")
	}
	if st.stamp(id, user+2600) {
		t.Error("a second stamp taken")
	}
	if ns, kernel, ok := st.get(7, 0); !ok || !kernel || ns != user+2500 {
		t.Errorf("after the stamp: %d, kernel %v, ok %v", ns-user, kernel, ok)
	}

	// The slot reused by the same pair's retry (another slot) and by a
	// later probe (the same slot, a new generation): the first probe's
	// late stamp does not go to it.
	id2 := st.put(7, 0, user+5000)
	if id2 == id {
		t.Fatal("a rewritten slot kept its id")
	}
	if st.stamp(id, user+6000) {
		t.Error("the previous generation's stamp taken")
	}
	if !st.stamp(id2, user+6000) {
		t.Error("the new generation's stamp not taken")
	}

	// A probe seen leaving (wiring.ProbeCopies): by pair and pass.
	st.put(9, 2, user)
	if st.stampPair(9, 1, user+100) {
		t.Error("a copy of another pass taken")
	}
	if !st.stampPair(9, 2, user+100) {
		t.Error("the probe's copy not taken")
	}
	if ns, kernel, _ := st.get(9, 2); !kernel || ns != user+100 {
		t.Errorf("after the copy: %d, kernel %v", ns-user, kernel)
	}
}

// TestSendTimesConcurrentPut: senders writing the same slot at once each
// get an id of their own, and only the probe left in the slot takes a
// stamp, with its own id.
func TestSendTimesConcurrentPut(t *testing.T) {
	st := newSendTimes(1000, time.Second)
	// Pairs that share slot 0 of pass 0.
	var pairs []uint64
	for idx := uint64(0); len(pairs) < 8; idx++ {
		if st.slot(idx, 0) == st.slot(0, 0) {
			pairs = append(pairs, idx)
		}
	}
	for round := range 200 {
		ids := make([]uint32, len(pairs))
		var wg sync.WaitGroup
		for i, idx := range pairs {
			wg.Go(func() { ids[i] = st.put(idx, 0, int64(round)*1000) })
		}
		wg.Wait()
		seen := map[uint32]bool{}
		for _, id := range ids {
			if seen[id] {
				t.Fatalf("round %d: two probes got id %#x", round, id)
			}
			seen[id] = true
		}
		taken := 0
		for i, idx := range pairs {
			if st.stamp(ids[i], int64(round)*1000+5) {
				taken++
				if _, kernel, ok := st.get(idx, 0); !ok || !kernel {
					t.Fatalf("round %d: pair %d took a stamp but does not hold the slot", round, idx)
				}
			}
		}
		if taken != 1 {
			t.Fatalf("round %d: %d probes took a stamp, want the one left in the slot", round, taken)
		}
	}
}

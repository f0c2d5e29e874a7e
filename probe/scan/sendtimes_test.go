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

// TestSendTimesConcurrentPut: senders writing the same bucket at once
// each get an id of their own, and only the probes left in its slots take
// a stamp, with their own ids.
func TestSendTimesConcurrentPut(t *testing.T) {
	st := newSendTimes(1000, time.Second)
	// Pairs that share the bucket of pair 0 in pass 0: twice as many as
	// it has slots.
	var pairs []uint64
	for idx := uint64(0); len(pairs) < 2*ways; idx++ {
		if st.bucket(idx, 0) == st.bucket(0, 0) {
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
					t.Fatalf("round %d: pair %d took a stamp but does not hold a slot", round, idx)
				}
			} else if _, _, ok := st.get(idx, 0); ok {
				t.Fatalf("round %d: pair %d holds a slot but its stamp was not taken", round, idx)
			}
		}
		if taken != ways {
			t.Fatalf("round %d: %d probes took a stamp, want the %d left in the bucket", round, taken, ways)
		}
	}
}

// TestSendTimesInFlight: a probe keeps its time while the probes sent
// after it, before its answer comes, are few beside the table. The
// probes go out in a scan's order (Perm) at the command line's rate and
// timeout (10,000 a second, 1 s: 65,536 slots), and each answer comes
// after the next inflight probes, as through a path of 10 ms (100
// probes at that rate) to 800 ms (8,000). With one slot per probe, 241,
// 2,230 and 16,953 answers had no send time.
func TestSendTimesInFlight(t *testing.T) {
	const pairs = 200_000
	for _, tc := range []struct {
		inflight int
		maxLost  int
	}{
		{100, 0},
		{1000, 0},
		{8000, pairs / 1000},
	} {
		st := newSendTimes(10000, time.Second)
		perm := NewPerm(pairs, [16]byte{1})
		order := make([]uint64, pairs)
		lost := 0
		for i := range order {
			order[i] = perm.At(uint64(i))
			st.put(order[i], 0, int64(i))
			if j := i - tc.inflight; j >= 0 {
				if ns, _, ok := st.get(order[j], 0); !ok || ns != int64(j) {
					lost++
				}
			}
		}
		t.Logf("%d in flight: %d of %d answers without a send time", tc.inflight, lost, pairs-tc.inflight)
		if lost > tc.maxLost {
			t.Errorf("%d in flight: %d answers without a send time, want at most %d", tc.inflight, lost, tc.maxLost)
		}
	}
}

package probe

import (
	"math/rand/v2"
	"testing"
)

// TestTable checks the table against a map under random inserts and
// removals, with ISNs crowded into few home slots so that runs wrap
// around the end of the array and deletions must shift entries back.
func TestTable(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var tb table
	ref := map[uint32]int32{}
	for step := 0; step < 200000; step++ {
		isn := uint32(rng.IntN(64))<<16 | uint32(tableSize-8+rng.IntN(16))%tableSize
		if i := tb.lookup(isn, 7); i >= 0 {
			if tb.e[i].seq != ref[isn] {
				t.Fatalf("step %d: isn %#x has seq %d, want %d", step, isn, tb.e[i].seq, ref[isn])
			}
			tb.remove(i)
			delete(ref, isn)
		} else if _, ok := ref[isn]; ok {
			t.Fatalf("step %d: isn %#x lost", step, isn)
		} else if !tb.full() {
			tb.insert(pending{state: stateSynSent, isn: isn, sport: 7, seq: int32(step)})
			ref[isn] = int32(step)
		}
		if tb.n != len(ref) {
			t.Fatalf("step %d: n=%d, want %d", step, tb.n, len(ref))
		}
	}
	for isn, seq := range ref {
		i := tb.lookup(isn, 7)
		if i < 0 || tb.e[i].seq != seq {
			t.Fatalf("isn %#x: lookup = %d", isn, i)
		}
		if tb.lookup(isn, 8) >= 0 {
			t.Fatalf("isn %#x found under the wrong port", isn)
		}
	}
}

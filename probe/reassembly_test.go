package probe

import "testing"

// TestReceiveRanges: out-of-order segments are kept as ranges (merged,
// most recent first, at most maxOOO), the gap's filling takes every range
// it reaches, the FIN with them, and bytes are counted once.
func TestReceiveRanges(t *testing.T) {
	c := &tcb{rcvNxt: 1001}
	var at stamp
	steps := []struct {
		seq, n uint32
		fin    bool
		want   int
		rcvNxt uint32
		bytes  int
		ranges int
	}{
		{1001, 100, false, rcvNew, 1101, 100, 0},
		{1301, 100, false, rcvGap, 1101, 100, 1},
		{1501, 51, true, rcvGap, 1101, 100, 2},   // data + FIN at 1551
		{1351, 100, false, rcvGap, 1101, 100, 2}, // merges into [1301, 1451)
		{1301, 50, false, rcvOld, 1101, 100, 2},  // held already
		{1051, 50, false, rcvOld, 1101, 100, 2},  // before rcv.nxt
		{1101, 200, false, rcvNew, 1451, 450, 1}, // fills up to [1301, 1451)
		{1451, 50, false, rcvFIN, 1552, 550, 0},  // and the rest, FIN included
	}
	for i, s := range steps {
		got := c.receive(s.seq, s.n, s.fin, at)
		if got != s.want || c.rcvNxt != s.rcvNxt || c.peerBytes != s.bytes || c.nooo != s.ranges {
			t.Fatalf("step %d: got %d, rcv.nxt %d, %d bytes, %d ranges %v", i, got, c.rcvNxt, c.peerBytes, c.nooo, c.ooo[:c.nooo])
		}
	}
	if !c.peerFIN {
		t.Error("the FIN held in a range was not taken")
	}

	// More gaps than ranges: the oldest is forgotten, the newest first.
	c = &tcb{rcvNxt: 1}
	for k := range uint32(6) {
		c.receive(101+100*k, 10, false, at)
	}
	if c.nooo != maxOOO || c.ooo[0].start != 601 || c.ooo[maxOOO-1].start != 301 {
		t.Errorf("ranges %v", c.ooo[:c.nooo])
	}
	var b [40]byte
	c.ts = true
	if n := c.sackBlocks(b[12:]); n != 4+8*3 || b[12+2] != 5 || b[12+3] != 26 {
		t.Errorf("SACK option of %d bytes: % x", n, b[12:12+n])
	}
}

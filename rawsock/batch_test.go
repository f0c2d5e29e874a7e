package rawsock

import "testing"

// TestBatchConsume: after a partial send the unsent packets move to the
// front, in order.
func TestBatchConsume(t *testing.T) {
	b := NewBatch(4)
	for i := range 4 {
		s := b.Slot()
		s[0] = 0x45
		s[1] = byte(i)
		if !b.Commit(20 + i) {
			t.Fatal("commit")
		}
	}
	b.Consume(1)
	if b.Len() != 3 || b.Packet(0)[1] != 1 || len(b.Packet(0)) != 21 || b.Packet(2)[1] != 3 || len(b.Packet(2)) != 23 {
		t.Errorf("after Consume(1): len %d, first %x", b.Len(), b.Packet(0)[:2])
	}
	b.Consume(5)
	if b.Len() != 0 {
		t.Errorf("Consume past the end left %d", b.Len())
	}
}

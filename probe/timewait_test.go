package probe

import (
	"net/netip"
	"testing"
	"time"

	"github.com/synprobe/synprobe/rawsock/wire"
)

// recConn records every packet sent.
type recConn struct{ sent []wire.Packet }

func (c *recConn) Send(pkt []byte, id uint32) error {
	var p wire.Packet
	if err := wire.Parse(pkt, &p); err != nil {
		return err
	}
	c.sent = append(c.sent, p)
	return nil
}
func (c *recConn) Recv([]byte, time.Time) (int, time.Time, error) { select {} }
func (c *recConn) Wake()                                          {}
func (c *recConn) TxTime(id uint32, v6 bool) (time.Time, bool)    { return time.Time{}, false }

// TestTimeWaitReACK: after a 3-way close the connection lingers in
// TIME_WAIT; a retransmitted FIN (our last ACK was lost) is acknowledged
// again and counted, and does not produce a second result.
func TestTimeWaitReACK(t *testing.T) {
	d, s := netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.1")
	c := &recConn{}
	cookie, _ := wire.NewRandomCookie()
	results := 0
	p, err := New(c, Config{Targets: []Target{{Addr: d, Src: s, Port: 80}}, Mode: ModeFIN,
		PortLo: 61000, PortHi: 61000, Cookie: cookie, OnResult: func(*Result) { results++ }})
	if err != nil {
		t.Fatal(err)
	}
	p.sendSYN(p.main, 0, 0, time.Now())
	syn := c.sent[0]
	const irs = 9000
	reply := func(flags wire.TCPFlags, seq, ack uint32) {
		b := make([]byte, 128)
		n, _ := (&wire.Segment{Src: d, Dst: s, TTL: 64, SrcPort: 80, DstPort: syn.SrcPort, Seq: seq, Ack: ack, Flags: flags, Window: 1000}).Build(b)
		var in inbound
		if err := wire.Parse(b[:n], &in.pkt); err != nil {
			t.Fatal(err)
		}
		in.user = time.Now()
		p.handle(&in)
	}
	reply(wire.FlagSyn|wire.FlagAck, irs, syn.Seq+1)
	// We sent ACK and FIN (no hold): the peer merges its FIN with the ACK.
	if n := len(c.sent); n != 3 || c.sent[2].Flags != wire.FlagFin|wire.FlagAck {
		t.Fatalf("sent %d packets, last %v", n, c.sent[n-1].Flags)
	}
	reply(wire.FlagFin|wire.FlagAck, irs+1, syn.Seq+2)
	// A 3-way verdict waits a moment for a separate ACK reordered behind
	// the FIN (at most 10 ms).
	if results != 0 || p.live != 1 {
		t.Fatalf("3-way reported at once: %d results, %d live", results, p.live)
	}
	p.expire(time.Now().Add(20 * time.Millisecond))
	if results != 1 || p.live != 0 || p.tab.n != 1 {
		t.Fatalf("after the close: %d results, %d live, %d in the table", results, p.live, p.tab.n)
	}
	before := len(c.sent)
	reply(wire.FlagFin|wire.FlagAck, irs+1, syn.Seq+2) // our last ACK was lost
	if len(c.sent) != before+1 || c.sent[before].Flags != wire.FlagAck || c.sent[before].Ack != irs+2 {
		t.Errorf("retransmitted FIN not acknowledged again: %+v", c.sent[before:])
	}
	if results != 1 || p.Stats(0).LateFINs != 1 {
		t.Errorf("%d results, %d late FINs", results, p.Stats(0).LateFINs)
	}
	// The port stays taken while the connection lingers.
	if _, ok := p.nextPort(0, time.Now(), p.tsval(time.Now()), true); ok {
		t.Error("the TIME_WAIT connection's port was handed out again")
	}
}

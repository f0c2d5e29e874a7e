package probe_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/probe/probetest"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// TestClientCounters: the client counts what it sends, what the kernel
// refuses, what it reads and what it reads for no probe, against a fake
// network whose every packet is known.
func TestClientCounters(t *testing.T) {
	c := probetest.NewConn(func(p *wire.Packet, b []byte, id uint32) []probetest.Reply {
		r := byPort(p, b, id)
		if p.Flags == wire.FlagSyn && p.DstPort/100 == 1 {
			r = append(r, r[0]) // a duplicate SYN-ACK: no probe's
		}
		return r
	})
	c.SendError = func(p *wire.Packet) error {
		if p.DstPort/100 == 5 {
			return errors.New("EPERM")
		}
		return nil
	}
	cl := fakeClient(t, c, 4)
	if got := cl.Counters(); got != (probe.Counters{}) {
		t.Errorf("before any probe: %+v", got)
	}
	probeN := func(n int, port uint16, want probe.State) {
		for range n {
			r, err := cl.Probe(context.Background(), netip.AddrPortFrom(dst4, port), nil)
			if err != nil || r.State != want {
				t.Fatalf("port %d: %v %v, want %v", port, r, err, want)
			}
		}
	}
	probeN(10, 100, probe.StateOpen)  // SYN, RST; SYN-ACK twice
	probeN(5, 200, probe.StateClosed) // SYN; RST
	probeN(3, 500, probe.StateError)  // refused by the kernel
	c.Inject([]byte{0x45, 0, 0}, time.Time{})
	c.Inject([]byte{0x45, 0, 0}, time.Time{})
	want := probe.Counters{Sent: 25, SendErrors: 3, Received: 27, Unmatched: 12}
	deadline := time.Now().Add(10 * time.Second)
	for cl.Counters().Received < want.Received && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := cl.Counters(); got != want {
		t.Errorf("counters %+v, want %+v", got, want)
	}
	if n := len(c.Sent()); n != int(want.Sent) {
		t.Errorf("the fake saw %d packets, the counters %d", n, want.Sent)
	}
}

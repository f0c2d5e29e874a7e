package scan

import (
	"context"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/probe/internal/core"
	"github.com/synprobe/synprobe/probe/probetest"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// backlogRing is a Receiver that models the kernel's way in: a packet
// waits in the receive backlog (kernelBacklog) until it is stored in the
// ring (Mark counts it), and Read has it 5 ms later (a block handed over
// when its timer fires).
type backlogRing struct {
	mu   sync.Mutex
	pkts []backlogPacket // by stored time
	next int             // the next to deliver
}

type backlogPacket struct {
	b              []byte
	arrive, stored time.Time // in the backlog between the two
}

const blockDelay = 5 * time.Millisecond

func (r *backlogRing) add(b []byte, arrive, stored time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := len(r.pkts)
	for i > r.next && r.pkts[i-1].stored.After(stored) {
		i--
	}
	r.pkts = append(r.pkts, backlogPacket{})
	copy(r.pkts[i+1:], r.pkts[i:])
	r.pkts[i] = backlogPacket{b, arrive, stored}
}

// Read hands over the packets stored a block's delay ago; the engine
// only looks, so it never waits.
func (r *backlogRing) Read(deadline time.Time, fn func([]byte, time.Time)) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now, n := time.Now(), 0
	for r.next < len(r.pkts) && !now.Before(r.pkts[r.next].stored.Add(blockDelay)) {
		fn(r.pkts[r.next].b, r.pkts[r.next].stored)
		r.next++
		n++
	}
	if n > 0 {
		return n, nil
	}
	return 0, os.ErrDeadlineExceeded
}

func (r *backlogRing) Dropped() uint64  { return 0 }
func (r *backlogRing) Pending() float64 { return 0 }

// Mark counts the packets stored so far; ReadTo those read.
func (r *backlogRing) Mark() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	now, n := time.Now(), uint64(0)
	for _, p := range r.pkts {
		if !p.stored.After(now) {
			n++
		}
	}
	return n
}

func (r *backlogRing) ReadTo(mark uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return uint64(r.next) >= mark
}

// backlog reports a packet that has arrived but is not stored yet:
// kernelBacklog.
func (r *backlogRing) backlog() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	for _, p := range r.pkts[r.next:] {
		if !p.arrive.After(now) && p.stored.After(now) {
			return true
		}
	}
	return false
}

// Answers still in the kernel's backlog when a pass's wait is up, on a
// host whose receiver keeps reading (strays, every 5 ms), are waited for,
// and read once they reach the ring: the mark that ends the pass is taken
// after them. (A mark taken when the wait was up, before they were stored,
// once ended the pass with them in a block not yet handed over.)
func TestScanMarksAfterBacklog(t *testing.T) {
	ring := &backlogRing{}
	start := time.Now()
	fast := netip.MustParseAddr("198.18.1.0")
	c := probetest.NewConn(func(p *wire.Packet, b []byte, _ uint32) []probetest.Reply {
		delay := 150 * time.Millisecond // past the wait, within the timeout of the last stray
		if p.Dst == fast {
			delay = 10 * time.Millisecond
		}
		now := time.Now()
		ring.add(probetest.RST(p), now, now.Add(delay))
		return nil
	})
	defer c.Close()
	stray := probetest.RST(&wire.Packet{Src: netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("198.18.9.9"), SrcPort: 9, DstPort: 9})
	for i := range 80 {
		at := start.Add(time.Duration(i) * 5 * time.Millisecond)
		ring.add(stray, at, at)
	}
	spec, err := ParseSpec("198.18.1.0/30:1")
	if err != nil {
		t.Fatal(err)
	}
	set, err := NewSet(Block{Spec: &spec})
	if err != nil {
		t.Fatal(err)
	}
	got := map[netip.Addr]string{}
	s, err := newScanner(c, Config{
		Set:      set,
		Timeout:  100 * time.Millisecond,
		OnResult: func(r *probe.ScanResult, _ Origin) { got[r.Addr] = r.State.String() + "/" + r.Reason },
	}, wiring{Src4: netip.MustParseAddr("198.18.0.1"), PortLo: 61000, PortHi: 61999, Recv: engineFeed(t, ring)})
	if err != nil {
		t.Fatal(err)
	}
	s.kernelBacklog = ring.backlog
	sum, err := s.run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for a := spec.Prefix.Addr(); spec.Prefix.Contains(a); a = a.Next() {
		if got[a] != "closed/rst" {
			t.Errorf("%v: %q, want closed/rst", a, got[a])
		}
	}
	if sum.Retries != 0 {
		t.Errorf("summary %+v: want no retry", sum)
	}
}

// engineFeed returns ring as a scan on a client reads it: the client's
// engine reads it, beside a Conn of its own that receives nothing. The
// client closes when the test ends.
func engineFeed(t *testing.T, ring Receiver) *feed {
	t.Helper()
	own := probetest.NewConn(func(*wire.Packet, []byte, uint32) []probetest.Reply { return nil })
	t.Cleanup(func() { own.Close() })
	cl, err := probe.NewClient(&probe.ClientConfig{Conn: own, SourcePorts: []uint16{61000}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	l, err := core.Lend(cl)
	if err != nil {
		t.Fatal(err)
	}
	f := newFeed(l, ring)
	t.Cleanup(f.stop)
	return f
}

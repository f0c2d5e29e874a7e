package scan_test

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/probe/probetest"
	"github.com/synprobe/synprobe/probe/scan"
	"github.com/synprobe/synprobe/rawsock"
)

// lab answers like a /28 of hosts: port 22 open everywhere, 80 open on
// even hosts and closed on odd ones, 81 rejected with ICMP admin
// prohibited, 82 silent, and 83 loses every first probe (answered on the
// retry). Every SYN-ACK is sent twice (a duplicate).
type lab struct {
	mu    sync.Mutex
	seen  map[netip.AddrPort]int
	probe map[netip.AddrPort]int // SYNs per pair
}

func (l *lab) respond(p *rawsock.Packet, b []byte, _ uint32) []probetest.Reply {
	if p.Flags != rawsock.FlagSyn {
		return nil
	}
	l.mu.Lock()
	ap := netip.AddrPortFrom(p.Dst, p.DstPort)
	l.probe[ap]++
	n := l.probe[ap]
	l.mu.Unlock()
	host := p.Dst.As4()[3]
	synack := func() []probetest.Reply {
		r := probetest.Reply{Packet: probetest.SYNACK(p, rawsock.SYNOptions{MSS: 1460, WScale: -1})}
		return []probetest.Reply{r, r}
	}
	switch p.DstPort {
	case 22:
		return synack()
	case 80:
		if host%2 == 0 {
			return synack()
		}
		return []probetest.Reply{{Packet: probetest.RST(p)}}
	case 81:
		return []probetest.Reply{{Packet: probetest.ICMPError(b, netip.MustParseAddr("198.18.99.1"), 3, 13)}}
	case 83:
		if n == 1 {
			return nil
		}
		return synack()
	}
	return nil
}

func TestScan(t *testing.T) {
	l := &lab{seen: map[netip.AddrPort]int{}, probe: map[netip.AddrPort]int{}}
	c := probetest.NewConn(l.respond)
	spec, err := scan.ParseSpec("198.18.1.0/28:22,80-83")
	if err != nil {
		t.Fatal(err)
	}
	set := scan.NewSet(scan.Block{Spec: &spec})
	cookie, _ := rawsock.NewRandomCookie()
	type res struct {
		state  probe.State
		reason string
	}
	got := map[netip.AddrPort]res{}
	dups := 0
	sum, err := scan.Scan(context.Background(), c, scan.Config{
		Set: set, Src4: netip.MustParseAddr("198.18.0.1"), PortLo: 61000, PortHi: 61999,
		Retries: 2, Timeout: 100 * time.Millisecond, Cookie: cookie, Senders: 2,
		Options: &rawsock.SYNOptions{MSS: 1460, WScale: 7, SACKPermitted: true, Timestamps: true},
		OnResult: func(r *probe.Result, s *scan.Spec) {
			ap := netip.AddrPortFrom(r.Target.Addr, r.Target.Port)
			if _, ok := got[ap]; ok {
				dups++
			}
			got[ap] = res{r.State, r.Reason}
			if s != &spec {
				t.Errorf("%v: spec %v", ap, s)
			}
		},
	})
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	if dups != 0 || uint64(len(got)) != set.Len() || sum.Pairs != 16*5 {
		t.Fatalf("%d results (%d duplicates) for %d pairs", len(got), dups, set.Len())
	}
	for ap, r := range got {
		host := ap.Addr().As4()[3]
		want := res{probe.StateFiltered, "timeout"}
		switch ap.Port() {
		case 22, 83:
			want = res{probe.StateOpen, "syn-ack"}
		case 80:
			want = res{probe.StateOpen, "syn-ack"}
			if host%2 == 1 {
				want = res{probe.StateClosed, "rst"}
			}
		case 81:
			want = res{probe.StateFiltered, "icmp-admin-prohibited"}
		}
		if r != want {
			t.Errorf("%v: %v/%s, want %v/%s", ap, r.state, r.reason, want.state, want.reason)
		}
	}
	// Answered pairs got one probe; silent ones 1 + 2 retries; port 83
	// needed its first retry.
	for ap, n := range l.probe {
		want := 1
		switch ap.Port() {
		case 82:
			want = 3
		case 83:
			want = 2
		}
		if n != want {
			t.Errorf("%v probed %d times, want %d", ap, n, want)
		}
	}
	if sum.Open != 16+8+16 || sum.Closed != 8 || sum.Filtered != 32 || sum.Retries != 16*2+16 || sum.Duplicates != 40 {
		t.Errorf("summary %+v", sum)
	}
	if sum.Reasons["icmp-admin-prohibited"] != 16 || sum.Reasons["timeout"] != 16 {
		t.Errorf("reasons %v", sum.Reasons)
	}
}

// TestSlowDownOnGrowingRTT: when answers come back ever later, the scan
// lowers its rate and says so.
func TestSlowDownOnGrowingRTT(t *testing.T) {
	var n int
	var mu sync.Mutex
	c := probetest.NewConn(func(p *rawsock.Packet, b []byte, _ uint32) []probetest.Reply {
		mu.Lock()
		n++
		// The first 100 answers come within a millisecond, later ones ever
		// later: 0.5 ms more for each. Stamped, so that a loaded machine
		// reading them late does not change their RTTs.
		rtt := time.Millisecond + time.Duration(max(0, n-100))*500*time.Microsecond
		mu.Unlock()
		return []probetest.Reply{{Packet: probetest.RST(p), After: rtt, Wall: true}}
	})
	spec, _ := scan.ParseSpec("198.18.1.0/24:1")
	cookie, _ := rawsock.NewRandomCookie()
	sum, err := scan.Scan(context.Background(), c, scan.Config{
		Set: scan.NewSet(scan.Block{Spec: &spec}), Src4: netip.MustParseAddr("198.18.0.1"), PortLo: 61000, PortHi: 61999,
		Rate: 5000, Timeout: time.Second, Cookie: cookie, Senders: 1,
	})
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	if sum.Slowdowns == 0 || sum.RateLimit >= 5000 || sum.RateLimit < 5000/8 || sum.Closed != 256 {
		t.Errorf("summary %+v: want slow-downs and every pair closed", sum)
	}
}

// A stall of one batch (the sender thread preempted between stamping and
// sending it, as happens on a busy machine) makes some answers late, but
// is no queue: no slow-down.
func TestNoSlowDownOnShortStall(t *testing.T) {
	var n int
	var mu sync.Mutex
	c := probetest.NewConn(func(p *rawsock.Packet, b []byte, _ uint32) []probetest.Reply {
		mu.Lock()
		n++
		rtt := 200 * time.Microsecond
		if n > 300 && n <= 364 {
			rtt = 20 * time.Millisecond
		}
		mu.Unlock()
		// Stamped, not held back: how late the receiver reads them
		// (on a loaded machine) does not change their RTTs.
		return []probetest.Reply{{Packet: probetest.RST(p), After: rtt, Wall: true}}
	})
	spec, _ := scan.ParseSpec("198.18.0.0/20:1")
	cookie, _ := rawsock.NewRandomCookie()
	sum, err := scan.Scan(context.Background(), c, scan.Config{
		Set: scan.NewSet(scan.Block{Spec: &spec}), Src4: netip.MustParseAddr("198.18.0.1"), PortLo: 61000, PortHi: 61999,
		Rate: 20000, Timeout: time.Second, Cookie: cookie, Senders: 1,
	})
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	if sum.Slowdowns != 0 || sum.Closed != 4096 {
		t.Errorf("summary %+v: want no slow-down and every pair closed", sum)
	}
}

// fakeRing is a Receiver over a probetest.Conn whose fill level and loss
// count the test sets.
type fakeRing struct {
	c         *probetest.Conn
	buf       []byte
	full      atomic.Bool   // Pending reports 1, else 0
	drops     atomic.Uint64 // Dropped's answer
	undrained atomic.Int64  // Drained is false while it is not 0
}

func (f *fakeRing) Read(deadline time.Time, fn func([]byte, time.Time)) (int, error) {
	n, rx, err := f.c.Recv(f.buf, deadline)
	if err != nil {
		return 0, err
	}
	fn(f.buf[:n], rx)
	return 1, nil
}

func (f *fakeRing) Wake() { f.c.Wake() }

func (f *fakeRing) Dropped() uint64 { return f.drops.Load() }

// Drained asks the conn: a packet may wait for delivery there.
func (f *fakeRing) Drained() bool { return f.undrained.Load() == 0 }

func (f *fakeRing) Pending() float64 {
	if f.full.Load() {
		return 1
	}
	return 0
}

// While the receiver has no room, the senders wait: a slow reader costs
// time, not answers.
func TestScanWaitsForReceiver(t *testing.T) {
	var syns atomic.Int64
	c := probetest.NewConn(func(p *rawsock.Packet, b []byte, _ uint32) []probetest.Reply {
		syns.Add(1)
		return []probetest.Reply{{Packet: probetest.RST(p)}}
	})
	defer c.Close()
	ring := &fakeRing{c: c, buf: make([]byte, rawsock.MaxPacketSize)}
	ring.full.Store(true)
	spec, _ := scan.ParseSpec("198.18.1.0/24:1-4")
	cookie, _ := rawsock.NewRandomCookie()
	done := make(chan scan.Summary, 1)
	go func() {
		sum, err := scan.Scan(context.Background(), c, scan.Config{
			Set: scan.NewSet(scan.Block{Spec: &spec}), Src4: netip.MustParseAddr("198.18.0.1"), PortLo: 61000, PortHi: 61999,
			Timeout: 200 * time.Millisecond, Cookie: cookie, Recv: ring,
		})
		if err != nil {
			t.Error(err)
		}
		done <- sum
	}()
	time.Sleep(100 * time.Millisecond)
	if n := syns.Load(); n != 0 {
		t.Errorf("%d SYNs sent while the receiver was full", n)
	}
	ring.full.Store(false)
	select {
	case sum := <-done:
		if sum.Closed != 1024 || sum.Sent != 1024 || sum.Slowdowns != 0 {
			t.Errorf("summary %+v: want 1024 pairs closed, each probed once", sum)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the scan did not end once the receiver had room")
	}
}

// Answers the receiver lost slow the scan down once, also when no rate
// was set: the cap then starts below the rate achieved.
func TestScanSlowsDownOnReceiverDrops(t *testing.T) {
	c := probetest.NewConn(func(p *rawsock.Packet, b []byte, _ uint32) []probetest.Reply {
		return []probetest.Reply{{Packet: probetest.RST(p)}}
	})
	defer c.Close()
	ring := &fakeRing{c: c, buf: make([]byte, rawsock.MaxPacketSize)}
	ring.drops.Store(3)
	spec, _ := scan.ParseSpec("198.18.0.0/22:1-4")
	cookie, _ := rawsock.NewRandomCookie()
	sum, err := scan.Scan(context.Background(), c, scan.Config{
		Set: scan.NewSet(scan.Block{Spec: &spec}), Src4: netip.MustParseAddr("198.18.0.1"), PortLo: 61000, PortHi: 61999,
		Timeout: 200 * time.Millisecond, Cookie: cookie, Recv: ring,
	})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Slowdowns != 1 || sum.RateLimit == 0 || sum.RecvDrops != 3 || sum.Closed != 4096 {
		t.Errorf("summary %+v: want one slow-down to a cap, the receiver's 3 drops, every pair closed", sum)
	}
}

// stallingRing delivers the first few answers, then none for a while (its
// reader starved of CPU, say), though they wait in it: not Drained.
type stallingRing struct {
	fakeRing
	n          atomic.Int64 // packets delivered
	first      int64        // delivered before the stall
	stallUntil atomic.Int64 // unix ns; 0: not stalled yet
	stall      time.Duration
	answers    atomic.Int64 // made by the conn
}

func (s *stallingRing) Read(deadline time.Time, fn func([]byte, time.Time)) (int, error) {
	if s.n.Load() == s.first {
		if s.stallUntil.Load() == 0 {
			s.stallUntil.Store(time.Now().Add(s.stall).UnixNano())
		}
		if time.Now().UnixNano() < s.stallUntil.Load() {
			time.Sleep(time.Millisecond)
			return 0, nil
		}
	}
	n, err := s.fakeRing.Read(deadline, fn)
	s.n.Add(int64(n))
	return n, err
}

// Drained: every answer the conn made has been delivered.
func (s *stallingRing) Drained() bool { return s.n.Load() == s.answers.Load() }

// A receiver that stops reading for a while, answers waiting, is not
// quiet: the pass waits for it instead of probing those pairs again.
func TestScanWaitsForBacklog(t *testing.T) {
	ring := &stallingRing{first: 10, stall: 100 * time.Millisecond}
	c := probetest.NewConn(func(p *rawsock.Packet, b []byte, _ uint32) []probetest.Reply {
		ring.answers.Add(1)
		return []probetest.Reply{{Packet: probetest.RST(p), NoRx: true}}
	})
	defer c.Close()
	ring.fakeRing = fakeRing{c: c, buf: make([]byte, rawsock.MaxPacketSize)}
	spec, _ := scan.ParseSpec("198.18.1.0/24:1")
	cookie, _ := rawsock.NewRandomCookie()
	sum, err := scan.Scan(context.Background(), c, scan.Config{
		Set: scan.NewSet(scan.Block{Spec: &spec}), Src4: netip.MustParseAddr("198.18.0.1"), PortLo: 61000, PortHi: 61999,
		Timeout: 2 * time.Second, Cookie: cookie, Recv: ring,
	})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Closed != 256 || sum.Retries != 0 {
		t.Errorf("summary %+v: want every pair closed, none probed again", sum)
	}
}

package scan_test

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/probe/probetest"
	"github.com/synprobe/synprobe/probe/scan"
	"github.com/synprobe/synprobe/rawsock"
	"github.com/synprobe/synprobe/rawsock/wire"
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

func (l *lab) respond(p *wire.Packet, b []byte, _ uint32) []probetest.Reply {
	if p.Flags != wire.FlagSyn {
		return nil
	}
	l.mu.Lock()
	ap := netip.AddrPortFrom(p.Dst, p.DstPort)
	l.probe[ap]++
	n := l.probe[ap]
	l.mu.Unlock()
	host := p.Dst.As4()[3]
	synack := func() []probetest.Reply {
		r := probetest.Reply{Packet: probetest.SYNACK(p, wire.SYNOptions{MSS: 1460, WScale: -1})}
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
	set := mustSet(t, &spec)
	type res struct {
		state  probe.State
		reason string
	}
	got := map[netip.AddrPort]res{}
	var kept []probe.ScanResult
	dups := 0
	sum, err := scan.ScanConn(context.Background(), c, scan.Config{
		Set:     set,
		Retries: 2, Timeout: 100 * time.Millisecond, Senders: 2,
		Options: &wire.SYNOptions{MSS: 1460, WScale: 7, SACKPermitted: true, Timestamps: true},
		OnResult: func(r *probe.ScanResult, o scan.Origin) {
			ap := r.AddrPort()
			if _, ok := got[ap]; ok {
				dups++
			}
			got[ap] = res{r.State, r.Reason}
			kept = append(kept, *r)
			if o.Arg() != spec.Arg {
				t.Errorf("%v: origin %v", ap, o)
			}
		},
	}, scan.Wiring{Src4: netip.MustParseAddr("198.18.0.1"), PortLo: 61000, PortHi: 61999})
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	if dups != 0 || uint64(len(got)) != set.Len() || sum.Pairs != 16*5 {
		t.Fatalf("%d results (%d duplicates) for %d pairs", len(got), dups, set.Len())
	}
	// A result is a value: the copies kept are each their own pair's,
	// with what the answer showed, though the scanner reused *r.
	for _, r := range kept {
		if got[r.AddrPort()] != (res{r.State, r.Reason}) || r.Src != netip.MustParseAddr("198.18.0.1") {
			t.Errorf("kept %v (from %v): %v/%s, reported %v", r.AddrPort(), r.Src, r.State, r.Reason, got[r.AddrPort()])
		}
		switch r.Reason {
		case "syn-ack", "rst":
			if r.From != r.Addr || r.SrcPort < 61000 || r.SrcPort > 61999 || r.IsICMP() || !r.Answered() {
				t.Errorf("kept %v: %v from %v, sport %d", r.AddrPort(), r.Reason, r.From, r.SrcPort)
			}
		case "timeout":
			if r.SrcPort != 0 || r.Timed() || r.From.IsValid() || r.Answered() {
				t.Errorf("kept silent %v: %+v", r.AddrPort(), r)
			}
		}
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
	c := probetest.NewConn(func(p *wire.Packet, b []byte, _ uint32) []probetest.Reply {
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
	sum, err := scan.ScanConn(context.Background(), c, scan.Config{
		Set:  mustSet(t, &spec),
		Rate: 5000, Timeout: time.Second, Senders: 1,
	}, scan.Wiring{Src4: netip.MustParseAddr("198.18.0.1"), PortLo: 61000, PortHi: 61999})
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	if sum.Slowdowns == 0 || sum.RateLimit >= 5000 || sum.RateLimit < 5000/8 || sum.Closed != 256 {
		t.Errorf("summary %+v: want slow-downs and every pair closed", sum)
	}
}

// stepClock is a clock for tests that moves on by step at every reading:
// the scanner's limiter, waits and stamps, and the fake kernel's, run on
// it, whatever the machine's load does to the real one.
type stepClock struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(c.step)
	return c.t
}

// A stall of one batch (the sender thread preempted between stamping and
// sending it, as happens on a busy machine) makes some answers late, but
// is no queue: no slow-down. The scanner and the fake network share an
// injected clock, and the RTTs are the fake kernel's stamps: neither a
// loaded machine's real stalls nor its timers change what the scanner
// sees.
func TestNoSlowDownOnShortStall(t *testing.T) {
	var n int
	var mu sync.Mutex
	c := probetest.NewConn(func(p *wire.Packet, b []byte, _ uint32) []probetest.Reply {
		mu.Lock()
		n++
		rtt := 200 * time.Microsecond
		if n > 300 && n <= 364 {
			rtt = 20 * time.Millisecond
		}
		mu.Unlock()
		return []probetest.Reply{{Packet: probetest.RST(p), After: rtt}}
	})
	clock := &stepClock{t: time.Now(), step: 50 * time.Microsecond}
	c.Clock = clock.Now
	spec, _ := scan.ParseSpec("198.18.0.0/20:1")
	sum, err := scan.ScanConn(context.Background(), c, scan.Config{
		Set:  mustSet(t, &spec),
		Rate: 20000, Timeout: time.Second, Senders: 1, Now: clock.Now,
	}, scan.Wiring{Src4: netip.MustParseAddr("198.18.0.1"), PortLo: 61000, PortHi: 61999})
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	if sum.Slowdowns != 0 || sum.Closed != 4096 || sum.KernelClock != 4096 {
		t.Errorf("summary %+v: want no slow-down and every pair closed, timed by the kernel's stamps", sum)
	}
}

// fakeRing is a Receiver over a probetest.Conn whose fill level and loss
// count the test sets.
type fakeRing struct {
	c        *probetest.Conn
	buf      []byte
	full     atomic.Bool   // Pending reports 1, else 0
	drops    atomic.Uint64 // Dropped's answer
	pendings atomic.Int64  // calls of Pending while full
}

func (f *fakeRing) Read(deadline time.Time, fn func([]byte, time.Time)) (int, error) {
	n, rx, err := f.c.Recv(f.buf, deadline)
	if err != nil {
		return 0, err
	}
	fn(f.buf[:n], rx)
	return 1, nil
}

func (f *fakeRing) Dropped() uint64 { return f.drops.Load() }

// Mark and ReadTo: the fake cannot count.
func (f *fakeRing) Mark() uint64       { return 0 }
func (f *fakeRing) ReadTo(uint64) bool { return true }

func (f *fakeRing) Pending() float64 {
	if f.full.Load() {
		f.pendings.Add(1)
		return 1
	}
	return 0
}

// While the receiver has no room, the senders wait: a slow reader costs
// time, not answers.
func TestScanWaitsForReceiver(t *testing.T) {
	var syns atomic.Int64
	c := probetest.NewConn(func(p *wire.Packet, b []byte, _ uint32) []probetest.Reply {
		syns.Add(1)
		return []probetest.Reply{{Packet: probetest.RST(p)}}
	})
	defer c.Close()
	ring := &fakeRing{c: c, buf: make([]byte, rawsock.MaxPacketSize)}
	ring.full.Store(true)
	spec, _ := scan.ParseSpec("198.18.1.0/24:1-4")
	done := make(chan scan.Summary, 1)
	go func() {
		sum, err := scan.ScanConn(context.Background(), c, scan.Config{
			Set:     mustSet(t, &spec),
			Timeout: 200 * time.Millisecond,
		}, scan.Wiring{Src4: netip.MustParseAddr("198.18.0.1"), PortLo: 61000, PortHi: 61999, Recv: ring})
		if err != nil {
			t.Error(err)
		}
		done <- sum
	}()
	// The senders have come to their first send and found the receiver
	// full, again and again (a scan not started yet would pass the test
	// otherwise).
	for deadline := time.Now().Add(10 * time.Second); ring.pendings.Load() < 10; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the senders asked the receiver %d times in 10 s", ring.pendings.Load())
		}
	}
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
	c := probetest.NewConn(func(p *wire.Packet, b []byte, _ uint32) []probetest.Reply {
		return []probetest.Reply{{Packet: probetest.RST(p)}}
	})
	defer c.Close()
	ring := &fakeRing{c: c, buf: make([]byte, rawsock.MaxPacketSize)}
	ring.drops.Store(3)
	spec, _ := scan.ParseSpec("198.18.0.0/22:1-4")
	sum, err := scan.ScanConn(context.Background(), c, scan.Config{
		Set:     mustSet(t, &spec),
		Timeout: 200 * time.Millisecond,
	}, scan.Wiring{Src4: netip.MustParseAddr("198.18.0.1"), PortLo: 61000, PortHi: 61999, Recv: ring})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Slowdowns != 1 || sum.RateLimit == 0 || sum.RecvDrops != 3 || sum.Closed != 4096 {
		t.Errorf("summary %+v: want one slow-down to a cap, the receiver's 3 drops, every pair closed", sum)
	}
}

// stallingRing delivers the first few answers, then none for a while (its
// reader starved of CPU, say), though they wait in it: not ReadTo.
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

// Mark counts the answers the conn made, ReadTo those delivered.
func (s *stallingRing) Mark() uint64            { return uint64(s.answers.Load()) }
func (s *stallingRing) ReadTo(mark uint64) bool { return uint64(s.n.Load()) >= mark }

// A receiver that stops reading for a while, answers waiting, is not
// quiet: the pass waits for it instead of probing those pairs again.
func TestScanWaitsForBacklog(t *testing.T) {
	ring := &stallingRing{first: 10, stall: 100 * time.Millisecond}
	sum, err := stallingScan(t, ring, scan.Config{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Closed != 256 || sum.Retries != 0 {
		t.Errorf("summary %+v: want every pair closed, none probed again", sum)
	}
}

// A receiver held up far longer than the timeout inside its handler (the
// result written to a reader of our output that stopped reading), its
// answers waiting, is not silence either: with no retry, every pair still
// gets the answer it was sent, none is called filtered. (Such a wait once
// ended after a timeout without an answer handled, and under CI's load a
// ring scan called a third of its pairs filtered.)
func TestScanWaitsForStalledHandler(t *testing.T) {
	ring := &stallingRing{first: -1}
	const timeout = 50 * time.Millisecond
	results := 0
	sum, err := stallingScan(t, ring, scan.Config{
		Timeout: timeout,
		OnResult: func(r *probe.ScanResult, _ scan.Origin) {
			if results++; results == 5 && r.State == probe.StateClosed {
				time.Sleep(8 * timeout) // the output's reader stopped reading
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Closed != 256 || sum.Filtered != 0 || sum.Retries != 0 {
		t.Errorf("summary %+v: want every pair closed, none filtered nor probed again", sum)
	}
}

// stallingScan scans 198.18.1.0/24 port 1, every pair answered with RST,
// through ring (its answers counted), with cfg's Timeout and OnResult.
func stallingScan(t *testing.T, ring *stallingRing, cfg scan.Config) (scan.Summary, error) {
	t.Helper()
	c := probetest.NewConn(func(p *wire.Packet, b []byte, _ uint32) []probetest.Reply {
		ring.answers.Add(1)
		return []probetest.Reply{{Packet: probetest.RST(p), NoRx: true}}
	})
	defer c.Close()
	ring.fakeRing = fakeRing{c: c, buf: make([]byte, rawsock.MaxPacketSize)}
	spec, _ := scan.ParseSpec("198.18.1.0/24:1")
	cfg.Set = mustSet(t, &spec)
	return scan.ScanConn(context.Background(), c, cfg, scan.Wiring{Src4: netip.MustParseAddr("198.18.0.1"), PortLo: 61000, PortHi: 61999, Recv: ring})
}

func mustSet(tb testing.TB, specs ...*scan.Spec) *scan.Set {
	tb.Helper()
	blocks := make([]scan.Block, len(specs))
	for i, s := range specs {
		blocks[i].Spec = s
	}
	set, err := scan.NewSet(blocks...)
	if err != nil {
		tb.Fatal(err)
	}
	return set
}

// collect runs a scan over c and returns each pair's "state/reason".
func collect(t *testing.T, c *probetest.Conn, cfg scan.Config) (map[netip.AddrPort]string, scan.Summary) {
	t.Helper()
	got := map[netip.AddrPort]string{}
	cfg.OnResult = func(r *probe.ScanResult, o scan.Origin) {
		ap := r.AddrPort()
		if _, dup := got[ap]; dup {
			t.Errorf("%v reported twice", ap)
		}
		got[ap] = r.State.String() + "/" + r.Reason
	}
	sum, err := scan.ScanConn(context.Background(), c, cfg, scan.Wiring{Src4: netip.MustParseAddr("198.18.0.1"), PortLo: 61000, PortHi: 61999})
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	return got, sum
}

// A slow host is waited for as long as the timeout says, whatever the fast
// ones answered: its silence is never judged by their RTTs.
func TestScanWaitsForSlowHost(t *testing.T) {
	slow := netip.MustParseAddr("198.18.1.2")
	c := probetest.NewConn(func(p *wire.Packet, b []byte, _ uint32) []probetest.Reply {
		if p.DstPort != 22 {
			return nil
		}
		r := probetest.Reply{Packet: probetest.SYNACK(p, wire.SYNOptions{MSS: 1460, WScale: -1}), After: 50 * time.Microsecond, Wall: true}
		if p.Dst == slow {
			r = probetest.Reply{Packet: r.Packet, Delay: 300 * time.Millisecond}
		}
		return []probetest.Reply{r}
	})
	// Many fast pairs, one slow host, one silent port everywhere.
	got, sum := collect(t, c, scan.Config{Set: mustSet(t, mustParse(t, "198.18.1.0/26:22,23")), Timeout: time.Second, Retries: 0})
	if got[netip.AddrPortFrom(slow, 22)] != "open/syn-ack" {
		t.Errorf("%v:22 is %q, want open/syn-ack", slow, got[netip.AddrPortFrom(slow, 22)])
	}
	if sum.Open != 64 || sum.Filtered != 64 {
		t.Errorf("summary %+v: want 64 open, 64 filtered", sum)
	}
}

// A pass whose pairs all answered ends at once, and silent pairs of hosts
// whose RTTs are known wait about their RTO, not the whole timeout.
func TestScanEndsWhenAnswered(t *testing.T) {
	for _, tt := range []struct {
		name  string
		ports string
	}{{"all answered", "22"}, {"silent ports of fast hosts", "22,23"}} {
		t.Run(tt.name, func(t *testing.T) {
			c := probetest.NewConn(func(p *wire.Packet, b []byte, _ uint32) []probetest.Reply {
				if p.DstPort != 22 {
					return nil
				}
				return []probetest.Reply{{Packet: probetest.SYNACK(p, wire.SYNOptions{MSS: 1460, WScale: -1}), After: 100 * time.Microsecond, Wall: true}}
			})
			const timeout = 20 * time.Second
			start := time.Now()
			_, sum := collect(t, c, scan.Config{Set: mustSet(t, mustParse(t, "198.18.1.0/28:"+tt.ports)), Timeout: timeout, Retries: 2})
			// Generous: the point is that the timeout is not waited.
			if d := time.Since(start); d > timeout/2 {
				t.Errorf("the scan took %v with a %v timeout", d, timeout)
			}
			if sum.Open != 16 {
				t.Errorf("summary %+v", sum)
			}
		})
	}
}

// RSTs do not shorten a host's wait: a firewall nearer than the host may
// send them for it. Here every closed port answers at once and the open
// one 1.5 s later (beyond a fast host's RTO and SYN-ACK retransmission
// timer, within -w): it is open, not filtered.
func TestScanRSTsDoNotShortenWaits(t *testing.T) {
	c := probetest.NewConn(func(p *wire.Packet, b []byte, _ uint32) []probetest.Reply {
		if p.DstPort == 22 {
			return []probetest.Reply{{Packet: probetest.SYNACK(p, wire.SYNOptions{MSS: 1460, WScale: -1}), Delay: 1500 * time.Millisecond}}
		}
		return []probetest.Reply{{Packet: probetest.RST(p), After: 50 * time.Microsecond, Wall: true}}
	})
	got, sum := collect(t, c, scan.Config{Set: mustSet(t, mustParse(t, "198.18.1.1:1-40")), Timeout: 3 * time.Second, Retries: 0})
	if v := got[netip.MustParseAddrPort("198.18.1.1:22")]; v != "open/syn-ack" {
		t.Errorf("198.18.1.1:22 is %q, want open/syn-ack (summary %+v)", v, sum)
	}
}

// A send error is the failed destination's alone: every other probe of
// the batch goes out, and the failed pair is reported with its reason,
// never as filtered.
func TestScanSendErrors(t *testing.T) {
	c := probetest.NewConn(func(p *wire.Packet, b []byte, _ uint32) []probetest.Reply {
		return []probetest.Reply{{Packet: probetest.SYNACK(p, wire.SYNOptions{MSS: 1460, WScale: -1})}}
	})
	blocked := netip.MustParsePrefix("198.18.1.128/25")
	c.SendError = func(p *wire.Packet) error {
		switch {
		case blocked.Contains(p.Dst):
			return os.NewSyscallError("sendmmsg", syscall.EPERM)
		case p.Dst == netip.MustParseAddr("198.18.1.7"):
			return os.NewSyscallError("sendmmsg", syscall.EACCES)
		case p.Dst == netip.MustParseAddr("198.18.1.9") && p.DstPort == 2:
			return os.NewSyscallError("sendmmsg", syscall.ENETUNREACH)
		}
		return nil
	}
	got, sum := collect(t, c, scan.Config{Set: mustSet(t, mustParse(t, "198.18.1.0/24:1-20")), Timeout: time.Second, Retries: 1, Senders: 2})
	wrong := 0
	for ap, v := range got {
		want := "open/syn-ack"
		switch {
		case blocked.Contains(ap.Addr()):
			want = "error/local-firewall"
		case ap.Addr() == netip.MustParseAddr("198.18.1.7"):
			want = "error/local-prohibit"
		case ap.Addr() == netip.MustParseAddr("198.18.1.9") && ap.Port() == 2:
			want = "error/local-no-route"
		}
		if v != want {
			if wrong++; wrong < 10 {
				t.Errorf("%v: %s, want %s", ap, v, want)
			}
		}
	}
	if len(got) != 256*20 || sum.Errors != 128*20+20+1 || sum.Open != 256*20-sum.Errors || sum.Retries != 0 {
		t.Errorf("%d results; summary %+v", len(got), sum)
	}
}

// A device queue that is full for a moment costs time, not probes; one
// that stays full leaves them unsent, which after the last pass is
// reported as such, not as filtered.
func TestScanNoBuffers(t *testing.T) {
	for _, tt := range []struct {
		fails int // ENOBUFS for the first fails sends
		want  string
	}{{3, "closed/rst"}, {1 << 30, "error/local-no-buffers"}} {
		c := probetest.NewConn(func(p *wire.Packet, b []byte, _ uint32) []probetest.Reply {
			return []probetest.Reply{{Packet: probetest.RST(p)}}
		})
		var n atomic.Int64
		c.SendError = func(p *wire.Packet) error {
			if n.Add(1) <= int64(tt.fails) {
				return os.NewSyscallError("sendmmsg", syscall.ENOBUFS)
			}
			return nil
		}
		got, sum := collect(t, c, scan.Config{Set: mustSet(t, mustParse(t, "198.18.1.0/30:6-8")), Timeout: 200 * time.Millisecond, Retries: 0, Senders: 1})
		for ap, v := range got {
			if v != tt.want {
				t.Errorf("%d failures: %v: %s, want %s", tt.fails, ap, v, tt.want)
			}
		}
		if len(got) != 12 {
			t.Errorf("%d results; summary %+v", len(got), sum)
		}
	}
}

func mustParse(t *testing.T, s string) *scan.Spec {
	t.Helper()
	spec, err := scan.ParseSpec(s)
	if err != nil {
		t.Fatal(err)
	}
	return &spec
}

// EINVAL (a full neighbour table, or a blackhole route) may pass: the
// probe is sent again in the next pass, and reported only after the last.
func TestScanDiscardedRetried(t *testing.T) {
	c := probetest.NewConn(func(p *wire.Packet, b []byte, _ uint32) []probetest.Reply {
		return []probetest.Reply{{Packet: probetest.RST(p)}}
	})
	var mu sync.Mutex
	tries := map[netip.Addr]int{}
	c.SendError = func(p *wire.Packet) error {
		mu.Lock()
		defer mu.Unlock()
		tries[p.Dst]++
		switch {
		case p.Dst == netip.MustParseAddr("198.18.1.1") && tries[p.Dst] == 1: // a full table, once
			return os.NewSyscallError("sendmmsg", syscall.EINVAL)
		case p.Dst == netip.MustParseAddr("198.18.1.2"): // a blackhole
			return os.NewSyscallError("sendmmsg", syscall.EINVAL)
		}
		return nil
	}
	got, sum := collect(t, c, scan.Config{Set: mustSet(t, mustParse(t, "198.18.1.0/30:80")), Timeout: 200 * time.Millisecond, Retries: 2, Senders: 1})
	want := map[string]string{"198.18.1.0:80": "closed/rst", "198.18.1.1:80": "closed/rst", "198.18.1.2:80": "error/local-discarded", "198.18.1.3:80": "closed/rst"}
	for ap, w := range want {
		if g := got[netip.MustParseAddrPort(ap)]; g != w {
			t.Errorf("%s: %s, want %s", ap, g, w)
		}
	}
	if tries[netip.MustParseAddr("198.18.1.2")] != 3 || sum.Errors != 1 {
		t.Errorf("the blackholed pair tried %d times (want one per pass, 3); summary %+v", tries[netip.MustParseAddr("198.18.1.2")], sum)
	}
}

// TestScanRTTs: every answer's RTT is the fake kernel's, exactly as
// scripted, whatever the receiver's pace (clock=kernel): from the probe's
// transmit stamp, read in batches with ids, or from its copy seen leaving
// (ProbeCopies). Without transmit stamps, or an answer without a receive
// stamp, the user-space clock times it, and says so.
func TestScanRTTs(t *testing.T) {
	after := map[uint16]time.Duration{22: 57 * time.Microsecond, 23: 113 * time.Microsecond, 24: 241 * time.Microsecond, 25: 1500 * time.Microsecond}
	router := netip.MustParseAddr("198.18.99.1")
	for _, tc := range []struct {
		name               string
		noTx, copies, noRx bool
		kernel             bool
	}{
		{name: "stamps with ids", kernel: true},
		{name: "copies seen leaving", noTx: true, copies: true, kernel: true},
		{name: "no transmit stamps", noTx: true},
		{name: "no receive stamps", noRx: true},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			c := probetest.NewConn(func(p *wire.Packet, b []byte, _ uint32) []probetest.Reply {
				if p.Flags != wire.FlagSyn {
					return nil
				}
				var r []probetest.Reply
				if tc.copies {
					r = append(r, probetest.Reply{Packet: append([]byte(nil), b...)}) // the probe itself, as it left
				}
				ans := probetest.RST(p)
				switch p.DstPort {
				case 22:
					ans = probetest.SYNACK(p, wire.SYNOptions{MSS: 1460, WScale: -1})
				case 24:
					ans = probetest.ICMPError(b, router, 3, 13)
				}
				return append(r, probetest.Reply{Packet: ans, After: after[p.DstPort], NoRx: tc.noRx})
			})
			c.NoTxStamps = tc.noTx
			results := 0
			var sum scan.Summary
			var err error
			sum, err = scan.ScanConn(context.Background(), c, scan.Config{
				Set:     mustSet(t, mustParse(t, "198.18.1.0/27:22-25")),
				Timeout: time.Second, Senders: 2,
				OnResult: func(r *probe.ScanResult, o scan.Origin) {
					results++
					want := after[r.Port]
					switch {
					case r.Sent.IsZero() || r.RTT <= 0:
						t.Errorf("%v:%d (%v): no RTT", r.Addr, r.Port, r.State)
					case r.KernelClock != tc.kernel:
						t.Errorf("%v:%d: KernelClock %v, want %v", r.Addr, r.Port, r.KernelClock, tc.kernel)
					case tc.kernel && r.RTT != want:
						t.Errorf("%v:%d (%v): RTT %v, want exactly %v", r.Addr, r.Port, r.State, r.RTT, want)
					case !tc.kernel && (r.RTT < want && !tc.noRx || r.RTT > 10*time.Second):
						t.Errorf("%v:%d (%v): user-clock RTT %v, want at least %v", r.Addr, r.Port, r.State, r.RTT, want)
					}
				},
			}, scan.Wiring{Src4: netip.MustParseAddr("198.18.0.1"), PortLo: 61000, PortHi: 61999, ProbeCopies: tc.copies})
			c.Close()
			if err != nil {
				t.Fatal(err)
			}
			kernel, user := uint64(0), uint64(128)
			if tc.kernel {
				kernel, user = 128, 0
			}
			if results != 128 || sum.Open != 32 || sum.Closed != 64 || sum.Filtered != 32 || sum.KernelClock != kernel || sum.UserClock != user {
				t.Errorf("%d results; summary %+v", results, sum)
			}
		})
	}
}

// TestScanECN: with ECN, every SYN of a scan carries ECE and CWR (RFC
// 3168's ECN-setup SYN), and only then.
func TestScanECN(t *testing.T) {
	for _, ecn := range []bool{false, true} {
		var mu sync.Mutex
		flags := map[wire.TCPFlags]int{}
		c := probetest.NewConn(func(p *wire.Packet, b []byte, _ uint32) []probetest.Reply {
			mu.Lock()
			flags[p.Flags]++
			mu.Unlock()
			if p.Flags&wire.FlagSyn == 0 {
				return nil
			}
			return []probetest.Reply{{Packet: probetest.SYNACK(p, wire.SYNOptions{MSS: 1460, WScale: -1})}}
		})
		spec, err := scan.ParseSpec("198.18.1.0/30:22,80")
		if err != nil {
			t.Fatal(err)
		}
		sum, err := scan.ScanConn(context.Background(), c, scan.Config{
			Set:     mustSet(t, &spec),
			Timeout: 100 * time.Millisecond, ECN: ecn, OnResult: func(*probe.ScanResult, scan.Origin) {},
		}, scan.Wiring{Src4: netip.MustParseAddr("198.18.0.1"), PortLo: 61000, PortHi: 61999})
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		want := wire.FlagSyn
		if ecn {
			want |= wire.FlagEce | wire.FlagCwr
		}
		if sum.Open != sum.Pairs || flags[want] != int(sum.Pairs) {
			t.Errorf("ECN %v: %d of %d pairs open; SYN flags sent %v, want %d of %v", ecn, sum.Open, sum.Pairs, flags, sum.Pairs, want)
		}
	}
}

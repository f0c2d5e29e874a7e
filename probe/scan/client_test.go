package scan_test

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/probe/probetest"
	"github.com/synprobe/synprobe/probe/scan"
	"github.com/synprobe/synprobe/rawsock"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// hostileLab answers on 198.18.1.1: port 22 open (SYN-ACK after 80 µs),
// 81 closed (RST after 50 µs, but first a forged SYN-ACK that
// acknowledges ISN+2), 82 closed behind a forger that first sends a RST
// from the wrong port; on 198.18.1.2 every port is rejected by a router
// (ICMP after 30 µs), preceded by an ICMP error quoting another
// connection of ours. Everything else is silent.
func hostileLab(p *wire.Packet, b []byte, _ uint32) []probetest.Reply {
	if p.Flags&wire.FlagSyn == 0 || p.Flags&wire.FlagAck != 0 {
		return nil
	}
	switch {
	case p.Dst == netip.MustParseAddr("198.18.1.2"):
		other := probetest.Build(wire.Segment{Src: p.Src, Dst: p.Dst, TTL: 64, SrcPort: p.SrcPort ^ 1, DstPort: p.DstPort, Seq: p.Seq, Flags: wire.FlagSyn})
		return []probetest.Reply{
			{Packet: probetest.ICMPError(other, netip.MustParseAddr("198.18.0.254"), 3, 13), After: 10 * time.Microsecond},
			{Packet: probetest.ICMPError(b, netip.MustParseAddr("198.18.0.254"), 3, 13), After: 30 * time.Microsecond},
		}
	case p.Dst != netip.MustParseAddr("198.18.1.1"):
		return nil
	}
	switch p.DstPort {
	case 22:
		return []probetest.Reply{{Packet: probetest.SYNACK(p, wire.SYNOptions{MSS: 1460}), After: 80 * time.Microsecond}}
	case 81:
		forged := *p
		forged.Seq++ // its SYN-ACK acknowledges ISN+2
		return []probetest.Reply{
			{Packet: probetest.SYNACK(&forged, wire.SYNOptions{MSS: 1460}), After: 10 * time.Microsecond},
			{Packet: probetest.RST(p), After: 50 * time.Microsecond},
		}
	case 82:
		wrong := *p
		wrong.DstPort = 83 // a RST from another port
		return []probetest.Reply{
			{Packet: probetest.RST(&wrong), After: 10 * time.Microsecond},
			{Packet: probetest.RST(p), After: 50 * time.Microsecond},
		}
	}
	return nil
}

// TestRunOnFakeClient scans through a client given a Conn while other
// goroutines probe the same pairs through it: every verdict and RTT is
// exact, hostile answers are never taken, and the probes' results are
// their own.
func TestRunOnFakeClient(t *testing.T) {
	conn := probetest.NewConn(hostileLab)
	defer conn.Close()
	cl := fakeClient(t, conn, 64)
	set := mustSet(t, mustParse(t, "198.18.1.0/30:22,81,82,90"))
	want := func(ap netip.AddrPort) (string, time.Duration) {
		switch {
		case ap.Addr() == netip.MustParseAddr("198.18.1.2"):
			return "filtered/icmp-admin-prohibited", 30 * time.Microsecond
		case ap.Addr() != netip.MustParseAddr("198.18.1.1"), ap.Port() == 90:
			return "filtered/timeout", 0
		case ap.Port() == 22:
			return "open/syn-ack", 80 * time.Microsecond
		}
		return "closed/rst", 50 * time.Microsecond
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 16 {
		ap := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 1, byte(1 + i%2)}), []uint16{22, 81, 82, 90}[i/2%4])
		wg.Go(func() {
			r, err := cl.Probe(ctx, ap, &probe.ProbeOptions{Timeout: 100 * time.Millisecond})
			if w, _ := want(ap); err != nil || r.State.String()+"/"+r.Reason != w {
				t.Errorf("probe %v: %v, %v; want %s", ap, r, err, w)
			}
		})
	}
	got := map[netip.AddrPort]probe.ScanResult{}
	sum, err := scan.Run(ctx, cl, scan.Config{
		Set: set, Timeout: 100 * time.Millisecond, Retries: 1,
		OnResult: func(r *probe.ScanResult, _ scan.Origin) {
			if _, dup := got[r.AddrPort()]; dup {
				t.Errorf("%v reported twice", r.AddrPort())
			}
			got[r.AddrPort()] = *r
		},
	})
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(got)) != set.Len() {
		t.Fatalf("%d results for %d pairs", len(got), set.Len())
	}
	for ap, r := range got {
		w, rtt := want(ap)
		if s := r.State.String() + "/" + r.Reason; s != w {
			t.Errorf("%v: %s, want %s", ap, s, w)
		}
		if rtt != 0 && (r.RTT != rtt || !r.KernelClock) {
			t.Errorf("%v: RTT %v (kernel clock %v), want %v by the kernel's", ap, r.RTT, r.KernelClock, rtt)
		}
		if r.Src != netip.MustParseAddr("198.18.0.1") || r.SrcPort != 0 && (r.SrcPort < 61000 || r.SrcPort > 61063) {
			t.Errorf("%v: from %v port %d", ap, r.Src, r.SrcPort)
		}
	}
	if sum.Open != 1 || sum.Closed != 2 || sum.Filtered != 13 || sum.RecvPath != "the client's Conn" || sum.Clock() != "kernel" {
		t.Errorf("summary: %d open, %d closed, %d filtered, answers from %q, clock %q", sum.Open, sum.Closed, sum.Filtered, sum.RecvPath, sum.Clock())
	}
	// The scan reset the open port's half-open connection at ISN+1.
	rsts := 0
	for _, b := range conn.Sent() {
		var p wire.Packet
		if wire.Parse(b, &p) == nil && p.Flags == wire.FlagRst && p.DstPort == 22 {
			rsts++
		}
	}
	if rsts < 2 { // the scan's and the probes'
		t.Errorf("%d RSTs to the open port", rsts)
	}
}

// A client closed during a scan ends it with an error: its silence is not
// a verdict.
func TestRunClientClosed(t *testing.T) {
	conn := probetest.NewConn(func(*wire.Packet, []byte, uint32) []probetest.Reply { return nil })
	defer conn.Close()
	cl := fakeClient(t, conn, 2)
	time.AfterFunc(50*time.Millisecond, func() { cl.Close() })
	reported := 0
	sum, err := scan.Run(context.Background(), cl, scan.Config{
		Set: mustSet(t, mustParse(t, "198.18.1.0/30:80")), Timeout: 5 * time.Second,
		OnResult: func(*probe.ScanResult, scan.Origin) { reported++ },
	})
	if err == nil || reported != 0 {
		t.Errorf("Run = %+v, %v after the client closed; %d results", sum, err, reported)
	}
	if _, err := scan.Run(context.Background(), cl, scan.Config{Set: mustSet(t, mustParse(t, "198.18.1.0/30:80"))}); err == nil {
		t.Error("a closed client scanned")
	}
}

// fakeOpener opens a fake network for Prepare: probes leave through net,
// whose answers a fake ring (over net's Recv) delivers; no Ethernet
// frames.
type fakeOpener struct {
	net  *probetest.Conn
	ring *engineRing
}

func (o fakeOpener) Listen(rawsock.Config) (scan.ClosingConn, error) { return o.net, nil }
func (o fakeOpener) Ring(rawsock.RingConfig) (scan.ClosingReceiver, error) {
	return o.ring, nil
}
func (o fakeOpener) DirectPath([]netip.Prefix, int) (rawsock.NextHop, error) {
	return rawsock.NextHop{}, errors.New("fake: no direct path")
}
func (o fakeOpener) PacketSender(rawsock.NextHop, bool) (scan.ClosingSender, error) {
	return nil, errors.New("fake: no packet sender")
}

// engineRing is a fake packet ring over a probetest.Conn that counts
// how it is read: the engine only looks (a deadline in the past); a read
// that waits would be a reader of the scan's own, which it once had and
// must not have again. It counts as a ring does
// (Mark, ReadTo): given, the answers its network made.
type engineRing struct {
	fakeRing
	given, read  atomic.Uint64
	looks, waits atomic.Int64
	closed       atomic.Bool
}

func (r *engineRing) Read(deadline time.Time, fn func([]byte, time.Time)) (int, error) {
	if deadline.IsZero() || time.Until(deadline) > 0 {
		r.waits.Add(1)
	} else {
		r.looks.Add(1)
	}
	n, err := r.fakeRing.Read(deadline, fn)
	r.read.Add(uint64(n))
	return n, err
}

func (r *engineRing) Mark() uint64            { return r.given.Load() }
func (r *engineRing) ReadTo(mark uint64) bool { return r.read.Load() >= mark }

func (r *engineRing) Close() error { r.closed.Store(true); return nil }

// TestRunRingReadByEngine: a scan big enough for a packet ring has its
// ring read by the client's engine, on its thread, and never by a loop
// of the scan's own: every verdict exact, the ring never waited on, and
// closed with the scan.
func TestRunRingReadByEngine(t *testing.T) {
	cl, ring, net, set := ringLab(t)
	prep := prepareRing(t, cl, ring, net, set)
	got := map[string]uint64{}
	wrong := 0
	sum, err := prep.Run(context.Background(), scan.Config{
		Set: set, Timeout: 200 * time.Millisecond, Retries: 0,
		OnResult: func(r *probe.ScanResult, _ scan.Origin) {
			v := r.State.String() + "/" + r.Reason
			got[v]++
			want := map[byte]string{0: "open/syn-ack", 1: "closed/rst", 2: "closed/rst", 3: "filtered/timeout"}[r.Addr.As4()[3]%4]
			if v != want {
				if wrong++; wrong < 5 {
					t.Errorf("%v: %s, want %s", r.AddrPort(), v, want)
				}
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := prep.Close(); err != nil {
		t.Fatal(err)
	}
	n := set.Len()
	if sum.Pairs != n || got["open/syn-ack"] != n/4 || got["closed/rst"] != n/2 || got["filtered/timeout"] != n/4 || sum.RecvPath != "packet ring" {
		t.Errorf("%v over %d pairs; %d answers read of %d, from %q", got, n, sum.Received, ring.given.Load(), sum.RecvPath)
	}
	if ring.waits.Load() != 0 || ring.looks.Load() == 0 || !ring.closed.Load() {
		t.Errorf("the ring was waited on %d times and looked at %d times (the engine only looks), closed %v", ring.waits.Load(), ring.looks.Load(), ring.closed.Load())
	}
}

// A big scan's answers that the client's own sockets read too, beside
// the scan's ring, are the scan's: the client does not count them as
// unmatched (Counters.Unmatched), while a stray to its ports still is.
func TestRingScanAnswersNotUnmatched(t *testing.T) {
	ring := &engineRing{}
	own := probetest.NewConn(func(*wire.Packet, []byte, uint32) []probetest.Reply { return nil })
	t.Cleanup(func() { own.Close() })
	var copies atomic.Int64
	net := probetest.NewConn(func(p *wire.Packet, _ []byte, _ uint32) []probetest.Reply {
		if p.Flags != wire.FlagSyn {
			return nil
		}
		rst := probetest.RST(p)
		own.Inject(append([]byte(nil), rst...), time.Now()) // what the client's raw sockets see too
		copies.Add(1)
		ring.given.Add(1)
		return []probetest.Reply{{Packet: rst, After: 50 * time.Microsecond}}
	})
	t.Cleanup(func() { net.Close() })
	ring.fakeRing = fakeRing{c: net, buf: make([]byte, rawsock.MaxPacketSize)}
	cl := fakeClient(t, own, 256)
	set := mustSet(t, mustParse(t, "198.18.64.0/18:80"))
	prep := prepareRing(t, cl, ring, net, set)
	sum, err := prep.Run(context.Background(), scan.Config{Set: set, Timeout: 200 * time.Millisecond, OnResult: func(*probe.ScanResult, scan.Origin) {}})
	if err != nil {
		t.Fatal(err)
	}
	prep.Close()
	// A stray: a RST to one of the client's ports that answers nothing.
	stray := probetest.RST(&wire.Packet{Src: netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("198.18.9.9"), SrcPort: 61000, DstPort: 9, Seq: 12345})
	own.Inject(stray, time.Now())
	want := uint64(copies.Load()) + 1
	var c probe.Counters
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if c = cl.Counters(); c.Received >= want {
			break
		}
	}
	if sum.Closed != set.Len() || c.Received != want || c.Unmatched != 1 {
		t.Errorf("scan closed %d of %d; client received %d (want %d: the scan's %d copies and a stray), unmatched %d (want 1: the stray)",
			sum.Closed, set.Len(), c.Received, want, copies.Load(), c.Unmatched)
	}
}

// ringLab returns a client over a fake network of 198.18.64.0/18 (every
// fourth host open, two closed, one silent), a fake ring that carries its
// answers, and the Set of port 80 there: big enough for the ring.
func ringLab(t *testing.T) (*probe.Client, *engineRing, *probetest.Conn, *scan.Set) {
	ring := &engineRing{}
	net := probetest.NewConn(func(p *wire.Packet, _ []byte, _ uint32) []probetest.Reply {
		if p.Flags != wire.FlagSyn {
			return nil
		}
		switch p.Dst.As4()[3] % 4 {
		case 0:
			ring.given.Add(1)
			return []probetest.Reply{{Packet: probetest.SYNACK(p, wire.SYNOptions{MSS: 1460}), After: 50 * time.Microsecond}}
		case 1, 2:
			ring.given.Add(1)
			return []probetest.Reply{{Packet: probetest.RST(p), After: 50 * time.Microsecond}}
		}
		return nil // silent
	})
	t.Cleanup(func() { net.Close() })
	ring.fakeRing = fakeRing{c: net, buf: make([]byte, rawsock.MaxPacketSize)}
	own := probetest.NewConn(func(*wire.Packet, []byte, uint32) []probetest.Reply { return nil })
	t.Cleanup(func() { own.Close() })
	return fakeClient(t, own, 256), ring, net, mustSet(t, mustParse(t, "198.18.64.0/18:80"))
}

// prepareRing prepares a scan of set on cl over ringLab's fake network,
// closed when the test ends.
func prepareRing(t *testing.T, cl *probe.Client, ring *engineRing, net *probetest.Conn, set *scan.Set) *scan.Prepared {
	prep, err := scan.Prepare(cl, scan.PrepareConfig{Set: set, Opener: fakeOpener{net: net, ring: ring}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prep.Close() })
	return prep
}

// fakeClient returns a client on conn with ports source ports from 61000
// and 198.18.0.1 the source of every target, closed when the test ends.
func fakeClient(t *testing.T, conn *probetest.Conn, ports int) *probe.Client {
	var ps []uint16
	for p := range uint16(ports) {
		ps = append(ps, 61000+p)
	}
	cl, err := probe.NewClient(&probe.ClientConfig{
		Conn: conn, SourcePorts: ps,
		Source: func(netip.Addr) (netip.Addr, error) { return netip.MustParseAddr("198.18.0.1"), nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// runWithin runs fn and fails the test if it has not returned within d.
func runWithin(t *testing.T, d time.Duration, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("still running after %v", d)
	}
}

// A big scan whose client closes mid-scan, its ring full and nobody left
// to read it, ends with an error: its senders do not wait for room for
// ever (a review's find), and Close from OnResult, which runs on the
// client's engine, returns at once rather than waiting for the engine
// it runs on.
func TestRunRingClientClosed(t *testing.T) {
	t.Run("Close from another goroutine, the ring full", func(t *testing.T) {
		cl, ring, net, set := ringLab(t)
		prep := prepareRing(t, cl, ring, net, set)
		ring.full.Store(true) // Pending: 1, the senders wait for room
		time.AfterFunc(50*time.Millisecond, func() { cl.Close() })
		runWithin(t, 20*time.Second, func() {
			if _, err := prep.Run(context.Background(), scan.Config{Set: set, Timeout: 200 * time.Millisecond}); err == nil {
				t.Error("a scan whose client closed under it succeeded")
			}
		})
	})
	t.Run("Close from OnResult", func(t *testing.T) {
		cl, ring, net, set := ringLab(t)
		prep := prepareRing(t, cl, ring, net, set)
		var once sync.Once
		runWithin(t, 20*time.Second, func() {
			sum, err := prep.Run(context.Background(), scan.Config{Set: set, Timeout: 200 * time.Millisecond,
				OnResult: func(*probe.ScanResult, scan.Origin) { once.Do(func() { cl.Close() }) },
			})
			if err == nil {
				t.Error("a scan whose client closed under it succeeded")
			}
			// What it did before: probes sent, one answer at least, and
			// no pair called filtered for the silence after.
			if sum.Sent == 0 || sum.Open+sum.Closed == 0 || sum.Filtered != 0 {
				t.Errorf("summary %+v: want the probes sent and answers read before, none filtered", sum)
			}
		})
	})
	t.Run("closed before the run", func(t *testing.T) {
		cl, ring, net, set := ringLab(t)
		prep := prepareRing(t, cl, ring, net, set)
		cl.Close()
		if _, err := prep.Run(context.Background(), scan.Config{Set: set}); !errors.Is(err, probe.ErrClosed) {
			t.Errorf("Run on a closed client: %v; want probe.ErrClosed", err)
		}
	})
}

// One scan at a time on a client: a second Prepare is refused until the
// first Prepared is closed (two would take each other's answers).
func TestPrepareOneAtATime(t *testing.T) {
	cl, ring, net, set := ringLab(t)
	first, err := scan.Prepare(cl, scan.PrepareConfig{Set: set, Opener: fakeOpener{net: net, ring: ring}})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := scan.Prepare(cl, scan.PrepareConfig{Set: set, Opener: fakeOpener{net: net, ring: ring}}); !errors.Is(err, probe.ErrScanning) {
		if p != nil {
			p.Close()
		}
		t.Fatalf("a second Prepare on a client while the first was open: %v; want probe.ErrScanning", err)
	}
	if _, err := scan.Run(context.Background(), cl, scan.Config{Set: mustSet(t, mustParse(t, "198.18.1.0/30:80"))}); !errors.Is(err, probe.ErrScanning) {
		t.Fatalf("a scan on a client while another was prepared: %v; want probe.ErrScanning", err)
	}
	first.Close()
	again, err := scan.Prepare(cl, scan.PrepareConfig{Set: set, Opener: fakeOpener{net: net, ring: ring}})
	if err != nil {
		t.Fatalf("after the first closed: %v", err)
	}
	again.Close()
}

// A Prepared runs one scan: a second Run is refused at once, for a scan
// read from a ring and for one read from the client's sockets (a second
// run once waited for ever on a ring it no longer read).
func TestPreparedRunsOnce(t *testing.T) {
	cl, ring, net, set := ringLab(t)
	small := mustSet(t, mustParse(t, "198.18.1.0/30:80"))
	for _, s := range []*scan.Set{set, small} {
		prep := prepareRing(t, cl, ring, net, s)
		cfg := scan.Config{Set: s, Timeout: 50 * time.Millisecond, OnResult: func(*probe.ScanResult, scan.Origin) {}}
		if _, err := prep.Run(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
		runWithin(t, 5*time.Second, func() {
			if _, err := prep.Run(context.Background(), cfg); err == nil {
				t.Errorf("%d pairs: a Prepared ran twice", s.Len())
			}
		})
		prep.Close()
	}
}

// A scan's SYNs carry the client's SYN options unless its Config names
// others, or none (NoOptions), as a probe's do.
func TestRunSYNOptions(t *testing.T) {
	mine := &wire.SYNOptions{MSS: 1200, WScale: -1}
	for _, tt := range []struct {
		name string
		cfg  scan.Config
		want wire.SYNOptions
	}{
		{"the client's", scan.Config{}, wire.SYNOptions{MSS: 1460, WScale: 7, SACKPermitted: true, Timestamps: true}},
		{"the scan's", scan.Config{Options: mine}, *mine},
		{"none", scan.Config{NoOptions: true}, wire.SYNOptions{WScale: -1}},
	} {
		var mu sync.Mutex
		var got []wire.SYNOptions
		conn := probetest.NewConn(func(p *wire.Packet, _ []byte, _ uint32) []probetest.Reply {
			if p.Flags == wire.FlagSyn {
				mu.Lock()
				got = append(got, p.Options)
				mu.Unlock()
				return []probetest.Reply{{Packet: probetest.RST(p)}}
			}
			return nil
		})
		cl := fakeClient(t, conn, 8)
		cfg := tt.cfg
		cfg.Set, cfg.Timeout = mustSet(t, mustParse(t, "198.18.1.0/30:80")), 100*time.Millisecond
		if _, err := scan.Run(context.Background(), cl, cfg); err != nil {
			t.Fatal(err)
		}
		conn.Close()
		mu.Lock()
		if len(got) != 4 {
			t.Errorf("%s: %d SYNs", tt.name, len(got))
		}
		for _, o := range got {
			o.TSVal = 0 // the scan's clock
			if o != tt.want {
				t.Errorf("%s: a SYN with options %+v, want %+v", tt.name, o, tt.want)
				break
			}
		}
		mu.Unlock()
	}
}

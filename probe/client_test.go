package probe_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/probe/probetest"
	"github.com/synprobe/synprobe/rawsock"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// fakeClient returns a Client over c with ports source ports from 61000.
func fakeClient(t *testing.T, c interface {
	probe.Conn
	Close() error
}, ports int) *probe.Client {
	t.Helper()
	sp := make([]uint16, ports)
	for i := range sp {
		sp[i] = uint16(61000 + i)
	}
	cl, err := probe.NewClient(&probe.ClientConfig{
		Conn:        c,
		SourcePorts: sp,
		Source: func(dst netip.Addr) (netip.Addr, error) {
			if dst.Is4() {
				return src4, nil
			}
			return src6, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cl.Close()
		c.Close()
	})
	return cl
}

// byPort answers as the fake targets' ports say: 1xx open, 2xx closed,
// 3xx an ICMP "administratively prohibited" from a router, anything else silence. Each reply comes
// rtt + port microseconds after its SYN, so that a result with another
// probe's reply would show it.
func byPort(p *wire.Packet, b []byte, _ uint32) []probetest.Reply {
	if p.Flags != wire.FlagSyn {
		return nil
	}
	after := rtt + time.Duration(p.DstPort)*time.Microsecond
	switch p.DstPort / 100 {
	case 1:
		return []probetest.Reply{{Packet: probetest.SYNACK(p, wire.SYNOptions{MSS: 1400, TSEcr: p.Options.TSVal}), After: after}}
	case 2:
		return []probetest.Reply{{Packet: probetest.RST(p), After: after}}
	case 3:
		// Administratively prohibited.
		if p.Dst.Is6() {
			return []probetest.Reply{{Packet: probetest.ICMPError(b, rtr6, 1, 1), After: after}}
		}
		return []probetest.Reply{{Packet: probetest.ICMPError(b, rtr4, 3, 13), After: after}}
	}
	return nil
}

// TestClientConcurrent makes 1,000 Probe calls at once on one client,
// IPv4 and IPv6 mixed, to open, closed, ICMP-filtered and silent ports:
// each call gets the verdict, the RTT and the addresses of its own probe,
// with fewer source ports than calls (the rest wait for a port).
func TestClientConcurrent(t *testing.T) {
	var syns atomic.Int64
	c := probetest.NewConn(func(p *wire.Packet, b []byte, id uint32) []probetest.Reply {
		if p.Flags == wire.FlagSyn {
			syns.Add(1)
		}
		return byPort(p, b, id)
	})
	cl := fakeClient(t, c, 256)
	const calls = 1000
	type want struct {
		state  probe.State
		reason string
		from   func(dst netip.Addr) netip.Addr
	}
	self := func(dst netip.Addr) netip.Addr { return dst }
	router := func(dst netip.Addr) netip.Addr {
		if dst.Is4() {
			return rtr4
		}
		return rtr6
	}
	wants := map[uint16]want{
		1: {probe.StateOpen, probe.ReasonSYNACK, self},
		2: {probe.StateClosed, probe.ReasonRST, self},
		3: {probe.StateFiltered, "icmp-admin-prohibited", router},
		4: {probe.StateFiltered, probe.ReasonTimeout, nil},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, calls)
	for i := range calls {
		wg.Go(func() {
			dst := dst4
			if i%2 == 1 {
				dst = dst6
			}
			kind := uint16(1 + i%4)
			port := kind*100 + uint16(i%97)
			ap := netip.AddrPortFrom(dst, port)
			r, err := cl.Probe(ctx, ap, &probe.ProbeOptions{Timeout: 50 * time.Millisecond})
			if err != nil {
				errs <- fmt.Errorf("%v: %v", ap, err)
				return
			}
			w := wants[kind]
			if r.State != w.state || r.Reason != w.reason {
				errs <- fmt.Errorf("%v: %v %s, want %v %s", ap, r.State, r.Reason, w.state, w.reason)
				return
			}
			if r.Target.Addr != dst || r.Target.Port != port || r.Seq != 0 || r.Index != 0 {
				errs <- fmt.Errorf("%v: result for %v (seq %d, index %d)", ap, r.Target, r.Seq, r.Index)
				return
			}
			if w.from == nil {
				if r.RTT != 0 || r.From.IsValid() {
					errs <- fmt.Errorf("%v: timeout with RTT %v from %v", ap, r.RTT, r.From)
				}
				return
			}
			wantRTT := rtt + time.Duration(port)*time.Microsecond
			if r.From != w.from(dst) || r.RTT != wantRTT || !r.KernelClock {
				errs <- fmt.Errorf("%v: answer from %v after %v (kernel %v), want %v after %v", ap, r.From, r.RTT, r.KernelClock, w.from(dst), wantRTT)
			}
		})
	}
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if n++; n <= 10 {
			t.Error(err)
		}
	}
	if n > 10 {
		t.Errorf("... and %d more", n-10)
	}
	if got := syns.Load(); got != calls {
		t.Errorf("%d SYNs sent for %d calls", got, calls)
	}
}

// TestClientCancel: a call whose context ends returns at once; the engine
// interrupts its probe (a RST for the half-open connection the SYN may
// have made, in ack mode) and frees its port for the next call.
func TestClientCancel(t *testing.T) {
	c := probetest.NewConn(byPort)
	cl := fakeClient(t, c, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := cl.Probe(ctx, netip.AddrPortFrom(dst4, 400), &probe.ProbeOptions{Mode: probe.ModeACK, Timeout: time.Hour})
		done <- err
	}()
	// Cancel once the SYN is out.
	for deadline := time.Now().Add(10 * time.Second); len(c.Sent()) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("no SYN sent")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call returned %v", err)
	}
	// The one port must come back: the next call gets its own answer.
	r, err := cl.Probe(context.Background(), netip.AddrPortFrom(dst4, 100), nil)
	if err != nil || r.State != probe.StateOpen {
		t.Fatalf("after the cancel: %v, %v", r, err)
	}
	var syn, abortRST wire.Packet
	sent := c.Sent()
	if err := wire.Parse(sent[0], &syn); err != nil {
		t.Fatal(err)
	}
	if err := wire.Parse(sent[1], &abortRST); err != nil {
		t.Fatal(err)
	}
	if abortRST.Flags != wire.FlagRst || abortRST.Seq != syn.Seq+1 || abortRST.SrcPort != syn.SrcPort || abortRST.DstPort != 400 {
		t.Errorf("after the cancel sent %v seq %d port %d, want RST at ISN+1 %d from %d", abortRST.Flags, abortRST.Seq, abortRST.SrcPort, syn.Seq+1, syn.SrcPort)
	}
}

// TestClientClose: calls in progress and calls after Close fail with
// ErrClosed; Close waits for the engine and may be called twice.
func TestClientClose(t *testing.T) {
	c := probetest.NewConn(byPort)
	cl := fakeClient(t, c, 4)
	done := make(chan error, 1)
	go func() {
		_, err := cl.Probe(context.Background(), netip.AddrPortFrom(dst6, 400), &probe.ProbeOptions{Timeout: time.Hour})
		done <- err
	}()
	for len(c.Sent()) == 0 {
		time.Sleep(time.Millisecond)
	}
	cl.Close()
	cl.Close()
	if err := <-done; !errors.Is(err, probe.ErrClosed) {
		t.Errorf("call in progress: %v, want ErrClosed", err)
	}
	if _, err := cl.Probe(context.Background(), netip.AddrPortFrom(dst4, 100), nil); !errors.Is(err, probe.ErrClosed) {
		t.Errorf("call after Close: %v, want ErrClosed", err)
	}
}

// TestClientRejects: unusable destinations fail at once with the reason.
func TestClientRejects(t *testing.T) {
	cl := fakeClient(t, probetest.NewConn(byPort), 4)
	for _, tt := range []struct {
		dst  string
		want string
	}{
		{"198.18.0.2:0", "port 0"},
		{"0.0.0.0:80", "probe: 0.0.0.0 is the unspecified address; a probe goes to one host: give a unicast address"},
		{"224.0.0.1:80", "224.0.0.1 is a multicast address"},
		{"255.255.255.255:80", "255.255.255.255 is the limited broadcast address"},
		{"[ff02::1]:80", "ff02::1 is a multicast address"},
		{"[fe80::1%lo]:80", "zoned addresses are not supported"},
	} {
		_, err := cl.Probe(context.Background(), netip.MustParseAddrPort(tt.dst), nil)
		if err == nil || !contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.dst, err, tt.want)
		}
		if unicast := contains(tt.want, " is "); errors.Is(err, probe.ErrNotUnicast) != unicast {
			t.Errorf("%s: errors.Is(%v, ErrNotUnicast) = %v", tt.dst, err, !unicast)
		}
	}
	if _, err := cl.Probe(context.Background(), netip.MustParseAddrPort("198.18.0.2:80"), &probe.ProbeOptions{Mode: 9}); err == nil {
		t.Error("mode 9 accepted")
	}
	if _, err := cl.Probe(context.Background(), netip.MustParseAddrPort("198.18.0.2:80"), &probe.ProbeOptions{Source: src6}); err == nil {
		t.Error("an IPv6 source for an IPv4 target accepted")
	}
}

// TestClientRefusesBroadcasts: a subnet's broadcast address is refused,
// by Probe and Rounds, with an *UnusableError; the list is read again when
// a route lookup meets a broadcast the client did not know, and before a
// refusal by a list older than a second.
func TestClientRefusesBroadcasts(t *testing.T) {
	var mu sync.Mutex
	bcast := map[netip.Addr]string{netip.MustParseAddr("198.18.0.255"): "lab0"}
	prohibited := netip.MustParseAddr("198.18.9.9")
	loads := 0
	c := probetest.NewConn(byPort)
	cl, err := probe.NewClient(&probe.ClientConfig{
		Conn:        c,
		SourcePorts: []uint16{61000, 61001},
		Source: func(dst netip.Addr) (netip.Addr, error) {
			mu.Lock()
			_, b := bcast[dst]
			mu.Unlock()
			if b || dst == prohibited { // as a UDP connect(2) answers
				return netip.Addr{}, &net.OpError{Op: "connect", Err: os.NewSyscallError("connect", syscall.EACCES)}
			}
			return src4, nil
		},
		Broadcasts: func() (map[netip.Addr]string, error) {
			mu.Lock()
			defer mu.Unlock()
			loads++
			return maps.Clone(bcast), nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	defer cl.Close()
	refused := func(dst, ifname string) {
		t.Helper()
		a := netip.MustParseAddrPort(dst)
		_, err := cl.Probe(context.Background(), a, nil)
		var u *probe.UnusableError
		if !errors.As(err, &u) || !errors.Is(err, probe.ErrNotUnicast) || u.Addr != a.Addr() {
			t.Fatalf("Probe(%s): %v, want an *UnusableError", dst, err)
		}
		want := fmt.Sprintf("probe: %v is the broadcast address of a subnet on %s; a probe goes to one host: give a unicast address", a.Addr(), ifname)
		if err.Error() != want {
			t.Errorf("Probe(%s): %q, want %q", dst, err, want)
		}
		_, err = cl.Rounds(context.Background(), &probe.Rounds{Targets: []probe.Target{{Addr: a.Addr(), Port: a.Port()}, {Addr: dst4, Port: 100}}, Count: 1})
		if !errors.Is(err, probe.ErrNotUnicast) {
			t.Errorf("Rounds with %s: %v, want ErrNotUnicast", dst, err)
		}
	}
	refused("198.18.0.255:80", "lab0")
	// Probed with an explicit source, no route lookup: the list refuses.
	_, err = cl.Probe(context.Background(), netip.MustParseAddrPort("198.18.0.255:80"), &probe.ProbeOptions{Source: src4})
	if !errors.Is(err, probe.ErrNotUnicast) {
		t.Errorf("with a source: %v", err)
	}
	// A subnet that appeared since: the route lookup's EACCES reads the
	// list again.
	mu.Lock()
	bcast[netip.MustParseAddr("198.18.1.255")] = "lab1"
	mu.Unlock()
	time.Sleep(150 * time.Millisecond) // the list is read at most every 100 ms
	refused("198.18.1.255:80", "lab1")
	// A prohibit route also answers EACCES: not a broadcast; the list
	// is not read again for each.
	mu.Lock()
	before := loads
	mu.Unlock()
	for range 20 {
		_, err = cl.Probe(context.Background(), netip.AddrPortFrom(prohibited, 80), nil)
		if err == nil || errors.Is(err, probe.ErrNotUnicast) || !contains(err.Error(), "no route to 198.18.9.9") {
			t.Errorf("prohibit route: %v", err)
		}
	}
	mu.Lock()
	if loads > before+1 {
		t.Errorf("20 probes behind a prohibit route read the list %d times", loads-before)
	}
	mu.Unlock()
	if len(c.Sent()) != 0 {
		t.Errorf("%d packets sent to refused destinations", len(c.Sent()))
	}
	// A subnet gone: its broadcast address is a host's again once the
	// list is more than a second old.
	mu.Lock()
	delete(bcast, netip.MustParseAddr("198.18.0.255"))
	mu.Unlock()
	time.Sleep(1100 * time.Millisecond)
	r, err := cl.Probe(context.Background(), netip.MustParseAddrPort("198.18.0.255:180"), &probe.ProbeOptions{Source: src4})
	if err != nil || r.State != probe.StateOpen {
		t.Errorf("a former broadcast address: %v %v", r, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if loads > 5 {
		t.Errorf("the list was read %d times", loads)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// TestClientRounds runs rounds on the client beside single probes: the
// statistics are the rounds' own.
func TestClientRounds(t *testing.T) {
	c := probetest.NewConn(byPort)
	cl := fakeClient(t, c, 64)
	var got []probe.Result
	single := make(chan *probe.Result, 1)
	go func() {
		r, _ := cl.Probe(context.Background(), netip.AddrPortFrom(dst4, 250), nil)
		single <- r
	}()
	st, err := cl.Rounds(context.Background(), &probe.Rounds{
		Targets:  []probe.Target{{Addr: dst4, Port: 101}, {Addr: dst6, Port: 201}},
		Count:    3,
		Interval: time.Millisecond,
		OnResult: func(r *probe.Result) { got = append(got, *r) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 2 || st[0].Sent != 3 || st[0].Open != 3 || st[1].Sent != 3 || st[1].Closed != 3 {
		t.Fatalf("stats %+v", st)
	}
	if len(got) != 6 {
		t.Fatalf("%d results, want 6", len(got))
	}
	for _, r := range got {
		if want := []probe.State{probe.StateOpen, probe.StateClosed}[r.Index]; r.State != want || r.Target.Port != []uint16{101, 201}[r.Index] {
			t.Errorf("round %d target %d: %v from %v", r.Seq, r.Index, r.State, r.Target)
		}
	}
	if r := <-single; r == nil || r.State != probe.StateClosed || r.Target.Port != 250 {
		t.Errorf("the single probe beside the rounds: %+v", r)
	}
}

// TestClientSequentialWakes: probe after probe, each submitted while the
// engine may be draining its socket. A wake the drain took once left the
// engine blocked in Recv for good (1 hang in some 1,500 probes).
func TestClientSequentialWakes(t *testing.T) {
	c := probetest.NewConn(byPort)
	cl, err := probe.NewClient(&probe.ClientConfig{
		Conn: c, SourcePorts: []uint16{61000, 61001, 61002, 61003},
		Source: func(netip.Addr) (netip.Addr, error) { return src4, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range 3000 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r, err := cl.Probe(ctx, netip.AddrPortFrom(dst4, 100+uint16(i%2)*100), nil)
		cancel()
		if err != nil {
			t.Fatalf("probe %d: %v", i, err)
		}
		if want := []probe.State{probe.StateOpen, probe.StateClosed}[i%2]; r.State != want {
			t.Fatalf("probe %d: %v, want %v", i, r.State, want)
		}
	}
}

// takeSpy is a PortAllocator that records whether each SYN carried
// timestamps.
type takeSpy struct {
	*probe.PortPool
	mu  sync.Mutex
	tss []bool
}

func (s *takeSpy) Take(now time.Time, tsval uint32, ts bool) (uint16, bool) {
	s.mu.Lock()
	s.tss = append(s.tss, ts)
	s.mu.Unlock()
	return s.PortPool.Take(now, tsval, ts)
}

// TestClientTimestampsToAllocator: a SYN without the timestamps option
// says so to the allocator, which must not then hand it a port cooling
// from a TIME_WAIT (RFC 6191 lets only a newer TSval in).
func TestClientTimestampsToAllocator(t *testing.T) {
	c := probetest.NewConn(byPort)
	spy := &takeSpy{PortPool: probe.NewPortPool([]uint16{61000, 61001}, true)}
	cl, err := probe.NewClient(&probe.ClientConfig{
		Conn: c, SourcePorts: []uint16{61000, 61001}, Allocator: spy,
		Source: func(netip.Addr) (netip.Addr, error) { return src4, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, o := range []*probe.ProbeOptions{nil, {NoOptions: true}, {Options: &wire.SYNOptions{MSS: 1400}}} {
		if _, err := cl.Probe(context.Background(), netip.AddrPortFrom(dst4, 100), o); err != nil {
			t.Fatal(err)
		}
	}
	if want := []bool{true, false, false}; fmt.Sprint(spy.tss) != fmt.Sprint(want) {
		t.Errorf("timestamps told to the allocator: %v, want %v", spy.tss, want)
	}
}

// TestClientGuardedRST: under an RST guard (here the caller's), a probe
// that times out in rst mode is reset at ISN+1, for the kernel's RST to a
// late SYN-ACK never leaves; without a guard, no RST is sent.
func TestClientGuardedRST(t *testing.T) {
	for _, guarded := range []bool{false, true} {
		c := probetest.NewConn(byPort)
		cl, err := probe.NewClient(&probe.ClientConfig{
			Conn: c, SourcePorts: []uint16{61000}, Guard: guarded,
			Source: func(netip.Addr) (netip.Addr, error) { return src4, nil },
		})
		if err != nil {
			t.Fatal(err)
		}
		r, err := cl.Probe(context.Background(), netip.AddrPortFrom(dst4, 400), &probe.ProbeOptions{Timeout: 10 * time.Millisecond})
		cl.Close()
		if err != nil || r.Reason != probe.ReasonTimeout {
			t.Fatalf("guarded=%v: %v, %v", guarded, r, err)
		}
		var rsts []uint32
		for _, b := range c.Sent() {
			var p wire.Packet
			if wire.Parse(b, &p) == nil && p.Flags == wire.FlagRst {
				rsts = append(rsts, p.Seq)
			}
		}
		switch {
		case guarded && (len(rsts) != 1 || rsts[0] != r.ISN+1):
			t.Errorf("guarded: RSTs at %v, want one at ISN+1 %d", rsts, r.ISN+1)
		case !guarded && len(rsts) != 0:
			t.Errorf("unguarded: RSTs at %v, want none", rsts)
		}
	}
}

// TestClientRoundsKeepSchedule: rounds do not queue behind a Probe that
// waits for a port; their probes fail at once (StateError) instead.
func TestClientRoundsKeepSchedule(t *testing.T) {
	c := probetest.NewConn(byPort)
	cl := fakeClient(t, c, 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range 3 { // two hold the ports for an hour, the third waits
		go cl.Probe(ctx, netip.AddrPortFrom(dst4, 400), &probe.ProbeOptions{Timeout: time.Hour})
	}
	for len(c.Sent()) < 2 {
		time.Sleep(time.Millisecond)
	}
	var states []probe.State
	st, err := cl.Rounds(context.Background(), &probe.Rounds{
		Targets: []probe.Target{{Addr: dst4, Port: 100}}, Count: 3, Interval: time.Millisecond,
		OnResult: func(r *probe.Result) { states = append(states, r.State) },
	})
	if err != nil || len(st) != 1 || st[0].Errors != 3 {
		t.Fatalf("rounds beside a waiting probe: %+v, %v", st, err)
	}
	if fmt.Sprint(states) != "[error error error]" {
		t.Errorf("results %v", states)
	}
}

// TestClientOnResultCalls: from an OnResult callback, Probe and Rounds
// fail at once rather than wait for the engine that runs the callback,
// and Close returns, the engine finishing the close afterwards.
func TestClientOnResultCalls(t *testing.T) {
	c := probetest.NewConn(byPort)
	cl := fakeClient(t, c, 4)
	var probeErr, roundsErr error
	_, err := cl.Rounds(context.Background(), &probe.Rounds{
		Targets: []probe.Target{{Addr: dst4, Port: 100}}, Count: 5, Interval: time.Millisecond,
		OnResult: func(r *probe.Result) {
			if r.Seq == 0 {
				_, probeErr = cl.Probe(context.Background(), netip.AddrPortFrom(dst4, 101), nil)
				_, roundsErr = cl.Rounds(context.Background(), &probe.Rounds{Targets: []probe.Target{{Addr: dst4, Port: 101}}})
				cl.Close()
			}
		},
	})
	if !errors.Is(err, probe.ErrClosed) {
		t.Errorf("Rounds closed by its own callback: %v, want ErrClosed", err)
	}
	if probeErr == nil || roundsErr == nil {
		t.Errorf("calls from OnResult: %v, %v", probeErr, roundsErr)
	}
	if _, err := cl.Probe(context.Background(), netip.AddrPortFrom(dst4, 100), nil); !errors.Is(err, probe.ErrClosed) {
		t.Errorf("after Close: %v", err)
	}

	// Start's done is a callback too: with a result, and without one
	// (cancelled before its SYN was answered).
	cl = fakeClient(t, probetest.NewConn(byPort), 4)
	for _, cancelIt := range []bool{false, true} {
		got := make(chan error, 1)
		cancel, err := cl.Start(netip.AddrPortFrom(dst4, 100), nil, func(*probe.Result, error) {
			// Bounded: a call taken for another thread's would wait for
			// the engine running this callback until then.
			ctx, stop := context.WithTimeout(context.Background(), 3*time.Second)
			defer stop()
			_, err := cl.Probe(ctx, netip.AddrPortFrom(dst4, 101), nil)
			got <- err
		})
		if err != nil {
			t.Fatal(err)
		}
		if cancelIt {
			cancel()
		}
		select {
		case err := <-got:
			if err == nil || errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Probe from Start's done (cancelled %v): %v, want a refusal", cancelIt, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("Probe from Start's done (cancelled %v): no return", cancelIt)
		}
	}
	// From any other goroutine, calls work.
	if _, err := cl.Probe(context.Background(), netip.AddrPortFrom(dst4, 100), nil); err != nil {
		t.Errorf("Probe from a goroutine of the test: %v", err)
	}
}

// TestClientConfigRejects: configurations a client cannot work with fail
// in NewClient, before anything is opened, with the reason.
func TestClientConfigRejects(t *testing.T) {
	c := probetest.NewConn(nil)
	for _, tt := range []struct {
		cfg  probe.ClientConfig
		want string
	}{
		{probe.ClientConfig{Ports: 3000}, "want 1 to 2048"},
		{probe.ClientConfig{Ports: -1}, "want 1 to 2048"},
		{probe.ClientConfig{Interface: "nosuchif0"}, "interface nosuchif0"},
		{probe.ClientConfig{Conn: c}, "without SourcePorts"},
		{probe.ClientConfig{SourcePorts: []uint16{1}}, "without Conn"},
		{probe.ClientConfig{Ports: 4, MinPorts: 5}, "MinPorts 5"},
		{probe.ClientConfig{MinPorts: -1}, "MinPorts -1"},
		{probe.ClientConfig{SourcePort: 40000, Ports: 2}, "holds that one alone"},
		{probe.ClientConfig{NoGuard: true, Guard: true}, "NoGuard with Guard"},
		{probe.ClientConfig{NoGuard: true, CountRSTs: true}, "NoGuard with Guard or CountRSTs"},
		{probe.ClientConfig{Conn: c, SourcePorts: []uint16{1}, SourcePort: 1}, "with Conn"},
		{probe.ClientConfig{Conn: c, SourcePorts: []uint16{1}, CountRSTs: true}, "with Conn"},
		{probe.ClientConfig{Network: "tcp"}, `Network "tcp"`},
		{probe.ClientConfig{Conn: c, SourcePorts: []uint16{1}, SendOnly: true}, "with Conn"},
		{probe.ClientConfig{Conn: c, SourcePorts: []uint16{1}, NoTxStamps: true}, "with Conn"},
		{probe.ClientConfig{Conn: c, SourcePorts: []uint16{1}, RecvBuffer: 1 << 20}, "with Conn"},
		{probe.ClientConfig{RecvBuffer: -1}, "RecvBuffer -1"},
		{probe.ClientConfig{SendOnly: true}, "SendOnly without NoGuard"},
	} {
		_, err := probe.NewClient(&tt.cfg)
		if err == nil || !contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want %q", tt.cfg, err, tt.want)
		}
	}
	cl := fakeClient(t, c, 1)
	if _, err := cl.Rounds(context.Background(), nil); err == nil {
		t.Error("Rounds(nil) accepted")
	}
}

// TestClientRotatePorts: a client that rotates its ports has more probes
// in flight than ports, each told apart by its ISN, and refuses the modes
// whose connections are found by port; one without a guard refuses the
// modes that need it. Without rotation, the probes on one port go one
// at a time (the control).
func TestClientRotatePorts(t *testing.T) {
	for _, rotate := range []bool{true, false} {
		c := probetest.NewConn(byPort) // port 400: silence
		cl, err := probe.NewClient(&probe.ClientConfig{
			Conn: c, SourcePorts: []uint16{61000}, RotatePorts: rotate, NoGuard: true,
			Source: func(netip.Addr) (netip.Addr, error) { return src4, nil },
		})
		if err != nil {
			t.Fatal(err)
		}
		const n = 8
		var ended sync.WaitGroup
		ended.Add(n)
		for range n {
			if _, err := cl.Start(netip.AddrPortFrom(dst4, 400), &probe.ProbeOptions{Timeout: time.Hour}, func(*probe.Result, error) { ended.Done() }); err != nil {
				t.Fatal(err)
			}
		}
		want := 1
		if rotate {
			want = n
		}
		// Every SYN that may leave does at once; a ninth would be a
		// probe that waited for nothing.
		deadline := time.Now().Add(10 * time.Second)
		for len(c.Sent()) < want && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(20 * time.Millisecond)
		isns := map[uint32]bool{}
		for _, b := range c.Sent() {
			var p wire.Packet
			if err := wire.Parse(b, &p); err != nil || p.SrcPort != 61000 || isns[p.Seq] {
				t.Errorf("rotate %v: SYN %v %+v: want port 61000 and an ISN of its own", rotate, err, p)
			}
			isns[p.Seq] = true
		}
		if len(isns) != want {
			t.Errorf("rotate %v: %d SYNs in flight on one port, want %d", rotate, len(isns), want)
		}
		for _, m := range []probe.Mode{probe.ModeFIN, probe.ModeWithhold, probe.ModeACK} {
			_, err := cl.Probe(context.Background(), netip.AddrPortFrom(dst4, 100), &probe.ProbeOptions{Mode: m})
			why := "NoGuard"
			if rotate && m != probe.ModeACK {
				why = "RotatePorts"
			}
			if err == nil || !contains(err.Error(), why) {
				t.Errorf("rotate %v: %v: %v, want refused for %s", rotate, m, err, why)
			}
		}
		cl.Close()
		ended.Wait()
		c.Close()
	}
}

// TestClientSourcePortAndPackets: ProbeOptions.SourcePort keeps a probe
// on one of the client's ports, calls on one port wait for each other,
// and ProbeOptions.Packets returns the SYN as sent and the ICMP error's
// quote as received.
func TestClientSourcePortAndPackets(t *testing.T) {
	c := probetest.NewConn(byPort)
	cl := fakeClient(t, c, 4)
	ctx := context.Background()
	for _, dst := range []netip.Addr{dst4, dst6} {
		first, err := cl.Probe(ctx, netip.AddrPortFrom(dst, 300), &probe.ProbeOptions{Packets: true, TTL: 3})
		if err != nil {
			t.Fatal(err)
		}
		var syn wire.Packet
		if err := wire.Parse(first.SYN, &syn); err != nil || syn.SrcPort != first.SrcPort || syn.Seq != first.ISN || syn.TTL != 3 || syn.Flags != wire.FlagSyn {
			t.Fatalf("%v: Result.SYN %v %+v, result %+v", dst, err, syn, first)
		}
		want := first.SYN
		if dst.Is4() {
			want = want[:28] // what probetest's router quotes
		}
		if string(first.Quote) != string(want) {
			t.Errorf("%v: Quote % x, want % x", dst, first.Quote, want)
		}
		var wg sync.WaitGroup
		res := make([]*probe.Result, 8)
		for i := range res {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := cl.Probe(ctx, netip.AddrPortFrom(dst, 300), &probe.ProbeOptions{SourcePort: first.SrcPort})
				if err != nil {
					t.Error(err)
					return
				}
				res[i] = r
			}()
		}
		wg.Wait()
		isns := map[uint32]bool{first.ISN: true}
		for _, r := range res {
			if r == nil {
				continue
			}
			if r.SrcPort != first.SrcPort || r.State != probe.StateFiltered || isns[r.ISN] || r.SYN != nil || r.Quote != nil {
				t.Errorf("%v: port %d (want %d), %v, ISN %#x (seen: %v), SYN %d bytes, quote %d", dst, r.SrcPort, first.SrcPort, r.State, r.ISN, isns[r.ISN], len(r.SYN), len(r.Quote))
			}
			isns[r.ISN] = true
		}
	}
	if _, err := cl.Probe(ctx, netip.AddrPortFrom(dst4, 300), &probe.ProbeOptions{SourcePort: 60999}); err == nil {
		t.Error("a port that is not the client's was taken")
	}
	if _, err := cl.Rounds(ctx, &probe.Rounds{Targets: []probe.Target{{Addr: dst4, Port: 300}}, Count: 1, Options: &probe.ProbeOptions{SourcePort: 61000}}); err == nil {
		t.Error("Rounds took ProbeOptions.SourcePort")
	}
}

// TestClientQuoteSeqRewritten: an ICMP error whose quote has another
// sequence number than the probe's ISN (a middlebox rewrote it) answers
// a probe kept with ProbeOptions.Packets, matched by its 4-tuple and IPv4
// ID; not a probe without Packets, and not over IPv6, which has no ID.
func TestClientQuoteSeqRewritten(t *testing.T) {
	rewrite := func(p *wire.Packet, b []byte, _ uint32) []probetest.Reply {
		q := append([]byte(nil), b...)
		hl := 20
		if p.Dst.Is6() {
			hl = 40
		}
		wire.TCP(q[hl:]).SetSeq(p.Seq + 12345)
		rtr := rtr4
		typ := uint8(wire.ICMPv4TimeExceeded)
		if p.Dst.Is6() {
			rtr, typ = rtr6, wire.ICMPv6TimeExceeded
		}
		return []probetest.Reply{{Packet: probetest.ICMPError(q, rtr, typ, 0), After: rtt}}
	}
	c := probetest.NewConn(rewrite)
	cl := fakeClient(t, c, 2)
	ctx := context.Background()
	r, err := cl.Probe(ctx, netip.AddrPortFrom(dst4, 80), &probe.ProbeOptions{Packets: true, Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if r.State != probe.StateFiltered || r.Reason != "icmp-ttl-exceeded" || r.From != rtr4 || len(r.Quote) != 28 {
		t.Fatalf("%v %s from %v, quote %d bytes", r.State, r.Reason, r.From, len(r.Quote))
	}
	if wire.TCP(r.Quote[20:]).Seq() != r.ISN+12345 {
		t.Errorf("quote seq %#x, ISN %#x", wire.TCP(r.Quote[20:]).Seq(), r.ISN)
	}
	for _, tc := range []struct {
		dst  netip.Addr
		opts *probe.ProbeOptions
	}{
		{dst4, &probe.ProbeOptions{Timeout: 50 * time.Millisecond}},
		{dst6, &probe.ProbeOptions{Packets: true, Timeout: 50 * time.Millisecond}},
	} {
		r, err := cl.Probe(ctx, netip.AddrPortFrom(tc.dst, 80), tc.opts)
		if err != nil {
			t.Fatal(err)
		}
		if r.State != probe.StateFiltered || r.Reason != probe.ReasonTimeout {
			t.Errorf("%v packets=%v: %v %s, want a timeout", tc.dst, tc.opts.Packets, r.State, r.Reason)
		}
	}
}

// pollCounter counts the Recv calls that only poll: a deadline already
// passed when called.
type pollCounter struct {
	*probetest.Conn
	polls atomic.Int64
}

func (c *pollCounter) Recv(b []byte, deadline time.Time) (int, time.Time, error) {
	if !deadline.IsZero() && !deadline.After(time.Now()) {
		c.polls.Add(1)
	}
	return c.Conn.Recv(b, deadline)
}

// TestClientSpin: after a send the engine polls for Spin (here longer
// than the probe's wait, so that polls are certain however the test's
// thread is scheduled), and with Spin negative it only sleeps: a silent
// port's 20 ms wait is then a handful of calls, not thousands.
func TestClientSpin(t *testing.T) {
	for _, spin := range []time.Duration{50 * time.Millisecond, -1} {
		c := &pollCounter{Conn: probetest.NewConn(byPort)}
		cl, err := probe.NewClient(&probe.ClientConfig{
			Conn:        c,
			SourcePorts: []uint16{61000, 61001},
			Source:      func(netip.Addr) (netip.Addr, error) { return src4, nil },
			Spin:        spin,
		})
		if err != nil {
			t.Fatal(err)
		}
		r, err := cl.Probe(context.Background(), netip.AddrPortFrom(dst4, 450), &probe.ProbeOptions{Timeout: 20 * time.Millisecond})
		cl.Close()
		if err != nil || r.State != probe.StateFiltered {
			t.Fatalf("spin %v: %v, %v; want filtered", spin, r, err)
		}
		polls := c.polls.Load()
		switch {
		case spin > 0 && polls < 10:
			t.Errorf("spin %v: %d polls, want many", spin, polls)
		case spin < 0 && polls > 8:
			t.Errorf("spin %v: %d polls, want a few (news from a caller, a deadline met)", spin, polls)
		}
		t.Logf("spin %v: %d polls", spin, polls)
	}
}

// TestClientRoundsKeepGoing: with KeepGoing, a target that cannot be
// probed (no route; the broadcast of a subnet) fails its probe of each
// round with StateError while the others are probed; without it, Rounds
// refuses the targets. A target whose source is the routes' takes the
// source the routes give before each probe: after a change of routes,
// the next round's SYN leaves from the new source and its answer is
// matched.
func TestClientRoundsKeepGoing(t *testing.T) {
	var mu sync.Mutex
	noRoute := netip.MustParseAddr("198.18.9.9")
	bcast := netip.MustParseAddr("198.18.0.255")
	moved := netip.MustParseAddr("198.18.0.7") // the source after the change
	src := src4
	c := probetest.NewConn(byPort)
	cl, err := probe.NewClient(&probe.ClientConfig{
		Conn:        c,
		SourcePorts: []uint16{61000, 61001, 61002, 61003},
		Source: func(dst netip.Addr) (netip.Addr, error) {
			mu.Lock()
			defer mu.Unlock()
			if dst == noRoute {
				return netip.Addr{}, &net.OpError{Op: "connect", Err: os.NewSyscallError("connect", syscall.ENETUNREACH)}
			}
			return src, nil
		},
		Broadcasts: func() (map[netip.Addr]string, error) { return map[netip.Addr]string{bcast: "lab0"}, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	defer cl.Close()
	targets := []probe.Target{{Addr: dst4, Port: 101}, {Addr: noRoute, Port: 101}, {Addr: bcast, Port: 101}}
	if _, err := cl.Rounds(context.Background(), &probe.Rounds{Targets: targets, Count: 1}); err == nil {
		t.Fatal("Rounds without KeepGoing took a target with no route")
	}
	type res struct {
		state probe.State
		err   error
		src   netip.Addr
	}
	got := map[[2]int]res{}
	_, err = cl.Rounds(context.Background(), &probe.Rounds{
		Targets: targets, Count: 2, Interval: 20 * time.Millisecond, KeepGoing: true, NoStats: true,
		OnResult: func(r *probe.Result) {
			got[[2]int{r.Seq, r.Index}] = res{r.State, r.Err, r.Target.Src}
			if r.Seq == 0 && r.Index == 0 {
				mu.Lock()
				src = moved // the routes change after the first answer
				mu.Unlock()
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		if r := got[[2]int{round, 0}]; r.state != probe.StateOpen || r.src != []netip.Addr{src4, moved}[round] {
			t.Errorf("round %d, the reachable target: %v from %v", round, r.state, r.src)
		}
		if r := got[[2]int{round, 1}]; r.state != probe.StateError || !errors.Is(r.err, syscall.ENETUNREACH) {
			t.Errorf("round %d, no route: %v, %v", round, r.state, r.err)
		}
		if r := got[[2]int{round, 2}]; r.state != probe.StateError || !errors.Is(r.err, probe.ErrNotUnicast) {
			t.Errorf("round %d, a broadcast: %v, %v", round, r.state, r.err)
		}
	}
	var froms []netip.Addr
	for _, b := range c.Sent() {
		var p wire.Packet
		if wire.Parse(b, &p) == nil && p.Flags == wire.FlagSyn {
			froms = append(froms, p.Src)
		}
	}
	if len(froms) != 2 || froms[0] != src4 || froms[1] != moved {
		t.Errorf("SYNs from %v, want %v then %v (and none to the others)", froms, src4, moved)
	}
	// A source asked for, which one target's family cannot take: that
	// target fails, the other is probed.
	states := map[int][]probe.State{}
	_, err = cl.Rounds(context.Background(), &probe.Rounds{
		Targets: []probe.Target{{Addr: dst4, Port: 101}, {Addr: dst6, Port: 101}}, Count: 2, Interval: time.Millisecond,
		Options:   &probe.ProbeOptions{Source: moved},
		KeepGoing: true,
		OnResult:  func(r *probe.Result) { states[r.Index] = append(states[r.Index], r.State) },
	})
	if err != nil || fmt.Sprint(states) != fmt.Sprint(map[int][]probe.State{0: {probe.StateOpen, probe.StateOpen}, 1: {probe.StateError, probe.StateError}}) {
		t.Errorf("with a source of one family: %v, %v", states, err)
	}
}

// TestClientSpreadRoundsShareRoom: a spread round that waits for a free
// port (more targets due than ports) takes its turn behind the calls that
// came after it: it never leaves the queue, and once stood before every
// later Probe for good.
func TestClientSpreadRoundsShareRoom(t *testing.T) {
	c := probetest.NewConn(byPort)
	cl := fakeClient(t, c, 2)
	ts := make([]probe.Target, 20)
	for i := range ts {
		ts[i] = probe.Target{Addr: dst4, Port: 400 + uint16(i)} // silent
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		cl.Rounds(ctx, &probe.Rounds{
			Targets: ts, Interval: 20 * time.Millisecond, Spread: true, NoStats: true,
			Options: &probe.ProbeOptions{Timeout: 30 * time.Millisecond},
		})
	}()
	defer func() { cancel(); <-done }()
	for len(c.Sent()) < 4 { // the rounds hold both ports, and wait
		time.Sleep(time.Millisecond)
	}
	before := len(c.Sent())
	pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer pcancel()
	r, err := cl.Probe(pctx, netip.AddrPortFrom(dst4, 101), nil)
	if err != nil || r.State != probe.StateOpen {
		t.Fatalf("a probe beside spread rounds that wait for ports: %v, %v", r, err)
	}
	// It takes one of the next ports freed: the rounds' SYNs sent before
	// it are those already on their way when it came, at most.
	for i, b := range c.Sent()[before:] {
		var p wire.Packet
		if wire.Parse(b, &p) == nil && p.DstPort == 101 {
			if i > 2 {
				t.Errorf("the probe's SYN came after %d of the rounds'", i)
			}
			return
		}
	}
	t.Error("the probe's SYN is not among those sent")
}

// batchingConn is a fake Conn that takes spread rounds' batches, as a
// rawsock.Conn does whose kernel stamps each packet of a batch.
type batchingConn struct {
	*probetest.Conn
	batches atomic.Int64
}

func (c *batchingConn) BatchStamps() bool { return true }

func (c *batchingConn) SendBatch(b *rawsock.Batch) (int, error) {
	c.batches.Add(1)
	return c.Conn.SendBatch(b)
}

// TestClientSpreadRoundsBatched: a spread round's SYNs go out in batches
// of both families, and when this host refuses one of them (every third
// target), that probe alone is an error: each of the others is open, every
// target has one result, and the refusals are the client's send errors.
// (The batches once kept table indexes, which moved as refused probes
// left the table: results went to the wrong probes, then a panic.)
func TestClientSpreadRoundsBatched(t *testing.T) {
	const n = 1900
	c := &batchingConn{Conn: probetest.NewConn(byPort)}
	targets := make([]probe.Target, n)
	refused := map[netip.Addr]bool{}
	a4, a6 := netip.MustParseAddr("198.18.16.0"), netip.MustParseAddr("2001:db8:16::")
	for i := range targets {
		a := &a4
		if i%2 == 1 {
			a = &a6
		}
		targets[i] = probe.Target{Addr: *a, Port: 101} // open
		if i%3 == 0 {
			refused[*a] = true
		}
		*a = a.Next()
	}
	c.SendError = func(p *wire.Packet) error {
		if p.Flags == wire.FlagSyn && refused[p.Dst] {
			return syscall.EPERM
		}
		return nil
	}
	cl := fakeClient(t, c, 2048)
	got := map[netip.Addr][]string{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cl.Rounds(ctx, &probe.Rounds{
		Targets: targets, Count: 1, Interval: 100 * time.Millisecond, Spread: true,
		Options:  &probe.ProbeOptions{Timeout: 50 * time.Millisecond},
		OnResult: func(r *probe.Result) { got[r.Target.Addr] = append(got[r.Target.Addr], r.State.String()+"/"+r.Reason) },
	}); err != nil {
		t.Fatal(err)
	}
	bad := 0
	for _, tg := range targets {
		want := "open/syn-ack"
		if refused[tg.Addr] {
			want = "error/" + probe.ReasonLocalFirewall
		}
		if r := got[tg.Addr]; len(r) != 1 || r[0] != want {
			if bad++; bad <= 5 {
				t.Errorf("%v: %v, want [%s]", tg.Addr, r, want)
			}
		}
	}
	if cnt := cl.Counters(); c.batches.Load() == 0 || cnt.SendErrors != uint64(len(refused)) {
		t.Errorf("%d batches, %d send errors: want batches, and %d send errors", c.batches.Load(), cnt.SendErrors, len(refused))
	}
}

// TestCheckInterface: bound to the loopback interface a probe reaches
// loopback addresses only, and bound to any other none of them; the
// client refuses the rest before sending (a socket bound to an
// interface sends through it whatever the routes say, and the probe's
// silence would read as a filtered port).
func TestCheckInterface(t *testing.T) {
	for _, tt := range []struct {
		loopback bool
		p        string
		ok       bool
	}{
		{true, "127.0.0.1/32", true},
		{true, "127.0.0.0/8", true},
		{true, "::1/128", true},
		{true, "198.18.0.2/32", false},
		{true, "126.0.0.0/7", false},
		{true, "2001:db8::2/128", false},
		{false, "198.18.0.0/15", true},
		{false, "2001:db8::/32", true},
		{false, "127.0.0.1/32", false},
		{false, "::1/128", false},
		{false, "96.0.0.0/3", false}, // holds 127.0.0.0/8
	} {
		err := probe.CheckInterface("if0", tt.loopback, netip.MustParsePrefix(tt.p))
		if (err == nil) != tt.ok {
			t.Errorf("loopback %v, %s: %v; want ok %v", tt.loopback, tt.p, err, tt.ok)
		}
	}
	lo := ""
	ifs, _ := net.Interfaces()
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagLoopback != 0 {
			lo = ifi.Name
		}
	}
	if lo == "" {
		t.Skip("no loopback interface")
	}
	c := probetest.NewConn(byPort)
	cl, err := probe.NewClient(&probe.ClientConfig{Conn: c, SourcePorts: []uint16{61000}, Interface: lo,
		Source: func(dst netip.Addr) (netip.Addr, error) { return netip.MustParseAddr("127.0.0.1"), nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	r, err := cl.Probe(context.Background(), netip.MustParseAddrPort("198.18.0.2:80"), nil)
	if err == nil || !contains(err.Error(), "loopback interface") {
		t.Errorf("a probe of 198.18.0.2 through %s: %v, %v; want refused", lo, r, err)
	}
	if n := len(c.Sent()); n != 0 {
		t.Errorf("%d packets sent", n)
	}
}

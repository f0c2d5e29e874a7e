package probe_test

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/probe/probetest"
)

// TestClientStart: 1,000 probes begun with Start at once, IPv4 and IPv6,
// open, closed, ICMP-filtered: done is called once for each, with its own
// verdict and target, from the engine; a silent one cancelled ends with
// context.Canceled, and one in flight at Close with ErrClosed.
func TestClientStart(t *testing.T) {
	c := probetest.NewConn(byPort)
	cl := fakeClient(t, c, 64)
	type got struct {
		state probe.State
		dst   netip.AddrPort
		err   error
	}
	var mu sync.Mutex
	results := map[int][]got{}
	var wg sync.WaitGroup
	want := map[int]probe.State{}
	for i := range 1000 {
		dst := netip.AddrPortFrom(dst4, uint16(100+i%3*100+i%10))
		if i%2 == 1 {
			dst = netip.AddrPortFrom(dst6, dst.Port())
		}
		want[i] = []probe.State{probe.StateOpen, probe.StateClosed, probe.StateFiltered}[i%3]
		wg.Add(1)
		_, err := cl.Start(dst, nil, func(r *probe.Result, err error) {
			g := got{err: err}
			if r != nil {
				g.state, g.dst = r.State, netip.AddrPortFrom(r.Target.Addr, r.Target.Port)
			}
			mu.Lock()
			results[i] = append(results[i], g)
			mu.Unlock()
			if _, err := cl.Probe(context.Background(), dst, nil); err == nil {
				t.Error("a Probe from done was made")
			}
			wg.Done()
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	for i := range 1000 {
		rs := results[i]
		dst := netip.AddrPortFrom(dst4, uint16(100+i%3*100+i%10))
		if i%2 == 1 {
			dst = netip.AddrPortFrom(dst6, dst.Port())
		}
		if len(rs) != 1 || rs[0].err != nil || rs[0].state != want[i] || rs[0].dst != dst {
			t.Fatalf("probe %d to %v: %+v, want one %v", i, dst, rs, want[i])
		}
	}

	// Silent (port 50): cancelled.
	ended := make(chan error, 2)
	cancel, err := cl.Start(netip.AddrPortFrom(dst4, 50), &probe.ProbeOptions{Timeout: time.Hour}, func(r *probe.Result, err error) {
		if r != nil {
			err = errors.New("a result")
		}
		ended <- err
	})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	cancel()
	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	// Silent, in flight at Close.
	sent := len(c.Sent())
	if _, err := cl.Start(netip.AddrPortFrom(dst4, 51), &probe.ProbeOptions{Timeout: time.Hour}, func(r *probe.Result, err error) { ended <- err }); err != nil {
		t.Fatal(err)
	}
	for len(c.Sent()) == sent { // its SYN
		time.Sleep(time.Millisecond)
	}
	cl.Close()
	if err := <-ended; !errors.Is(err, probe.ErrClosed) {
		t.Errorf("at Close: %v", err)
	}
	select {
	case err := <-ended:
		t.Errorf("done called again: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := cl.Start(netip.AddrPortFrom(dst4, 100), nil, func(*probe.Result, error) { t.Error("done after Close") }); !errors.Is(err, probe.ErrClosed) {
		t.Errorf("Start after Close: %v", err)
	}
}

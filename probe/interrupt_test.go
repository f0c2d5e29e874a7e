package probe_test

import (
	"context"
	"testing"
	"time"

	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/probe/probetest"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// runUntil runs an endless prober over c and cancels it once stop says
// so (checked every millisecond), then returns the results and stats.
func runUntil(t *testing.T, c *probetest.Conn, cfg probe.Config, stop func() bool) ([]probe.Result, probe.Stats) {
	t.Helper()
	cookie, err := wire.NewRandomCookie()
	if err != nil {
		t.Fatal(err)
	}
	var results []probe.Result
	cfg.Targets = []probe.Target{target(dst4, 443)}
	cfg.PortLo, cfg.PortHi = 61000, 61511
	cfg.Options = &linuxO
	cfg.Cookie = cookie
	cfg.OnResult = func(r *probe.Result) { results = append(results, *r) }
	p, err := probe.New(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for !stop() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	c.Close()
	return results, p.Stats(0)
}

// sentFlags counts the segments sent with exactly these flags.
func sentFlags(c *probetest.Conn, flags wire.TCPFlags) int {
	n := 0
	for _, b := range c.Sent() {
		var p wire.Packet
		if wire.Parse(b, &p) == nil && p.Flags&^wire.FlagEce&^wire.FlagCwr == flags {
			n++
		}
	}
	return n
}

// TestInterruptCounts: the summary counts the SYNs on the wire. Probes
// still awaiting their answer at an interrupt are counted as interrupted,
// not lost and not dropped.
func TestInterruptCounts(t *testing.T) {
	// The first probe is answered, the others are not (yet).
	answered := 0
	c := probetest.NewConn(func(p *wire.Packet, b []byte, id uint32) []probetest.Reply {
		if p.Flags != wire.FlagSyn || answered > 0 {
			return nil
		}
		answered++
		return []probetest.Reply{{Packet: probetest.SYNACK(p, linuxO), After: rtt}}
	})
	res, s := runUntil(t, c, probe.Config{Interval: 5 * time.Millisecond, Timeout: time.Hour},
		func() bool { return sentFlags(c, wire.FlagSyn) >= 3 })
	syns := sentFlags(c, wire.FlagSyn)
	if len(res) != 1 || res[0].State != probe.StateOpen {
		t.Fatalf("results %+v, want the one open", res)
	}
	if s.Sent != syns || s.Open != 1 || s.Interrupted != syns-1 || s.Timeouts != 0 || s.LossPercent() != 0 {
		t.Errorf("%d SYNs sent; stats sent %d, open %d, interrupted %d, timeouts %d, loss %v%%",
			syns, s.Sent, s.Open, s.Interrupted, s.Timeouts, s.LossPercent())
	}
}

// TestInterruptFIN: fin-mode connections held at an interrupt are reset,
// one RST each, and reported: open, interrupted, with their SYN-ACK.
func TestInterruptFIN(t *testing.T) {
	c := probetest.NewConn(func(p *wire.Packet, b []byte, id uint32) []probetest.Reply {
		if p.Flags != wire.FlagSyn || id%5 == 4 {
			return nil // the peer keeps the connection open, silent; some SYNs (id 4 mod 5) go unanswered
		}
		return []probetest.Reply{{Packet: probetest.SYNACK(p, linuxO), After: rtt}}
	})
	res, s := runUntil(t, c, probe.Config{Mode: probe.ModeFIN, Hold: time.Hour, Interval: 5 * time.Millisecond, Timeout: time.Second},
		func() bool { return sentFlags(c, wire.FlagAck) >= 4 })
	syns, acks, rsts := sentFlags(c, wire.FlagSyn), sentFlags(c, wire.FlagAck), sentFlags(c, wire.FlagRst|wire.FlagAck)+sentFlags(c, wire.FlagRst)
	if syns < 4 || acks >= syns {
		t.Fatalf("%d SYNs, %d ACKs", syns, acks)
	}
	// Each connection that got its ACK is reset and reported; a SYN
	// whose SYN-ACK was not handled yet is interrupted, and reset too.
	if rsts != syns || len(res) != acks {
		t.Errorf("%d connections, %d RSTs, %d results", acks, rsts, len(res))
	}
	for _, r := range res {
		if r.State != probe.StateOpen || r.Reason != probe.ReasonSYNACK || !r.Interrupted || r.Close != nil || r.RTT != rtt || r.Flags != wire.FlagSyn|wire.FlagAck {
			t.Errorf("result %+v", r)
		}
	}
	if s.Sent != syns || s.Open != acks || s.CloseInterrupted != acks || s.Interrupted != syns-acks || s.LossPercent() != 0 {
		t.Errorf("%d SYNs, %d connections; stats %+v", syns, acks, s)
	}
}

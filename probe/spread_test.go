package probe

import (
	"net/netip"
	"testing"
	"time"

	"github.com/synprobe/synprobe/rawsock/wire"
)

// sendLog records which target each SYN went to (by destination port),
// and when by the test's clock.
type sendLog struct {
	now   *time.Time
	sends []sent
}

type sent struct {
	port uint16
	at   time.Time
}

func (c *sendLog) Send(pkt []byte, id uint32) error {
	var p wire.Packet
	if err := wire.Parse(pkt, &p); err == nil && p.Flags == wire.FlagSyn {
		c.sends = append(c.sends, sent{p.DstPort, *c.now})
	}
	return nil
}
func (c *sendLog) Recv([]byte, time.Time) (int, time.Time, error) { select {} }
func (c *sendLog) Wake()                                          {}
func (c *sendLog) TxTime(uint32, bool) (time.Time, bool)          { return time.Time{}, false }

// spreadProber returns a prober whose main job is n targets (ports 1 to
// n) in spread rounds of interval, with onSkip and the in-flight counts
// of Rounds.OnSkip, on the clock *now; its probes never time out.
func spreadProber(t *testing.T, n int, interval time.Duration, now *time.Time) (*Prober, *sendLog) {
	t.Helper()
	c := &sendLog{now: now}
	ts := make([]Target, n)
	for i := range ts {
		ts[i] = Target{Addr: netip.MustParseAddr("198.18.0.2"), Src: netip.MustParseAddr("198.18.0.1"), Port: uint16(i + 1)}
	}
	cookie, _ := wire.NewRandomCookie()
	p, err := New(c, Config{
		Targets: ts, PortLo: 61000, PortHi: 61000 + 2*uint16(n),
		Interval: interval, Timeout: time.Hour, Cookie: cookie,
		Now: func() time.Time { return *now },
	})
	if err != nil {
		t.Fatal(err)
	}
	p.main.spread = true
	p.main.inflight = make([]int32, n)
	return p, c
}

// TestSpreadRounds: in spread rounds, target i of n leaves i/n of the
// interval after its round begins, never more than spreadQuantum early
// and never later than the engine's wake-up when that is within the
// quantum; the engine asks to wake when the next one is due, at most once
// a quantum. A round whose last probe goes after the next round was due
// keeps the schedule: it once started the next round a whole interval
// late.
func TestSpreadRounds(t *testing.T) {
	// 1 ms apart: two a quantum (four a wake-up 1.9 ms late, the last
	// round's probe alone, after the next round was due); 1,503 probes in
	// flight, within the table.
	const n = 501
	interval := 501 * time.Millisecond
	for _, late := range []time.Duration{0, 300 * time.Microsecond, 1900 * time.Microsecond} {
		t.Run(late.String(), func(t *testing.T) {
			t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			now := t0
			p, c := spreadProber(t, n, interval, &now)
			p.main.inflight = nil // probes overlap: nothing skipped
			wakes := 0
			for len(c.sends) < 3*n {
				next, _ := p.rounds(now)
				if next.IsZero() {
					t.Fatal("no next wake-up")
				}
				now = next.Add(late)
				wakes++
			}
			bad := 0
			for k, s := range c.sends[:3*n] {
				round, i := k/n, int(s.port)-1
				if i != k%n {
					t.Fatalf("send %d went to target %d, want %d", k, i, k%n)
				}
				due := t0.Add(time.Duration(round)*interval + interval*time.Duration(i)/n)
				if s.at.Before(due.Add(-spreadQuantum)) || s.at.After(due.Add(late)) {
					if bad++; bad < 5 {
						t.Errorf("round %d target %d sent at %v, due at %v (wake-ups late by %v)",
							round, i, s.at.Sub(t0), due.Sub(t0), late)
					}
				}
			}
			if max := 3*n*int(interval/n)/int(spreadQuantum) + 3; wakes > max {
				t.Errorf("%d wake-ups for %d probes 1 ms apart, want at most one a quantum (%d)", wakes, 3*n, max)
			}
		})
	}
}

// TestSpreadRoundsLate: wake-ups later than spreadCatchUp move the rest
// of the round by as much: never a burst of what the delay held back,
// never a target probed again sooner than the interval.
func TestSpreadRoundsLate(t *testing.T) {
	const n = 100
	interval := time.Second
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	p, c := spreadProber(t, n, interval, &now)
	p.main.inflight = nil
	for len(c.sends) < 3*n {
		next, _ := p.rounds(now)
		now = next.Add(spreadCatchUp + time.Millisecond)
	}
	last := map[uint16]time.Time{}
	at := map[time.Time]int{}
	for k, s := range c.sends {
		if prev, ok := last[s.port]; ok && s.at.Sub(prev) < interval {
			t.Errorf("send %d: target %d probed again after %v", k, s.port-1, s.at.Sub(prev))
		}
		last[s.port] = s.at
		if at[s.at]++; at[s.at] > 1 {
			t.Errorf("send %d: %d probes at once at %v (10 ms apart by the schedule)", k, at[s.at], s.at.Sub(t0))
		}
	}
	// Late by less, it catches up: the probes owed go at once, and the
	// schedule stands.
	now = t0
	p, c = spreadProber(t, n, interval, &now)
	p.main.inflight = nil
	for len(c.sends) < 3*n {
		next, _ := p.rounds(now)
		now = next.Add(15 * time.Millisecond)
	}
	for k, s := range c.sends[:3*n] {
		due := t0.Add(time.Duration(k/n)*interval + interval*time.Duration(k%n)/n)
		if s.at.Before(due.Add(-spreadQuantum)) || s.at.After(due.Add(15*time.Millisecond)) {
			t.Fatalf("send %d (target %d) at %v, due at %v", k, s.port-1, s.at.Sub(t0), due.Sub(t0))
		}
	}
}

// TestSpreadRoundsAfterStall: a wake-up held up by a third of a round
// sends the probe it owes and moves the rest of the round by as much,
// spread as before.
func TestSpreadRoundsAfterStall(t *testing.T) {
	const n = 10
	interval := 100 * time.Millisecond
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	p, c := spreadProber(t, n, interval, &now)
	p.main.inflight = nil
	next, _ := p.rounds(now) // target 0
	now = next
	p.rounds(now) // target 1, at 10 ms
	stall := t0.Add(350 * time.Millisecond)
	now = stall
	next, _ = p.rounds(now)
	if len(c.sends) != 3 || c.sends[2].port != 3 || !next.Equal(stall.Add(interval/n)) {
		t.Fatalf("after the stall: %d sent, next at %v; want target 2 at once, target 3 at %v", len(c.sends), next.Sub(t0), (stall.Add(interval / n)).Sub(t0))
	}
	for len(c.sends) < 2*n {
		now = next
		next, _ = p.rounds(now)
	}
	// Target 1 of the next round: 10 ms into it, which begins 100 ms
	// after the moved one.
	if got, want := c.sends[n+1].at, stall.Add(-2*interval/n).Add(interval+interval/n); c.sends[n+1].port != 2 || !got.Equal(want) {
		t.Errorf("next round's target 1 (port %d) at %v, want %v", c.sends[n+1].port, got.Sub(t0), want.Sub(t0))
	}
}

// TestSpreadRoundsSkip: with OnSkip, a target whose probe is still in
// flight when its turn comes is skipped, and only it.
func TestSpreadRoundsSkip(t *testing.T) {
	const n = 4
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	p, c := spreadProber(t, n, 40*time.Millisecond, &now)
	var skipped, announced []int
	p.main.onSkip = func(i int) { skipped = append(skipped, i) }
	p.main.onSend = func(i int) { announced = append(announced, i) }
	for len(c.sends) < n {
		next, _ := p.rounds(now)
		now = next
	}
	// Targets 1 and 3 answer; 0 and 2 are still in flight.
	for i := range p.tab.e {
		if e := &p.tab.e[i]; e.state == stateSynSent && e.target%2 == 1 {
			p.drop(i)
		}
	}
	for p.main.round < 2 {
		next, _ := p.rounds(now)
		now = next
	}
	if len(c.sends) != n+2 || c.sends[n].port != 2 || c.sends[n+1].port != 4 {
		t.Errorf("second round sent %v, want ports 2 and 4", c.sends[n:])
	}
	if len(skipped) != 2 || skipped[0] != 0 || skipped[1] != 2 {
		t.Errorf("skipped %v, want [0 2]", skipped)
	}
	if len(announced) != n+2 {
		t.Errorf("OnSend for %v, want each probe sent once", announced)
	}
}

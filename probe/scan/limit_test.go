package scan

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// TestLimiterRate runs a sender against a fake clock for 10 s at 1000/s
// with burst 10: it asks for up to 64 tokens at a time and, when refused,
// advances the clock by the wait it was told (sometimes a little more).
// At no point may it have got more than rate*elapsed+burst tokens, and in
// all it gets 10000 +- burst.
func TestLimiterRate(t *testing.T) {
	const rate, burst = 1000.0, 10
	for _, jitter := range []bool{false, true} {
		r := rand.New(rand.NewPCG(3, 4))
		l := NewLimiter(rate, burst)
		now, total, calls := t0, 0, 0
		for now.Sub(t0) < 10*time.Second {
			calls++
			n := 64
			if jitter {
				n = 1 + r.IntN(20)
			}
			g, wait := l.Reserve(now, n)
			if g < 0 || g > n || (g > 0) != (wait == 0) {
				t.Fatalf("Reserve(%v, %d) = %d, %v", now.Sub(t0), n, g, wait)
			}
			total += g
			if limit := rate*now.Sub(t0).Seconds() + burst; float64(total) > limit+1e-9 {
				t.Fatalf("jitter=%v: %d tokens after %v, more than %.3f", jitter, total, now.Sub(t0), limit)
			}
			switch {
			case g == 0:
				now = now.Add(wait)
			case jitter:
				now = now.Add(time.Duration(r.IntN(3000)) * time.Microsecond)
			}
		}
		if total < 10000-burst || total > 10000+burst {
			t.Errorf("jitter=%v: %d tokens in 10 s, want 10000+-%d", jitter, total, burst)
		}
		t.Logf("jitter=%v: %d tokens, %d calls", jitter, total, calls)
	}
}

func TestLimiterWait(t *testing.T) {
	l := NewLimiter(1000, 10)
	if g, w := l.Reserve(t0, 100); g != 10 || w != 0 {
		t.Fatalf("full bucket: Reserve = %d, %v; want 10, 0", g, w)
	}
	g, w := l.Reserve(t0, 1)
	if g != 0 || w != time.Millisecond {
		t.Fatalf("empty bucket: Reserve = %d, %v; want 0, 1ms", g, w)
	}
	if g, w := l.Reserve(t0.Add(400*time.Microsecond), 1); g != 0 || w != 600*time.Microsecond {
		t.Errorf("0.4 tokens: Reserve = %d, %v; want 0, 600µs", g, w)
	}
	if g, _ := l.Reserve(t0.Add(time.Millisecond-1), 1); g != 0 {
		t.Errorf("1ns early: granted %d", g)
	}
	if g, _ := l.Reserve(t0.Add(time.Millisecond), 5); g != 1 {
		t.Errorf("on time: granted %d, want 1", g)
	}
	// The bucket holds at most burst tokens, however long the pause.
	if g, _ := l.Reserve(t0.Add(time.Hour), 1000); g != 10 {
		t.Errorf("after an hour: granted %d, want 10", g)
	}
	// A clock that goes back adds nothing.
	if g, _ := l.Reserve(t0, 1); g != 0 {
		t.Errorf("clock went back: granted %d", g)
	}
	if g, _ := l.Reserve(t0.Add(time.Hour+time.Millisecond), 5); g != 1 {
		t.Errorf("after going back: granted %d, want 1", g)
	}
	if g, w := l.Reserve(t0, 0); g != 0 || w != 0 {
		t.Errorf("Reserve(0) = %d, %v", g, w)
	}
}

func TestLimiterSetRate(t *testing.T) {
	l := NewLimiter(1000, 10)
	l.Reserve(t0, 10) // empty the bucket
	l.SetRate(100)
	if r := l.Rate(); r != 100 {
		t.Errorf("Rate = %v after SetRate(100)", r)
	}
	if _, w := l.Reserve(t0, 1); w != 10*time.Millisecond {
		t.Errorf("wait at 100/s = %v, want 10ms", w)
	}
	// One second at the new rate: 100 tokens, not 1000.
	total := 0
	for now := t0; now.Before(t0.Add(time.Second)); now = now.Add(time.Millisecond) {
		g, _ := l.Reserve(now, 10)
		total += g
	}
	if total != 99 && total != 100 {
		t.Errorf("%d tokens in 1 s at 100/s", total)
	}

	// No limit: everything is granted, at once.
	l.SetRate(math.Inf(1))
	if g, w := l.Reserve(t0.Add(2*time.Second), 1e6); g != 1e6 || w != 0 {
		t.Errorf("unlimited: Reserve = %d, %v", g, w)
	}
	// And back: a full bucket, then the rate.
	l.SetRate(1)
	if g, _ := l.Reserve(t0.Add(2*time.Second), 100); g != 10 {
		t.Errorf("back from unlimited: granted %d, want 10", g)
	}
	if _, w := l.Reserve(t0.Add(2*time.Second), 1); w != time.Second {
		t.Errorf("1/s: wait %v", w)
	}
	if l.Burst() != 10 {
		t.Errorf("Burst = %d", l.Burst())
	}

	for _, r := range []float64{0, -1, math.NaN(), math.Inf(-1)} {
		expectPanic(t, fmt.Sprintf("NewLimiter(%v)", r), func() { NewLimiter(r, 1) })
		expectPanic(t, fmt.Sprintf("SetRate(%v)", r), func() { l.SetRate(r) })
	}
}

func TestLimiterSlowRates(t *testing.T) {
	// Burst 0 means 1; a rate of one token a day waits a day.
	l := NewLimiter(1.0/86400, 0)
	if g, _ := l.Reserve(t0, 5); g != 1 {
		t.Errorf("granted %d, want 1", g)
	}
	if _, w := l.Reserve(t0, 1); w != 24*time.Hour {
		t.Errorf("wait %v, want 24h", w)
	}
	// Below one token in 292 years the wait saturates.
	l = NewLimiter(1e-12, 1)
	l.Reserve(t0, 1)
	if _, w := l.Reserve(t0, 1); w != math.MaxInt64 {
		t.Errorf("wait %v, want the longest Duration", w)
	}
	// Fractional rates accumulate across many small steps.
	l = NewLimiter(0.5, 1)
	l.Reserve(t0, 1)
	total := 0
	for now := t0; now.Before(t0.Add(10 * time.Second)); now = now.Add(10 * time.Microsecond) {
		g, _ := l.Reserve(now, 1)
		total += g
	}
	if total != 4 && total != 5 {
		t.Errorf("%d tokens in 10 s at 0.5/s", total)
	}
}

func ExampleLimiter() {
	l := NewLimiter(1000, 10) // 1000 probes a second, 10 at once
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for range 3 {
		n, wait := l.Reserve(now, 8)
		fmt.Println(n, wait)
		now = now.Add(wait) // a real sender sleeps here
	}
	// Output:
	// 8 0s
	// 2 0s
	// 0 1ms
}

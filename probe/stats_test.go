package probe

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestStats(t *testing.T) {
	var acc tally
	rtts := []time.Duration{11482 * time.Microsecond, 11390 * time.Microsecond, 12000 * time.Microsecond, 9000 * time.Microsecond}
	for _, d := range rtts {
		acc.add(&Result{State: StateOpen, Reason: ReasonSYNACK, RTT: d, KernelClock: true})
	}
	acc.add(&Result{State: StateFiltered, Reason: ReasonTimeout})
	acc.add(&Result{State: StateClosed, Reason: ReasonRST, RTT: 10 * time.Millisecond})
	acc.add(&Result{State: StateFiltered, Reason: "icmp-admin-prohibited", RTT: 8 * time.Millisecond})
	acc.add(&Result{State: StateError, Reason: ReasonSendError})
	acc.sent = 7 // the engine counts SYNs as it sends them; the error was not sent
	s := acc.snapshot()
	if s.Sent != 7 || s.Open != 4 || s.Closed != 1 || s.Filtered != 2 || s.Timeouts != 1 || s.Errors != 1 || s.Kernel != 4 {
		t.Fatalf("counts %+v", s)
	}
	if got := s.LossPercent(); got != 100.0/7 {
		t.Errorf("loss %v%%, want 1 of 7", got)
	}
	// Two more sent, still awaiting their answer at an interrupt: no
	// verdict, no loss.
	acc.sent += 2
	acc.interrupted = 2
	if got := acc.snapshot(); got.LossPercent() != 100.0/7 {
		t.Errorf("loss %v%% with two interrupted, want 1 of 7", got.LossPercent())
	}
	// The snapshot is a value: what the tally counts later leaves it be.
	if s.Sent != 7 || s.Interrupted != 0 {
		t.Errorf("the snapshot changed with the tally: %+v", s)
	}
	// Reference: the six answered RTTs, two-pass population statistics.
	all := append(append([]time.Duration{}, rtts...), 10*time.Millisecond, 8*time.Millisecond)
	var sum float64
	for _, d := range all {
		sum += float64(d)
	}
	mean := sum / float64(len(all))
	var sq float64
	for _, d := range all {
		sq += (float64(d) - mean) * (float64(d) - mean)
	}
	sd := math.Sqrt(sq / float64(len(all)))
	got := s.RTT
	if got.N != 6 || got.Min != 8*time.Millisecond || got.Max != 12*time.Millisecond ||
		got.Avg != time.Duration(math.Round(mean)) || got.Mdev != time.Duration(math.Round(sd)) {
		t.Errorf("summary %+v, want mean %v sd %v", got, mean, sd)
	}
	// Sorted: 8, 9, 10, 11.39, 11.482, 12 ms. Nearest rank: p50 = 3rd,
	// p90 = 6th; from the histogram, within 1/1024 above, and never
	// beyond the maximum.
	if !near(got.P50, 10*time.Millisecond) || got.P90 != 12*time.Millisecond || got.P99 != 12*time.Millisecond {
		t.Errorf("percentiles %v %v %v", got.P50, got.P90, got.P99)
	}
}

// near reports whether a histogram percentile is within its accuracy of
// the exact one: not below it, and at most 1/1024 above.
func near(got, exact time.Duration) bool {
	return got >= exact && float64(got-exact) <= float64(exact)/1024
}

// TestPercentileAccuracy checks the histogram's percentiles against the
// exact nearest-rank ones, over distributions of RTTs from microseconds
// to seconds: never below, at most 1/1024 (0.1%) above, within [min, max].
func TestPercentileAccuracy(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, dist := range []struct {
		name string
		n    int
		draw func() time.Duration
	}{
		{"constant 41.237 µs", 1000, func() time.Duration { return 41237 }},
		{"uniform 20-80 µs", 10000, func() time.Duration { return time.Duration(20000 + rng.IntN(60000)) }},
		{"log-uniform 1 µs - 10 s", 100000, func() time.Duration { return time.Duration(math.Exp(math.Log(1e3) + rng.Float64()*math.Log(1e7))) }},
		{"log-normal around 5 ms", 50000, func() time.Duration { return time.Duration(5e6 * math.Exp(rng.NormFloat64())) }},
		{"bimodal 50 µs / 200 ms", 20000, func() time.Duration {
			if rng.IntN(100) < 95 {
				return time.Duration(50000 + rng.IntN(5000))
			}
			return time.Duration(200e6 + rng.IntN(1e6))
		}},
		{"three values", 3, func() time.Duration { return time.Duration(1e6 + rng.IntN(1e6)) }},
		{"one value", 1, func() time.Duration { return 123456789 }},
	} {
		var s tally
		all := make([]time.Duration, 0, dist.n)
		for range dist.n {
			d := dist.draw()
			all = append(all, d)
			s.add(&Result{State: StateOpen, Reason: ReasonSYNACK, RTT: d})
		}
		slices.Sort(all)
		got := s.snapshot().RTT
		if got.Min != all[0] || got.Max != all[len(all)-1] {
			t.Errorf("%s: min/max %v/%v, want %v/%v", dist.name, got.Min, got.Max, all[0], all[len(all)-1])
		}
		var worst float64
		for _, c := range []struct {
			p   float64
			got time.Duration
		}{{50, got.P50}, {90, got.P90}, {99, got.P99}} {
			exact := Percentile(all, c.p)
			if !near(c.got, exact) || c.got < got.Min || c.got > got.Max {
				t.Errorf("%s: p%v = %v, exact %v", dist.name, c.p, c.got, exact)
			}
			worst = max(worst, float64(c.got-exact)/float64(exact))
		}
		t.Logf("%s: worst relative error %.5f%% over p50/p90/p99", dist.name, 100*worst)
	}
}

// TestStatsMemory: the RTTs of a long run take memory by the buckets in
// use, not by their number: a million RTTs spread from 1 µs to 10 s fill
// a few tens of kilobytes, and a million more add nothing.
func TestStatsMemory(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	var s tally
	add := func(n int) {
		for range n {
			d := time.Duration(math.Exp(math.Log(1e3) + rng.Float64()*math.Log(1e7)))
			s.add(&Result{State: StateOpen, Reason: ReasonSYNACK, RTT: d})
		}
	}
	add(1_000_000)
	first := s.hist.GetMemorySize()
	add(1_000_000)
	second := s.hist.GetMemorySize()
	t.Logf("histogram of 1e6 RTTs over 1 µs..10 s: %d bytes; of 2e6: %d bytes", first, second)
	if first > 512<<10 || second > first*11/10 {
		t.Errorf("histogram of 1e6 RTTs: %d bytes, of 2e6: %d", first, second)
	}
}

func TestPercentile(t *testing.T) {
	var v []time.Duration
	for i := 1; i <= 100; i++ {
		v = append(v, time.Duration(i))
	}
	for _, tt := range []struct {
		p    float64
		want time.Duration
	}{{0, 1}, {1, 1}, {50, 50}, {90, 90}, {99, 99}, {99.5, 100}, {100, 100}} {
		if got := Percentile(v, tt.p); got != tt.want {
			t.Errorf("p%v = %v, want %v", tt.p, got, tt.want)
		}
	}
	if Percentile(nil, 50) != 0 || Percentile(v[:1], 99) != 1 {
		t.Error("edge cases")
	}
}

func TestHops(t *testing.T) {
	for _, tt := range []struct {
		ttl        uint8
		hops, init int
	}{{64, 0, 64}, {57, 7, 64}, {128, 0, 128}, {113, 15, 128}, {255, 0, 255}, {250, 5, 255}, {30, 2, 32}, {1, 31, 32}, {65, 63, 128}} {
		if h, i := Hops(tt.ttl); h != tt.hops || i != tt.init {
			t.Errorf("Hops(%d) = %d, %d; want %d, %d", tt.ttl, h, i, tt.hops, tt.init)
		}
	}
}

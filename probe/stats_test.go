package probe

import (
	"math"
	"testing"
	"time"
)

func TestStats(t *testing.T) {
	var s Stats
	rtts := []time.Duration{11482 * time.Microsecond, 11390 * time.Microsecond, 12000 * time.Microsecond, 9000 * time.Microsecond}
	for _, d := range rtts {
		s.Add(&Result{State: StateOpen, Reason: ReasonSYNACK, RTT: d, KernelClock: true})
	}
	s.Add(&Result{State: StateFiltered, Reason: ReasonTimeout})
	s.Add(&Result{State: StateClosed, Reason: ReasonRST, RTT: 10 * time.Millisecond})
	s.Add(&Result{State: StateFiltered, Reason: "icmp-admin-prohibited", RTT: 8 * time.Millisecond})
	s.Add(&Result{State: StateError, Reason: ReasonSendError})
	if s.Sent != 8 || s.Open != 4 || s.Closed != 1 || s.Filtered != 2 || s.Timeouts != 1 || s.Errors != 1 || s.Kernel != 4 {
		t.Fatalf("counts %+v", s)
	}
	if got := s.LossPercent(); got != 12.5 {
		t.Errorf("loss %v%%, want 12.5%%", got)
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
	got := s.Summary()
	if got.N != 6 || got.Min != 8*time.Millisecond || got.Max != 12*time.Millisecond ||
		got.Avg != time.Duration(math.Round(mean)) || got.Mdev != time.Duration(math.Round(sd)) {
		t.Errorf("summary %+v, want mean %v sd %v", got, mean, sd)
	}
	// Sorted: 8, 9, 10, 11.39, 11.482, 12 ms. Nearest rank: p50 = 3rd, p90 = 6th.
	if got.P50 != 10*time.Millisecond || got.P90 != 12*time.Millisecond || got.P99 != 12*time.Millisecond {
		t.Errorf("percentiles %v %v %v", got.P50, got.P90, got.P99)
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

package probe

import (
	"math"
	"slices"
	"time"
)

// Stats accumulates the results of one target.
type Stats struct {
	Sent, Open, Closed, Filtered, Errors int
	Timeouts                             int // filtered with no answer at all
	Kernel                               int // answers in the RTT statistics timed by kernel timestamps

	// MaybeRetransmits summarises the SYN-ACKs that came SynAckRTO or
	// later after the SYN (Result.MaybeRetransmit). They are kept out of
	// the RTT statistics: such an RTT may be the server's retransmission
	// timer plus the path, not the path.
	MaybeRetransmits DurationStats

	// ModeFIN: how the open connections closed.
	Patterns        [numClosePatterns]int // by ClosePattern
	CloseAck        DurationStats         // our FIN -> its ACK
	CloseFin        DurationStats         // our FIN (or the handshake) -> its FIN
	DataAck         DurationStats         // our data -> its ACK
	PeerDataBytes   int                   // sent by peers after our FIN
	PeerRetransmits int
	FinRetransmits  int
	LateFINs        int // FINs retransmitted after the exchange: our last ACK was lost
	SendErrors      int // segments of connections the kernel refused
	Uncertain       int // close reports with Alternatives

	n        int
	mean, m2 float64 // Welford's running mean and sum of squares, in ns
	min, max time.Duration
	rtts     []time.Duration // every RTT, for percentiles
}

// Add counts one result.
func (s *Stats) Add(r *Result) {
	s.Sent++
	switch r.State {
	case StateOpen:
		s.Open++
	case StateClosed:
		s.Closed++
	case StateFiltered:
		s.Filtered++
		if r.Reason == ReasonTimeout {
			s.Timeouts++
		}
	case StateError:
		s.Errors++
	}
	if c := r.Close; c != nil {
		s.Patterns[c.Pattern]++
		if c.HasAck {
			s.CloseAck.Add(c.AckTime)
		}
		if c.HasFin {
			s.CloseFin.Add(c.FinTime)
		}
		if c.HasDataAck {
			s.DataAck.Add(c.DataAckTime)
		}
		s.PeerDataBytes += c.PeerDataBytes
		s.PeerRetransmits += c.PeerRetransmits
		s.FinRetransmits += c.FinRetransmits
		s.SendErrors += c.SendErrors
		if c.Alternatives != 0 {
			s.Uncertain++
		}
	}
	if r.MaybeRetransmit {
		s.MaybeRetransmits.Add(r.RTT)
		return
	}
	if r.Answered() {
		if r.KernelClock {
			s.Kernel++
		}
		s.addRTT(r.RTT)
	}
}

func (s *Stats) addRTT(d time.Duration) {
	s.n++
	if s.n == 1 || d < s.min {
		s.min = d
	}
	if s.n == 1 || d > s.max {
		s.max = d
	}
	x := float64(d)
	delta := x - s.mean
	s.mean += delta / float64(s.n)
	s.m2 += delta * (x - s.mean)
	s.rtts = append(s.rtts, d)
}

// LossPercent is the share of probes that got no answer at all.
func (s *Stats) LossPercent() float64 {
	if s.Sent == 0 {
		return 0
	}
	return 100 * float64(s.Timeouts) / float64(s.Sent)
}

// RTTSummary describes the RTTs of the answered probes, except SYN-ACKs
// that may be retransmissions (Stats.MaybeRetransmits).
type RTTSummary struct {
	N             int // answers counted; the rest is zero when N is 0
	Min, Avg, Max time.Duration
	Mdev          time.Duration // population standard deviation, as ping's mdev
	P50, P90, P99 time.Duration // nearest-rank percentiles
}

// Summary returns the RTT statistics so far.
func (s *Stats) Summary() RTTSummary {
	if s.n == 0 {
		return RTTSummary{}
	}
	sorted := slices.Clone(s.rtts)
	slices.Sort(sorted)
	return RTTSummary{
		N:    s.n,
		Min:  s.min,
		Avg:  time.Duration(math.Round(s.mean)),
		Max:  s.max,
		Mdev: time.Duration(math.Round(math.Sqrt(s.m2 / float64(s.n)))),
		P50:  Percentile(sorted, 50),
		P90:  Percentile(sorted, 90),
		P99:  Percentile(sorted, 99),
	}
}

// Percentile returns the nearest-rank p-th percentile of sorted values.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = max(1, min(rank, len(sorted)))
	return sorted[rank-1]
}

// DurationStats summarises durations: count, min, mean, max.
type DurationStats struct {
	N             int
	Min, Max, Sum time.Duration
}

// Add counts d.
func (d *DurationStats) Add(v time.Duration) {
	if d.N == 0 || v < d.Min {
		d.Min = v
	}
	if d.N == 0 || v > d.Max {
		d.Max = v
	}
	d.N++
	d.Sum += v
}

// Avg returns the mean, or 0 when empty.
func (d *DurationStats) Avg() time.Duration {
	if d.N == 0 {
		return 0
	}
	return d.Sum / time.Duration(d.N)
}

package probe

import (
	"math"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// The RTT histogram's range and precision: 1 ns to an hour, three
// significant digits (each value is kept within 1/1024 of itself). Longer
// RTTs count as an hour.
const (
	histLowest  = 1
	histHighest = int64(time.Hour)
	histDigits  = 3
)

// Stats is a snapshot of one target's statistics (Prober.Stats): a value,
// the caller's to keep, that the engine never changes.
type Stats struct {
	// Sent counts the SYNs handed to the network, when they were sent:
	// Open + Closed + Filtered + Interrupted. Errors are probes that
	// could not be sent, and are not among them.
	Sent, Open, Closed, Filtered, Errors int
	Timeouts                             int // filtered with no answer at all
	// Interrupted counts the probes sent whose answer was still awaited
	// when the run was interrupted: they have no verdict, and are no loss.
	Interrupted int

	// RTT describes the RTTs of the answered probes, but for SYN-ACKs
	// that may be retransmissions; Kernel of them were timed by kernel
	// timestamps (Result.KernelClock).
	RTT    RTTSummary
	Kernel int

	// MaybeRetransmits summarises the SYN-ACKs that came SynAckRTO or
	// later after the SYN (Result.MaybeRetransmit). They are kept out of
	// RTT: such an RTT may be the server's retransmission timer plus the
	// path, not the path.
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
	// DataShort counts the connections whose Config.Data the peer did
	// not acknowledge whole (a closed window, loss, a reset).
	DataShort int
	// CloseInterrupted counts the open connections the end of the run
	// reset before they closed (counted in Open): Result.Interrupted.
	CloseInterrupted int
}

// LossPercent is the share of the probes with a verdict that got no
// answer at all. Probes interrupted while awaiting theirs are not loss.
func (s *Stats) LossPercent() float64 {
	judged := s.Sent - s.Interrupted
	if judged <= 0 {
		return 0
	}
	return 100 * float64(s.Timeouts) / float64(judged)
}

// RTTSummary describes the RTTs of the answered probes, except SYN-ACKs
// that may be retransmissions (Stats.MaybeRetransmits).
type RTTSummary struct {
	N             int // answers counted; the rest is zero when N is 0
	Min, Avg, Max time.Duration
	Mdev          time.Duration // population standard deviation, as ping's mdev
	// P50, P90 and P99 are nearest-rank percentiles, from a histogram:
	// each is at most 1/1024 (0.1%) above the exact one, and within
	// [Min, Max]. Min, Avg, Max and Mdev are exact.
	P50, P90, P99 time.Duration
}

// DurationStats summarises durations: count, min, mean, max.
type DurationStats struct {
	N             int // durations counted; the rest is zero when N is 0
	Min, Avg, Max time.Duration
}

// tally accumulates the probes of one target; Stats is its snapshot. Its
// memory does not grow with the number of probes.
type tally struct {
	sent, open, closed, filtered, errors int
	timeouts                             int
	kernel                               int // answers in the RTT statistics timed by kernel timestamps
	interrupted                          int

	maybeRetransmits durations

	patterns           [numClosePatterns]int
	closeAck, closeFin durations
	dataAck            durations
	peerDataBytes      int
	peerRetransmits    int
	finRetransmits     int
	lateFINs           int
	sendErrors         int
	uncertain          int
	dataShort          int
	closeInterrupted   int

	n        int
	mean, m2 float64 // Welford's running mean and sum of squares, in ns
	min, max time.Duration
	// The RTTs for percentiles, in a histogram whose memory grows with
	// the buckets in use, never with the number of probes: at most some
	// 33,000 buckets, a few hundred in practice.
	hist *hdrhistogram.PackedHistogram
}

// add counts one result. The SYN was counted when it was sent (sent).
func (s *tally) add(r *Result) {
	if r.Interrupted {
		s.closeInterrupted++
	}
	switch r.State {
	case StateOpen:
		s.open++
	case StateClosed:
		s.closed++
	case StateFiltered:
		s.filtered++
		if r.Reason == ReasonTimeout {
			s.timeouts++
		}
	case StateError:
		s.errors++
	}
	if c := r.Close; c != nil {
		s.patterns[c.Pattern]++
		if c.HasAck {
			s.closeAck.add(c.AckTime)
		}
		if c.HasFin {
			s.closeFin.add(c.FinTime)
		}
		if c.HasDataAck {
			s.dataAck.add(c.DataAckTime)
		}
		s.peerDataBytes += c.PeerDataBytes
		s.peerRetransmits += c.PeerRetransmits
		s.finRetransmits += c.FinRetransmits
		s.sendErrors += c.SendErrors
		if c.Alternatives != 0 {
			s.uncertain++
		}
		if c.DataBytes > 0 && c.DataAcked < c.DataBytes && !r.Interrupted {
			s.dataShort++
		}
	}
	if r.MaybeRetransmit {
		s.maybeRetransmits.add(r.RTT)
		return
	}
	if r.Answered() {
		if r.KernelClock {
			s.kernel++
		}
		s.addRTT(r.RTT)
	}
}

func (s *tally) addRTT(d time.Duration) {
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
	if s.hist == nil {
		s.hist = hdrhistogram.NewPacked(histLowest, histHighest, histDigits)
	}
	s.hist.RecordValue(min(max(int64(d), 0), histHighest))
}

// snapshot returns the statistics so far.
func (s *tally) snapshot() Stats {
	return Stats{
		Sent: s.sent, Open: s.open, Closed: s.closed, Filtered: s.filtered, Errors: s.errors,
		Timeouts: s.timeouts, Interrupted: s.interrupted,
		RTT: s.rtt(), Kernel: s.kernel,
		MaybeRetransmits: s.maybeRetransmits.snapshot(),
		Patterns:         s.patterns,
		CloseAck:         s.closeAck.snapshot(),
		CloseFin:         s.closeFin.snapshot(),
		DataAck:          s.dataAck.snapshot(),
		PeerDataBytes:    s.peerDataBytes, PeerRetransmits: s.peerRetransmits, FinRetransmits: s.finRetransmits,
		LateFINs: s.lateFINs, SendErrors: s.sendErrors, Uncertain: s.uncertain, DataShort: s.dataShort,
		CloseInterrupted: s.closeInterrupted,
	}
}

// rtt summarises the RTTs so far.
func (s *tally) rtt() RTTSummary {
	if s.n == 0 {
		return RTTSummary{}
	}
	return RTTSummary{
		N:    s.n,
		Min:  s.min,
		Avg:  time.Duration(math.Round(s.mean)),
		Max:  s.max,
		Mdev: time.Duration(math.Round(math.Sqrt(s.m2 / float64(s.n)))),
		P50:  s.percentile(50),
		P90:  s.percentile(90),
		P99:  s.percentile(99),
	}
}

// percentile returns the nearest-rank p-th percentile of the RTTs: the
// ceil(p/100 * n)-th smallest, by the histogram's bucket holding it (the
// histogram's own rank rounds instead), within [min, max].
func (s *tally) percentile(p float64) time.Duration {
	n := s.hist.TotalCount()
	rank := max(1, min(int64(math.Ceil(p/100*float64(n))), n))
	// The histogram takes the rank (p/100*n + 0.5) rounded down: ask for
	// the rank itself.
	v := time.Duration(s.hist.ValueAtPercentile(100 * float64(rank) / float64(n)))
	return min(max(v, s.min), s.max)
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

// durations accumulates durations for a DurationStats.
type durations struct {
	n             int
	min, max, sum time.Duration
}

func (d *durations) add(v time.Duration) {
	if d.n == 0 || v < d.min {
		d.min = v
	}
	if d.n == 0 || v > d.max {
		d.max = v
	}
	d.n++
	d.sum += v
}

func (d *durations) snapshot() DurationStats {
	if d.n == 0 {
		return DurationStats{}
	}
	return DurationStats{N: d.n, Min: d.min, Avg: d.sum / time.Duration(d.n), Max: d.max}
}

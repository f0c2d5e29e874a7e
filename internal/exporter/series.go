package exporter

import (
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/synprobe/synprobe/probe"
)

// targetSeries holds the background probes' cumulative series. Their
// labels are host, ip, port, module and every label name any target of
// the configuration has (a target without one gets it empty, which
// Prometheus takes as absent).
type targetSeries struct {
	extra     []string // target label names, sorted
	buckets   []float64
	native    float64
	requests  *prometheus.CounterVec
	responses *prometheus.CounterVec
	rtt       *prometheus.HistogramVec
	closes    *prometheus.CounterVec
}

var baseLabels = []string{"host", "ip", "port", "module"}

func labelNames(cfg *Config) []string {
	var names []string
	for _, t := range cfg.Targets {
		for _, l := range t.Labels {
			if !slices.Contains(names, l.Name) {
				names = append(names, l.Name)
			}
		}
	}
	slices.Sort(names)
	return names
}

func newTargetSeries(cfg *Config) *targetSeries {
	s := &targetSeries{extra: labelNames(cfg), buckets: cfg.Buckets, native: cfg.NativeFactor}
	names := append(slices.Clone(baseLabels), s.extra...)
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "synprobe_requests_total",
		Help: "Background probes begun (a resolution or route failure counts, as result=\"error\").",
	}, names)
	s.responses = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "synprobe_responses_total",
		Help: "Background probes ended, by result (syn-ack, rst, timeout, ICMP errors, error).",
	}, append(slices.Clone(names), "result"))
	s.rtt = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:                            "synprobe_response_duration_seconds",
		Help:                            "Kernel-stamped round trips, SYN to SYN-ACK or RST, of the background probes.",
		Buckets:                         cfg.Buckets,
		NativeHistogramBucketFactor:     cfg.NativeFactor,
		NativeHistogramMaxBucketNumber:  100,
		NativeHistogramMinResetDuration: time.Hour,
	}, names)
	s.closes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "synprobe_close_total",
		Help: "Fin-mode background probes by how the peer closed.",
	}, append(slices.Clone(names), "pattern"))
	return s
}

// compatible reports whether cfg's series can continue these: the same
// label names, buckets and native factor.
func (s *targetSeries) compatible(cfg *Config) bool {
	return slices.Equal(s.extra, labelNames(cfg)) && slices.Equal(s.buckets, cfg.Buckets) && s.native == cfg.NativeFactor
}

// identity is a target's labels less ip.
func (s *targetSeries) identity(t *Target) prometheus.Labels {
	l := prometheus.Labels{"host": t.Host, "port": strconv.Itoa(int(t.Port)), "module": t.Module.Name}
	for _, n := range s.extra {
		l[n] = ""
	}
	for _, x := range t.Labels {
		l[x.Name] = x.Value
	}
	return l
}

// prune deletes the series of targets that cfg no longer has.
func (s *targetSeries) prune(cfg *Config) {
	keep := map[string]bool{}
	key := func(l prometheus.Labels) string {
		k := ""
		for _, n := range append(slices.Clone(baseLabels), s.extra...) {
			k += l[n] + "\x00"
		}
		return k
	}
	for _, t := range cfg.Targets {
		keep[key(s.identity(t))] = true
	}
	// The old targets are those with series: walk one family's.
	ch := make(chan prometheus.Metric, 64)
	go func() { s.requests.Collect(ch); close(ch) }()
	var drop []prometheus.Labels
	for m := range ch {
		l := labelsOf(m)
		delete(l, "ip")
		if !keep[key(l)] {
			drop = append(drop, l)
		}
	}
	for _, l := range drop {
		s.requests.DeletePartialMatch(l)
		s.responses.DeletePartialMatch(l)
		s.rtt.DeletePartialMatch(l)
		s.closes.DeletePartialMatch(l)
	}
}

// handles are one target's series for one address.
type handles struct {
	ip        string
	requests  prometheus.Counter
	rtt       prometheus.Observer
	values    []string
	responses [len(resultIndex)]prometheus.Counter
	closes    map[probe.ClosePattern]prometheus.Counter
}

// resultIndex places each of Results.
var resultIndex = func() (m [12]string) {
	copy(m[:], Results)
	return m
}()

func (s *targetSeries) handles(t *Target, ip string) *handles {
	values := []string{t.Host, ip, strconv.Itoa(int(t.Port)), t.Module.Name}
	for _, n := range s.extra {
		v := ""
		for _, l := range t.Labels {
			if l.Name == n {
				v = l.Value
			}
		}
		values = append(values, v)
	}
	return &handles{
		ip:       ip,
		values:   values,
		requests: s.requests.WithLabelValues(values...),
		rtt:      s.rtt.WithLabelValues(values...),
	}
}

func (h *handles) response(s *targetSeries, result string) prometheus.Counter {
	i := slices.Index(resultIndex[:], result)
	if h.responses[i] == nil {
		h.responses[i] = s.responses.WithLabelValues(append(slices.Clone(h.values), result)...)
	}
	return h.responses[i]
}

func (h *handles) close(s *targetSeries, p probe.ClosePattern) prometheus.Counter {
	if h.closes == nil {
		h.closes = map[probe.ClosePattern]prometheus.Counter{}
	}
	c := h.closes[p]
	if c == nil {
		c = s.closes.WithLabelValues(append(slices.Clone(h.values), p.String())...)
		h.closes[p] = c
	}
	return c
}

// swapCollector collects the series in force; a reload swaps them. It
// describes nothing (an unchecked collector): the label names change
// with the configuration.
type swapCollector struct {
	mu  sync.RWMutex
	cur *targetSeries
}

func (c *swapCollector) set(s *targetSeries) {
	c.mu.Lock()
	c.cur = s
	c.mu.Unlock()
}

func (c *swapCollector) Describe(chan<- *prometheus.Desc) {}

func (c *swapCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.RLock()
	s := c.cur
	c.mu.RUnlock()
	if s == nil {
		return
	}
	s.requests.Collect(ch)
	s.responses.Collect(ch)
	s.rtt.Collect(ch)
	s.closes.Collect(ch)
}

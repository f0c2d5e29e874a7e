package exporter

import (
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/synprobe/synprobe/probe"
)

// targetSeries holds the background probes' cumulative series. Their
// labels are host, ip, port, module and every label name any target of
// the configuration has (a target without one gets it empty, which
// Prometheus takes as absent).
//
// Each target's series are a few counters of its own (handles), which
// client_golang exposes through metrics that write them with label pairs
// made once: about 1 KB a target, where a client_golang vector's children
// took 4 KB (10,000 targets: 41.6 MB). Native histograms, which need
// client_golang's own bookkeeping, come from a HistogramVec.
type targetSeries struct {
	extra   []string // target label names, sorted
	buckets []float64
	native  float64

	requests, responses, rtt, closes *prometheus.Desc
	names                            []*string // label names, for label pairs
	nativeRTT                        *prometheus.HistogramVec
	nativeReg                        *prometheus.Registry // nativeRTT's alone

	mu     sync.RWMutex
	m      map[string]*handles // by label values
	gen    uint64              // m's changes
	sorted []*handles          // m's, by label values; nil when m has changed
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

// The series' names.
const (
	requestsName  = "synprobe_requests_total"
	responsesName = "synprobe_responses_total"
	rttName       = "synprobe_response_duration_seconds"
	closesName    = "synprobe_close_total"
)

const (
	requestsHelp  = "Background probes begun (a resolution or route failure counts, as result=\"error\")."
	responsesHelp = "Background probes ended, by result (syn-ack, rst, timeout, ICMP errors, error)."
	rttHelp       = "Kernel-stamped round trips, SYN to SYN-ACK or RST, of the background probes."
	closesHelp    = "Fin-mode background probes by how the peer closed."
)

func newTargetSeries(cfg *Config) *targetSeries {
	s := &targetSeries{extra: labelNames(cfg), buckets: cfg.Buckets, native: cfg.NativeFactor, m: map[string]*handles{}}
	names := append(slices.Clone(baseLabels), s.extra...)
	for _, n := range names {
		s.names = append(s.names, &n)
	}
	with := func(l string) []string { return append(slices.Clone(names), l) }
	s.requests = prometheus.NewDesc(requestsName, requestsHelp, names, nil)
	s.responses = prometheus.NewDesc(responsesName, responsesHelp, with("result"), nil)
	s.rtt = prometheus.NewDesc(rttName, rttHelp, names, nil)
	s.closes = prometheus.NewDesc(closesName, closesHelp, with("pattern"), nil)
	if s.native > 0 {
		s.nativeRTT = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:                            rttName,
			Help:                            rttHelp,
			Buckets:                         cfg.Buckets,
			NativeHistogramBucketFactor:     cfg.NativeFactor,
			NativeHistogramMaxBucketNumber:  100,
			NativeHistogramMinResetDuration: time.Hour,
		}, names)
		s.nativeReg = prometheus.NewRegistry()
		s.nativeReg.MustRegister(s.nativeRTT)
	}
	return s
}

// compatible reports whether cfg's series can continue these: the same
// label names, buckets and native factor.
func (s *targetSeries) compatible(cfg *Config) bool {
	return slices.Equal(s.extra, labelNames(cfg)) && slices.Equal(s.buckets, cfg.Buckets) && s.native == cfg.NativeFactor
}

// identity is a target's label values less ip, as a key.
func (s *targetSeries) identity(t *Target) string {
	return identityKey(s.values(t, ""))
}

// identityKey is the key of label values, ip left out.
func identityKey(values []string) string {
	return seriesKey(append([]string{values[0]}, values[2:]...))
}

// seriesKey is an unambiguous key of label values: each value's length
// before it, for a value may hold any UTF-8, NUL included.
func seriesKey(values []string) string {
	var b strings.Builder
	for _, v := range values {
		b.WriteString(strconv.Itoa(len(v)))
		b.WriteByte(':')
		b.WriteString(v)
	}
	return b.String()
}

// values returns a target's label values with ip.
func (s *targetSeries) values(t *Target, ip string) []string {
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
	return values
}

// prune deletes the series of targets that cfg no longer has.
func (s *targetSeries) prune(cfg *Config) {
	keep := map[string]bool{}
	for _, t := range cfg.Targets {
		keep[s.identity(t)] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, h := range s.m {
		if !keep[identityKey(h.values)] {
			delete(s.m, k)
			s.sorted = nil
			s.gen++
			if s.nativeRTT != nil {
				s.nativeRTT.DeleteLabelValues(h.values...)
			}
		}
	}
}

// handles are one target's series for one address: its counts, which
// the probe goroutines move and /metrics reads.
type handles struct {
	ip       string
	values   []string
	labels   []*dto.LabelPair // made once, for every scrape
	created  *timestamppb.Timestamp
	requests atomic.Uint64
	results  [len(resultIndex)]result
	closes   [len(closeIndex)]result
	// The classic histogram: counts by bucket (not cumulative), above
	// the last bucket, and the sum's bits.
	counts []atomic.Uint64
	over   atomic.Uint64
	sum    atomic.Uint64
	native prometheus.Observer
}

// result is the count of one value of a label added to a target's, with
// its label pairs, made at its first occurrence (a series appears then).
type result struct {
	n      atomic.Uint64
	labels atomic.Pointer[[]*dto.LabelPair]
}

// resultIndex places each of Results.
var resultIndex = func() (m [12]string) {
	copy(m[:], Results)
	return m
}()

// closeIndex places each close pattern.
var closeIndex = func() (m [8]string) {
	for i, p := range probe.ClosePatterns() {
		m[i] = p.String()
	}
	return m
}()

// resultLabel and patternLabel are the names of the label added to a
// target's by synprobe_responses_total and synprobe_close_total.
var resultLabel, patternLabel = "result", "pattern"

func (s *targetSeries) handles(t *Target, ip string) *handles {
	values := s.values(t, ip)
	key := seriesKey(values)
	s.mu.RLock()
	h := s.m[key]
	s.mu.RUnlock()
	if h != nil {
		return h
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if h = s.m[key]; h != nil {
		return h
	}
	h = &handles{ip: ip, values: values, created: timestamppb.Now(), counts: make([]atomic.Uint64, len(s.buckets))}
	for i := range values {
		h.labels = append(h.labels, &dto.LabelPair{Name: s.names[i], Value: &values[i]})
	}
	sortLabels(h.labels)
	if s.nativeRTT != nil {
		h.native = s.nativeRTT.WithLabelValues(values...)
	}
	s.m[key] = h
	s.sorted = nil
	s.gen++
	return h
}

func (h *handles) request() { h.requests.Add(1) }

// respond counts a probe ended with result (one of Results).
func (h *handles) respond(result string) {
	h.results[slices.Index(resultIndex[:], result)].add(h.labels, &resultLabel, result)
}

// closed counts a fin probe's close pattern.
func (h *handles) closed(p probe.ClosePattern) {
	h.closes[slices.Index(closeIndex[:], p.String())].add(h.labels, &patternLabel, p.String())
}

func (r *result) add(labels []*dto.LabelPair, name *string, value string) {
	if r.labels.Load() == nil {
		l := append(slices.Clone(labels), &dto.LabelPair{Name: name, Value: &value})
		sortLabels(l)
		r.labels.CompareAndSwap(nil, &l)
	}
	r.n.Add(1)
}

// sortLabels puts label pairs in the order of their names, as
// client_golang's registry wants them (it copies and sorts them at every
// scrape otherwise).
func sortLabels(l []*dto.LabelPair) {
	slices.SortFunc(l, func(a, b *dto.LabelPair) int { return strings.Compare(a.GetName(), b.GetName()) })
}

// observe counts a kernel-stamped RTT in the histogram.
func (h *handles) observe(s *targetSeries, seconds float64) {
	if h.native != nil {
		h.native.Observe(seconds)
		return
	}
	i, _ := slices.BinarySearch(s.buckets, seconds) // the first bucket with seconds <= its bound
	if i < len(h.counts) {
		h.counts[i].Add(1)
	} else {
		h.over.Add(1)
	}
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+seconds)) {
			return
		}
	}
}

// swapCollector holds the series in force; a reload swaps them.
//
// /metrics takes them from gatherers, not through client_golang's
// registry: at every scrape the registry checks each metric it collects
// (the name's and labels' validity, a hash of the label values against
// duplicates) and sorts each family's metrics, which for 10,000 targets
// (some 40,000 metrics) was a third of a scrape's CPU. These series need
// none of it: their names are constants, their label names and values
// are checked when the configuration is read (a target's labels, its
// host, address, port and module), one set of series is kept per label
// values, and their order is kept between scrapes. TestSeriesChecked
// compares them with what the registry makes of the same series.
type swapCollector struct {
	mu  sync.RWMutex
	cur *targetSeries
}

func (c *swapCollector) set(s *targetSeries) {
	c.mu.Lock()
	c.cur = s
	c.mu.Unlock()
}

func (c *swapCollector) series() *targetSeries {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.cur
}

// Gather returns the series in force as metric families: the classic
// ones by name and each family's metrics by their target's label values
// (a target's results and close patterns in the order of Results and
// ClosePatterns); native histograms as client_golang's registry of them
// gives them. A family with no metric is left out.
func (c *swapCollector) Gather() ([]*dto.MetricFamily, error) {
	if s := c.series(); s != nil {
		return s.gather()
	}
	return nil, nil
}

func (s *targetSeries) gather() ([]*dto.MetricFamily, error) {
	hs := s.sortedHandles()
	fam := func(name, help string, t dto.MetricType, n int) *dto.MetricFamily {
		return &dto.MetricFamily{Name: &name, Help: &help, Type: t.Enum(), Metric: make([]*dto.Metric, 0, n)}
	}
	closes := fam(closesName, closesHelp, dto.MetricType_COUNTER, 0)
	requests := fam(requestsName, requestsHelp, dto.MetricType_COUNTER, len(hs))
	rtt := fam(rttName, rttHelp, dto.MetricType_HISTOGRAM, len(hs))
	responses := fam(responsesName, responsesHelp, dto.MetricType_COUNTER, 2*len(hs))
	add := func(f *dto.MetricFamily, m prometheus.Metric) {
		out := new(dto.Metric)
		m.Write(out) // never fails
		f.Metric = append(f.Metric, out)
	}
	for _, h := range hs {
		add(requests, counter{s.requests, h.labels, h.created, &h.requests})
		for i := range h.results {
			if l := h.results[i].labels.Load(); l != nil {
				add(responses, counter{s.responses, *l, h.created, &h.results[i].n})
			}
		}
		for i := range h.closes {
			if l := h.closes[i].labels.Load(); l != nil {
				add(closes, counter{s.closes, *l, h.created, &h.closes[i].n})
			}
		}
		if h.native == nil {
			add(rtt, histogram{s, h})
		}
	}
	var out []*dto.MetricFamily
	var err error
	if s.nativeReg != nil {
		out, err = s.nativeReg.Gather()
	}
	for _, f := range []*dto.MetricFamily{closes, requests, rtt, responses} {
		if len(f.Metric) > 0 {
			out = append(out, f)
		}
	}
	sortFamilies(out)
	return out, err
}

// sortFamilies puts metric families in the order of their names.
func sortFamilies(mfs []*dto.MetricFamily) {
	slices.SortStableFunc(mfs, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
}

// sortedHandles returns every target's handles, by label values, sorted
// again (outside the lock, which probes take to find their handles) only
// when targets have come or gone since the last call.
func (s *targetSeries) sortedHandles() []*handles {
	s.mu.RLock()
	hs, gen := s.sorted, s.gen
	if hs != nil {
		s.mu.RUnlock()
		return hs
	}
	hs = make([]*handles, 0, len(s.m))
	for _, h := range s.m {
		hs = append(hs, h)
	}
	s.mu.RUnlock()
	slices.SortFunc(hs, compareHandles)
	s.mu.Lock()
	if s.gen == gen {
		s.sorted = hs
	}
	s.mu.Unlock()
	return hs
}

// compareHandles orders targets by their label values. The label pairs
// are sorted by name, and every target has the same names.
func compareHandles(a, b *handles) int {
	return slices.CompareFunc(a.labels, b.labels, func(x, y *dto.LabelPair) int { return strings.Compare(x.GetValue(), y.GetValue()) })
}

// gatherers serves a registry's families and the series in force, by
// name; the series are read once a scrape (a reload may swap them
// meanwhile).
type gatherers struct {
	reg  prometheus.Gatherer
	swap *swapCollector
}

func (g gatherers) Gather() ([]*dto.MetricFamily, error) {
	s := g.swap.series()
	mfs, err := g.reg.Gather()
	if s != nil {
		own, oerr := s.gather()
		mfs = append(mfs, own...)
		err = errors.Join(err, oerr)
	}
	sortFamilies(mfs)
	return mfs, err
}

// counter is a count of a target's as a client_golang metric.
type counter struct {
	desc    *prometheus.Desc
	labels  []*dto.LabelPair
	created *timestamppb.Timestamp
	n       *atomic.Uint64
}

func (c counter) Desc() *prometheus.Desc { return c.desc }

func (c counter) Write(m *dto.Metric) error {
	v := float64(c.n.Load())
	m.Label = c.labels
	m.Counter = &dto.Counter{Value: &v, CreatedTimestamp: c.created}
	return nil
}

// histogram is a target's classic histogram as a client_golang metric.
// Its count is the sum of its buckets', so that no bucket ever exceeds
// it, whatever probes end during the scrape.
type histogram struct {
	s *targetSeries
	h *handles
}

func (m histogram) Desc() *prometheus.Desc { return m.s.rtt }

func (m histogram) Write(out *dto.Metric) error {
	h := m.h
	bounds := m.s.buckets
	buckets := make([]dto.Bucket, len(bounds))
	cum := make([]uint64, len(bounds)+1)
	ptrs := make([]*dto.Bucket, len(bounds))
	var n uint64
	for i := range bounds {
		n += h.counts[i].Load()
		cum[i] = n
		b := &buckets[i]
		b.CumulativeCount, b.UpperBound = &cum[i], &bounds[i]
		ptrs[i] = b
	}
	cum[len(bounds)] = n + h.over.Load()
	sum := math.Float64frombits(h.sum.Load())
	out.Label = h.labels
	out.Histogram = &dto.Histogram{SampleCount: &cum[len(bounds)], SampleSum: &sum, Bucket: ptrs, CreatedTimestamp: h.created}
	return nil
}

package exporter

import (
	"container/heap"
	"context"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/synprobe/synprobe/probe"
)

// scheduler probes a configuration's targets, each every its interval,
// spread over the interval rather than sent in bursts; each keeps its
// schedule (a round that comes while the target's previous probe is
// still running is skipped and counted).
//
// Targets given by address go to the client's engine in rounds
// (Rounder): one Rounds call per module and interval, spread over it, the
// engine timing each probe and calling back as it is sent and as it ends,
// with no goroutine or wake-up of ours per probe. The others (names to
// resolve, or a prober without Rounds) are this scheduler's jobs: target
// i of n starts at i/n of its interval, and each probe runs on a
// goroutine of its own.
type scheduler struct {
	e      *Exporter
	set    *targetSeries
	jobs   []*job
	groups []*group

	cancel context.CancelFunc
	done   chan struct{}
	wg     sync.WaitGroup
}

// quantum is the scheduler's resolution: the probes due within it go
// together (at 10,000 probes a second, 20 every 2 ms), which the engine
// takes in one wake-up: 1 ms, 2 ms and 5 ms cost 68%, 64% and 46% of a
// core for 10,000 probes a second (scripts/bench-serve.sh). The engine's
// spread rounds have the same resolution (probe.Rounds.Spread).
const quantum = 2 * time.Millisecond

type job struct {
	t    *Target
	next time.Time
	busy atomic.Bool
	h    *handles   // the series of the last address probed; the probe goroutine's
	addr netip.Addr // that address (invalid: none, resolution failed)
}

// group is the targets of one module and interval given by address,
// probed in one Rounds call.
type group struct {
	module   *Module
	interval time.Duration
	targets  []probe.Target
	handles  []*handles
}

// Rounder probes targets in rounds (*probe.Client is one): the background
// probes of addresses go that way.
type Rounder interface {
	Rounds(ctx context.Context, r *probe.Rounds) ([]probe.Stats, error)
}

func newScheduler(e *Exporter, targets []*Target, set *targetSeries) *scheduler {
	s := &scheduler{e: e, set: set}
	type key struct {
		m *Module
		d time.Duration
	}
	groups := map[key]*group{}
	for _, t := range targets {
		if e != nil {
			if _, ok := e.o.Prober.(Rounder); ok {
				if a, err := netip.ParseAddr(t.Host); err == nil {
					if a, err = e.resolve(context.Background(), t.Host, t.Module); err == nil {
						k := key{t.Module, t.Interval}
						g := groups[k]
						if g == nil {
							g = &group{module: t.Module, interval: t.Interval}
							groups[k] = g
							s.groups = append(s.groups, g)
						}
						g.targets = append(g.targets, probe.Target{Name: t.Host, Addr: a, Port: t.Port})
						g.handles = append(g.handles, set.handles(t, a.String()))
						continue
					}
				}
			}
		}
		s.jobs = append(s.jobs, &job{t: t})
	}
	return s
}

func (s *scheduler) start() {
	if s.done != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	for _, g := range s.groups {
		s.wg.Add(1)
		go s.rounds(ctx, g)
	}
	go s.loop(ctx)
}

// stop ends the schedule and waits for the probes in flight, which the
// cancelled context interrupts (the client resets their connections).
func (s *scheduler) stop() {
	if s.done == nil {
		return
	}
	s.cancel()
	<-s.done
	s.wg.Wait()
}

// rounds probes g's targets until ctx ends, counting each probe in its
// series: the request as it is sent, the response when it ends.
func (s *scheduler) rounds(ctx context.Context, g *group) {
	defer s.wg.Done()
	_, err := s.e.o.Prober.(Rounder).Rounds(ctx, &probe.Rounds{
		Targets:   g.targets,
		Interval:  g.interval,
		Options:   &g.module.Options,
		Spread:    true,
		KeepGoing: true,
		NoStats:   true,
		OnSend:    func(i int) { g.handles[i].request() },
		OnSkip:    func(int) { s.e.skipped.Inc() },
		OnResult:  func(r *probe.Result) { s.count(g.handles[r.Index], r) },
	})
	if err != nil && ctx.Err() == nil {
		s.e.o.Logger.Error("background probes stopped", "module", g.module.Name, "interval", g.interval, "targets", len(g.targets), "err", err)
	}
}

func (s *scheduler) loop(ctx context.Context) {
	defer close(s.done)
	if len(s.jobs) == 0 {
		return
	}
	s.plan(time.Now())
	q := jobQueue(slices.Clone(s.jobs))
	heap.Init(&q)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		wait := time.Until(q[0].next)
		if wait > 0 {
			// Wake at most once a quantum, for the probes due by then.
			timer.Reset(max(wait, quantum))
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			return
		}
		now := time.Now()
		for q[0].next.Compare(now.Add(quantum/2)) <= 0 {
			j := q[0]
			if j.busy.CompareAndSwap(false, true) {
				s.wg.Add(1)
				go s.run(ctx, j)
			} else {
				s.e.skipped.Inc()
			}
			j.next = j.next.Add(j.t.Interval)
			if j.next.Before(now) { // fell behind: the next slot to come
				late := now.Sub(j.next)/j.t.Interval + 1
				j.next = j.next.Add(late * j.t.Interval)
			}
			heap.Fix(&q, 0)
		}
	}
}

// plan sets each job's first probe: target i of n at i/n of its
// interval after now.
func (s *scheduler) plan(now time.Time) {
	n := time.Duration(len(s.jobs))
	for i, j := range s.jobs {
		j.next = now.Add(j.t.Interval * time.Duration(i) / n)
	}
}

// probeLimit bounds one background probe: its SYN's wait, and in fin mode
// the hold and close, with room to spare; the engine ends it sooner.
func probeLimit(o *probe.ProbeOptions) time.Duration {
	d := o.Timeout + 5*time.Second
	if o.Mode == probe.ModeFIN {
		ct := o.CloseTimeout
		if ct == 0 {
			ct = 3 * time.Second
		}
		d += o.Hold + 4*ct
	}
	return d
}

// run makes one probe of j and counts it: the request when it begins
// (once the name is resolved: the address is a label), the response when
// it ends.
func (s *scheduler) run(stopped context.Context, j *job) {
	defer s.wg.Done()
	defer j.busy.Store(false)
	t := j.t
	ctx, cancel := context.WithTimeout(stopped, probeLimit(&t.Module.Options))
	defer cancel()
	o := s.e.lookup(ctx, t.Host, t.Module)
	if stopped.Err() != nil {
		return // stopped (shutdown, reload) before it began: nothing to count
	}
	if j.h == nil || j.addr != o.addr {
		ip := ""
		if o.addr.IsValid() {
			ip = o.addr.String()
		}
		j.h, j.addr = s.set.handles(t, ip), o.addr
	}
	h := j.h
	h.request()
	if o.err == nil {
		s.e.probeAddr(ctx, &o, t.Port, &t.Module.Options)
	}
	if o.res == nil {
		if stopped.Err() != nil {
			// Interrupted (shutdown, reload): begun, but no verdict.
			return
		}
		h.respond("error")
		s.e.o.Logger.Debug("background probe without a verdict", "host", t.Host, "port", t.Port, "module", t.Module.Name, "err", o.err)
		return
	}
	s.count(h, o.res)
}

// count counts a probe's result in its series.
func (s *scheduler) count(h *handles, r *probe.Result) {
	h.respond(resultName(r))
	if (r.State == probe.StateOpen || r.State == probe.StateClosed) && r.KernelClock && r.RTT > 0 && !r.MaybeRetransmit {
		h.observe(s.set, r.RTT.Seconds())
	}
	if r.Close != nil {
		h.closed(r.Close.Pattern)
	}
}

// jobQueue is a min-heap of jobs by next time.
type jobQueue []*job

func (q jobQueue) Len() int           { return len(q) }
func (q jobQueue) Less(i, k int) bool { return q[i].next.Before(q[k].next) }
func (q jobQueue) Swap(i, k int)      { q[i], q[k] = q[k], q[i] }
func (q *jobQueue) Push(x any)        { *q = append(*q, x.(*job)) }
func (q *jobQueue) Pop() any {
	old := *q
	j := old[len(old)-1]
	*q = old[:len(old)-1]
	return j
}

// labelsOf returns a metric's labels.
func labelsOf(m prometheus.Metric) prometheus.Labels {
	var d dto.Metric
	if m.Write(&d) != nil {
		return prometheus.Labels{}
	}
	l := prometheus.Labels{}
	for _, p := range d.GetLabel() {
		l[p.GetName()] = p.GetValue()
	}
	return l
}

package trace

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// Prober sends one probe and returns its result: a *probe.Client.
type Prober interface {
	Probe(ctx context.Context, dst netip.AddrPort, opts *probe.ProbeOptions) (*probe.Result, error)
}

// Defaults and bounds of Config.
const (
	DefaultMaxHops   = 30
	DefaultQueries   = 3
	DefaultWait      = time.Second
	DefaultInterval  = time.Second
	DefaultMaxSilent = 3
	MaxQueries       = 10
)

// Config says how a trace is made. The zero value of each field means its
// default.
type Config struct {
	// FirstHop is the first TTL probed (1).
	FirstHop int
	// MaxHops is the last TTL probed (DefaultMaxHops, at most 255).
	MaxHops int
	// Queries is how many probes each hop gets (DefaultQueries, at most
	// MaxQueries).
	Queries int
	// Wait is how long each probe waits for its answer (DefaultWait).
	Wait time.Duration
	// Interval is the least time between two probes to one hop
	// (DefaultInterval): Linux routers answer about one ICMP error per
	// second to each source after a burst of six.
	Interval time.Duration
	// MaxSilent is how many hops in a row may answer nothing before the
	// trace stops (DefaultMaxSilent).
	MaxSilent int
	// SYN says how the SYN is made: its TOS, Window, ECN, Options,
	// NoOptions and Source. Its Mode, Timeout, TTL, SourcePort and
	// Packets are the trace's own.
	SYN probe.ProbeOptions
	// OnHop, if set, is called with each hop once no probe is left for
	// it, in TTL order.
	OnHop func(*Hop)
}

// Reply is one probe of a hop and what answered it.
type Reply struct {
	Sent     time.Time
	ISN      uint32
	State    probe.State // filtered with ReasonTimeout: no answer
	Reason   string
	From     netip.Addr
	RTT      time.Duration
	Kernel   bool // RTT from kernel timestamps
	ICMPType uint8
	ICMPCode uint8
	QuoteLen int // bytes of quote in an ICMP error
}

// Answered reports whether anything answered the probe.
func (r *Reply) Answered() bool { return r.From.IsValid() }

// TimeExceeded reports whether a router answered that the TTL ran out.
func (r *Reply) TimeExceeded() bool {
	if r.From.Is4() {
		return r.ICMPType == wire.ICMPv4TimeExceeded
	}
	return r.ICMPType == wire.ICMPv6TimeExceeded
}

// Final reports whether the reply ends the trace: a SYN-ACK, a RST, or an
// ICMP error other than time exceeded.
func (r *Reply) Final() bool { return r.Answered() && !r.TimeExceeded() }

// HopChange is a difference seen in a hop's quote, with where it was
// made: between hop After (0: this host) and the hop that first showed it.
type HopChange struct {
	Change
	After int
	New   bool // first seen at this hop
}

// Hop is what one TTL's probes found.
type Hop struct {
	TTL     int
	Replies []Reply
	From    netip.Addr   // the first to answer; invalid if none did
	Others  []netip.Addr // others that answered at this TTL
	// Quote compares the fullest quote of the hop with the SYN sent; nil
	// when no ICMP error with a usable quote came.
	Quote    *Comparison
	QuoteErr error // why a quote could not be compared, if none could
	Changes  []HopChange
	// Varies: quotes at this hop showed different changes.
	Varies bool
}

// Answered returns how many of the hop's probes were answered.
func (h *Hop) Answered() int {
	n := 0
	for i := range h.Replies {
		if h.Replies[i].Answered() {
			n++
		}
	}
	return n
}

// Final returns the hop's first reply that ends the trace, or nil.
func (h *Hop) Final() *Reply {
	for i := range h.Replies {
		if h.Replies[i].Final() {
			return &h.Replies[i]
		}
	}
	return nil
}

// SynAck is the destination's SYN-ACK, compared with the SYN sent.
type SynAck struct {
	Flags   wire.TCPFlags
	Window  uint16
	Options wire.SYNOptions
	TTL     uint8
	TOS     uint8
	// Changes: its MSS, SACK-permitted and timestamps options, the
	// presence of window scaling, and ECN, against our SYN's (an MSS
	// below ours: the server's own, or a clamp on the way back).
	Changes []Change
}

// PathChange is a change to the SYN and where it was made: between hop
// After (0: this host), whose router is AfterFrom, and hop At, whose
// router is AtFrom.
type PathChange struct {
	Change
	After, At         int
	AfterFrom, AtFrom netip.Addr
}

// Report is a finished trace.
type Report struct {
	Target  netip.AddrPort
	Src     netip.Addr
	SrcPort uint16 // the one source port of every probe
	SYN     []byte // the first SYN sent (TTL FirstHop)
	Hops    []Hop
	// The destination's verdict: open (SYN-ACK), closed (RST), filtered
	// with an ICMP reason (from End's router or host, From), or filtered
	// with ReasonTimeout when no hop gave a final answer.
	State  probe.State
	Reason string
	End    int
	From   netip.Addr
	// LastHop is the last TTL that was answered at all (0: none), by
	// LastFrom.
	LastHop  int
	LastFrom netip.Addr
	SynAck   *SynAck
	Changes  []PathChange
	Probes   int
	Duration time.Duration
}

// ErrSend is wrapped by the error of a trace whose SYN this host refused
// to send (probe.StateError: its routes, its firewall).
var ErrSend = errors.New("trace: the SYN could not be sent")

// check completes cfg's defaults and checks its bounds.
func (cfg *Config) check() error {
	if cfg.FirstHop == 0 {
		cfg.FirstHop = 1
	}
	if cfg.MaxHops == 0 {
		cfg.MaxHops = DefaultMaxHops
	}
	if cfg.Queries == 0 {
		cfg.Queries = DefaultQueries
	}
	if cfg.Wait == 0 {
		cfg.Wait = DefaultWait
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.MaxSilent == 0 {
		cfg.MaxSilent = DefaultMaxSilent
	}
	switch {
	case cfg.MaxHops < 1 || cfg.MaxHops > 255:
		return fmt.Errorf("trace: max hops %d: want 1 to 255", cfg.MaxHops)
	case cfg.FirstHop < 1 || cfg.FirstHop > cfg.MaxHops:
		return fmt.Errorf("trace: first hop %d: want 1 to max hops (%d)", cfg.FirstHop, cfg.MaxHops)
	case cfg.Queries < 1 || cfg.Queries > MaxQueries:
		return fmt.Errorf("trace: %d queries per hop: want 1 to %d", cfg.Queries, MaxQueries)
	case cfg.Wait < 0 || cfg.Interval < 0:
		return errors.New("trace: negative wait or interval")
	case cfg.MaxSilent < 1 || cfg.MaxSilent > 255:
		return fmt.Errorf("trace: %d silent hops: want 1 to 255", cfg.MaxSilent)
	}
	return nil
}

// tracer is one trace in progress.
type tracer struct {
	p    Prober
	dst  netip.AddrPort
	cfg  Config
	rep  Report
	hops map[int]*Hop
	last map[int]time.Time // when each hop was last probed
	// best quote per hop, by level then length, and the changes of the
	// first quote compared (Varies)
	quoteLevel map[int]Level
	first      map[int]*Comparison
	emitted    int // hops up to this TTL were given to OnHop
	start      time.Time
}

// Run traces the path to dst: SYNs on one 5-tuple (Paris traceroute's
// rule, so that load balancers keep them on one path) with TTLs from
// cfg.FirstHop up, each hop cfg.Queries times, until the destination's
// verdict (SYN-ACK, RST, or an ICMP error other than time exceeded),
// cfg.MaxSilent hops in a row without an answer, or cfg.MaxHops. Each
// hop's fullest quote is compared with the SYN sent (Compare), and every
// change is placed between the last hop whose quote did not show it and
// the first that did.
//
// The first round walks the TTLs up one probe at a time; each further
// round probes again every hop up to the destination (or up to the first
// silent hop after the last answer), no sooner than cfg.Interval after
// that hop's last probe. At most cfg.MaxHops*cfg.Queries probes are
// sent, each waiting cfg.Wait at most.
//
// It returns an error, with the report so far, if ctx ends (ctx's error),
// if p fails, or if this host refuses to send a SYN (wrapping ErrSend).
func Run(ctx context.Context, p Prober, dst netip.AddrPort, cfg *Config) (*Report, error) {
	t := &tracer{p: p, dst: dst, hops: map[int]*Hop{}, last: map[int]time.Time{},
		quoteLevel: map[int]Level{}, first: map[int]*Comparison{}, start: time.Now()}
	if cfg != nil {
		t.cfg = *cfg
	}
	if err := t.cfg.check(); err != nil {
		return nil, err
	}
	t.rep.Target = dst
	t.emitted = t.cfg.FirstHop - 1
	err := t.run(ctx)
	t.finish()
	return &t.rep, err
}

func (t *tracer) run(ctx context.Context) error {
	cfg := &t.cfg
	stop := cfg.FirstHop - 1
	silent := 0
	lastAnswer := 0
	for ttl := cfg.FirstHop; ttl <= cfg.MaxHops; ttl++ {
		r, err := t.probe(ctx, ttl)
		if err != nil {
			return err
		}
		stop = ttl
		if cfg.Queries == 1 {
			t.emit(ttl)
		}
		if r.Final() {
			t.rep.End = ttl
			break
		}
		if r.Answered() {
			silent, lastAnswer = 0, ttl
		} else if silent++; silent >= cfg.MaxSilent {
			break
		}
	}
	if t.rep.End == 0 {
		// Later rounds go as far as the first silent hop after the last
		// that answered: a probe lost there may have been the one that
		// would have reached further.
		stop = min(stop, max(lastAnswer+1, cfg.FirstHop))
	}
	for round := 2; round <= cfg.Queries; round++ {
		for ttl := cfg.FirstHop; ttl <= stop; ttl++ {
			r, err := t.probe(ctx, ttl)
			if err != nil {
				return err
			}
			if r.Final() && (t.rep.End == 0 || ttl < t.rep.End) {
				t.rep.End, stop = ttl, ttl
			}
			if round == cfg.Queries {
				t.emit(ttl)
			}
		}
	}
	return nil
}

// probe sends one probe with TTL ttl, after the hop's interval.
func (t *tracer) probe(ctx context.Context, ttl int) (*Reply, error) {
	if last, ok := t.last[ttl]; ok {
		if d := time.Until(last.Add(t.cfg.Interval)); d > 0 {
			tm := time.NewTimer(d)
			select {
			case <-ctx.Done():
				tm.Stop()
				return nil, ctx.Err()
			case <-tm.C:
			}
		}
	}
	o := t.cfg.SYN
	o.Mode, o.Timeout, o.TTL, o.SourcePort, o.Packets = probe.ModeRST, t.cfg.Wait, uint8(ttl), t.rep.SrcPort, true
	t.last[ttl] = time.Now()
	res, err := t.p.Probe(ctx, t.dst, &o)
	if err != nil {
		return nil, err
	}
	t.rep.Probes++
	if res.State == probe.StateError {
		return nil, fmt.Errorf("%w (%s, TTL %d): %v", ErrSend, res.Reason, ttl, res.Err)
	}
	if t.rep.SrcPort == 0 {
		t.rep.SrcPort, t.rep.Src, t.rep.SYN = res.SrcPort, res.Target.Src, res.SYN
	}
	h := t.hops[ttl]
	if h == nil {
		h = &Hop{TTL: ttl}
		t.hops[ttl] = h
	}
	r := Reply{Sent: res.Sent, ISN: res.ISN, State: res.State, Reason: res.Reason}
	if res.Answered() {
		r.From, r.RTT, r.Kernel = res.From, res.RTT, res.KernelClock
		r.ICMPType, r.ICMPCode, r.QuoteLen = res.ICMPType, res.ICMPCode, len(res.Quote)
		switch {
		case !h.From.IsValid():
			h.From = r.From
		case r.From != h.From && !slices.Contains(h.Others, r.From):
			h.Others = append(h.Others, r.From)
		}
	}
	h.Replies = append(h.Replies, r)
	if res.IsICMP() {
		t.quote(h, res)
	}
	if res.State == probe.StateOpen && t.rep.SynAck == nil {
		t.rep.SynAck = synAck(res)
	}
	return &h.Replies[len(h.Replies)-1], nil
}

// quote compares res's quote with its SYN and keeps the fullest for h.
func (t *tracer) quote(h *Hop, res *probe.Result) {
	c, err := Compare(res.SYN, res.Quote)
	if err != nil {
		if h.Quote == nil {
			h.QuoteErr = err
		}
		return
	}
	if f, ok := t.first[h.TTL]; !ok {
		t.first[h.TTL] = &c
	} else if disagree(f, &c) {
		h.Varies = true
	}
	if h.Quote == nil || c.Level > t.quoteLevel[h.TTL] || c.Level == t.quoteLevel[h.TTL] && c.Len > h.Quote.Len {
		h.Quote, h.QuoteErr, t.quoteLevel[h.TTL] = &c, nil, c.Level
	}
}

// disagree reports whether two quotes of one hop show different values
// of a field both hold.
func disagree(a, b *Comparison) bool {
	seen := func(c *Comparison, field string) string {
		for _, ch := range c.Changes {
			if ch.Field == field {
				return ch.Seen
			}
		}
		return "" // as sent
	}
	for _, c := range [2]*Comparison{a, b} {
		for _, ch := range c.Changes {
			if a.Covers(ch.Field) && b.Covers(ch.Field) && seen(a, ch.Field) != seen(b, ch.Field) {
				return true
			}
		}
	}
	return false
}

// synAck compares a SYN-ACK's options with those of the SYN it answers.
func synAck(res *probe.Result) *SynAck {
	s := &SynAck{Flags: res.Flags, Window: res.Window, Options: res.Options, TTL: res.TTL, TOS: res.TOS}
	var sent wire.Packet
	if wire.ParseChecksums(res.SYN, &sent, wire.ChecksumsNotReady) != nil {
		return s
	}
	so, ro := sent.Options, res.Options
	add := func(field, a, b string) {
		if a != b {
			s.Changes = append(s.Changes, Change{field, a, b})
		}
	}
	num := func(present bool, v int) string {
		if !present {
			return "absent"
		}
		return strconv.Itoa(v)
	}
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "absent"
	}
	add("mss", num(so.MSS != 0, int(so.MSS)), num(ro.MSS != 0, int(ro.MSS)))
	// Each side picks its own window scale: only its presence compares.
	add("wscale", yes(so.WScale >= 0), yes(ro.WScale >= 0))
	add("sack-perm", yes(so.SACKPermitted), yes(ro.SACKPermitted))
	add("ts", yes(so.Timestamps), yes(ro.Timestamps))
	if sent.Flags&wire.FlagEce != 0 {
		add("ecn", "asked", map[bool]string{true: "agreed", false: "refused"}[res.Flags&wire.FlagEce != 0])
	}
	return s
}

// emit hands the hops up to ttl to OnHop, in order.
func (t *tracer) emit(ttl int) {
	for t.emitted < ttl {
		t.emitted++
		h := t.hops[t.emitted]
		if h == nil {
			continue
		}
		t.attribute(h)
		if t.cfg.OnHop != nil {
			t.cfg.OnHop(h)
		}
	}
}

// attribute places each change of h's quote: New when the nearest earlier
// hop whose quote covers the field did not show it, After that hop's TTL
// (or, for a change already shown there, where it was made).
func (t *tracer) attribute(h *Hop) {
	if h.Quote == nil {
		return
	}
	h.Changes = h.Changes[:0]
	for _, ch := range h.Quote.Changes {
		hc := HopChange{Change: ch, New: true}
		for k := h.TTL - 1; k >= t.cfg.FirstHop; k-- {
			prev := t.hops[k]
			if prev == nil || prev.Quote == nil || !prev.Quote.Covers(ch.Field) {
				continue
			}
			hc.After = k
			for _, pc := range prev.Changes {
				if pc.Change == ch {
					hc.After, hc.New = pc.After, false
				}
			}
			break
		}
		h.Changes = append(h.Changes, hc)
	}
}

// finish fills in the report's hops, verdict and changes.
func (t *tracer) finish() {
	ttls := make([]int, 0, len(t.hops))
	for ttl := range t.hops {
		if t.rep.End == 0 || ttl <= t.rep.End {
			ttls = append(ttls, ttl)
		}
	}
	slices.Sort(ttls)
	if len(ttls) > 0 {
		t.emit(ttls[len(ttls)-1])
	}
	for _, ttl := range ttls {
		h := t.hops[ttl]
		t.rep.Hops = append(t.rep.Hops, *h)
		if h.Answered() > 0 {
			t.rep.LastHop, t.rep.LastFrom = ttl, h.From
		}
		for _, c := range h.Changes {
			if c.New {
				pc := PathChange{Change: c.Change, After: c.After, At: ttl, AtFrom: h.From}
				if a := t.hops[c.After]; a != nil {
					pc.AfterFrom = a.From
				}
				t.rep.Changes = append(t.rep.Changes, pc)
			}
		}
	}
	t.rep.State, t.rep.Reason = probe.StateFiltered, probe.ReasonTimeout
	if h := t.hops[t.rep.End]; t.rep.End > 0 && h != nil {
		if f := h.Final(); f != nil {
			t.rep.State, t.rep.Reason, t.rep.From = f.State, f.Reason, f.From
		}
	}
	t.rep.Duration = time.Since(t.start)
}

package trace

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// router is one hop of a fakePath.
type router struct {
	addr netip.Addr
	// quote is how many bytes of a packet it quotes (0: all of it).
	quote int
	// forward changes a packet it forwards (its forward hook).
	forward func(ip, tcp []byte)
	// drop or reject (admin-prohibited) what it would forward.
	drop, reject bool
	// silent: it sends no ICMP errors.
	silent bool
}

// fakePath is a Prober over a chain of routers to a host that answers
// SYN-ACK (or RST when closed), as Linux routers would.
type fakePath struct {
	mu      sync.Mutex
	routers []router
	closed  bool
	synack  wire.SYNOptions
	sent    []probe.ProbeOptions
	isn     uint32
	lost    map[int]int // TTL -> probes to lose (the first ones)
	times   map[uint8][]time.Time
}

func (f *fakePath) Probe(ctx context.Context, dst netip.AddrPort, o *probe.ProbeOptions) (*probe.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, *o)
	if f.times == nil {
		f.times = map[uint8][]time.Time{}
	}
	f.times[o.TTL] = append(f.times[o.TTL], time.Now())
	f.isn += 0x01000193
	src, sport := src4, uint16(61000)
	if dst.Addr().Is6() {
		src = src6
	}
	if o.SourcePort != 0 {
		sport = o.SourcePort
	}
	opts := make([]byte, wire.MaxOptionsSize)
	so := wire.SYNOptions{MSS: 1460, WScale: 7, SACKPermitted: true, Timestamps: true, TSVal: 9}
	n := so.Encode(opts)
	flags := wire.FlagSyn
	if o.ECN {
		flags |= wire.FlagEce | wire.FlagCwr
	}
	s := wire.Segment{Src: src, Dst: dst.Addr(), TTL: o.TTL, ID: uint16(f.isn >> 16), DF: true, SrcPort: sport, DstPort: dst.Port(),
		Seq: f.isn, Flags: flags, Window: 64240, Options: opts[:n]}
	syn := make([]byte, s.Len())
	if _, err := s.Build(syn); err != nil {
		return nil, err
	}
	r := &probe.Result{Target: &probe.Target{Addr: dst.Addr(), Port: dst.Port(), Src: src}, SrcPort: sport, ISN: f.isn,
		Sent: time.Now(), SYN: syn, State: probe.StateFiltered, Reason: probe.ReasonTimeout}
	if f.lost[int(o.TTL)] > 0 {
		f.lost[int(o.TTL)]--
		return r, nil
	}
	pkt := append([]byte(nil), syn...)
	icmp := func(rt router, typ, code uint8, reason string) (*probe.Result, error) {
		if rt.silent {
			return r, nil
		}
		q := quoted(pkt, nil)
		if rt.quote > 0 && rt.quote < len(q) {
			q = q[:rt.quote]
		}
		r.From, r.ICMPType, r.ICMPCode, r.Quote, r.Reason = rt.addr, typ, code, q, reason
		r.RTT, r.KernelClock = time.Duration(o.TTL)*time.Microsecond, true
		return r, nil
	}
	for i, rt := range f.routers {
		if int(o.TTL) == i+1 {
			return icmp(rt, wire.ICMPv4TimeExceeded, 0, "icmp-ttl-exceeded")
		}
		switch {
		case rt.drop:
			return r, nil
		case rt.reject:
			return icmp(rt, wire.ICMPv4DestinationUnreachable, 13, "icmp-admin-prohibited")
		}
		if rt.forward != nil {
			rt.forward(pkt[:20], pkt[20:])
		}
	}
	r.From, r.RTT, r.KernelClock = dst.Addr(), 10*time.Microsecond, true
	if f.closed {
		r.State, r.Reason, r.Flags = probe.StateClosed, probe.ReasonRST, wire.FlagRst|wire.FlagAck
		return r, nil
	}
	r.State, r.Reason, r.Flags, r.Options = probe.StateOpen, probe.ReasonSYNACK, wire.FlagSyn|wire.FlagAck, f.synack
	return r, nil
}

var (
	r1 = netip.MustParseAddr("198.18.0.2")
	r2 = netip.MustParseAddr("198.18.0.10")
	r3 = netip.MustParseAddr("198.18.0.18")
	r4 = netip.MustParseAddr("198.18.0.26")
)

func mssTo(v uint16) func(ip, tcp []byte) {
	return func(ip, tcp []byte) { binary.BigEndian.PutUint16(tcp[optMSS+2:], v) }
}

func fast(cfg Config) *Config {
	cfg.Interval, cfg.Wait = time.Millisecond, time.Millisecond
	return &cfg
}

func TestRunChangesAtTheirHop(t *testing.T) {
	f := &fakePath{
		routers: []router{{addr: r1}, {addr: r2, forward: mssTo(1200)}, {addr: r3, quote: 28}, {addr: r4, forward: func(ip, tcp []byte) {
			wire.TCP(tcp).SetWindow(1024)
		}}},
		synack: wire.SYNOptions{MSS: 1200, WScale: 7, SACKPermitted: true, Timestamps: true},
	}
	var hops []int
	cfg := fast(Config{OnHop: func(h *Hop) { hops = append(hops, h.TTL) }})
	rep, err := Run(context.Background(), f, netip.AddrPortFrom(dst4, 80), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(hops, []int{1, 2, 3, 4, 5}) || len(rep.Hops) != 5 {
		t.Fatalf("OnHop %v, %d hops", hops, len(rep.Hops))
	}
	if rep.State != probe.StateOpen || rep.End != 5 || rep.From != dst4 || rep.LastHop != 5 || rep.Probes != 15 {
		t.Errorf("verdict %v %s at %d from %v, last %d, %d probes", rep.State, rep.Reason, rep.End, rep.From, rep.LastHop, rep.Probes)
	}
	// Hop 3 quotes 8 bytes: the MSS change is first seen at hop 4, made
	// after hop 2; the window change (r4's forward hook) at no hop.
	want := []PathChange{{Change: Change{"mss", "1460", "1200"}, After: 2, At: 4, AfterFrom: r2, AtFrom: r4}}
	if !reflect.DeepEqual(rep.Changes, want) {
		t.Errorf("changes %+v, want %+v", rep.Changes, want)
	}
	if h := rep.Hops[2]; !h.Quote.Partial() || h.Quote.Len != 28 || len(h.Changes) != 0 {
		t.Errorf("hop 3: %+v", h.Quote)
	}
	if h := rep.Hops[1]; h.From != r2 || h.Answered() != 3 || len(h.Changes) != 0 || h.Quote.Level != LevelWhole {
		t.Errorf("hop 2: %+v", h)
	}
	if sa := rep.SynAck; sa == nil || !reflect.DeepEqual(sa.Changes, []Change{{"mss", "1460", "1200"}}) {
		t.Errorf("SYN-ACK %+v", rep.SynAck)
	}
	// One 5-tuple: every probe after the first on its port.
	for i, o := range f.sent {
		if i > 0 && o.SourcePort != 61000 || !o.Packets || o.Mode != probe.ModeRST {
			t.Errorf("probe %d: %+v", i, o)
		}
	}
}

func TestRunStops(t *testing.T) {
	for _, tc := range []struct {
		name           string
		f              *fakePath
		cfg            Config
		state          probe.State
		reason         string
		end, last      int
		lastFrom, from netip.Addr
		hops, probes   int
	}{
		{"drop after r3", &fakePath{routers: []router{{addr: r1}, {addr: r2}, {addr: r3, drop: true}}}, Config{},
			probe.StateFiltered, probe.ReasonTimeout, 0, 3, r3, netip.Addr{}, 6, 3 + 3 + 2*4},
		{"admin-prohibited from r3", &fakePath{routers: []router{{addr: r1}, {addr: r2}, {addr: r3, reject: true}}}, Config{},
			probe.StateFiltered, "icmp-admin-prohibited", 4, 4, r3, r3, 4, 12},
		{"closed", &fakePath{routers: []router{{addr: r1}}, closed: true}, Config{Queries: 1},
			probe.StateClosed, probe.ReasonRST, 2, 2, dst4, dst4, 2, 2},
		{"silent router in the middle", &fakePath{routers: []router{{addr: r1}, {addr: r2, silent: true}, {addr: r3}}}, Config{Queries: 2},
			probe.StateOpen, probe.ReasonSYNACK, 4, 4, dst4, dst4, 4, 8},
		{"max hops", &fakePath{routers: []router{{addr: r1}, {addr: r2}, {addr: r3}}}, Config{MaxHops: 2},
			probe.StateFiltered, probe.ReasonTimeout, 0, 2, r2, netip.Addr{}, 2, 6},
		{"lost in round 1", &fakePath{routers: []router{{addr: r1}}, lost: map[int]int{2: 1}}, Config{MaxSilent: 1},
			probe.StateOpen, probe.ReasonSYNACK, 2, 2, dst4, dst4, 2, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := Run(context.Background(), tc.f, netip.AddrPortFrom(dst4, 80), fast(tc.cfg))
			if err != nil {
				t.Fatal(err)
			}
			if rep.State != tc.state || rep.Reason != tc.reason || rep.End != tc.end || rep.LastHop != tc.last ||
				rep.LastFrom != tc.lastFrom || rep.From != tc.from || len(rep.Hops) != tc.hops || rep.Probes != tc.probes {
				t.Errorf("%v %s end %d from %v, last %d %v, %d hops, %d probes; want %v %s end %d from %v, last %d %v, %d hops, %d probes",
					rep.State, rep.Reason, rep.End, rep.From, rep.LastHop, rep.LastFrom, len(rep.Hops), rep.Probes,
					tc.state, tc.reason, tc.end, tc.from, tc.last, tc.lastFrom, tc.hops, tc.probes)
			}
		})
	}
}

func TestRunPacesEachHop(t *testing.T) {
	f := &fakePath{routers: []router{{addr: r1}, {addr: r2}}}
	cfg := Config{Interval: 30 * time.Millisecond, Wait: time.Millisecond}
	if _, err := Run(context.Background(), f, netip.AddrPortFrom(dst4, 80), &cfg); err != nil {
		t.Fatal(err)
	}
	// A lower bound that Run enforces, not a timing the machine may miss:
	// probes to one hop are at least Interval apart.
	for ttl, ts := range f.times {
		if len(ts) != 3 {
			t.Errorf("hop %d: %d probes", ttl, len(ts))
		}
		for i := 1; i < len(ts); i++ {
			if d := ts[i].Sub(ts[i-1]); d < cfg.Interval {
				t.Errorf("hop %d: probes %d and %d %v apart", ttl, i-1, i, d)
			}
		}
	}
}

func TestRunErrors(t *testing.T) {
	if _, err := Run(context.Background(), &fakePath{}, netip.AddrPortFrom(dst4, 80), &Config{Queries: 11}); err == nil {
		t.Error("11 queries taken")
	}
	if _, err := Run(context.Background(), &fakePath{}, netip.AddrPortFrom(dst4, 80), &Config{MaxHops: 256}); err == nil {
		t.Error("256 hops taken")
	}
	if _, err := Run(context.Background(), &fakePath{}, netip.AddrPortFrom(dst4, 80), &Config{FirstHop: 5, MaxHops: 4}); err == nil {
		t.Error("first hop beyond max hops taken")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f := &fakePath{routers: []router{{addr: r1}}}
	if _, err := Run(ctx, f, netip.AddrPortFrom(dst4, 80), &Config{Interval: time.Hour, Wait: time.Millisecond}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

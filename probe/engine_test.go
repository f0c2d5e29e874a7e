package probe_test

import (
	"context"
	"net/netip"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/probe/probetest"
	"github.com/synprobe/synprobe/rawsock/wire"
)

var (
	src4   = netip.MustParseAddr("198.18.0.1")
	dst4   = netip.MustParseAddr("198.18.0.2")
	rtr4   = netip.MustParseAddr("198.18.5.1")
	src6   = netip.MustParseAddr("2001:db8::1")
	dst6   = netip.MustParseAddr("2001:db8::2")
	rtr6   = netip.MustParseAddr("2001:db8:5::1")
	linuxO = wire.SYNOptions{MSS: 1460, WScale: 7, SACKPermitted: true, Timestamps: true, TSVal: 1, TSEcr: 0}
)

const rtt = 41237 * time.Nanosecond

// runProbes runs count probes to each target over a fake network and
// returns the results.
func runProbes(t *testing.T, c *probetest.Conn, count int, targets ...probe.Target) ([]probe.Result, *probe.Prober) {
	t.Helper()
	cookie, err := wire.NewRandomCookie()
	if err != nil {
		t.Fatal(err)
	}
	var results []probe.Result
	p, err := probe.New(c, probe.Config{
		Targets:  targets,
		Count:    count,
		Interval: time.Millisecond,
		Timeout:  30 * time.Millisecond,
		PortLo:   61000,
		PortHi:   61511,
		Options:  &linuxO,
		Cookie:   cookie,
		OnResult: func(r *probe.Result) { results = append(results, *r) },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatal("Run did not return by itself")
	}
	c.Close()
	return results, p
}

func target(dst netip.Addr, port uint16) probe.Target {
	src := src4
	if dst.Is6() {
		src = src6
	}
	return probe.Target{Name: dst.String(), Addr: dst, Port: port, Src: src}
}

func TestVerdicts(t *testing.T) {
	for _, tt := range []struct {
		name    string
		dst     netip.Addr
		respond probetest.Responder
		state   probe.State
		reason  string
		from    netip.Addr
	}{
		{"open/v4", dst4, synack, probe.StateOpen, "syn-ack", dst4},
		{"open/v6", dst6, synack, probe.StateOpen, "syn-ack", dst6},
		{"closed/v4", dst4, rst, probe.StateClosed, "rst", dst4},
		{"closed/v6", dst6, rst, probe.StateClosed, "rst", dst6},
		{"admin-prohibited/v4", dst4, icmp(rtr4, 3, 13), probe.StateFiltered, "icmp-admin-prohibited", rtr4},
		{"admin-prohibited/v6", dst6, icmp(rtr6, 1, 1), probe.StateFiltered, "icmp-admin-prohibited", rtr6},
		{"host-unreachable/v4", dst4, icmp(rtr4, 3, 1), probe.StateFiltered, "icmp-host-unreachable", rtr4},
		{"port-unreachable/v6", dst6, icmp(rtr6, 1, 4), probe.StateFiltered, "icmp-port-unreachable", rtr6},
		{"ttl-exceeded/v4", dst4, icmp(rtr4, 11, 0), probe.StateFiltered, "icmp-ttl-exceeded", rtr4},
		{"silence", dst4, nil, probe.StateFiltered, "timeout", netip.Addr{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := probetest.NewConn(tt.respond)
			res, p := runProbes(t, c, 1, target(tt.dst, 443))
			if len(res) != 1 {
				t.Fatalf("got %d results, want 1", len(res))
			}
			r := res[0]
			if r.State != tt.state || r.Reason != tt.reason || r.From != tt.from {
				t.Errorf("got %v/%s from %v, want %v/%s from %v", r.State, r.Reason, r.From, tt.state, tt.reason, tt.from)
			}
			if tt.respond != nil && (r.RTT != rtt || !r.KernelClock) {
				t.Errorf("RTT = %v kernel=%v, want exactly %v from kernel stamps", r.RTT, r.KernelClock, rtt)
			}
			if tt.respond == nil && r.RTT != 0 {
				t.Errorf("timeout has RTT %v", r.RTT)
			}
			s := p.Stats(0)
			if s.Sent != 1 || (tt.state == probe.StateOpen) != (s.Open == 1) {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

func synack(p *wire.Packet, _ []byte, _ uint32) []probetest.Reply {
	if p.Flags != wire.FlagSyn {
		return nil
	}
	return []probetest.Reply{{Packet: probetest.SYNACK(p, wire.SYNOptions{MSS: 1400, WScale: 9, SACKPermitted: true, Timestamps: true, TSVal: 777, TSEcr: p.Options.TSVal}), After: rtt}}
}

func rst(p *wire.Packet, _ []byte, _ uint32) []probetest.Reply {
	return []probetest.Reply{{Packet: probetest.RST(p), After: rtt}}
}

func icmp(router netip.Addr, typ, code uint8) probetest.Responder {
	return func(p *wire.Packet, b []byte, _ uint32) []probetest.Reply {
		return []probetest.Reply{{Packet: probetest.ICMPError(b, router, typ, code), After: rtt}}
	}
}

// TestOpenDetails checks the SYN on the wire, the SYN-ACK details in the
// result and the RST that frees the server's half-open connection.
func TestOpenDetails(t *testing.T) {
	c := probetest.NewConn(synack)
	res, _ := runProbes(t, c, 1, target(dst4, 443))
	r := res[0]
	if r.TTL != 61 || r.IPID != 0x1234 || !r.DF || r.Window != 65160 || r.Flags != wire.FlagSyn|wire.FlagAck {
		t.Errorf("reply header: ttl=%d id=%#x df=%v win=%d flags=%v", r.TTL, r.IPID, r.DF, r.Window, r.Flags)
	}
	want := wire.SYNOptions{MSS: 1400, WScale: 9, SACKPermitted: true, Timestamps: true, TSVal: 777}
	if r.Options.MSS != want.MSS || r.Options.WScale != want.WScale || !r.Options.SACKPermitted || !r.Options.Timestamps || r.Options.TSVal != 777 {
		t.Errorf("options %+v, want %+v", r.Options, want)
	}
	if hops, init := probe.Hops(r.TTL); hops != 3 || init != 64 {
		t.Errorf("Hops(61) = %d, %d", hops, init)
	}
	sent := c.Sent()
	if len(sent) != 2 {
		t.Fatalf("sent %d packets, want SYN and RST", len(sent))
	}
	var syn, reset wire.Packet
	if err := wire.Parse(sent[0], &syn); err != nil {
		t.Fatal(err)
	}
	if err := wire.Parse(sent[1], &reset); err != nil {
		t.Fatal(err)
	}
	if syn.Flags != wire.FlagSyn || syn.TTL != 64 || !syn.DF || syn.Window != 64240 || syn.DstPort != 443 ||
		syn.SrcPort < 61000 || syn.SrcPort > 61511 || syn.Seq != r.ISN || syn.SrcPort != r.SrcPort {
		t.Errorf("SYN: %+v", syn)
	}
	if o := syn.Options; o.MSS != 1460 || o.WScale != 7 || !o.SACKPermitted || !o.Timestamps {
		t.Errorf("SYN options: %+v", o)
	}
	if reset.Flags != wire.FlagRst || reset.Seq != r.ISN+1 || reset.SrcPort != syn.SrcPort || reset.DstPort != 443 || reset.Dst != dst4 {
		t.Errorf("RST: %+v", reset)
	}
}

// TestHostileReplies feeds replies that must not be taken for the probe's:
// each case's probe must time out.
func TestHostileReplies(t *testing.T) {
	mangle := func(f func(s *wire.Segment)) probetest.Responder {
		return func(p *wire.Packet, _ []byte, _ uint32) []probetest.Reply {
			if p.Flags != wire.FlagSyn {
				return nil
			}
			s := wire.Segment{
				Src: p.Dst, Dst: p.Src, TTL: 64,
				SrcPort: p.DstPort, DstPort: p.SrcPort,
				Seq: 1, Ack: p.Seq + 1,
				Flags: wire.FlagSyn | wire.FlagAck, Window: 1000,
			}
			f(&s)
			return []probetest.Reply{{Packet: probetest.Build(s), After: rtt}}
		}
	}
	for _, tt := range []struct {
		name    string
		respond probetest.Responder
	}{
		{"wrong ack", mangle(func(s *wire.Segment) { s.Ack++ })},
		{"ack of the ISN itself", mangle(func(s *wire.Segment) { s.Ack-- })},
		{"no ACK flag", mangle(func(s *wire.Segment) { s.Flags = wire.FlagSyn })},
		{"wrong source port", mangle(func(s *wire.Segment) { s.SrcPort++ })},
		{"wrong destination port", mangle(func(s *wire.Segment) { s.DstPort++ })},
		{"wrong source address", mangle(func(s *wire.Segment) { s.Src = rtr4 })},
		{"wrong destination address", mangle(func(s *wire.Segment) { s.Dst = rtr4 })},
		{"RST with wrong ack", mangle(func(s *wire.Segment) { s.Flags = wire.FlagRst | wire.FlagAck; s.Ack += 7 })},
		{"truncated SYN-ACK", func(p *wire.Packet, b []byte, id uint32) []probetest.Reply {
			r := synack(p, b, id)
			r[0].Packet = r[0].Packet[:30]
			return r
		}},
		{"ICMP quoting another seq", func(p *wire.Packet, b []byte, _ uint32) []probetest.Reply {
			q := append([]byte(nil), b...)
			q[24]++ // first byte of the TCP sequence number
			return []probetest.Reply{{Packet: probetest.ICMPError(q, rtr4, 3, 13)}}
		}},
		{"ICMP quote without seq", func(p *wire.Packet, b []byte, _ uint32) []probetest.Reply {
			e := probetest.ICMPError(b, rtr4, 3, 13)
			return []probetest.Reply{{Packet: e[:20+8+20+4]}}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res, _ := runProbes(t, probetest.NewConn(tt.respond), 1, target(dst4, 443))
			if len(res) != 1 || res[0].Reason != probe.ReasonTimeout {
				t.Errorf("got %+v, want one timeout", res)
			}
		})
	}
}

// TestDuplicatesAndStrays: a retransmitted SYN-ACK and strays around a
// good reply give exactly one result per probe.
func TestDuplicatesAndStrays(t *testing.T) {
	respond := func(p *wire.Packet, b []byte, id uint32) []probetest.Reply {
		if p.Flags != wire.FlagSyn {
			return nil
		}
		good := synack(p, b, id)[0]
		stray := probetest.RST(&wire.Packet{Src: p.Src, Dst: p.Dst, SrcPort: p.SrcPort, DstPort: p.DstPort, Seq: p.Seq + 99})
		return []probetest.Reply{{Packet: stray, After: rtt / 2}, {Packet: []byte{0x45, 0}}, good, good, {Packet: good.Packet, After: time.Second}}
	}
	res, p := runProbes(t, probetest.NewConn(respond), 3, target(dst4, 443), target(dst6, 22))
	if len(res) != 6 {
		t.Fatalf("got %d results, want 6", len(res))
	}
	for i := range 2 {
		if s := p.Stats(i); s.Sent != 3 || s.Open != 3 || s.Timeouts != 0 {
			t.Errorf("target %d: %+v", i, s)
		}
	}
	for _, r := range res {
		if r.RTT != rtt {
			t.Errorf("probe %d: RTT %v, want %v (the first SYN-ACK)", r.Seq, r.RTT, rtt)
		}
	}
}

// TestUserClockFallback: without transmit stamps the RTT comes from the
// user-space clock, and the result says so.
func TestUserClockFallback(t *testing.T) {
	c := probetest.NewConn(synack)
	c.NoTxStamps = true
	res, _ := runProbes(t, c, 1, target(dst4, 443))
	if res[0].KernelClock || res[0].RTT <= 0 || res[0].RTT > 5*time.Second {
		t.Errorf("RTT %v kernel=%v, want a positive user-clock RTT", res[0].RTT, res[0].KernelClock)
	}
}

// TestCancel: cancelling the context wakes a Run blocked in Recv with an
// hour to its next deadline (the SYN's timeout, the next round).
func TestCancel(t *testing.T) {
	c := probetest.NewConn(nil)
	cookie, _ := wire.NewRandomCookie()
	p, err := probe.New(c, probe.Config{
		Targets: []probe.Target{target(dst4, 1)},
		PortLo:  61000, PortHi: 61000,
		Interval: time.Hour, Timeout: time.Hour,
		Cookie: cookie,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	for len(c.Sent()) == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(10 * time.Millisecond) // past the poll after the send: in Recv
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run ignored cancellation")
	}
	if s := p.Stats(0); s.Sent != 1 || s.Interrupted != 1 {
		t.Errorf("%d sent, %d interrupted; want the one probe interrupted", s.Sent, s.Interrupted)
	}
}

func TestNewRejects(t *testing.T) {
	cookie, _ := wire.NewRandomCookie()
	good := probe.Config{Targets: []probe.Target{target(dst4, 1)}, PortLo: 1, PortHi: 2, Cookie: cookie}
	if _, err := probe.New(probetest.NewConn(nil), good); err != nil {
		t.Fatalf("the good config: %v", err)
	}
	for name, f := range map[string]func(c *probe.Config){
		"no targets":       func(c *probe.Config) { c.Targets = nil },
		"negative count":   func(c *probe.Config) { c.Count = -1 },
		"negative timeout": func(c *probe.Config) { c.Timeout = -1 },
		"unknown mode":     func(c *probe.Config) { c.Mode = 7 },
		"bad ports":        func(c *probe.Config) { c.PortLo = 5 },
		"no source port":   func(c *probe.Config) { c.PortLo, c.PortHi = 0, 0 },
		"no cookie":        func(c *probe.Config) { c.Cookie = wire.Cookie{} },
		"mixed families":   func(c *probe.Config) { c.Targets = []probe.Target{{Addr: dst4, Src: src6, Port: 1}} },
		"no source":        func(c *probe.Config) { c.Targets = []probe.Target{{Addr: dst4, Port: 1}} },
	} {
		c := good
		f(&c)
		if _, err := probe.New(probetest.NewConn(nil), c); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
}

// TestMaybeRetransmit: a SYN-ACK that comes a second or more after the SYN
// may be the server's retransmission: it is flagged and kept out of the RTT
// statistics, but counted; RSTs are never flagged.
func TestMaybeRetransmit(t *testing.T) {
	late := func(after time.Duration, reply func(p *wire.Packet) []byte) probetest.Responder {
		return func(p *wire.Packet, _ []byte, _ uint32) []probetest.Reply {
			if p.Flags != wire.FlagSyn {
				return nil
			}
			return []probetest.Reply{{Packet: reply(p), After: after}}
		}
	}
	sa := func(p *wire.Packet) []byte { return probetest.SYNACK(p, wire.SYNOptions{MSS: 1460, WScale: -1}) }
	for _, tt := range []struct {
		name  string
		after time.Duration
		reply func(p *wire.Packet) []byte
		flag  bool
	}{
		{"SYN-ACK at 999 ms", 999 * time.Millisecond, sa, false},
		{"SYN-ACK at 1 s", time.Second, sa, true},
		{"SYN-ACK at 3.2 s", 3200 * time.Millisecond, sa, true},
		{"RST at 1.5 s", 1500 * time.Millisecond, probetest.RST, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res, p := runProbes(t, probetest.NewConn(late(tt.after, tt.reply)), 3, target(dst4, 443))
			s := p.Stats(0)
			for _, r := range res {
				if r.MaybeRetransmit != tt.flag || r.RTT != tt.after {
					t.Errorf("rtt %v flagged %v, want %v", r.RTT, r.MaybeRetransmit, tt.flag)
				}
			}
			sum := s.RTT
			if tt.flag {
				if sum.N != 0 || s.MaybeRetransmits.N != 3 || s.MaybeRetransmits.Min != tt.after || s.Open != 3 || s.Kernel != 0 {
					t.Errorf("stats: summary %+v, maybe %+v, open %d", sum, s.MaybeRetransmits, s.Open)
				}
			} else if sum.N != 3 || sum.Min != tt.after || s.MaybeRetransmits.N != 0 || s.Kernel != 3 {
				t.Errorf("stats: summary %+v, maybe %+v", sum, s.MaybeRetransmits)
			}
		})
	}
}

// stalledConn holds every answer back until n probes have been sent, as
// an engine thread held up after sending them would find them: all at
// once, thousands of them, with every deadline past.
type stalledConn struct {
	*probetest.Conn
	n    int
	sent atomic.Int64
}

func (c *stalledConn) Send(pkt []byte, id uint32) error {
	c.sent.Add(1)
	return c.Conn.Send(pkt, id)
}

func (c *stalledConn) Recv(b []byte, deadline time.Time) (int, time.Time, error) {
	if c.sent.Load() < int64(c.n) {
		return 0, time.Time{}, os.ErrDeadlineExceeded
	}
	return c.Conn.Recv(b, deadline)
}

// TestStallReadsEveryQueuedAnswer: 6,000 packets wait when the engine
// looks again, 100 ms after sending 2,000 probes with a 30 ms timeout, two
// stray RSTs before each SYN-ACK: more than one drain reads (maxDrain),
// and every probe is open, none called filtered while its answer waits.
func TestStallReadsEveryQueuedAnswer(t *testing.T) {
	const n = 2000 // in flight at once
	c := &stalledConn{Conn: probetest.NewConn(func(p *wire.Packet, b []byte, id uint32) []probetest.Reply {
		if p.Flags != wire.FlagSyn {
			return nil
		}
		stray := probetest.Build(wire.Segment{Src: p.Dst, Dst: p.Src, TTL: 64, SrcPort: p.DstPort, DstPort: p.SrcPort, Ack: p.Seq + 7, Flags: wire.FlagRst | wire.FlagAck})
		return append([]probetest.Reply{{Packet: stray, After: rtt / 3}, {Packet: stray, After: rtt / 2}}, synack(p, b, id)...)
	}), n: n}
	defer c.Close()
	targets := make([]probe.Target, n)
	a := netip.MustParseAddr("198.18.16.0")
	for i := range targets {
		targets[i], a = target(a, 443), a.Next()
	}
	cookie, _ := wire.NewRandomCookie()
	t0 := time.Now()
	open, other := 0, 0
	p, err := probe.New(c, probe.Config{
		Targets: targets, Count: 1, Timeout: 30 * time.Millisecond,
		PortLo: 50000, PortHi: 50000 + n, Options: &linuxO, Cookie: cookie,
		Now: func() time.Time {
			if c.sent.Load() < n {
				return t0
			}
			return t0.Add(100 * time.Millisecond) // the thread is back, late
		},
		OnResult: func(r *probe.Result) {
			if r.State == probe.StateOpen {
				open++
			} else if other++; other <= 3 {
				t.Errorf("%v: %v/%s", r.Target.Addr, r.State, r.Reason)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	if open != n {
		t.Errorf("%d open, %d other: want all %d open", open, other, n)
	}
}

// TestLateWakeReadsQueuedAnswers: a prober thread that wakes after a
// probe's deadline (a busy machine, here a clock that jumps 100 ms at
// every reading) first reads the answer already waiting for it: the port
// is open, not filtered.
func TestLateWakeReadsQueuedAnswers(t *testing.T) {
	c := probetest.NewConn(func(p *wire.Packet, b []byte, id uint32) []probetest.Reply {
		if p.Flags != wire.FlagSyn {
			return nil
		}
		return synack(p, b, id)
	})
	cookie, _ := wire.NewRandomCookie()
	now := time.Now()
	var results []probe.Result
	p, err := probe.New(c, probe.Config{
		Targets: []probe.Target{target(dst4, 443)}, Count: 1, Timeout: 30 * time.Millisecond,
		PortLo: 61000, PortHi: 61511, Options: &linuxO, Cookie: cookie,
		Now:      func() time.Time { now = now.Add(100 * time.Millisecond); return now },
		OnResult: func(r *probe.Result) { results = append(results, *r) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(results) != 1 || results[0].State != probe.StateOpen || results[0].RTT != rtt {
		t.Errorf("results %+v, want one open probe with RTT %v", results, rtt)
	}
}

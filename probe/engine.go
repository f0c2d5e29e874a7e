package probe

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/synprobe/synprobe/rawsock"
)

// Conn is what the engine needs from the network. rawsock.Conn implements
// it; tests use an in-memory fake.
type Conn interface {
	// Send transmits a whole IP packet; id names its transmit timestamp.
	Send(pkt []byte, id uint32) error
	// Recv blocks for the next inbound packet, written into b starting with
	// its IP header, and returns its kernel receive timestamp (zero if
	// none). It returns net.ErrClosed once the Conn is closed.
	Recv(b []byte) (n int, rx time.Time, err error)
	// TxTime returns the kernel transmit timestamp of packet id.
	TxTime(id uint32, v6 bool) (time.Time, bool)
}

// Mode says how a probe ends after the SYN-ACK.
type Mode uint8

const (
	// ModeRST answers the SYN-ACK with RST: the server's half-open
	// connection is freed at once.
	ModeRST Mode = iota
)

// Config configures a Prober. The zero value of each field means its
// default.
type Config struct {
	Targets []Target
	// Count is the number of probes per target; 0 means until the context
	// is cancelled.
	Count int
	// Interval between rounds (one probe to every target); default 1s.
	Interval time.Duration
	// Timeout is how long to wait for a reply; default 1s.
	Timeout time.Duration
	Mode    Mode

	// PortLo..PortHi are the source ports probes rotate through; a single
	// port when equal. Required.
	PortLo, PortHi uint16

	TTL    uint8  // default 64
	TOS    uint8  // IPv4 TOS / IPv6 traffic class
	Window uint16 // default 64240, as Linux with MSS 1460
	// Options are the SYN's TCP options; nil sends none. TSVal is set per
	// probe from a millisecond clock, as Linux does.
	Options *rawsock.SYNOptions
	// Options6, if set, replaces Options for IPv6 targets (whose MSS is
	// usually 20 bytes smaller).
	Options6 *rawsock.SYNOptions
	// ECN asks for ECN in the SYN (ECE and CWR set).
	ECN bool

	// Cookie keys the ISNs. Required: use rawsock.NewRandomCookie.
	Cookie rawsock.Cookie

	// OnResult is called from Run for every finished probe. The Result
	// is reused: copy what you keep.
	OnResult func(*Result)
	// Now is the user-space clock (default time.Now), used for timeouts
	// and for RTTs when the kernel gives no timestamps.
	Now func() time.Time
}

// Prober sends SYN probes and matches their replies.
type Prober struct {
	conn  Conn
	cfg   Config
	stats []Stats

	tab    table
	queue  timeoutQueue
	in     chan inbound
	nextID uint32
	port   uint16 // next source port offset

	opts   [2]synOpts // encoded SYN options for IPv4 and IPv6
	tsBase uint32     // random TSval origin
	pkt    [128]byte
	res    Result
}

// inbound is a parsed packet with its arrival times.
type inbound struct {
	pkt  rawsock.Packet
	rx   time.Time // kernel receive stamp, zero if none
	user time.Time // user-space clock at Recv's return
}

// New returns a Prober that sends on conn.
func New(conn Conn, cfg Config) (*Prober, error) {
	if len(cfg.Targets) == 0 {
		return nil, errors.New("probe: no targets")
	}
	if cfg.Count < 0 {
		return nil, fmt.Errorf("probe: negative count %d", cfg.Count)
	}
	if cfg.Interval < 0 || cfg.Timeout < 0 {
		return nil, errors.New("probe: negative interval or timeout")
	}
	if cfg.PortLo == 0 || cfg.PortHi < cfg.PortLo {
		return nil, fmt.Errorf("probe: bad source port range %d-%d", cfg.PortLo, cfg.PortHi)
	}
	if cfg.Interval == 0 {
		cfg.Interval = time.Second
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = time.Second
	}
	if cfg.TTL == 0 {
		cfg.TTL = 64
	}
	if cfg.Window == 0 {
		cfg.Window = 64240
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Targets = append([]Target(nil), cfg.Targets...)
	for i := range cfg.Targets {
		t := &cfg.Targets[i]
		t.Addr, t.Src = t.Addr.Unmap(), t.Src.Unmap()
		if !t.Addr.IsValid() || !t.Src.IsValid() || t.Addr.Is4() != t.Src.Is4() {
			return nil, fmt.Errorf("probe: target %d: bad address pair %v -> %v", i, t.Src, t.Addr)
		}
	}
	p := &Prober{
		conn:  conn,
		cfg:   cfg,
		stats: make([]Stats, len(cfg.Targets)),
		in:    make(chan inbound, 256),
	}
	p.opts[0].encode(cfg.Options)
	if cfg.Options6 != nil {
		p.opts[1].encode(cfg.Options6)
	} else {
		p.opts[1].encode(cfg.Options)
	}
	p.tsBase = cfg.Cookie.ISN(netip.IPv4Unspecified(), netip.IPv4Unspecified(), 0, 0, 0x7473) // per run, unpredictable
	return p, nil
}

// Stats returns the statistics of target i so far. Call it after Run.
func (p *Prober) Stats(i int) *Stats { return &p.stats[i] }

// Run probes until Count rounds are done and answered or timed out, or ctx
// is cancelled (probes then in flight are dropped). It returns an error
// only when the network fails.
func (p *Prober) Run(ctx context.Context) error {
	done := make(chan struct{})
	defer close(done)
	readErr := make(chan error, 1)
	go p.readLoop(done, readErr)

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	round := 0
	next := p.cfg.Now()
	for {
		now := p.cfg.Now()
		if (p.cfg.Count == 0 || round < p.cfg.Count) && !now.Before(next) {
			p.sendRound(round, now)
			round++
			next = next.Add(p.cfg.Interval)
			if next.Before(now) { // we fell behind: do not burst to catch up
				next = now.Add(p.cfg.Interval)
			}
		}
		p.expire(p.cfg.Now())
		if p.cfg.Count > 0 && round >= p.cfg.Count && p.tab.n == 0 {
			return nil
		}
		wait := time.Hour
		if p.cfg.Count == 0 || round < p.cfg.Count {
			wait = next.Sub(p.cfg.Now())
		}
		if d, ok := p.queue.nextDeadline(&p.tab); ok {
			wait = min(wait, d.Sub(p.cfg.Now()))
		}
		timer.Reset(max(wait, 0))
		select {
		case <-ctx.Done():
			return nil
		case err := <-readErr:
			return err
		case in := <-p.in:
			p.handle(&in)
			// Handle what else is queued before looking at timers.
			for drained := false; !drained; {
				select {
				case in := <-p.in:
					p.handle(&in)
				default:
					drained = true
				}
			}
		case <-timer.C:
		}
	}
}

// readLoop parses inbound packets and hands them to Run.
func (p *Prober) readLoop(done <-chan struct{}, errc chan<- error) {
	buf := make([]byte, 2048)
	var in inbound
	failures := 0
	for {
		n, rx, err := p.conn.Recv(buf)
		user := p.cfg.Now()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Per-packet errors (a raw socket reports a queued ICMP
			// error once) are skipped; a socket that only fails is not.
			if failures++; failures > 1000 {
				errc <- err
				return
			}
			continue
		}
		failures = 0
		if rawsock.Parse(buf[:n], &in.pkt) != nil {
			continue
		}
		in.rx, in.user = rx, user
		select {
		case p.in <- in:
		case <-done:
			return
		}
	}
}

// sendRound sends one probe to every target.
func (p *Prober) sendRound(round int, now time.Time) {
	for i := range p.cfg.Targets {
		p.sendSYN(i, round, now)
	}
}

// sendSYN builds and sends probe seq to target ti.
func (p *Prober) sendSYN(ti, seq int, now time.Time) {
	t := &p.cfg.Targets[ti]
	id := p.nextID
	p.nextID++
	sport := p.cfg.PortLo + p.port
	if p.port++; uint32(p.cfg.PortLo)+uint32(p.port) > uint32(p.cfg.PortHi) {
		p.port = 0
	}
	isn := p.cfg.Cookie.ISN(t.Src, t.Addr, sport, t.Port, id)
	e := pending{
		state:    stateSynSent,
		isn:      isn,
		id:       id,
		target:   int32(ti),
		seq:      int32(seq),
		sport:    sport,
		sent:     now,
		deadline: now.Add(p.cfg.Timeout),
	}
	if p.tab.full() || p.queue.full(&p.tab) {
		p.finishError(&e, errors.New("probe: too many probes in flight"))
		return
	}
	opts := &p.opts[0]
	if t.Addr.Is6() {
		opts = &p.opts[1]
	}
	if opts.tsval >= 0 {
		binary.BigEndian.PutUint32(opts.b[opts.tsval:], p.tsBase+uint32(now.UnixMilli()))
	}
	flags := rawsock.FlagSyn
	if p.cfg.ECN {
		flags |= rawsock.FlagEce | rawsock.FlagCwr
	}
	seg := rawsock.Segment{
		Src: t.Src, Dst: t.Addr,
		TTL: p.cfg.TTL, TOS: p.cfg.TOS,
		ID: uint16(isn >> 16), DF: true,
		SrcPort: sport, DstPort: t.Port,
		Seq:     isn,
		Flags:   flags,
		Window:  p.cfg.Window,
		Options: opts.b[:opts.n],
	}
	n, err := seg.Build(p.pkt[:])
	if err != nil {
		p.finishError(&e, err)
		return
	}
	// Register before sending: a reply on loopback can beat Send's return.
	i := p.tab.insert(e)
	p.queue.push(isn, sport, id)
	if err := p.conn.Send(p.pkt[:n], id); err != nil {
		e := p.tab.e[i]
		p.tab.remove(i)
		p.finishError(&e, err)
	}
}

// sendRST resets the connection probe e opened.
func (p *Prober) sendRST(e *pending) {
	t := &p.cfg.Targets[e.target]
	seg := rawsock.Segment{
		Src: t.Src, Dst: t.Addr,
		TTL: p.cfg.TTL, TOS: p.cfg.TOS,
		DF:      true,
		SrcPort: e.sport, DstPort: t.Port,
		Seq:   e.isn + 1,
		Flags: rawsock.FlagRst,
	}
	n, err := seg.Build(p.pkt[:])
	if err != nil {
		return
	}
	id := p.nextID
	p.nextID++
	// A lost RST costs the server one SYN-ACK retransmission and the
	// kernel's own RST covers it: nothing to report.
	_ = p.conn.Send(p.pkt[:n], id)
}

// handle matches an inbound packet to its probe and advances that probe.
func (p *Prober) handle(in *inbound) {
	pkt := &in.pkt
	if pkt.IsICMP() {
		p.handleICMP(in)
		return
	}
	// Only an acknowledgement of our SYN can belong to a probe in
	// SYN_SENT, and it acknowledges ISN+1.
	if pkt.Flags&rawsock.FlagAck == 0 {
		return
	}
	i := p.tab.lookup(pkt.Ack-1, pkt.DstPort)
	if i < 0 {
		return // stray, late, duplicate, or another run's reply
	}
	e := &p.tab.e[i]
	t := &p.cfg.Targets[e.target]
	if pkt.Src != t.Addr || pkt.SrcPort != t.Port || pkt.Dst != t.Src {
		return
	}
	switch e.state {
	case stateSynSent:
		switch {
		case pkt.Flags&rawsock.FlagRst != 0:
			p.finishReply(i, in, StateClosed, ReasonRST)
		case pkt.Flags&rawsock.FlagSyn != 0:
			if p.cfg.Mode == ModeRST {
				p.sendRST(e)
			}
			p.finishReply(i, in, StateOpen, ReasonSYNACK)
		}
	}
}

func (p *Prober) handleICMP(in *inbound) {
	q := &in.pkt.Quoted
	if !q.HasSeq {
		return // too short a quote to prove it is ours
	}
	i := p.tab.lookup(q.Seq, q.SrcPort)
	if i < 0 {
		return
	}
	e := &p.tab.e[i]
	t := &p.cfg.Targets[e.target]
	if q.Src != t.Src || q.Dst != t.Addr || q.DstPort != t.Port || e.state != stateSynSent {
		return
	}
	p.finishReply(i, in, StateFiltered, rawsock.ICMPReason(t.Addr.Is6(), in.pkt.ICMPType, in.pkt.ICMPCode))
}

// finishReply completes probe i with a verdict from packet in.
func (p *Prober) finishReply(i int, in *inbound, st State, reason string) {
	e := p.tab.e[i]
	p.tab.remove(i)
	r := p.begin(&e)
	r.State, r.Reason = st, reason
	pkt := &in.pkt
	r.RTT, r.KernelClock = p.rtt(&e, in)
	r.From = pkt.Src
	r.TTL, r.TOS, r.IPID, r.DF = pkt.TTL, pkt.TOS, pkt.ID, pkt.DF
	if pkt.IsICMP() {
		r.ICMPType, r.ICMPCode = pkt.ICMPType, pkt.ICMPCode
	} else {
		r.Flags, r.Window, r.Options = pkt.Flags, pkt.Window, pkt.Options
	}
	p.emit(r)
}

// rtt is the reply's kernel receive stamp minus the SYN's kernel transmit
// stamp, or the user-space clock's difference when either is missing.
func (p *Prober) rtt(e *pending, in *inbound) (time.Duration, bool) {
	if !in.rx.IsZero() {
		if tx, ok := p.conn.TxTime(e.id, p.cfg.Targets[e.target].Addr.Is6()); ok {
			return in.rx.Sub(tx), true
		}
	}
	return in.user.Sub(e.sent), false
}

func (p *Prober) finishError(e *pending, err error) {
	r := p.begin(e)
	r.State, r.Reason, r.Err = StateError, ReasonSendError, err
	p.emit(r)
}

// expire times out the probes whose deadline has passed.
func (p *Prober) expire(now time.Time) {
	for {
		i, ok := p.queue.head(&p.tab)
		if !ok || p.tab.e[i].deadline.After(now) {
			return
		}
		p.queue.pop()
		e := p.tab.e[i]
		p.tab.remove(i)
		r := p.begin(&e)
		r.State, r.Reason = StateFiltered, ReasonTimeout
		p.emit(r)
	}
}

// begin resets the shared Result for probe e.
func (p *Prober) begin(e *pending) *Result {
	r := &p.res
	*r = Result{
		Target:  &p.cfg.Targets[e.target],
		Index:   int(e.target),
		Seq:     int(e.seq),
		SrcPort: e.sport,
		ISN:     e.isn,
		Sent:    e.sent,
	}
	return r
}

func (p *Prober) emit(r *Result) {
	p.stats[r.Index].Add(r)
	if p.cfg.OnResult != nil {
		p.cfg.OnResult(r)
	}
}

// synOpts is an encoded set of SYN options.
type synOpts struct {
	b     [rawsock.MaxOptionsSize]byte
	n     int
	tsval int // offset of TSval in b, or -1
}

func (s *synOpts) encode(o *rawsock.SYNOptions) {
	s.n, s.tsval = 0, -1
	if o != nil {
		s.n = o.Encode(s.b[:])
		s.tsval = findTSVal(s.b[:s.n])
	}
}

// findTSVal returns the offset of the TSval field in encoded options, or -1.
func findTSVal(opts []byte) int {
	for i := 0; i < len(opts); {
		switch opts[i] {
		case 0:
			return -1
		case 1:
			i++
			continue
		case 8:
			if i+10 <= len(opts) {
				return i + 2
			}
			return -1
		}
		if i+1 >= len(opts) || opts[i+1] < 2 {
			return -1
		}
		i += int(opts[i+1])
	}
	return -1
}

// timeoutQueue lists the probes in flight in send order. All share one
// timeout, so the head always has the earliest deadline.
type timeoutQueue struct {
	ring     [tableSize]qent
	hd, tail uint32
}

type qent struct {
	isn   uint32
	sport uint16
	id    uint32
}

func (q *timeoutQueue) push(isn uint32, sport uint16, id uint32) {
	q.ring[q.tail%tableSize] = qent{isn, sport, id}
	q.tail++
}

func (q *timeoutQueue) pop() { q.hd++ }

// full reports whether the ring has no room, after dropping finished
// entries at its head.
func (q *timeoutQueue) full(t *table) bool {
	q.head(t)
	return q.tail-q.hd >= tableSize
}

// head returns the table index of the oldest probe still in flight,
// dropping entries of probes that already finished.
func (q *timeoutQueue) head(t *table) (int, bool) {
	for q.hd != q.tail {
		h := q.ring[q.hd%tableSize]
		if i := t.lookup(h.isn, h.sport); i >= 0 && t.e[i].id == h.id {
			return i, true
		}
		q.hd++
	}
	return -1, false
}

func (q *timeoutQueue) nextDeadline(t *table) (time.Time, bool) {
	i, ok := q.head(t)
	if !ok {
		return time.Time{}, false
	}
	return t.e[i].deadline, true
}

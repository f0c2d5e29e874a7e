package probe

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/synprobe/synprobe/probe/internal/core"
	"github.com/synprobe/synprobe/rawsock"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// Conn is what the engine needs from the network. rawsock.Conn implements
// it; tests use an in-memory fake.
type Conn interface {
	// Send transmits a whole IP packet; id names its transmit timestamp.
	Send(pkt []byte, id uint32) error
	// Recv waits for the next inbound packet, written into b starting with
	// its IP header, and returns its kernel receive timestamp (zero if
	// none). It returns an error wrapping os.ErrDeadlineExceeded once
	// deadline passes (zero: never; in the past: poll without blocking),
	// ErrWoken-like errors after Wake, and net.ErrClosed once closed.
	Recv(b []byte, deadline time.Time) (n int, rx time.Time, err error)
	// Wake interrupts a Recv in progress.
	Wake()
	// TxTime returns the kernel transmit timestamp of packet id.
	TxTime(id uint32, v6 bool) (time.Time, bool)
}

// spinAfterSend is how long Run polls for replies without blocking after
// it sent something. A blocked thread takes tens to hundreds of
// microseconds to wake (an idle vCPU, most of all); a reply on a short
// path arrives sooner than that.
const spinAfterSend = 200 * time.Microsecond

// Mode says what follows the SYN-ACK.
type Mode uint8

const (
	// ModeRST answers the SYN-ACK with RST: the server's half-open
	// connection is freed at once.
	ModeRST Mode = iota
	// ModeACK completes the handshake with ACK (the connection reaches the
	// server's accept queue), then resets it.
	ModeACK
	// ModeFIN completes the handshake, holds the connection for
	// Config.Hold (sending Config.Data first, acknowledging whatever the
	// peer sends), sends FIN and follows the peer until the close ends:
	// Result.Close reports how it closed.
	ModeFIN
	// ModeWithhold never completes the handshake: it withholds the third
	// ACK (the RST guard keeps the kernel's RST off the wire), records
	// every SYN-ACK the server sends again for Observe after the first,
	// then resets the half-open connection (Result.SynAckRetrans).
	ModeWithhold
	// ModeBareACK sends a bare ACK instead of a SYN, with the ISN in its
	// sequence and acknowledgement fields. A host's TCP answers it with
	// RST whether a listener is there or not (RFC 9293 3.10.7.1): the
	// result is then closed with ReasonACKRST, "the host's TCP got it".
	// A filter drops it (filtered, timeout) or answers ICMP. The listener
	// tests send one where a SYN got silence: a listener whose accept
	// queue is full drops SYNs and answers bare ACKs.
	ModeBareACK
)

// needsGuard reports whether mode m needs the RST guard: the kernel's RST
// to a SYN-ACK would end what the mode does after it.
func (m Mode) needsGuard() bool { return m == ModeACK || m == ModeFIN || m == ModeWithhold }

// connects reports whether mode m's probes become connections that the
// engine finds by their source port, which must then be theirs alone.
func (m Mode) connects() bool { return m == ModeFIN || m == ModeWithhold }

var modeNames = [...]string{"rst", "ack", "fin", "withhold", "bare-ack"}

func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("mode-%d", m)
}

// ParseMode parses "rst", "ack" or "fin", the modes of a ping or a
// scan. (ModeWithhold is the listener tests'.)
func ParseMode(s string) (Mode, error) {
	for i, n := range modeNames[:ModeWithhold] {
		if s == n {
			return Mode(i), nil
		}
	}
	return 0, fmt.Errorf("unknown mode %q (want rst, ack or fin)", s)
}

// A Conn may say more of itself through these interfaces, which
// rawsock.Conn implements; the engine and scans look for them.

// BatchConn is a Conn that sends batches: spread rounds' SYNs leave in
// one system call when BatchStamps reports that the kernel takes a
// transmit stamp for each packet of a batch.
type BatchConn interface {
	Conn
	SendBatch(b *rawsock.Batch) (int, error)
	BatchStamps() bool
}

// QueueConn is a Conn that can say whether received packets wait in it,
// not yet read: a fin-mode probe's FIN waits for them (the peer's FIN may
// be among them), and a scan on a client ends a pass only once none
// waits.
type QueueConn interface {
	Conn
	Queued() bool
}

// SendOnlyConn is a Conn that can say it receives nothing (a scan's
// packet ring then reads the answers).
type SendOnlyConn interface {
	Conn
	SendsOnly() bool
}

var (
	_ BatchConn    = (*rawsock.Conn)(nil)
	_ QueueConn    = (*rawsock.Conn)(nil)
	_ SendOnlyConn = (*rawsock.Conn)(nil)
	// A Lease carries a client's Conn as core.Conn: the same methods.
	_ core.Conn = Conn(nil)
	_ Conn      = core.Conn(nil)
)

// synBatch is the SYNs of a spread round waiting to be sent together, and
// the probe of each, by its table key: a table index moves when an entry
// before it is removed (a failed send, a port taken back from TIME_WAIT).
type synBatch struct {
	b    *rawsock.Batch
	keys []synKey
}

type synKey struct {
	isn   uint32
	sport uint16
}

// synBatchSize bounds a batch: at 10,000 probes a second a spread round's
// 2 ms bring 20.
const synBatchSize = 64

// Config configures a Prober. The zero value of each field means its
// default.
type Config struct {
	Targets []Target
	// Count is the number of probes per target; 0 means until the context
	// is cancelled.
	Count int
	// Interval between rounds (one probe to every target); default 1s.
	Interval time.Duration
	// Timeout is how long to wait for the SYN's answer; default 1s.
	Timeout time.Duration
	Mode    Mode

	// Hold (ModeFIN) is how long the connection stays open before our FIN.
	Hold time.Duration
	// Data (ModeFIN) is sent right after the handshake.
	Data []byte
	// CloseTimeout (ModeFIN) bounds the wait for the peer's ACK of our FIN
	// and for its own FIN; default 3s.
	CloseTimeout time.Duration
	// Trace records every segment of each probe in Result.Trace.
	Trace bool
	// Observe (ModeWithhold) is how long to watch for the SYN-ACK's
	// retransmissions after the first; default DefaultObserve.
	Observe time.Duration
	// LateACK (ModeWithhold) sends the third ACK when the watch ends, and
	// watches at least LateACK long, and until the server's next SYN-ACK
	// is due, for what follows it (Result.AfterACK); zero sends none (the
	// watch ends with RST). No ACK goes out when the SYN-ACK never came
	// again, or when one was due and did not come.
	LateACK time.Duration

	// PortLo..PortHi are the source ports probes rotate through; a single
	// port when equal. Required.
	PortLo, PortHi uint16
	// Ports hands out the source ports, all within PortLo..PortHi; nil
	// means a PortPool of every port in that range.
	Ports PortAllocator

	TTL    uint8  // default 64
	TOS    uint8  // IPv4 TOS / IPv6 traffic class
	Window uint16 // default 64240, as Linux with MSS 1460
	// Options are the SYN's TCP options; nil sends none. TSVal is set per
	// probe from a millisecond clock, as Linux does.
	Options *wire.SYNOptions
	// Options6, if set, replaces Options for IPv6 targets (whose MSS is
	// usually 20 bytes smaller).
	Options6 *wire.SYNOptions
	// ECN asks for ECN in the SYN (ECE and CWR set).
	ECN bool

	// Cookie keys the ISNs. Required: use wire.NewRandomCookie.
	Cookie wire.Cookie

	// OnResult is called from Run for every finished probe. The Result,
	// its Close report and Trace are reused: copy what you keep.
	OnResult func(*Result)
	// Now is the user-space clock (default time.Now), used for timers and
	// for times the kernel did not stamp.
	Now func() time.Time
	// Recorder, if set, gets every packet sent and received.
	Recorder Recorder
}

// Prober is synprobe's engine: it sends SYN probes, matches their replies
// and follows each exchange to its end, for its own Config (New) or for
// the calls of a Client, many at once.
type Prober struct {
	conn Conn
	// batcher sends a spread round's SYNs a batch (one system call) at a
	// time, when the Conn stamps every packet of a batch under its own id
	// (rawsock.Conn.BatchStamps); nil: one Send each. batching is set
	// while such a round sends; batches are its packets, per family.
	batcher        BatchConn
	batching       bool
	batches        [2]synBatch
	queued         func() bool // packets wait to be read (nil: unknown)
	heldOff        int         // drains in a row that stopped at maxDrain (loop)
	portLo, portHi uint16
	ports          PortAllocator
	// release: the allocator hears of every port's end (Release), not
	// only of ModeFIN connections'.
	release bool
	cookie  wire.Cookie
	now     func() time.Time
	main    *job // New's Config; nil for a Client's engine
	// guarded: an RST guard drops the kernel's RSTs from our ports, in
	// every mode. A probe that times out or is interrupted then needs
	// our RST at ISN+1 even in ModeRST: the kernel's answer to a late
	// SYN-ACK no longer frees the server's half-open connection.
	guarded atomic.Bool

	// The queue from other goroutines (submit, cancel).
	mu       sync.Mutex
	queue    []*job
	cancels  []*job
	stopped  error       // set once the engine has stopped
	signaled atomic.Bool // the queue has news; Wake was called

	sched   []*job // jobs with rounds to send, in order of arrival
	settled []*job // jobs whose work has ended, to finish

	tab    table
	timers timerHeap
	live   int      // probes in the table whose result is still to come
	conns  []uint32 // per source port: ISN of its connection (ModeFIN), 0 if none
	connOK []bool
	free   []*tcb // recycled connection blocks
	nextID uint32

	spinUntil time.Time     // poll without blocking until then (spinAfterSend)
	yielded   time.Time     // when the loop last yielded its thread (yieldEvery)
	spin      time.Duration // how long after a send: 0 spinAfterSend, negative none
	// callbacks counts the callbacks (OnResult, Start's done) the loop
	// is in: a call that finds none cannot come from one, and needs no
	// gettid to know it.
	callbacks atomic.Int32

	// feed, if set, also gets every packet received (a scan on the
	// client: core.Lease.Feed). feedOn spares the loop the lock while
	// there is none.
	feedMu sync.Mutex
	feed   func(b []byte, rx time.Time)
	feedOn atomic.Bool
	// bulk, if set, is a scan's packet ring that the loop reads too
	// (core.Lease.Attach), handing its packets to bulkFn alone; bulkOn
	// spares the loop the lock while there is none.
	bulkMu   sync.Mutex
	bulk     core.Bulk
	bulkFn   func(b []byte, rx time.Time)
	bulkFail func(error)
	bulkOn   atomic.Bool

	count counters
	took  bool // the packet handled was one of a probe's
	// kept are the probes in flight kept with ProbeOptions.Packets, whose
	// ICMP errors may also be matched by IP ID (quotedByID).
	kept []keptProbe

	clock core.Clock // TSvals
	// rec (nil: none) records every packet; recTx are the packets sent
	// whose kernel transmit stamps it has not had yet.
	rec   Recorder
	recTx []recSent
	pkt   [1600]byte
	res   Result
	close CloseReport
	trace []TraceEvent
}

// keptProbe is a table key: a probe's ISN and source port.
type keptProbe struct {
	isn   uint32
	sport uint16
}

// inbound is a parsed packet with its arrival times.
type inbound struct {
	pkt  wire.Packet
	rx   time.Time // kernel receive stamp, zero if none
	user time.Time // user-space clock at Recv's return
	raw  []byte    // the packet as read, valid while it is handled
}

// stamp is when something happened, by the kernel's clock when known and
// by the user-space clock always. For our own packets the kernel's
// transmit stamp is looked up late, by id.
type stamp struct {
	k, u time.Time
	id   uint32
	tx   bool // k comes from TxTime(id) when still zero
}

func rxStamp(in *inbound) stamp { return stamp{k: in.rx, u: in.user} }

// engineConfig is what an engine needs besides its jobs.
type engineConfig struct {
	portLo, portHi uint16
	ports          PortAllocator
	release        bool
	cookie         wire.Cookie
	now            func() time.Time
	rec            Recorder
	spin           time.Duration // 0: spinAfterSend; negative: none
}

func newEngine(conn Conn, ec engineConfig) (*Prober, error) {
	if ec.portLo == 0 || ec.portHi < ec.portLo {
		return nil, fmt.Errorf("probe: bad source port range %d-%d", ec.portLo, ec.portHi)
	}
	if ec.cookie == (wire.Cookie{}) {
		return nil, errors.New("probe: no cookie: make one with wire.NewRandomCookie")
	}
	if ec.now == nil {
		ec.now = time.Now
	}
	if ec.ports == nil {
		ports := make([]uint16, 0, int(ec.portHi)-int(ec.portLo)+1)
		for port := int(ec.portLo); port <= int(ec.portHi); port++ {
			ports = append(ports, uint16(port))
		}
		ec.ports = NewPortPool(ports, ec.release)
	}
	nports := int(ec.portHi) - int(ec.portLo) + 1
	p := &Prober{
		conn:    conn,
		portLo:  ec.portLo,
		portHi:  ec.portHi,
		ports:   ec.ports,
		release: ec.release,
		cookie:  ec.cookie,
		now:     ec.now,
		rec:     ec.rec,
		spin:    ec.spin,
		timers:  make(timerHeap, 0, 2*tableSize),
		conns:   make([]uint32, nports),
		connOK:  make([]bool, nports),
	}
	if b, ok := conn.(BatchConn); ok && b.BatchStamps() {
		p.batcher = b
	}
	if q, ok := conn.(QueueConn); ok {
		// Or on their way in: the peer's FIN our FIN waits for may be
		// in the kernel's receive backlog still (a busy machine).
		p.queued = func() bool { return q.Queued() || rawsock.KernelBacklog() }
	}
	p.clock = core.NewClock(&ec.cookie)
	return p, nil
}

// checkTargets unmaps the targets' addresses and checks that each has a
// source of its family.
func checkTargets(ts []Target) error {
	for i := range ts {
		t := &ts[i]
		t.Addr, t.Src = t.Addr.Unmap(), t.Src.Unmap()
		if !t.Addr.IsValid() || !t.Src.IsValid() || t.Addr.Is4() != t.Src.Is4() {
			return fmt.Errorf("probe: target %d: bad address pair %v -> %v", i, t.Src, t.Addr)
		}
	}
	return nil
}

// New returns a Prober that probes cfg.Targets over conn when Run.
func New(conn Conn, cfg Config) (*Prober, error) {
	if len(cfg.Targets) == 0 {
		return nil, errors.New("probe: no targets")
	}
	if cfg.Count < 0 {
		return nil, fmt.Errorf("probe: negative count %d", cfg.Count)
	}
	if cfg.Interval < 0 {
		return nil, errors.New("probe: negative duration")
	}
	s, err := newSettings(&cfg)
	if err != nil {
		return nil, err
	}
	p, err := newEngine(conn, engineConfig{
		portLo:  cfg.PortLo,
		portHi:  cfg.PortHi,
		ports:   cfg.Ports,
		release: cfg.Mode == ModeFIN,
		cookie:  cfg.Cookie,
		now:     cfg.Now,
		rec:     cfg.Recorder,
	})
	if err != nil {
		return nil, err
	}
	j := &job{
		settings: s,
		targets:  slices.Clone(cfg.Targets),
		stats:    make([]tally, len(cfg.Targets)),
		mtus:     make([]int, len(cfg.Targets)),
		count:    cfg.Count,
		interval: cfg.Interval,
		onResult: cfg.OnResult,
	}
	if j.interval == 0 {
		j.interval = time.Second
	}
	if err := checkTargets(j.targets); err != nil {
		return nil, err
	}
	j.scheduled = true
	p.main, p.sched = j, []*job{j}
	p.guarded.Store(cfg.Mode.needsGuard()) // the caller's guard, which those modes need
	return p, nil
}

// Stats returns a snapshot of target i's statistics: after Run, or from
// Run's goroutine (Config.OnResult).
func (p *Prober) Stats(i int) Stats { return p.main.stats[i].snapshot() }

// Run probes until Count rounds are done and every exchange has ended, or
// ctx is cancelled. On cancellation, open connections are reset and
// reported (Result.Interrupted), and probes still waiting for their SYN's
// answer are counted as such (Stats.Interrupted). Run returns an error
// only when the network fails.
//
// Run is one event loop on a locked OS thread: it reads and handles
// replies, runs the timers and sends the rounds. Its waits end at the
// next deadline with nanosecond resolution (see Conn.Recv), and for a
// moment after each send it polls instead of sleeping.
func (p *Prober) Run(ctx context.Context) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	preciseTimers()
	stop := context.AfterFunc(ctx, p.conn.Wake)
	defer stop()
	defer p.recordTx(true)
	defer p.abort(nil)
	return p.loop(ctx, p.main)
}

// spun starts the poll that follows a send at now.
func (p *Prober) spun(now time.Time) {
	switch {
	case p.spin == 0:
		p.spinUntil = now.Add(spinAfterSend)
	case p.spin > 0:
		p.spinUntil = now.Add(p.spin)
	}
}

// blockedPoll bounds the wait of a loop in which a job waits for a free
// source port or room in the table: ports that cool from a TIME_WAIT free
// themselves with no event to wake the loop.
const blockedPoll = time.Millisecond

// loop is the engine: it runs until main is over (nil: never) or ctx is
// cancelled.
func (p *Prober) loop(ctx context.Context, main *job) error {
	buf := make([]byte, rawsock.MaxPacketSize)
	var in inbound
	var failures core.Failures
	p.yielded = p.now()
	for {
		p.intake()
		now := p.now()
		next, blocked := p.rounds(now)
		// Read what has already arrived before judging any deadline:
		// a thread that woke late (a busy machine, a slow reader of a
		// caller's results) must not call a probe filtered while its
		// answer waits in the socket. A drain that stopped at its bound
		// holds the deadlines off for up to maxHeldOff drains in a row:
		// thousands of answers may wait after a stall.
		done, more, err := p.drain(buf, &in, &failures)
		if done || err != nil {
			return err
		}
		// A ring's packets are a scan's, never answers to the engine's
		// own probes: they hold no deadline off.
		bulkMore := p.drainBulk()
		if !more || p.heldOff >= maxHeldOff {
			p.heldOff = 0
			p.expire(p.now())
		} else {
			p.heldOff++
		}
		p.settle()
		if p.rec != nil {
			p.recordTx(false)
		}
		if main != nil && main.settled {
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
		deadline := next
		if i, ok := p.timers.live(&p.tab); ok && (deadline.IsZero() || p.tab.e[i].deadline.Before(deadline)) {
			deadline = p.tab.e[i].deadline
		}
		now = p.now()
		if blocked && (deadline.IsZero() || deadline.After(now.Add(blockedPoll))) {
			deadline = now.Add(blockedPoll)
		}
		if p.bulkOn.Load() && (deadline.IsZero() || deadline.After(now.Add(bulkPoll))) {
			deadline = now.Add(bulkPoll)
		}
		if bulkMore {
			deadline = now // more waits in it
		}
		if now.Before(p.spinUntil) {
			deadline = now // poll
		}
		if p.signaled.Load() {
			// The queue has news whose Wake a poll of drain's may have
			// taken: look at it before blocking, or wait for nothing.
			deadline = now
		}
		p.yield(now, deadline)
		n, rx, err := p.conn.Recv(buf, deadline)
		switch failures.Judge(err) {
		case core.Closed:
			return nil
		case core.Fatal:
			return err
		case core.Idle, core.Skip:
			continue
		}
		in.rx = rx
		p.take(buf[:n], &in)
	}
}

// yieldEvery is how often a loop that never parks in Go's poller yields
// its thread to Go's scheduler (before a wait of at least yieldBefore).
// Go's sysmon preempts a goroutine that has run 10 ms without a pass
// through the scheduler, with a signal, and takes its P when it is in a
// system call (the loop's waits in epoll_pwait2 are), then wakes every 20
// µs for a while, betting that work has begun: under `synprobe serve`'s
// 10,000 probes a second, whose waits are all shorter than the poller's
// park (rawsock's parkAhead), that was 1,800 wake-ups a second and some
// 6% of a core. A yield costs a hand-off between two threads.
const (
	yieldEvery  = 5 * time.Millisecond
	yieldBefore = 500 * time.Microsecond
)

// yield yields the loop's thread to Go's scheduler (runtime.Gosched)
// when it has not for yieldEvery, before a wait that leaves time for it.
func (p *Prober) yield(now, deadline time.Time) {
	if now.Sub(p.yielded) < yieldEvery || deadline.Sub(now) < yieldBefore {
		return
	}
	runtime.Gosched()
	p.yielded = p.now()
}

// setFeed makes fn (nil: none) the receiver of a copy of every packet
// the loop reads. It returns once no call of the previous one is in
// progress.
func (p *Prober) setFeed(fn func(b []byte, rx time.Time)) {
	p.feedMu.Lock()
	p.feed = fn
	p.feedOn.Store(fn != nil)
	p.feedMu.Unlock()
}

// setBulk makes the loop read r (nil: none) too, handing its packets to
// fn and its errors to fail. It returns once no call of the previous fn
// is in progress.
func (p *Prober) setBulk(r core.Bulk, fn func(b []byte, rx time.Time), fail func(error)) {
	p.bulkMu.Lock()
	p.bulk, p.bulkFn, p.bulkFail = r, fn, fail
	p.bulkOn.Store(r != nil)
	p.bulkMu.Unlock()
	p.conn.Wake()
}

// bulkPoll is how long the loop waits on its Conn at most while a bulk
// receiver is attached, which it reads each turn without waiting: a
// packet ring hands over a part-filled block every millisecond
// (rawsock.RingConfig.Retire) anyway.
const bulkPoll = time.Millisecond

// maxBulkBlocks bounds the Reads of one drainBulk, each a block of a
// ring (whose packets may all have failed its checks).
const maxBulkBlocks = 64

// drainBulk reads the attached bulk receiver, if any, without waiting:
// up to about maxDrain packets. more is true when it stopped at that
// bound.
func (p *Prober) drainBulk() (more bool) {
	if !p.bulkOn.Load() {
		return false
	}
	p.bulkMu.Lock()
	if p.bulk == nil {
		p.bulkMu.Unlock()
		return false
	}
	poll := time.Unix(1, 0) // in the past: Read does not wait
	for got, blocks := 0, 0; got < maxDrain && blocks < maxBulkBlocks; blocks++ {
		p.callbacks.Add(1) // the scan's OnResult may run in fn
		n, err := p.bulk.Read(poll, p.bulkFn)
		p.callbacks.Add(-1)
		got += n
		switch {
		case err == nil:
			continue
		case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, rawsock.ErrWoken):
			p.bulkMu.Unlock()
			return false
		}
		// Not read again until it is attached again; its owner hears
		// of the error outside the lock, which its Attach takes.
		fail := p.bulkFail
		p.bulk, p.bulkFn, p.bulkFail = nil, nil, nil
		p.bulkOn.Store(false)
		p.bulkMu.Unlock()
		fail(err)
		return false
	}
	p.bulkMu.Unlock()
	return true
}

// fed hands b to the feed, if any.
func (p *Prober) fed(b []byte, rx time.Time) {
	if !p.feedOn.Load() {
		return
	}
	p.feedMu.Lock()
	if p.feed != nil {
		p.callbacks.Add(1) // the scan's OnResult may run in it
		p.feed(b, rx)
		p.callbacks.Add(-1)
	}
	p.feedMu.Unlock()
}

// maxDrain bounds the packets one drain reads, and maxHeldOff the drains
// in a row that stop at that bound and hold the deadlines off: a flood
// of packets cannot hold the timers off for long, and 65,536 answers
// waiting after a stall (a round of 10,000 targets, say) are read before
// any probe is called filtered.
const (
	maxDrain   = 4096
	maxHeldOff = 15
)

// drain handles the packets already received, without waiting. done is
// true once the Conn is closed, more when it stopped at maxDrain.
func (p *Prober) drain(buf []byte, in *inbound, failures *core.Failures) (done, more bool, err error) {
	poll := time.Unix(1, 0) // in the past: Recv does not wait
	for range maxDrain {
		n, rx, err := p.conn.Recv(buf, poll)
		switch failures.Judge(err) {
		case core.Closed:
			return true, false, nil
		case core.Idle:
			return false, false, nil
		case core.Fatal:
			return true, false, err
		case core.Skip:
			continue
		}
		in.rx = rx
		p.take(buf[:n], in)
	}
	return false, true, nil
}

// submit hands j to the engine's thread, which starts it at once.
func (p *Prober) submit(j *job) error {
	p.mu.Lock()
	if p.stopped != nil {
		p.mu.Unlock()
		return p.stopped
	}
	p.queue = append(p.queue, j)
	p.mu.Unlock()
	p.signal()
	return nil
}

// cancel asks the engine's thread to interrupt j, as the end of Run
// interrupts everything (abort).
func (p *Prober) cancel(j *job) {
	p.mu.Lock()
	if p.stopped == nil {
		p.cancels = append(p.cancels, j)
	}
	p.mu.Unlock()
	p.signal()
}

// signal wakes the engine's thread for the queue, once per look it takes.
func (p *Prober) signal() {
	if p.signaled.CompareAndSwap(false, true) {
		p.conn.Wake()
	}
}

// intake takes the submitted jobs and cancellations.
func (p *Prober) intake() {
	if !p.signaled.Load() {
		return
	}
	p.signaled.Store(false)
	p.mu.Lock()
	q, cs := p.queue, p.cancels
	p.queue, p.cancels = nil, nil
	p.mu.Unlock()
	for _, j := range q {
		j.scheduled = true
		p.sched = append(p.sched, j)
	}
	for _, j := range cs {
		if !j.settled && !j.cancelled {
			p.abort(j)
		}
	}
}

// rounds sends the rounds that are due. It returns when the next one is
// due (zero: none) and whether a job waits for room.
func (p *Prober) rounds(now time.Time) (next time.Time, blocked bool) {
	keep := p.sched[:0]
	var back []*job // spread jobs that wait for room: behind the others next time
	hold := false   // a job waits for room: those that wait too wait behind it
	for _, j := range p.sched {
		// A job that waits for room waits behind the first that does
		// (in order of arrival); rounds keep their schedule.
		stuck := false // j waits for room
		if !j.cancelled && !(hold && j.wait) && j.roundsLeft() {
			if j.next.IsZero() {
				j.next = now
			}
			if !now.Before(j.due()) {
				switch {
				case !p.sendRound(j, now):
					blocked, stuck = true, true
					// A spread job never leaves the queue: it
					// would stand before every later call for
					// good. It takes its turn behind them instead.
					hold = hold || !j.spread
				case j.sent == 0: // the round is over
					j.round++
					j.next = j.next.Add(j.interval)
					if !j.spread && j.next.Before(now) { // we fell behind: do not burst to catch up
						j.next = now.Add(j.interval)
					}
				}
			}
		}
		if j.cancelled || !j.roundsLeft() {
			j.scheduled = false
			p.check(j)
			continue
		}
		if stuck && j.spread {
			back = append(back, j)
		} else {
			keep = append(keep, j)
		}
		if !stuck && !(hold && j.wait) && (next.IsZero() || j.due().Before(next)) {
			next = j.due()
		}
	}
	keep = append(keep, back...)
	clear(p.sched[len(keep):])
	p.sched = keep
	return next, blocked
}

// spreadQuantum is the resolution of a spread round (Rounds.Spread): the
// engine sends together the probes due within it, and so wakes for them
// at most once a quantum (at 10,000 probes a second, 20 each time).
const spreadQuantum = 2 * time.Millisecond

// spreadCatchUp is how late a spread round may be and still send what it
// owes at once (see sendRound): under synprobe serve's 10,000 probes a
// second, a scrape of /metrics (and its collection) held the engine up
// for tens of milliseconds at times, which cost 1-6% of the probes of
// those seconds when any delay moved the schedule.
const spreadCatchUp = 50 * time.Millisecond

// sendRound sends the rest of j's round: one probe to every target, or
// with spread those due within spreadQuantum of now. It returns false
// when a probe waits for room (job.wait); the round goes on from there
// next time. j.sent is 0 again once the round is over.
//
// A spread round held up briefly (a thread that waited for the CPU, a
// collection) sends what it owes at once, up to spreadCatchUp's worth or
// a tenth of its interval: held up longer, it moves the rest of its
// schedule by as much instead: a burst of thousands of SYNs could cost
// answers of its own, and the targets probed late would be probed again
// moments later, at their next round's time.
//
// A spread round's SYNs go out in batches (batcher), each probe's timer and
// table entry set before, as for one sent alone.
func (p *Prober) sendRound(j *job, now time.Time) bool {
	if j.spread && p.batcher != nil && p.rec == nil {
		p.batching = true
		defer p.flushBatches()
	}
	until := now.Add(spreadQuantum)
	if lag := now.Sub(j.due()); j.spread && lag > max(spreadQuantum, min(spreadCatchUp, j.interval/10)) {
		j.next = j.next.Add(lag)
	}
	for j.sent < len(j.targets) {
		if j.spread && !j.due().Before(until) {
			return true
		}
		ti := j.sent
		if j.onSkip != nil && j.inflight[ti] > 0 {
			// Its previous probe has not ended (Rounds.OnSkip).
			j.sent++
			p.call(j.onSkip, ti)
			continue
		}
		if !j.announced {
			p.call(j.onSend, ti)
			j.announced = true
		}
		if !p.sendSYN(j, ti, j.round, p.now()) {
			return false
		}
		j.sent++
		j.announced = false
	}
	j.sent = 0
	return true
}

// call calls a caller's fn(i), if set, as a callback.
func (p *Prober) call(fn func(int), i int) {
	if fn != nil {
		p.callbacks.Add(1)
		fn(i)
		p.callbacks.Add(-1)
	}
}

// check queues j to be finished once it has nothing more to do.
func (p *Prober) check(j *job) {
	if !j.settled && !j.scheduled && j.over() {
		j.settled = true
		p.settled = append(p.settled, j)
	}
}

// settle finishes the jobs that are over. It runs between events, never
// within one: a probe's result is delivered before its job ends.
func (p *Prober) settle() {
	for i, j := range p.settled {
		if j.done != nil {
			close(j.done)
		}
		if j.ended != nil {
			p.callbacks.Add(1)
			j.ended()
			p.callbacks.Add(-1)
		}
		p.settled[i] = nil
	}
	p.settled = p.settled[:0]
}

// stop ends the engine: every job still running or queued ends with err.
// The caller has aborted what was in flight.
func (p *Prober) stop(err error) {
	p.mu.Lock()
	p.stopped = err
	q := p.queue
	p.queue, p.cancels = nil, nil
	p.mu.Unlock()
	for _, j := range append(p.sched, q...) {
		if !j.settled {
			j.cancelled, j.err, j.scheduled = true, err, false
			j.settled = true
			p.settled = append(p.settled, j)
		}
	}
	p.sched = nil
	p.settle()
}

// unlive marks probe e's result as delivered (or never to come).
func (p *Prober) unlive(e *pending) {
	if !e.live {
		return
	}
	e.live = false
	p.live--
	e.job.unlive(e.target)
	p.check(e.job)
}

// abort interrupts job j (nil: every job): open connections end with RST,
// so that no peer keeps state for an exchange we no longer follow, and
// are reported as open but interrupted; a probe still awaiting its answer
// is counted as interrupted. A close report waiting out its grace goes out
// as it stands.
func (p *Prober) abort(j *job) {
	if j != nil {
		j.cancelled = true
	}
	type key struct {
		isn   uint32
		sport uint16
	}
	var keys []key
	for i := range p.tab.e {
		if e := &p.tab.e[i]; e.state != stateFree && e.live && (j == nil || e.job == j) {
			keys = append(keys, key{e.isn, e.sport})
		}
	}
	for _, k := range keys {
		i := p.tab.lookup(k.isn, k.sport)
		if i < 0 {
			continue
		}
		e := &p.tab.e[i]
		switch {
		case e.state == stateSynSent:
			if s := e.job.stats; s != nil {
				s[e.target].interrupted++
			}
			if e.job.mode.needsGuard() || e.job.mode != ModeBareACK && p.guarded.Load() {
				// Its SYN-ACK may be on the way, and the guard keeps
				// the kernel's RST to it off the wire until we exit:
				// the server would hold the half-open connection
				// until it sends the SYN-ACK again. A RST that finds
				// nothing is ignored.
				p.resetSyn(e, noteAbort)
			}
			p.drop(i)
		case e.state == stateHeld || e.state == stateLateACK:
			p.endHold(i, true)
		case e.state == stateTimeWait && e.c != nil:
			pat, alt, note := e.c.judge(p)
			p.finishConn(i, pat, alt, note, true)
		case e.c != nil:
			p.sendResets(e, noteAbort)
			ev := *e
			r := p.begin(&ev)
			r.State, r.Reason, r.Interrupted = StateOpen, ReasonSYNACK, true
			p.fillReply(r, &ev, &ev.c.synack)
			p.finishTrace(r, &ev)
			p.ports.Release(e.sport, PortEnd{At: p.now(), TimeWait: e.c.peerFIN})
			e.state = stateTimeWait // the port is released
			p.drop(i)
			p.emit(ev.job, r)
		default:
			p.drop(i)
		}
	}
	if j != nil {
		p.check(j)
	}
}

// newID returns the id of a packet to send: its transmit stamp's
// (Conn.TxTime) and, for a SYN, the probe id its ISN is keyed with. Ids
// with the top bit set are never the engine's: they are a scan's, the
// probe id core.ScanID and the stamp ids of its batches, which share the
// client's sockets (rawsock.BulkStamp).
// core.ScanID has the top bit: no id of the engine's is a scan's.
const _ = uint(core.ScanID>>31) - 1

func (p *Prober) newID() uint32 {
	id := p.nextID
	p.nextID++
	if id&rawsock.BulkStamp != 0 {
		id, p.nextID = 0, 1
	}
	return id
}

// portTaker is a PortAllocator that can hand out a chosen port
// (ProbeOptions.SourcePort).
type portTaker interface {
	TakePort(port uint16, now time.Time, tsval uint32, timestamps bool) bool
}

// nextPort returns the source port (want, unless 0) for a SYN that leaves at now with
// TSval tsval, from the allocator. If the port's last connection still
// lingers in TIME_WAIT, the allocator found that it may be reused (RFC
// 6191): that connection is forgotten.
func (p *Prober) nextPort(want uint16, now time.Time, tsval uint32, timestamps bool) (uint16, bool) {
	port, ok := want, false
	if want == 0 {
		port, ok = p.ports.Take(now, tsval, timestamps)
	} else if pt, can := p.ports.(portTaker); can {
		ok = pt.TakePort(want, now, tsval, timestamps)
	}
	if !ok || port < p.portLo || port > p.portHi {
		return 0, false
	}
	if off := port - p.portLo; p.connOK[off] {
		i := p.tab.lookup(p.conns[off], port)
		if i < 0 || p.tab.e[i].state != stateTimeWait {
			return 0, false // still in use: the allocator is wrong
		}
		p.drop(i)
	}
	return port, true
}

// freePort gives back the port of a probe that made no connection.
func (p *Prober) freePort(port uint16) {
	if p.release {
		p.ports.Release(port, PortEnd{At: p.now()})
	}
}

// sendSYN builds and sends probe seq of job j to its target ti. It
// returns false, having sent nothing, when j waits for room (job.wait)
// and there is no free port or no room in the table.
func (p *Prober) sendSYN(j *job, ti, seq int, now time.Time) bool {
	t := &j.targets[ti]
	// A source that follows the routes changes only between probes: an
	// answer in flight is matched against its target's source.
	if j.auto != nil && j.auto[ti] && j.inflight[ti] == 0 {
		if err := j.resolve(ti, t); err != nil {
			p.finishError(&pending{job: j, target: int32(ti), seq: int32(seq), sent: now}, err)
			return true
		}
	}
	opts := &j.opts[family(t)]
	tsval := p.tsval(now)
	// The port first: taking one that cools from a TIME_WAIT (RFC 6191)
	// frees that connection's place in the table.
	sport, ok := p.nextPort(j.sport, now, tsval, opts.tsval >= 0)
	if j.wait && (!ok || p.tab.full()) {
		if ok {
			p.freePort(sport)
		}
		return false
	}
	id := p.newID()
	e := pending{
		state:    stateSynSent,
		id:       id,
		job:      j,
		target:   int32(ti),
		seq:      int32(seq),
		sent:     now,
		deadline: now.Add(j.timeout),
	}
	if !ok {
		p.finishError(&e, errors.New("probe: every source port is busy (connections open, closed less than a second ago, or in TIME_WAIT without timestamps): probe less often, or with more ports"))
		return true
	}
	e.sport = sport
	e.isn = p.cookie.ISN(t.Src, t.Addr, sport, t.Port, id)
	if p.tab.full() {
		p.freePort(sport)
		p.finishError(&e, errors.New("probe: too many probes in flight"))
		return true
	}
	if opts.tsval >= 0 {
		binary.BigEndian.PutUint32(opts.b[opts.tsval:], tsval)
	}
	flags := wire.FlagSyn
	if j.ecn {
		flags |= wire.FlagEce | wire.FlagCwr
	}
	seg := wire.Segment{
		Src: t.Src, Dst: t.Addr,
		TTL: j.ttl, TOS: j.tos,
		ID: uint16(e.isn >> 16), DF: true,
		SrcPort: sport, DstPort: t.Port,
		Seq:     e.isn,
		Flags:   flags,
		Window:  j.window,
		Options: opts.b[:opts.n],
	}
	if j.mode == ModeBareACK {
		// The host's RST takes its sequence number from our
		// acknowledgement field: the ISN, which finds this probe.
		flags = wire.FlagAck
		seg.Flags, seg.Ack, seg.Options = flags, e.isn, nil
	}
	n, err := seg.Build(p.pkt[:])
	if err != nil {
		p.freePort(sport)
		p.finishError(&e, err)
		return true
	}
	if j.packets {
		j.syn = append(j.syn[:0], p.pkt[:n]...)
		p.kept = append(p.kept, keptProbe{e.isn, sport})
	}
	if j.mode == ModeFIN || j.mode == ModeWithhold || j.trace {
		e.c = p.newTCB(&j.settings)
		e.c.us, e.c.peer = SynSent, Listen
		e.c.record(stamp{u: now, id: id, tx: true}, true, flags, e.isn, 0, 0, j.window, "")
	}
	if j.mode == ModeFIN || j.mode == ModeWithhold {
		// The port is this connection's until it ends: segments
		// that acknowledge nothing of ours find it by port.
		off := sport - p.portLo
		p.conns[off], p.connOK[off] = e.isn, true
	}
	// Register before sending: a reply on loopback can beat Send's return.
	e.live = true
	i := p.tab.insert(e)
	p.live++
	j.live++
	if j.inflight != nil {
		j.inflight[ti]++
	}
	p.arm(i, e.deadline)
	p.spun(now)
	if p.batching {
		if p.queueSYN(synKey{e.isn, sport}, p.pkt[:n], id, t.Addr.Is6()) {
			return true
		}
		i = p.tab.lookup(e.isn, sport) // a full batch sent may have moved it
	}
	if err := p.send(p.pkt[:n], id); err != nil {
		p.synFailed(i, err)
		return true
	}
	p.synSent(i)
	return true
}

// synSent counts the SYN of probe i, sent.
func (p *Prober) synSent(i int) {
	if e := &p.tab.e[i]; e.job.stats != nil {
		e.job.stats[e.target].sent++
	}
}

// synFailed ends probe i, whose SYN could not be sent, with err.
func (p *Prober) synFailed(i int, err error) {
	e := p.tab.e[i]
	p.tab.e[i].live = false // its result is the error's
	p.live--
	e.job.unlive(e.target)
	p.drop(i)
	p.finishError(&e, err)
}

// queueSYN adds the SYN of probe k to its family's batch; false if it
// does not fit a batch's slot (it is then sent alone).
func (p *Prober) queueSYN(k synKey, pkt []byte, id uint32, v6 bool) bool {
	f := 0
	if v6 {
		f = 1
	}
	sb := &p.batches[f]
	if sb.b == nil {
		sb.b = rawsock.NewBatch(synBatchSize)
	}
	if sb.b.Full() {
		p.flushBatch(f)
	}
	if copy(sb.b.Slot(), pkt) != len(pkt) || !sb.b.Commit(len(pkt)) {
		return false
	}
	sb.b.SetID(sb.b.Len()-1, id)
	sb.keys = append(sb.keys, k)
	return true
}

// flushBatches sends what the batches hold, and ends batching.
func (p *Prober) flushBatches() {
	p.flushBatch(0)
	p.flushBatch(1)
	p.batching = false
}

// flushBatch sends family f's batch. The packets the kernel did not take
// (it refused one, or the Conn has no socket of that family) are sent one
// at a time: each probe gets its own result, its own error. Each probe is
// found by its key (a probe that ended meanwhile is not).
func (p *Prober) flushBatch(f int) {
	sb := &p.batches[f]
	if sb.b == nil || sb.b.Len() == 0 {
		return
	}
	sent, _ := p.batcher.SendBatch(sb.b) // the rest stay in the batch
	p.count.sent.Add(uint64(sent))
	for _, k := range sb.keys[:sent] {
		if i := p.tab.lookup(k.isn, k.sport); i >= 0 {
			p.synSent(i)
		}
	}
	for n, k := range sb.keys[sent:] {
		err := p.send(sb.b.Packet(n), sb.b.ID(n))
		switch i := p.tab.lookup(k.isn, k.sport); {
		case i < 0:
		case err != nil:
			p.synFailed(i, err)
		default:
			p.synSent(i)
		}
	}
	sb.b.Reset()
	sb.keys = sb.keys[:0]
}

func (p *Prober) tsval(now time.Time) uint32 { return p.clock.TSval(now) }

// arm sets probe i's timer.
func (p *Prober) arm(i int, at time.Time) {
	e := &p.tab.e[i]
	e.gen++
	e.deadline = at
	if len(p.timers) >= 2*tableSize {
		p.timers.compact(&p.tab) // at most tableSize/2 live: most are stale
	}
	p.timers.push(timerEntry{at: at, isn: e.isn, sport: e.sport, gen: e.gen})
}

// drop removes probe i from the table and recycles its connection block.
func (p *Prober) drop(i int) {
	e := &p.tab.e[i]
	if e.state == stateSynSent {
		p.freePort(e.sport) // a connection frees its port in finishConn
	}
	if off := e.sport - p.portLo; p.connOK[off] && p.conns[off] == e.isn {
		p.connOK[off] = false
	}
	if e.c != nil {
		p.free = append(p.free, e.c)
	}
	if e.job.packets {
		p.kept = slices.DeleteFunc(p.kept, func(k keptProbe) bool { return k.isn == e.isn && k.sport == e.sport })
	}
	j, live := e.job, e.live
	if live {
		p.live--
		j.unlive(e.target)
	}
	p.tab.remove(i)
	if live {
		p.check(j)
	}
}

// handle matches an inbound packet to its probe and advances that probe.
func (p *Prober) handle(in *inbound) {
	pkt := &in.pkt
	if pkt.IsICMP() {
		p.handleICMP(in)
		return
	}
	if pkt.Proto != wire.ProtocolTCP || pkt.DstPort < p.portLo || pkt.DstPort > p.portHi {
		return
	}
	// An answer to our SYN acknowledges ISN+1; later segments of a
	// connection are found by port.
	i := -1
	switch {
	case pkt.Flags&wire.FlagAck != 0:
		i = p.tab.lookup(pkt.Ack-1, pkt.DstPort)
	case pkt.Flags&wire.FlagRst != 0:
		i = p.tab.lookup(pkt.Seq, pkt.DstPort) // a bare ACK's answer
	}
	if off := pkt.DstPort - p.portLo; i < 0 && p.connOK[off] {
		i = p.tab.lookup(p.conns[off], pkt.DstPort)
	}
	if i < 0 {
		return // stray, late, duplicate, or another run's reply
	}
	e := &p.tab.e[i]
	t := e.t()
	if pkt.Src != t.Addr || pkt.SrcPort != t.Port || pkt.Dst != t.Src {
		return
	}
	if e.state == stateHeld || e.state == stateLateACK {
		p.heldSegment(i, in)
		return
	}
	if e.state != stateSynSent {
		p.took = true
		p.segment(i, in)
		return
	}
	// In SYN_SENT only an answer to our SYN is taken (core.Of), and
	// for a bare ACK only the host's RST.
	a, ok := core.Of(pkt, p.portLo, p.portHi)
	if !ok || !a.Answers(e.tuple(), e.isn) || (a.Kind == core.ACKReset) != (e.job.mode == ModeBareACK) {
		return
	}
	p.took = true
	switch a.Kind {
	case core.ACKReset:
		p.finishReply(i, in, StateClosed, ReasonACKRST)
	case core.RST:
		if e.c != nil {
			e.c.us, e.c.peer = Closed, Listen
			e.c.recordIn(e, in, "")
		}
		p.finishReply(i, in, StateClosed, ReasonRST)
	case core.SynAck:
		p.synAck(i, in)
	}
}

// tuple returns probe e's connection.
func (e *pending) tuple() core.Tuple {
	t := e.t()
	return core.Tuple{Local: t.Src, Remote: t.Addr, LocalPort: e.sport, RemotePort: t.Port}
}

// resetSyn sends the RST that frees the half-open connection probe e's
// SYN may have left at the server (core.Reset).
func (p *Prober) resetSyn(e *pending, note string) {
	seg := core.Reset(e.tuple(), e.isn, e.job.ttl, e.job.tos)
	p.sendSeg(e, seg.Flags, seg.Seq, seg.Ack, nil, note)
}

// synAck advances probe i, in SYN_SENT, on its SYN-ACK.
func (p *Prober) synAck(i int, in *inbound) {
	e := &p.tab.e[i]
	pkt := &in.pkt
	v6 := e.t().Addr.Is6()
	if e.c != nil {
		e.c.us, e.c.peer = Established, SynRcvd
		e.c.irs = pkt.Seq
		e.c.recordIn(e, in, "")
	}
	switch e.job.mode {
	case ModeRST:
		if e.c != nil {
			e.c.us, e.c.peer = Closed, Closed
		}
		p.resetSyn(e, "")
	case ModeACK:
		if e.c != nil {
			e.c.peer = Established
		}
		p.sendSeg(e, wire.FlagAck, e.isn+1, pkt.Seq+1, nil, "")
		if e.c != nil {
			e.c.us, e.c.peer = Closed, Closed
		}
		p.resetSyn(e, "")
	case ModeFIN:
		rtt, _ := p.since(stamp{u: e.sent, id: e.id, tx: true}, rxStamp(in), v6)
		p.established(i, in, rtt, rtt < SynAckRTO)
		return
	case ModeWithhold:
		p.hold(i, in)
		return
	}
	p.finishReply(i, in, StateOpen, ReasonSYNACK)
}

func (p *Prober) handleICMP(in *inbound) {
	if !in.pkt.Quoted.HasSeq {
		return // too short a quote to prove it is ours
	}
	a, ok := core.Of(&in.pkt, p.portLo, p.portHi)
	i := -1
	if ok {
		i = p.tab.lookup(a.ISN, a.LocalPort)
		if i < 0 {
			i = p.quotedByID(&a, in.pkt.Quoted.ID)
		}
	}
	if i < 0 {
		p.connICMP(in)
		return
	}
	e := &p.tab.e[i]
	if e.state != stateSynSent || !a.Answers(e.tuple(), e.isn) {
		return
	}
	p.took = true
	p.finishReply(i, in, StateFiltered, wire.ICMPReason(a.Remote.Is6(), in.pkt.ICMPType, in.pkt.ICMPCode))
}

// quotedByID finds the probe kept with ProbeOptions.Packets (a trace's)
// that an ICMP error quotes with a sequence number other than its ISN,
// one a middlebox rewrote: by its 4-tuple and the quoted IPv4 ID, the
// ISN's top half, among the few such probes in flight. It sets a.ISN to
// the probe's and returns its index, or -1.
func (p *Prober) quotedByID(a *core.Answer, id uint16) int {
	if !a.Local.Is4() {
		return -1 // no ID in IPv6
	}
	for _, k := range p.kept {
		i := p.tab.lookup(k.isn, k.sport)
		if i < 0 {
			continue
		}
		if e := &p.tab.e[i]; e.state == stateSynSent && e.tuple() == a.Tuple && id != 0 && uint16(e.isn>>16) == id {
			a.ISN = e.isn
			return i
		}
	}
	return -1
}

// finishReply completes probe i with a verdict from packet in.
func (p *Prober) finishReply(i int, in *inbound, st State, reason string) {
	e := p.tab.e[i]
	r := p.begin(&e)
	r.State, r.Reason = st, reason
	p.fillReply(r, &e, in)
	p.finishTrace(r, &e)
	p.drop(i)
	p.emit(e.job, r)
}

// fillReply copies the answer's details into r.
func (p *Prober) fillReply(r *Result, e *pending, in *inbound) {
	pkt := &in.pkt
	r.RTT, r.KernelClock = p.since(stamp{u: e.sent, id: e.id, tx: true}, rxStamp(in), r.Target.Addr.Is6())
	r.MaybeRetransmit = pkt.Flags&wire.FlagSyn != 0 && r.RTT >= SynAckRTO
	r.From = pkt.Src
	r.TTL, r.TOS, r.IPID, r.DF = pkt.TTL, pkt.TOS, pkt.ID, pkt.DF
	if pkt.IsICMP() {
		r.ICMPType, r.ICMPCode = pkt.ICMPType, pkt.ICMPCode
		if q := &pkt.Quoted; e.job.packets && q.Offset+q.Length <= len(in.raw) {
			r.Quote = in.raw[q.Offset : q.Offset+q.Length]
		}
	} else {
		r.Flags, r.PeerSeq, r.Window, r.Options = pkt.Flags, pkt.Seq, pkt.Window, pkt.Options
	}
}

// resolve fills in the kernel transmit stamp of one of our packets.
func (p *Prober) resolve(s *stamp, v6 bool) {
	if s.tx && s.k.IsZero() {
		s.k, _ = p.conn.TxTime(s.id, v6)
	}
}

// since returns b - a by the kernel's clock when both ends have kernel
// stamps, else by the user-space clock. v6 selects the socket whose
// transmit stamps to look in.
func (p *Prober) since(a, b stamp, v6 bool) (time.Duration, bool) {
	p.resolve(&a, v6)
	p.resolve(&b, v6)
	if !a.k.IsZero() && !b.k.IsZero() {
		return b.k.Sub(a.k), true
	}
	return b.u.Sub(a.u), false
}

func (p *Prober) finishError(e *pending, err error) {
	r := p.begin(e)
	r.State, r.Reason, r.Err = StateError, SendErrorReason(err), err
	p.emit(e.job, r)
}

// expire runs the timers that are due.
func (p *Prober) expire(now time.Time) {
	for {
		i, ok := p.timers.live(&p.tab)
		if !ok || p.tab.e[i].deadline.After(now) {
			return
		}
		p.timers.pop()
		p.timer(i, now)
	}
}

// timer handles the deadline of probe i.
func (p *Prober) timer(i int, now time.Time) {
	e := &p.tab.e[i]
	switch e.state {
	case stateSynSent:
		if e.job.mode.needsGuard() || e.job.mode != ModeBareACK && p.guarded.Load() {
			// The SYN may have arrived and its SYN-ACKs been lost: a RST
			// at our ISN+1 frees the server's half-open connection, which
			// the RST guard keeps our kernel from doing (rst mode without
			// a guard needs none: the kernel answers a late SYN-ACK).
			p.resetSyn(e, "")
		}
		ev := p.tab.e[i]
		r := p.begin(&ev)
		r.State, r.Reason = StateFiltered, ReasonTimeout
		p.finishTrace(r, &ev)
		p.drop(i)
		p.emit(ev.job, r)
	case stateHeld:
		p.endHold(i, false)
	case stateLateACK:
		p.endLateACK(i, AckSilent)
	case stateTimeWait:
		if e.c != nil && !e.c.reportAt.IsZero() {
			p.connTimer(i, now) // a close report waiting out its grace
			return
		}
		p.drop(i)
	default:
		p.connTimer(i, now)
	}
}

// begin resets the shared Result for probe e.
func (p *Prober) begin(e *pending) *Result {
	r := &p.res
	*r = Result{
		Target:  e.t(),
		Index:   int(e.target),
		Seq:     int(e.seq),
		SrcPort: e.sport,
		ISN:     e.isn,
		Sent:    e.sent,
		Mode:    e.job.mode,
	}
	if e.job.packets {
		r.SYN = e.job.syn
	}
	return r
}

// emit delivers a result of job j.
func (p *Prober) emit(j *job, r *Result) {
	if j.stats != nil {
		j.stats[r.Index].add(r)
	}
	if j.onResult != nil {
		p.callbacks.Add(1)
		j.onResult(r)
		p.callbacks.Add(-1)
	}
}

// synOpts is an encoded set of SYN options.
type synOpts struct {
	b     [wire.MaxOptionsSize]byte
	n     int
	tsval int // offset of TSval in b, or -1
}

func (s *synOpts) encode(o *wire.SYNOptions) {
	s.n, s.tsval = 0, -1
	if o != nil {
		s.n = o.Encode(s.b[:])
		s.tsval = core.TSvalOffset(s.b[:s.n])
	}
}

// recSent is a packet sent whose kernel transmit stamp the recorder has
// not had yet.
type recSent struct {
	id uint32
	v6 bool
	at time.Time
}

// recordSent hands the recorder a packet just sent.
func (p *Prober) recordSent(pkt []byte, id uint32, at time.Time, v6 bool) {
	p.rec.Sent(pkt, id, time.Time{}, at)
	p.recTx = append(p.recTx, recSent{id, v6, at})
}

// recordRx hands the recorder a packet just read, after the transmit
// stamps that have come: a reply's probe is stamped before it.
func (p *Prober) recordRx(b []byte, rx time.Time) {
	p.recordTx(false)
	p.rec.Received(b, rx, p.now())
}

// recordTx gives the recorder the kernel transmit stamps that have come
// (the ones the engine takes for RTTs: Conn.TxTime). A stamp still
// missing after recTxWait never comes: the recorder keeps the packet's
// user-space time. final: the engine stops, the last look.
func (p *Prober) recordTx(final bool) {
	if p.rec == nil || len(p.recTx) == 0 {
		return
	}
	now := p.now()
	keep := p.recTx[:0]
	for _, s := range p.recTx {
		if t, ok := p.conn.TxTime(s.id, s.v6); ok {
			p.rec.TxStamp(s.id, t)
			continue
		}
		if !final && now.Sub(s.at) < recTxWait {
			keep = append(keep, s)
		}
	}
	p.recTx = keep
}

// recTxWait is how long the engine looks for a packet's transmit stamp for
// the recorder. The kernel queues it as the packet leaves, within
// microseconds; the engine's own RTTs look for it no longer than the
// answer takes.
const recTxWait = 100 * time.Millisecond

package scan

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/probe/internal/core"
	"github.com/synprobe/synprobe/rawsock"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// Conn is what a scan sends its probes and RSTs through: rawsock.Conn
// implements it. The answers come through the client's engine.
type Conn interface {
	BatchSender
	Send(pkt []byte, id uint32) error
}

// BatchSender sends a batch of packets: rawsock.Conn (raw IP sockets) or
// rawsock.PacketSender (Ethernet frames, skipping the host's IP output).
// ReadTxStamps reads the kernel's transmit stamps of the packets sent
// with ids (rawsock.Batch.SetID) without waiting for any; it returns
// rawsock.ErrNoTxStamps if the sender takes none.
type BatchSender interface {
	SendBatch(b *rawsock.Batch) (int, error)
	ReadTxStamps(s *rawsock.TxStamps) error
}

// Receiver delivers received packets in bulk, each with its receive time:
// rawsock.Ring, which a client's engine reads for a big scan. Read calls
// fn for every packet it has and returns their number, or waits for one
// until deadline (zero: no limit; in the past: not at all) and then
// returns an error wrapping os.ErrDeadlineExceeded; net.ErrClosed once
// closed. The engine only looks (a deadline in the past), so nothing
// waits on it to be woken.
type Receiver interface {
	Read(deadline time.Time, fn func(pkt []byte, rx time.Time)) (int, error)
	// Dropped returns how many packets were lost for want of room.
	Dropped() uint64
	// Pending returns the share of the room taken by packets not yet
	// read, from 0 to 1. The senders wait while it is above a half.
	Pending() float64
	// Mark returns how many packets the receiver has been given so far
	// (0 if it cannot count them), for ReadTo.
	Mark() uint64
	// ReadTo reports whether Read has handed over, and fn has handled,
	// every packet the receiver had been given when Mark returned mark;
	// a receiver that cannot count reports whether none waits in it now.
	// A pass ends only once it does: what reached us before a pair's
	// time was up is its answer, however long reading it takes.
	ReadTo(mark uint64) bool
}

// MaxRetries is the most retries a scan makes.
const MaxRetries = 100

// wiring is how a scan reaches the network: Prepared.Run takes it from
// the client and from what Prepare opened.
type wiring struct {
	// Recv is how the client's engine hands the scan its answers.
	Recv *feed
	// ProbeCopies says that Recv also delivers each probe as it leaves,
	// with the kernel's time (rawsock.RingConfig.Outgoing): that time is
	// the probe's transmit stamp, and the senders ask for no other.
	ProbeCopies bool
	// Send4 and Send6, if set, send the probes of their family instead of
	// the Conn.
	Send4, Send6 BatchSender
	// Sources gives each pair's source address (see scan.Sources). When
	// nil, Src4 and Src6 are the source of every pair of their family.
	Sources    []SourceRange
	Src4, Src6 netip.Addr
	// PortLo..PortHi are our source ports; replies to others are ignored.
	PortLo, PortHi uint16
	// Ports, if set, are the source ports to use, within PortLo..PortHi
	// (a rawsock.PortBlock's, which may have holes); else all of them.
	Ports []uint16
	// Cookie keys the probes' ISNs.
	Cookie wire.Cookie
}

// Config configures a scan on a client (Run, Prepared.Run): what to
// scan and how. How it reaches the network (sockets, ports, key, source
// addresses) is the client's.
type Config struct {
	// Set is what to scan.
	Set *Set
	// Rate caps the probes per second; 0 sends as fast as possible.
	Rate float64
	// Retries is how often an unanswered pair is probed again.
	Retries int
	// Timeout is how long a pass waits for a pair's answer after its
	// probe: a host whose RTTs were measured waits less, SRTT + 4 RTTVAR
	// (RFC 6298) but at least MinRTO; a pass whose pairs all answered
	// ends at once.
	Timeout time.Duration
	// Senders is the number of sending threads (default: GOMAXPROCS).
	Senders int

	TTL, TOS uint8
	Window   uint16
	ECN      bool // ask for ECN: ECE and CWR set in the SYN
	// Options and Options6 are the SYN options for IPv4 and IPv6 pairs
	// (Options for both when Options6 is nil; IPv4 SYNs carry none when
	// only Options6 is set); both nil: the client's
	// (probe.ClientConfig.Options), as a probe's. NoOptions sends SYNs
	// without options.
	Options   *wire.SYNOptions
	Options6  *wire.SYNOptions
	NoOptions bool

	// PermKey keys the order in which the pairs are visited.
	PermKey [16]byte

	// OnResult is called once per pair, never concurrently: on the
	// client's engine's goroutine as answers come (see Run), from a
	// sending one for a probe that could not be sent (StateError, with
	// the reason of probe.SendErrorReason), then at the end for the
	// pairs nobody answered. A scan that ends early (its context done:
	// Summary.Interrupted; or an error) reports only the pairs answered
	// by then. *r is reused once OnResult returns: copy it to keep it.
	OnResult func(r *probe.ScanResult, o Origin)
	// OnProgress, if set, is called about every 250 ms.
	OnProgress func(Progress)
	// Now is the user-space clock (default time.Now): the rate limiter,
	// the passes' waits, TSvals, and the send time of a probe whose
	// kernel transmit stamp is missing.
	Now func() time.Time
	// Recorder, if set, gets every probe and RST the scan sends, with the
	// transmit stamps it times them by, and every packet of a big scan's
	// ring (the client's ClientConfig.Recorder records what the client's
	// sockets receive).
	Recorder probe.Recorder
}

// Progress is a snapshot of a running scan.
type Progress struct {
	Pairs, Done, Open uint64
	Sent              uint64
	Rate              float64 // probes per second over the last interval
	Pass              int     // 0: first pass; n: retry n
	ETA               time.Duration
}

// Summary describes a finished scan.
type Summary struct {
	Pairs      uint64
	Sent       uint64 // probes, retries included
	Retries    uint64 // probes beyond the first per pair
	Open       uint64
	Closed     uint64
	Filtered   uint64
	Errors     uint64 // pairs whose probe could not be sent (StateError)
	Reasons    map[string]uint64
	Duplicates uint64 // replies for pairs already answered
	Duration   time.Duration
	Rate       float64 // probes per second achieved over the sending time
	RateLimit  float64 // the cap in force at the end (after slow-downs); 0: none
	Slowdowns  int
	SendErrors uint64 // probes the device queue had no room for, sent again in a later pass
	RecvDrops  uint64 // answers the receiver lost for want of room
	// Received counts the packets the receiver handed over (copies of
	// our own probes not included), Unmatched those of them that
	// answered none of our probes: not ours, malformed, or a wrong
	// checksum (Parse); a ring also sees the answers to the client's
	// own probes, which count here. Against a capture, they say where
	// an answer went missing.
	Received, Unmatched uint64
	// Interrupted says that the context ended the scan early: Run then
	// returns no error, and only the pairs answered by then have a
	// result.
	Interrupted bool
	// HostTTL is the SYN-ACK TTL of every host that answered one, for
	// judging where refusals came from (MiddleboxTTL).
	HostTTL map[netip.Addr]uint8

	// KernelClock counts the answers timed by kernel stamps at both ends
	// (transmit and receive), UserClock those timed with the user-space
	// clock at one end at least (Result.KernelClock).
	KernelClock, UserClock uint64

	// SendPath and RecvPath say how the probes were sent and the answers
	// read, for people.
	SendPath, RecvPath string
}

// scanConn probes every pair of cfg.Set once, in a keyed random order,
// and again up to cfg.Retries times for those left unanswered, through
// conn and what w gives: Prepared.Run's scan. Memory does not grow with
// the number of pairs beyond one bit each.
func scanConn(ctx context.Context, conn Conn, cfg Config, w wiring) (Summary, error) {
	s, err := newScanner(conn, cfg, w)
	if err != nil {
		return Summary{}, err
	}
	return s.run(ctx)
}

type scanner struct {
	conn  Conn
	rcv   *feed
	cfg   Config
	w     wiring
	ports []uint16 // source ports, in the order sport walks them
	set   *Set
	perm  *Perm
	n     uint64

	answered *Bitmap
	srcs     []SourceRange
	ourAddrs []netip.Addr // the distinct sources
	times    *sendTimes
	rtts     *hostRTTs
	limiter  *Limiter
	start    time.Time
	opts     [2][wire.MaxOptionsSize]byte
	optLen   [2]int
	tsOff    [2]int
	clock    core.Clock // TSvals

	now func() time.Time // cfg.Now
	// kernelBacklog is rawsock.KernelBacklog: whether packets wait in
	// the kernel's receive backlogs, on their way to our receiver.
	kernelBacklog func() bool
	outs          [2]BatchSender // per family: what sends its probes
	noStamps      [2]atomic.Bool // the family's sender takes no stamps
	stampMu       sync.Mutex     // held while stamps are read and recorded

	sent, dups, sendErrs atomic.Uint64
	received, unmatched  atomic.Uint64 // Summary's; written by the receiving thread
	kernelRTTs, userRTTs atomic.Uint64
	open, closed, filt   atomic.Uint64
	errs                 atomic.Uint64
	lastAnswer           atomic.Int64 // unix ns of the latest answer handled
	slowdowns            atomic.Int32
	passStart, passSent  atomic.Int64 // unix ns when the current pass began; s.sent then
	slowMu               sync.Mutex   // serializes slowDown
	floor                float64      // without a rate cap: the lowest slowDown goes

	// emitMu serializes OnResult and what it reports from: the receiver
	// and a sender whose probe failed both report.
	emitMu sync.Mutex
	errRes probe.ScanResult // a failed send's result, under emitMu

	// The receiver's state; reportSilent uses it after the receiver ended.
	ewma, baseline time.Duration // smoothed RTT, and its lowest value: growth means queues
	nRTT           int
	window, late   int        // answers in the current window, and those late
	windowStart    time.Time  // receive time of the window's first answer
	lastSlowMu     sync.Mutex // serializes slowDownAfter
	lastSlow       time.Time  // under lastSlowMu
	reasons        map[string]uint64
	hostTTL        map[netip.Addr]uint8 // SYN-ACK TTL per host, for middlebox hints
	res            probe.ScanResult
	in             wire.Packet
	onPacket       func([]byte, time.Time) // s.packet, bound once
	rstBuf         [128]byte
	rstID          uint32
	rxStamps       *rawsock.TxStamps // the receiver's, for stamps it must read itself
	connClosed     atomic.Bool       // a send found the sockets closed (the client's)
	pass           atomic.Int32      // the pass being sent, stored before its first probe
	stampsRead     bool              // the stamps were read for the packet being handled
	ringFed        bool              // the answers come from the scan's ring, else the client's sockets
	rec            probe.Recorder    // cfg.Recorder
	recRx          bool              // rec records what the receiver reads
}

func newScanner(conn Conn, cfg Config, w wiring) (*scanner, error) {
	if cfg.Set == nil || cfg.Set.Len() == 0 {
		return nil, errors.New("scan: nothing to scan")
	}
	if cfg.Set.Len() > MaxPairs {
		return nil, fmt.Errorf("scan: %d pairs is more than the %d a scan can hold", cfg.Set.Len(), uint64(MaxPairs))
	}
	if w.PortLo == 0 || w.PortHi < w.PortLo {
		return nil, fmt.Errorf("scan: bad source port range %d-%d", w.PortLo, w.PortHi)
	}
	ports := w.Ports
	if len(ports) == 0 {
		for p := int(w.PortLo); p <= int(w.PortHi); p++ {
			ports = append(ports, uint16(p))
		}
	}
	for _, p := range ports {
		if p < w.PortLo || p > w.PortHi {
			return nil, fmt.Errorf("scan: source port %d outside %d-%d", p, w.PortLo, w.PortHi)
		}
	}
	if cfg.Rate < 0 || math.IsNaN(cfg.Rate) || cfg.Retries < 0 || cfg.Timeout < 0 {
		return nil, errors.New("scan: negative rate, retries or timeout")
	}
	if cfg.Retries > MaxRetries {
		return nil, fmt.Errorf("scan: more than %d retries", MaxRetries)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = time.Second
	}
	if cfg.Senders <= 0 {
		cfg.Senders = runtime.GOMAXPROCS(0)
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
	n := cfg.Set.Len()
	s := &scanner{
		conn:          conn,
		cfg:           cfg,
		w:             w,
		ports:         ports,
		set:           cfg.Set,
		perm:          NewPerm(n, cfg.PermKey),
		n:             n,
		answered:      NewBitmap(n),
		times:         newSendTimes(cfg.Rate, cfg.Timeout),
		rtts:          newHostRTTs(cfg.Set.Addrs()),
		reasons:       map[string]uint64{},
		hostTTL:       map[netip.Addr]uint8{},
		now:           cfg.Now,
		kernelBacklog: rawsock.KernelBacklog,
		outs:          [2]BatchSender{conn, conn},
		rxStamps:      rawsock.NewTxStamps(stampBatch),
		clock:         core.NewClock(&w.Cookie),
	}
	if w.Send4 != nil {
		s.outs[0] = w.Send4
	}
	if w.Send6 != nil {
		s.outs[1] = w.Send6
	}
	if w.ProbeCopies {
		s.noStamps[0].Store(true)
		s.noStamps[1].Store(true)
	}
	s.onPacket = s.packet
	s.srcs = w.Sources
	if s.srcs == nil {
		s.srcs = Sources(cfg.Set, func(p netip.Prefix) netip.Addr {
			if p.Addr().Is4() {
				return w.Src4
			}
			return w.Src6
		})
	}
	for _, r := range s.srcs {
		if r.Addr.IsValid() && !slices.Contains(s.ourAddrs, r.Addr) {
			s.ourAddrs = append(s.ourAddrs, r.Addr)
		}
	}
	s.rec = cfg.Recorder
	if w.Recv == nil {
		// The client's engine reads every packet a client receives.
		return nil, errors.New("scan: the answers come through a client (Run)")
	}
	s.ringFed = w.Recv.ring != nil
	// The client's engine records what it reads from its sockets; a
	// ring's packets only the scan sees.
	s.recRx = s.rec != nil && s.ringFed
	s.rcv = w.Recv
	if cfg.Rate > 0 {
		// Two milliseconds of tokens: a sender that waits for one sleeps
		// about a millisecond (Go timers), and must find that much left.
		s.limiter = NewLimiter(cfg.Rate, max(1, int(cfg.Rate/500)))
	} else {
		// No cap until a slow-down sets one below the rate achieved.
		s.limiter = NewLimiter(math.Inf(1), 64)
	}
	for fam, o := range []*wire.SYNOptions{cfg.Options, cfg.Options6} {
		if fam == 1 && o == nil {
			o = cfg.Options
		}
		s.tsOff[fam] = -1
		if o != nil {
			s.optLen[fam] = o.Encode(s.opts[fam][:])
			s.tsOff[fam] = core.TSvalOffset(s.opts[fam][:s.optLen[fam]])
		}
	}
	return s, nil
}

func (s *scanner) run(ctx context.Context) (Summary, error) {
	s.start = s.now()
	recvDone := make(chan error, 1)
	var stopRecv atomic.Bool
	go func() { recvDone <- s.watch(&stopRecv) }()

	progressDone := make(chan struct{})
	pass := &s.pass
	if s.cfg.OnProgress != nil {
		go s.progress(pass, progressDone)
	}

	var sendTime time.Duration
	var recvErr error
	recvEnded := false // recvDone was read: the receiver ended by itself
	interrupted := false
	for p := 0; p <= s.cfg.Retries; p++ {
		if p > 0 && s.answered.Count() == s.n {
			break
		}
		pass.Store(int32(p))
		before := s.answered.Count()
		t0 := s.now()
		sentBefore := s.sent.Load()
		s.passSent.Store(int64(sentBefore))
		s.passStart.Store(t0.UnixNano())
		s.sendPass(ctx, p, p == s.cfg.Retries)
		sendTime += s.now().Sub(t0)
		if ctx.Err() != nil {
			interrupted = true
			break
		}
		// Wait for the answers. A pass whose pairs have all answered ends
		// at once; otherwise it ends once every silent pair's wait has
		// passed since the pass's last probe: the timeout, or less for a
		// host whose SYN-ACKs were timed (never one learned from other
		// hosts, nor from RSTs, which a firewall may send for it): its
		// RTO for a pass a retry follows, its RTO plus the server's
		// SYN-ACK retransmission timer after the last.
		//
		// And only once the receiver has handled every packet that had
		// reached it then (Receiver.ReadTo), however long that takes: an
		// answer waiting in our own ring or socket is the pair's answer,
		// and a receiver held up (starved of CPU, or blocked writing a
		// result to a slow reader of our output) handles nothing for a
		// while, which is not silence. Such a wait once had a bound (no
		// answer handled for a whole timeout), and under CI's load the
		// pass, then the scan, ended with a third of the answers unread
		// in the ring: thousands of pairs called filtered. Packets that
		// come later do not hold the pass up. Answers the kernel has
		// received but not yet processed (its receive backlogs, the
		// host's) are waited for too, but while answers keep coming
		// only: other traffic keeps the backlogs busy.
		sendEnd := s.now()
		var until, nextCheck time.Time
		var mark uint64
		marked := false
	wait:
		for {
			now := s.now()
			if s.answered.Count() == s.n {
				break // every pair has its answer: nothing more to wait for
			}
			if !now.Before(nextCheck) {
				until = sendEnd.Add(s.silentWait(p == s.cfg.Retries))
				nextCheck = now.Add(silentRecheck)
			}
			sleep := min(until.Sub(now), nextCheck.Sub(now), 10*time.Millisecond)
			if now.Before(until) {
				marked = false // taken once the wait is up: after what came by then
			} else {
				last := laterOf(time.Unix(0, s.lastAnswer.Load()), sendEnd)
				if s.kernelBacklog() && now.Before(last.Add(s.cfg.Timeout)) {
					// Answers on their way in: the mark comes after them.
					marked = false
				} else {
					if !marked {
						mark, marked = s.rcv.Mark(), true
					}
					if s.rcv.ReadTo(mark) {
						break
					}
				}
				sleep = time.Millisecond
			}
			select {
			case <-ctx.Done():
				interrupted = true
				break wait
			case recvErr = <-recvDone:
				recvEnded = true
				if recvErr == nil {
					// Closed under the scan: its silence is no verdict.
					recvErr = errRecvClosed
				}
				break wait
			case <-time.After(sleep):
			}
		}
		if interrupted || recvErr != nil {
			break
		}
		// A retry pass that recovers many answers means replies were
		// lost at this rate: slow down for the next one.
		if p > 0 {
			recovered := s.answered.Count() - before
			if sent := s.sent.Load() - sentBefore; sent > 0 && recovered*100 > sent {
				s.slowDown(0.5)
			}
		}
	}
	stopRecv.Store(true)
	s.rcv.Wake()
	if !recvEnded {
		recvErr = <-recvDone
	}
	close(progressDone)
	if s.rec != nil {
		// The stamps of the last probes nobody answered: a sender that
		// found the receiver reading left them, and the capture file
		// wants them.
		for fam := range s.outs {
			if s.outs[fam] != nil {
				s.readStamps(fam, s.rxStamps, true)
			}
		}
	}
	failed := recvErr != nil && !errors.Is(recvErr, net.ErrClosed)
	if !interrupted && !failed {
		s.reportSilent()
	}
	sum := Summary{
		Pairs:       s.n,
		Sent:        s.sent.Load(),
		Open:        s.open.Load(),
		Closed:      s.closed.Load(),
		Filtered:    s.filt.Load(),
		Errors:      s.errs.Load(),
		Reasons:     s.reasons,
		Duplicates:  s.dups.Load(),
		Duration:    s.now().Sub(s.start),
		KernelClock: s.kernelRTTs.Load(),
		UserClock:   s.userRTTs.Load(),
		Slowdowns:   int(s.slowdowns.Load()),
		SendErrors:  s.sendErrs.Load(),
		RecvDrops:   s.rcv.Dropped(),
		Received:    s.received.Load(),
		Unmatched:   s.unmatched.Load(),
		Interrupted: interrupted,
		HostTTL:     s.hostTTL,
	}
	if sum.Sent > s.n {
		sum.Retries = sum.Sent - s.n
	}
	if sendTime > 0 {
		sum.Rate = float64(sum.Sent) / sendTime.Seconds()
	}
	if r := s.limiter.Rate(); !math.IsInf(r, 1) {
		sum.RateLimit = r
	}
	if failed {
		// What was sent and answered before: the silent pairs have no
		// verdict.
		return sum, recvErr
	}
	return sum, nil
}

// sendPass sends one probe to every unanswered pair, spread over the
// sending threads, each taking every Senders-th index of the permutation.
func (s *scanner) sendPass(ctx context.Context, pass int, last bool) {
	var wg sync.WaitGroup
	for k := range s.cfg.Senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			s.sender(ctx, pass, last, uint64(k))
		}()
	}
	wg.Wait()
}

func (s *scanner) sender(ctx context.Context, pass int, last bool, first uint64) {
	batchSize := 64
	if s.cfg.Rate > 0 {
		// Small batches at low rates keep the flow smooth.
		batchSize = min(64, max(1, int(s.cfg.Rate/(1000*float64(s.cfg.Senders)))))
	}
	b := rawsock.NewBatch(batchSize)
	st := rawsock.NewTxStamps(stampBatch)
	idxs := make([]uint64, 0, batchSize) // the pair of each packet in b
	opts := s.opts                       // each sender patches its own TSval
	var rec *recBatch
	if s.rec != nil {
		rec = &recBatch{}
	}
	flush := func() {
		// The receiver is falling behind (its output is slow, say):
		// wait for it rather than send answers it has no room for.
		for s.rcv.Pending() > 0.5 && ctx.Err() == nil {
			time.Sleep(200 * time.Microsecond)
		}
		for attempt := 0; b.Len() > 0; {
			for need := b.Len(); need > 0; {
				got, wait := s.limiter.Reserve(s.now(), need)
				if need -= got; need > 0 {
					time.Sleep(wait)
				}
			}
			fam := 0
			if b.IPv6() {
				fam = 1
			}
			out := s.outs[fam]
			// Timed after any wait, before the send: an answer may be
			// read before SendBatch returns. The kernel's stamp, with
			// the id, replaces that time when it comes.
			now := s.now().UnixNano()
			stamp := !s.noStamps[fam].Load()
			if rec != nil {
				rec.ids = rec.ids[:0]
			}
			for i, idx := range idxs {
				id := s.times.put(idx, pass, now)
				if stamp {
					b.SetID(i, id)
				}
				if rec != nil {
					rec.ids = append(rec.ids, id)
				}
			}
			if rec != nil {
				rec.keep(b)
			}
			n, err := out.SendBatch(b)
			if rec != nil {
				rec.record(s.rec, n, time.Unix(0, now))
			}
			s.sent.Add(uint64(n))
			if n > 0 && stamp {
				s.readStamps(fam, st, false)
			}
			idxs = append(idxs[:0], idxs[n:]...)
			switch {
			case err == nil:
			case isNoBufs(err) && attempt < 8:
				// The device queue is full: slow down and send the
				// rest again rather than lose them.
				attempt++
				s.slowDown(0.75)
				time.Sleep(time.Millisecond << attempt)
			case isNoBufs(err):
				// Left for the next pass to send again; after the
				// last, they are reported as never sent.
				s.sendErrs.Add(uint64(b.Len()))
				if last {
					for _, idx := range idxs {
						s.sendFailed(idx, err)
					}
				}
				b.Reset()
				idxs = idxs[:0]
			case errors.Is(err, net.ErrClosed):
				// The client's sockets, which the scan shares, closed
				// with the client: the scan ends, and the pairs not
				// answered have no result (Run).
				s.connClosed.Store(true)
				b.Reset()
				idxs = idxs[:0]
			case probe.TransientSendError(err) && !last:
				// The kernel had no room for its next hop (a full
				// neighbour table), or it goes to a blackhole: sent
				// again in the next pass; after the last, reported.
				s.sendErrs.Add(1)
				b.Consume(1)
				idxs = append(idxs[:0], idxs[1:]...)
			default:
				// The batch's first packet failed: its destination's
				// route or the host's firewall refused it. Report that
				// pair and send the rest.
				s.sendFailed(idxs[0], err)
				b.Consume(1)
				idxs = append(idxs[:0], idxs[1:]...)
			}
		}
	}
	synFlags := wire.FlagSyn
	if s.cfg.ECN {
		synFlags |= wire.FlagEce | wire.FlagCwr
	}
	for i := first; i < s.n; i += uint64(s.cfg.Senders) {
		if ctx.Err() != nil || s.connClosed.Load() {
			return
		}
		idx := s.perm.At(i)
		if pass > 0 && s.answered.Test(idx) {
			continue
		}
		addr, port, _ := s.set.Pair(idx)
		src := s.srcOf(idx)
		fam := 0
		if addr.Is6() {
			fam = 1
		}
		if (fam == 1) != b.IPv6() && b.Len() > 0 {
			flush()
		}
		sport := s.sport(idx, pass)
		isn := s.w.Cookie.ISN(src, addr, sport, port, core.ScanID)
		if s.tsOff[fam] >= 0 {
			binary.BigEndian.PutUint32(opts[fam][s.tsOff[fam]:], s.clock.TSval(s.now()))
		}
		seg := wire.Segment{
			Src: src, Dst: addr, TTL: s.cfg.TTL, TOS: s.cfg.TOS,
			ID: uint16(isn >> 16), DF: true,
			SrcPort: sport, DstPort: port,
			Seq: isn, Flags: synFlags, Window: s.cfg.Window,
			Options: opts[fam][:s.optLen[fam]],
		}
		n, err := seg.Build(b.Slot())
		if err != nil {
			s.sendFailed(idx, err) // no source address of its family, say
			continue
		}
		if b.Commit(n) {
			idxs = append(idxs, idx)
		}
		if b.Full() {
			flush()
		}
	}
	flush()
}

// errRecvClosed ends a scan whose receiver stopped before the scan did:
// its network was closed under it.
var errRecvClosed = errors.New("scan: the network was closed during the scan")

func isNoBufs(err error) bool { return errors.Is(err, syscall.ENOBUFS) }

// silentRecheck is how often a pass's end is worked out again while it
// waits: answers shorten the waits of the hosts they come from.
const silentRecheck = 25 * time.Millisecond

// silentWait returns how long after a pass's last probe its silent pairs
// must wait: the longest wait of any host that has one. It stops at the
// timeout, the longest there is. After the last pass, whose silence is
// the verdict, a host's wait also covers the server's first SYN-ACK
// retransmission, a second after the first.
func (s *scanner) silentWait(last bool) time.Duration {
	var w time.Duration
	extra := time.Duration(0)
	if last {
		extra = probe.SynAckRTO
	}
	i, ok := s.answered.NextClear(0)
	for ok {
		addr, _, end := s.set.HostOf(i)
		if w = max(w, s.rtts.timeout(addr, extra, s.cfg.Timeout)); w >= s.cfg.Timeout {
			break
		}
		i, ok = s.answered.NextClear(end)
	}
	return w
}

// sendFailed reports pair idx, whose probe the host could not send.
func (s *scanner) sendFailed(idx uint64, err error) {
	if s.answered.TestAndSet(idx) {
		return // answered after all, by an earlier pass's probe
	}
	s.emitMu.Lock()
	defer s.emitMu.Unlock()
	addr, port, _ := s.set.Pair(idx)
	r := &s.errRes
	*r = probe.ScanResult{Addr: addr, Port: port, State: probe.StateError, Reason: probe.SendErrorReason(err), Err: err}
	s.errs.Add(1)
	s.emit(r, idx)
}

func laterOf(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// sport spreads pairs over our source ports, and each pass takes the
// next port of the list: with at least Retries+1 ports, no two passes
// over a pair use the same one, so an answer's port says which pass it
// answers.
func (s *scanner) sport(idx uint64, pass int) uint16 {
	n := uint64(len(s.ports))
	h := (idx * 0xbf58476d1ce4e5b9) >> 32
	return s.ports[(h%n+uint64(pass))%n]
}

// watch follows the feed of answers until stop is set and Wake is called.
// The client's engine reads them and hands each to packet, on its
// thread (those that came before the first Read, on this one); watch
// ends the scan when the feed fails (the client closed, the ring's reads
// failing), and slows it down when the ring drops answers.
func (s *scanner) watch(stop *atomic.Bool) error {
	var failures core.Failures
	var drops uint64
	for reads := 0; !stop.Load(); reads++ {
		n, err := s.rcv.Read(time.Time{}, s.onPacket)
		if n > 0 {
			// When they were handled, not received: a receiver working
			// through a backlog is not quiet.
			s.lastAnswer.Store(s.now().UnixNano())
		}
		switch failures.Judge(err) {
		case core.Closed:
			return nil
		case core.Fatal:
			return err
		case core.Idle, core.Skip:
			continue
		}
		// Answers lost on the way in since the last slow-down: slow
		// down, as on a send error.
		if reads%64 == 0 || s.ringFed {
			if d := s.rcv.Dropped(); d > drops && s.slowDownAfter(s.now(), 250*time.Millisecond, 0.75) {
				drops = d
			}
		}
	}
	return nil
}

// packet handles one received packet.
func (s *scanner) packet(b []byte, rx time.Time) {
	// The client's engine hands each packet over as it reads it, on its
	// thread: a stamp missing for one is read again then, and the
	// answers are handled as they come.
	s.stampsRead = false
	s.lastAnswer.Store(s.now().UnixNano())
	if s.w.ProbeCopies && s.probeCopy(b, rx) {
		return
	}
	s.received.Add(1)
	if s.recRx {
		s.rec.Received(b, rx, s.now())
	}
	if wire.Parse(b, &s.in) != nil || !s.handle(&s.in, rx) {
		s.unmatched.Add(1)
	}
}

// probeCopy takes b if it is one of our probes seen leaving at tx
// (wiring.ProbeCopies): a TCP SYN (ACK, RST and FIN clear) from one of our
// addresses and ports, whose sequence number is its pair's ISN. tx is that
// probe's transmit stamp. It reads only the fields it needs: the copy is
// our own packet, checked by its ISN (an answer is never a bare SYN).
func (s *scanner) probeCopy(b []byte, tx time.Time) bool {
	var src, dst netip.Addr
	var t []byte
	switch {
	case len(b) >= wire.IPv4MinimumSize && b[0]>>4 == 4 && b[9] == wire.ProtocolTCP &&
		binary.BigEndian.Uint16(b[6:])&0x1fff == 0:
		src, dst = netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20]))
		t = b[int(b[0]&0x0f)*4:]
	case len(b) >= wire.IPv6MinimumSize && b[0]>>4 == 6 && b[6] == wire.ProtocolTCP:
		src, dst = netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40]))
		t = b[wire.IPv6MinimumSize:]
	default:
		return false
	}
	const mask = wire.FlagSyn | wire.FlagAck | wire.FlagRst | wire.FlagFin
	if len(t) < wire.TCPMinimumSize || wire.TCPFlags(t[wire.TCPFlagsOffset])&mask != wire.FlagSyn || !s.ours(src) {
		return false
	}
	sport, dport := binary.BigEndian.Uint16(t[0:]), binary.BigEndian.Uint16(t[2:])
	if tx.IsZero() || sport < s.w.PortLo || sport > s.w.PortHi ||
		binary.BigEndian.Uint32(t[4:]) != s.w.Cookie.ISN(src, dst, sport, dport, core.ScanID) {
		return true // not ours, and no answer either
	}
	if idx, _, ok := s.set.Index(dst, dport); ok {
		if pass := s.passOf(idx, sport); pass >= 0 {
			s.times.stampPair(idx, pass, tx.UnixNano())
			if s.rec != nil {
				if id, ok := s.times.idOf(idx, pass); ok {
					s.rec.TxStamp(id, tx)
				}
			}
		}
	}
	return true
}

func (s *scanner) ours(a netip.Addr) bool { return slices.Contains(s.ourAddrs, a) }

// srcOf returns the source address of pair idx.
func (s *scanner) srcOf(idx uint64) netip.Addr {
	k, _ := slices.BinarySearchFunc(s.srcs, idx+1, func(r SourceRange, t uint64) int { return cmp.Compare(r.End, t) })
	if k == len(s.srcs) {
		return netip.Addr{}
	}
	return s.srcs[k].Addr
}

// handle matches one parsed packet with our probes; it reports whether it
// answered one (a duplicate answer too).
func (s *scanner) handle(pkt *wire.Packet, rx time.Time) bool {
	// An answer to one of our SYNs (core.Of) from one of our addresses,
	// keyed by the cookie with the scans' probe id.
	a, ok := core.Of(pkt, s.w.PortLo, s.w.PortHi)
	if !ok || !s.ours(a.Local) || !a.Keyed(&s.w.Cookie, core.ScanID) {
		return false
	}
	switch a.Kind {
	case core.ICMP:
		return s.answer(a.Remote, a.RemotePort, func(r *probe.ScanResult, idx uint64) {
			s.begin(r, idx, a.Remote, a.RemotePort, a.LocalPort, rx)
			r.State = probe.StateFiltered
			r.Reason = wire.ICMPReason(a.Remote.Is6(), pkt.ICMPType, pkt.ICMPCode)
			r.From, r.TTL, r.TOS, r.IPID, r.DF = pkt.Src, pkt.TTL, pkt.TOS, pkt.ID, pkt.DF
			r.ICMPType, r.ICMPCode = pkt.ICMPType, pkt.ICMPCode
			// A TTL expiry comes from a router by its nature: no hint
			// that anything stood in for the target.
			if pkt.Src != a.Remote && r.Reason != probe.ReasonTTLExceeded {
				r.Hint = "icmp-from-other-address"
			}
			s.filt.Add(1)
		})
	case core.SynAck:
		// Free the server's half-open entry, for duplicates too: the
		// server retransmits its SYN-ACK when our RST was lost.
		s.sendRST(&a)
		s.hostTTL[pkt.Src] = pkt.TTL
	case core.RST:
	default:
		return false // a scan sends SYNs only
	}
	synack := a.Kind == core.SynAck
	return s.answer(pkt.Src, pkt.SrcPort, func(r *probe.ScanResult, idx uint64) {
		s.begin(r, idx, pkt.Src, pkt.SrcPort, pkt.DstPort, rx)
		r.From, r.TTL, r.TOS, r.IPID, r.DF = pkt.Src, pkt.TTL, pkt.TOS, pkt.ID, pkt.DF
		r.Flags, r.Window, r.Options = pkt.Flags, pkt.Window, pkt.Options
		if synack {
			// Only the host's own stack answers SYN-ACK: a RST or an
			// ICMP error may come from a firewall nearer than it.
			s.rtts.add(pkt.Src, r.RTT)
			r.MaybeRetransmit = r.RTT >= probe.SynAckRTO
			r.State, r.Reason = probe.StateOpen, probe.ReasonSYNACK
			s.open.Add(1)
		} else {
			r.State, r.Reason = probe.StateClosed, probe.ReasonRST
			if t, ok := s.hostTTL[pkt.Src]; ok && MiddleboxTTL(t, pkt.TTL) {
				r.Hint = "rst-ttl-differs-from-syn-ack"
			}
			s.closed.Add(1)
		}
	})
}

// answer reports the answer for (addr, port) once; fill sets up the
// result. An answer for a pair answered before is a duplicate. It reports
// whether the pair is one of the scan's.
func (s *scanner) answer(addr netip.Addr, port uint16, fill func(r *probe.ScanResult, idx uint64)) bool {
	idx, _, ok := s.set.Index(addr, port)
	if !ok {
		return false
	}
	if s.answered.TestAndSet(idx) {
		s.dups.Add(1)
		return true
	}
	s.emitMu.Lock()
	defer s.emitMu.Unlock()
	fill(&s.res, idx)
	s.emit(&s.res, idx)
	return true
}

// watchRTT slows the scan down when RTTs grow far beyond the lowest seen:
// queues are filling somewhere, and answers will soon be lost. It judges
// the share of late answers over a window of at least rttWindow, not a
// running average: a sender thread that loses its CPU for a few
// milliseconds between stamping a batch and sending it delays that batch
// alone, and must not count as a queue.
func (s *scanner) watchRTT(rtt time.Duration, now time.Time) {
	if s.nRTT++; s.nRTT == 1 {
		s.ewma = rtt
	} else {
		s.ewma += (rtt - s.ewma) / 16
	}
	if s.nRTT < 64 {
		return
	}
	if s.baseline == 0 || s.ewma < s.baseline {
		s.baseline = s.ewma
	}
	if rtt > 8*s.baseline && rtt > 5*time.Millisecond {
		s.late++
	}
	if s.window++; s.window == 1 {
		s.windowStart = now
	}
	if s.window < 64 || now.Sub(s.windowStart) < rttWindow {
		return
	}
	late := s.late*2 > s.window
	s.window, s.late = 0, 0
	// One slow-down at a time: the last one needs a few RTTs to show.
	if late {
		s.slowDownAfter(now, max(250*time.Millisecond, 2*s.ewma), 0.75)
	}
}

// slowDownAfter slows down by factor (slowDown) if the last slow-down of
// slowDownAfter's was more than gap before now, and reports whether it
// did: one at a time, for the last one needs a few RTTs to show. The
// receiver's look at its drops and the handler of answers (on a client's
// engine's thread) both call it.
func (s *scanner) slowDownAfter(now time.Time, gap time.Duration, factor float64) bool {
	s.lastSlowMu.Lock()
	defer s.lastSlowMu.Unlock()
	if now.Sub(s.lastSlow) <= gap || !s.slowDown(factor) {
		return false
	}
	s.lastSlow = now
	return true
}

// rttWindow is the shortest time over which watchRTT judges RTTs.
const rttWindow = 100 * time.Millisecond

// slowDown lowers the rate cap by factor, to no less than an eighth of the
// rate asked for. Without a cap, the first slow-down caps the rate the
// current pass has achieved so far, and the floor is an eighth of that.
// It reports whether the cap went down.
func (s *scanner) slowDown(factor float64) bool {
	s.slowMu.Lock()
	defer s.slowMu.Unlock()
	cur, floor := s.limiter.Rate(), s.cfg.Rate/8
	if math.IsInf(cur, 1) {
		t0 := time.Unix(0, s.passStart.Load())
		d := s.now().Sub(t0)
		sent := s.sent.Load() - uint64(s.passSent.Load())
		if d < time.Millisecond || sent == 0 {
			return false
		}
		cur = float64(sent) / d.Seconds()
		s.floor = cur / 8
		// Senders sleep in steps of about a millisecond: the bucket
		// must hold a few milliseconds' worth to reach the rate.
		s.limiter.SetBurst(max(s.limiter.Burst(), int(cur*factor/500)))
	}
	if floor == 0 {
		floor = s.floor
	}
	if r := max(cur*factor, floor); r < s.limiter.Rate() {
		s.limiter.SetRate(r)
		s.slowdowns.Add(1)
		return true
	}
	return false
}

// MiddleboxTTL reports whether a refusal's TTL implies another hop count
// than the host's SYN-ACK: likely sent by something in between.
func MiddleboxTTL(synack, other uint8) bool {
	h1, _ := probe.Hops(synack)
	h2, _ := probe.Hops(other)
	return h1 != h2
}

// sendRST frees the half-open connection the SYN-ACK a left at the
// server (core.Reset).
func (s *scanner) sendRST(a *core.Answer) {
	seg := core.Reset(a.Tuple, a.ISN, s.cfg.TTL, s.cfg.TOS)
	if n, err := seg.Build(s.rstBuf[:]); err == nil {
		s.rstID = (s.rstID+1)&idMask | stampIDBit | rawsock.BulkStamp // not a probe's stamp id
		if s.rstID == probe.NoTxStamp {
			s.rstID = stampIDBit | rawsock.BulkStamp
		}
		at := s.now()
		if s.conn.Send(s.rstBuf[:n], s.rstID) == nil && s.rec != nil {
			id := s.rstID
			if s.w.ProbeCopies {
				id = probe.NoTxStamp // the raw socket takes no stamps beside a ring
			}
			s.rec.Sent(s.rstBuf[:n], id, time.Time{}, at)
		}
	}
}

// begin resets the shared result for pair idx, answered at rx: the
// kernel's receive stamp, or zero when it gave none.
func (s *scanner) begin(r *probe.ScanResult, idx uint64, addr netip.Addr, port, sport uint16, rx time.Time) {
	*r = probe.ScanResult{Addr: addr, Port: port, SrcPort: sport}
	rxKernel := !rx.IsZero()
	if !rxKernel {
		rx = s.now()
	}
	// The receive time and the send time are both wall-clock times: a
	// clock stepped back in between leaves no RTT.
	if t, txKernel, ok := s.sendTime(idx, sport, addr.Is6()); ok && rx.UnixNano() > t {
		r.Sent = time.Unix(0, t)
		r.RTT = rx.Sub(r.Sent)
		r.KernelClock = txKernel && rxKernel
		if r.KernelClock {
			s.kernelRTTs.Add(1)
		} else {
			s.userRTTs.Add(1)
		}
		s.watchRTT(r.RTT, rx)
	}
}

// sendTime returns when the probe to pair idx from sport left, and
// whether that is the kernel's transmit stamp: the pass that probe
// belonged to follows from the port, unless two passes used the same one.
// A stamp the senders have not read yet is read here: it was queued
// before the packet left, so before any answer came.
func (s *scanner) sendTime(idx uint64, sport uint16, v6 bool) (ns int64, kernel, ok bool) {
	pass := s.passOf(idx, sport)
	if pass < 0 {
		return 0, false, false
	}
	ns, kernel, ok = s.times.get(idx, pass)
	fam := 0
	if v6 {
		fam = 1
	}
	if ok && !kernel && !s.stampsRead && !s.noStamps[fam].Load() {
		// Once per Read: every stamp queued before its packets came
		// is read then.
		s.stampsRead = true
		s.readStamps(fam, s.rxStamps, true)
		ns, kernel, ok = s.times.get(idx, pass)
	}
	return ns, kernel, ok
}

// passOf returns the pass whose probe to pair idx came from sport, or -1
// when none did or two passes used the port and a retry may have been
// sent: before the second pass begins, a probe from the first pass's
// port is the first pass's, whichever others will use it (--sport, a
// block of one port).
func (s *scanner) passOf(idx uint64, sport uint16) int {
	if s.pass.Load() == 0 {
		if s.sport(idx, 0) == sport {
			return 0
		}
		return -1
	}
	pass := -1
	for p := range s.cfg.Retries + 1 {
		if s.sport(idx, p) == sport {
			if pass >= 0 {
				return -1
			}
			pass = p
		}
	}
	return pass
}

// stampBatch is how many transmit stamps one read takes.
const stampBatch = 64

// readStamps reads the transmit stamps waiting on family fam's sender and
// records them. The receiver waits for a sender that is reading them (it
// may hold the stamp the receiver needs); a sender that finds another
// reading leaves it to them.
func (s *scanner) readStamps(fam int, st *rawsock.TxStamps, wait bool) {
	if s.noStamps[fam].Load() {
		return
	}
	if wait {
		s.stampMu.Lock()
	} else if !s.stampMu.TryLock() {
		return
	}
	defer s.stampMu.Unlock()
	// Bounded: a sender that keeps the queue full is read again after
	// its next batch.
	for range 64 {
		err := s.outs[fam].ReadTxStamps(st)
		if errors.Is(err, rawsock.ErrNoTxStamps) {
			s.noStamps[fam].Store(true)
			return
		}
		for i := range st.Len() {
			id, at := st.Stamp(i)
			s.times.stamp(id, at.UnixNano())
			if s.rec != nil {
				s.rec.TxStamp(id, at)
			}
		}
		if err != nil || !st.Full() {
			return
		}
	}
}

func (s *scanner) emit(r *probe.ScanResult, idx uint64) {
	s.reasons[r.Reason]++
	if s.cfg.OnResult == nil {
		return
	}
	_, _, o := s.set.Pair(idx)
	r.Src = s.srcOf(idx)
	s.cfg.OnResult(r, o)
}

// reportSilent reports every pair nobody answered.
func (s *scanner) reportSilent() {
	r := &s.res
	for idx, ok := s.answered.NextClear(0); ok; idx, ok = s.answered.NextClear(idx + 1) {
		addr, port, _ := s.set.Pair(idx)
		*r = probe.ScanResult{Addr: addr, Port: port, State: probe.StateFiltered, Reason: probe.ReasonTimeout}
		s.filt.Add(1)
		s.emit(r, idx)
	}
}

// progress reports the scan's state every 250 ms until done is closed.
func (s *scanner) progress(pass *atomic.Int32, done <-chan struct{}) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	last, lastT := uint64(0), time.Now()
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			sent := s.sent.Load()
			rate := float64(sent-last) / now.Sub(lastT).Seconds()
			last, lastT = sent, now
			p := Progress{Pairs: s.n, Done: s.answered.Count(), Open: s.open.Load(), Sent: sent, Rate: rate, Pass: int(pass.Load())}
			if rate > 0 && pass.Load() == 0 && sent < s.n {
				p.ETA = time.Duration(float64(s.n-sent) / rate * float64(time.Second))
			}
			s.cfg.OnProgress(p)
		}
	}
}

// recBatch keeps a sender's batch for the recorder (Config.Recorder):
// SendBatch removes from the batch what it sent.
type recBatch struct {
	buf  []byte
	lens []int
	ids  []uint32 // each packet's stamp id, filled before keep
}

// keep copies the packets of b.
func (r *recBatch) keep(b *rawsock.Batch) {
	r.buf, r.lens = r.buf[:0], r.lens[:0]
	for i := range b.Len() {
		p := b.Packet(i)
		r.buf = append(r.buf, p...)
		r.lens = append(r.lens, len(p))
	}
}

// record hands the first n packets kept, sent at at, to rec.
func (r *recBatch) record(rec probe.Recorder, n int, at time.Time) {
	off := 0
	for i := range min(n, len(r.lens), len(r.ids)) {
		rec.Sent(r.buf[off:off+r.lens[i]], r.ids[i], time.Time{}, at)
		off += r.lens[i]
	}
}

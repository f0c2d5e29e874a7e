package scan

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/probe/internal/core"
	"github.com/synprobe/synprobe/rawsock"
)

// Run scans cfg.Set on client c, while other goroutines may probe
// through it: with the client's source ports, key, source addresses
// (its routes, or ClientConfig.Source), interface and mark, in its
// network namespace. The answers come through the client's own receive
// loop, which hands the scan every packet its sockets receive, or for a
// big scan (RingMinPairs) every packet of a packet ring of the scan's
// own, which the loop reads beside its sockets. The probes leave
// through the client's raw IP sockets, beside its probes, where they can
// share them (rawsock.Conn.ShareSends: one reader of each error queue
// sorts the transmit stamps by id, rawsock.BulkStamp), else through raw
// IP sockets of the scan's own that only send; or, for a big scan,
// as Ethernet frames to the next hop when that sends exactly what the
// host's IP output would (rawsock.DirectPath). What the scan opens is
// opened for the run and closed when it returns, and needs CAP_NET_RAW,
// as the client's did.
//
// Every pair has a result (cfg.OnResult), its middlebox hint judged
// against the SYN-ACKs of the whole scan only in the Summary
// (Summary.Complete), unless the scan ends early: when ctx is done, Run
// returns the Summary with Interrupted set and a nil error; when the
// client closes, the Summary so far and an error. Only the pairs
// answered by then have results.
//
// One scan at a time runs on a client: while one is prepared or
// running, Prepare and Run fail with an error wrapping
// probe.ErrScanning (concurrent Probe and Rounds calls are welcome). A
// SYN-ACK is answered with a RST at once, as in ModeRST, and the
// kernel's own RST follows it (no guard is needed, and the server sees
// two).
//
// A client given a Conn (probe.ClientConfig.Conn) opens nothing, nor does
// its scan unless Prepare has an Opener: the probes leave through that
// Conn (which must be a scan.Conn) and the answers come through the
// client's receive loop. A rawsock.Conn that cannot share its sends
// (before Linux 6.13, with transmit stamps on) is refused there: the
// kernel numbers its stamps, and a scan's batches would shift the count
// by which the engine finds its probes'.
//
// A scan's SYNs and a probe's share the client's ports; their ISNs keep
// every answer to its own. The client's engine reads a scan's answers
// and hands them over: those its sockets receive for a scan of fewer
// than RingMinPairs pairs, a bigger scan's from the scan's packet ring,
// which it reads beside its sockets (and then drops the copies of the
// scan's answers that its sockets receive). cfg.OnResult runs on the
// engine's goroutine, as Rounds.OnResult does: it must return soon and
// must not wait for another call on the same client; a concurrent Probe
// call waits for it.
func Run(ctx context.Context, c *probe.Client, cfg Config) (Summary, error) {
	if err := checkConfig(&cfg); err != nil {
		return Summary{}, err
	}
	p, err := Prepare(c, PrepareConfig{Set: cfg.Set})
	if err != nil {
		return Summary{}, err
	}
	defer p.Close()
	return p.Run(ctx, cfg)
}

// checkConfig refuses a scan of nothing.
func checkConfig(cfg *Config) error {
	if cfg.Set == nil || cfg.Set.Len() == 0 {
		return errors.New("scan: nothing to scan")
	}
	return nil
}

// PrepareConfig says what Prepare opens.
type PrepareConfig struct {
	// Set is what will be scanned; Prepared.Run's Config.Set must be it.
	Set *Set
	// Opener opens the scan's sockets; nil: System. A client given a
	// Conn (probe.ClientConfig.Conn) scans through that Conn alone
	// unless an Opener is given: the scan then opens its sockets through
	// the Opener as on any client, and reads a small scan's answers
	// through the client's Conn. On any client, the scan sends its raw
	// IP packets through the client's sockets where they can share them
	// (rawsock.Conn.ShareSends), and opens raw sockets of its own (the
	// Opener's Listen) only where they cannot. A Conn opened to send only
	// (rawsock.Config.SendOnly) needs the ring: without one, Prepare
	// fails.
	Opener Opener
}

// Prepared is a scan on a client whose sockets are open: Prepare opens
// them, so that a program can give up its privileges before it scans
// (opening needs CAP_NET_RAW; scanning on what is open needs none).
type Prepared struct {
	lease *core.Lease
	set   *Set
	srcs  []SourceRange
	n     *network
	feed  *feed
	ran   atomic.Bool
}

// Prepare opens on client c what a scan of cfg.Set sends and receives
// through: Run is Prepare, Prepared.Run and Prepared.Close. It works out
// every block's source address from the client's (SourcesFor).
func Prepare(c *probe.Client, cfg PrepareConfig) (_ *Prepared, err error) {
	if cfg.Set == nil || cfg.Set.Len() == 0 {
		return nil, errors.New("scan: nothing to scan")
	}
	if core.Lend == nil {
		return nil, errors.New("scan: no client") // never: package probe sets it
	}
	l, err := core.Lend(c)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			l.Release()
		}
	}()
	if l.Interface != "" {
		if err = l.Do(func() error {
			ifi, err := net.InterfaceByName(l.Interface)
			if err != nil {
				return err
			}
			cfg.Set.Blocks(func(p netip.Prefix, _, _ uint64) bool {
				err = probe.CheckInterface(l.Interface, ifi.Flags&net.FlagLoopback != 0, p)
				return err == nil
			})
			return err
		}); err != nil {
			return nil, err
		}
	}
	// The routes inside the scan's blocks: where one is, the block's
	// addresses are asked their sources in parts. (Without them, one
	// source served a whole block: a more specific route through
	// another interface took its addresses' answers elsewhere.)
	var routes []netip.Prefix
	l.Do(func() error {
		for _, v6 := range []bool{false, true} {
			if rs, err := rawsock.RoutePrefixes(v6); err == nil {
				routes = append(routes, rs...)
			}
		}
		return nil
	})
	slices.SortFunc(routes, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	srcs, err := sourcesFor(cfg.Set, routes, l.Source)
	if err != nil {
		return nil, err
	}
	p := &Prepared{lease: l, set: cfg.Set, srcs: srcs}
	lo, hi := l.Ports[0], l.Ports[len(l.Ports)-1]
	if l.Conn != nil && cfg.Opener == nil {
		conn, ok := l.Conn.(Conn)
		if !ok {
			err = errors.New("scan: the client's Conn cannot send batches (scan.Conn)")
			return nil, err
		}
		if s, ok := l.Conn.(interface{ ShareSends() bool }); ok && !s.ShareSends() {
			// The engine would take a batch's stamps for its probes'.
			err = errors.New("scan: the client's Conn takes transmit stamps that the kernel numbers itself (before Linux 6.13), and a scan's batches would shift the count its probes' stamps are found by: give Prepare an Opener, or open the Conn with rawsock.Config.NoTxStamps")
			return nil, err
		}
		// The client opens nothing of its own: nor does its scan.
		p.n = &network{conn: conn, shared: true, sendPath: "the client's Conn", recvPath: "the client's Conn"}
		p.feed = newFeed(l, nil)
		return p, nil
	}
	err = l.Do(func() (err error) {
		p.n, err = openNet(netConfig{Set: cfg.Set, Sources: srcs, PortLo: lo, PortHi: hi, Interface: l.Interface, Opener: cfg.Opener, Shared: l.Shared}, l.Mark)
		return err
	})
	if err != nil {
		return nil, err
	}
	for _, c := range []core.Conn{l.Conn, l.Shared} {
		if so, ok := c.(probe.SendOnlyConn); ok && so.SendsOnly() && p.n.recv == nil {
			p.n.Close()
			err = fmt.Errorf("scan: no packet ring to read the answers from (a scan of %d pairs or more has one), and the client's sockets only send", RingMinPairs)
			return nil, err
		}
	}
	p.feed = newFeed(l, p.n.recv)
	return p, nil
}

// Run scans on what Prepare opened, as Run(ctx, c, cfg) does; cfg.Set
// must be the Set prepared. A Prepared runs one scan.
func (p *Prepared) Run(ctx context.Context, cfg Config) (Summary, error) {
	if err := checkConfig(&cfg); err != nil {
		return Summary{}, err
	}
	if cfg.Set != p.set {
		return Summary{}, errors.New("scan: Prepared.Run scans the Set that was prepared")
	}
	if p.n == nil || !p.ran.CompareAndSwap(false, true) {
		return Summary{}, errors.New("scan: the Prepared was closed or has run")
	}
	l := p.lease
	select {
	case <-l.Done:
		return Summary{}, fmt.Errorf("scan: %w", probe.ErrClosed)
	default:
	}
	w := wiring{Sources: p.srcs, Cookie: l.Cookie, Ports: l.Ports, PortLo: l.Ports[0], PortHi: l.Ports[len(l.Ports)-1]}
	switch {
	case cfg.NoOptions:
		cfg.Options, cfg.Options6 = nil, nil
	case cfg.Options == nil && cfg.Options6 == nil:
		cfg.Options, cfg.Options6 = l.Options, l.Options6
	}
	p.feed.start()
	defer p.feed.stop()
	return p.n.scan(ctx, cfg, w, p.feed)
}

// Close closes what Prepare opened (never the client's Conn), and lets
// the client lend itself to another scan.
func (p *Prepared) Close() error {
	if p.n == nil {
		return nil
	}
	err := p.n.Close()
	p.n = nil
	p.lease.Release()
	return err
}

// SourcesFor gives every block of set the source address that source
// finds for it (the kernel's routes, say: rawsock.SourceFinder). A block
// without a route gets its family's first source: its probes then fail
// one by one, each reported with the kernel's reason. A family with no
// route at all is an error, a *NoRouteError.
func SourcesFor(set *Set, source func(dst netip.Addr) (netip.Addr, error)) ([]SourceRange, error) {
	return sourcesFor(set, nil, source)
}

// sourcesFor is SourcesFor, asking source for parts of the blocks that
// hold one of routes (sourcesSplit): a block's addresses may have
// routes, and sources, of their own.
func sourcesFor(set *Set, routes []netip.Prefix, source func(dst netip.Addr) (netip.Addr, error)) ([]SourceRange, error) {
	var first [2]netip.Addr
	var noRoute *NoRouteError
	srcs := sourcesSplit(set, routes, func(p netip.Prefix) netip.Addr {
		a, err := source(p.Addr())
		// Answers come to the address alone: a zone would keep them
		// from matching.
		if a = a.Unmap().WithZone(""); err == nil && a.Is4() != p.Addr().Is4() {
			err = fmt.Errorf("the source %v found is of another family", a)
		}
		if err != nil {
			if noRoute == nil {
				noRoute = &NoRouteError{Addr: p.Addr(), Err: err}
			}
			return netip.Addr{}
		}
		if f := famIndex(a); !first[f].IsValid() {
			first[f] = a
		}
		return a
	})
	for i := range srcs {
		r := &srcs[i]
		if r.Addr.IsValid() {
			continue
		}
		// Which family: the block's (the pair at the range's end).
		addr, _, _ := set.Pair(r.End - 1)
		if r.Addr = first[famIndex(addr)]; !r.Addr.IsValid() {
			return nil, noRoute
		}
	}
	return srcs, nil
}

// NoRouteError says that no address of a family has a route: the first
// that failed, and why.
type NoRouteError struct {
	Addr netip.Addr
	Err  error
}

func (e *NoRouteError) Error() string { return fmt.Sprintf("no route to %v: %v", e.Addr, e.Err) }
func (e *NoRouteError) Unwrap() error { return e.Err }

// errClientClosed ends a scan whose client was closed: its answers no
// longer come, and silence would be taken for filtered ports. It does not
// wrap net.ErrClosed, which would end the scan as if it had finished.
var errClientClosed = errors.New("scan: the client was closed during the scan")

// feed is how the client's engine hands a scan its answers, on its
// thread: every packet the client's sockets receive (core.Lease.Feed),
// or for a big scan every packet of the scan's packet ring, which the
// engine reads beside its sockets (core.Lease.Attach). One thread reads
// every packet a scan on a client receives.
//
// The hand-over of the sockets' packets begins with start, before the
// first probe leaves; the ring's, with the first Read (the ring keeps
// what comes before). The scanner's loop calls Read until it stops, then
// Wake. The first Read hands over the sockets' packets that came before
// it; every Read waits, for the scanner to stop, the client to close or
// the engine's reads of the ring to fail, until its deadline, and for a
// ring at most feedPoll, so that the scanner looks at the ring's drops
// (Dropped). An error reading the ring stops the engine reading it; the
// next Read attaches it again, so that the scanner's failure policy
// (core.Failures) judges a run of them.
type feed struct {
	lease    *core.Lease
	ring     Receiver // nil: the client's sockets
	wake     chan struct{}
	errc     chan error // the engine's error reading the ring
	stopOnce sync.Once

	mu       sync.Mutex // guards what follows
	fn       func([]byte, time.Time)
	early    []earlyPacket // the sockets' packets before the first Read
	attached bool          // the engine reads the ring
	stopped  bool
	lost     atomic.Uint64 // early packets beyond maxEarly
}

type earlyPacket struct {
	b  []byte
	rx time.Time
}

// maxEarly bounds the packets kept for the first Read.
const maxEarly = 4096

// feedPoll is how often Read returns while the engine reads a ring.
const feedPoll = 5 * time.Millisecond

// newFeed returns the feed of a scan on the client of lease l, from ring
// if it is not nil, else from the client's sockets.
func newFeed(l *core.Lease, ring Receiver) *feed {
	return &feed{lease: l, ring: ring, wake: make(chan struct{}, 1), errc: make(chan error, 1)}
}

// start begins the hand-over of the sockets' packets before the first
// probe leaves: an answer on a short path can beat the sender's return.
// Those that come before the first Read wait for it. A ring keeps them
// itself.
func (f *feed) start() {
	if f.ring == nil {
		f.lease.Feed(f.packet)
	}
}

// packet is the sockets' feed, on the engine's thread.
func (f *feed) packet(b []byte, rx time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fn == nil {
		if len(f.early) < maxEarly {
			f.early = append(f.early, earlyPacket{append([]byte(nil), b...), rx})
		} else {
			f.lost.Add(1)
		}
		return
	}
	f.fn(b, rx)
}

func (f *feed) Read(deadline time.Time, fn func([]byte, time.Time)) (int, error) {
	f.mu.Lock()
	n := 0
	switch {
	case f.ring == nil && f.fn == nil:
		f.fn = fn
		for _, p := range f.early {
			fn(p.b, p.rx)
		}
		n, f.early = len(f.early), nil
	case f.ring != nil && !f.attached && !f.stopped:
		f.attached = true
		f.lease.Attach(f.ring, fn, func(err error) {
			f.mu.Lock()
			f.attached = false // the engine reads it no more
			f.mu.Unlock()
			select {
			case f.errc <- err:
			default:
			}
		})
	}
	f.mu.Unlock()
	if n > 0 {
		return n, nil
	}
	wait, timed := time.Duration(0), false // untimed: until woken
	if f.ring != nil {
		wait, timed = feedPoll, true
	}
	if !deadline.IsZero() {
		if d := max(time.Until(deadline), 0); !timed || d < wait {
			wait, timed = d, true
		}
	}
	var timeout <-chan time.Time
	if timed {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-f.wake:
		return 0, rawsock.ErrWoken
	case err := <-f.errc:
		return 0, err
	case <-f.lease.Done:
		return 0, errClientClosed
	case <-timeout:
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			return 0, errDeadline
		}
		return 0, nil
	}
}

var errDeadline = fmt.Errorf("scan: %w", os.ErrDeadlineExceeded)

// stop ends the hand-over; after it, no packet is being handed over and
// none will be, whichever call of it returns first.
func (f *feed) stop() {
	f.stopOnce.Do(func() {
		f.mu.Lock()
		attached := f.attached
		f.stopped, f.attached = true, false
		f.mu.Unlock()
		// Outside f.mu: both wait for a hand-over in progress, which
		// takes it.
		switch {
		case f.ring == nil:
			f.lease.Feed(nil)
		case attached:
			f.lease.Attach(nil, nil, nil)
		}
	})
}

// Wake ends the feed: the scanner calls it once, when it stops
// receiving.
func (f *feed) Wake() {
	f.stop()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// Dropped counts the packets the ring lost for want of room, or those of
// the sockets that came before the first Read and found no room
// (Summary.RecvDrops).
func (f *feed) Dropped() uint64 {
	if f.ring != nil {
		return f.ring.Dropped()
	}
	return f.lost.Load()
}

// Pending is the ring's while the engine reads it: 0 once the client's
// engine has stopped (Close) or the feed ended, for the senders wait
// while it is high, and nobody would read the ring any more. The
// sockets' packets are handed over as the engine reads them: 0.
func (f *feed) Pending() float64 {
	if f.ring == nil {
		return 0
	}
	select {
	case <-f.lease.Done:
		return 0
	default:
	}
	f.mu.Lock()
	stopped := f.stopped
	f.mu.Unlock()
	if stopped {
		return 0
	}
	return f.ring.Pending()
}

// Mark and ReadTo are the ring's. For the sockets, Mark cannot count:
// the engine hands each packet over as it reads it, on its thread, so
// the packets not yet handed over are those in the client's sockets
// (ReadTo), and one the engine is handing over holds it.
func (f *feed) Mark() uint64 {
	if f.ring != nil {
		return f.ring.Mark()
	}
	return 0
}

func (f *feed) ReadTo(mark uint64) bool {
	if f.ring != nil {
		return f.ring.ReadTo(mark)
	}
	return f.lease.Queued == nil || !f.lease.Queued()
}

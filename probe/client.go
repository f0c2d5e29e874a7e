package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/synprobe/synprobe/probe/internal/core"
	"github.com/synprobe/synprobe/rawsock"
	"github.com/synprobe/synprobe/rawsock/rstguard"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// DefaultMark is the SO_MARK a Client (and synprobe) puts on its packets
// by default: its RST guard drops the kernel's RSTs from the client's
// ports and lets through those that carry the mark, ours.
const DefaultMark = 0x53594e50 // "SYNP"

// DefaultPorts is how many source ports a Client holds by default.
const DefaultPorts = 1024

// ErrClosed is wrapped by the errors of a Client's calls once it is
// closed. It wraps net.ErrClosed.
var ErrClosed = fmt.Errorf("probe: client closed: %w", net.ErrClosed)

// ErrScanning is what preparing a scan (probe/scan) on a client returns
// while another scan is prepared or running on it: one at a time, for
// they would share the client's ports and key.
var ErrScanning = errors.New("probe: another scan is prepared or running on this client: one at a time")

// ClientConfig configures a Client. The zero value of each field means its
// default.
type ClientConfig struct {
	// Interface, if set, binds the client's sockets to that network
	// device (SO_BINDTODEVICE) and picks source addresses on it.
	Interface string
	// Ports is how many source ports the client holds (DefaultPorts).
	// Every probe in flight has a port of its own (unless RotatePorts),
	// so it bounds the probes in flight; a probe waits for a port when
	// all are busy.
	Ports int
	// PortLo..PortHi are where the ports are taken from; by default the
	// range outside net.ipv4.ip_local_port_range, which the kernel never
	// gives its own connections (rawsock.ProbePortRange).
	PortLo, PortHi uint16
	// MinPorts, if set, lets NewClient start with fewer than Ports
	// ports, down to MinPorts, when other sockets hold the rest of the
	// range; by default it takes exactly Ports, or when Ports is 0 what
	// is free of DefaultPorts down to 64.
	MinPorts int
	// SourcePort, if set, is the client's one source port, held alone
	// (Ports and MinPorts must then be 0 or 1). The RST guard drops the
	// kernel's RSTs from it: NewClient refuses a port that another
	// socket holds (rawsock.ErrPortsInUse).
	SourcePort uint16
	// RotatePorts hands the ports out in turn, whether or not a probe in
	// flight has one, so that more probes than ports may be in flight:
	// ModeRST, ModeACK and ModeBareACK probes are told apart by their
	// ISNs, not by their ports. ModeFIN and ModeWithhold connections are
	// found by port: a client that rotates refuses them. By default a
	// port belongs to one probe from its SYN to its end (and, in
	// ModeFIN, its TIME_WAIT), and a probe waits for a free one.
	RotatePorts bool
	// Network is the families the client opens sockets for: "ip4",
	// "ip6", or "ip" (the default): both, or IPv4 alone on a host
	// without IPv6.
	Network string
	// Mark is the SO_MARK of the client's packets (DefaultMark), which
	// its RST guard lets through.
	Mark uint32
	// Guard creates the RST guard (an nftables table, which needs
	// CAP_NET_ADMIN) in NewClient, so that a program can drop its
	// privileges afterwards. Otherwise the first probe in ModeACK or
	// ModeFIN creates it.
	Guard bool
	// NoGuard keeps the client to what CAP_NET_RAW allows: no RST
	// guard, and no mark on its packets unless Mark is set (SO_MARK
	// needs CAP_NET_ADMIN before Linux 5.17). ModeACK, ModeFIN and
	// ModeWithhold, which need the guard, are refused.
	NoGuard bool
	// CountRSTs makes the guard count the kernel's RSTs it drops (an
	// nfnetlink_log group, read with no privilege once NewClient has
	// returned) and a watch those that escape it (an AF_PACKET socket):
	// Client.Info's RSTsDropped and RSTsEscaped. The log costs a
	// message per RST dropped (some 1.5% of a core at 500 SYN-ACKs a
	// second).
	CountRSTs bool
	// RecvBuffer is each of the client's receive sockets' buffer, in
	// bytes (rawsock.Config.RecvBuffer; 0: rawsock's default, 8 MiB). A
	// scan's answers come in bursts at its rate.
	RecvBuffer int
	// NoTxStamps times the client's probes by the user-space clock, not
	// the kernel's transmit stamps (rawsock.Config.NoTxStamps): a big
	// scan (scan.RingMinPairs), which takes its probes' stamps from its
	// packet ring, then sends through the client's sockets, whose error
	// queues would otherwise fill with stamps nobody reads.
	NoTxStamps bool
	// SendOnly opens sockets that only send (rawsock.Config.SendOnly):
	// a client for big scans alone, whose packet ring reads every
	// answer, and which spares the kernel a copy of each answer for
	// sockets that would drop it. Probe, Start and Rounds calls fail on
	// it, as does a scan too small for the ring.
	SendOnly bool
	// Options and Options6 are the SYN options for IPv4 and IPv6 targets
	// when a probe or a scan does not give its own; nil means Linux's (MSS 1460 or
	// 1440, SACK permitted, timestamps, window scale 7).
	Options, Options6 *wire.SYNOptions

	// Conn, if set, is the network the client uses instead of the raw
	// sockets it would open: the client then opens nothing (no sockets,
	// ports or guard) and never closes Conn. SourcePorts are then
	// required: ports the caller holds for the client (rawsock.PortBlock)
	// and whose replies Conn receives. For ModeACK and ModeFIN the caller
	// keeps the kernel's RSTs off the wire (rstguard.Guard). For tests
	// (probetest.Conn) and for programs that set their sockets up
	// themselves.
	Conn        Conn
	SourcePorts []uint16
	// Allocator, with Conn, hands out the SourcePorts; by default a
	// PortPool that tracks every port from its SYN to its probe's end,
	// so that no two probes in flight share one.
	Allocator PortAllocator
	// Source returns the address to send from to reach dst; by default
	// the one the kernel's routes choose (rawsock.SourceFinder).
	Source func(dst netip.Addr) (netip.Addr, error)
	// Now is the user-space clock (default time.Now).
	Now func() time.Time
	// Broadcasts returns the IPv4 broadcast addresses of this host's
	// subnets, which the client refuses as destinations (Unusable); by
	// default rawsock.LocalBroadcasts, asked in the client's network
	// namespace when the client opens and again when a refusal could
	// be stale or a route lookup meets a broadcast.
	Broadcasts func() (map[netip.Addr]string, error)
	// Recorder, if set, gets every packet the client sends and receives
	// (a capture file: synprobe --pcap), a scan's on the client aside
	// (scan.Config.Recorder).
	Recorder Recorder
	// Spin is how long the engine polls for replies after it sends,
	// instead of sleeping until one arrives (200 µs by default; negative:
	// never). A sleeping thread takes tens to hundreds of microseconds to
	// wake, which the packets that answer a reply (a RST, the third ACK,
	// a FIN) would wait: RTTs are kernel-stamped either way. Polling
	// costs CPU in proportion to the rate of sends: an exporter's 10,000
	// probes a second spent some 5% of a core on it (synprobe serve runs
	// without).
	Spin time.Duration
}

// ProbeOptions say how one probe (or a Rounds call's probes) is made. The
// zero value of each field means its default; a nil *ProbeOptions means
// all defaults: ModeRST, a 1 s timeout, the client's SYN options.
type ProbeOptions struct {
	Mode Mode
	// Timeout is how long to wait for the SYN's answer; default 1s.
	Timeout time.Duration
	// Hold, Data and CloseTimeout are ModeFIN's, as in Config.
	Hold         time.Duration
	Data         []byte
	CloseTimeout time.Duration
	// Observe and LateACK are ModeWithhold's, as in Config.
	Observe, LateACK time.Duration
	// Trace records the probe's segments in Result.Trace.
	Trace bool
	TTL   uint8 // default 64
	TOS   uint8 // IPv4 TOS / IPv6 traffic class
	// Window is the SYN's window; default 64240, as Linux with MSS 1460.
	Window uint16
	ECN    bool
	// Source is the address to send from; default the routes' choice.
	Source netip.Addr
	// Options and Options6 replace the client's SYN options for this
	// probe, for IPv4 and IPv6 targets (Options for both when Options6
	// is nil); NoOptions sends a SYN without options.
	Options, Options6 *wire.SYNOptions
	NoOptions         bool
	// SourcePort, if set, is the probe's source port (Probe only): one
	// of the client's, such as an earlier Result.SrcPort. The probe
	// waits while another has it. A trace keeps its 5-tuple this way.
	SourcePort uint16
	// Packets keeps the SYN as sent in Result.SYN and, when an ICMP
	// error answers it, the packet the error quotes in Result.Quote
	// (Probe only).
	Packets bool
}

// Client is a long-lived prober that any number of goroutines may use at
// once: every call shares one set of sockets, source ports, cookie and
// RST guard, and one engine goroutine matches every reply to its call.
// IPv4 and IPv6 targets go through the same client.
//
// A client belongs to the network namespace of the thread that called
// NewClient, whichever goroutines call it later: its sockets are opened
// there, and so is its RST guard, even when a probe from another thread
// creates it (joining the namespace then needs CAP_SYS_ADMIN; create the
// guard in NewClient with ClientConfig.Guard to need nothing more).
type Client struct {
	p      *Prober
	cfg    ClientConfig
	source func(netip.Addr) (netip.Addr, error)
	defs   settings // for a nil *ProbeOptions
	ns     *netns

	// What the client opened, and closes.
	conn   *rawsock.Conn
	block  *rawsock.PortBlock
	finder *rawsock.SourceFinder
	watch  *rawsock.RouteWatch
	pool   *PortPool // the client's own allocator, nil with ClientConfig.Allocator
	ports  []uint16  // sorted: the block's or ClientConfig.SourcePorts
	no4    bool      // the client opened no IPv4 sockets (Network "ip6")
	no6    bool      // nor IPv6 ones ("ip4", or a host without IPv6)
	ifLoop bool      // ClientConfig.Interface is a loopback interface

	mu       sync.Mutex // guards what follows
	closed   bool
	guard    *rstguard.Guard
	guardErr error
	escapes  *rstguard.Watch // with CountRSTs
	// The guard's counts when it was removed (Info after Close).
	dropped, escaped int64
	counted          bool

	bcastMu sync.Mutex // guards bcast and bcastAt
	bcast   map[netip.Addr]string
	bcastAt time.Time

	stop      context.CancelFunc
	loopDone  chan struct{}
	closeOnce sync.Once
	engineTID atomic.Int64 // the engine's thread, to refuse calls from OnResult
	selfClose atomic.Bool  // Close was called from OnResult: the engine releases
	scanning  atomic.Bool  // a scan holds the client's lease (lend)
}

// Linux's SYN options, for a Client's defaults.
var (
	linuxOptions4 = wire.SYNOptions{MSS: 1460, WScale: 7, SACKPermitted: true, Timestamps: true}
	linuxOptions6 = wire.SYNOptions{MSS: 1440, WScale: 7, SACKPermitted: true, Timestamps: true}
)

// OpenError is NewClient's error when the client cannot have what it
// holds: What is "source ports" (rawsock.ErrPortsInUse when other
// sockets hold them), "raw sockets" or "RST guard" (os.ErrPermission
// without CAP_NET_RAW or CAP_NET_ADMIN), so that a program can say which
// and how to fix it.
type OpenError struct {
	What string
	Err  error
}

func (e *OpenError) Error() string {
	hint := ""
	if errors.Is(e.Err, os.ErrPermission) {
		switch e.What {
		case "raw sockets":
			hint = " need CAP_NET_RAW"
		case "RST guard":
			hint = " (an nftables table, for ModeACK, ModeFIN and ModeWithhold) needs CAP_NET_ADMIN"
		}
	}
	return "probe: " + e.What + hint + ": " + e.Err.Error()
}

func (e *OpenError) Unwrap() error { return e.Err }

// maxClientPorts bounds ClientConfig.Ports: every port may hold a
// connection in the engine's table (in ModeFIN until its TIME_WAIT ends),
// which holds tableSize/2.
const maxClientPorts = tableSize / 2

// NewClient opens a client: raw sockets for the families of
// ClientConfig.Network, by default IPv4 and IPv6 (they need CAP_NET_RAW),
// a block of source ports held through the kernel, a random cookie and,
// with ClientConfig.Guard, the RST guard. When one of these cannot be
// had, the error is an *OpenError that says which. cfg may be nil.
func NewClient(cfg *ClientConfig) (*Client, error) {
	c := &Client{}
	if cfg != nil {
		c.cfg = *cfg
	}
	if err := c.open(); err != nil {
		c.release()
		return nil, err
	}
	c.start()
	return c, nil
}

func init() {
	core.Lend = func(client any) (*core.Lease, error) {
		c, ok := client.(*Client)
		if !ok || c == nil {
			return nil, errors.New("probe: no client")
		}
		return c.lend()
	}
}

// lend returns what the client lends a scan (core.Lease).
func (c *Client) lend() (*core.Lease, error) {
	if err := c.usable(); err != nil {
		return nil, err
	}
	if !c.scanning.CompareAndSwap(false, true) {
		// Scans share the client's ports and key (probe id ScanID): two
		// at once would take each other's answers, and the engine
		// feeds one.
		return nil, ErrScanning
	}
	l := &core.Lease{
		Cookie:    c.p.cookie,
		Source:    c.source,
		Ports:     slices.Clone(c.ports),
		Interface: c.cfg.Interface,
		Mark:      c.cfg.Mark,
		Do:        c.ns.do,
		Options:   c.cfg.Options,
		Options6:  c.cfg.Options6,
		Feed:      c.p.setFeed,
		Attach:    c.p.setBulk,
		Done:      c.loopDone,
		Conn:      c.cfg.Conn,
		Release:   sync.OnceFunc(func() { c.scanning.Store(false) }),
	}
	if q, ok := c.p.conn.(QueueConn); ok {
		l.Queued = q.Queued
	}
	if s, ok := c.p.conn.(interface{ ShareSends() bool }); ok && s.ShareSends() {
		l.Shared = c.p.conn
	}
	return l, nil
}

// open sets up the client's resources, each of which release closes.
func (c *Client) open() error {
	cfg := &c.cfg
	if cfg.Ports < 0 || cfg.Ports > maxClientPorts {
		return fmt.Errorf("probe: ClientConfig.Ports %d: want 1 to %d (0: %d)", cfg.Ports, maxClientPorts, DefaultPorts)
	}
	switch {
	case cfg.MinPorts < 0 || cfg.MinPorts > maxClientPorts || cfg.Ports != 0 && cfg.MinPorts > cfg.Ports:
		return fmt.Errorf("probe: ClientConfig.MinPorts %d: want 0 to Ports (%d)", cfg.MinPorts, cfg.Ports)
	case cfg.SourcePort != 0 && (cfg.Ports > 1 || cfg.MinPorts > 1):
		return fmt.Errorf("probe: ClientConfig.SourcePort %d with Ports %d, MinPorts %d: a client with a source port of its choice holds that one alone", cfg.SourcePort, cfg.Ports, cfg.MinPorts)
	case cfg.NoGuard && (cfg.Guard || cfg.CountRSTs):
		return errors.New("probe: ClientConfig.NoGuard with Guard or CountRSTs")
	case cfg.Conn != nil && (cfg.SourcePort != 0 || cfg.MinPorts != 0 || cfg.CountRSTs || cfg.Network != "" || cfg.RecvBuffer != 0 || cfg.NoTxStamps || cfg.SendOnly):
		return errors.New("probe: ClientConfig.SourcePort, MinPorts, CountRSTs, Network, RecvBuffer, NoTxStamps or SendOnly with Conn, whose ports, guard and sockets are the caller's")
	case cfg.RecvBuffer < 0:
		return fmt.Errorf("probe: ClientConfig.RecvBuffer %d: want 0 or more bytes", cfg.RecvBuffer)
	case cfg.SendOnly && !cfg.NoGuard:
		return errors.New("probe: ClientConfig.SendOnly without NoGuard: a client that only sends serves scans, which need no guard")
	case cfg.Allocator != nil && cfg.RotatePorts:
		return errors.New("probe: ClientConfig.RotatePorts with Allocator: RotatePorts is the client's own allocator's way")
	case cfg.Network != "" && cfg.Network != "ip" && cfg.Network != "ip4" && cfg.Network != "ip6":
		return fmt.Errorf("probe: ClientConfig.Network %q: want ip, ip4 or ip6", cfg.Network)
	}
	if cfg.Mark == 0 && !cfg.NoGuard {
		cfg.Mark = DefaultMark
	}
	if cfg.Options == nil {
		cfg.Options = &linuxOptions4
	}
	if cfg.Options6 == nil {
		cfg.Options6 = &linuxOptions6
	}
	if cfg.Interface != "" {
		ifi, err := net.InterfaceByName(cfg.Interface)
		if err != nil {
			return fmt.Errorf("probe: interface %s: %w", cfg.Interface, err)
		}
		c.ifLoop = ifi.Flags&net.FlagLoopback != 0
	}
	c.ns = currentNetNS()
	ports := cfg.SourcePorts
	conn := cfg.Conn
	if conn == nil {
		if len(ports) > 0 || cfg.Allocator != nil {
			return errors.New("probe: ClientConfig.SourcePorts or Allocator without Conn: the client holds its own ports")
		}
		if err := c.openSockets(); err != nil {
			return err
		}
		conn, ports = c.conn, c.block.Ports()
	} else if len(ports) == 0 {
		return errors.New("probe: ClientConfig.Conn without SourcePorts")
	}
	c.loadBroadcasts()
	c.source = cfg.Source
	if c.source == nil {
		c.finder = &rawsock.SourceFinder{Interface: cfg.Interface}
		// Sources kept until a link, address, route or rule changes:
		// a lookup per probe is three system calls.
		if w, err := rawsock.WatchRoutes(); err == nil {
			c.watch, c.finder.Watch = w, w
		}
		c.source = c.finder.Source
		// The finder's sockets belong to the network namespace of the
		// thread that opens them: this one, as the client's others.
		c.finder.Source(netip.IPv4Unspecified())
		c.finder.Source(netip.IPv6Loopback())
	}
	cookie, err := wire.NewRandomCookie()
	if err != nil {
		return err
	}
	ports = slices.Sorted(slices.Values(ports))
	c.ports = ports
	alloc := cfg.Allocator
	if alloc == nil {
		c.pool = NewPortPool(ports, !cfg.RotatePorts)
		alloc = c.pool
	}
	p, err := newEngine(conn, engineConfig{
		portLo:  ports[0],
		portHi:  ports[len(ports)-1],
		ports:   alloc,
		release: true,
		cookie:  cookie,
		now:     cfg.Now,
		rec:     cfg.Recorder,
		spin:    cfg.Spin,
	})
	if err != nil {
		return err
	}
	c.p = p
	if cfg.Conn != nil && cfg.Guard {
		p.guarded.Store(true) // the caller's
	}
	if c.defs, err = c.settings(nil); err != nil {
		return err
	}
	if cfg.Guard && c.block != nil {
		if _, err := c.rstGuard(); err != nil {
			return err
		}
	}
	return nil
}

// openSockets holds the source ports and opens the raw sockets.
func (c *Client) openSockets() error {
	b, err := c.holdPorts()
	if err != nil {
		return &OpenError{What: "source ports", Err: err}
	}
	c.block = b
	cfg := &c.cfg
	rc := rawsock.Config{IPv4: cfg.Network != "ip6", IPv6: cfg.Network != "ip4" && !b.IPv4Only(), PortLo: b.Lo(), PortHi: b.Hi(), Interface: cfg.Interface, Mark: cfg.Mark,
		RecvBuffer: cfg.RecvBuffer, NoTxStamps: cfg.NoTxStamps, SendOnly: cfg.SendOnly}
	if cfg.Network == "ip6" && b.IPv4Only() {
		return &OpenError{What: "raw sockets", Err: errors.New("IPv6 asked of a host without IPv6 (the kernel refuses IPv6 sockets)")}
	}
	conn, err := rawsock.Listen(rc)
	if err != nil && rc.IPv4 && rc.IPv6 && cfg.Network == "" {
		// A host without IPv6 (ipv6.disable=1) still probes IPv4.
		rc.IPv6 = false
		conn, err = rawsock.Listen(rc)
	}
	if err != nil {
		return &OpenError{What: "raw sockets", Err: err}
	}
	c.conn, c.no4, c.no6 = conn, !rc.IPv4, !rc.IPv6
	return nil
}

// holdPorts holds the client's source ports through the kernel.
func (c *Client) holdPorts() (*rawsock.PortBlock, error) {
	cfg := &c.cfg
	if cfg.SourcePort != 0 {
		return rawsock.ReservePort(cfg.SourcePort)
	}
	lo, hi := cfg.PortLo, cfg.PortHi
	if lo == 0 && hi == 0 {
		var err error
		if lo, hi, err = rawsock.ProbePortRange(); err != nil {
			return nil, err
		}
	}
	if lo == 0 || hi < lo {
		return nil, fmt.Errorf("range %d-%d", lo, hi)
	}
	span := int(hi) - int(lo) + 1
	n := cfg.Ports
	if n == 0 {
		n = min(DefaultPorts, span)
	}
	req := rawsock.PortRequest{Lo: lo, Hi: hi, Min: n, Max: n}
	switch {
	case cfg.MinPorts > 0:
		// Up to Ports, as many as the range has.
		req.Min = min(cfg.MinPorts, n)
	case cfg.Ports == 0:
		req.Min = min(64, n) // take what is free, down to 64
	}
	if req.Min > span {
		return nil, fmt.Errorf("%d asked of the range %d-%d, which has %d", req.Min, lo, hi, span)
	}
	return rawsock.ReservePorts(req)
}

// start runs the engine on a goroutine of its own, locked to its thread
// (whose timer slack it lowers) until Close.
func (c *Client) start() {
	ctx, cancel := context.WithCancel(context.Background())
	c.stop, c.loopDone = cancel, make(chan struct{})
	go func() {
		defer close(c.loopDone)
		// The thread ends with the goroutine: never unlocked, its
		// timer slack goes with it.
		runtime.LockOSThread()
		preciseTimers()
		c.engineTID.Store(int64(gettid()))
		// Forgotten before the thread ends with the goroutine: the
		// kernel gives its id to a later thread (pid_max wraps), which
		// must not pass for the engine's.
		defer c.engineTID.Store(0)
		stop := context.AfterFunc(ctx, c.p.conn.Wake)
		defer stop()
		err := c.p.loop(ctx, nil)
		c.p.abort(nil)
		c.p.recordTx(true)
		if err == nil {
			err = ErrClosed
		} else {
			err = fmt.Errorf("probe: the client's network failed: %w", err)
		}
		c.p.stop(err)
		if c.selfClose.Load() {
			c.release()
		}
	}()
}

// onEngine reports whether the caller runs on the engine's thread: in an
// OnResult callback.
func (c *Client) onEngine() bool {
	if c.p.callbacks.Load() == 0 {
		return false // the engine calls nothing now: this is another thread
	}
	tid := gettid()
	return tid != 0 && int64(tid) == c.engineTID.Load()
}

var errOnEngine = errors.New("probe: a Client's Probe or Rounds called from OnResult would wait for itself: call it from another goroutine")

// Close ends the client: calls in progress return ErrClosed (or, for a
// connection it resets, a Result marked Interrupted), open connections are
// reset, and the sockets, guard and ports it opened are closed, in that
// order. Called from an OnResult callback, Close returns at once and the
// engine finishes closing when the callback returns.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		if c.onEngine() {
			c.selfClose.Store(true)
			c.stop()
			return
		}
		c.stop()
		<-c.loopDone
		c.release()
	})
	return nil
}

// release closes what open opened: the sockets first (nothing more is
// sent), then the guard (while the ports are still ours: it would drop
// the RSTs of whoever took them next), then the ports.
func (c *Client) release() {
	if c.conn != nil {
		c.conn.Close()
	}
	c.mu.Lock()
	c.closed = true
	if c.guard != nil {
		// Counted last: every RST of the client's sent by now.
		c.dropped, c.escaped = c.rstCounts()
		c.counted = true
		c.guard.Close()
	}
	if c.escapes != nil {
		c.escapes.Close()
	}
	c.mu.Unlock()
	if c.block != nil {
		c.block.Close()
	}
	if c.finder != nil {
		c.finder.Close()
	}
	if c.watch != nil {
		c.watch.Close()
	}
	c.ns.close()
}

// rstGuard returns the client's RST guard, creating it the first time, in
// the client's network namespace.
func (c *Client) rstGuard() (*rstguard.Guard, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if c.guard == nil && c.guardErr == nil {
		var g *rstguard.Guard
		var w *rstguard.Watch
		err := c.ns.do(func() (err error) {
			// The log of its drops only when they are counted.
			g, err = rstguard.New(rstguard.Config{Ranges: c.block.Ranges(), Mark: c.cfg.Mark, NoLog: !c.cfg.CountRSTs})
			if err == nil && c.cfg.CountRSTs {
				// Without a watch the escapes are unknown (-1).
				w, _ = rstguard.NewWatchPorts(c.block.Ranges(), c.cfg.Mark)
			}
			return err
		})
		if err != nil {
			c.guardErr = &OpenError{What: "RST guard", Err: err}
		} else {
			c.guard, c.escapes = g, w
			c.p.guarded.Store(true)
		}
	}
	return c.guard, c.guardErr
}

// rstCounts reads the guard's counts of the kernel's RSTs, -1 where
// nothing counts them; c.mu is held.
func (c *Client) rstCounts() (dropped, escaped int64) {
	dropped, escaped = -1, -1
	if c.guard == nil || !c.cfg.CountRSTs {
		return
	}
	if n, err := c.guard.Dropped(); err == nil {
		dropped = int64(n)
	}
	if c.escapes != nil {
		escaped = int64(c.escapes.Escaped())
	}
	return
}

// ClientInfo is a snapshot of what a client holds and what became of it.
type ClientInfo struct {
	// Ports are the client's source ports, sorted.
	Ports []uint16
	// PortsReused counts the ports taken again while they cooled from a
	// TIME_WAIT (RFC 6191); PortsExhausted, the times a SYN found every
	// port busy: once for each probe of Rounds that could not be sent
	// (its Result an error), and for a Probe or Start call that waits for
	// a port, once each time it tries again, about every millisecond.
	// Both are the client's own allocator's: 0 with
	// ClientConfig.Allocator.
	PortsReused, PortsExhausted uint64
	// GuardTable is the name of the RST guard's nftables table (family
	// inet), "" while the client has none. GuardOwned: the kernel
	// deletes the table with the process, even after SIGKILL
	// (NFT_TABLE_F_OWNER, Linux 5.12); otherwise the process must keep
	// CAP_NET_ADMIN to delete it at Close.
	GuardTable string
	GuardOwned bool
	// RSTsDropped and RSTsEscaped count the kernel's RSTs from the
	// client's ports that the guard dropped and that escaped it (sent
	// before the guard was in place, or past it), with
	// ClientConfig.CountRSTs, else -1; after Close, as they were when
	// the guard went.
	RSTsDropped, RSTsEscaped int64
}

// Info returns what the client holds and what became of it. Safe for
// concurrent use, and after Close.
func (c *Client) Info() ClientInfo {
	in := ClientInfo{Ports: slices.Clone(c.ports), RSTsDropped: -1, RSTsEscaped: -1}
	if c.pool != nil {
		in.PortsReused, in.PortsExhausted = c.pool.Reused(), c.pool.Exhausted()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.guard != nil {
		in.GuardTable, in.GuardOwned = c.guard.Table(), c.guard.Owned()
		if c.counted {
			in.RSTsDropped, in.RSTsEscaped = c.dropped, c.escaped
		} else {
			in.RSTsDropped, in.RSTsEscaped = c.rstCounts()
		}
	}
	return in
}

// usable returns ErrClosed once the client is closed, and errOnEngine on
// the engine's thread.
func (c *Client) usable() error {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	switch {
	case closed:
		return ErrClosed
	case c.onEngine():
		return errOnEngine
	}
	return nil
}

// settings turns o into a job's settings.
func (c *Client) settings(o *ProbeOptions) (settings, error) {
	if o == nil {
		if c.defs.timeout != 0 {
			return c.defs, nil
		}
		o = &ProbeOptions{}
	}
	cfg := Config{
		Mode:         o.Mode,
		Timeout:      o.Timeout,
		Hold:         o.Hold,
		Data:         slices.Clone(o.Data),
		CloseTimeout: o.CloseTimeout,
		Observe:      o.Observe,
		LateACK:      o.LateACK,
		Trace:        o.Trace,
		TTL:          o.TTL,
		TOS:          o.TOS,
		Window:       o.Window,
		ECN:          o.ECN,
		Options:      c.cfg.Options,
		Options6:     c.cfg.Options6,
	}
	switch {
	case o.NoOptions:
		cfg.Options, cfg.Options6 = nil, nil
	case o.Options != nil || o.Options6 != nil:
		cfg.Options, cfg.Options6 = o.Options, o.Options6
		if cfg.Options6 == nil {
			cfg.Options6 = o.Options
		}
	}
	s, err := newSettings(&cfg)
	if err != nil {
		return s, err
	}
	s.sport, s.packets = o.SourcePort, o.Packets
	switch {
	case c.cfg.RotatePorts && s.mode.connects():
		return s, fmt.Errorf("probe: %v on a client with ClientConfig.RotatePorts: its connection is found by its port, which the client hands out to others too", s.mode)
	case c.cfg.NoGuard && s.mode.needsGuard():
		return s, fmt.Errorf("probe: %v on a client with ClientConfig.NoGuard: it needs the RST guard", s.mode)
	}
	if s.mode.needsGuard() && c.block != nil {
		if _, err := c.rstGuard(); err != nil {
			return s, err
		}
	}
	return s, nil
}

// target checks dst and completes it with its source address. An
// explicit source must be an address of this host.
func (c *Client) target(name string, dst netip.AddrPort, src netip.Addr) (Target, error) {
	a := dst.Addr().Unmap()
	switch {
	case !a.IsValid():
		return Target{}, errors.New("probe: no destination address")
	case dst.Port() == 0:
		return Target{}, fmt.Errorf("probe: %v: port 0", a)
	case a.Zone() != "":
		return Target{}, fmt.Errorf("probe: %v: zoned addresses are not supported (link-local targets: give the interface as ClientConfig.Interface and the address without a zone)", a)
	}
	if why := c.unusable(a, false); why != "" {
		return Target{}, &UnusableError{Addr: a, Why: why}
	}
	if c.cfg.Interface != "" {
		if err := CheckInterface(c.cfg.Interface, c.ifLoop, netip.PrefixFrom(a, a.BitLen())); err != nil {
			return Target{}, err
		}
	}
	switch {
	case a.Is4() && c.no4:
		return Target{}, fmt.Errorf("probe: %v: the client has no IPv4 sockets (ClientConfig.Network %q)", a, c.cfg.Network)
	case a.Is6() && c.no6 && c.cfg.Network == "ip4":
		return Target{}, fmt.Errorf("probe: %v: the client has no IPv6 sockets (ClientConfig.Network %q)", a, c.cfg.Network)
	case a.Is6() && c.no6:
		return Target{}, fmt.Errorf("probe: %v: the client has no IPv6 sockets: this host has no IPv6", a)
	}
	if src.IsValid() {
		src = src.Unmap()
		switch {
		case src.Zone() != "", src.IsUnspecified(), src.IsMulticast():
			return Target{}, fmt.Errorf("probe: source %v is not a unicast address of this host", src)
		case src.Is4() != a.Is4():
			return Target{}, fmt.Errorf("probe: source %v and destination %v are of different families", src, a)
		}
		if c.conn != nil {
			// The host's own address, used as the host would use it:
			// a loopback source only towards loopback (the kernel
			// never sends one out, and no answer could come back).
			if src.IsLoopback() && !a.IsLoopback() {
				return Target{}, fmt.Errorf("probe: source %v: a loopback address as the source of a probe to %v, which the host itself would never send", src, a)
			}
			if err := c.ns.do(func() error { return localAddr(src) }); err != nil {
				return Target{}, fmt.Errorf("probe: source %v: %w", src, err)
			}
		}
	} else {
		var err error
		if src, err = c.source(a); err != nil {
			// A broadcast address, which a route lookup refuses
			// (EACCES) like a prohibit route, that the client's list
			// did not have yet.
			if errors.Is(err, syscall.EACCES) {
				if why := c.unusable(a, true); why != "" {
					return Target{}, &UnusableError{Addr: a, Why: why}
				}
			}
			return Target{}, fmt.Errorf("probe: no route to %v: %w", a, err)
		}
		src = src.Unmap()
		if src.Is4() != a.Is4() {
			return Target{}, fmt.Errorf("probe: the source %v found for %v is of another family", src, a)
		}
	}
	if name == "" {
		name = a.String()
	}
	return Target{Name: name, Addr: a, Port: dst.Port(), Src: src}, nil
}

// receives returns an error if the client's sockets only send
// (ClientConfig.SendOnly): a probe's answers would never be read, and
// it would end filtered.
func (c *Client) receives() error {
	if so, ok := c.p.conn.(SendOnlyConn); ok && so.SendsOnly() {
		return errors.New("probe: the client's sockets only send (ClientConfig.SendOnly): no answer to a probe would be read; probe on a client that receives")
	}
	return nil
}

// CheckInterface returns an error if the interface named iface (a
// loopback one when loopback is set) cannot reach the addresses of p.
// Bound to an interface, a socket's packets go out through it whatever
// the routes say: Linux then takes the destination to be on that
// interface's link. Through the loopback interface, a probe of any
// address but a loopback one loops back into this host, this host's own
// addresses included; through any other, a probe of a loopback address
// leaves nowhere. Either way no answer comes, and the silence would read
// as a filtered port.
func CheckInterface(iface string, loopback bool, p netip.Prefix) error {
	p = p.Masked()
	a := p.Addr().Unmap()
	inLoop := a.IsLoopback() && p.Bits() >= 8 // 127.0.0.0/8 or ::1
	var what any = p
	if p.IsSingleIP() {
		what = a
	}
	switch {
	case loopback && !inLoop:
		return fmt.Errorf("probe: interface %s is a loopback interface, which reaches only loopback addresses: a probe of %v would never leave this host (leave the interface out, or name the one towards it)", iface, what)
	case !loopback && (inLoop || a.Is4() && p.Overlaps(loopback4)):
		return fmt.Errorf("probe: interface %s: %v is a loopback address, which only a loopback interface reaches", iface, what)
	}
	return nil
}

var loopback4 = netip.MustParsePrefix("127.0.0.0/8")

// unusable says why a cannot be a destination (Unusable), or "". The
// broadcasts of this host's subnets are those the client last read: read
// again before a refusal of a list older than a second (an address may
// have gone), and when fresh is set (a route lookup met a broadcast or a
// prohibit route) and the list is older than 100 ms, so that probes
// behind a prohibit route do not read it each.
func (c *Client) unusable(a netip.Addr, fresh bool) string {
	if why := Unusable(a, nil); why != "" || !a.Is4() {
		return why
	}
	c.bcastMu.Lock()
	m := c.bcast
	_, listed := m[a]
	age := time.Since(c.bcastAt)
	c.bcastMu.Unlock()
	if fresh && age > 100*time.Millisecond || listed && age > time.Second {
		c.ns.do(func() error { c.loadBroadcasts(); return nil })
		c.bcastMu.Lock()
		m = c.bcast
		c.bcastMu.Unlock()
	}
	return Unusable(a, m)
}

// loadBroadcasts reads this host's broadcast addresses, in the calling
// thread's network namespace; the list read before stays if it fails.
func (c *Client) loadBroadcasts() {
	load := c.cfg.Broadcasts
	if load == nil {
		load = rawsock.LocalBroadcasts
	}
	m, err := load()
	c.bcastMu.Lock()
	defer c.bcastMu.Unlock()
	if err == nil || c.bcast == nil {
		c.bcast = m
	}
	c.bcastAt = time.Now()
}

// Probe sends one SYN to dst and returns its verdict when the exchange
// has ended (in ModeFIN: the close). opts may be nil.
//
// A probe that was made has a Result, whatever its verdict: a SYN the
// host could not send (its routes, its firewall) is StateError with
// Result.Err. The error is for calls that could not be made: bad input,
// a closed client, ctx ended. If ctx ends first, Probe returns ctx's
// error at once, and the engine interrupts the probe (resetting its
// connection). A probe waits for a free source port (every one is busy
// with a probe, or cools from a TIME_WAIT) for as long as ctx allows:
// ProbeOptions.Timeout starts when the SYN leaves.
func (c *Client) Probe(ctx context.Context, dst netip.AddrPort, opts *ProbeOptions) (*Result, error) {
	j, err := c.probeJob(dst, opts)
	if err != nil {
		return nil, err
	}
	j.done = make(chan struct{})
	var res *Result
	j.onResult = func(r *Result) { res = r.clone() }
	if err := c.p.submit(j); err != nil {
		return nil, err
	}
	select {
	case <-j.done:
	case <-ctx.Done():
		c.p.cancel(j)
		return nil, ctx.Err()
	}
	switch {
	case res != nil:
		return res, nil
	case j.err != nil:
		return nil, j.err
	}
	return nil, ErrClosed
}

// ownPort checks that port, unless 0, is one of the client's source
// ports.
func (c *Client) ownPort(port uint16) error {
	if port == 0 {
		return nil
	}
	if _, ok := slices.BinarySearch(c.ports, port); !ok {
		return fmt.Errorf("probe: source port %d is not one of the client's", port)
	}
	return nil
}

// Start begins one probe of dst, made as Probe makes it, and returns at
// once: done is called once, from the client's engine goroutine, with the
// probe's Result, or with the error that ended the call without one
// (context.Canceled after cancel, ErrClosed). Like Rounds.OnResult, done
// must return soon and must not wait for a call on the same client, and
// its Result is the engine's, valid during the call only: copy what you
// keep. cancel interrupts the probe, as the end of Probe's ctx does; done
// is still called. If Start returns an error, done is never called.
//
// Start spares a program that makes many probes at once (an exporter's
// thousands a second) what Probe costs each: a goroutine waiting for it,
// a channel and a copy of the Result.
func (c *Client) Start(dst netip.AddrPort, opts *ProbeOptions, done func(*Result, error)) (cancel func(), err error) {
	j, err := c.probeJob(dst, opts)
	if err != nil {
		return nil, err
	}
	got := false // the engine's thread's
	j.onResult = func(r *Result) {
		got = true
		done(r, nil)
	}
	j.ended = func() {
		switch {
		case got:
		case j.err != nil:
			done(nil, j.err)
		case j.cancelled:
			done(nil, context.Canceled)
		default:
			done(nil, ErrClosed)
		}
	}
	if err := c.p.submit(j); err != nil {
		return nil, err
	}
	return func() { c.p.cancel(j) }, nil
}

// probeJob checks a Probe or Start call and makes its job.
func (c *Client) probeJob(dst netip.AddrPort, opts *ProbeOptions) (*job, error) {
	if err := c.usable(); err != nil {
		return nil, err
	}
	if err := c.receives(); err != nil {
		return nil, err
	}
	s, err := c.settings(opts)
	if err != nil {
		return nil, err
	}
	var src netip.Addr
	if opts != nil {
		src = opts.Source
		if err := c.ownPort(opts.SourcePort); err != nil {
			return nil, err
		}
	}
	t, err := c.target("", dst, src)
	if err != nil {
		return nil, err
	}
	return &job{
		settings: s,
		targets:  []Target{t},
		mtus:     make([]int, 1),
		count:    1,
		wait:     true,
	}, nil
}

// Rounds describes probes sent in rounds, as ping sends them: one probe
// to every target per round.
type Rounds struct {
	// Targets are the addresses and ports to probe; a Target's Src, when
	// zero, is the routes' choice (or Options.Source).
	Targets []Target
	// Count is the number of rounds; 0 means until ctx ends.
	Count int
	// Interval between rounds; default 1s.
	Interval time.Duration
	// Options apply to every probe; nil means defaults.
	Options *ProbeOptions
	// OnResult, if set, is called for every result from the client's
	// engine goroutine: it must return soon, and must not wait for
	// another call on the same client. The Result is reused: copy what
	// you keep.
	OnResult func(*Result)

	// Spread spreads each round over Interval: target i of n is probed
	// i/n of the interval after the round begins, rather than every
	// target at once. The engine sends together the probes due within
	// 2 ms, waking at most once in that time for them. A round held up
	// (a busy machine) by more than 50 ms or a tenth of the interval
	// moves the rest of its schedule by as much rather than send what it
	// owes at once. A probe that finds every source port busy or the
	// engine's table full waits for room, as Probe's do, rather than
	// fail.
	Spread bool
	// OnSend, if set, is called with a target's index as its probe is
	// about to be sent, from the engine goroutine (as OnResult).
	OnSend func(i int)
	// OnSkip, if set, makes a round skip a target whose previous probe
	// has not ended (a ModeFIN probe still holding its connection), and
	// is called with its index instead of OnSend; without it, the probes
	// of one target may overlap, as ping's do.
	OnSkip func(i int)
	// KeepGoing makes a target that cannot be probed (an address that
	// cannot be a destination, no route to it, a source of the other
	// family) fail its probe of each round with StateError, rather than
	// fail the call, and is checked again before each probe: what a
	// long-running monitor wants, whose routes come and go. Either way,
	// a target whose source is the routes' choice follows the routes:
	// its source is looked up again (from the client's cache, which a
	// change of routes empties) before each probe sent while none of
	// its probes is in flight.
	KeepGoing bool
	// NoStats keeps no statistics: Rounds returns none, and memory does
	// not grow with the targets' RTT histograms (an exporter counting
	// its results from OnResult).
	NoStats bool
}

// Rounds probes r's targets in rounds until r.Count rounds are done and
// every exchange has ended, or ctx ends (the probes in flight are then
// interrupted, as Prober.Run interrupts them), and returns each target's
// statistics (none with NoStats). It fails only when the targets are
// unusable (unless KeepGoing) or the client is closed (then with the
// statistics so far). Unlike Probe, a round keeps its schedule: a probe
// that finds every source port busy (ModeFIN at a high rate) or the
// engine's table full fails (StateError) rather than wait, unless the
// rounds are spread (Spread).
func (c *Client) Rounds(ctx context.Context, r *Rounds) ([]Stats, error) {
	if err := c.usable(); err != nil {
		return nil, err
	}
	if r == nil || len(r.Targets) == 0 {
		return nil, errors.New("probe: no targets")
	}
	if r.Count < 0 || r.Interval < 0 {
		return nil, errors.New("probe: negative count or interval")
	}
	if err := c.receives(); err != nil {
		return nil, err
	}
	s, err := c.settings(r.Options)
	if err != nil {
		return nil, err
	}
	var src netip.Addr
	if r.Options != nil {
		src = r.Options.Source
		if r.Options.SourcePort != 0 || r.Options.Packets {
			return nil, errors.New("probe: ProbeOptions.SourcePort and Packets are for Probe, not Rounds")
		}
	}
	ts := make([]Target, len(r.Targets))
	var (
		auto  []bool       // per target: checked and completed before each probe
		froms []netip.Addr // the sources asked for (invalid: the routes')
	)
	for i, t := range r.Targets {
		from := t.Src
		if !from.IsValid() {
			from = src
		}
		dst := netip.AddrPortFrom(t.Addr, t.Port)
		ts[i], err = c.target(t.Name, dst, from)
		recheck := !from.IsValid() // the routes' source: it follows them
		if err != nil && r.KeepGoing && dst.Addr().IsValid() && dst.Port() != 0 {
			// Its probes fail until it can be probed.
			ts[i], err, recheck = Target{Name: t.Name, Addr: dst.Addr().Unmap(), Port: t.Port}, nil, true
			if ts[i].Name == "" {
				ts[i].Name = ts[i].Addr.String()
			}
		}
		if err != nil {
			return nil, err
		}
		if recheck {
			if auto == nil {
				auto, froms = make([]bool, len(ts)), make([]netip.Addr, len(ts))
			}
			auto[i], froms[i] = true, from
		}
	}
	j := &job{
		settings: s,
		targets:  ts,
		mtus:     make([]int, len(ts)),
		count:    r.Count,
		interval: r.Interval,
		onResult: r.OnResult,
		done:     make(chan struct{}),
		spread:   r.Spread,
		wait:     r.Spread,
		onSend:   r.OnSend,
		onSkip:   r.OnSkip,
		auto:     auto,
	}
	if !r.NoStats {
		j.stats = make([]tally, len(ts))
	}
	if r.OnSkip != nil || auto != nil {
		j.inflight = make([]int32, len(ts))
	}
	if auto != nil {
		j.resolve = func(i int, t *Target) error {
			nt, err := c.target(t.Name, netip.AddrPortFrom(t.Addr, t.Port), froms[i])
			if err != nil {
				return err
			}
			t.Src = nt.Src
			return nil
		}
	}
	if j.interval == 0 {
		j.interval = time.Second
	}
	if err := c.p.submit(j); err != nil {
		return nil, err
	}
	select {
	case <-j.done:
	case <-ctx.Done():
		c.p.cancel(j)
		<-j.done
	}
	if j.stats == nil {
		return nil, j.err
	}
	st := make([]Stats, len(j.stats))
	for i := range j.stats {
		st[i] = j.stats[i].snapshot()
	}
	return st, j.err
}

// clone returns a copy of r that shares nothing with the engine.
func (r *Result) clone() *Result {
	c := *r
	if r.Target != nil {
		t := *r.Target
		c.Target = &t
	}
	if r.Close != nil {
		cr := *r.Close
		c.Close = &cr
	}
	c.Trace = slices.Clone(r.Trace)
	c.SynAckRetrans = slices.Clone(r.SynAckRetrans)
	c.SYN = slices.Clone(r.SYN)
	c.Quote = slices.Clone(r.Quote)
	return &c
}

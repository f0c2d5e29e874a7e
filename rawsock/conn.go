package rawsock

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/synprobe/synprobe/rawsock/wire"
)

// Config selects what Listen opens.
type Config struct {
	// IPv4 and IPv6 select the address families to open sockets for.
	IPv4, IPv6 bool
	// PortLo and PortHi bound the source ports this run sends from; the
	// receive sockets' BPF filters pass only replies to these ports.
	PortLo, PortHi uint16
	// Interface, if set, binds every socket to that device (SO_BINDTODEVICE).
	Interface string
	// Mark, if non-zero, is set as SO_MARK on the send sockets so that a
	// firewall rule can tell our own segments from the kernel's.
	Mark uint32
	// NoTxStamps turns transmit timestamps off: at scan rates the error
	// queue traffic would cost more than the stamps are worth.
	NoTxStamps bool
	// RecvBuffer is each receive socket's buffer in bytes (default 8 MiB).
	// Scans want more: replies arrive as fast as probes leave.
	RecvBuffer int
	// SendOnly opens the send sockets alone, for a caller that receives
	// through a Ring: Recv then only waits for Wake or Close.
	SendOnly bool
}

// Conn is a set of raw sockets: one send socket per family (IPPROTO_RAW,
// whole packets, transmit timestamps on its error queue) and TCP and ICMP
// receive sockets with BPF filters and receive timestamps.
//
// Send and Recv may be called concurrently; Recv by one goroutine at a time.
type Conn struct {
	iface    string // Config.Interface
	sendOnly bool   // Config.SendOnly
	connSys         // the platform's part
}

// SendsOnly reports whether c was opened to send only (Config.SendOnly).
func (c *Conn) SendsOnly() bool { return c.sendOnly }

// Families reports which families the Conn sends (Config.IPv4, IPv6).
func (c *Conn) Families() (v4, v6 bool) { return c.families() }

// Listen opens the sockets described by cfg. It needs CAP_NET_RAW; errors
// wrap os.ErrPermission when that is missing.
func Listen(cfg Config) (*Conn, error) {
	if !cfg.IPv4 && !cfg.IPv6 {
		return nil, errors.New("rawsock: no address family selected")
	}
	if cfg.PortLo == 0 || cfg.PortHi < cfg.PortLo {
		return nil, fmt.Errorf("rawsock: bad port range %d-%d", cfg.PortLo, cfg.PortHi)
	}
	c, err := listen(cfg)
	if err != nil {
		return nil, err
	}
	c.sendOnly = cfg.SendOnly
	return c, nil
}

// Send transmits pkt, a whole IPv4 or IPv6 packet (see Segment.Build). id
// names the packet's transmit timestamps: for TxTime, or with BulkStamp
// for ReadTxStamps; ids should be unique among the last few thousand
// packets sent.
func (c *Conn) Send(pkt []byte, id uint32) error {
	if len(pkt) < wire.IPv4MinimumSize {
		return wire.ErrTruncated
	}
	return c.send(pkt, id)
}

// TxTime returns the kernel's transmit timestamp of the packet sent with id:
// the stamp taken as the packet entered the device queue (SCHED), else the
// driver's (SND). ok is false when the kernel reported none (yet).
//
// SCHED comes first because the driver's stamp is taken after the device's
// packet taps have run: with a capture open, SND lags the packet's real
// departure by the tap's copy, by tens of microseconds now and then and by
// over a millisecond at worst (measured: scripts/bench-rtt.sh). On a device
// without a queue, as veth and loopback are, nothing else lies between the
// two.
func (c *Conn) TxTime(id uint32, v6 bool) (t time.Time, ok bool) { return c.txTime(id, v6) }

// Recv reads the next packet from any receive socket into b and returns its
// length and the kernel's receive timestamp (zero if the kernel gave none).
// The packet always starts with an IP header: for IPv6, whose raw sockets
// deliver only the payload, Recv writes a synthesized 40-byte header in
// front of it (addresses, hop limit and traffic class from the control
// messages; flow label zero). b should hold MaxPacketSize bytes; longer
// packets are truncated.
//
// Recv blocks until a packet arrives, the deadline passes (it returns
// os.ErrDeadlineExceeded; a zero deadline never passes, one in the past
// makes Recv a non-blocking poll), Wake is called (ErrWoken) or the Conn is
// closed (net.ErrClosed). The wait has nanosecond resolution
// (epoll_pwait2), unlike Go's timers, which sleep in whole milliseconds.
func (c *Conn) Recv(b []byte, deadline time.Time) (int, time.Time, error) {
	if len(b) < wire.IPv6MinimumSize+wire.TCPMinimumSize {
		return 0, time.Time{}, wire.ErrShortBuffer
	}
	return c.recv(b, deadline)
}

// Queued reports whether a received packet waits in a receive socket.
// Packets the kernel has received but not yet processed are in no socket
// yet: see KernelBacklog.
func (c *Conn) Queued() bool { return c.queued() }

// ErrWoken is what Recv returns when Wake interrupted it.
var ErrWoken = errors.New("rawsock: woken")

// Wake makes a blocked Recv (or the next one) return ErrWoken.
func (c *Conn) Wake() { c.wake() }

// Close closes every socket. A Recv blocked in another goroutine returns
// net.ErrClosed first.
func (c *Conn) Close() error { return c.close() }

// SourceFor returns the address the kernel would send from to reach dst,
// optionally through the named interface. No packet is sent.
func SourceFor(dst netip.Addr, iface string) (netip.Addr, error) {
	f := SourceFinder{Interface: iface}
	defer f.Close()
	return f.Source(dst)
}

// SourceFinder answers SourceFor's question many times over, through one
// UDP socket per family that it connects to each destination in turn: a
// third of SourceFor's cost. The sockets belong to the network namespace
// of the thread that first asks. Safe for concurrent use.
type SourceFinder struct {
	Interface string // as SourceFor's iface
	// Watch, if set, lets the finder keep each destination's source
	// until the watch sees a change of links, addresses, routes or rules:
	// a map lookup instead of three system calls. It must watch the
	// namespace of the finder's sockets.
	Watch *RouteWatch

	mu    sync.Mutex
	fds   [2]int // IPv4, IPv6; 0: not open
	cache sourceCache
}

// Source returns the address the kernel would send from to reach dst.
func (f *SourceFinder) Source(dst netip.Addr) (netip.Addr, error) { return f.source(dst) }

// PathMTU returns the MTU of the path to dst, as the function PathMTU
// does, through the finder's sockets.
func (f *SourceFinder) PathMTU(dst netip.Addr) (int, error) { return f.pathMTU(dst) }

// Close closes the sockets.
func (f *SourceFinder) Close() error { return f.close() }

// ProbePortRange returns the source ports probes should use: the range
// above net.ipv4.ip_local_port_range (or below it, if that is too small),
// so that the kernel's own connections never pick the same ports.
func ProbePortRange() (lo, hi uint16, err error) {
	l, h, err := localPortRange()
	if err != nil {
		return 0, 0, err
	}
	return PortRangeOutside(l, h)
}

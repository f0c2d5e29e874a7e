package scan

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/probe/internal/core"
	"github.com/synprobe/synprobe/rawsock"
)

// RingMinPairs is the smallest scan that Prepare gives a packet ring and
// Ethernet frames: below it, the ring's setup and teardown (some 30 ms
// of waiting for the kernel) cost more than they save.
const RingMinPairs = 16384

// Opener opens the sockets a scan uses. System opens rawsock's; tests
// give fakes.
type Opener interface {
	// Listen opens raw IP sockets (rawsock.Listen).
	Listen(cfg rawsock.Config) (ClosingConn, error)
	// Ring opens a packet ring (rawsock.ListenRing).
	Ring(cfg rawsock.RingConfig) (ClosingReceiver, error)
	// DirectPath finds the one next hop of every prefix, if sending
	// Ethernet frames to it is what the host's IP output would do
	// (rawsock.DirectPath).
	DirectPath(prefixes []netip.Prefix, ifindex int) (rawsock.NextHop, error)
	// PacketSender opens a sender of Ethernet frames to hop
	// (rawsock.NewPacketSender).
	PacketSender(hop rawsock.NextHop, v6 bool) (ClosingSender, error)
}

// ClosingConn, ClosingReceiver and ClosingSender are what an Opener
// opens: a Conn, Receiver or BatchSender that the Prepared closes.
type (
	ClosingConn interface {
		Conn
		io.Closer
	}
	ClosingReceiver interface {
		Receiver
		io.Closer
	}
	ClosingSender interface {
		BatchSender
		io.Closer
	}
)

// System is the Opener of rawsock's sockets.
var System Opener = system{}

type system struct{}

func (system) Listen(cfg rawsock.Config) (ClosingConn, error) {
	c, err := rawsock.Listen(cfg)
	if err != nil {
		return nil, err // not a nil *Conn in a non-nil interface
	}
	return c, nil
}

func (system) Ring(cfg rawsock.RingConfig) (ClosingReceiver, error) {
	r, err := rawsock.ListenRing(cfg)
	if err != nil {
		return nil, err
	}
	return r, nil
}

func (system) DirectPath(prefixes []netip.Prefix, ifindex int) (rawsock.NextHop, error) {
	return rawsock.DirectPath(prefixes, ifindex)
}

func (system) PacketSender(hop rawsock.NextHop, v6 bool) (ClosingSender, error) {
	s, err := rawsock.NewPacketSender(hop, v6)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// netConfig says what openNet opens.
type netConfig struct {
	// Set and Sources are the scan's pairs and their source addresses
	// (Config.Set, wiring.Sources).
	Set     *Set
	Sources []SourceRange
	// PortLo..PortHi are the scan's source ports (wiring.PortLo,
	// PortHi), held by the caller.
	PortLo, PortHi uint16
	// Interface, if set, binds the sockets to that device, and the ring
	// taps only it.
	Interface string
	// Opener opens the sockets; nil means System.
	Opener Opener
	// Shared, if set, is the client's network, which the scan sends
	// its probes (where no Ethernet frames do) and RSTs through rather
	// than raw sockets of its own, if it sends the scan's families
	// (core.Lease.Shared).
	Shared core.Conn
}

// network is what a scan sends through and receives from, chosen for
// its size by openNet; scan runs a scan on it.
type network struct {
	// conn is the raw IP sockets, which only send: every probe of a
	// family without a packet sender, and every RST.
	conn Conn
	// recv, if set, is a packet ring that receives the answers, which the
	// client's engine reads; else they come through the client's sockets.
	recv Receiver
	// copies says that recv also delivers a copy of every probe as it
	// leaves (rawsock.RingConfig.Outgoing): its time is the probe's
	// transmit stamp.
	copies bool
	// send are the Ethernet-frame senders, per family (IPv4, IPv6); nil:
	// conn sends that family's probes.
	send [2]BatchSender
	// shared: conn is the client's (core.Lease.Shared).
	shared bool
	// sendPath and recvPath say how the probes are sent and the answers
	// read, for people (Summary.SendPath, Summary.RecvPath).
	sendPath, recvPath string

	closers []io.Closer
}

// openNet opens what a scan of cfg.Set sends through, with the client's
// mark, and for a big scan the ring its answers come from: the answers of
// a scan without one come through the client's sockets.
//
// Big scans (RingMinPairs pairs or more) read their answers from a
// packet ring, which costs no system call, socket queue or wake-up per
// packet, unlike the raw sockets' receive path, and never loses answers
// to a slow reader; it taps every interface (answers need not come back
// the way the probes left), or cfg.Interface. The ring also takes the
// probes as they leave: their times are the probes' transmit stamps,
// free of system calls. Big scans also send Ethernet frames straight to
// the next hop when that sends exactly what the host's IP output would
// (rawsock.DirectPath: the same route for every target, no output
// firewall, ...): about twice the rate of the raw IP socket, whose path
// through the host's IP output is the cost. Otherwise, and whenever the
// ring or the frames cannot be had, the raw IP sockets: every probe then
// meets the host's routes and firewall as its own connections would.
//
// Opening needs CAP_NET_RAW (errors wrap os.ErrPermission without it);
// scanning on what it opened needs no privilege.
func openNet(cfg netConfig, mark uint32) (n *network, err error) {
	o := cfg.Opener
	if o == nil {
		o = System
	}
	if cfg.Set == nil {
		return nil, errors.New("scan: nothing to scan")
	}
	var ifindex int
	if cfg.Interface != "" {
		ifi, err := net.InterfaceByName(cfg.Interface)
		if err != nil {
			return nil, fmt.Errorf("scan: interface %s: %w", cfg.Interface, err)
		}
		ifindex = ifi.Index
	}
	var src [2]bool // a family has sources
	var addrs []netip.Addr
	for _, r := range cfg.Sources {
		if !r.Addr.IsValid() {
			continue
		}
		src[famIndex(r.Addr)] = true
		if !slices.Contains(addrs, r.Addr) {
			addrs = append(addrs, r.Addr)
		}
	}
	n = &network{recvPath: "raw sockets"}
	defer func() {
		if err != nil {
			n.Close()
			n = nil
		}
	}()
	big := cfg.Set.Len() >= RingMinPairs
	var ring ClosingReceiver
	if big {
		ring, err = o.Ring(rawsock.RingConfig{PortLo: cfg.PortLo, PortHi: cfg.PortHi, Outgoing: true, Addrs: addrs, Ifindex: ifindex})
		switch {
		case err == nil:
			n.closers = append(n.closers, ring)
			n.recv, n.recvPath, n.copies = ring, "packet ring", true
		case errors.Is(err, os.ErrPermission):
			return nil, err
		}
		err = nil
	}
	// Transmit stamps come from the ring's copies of the probes when
	// there is a ring, else from the send sockets' error queues.
	if c := shareable(cfg.Shared, src, ring == nil); c != nil {
		n.conn, n.shared = c, true // the client's, which it closes
	} else {
		c, err := o.Listen(rawsock.Config{IPv4: src[0], IPv6: src[1], PortLo: cfg.PortLo, PortHi: cfg.PortHi, Interface: cfg.Interface,
			NoTxStamps: ring != nil, RecvBuffer: 64 << 20, SendOnly: true, Mark: mark})
		if err != nil {
			return nil, err
		}
		n.closers = append(n.closers, c)
		n.conn = c
	}
	var paths []string
	for fam := range 2 {
		if !src[fam] {
			continue
		}
		path := "raw IP socket"
		if big {
			var prefixes []netip.Prefix
			for _, p := range cfg.Set.Prefixes() {
				if famIndex(p.Addr()) == fam {
					prefixes = append(prefixes, p)
				}
			}
			hop, err := o.DirectPath(prefixes, ifindex)
			if err == nil {
				var ps ClosingSender
				if ps, err = o.PacketSender(hop, fam == 1); err == nil {
					n.closers = append(n.closers, ps)
					n.send[fam] = ps
					path = fmt.Sprintf("Ethernet frames to %v on interface %d", hop.DstMAC, hop.Ifindex)
				}
			}
			if err != nil {
				path += " (not Ethernet frames: " + err.Error() + ")"
			}
		}
		paths = append(paths, []string{"IPv4: ", "IPv6: "}[fam]+path)
	}
	n.sendPath = strings.Join(paths, "; ")
	return n, nil
}

// shareable returns the client's network c as the scan's sender, if it
// can be: it sends batches and stamps (scan.Conn), every family of the
// scan's sources (fams), and takes batches' transmit stamps when the scan
// reads its stamps from the error queues (stamps), or no stamps at all
// when it does not (a ring's copies time its probes): stamps nobody reads
// would fill the error queues, and the engine's stamps would find no room
// there. Else nil, and the scan opens sockets of its own.
func shareable(c core.Conn, fams [2]bool, stamps bool) Conn {
	sc, ok := c.(Conn)
	if !ok {
		return nil
	}
	if f, ok := c.(interface{ Families() (v4, v6 bool) }); ok {
		if v4, v6 := f.Families(); fams[0] && !v4 || fams[1] && !v6 {
			return nil
		}
	}
	if b, ok := c.(interface{ BatchStamps() bool }); ok && b.BatchStamps() != stamps {
		return nil
	}
	return sc
}

// discardStamps forgets the transmit stamps that wait for a reader of
// c's: an earlier scan's on the client's shared sockets (its last RSTs'),
// whose ids the next scan gives again. Bounded.
func discardStamps(c BatchSender) {
	st := rawsock.NewTxStamps(1024)
	for range 128 {
		if c.ReadTxStamps(st) != nil || !st.Full() {
			return
		}
	}
}

// famIndex is 0 for IPv4, 1 for IPv6.
func famIndex(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}

// scan runs a scan on n: scanConn with n's senders, its answers from f
// (n's ring, or the client's sockets). The Summary says how it sent and
// received.
func (n *network) scan(ctx context.Context, cfg Config, w wiring, f *feed) (Summary, error) {
	if n.shared {
		discardStamps(n.conn)
	}
	w.Recv, w.ProbeCopies = f, n.copies
	w.Send4, w.Send6 = n.send[0], n.send[1]
	sum, err := scanConn(ctx, n.conn, cfg, w)
	sum.SendPath, sum.RecvPath = n.sendPath, n.recvPath
	return sum, err
}

// Close closes what openNet opened, all at once: closing a packet socket
// waits for a grace period of the kernel's RCU, two for one with a ring,
// some 10 ms each, and concurrent waits share them.
func (n *network) Close() error {
	var wg sync.WaitGroup
	for _, c := range n.closers {
		wg.Go(func() { c.Close() })
	}
	wg.Wait()
	n.closers = nil
	return nil
}

// Complete judges r's middlebox hint again against every host's SYN-ACK
// TTL (Summary.HostTTL). A result is reported as soon as its answer
// comes, and a refusal that came before its host's SYN-ACK could not be
// judged then: Complete gives it the hint the whole scan supports.
func (s *Summary) Complete(r *probe.ScanResult) {
	if t, ok := s.HostTTL[r.Addr]; ok && r.Hint == "" && r.State == probe.StateClosed && MiddleboxTTL(t, r.TTL) {
		r.Hint = "rst-ttl-differs-from-syn-ack"
	}
}

// Clock says which clock timed the scan's RTTs: "kernel" (kernel stamps
// at both ends), "user" (the user-space clock at one end at least),
// "mixed", or "" when nothing was timed.
func (s *Summary) Clock() string {
	switch {
	case s.KernelClock+s.UserClock == 0:
		return ""
	case s.UserClock == 0:
		return "kernel"
	case s.KernelClock == 0:
		return "user"
	}
	return "mixed"
}

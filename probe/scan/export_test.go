package scan

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/probe/internal/core"
	"github.com/synprobe/synprobe/probe/probetest"
	"github.com/synprobe/synprobe/rawsock"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// Wiring says how ScanConn reaches the test's network: Src4 and Src6 are
// the sources, PortLo..PortHi the client's ports, Recv a fake packet
// ring, ProbeCopies that the ring (or conn) delivers each probe as it
// leaves.
type Wiring struct {
	Src4, Src6     netip.Addr
	PortLo, PortHi uint16
	Recv           Receiver
	ProbeCopies    bool
}

// ScanConn runs a scan of cfg.Set on a client over conn (a
// probetest.Conn), the way Run does, so that the scanner's tests take the
// path that ships: the client's engine reads every answer and hands it
// to the scan. Without w.Recv the client's Conn is conn, and the scan
// sends through it too; with w.Recv (or ProbeCopies), the scan sends
// through conn and the engine reads the answers from that ring (from
// conn, for ProbeCopies), whatever the Set's size, beside a client Conn
// that receives nothing.
func ScanConn(ctx context.Context, conn Conn, cfg Config, w Wiring) (Summary, error) {
	pc, ok := conn.(*probetest.Conn)
	if !ok {
		return Summary{}, errors.New("ScanConn: not a probetest.Conn")
	}
	if w.Recv == nil && w.ProbeCopies {
		w.Recv = &connRing{conn: pc, buf: make([]byte, rawsock.MaxPacketSize)}
	}
	var own probe.Conn = pc
	if w.Recv != nil {
		silent := probetest.NewConn(func(*wire.Packet, []byte, uint32) []probetest.Reply { return nil })
		defer silent.Close()
		own = silent
	}
	var ports []uint16
	for p := int(w.PortLo); p <= int(w.PortHi); p++ {
		ports = append(ports, uint16(p))
	}
	ccfg := &probe.ClientConfig{
		Conn: own, SourcePorts: ports,
		Source: func(dst netip.Addr) (netip.Addr, error) {
			if dst.Is4() {
				return w.Src4, nil
			}
			return w.Src6, nil
		},
	}
	if w.Recv == nil && cfg.Recorder != nil {
		ccfg.Recorder = cfg.Recorder // the client's reads, as synprobe records them
	}
	cl, err := probe.NewClient(ccfg)
	if err != nil {
		return Summary{}, err
	}
	defer cl.Close()
	l, err := core.Lend(cl)
	if err != nil {
		return Summary{}, err
	}
	srcs, err := SourcesFor(cfg.Set, l.Source)
	if err != nil {
		l.Release()
		return Summary{}, err
	}
	p := &Prepared{lease: l, set: cfg.Set, srcs: srcs, feed: newFeed(l, w.Recv)}
	// conn is the client's, as on a client given its Conn or sharing
	// its sockets (core.Lease.Shared).
	p.n = &network{conn: conn, shared: true, recv: w.Recv, copies: w.ProbeCopies, sendPath: "the test's Conn", recvPath: "the client's Conn"}
	if w.Recv != nil {
		p.n.recvPath = "packet ring"
	}
	defer p.Close()
	return p.Run(ctx, cfg)
}

// connRing is a fake packet ring over a probetest.Conn: it delivers the
// Conn's packets, the probes' copies among them, and cannot count.
type connRing struct {
	conn *probetest.Conn
	buf  []byte
}

func (c *connRing) Read(deadline time.Time, fn func([]byte, time.Time)) (int, error) {
	n, rx, err := c.conn.Recv(c.buf, deadline)
	if err != nil {
		return 0, err
	}
	fn(c.buf[:n], rx)
	return 1, nil
}

func (c *connRing) Dropped() uint64    { return 0 }
func (c *connRing) Pending() float64   { return 0 }
func (c *connRing) Mark() uint64       { return 0 }
func (c *connRing) ReadTo(uint64) bool { return true }

// Package probetest provides an in-memory network for testing code that
// uses probe.Conn: every packet sent is parsed and handed to a scripted
// responder, whose answers come back through Recv with exact timestamps.
//
// Packets sent one at a time (Send) are stamped by a fake kernel clock,
// Epoch plus the packet's id in milliseconds (TxStamp). Packets sent in
// batches (SendBatch, as scans send) are stamped by Clock, a clock that
// agrees with the sender's own (time.Now unless set): a batch packet with
// an id (rawsock.Batch.SetID) gets a transmit stamp for ReadTxStamps, and
// the replies to it are stamped that time plus their After, so that a
// scan's RTTs come out exactly as scripted.
package probetest

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/synprobe/synprobe/rawsock"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// Epoch is the fake kernel clock's origin: packet id n is stamped as sent
// at Epoch + n milliseconds.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// TxStamp returns the fake kernel transmit time of packet id.
func TxStamp(id uint32) time.Time { return Epoch.Add(time.Duration(id) * time.Millisecond) }

// Reply is one packet the responder sends back.
type Reply struct {
	Packet []byte        // a whole IP packet
	After  time.Duration // kernel RTT: the reply is stamped TxStamp(id)+After
	NoRx   bool          // deliver without a kernel receive stamp
	// Wall stamps the reply with the real time of the send plus After
	// instead: for code that times against the real clock. (Replies to
	// batch packets are stamped so anyway, by Conn.Clock.)
	Wall bool
	// Delay holds the reply back this long in real time; it then arrives
	// without a kernel receive stamp.
	Delay time.Duration
	// Held holds the reply back this long in real time, stamped all the
	// same as After says: a packet the kernel received in time that the
	// reader comes to late.
	Held time.Duration
}

// Responder answers one sent packet (parsed as p, raw bytes b, send id).
type Responder func(p *wire.Packet, b []byte, id uint32) []Reply

// Conn is a fake probe.Conn.
type Conn struct {
	respond Responder
	// NoTxStamps makes TxTime report nothing, and ReadTxStamps
	// rawsock.ErrNoTxStamps, as a kernel without transmit timestamping
	// would.
	NoTxStamps bool
	// Clock is the fake kernel's clock for batch packets (default
	// time.Now): their transmit stamps, and their replies' receive stamps.
	Clock func() time.Time
	// SendError, if set, is asked about every packet before it is sent;
	// a non-nil error fails the send, as the host's routes or firewall
	// would (the packet is neither recorded nor answered).
	SendError func(p *wire.Packet) error

	mu      sync.Mutex
	arrived chan struct{} // signalled when queue grows, Wake is called or the Conn closes
	woken   bool
	queue   []queued
	closed  bool
	sent    [][]byte
	sentIDs []uint32
	txIDs   map[uint32]bool
	stamps  []batchStamp // transmit stamps of batch packets, not yet read
}

type batchStamp struct {
	id uint32
	at time.Time
}

type queued struct {
	pkt []byte
	rx  time.Time
}

// NewConn returns a Conn that answers with respond (nil: silence).
func NewConn(respond Responder) *Conn {
	return &Conn{respond: respond, txIDs: map[uint32]bool{}, arrived: make(chan struct{}, 1)}
}

func (c *Conn) signal() {
	select {
	case c.arrived <- struct{}{}:
	default:
	}
}

// Send records pkt and queues the responder's replies.
func (c *Conn) Send(pkt []byte, id uint32) error {
	return c.send(pkt, id, TxStamp(id), false, false)
}

// send records pkt, sent at tx by the fake kernel clock, and queues the
// responder's replies, stamped from tx. A batch packet's replies marked
// Wall are stamped from tx too: Clock is the real one unless set. A
// stamped packet's transmit stamp is queued before its replies, as the
// kernel queues it before the packet leaves.
func (c *Conn) send(pkt []byte, id uint32, tx time.Time, batch, stamp bool) error {
	var p wire.Packet
	if err := wire.Parse(pkt, &p); err != nil {
		return fmt.Errorf("probetest: unparsable packet sent: %w", err)
	}
	if c.SendError != nil {
		if err := c.SendError(&p); err != nil {
			return err
		}
	}
	var replies []Reply
	if c.respond != nil {
		replies = c.respond(&p, pkt, id)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return net.ErrClosed
	}
	c.sent = append(c.sent, append([]byte(nil), pkt...))
	c.sentIDs = append(c.sentIDs, id)
	c.txIDs[id] = true
	if stamp && !c.NoTxStamps {
		c.stamps = append(c.stamps, batchStamp{id, tx})
	}
	for _, r := range replies {
		if r.Delay > 0 {
			pkt := r.Packet
			time.AfterFunc(r.Delay, func() { c.Inject(pkt, time.Time{}) })
			continue
		}
		q := queued{pkt: r.Packet}
		switch {
		case r.NoRx:
		case r.Wall && !batch:
			q.rx = time.Now().Add(r.After)
		default:
			q.rx = tx.Add(r.After)
		}
		if r.Held > 0 {
			time.AfterFunc(r.Held, func() { c.Inject(q.pkt, q.rx) })
			continue
		}
		c.queue = append(c.queue, q)
	}
	c.signal()
	return nil
}

// Inject queues an unsolicited packet (stray, spoofed, duplicate).
func (c *Conn) Inject(pkt []byte, rx time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.queue = append(c.queue, queued{pkt: pkt, rx: rx})
	c.signal()
}

// Recv returns the next queued reply; see probe.Conn for the deadline.
func (c *Conn) Recv(b []byte, deadline time.Time) (int, time.Time, error) {
	var timeout <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		timeout = t.C
	}
	for {
		c.mu.Lock()
		switch {
		case c.closed:
			c.mu.Unlock()
			return 0, time.Time{}, net.ErrClosed
		case len(c.queue) > 0:
			q := c.queue[0]
			c.queue = c.queue[1:]
			c.mu.Unlock()
			return copy(b, q.pkt), q.rx, nil
		case c.woken:
			c.woken = false
			c.mu.Unlock()
			return 0, time.Time{}, rawsock.ErrWoken
		}
		c.mu.Unlock()
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			return 0, time.Time{}, os.ErrDeadlineExceeded
		}
		select {
		case <-c.arrived:
		case <-timeout:
		}
	}
}

// Queued reports whether packets wait to be read, as rawsock.Conn.Queued
// does: a scan's pass ends only once they have been (its receiver is
// slow on a busy machine, not its network).
func (c *Conn) Queued() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue) > 0
}

// Wake interrupts Recv with rawsock.ErrWoken.
func (c *Conn) Wake() {
	c.mu.Lock()
	c.woken = true
	c.mu.Unlock()
	c.signal()
}

// TxTime returns the fake kernel transmit stamp of a sent packet.
func (c *Conn) TxTime(id uint32, v6 bool) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.NoTxStamps || !c.txIDs[id] {
		return time.Time{}, false
	}
	return TxStamp(id), true
}

// Close wakes Recv with net.ErrClosed.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	c.signal()
	return nil
}

// Sent returns copies of the packets sent so far.
func (c *Conn) Sent() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.sent...)
}

// SYNACK answers the SYN p with a SYN-ACK carrying opts.
func SYNACK(p *wire.Packet, opts wire.SYNOptions) []byte {
	var ob [wire.MaxOptionsSize]byte
	n := opts.Encode(ob[:])
	return Build(wire.Segment{
		Src: p.Dst, Dst: p.Src, TTL: 61, ID: 0x1234, DF: true,
		SrcPort: p.DstPort, DstPort: p.SrcPort,
		Seq: 0xabcdef01, Ack: p.Seq + 1,
		Flags:  wire.FlagSyn | wire.FlagAck,
		Window: 65160, Options: ob[:n],
	})
}

// RST answers the SYN p with RST|ACK, as a closed port does.
func RST(p *wire.Packet) []byte {
	return Build(wire.Segment{
		Src: p.Dst, Dst: p.Src, TTL: 64, DF: true,
		SrcPort: p.DstPort, DstPort: p.SrcPort,
		Ack:   p.Seq + 1,
		Flags: wire.FlagRst | wire.FlagAck,
	})
}

// Build builds s or panics: for test fixtures.
func Build(s wire.Segment) []byte {
	b := make([]byte, rawsock.MaxPacketSize)
	n, err := s.Build(b)
	if err != nil {
		panic(err)
	}
	return b[:n]
}

// ICMPError returns an ICMP (or ICMPv6) error of type typ and code from
// router, quoting the first bytes of the sent packet raw.
func ICMPError(raw []byte, router netip.Addr, typ, code uint8) []byte {
	var orig wire.Packet
	// The quote may be one a test altered: its checksum does not matter.
	if err := wire.ParseChecksums(raw, &orig, wire.ChecksumsNotReady); err != nil {
		panic(err)
	}
	quote := raw
	if router.Is4() && len(quote) > 28 {
		quote = quote[:28] // RFC 792: IP header + 8 bytes
	}
	icmp := make([]byte, 8+len(quote))
	icmp[0], icmp[1] = typ, code
	copy(icmp[8:], quote)
	if router.Is4() {
		binary.BigEndian.PutUint16(icmp[2:], ^wire.Checksum(icmp, 0))
		ip := make([]byte, 20+len(icmp))
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
		ip[8], ip[9] = 64, 1
		s, d := router.As4(), orig.Src.As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
		wire.IPv4(ip).SetChecksum(wire.IPv4(ip).CalculateChecksum())
		copy(ip[20:], icmp)
		return ip
	}
	pseudo := wire.PseudoHeaderChecksum(wire.ProtocolICMPv6, router, orig.Src, uint16(len(icmp)))
	binary.BigEndian.PutUint16(icmp[2:], ^wire.Checksum(icmp, pseudo))
	ip := make([]byte, 40+len(icmp))
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(len(icmp)))
	ip[6], ip[7] = 58, 64
	s, d := router.As16(), orig.Src.As16()
	copy(ip[8:], s[:])
	copy(ip[24:], d[:])
	copy(ip[40:], icmp)
	return ip
}

// SendBatch sends every packet of b, as rawsock.Conn.SendBatch does, each
// at Clock's time: a packet with an id (rawsock.Batch.SetID) gets that time
// as its transmit stamp, for ReadTxStamps, unless NoTxStamps is set.
func (c *Conn) SendBatch(b *rawsock.Batch) (int, error) {
	clock := c.Clock
	if clock == nil {
		clock = time.Now
	}
	for i := range b.Len() {
		var id uint32
		if b.Stamped() {
			id = b.ID(i)
		}
		if err := c.send(b.Packet(i), id, clock(), true, b.Stamped()); err != nil {
			b.Consume(i)
			return i, err
		}
	}
	n := b.Len()
	b.Reset()
	return n, nil
}

// ReadTxStamps hands over the transmit stamps of batch packets not read
// yet, as many as s holds, as rawsock.Conn.ReadTxStamps does.
func (c *Conn) ReadTxStamps(s *rawsock.TxStamps) error {
	s.Reset()
	if c.NoTxStamps {
		return rawsock.ErrNoTxStamps
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for n < len(c.stamps) && s.Add(c.stamps[n].id, c.stamps[n].at) {
		n++
	}
	c.stamps = c.stamps[:copy(c.stamps, c.stamps[n:])]
	return nil
}

// Recorder is a probe.Recorder that keeps what it is given, for tests.
type Recorder struct {
	mu     sync.Mutex
	events []Recorded
	stamps map[uint32]time.Time
}

// Recorded is one packet given to a Recorder.
type Recorded struct {
	Packet   []byte
	Sent     bool
	ID       uint32    // sent: its transmit stamp id
	Tx       time.Time // sent: the stamp given with it
	Rx, User time.Time // received: its stamps
}

// Sent records a packet sent.
func (r *Recorder) Sent(pkt []byte, id uint32, tx, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, Recorded{Packet: append([]byte(nil), pkt...), Sent: true, ID: id, Tx: tx, User: at})
}

// TxStamp records a transmit stamp.
func (r *Recorder) TxStamp(id uint32, tx time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stamps == nil {
		r.stamps = map[uint32]time.Time{}
	}
	r.stamps[id] = tx
}

// Received records a packet read.
func (r *Recorder) Received(pkt []byte, rx, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, Recorded{Packet: append([]byte(nil), pkt...), Rx: rx, User: at})
}

// Events returns the packets recorded, in order, each sent one's Tx set to
// the stamp given with it or after it (zero if none).
func (r *Recorder) Events() []Recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Recorded, len(r.events))
	for i, e := range r.events {
		if e.Sent && e.Tx.IsZero() {
			e.Tx = r.stamps[e.ID]
		}
		out[i] = e
	}
	return out
}

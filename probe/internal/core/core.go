// Package core holds what every engine of package probe does the same
// way, once: which packet answers one of our SYNs (the matcher), the
// TSval clock of our segments, the RST that frees a server's half-open
// connection, and when a receive loop gives up on its socket. The
// client's engine (probe.Prober) and the scanner (probe/scan) both use
// it; neither has a copy of its own.
package core

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/synprobe/synprobe/rawsock"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// Kind is what an answer to our SYN says of the port.
type Kind uint8

const (
	// None: the packet answers no SYN.
	None Kind = iota
	// SynAck: the host's stack accepts the connection (open).
	SynAck
	// RST: RST+ACK, the port refuses it (closed).
	RST
	// ICMP: an ICMP error quoting our SYN (filtered).
	ICMP
	// ACKReset: a RST without ACK at sequence number ISN, the answer of
	// a host's TCP to a bare ACK of ours whose acknowledgement field
	// was the ISN (RFC 9293 3.10.7.1: <SEQ=SEG.ACK><CTL=RST>). It never
	// answers a SYN.
	ACKReset
)

var kindNames = [...]string{"none", "syn-ack", "rst", "icmp", "ack-rst"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind?"
}

// Tuple is a connection seen from our side.
type Tuple struct {
	Local, Remote         netip.Addr
	LocalPort, RemotePort uint16
}

// Answer is what a packet claims to answer: the connection of one of our
// SYNs and that SYN's ISN. A claim is only taken once the caller has
// checked that the ISN is the one it sent on that connection (a table
// lookup, or the cookie: Keyed).
type Answer struct {
	Kind Kind
	Tuple
	ISN uint32
}

// Of returns what pkt claims to answer, if it can be an answer to a SYN
// of ours sent from a port in lo..hi at all:
//
//   - a TCP segment with ACK set that acknowledges ISN+1 and carries RST
//     (RST) or SYN (SynAck); in SYN-SENT nothing else answers a SYN
//     (RFC 9293 3.10.7.3): not a RST without ACK, not a bare SYN, not a
//     bare ACK, whatever its acknowledgement field holds. RST wins over
//     SYN when both are set.
//   - an ICMP error whose quote reaches the sequence number: the quote's
//     source is ours, its sequence number the ISN.
//   - a RST without ACK or SYN (ACKReset): its sequence number is the
//     ISN a bare ACK of ours acknowledged. Only a bare ACK's probe takes
//     it; a SYN's never does.
//
// The ports are checked; the addresses and the ISN are the caller's to
// check (Answer.Keyed, or its table of probes).
func Of(pkt *wire.Packet, lo, hi uint16) (Answer, bool) {
	if pkt.IsICMP() {
		q := &pkt.Quoted
		if !q.HasSeq || q.SrcPort < lo || q.SrcPort > hi {
			return Answer{}, false
		}
		return Answer{Kind: ICMP, Tuple: Tuple{q.Src, q.Dst, q.SrcPort, q.DstPort}, ISN: q.Seq}, true
	}
	if pkt.Proto != wire.ProtocolTCP || pkt.DstPort < lo || pkt.DstPort > hi {
		return Answer{}, false
	}
	if pkt.Flags&(wire.FlagRst|wire.FlagAck|wire.FlagSyn|wire.FlagFin) == wire.FlagRst {
		return Answer{Kind: ACKReset, Tuple: Tuple{pkt.Dst, pkt.Src, pkt.DstPort, pkt.SrcPort}, ISN: pkt.Seq}, true
	}
	if pkt.Flags&wire.FlagAck == 0 {
		return Answer{}, false
	}
	var k Kind
	switch {
	case pkt.Flags&wire.FlagRst != 0:
		k = RST
	case pkt.Flags&wire.FlagSyn != 0:
		k = SynAck
	default:
		return Answer{}, false
	}
	return Answer{Kind: k, Tuple: Tuple{pkt.Dst, pkt.Src, pkt.DstPort, pkt.SrcPort}, ISN: pkt.Ack - 1}, true
}

// Answers reports whether a is an answer to the SYN that left on
// connection t with ISN isn.
func (a *Answer) Answers(t Tuple, isn uint32) bool {
	return a.Kind != None && a.Tuple == t && a.ISN == isn
}

// Keyed reports whether a's ISN is the one cookie gives its connection
// and probe id: the answer is to a SYN of ours, whose ISN nobody else can
// guess.
func (a *Answer) Keyed(cookie *wire.Cookie, id uint32) bool {
	return a.Kind != None && a.ISN == cookie.ISN(a.Local, a.Remote, a.LocalPort, a.RemotePort, id)
}

// ScanID is the probe id in the ISN of every scan SYN (Answer.Keyed).
// The engine gives it to no probe of its own, so that a scan and a probe
// on one client never take each other's answers.
const ScanID = ^uint32(0)

// Lease is what a probe.Client lends a scan that runs on it: package
// scan cannot see the client's insides, and no one else should.
type Lease struct {
	Cookie wire.Cookie
	// Source returns the client's source address for dst.
	Source func(dst netip.Addr) (netip.Addr, error)
	// Options and Options6 are the client's SYN options, per family.
	Options, Options6 *wire.SYNOptions
	// Ports are the client's source ports, sorted.
	Ports     []uint16
	Interface string
	Mark      uint32
	// Do runs fn in the client's network namespace.
	Do func(fn func() error) error
	// Feed hands every packet the client's engine receives to fn, on the
	// engine's thread, until Feed(nil), which returns once no call of
	// the previous fn is in progress.
	Feed func(fn func(b []byte, rx time.Time))
	// Attach makes the client's engine read r too, on its thread, each
	// turn of its loop and at least every millisecond, without waiting:
	// it hands r's packets to fn alone (not to its own probes, nor to
	// Feed) and an error of r's Read other than a deadline to fail,
	// (ErrWoken), after which it reads r no more. Attach(nil, nil, nil)
	// ends it and
	// returns once no call of the previous fn is in progress.
	Attach func(r Bulk, fn func(b []byte, rx time.Time), fail func(error))
	// Conn is the network a client was given (probe.ClientConfig.Conn),
	// nil when it opened its own sockets.
	Conn Conn
	// Shared, if set, is the client's network (its own sockets, or
	// Conn), which a scan may send through beside the engine: their
	// transmit stamps do not mix (rawsock.Conn.ShareSends).
	Shared Conn
	// Queued, if set, reports whether packets wait in the client's
	// sockets, which the engine has not read yet.
	Queued func() bool
	// Done is closed when the client's engine stops (Close).
	Done <-chan struct{}
	// Release gives the lease back: until then the client lends no other
	// (one scan at a time).
	Release func()
}

// Conn is probe.Conn, the network a client's engine sends and receives
// through, declared here too so that a Lease can carry it typed: package
// probe cannot be imported here. A scan upgrades it to what it needs
// (scan.Conn) by a type assertion.
type Conn interface {
	Send(pkt []byte, id uint32) error
	Recv(b []byte, deadline time.Time) (n int, rx time.Time, err error)
	Wake()
	TxTime(id uint32, v6 bool) (time.Time, bool)
}

// Bulk is a receiver of packets in blocks (a scan's packet ring,
// rawsock.Ring): Read calls fn for every packet it has, or waits for one
// until deadline (one in the past: not at all).
type Bulk interface {
	Read(deadline time.Time, fn func(b []byte, rx time.Time)) (int, error)
}

// Lend returns what client (a *probe.Client) lends a scan; package probe
// sets it.
var Lend func(client any) (*Lease, error)

// Reset returns the segment that frees the half-open connection our SYN
// with ISN isn on t may have left at the server: RST without ACK at
// ISN+1, the one sequence number a server in SYN-RECEIVED takes without
// a challenge (RFC 9293 3.10.7.4, RFC 5961 3.2). It is sent on a
// SYN-ACK in rst mode, and for a probe that ends without an answer when
// the kernel's own RST is kept off the wire.
func Reset(t Tuple, isn uint32, ttl, tos uint8) wire.Segment {
	return wire.Segment{
		Src: t.Local, Dst: t.Remote, TTL: ttl, TOS: tos, DF: true,
		SrcPort: t.LocalPort, DstPort: t.RemotePort,
		Seq: isn + 1, Flags: wire.FlagRst,
	}
}

// Clock is the TSval clock of our segments: milliseconds, as Linux
// counts them, from an origin no one else can guess (RFC 7323 5.4).
type Clock struct{ base uint32 }

// NewClock returns the clock of a run keyed by cookie.
func NewClock(cookie *wire.Cookie) Clock {
	return Clock{base: cookie.ISN(netip.IPv4Unspecified(), netip.IPv4Unspecified(), 0, 0, 0x7473)}
}

// TSval returns the TSval of a segment sent at now.
func (c Clock) TSval(now time.Time) uint32 { return c.base + uint32(now.UnixMilli()) }

// TSvalOffset returns the offset of the TSval field in encoded TCP
// options, or -1: where each SYN's TSval is written.
func TSvalOffset(opts []byte) int {
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

// Outcome is what a receive loop does after a read.
type Outcome uint8

const (
	// Packet: the read returned a packet.
	Packet Outcome = iota
	// Closed: the socket was closed; the loop ends without an error.
	Closed
	// Idle: the deadline passed or the loop was woken; nothing failed.
	Idle
	// Skip: a read failed (a raw socket reports a queued ICMP error
	// once, say); the loop reads on.
	Skip
	// Fatal: reads have failed MaxFailures times in a row: the socket
	// only fails, and the loop ends with the error.
	Fatal
)

// MaxFailures is how many reads in a row may fail before a receive loop
// gives up.
const MaxFailures = 1000

// Failures is the receive-failure policy of every receive loop: failed
// reads are skipped, but no more than MaxFailures in a row.
type Failures struct{ n int }

// Judge returns what the loop does after a read that returned err.
func (f *Failures) Judge(err error) Outcome {
	switch {
	case err == nil:
		f.n = 0
		return Packet
	case errors.Is(err, net.ErrClosed):
		return Closed
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, rawsock.ErrWoken):
		return Idle
	}
	if f.n++; f.n > MaxFailures {
		return Fatal
	}
	return Skip
}

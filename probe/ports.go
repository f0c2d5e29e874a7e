package probe

import (
	"slices"
	"sync/atomic"
	"time"
)

// PortAllocator hands out an engine's source ports (Config.Ports,
// ClientConfig.Allocator). The engine calls it from its own thread only.
type PortAllocator interface {
	// Take returns the source port for a SYN that leaves at now, with
	// TSval tsval when timestamps says it carries the option, or false
	// if no port can be had. A port the Prober still keeps in TIME_WAIT may come back:
	// the Prober then forgets that connection.
	Take(now time.Time, tsval uint32, timestamps bool) (port uint16, ok bool)
	// Release says that the probe on port has ended: a Client's every
	// probe, a Prober's (New) only in ModeFIN, where a port is a
	// connection's until it ends.
	Release(port uint16, end PortEnd)
}

// PortEnd describes how a connection left its port (ModeFIN).
type PortEnd struct {
	At time.Time // when the exchange ended
	// TimeWait: a TIME_WAIT may hold the 4-tuple until At plus a minute:
	// ours (we closed first), the peer's (it closed first), or both (the
	// FINs crossed).
	TimeWait bool
	// Timestamps were negotiated, and TSval is the last one we sent.
	Timestamps bool
	TSval      uint32
	// RTT is the handshake's round trip, zero if unknown.
	RTT time.Duration
}

// Reuse of ports in TIME_WAIT (PortPool).
const (
	// reuseQuiet is the least time between a connection's end and a new
	// SYN from its port, so that a peer whose last ACK from us was lost
	// has retransmitted its FIN (and had it acknowledged from our
	// TIME_WAIT) first. Linux's tcp_tw_reuse waits a second too.
	reuseQuiet = time.Second
	// reuseRTTs: on long paths, the quiet time is this many RTTs plus
	// Linux's minimum RTO, which covers the peer's first retransmission
	// timeout (its RTT plus at least twice the RTT or 200 ms).
	reuseRTTs = 4 // and minRTO, Linux's TCP_RTO_MIN (tcb.go)
)

// PortPool is the PortAllocator of synprobe: it hands out its ports in
// turn. With connection tracking (ModeFIN) a port is busy from its SYN
// until its connection ends, and when that connection leaves a TIME_WAIT
// (on either side) the port cools for timeWaitLinger. A cooling port is
// taken again only when every port is busy or cooling, and only as RFC
// 6191 and Linux's tcp_timewait_state_process allow a new SYN into a
// TIME_WAIT: the connections that left it negotiated timestamps, and the
// new SYN's TSval is greater than any we sent on them. It must also have
// been quiet since the close for a second, or four RTTs plus 200 ms on
// long paths (see reuseQuiet). The ISN, a keyed hash, cannot serve
// RFC 6191's fallback (an ISN above the old connection's): a port cooling
// from a connection without timestamps waits out the whole minute.
//
// A PortPool is not safe for concurrent use.
type PortPool struct {
	ports []uint16 // ascending
	st    []portState
	next  int
	track bool

	reused, exhausted atomic.Uint64 // read by Client.Info while the engine takes
}

type portState struct {
	busy     bool
	coolTill time.Time // a TIME_WAIT may hold one of its 4-tuples until then
	reuseAt  time.Time // earliest reuse while cooling
	ts       bool      // every connection it cools from negotiated timestamps
	tsval    uint32    // our last TSval on them
}

// NewPortPool returns a pool of ports (held, e.g., by a rawsock.PortBlock;
// sorted here). track turns on connection tracking, for ModeFIN.
func NewPortPool(ports []uint16, track bool) *PortPool {
	ps := slices.Clone(ports)
	slices.Sort(ps)
	ps = slices.Compact(ps)
	return &PortPool{ports: ps, st: make([]portState, len(ps)), track: track}
}

// Len returns the number of ports in the pool.
func (pp *PortPool) Len() int { return len(pp.ports) }

// Reused returns how often a port was taken while it cooled.
func (pp *PortPool) Reused() uint64 { return pp.reused.Load() }

// Exhausted returns how often Take found no port.
func (pp *PortPool) Exhausted() uint64 { return pp.exhausted.Load() }

// Take implements PortAllocator.
func (pp *PortPool) Take(now time.Time, tsval uint32, timestamps bool) (uint16, bool) {
	n := len(pp.ports)
	if n == 0 {
		pp.exhausted.Add(1)
		return 0, false
	}
	if !pp.track {
		i := pp.next
		pp.next = (i + 1) % n
		return pp.ports[i], true
	}
	// A free port in turn; else the cooling port closed longest ago that
	// may be reused.
	best := -1
	for k := range n {
		i := (pp.next + k) % n
		s := &pp.st[i]
		if s.busy {
			continue
		}
		if !now.Before(s.coolTill) {
			pp.next = (i + 1) % n
			s.busy = true
			return pp.ports[i], true
		}
		// Into a TIME_WAIT only with a newer TSval (RFC 6191): a SYN
		// without timestamps would meet the peer's TIME_WAIT's ACK.
		if timestamps && s.ts && !now.Before(s.reuseAt) && int32(tsval-s.tsval) > 0 &&
			(best < 0 || s.reuseAt.Before(pp.st[best].reuseAt)) {
			best = i
		}
	}
	if best < 0 {
		pp.exhausted.Add(1)
		return 0, false
	}
	pp.reused.Add(1)
	pp.st[best].busy = true
	return pp.ports[best], true
}

// TakePort takes port for a SYN as Take would take it in its turn: if
// it is one of the pool's, not busy, and not cooling unless it may be
// reused. A Client's ProbeOptions.SourcePort takes its port this way.
func (pp *PortPool) TakePort(port uint16, now time.Time, tsval uint32, timestamps bool) bool {
	i, ok := slices.BinarySearch(pp.ports, port)
	if !ok {
		pp.exhausted.Add(1)
		return false
	}
	if !pp.track {
		return true
	}
	s := &pp.st[i]
	switch {
	case s.busy:
		return false
	case !now.Before(s.coolTill):
	case timestamps && s.ts && !now.Before(s.reuseAt) && int32(tsval-s.tsval) > 0:
		pp.reused.Add(1)
	default:
		return false
	}
	s.busy = true
	return true
}

// Release implements PortAllocator.
func (pp *PortPool) Release(port uint16, end PortEnd) {
	i, ok := slices.BinarySearch(pp.ports, port)
	if !ok {
		return
	}
	s := &pp.st[i]
	s.busy = false
	if !pp.track || !end.TimeWait {
		return // what cools from before keeps cooling
	}
	if !end.At.Before(s.coolTill) {
		s.ts = true // nothing cools from before
	}
	s.ts = s.ts && end.Timestamps
	s.tsval = end.TSval
	s.coolTill = later(s.coolTill, end.At.Add(timeWaitLinger))
	s.reuseAt = later(s.reuseAt, end.At.Add(max(reuseQuiet, minRTO+reuseRTTs*end.RTT)))
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// releasePort tells the allocator that probe e's connection has ended
// (ModeFIN), closed with pattern pat; timeWait says whether we linger in
// TIME_WAIT.
func (p *Prober) releasePort(e *pending, pat ClosePattern, timeWait bool) {
	now := p.now()
	end := PortEnd{
		At:       now,
		TimeWait: timeWait || pat == ClosePeerFirst || pat == CloseSimultaneous,
		TSval:    p.tsval(now),
	}
	if c := e.c; c != nil {
		end.Timestamps = c.ts
		if !c.handshake.u.IsZero() {
			end.RTT = c.handshake.u.Sub(e.sent)
		}
	}
	p.ports.Release(e.sport, end)
}

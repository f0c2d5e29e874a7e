package probe

import (
	"time"

	"github.com/synprobe/synprobe/rawsock/wire"
)

// DefaultObserve is how long ModeWithhold watches for the SYN-ACK's
// retransmissions by default: Linux resends it at about 1, 3 and 7 s
// after the first (tcp_synack_retries, ../shared/LINUX.md), and gaps
// run up to 15% long.
const DefaultObserve = 8500 * time.Millisecond

// hold starts ModeWithhold's watch of probe i on its first SYN-ACK: no
// ACK goes out (the RST guard keeps the kernel's off the wire), and the
// server, holding a half-open connection, sends its SYN-ACK again on its
// own schedule until Observe has passed.
func (p *Prober) hold(i int, in *inbound) {
	e := &p.tab.e[i]
	c := e.c
	c.irs = in.pkt.Seq
	c.synack = *in
	e.state = stateHeld
	e.deadline = in.user.Add(e.job.observe)
	p.arm(i, e.deadline)
}

// heldSegment takes a segment on a held connection: the same SYN-ACK
// again is a retransmission; a RST ends the watch (the server gave up,
// or its listener went away). Anything else is not the server's
// SYN-RECEIVED speaking and is ignored.
func (p *Prober) heldSegment(i int, in *inbound) {
	e := &p.tab.e[i]
	c := e.c
	pkt := &in.pkt
	switch {
	case pkt.Flags&wire.FlagRst != 0:
		if pkt.Seq == c.irs+1 {
			c.recordIn(e, in, "")
			p.endHold(i, false)
		}
	case pkt.Flags&(wire.FlagSyn|wire.FlagAck) == wire.FlagSyn|wire.FlagAck && pkt.Seq == c.irs && pkt.Ack == e.isn+1:
		c.recordIn(e, in, noteSYNACKRetrax)
		at, _ := p.since(rxStamp(&c.synack), rxStamp(in), e.t().Addr.Is6())
		if len(c.synRetrans) < maxSynRetrans {
			c.synRetrans = append(c.synRetrans, at)
		}
	}
}

// maxSynRetrans bounds what one held connection records: Linux resends
// at most tcp_synack_retries (255) times.
const maxSynRetrans = 256

// endHold resets held probe i's half-open connection and reports it: open,
// with the retransmissions seen. interrupted: the run was cancelled
// before Observe ended.
func (p *Prober) endHold(i int, interrupted bool) {
	e := &p.tab.e[i]
	p.resetSyn(e, "")
	ev := *e
	r := p.begin(&ev)
	r.State, r.Reason, r.Interrupted = StateOpen, ReasonSYNACK, interrupted
	p.fillReply(r, &ev, &ev.c.synack)
	r.SynAckRetrans = ev.c.synRetrans
	p.finishTrace(r, &ev)
	p.freePort(e.sport) // the server's request is gone with our RST
	p.drop(i)
	p.emit(ev.job, r)
}

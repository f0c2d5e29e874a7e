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
	pkt := &in.pkt
	ours := ourOptions(e)
	c.irs = pkt.Seq
	c.synack = *in
	// What a late ACK needs: the timestamps it must carry.
	c.ts = ours != nil && ours.Timestamps && pkt.Options.Timestamps
	c.tsRecent = pkt.Options.TSVal
	e.state = stateHeld
	e.deadline = in.user.Add(e.job.observe)
	p.arm(i, e.deadline)
}

// heldSegment takes a segment on a held connection: the same SYN-ACK
// again is a retransmission; a RST ends the watch (the server gave up,
// or its listener went away). After a late ACK, the SYN-ACK again says
// the ACK was dropped, and a RST at once that it was refused. Anything
// else is not the server's SYN-RECEIVED speaking and is ignored.
func (p *Prober) heldSegment(i int, in *inbound) {
	e := &p.tab.e[i]
	c := e.c
	pkt := &in.pkt
	switch {
	case pkt.Flags&wire.FlagRst != 0:
		if pkt.Seq != c.irs+1 {
			return
		}
		c.recordIn(e, in, "")
		if e.state == stateLateACK {
			p.endLateACK(i, AckReset)
			return
		}
		p.endHold(i, false)
	case e.state == stateLateACK && pkt.Flags&(wire.FlagSyn|wire.FlagAck) == wire.FlagAck && pkt.Seq == c.irs+1 &&
		(pkt.PayloadLen > 0 || pkt.Flags&wire.FlagFin != 0):
		// Data or a FIN from the server: its application has the
		// connection.
		c.recordIn(e, in, "")
		p.endLateACK(i, AckAccepted)
	case pkt.Flags&(wire.FlagSyn|wire.FlagAck) == wire.FlagSyn|wire.FlagAck && pkt.Seq == c.irs && pkt.Ack == e.isn+1:
		c.recordIn(e, in, noteSYNACKRetrax)
		at, _ := p.since(rxStamp(&c.synack), rxStamp(in), e.t().Addr.Is6())
		if len(c.synRetrans) < maxSynRetrans {
			c.synRetrans = append(c.synRetrans, at)
		}
		if e.state == stateLateACK {
			p.endLateACK(i, AckDropped)
		}
	}
}

// lateACK sends held probe i's third ACK at the end of its watch, with
// the timestamps the SYN-ACK agreed on, and watches what follows until
// the server's next SYN-ACK is due: a dropped ACK shows only as that
// SYN-ACK. It is due after twice the last gap (the server backs off, RFC
// 6298), plus Linux's timer slack (15%), from the first SYN-ACK; the
// watch lasts at least LateACK.
//
// No ACK is sent when the schedule cannot say when the next SYN-ACK is
// due (none came again: a cookie, or tcp_synack_retries=0), nor when one
// was due before the watch ended and did not come: the server may have
// given up its request, and would answer the ACK with the very RST that
// a full queue's tcp_abort_on_overflow sends.
func (p *Prober) lateACK(i int, now time.Time) bool {
	e := &p.tab.e[i]
	c := e.c
	n := len(c.synRetrans)
	if n == 0 {
		return false
	}
	last, gap := c.synRetrans[n-1], c.synRetrans[n-1]
	if n > 1 {
		gap -= c.synRetrans[n-2]
	}
	due := last + 2*gap + 2*gap*15/100 + 100*time.Millisecond
	elapsed := now.Sub(c.synack.user)
	if due <= elapsed || due > maxLateACK {
		return false
	}
	c.us, c.peer = Established, SynRcvd
	if _, err := p.sendSeg(e, wire.FlagAck, e.isn+1, c.irs+1, nil, ""); err != nil {
		return false
	}
	e.state = stateLateACK
	e.deadline = now.Add(max(due-elapsed, e.job.lateACK))
	p.arm(i, e.deadline)
	return true
}

// maxLateACK bounds how far ahead a late ACK's watch may look.
const maxLateACK = 2 * time.Minute

// endLateACK ends held probe i after its late ACK: a connection the
// server took or ignored (AckSilent) or still holds half-open (AckDropped) is reset
// at our ISN+1, which both take; a RST needs no answer.
func (p *Prober) endLateACK(i int, out AckOutcome) {
	e := &p.tab.e[i]
	if out != AckReset {
		p.resetSyn(e, "")
	}
	e.c.afterACK = out
	p.report(i, false)
}

// maxSynRetrans bounds what one held connection records: Linux resends
// at most tcp_synack_retries (255) times.
const maxSynRetrans = 256

// endHold ends held probe i's watch: with a late ACK to send (and a
// schedule that allows one), that goes out; else its half-open connection is reset and reported: open, with
// the retransmissions seen. interrupted: the run was cancelled before
// the watch ended (nothing more is sent then but the RST).
func (p *Prober) endHold(i int, interrupted bool) {
	e := &p.tab.e[i]
	if !interrupted && e.state == stateHeld && e.job.lateACK > 0 && p.lateACK(i, p.now()) {
		return
	}
	p.resetSyn(e, "")
	p.report(i, interrupted)
}

// report delivers held probe i's result and frees its entry.
func (p *Prober) report(i int, interrupted bool) {
	e := &p.tab.e[i]
	ev := *e
	r := p.begin(&ev)
	r.State, r.Reason, r.Interrupted = StateOpen, ReasonSYNACK, interrupted
	p.fillReply(r, &ev, &ev.c.synack)
	r.SynAckRetrans = ev.c.synRetrans
	r.AfterACK = ev.c.afterACK
	p.finishTrace(r, &ev)
	p.freePort(e.sport) // the server's request is gone with our RST
	p.drop(i)
	p.emit(ev.job, r)
}

package probe

import (
	"encoding/binary"
	"time"

	"github.com/synprobe/synprobe/rawsock"
)

// Probe states past SYN_SENT, for ModeFIN. The TCP state names of both
// ends, for traces, are kept separately in tcb.us and tcb.peer.
const (
	stateEstablished pstate = iota + stateSynSent + 1 // holding; data may be in flight
	stateFinWait1                                     // our FIN sent, not acknowledged
	stateFinWait2                                     // our FIN acknowledged, waiting for the peer's
	stateClosing                                      // FINs crossed: the peer's arrived before it acknowledged ours
	stateLastAck                                      // the peer closed first; our FIN sent
	stateTimeWait                                     // over: re-ACK retransmitted FINs until the run ends
)

const (
	initialRTO     = 200 * time.Millisecond // Linux's minimum RTO
	maxFINRetries  = 4
	timeWaitLinger = 60 * time.Second
)

// tcb is the connection block of a probe: the TCP state of the exchange
// after the SYN-ACK (ModeFIN), and the trace of any probe when tracing.
type tcb struct {
	tracing  bool
	us, peer TCPState
	trace    []traceRec

	irs            uint32 // the peer's ISN
	rcvNxt         uint32 // next byte expected from the peer
	sndUna, sndNxt uint32 // oldest unacknowledged and next byte of ours
	peerWnd        uint32 // the peer's window, scaled
	peerWS, ourWS  int    // window scale shifts; peerWS -1 when not negotiated
	peerMSS        int
	ts             bool   // timestamps negotiated
	tsRecent       uint32 // the peer's latest TSval, echoed in our TSecr

	synack    inbound // the SYN-ACK, for the result
	handshake stamp   // its arrival: the end of the handshake

	data                  []byte // what to send after the handshake
	dataEnd               uint32 // sequence number after it
	dataSent, dataAckAt   stamp
	dataAcked             bool
	holdUntil, rtoAt      time.Time
	rto                   time.Duration
	finSent, finAcked     bool
	finSeq                uint32
	finAt, finAckAt       stamp
	finDeadline           time.Time
	finRetries            int
	firstFINAckHadFIN     bool
	peerFIN               bool
	peerFINAt             stamp
	peerBytes, afterFIN   int
	peerRetrans, outOrder int
}

type traceRec struct {
	at stamp
	ev TraceEvent
}

func (p *Prober) newTCB() *tcb {
	var c *tcb
	if n := len(p.free); n > 0 {
		c = p.free[n-1]
		p.free = p.free[:n-1]
		tr := c.trace[:0]
		*c = tcb{trace: tr}
	} else {
		c = &tcb{}
	}
	c.tracing = p.cfg.Trace
	c.peerWS = -1
	return c
}

// record adds a segment to the trace with both ends' current states.
func (c *tcb) record(at stamp, out bool, flags rawsock.TCPFlags, seq, ack uint32, n int, win uint16, note string) {
	if !c.tracing {
		return
	}
	c.trace = append(c.trace, traceRec{at: at, ev: TraceEvent{
		Out: out, Flags: flags, Seq: seq, Ack: ack, Len: n, Win: win, Us: c.us, Peer: c.peer, Note: note,
	}})
}

func (c *tcb) recordIn(e *pending, in *inbound, note string) {
	pkt := &in.pkt
	c.record(rxStamp(in), false, pkt.Flags, pkt.Seq, pkt.Ack, pkt.PayloadLen, pkt.Window, note)
}

// seqLT reports a < b in sequence space.
func seqLT(a, b uint32) bool { return int32(a-b) < 0 }

// sendSeg sends a segment of probe e's connection and returns when it left.
func (p *Prober) sendSeg(e *pending, flags rawsock.TCPFlags, seq, ack uint32, payload []byte, note string) stamp {
	t := &p.cfg.Targets[e.target]
	now := p.cfg.Now()
	c := e.c
	var ob [12]byte
	on := 0
	var win uint16
	if flags&rawsock.FlagRst == 0 {
		win = p.cfg.Window
		if c != nil && c.peerWS >= 0 {
			win = uint16(uint32(p.cfg.Window) >> c.ourWS)
		}
		if c != nil && c.ts {
			ob[0], ob[1], ob[2], ob[3] = 1, 1, 8, 10
			binary.BigEndian.PutUint32(ob[4:], p.tsval(now))
			binary.BigEndian.PutUint32(ob[8:], c.tsRecent)
			on = 12
		}
	}
	id := p.nextID
	p.nextID++
	seg := rawsock.Segment{
		Src: t.Src, Dst: t.Addr,
		TTL: p.cfg.TTL, TOS: p.cfg.TOS,
		ID: uint16(id), DF: true,
		SrcPort: e.sport, DstPort: t.Port,
		Seq: seq, Ack: ack,
		Flags:   flags,
		Window:  win,
		Options: ob[:on],
		Payload: payload,
	}
	st := stamp{u: now, id: id, tx: true}
	n, err := seg.Build(p.pkt[:])
	if err != nil {
		return st
	}
	// A lost control segment is recovered like any loss on the wire: the
	// peer retransmits, or our timers do.
	_ = p.conn.Send(p.pkt[:n], id)
	p.spinUntil = now.Add(spinAfterSend)
	if c != nil {
		c.record(st, true, flags, seq, ack, len(payload), win, note)
	}
	return st
}

func (p *Prober) sendACK(e *pending, note string) {
	p.sendSeg(e, rawsock.FlagAck, e.c.sndNxt, e.c.rcvNxt, nil, note)
}

// established sets up probe i's connection on its SYN-ACK (ModeFIN): ACK,
// data, then hold or FIN.
func (p *Prober) established(i int, in *inbound) {
	e := &p.tab.e[i]
	c := e.c
	pkt := &in.pkt
	t := &p.cfg.Targets[e.target]
	ours := p.cfg.Options
	if t.Addr.Is6() && p.cfg.Options6 != nil {
		ours = p.cfg.Options6
	}
	c.synack = *in
	c.handshake = rxStamp(in)
	c.irs = pkt.Seq
	c.rcvNxt = pkt.Seq + 1
	c.sndUna, c.sndNxt = e.isn+1, e.isn+1
	c.peerMSS = int(pkt.Options.MSS)
	if c.peerMSS == 0 {
		c.peerMSS = 536
	}
	if ours != nil && ours.WScale >= 0 && pkt.Options.WScale >= 0 {
		c.peerWS, c.ourWS = min(pkt.Options.WScale, 14), min(ours.WScale, 14)
	}
	c.peerWnd = uint32(pkt.Window) // never scaled in a SYN-ACK
	c.ts = ours != nil && ours.Timestamps && pkt.Options.Timestamps
	c.tsRecent = pkt.Options.TSVal
	c.rto = initialRTO

	e.state = stateEstablished
	c.us, c.peer = Established, Established
	p.sendACK(e, "")
	if len(p.cfg.Data) > 0 {
		c.data = p.cfg.Data
		c.dataEnd = e.isn + 1 + uint32(len(c.data))
		p.sendData(e, false)
	}
	if p.cfg.Hold > 0 {
		c.holdUntil = p.cfg.Now().Add(p.cfg.Hold)
		p.rearm(i)
		return
	}
	p.sendFIN(i)
}

// sendData sends as much of the data after sndNxt as the peer's window
// allows, in segments of at most its MSS. resend restarts from sndUna.
func (p *Prober) sendData(e *pending, resend bool) {
	c := e.c
	base := e.isn + 1
	if resend {
		c.sndNxt = c.sndUna
	}
	for seqLT(c.sndNxt, c.dataEnd) {
		inFlight := c.sndNxt - c.sndUna
		if inFlight >= c.peerWnd {
			return // the peer's window is full: its next ACK opens it
		}
		off := c.sndNxt - base
		n := min(uint32(c.peerMSS), c.dataEnd-c.sndNxt, c.peerWnd-inFlight, 1400)
		note := ""
		if resend {
			note = "retransmission"
		}
		st := p.sendSeg(e, rawsock.FlagPsh|rawsock.FlagAck, c.sndNxt, c.rcvNxt, c.data[off:off+n], note)
		if off == 0 && !resend {
			c.dataSent = st
		}
		c.sndNxt += n
		if c.rtoAt.IsZero() {
			c.rtoAt = st.u.Add(c.rto)
		}
	}
}

// sendFIN closes our side of probe i's connection.
func (p *Prober) sendFIN(i int) {
	e := &p.tab.e[i]
	c := e.c
	now := p.cfg.Now()
	c.holdUntil = time.Time{}
	if c.peerFIN {
		e.state = stateLastAck
		c.us, c.peer = LastAck, TimeWait
	} else {
		e.state = stateFinWait1
		c.us, c.peer = FinWait1, CloseWait
	}
	c.finSeq = c.sndNxt
	c.sndNxt++
	c.finSent = true
	c.finAt = p.sendSeg(e, rawsock.FlagFin|rawsock.FlagAck, c.finSeq, c.rcvNxt, nil, "")
	c.finDeadline = now.Add(p.cfg.CloseTimeout)
	c.rtoAt = now.Add(c.rto)
	p.rearm(i)
}

// rearm sets probe i's timer to its earliest pending deadline.
func (p *Prober) rearm(i int) {
	e := &p.tab.e[i]
	c := e.c
	var at time.Time
	earliest := func(t time.Time) {
		if !t.IsZero() && (at.IsZero() || t.Before(at)) {
			at = t
		}
	}
	switch e.state {
	case stateEstablished:
		earliest(c.holdUntil)
		if seqLT(c.sndUna, c.dataEnd) {
			earliest(c.rtoAt)
		}
	case stateFinWait1, stateClosing, stateLastAck:
		earliest(c.rtoAt)
		earliest(c.finDeadline)
	case stateFinWait2:
		earliest(c.finDeadline)
	}
	if !at.IsZero() {
		p.arm(i, at)
	}
}

// segment advances probe i's connection on an inbound segment.
func (p *Prober) segment(i int, in *inbound) {
	e := &p.tab.e[i]
	c := e.c
	pkt := &in.pkt
	if c == nil || e.state < stateEstablished {
		return
	}
	fin := pkt.Flags&rawsock.FlagFin != 0
	if e.state == stateTimeWait {
		// The exchange is over, but a FIN again means our last ACK was
		// lost: answer it so the peer can leave LAST_ACK.
		if fin && pkt.Flags&rawsock.FlagRst == 0 {
			p.stats[e.target].LateFINs++
			p.sendACK(e, "")
		}
		return
	}
	switch {
	case pkt.Flags&rawsock.FlagSyn != 0:
		// The SYN-ACK again: our ACK was lost.
		if pkt.Seq == c.irs {
			c.peerRetrans++
			c.recordIn(e, in, "retransmission")
			p.sendACK(e, "")
		}
		return
	case pkt.Flags&rawsock.FlagRst != 0:
		if d := pkt.Seq - c.rcvNxt; d > 1<<20 {
			return // outside any window: not for this connection
		}
		c.us, c.peer = Closed, Closed
		c.recordIn(e, in, "")
		p.finishConn(i, CloseRST, false)
		return
	case pkt.Flags&rawsock.FlagAck == 0:
		return
	}

	// The acknowledgement.
	if seqLT(c.sndUna, pkt.Ack) && !seqLT(c.sndNxt, pkt.Ack) {
		c.sndUna = pkt.Ack
		c.rtoAt = time.Time{}
		if c.data != nil && !c.dataAcked && !seqLT(c.sndUna, c.dataEnd) {
			c.dataAcked, c.dataAckAt = true, rxStamp(in)
		}
		if c.finSent && !c.finAcked && pkt.Ack == c.finSeq+1 {
			c.finAcked, c.finAckAt = true, rxStamp(in)
			c.firstFINAckHadFIN = fin
		}
	}
	c.peerWnd = uint32(pkt.Window)
	if c.peerWS >= 0 {
		c.peerWnd <<= c.peerWS
	}
	if pkt.Options.Timestamps {
		c.tsRecent = pkt.Options.TSVal
	}

	// The payload and FIN, accepted in order only.
	segLen := pkt.PayloadLen
	if fin {
		segLen++
	}
	newFIN := false
	if segLen > 0 {
		ahead := int32(pkt.Seq - c.rcvNxt)
		switch {
		case ahead > 0:
			// A gap: something before it was lost or is late. Ask for
			// it again with a duplicate ACK; drop this segment.
			c.outOrder++
			c.recordIn(e, in, "out of order")
			p.sendACK(e, "duplicate ack")
			return
		case int(-ahead) >= segLen:
			c.peerRetrans++
			c.recordIn(e, in, "retransmission")
			p.sendACK(e, "")
			return
		}
		newBytes := max(pkt.PayloadLen-int(-ahead), 0)
		c.rcvNxt += uint32(newBytes)
		c.peerBytes += newBytes
		if c.finSent {
			c.afterFIN += newBytes
		}
		if fin {
			c.rcvNxt++
			c.peerFIN, c.peerFINAt = true, rxStamp(in)
			newFIN = true
		}
	}

	// Both ends' states after this segment.
	next := e.state
	switch e.state {
	case stateEstablished:
		if newFIN {
			c.us, c.peer = CloseWait, FinWait1
		}
	case stateFinWait1:
		switch {
		case c.finAcked && c.peerFIN:
			next, c.us, c.peer = stateTimeWait, TimeWait, LastAck
		case c.finAcked:
			next, c.us, c.peer = stateFinWait2, FinWait2, CloseWait
		case newFIN:
			next, c.us, c.peer = stateClosing, Closing, Closing
		}
	case stateFinWait2:
		if newFIN {
			next, c.us, c.peer = stateTimeWait, TimeWait, LastAck
		}
	case stateClosing:
		if c.finAcked {
			next, c.us, c.peer = stateTimeWait, TimeWait, TimeWait
		}
	case stateLastAck:
		if c.finAcked {
			next, c.us, c.peer = stateFree, Closed, TimeWait
		}
	}
	c.recordIn(e, in, "")
	if segLen > 0 {
		if newFIN && c.peer == LastAck {
			c.peer = Closed // once our ACK of its FIN arrives
		} else if newFIN && c.us == CloseWait {
			c.peer = FinWait2
		}
		p.sendACK(e, "")
	}

	switch {
	case e.state == stateEstablished && newFIN:
		p.sendFIN(i) // the peer closed first: close ours at once
	case e.state == stateEstablished:
		if c.data != nil {
			p.sendData(e, false)
		}
		p.rearm(i)
	case next == stateTimeWait && e.state == stateFinWait1:
		pat := Close4Way
		if c.firstFINAckHadFIN {
			pat = Close3Way
		}
		p.finishConn(i, pat, true)
	case next == stateTimeWait && e.state == stateFinWait2:
		p.finishConn(i, Close4Way, true)
	case next == stateTimeWait && e.state == stateClosing:
		p.finishConn(i, CloseSimultaneous, true)
	case next == stateFree:
		p.finishConn(i, ClosePeerFirst, false)
	case next != e.state:
		e.state = next
		p.rearm(i)
	}
}

// connTimer handles the deadline of probe i past SYN_SENT.
func (p *Prober) connTimer(i int, now time.Time) {
	e := &p.tab.e[i]
	c := e.c
	switch e.state {
	case stateEstablished:
		if !c.holdUntil.IsZero() && !now.Before(c.holdUntil) {
			p.sendFIN(i)
			return
		}
		if !c.rtoAt.IsZero() && !now.Before(c.rtoAt) {
			c.rto *= 2
			c.rtoAt = time.Time{}
			p.sendData(e, true)
		}
		p.rearm(i)
	case stateFinWait1, stateClosing, stateLastAck:
		if !now.Before(c.finDeadline) || c.finRetries >= maxFINRetries {
			pat := CloseNoACK
			switch e.state {
			case stateLastAck:
				pat = ClosePeerFirst
			case stateClosing:
				pat = CloseSimultaneous
			}
			p.reset(e)
			p.finishConn(i, pat, false)
			return
		}
		if !c.rtoAt.IsZero() && !now.Before(c.rtoAt) {
			// Our FIN (and any data before it) went unacknowledged.
			c.finRetries++
			c.rto *= 2
			if c.data != nil && seqLT(c.sndUna, c.dataEnd) {
				fin := c.sndNxt
				p.sendData(e, true)
				c.sndNxt = fin
			}
			p.sendSeg(e, rawsock.FlagFin|rawsock.FlagAck, c.finSeq, c.rcvNxt, nil, "retransmission")
			c.rtoAt = now.Add(c.rto)
		}
		p.rearm(i)
	case stateFinWait2:
		// The peer acknowledged our FIN but never sent its own.
		p.reset(e)
		p.finishConn(i, CloseNoFIN, false)
	}
}

// reset sends RST so that the peer keeps nothing of the connection.
func (p *Prober) reset(e *pending) {
	c := e.c
	c.us, c.peer = Closed, Closed
	p.sendSeg(e, rawsock.FlagRst|rawsock.FlagAck, c.sndNxt, c.rcvNxt, nil, "")
}

// finishConn reports probe i's connection, closed with pattern pat, and
// either keeps it in TIME_WAIT for the rest of the run or forgets it.
func (p *Prober) finishConn(i int, pat ClosePattern, timeWait bool) {
	e := &p.tab.e[i]
	p.releasePort(e, pat, timeWait)
	c := e.c
	v6 := p.cfg.Targets[e.target].Addr.Is6()
	r := p.begin(e)
	r.State, r.Reason = StateOpen, ReasonSYNACK
	p.fillReply(r, e, &c.synack)
	cr := &p.close
	*cr = CloseReport{
		Pattern:         pat,
		PeerDataBytes:   c.afterFIN,
		PeerBytes:       c.peerBytes,
		PeerRetransmits: c.peerRetrans,
		FinRetransmits:  c.finRetries,
		Kernel:          true,
	}
	var k bool
	if c.finAcked {
		cr.AckTime, k = p.since(c.finAt, c.finAckAt, v6)
		cr.HasAck, cr.Kernel = true, cr.Kernel && k
	}
	if c.peerFIN {
		from := c.finAt
		if pat == ClosePeerFirst || !c.finSent {
			from = c.handshake
		}
		cr.FinTime, k = p.since(from, c.peerFINAt, v6)
		cr.HasFin, cr.Kernel = true, cr.Kernel && k
	}
	if c.dataAcked {
		cr.DataAckTime, k = p.since(c.dataSent, c.dataAckAt, v6)
		cr.HasDataAck, cr.Kernel = true, cr.Kernel && k
	}
	r.Close = cr
	p.finishTrace(r, e)
	if timeWait {
		e.state = stateTimeWait
		p.live--
		p.arm(i, p.cfg.Now().Add(timeWaitLinger))
	} else {
		p.drop(i)
	}
	p.emit(r)
}

// finishTrace puts probe e's trace, with times since its SYN and sequence
// numbers relative to the ISNs, into r.
func (p *Prober) finishTrace(r *Result, e *pending) {
	if !p.cfg.Trace || e.c == nil {
		return
	}
	v6 := p.cfg.Targets[e.target].Addr.Is6()
	syn := stamp{u: e.sent, id: e.id, tx: true}
	p.trace = p.trace[:0]
	for _, rec := range e.c.trace {
		ev := rec.ev
		ev.At, _ = p.since(syn, rec.at, v6)
		ours, theirs := e.isn, e.c.irs
		if !ev.Out {
			ours, theirs = theirs, ours
		}
		ev.Seq -= ours
		if ev.Flags&rawsock.FlagAck != 0 {
			ev.Ack -= theirs
		} else {
			ev.Ack = 0
		}
		p.trace = append(p.trace, ev)
	}
	r.Trace = p.trace
}

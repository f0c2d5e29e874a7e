package probe

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"syscall"
	"time"

	"github.com/synprobe/synprobe/rawsock/wire"
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
	stateHeld                                         // ModeWithhold: SYN-ACK seen, our ACK withheld
	stateLateACK                                      // ModeWithhold with LateACK: our ACK sent at the watch's end
)

const (
	minRTO        = 200 * time.Millisecond // Linux's TCP_RTO_MIN
	unmeasuredRTO = time.Second            // RFC 6298's initial RTO, while no RTT is known
	maxRTO        = 60 * time.Second
	maxFINRetries = 4
	// maxFINDefers bounds how often our FIN waits for packets already
	// queued to be read first (a peer that never stops sending).
	maxFINDefers = 8
	// maxAliveProbes bounds the probes that ask a peer in FIN_WAIT_2,
	// after the close timeout, whether it still holds the connection
	// (see aliveProbe).
	maxAliveProbes = 3
	maxDataRetries = 8 // RTOs in a row without progress before we give up on our data
	timeWaitLinger = 60 * time.Second

	// minSndMSS is Linux's floor for the peer's MSS (net.ipv4.tcp_min_snd_mss,
	// 48: room for 40 bytes of options and 8 of data); defaultMSS4 and
	// defaultMSS6 are what Linux assumes when the SYN-ACK has no MSS option.
	minSndMSS   = 48
	defaultMSS4 = 536
	defaultMSS6 = 1220
	initialCwnd = 10 // segments (RFC 6928)

	// challengeInterval spaces our challenge ACKs (RFC 5961) on one
	// connection, as Linux's net.ipv4.tcp_invalid_ratelimit does.
	challengeInterval = 500 * time.Millisecond

	// promptReply: a peer whose FIN acknowledges ours but left later than
	// this after ours reached it may have sent a separate ACK first that
	// was lost: Linux acknowledges a FIN within a jiffy (1 to 4 ms) when
	// it has received no data, and the application may close just after
	// (see judge).
	promptReply = time.Millisecond
	// reorderWindow: a data segment that arrives this soon after the
	// peer's FIN, when timestamps cannot tell, was reordered rather than
	// sent again (a retransmission waits at least an RTO).
	reorderWindow = 10 * time.Millisecond

	tsOptLen = 12 // NOP, NOP, timestamps
)

// Trace notes. Constant strings: tracing allocates the trace, not its notes.
const (
	noteRetransmission = "retransmission"
	noteOutOfOrder     = "out of order: what comes before it was lost or is late"
	noteDupACK         = "duplicate ack"
	noteSeqAhead       = "seq ahead of what we received: the peer sent data or its FIN that was lost or is late"
	noteFINRetransLost = "retransmission: its first FIN was lost (a segment sent after it came first)"
	noteWindowProbe    = "window probe: the peer's window is zero"
	noteFastRetrans    = "fast retransmission (3 duplicate acks)"
	noteChallenge      = "challenge ack (RFC 5961)"
	noteChallengeLimit = "challenge ack rate-limited"
	noteSendFailed     = "send failed"
	noteAbort          = "abort"
	noteNoACKLossy     = "no ACK of our FIN arrived, but segments were lost on this connection before: the peer may have acknowledged it (no-fin)"
	noteNoACK          = "no ACK of our FIN arrived through its retransmissions: they were lost, or every ACK of them was (then the peer acknowledged it and never closed: no-fin)"
	noteOurFINLost     = "lost, or the answer to it was"
	noteAliveProbe     = "probe: does the peer still hold the connection? (an old sequence number draws a duplicate ACK from a live one, a RST from a port without it)"
	noteAlive          = "it still holds the connection (CLOSE_WAIT): it answered our probe after the close timeout"
	noteAliveAhead     = "it still holds the connection: it answered our probe after the close timeout, from a sequence number past what we received (it sent data or its FIN that never arrived: 4-way)"
	noteGone           = "its connection was gone after it acknowledged our FIN: a RST answered our probe after the close timeout (its own RST was lost, or it dropped the connection without one)"
	noteNoAnswer       = "it answered none of our probes after the close timeout: it may have reset the connection and its RST was lost (rst), or the probes or their answers were lost"

	noteBadSYN       = "ignored: SYN in a synchronized state (RFC 5961: challenge ack)"
	noteRSTInWindow  = "ignored: RST in the window but not at rcv.nxt (RFC 5961: challenge ack)"
	noteRSTOutside   = "ignored: RST outside the window"
	noteNoACKFlag    = "ignored: no ACK bit"
	noteAckUnsent    = "ignored: acknowledges data never sent (RFC 5961: challenge ack)"
	noteAckTooOld    = "ignored: acknowledges data before the window (RFC 5961: challenge ack)"
	noteOutOfWindow  = "ignored: outside the receive window"
	noteSYNACKRetrax = "retransmission: our ACK of its SYN-ACK was lost"
)

// finTx is one transmission of our FIN.
type finTx struct {
	at    stamp
	tsval uint32
	trace int // index of its trace record, -1 if none
}

// tcb is the connection block of a probe: the TCP state of the exchange
// after the SYN-ACK (ModeFIN), and the trace of any probe when tracing.
type tcb struct {
	tracing  bool
	s        *settings // the job's
	us, peer TCPState
	trace    []traceRec

	irs            uint32 // the peer's ISN
	rcvNxt         uint32 // next byte expected from the peer
	sndUna, sndNxt uint32 // oldest unacknowledged and next byte of ours
	sndMax         uint32 // one past the highest sequence number sent (sndNxt goes back on RTO)
	sndWL1, sndWL2 uint32 // seq and ack of the segment that last set the window (RFC 9293)
	peerWnd        uint32 // the peer's window, scaled
	maxPeerWnd     uint32
	peerWS, ourWS  int // window scale shifts; peerWS -1 when not negotiated
	peerMSS        int // as advertised, or Linux's default without the option
	mss            int // payload bytes per segment we send
	ts             bool
	tsRecent       uint32 // the peer's latest TSval, echoed in our TSecr
	lastTSval      uint32 // the TSval of the segment we sent last

	synack     inbound         // the SYN-ACK, for the result
	synRetrans []time.Duration // ModeWithhold: the SYN-ACK's retransmissions, after the first
	afterACK   AckOutcome      // ModeWithhold: what followed the late ACK
	handshake  stamp           // its arrival: the end of the handshake
	synRTT     time.Duration   // the SYN-ACK's RTT; 0 when it may be a retransmission's

	// RTT and retransmission timeout (RFC 6298), user-space clock.
	srtt, rttvar, minRTT time.Duration
	rto                  time.Duration // with backoff
	rttTiming            bool          // one segment timed at a time (Karn)
	rttSeq               uint32
	rttAt                time.Time
	rtoAt                time.Time

	// Our data, then our FIN.
	data                []byte
	dataEnd             uint32 // sequence number after the data: where our FIN goes
	dataSent, dataAckAt stamp
	dataAcked           bool
	cwnd                uint32
	dupAcks             int
	dataRetries         int // RTOs in a row without progress
	dataRetrans         int // data segments sent again
	persistAt           time.Time
	persistBackoff      int
	windowProbes        int
	holdUntil           time.Time
	finWanted           bool      // the hold is over: FIN once every byte is out
	dataDeadline        time.Time // give up on unsent data then
	sendErrors          int
	sendErr             error // the first
	lastChallenge       time.Time

	finSent, finAcked bool
	finSeq            uint32
	finTxs            [maxFINRetries + 1]finTx
	finRetries        int
	finAt, finAckAt   stamp
	finAckOf          stamp // the transmission of our FIN that the first ACK of it answers
	finDeadline       time.Time
	aliveProbes       int       // probes sent in FIN_WAIT_2 past the close timeout
	aliveAt           time.Time // when the last one is given up
	peerFirst         bool      // we had the peer's FIN when we sent ours
	finDefers         int       // times our FIN waited for queued packets
	finDeferAt        time.Time // when it goes, once they are read
	v6                bool

	// The peer's FIN and the evidence on the order of the close (judge).
	peerFIN        bool  // its FIN received in order
	ackedPeerFIN   bool  // and we have sent an ACK of it
	peerFINAt      stamp // when
	finKnown       bool  // a segment carrying its FIN was seen (in order or not)
	finInOrderAt   stamp // the arrival of the segment that brought rcv.nxt past its FIN
	peerFINSeq     uint32
	hiSet          bool
	hiPos          uint32 // the highest sequence position the peer was seen to have reached
	finSeen        bool   // a FIN segment has been judged
	firstFIN       int8   // the first FIN segment seen: 1 acknowledged ours (and was no retransmission), 0 unknown
	firstFINDly    time.Duration
	firstFINVaried bool   // the path's delay varied more than promptReply: firstFINDly is not to be trusted
	firstFINAt     stamp  // its arrival
	firstFINTS     uint32 // its TSval
	firstFINTSOK   bool
	finSegStart    uint32 // where the segment carrying it starts
	pureAckSet     bool
	pureAckMin     uint32 // lowest seq of a pure ACK that acknowledged our FIN
	firstPure      int8   // of the first such ACK: which of our FIN transmissions it answers, +1 (0 unknown)
	dataAckSet     bool
	dataAckMin     uint32 // lowest end of a first-transmission data segment that acknowledged our FIN
	notAckSet      bool
	notAckEnd      uint32 // highest end of a segment that did not acknowledge our FIN
	reportAt       time.Time
	reportTrace    int // trace index of the segment that decided, -1 if none

	peerBytes             int
	peerRetrans, outOrder int
	lossSeen              bool // something on this connection was lost or sent again
	lossBeforeFIN         bool // ... before our FIN

	// What arrived beyond a gap: sequence ranges only (nothing is
	// delivered, so no payload is kept), most recent first, for SACK
	// blocks (RFC 2018) and to move rcvNxt once the gap fills.
	sack bool // negotiated
	ooo  [maxOOO]oooRange
	nooo int
}

// maxOOO bounds the out-of-order ranges kept; SACK blocks fit 3 of them
// beside the timestamps option.
const maxOOO = 4

type oooRange struct {
	start, end uint32 // end includes the FIN
	fin        bool
	finAt      stamp
}

// Results of tcb.receive.
const (
	rcvNew = iota // new bytes in order
	rcvFIN        // and the peer's FIN with them
	rcvGap        // beyond a gap: kept as a range
	rcvOld        // nothing new: a retransmission
)

// receive takes a segment's sequence space [seq, seq+n) (n includes the
// FIN) into rcvNxt or the out-of-order ranges, counts the new in-order
// bytes and reports what it was.
func (c *tcb) receive(seq, n uint32, fin bool, at stamp) int {
	end := seq + n
	if !seqLT(c.rcvNxt, end) {
		return rcvOld
	}
	if seqLT(c.rcvNxt, seq) {
		for i := 0; i < c.nooo; i++ {
			if r := &c.ooo[i]; !seqLT(seq, r.start) && !seqLT(r.end, end) {
				return rcvOld // all of it held already
			}
		}
		c.addRange(seq, end, fin, at)
		return rcvGap
	}
	gotFIN := c.advance(end, fin, at)
	// Ranges the gap's filling reaches.
	for moved := true; moved; {
		moved = false
		for i := 0; i < c.nooo; i++ {
			r := c.ooo[i]
			if !seqLT(c.rcvNxt, r.start) {
				if seqLT(c.rcvNxt, r.end) {
					gotFIN = c.advance(r.end, r.fin, r.finAt) || gotFIN
				}
				copy(c.ooo[i:], c.ooo[i+1:c.nooo])
				c.nooo--
				moved = true
				break
			}
		}
	}
	if gotFIN {
		c.finInOrderAt = at // its FIN, or the segment that filled the gap before it
		return rcvFIN
	}
	return rcvNew
}

// advance moves rcvNxt to end, counting payload bytes; fin: end includes
// the peer's FIN. It reports whether the FIN was taken.
func (c *tcb) advance(end uint32, fin bool, at stamp) bool {
	if c.peerFIN {
		return false
	}
	n := end - c.rcvNxt
	if fin {
		n--
	}
	c.peerBytes += int(n)
	c.rcvNxt = end
	if fin {
		c.peerFIN, c.peerFINAt = true, at
	}
	return fin
}

// addRange keeps [start, end) as received beyond the gap, merged with the
// ranges it touches, first in the list (RFC 2018: the most recent block
// first). When the list is full the oldest range is forgotten.
func (c *tcb) addRange(start, end uint32, fin bool, at stamp) {
	r := oooRange{start: start, end: end, fin: fin, finAt: at}
	for i := 0; i < c.nooo; {
		o := c.ooo[i]
		if seqLT(o.end, r.start) || seqLT(r.end, o.start) {
			i++
			continue
		}
		if seqLT(o.start, r.start) {
			r.start = o.start
		}
		if seqLT(r.end, o.end) {
			r.end = o.end
		}
		if o.fin {
			r.fin, r.finAt = true, o.finAt
		}
		copy(c.ooo[i:], c.ooo[i+1:c.nooo])
		c.nooo--
	}
	if c.nooo == maxOOO {
		c.nooo--
	}
	copy(c.ooo[1:c.nooo+1], c.ooo[:c.nooo])
	c.ooo[0] = r
	c.nooo++
}

// sackBlocks writes NOP, NOP and a SACK option with as many ranges as fit
// in b and returns its length.
func (c *tcb) sackBlocks(b []byte) int {
	n := min(c.nooo, (len(b)-4)/8)
	if n <= 0 {
		return 0
	}
	b[0], b[1], b[2], b[3] = 1, 1, 5, byte(2+8*n)
	for i := range n {
		binary.BigEndian.PutUint32(b[4+8*i:], c.ooo[i].start)
		binary.BigEndian.PutUint32(b[8+8*i:], c.ooo[i].end)
	}
	return 4 + 8*n
}

type traceRec struct {
	at stamp
	ev TraceEvent
}

func (p *Prober) newTCB(s *settings) *tcb {
	var c *tcb
	if n := len(p.free); n > 0 {
		c = p.free[n-1]
		p.free = p.free[:n-1]
		tr, sr := c.trace[:0], c.synRetrans[:0]
		*c = tcb{trace: tr, synRetrans: sr}
	} else {
		c = &tcb{}
	}
	c.s = s
	c.tracing = s.trace
	c.peerWS = -1
	c.reportTrace = -1
	return c
}

// record adds a segment to the trace with both ends' current states and
// returns its index (-1 when not tracing).
func (c *tcb) record(at stamp, out bool, flags wire.TCPFlags, seq, ack uint32, n int, win uint16, note string) int {
	if !c.tracing {
		return -1
	}
	c.trace = append(c.trace, traceRec{at: at, ev: TraceEvent{
		Out: out, Flags: flags, Seq: seq, Ack: ack, Len: n, Win: win, Us: c.us, Peer: c.peer, Note: note,
	}})
	return len(c.trace) - 1
}

// recordIn records an inbound segment of an established connection, with
// the peer's state as inferred from everything known so far.
func (p *Prober) recordIn(e *pending, in *inbound, note string) int {
	p.updatePeer(e.c)
	return e.c.recordIn(e, in, note)
}

func (c *tcb) recordIn(e *pending, in *inbound, note string) int {
	pkt := &in.pkt
	return c.record(rxStamp(in), false, pkt.Flags, pkt.Seq, pkt.Ack, pkt.PayloadLen, pkt.Window, note)
}

// annotate sets the note of trace record i, if any.
func (c *tcb) annotate(i int, note string) {
	if i >= 0 && i < len(c.trace) {
		c.trace[i].ev.Note = note
	}
}

// seqLT reports a < b in sequence space.
func seqLT(a, b uint32) bool { return int32(a-b) < 0 }

// seqMax returns the later of a and b in sequence space.
func seqMax(a, b uint32) uint32 {
	if seqLT(a, b) {
		return b
	}
	return a
}

func isMsgSize(err error) bool { return errors.Is(err, syscall.EMSGSIZE) }

// sendSeg sends a segment of probe e's connection and returns when it
// left. A failed send is counted in the connection (Result.Close) and
// noted in the trace; the caller decides what follows.
func (p *Prober) sendSeg(e *pending, flags wire.TCPFlags, seq, ack uint32, payload []byte, note string) (stamp, error) {
	t := e.t()
	now := p.now()
	c := e.c
	var ob [wire.MaxOptionsSize]byte
	on := 0
	var win uint16
	tsval := p.tsval(now)
	if flags&wire.FlagRst == 0 {
		win = e.job.window
		if c != nil && c.peerWS >= 0 {
			win = uint16(uint32(e.job.window) >> c.ourWS)
		}
		if c != nil && c.ts {
			ob[0], ob[1], ob[2], ob[3] = 1, 1, 8, 10
			binary.BigEndian.PutUint32(ob[4:], tsval)
			binary.BigEndian.PutUint32(ob[8:], c.tsRecent)
			on = tsOptLen
		}
		if c != nil && c.sack && c.nooo > 0 && len(payload) == 0 {
			on += c.sackBlocks(ob[on:])
		}
	}
	id := p.newID()
	seg := wire.Segment{
		Src: t.Src, Dst: t.Addr,
		TTL: e.job.ttl, TOS: e.job.tos,
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
	if err == nil {
		err = p.send(p.pkt[:n], id)
	}
	p.spun(now)
	if c != nil {
		c.lastTSval = tsval
		if c.peerFIN && flags&wire.FlagAck != 0 && !seqLT(ack, c.peerFINSeq+1) {
			c.ackedPeerFIN = true
		}
		p.updatePeer(c)
		if err != nil {
			c.sendErrors++
			if c.sendErr == nil {
				c.sendErr = err
			}
			note = noteSendFailed
		}
		c.record(st, true, flags, seq, ack, len(payload), win, note)
	}
	return st, err
}

func (p *Prober) sendACK(e *pending, note string) {
	p.sendSeg(e, wire.FlagAck, e.c.sndNxt, e.c.rcvNxt, nil, note)
}

// challengeACK answers a segment RFC 5961 does not accept with an ACK of
// where we stand, at most one per challengeInterval.
func (p *Prober) challengeACK(e *pending, now time.Time) {
	c := e.c
	if !c.lastChallenge.IsZero() && now.Sub(c.lastChallenge) < challengeInterval {
		c.annotateLast(noteChallengeLimit)
		return
	}
	c.lastChallenge = now
	p.sendACK(e, noteChallenge)
}

// annotateLast adds why to the last trace record when it has no note yet.
func (c *tcb) annotateLast(note string) {
	if n := len(c.trace); n > 0 && c.trace[n-1].ev.Note == "" {
		c.trace[n-1].ev.Note = note
	}
}

// ourOptions returns the SYN options probe e sent.
func ourOptions(e *pending) *wire.SYNOptions { return e.job.options[family(e.t())] }

// established sets up probe i's connection on its SYN-ACK (ModeFIN): ACK,
// data, then hold or FIN.
func (p *Prober) established(i int, in *inbound, rtt time.Duration, rttOK bool) {
	e := &p.tab.e[i]
	c := e.c
	pkt := &in.pkt
	t := e.t()
	ours := ourOptions(e)
	c.synack = *in
	c.handshake = rxStamp(in)
	c.v6 = t.Addr.Is6()
	c.irs = pkt.Seq
	c.rcvNxt = pkt.Seq + 1
	c.sndUna, c.sndNxt, c.sndMax = e.isn+1, e.isn+1, e.isn+1
	c.sndWL1, c.sndWL2 = pkt.Seq, pkt.Ack
	c.peerMSS = int(pkt.Options.MSS)
	if c.peerMSS == 0 {
		c.peerMSS = defaultMSS4
		if t.Addr.Is6() {
			c.peerMSS = defaultMSS6
		}
	}
	if ours != nil && ours.WScale >= 0 && pkt.Options.WScale >= 0 {
		c.peerWS, c.ourWS = min(pkt.Options.WScale, 14), min(ours.WScale, 14)
	}
	c.peerWnd = uint32(pkt.Window) // never scaled in a SYN-ACK
	c.maxPeerWnd = c.peerWnd
	c.ts = ours != nil && ours.Timestamps && pkt.Options.Timestamps
	c.sack = ours != nil && ours.SACKPermitted && pkt.Options.SACKPermitted
	c.tsRecent = pkt.Options.TSVal
	c.rto = unmeasuredRTO
	if rttOK {
		c.rttSample(rtt)
		c.synRTT = rtt
	} else {
		c.lossSeen = true // the SYN-ACK may have been sent again
	}
	c.dataEnd = e.isn + 1

	e.state = stateEstablished
	c.us, c.peer = Established, Established
	p.sendACK(e, "")
	if len(e.job.data) > 0 {
		c.data = e.job.data
		c.dataEnd = e.isn + 1 + uint32(len(c.data))
		c.mss = p.segSize(e)
		c.cwnd = uint32(initialCwnd * c.mss)
	}
	if e.job.hold > 0 {
		c.holdUntil = p.now().Add(e.job.hold)
	} else {
		p.wantFIN(c)
	}
	p.output(i)
	p.rearm(i)
}

// wantFIN ends the hold: our FIN goes out once every byte of data has,
// within the close timeout.
func (p *Prober) wantFIN(c *tcb) {
	c.holdUntil = time.Time{}
	if c.finWanted {
		return
	}
	c.finWanted = true
	c.dataDeadline = p.now().Add(c.s.closeTimeout)
}

// rttSample feeds one round-trip time into the RFC 6298 estimator.
func (c *tcb) rttSample(r time.Duration) {
	if r <= 0 {
		r = time.Microsecond
	}
	if c.minRTT == 0 || r < c.minRTT {
		c.minRTT = r
	}
	if c.srtt == 0 {
		c.srtt, c.rttvar = r, r/2
	} else {
		d := c.srtt - r
		if d < 0 {
			d = -d
		}
		c.rttvar = (3*c.rttvar + d) / 4
		c.srtt = (7*c.srtt + r) / 8
	}
	c.rto = c.baseRTO()
}

// baseRTO is the retransmission timeout without backoff.
func (c *tcb) baseRTO() time.Duration {
	if c.srtt == 0 {
		return unmeasuredRTO
	}
	return min(max(c.srtt+max(4*c.rttvar, time.Millisecond), minRTO), maxRTO)
}

// segSize returns the payload of our data segments to probe e's target,
// sized as Linux sizes them: the peer's MSS (at most ours), cut to the
// path MTU, at least net.ipv4.tcp_min_snd_mss, less the options we carry.
func (p *Prober) segSize(e *pending) int {
	c := e.c
	t := e.t()
	hdr := wire.IPv4MinimumSize + wire.TCPMinimumSize
	if t.Addr.Is6() {
		hdr = wire.IPv6MinimumSize + wire.TCPMinimumSize
	}
	mss := c.peerMSS
	if o := ourOptions(e); o != nil && o.MSS != 0 {
		mss = min(mss, int(o.MSS))
	}
	if mtu := p.pathMTU(e); mtu > 0 {
		mss = min(mss, mtu-hdr)
	}
	mss = max(mss, minSndMSS)
	if c.ts {
		mss -= tsOptLen
	}
	return mss
}

// pathMTUer is implemented by a Conn that knows the path MTU to an address
// (rawsock.Conn).
type pathMTUer interface {
	PathMTU(dst netip.Addr) (int, error)
}

// pathMTU returns the path MTU to probe e's target, asking the Conn once;
// 0 when unknown.
func (p *Prober) pathMTU(e *pending) int {
	m := &e.job.mtus[e.target]
	if *m == 0 {
		*m = -1
		if c, ok := p.conn.(pathMTUer); ok {
			if mtu, err := c.PathMTU(e.t().Addr); err == nil && mtu > 0 {
				*m = mtu
			}
		}
	}
	return max(*m, 0)
}

// shrinkMSS lowers probe e's segment size after the kernel refused a
// segment as too big (EMSGSIZE) or a router sent "packet too big": to what
// the kernel now knows of the path, or by a quarter when it knows nothing
// smaller. It reports whether the size went down.
func (p *Prober) shrinkMSS(e *pending) bool {
	c := e.c
	old := c.mss
	e.job.mtus[e.target] = 0 // ask again
	n := p.segSize(e)
	if n >= old {
		n = old * 3 / 4
	}
	floor := minSndMSS
	if c.ts {
		floor -= tsOptLen
	}
	c.mss = max(n, floor)
	return c.mss < old
}

// output sends what may go now: data the peer's window and our congestion
// window allow, then our FIN once it is wanted and every byte is out. It
// arms the retransmission and persist timers as needed.
func (p *Prober) output(i int) {
	e := &p.tab.e[i]
	c := e.c
	now := p.now()
	base := e.isn + 1
	for shrinks := 0; c.data != nil && seqLT(c.sndNxt, c.dataEnd); {
		inFlight := c.sndNxt - c.sndUna
		wnd := min(c.peerWnd, c.cwnd)
		if inFlight >= wnd {
			break
		}
		left := c.dataEnd - c.sndNxt
		n := min(uint32(c.mss), left, wnd-inFlight)
		if n < uint32(c.mss) && n < left && inFlight > 0 {
			break // no runt while data is in flight: its ACK may open the window (RFC 9293 3.8.6.2.1)
		}
		off := c.sndNxt - base
		retrans := seqLT(c.sndNxt, c.sndMax)
		note := ""
		if retrans {
			note = noteRetransmission
		}
		st, err := p.sendSeg(e, wire.FlagPsh|wire.FlagAck, c.sndNxt, c.rcvNxt, c.data[off:off+n], note)
		if err != nil {
			if isMsgSize(err) && shrinks < 8 && p.shrinkMSS(e) {
				shrinks++
				continue // send it again, smaller
			}
			if c.rtoAt.IsZero() {
				c.rtoAt = now.Add(c.rto) // the RTO sends it again
			}
			break
		}
		if retrans {
			c.dataRetrans++
			c.lossSeen = true
		} else {
			if off == 0 {
				c.dataSent = st
			}
			if !c.rttTiming {
				c.rttTiming, c.rttSeq, c.rttAt = true, c.sndNxt+n, st.u
			}
		}
		c.sndNxt += n
		c.sndMax = seqMax(c.sndMax, c.sndNxt)
		if c.rtoAt.IsZero() {
			c.rtoAt = st.u.Add(c.rto)
		}
	}
	// A closed window with nothing in flight: only a probe can learn that
	// it opened (the update may be lost).
	if c.data != nil && seqLT(c.sndNxt, c.dataEnd) && c.sndNxt == c.sndUna && c.peerWnd == 0 {
		if c.persistAt.IsZero() {
			c.persistAt = now.Add(min(max(c.baseRTO(), minRTO)<<c.persistBackoff, maxRTO))
		}
	} else {
		c.persistAt, c.persistBackoff = time.Time{}, 0
	}
	if c.finWanted && c.sndNxt == c.dataEnd {
		switch {
		case !c.finSent && c.finDefers < maxFINDefers && p.queued != nil && p.queued():
			// Read what has arrived first: the peer's FIN may be
			// there, and ours must then acknowledge it (peer-first),
			// as a kernel's would.
			c.finDefers++
			c.finDeferAt = now
		case !c.finSent:
			p.sendFIN(i)
		case c.sndNxt == c.finSeq && c.finRetries < maxFINRetries:
			p.resendFIN(i)
		}
	}
}

// sendFIN closes our side of probe i's connection.
func (p *Prober) sendFIN(i int) {
	e := &p.tab.e[i]
	c := e.c
	now := p.now()
	c.peerFirst = c.peerFIN
	if c.peerFIN {
		e.state = stateLastAck
		c.us, c.peer = LastAck, TimeWait
	} else {
		e.state = stateFinWait1
		c.us, c.peer = FinWait1, CloseWait
	}
	c.finSeq = c.sndNxt
	c.sndNxt++
	c.sndMax = seqMax(c.sndMax, c.sndNxt)
	c.finSent = true
	c.lossBeforeFIN = c.lossSeen
	st, _ := p.sendSeg(e, wire.FlagFin|wire.FlagAck, c.finSeq, c.rcvNxt, nil, "")
	c.finAt = st
	c.finTxs[0] = finTx{at: st, tsval: c.lastTSval, trace: len(c.trace) - 1}
	c.finDeadline = now.Add(c.s.closeTimeout)
	if !c.rttTiming {
		c.rttTiming, c.rttSeq, c.rttAt = true, c.sndNxt, st.u
	}
	if c.rtoAt.IsZero() {
		c.rtoAt = now.Add(c.rto)
	}
}

// resendFIN sends our FIN again.
func (p *Prober) resendFIN(i int) {
	e := &p.tab.e[i]
	c := e.c
	c.finRetries++
	c.lossSeen = true
	c.rttTiming = false
	st, _ := p.sendSeg(e, wire.FlagFin|wire.FlagAck, c.finSeq, c.rcvNxt, nil, noteRetransmission)
	c.finTxs[c.finRetries] = finTx{at: st, tsval: c.lastTSval, trace: len(c.trace) - 1}
	c.sndNxt = c.finSeq + 1
	if c.rtoAt.IsZero() {
		c.rtoAt = st.u.Add(c.rto)
	}
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
		earliest(c.rtoAt)
		earliest(c.persistAt)
		if !c.finSent {
			earliest(c.finDeferAt)
		}
		if c.finWanted {
			earliest(c.dataDeadline)
		}
	case stateFinWait1, stateClosing, stateLastAck:
		earliest(c.rtoAt)
		earliest(c.finDeadline)
	case stateFinWait2:
		if c.aliveProbes > 0 {
			earliest(c.aliveAt)
		} else {
			earliest(c.finDeadline)
		}
	case stateTimeWait:
		earliest(c.reportAt)
	}
	if !at.IsZero() {
		p.arm(i, at)
	}
}

// inWindow reports whether seq lies in our receive window, past rcv.nxt
// (RFC 5961's test for a RST that is not exactly at rcv.nxt).
func (p *Prober) inWindow(c *tcb, seq uint32) bool {
	wnd := uint32(c.s.window)
	return seqLT(c.rcvNxt, seq) && seqLT(seq, c.rcvNxt+wnd)
}

// segment advances probe i's connection on an inbound segment. What it
// accepts follows RFC 9293 and RFC 5961; everything it learns about the
// close from sequence numbers goes to observe, whatever the arrival order.
func (p *Prober) segment(i int, in *inbound) {
	e := &p.tab.e[i]
	c := e.c
	pkt := &in.pkt
	if c == nil || e.state < stateEstablished {
		return
	}
	now := p.now()
	fin := pkt.Flags&wire.FlagFin != 0
	if e.state == stateTimeWait {
		p.timeWaitSegment(i, in)
		return
	}
	switch {
	case pkt.Flags&wire.FlagSyn != 0:
		if pkt.Flags&wire.FlagAck != 0 && pkt.Seq == c.irs && pkt.Ack == e.isn+1 && pkt.Flags&wire.FlagRst == 0 {
			// The SYN-ACK again: our ACK was lost.
			c.peerRetrans++
			c.lossSeen = true
			p.recordIn(e, in, noteSYNACKRetrax)
			p.sendACK(e, "")
			return
		}
		p.recordIn(e, in, noteBadSYN)
		p.challengeACK(e, now)
		return
	case pkt.Flags&wire.FlagRst != 0:
		switch {
		case pkt.Seq == c.rcvNxt:
			c.us, c.peer = Closed, Closed
			c.recordIn(e, in, "")
			note := ""
			if e.state == stateFinWait2 && c.aliveProbes > 0 {
				note = noteGone
			}
			p.finishConn(i, CloseRST, 0, note, false)
		case p.inWindow(c, pkt.Seq):
			p.recordIn(e, in, noteRSTInWindow)
			p.challengeACK(e, now)
		default:
			p.recordIn(e, in, noteRSTOutside)
		}
		return
	case pkt.Flags&wire.FlagAck == 0:
		p.recordIn(e, in, noteNoACKFlag)
		return
	}
	// RFC 5961 section 5: only ACKs of what we sent, not too old.
	switch {
	case seqLT(c.sndMax, pkt.Ack):
		p.recordIn(e, in, noteAckUnsent)
		p.challengeACK(e, now)
		return
	case seqLT(pkt.Ack, c.sndUna-max(c.maxPeerWnd, 1)):
		p.recordIn(e, in, noteAckTooOld)
		p.challengeACK(e, now)
		return
	}
	segLen := pkt.PayloadLen
	if fin {
		segLen++
	}
	// Sequence acceptability (RFC 9293 3.10.7.4), our window never zero.
	wnd := uint32(c.s.window)
	if end := pkt.Seq + uint32(segLen); !seqLT(pkt.Seq, c.rcvNxt+wnd) || seqLT(end, c.irs+1) {
		p.recordIn(e, in, noteOutOfWindow)
		p.challengeACK(e, now)
		return
	}
	note := c.observe(p, e, in)

	// The acknowledgement.
	p.processACK(e, in, segLen)

	// The payload and FIN, accepted in order only: a segment ahead of
	// rcv.nxt (a gap: something before it was lost or is late) is dropped
	// and answered with a duplicate ACK; an old one is acknowledged again.
	newFIN, gap := false, false
	if segLen > 0 {
		switch c.receive(pkt.Seq, uint32(segLen), fin, rxStamp(in)) {
		case rcvGap:
			gap = true
			c.lossSeen = true
			c.outOrder++
			note = firstNote(note, noteOutOfOrder)
		case rcvOld:
			c.lossSeen = true
			c.peerRetrans++
			note = firstNote(note, noteRetransmission)
		case rcvFIN:
			newFIN = true
		}
	} else if seqLT(c.rcvNxt, pkt.Seq) {
		c.lossSeen = true
		note = firstNote(note, noteSeqAhead)
	}

	// Our state after this segment.
	next := e.state
	switch e.state {
	case stateEstablished:
		if newFIN {
			c.us = CloseWait
		}
	case stateFinWait1:
		switch {
		case c.finAcked && c.peerFIN:
			next, c.us = stateTimeWait, TimeWait
		case c.finAcked:
			next, c.us = stateFinWait2, FinWait2
		case newFIN:
			next, c.us = stateClosing, Closing
		}
	case stateFinWait2:
		if newFIN {
			next, c.us = stateTimeWait, TimeWait
		}
	case stateClosing:
		if c.finAcked {
			next, c.us = stateTimeWait, TimeWait
		}
	case stateLastAck:
		if c.finAcked {
			next, c.us = stateFree, Closed
		}
	}
	p.recordIn(e, in, note)
	switch {
	case gap:
		p.sendACK(e, noteDupACK) // with SACK blocks when negotiated
	case segLen > 0:
		p.sendACK(e, "")
	}
	if next == stateFree {
		c.peer = TimeWait
	}

	switch {
	case e.state == stateEstablished && newFIN:
		c.holdUntil = time.Time{}
		p.wantFIN(c) // the peer closed first: close ours once our data is out
		p.output(i)
		p.rearm(i)
	case e.state == stateEstablished:
		p.output(i)
		p.rearm(i)
	case next == stateTimeWait:
		p.closed(i)
	case next == stateFree:
		p.finishConn(i, ClosePeerFirst, 0, "", false)
	case next == stateFinWait2 && c.aliveProbes > 0 && segLen == 0:
		// The answer to our probe: the peer is alive and has not closed.
		e.state = next
		alt, note := PatternSet(0), noteAlive
		if seqLT(c.rcvNxt, pkt.Seq) {
			alt, note = alt.Add(Close4Way), noteAliveAhead
		}
		p.reset(e)
		p.finishConn(i, CloseNoFIN, alt, note, false)
	default:
		e.state = next
		p.output(i)
		p.rearm(i)
	}
}

// firstNote returns a if set, else b.
func firstNote(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// processACK takes the acknowledgement and window of an acceptable
// segment.
func (p *Prober) processACK(e *pending, in *inbound, segLen int) {
	c := e.c
	pkt := &in.pkt
	now := p.now()
	if seqLT(c.sndUna, pkt.Ack) {
		c.sndUna = pkt.Ack
		if seqLT(c.sndNxt, c.sndUna) {
			c.sndNxt = c.sndUna // acknowledges what went out before an RTO sent it again
		}
		c.dupAcks, c.dataRetries = 0, 0
		if c.rttTiming && !seqLT(pkt.Ack, c.rttSeq) {
			c.rttTiming = false
			c.rttSample(now.Sub(c.rttAt))
		}
		c.rto = c.baseRTO()
		if c.data != nil {
			c.cwnd = min(c.cwnd+uint32(c.mss), 1<<30)
		}
		c.rtoAt = time.Time{}
		if c.sndUna != c.sndMax {
			c.rtoAt = now.Add(c.rto)
		}
		if c.data != nil && !c.dataAcked && !seqLT(c.sndUna, c.dataEnd) {
			c.dataAcked, c.dataAckAt = true, rxStamp(in)
		}
		if c.finSent && !c.finAcked && !seqLT(pkt.Ack, c.finSeq+1) {
			c.finAcked, c.finAckAt = true, rxStamp(in)
			c.finAckOf = c.finTxs[max(c.answers(p, e, in), 0)].at
		}
	} else if pkt.Ack == c.sndUna && segLen == 0 && c.sndUna != c.sndMax && c.data != nil &&
		seqLT(c.sndUna, c.dataEnd) && uint32(pkt.Window)<<max(c.peerWS, 0) == c.peerWnd {
		if c.dupAcks++; c.dupAcks == 3 {
			p.fastRetransmit(e)
		}
	}
	// The window, from the latest segment only (RFC 9293: SND.WL1, SND.WL2).
	if seqLT(c.sndWL1, pkt.Seq) || (c.sndWL1 == pkt.Seq && !seqLT(pkt.Ack, c.sndWL2)) {
		c.peerWnd = uint32(pkt.Window)
		if c.peerWS >= 0 {
			c.peerWnd <<= c.peerWS
		}
		c.maxPeerWnd = max(c.maxPeerWnd, c.peerWnd)
		c.sndWL1, c.sndWL2 = pkt.Seq, pkt.Ack
	}
	if pkt.Options.Timestamps && !seqLT(c.rcvNxt, pkt.Seq) {
		c.tsRecent = pkt.Options.TSVal
	}
}

// fastRetransmit sends the oldest unacknowledged data segment again.
func (p *Prober) fastRetransmit(e *pending) {
	c := e.c
	base := e.isn + 1
	n := min(uint32(c.mss), c.dataEnd-c.sndUna)
	off := c.sndUna - base
	c.rttTiming = false
	c.cwnd = max(c.cwnd/2, uint32(2*c.mss))
	if _, err := p.sendSeg(e, wire.FlagPsh|wire.FlagAck, c.sndUna, c.rcvNxt, c.data[off:off+n], noteFastRetrans); err == nil {
		c.dataRetrans++
		c.lossSeen = true
	}
}

// timeWaitSegment handles a segment after the exchange ended: a FIN or
// data again means our last ACK was lost, and is acknowledged again; while
// the report waits (reorder grace), a late ACK still counts as evidence.
func (p *Prober) timeWaitSegment(i int, in *inbound) {
	e := &p.tab.e[i]
	c := e.c
	pkt := &in.pkt
	if pkt.Flags&(wire.FlagRst|wire.FlagSyn) != 0 || pkt.Flags&wire.FlagAck == 0 || seqLT(c.sndMax, pkt.Ack) {
		return
	}
	if !c.reportAt.IsZero() {
		p.recordIn(e, in, c.observe(p, e, in))
	}
	// Anything that takes sequence space is old now: our last ACK was
	// lost. Acknowledge it again, so the peer can leave LAST_ACK.
	switch {
	case pkt.Flags&wire.FlagFin != 0:
		if s := e.job.stats; s != nil {
			s[e.target].lateFINs++
		}
		p.sendACK(e, "")
	case pkt.PayloadLen > 0:
		p.sendACK(e, "")
	}
}

// closed handles both FINs exchanged and acknowledged (our TIME_WAIT):
// the report goes out at once unless a segment that arrives a little late
// could still change it (see judge), then after a short grace.
func (p *Prober) closed(i int) {
	e := &p.tab.e[i]
	c := e.c
	e.state = stateTimeWait
	if pat, _, _ := c.judge(p); pat == Close3Way {
		// A 4-way close whose ACK came after its FIN (reordered) would
		// look the same until that ACK arrives.
		grace := min(max(c.minRTT/4, time.Millisecond), 10*time.Millisecond)
		c.reportAt = p.now().Add(grace)
		p.arm(i, c.reportAt)
		return
	}
	pat, alt, note := c.judge(p)
	p.finishConn(i, pat, alt, note, true)
}

// connTimer handles the deadline of probe i past SYN_SENT.
func (p *Prober) connTimer(i int, now time.Time) {
	e := &p.tab.e[i]
	c := e.c
	switch e.state {
	case stateEstablished:
		if !c.holdUntil.IsZero() && !now.Before(c.holdUntil) {
			p.wantFIN(c)
		}
		if c.finWanted && !c.finSent && !now.Before(c.dataDeadline) {
			// Our data could not all go out within the close timeout.
			pat, note := CloseNoACK, "our data could not all be sent within the close timeout"
			if c.peerWnd == 0 {
				pat, note = CloseZeroWindow, "the peer's window stayed closed"
			}
			p.reset(e)
			p.finishConn(i, pat, 0, note, false)
			return
		}
		if !c.rtoAt.IsZero() && !now.Before(c.rtoAt) {
			if c.dataRetries++; c.dataRetries > maxDataRetries {
				p.reset(e)
				p.finishConn(i, CloseNoACK, 0, "the peer stopped acknowledging our data", false)
				return
			}
			p.retransmit(i, now)
		}
		if !c.persistAt.IsZero() && !now.Before(c.persistAt) {
			c.persistAt = time.Time{}
			c.persistBackoff = min(c.persistBackoff+1, 16)
			c.windowProbes++
			p.sendSeg(e, wire.FlagAck, c.sndUna-1, c.rcvNxt, nil, noteWindowProbe)
		}
		p.output(i)
		p.rearm(i)
	case stateFinWait1, stateClosing, stateLastAck:
		if !now.Before(c.finDeadline) || (c.finRetries >= maxFINRetries && !c.rtoAt.IsZero() && !now.Before(c.rtoAt)) {
			pat, alt, note := CloseNoACK, PatternSet(0), ""
			switch {
			case e.state == stateLastAck:
				pat = ClosePeerFirst
			case e.state == stateClosing:
				pat, alt, note = c.judge(p)
			case c.lossBeforeFIN:
				// The path lost segments before: every ACK of our FIN
				// may have been lost as well.
				alt, note = alt.Add(CloseNoFIN), noteNoACKLossy
			default:
				// Nothing was lost before, but something was since:
				// our FIN went out again and again unanswered. Either
				// every copy of it was lost, or every ACK of it: a
				// peer that acknowledged it and never closed (no-fin)
				// looks the same from here.
				alt, note = alt.Add(CloseNoFIN), noteNoACK
			}
			p.reset(e)
			p.finishConn(i, pat, alt, note, false)
			return
		}
		if !c.rtoAt.IsZero() && !now.Before(c.rtoAt) {
			p.retransmit(i, now)
		}
		p.rearm(i)
	case stateFinWait2:
		// The peer acknowledged our FIN but never sent its own.
		if c.finKnown {
			// It did close: its FIN, out of order, is known by its
			// sequence number, which judge reads as it reads one in
			// order.
			p.reset(e)
			pat, alt, note := c.judge(p)
			if note != "" {
				note = noteFINOutOfOrder + "; " + note
			} else {
				note = noteFINOutOfOrder
			}
			p.finishConn(i, pat, alt, note, false)
			return
		}
		if c.aliveProbes < maxAliveProbes {
			// Its RST may have been lost: ask before calling it no-fin.
			p.aliveProbe(i, now)
			p.rearm(i)
			return
		}
		p.reset(e)
		p.finishConn(i, CloseNoFIN, PatternSet(0).Add(CloseRST), noteNoAnswer, false)
	case stateTimeWait:
		if !c.reportAt.IsZero() && !now.Before(c.reportAt) {
			c.reportAt = time.Time{}
			pat, alt, note := c.judge(p)
			p.finishConn(i, pat, alt, note, true)
		}
	}
}

// aliveProbe asks the peer of probe i, in FIN_WAIT_2 past the close
// timeout, whether it still holds the connection, as a keepalive does: an
// ACK one below our next sequence number. A peer in CLOSE_WAIT answers
// that old segment with a duplicate ACK (RFC 9293 3.10.7.4); a host whose
// connection is gone answers any ACK with a RST (RFC 9293 3.10.7.1), and
// the RST it sent when it dropped the connection may have been lost: its
// silence after acknowledging our FIN looks like no-fin otherwise. Linux
// answers out-of-window segments at most once per
// net.ipv4.tcp_invalid_ratelimit (500 ms): the probes are spaced wider.
func (p *Prober) aliveProbe(i int, now time.Time) {
	e := &p.tab.e[i]
	c := e.c
	c.aliveProbes++
	p.sendSeg(e, wire.FlagAck, c.sndNxt-1, c.rcvNxt, nil, noteAliveProbe)
	wait := max(c.baseRTO(), challengeInterval)
	for range c.aliveProbes - 1 {
		wait = min(2*wait, maxRTO)
	}
	c.aliveAt = now.Add(wait)
}

// retransmit handles the retransmission timeout: back off, and send the
// oldest unacknowledged segment again (go-back-N from sndUna, one segment
// of congestion window).
func (p *Prober) retransmit(i int, now time.Time) {
	e := &p.tab.e[i]
	c := e.c
	c.rtoAt = time.Time{}
	c.rttTiming = false
	c.rto = min(2*c.rto, maxRTO)
	c.sndNxt = c.sndUna
	if c.mss > 0 {
		c.cwnd = uint32(c.mss)
	}
	p.output(i)
	if c.rtoAt.IsZero() && c.sndUna != c.sndMax {
		c.rtoAt = now.Add(c.rto)
	}
}

// reset sends RST so that the peer keeps nothing of the connection.
func (p *Prober) reset(e *pending) {
	c := e.c
	c.us, c.peer = Closed, Closed
	p.sendResets(e, "")
}

// maxResets bounds the RSTs sendResets sends.
const maxResets = 64

// sendResets resets probe e's connection wherever the peer may stand. A
// peer takes a RST only at exactly its RCV.NXT (RFC 5961; elsewhere it
// answers with a challenge ACK and keeps the connection), and that lies
// anywhere from our oldest unacknowledged byte to the highest we sent:
// our FIN may have been lost, or only its ACK; of our data, any segment
// may have been the last to arrive. So one RST at SND.UNA, one at every
// segment boundary after it, one at SND.MAX.
func (p *Prober) sendResets(e *pending, note string) {
	c := e.c
	una, hi := c.sndUna, seqMax(c.sndMax, c.sndNxt)
	p.sendSeg(e, wire.FlagRst|wire.FlagAck, una, c.rcvNxt, nil, note)
	if una == hi {
		return
	}
	seg := uint32(max(c.mss, 1))
	n := 1
	for seq := una + seg; seqLT(seq, hi) && n < maxResets-1; seq += seg {
		if c.finSent && seq == c.finSeq+1 {
			continue
		}
		p.sendSeg(e, wire.FlagRst|wire.FlagAck, seq, c.rcvNxt, nil, note)
		n++
	}
	if c.finSent && seqLT(una, c.finSeq) && seqLT(c.finSeq, hi) {
		p.sendSeg(e, wire.FlagRst|wire.FlagAck, c.finSeq, c.rcvNxt, nil, note) // all data in, the FIN lost
	}
	p.sendSeg(e, wire.FlagRst|wire.FlagAck, hi, c.rcvNxt, nil, note)
}

// finishConn reports probe i's connection, closed with pattern pat (alt:
// others the evidence does not rule out; note: what was inferred), and
// either keeps it in TIME_WAIT for the rest of the run or forgets it.
func (p *Prober) finishConn(i int, pat ClosePattern, alt PatternSet, note string, timeWait bool) {
	e := &p.tab.e[i]
	p.releasePort(e, pat, timeWait)
	c := e.c
	v6 := e.t().Addr.Is6()
	r := p.begin(e)
	r.State, r.Reason = StateOpen, ReasonSYNACK
	p.fillReply(r, e, &c.synack)
	cr := &p.close
	*cr = CloseReport{
		Pattern:         pat,
		Alternatives:    alt,
		Note:            note,
		PeerDataBytes:   c.afterOurFIN(),
		PeerBytes:       c.peerBytes,
		PeerRetransmits: c.peerRetrans,
		FinRetransmits:  c.finRetries,
		DataBytes:       len(c.data),
		DataRetransmits: c.dataRetrans,
		WindowProbes:    c.windowProbes,
		SegmentSize:     c.mss,
		SendErrors:      c.sendErrors,
		SendError:       c.sendErr,
		Kernel:          true,
	}
	if c.data != nil {
		cr.DataAcked = int(min(c.sndUna-(e.isn+1), uint32(len(c.data))))
	}
	var k bool
	if c.finAcked {
		cr.AckTime, k = p.since(c.finAckOf, c.finAckAt, v6)
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
	j := e.job
	if timeWait {
		e.state = stateTimeWait
		c.reportAt = time.Time{}
		p.unlive(e)
		p.arm(i, p.now().Add(timeWaitLinger))
	} else {
		p.drop(i)
	}
	p.emit(j, r)
}

// finishTrace puts probe e's trace, with times since its SYN and sequence
// numbers relative to the ISNs, into r.
func (p *Prober) finishTrace(r *Result, e *pending) {
	if !e.job.trace || e.c == nil {
		return
	}
	v6 := e.t().Addr.Is6()
	syn := stamp{u: e.sent, id: e.id, tx: true}
	c := e.c
	// A segment the peer sent after its FIN shows that FIN was out, even
	// when it arrived before the FIN did (lost or late): from there on,
	// the peer had closed.
	finOut := false
	simultaneous := r.Close != nil && r.Close.Pattern == CloseSimultaneous
	p.trace = p.trace[:0]
	for _, rec := range c.trace {
		ev := rec.ev
		if !ev.Out && c.finKnown && ev.Flags&wire.FlagRst == 0 && ev.Flags&wire.FlagAck != 0 &&
			(ev.Flags&wire.FlagFin != 0 || seqLT(c.peerFINSeq, ev.Seq)) {
			finOut = true
		}
		if finOut {
			switch {
			case ev.Peer == CloseWait && simultaneous:
				ev.Peer = Closing
			case ev.Peer == CloseWait:
				ev.Peer = LastAck
			case ev.Peer == Established:
				ev.Peer = FinWait1
			}
		}
		ev.At, _ = p.since(syn, rec.at, v6)
		ours, theirs := e.isn, c.irs
		if !ev.Out {
			ours, theirs = theirs, ours
		}
		ev.Seq -= ours
		if ev.Flags&wire.FlagAck != 0 {
			ev.Ack -= theirs
		} else {
			ev.Ack = 0
		}
		p.trace = append(p.trace, ev)
	}
	r.Trace = p.trace
}

// connICMP handles an ICMP error about a segment of a connection: "packet
// too big" (IPv4 fragmentation needed, IPv6 packet too big) shrinks our
// segments to what the kernel now knows of the path and sends the
// unacknowledged data again at once. The quote must name the connection
// and a sequence number we have sent and not seen acknowledged (RFC 5927);
// other errors are soft for a connection and ignored (RFC 1122 4.2.3.9).
func (p *Prober) connICMP(in *inbound) {
	pkt := &in.pkt
	q := &pkt.Quoted
	if q.SrcPort < p.portLo || q.SrcPort > p.portHi {
		return
	}
	off := q.SrcPort - p.portLo
	if !p.connOK[off] {
		return
	}
	i := p.tab.lookup(p.conns[off], q.SrcPort)
	if i < 0 {
		return
	}
	e := &p.tab.e[i]
	c := e.c
	t := e.t()
	if c == nil || e.state != stateEstablished && e.state != stateFinWait1 && e.state != stateClosing && e.state != stateLastAck ||
		q.Src != t.Src || q.Dst != t.Addr || q.DstPort != t.Port || c.data == nil ||
		seqLT(q.Seq, c.sndUna) || !seqLT(q.Seq, c.sndMax) {
		return
	}
	p.took = true
	tooBig := (t.Addr.Is4() && pkt.ICMPType == wire.ICMPv4DestinationUnreachable && pkt.ICMPCode == 4) ||
		(t.Addr.Is6() && pkt.ICMPType == wire.ICMPv6PacketTooBig)
	if !tooBig || !p.shrinkMSS(e) {
		return
	}
	c.rttTiming = false
	c.sndNxt = c.sndUna
	p.output(i)
	p.rearm(i)
}

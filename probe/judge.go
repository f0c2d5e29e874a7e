package probe

import (
	"time"

	"github.com/synprobe/synprobe/rawsock/wire"
)

// How a close is judged.
//
// The pattern follows from sequence numbers, never from the order in which
// segments arrive: on a path with loss or reordering the first segment to
// arrive is not the first the peer sent. What counts:
//
//   - Positions. A pure ACK (no data, no FIN) carries the peer's snd.nxt at
//     the moment it was sent: one with seq at or before the peer's FIN
//     position left before its FIN, one with seq past it after. A data
//     segment is placed only when it is a first transmission: it starts at
//     or beyond everything already seen from the peer (a retransmission
//     repeats old bytes with a current ACK field, and would lie).
//   - 4-way: an ACK of our FIN sent before the peer's FIN (a pure ACK, or a
//     first-transmission data segment, at or before the FIN position).
//   - simultaneous: the peer's FIN did not acknowledge ours (a FIN segment,
//     or a pure ACK past the FIN, whose ACK field stops short of our FIN):
//     it went out before ours arrived. peer-first: we had received the
//     peer's FIN when we sent ours.
//   - 3-way: the FIN acknowledged ours and nothing acknowledged ours
//     before it.
//
// What loss hides is said, not guessed silently (CloseReport.Alternatives
// and Note):
//
//   - The first FIN we see may be a retransmission: when a segment sent
//     after the FIN (seq past it) came first, the FIN's first transmission
//     was lost and what its ACK field said is unknown. An ACK past the FIN
//     that answers our first FIN transmission (its TSecr echoes that FIN's
//     TSval; without timestamps, by time) shows the FIN left before ours
//     arrived: simultaneous. Otherwise the explanation with fewest losses
//     is reported (3-way: one lost FIN+ACK) with simultaneous as the
//     alternative.
//   - A pure ACK has no sequence number of its own: when it is lost,
//     nothing in the sequence space shows it. A FIN that acknowledges ours
//     is 3-way, but when it left more than promptReply after our FIN
//     reached the peer, or when other segments of the connection were
//     lost, a separate ACK before it may have been lost: 4-way is the
//     alternative. When it left late, it may also be the retransmission
//     of a lost FIN that left before ours arrived: simultaneous too.
//   - A 3-way verdict waits a moment (a quarter of the RTT, 1 to 10 ms)
//     before it is reported, so that a separate ACK reordered behind the
//     FIN still counts.

// Close notes (CloseReport.Note).
const (
	noteLateFIN           = "its FIN acknowledged ours but left more than 1 ms after ours reached it: a separate ACK before it (4-way) may have been lost, or it is the retransmission of a lost FIN that left before ours arrived (simultaneous)"
	notePeerFINUnread     = "its FIN arrived before ours left but was read after it: ours does not acknowledge it (the peer saw a simultaneous close on the wire)"
	noteVariedFIN         = "its FIN acknowledged ours, but the path's delay varied by more than 1 ms between our round trips (its FIN came back sooner after ours than its SYN-ACK after our SYN): whether it left at once cannot be told; a separate ACK before it (4-way) may have been lost, or it is the retransmission of a lost FIN that left before ours arrived (simultaneous)"
	noteFirstFINLost      = "its first FIN was lost (a segment sent after it arrived first): 3-way if that FIN acknowledged ours, simultaneous if it left before ours arrived, 4-way if an ACK before it was lost too"
	noteLossSeen          = "segments were lost on this connection: a separate ACK before its FIN (4-way) may have been lost too"
	noteDataBeforeFINLost = "the data it sent before its FIN was lost: whether it acknowledged our FIN (4-way) is unknown"
	noteFINBeforeOurs     = "its first FIN was lost; its ACK of our first FIN came from past its FIN: its FIN left before ours arrived"
	note4WayData          = "its data acknowledged our FIN before its FIN"
	noteFINOutOfOrder     = "its FIN came out of order and what came before it never did"
)

// observe records what an acceptable segment from the peer tells about the
// order of the close, and returns a trace note when it shows loss.
func (c *tcb) observe(p *Prober, e *pending, in *inbound) string {
	pkt := &in.pkt
	fin := pkt.Flags&wire.FlagFin != 0
	n := uint32(pkt.PayloadLen)
	start := pkt.Seq
	end := start + n
	if fin {
		end++
	}
	acked := c.finSent && !seqLT(pkt.Ack, c.finSeq+1)
	firstTx := !c.hiSet || !seqLT(start, c.hiPos)
	note := ""
	if !acked && (!c.notAckSet || seqLT(c.notAckEnd, end)) {
		// Sent before our FIN reached the peer, whatever its arrival.
		c.notAckEnd, c.notAckSet = end, true
	}
	switch {
	case fin:
		pos := start + n
		if !c.finKnown {
			c.finKnown, c.peerFINSeq = true, pos
		}
		switch {
		case !acked || c.finSeen:
		case !c.hiSet || !seqLT(pos, c.hiPos):
			// Nothing from past its FIN came before: taken for the
			// FIN's first transmission.
			c.firstFIN = 1
			c.firstFINDly, c.firstFINVaried = p.replyDelay(e, in)
			c.firstFINAt = rxStamp(in)
			c.firstFINTS, c.firstFINTSOK = pkt.Options.TSVal, pkt.Options.Timestamps
			c.finSegStart = start
		default:
			note = noteFINRetransLost
		}
		c.finSeen = true
	case n == 0 && acked:
		if !c.pureAckSet && c.answersSurely(p, e, in) {
			c.firstPure = int8(c.answers(p, e, in) + 1)
		}
		if !c.pureAckSet || seqLT(start, c.pureAckMin) {
			c.pureAckMin = start
		}
		c.pureAckSet = true
	case acked && c.firstSent(p, e, in, firstTx):
		if !c.dataAckSet || seqLT(end, c.dataAckMin) {
			c.dataAckMin = end
		}
		c.dataAckSet = true
	}
	if !c.hiSet || seqLT(c.hiPos, end) {
		c.hiSet, c.hiPos = true, end
	}
	return note
}

// firstSent reports whether a data segment is taken for a first
// transmission: it starts at or beyond everything seen before it
// (firstTx), or, when the FIN came first, it left no later than the FIN
// by their TSvals, or (without timestamps) it arrived within reorderWindow
// of the FIN: reordered, since a retransmission waits at least an RTO.
func (c *tcb) firstSent(p *Prober, e *pending, in *inbound, firstTx bool) bool {
	switch {
	case firstTx:
		return true
	case !c.finSeen || c.firstFIN != 1:
		return false
	case c.firstFINTSOK && in.pkt.Options.Timestamps:
		return !seqLT(c.firstFINTS, in.pkt.Options.TSVal)
	}
	d, _ := p.since(c.firstFINAt, rxStamp(in), e.t().Addr.Is6())
	return d <= reorderWindow
}

// answers returns which transmission of our FIN (0 the first) the segment
// in answers: by the TSecr it echoes when timestamps are on, else the
// latest one sent at least the lowest RTT before it arrived. -1: none.
func (c *tcb) answers(p *Prober, e *pending, in *inbound) int {
	n := c.finRetries + 1
	if c.ts && in.pkt.Options.Timestamps {
		ecr := in.pkt.Options.TSEcr
		for k := n - 1; k >= 0; k-- {
			if !seqLT(ecr, c.finTxs[k].tsval) {
				return k
			}
		}
		return -1
	}
	v6 := e.t().Addr.Is6()
	for k := n - 1; k > 0; k-- {
		if d, _ := p.since(c.finTxs[k].at, rxStamp(in), v6); d >= c.minRTT {
			return k
		}
	}
	return 0
}

// answersSurely reports whether answers can name the transmission for
// certain: by the TSecr, or because no later transmission had left when in
// arrived. By timing alone it cannot be sure once a later one had: the
// lowest RTT seen bounds the path's RTT from above, not from below (a
// delayed SYN-ACK inflates it), so an answer to the later one may come
// back sooner than that RTT.
func (c *tcb) answersSurely(p *Prober, e *pending, in *inbound) bool {
	if c.ts && in.pkt.Options.Timestamps {
		return true
	}
	k := max(c.answers(p, e, in), 0)
	if k == c.finRetries {
		return true
	}
	d, _ := p.since(c.finTxs[k+1].at, rxStamp(in), e.t().Addr.Is6())
	return d < 0
}

// replyDelay estimates how long after our FIN reached the peer the
// segment in left it, as the larger of two estimates, each blind where
// the other sees:
//   - by our clock: its arrival, less the send time of the FIN
//     transmission it answers, less the lowest RTT seen. Too low when
//     that RTT is inflated: with one sample (the SYN-ACK's), a queue on
//     the way back is enough (CI: a SYN-ACK 177 ms late, a FIN that left
//     100 ms after ours arrived, judged prompt).
//   - by the peer's clock (tsDelay): blind to the way back.
//
// When the estimate by our clock is below zero by more than promptReply,
// the path's delay visibly varied by that much between the two round
// trips, and a delay of the peer's within that variation cannot be told:
// varied is set.
func (p *Prober) replyDelay(e *pending, in *inbound) (d time.Duration, varied bool) {
	c := e.c
	k := max(c.answers(p, e, in), 0)
	since, _ := p.since(c.finTxs[k].at, rxStamp(in), e.t().Addr.Is6())
	byRTT := since - c.minRTT
	return max(byRTT, p.tsDelay(e, in, k)), byRTT < -promptReply
}

// tsDelay estimates the same delay from the peer's timestamps: the ticks
// of its TSval from its SYN-ACK to segment in (a Linux or BSD clock ticks
// once a millisecond), less the time from our SYN to FIN transmission k;
// both of ours crossed the same way there. Too low when our SYN took
// longer to get there than our FIN. Used only when both carry TSvals and
// the ticks agree with our clock within a factor of two over at least
// 50 ms (a peer whose clock ticks otherwise gives no estimate); two ticks
// of truncation are taken off.
func (p *Prober) tsDelay(e *pending, in *inbound, k int) time.Duration {
	const none = -time.Hour
	c := e.c
	if !c.ts || !in.pkt.Options.Timestamps || !c.synack.pkt.Options.Timestamps || c.synRTT <= 0 {
		return none
	}
	v6 := e.t().Addr.Is6()
	ticks := time.Duration(int32(in.pkt.Options.TSVal-c.synack.pkt.Options.TSVal)) * time.Millisecond
	arrivals, _ := p.since(c.handshake, rxStamp(in), v6)
	if arrivals < 50*time.Millisecond || ticks < arrivals/2 || ticks > 2*arrivals {
		return none
	}
	ours, _ := p.since(c.handshake, c.finTxs[k].at, v6)
	return ticks - (ours + c.synRTT) - 2*time.Millisecond
}

// judge returns the close pattern the evidence shows, the others it does
// not rule out, and a note on what was inferred.
func (c *tcb) judge(p *Prober) (ClosePattern, PatternSet, string) {
	if c.peerFirst {
		return ClosePeerFirst, 0, ""
	}
	if !c.finKnown {
		return CloseNoFIN, 0, ""
	}
	if c.finSent && c.peerFIN {
		// Its FIN, and everything before it, may have arrived before
		// ours left and been read only after (our FIN then does not
		// acknowledge it): the kernel's stamps tell. A FIN held out of
		// order until a gap filled after ours left is not: a kernel's
		// TCP would not have taken it either.
		if d, kernel := p.since(c.finTxs[0].at, c.finInOrderAt, c.v6); kernel && d < 0 {
			return ClosePeerFirst, 0, notePeerFINUnread
		}
	}
	fin := c.peerFINSeq
	switch {
	case c.pureAckSet && !seqLT(fin, c.pureAckMin):
		return Close4Way, 0, ""
	case c.notAckSet && seqLT(fin, c.notAckEnd):
		// Its FIN, or something it sent after it, did not acknowledge
		// ours.
		return CloseSimultaneous, 0, ""
	case c.dataAckSet && !seqLT(fin, c.dataAckMin):
		return Close4Way, 0, note4WayData
	case c.firstFIN == 1:
		var alts PatternSet
		note := ""
		if c.gapBeforeFIN() {
			alts, note = alts.Add(Close4Way), noteDataBeforeFINLost
		}
		why := ""
		switch {
		case c.firstFINDly > promptReply:
			// Late enough to follow a lost ACK, or to be the
			// retransmission of a lost FIN that left before ours
			// arrived (whose ACK of our FIN was lost too).
			alts, why = alts.Add(Close4Way).Add(CloseSimultaneous), noteLateFIN
		case c.firstFINVaried:
			alts, why = alts.Add(Close4Way).Add(CloseSimultaneous), noteVariedFIN
		case c.lossSeen:
			alts, why = alts.Add(Close4Way), noteLossSeen
		}
		note = firstNote(note, why)
		return Close3Way, alts, note
	case c.firstPure == 1:
		return CloseSimultaneous, 0, noteFINBeforeOurs
	}
	return Close3Way, PatternSet(0).Add(CloseSimultaneous).Add(Close4Way), noteFirstFINLost
}

// gapBeforeFIN reports whether bytes the peer sent before the segment
// carrying its FIN were never seen as first sent: whether they
// acknowledged our FIN (a 4-way close) is unknown.
func (c *tcb) gapBeforeFIN() bool {
	known := c.irs + 1
	if c.notAckSet && seqLT(known, c.notAckEnd) {
		known = c.notAckEnd
	}
	return seqLT(known, c.finSegStart)
}

// updatePeer sets the peer's state, for the trace, from what is known so
// far; our own segments are assumed to arrive.
func (p *Prober) updatePeer(c *tcb) {
	if c.us < Established || c.us > TimeWait {
		return
	}
	c.peer = c.peerState(p)
}

func (c *tcb) peerState(p *Prober) TCPState {
	switch {
	case !c.finKnown && !c.finSent:
		return Established
	case !c.finKnown:
		return CloseWait
	case c.peerFirst, !c.finSent:
		// Its FIN went first.
		switch {
		case c.finSent:
			return TimeWait
		case c.ackedPeerFIN:
			return FinWait2
		}
		return FinWait1
	}
	if pat, _, _ := c.judge(p); pat == CloseSimultaneous {
		if c.ackedPeerFIN {
			return TimeWait
		}
		return Closing
	}
	if c.ackedPeerFIN {
		return Closed
	}
	return LastAck
}

// afterOurFIN returns the payload bytes the peer sent after it had our
// FIN: what arrived in order past its position when our FIN reached it.
// That position is the seq of its first pure ACK of our FIN when there is
// one, else the end of the last thing it sent without acknowledging our
// FIN (a byte retransmitted with a current ACK field is no proof it was
// first sent after our FIN arrived).
func (c *tcb) afterOurFIN() int {
	if !c.finAcked {
		return 0
	}
	pos := c.irs + 1
	switch {
	case c.pureAckSet:
		pos = c.pureAckMin
	case c.notAckSet && seqLT(pos, c.notAckEnd):
		pos = c.notAckEnd
	}
	end := c.irs + 1 + uint32(c.peerBytes)
	if !seqLT(pos, end) {
		return 0
	}
	return int(min(end-pos, uint32(c.peerBytes)))
}

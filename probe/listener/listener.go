// Package listener tells whether a TCP listener is healthy, not just open,
// from outside: the SYN-ACK's retransmissions with the third ACK withheld,
// SYN cookies, and a full accept queue told from a firewall. It runs a
// short, bounded series of probes on a probe.Client (docs/listener.md).
package listener

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// minObserve is the shortest watch in which a Linux server's first
// SYN-ACK retransmission (1 s, up to 15% late) surely comes.
const minObserve = 1200 * time.Millisecond

// Config tunes Check. The zero value means defaults.
type Config struct {
	// Observe is how long to watch for the SYN-ACK's retransmissions
	// after the first; default probe.DefaultObserve.
	Observe time.Duration
	// Timeout is how long to wait for the answer to each SYN and to the
	// bare ACK; default 1s.
	Timeout time.Duration
	// Gap separates the two SYNs of the cookie tests (default 10ms): long
	// enough for a stateful server's millisecond TSval clock to move, short
	// enough for it to move less than 64 ticks and for a cookie's minute
	// counter to stay the same most of the time.
	Gap time.Duration
}

// Queue is what the tests say of the listener's accept queue.
type Queue uint8

const (
	QueueUnknown Queue = iota
	// QueueOK: a SYN was answered; Linux drops SYNs while the accept
	// queue is full, so it had room.
	QueueOK
	// QueueFull: a SYN was answered and its third ACK dropped (the
	// SYN-ACK came again) while the next SYN got silence; or our late ACK
	// was taken and SYNs went silent after it, while a bare ACK drew a
	// RST (the queue full now, perhaps by our connection).
	QueueFull
	// QueueReset: the third ACK drew an immediate RST: a full queue with
	// tcp_abort_on_overflow=1.
	QueueReset
	// QueueSYNsDropped: SYNs got silence while a bare ACK drew a RST: the
	// host's TCP is there and only SYNs are dropped, by a listener whose
	// accept queue is full or by a filter of SYNs alone (nothing seen
	// from outside tells them apart, and the ACK's RST comes whether a
	// listener exists or not).
	QueueSYNsDropped
)

var queueNames = [...]string{"unknown", "ok", "full", "reset", "syns-dropped"}

func (q Queue) String() string {
	if int(q) < len(queueNames) {
		return queueNames[q]
	}
	return fmt.Sprintf("queue-%d", q)
}

// Vote is one cookie test's answer.
type Vote uint8

const (
	Undecided Vote = iota
	Cookie         // the SYN-ACK came from a SYN cookie
	Stateful       // the server kept a request for the SYN
)

var voteNames = [...]string{"undecided", "cookie", "stateful"}

func (v Vote) String() string {
	if int(v) < len(voteNames) {
		return voteNames[v]
	}
	return fmt.Sprintf("vote-%d", v)
}

// Test is one cookie test: its name, its vote and why.
type Test struct {
	Name     string // isn, tsval, options, retransmission
	Vote     Vote
	Evidence string
}

// Report is what Check found.
type Report struct {
	Target netip.AddrPort
	// SYN is the first probe's result (probe.ModeWithhold with a late
	// ACK), Schedule the second's (the watch of the SYN-ACK's
	// retransmissions; nil unless the first was open).
	SYN, Schedule *probe.Result
	// Retransmits lists when the SYN-ACK came again, after the first.
	Retransmits []time.Duration
	Observe     time.Duration
	// AfterACK is what followed the third ACK, sent late (the first
	// probe: probe.ModeWithhold with LateACK).
	AfterACK probe.AckOutcome
	// BareACK is the bare ACK's result, sent when the SYN got silence.
	BareACK     *probe.Result
	AcceptQueue Queue
	// DeferAccept: the late ACK was dropped while the next SYN was
	// answered: the listener waits for data (TCP_DEFER_ACCEPT).
	DeferAccept bool
	// SynCookies is nil while undecided: no test decided, or two
	// disagreed. Tests says which agreed.
	SynCookies *bool
	Tests      []Test
	// Findings say what the tests found, one sentence each.
	Findings []string
	// Healthy: open, retransmitting, no cookies, accept queue with room.
	Healthy bool
}

// Check runs the listener tests against dst on c, which needs its RST
// guard (the third ACK is withheld). The cookie tests send their SYNs
// from one source port of c's (ProbeOptions.SourcePort): one 4-tuple.
func Check(ctx context.Context, c *probe.Client, dst netip.AddrPort, cfg *Config) (*Report, error) {
	var conf Config
	if cfg != nil {
		conf = *cfg
	}
	if conf.Observe == 0 {
		conf.Observe = probe.DefaultObserve
	}
	if conf.Timeout == 0 {
		conf.Timeout = time.Second
	}
	if conf.Gap == 0 {
		conf.Gap = 10 * time.Millisecond
	}
	if conf.Observe < 0 || conf.Timeout < 0 || conf.Gap < 0 {
		return nil, errors.New("listener: negative duration")
	}
	rep := &Report{Target: dst, Observe: conf.Observe}
	// First the late ACK, on a short watch: a dropped ACK shows only as
	// the server's next SYN-ACK, due at about 3 s after a watch that saw
	// the first retransmission (at 1 s), but at about 15 s after the full
	// watch of the schedule.
	r, err := c.Probe(ctx, dst, &probe.ProbeOptions{Mode: probe.ModeWithhold, Timeout: conf.Timeout, Observe: minObserve, LateACK: time.Second})
	if err != nil {
		return nil, err
	}
	if r.State == probe.StateError {
		return nil, r.Err
	}
	rep.SYN = r
	switch {
	case r.State == probe.StateOpen:
		rep.AcceptQueue = QueueOK
		rep.AfterACK = r.AfterACK
		// Then the schedule, on a SYN of its own, watched for Observe.
		// Sent at once after the late ACK's watch, its SYN also says
		// whether the accept queue has room now: Linux drops SYNs while
		// it is full.
		s, err := c.Probe(ctx, dst, &probe.ProbeOptions{Mode: probe.ModeWithhold, Timeout: conf.Timeout, Observe: conf.Observe})
		if err != nil {
			return nil, err
		}
		rep.Schedule = s
		switch {
		case r.AfterACK == probe.AckAccepted:
			rep.Findings = append(rep.Findings, "the third ACK, sent late, was taken: the server spoke at once (data or a FIN), so its application accepted the connection")
		case r.AfterACK == probe.AckSilent:
			rep.Findings = append(rep.Findings, "the third ACK, sent late, met silence until the next SYN-ACK was due: taken into the accept queue (or ignored by a listener that waits for data: TCP_DEFER_ACCEPT with a long deferral)")
		case r.AfterACK == probe.AckDropped && s.State == probe.StateOpen:
			// Not a full queue: the next SYN was answered. A listener
			// that defers accept until data comes drops a bare final ACK
			// and sends its SYN-ACK again.
			rep.DeferAccept = true
			rep.Findings = append(rep.Findings, "the third ACK, sent late, was dropped (the SYN-ACK came again) while a new SYN right after was answered: not a full accept queue but a listener that waits for data before it accepts (TCP_DEFER_ACCEPT drops a bare ACK)")
		case r.AfterACK == probe.AckDropped:
			rep.AcceptQueue = QueueFull
			rep.Findings = append(rep.Findings, "a SYN was answered but its third ACK dropped (the SYN-ACK came again), and the next SYN got no answer: the accept queue filled meanwhile (Linux drops the final ACK and new SYNs while it is full)")
		case r.AfterACK == probe.AckReset:
			rep.AcceptQueue = QueueReset
			rep.Findings = append(rep.Findings, "the third ACK drew an immediate RST: a full accept queue with tcp_abort_on_overflow=1 (or the listener went away)")
		default:
			rep.Findings = append(rep.Findings, "no late third ACK was sent: the SYN-ACK did not come again within the first watch, so nothing says when its next is due")
		}
		short := conf.Observe < minObserve
		switch {
		case s.State == probe.StateFiltered && s.Reason == probe.ReasonTimeout && rep.AcceptQueue == QueueOK:
			// The first SYN was answered and its connection taken; now
			// SYNs get silence. A bare ACK says whether the host's TCP
			// is there: then its accept queue is full, perhaps by our
			// own connection, which holds a slot until the application
			// accepts it.
			a, err := bareACK(ctx, c, dst, &conf, rep)
			if err != nil {
				return nil, err
			}
			if a.State == probe.StateClosed {
				rep.AcceptQueue = QueueFull
				rep.Findings = append(rep.Findings, "after our late ACK was taken, a SYN got silence while a bare ACK drew a RST: the accept queue is full now (our connection may have taken its last slot: it holds one until the application accepts it)")
			} else {
				rep.Findings = append(rep.Findings, fmt.Sprintf("the schedule's SYN got no SYN-ACK, nor a bare ACK an answer (%s): the host stopped answering", a.Reason))
			}
		case s.State != probe.StateOpen:
			rep.Findings = append(rep.Findings, fmt.Sprintf("the schedule's SYN got no SYN-ACK (%s %s): no schedule", s.State, s.Reason))
		case len(s.SynAckRetrans) == 0 && short:
			rep.Findings = append(rep.Findings, fmt.Sprintf("no SYN-ACK retransmission within %v, shorter than Linux's first (about 1 s after the SYN-ACK): watch longer to tell", conf.Observe))
		case len(s.SynAckRetrans) == 0:
			rep.Findings = append(rep.Findings, fmt.Sprintf("no SYN-ACK retransmission within %v: a SYN cookie answered (the SYN queue overflowed: a SYN flood or a small backlog), tcp_synack_retries is 0, or a middlebox answers for the host", conf.Observe))
		default:
			rep.Retransmits = s.SynAckRetrans
			rep.Findings = append(rep.Findings, scheduleFinding(s.SynAckRetrans, conf.Observe))
		}
		if err := cookieTests(ctx, c, dst, &conf, rep); err != nil {
			return nil, err
		}
		// A watch too short for the first retransmission proves nothing
		// healthy.
		rep.Healthy = len(rep.Retransmits) > 0 && (rep.SynCookies == nil || !*rep.SynCookies) && rep.AcceptQueue == QueueOK
	case r.State == probe.StateClosed:
		rep.Findings = append(rep.Findings, "closed: the host answered the SYN with RST; nothing listens on the port")
	case r.State == probe.StateFiltered && r.Reason == probe.ReasonTimeout:
		// Silence: a firewall, or a listener that drops SYNs because its
		// accept queue is full. A bare ACK tells them apart: the host's
		// TCP answers it with RST either way.
		a, err := bareACK(ctx, c, dst, &conf, rep)
		if err != nil {
			return nil, err
		}
		if a.State == probe.StateClosed {
			rep.AcceptQueue = QueueSYNsDropped
			rep.Findings = append(rep.Findings, "SYNs get no answer while a bare ACK draws a RST: the host's TCP is there and only SYNs are dropped, by a listener whose accept queue is full or by a filter of SYNs alone (from outside they look the same; the host answers such an ACK whether a listener exists or not)")
		} else {
			rep.Findings = append(rep.Findings, fmt.Sprintf("neither the SYN nor a bare ACK got an answer (%s): a firewall drops both, or the host is down", a.Reason))
		}
	default:
		rep.Findings = append(rep.Findings, fmt.Sprintf("filtered: %s from %v", r.Reason, r.From))
	}
	return rep, nil
}

// bareACK sends the bare ACK that tells a host whose TCP answers (a RST:
// closed) from silence, and keeps its result in rep.
func bareACK(ctx context.Context, c *probe.Client, dst netip.AddrPort, conf *Config, rep *Report) (*probe.Result, error) {
	a, err := c.Probe(ctx, dst, &probe.ProbeOptions{Mode: probe.ModeBareACK, Timeout: conf.Timeout})
	if err == nil {
		rep.BareACK = a
	}
	return a, err
}

// cookieTests runs the SYN cookie tests on an open listener (LINUX.md:
// what tells a cookie SYN-ACK from a stateful one without flooding):
//
//   - isn: two SYNs on one 4-tuple, ISNs x and x+Δ: a cookie SYN-ACK's
//     sequence number moves by exactly Δ (the cookie adds the client's
//     ISN), a stateful one by the server's 64 ns clock.
//   - tsval: on one 4-tuple, a cookie keeps its options in the TSval's low
//     6 bits, constant; a stateful server's millisecond clock moves them
//     when the SYNs are 1 to 63 ms apart.
//   - options: a SYN without timestamps leaves a cookie no room for window
//     scale and SACK: the SYN-ACK carries MSS only, where the control SYN
//     (with timestamps) got them.
//   - retransmission: a cookie keeps no state and never resends.
func cookieTests(ctx context.Context, c *probe.Client, dst netip.AddrPort, conf *Config, rep *Report) error {
	opts := &probe.ProbeOptions{Timeout: conf.Timeout}
	a, err := c.Probe(ctx, dst, opts)
	if err != nil {
		return err
	}
	t := time.NewTimer(conf.Gap)
	select {
	case <-ctx.Done():
		t.Stop()
		return ctx.Err()
	case <-t.C:
	}
	// The same 4-tuple: a's port.
	same := *opts
	same.SourcePort = a.SrcPort
	b, err := c.Probe(ctx, dst, &same)
	if err != nil {
		return err
	}
	noTS := wire.SYNOptions{MSS: 1460, WScale: 7, SACKPermitted: true}
	if dst.Addr().Is6() {
		noTS.MSS = 1440
	}
	n, err := c.Probe(ctx, dst, &probe.ProbeOptions{Timeout: conf.Timeout, Options: &noTS, SourcePort: a.SrcPort})
	if err != nil {
		return err
	}
	rep.Tests = []Test{
		isnTest(a, b),
		tsvalTest(a, b),
		optionsTest(a, n),
		retransTest(rep.Schedule),
	}
	rep.SynCookies = decide(rep.Tests)
	var cookie, stateful []string
	for _, t := range rep.Tests {
		switch t.Vote {
		case Cookie:
			cookie = append(cookie, t.Name)
		case Stateful:
			stateful = append(stateful, t.Name)
		}
	}
	switch {
	case rep.SynCookies == nil && len(cookie) > 0 && len(stateful) > 0:
		rep.Findings = append(rep.Findings, fmt.Sprintf("SYN cookies undecided: %v say cookie, %v say stateful", cookie, stateful))
	case rep.SynCookies == nil:
		rep.Findings = append(rep.Findings, "SYN cookies undecided: no test could tell")
	case *rep.SynCookies:
		rep.Findings = append(rep.Findings, fmt.Sprintf("SYN cookies answered (tests %v agree): the listener's SYN queue overflowed (a SYN flood or a small backlog), or tcp_syncookies=2", cookie))
	default:
		rep.Findings = append(rep.Findings, fmt.Sprintf("no SYN cookies: the server kept state for our SYNs (tests %v agree)", stateful))
	}
	return nil
}

// decide is the cookie verdict: the decisive tests' common vote, nil
// when none decided or two disagreed.
func decide(tests []Test) *bool {
	var v Vote
	for _, t := range tests {
		switch {
		case t.Vote == Undecided:
		case v == Undecided:
			v = t.Vote
		case v != t.Vote:
			return nil
		}
	}
	if v == Undecided {
		return nil
	}
	b := v == Cookie
	return &b
}

func synAck(r *probe.Result) bool {
	return r != nil && r.State == probe.StateOpen && r.Reason == probe.ReasonSYNACK
}

// isnTest: the two SYN-ACKs' sequence numbers against the two ISNs.
func isnTest(a, b *probe.Result) Test {
	t := Test{Name: "isn"}
	switch {
	case !synAck(a) || !synAck(b):
		t.Evidence = "not both SYNs got a SYN-ACK"
		return t
	case a.SrcPort != b.SrcPort:
		t.Evidence = "the two SYNs left from different ports (the client holds more than one)"
		return t
	}
	ours, theirs := b.ISN-a.ISN, b.PeerSeq-a.PeerSeq
	if ours == theirs {
		t.Vote = Cookie
		t.Evidence = fmt.Sprintf("our ISN moved by %d and the server's by exactly as much", ours)
		return t
	}
	// A stateful Linux server's ISN runs on a 64 ns clock for one
	// 4-tuple: about the time between the SYNs' arrivals.
	elapsed := b.Sent.Sub(a.Sent)
	ticks := float64(elapsed) / 64
	if d := float64(int32(theirs)); d > 0 && d > ticks*0.5-2000 && d < ticks*1.5+16000 {
		t.Vote = Stateful
		t.Evidence = fmt.Sprintf("our ISN moved by %d, the server's by %d, about %v of its 64 ns clock", ours, theirs, elapsed.Round(time.Microsecond))
		return t
	}
	t.Evidence = fmt.Sprintf("our ISN moved by %d, the server's by %d: neither a cookie's nor Linux's clock (a cookie's minute counter may have moved, or the server is not Linux)", ours, theirs)
	return t
}

// tsvalTest: the TSvals' low 6 bits on one 4-tuple.
func tsvalTest(a, b *probe.Result) Test {
	t := Test{Name: "tsval"}
	switch {
	case !synAck(a) || !synAck(b):
		t.Evidence = "not both SYNs got a SYN-ACK"
		return t
	case !a.Options.Timestamps || !b.Options.Timestamps:
		t.Evidence = "the server sends no timestamps"
		return t
	case a.SrcPort != b.SrcPort:
		t.Evidence = "the two SYNs left from different ports"
		return t
	}
	// Our own clock says how far a stateful server's moved: a
	// millisecond a tick, give or take the path's and our scheduler's
	// jitter (up to 3 ms here). Its low 6 bits then moved unless the
	// ticks came near a multiple of 64.
	ms := b.Sent.Sub(a.Sent).Milliseconds()
	switch {
	case ms < 0 || ms%64 < 3 || ms%64 > 61:
		t.Evidence = fmt.Sprintf("the SYNs left %d ms apart, too near a multiple of 64 ticks to tell", ms)
	case a.Options.TSVal&63 == b.Options.TSVal&63:
		t.Vote = Cookie
		t.Evidence = fmt.Sprintf("the low 6 bits stayed %#x over %d ms (TSvals %d, %d)", a.Options.TSVal&63, ms, a.Options.TSVal, b.Options.TSVal)
	default:
		t.Vote = Stateful
		t.Evidence = fmt.Sprintf("the low 6 bits moved with the clock: %d ticks in %d ms", b.Options.TSVal-a.Options.TSVal, ms)
	}
	return t
}

// optionsTest: what a SYN without timestamps got, against the control.
func optionsTest(control, noTS *probe.Result) Test {
	t := Test{Name: "options"}
	switch {
	case !synAck(control) || !synAck(noTS):
		t.Evidence = "not both SYNs got a SYN-ACK"
		return t
	case !control.Options.SACKPermitted && control.Options.WScale < 0:
		t.Evidence = "the server offers neither SACK nor window scale to any SYN"
		return t
	}
	lost := !noTS.Options.SACKPermitted && noTS.Options.WScale < 0
	if lost {
		t.Vote = Cookie
		t.Evidence = "a SYN without timestamps got MSS only: no SACK, no window scale"
		return t
	}
	t.Vote = Stateful
	t.Evidence = "a SYN without timestamps still got SACK or window scale"
	return t
}

// retransTest: a cookie never resends its SYN-ACK.
func retransTest(syn *probe.Result) Test {
	t := Test{Name: "retransmission"}
	if syn.State != probe.StateOpen {
		t.Evidence = "the schedule's SYN got no SYN-ACK"
		return t
	}
	if len(syn.SynAckRetrans) > 0 {
		t.Vote = Stateful
		t.Evidence = "the SYN-ACK came again once"
		if n := len(syn.SynAckRetrans); n > 1 {
			t.Evidence = fmt.Sprintf("the SYN-ACK came again %d times", n)
		}
		return t
	}
	// No retransmission is a cookie's sign, and also tcp_synack_retries=0's
	// or a short watch's: it only counts with another test.
	t.Evidence = "the SYN-ACK never came again (also true of tcp_synack_retries=0)"
	return t
}

// scheduleFinding says what a SYN-ACK retransmission schedule implies:
// Linux doubles its RTO from 1 s, tcp_synack_retries resends in all.
func scheduleFinding(at []time.Duration, observe time.Duration) string {
	s := "the SYN-ACK came again once"
	if len(at) > 1 {
		s = fmt.Sprintf("the SYN-ACK came again %d times", len(at))
	}
	s += fmt.Sprintf(" within %v: initial RTO about %.1f s", observe, at[0].Seconds())
	doubling := len(at) > 1
	for i := 1; i < len(at); i++ {
		gap, prev := at[i]-at[i-1], at[i-1]
		if i > 1 {
			prev = at[i-1] - at[i-2]
		}
		// Gaps double, within Linux's timer slack (up to 15% long).
		if r := float64(gap) / float64(prev); r < 1.7 || r > 2.4 {
			doubling = false
		}
	}
	if doubling {
		s += ", doubling as Linux does"
	}
	return s
}

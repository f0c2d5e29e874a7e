package probe

import (
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/synprobe/synprobe/rawsock/wire"
)

// State is a probe's verdict.
type State uint8

const (
	// StateOpen: the target answered SYN-ACK.
	StateOpen State = iota + 1
	// StateClosed: the target (or something on its behalf) answered RST.
	StateClosed
	// StateFiltered: no answer within the timeout, or an ICMP error.
	StateFiltered
	// StateError: the probe could not be sent.
	StateError
)

func (s State) String() string {
	switch s {
	case StateOpen:
		return "open"
	case StateClosed:
		return "closed"
	case StateFiltered:
		return "filtered"
	case StateError:
		return "error"
	}
	return "state-" + strconv.Itoa(int(s))
}

// Reasons given with a verdict, besides the ICMP names of
// wire.ICMPReason.
const (
	ReasonSYNACK = "syn-ack"
	ReasonRST    = "rst"
	// ReasonACKRST: a RST answered a bare ACK (ModeBareACK).
	ReasonACKRST    = "rst-to-ack"
	ReasonTimeout   = "timeout"
	ReasonSendError = "send-error"
	// ReasonTTLExceeded is wire.ICMPReason's name for an ICMP or ICMPv6
	// time exceeded in transit: the SYN's TTL (hop limit) ran out at a
	// router, so it never reached the target and tested nothing of its
	// port. Its state is filtered (no answer from the target), but it is
	// no filter's doing: a scan never counts it as meeting an
	// expectation of filtered.
	ReasonTTLExceeded = "icmp-ttl-exceeded"
)

// SynAckRTO is the initial retransmission timeout of a SYN-ACK: 1 s on
// Linux (TCP_TIMEOUT_INIT) and in RFC 6298. A SYN-ACK that arrives this
// long after our SYN may be a retransmission (Result.MaybeRetransmit).
const SynAckRTO = time.Second

// Target is one address and port to probe.
type Target struct {
	Name string     // the host as the user gave it
	Addr netip.Addr // the address probed
	Port uint16
	Src  netip.Addr // the source address to send from
}

// String returns addr:port, with brackets for IPv6.
func (t *Target) String() string {
	return netip.AddrPortFrom(t.Addr, t.Port).String()
}

// Result is the outcome of one probe. The engine reuses one Result for
// every callback: copy what you keep.
type Result struct {
	Target  *Target
	Index   int // index of Target among the call's targets (Config.Targets, Rounds.Targets); 0 for Client.Probe
	Seq     int // round number of this probe, from 0; 0 for Client.Probe
	SrcPort uint16
	ISN     uint32
	Sent    time.Time // wall clock when the SYN was sent
	Mode    Mode

	State  State
	Reason string
	Err    error // StateError only

	// RTT is reply time minus send time; zero for timeouts and errors.
	// KernelClock tells whether both ends came from kernel timestamps.
	RTT         time.Duration
	KernelClock bool
	// MaybeRetransmit: the SYN-ACK arrived SynAckRTO or later after our
	// SYN, when the server may already have sent it again (its first
	// lost): RTT may then measure the server's timer, not the path. Such
	// answers are counted but kept out of the RTT statistics (Stats).
	MaybeRetransmit bool

	// From is who answered: the target for TCP replies, the sender of an
	// ICMP error otherwise.
	From               netip.Addr
	ICMPType, ICMPCode uint8

	// The reply's IP header (TCP replies and ICMP errors).
	TTL  uint8
	TOS  uint8 // TOS or traffic class, ECN bits included
	IPID uint16
	DF   bool

	// The reply's TCP header (SYN-ACK or RST). PeerSeq is its sequence
	// number: a SYN-ACK's is the server's ISN.
	Flags   wire.TCPFlags
	PeerSeq uint32
	Window  uint16
	Options wire.SYNOptions

	// Close reports how the connection ended (ModeFIN, open probes).
	Close *CloseReport
	// Interrupted (ModeFIN) says the probe was
	// interrupted (its run or call ended, its client closed) while the
	// connection was open or closing: the engine reset it, and Close is
	// nil.
	Interrupted bool
	// Trace lists the probe's segments (Config.Trace).
	Trace []TraceEvent
	// SynAckRetrans (ModeWithhold) lists when the server sent its
	// SYN-ACK again, after the first, while the third ACK was withheld:
	// by the kernel's receive stamps when both have one (else the
	// user-space clock). Empty: no retransmission within Observe.
	SynAckRetrans []time.Duration
	// AfterACK (ModeWithhold with LateACK) is what followed the third
	// ACK sent when the watch ended.
	AfterACK AckOutcome

	// With ProbeOptions.Packets: SYN is the SYN as sent (IP header
	// first), and Quote, when an ICMP error answered, the packet it
	// quotes as received (IP header first, as much as the router sent).
	SYN, Quote []byte
}

// AckOutcome is what followed a third ACK that a server got late
// (ModeWithhold with LateACK).
type AckOutcome uint8

const (
	// AckNotSent: no late ACK (none asked for, or the watch ended
	// otherwise).
	AckNotSent AckOutcome = iota
	// AckSilent: nothing came back by the time the server's next SYN-ACK
	// was due: a listener with room took the connection (into its accept
	// queue), or one that waits for data (TCP_DEFER_ACCEPT with a long
	// deferral) ignored the ACK; synprobe then resets it.
	AckSilent
	// AckDropped: the SYN-ACK came again: the server dropped our ACK, as
	// Linux does while the accept queue is full (or a TCP_DEFER_ACCEPT
	// listener, for an ACK without data, after its deferral).
	AckDropped
	// AckReset: a RST answered the ACK at once, as Linux does for a full
	// accept queue with tcp_abort_on_overflow=1.
	AckReset
	// AckAccepted: the server spoke on the connection (data or a FIN):
	// its application accepted it.
	AckAccepted
)

var ackOutcomeNames = [...]string{"not-sent", "silent", "dropped", "reset", "accepted"}

func (a AckOutcome) String() string {
	if int(a) < len(ackOutcomeNames) {
		return ackOutcomeNames[a]
	}
	return fmt.Sprintf("ack-outcome-%d", a)
}

// Answered reports whether anything answered the probe.
func (r *Result) Answered() bool { return answered(r.State, r.Reason) }

// answered reports whether a verdict came from an answer.
func answered(s State, reason string) bool {
	return s == StateOpen || s == StateClosed || (s == StateFiltered && reason != ReasonTimeout)
}

// IsICMP reports whether an ICMP error decided the probe.
func (r *Result) IsICMP() bool { return r.ICMPType != 0 }

// Hops returns the hop count implied by the reply's TTL, assuming the
// sender started from the nearest common initial TTL at or above it (32,
// 64, 128 or 255), and that initial value.
func Hops(ttl uint8) (hops int, initial int) {
	for _, init := range []int{32, 64, 128, 255} {
		if int(ttl) <= init {
			return init - int(ttl), init
		}
	}
	return 0, 255
}

package probe

import (
	"net/netip"
	"time"

	"github.com/synprobe/synprobe/rawsock/wire"
)

// ScanResult is the verdict on one (address, port) pair of a scan. It is
// a value that refers to no memory of the scanner's: copy it to keep it.
// A scan is in ModeRST: it has no connection, close report or trace, and
// each pair is reported once whatever its retries.
type ScanResult struct {
	Addr netip.Addr // the pair's address
	Port uint16     // and port
	Src  netip.Addr // our source address for the pair
	// SrcPort is the source port of the probe that was answered (each
	// pass over a pair takes another); 0 for timeouts and errors.
	SrcPort uint16

	State  State
	Reason string
	Err    error // StateError only: the kernel's refusal to send

	// Sent is when the answered probe left and RTT the time to its
	// answer. Both are zero when the send time is unknown: for timeouts
	// and errors, and for an answer whose probe's send time was
	// forgotten (its slot in the scan's table of send times reused).
	// KernelClock says whether both ends came from kernel timestamps.
	Sent        time.Time
	RTT         time.Duration
	KernelClock bool
	// MaybeRetransmit: a SYN-ACK SynAckRTO or later after its probe, as
	// Result.MaybeRetransmit.
	MaybeRetransmit bool

	// Reply describes the answer: TCP replies and ICMP errors.
	Reply

	// Hint flags evidence that something other than the target answered:
	// "icmp-from-other-address" (an ICMP error from another address than
	// the pair's), "rst-ttl-differs-from-syn-ack" (a RST whose TTL implies
	// another hop count than the host's SYN-ACK, when that SYN-ACK came
	// first).
	Hint string
}

// AddrPort returns the pair.
func (r *ScanResult) AddrPort() netip.AddrPort { return netip.AddrPortFrom(r.Addr, r.Port) }

// Answered reports whether anything answered the pair's probes.
func (r *ScanResult) Answered() bool { return answered(r.State, r.Reason) }

// Timed reports whether the answer has an RTT (Sent, RTT).
func (r *ScanResult) Timed() bool { return !r.Sent.IsZero() }

// Reply is what a probe's answer showed of its sender.
type Reply struct {
	// From is who answered: the target for TCP replies, the sender of an
	// ICMP error otherwise.
	From               netip.Addr
	ICMPType, ICMPCode uint8

	// The reply's IP header (TCP replies and ICMP errors).
	TTL  uint8
	TOS  uint8 // TOS or traffic class, ECN bits included
	IPID uint16
	DF   bool

	// The reply's TCP header (SYN-ACK or RST).
	Flags   wire.TCPFlags
	Window  uint16
	Options wire.SYNOptions
}

// IsICMP reports whether an ICMP error was the answer.
func (r *Reply) IsICMP() bool { return r.ICMPType != 0 }

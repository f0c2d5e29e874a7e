package probe

import (
	"strconv"
	"time"

	"github.com/synprobe/synprobe/rawsock/wire"
)

// ClosePattern says how the remote host closed a connection in ModeFIN.
type ClosePattern uint8

const (
	CloseNone ClosePattern = iota // not a fin-mode probe, or not open
	// Close3Way: the peer answered our FIN with a FIN+ACK that acknowledged
	// it (ACK and FIN merged).
	Close3Way
	// Close4Way: the peer acknowledged our FIN (pure ACK or data) and sent
	// its FIN later, in another segment.
	Close4Way
	// ClosePeerFirst: the peer sent its FIN before ours.
	ClosePeerFirst
	// CloseSimultaneous: the peer's FIN crossed ours: it did not
	// acknowledge our FIN, which was already sent.
	CloseSimultaneous
	// CloseRST: the peer reset the connection instead of closing it.
	CloseRST
	// CloseNoFIN: the peer acknowledged our FIN but sent no FIN within
	// the close timeout (it sits in CLOSE_WAIT); we reset it.
	CloseNoFIN
	// CloseNoACK: the peer never acknowledged our FIN (or, with data,
	// stopped acknowledging our data); we reset it.
	CloseNoACK
	// CloseZeroWindow: the peer's receive window stayed closed, so our
	// data could not all be sent before the close timeout, nor our FIN;
	// we reset it.
	CloseZeroWindow
	numClosePatterns
)

var closeNames = [...]string{"", "3-way", "4-way", "peer-first", "simultaneous", "rst", "no-fin", "no-ack", "zero-window"}

func (c ClosePattern) String() string {
	if int(c) < len(closeNames) {
		return closeNames[c]
	}
	return "close-" + strconv.Itoa(int(c))
}

// ClosePatterns lists every pattern, in report order.
func ClosePatterns() []ClosePattern {
	return []ClosePattern{Close3Way, Close4Way, ClosePeerFirst, CloseSimultaneous, CloseRST, CloseNoFIN, CloseNoACK, CloseZeroWindow}
}

// PatternSet is a set of close patterns.
type PatternSet uint16

// Add returns s with pat in it.
func (s PatternSet) Add(pat ClosePattern) PatternSet { return s | 1<<pat }

// Has reports whether pat is in s.
func (s PatternSet) Has(pat ClosePattern) bool { return s&(1<<pat) != 0 }

// Patterns lists s in report order.
func (s PatternSet) Patterns() []ClosePattern {
	var out []ClosePattern
	for _, p := range ClosePatterns() {
		if s.Has(p) {
			out = append(out, p)
		}
	}
	return out
}

// CloseReport describes how a fin-mode probe's connection ended. Times are
// kernel-stamped when Kernel is true.
type CloseReport struct {
	Pattern ClosePattern
	// Alternatives are the other patterns the evidence does not rule
	// out, because a segment was lost that would have told them apart
	// (empty when the pattern is certain); Pattern is the explanation
	// that needs the fewest losses. Note says what was inferred.
	Alternatives PatternSet
	Note         string
	// AckTime: our FIN -> the peer's acknowledgement of it, from the
	// transmission of our FIN that the acknowledgement answers (by the
	// TSecr it echoes; without timestamps, the latest sent at least the
	// lowest RTT before it arrived).
	AckTime time.Duration
	HasAck  bool
	// FinTime: our FIN -> the peer's FIN; for ClosePeerFirst, the end of
	// the handshake -> the peer's FIN.
	FinTime time.Duration
	HasFin  bool
	// PeerDataBytes: bytes the peer sent after our FIN (half-close).
	PeerDataBytes int
	// PeerBytes: every byte the peer sent.
	PeerBytes int
	// PeerRetransmits: segments the peer sent again (a retransmitted FIN
	// means our last ACK was lost).
	PeerRetransmits int
	// FinRetransmits: how often we sent our FIN again.
	FinRetransmits int
	// DataAckTime: our --data -> the peer's acknowledgement of all of it.
	DataAckTime time.Duration
	HasDataAck  bool
	// DataBytes is the size of Config.Data, DataAcked how much of it the
	// peer acknowledged; DataRetransmits counts data segments sent again,
	// WindowProbes the probes of a closed window, SegmentSize the payload
	// of a full data segment (after the peer's MSS, the path MTU and our
	// options).
	DataBytes, DataAcked int
	DataRetransmits      int
	WindowProbes         int
	SegmentSize          int
	// SendErrors counts segments of the connection the kernel refused
	// (any kind); SendError is the first such error.
	SendErrors int
	SendError  error
	Kernel     bool
}

// TCPState is a TCP connection state (RFC 793 names, as Linux prints them).
type TCPState uint8

const (
	StateNone TCPState = iota
	Listen
	SynSent
	SynRcvd
	Established
	FinWait1
	FinWait2
	CloseWait
	Closing
	LastAck
	TimeWait
	Closed
)

var tcpStateNames = [...]string{"-", "LISTEN", "SYN_SENT", "SYN_RCVD", "ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2", "CLOSE_WAIT", "CLOSING", "LAST_ACK", "TIME_WAIT", "CLOSED"}

func (s TCPState) String() string {
	if int(s) < len(tcpStateNames) {
		return tcpStateNames[s]
	}
	return "STATE-" + strconv.Itoa(int(s))
}

// TraceEvent is one segment of a probe's exchange (--trace).
type TraceEvent struct {
	At       time.Duration // since our SYN
	Out      bool          // sent by us
	Flags    wire.TCPFlags
	Seq, Ack uint32 // relative to the sender's and the receiver's ISN
	Len      int
	Win      uint16
	Us, Peer TCPState // both sides' states after this segment, as inferred
	Note     string   // "retransmission", "out of order", "duplicate", ...
}

package probe

import "time"

// Recorder gets a copy of every packet an engine sends or receives, for a
// capture file (synprobe --pcap). It is nil by default, and then costs
// nothing. Its methods may be called from several goroutines at once (a
// scan's senders and receiver), must return quickly and must not keep pkt.
//
// A packet sent is recorded once it has left (Send returned no error),
// with the user-space clock's time before its send; the kernel's transmit
// stamp of it, the one the engine takes for RTTs, follows with TxStamp
// when the kernel gave one, by the id it was sent with. A packet received
// is recorded as it was read, every packet the engine read and considered,
// answers or not, with its kernel receive stamp (zero when the kernel gave
// none).
//
// The scan engine in package scan records through the same interface.
type Recorder interface {
	// Sent records pkt, a whole IP packet sent with transmit stamp id at
	// user-clock time at. tx is its kernel transmit stamp when already
	// known, else zero; id NoTxStamp says that none will come.
	Sent(pkt []byte, id uint32, tx, at time.Time)
	// TxStamp gives the kernel transmit stamp of the packet last sent
	// with id.
	TxStamp(id uint32, tx time.Time)
	// Received records pkt, an IP packet read at kernel stamp rx (zero:
	// none) and user-clock time at.
	Received(pkt []byte, rx, at time.Time)
}

// NoTxStamp is the id of a packet recorded (Recorder.Sent) whose kernel
// transmit stamp will not come: no packet is sent with it (the engine
// skips it, as core.ScanID).
const NoTxStamp = ^uint32(0)

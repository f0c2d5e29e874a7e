package rawsock

import (
	"net/netip"
	"time"
)

// RingConfig configures ListenRing.
type RingConfig struct {
	// Ifindex is the interface to receive on; 0 means every interface.
	Ifindex int
	// Src4 and Src6 are our addresses: only packets to them are accepted.
	// An invalid one accepts nothing of its family. Addrs adds more (a
	// scan may send from several); with more than 16 of a family, the
	// filter takes packets to any address.
	Src4, Src6 netip.Addr
	Addrs      []netip.Addr
	// PortLo..PortHi are our source ports, as for Config.
	PortLo, PortHi uint16
	// BlockSize and Blocks size the ring (defaults 32 KiB and 512: 16
	// MiB, 150,000 answers, half a second of them at 300,000 per second).
	// Blocks are handed over part-filled after Retire, so small blocks
	// waste less room while packets are few. BlockSize must be a power of
	// two multiple of the page size.
	BlockSize, Blocks int
	// Retire is how long the kernel fills a block before handing it over
	// while packets are few (default 1 ms; whole milliseconds).
	Retire time.Duration
	// Outgoing also delivers our probes as they leave: TCP SYNs from our
	// addresses and ports, each with the kernel's time as the device took
	// it, the time a capture on the interface gives it. A probe's copy
	// comes before any answer to it. The kernel then clones every packet
	// the host sends, on the interfaces the ring taps, for the filter to
	// look at, as it does for a capture.
	Outgoing bool
}

// Ring receives the answers to our probes through an AF_PACKET socket
// with a TPACKET_V3 ring mapped into our memory: the kernel writes the
// packets into blocks of the ring and hands a block over when it is full
// or Retire has passed, so reading costs no system call per packet and no
// socket buffer, lock or wake-up per packet either. For a scan's flood of
// RSTs that is most of what receiving costs on a raw socket.
//
// The socket taps the interface (ETH_P_ALL, outgoing packets ignored
// unless Outgoing asks for our probes) with a BPF filter that accepts,
// from IPv4 and IPv6 packets addressed to our addresses, TCP segments to a
// port in [PortLo, PortHi] and ICMP errors quoting a TCP segment from one
// (the Conn's filters, after the address check). Each packet carries the
// kernel's receive timestamp.
//
// A tap sees packets before the host's IP stack does, whether or not it
// then accepts them: also answers the kernel drops, and answers to
// packets not ours but sent from our ports (the BPF filter cannot check
// cookies). Parse, which verifies checksums, must be called on every
// packet; Read itself drops (BadChecksums counts them) those that Parse
// would take as left partial by a sender on this host when the kernel
// says they are not (TP_STATUS_CSUMNOTREADY), and whose checksum is wrong.
//
// Read may be called by one goroutine at a time; Wake and Close from any.
type Ring struct {
	ringSys // the platform's part
}

// ListenRing opens the ring in the calling thread's network namespace.
// It needs CAP_NET_RAW; without it the error wraps os.ErrPermission.
func ListenRing(cfg RingConfig) (*Ring, error) { return listenRing(cfg) }

// Read waits for the next block of packets and calls fn for each, in
// arrival order, with the packet (from its IP header; valid only during
// the call) and the kernel's receive time. It returns the number of
// packets.
//
// Read blocks until a block is ready, the deadline passes (it returns
// os.ErrDeadlineExceeded; a zero deadline never passes, one in the past
// only looks), Wake is called (ErrWoken) or the Ring is closed
// (net.ErrClosed).
func (r *Ring) Read(deadline time.Time, fn func(pkt []byte, rx time.Time)) (int, error) {
	return r.readWith(deadline, fn, nil)
}

// BadChecksums returns how many packets Read dropped for a wrong checksum.
func (r *Ring) BadChecksums() uint64 { return r.badChecksums() }

// Pending returns the share of the ring's blocks that hold packets not
// yet read, from 0 to 1: how close it is to dropping packets. A scan's
// senders wait while it is high, so that a reader held up (by a slow
// consumer of its output, say) costs time, not answers. Safe to call from
// any goroutine; after Close it returns 0.
func (r *Ring) Pending() float64 { return r.pending() }

// Wake makes a blocked Read (or the next one) return ErrWoken.
func (r *Ring) Wake() { r.wake() }

// Dropped returns how many packets that passed the filter found the ring
// full and were lost, since ListenRing.
func (r *Ring) Dropped() uint64 { return r.dropped() }

// Mark returns how many packets the kernel has put in the ring so far,
// for ReadTo. Safe to call from any goroutine.
func (r *Ring) Mark() uint64 { return r.mark() }

// ReadTo reports whether Read has handed over every packet the kernel had
// put in the ring when Mark returned mark: none waits in a block not yet
// handed over (the kernel hands a part-filled block over only after
// Retire, later on a busy machine) or not yet read (a reader held up by
// a slow consumer of its output, or starved of CPU). A scan ends a pass
// only then, so that what reached the ring before the pass's time was up
// is read, however long that takes, and packets that come later (a flood
// to our ports) do not hold it up. Packets the kernel has received but
// not yet processed are not in the ring yet: see KernelBacklog. Safe to
// call from any goroutine.
func (r *Ring) ReadTo(mark uint64) bool { return r.read.Load() >= mark }

// Close unmaps the ring and closes the socket. A Read blocked in another
// goroutine returns net.ErrClosed first. Further calls do nothing.
func (r *Ring) Close() error { return r.close() }

package rawsock

import "github.com/synprobe/synprobe/rawsock/wire"

// batchSlot is the room for one packet in a Batch: batchHeadroom bytes for
// a link-layer header (PacketSender), then the IP packet, a SYN with options.
const (
	batchSlot     = 128
	batchHeadroom = 16
)

// Batch collects packets of one address family to send in one go
// (sendmmsg(2) on Linux). Build each packet into Slot, then Commit it. A
// Batch is not safe for concurrent use; give each sending goroutine its
// own.
type Batch struct {
	buf     []byte
	lens    []int
	ids     []uint32 // transmit-stamp ids (SetID)
	n       int
	v6      bool
	stamped bool     // SetID was called: the packets ask for transmit stamps
	sys     batchSys // the platform's per-packet message headers
}

// NewBatch returns a Batch of up to size packets.
func NewBatch(size int) *Batch {
	b := &Batch{buf: make([]byte, size*batchSlot), lens: make([]int, size), ids: make([]uint32, size)}
	b.sys.init(size)
	return b
}

// SetID names the transmit timestamp of committed packet i: a sender that
// takes stamps (ReadTxStamps) asks the kernel to stamp every packet of a
// Batch on which SetID was ever called, each with its id, as the packet
// enters the device's queue. Give every packet its id before each send.
func (b *Batch) SetID(i int, id uint32) {
	b.ids[i] = id
	b.stamped = true
}

// ID returns the id SetID gave packet i.
func (b *Batch) ID(i int) uint32 { return b.ids[i] }

// Stamped reports whether SetID was ever called on the batch.
func (b *Batch) Stamped() bool { return b.stamped }

// Len is the number of packets committed.
func (b *Batch) Len() int { return b.n }

// Full reports whether no slot is left.
func (b *Batch) Full() bool { return b.n == len(b.lens) }

// IPv6 reports the family of the packets committed so far.
func (b *Batch) IPv6() bool { return b.v6 }

// Slot returns the buffer for the next packet.
func (b *Batch) Slot() []byte { return b.buf[b.n*batchSlot+batchHeadroom : (b.n+1)*batchSlot] }

// Packet returns committed packet i.
func (b *Batch) Packet(i int) []byte {
	off := i*batchSlot + batchHeadroom
	return b.buf[off : off+b.lens[i]]
}

// frame returns committed packet i with hdr bytes of headroom before it.
func (b *Batch) frame(i, hdr int) []byte {
	off := i*batchSlot + batchHeadroom
	return b.buf[off-hdr : off+b.lens[i]]
}

// Commit adds the n-byte packet built in Slot. It returns false (and adds
// nothing) when the batch is full or the packet's address family differs
// from the batch's: send the batch first.
func (b *Batch) Commit(n int) bool {
	if b.Full() || n < wire.IPv4MinimumSize || n > batchSlot-batchHeadroom {
		return false
	}
	v6 := b.buf[b.n*batchSlot+batchHeadroom]>>4 == 6
	if b.n > 0 && v6 != b.v6 {
		return false
	}
	b.v6 = v6
	b.lens[b.n] = n
	b.ids[b.n] = 0
	b.n++
	return true
}

// Reset empties the batch.
func (b *Batch) Reset() { b.n = 0 }

// Consume removes the first n packets (the ones sent); the rest move to
// the front, to be sent again.
func (b *Batch) Consume(n int) {
	if n >= b.n {
		b.n = 0
		return
	}
	copy(b.buf, b.buf[n*batchSlot:b.n*batchSlot])
	copy(b.lens, b.lens[n:b.n])
	copy(b.ids, b.ids[n:b.n])
	b.n -= n
}

// SendBatch sends the batch with as few sendmmsg calls as the kernel
// allows and removes what it sent from it. It returns how many packets
// went out; on an error (ENOBUFS when the device queue is full, say) the
// rest stay in the batch.
// The packets of a stamped Batch (SetID) get the scheduler's transmit
// stamp, for ReadTxStamps, unless the Conn was opened with NoTxStamps or
// the kernel cannot take an id per packet (before Linux 6.13); other
// packets get none. Several
// goroutines may call SendBatch at once, each with its own Batch.
func (c *Conn) SendBatch(b *Batch) (sent int, err error) { return c.sendBatch(b) }

// BatchStamps reports whether every packet of a stamped Batch gets its
// transmit stamp under its own id (for ReadTxStamps with BulkStamp, else
// for TxTime), from
// each of the Conn's sending sockets: they take stamps (no NoTxStamps) and
// the kernel takes an id per packet (Linux 6.13 and later). Then a batch
// is timed as well as packets sent one at a time.
func (c *Conn) BatchStamps() bool { return c.batchStamps() }

// ShareSends reports whether batches (a scan's) and packets sent one at a
// time (a prober's) may share the Conn's send sockets without mixing up
// their transmit stamps: the kernel takes an id per packet (BatchStamps),
// and the Conn's one reader of each error queue gives the stamps of
// BulkStamp ids to ReadTxStamps and the others to TxTime; or the Conn
// takes no transmit stamps at all (NoTxStamps). Before Linux 6.13, the
// kernel numbers a socket's stamps itself, and the packets of a batch
// sent between two probes would shift the count that TxTime maps them
// by.
func (c *Conn) ShareSends() bool { return c.shareSends() }

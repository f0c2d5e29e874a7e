package rawsock

import (
	"errors"
	"time"
)

// ErrNoTxStamps is what ReadTxStamps returns when the sender takes no
// transmit stamps for batches: it was opened without them, or the kernel
// cannot take an id per packet (SCM_TS_OPT_ID, Linux 6.13).
var ErrNoTxStamps = errors.New("rawsock: no transmit stamps for batches")

// TxStamps holds kernel transmit timestamps read in bulk from a send
// socket's error queue (Conn.ReadTxStamps, PacketSender.ReadTxStamps),
// each with the id its packet was sent with (Batch.SetID). It is not safe
// for concurrent use; give each reading goroutine its own.
type TxStamps struct {
	ids []uint32
	ns  []int64 // unix nanoseconds
	n   int
	sys txStampsSys // the platform's receive headers
}

// NewTxStamps returns a TxStamps with room for size stamps.
func NewTxStamps(size int) *TxStamps {
	s := &TxStamps{ids: make([]uint32, max(size, 1)), ns: make([]int64, max(size, 1))}
	s.sys.init(len(s.ids))
	return s
}

// Len returns the number of stamps held.
func (s *TxStamps) Len() int { return s.n }

// Full reports whether there is no room left: more stamps may be waiting.
func (s *TxStamps) Full() bool { return s.n == len(s.ids) }

// Stamp returns stamp i: the id of its packet and the time the kernel took
// the packet into the device's queue.
func (s *TxStamps) Stamp(i int) (id uint32, t time.Time) { return s.ids[i], time.Unix(0, s.ns[i]) }

// Reset empties s.
func (s *TxStamps) Reset() { s.n = 0 }

// Add appends a stamp, if there is room, and reports whether there was:
// for fakes of the senders.
func (s *TxStamps) Add(id uint32, t time.Time) bool {
	if s.Full() {
		return false
	}
	s.ids[s.n], s.ns[s.n] = id, t.UnixNano()
	s.n++
	return true
}

// BulkStamp marks the ids of the packets whose transmit stamps are read
// in bulk (ReadTxStamps) rather than one by one (TxTime): on a Conn, one
// reader of each send socket's error queue sorts the stamps by this bit,
// so that a scan's batches and a prober's packets share the sockets
// and each finds its own stamps. Ids without it are TxTime's.
const BulkStamp = 1 << 31

// bulkStamps bounds the stamps a Conn keeps for ReadTxStamps, per send
// socket: past it, the oldest are forgotten (a reader that does not
// read).
const bulkStamps = 1 << 16

// ReadTxStamps empties s and fills it with the transmit stamps the kernel
// has reported for the packets sent on the Conn's send sockets with ids
// that carry BulkStamp (Batch.SetID, Send), as many as s holds: when s is
// Full, call again. It never blocks. Stamps of other ids are TxTime's,
// and stay there: the two share the sockets. It returns ErrNoTxStamps
// when the Conn was opened with NoTxStamps, or the kernel cannot take an
// id per packet (SCM_TS_OPT_ID, Linux 6.13).
func (c *Conn) ReadTxStamps(s *TxStamps) error {
	s.Reset()
	return c.readTxStamps(s)
}

// ReadTxStamps empties s and fills it with the transmit stamps the kernel
// has reported for the packets of stamped batches (Batch.SetID), whatever
// their ids (the sender's socket is its own: nothing else reads it), as
// many as s holds; ErrNoTxStamps when the kernel cannot take an id per
// packet.
func (p *PacketSender) ReadTxStamps(s *TxStamps) error {
	s.Reset()
	return p.readTxStamps(s)
}

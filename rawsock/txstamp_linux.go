//go:build linux

package rawsock

import (
	"encoding/binary"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Transmit stamps for batches (scans).
//
// Every packet of a stamped Batch carries two control messages: one that
// asks for the scheduler's stamp alone (SCM_TIMESTAMPING with
// SOF_TIMESTAMPING_TX_SCHED, which replaces the socket's own choice for
// that packet), and SCM_TS_OPT_ID with the packet's id. The kernel then
// queues, per packet, one small message on the socket's error queue
// (OPT_TSONLY: the time and the id, not the packet), and ReadTxStamps
// reads up to a TxStamps' worth with one recvmmsg. So a scan pays no system
// call per probe for its stamps: one per batch sent, as it pays one
// sendmmsg per batch.

// batchTimestamping is what a PacketSender sets on its socket: ids and
// software stamps reported without the packet, and no stamp taken unless
// a packet asks for one.
const batchTimestamping = unix.SOF_TIMESTAMPING_SOFTWARE | unix.SOF_TIMESTAMPING_OPT_ID | unix.SOF_TIMESTAMPING_OPT_TSONLY

// stampCtlSize is the room for a stamped packet's two control messages.
var stampCtlSize = 2 * unix.CmsgSpace(4)

// txCtlSize is the room for one error-queue message's control messages:
// the timestamps (SO_TIMESTAMPING_NEW, three struct __kernel_timespec) and
// the extended error with its offender address (IPV6_RECVERR the largest).
const txCtlSize = 192

type txStampsSys struct {
	msgs []unix.Mmsghdr
	ctl  []byte // txCtlSize per message
}

func (s *txStampsSys) init(size int) {
	s.msgs = make([]unix.Mmsghdr, size)
	s.ctl = make([]byte, size*txCtlSize)
}

// tsOptID reports whether the kernel takes an id per packet for its
// transmit stamps (SCM_TS_OPT_ID, Linux 6.13). It asks once, with a UDP
// socket whose MSG_PROBE send parses the control message and sends
// nothing: an unknown one fails with EINVAL.
var tsOptID = sync.OnceValue(func() bool {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPING_NEW, batchTimestamping) != nil {
		return false
	}
	var ctl [24]byte
	h := (*unix.Cmsghdr)(unsafe.Pointer(&ctl[0]))
	h.Level, h.Type = unix.SOL_SOCKET, unix.SCM_TS_OPT_ID
	h.SetLen(unix.CmsgLen(4))
	const msgProbe = 0x10 // MSG_PROBE: do not send
	var b [1]byte
	err = unix.Sendmsg(fd, b[:], ctl[:unix.CmsgSpace(4)], &unix.SockaddrInet4{Port: 9, Addr: [4]byte{127, 0, 0, 1}}, msgProbe)
	return err != unix.EINVAL
})

// stampCtl writes packet i's control messages, asking for the scheduler's
// stamp with id, into m and points message h at them.
func (m *batchSys) stampCtl(h *unix.Msghdr, i int, id uint32) {
	ctl := m.ctl[i*stampCtlSize : (i+1)*stampCtlSize]
	one := unix.CmsgSpace(4)
	c := (*unix.Cmsghdr)(unsafe.Pointer(&ctl[0]))
	c.Level, c.Type = unix.SOL_SOCKET, unix.SO_TIMESTAMPING
	c.SetLen(unix.CmsgLen(4))
	binary.NativeEndian.PutUint32(ctl[unix.CmsgLen(0):], unix.SOF_TIMESTAMPING_TX_SCHED)
	c = (*unix.Cmsghdr)(unsafe.Pointer(&ctl[one]))
	c.Level, c.Type = unix.SOL_SOCKET, unix.SCM_TS_OPT_ID
	c.SetLen(unix.CmsgLen(4))
	binary.NativeEndian.PutUint32(ctl[one+unix.CmsgLen(0):], id)
	h.Control = &ctl[0]
	h.SetControllen(stampCtlSize)
}

// noStampCtl points message h at a control message that asks for no
// stamp at all, whatever the socket asks for.
func (m *batchSys) noStampCtl(h *unix.Msghdr, i int) {
	ctl := m.ctl[i*stampCtlSize : (i+1)*stampCtlSize]
	c := (*unix.Cmsghdr)(unsafe.Pointer(&ctl[0]))
	c.Level, c.Type = unix.SOL_SOCKET, unix.SO_TIMESTAMPING
	c.SetLen(unix.CmsgLen(4))
	binary.NativeEndian.PutUint32(ctl[unix.CmsgLen(0):], 0)
	h.Control = &ctl[0]
	h.SetControllen(unix.CmsgSpace(4))
}

// readTxStamps adds to s the stamps waiting on fd's error queue, until s
// is full or the queue empty, with one recvmmsg per TxStamps' room.
func readTxStamps(fd int, s *TxStamps) error {
	for s.n < len(s.ids) {
		m := s.sys.msgs[:len(s.ids)-s.n]
		for i := range m {
			m[i] = unix.Mmsghdr{}
			m[i].Hdr.Control = &s.sys.ctl[i*txCtlSize]
			m[i].Hdr.SetControllen(txCtlSize)
		}
		r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)),
			unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return nil
		default:
			return opError("recvmmsg", e)
		}
		for i := range int(r) {
			if id, ns, ok := parseTxStamp(s.sys.ctl[i*txCtlSize : i*txCtlSize+int(m[i].Hdr.Controllen)]); ok {
				s.ids[s.n], s.ns[s.n] = id, ns
				s.n++
			}
		}
		if int(r) < len(m) {
			return nil
		}
	}
	return nil
}

// parseTxStamp reads one error-queue message's control messages: a
// transmit stamp's id and software time, if it is one.
func parseTxStamp(ctl []byte) (id uint32, ns int64, ok bool) {
	var got bool
	walkCmsgs(ctl, func(level, typ int32, d []byte) {
		switch {
		case level == unix.SOL_SOCKET && typ == unix.SO_TIMESTAMPING_NEW && len(d) >= 16:
			ns = timespecNano(d)
		case (level == unix.SOL_IP && typ == unix.IP_RECVERR) || (level == unix.SOL_IPV6 && typ == unix.IPV6_RECVERR) ||
			(level == unix.SOL_PACKET && typ == unix.PACKET_TX_TIMESTAMP):
			if len(d) >= int(unsafe.Sizeof(unix.SockExtendedErr{})) {
				ee := (*unix.SockExtendedErr)(unsafe.Pointer(&d[0]))
				if ee.Origin == unix.SO_EE_ORIGIN_TIMESTAMPING {
					id, got = ee.Data, true
				}
			}
		}
	})
	return id, ns, got && ns != 0
}

func (c *Conn) readTxStamps(s *TxStamps) error {
	if (c.send4 == nil || !c.send4.batchStamps) && (c.send6 == nil || !c.send6.batchStamps) {
		return ErrNoTxStamps
	}
	// One reader of each error queue, TxTime's (drain): it keeps the
	// stamps of BulkStamp ids apart for this one.
	for _, snd := range []*sender{c.send4, c.send6} {
		if snd == nil || !snd.batchStamps || s.Full() {
			continue
		}
		snd.mu.Lock()
		if snd.bulkLen < len(s.ids)-s.n {
			snd.drain()
		}
		snd.popBulk(s)
		snd.mu.Unlock()
	}
	return nil
}

func (p *PacketSender) readTxStamps(s *TxStamps) error {
	if !p.stamps {
		return ErrNoTxStamps
	}
	return readTxStamps(p.fd, s)
}

// enableStamps turns transmit stamps on for stamped batches, where the
// kernel takes an id per packet. The error queue is bounded by the
// socket's receive buffer (this socket receives nothing else): room for
// some thousand stamps between two reads.
func (p *PacketSender) enableStamps() {
	if !tsOptID() || unix.SetsockoptInt(p.fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPING_NEW, batchTimestamping) != nil {
		return
	}
	if unix.SetsockoptInt(p.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 1<<20) != nil {
		_ = unix.SetsockoptInt(p.fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	}
	p.stamps = true
}

//go:build linux

package rawsock

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// batchSys holds a Batch's sendmmsg(2) headers, filled in by SendBatch.
type batchSys struct {
	msgs []unix.Mmsghdr
	iovs []unix.Iovec
	sa4  []unix.RawSockaddrInet4
	sa6  []unix.RawSockaddrInet6
	ctl  []byte // stampCtlSize per packet: its transmit-stamp request
}

func (s *batchSys) init(size int) {
	s.msgs = make([]unix.Mmsghdr, size)
	s.iovs = make([]unix.Iovec, size)
	s.sa4 = make([]unix.RawSockaddrInet4, size)
	s.sa6 = make([]unix.RawSockaddrInet6, size)
	s.ctl = make([]byte, size*stampCtlSize)
}

// sendBatch is Conn.SendBatch on Linux: sendmmsg(2).
func (c *Conn) sendBatch(b *Batch) (sent int, err error) {
	defer func() { b.Consume(sent) }()
	s := c.send4
	if b.v6 {
		s = c.send6
	}
	if s == nil || b.n == 0 {
		return 0, nil
	}
	stamp := b.stamped && s.batchStamps
	// The socket would stamp the other packets, with no id of ours:
	// they ask for none (where the kernel takes ids, it takes that too).
	noStamp := s.txStamps && s.batchStamps && !stamp
	m := &b.sys
	for i := range b.n {
		pkt := b.Packet(i)
		iov := &m.iovs[i]
		iov.Base = &pkt[0]
		iov.SetLen(len(pkt))
		h := &m.msgs[i]
		*h = unix.Mmsghdr{}
		h.Hdr.Iov = iov
		h.Hdr.Iovlen = 1
		switch {
		case stamp:
			m.stampCtl(&h.Hdr, i, b.ids[i])
		case noStamp:
			m.noStampCtl(&h.Hdr, i)
		}
		if b.v6 {
			sa := &m.sa6[i]
			sa.Family = unix.AF_INET6
			copy(sa.Addr[:], pkt[24:40])
			h.Hdr.Name = (*byte)(unsafe.Pointer(sa))
			h.Hdr.Namelen = unix.SizeofSockaddrInet6
		} else {
			sa := &m.sa4[i]
			sa.Family = unix.AF_INET
			copy(sa.Addr[:], pkt[16:20])
			h.Hdr.Name = (*byte)(unsafe.Pointer(sa))
			h.Hdr.Namelen = unix.SizeofSockaddrInet4
		}
	}
	s.fdMu.RLock()
	defer s.fdMu.RUnlock()
	if s.fd < 0 {
		return 0, errClosed("sendmmsg")
	}
	return sendmmsg(s.fd, m.msgs[:b.n])
}

// sendmmsg sends msgs with as few sendmmsg(2) calls as the kernel allows
// and returns how many went out.
func sendmmsg(fd int, msgs []unix.Mmsghdr) (int, error) {
	sent := 0
	for sent < len(msgs) {
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[sent])), uintptr(len(msgs)-sent), 0, 0, 0)
		if e != 0 {
			if e == unix.EINTR {
				continue
			}
			return sent, opError("sendmmsg", e)
		}
		sent += int(r)
	}
	return sent, nil
}

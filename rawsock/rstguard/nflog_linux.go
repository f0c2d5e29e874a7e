//go:build linux

package rstguard

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"sync"
	"time"
	"unsafe"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/synprobe/synprobe/rawsock/internal/nl"
)

// nfnetlink_log values (linux/netfilter/nfnetlink_log.h) that
// golang.org/x/sys/unix does not define.
const (
	nfulnlMsgPacket = 0 // NFULNL_MSG_PACKET
	nfulnlMsgConfig = 1 // NFULNL_MSG_CONFIG
	nfulaCfgCmd     = 1 // NFULA_CFG_CMD: struct nfulnl_msg_config_cmd
	nfulaCfgMode    = 2 // NFULA_CFG_MODE: struct nfulnl_msg_config_mode
	nfulaCfgQthresh = 5 // NFULA_CFG_QTHRESH
	nfulaCfgFlags   = 6 // NFULA_CFG_FLAGS
	nfulnlCmdBind   = 1 // NFULNL_CFG_CMD_BIND
	nfulnlCopyMeta  = 1 // NFULNL_COPY_META: no packet bytes
	nfulnlFlagSeq   = 1 // NFULNL_CFG_F_SEQ: number the instance's messages
	nfulaSeq        = 12
)

// dropLog counts the kernel RSTs a Guard drops, without any privilege
// once it exists: the guard's rules log each packet they drop to an
// nfnetlink_log group that this socket alone is bound to (binding needs
// CAP_NET_ADMIN; receiving needs nothing). Reading the rules' counters
// instead would be a netfilter request, which the kernel refuses to a
// process without CAP_NET_ADMIN, as synprobe is once its set-up is done.
//
// A goroutine reads the socket as messages come (the Go runtime's poller
// wakes it), so its buffer does not fill in any ordinary run. Should a
// burst fill it all the same, the kernel drops messages and counts the
// drops (SO_MEMINFO); NETLINK_NO_ENOBUFS keeps the socket from going
// "congested", a state in which the kernel would drop everything until the
// queue is empty. The count is the packet messages read plus the messages
// dropped, less the answers to our own requests that were dropped; and at
// least the kernel's highest message number plus one (NFULNL_CFG_F_SEQ).
//
// Count must include every message queued before it was called, however
// far behind the reader is: it sends a request of its own on the socket
// (a configuration message that changes nothing) and waits until the
// reader has seen the kernel's answer, which the kernel queues behind
// them. Without CAP_NET_ADMIN the answer is an EPERM error, which serves
// as well. An answer the kernel dropped is asked for again. When the
// socket closes (Close, exit, SIGKILL), the kernel unbinds the group.
type dropLog struct {
	group  uint16
	c      *nl.NFConn
	done   chan struct{} // closed when the reader has returned
	syncMu sync.Mutex    // one sync at a time

	mu      sync.Mutex
	cond    *sync.Cond // signalled when the reader has read something
	packets uint64     // packet messages read
	maxSeq  uint64     // the highest message number read, plus one
	asked   uint64     // requests Count sent
	answers uint64     // answers to them read
	answer  uint32     // the sequence number of the last one
	closed  bool
}

// newDropLog binds a free nfnetlink_log group to a new socket. It needs
// CAP_NET_ADMIN.
func newDropLog() (*dropLog, error) {
	c, err := nl.DialNetfilter()
	if err != nil {
		return nil, err
	}
	_ = c.Conn.SetOption(netlink.NoENOBUFS, true)
	// Room for bursts between two reads: SO_RCVBUFFORCE while the
	// capability is there.
	if rc, err := c.Conn.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20) != nil {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
			}
		})
	}
	var group uint16
	for try := 0; ; try++ {
		var b [2]byte
		rand.Read(b[:])
		group = 0x1000 + binary.BigEndian.Uint16(b[:])%0xf000 // 4096-65535
		err = nflogBind(c, group)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EBUSY) || try == 16 {
			c.Close()
			return nil, err
		}
	}
	l := &dropLog{group: group, c: c, done: make(chan struct{})}
	l.cond = sync.NewCond(&l.mu)
	if err := c.Conn.SetReadDeadline(time.Time{}); err != nil {
		c.Close()
		return nil, nl.Wrap("deadline", err)
	}
	go l.read()
	return l, nil
}

// nflogConfig returns a configuration message for group.
func nflogConfig(group uint16, attrs func(ae *netlink.AttributeEncoder)) (netlink.Message, error) {
	return nl.NFMessage(unix.NFNL_SUBSYS_ULOG<<8|nfulnlMsgConfig, 0, unix.AF_UNSPEC, group, attrs)
}

// nflogBind binds group to c's socket: the kernel sends it the packets
// that rules log to the group, metadata only, one message each, numbered.
func nflogBind(c *nl.NFConn, group uint16) error {
	m, err := nflogConfig(group, func(ae *netlink.AttributeEncoder) {
		ae.Bytes(nfulaCfgCmd, []byte{nfulnlCmdBind})
		ae.Bytes(nfulaCfgMode, []byte{0, 0, 0, 0, nfulnlCopyMeta, 0}) // copy_range (be32), copy_mode, pad
		ae.Uint32(nfulaCfgQthresh, 1)
		ae.Uint16(nfulaCfgFlags, nfulnlFlagSeq)
	})
	if err != nil {
		return err
	}
	errno, text, err := c.Request(m)
	if err != nil {
		return err
	}
	if errno != 0 {
		return nl.KernelError(uint16(m.Header.Type), errno, text)
	}
	return nil
}

// read counts the logged packets and the answers until the socket is
// closed.
func (l *dropLog) read() {
	defer close(l.done)
	for {
		msgs, err := l.c.Conn.Receive()
		var oe *netlink.OpError
		l.mu.Lock()
		switch {
		case l.closed:
			l.mu.Unlock()
			return
		case errors.As(err, &oe) && oe.Sequence != 0:
			// The EPERM answer to Count's request.
			l.answered(oe.Sequence)
		case err != nil:
			// Nothing else is expected; do not spin on it.
			l.mu.Unlock()
			time.Sleep(time.Millisecond)
			continue
		}
		for _, m := range msgs {
			switch {
			case m.Header.Type == netlink.Error:
				l.answered(m.Header.Sequence)
			case m.Header.Type == netlink.HeaderType(unix.NFNL_SUBSYS_ULOG<<8|nfulnlMsgPacket):
				l.packets++
				if n, ok := nflogSeq(m); ok {
					l.maxSeq = max(l.maxSeq, uint64(n)+1)
				}
			}
		}
		l.cond.Broadcast()
		l.mu.Unlock()
	}
}

// answered records the answer to request seq. l.mu is held.
func (l *dropLog) answered(seq uint32) {
	l.answers++
	l.answer = max(l.answer, seq)
}

// nflogSeq reads the instance sequence number of a packet message.
func nflogSeq(m netlink.Message) (uint32, bool) {
	ad, err := nl.NFDecoder(m)
	if err != nil {
		return 0, false
	}
	var seq uint32
	ok := false
	for ad.Next() {
		if ad.Type() == nfulaSeq {
			seq, ok = ad.Uint32(), true
		}
	}
	return seq, ok && ad.Err() == nil
}

// Count returns how many packets the group's rules have logged so far.
func (l *dropLog) Count() uint64 {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.count(l.sync())
}

// count returns the count; synced says that every answer to our requests
// has been read or dropped. l.mu is held.
func (l *dropLog) count(synced bool) uint64 {
	n := l.maxSeq
	if drops, ok := l.drops(); ok && synced {
		n = max(n, l.packets+drops-(l.asked-l.answers))
	}
	return n
}

// drops returns how many messages the kernel dropped for want of room in
// the socket's buffer (SO_MEMINFO, SK_MEMINFO_DROPS).
func (l *dropLog) drops() (uint64, bool) {
	rc, err := l.c.Conn.SyscallConn()
	if err != nil {
		return 0, false
	}
	var mi [9]uint32 // SK_MEMINFO_VARS; SK_MEMINFO_DROPS is the last
	var e unix.Errno
	err = rc.Control(func(fd uintptr) {
		size := uint32(unsafe.Sizeof(mi))
		_, _, e = unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO,
			uintptr(unsafe.Pointer(&mi[0])), uintptr(unsafe.Pointer(&size)), 0)
	})
	if err != nil || e != 0 {
		return 0, false
	}
	return uint64(mi[8]), true
}

// sync waits, at most nl.Timeout, until the reader has seen everything
// queued before the call, and reports whether it has. l.mu and l.syncMu
// are held.
func (l *dropLog) sync() bool {
	deadline := time.Now().Add(nl.Timeout)
	for !l.closed && time.Now().Before(deadline) {
		// A configuration message for the group with nothing to change:
		// acknowledged, or refused with EPERM without CAP_NET_ADMIN.
		m, err := nflogConfig(l.group, nil)
		if err != nil {
			return false
		}
		m.Header.Flags = netlink.Request | netlink.Acknowledge
		seq := l.c.NextSeq(1)
		if l.c.Send(seq, m) != nil {
			return false
		}
		l.asked++
		// The answer comes within microseconds unless the kernel dropped
		// it (the buffer was full): then ask again.
		retry := time.Now().Add(50 * time.Millisecond)
		timer := time.AfterFunc(50*time.Millisecond, func() {
			l.mu.Lock()
			l.cond.Broadcast()
			l.mu.Unlock()
		})
		for l.answer < seq && !l.closed && time.Now().Before(retry) {
			l.cond.Wait()
		}
		timer.Stop()
		if l.answer >= seq {
			return true
		}
	}
	return false
}

// Close reads what is queued and closes the socket, unbinding the group.
func (l *dropLog) Close() error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.sync()
	l.closed = true
	l.cond.Broadcast()
	l.mu.Unlock()
	err := l.c.Conn.Close()
	<-l.done
	return err
}

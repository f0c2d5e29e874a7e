//go:build linux

package rawsock

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
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

// dropLog counts the kernel RSTs an RSTGuard drops, without any privilege
// once it exists: the guard's rules log each packet they drop to an
// nfnetlink_log group that this socket alone is bound to (binding needs
// CAP_NET_ADMIN; receiving needs nothing). Reading the rules' counters
// instead would be a netfilter request, which the kernel refuses to a
// process without CAP_NET_ADMIN, as synprobe is once its set-up is done.
//
// The kernel numbers the group's messages (NFULNL_CFG_F_SEQ), so a message
// lost to a full socket buffer still counts: the count is the highest
// number seen, plus one. A goroutine reads the socket as messages come
// (the Go runtime's poller wakes it), so the buffer does not fill. When
// the socket closes (Close, exit, SIGKILL), the kernel unbinds the group.
//
// Count must include every message queued before it was called, however
// far behind the reader is: it sends a request of its own on the socket
// (a configuration message that changes nothing) and waits until the
// reader has seen the kernel's answer, which the kernel queues behind
// them. Without CAP_NET_ADMIN the answer is an EPERM error, which serves
// as well.
type dropLog struct {
	group uint16
	c     *nfConn
	done  chan struct{} // closed when the reader has returned

	mu      sync.Mutex
	cond    *sync.Cond // signalled when count, answered or overrun change
	count   uint64
	answer  uint32 // the sequence number of the last answer the reader saw
	overrun uint64 // how often the buffer overflowed (ENOBUFS)
	closed  bool
}

// newDropLog binds a free nfnetlink_log group to a new socket. It needs
// CAP_NET_ADMIN.
func newDropLog() (*dropLog, error) {
	c, err := dialNetfilter()
	if err != nil {
		return nil, err
	}
	// Room for bursts between two reads: SO_RCVBUFFORCE while the
	// capability is there.
	if rc, err := c.c.SyscallConn(); err == nil {
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
			c.close()
			return nil, err
		}
	}
	l := &dropLog{group: group, c: c, done: make(chan struct{})}
	l.cond = sync.NewCond(&l.mu)
	if err := c.c.SetReadDeadline(time.Time{}); err != nil {
		c.close()
		return nil, nlError("deadline", err)
	}
	go l.read()
	return l, nil
}

// nflogConfig returns a configuration message for group.
func nflogConfig(group uint16, attrs func(ae *netlink.AttributeEncoder)) (netlink.Message, error) {
	return nfMessage(unix.NFNL_SUBSYS_ULOG<<8|nfulnlMsgConfig, 0, unix.AF_UNSPEC, group, attrs)
}

// nflogBind binds group to c's socket: the kernel sends it the packets
// that rules log to the group, metadata only, one message each, numbered.
func nflogBind(c *nfConn, group uint16) error {
	m, err := nflogConfig(group, func(ae *netlink.AttributeEncoder) {
		ae.Bytes(nfulaCfgCmd, []byte{nfulnlCmdBind})
		ae.Bytes(nfulaCfgMode, []byte{0, 0, 0, 0, nfulnlCopyMeta, 0}) // copy_range (be32), copy_mode, pad
		ae.Uint32(nfulaCfgQthresh, 1)
		ae.Uint16(nfulaCfgFlags, nfulnlFlagSeq)
	})
	if err != nil {
		return err
	}
	errno, text, err := c.request(m)
	if err != nil {
		return err
	}
	if errno != 0 {
		return kernelError(uint16(m.Header.Type), errno, text)
	}
	return nil
}

// read counts the logged packets until the socket is closed.
func (l *dropLog) read() {
	defer close(l.done)
	for {
		msgs, err := l.c.c.Receive()
		var oe *netlink.OpError
		l.mu.Lock()
		switch {
		case l.closed:
			l.mu.Unlock()
			return
		case errors.As(err, &oe) && oe.Sequence != 0:
			// The EPERM answer to Count's request.
			l.answer = max(l.answer, oe.Sequence)
		case errors.Is(err, unix.ENOBUFS):
			// Messages were lost; their numbers were not. An answer
			// that Count waits for may be among them.
			l.overrun++
		case err != nil:
			// Nothing else is expected; do not spin on it.
			l.mu.Unlock()
			time.Sleep(time.Millisecond)
			continue
		}
		for _, m := range msgs {
			switch {
			case m.Header.Type == netlink.Error:
				l.answer = max(l.answer, m.Header.Sequence)
			case m.Header.Type == netlink.HeaderType(unix.NFNL_SUBSYS_ULOG<<8|nfulnlMsgPacket):
				if n, ok := nflogSeq(m); ok {
					l.count = max(l.count, uint64(n)+1)
				}
			}
		}
		l.cond.Broadcast()
		l.mu.Unlock()
	}
}

// nflogSeq reads the instance sequence number of a packet message.
func nflogSeq(m netlink.Message) (uint32, bool) {
	ad, err := nfDecoder(m)
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
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sync()
	return l.count
}

// sync waits, at most nlTimeout, until the reader has seen everything
// queued before the call. l.mu is held.
func (l *dropLog) sync() {
	deadline := time.Now().Add(nlTimeout)
	timer := time.AfterFunc(nlTimeout, func() {
		l.mu.Lock()
		l.cond.Broadcast()
		l.mu.Unlock()
	})
	defer timer.Stop()
	for !l.closed && time.Now().Before(deadline) {
		// A configuration message for the group with nothing to change:
		// acknowledged, or refused with EPERM without CAP_NET_ADMIN.
		m, err := nflogConfig(l.group, nil)
		if err != nil {
			return
		}
		m.Header.Flags = netlink.Request | netlink.Acknowledge
		seq := l.c.nextSeq(1)
		if l.c.send(seq, m) != nil {
			return
		}
		overrun := l.overrun
		for l.answer < seq && l.overrun == overrun && !l.closed && time.Now().Before(deadline) {
			l.cond.Wait()
		}
		if l.answer >= seq {
			return
		}
		// The buffer overflowed meanwhile, perhaps with our answer:
		// ask again.
	}
}

// Close reads what is queued and closes the socket, unbinding the group.
func (l *dropLog) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.sync()
	l.closed = true
	l.cond.Broadcast()
	l.mu.Unlock()
	err := l.c.c.Close()
	<-l.done
	return err
}

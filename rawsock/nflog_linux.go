//go:build linux

package rawsock

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"os"
	"sync"

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
// number seen, plus one. The socket is read by the Go runtime's poller
// whenever a message arrives, so the buffer does not fill. When the socket
// closes (Close, exit, SIGKILL), the kernel unbinds the group.
type dropLog struct {
	group uint16
	f     *os.File
	done  chan struct{}

	mu    sync.Mutex
	fd    int // -1 once closed
	count uint64
	buf   []byte
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
	if unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20) != nil {
		_ = unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	}
	var group uint16
	for try := 0; ; try++ {
		var b [2]byte
		rand.Read(b[:])
		group = 0x1000 + binary.BigEndian.Uint16(b[:])%0xf000 // 4096-65535
		err = c.nflogBind(group)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EBUSY) || try == 16 {
			c.close()
			return nil, err
		}
	}
	if err := unix.SetNonblock(c.fd, true); err != nil {
		c.close()
		return nil, opError("fcntl", err)
	}
	l := &dropLog{group: group, fd: c.fd, f: os.NewFile(uintptr(c.fd), "nflog"), done: make(chan struct{}), buf: c.buf}
	rc, err := l.f.SyscallConn()
	if err != nil {
		l.f.Close()
		return nil, err
	}
	go func() {
		defer close(l.done)
		// Read returns once the file is closed.
		_ = rc.Read(func(uintptr) bool {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.drain()
			return false // wait for the next message
		})
	}()
	return l, nil
}

// nflogBind binds group to this socket: the kernel sends it the packets
// that rules log to the group, metadata only, one message each, numbered.
func (c *nlConn) nflogBind(group uint16) error {
	seq := c.nextSeq(1)
	var w nlWriter
	w.begin(unix.NFNL_SUBSYS_ULOG<<8|nfulnlMsgConfig, unix.NLM_F_REQUEST|unix.NLM_F_ACK, seq, unix.AF_UNSPEC, group)
	w.attr(nfulaCfgCmd, []byte{nfulnlCmdBind})
	w.attr(nfulaCfgMode, []byte{0, 0, 0, 0, nfulnlCopyMeta, 0}) // copy_range (be32), copy_mode, pad
	w.u32(nfulaCfgQthresh, 1)
	w.attr(nfulaCfgFlags, binary.BigEndian.AppendUint16(nil, nfulnlFlagSeq))
	w.finish()
	if err := c.send(w.b); err != nil {
		return err
	}
	var errno unix.Errno
	err := c.receive(seq, seq, func(h unix.NlMsghdr, body []byte) (bool, error) {
		if h.Type != unix.NLMSG_ERROR {
			return false, nil
		}
		e, _, err := parseAck(h, body)
		errno = e
		return true, err
	})
	if err != nil {
		return err
	}
	if errno != 0 {
		return opError("nfnetlink_log bind", errno)
	}
	return nil
}

// drain reads every queued message. l.mu is held.
func (l *dropLog) drain() {
	for l.fd >= 0 {
		n, _, _, err := recvmsg(l.fd, l.buf, nil, unix.MSG_DONTWAIT, nil)
		if err == unix.EINTR || err == unix.ENOBUFS {
			continue // ENOBUFS: messages were lost; their numbers were not
		}
		if err != nil {
			return // EAGAIN: empty
		}
		_ = walkMsgs(l.buf[:n], func(h unix.NlMsghdr, body []byte) error {
			if h.Type != unix.NFNL_SUBSYS_ULOG<<8|nfulnlMsgPacket || len(body) < sizeofNfgenmsg {
				return nil
			}
			return walkAttrs(body[sizeofNfgenmsg:], func(typ uint16, d []byte) error {
				if typ == nfulaSeq && len(d) == 4 {
					l.count = max(l.count, uint64(binary.BigEndian.Uint32(d))+1)
				}
				return nil
			})
		})
	}
}

// Count returns how many packets the group's rules have logged so far.
func (l *dropLog) Count() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.drain()
	return l.count
}

// Close reads what is queued and closes the socket, unbinding the group.
func (l *dropLog) Close() error {
	l.mu.Lock()
	if l.fd < 0 {
		l.mu.Unlock()
		return nil
	}
	l.drain()
	l.fd = -1
	l.mu.Unlock()
	err := l.f.Close()
	<-l.done
	return err
}

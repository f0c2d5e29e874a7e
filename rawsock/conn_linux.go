//go:build linux

package rawsock

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/synprobe/synprobe/rawsock/internal/nl"

	"github.com/synprobe/synprobe/rawsock/wire"
)

// connSys is a Conn's Linux part: the sockets and the epoll set.
type connSys struct {
	send4, send6 *sender

	rx      []rxSock // tcp4, icmp4, tcp6, icmp6 (those opened)
	next    int      // round-robin start for Recv
	poller           // the receive sockets; its eventfd wakes Recv on Close
	oob     [512]byte
	recvMu  sync.Mutex // held by Recv for its whole call; Close waits for it
	closeMu sync.Mutex
	closed  bool
	// mtu asks the path MTU through sockets opened by Listen: they
	// belong to Listen's network namespace, as the raw sockets do,
	// whichever thread asks later.
	mtu *SourceFinder
}

type rxSock struct {
	fd    int
	v6    bool
	proto uint8 // upper-layer protocol of the socket, for the synthesized IPv6 header
	// batch holds what the last recvmmsg read; ready: the socket may
	// have more (not known empty since epoll last said it had).
	batch *rxBatch
	ready bool
}

// sender is one IPPROTO_RAW socket with its transmit-timestamp store.
type sender struct {
	mu    sync.Mutex   // serializes Send and the stamp store
	fdMu  sync.RWMutex // held for writing only by Close: fd stays valid while read-held
	fd    int
	v6    bool
	optID bool   // SCM_TS_OPT_ID accepted: the kernel reports our ids
	kid   uint32 // kernel's OPT_ID counter, when optID is false
	sa4   unix.SockaddrInet4
	sa6   unix.SockaddrInet6
	cmsg  [24]byte // SCM_TS_OPT_ID control message
	// The error queue's messages, read in batches: each a stamp's.
	errHdrs [errBatchLen]unix.Mmsghdr
	errOOBs [errBatchLen][256]byte
	stamps  [stampSlots]txStamp
	kmap    [stampSlots]uint32 // kernel id -> our id, when optID is false
	// bulk holds the stamps of BulkStamp ids for ReadTxStamps, oldest
	// first from bulkHead: a ring of bulkStamps, made at the first.
	bulk              []bulkStamp
	bulkHead, bulkLen int

	// txStamps: the socket stamps what it sends (Config.NoTxStamps not
	// set). batchStamps: stamped batches ask for stamps with their ids
	// (stamps on, and the kernel takes SCM_TS_OPT_ID).
	txStamps, batchStamps bool
}

// stampSlots is how many packets' stamps are kept, by id: more than the
// packets a full probe table sends before its answers are timed.
const stampSlots = 16384

// bulkStamp is one transmit stamp kept for ReadTxStamps.
type bulkStamp struct {
	id uint32
	ns int64 // unix nanoseconds
}

// pushBulk keeps a stamp for ReadTxStamps, forgetting the oldest when
// bulkStamps are kept. s.mu is held.
func (s *sender) pushBulk(id uint32, ns int64) {
	if s.bulk == nil {
		s.bulk = make([]bulkStamp, bulkStamps)
	}
	if s.bulkLen == len(s.bulk) {
		s.bulkHead = (s.bulkHead + 1) % len(s.bulk)
		s.bulkLen--
	}
	s.bulk[(s.bulkHead+s.bulkLen)%len(s.bulk)] = bulkStamp{id, ns}
	s.bulkLen++
}

// popBulk moves the kept stamps into t, oldest first, as many as it
// holds. s.mu is held.
func (s *sender) popBulk(t *TxStamps) {
	for s.bulkLen > 0 && !t.Full() {
		b := s.bulk[s.bulkHead]
		t.ids[t.n], t.ns[t.n] = b.id, b.ns
		t.n++
		s.bulkHead = (s.bulkHead + 1) % len(s.bulk)
		s.bulkLen--
	}
}

// txStamp holds the kernel's transmit timestamps of one packet.
type txStamp struct {
	id         uint32
	used       bool
	sched, snd int64 // unix nanoseconds; 0 when not reported
}

// listen is Listen on Linux.
func listen(cfg Config) (*Conn, error) {
	c := &Conn{iface: cfg.Interface, connSys: connSys{poller: poller{epfd: -1, evfd: -1, parkfd: -1}, mtu: &SourceFinder{Interface: cfg.Interface}}}
	if err := c.open(cfg); err != nil {
		c.close()
		return nil, err
	}
	if !cfg.SendOnly {
		warmRxStamps()
	}
	return c, nil
}

// warmRxStamps returns once the kernel stamps received packets. Enabling
// receive stamps flips a global static key from a work queue, so the first
// packets after setsockopt may arrive unstamped; a datagram sent to
// ourselves on loopback shows when the key is on. Bounded to 50 ms; it
// gives up at once when loopback is down.
func warmRxStamps() {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	lo := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
	if unix.Bind(fd, lo) != nil || unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPING_NEW, rxTimestamping) != nil {
		return
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return
	}
	tv := unix.Timeval{Usec: 5000}
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	var b [1]byte
	var oob [128]byte
	for deadline := time.Now().Add(50 * time.Millisecond); time.Now().Before(deadline); time.Sleep(100 * time.Microsecond) {
		if unix.Sendto(fd, b[:], 0, sa) != nil {
			return
		}
		_, oobn, _, err := recvmsg(fd, b[:], oob[:], 0, nil)
		if err != nil {
			continue
		}
		var ts int64
		walkCmsgs(oob[:oobn], func(level, typ int32, d []byte) {
			if level == unix.SOL_SOCKET && typ == unix.SO_TIMESTAMPING_NEW && len(d) >= 16 {
				ts = timespecNano(d)
			}
		})
		if ts != 0 {
			return
		}
	}
}

func (c *Conn) open(cfg Config) error {
	var err error
	if err := c.poller.open(c.isClosed, true); err != nil {
		return err
	}
	if cfg.IPv4 {
		if c.send4, err = newSender(false, cfg); err != nil {
			return err
		}
	}
	if cfg.IPv6 {
		if c.send6, err = newSender(true, cfg); err != nil {
			return err
		}
	}
	for v6, want := range [2]bool{cfg.IPv4, cfg.IPv6} {
		if want {
			if _, err := c.mtu.socket(v6 == 1); err != nil {
				return err
			}
		}
	}
	if cfg.SendOnly {
		return nil
	}
	if cfg.IPv4 {
		if err := c.addRx(unix.AF_INET, unix.IPPROTO_TCP, wire.TCPFilterIPv4(cfg.PortLo, cfg.PortHi), cfg); err != nil {
			return err
		}
		if err := c.addRx(unix.AF_INET, unix.IPPROTO_ICMP, wire.ICMPFilterIPv4(cfg.PortLo, cfg.PortHi), cfg); err != nil {
			return err
		}
	}
	if cfg.IPv6 {
		if err := c.addRx(unix.AF_INET6, unix.IPPROTO_TCP, wire.TCPFilterIPv6(cfg.PortLo, cfg.PortHi), cfg); err != nil {
			return err
		}
		if err := c.addRx(unix.AF_INET6, unix.IPPROTO_ICMPV6, wire.ICMPFilterIPv6(cfg.PortLo, cfg.PortHi), cfg); err != nil {
			return err
		}
	}
	return nil
}

func rawSocket(family, proto int, cfg Config) (int, error) {
	fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, proto)
	if err != nil {
		return -1, opError("socket", err)
	}
	if cfg.Interface != "" {
		if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, cfg.Interface); err != nil {
			unix.Close(fd)
			return -1, opError("setsockopt SO_BINDTODEVICE "+cfg.Interface, err)
		}
	}
	return fd, nil
}

// Timestamping flags. The receive sockets ask for software receive stamps;
// the send sockets for the scheduler and driver transmit stamps, reported
// with an id and without the packet (OPT_TSONLY).
const (
	rxTimestamping = unix.SOF_TIMESTAMPING_RX_SOFTWARE | unix.SOF_TIMESTAMPING_SOFTWARE
	txTimestamping = unix.SOF_TIMESTAMPING_TX_SCHED | unix.SOF_TIMESTAMPING_TX_SOFTWARE |
		unix.SOF_TIMESTAMPING_SOFTWARE | unix.SOF_TIMESTAMPING_OPT_ID | unix.SOF_TIMESTAMPING_OPT_TSONLY
)

func (c *Conn) addRx(family, proto int, filter []bpf.Instruction, cfg Config) error {
	fd, err := rawSocket(family, proto, cfg)
	if err != nil {
		return err
	}
	s := rxSock{fd: fd, v6: family == unix.AF_INET6, proto: uint8(proto), ready: true}
	c.rx = append(c.rx, s) // closed by Close from here on
	if c.rx[len(c.rx)-1].batch, err = newRxBatch(); err != nil {
		return err
	}
	prog, err := bpf.Assemble(filter)
	if err != nil {
		return fmt.Errorf("rawsock: assemble filter: %w", err)
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: (*unix.SockFilter)(unsafe.Pointer(&prog[0]))}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
		return opError("setsockopt SO_ATTACH_FILTER", err)
	}
	if proto == unix.IPPROTO_ICMPV6 {
		// Let only the error types through before BPF runs at all.
		var f unix.ICMPv6Filter
		for i := range f.Data {
			f.Data[i] = 0xffffffff
		}
		for _, t := range []uint{1, 2, 3, 4} {
			f.Data[t>>5] &^= 1 << (t & 31)
		}
		if err := unix.SetsockoptICMPv6Filter(fd, unix.SOL_ICMPV6, unix.ICMPV6_FILTER, &f); err != nil {
			return opError("setsockopt ICMPV6_FILTER", err)
		}
	}
	if proto == unix.IPPROTO_TCP && s.v6 {
		// The kernel verifies the TCP checksum of what it queues, as TCP
		// itself would: a partial checksum from a sender on this host
		// passes, a wrong one is dropped. (ICMPv6 sockets do so by
		// default; IPv4 raw sockets cannot, and Parse checks instead.)
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_CHECKSUM, wire.TCPChecksumOffset); err != nil {
			return opError("setsockopt IPV6_CHECKSUM", err)
		}
	}
	if s.v6 {
		for _, o := range []int{unix.IPV6_RECVHOPLIMIT, unix.IPV6_RECVTCLASS, unix.IPV6_RECVPKTINFO} {
			if err := unix.SetsockoptInt(fd, unix.SOL_IPV6, o, 1); err != nil {
				return opError("setsockopt IPV6_RECV*", err)
			}
		}
	}
	// Stamping is enabled before the first packet we care about arrives:
	// the kernel turns receive stamps on lazily.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPING_NEW, rxTimestamping); err != nil {
		return opError("setsockopt SO_TIMESTAMPING", err)
	}
	// A big queue so that bursts of replies are not dropped; FORCE needs
	// CAP_NET_ADMIN, the plain one is capped by rmem_max.
	rcvbuf := cfg.RecvBuffer
	if rcvbuf <= 0 {
		rcvbuf = 8 << 20
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
	}
	// The socket queued every packet since socket(); drop what came before
	// the filter.
	var buf [64]byte
	for i := 0; i < 1<<16; i++ {
		if _, _, err := unix.Recvfrom(fd, buf[:], unix.MSG_DONTWAIT); err != nil {
			break
		}
	}
	return c.watch(fd)
}

func newSender(v6 bool, cfg Config) (*sender, error) {
	family := unix.AF_INET
	if v6 {
		family = unix.AF_INET6
	}
	fd, err := rawSocket(family, unix.IPPROTO_RAW, cfg)
	if err != nil {
		return nil, err
	}
	s := &sender{fd: fd, v6: v6}
	if cfg.Mark != 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(cfg.Mark)); err != nil {
			unix.Close(fd)
			return nil, opError("setsockopt SO_MARK", err)
		}
	}
	if !cfg.NoTxStamps {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPING_NEW, txTimestamping); err != nil {
			unix.Close(fd)
			return nil, opError("setsockopt SO_TIMESTAMPING", err)
		}
		s.txStamps, s.batchStamps = true, tsOptID()
		// The error queue is bounded by the receive buffer (the socket
		// receives nothing else): room for a scan's stamps between reads.
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 1<<20) != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
		}
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 4<<20) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
	}
	// The transmit stamps wait on the error queue, which the receive
	// buffer bounds: at the default 208 KiB the kernel drops the stamps
	// of all but the first 140 or so packets of a burst sent before the
	// engine reads any (measured: 1,000 probes at once timed by the
	// user-space clock, milliseconds late). 4 MiB holds a full table's.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	}
	// SCM_TS_OPT_ID (Linux 6.13) lets each sendmsg name the id its
	// timestamps will carry; older kernels count sends instead. Asked
	// once of the kernel (tsOptID): a send's EINVAL may be a blackhole
	// route's, which says nothing of the control message.
	h := (*unix.Cmsghdr)(unsafe.Pointer(&s.cmsg[0]))
	h.Level = unix.SOL_SOCKET
	h.Type = unix.SCM_TS_OPT_ID
	h.SetLen(unix.CmsgLen(4))
	s.optID = s.txStamps && tsOptID()
	return s, nil
}

func (c *Conn) families() (v4, v6 bool) { return c.send4 != nil, c.send6 != nil }

func (c *Conn) shareSends() bool {
	for _, s := range []*sender{c.send4, c.send6} {
		if s != nil && s.txStamps && !s.batchStamps {
			return false
		}
	}
	return true
}

func (c *Conn) batchStamps() bool {
	if c.send4 == nil && c.send6 == nil {
		return false
	}
	for _, s := range []*sender{c.send4, c.send6} {
		if s != nil && !(s.txStamps && s.batchStamps) {
			return false
		}
	}
	return true
}

// send is Conn.Send on Linux.
func (c *Conn) send(pkt []byte, id uint32) error {
	var s *sender
	switch pkt[0] >> 4 {
	case 4:
		s = c.send4
	case 6:
		s = c.send6
	}
	if s == nil {
		return fmt.Errorf("rawsock: no socket for IP version %d", pkt[0]>>4)
	}
	return s.send(pkt, id)
}

func (s *sender) send(pkt []byte, id uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fd < 0 {
		return errClosed("sendmsg")
	}
	var to unix.Sockaddr
	if s.v6 {
		if len(pkt) < wire.IPv6MinimumSize {
			return wire.ErrTruncated
		}
		copy(s.sa6.Addr[:], pkt[24:40])
		to = &s.sa6
	} else {
		copy(s.sa4.Addr[:], pkt[16:20])
		to = &s.sa4
	}
	if s.optID {
		binary.NativeEndian.PutUint32(s.cmsg[unix.CmsgLen(0):], id)
		_, err := unix.SendmsgN(s.fd, pkt, s.cmsg[:unix.CmsgSpace(4)], to, 0)
		return sendError(err)
	}
	// A kernel without SCM_TS_OPT_ID: count sends.
	k := s.kid
	_, err := unix.SendmsgN(s.fd, pkt, nil, to, 0)
	// The kernel's counter moves once the packet is allocated, which is
	// after the routing errors but before the device errors.
	switch err {
	case nil, unix.ENOBUFS, unix.EPERM:
		s.kmap[k%stampSlots] = id
		s.kid++
	}
	return sendError(err)
}

func sendError(err error) error {
	if err == nil {
		return nil
	}
	return opError("sendmsg", err)
}

func (c *Conn) txTime(id uint32, v6 bool) (time.Time, bool) {
	s := c.send4
	if v6 {
		s = c.send6
	}
	if s == nil {
		return time.Time{}, false
	}
	return s.txTime(id)
}

func (s *sender) txTime(id uint32) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &s.stamps[id%stampSlots]
	if !st.used || st.id != id || st.sched == 0 {
		s.drain()
	}
	if !st.used || st.id != id {
		return time.Time{}, false
	}
	switch {
	case st.sched != 0:
		return time.Unix(0, st.sched), true
	case st.snd != 0:
		return time.Unix(0, st.snd), true
	}
	return time.Time{}, false
}

// errBatchLen is how many error queue messages (transmit stamps) one
// recvmmsg reads.
const errBatchLen = 32

// drain reads the error queue until it is empty (bounded: the queue
// holds at most some 10,000 stamps), in batches. s.mu is held.
func (s *sender) drain() {
	for i := 0; i < 1<<16; {
		for k := range s.errHdrs {
			h := &s.errHdrs[k]
			*h = unix.Mmsghdr{}
			h.Hdr.Control = &s.errOOBs[k][0]
			h.Hdr.SetControllen(len(s.errOOBs[k]))
		}
		r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&s.errHdrs[0])), errBatchLen,
			unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT, 0, 0)
		if e != 0 || r == 0 {
			return
		}
		for k := range int(r) {
			s.stamp(s.errOOBs[k][:s.errHdrs[k].Hdr.Controllen])
		}
		i += int(r)
	}
}

// stamp records the transmit stamp that error queue message oob
// carries, if any.
func (s *sender) stamp(oob []byte) {
	var ts int64
	var info, data uint32
	var got bool
	walkCmsgs(oob, func(level, typ int32, d []byte) {
		switch {
		case level == unix.SOL_SOCKET && typ == unix.SO_TIMESTAMPING_NEW && len(d) >= 16:
			ts = timespecNano(d)
		case (level == unix.SOL_IP && typ == unix.IP_RECVERR) || (level == unix.SOL_IPV6 && typ == unix.IPV6_RECVERR):
			if len(d) >= int(unsafe.Sizeof(unix.SockExtendedErr{})) {
				ee := (*unix.SockExtendedErr)(unsafe.Pointer(&d[0]))
				if ee.Origin == unix.SO_EE_ORIGIN_TIMESTAMPING {
					info, data, got = ee.Info, ee.Data, true
				}
			}
		}
	})
	if !got || ts == 0 {
		return
	}
	id := data
	if !s.optID {
		id = s.kmap[data%stampSlots]
	} else if id&BulkStamp != 0 {
		s.pushBulk(id, ts)
		return
	}
	st := &s.stamps[id%stampSlots]
	if !st.used || st.id != id {
		*st = txStamp{id: id, used: true}
	}
	switch info {
	case unix.SCM_TSTAMP_SND:
		st.snd = ts
	case unix.SCM_TSTAMP_SCHED:
		st.sched = ts
	}
}

// recv is Conn.Recv on Linux: the receive sockets read through one
// epoll set, in batches (recvmmsg) handed out a packet at a time, round
// robin between the sockets. A socket is read again only once epoll says
// it has something, so that a poll that finds nothing is one system call.
func (c *Conn) recv(b []byte, deadline time.Time) (int, time.Time, error) {
	c.recvMu.Lock()
	defer c.recvMu.Unlock()
	for {
		if c.isClosed() {
			return 0, time.Time{}, net.ErrClosed
		}
		for i := range c.rx {
			s := &c.rx[(c.next+i)%len(c.rx)]
			if s.batch.pending() {
				c.next = (c.next + i + 1) % len(c.rx)
				n, ts := s.deliver(b)
				return n, ts, nil
			}
		}
		read := false
		for i := range c.rx {
			s := &c.rx[i]
			if !s.ready {
				continue
			}
			err := s.fill()
			switch err {
			case nil:
				read = true
			case unix.EAGAIN, unix.EINTR:
				s.ready = false
			default:
				// Errors such as a queued ICMP error on a raw socket
				// are per-packet; the caller may keep reading.
				return 0, time.Time{}, opError("recvmmsg", err)
			}
		}
		if read {
			continue
		}
		if err := c.waitReady(deadline); err != nil {
			return 0, time.Time{}, err
		}
	}
}

// waitReady waits for a receive socket to have something until deadline
// (one already passed: a look without waiting) and marks those that have.
func (c *Conn) waitReady(deadline time.Time) error {
	events, err := c.poller.ready(deadline)
	for _, ev := range events {
		for i := range c.rx {
			if int(ev.Fd) == c.rx[i].fd {
				c.rx[i].ready = true
			}
		}
	}
	return err
}

func (c *Conn) queued() bool {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	if c.closed {
		return false
	}
	for _, s := range c.rx {
		if s.batch.pending() {
			return true
		}
		// SIOCINQ: the length of the next packet on raw sockets.
		if n, err := unix.IoctlGetInt(s.fd, unix.SIOCINQ); err == nil && n > 0 {
			return true
		}
	}
	return false
}

// noPwait2 is set once epoll_pwait2 (Linux 5.11) turned out missing.
var noPwait2 atomic.Bool

// epollWait waits up to timeout (negative: for ever) with nanosecond
// resolution where the kernel has epoll_pwait2, else in whole
// milliseconds rounded up.
func epollWait(epfd int, events []unix.EpollEvent, timeout time.Duration) (int, error) {
	if timeout < 0 {
		return unix.EpollWait(epfd, events, -1)
	}
	if !noPwait2.Load() {
		ts := unix.NsecToTimespec(int64(timeout))
		r, _, e := unix.Syscall6(unix.SYS_EPOLL_PWAIT2, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])),
			uintptr(len(events)), uintptr(unsafe.Pointer(&ts)), 0, 0)
		if e != unix.ENOSYS {
			if e != 0 {
				return 0, e
			}
			return int(r), nil
		}
		noPwait2.Store(true)
	}
	return unix.EpollWait(epfd, events, int((timeout+time.Millisecond-1)/time.Millisecond))
}

func (c *Conn) recvFrom(s *rxSock, b []byte) (int, time.Time, error) {
	var from unix.RawSockaddrInet6
	if !s.v6 {
		n, oobn, _, err := recvmsg(s.fd, b, c.oob[:], unix.MSG_DONTWAIT, &from)
		if err != nil {
			return 0, time.Time{}, err
		}
		var ts int64
		walkCmsgs(c.oob[:oobn], func(level, typ int32, d []byte) {
			if level == unix.SOL_SOCKET && typ == unix.SO_TIMESTAMPING_NEW && len(d) >= 16 {
				ts = timespecNano(d)
			}
		})
		return n, stampTime(ts), nil
	}
	n, oobn, _, err := recvmsg(s.fd, b[wire.IPv6MinimumSize:], c.oob[:], unix.MSG_DONTWAIT, &from)
	if err != nil {
		return 0, time.Time{}, err
	}
	ts := ipv6Header(b, n, s.proto, &from, c.oob[:oobn])
	return wire.IPv6MinimumSize + n, stampTime(ts), nil
}

func stampTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// timespecNano reads the first struct __kernel_timespec of d.
func timespecNano(d []byte) int64 {
	sec := int64(binary.NativeEndian.Uint64(d[0:]))
	nsec := int64(binary.NativeEndian.Uint64(d[8:]))
	return sec*1e9 + nsec
}

// walkCmsgs calls fn for every control message in b without allocating.
func walkCmsgs(b []byte, fn func(level, typ int32, data []byte)) {
	const hdr = int(unsafe.Sizeof(unix.Cmsghdr{}))
	for len(b) >= hdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		l := int(h.Len)
		if l < hdr || l > len(b) {
			return
		}
		fn(h.Level, h.Type, b[hdr:l])
		next := unix.CmsgSpace(l - hdr)
		if next > len(b) {
			return
		}
		b = b[next:]
	}
}

// recvmsg is unix.Recvmsg without the allocation of the source address.
func recvmsg(fd int, p, oob []byte, flags int, from *unix.RawSockaddrInet6) (n, oobn int, mflags int, err error) {
	var msg unix.Msghdr
	var iov unix.Iovec
	var dummy byte
	if from != nil {
		msg.Name = (*byte)(unsafe.Pointer(from))
		msg.Namelen = uint32(unsafe.Sizeof(*from))
	}
	if len(p) > 0 {
		iov.Base = &p[0]
	} else {
		iov.Base = &dummy
	}
	iov.SetLen(len(p))
	msg.Iov = &iov
	msg.Iovlen = 1
	if len(oob) > 0 {
		msg.Control = &oob[0]
		msg.SetControllen(len(oob))
	}
	r, _, e := unix.Syscall(unix.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)), uintptr(flags))
	if e != 0 {
		return 0, 0, 0, e
	}
	return int(r), int(msg.Controllen), int(msg.Flags), nil
}

func (c *Conn) isClosed() bool {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	return c.closed
}

func (c *Conn) close() error {
	c.closeMu.Lock()
	if c.closed {
		c.closeMu.Unlock()
		return nil
	}
	c.closed = true
	c.closeMu.Unlock()
	c.wake()
	c.recvMu.Lock() // Recv has returned and will not touch the fds again
	defer c.recvMu.Unlock()
	for _, s := range []*sender{c.send4, c.send6} {
		if s != nil {
			s.mu.Lock()
			s.fdMu.Lock()
			unix.Close(s.fd)
			s.fd = -1
			s.fdMu.Unlock()
			s.mu.Unlock()
		}
	}
	for _, s := range c.rx {
		unix.Close(s.fd)
		s.batch.free()
	}
	c.rx = nil
	c.poller.close()
	c.mtu.Close()
	return nil
}

// opError is the error of a failed system call (nl.OpError).
func opError(op string, err error) error { return nl.OpError(op, err) }

// errClosed is the error of an operation on a closed Conn: it wraps
// net.ErrClosed, which a scan sharing a client's Conn stops on (the
// client closed), unlike EBADF, which reads as a refused send.
func errClosed(op string) error { return &net.OpError{Op: op, Net: "rawsock", Err: net.ErrClosed} }

// source is SourceFinder.Source on Linux: a UDP socket per family,
// connected to each destination in turn.
func (f *SourceFinder) source(dst netip.Addr) (netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var gen uint64
	if f.Watch != nil {
		gen = f.Watch.Generation()
		if src, ok := f.cache.cached(gen, dst); ok {
			return src, nil
		}
	}
	fd, err := f.connect(dst)
	if err != nil {
		return netip.Addr{}, err
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		return netip.Addr{}, opError("getsockname", err)
	}
	var src netip.Addr
	switch a := got.(type) {
	case *unix.SockaddrInet4:
		src = netip.AddrFrom4(a.Addr)
	case *unix.SockaddrInet6:
		src = netip.AddrFrom16(a.Addr)
	default:
		return netip.Addr{}, errors.New("rawsock: no source address")
	}
	if f.Watch != nil && dst.Zone() == "" && f.Watch.Generation() == gen {
		// Kept only if nothing changed during the lookup.
		f.cache.keep(gen, dst, src)
	}
	return src, nil
}

// pathMTU is SourceFinder.PathMTU on Linux.
func (f *SourceFinder) pathMTU(dst netip.Addr) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fd, err := f.connect(dst)
	if err != nil {
		return 0, err
	}
	level, opt := unix.IPPROTO_IP, unix.IP_MTU
	if dst.Unmap().Is6() {
		level, opt = unix.IPPROTO_IPV6, unix.IPV6_MTU
	}
	mtu, err := unix.GetsockoptInt(fd, level, opt)
	if err != nil {
		return 0, opError("getsockopt IP_MTU", err)
	}
	return mtu, nil
}

// socket returns the finder's UDP socket of one family, opening it (in
// the calling thread's network namespace) the first time. f.mu is held,
// or the finder is not shared yet.
func (f *SourceFinder) socket(v6 bool) (int, error) {
	fam, family := 0, unix.AF_INET
	if v6 {
		fam, family = 1, unix.AF_INET6
	}
	if fd := f.fds[fam] - 1; fd >= 0 {
		return fd, nil
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, opError("socket", err)
	}
	if f.Interface != "" {
		if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, f.Interface); err != nil {
			unix.Close(fd)
			return -1, opError("setsockopt SO_BINDTODEVICE "+f.Interface, err)
		}
	}
	f.fds[fam] = fd + 1
	return fd, nil
}

// connect associates the finder's socket of dst's family with dst, so
// that the kernel chooses the route (and with it the source address and
// the path MTU). f.mu is held.
func (f *SourceFinder) connect(dst netip.Addr) (int, error) {
	dst = dst.Unmap()
	if !dst.IsValid() {
		return -1, errors.New("rawsock: no destination address")
	}
	var sa unix.Sockaddr
	if dst.Is4() {
		sa = &unix.SockaddrInet4{Port: 9, Addr: dst.As4()}
	} else {
		sa6 := &unix.SockaddrInet6{Port: 9, Addr: dst.As16()}
		if z := dst.Zone(); z != "" {
			if ifi, err := net.InterfaceByName(z); err == nil {
				sa6.ZoneId = uint32(ifi.Index)
			}
		}
		sa = sa6
	}
	opened := f.fds[0] != 0
	if dst.Is6() {
		opened = f.fds[1] != 0
	}
	fd, err := f.socket(dst.Is6())
	if err != nil {
		return -1, err
	}
	if opened {
		// Dissolve the last association, and with it the source address
		// the kernel chose for it.
		unspec := unix.RawSockaddr{Family: unix.AF_UNSPEC}
		if _, _, e := unix.Syscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&unspec)), unsafe.Sizeof(unspec)); e != 0 {
			return -1, opError("connect", e)
		}
	}
	if err := unix.Connect(fd, sa); err != nil {
		return -1, opError("connect", err)
	}
	return fd, nil
}

func (f *SourceFinder) close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, fd := range f.fds {
		if fd > 0 {
			unix.Close(fd - 1)
			f.fds[i] = 0
		}
	}
	return nil
}

// localPortRange reads net.ipv4.ip_local_port_range.
func localPortRange() (lo, hi int, err error) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0, err
	}
	if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil {
		return 0, 0, fmt.Errorf("rawsock: parse ip_local_port_range: %w", err)
	}
	return lo, hi, nil
}

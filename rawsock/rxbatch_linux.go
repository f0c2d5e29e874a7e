//go:build linux

package rawsock

import (
	"encoding/binary"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/synprobe/synprobe/rawsock/wire"
)

// rxBatchLen is how many packets one recvmmsg reads from a receive
// socket; Recv hands them out one at a time. At 10,000 answers a second
// in bursts, one system call reads a burst rather than one per packet.
const rxBatchLen = 32

// rxSlot is the room for one packet: any IP packet, whole (as Recv's b),
// so that no packet is ever cut short.
const rxSlot = 1 << 16

// rxBatch is what one recvmmsg read from one receive socket, still to be
// handed out. Its packet memory is an anonymous mapping: a slot's pages
// are touched only as far as the packets written there reach.
type rxBatch struct {
	mem   []byte
	hdrs  [rxBatchLen]unix.Mmsghdr
	iovs  [rxBatchLen]unix.Iovec
	names [rxBatchLen]unix.RawSockaddrInet6
	oobs  [rxBatchLen][256]byte
	n     int // packets read
	next  int // the next to hand out
}

func newRxBatch() (*rxBatch, error) {
	mem, err := unix.Mmap(-1, 0, rxBatchLen*rxSlot, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, opError("mmap", err)
	}
	return &rxBatch{mem: mem}, nil
}

func (b *rxBatch) free() {
	if b != nil && b.mem != nil {
		unix.Munmap(b.mem)
		b.mem = nil
	}
}

// pending reports whether packets wait in the batch.
func (b *rxBatch) pending() bool { return b.next < b.n }

// fill reads what s has queued, up to rxBatchLen packets, without
// waiting. The batch must be empty.
func (s *rxSock) fill() error {
	b := s.batch
	payload := rxSlot
	if s.v6 {
		payload = rxSlot - wire.IPv6MinimumSize // Recv puts a header before it
	}
	for i := range b.hdrs {
		h := &b.hdrs[i]
		*h = unix.Mmsghdr{}
		b.iovs[i].Base = &b.mem[i*rxSlot]
		b.iovs[i].SetLen(payload)
		h.Hdr.Iov = &b.iovs[i]
		h.Hdr.Iovlen = 1
		h.Hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		h.Hdr.Namelen = uint32(unsafe.Sizeof(b.names[i]))
		h.Hdr.Control = &b.oobs[i][0]
		h.Hdr.SetControllen(len(b.oobs[i]))
	}
	r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&b.hdrs[0])), rxBatchLen, unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return e
	}
	b.n, b.next = int(r), 0
	return nil
}

// deliver copies the batch's next packet into p, as Recv returns it: its
// IP header first (for IPv6, made from the address and ancillary data,
// as the socket gives none), with its kernel receive stamp.
func (s *rxSock) deliver(p []byte) (int, time.Time) {
	b := s.batch
	i := b.next
	b.next++
	h := &b.hdrs[i]
	n := int(h.Len)
	data := b.mem[i*rxSlot : i*rxSlot+n]
	oob := b.oobs[i][:h.Hdr.Controllen]
	if !s.v6 {
		n = copy(p, data)
		var ts int64
		walkCmsgs(oob, func(level, typ int32, d []byte) {
			if level == unix.SOL_SOCKET && typ == unix.SO_TIMESTAMPING_NEW && len(d) >= 16 {
				ts = timespecNano(d)
			}
		})
		return n, stampTime(ts)
	}
	n = copy(p[wire.IPv6MinimumSize:], data)
	ts := ipv6Header(p, n, s.proto, &b.names[i], oob)
	return wire.IPv6MinimumSize + n, stampTime(ts)
}

// ipv6Header writes into p[:40] the IPv6 header of the n bytes of upper
// layer after it (an IPv6 raw socket gives none): from, the hop limit,
// traffic class and destination from the ancillary data oob. It returns
// the kernel receive stamp found there.
func ipv6Header(p []byte, n int, proto uint8, from *unix.RawSockaddrInet6, oob []byte) int64 {
	h := wire.IPv6(p[:wire.IPv6MinimumSize])
	clear(h)
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(n))
	h[6] = proto
	copy(h[8:24], from.Addr[:])
	var ts int64
	walkCmsgs(oob, func(level, typ int32, d []byte) {
		switch {
		case level == unix.SOL_SOCKET && typ == unix.SO_TIMESTAMPING_NEW && len(d) >= 16:
			ts = timespecNano(d)
		case level == unix.SOL_IPV6 && typ == unix.IPV6_HOPLIMIT && len(d) >= 4:
			h[7] = byte(binary.NativeEndian.Uint32(d))
		case level == unix.SOL_IPV6 && typ == unix.IPV6_TCLASS && len(d) >= 4:
			tc := binary.NativeEndian.Uint32(d)
			h[0] = 0x60 | byte(tc>>4)
			h[1] = byte(tc<<4) | h[1]&0x0f
		case level == unix.SOL_IPV6 && typ == unix.IPV6_PKTINFO && len(d) >= 16:
			copy(h[24:40], d[:16])
		}
	})
	return ts
}

//go:build linux

package rawsock

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// NextHop is where the packets to a destination leave this host.
type NextHop struct {
	Ifindex int
	Gateway netip.Addr // invalid when the destination is on the link
	SrcMAC  net.HardwareAddr
	DstMAC  net.HardwareAddr // the gateway's, or the destination's
}

var nlSeq atomic.Uint32

// RouteTo asks the kernel which interface, and which gateway if any,
// packets to dst take (RTM_GETROUTE: the routing decision itself, policy
// rules included).
func RouteTo(dst netip.Addr) (ifindex int, gw netip.Addr, err error) {
	dst = dst.Unmap()
	family, alen := unix.AF_INET, 4
	if dst.Is6() {
		family, alen = unix.AF_INET6, 16
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return 0, gw, opError("socket", err)
	}
	defer unix.Close(fd)
	req := make([]byte, unix.SizeofNlMsghdr+unix.SizeofRtMsg+4+alen)
	seq := nlSeq.Add(1)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], unix.RTM_GETROUTE)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST)
	ne.PutUint32(req[8:], seq)
	rt := req[unix.SizeofNlMsghdr:]
	rt[0] = byte(family)
	rt[1] = byte(alen * 8) // dst_len
	attr := rt[unix.SizeofRtMsg:]
	ne.PutUint16(attr[0:], uint16(4+alen))
	ne.PutUint16(attr[2:], unix.RTA_DST)
	a := dst.AsSlice()
	copy(attr[4:], a)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, gw, opError("sendto", err)
	}
	buf := make([]byte, 1<<16)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return 0, gw, opError("recvfrom", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil {
		return 0, gw, fmt.Errorf("rawsock: route to %v: %w", dst, err)
	}
	for i := range msgs {
		m := &msgs[i]
		if m.Header.Type == unix.NLMSG_ERROR && len(m.Data) >= 4 {
			if e := -int32(ne.Uint32(m.Data)); e != 0 {
				return 0, gw, fmt.Errorf("rawsock: route to %v: %w", dst, os.NewSyscallError("RTM_GETROUTE", syscall.Errno(e)))
			}
			continue
		}
		if m.Header.Type != unix.RTM_NEWROUTE {
			continue
		}
		attrs, err := syscall.ParseNetlinkRouteAttr(m)
		if err != nil {
			return 0, gw, err
		}
		for _, at := range attrs {
			switch at.Attr.Type {
			case unix.RTA_OIF:
				ifindex = int(ne.Uint32(at.Value))
			case unix.RTA_GATEWAY:
				if g, ok := netip.AddrFromSlice(at.Value); ok {
					gw = g.Unmap()
				}
			}
		}
		return ifindex, gw, nil
	}
	return 0, gw, fmt.Errorf("rawsock: no route to %v", dst)
}

// Neighbor returns the link-layer address the kernel resolved for addr
// on interface ifindex, if it has one.
func Neighbor(ifindex int, addr netip.Addr) (net.HardwareAddr, bool, error) {
	addr = addr.Unmap()
	family := unix.AF_INET
	if addr.Is6() {
		family = unix.AF_INET6
	}
	b, err := syscall.NetlinkRIB(unix.RTM_GETNEIGH, family)
	if err != nil {
		return nil, false, opError("RTM_GETNEIGH", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(b)
	if err != nil {
		return nil, false, err
	}
	ne := binary.NativeEndian
	for _, m := range msgs {
		if m.Header.Type != unix.RTM_NEWNEIGH || len(m.Data) < unix.SizeofNdMsg {
			continue
		}
		ifi := int32(ne.Uint32(m.Data[4:]))
		state := ne.Uint16(m.Data[8:])
		if int(ifi) != ifindex || state&(unix.NUD_INCOMPLETE|unix.NUD_FAILED|unix.NUD_NOARP) != 0 {
			continue
		}
		var dst netip.Addr
		var ll net.HardwareAddr
		for a := m.Data[unix.SizeofNdMsg:]; len(a) >= 4; {
			l := int(ne.Uint16(a))
			if l < 4 || l > len(a) {
				break
			}
			switch ne.Uint16(a[2:]) {
			case unix.NDA_DST:
				dst, _ = netip.AddrFromSlice(a[4:l])
			case unix.NDA_LLADDR:
				ll = append(net.HardwareAddr(nil), a[4:l]...)
			}
			a = a[min((l+3)&^3, len(a)):]
		}
		if dst.Unmap() == addr && len(ll) == 6 {
			return ll, true, nil
		}
	}
	return nil, false, nil
}

// PacketSender sends the IP packets of a Batch as Ethernet frames on one
// interface to one next hop (AF_PACKET), skipping the host's IP output
// path: about twice the rate of a raw IP socket. Use it only where
// DirectPath says that sends what the IP output would. It receives
// nothing. The packets of stamped batches (Batch.SetID) get the kernel's
// transmit stamp for ReadTxStamps, where the kernel can take an id per
// packet (Linux 6.13).
type PacketSender struct {
	fd  int
	hop NextHop
	v6  bool
	hdr [14]byte
	sa  unix.RawSockaddrLinklayer

	stamps bool // stamped batches ask for stamps (see ReadTxStamps)
}

// NewPacketSender opens an AF_PACKET socket that sends IPv4 (or IPv6)
// packets to hop. It needs CAP_NET_RAW.
func NewPacketSender(hop NextHop, v6 bool) (*PacketSender, error) {
	// Protocol 0: the socket sends but is never handed received frames.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, opError("socket", err)
	}
	// Through the device's queue, not around it (PACKET_QDISC_BYPASS):
	// queueing disciplines, tc and netfilter egress programs then treat
	// our frames as they treat the IP output's.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 4<<20) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
	}
	p := &PacketSender{fd: fd, hop: hop, v6: v6}
	p.enableStamps()
	proto := uint16(unix.ETH_P_IP)
	if v6 {
		proto = unix.ETH_P_IPV6
	}
	copy(p.hdr[0:6], hop.DstMAC)
	copy(p.hdr[6:12], hop.SrcMAC)
	binary.BigEndian.PutUint16(p.hdr[12:], proto)
	p.sa = unix.RawSockaddrLinklayer{Family: unix.AF_PACKET, Protocol: htons(proto), Ifindex: int32(hop.Ifindex), Halen: 6}
	copy(p.sa.Addr[:], hop.DstMAC)
	return p, nil
}

// SendBatch sends the batch's packets, which must all be of the sender's
// family, and removes what it sent from it; see Conn.SendBatch.
func (p *PacketSender) SendBatch(b *Batch) (sent int, err error) {
	defer func() { b.Consume(sent) }()
	if b.n == 0 {
		return 0, nil
	}
	if b.v6 != p.v6 {
		return 0, errors.New("rawsock: packet family does not match the sender's")
	}
	m := &b.sys
	stamp := b.stamped && p.stamps
	for i := range b.n {
		f := b.frame(i, len(p.hdr))
		copy(f, p.hdr[:])
		iov := &m.iovs[i]
		iov.Base = &f[0]
		iov.SetLen(len(f))
		h := &m.msgs[i]
		*h = unix.Mmsghdr{}
		h.Hdr.Iov = iov
		h.Hdr.Iovlen = 1
		h.Hdr.Name = (*byte)(unsafe.Pointer(&p.sa))
		h.Hdr.Namelen = unix.SizeofSockaddrLinklayer
		if stamp {
			m.stampCtl(&h.Hdr, i, b.ids[i])
		}
	}
	return sendmmsg(p.fd, m.msgs[:b.n])
}

// Close closes the socket.
func (p *PacketSender) Close() error { return unix.Close(p.fd) }

//go:build linux

package rawsock

import (
	"cmp"
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"unsafe"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/synprobe/synprobe/rawsock/internal/nl"
)

// routeTo is RouteTo on Linux.
func routeTo(dst netip.Addr) (ifindex int, gw netip.Addr, err error) {
	c, err := nl.Dial(unix.NETLINK_ROUTE, nil)
	if err != nil {
		return 0, gw, err
	}
	defer c.Close()
	return routeOn(c, dst)
}

// lookupRoute is LookupRoute on Linux.
func lookupRoute(src, dst netip.Addr, ifindex int) (Route, error) {
	c, err := nl.Dial(unix.NETLINK_ROUTE, nil)
	if err != nil {
		return Route{}, err
	}
	defer c.Close()
	return lookupOn(c, src.Unmap(), dst, ifindex)
}

// routeLookupsSys is a RouteLookups' socket.
type routeLookupsSys struct{ c *netlink.Conn }

func newRouteLookups() (*RouteLookups, error) {
	c, err := nl.Dial(unix.NETLINK_ROUTE, nil)
	if err != nil {
		return nil, err
	}
	return &RouteLookups{sys: routeLookupsSys{c}}, nil
}

func (r *RouteLookups) lookup(src, dst netip.Addr, ifindex int) (Route, error) {
	if r.sys.c == nil {
		return Route{}, errors.New("rawsock: route lookups closed")
	}
	return lookupOn(r.sys.c, src.Unmap(), dst, ifindex)
}

func (r *RouteLookups) close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sys.c == nil {
		return nil
	}
	err := r.sys.c.Close()
	r.sys.c = nil
	return err
}

// policyRules is PolicyRules on Linux.
func policyRules(v6 bool) (bool, error) {
	c, err := nl.Dial(unix.NETLINK_ROUTE, &netlink.Config{Strict: true})
	if err != nil {
		return false, err
	}
	defer c.Close()
	return rulesSet(c, v6)
}

// routeOn is RouteTo on an rtnetlink socket, the messages encoded and
// decoded by github.com/jsimonetti/rtnetlink/v2.
func routeOn(c *netlink.Conn, dst netip.Addr) (ifindex int, gw netip.Addr, err error) {
	r, err := lookupOn(c, netip.Addr{}, dst, 0)
	return r.Ifindex, r.Gateway, err
}

// lookupOn is LookupRoute on an rtnetlink socket.
func lookupOn(c *netlink.Conn, src, dst netip.Addr, ifindex int) (Route, error) {
	dst = dst.Unmap()
	if !dst.IsValid() {
		return Route{}, errors.New("rawsock: no destination address")
	}
	family := uint8(unix.AF_INET)
	if dst.Is6() {
		family = unix.AF_INET6
	}
	req := rtnetlink.RouteMessage{Family: family, DstLength: uint8(dst.BitLen()), Attributes: rtnetlink.RouteAttributes{Dst: dst.AsSlice(), OutIface: uint32(ifindex)}}
	if dst.Is4() {
		// The answer names the table the route came from (else
		// main). IPv6 names it always, and a strict socket's IPv6
		// request with the flag is refused (EINVAL).
		req.Flags = unix.RTM_F_LOOKUP_TABLE
	}
	var m encoding.BinaryMarshaler = &req
	if src.IsValid() && src.Is6() == dst.Is6() {
		req.SrcLength = uint8(src.BitLen())
		m = fromSrc{&req, src}
	}
	msgs, err := rtExecute(c, unix.RTM_GETROUTE, netlink.Request, m)
	if err != nil {
		return Route{}, fmt.Errorf("rawsock: route to %v: %w", dst, os.NewSyscallError("RTM_GETROUTE", nl.KernelErrno(err)))
	}
	for _, m := range msgs {
		if m.Header.Type != unix.RTM_NEWROUTE {
			continue
		}
		var r rtnetlink.RouteMessage
		if err := r.UnmarshalBinary(m.Data); err != nil {
			return Route{}, fmt.Errorf("rawsock: route to %v: %w", dst, err)
		}
		out := Route{Ifindex: int(r.Attributes.OutIface), Table: uint32(r.Table)}
		if r.Attributes.Table != 0 {
			out.Table = r.Attributes.Table
		}
		if g, ok := netip.AddrFromSlice(r.Attributes.Gateway); ok {
			out.Gateway = g.Unmap()
		}
		return out, nil
	}
	return Route{}, fmt.Errorf("rawsock: no route to %v", dst)
}

// routePrefixes is RoutePrefixes on Linux: a dump of the family's routes.
func routePrefixes(v6 bool) ([]netip.Prefix, error) {
	c, err := nl.Dial(unix.NETLINK_ROUTE, nil)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	family := uint8(unix.AF_INET)
	if v6 {
		family = unix.AF_INET6
	}
	msgs, err := rtExecute(c, unix.RTM_GETROUTE, netlink.Request|netlink.Dump, &rtnetlink.RouteMessage{Family: family})
	if err != nil {
		return nil, fmt.Errorf("rawsock: routes: %w", nl.Wrap("RTM_GETROUTE", err))
	}
	out := make([]netip.Prefix, 0, len(msgs))
	for _, m := range msgs {
		var r rtnetlink.RouteMessage
		if m.Header.Type != unix.RTM_NEWROUTE {
			continue
		}
		if err := r.UnmarshalBinary(m.Data); err != nil {
			return nil, fmt.Errorf("rawsock: routes: %w", err)
		}
		if r.Family != family || r.Flags&unix.RTM_F_CLONED != 0 {
			continue
		}
		dst := netip.IPv4Unspecified()
		if v6 {
			dst = netip.IPv6Unspecified()
		}
		if d, ok := netip.AddrFromSlice(r.Attributes.Dst); ok {
			dst = d
			if !v6 {
				dst = d.Unmap()
			}
		}
		if p, err := dst.Prefix(int(r.DstLength)); err == nil {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
	})
	return slices.Compact(out), nil
}

// fromSrc is a route request with the RTA_SRC attribute, which
// rtnetlink.RouteMessage has no field for (its Src is RTA_PREFSRC).
type fromSrc struct {
	m   *rtnetlink.RouteMessage
	src netip.Addr
}

func (f fromSrc) MarshalBinary() ([]byte, error) {
	b, err := f.m.MarshalBinary()
	if err != nil {
		return nil, err
	}
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(unix.RTA_SRC, f.src.AsSlice())
	a, err := ae.Encode()
	return append(b, a...), err
}

// neighbor is Neighbor on Linux.
func neighbor(ifindex int, addr netip.Addr) (net.HardwareAddr, bool, error) {
	c, err := nl.Dial(unix.NETLINK_ROUTE, nil)
	if err != nil {
		return nil, false, err
	}
	defer c.Close()
	return neighborOn(c, ifindex, addr)
}

// neighborOn is Neighbor on an rtnetlink socket: the dump of the family's
// neighbours, decoded by github.com/jsimonetti/rtnetlink/v2.
func neighborOn(c *netlink.Conn, ifindex int, addr netip.Addr) (net.HardwareAddr, bool, error) {
	addr = addr.Unmap()
	family := uint16(unix.AF_INET)
	if addr.Is6() {
		family = unix.AF_INET6
	}
	msgs, err := rtExecute(c, unix.RTM_GETNEIGH, netlink.Request|netlink.Dump, &rtnetlink.NeighMessage{Family: family})
	if err != nil {
		return nil, false, nl.Wrap("RTM_GETNEIGH", err)
	}
	for _, m := range msgs {
		var n rtnetlink.NeighMessage
		if m.Header.Type != unix.RTM_NEWNEIGH {
			continue
		}
		if err := n.UnmarshalBinary(m.Data); err != nil {
			return nil, false, fmt.Errorf("rawsock: neighbour dump: %w", err)
		}
		if n.Attributes == nil || int(n.Index) != ifindex || n.State&(unix.NUD_INCOMPLETE|unix.NUD_FAILED|unix.NUD_NOARP) != 0 {
			continue
		}
		dst, _ := netip.AddrFromSlice(n.Attributes.Address)
		if dst.Unmap() == addr && len(n.Attributes.LLAddress) == 6 {
			return n.Attributes.LLAddress, true, nil
		}
	}
	return nil, false, nil
}

// rtExecute sends an rtnetlink request, the message encoded by
// jsimonetti/rtnetlink, and returns the answers (every part of a dump).
func rtExecute(c *netlink.Conn, typ uint16, flags netlink.HeaderFlags, m encoding.BinaryMarshaler) ([]netlink.Message, error) {
	b, err := m.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return c.Execute(netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(typ), Flags: flags}, Data: b})
}

// packetSenderSys is a PacketSender's Linux part.
type packetSenderSys struct {
	fd  int
	hop NextHop
	v6  bool
	hdr [14]byte
	sa  unix.RawSockaddrLinklayer

	stamps bool // stamped batches ask for stamps (see ReadTxStamps)
}

// newPacketSender is NewPacketSender on Linux.
func newPacketSender(hop NextHop, v6 bool) (*PacketSender, error) {
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
	p := &PacketSender{packetSenderSys{fd: fd, hop: hop, v6: v6}}
	p.enableStamps()
	proto := uint16(unix.ETH_P_IP)
	if v6 {
		proto = unix.ETH_P_IPV6
	}
	copy(p.hdr[0:6], hop.DstMAC)
	copy(p.hdr[6:12], hop.SrcMAC)
	binary.BigEndian.PutUint16(p.hdr[12:], proto)
	p.sa = unix.RawSockaddrLinklayer{Family: unix.AF_PACKET, Protocol: nl.Htons(proto), Ifindex: int32(hop.Ifindex), Halen: 6}
	copy(p.sa.Addr[:], hop.DstMAC)
	return p, nil
}

func (p *PacketSender) sendBatch(b *Batch) (sent int, err error) {
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

func (p *PacketSender) close() error { return unix.Close(p.fd) }

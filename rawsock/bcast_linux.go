//go:build linux

package rawsock

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// LocalBroadcasts returns the IPv4 addresses this host treats as
// broadcast addresses, each with the name of its interface: the broadcast
// routes of the kernel's local table (`ip route show table local type
// broadcast`), which it adds for every address configured with a
// broadcast, the directed broadcast of a connected subnet (such as
// 198.18.0.255 for 198.18.0.1/24). A packet to one of them reaches every
// host of the subnet, and a raw socket may not send it (EACCES).
func LocalBroadcasts() (map[netip.Addr]string, error) {
	rib, err := syscall.NetlinkRIB(unix.RTM_GETROUTE, unix.AF_INET)
	if err != nil {
		return nil, opError("RTM_GETROUTE", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(rib)
	if err != nil {
		return nil, fmt.Errorf("rawsock: route dump: %w", err)
	}
	out := map[netip.Addr]string{}
	for i := range msgs {
		m := &msgs[i]
		if m.Header.Type != unix.RTM_NEWROUTE || len(m.Data) < unix.SizeofRtMsg {
			continue
		}
		// struct rtmsg: family, dst_len, src_len, tos, table, protocol,
		// scope, type, flags.
		table, typ := uint32(m.Data[4]), m.Data[7]
		if typ != unix.RTN_BROADCAST {
			continue
		}
		attrs, err := syscall.ParseNetlinkRouteAttr(m)
		if err != nil {
			continue
		}
		var dst netip.Addr
		var oif int
		for _, a := range attrs {
			switch a.Attr.Type {
			case unix.RTA_DST:
				dst, _ = netip.AddrFromSlice(a.Value)
			case unix.RTA_OIF:
				if len(a.Value) >= 4 {
					oif = int(binary.NativeEndian.Uint32(a.Value))
				}
			case unix.RTA_TABLE:
				if len(a.Value) >= 4 {
					table = binary.NativeEndian.Uint32(a.Value)
				}
			}
		}
		if table != unix.RT_TABLE_LOCAL || !dst.Is4() {
			continue
		}
		name := fmt.Sprintf("interface %d", oif)
		if ifi, err := net.InterfaceByIndex(oif); err == nil {
			name = ifi.Name
		}
		out[dst] = name
	}
	return out, nil
}

//go:build linux

package rawsock

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/synprobe/synprobe/rawsock/internal/nl"
)

// localBroadcasts is LocalBroadcasts on Linux: the IPv4 route dump. With
// strict checking (Linux 4.20) the kernel dumps the local table's
// broadcast routes alone, not a full routing table; older kernels dump
// every route, and the filter below is the only one.
func localBroadcasts() (map[netip.Addr]string, error) {
	c, err := nl.Dial(unix.NETLINK_ROUTE, &netlink.Config{Strict: true})
	if err != nil {
		c, err = nl.Dial(unix.NETLINK_ROUTE, nil)
	}
	if err != nil {
		return nil, err
	}
	defer c.Close()
	req := rtnetlink.RouteMessage{Family: unix.AF_INET, Table: unix.RT_TABLE_LOCAL, Type: unix.RTN_BROADCAST}
	msgs, err := rtExecute(c, unix.RTM_GETROUTE, netlink.Request|netlink.Dump, &req)
	if err != nil {
		return nil, nl.Wrap("RTM_GETROUTE", err)
	}
	out := map[netip.Addr]string{}
	for _, m := range msgs {
		var r rtnetlink.RouteMessage
		if m.Header.Type != unix.RTM_NEWROUTE {
			continue
		}
		if err := r.UnmarshalBinary(m.Data); err != nil {
			return nil, fmt.Errorf("rawsock: route dump: %w", err)
		}
		table := uint32(r.Table)
		if r.Attributes.Table != 0 {
			table = r.Attributes.Table
		}
		dst, _ := netip.AddrFromSlice(r.Attributes.Dst)
		if r.Type != unix.RTN_BROADCAST || table != unix.RT_TABLE_LOCAL || !dst.Is4() {
			continue
		}
		oif := int(r.Attributes.OutIface)
		name := fmt.Sprintf("interface %d", oif)
		if ifi, err := net.InterfaceByIndex(oif); err == nil {
			name = ifi.Name
		}
		out[dst] = name
	}
	return out, nil
}

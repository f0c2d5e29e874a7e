//go:build !linux

package rawsock

import (
	"net"
	"net/netip"
)

type packetSenderSys struct{}

func routeTo(netip.Addr) (int, netip.Addr, error)              { return 0, netip.Addr{}, errNotImplemented }
func neighbor(int, netip.Addr) (net.HardwareAddr, bool, error) { return nil, false, errNotImplemented }
func directPath([]netip.Prefix, int) (NextHop, error)          { return NextHop{}, errNotImplemented }
func localBroadcasts() (map[netip.Addr]string, error)          { return nil, errNotImplemented }
func routePrefixes(bool) ([]netip.Prefix, error)               { return nil, errNotImplemented }
func lookupRoute(netip.Addr, netip.Addr, int) (Route, error)   { return Route{}, errNotImplemented }
func policyRules(bool) (bool, error)                           { return false, errNotImplemented }
func newPacketSender(NextHop, bool) (*PacketSender, error)     { return nil, errNotImplemented }
func (*PacketSender) sendBatch(b *Batch) (int, error)          { b.Reset(); return 0, errNotImplemented }
func (*PacketSender) close() error                             { return nil }

type routeLookupsSys struct{}

func newRouteLookups() (*RouteLookups, error) { return nil, errNotImplemented }
func (*RouteLookups) lookup(netip.Addr, netip.Addr, int) (Route, error) {
	return Route{}, errNotImplemented
}
func (*RouteLookups) close() error { return nil }

package rawsock

import (
	"net"
	"net/netip"
	"sync"
)

// NextHop is where the packets to a destination leave this host.
type NextHop struct {
	Ifindex int
	Gateway netip.Addr // invalid when the destination is on the link
	SrcMAC  net.HardwareAddr
	DstMAC  net.HardwareAddr // the gateway's, or the destination's
}

// RouteTo asks the kernel which interface, and which gateway if any,
// packets to dst take (RTM_GETROUTE: the routing decision itself, policy
// rules included).
func RouteTo(dst netip.Addr) (ifindex int, gw netip.Addr, err error) { return routeTo(dst) }

// Neighbor returns the link-layer address the kernel resolved for addr
// on interface ifindex, if it has one.
func Neighbor(ifindex int, addr netip.Addr) (net.HardwareAddr, bool, error) {
	return neighbor(ifindex, addr)
}

// DirectPath reports whether the probes to every address of prefixes (all
// of one family) can leave as Ethernet frames handed to one next hop
// (PacketSender) while sending exactly what the host's IP output would
// send, and returns that hop. It holds only when nothing on the IP output
// path could treat two of those probes differently, or treat any other
// than by passing it to the hop:
//
//   - no netfilter hook on the family's output and postrouting hooks: no
//     nftables base chain there (but synprobe's own RST guards, which pass
//     every SYN), no iptables-legacy table, no connection tracking (a full
//     table drops new connections), no IPVS, no BPF netfilter program;
//   - no SELinux (its output hooks may refuse raw IP packets);
//   - no IPsec policy;
//   - no cgroup BPF egress program on this process's cgroup;
//   - the default policy routing rules only;
//   - one unicast route, through a gateway, for every prefix, the same
//     for all, with no more specific route inside any prefix, and without
//     multipath, nexthop objects, encapsulation or TOS or source selectors;
//     and the kernel's own route lookup agreeing;
//   - the gateway's link-layer address resolved, on an Ethernet device
//     (ifindex, when not 0, must be that device).
//
// Queueing disciplines, tc and netfilter egress programs act on both paths
// alike (PacketSender does not bypass the queue). The error says which
// condition failed; ErrPermission-wrapped errors mean a check could not
// be made without privileges it lacks.
func DirectPath(prefixes []netip.Prefix, ifindex int) (NextHop, error) {
	return directPath(prefixes, ifindex)
}

// Route is the route the kernel takes for a packet: its interface, its
// router (none on the link) and the routing table it came from.
type Route struct {
	Ifindex int
	Gateway netip.Addr
	Table   uint32
}

// LookupRoute returns the route the kernel takes for a packet to dst
// from src (none: by the destination alone, as the raw sockets' packets
// are routed), out of interface ifindex (0: any; a socket bound to an
// interface), in the calling thread's network namespace. Policy routing
// rules (ip rule from SRC) can give a packet from src another route
// than one routed by its destination alone.
func LookupRoute(src, dst netip.Addr, ifindex int) (Route, error) {
	return lookupRoute(src, dst, ifindex)
}

// RouteLookups looks routes up as LookupRoute does, on one rtnetlink
// socket opened in the network namespace of the thread that called
// NewRouteLookups: a socket per lookup costs some 150 µs more. It is safe
// for concurrent use.
type RouteLookups struct {
	mu  sync.Mutex
	sys routeLookupsSys
}

// NewRouteLookups opens the socket.
func NewRouteLookups() (*RouteLookups, error) { return newRouteLookups() }

// Lookup is LookupRoute on the socket.
func (r *RouteLookups) Lookup(src, dst netip.Addr, ifindex int) (Route, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lookup(src, dst, ifindex)
}

// Close closes the socket.
func (r *RouteLookups) Close() error { return r.close() }

// PolicyRules reports whether routing rules other than the kernel's
// defaults are set for a family (IPv6 when v6), in the calling thread's
// network namespace: without them, a packet's source does not change its
// route (LookupRoute).
func PolicyRules(v6 bool) (bool, error) { return policyRules(v6) }

// RoutePrefixes returns the destination prefixes of the routes of every
// routing table of a family (IPv6 when v6), in the calling thread's
// network namespace, sorted by address: where a block of addresses holds
// one, its addresses may be routed differently, and their sources differ.
func RoutePrefixes(v6 bool) ([]netip.Prefix, error) { return routePrefixes(v6) }

// LocalBroadcasts returns the IPv4 addresses this host treats as
// broadcast addresses, each with the name of its interface: the broadcast
// routes of the kernel's local table (`ip route show table local type
// broadcast`), which it adds for every address configured with a
// broadcast, the directed broadcast of a connected subnet (such as
// 198.18.0.255 for 198.18.0.1/24). A packet to one of them reaches every
// host of the subnet, and a raw socket may not send it (EACCES).
func LocalBroadcasts() (map[netip.Addr]string, error) { return localBroadcasts() }

// PacketSender sends the IP packets of a Batch as Ethernet frames on one
// interface to one next hop (AF_PACKET), skipping the host's IP output
// path: about twice the rate of a raw IP socket. Use it only where
// DirectPath says that sends what the IP output would. It receives
// nothing. The packets of stamped batches (Batch.SetID) get the kernel's
// transmit stamp for ReadTxStamps, where the kernel can take an id per
// packet (Linux 6.13).
type PacketSender struct {
	packetSenderSys // the platform's part
}

// NewPacketSender opens an AF_PACKET socket that sends IPv4 (or IPv6)
// packets to hop. It needs CAP_NET_RAW.
func NewPacketSender(hop NextHop, v6 bool) (*PacketSender, error) { return newPacketSender(hop, v6) }

// SendBatch sends the batch's packets, which must all be of the sender's
// family, and removes what it sent from it; see Conn.SendBatch.
func (p *PacketSender) SendBatch(b *Batch) (sent int, err error) { return p.sendBatch(b) }

// Close closes the socket.
func (p *PacketSender) Close() error { return p.close() }

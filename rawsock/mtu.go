package rawsock

import "net/netip"

// PathMTU returns the MTU of the path to dst as the kernel knows it: the
// route's MTU, lowered by any ICMP "packet too big" the host has learnt
// (the PMTU cache), at most the outgoing device's. iface, if not empty,
// binds the lookup to that device as Config.Interface does. It asks with
// a connected UDP socket (IP_MTU / IPV6_MTU), so nothing is sent.
func PathMTU(dst netip.Addr, iface string) (int, error) { return pathMTU(dst, iface) }

// PathMTU returns the MTU of the path to dst (see the function PathMTU),
// for the device the Conn is bound to, if any, as the Conn's network
// namespace knows it.
func (c *Conn) PathMTU(dst netip.Addr) (int, error) { return c.pathMTU(dst) }

package main

import (
	"context"
	"net"
	"net/netip"
	"os"
	"sync"

	"github.com/synprobe/synprobe/internal/cli"
	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/rawsock"
	"github.com/synprobe/synprobe/rawsock/rstguard"
)

// system is the real network.
type system struct {
	mu      sync.Mutex
	finders map[string]*rawsock.SourceFinder // by interface
	routes  *rawsock.RouteLookups            // one socket for the run's route lookups
}

func (*system) lookup(ctx context.Context, network, host string) ([]netip.Addr, error) {
	return net.DefaultResolver.LookupNetIP(ctx, network, host)
}

// source asks the kernel through a finder kept for the run: a scan asks
// once per block of addresses, a million times for a big target file.
func (s *system) source(dst netip.Addr, iface string) (netip.Addr, error) {
	s.mu.Lock()
	f := s.finders[iface]
	if f == nil {
		if s.finders == nil {
			s.finders = map[string]*rawsock.SourceFinder{}
		}
		f = &rawsock.SourceFinder{Interface: iface}
		s.finders[iface] = f
	}
	s.mu.Unlock()
	return f.Source(dst)
}

func (*system) policyRules(v6 bool) (bool, error) { return rawsock.PolicyRules(v6) }

// route asks the kernel through a socket kept for the run: a scan asks
// once or twice per block where policy rules are set.
func (s *system) route(src, dst netip.Addr, ifindex int) (rawsock.Route, error) {
	s.mu.Lock()
	if s.routes == nil {
		r, err := rawsock.NewRouteLookups()
		if err != nil {
			s.mu.Unlock()
			return rawsock.Route{}, err
		}
		s.routes = r
	}
	r := s.routes
	s.mu.Unlock()
	return r.Lookup(src, dst, ifindex)
}

func (*system) listen(cfg rawsock.Config) (conn, error) { return rawsock.Listen(cfg) }

func (*system) cleanup() ([]string, error) { return rstguard.CleanupTables() }

func (*system) directPath(prefixes []netip.Prefix, ifindex int) (rawsock.NextHop, error) {
	return rawsock.DirectPath(prefixes, ifindex)
}

func (*system) packetSender(hop rawsock.NextHop, v6 bool) (packetSender, error) {
	return rawsock.NewPacketSender(hop, v6)
}

func (*system) broadcasts() (map[netip.Addr]string, error) { return rawsock.LocalBroadcasts() }

func (*system) ring(cfg rawsock.RingConfig) (receiver, error) {
	r, err := rawsock.ListenRing(cfg)
	if err != nil {
		return nil, err // not a nil *Ring in a non-nil interface
	}
	return r, nil
}

func (*system) realUID() int { return os.Getuid() }

func (*system) getenv(key string) string { return os.Getenv(key) }

// hostAddrs lists the addresses of this host's interfaces, in the run's
// network namespace.
func (*system) hostAddrs() ([]netip.Addr, error) {
	ifas, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	addrs := make([]netip.Addr, 0, len(ifas))
	for _, ifa := range ifas {
		if p, err := netip.ParsePrefix(ifa.String()); err == nil {
			addrs = append(addrs, p.Addr())
		}
	}
	return addrs, nil
}

func (*system) dropPrivileges(d cli.DropSpec) error { return cli.DropPrivileges(d) }

// isLocal reports whether the kernel takes a as this host's (a local
// route: an interface's address, AnyIP's): probe.LocalSource's test,
// which net.ipv4.ip_nonlocal_bind does not fool; a bind too, which
// a zoned (link-local) address needs.
func (*system) isLocal(a netip.Addr) bool {
	a = a.Unmap()
	if a.Zone() == "" {
		if probe.LocalSource(a) != nil {
			return false
		}
		if a.Is6() && a.IsLinkLocalUnicast() {
			return true // an interface's, as LocalSource found; it binds only with its zone
		}
	}
	network, zone := "udp4", ""
	if a.Is6() {
		network, zone = "udp6", a.Zone()
	}
	c, err := net.ListenUDP(network, &net.UDPAddr{IP: a.AsSlice(), Zone: zone})
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func (*system) client(cfg *probe.ClientConfig) (pingClient, error) {
	c, err := probe.NewClient(cfg)
	if err != nil {
		return nil, err // not a nil *Client in a non-nil interface
	}
	return c, nil
}

// baseClient returns the probe.Client under c, on which a scan runs: c
// itself, or the fake network's client in tests.
func baseClient(c pingClient) *probe.Client {
	if b, ok := c.(interface{ base() *probe.Client }); ok {
		return b.base()
	}
	return c.(*probe.Client)
}

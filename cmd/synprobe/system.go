package main

import (
	"context"
	"net"
	"net/netip"

	"github.com/synprobe/synprobe/rawsock"
)

// system is the real network.
type system struct{}

func (system) lookup(ctx context.Context, network, host string) ([]netip.Addr, error) {
	return net.DefaultResolver.LookupNetIP(ctx, network, host)
}

func (system) source(dst netip.Addr, iface string) (netip.Addr, error) {
	return rawsock.SourceFor(dst, iface)
}

func (system) portRange() (uint16, uint16, error) { return rawsock.ProbePortRange() }

func (system) listen(cfg rawsock.Config) (conn, error) { return rawsock.Listen(cfg) }

func (system) guard(cfg rawsock.GuardConfig) (guard, error) { return rawsock.NewRSTGuard(cfg) }

func (system) cleanup() ([]string, error) { return rawsock.CleanupTables() }

func (system) watch(lo, hi uint16, mark uint32) (watch, error) {
	return rawsock.NewRSTWatch(lo, hi, mark)
}

func (system) nextHop(dst netip.Addr) (rawsock.NextHop, error) { return rawsock.NextHopTo(dst) }

func (system) packetSender(hop rawsock.NextHop, v6 bool) (packetSender, error) {
	return rawsock.NewPacketSender(hop, v6)
}

func (system) broadcasts() (map[netip.Addr]string, error) { return rawsock.LocalBroadcasts() }

func (system) ring(cfg rawsock.RingConfig) (receiver, error) {
	r, err := rawsock.ListenRing(cfg)
	if err != nil {
		return nil, err // not a nil *Ring in a non-nil interface
	}
	return r, nil
}

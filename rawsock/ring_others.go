//go:build !linux

package rawsock

import (
	"net/netip"
	"time"
)

// RingConfig configures ListenRing. See the Linux documentation.
type RingConfig struct {
	Ifindex           int
	Src4, Src6        netip.Addr
	Addrs             []netip.Addr
	PortLo, PortHi    uint16
	BlockSize, Blocks int
	Retire            time.Duration
	Outgoing          bool
}

// Ring is not implemented on this platform.
type Ring struct{}

// ListenRing is not implemented on this platform.
func ListenRing(RingConfig) (*Ring, error) { return nil, errNotImplemented }

func (*Ring) Read(time.Time, func([]byte, time.Time)) (int, error) { return 0, errNotImplemented }
func (*Ring) Wake()                                                {}
func (*Ring) Dropped() uint64                                      { return 0 }
func (*Ring) Pending() float64                                     { return 0 }
func (*Ring) Drained() bool                                        { return true }
func (*Ring) Close() error                                         { return nil }

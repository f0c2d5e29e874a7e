package probe

import (
	"errors"
	"fmt"
	"net/netip"
)

// ErrNotUnicast is wrapped by the error of a probe to a destination that
// is not one host's address (an *UnusableError): the unspecified address,
// a multicast address, the limited broadcast, or the broadcast address of
// one of this host's subnets.
var ErrNotUnicast = errors.New("probe: not a unicast address")

// UnusableError is the error of a probe to a destination that is not one
// host's address; it wraps ErrNotUnicast.
type UnusableError struct {
	Addr netip.Addr
	Why  string // as Unusable says it
}

func (e *UnusableError) Error() string {
	return fmt.Sprintf("probe: %v is %s; a probe goes to one host: give a unicast address", e.Addr, e.Why)
}

// Unwrap returns ErrNotUnicast.
func (e *UnusableError) Unwrap() error { return ErrNotUnicast }

var limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// Unusable says why addr cannot be the destination of a probe, or returns
// "" if it can: a TCP connection is made with one host, so the address
// must be unicast. bcast holds the directed broadcasts of this host's
// subnets with their interfaces (rawsock.LocalBroadcasts): a packet to
// one reaches every host of the subnet. A Client refuses what it refuses
// (with an *UnusableError); programs check their targets with it before.
func Unusable(addr netip.Addr, bcast map[netip.Addr]string) string {
	addr = addr.Unmap()
	switch {
	case addr.IsUnspecified():
		return "the unspecified address"
	case addr.IsMulticast():
		return "a multicast address"
	case addr == limitedBroadcast:
		return "the limited broadcast address"
	}
	if ifname, ok := bcast[addr]; ok {
		return "the broadcast address of a subnet on " + ifname
	}
	return ""
}

// LocalSource returns an error unless a is an address of this host as a
// Client takes an explicit source (ProbeOptions.Source): the kernel, in
// the calling thread's network namespace, takes it as local, however
// net.ipv4.ip_nonlocal_bind is set. A loopback address is the host's,
// and a Client uses it only towards loopback destinations. For checking a
// configuration before a Client probes with it.
func LocalSource(a netip.Addr) error {
	a = a.Unmap()
	if !a.IsValid() || a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() {
		return fmt.Errorf("probe: source %v is not a unicast address of this host", a)
	}
	if err := localAddr(a); err != nil {
		return fmt.Errorf("probe: source %v: %w", a, err)
	}
	return nil
}

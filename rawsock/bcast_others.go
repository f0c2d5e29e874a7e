//go:build !linux

package rawsock

import "net/netip"

// LocalBroadcasts is not implemented on this platform.
func LocalBroadcasts() (map[netip.Addr]string, error) { return nil, errNotImplemented }

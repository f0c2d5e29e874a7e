//go:build !linux

package rawsock

import "net/netip"

// PathMTU is not implemented on this platform.
func PathMTU(netip.Addr, string) (int, error) { return 0, errNotImplemented }

// PathMTU is not implemented on this platform.
func (*Conn) PathMTU(netip.Addr) (int, error) { return 0, errNotImplemented }

//go:build !linux

package rawsock

import "net/netip"

func pathMTU(netip.Addr, string) (int, error) { return 0, errNotImplemented }

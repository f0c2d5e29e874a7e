//go:build linux

package rawsock

import (
	"errors"
	"net/netip"

	"golang.org/x/sys/unix"
)

// pathMTU is PathMTU on Linux.
func pathMTU(dst netip.Addr, iface string) (int, error) {
	dst = dst.Unmap()
	if !dst.IsValid() {
		return 0, errors.New("rawsock: no destination address")
	}
	family, level, opt := unix.AF_INET6, unix.IPPROTO_IPV6, unix.IPV6_MTU
	var sa unix.Sockaddr
	if dst.Is4() {
		family, level, opt = unix.AF_INET, unix.IPPROTO_IP, unix.IP_MTU
		sa = &unix.SockaddrInet4{Port: 9, Addr: dst.As4()}
	} else {
		sa = &unix.SockaddrInet6{Port: 9, Addr: dst.As16()}
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, opError("socket", err)
	}
	defer unix.Close(fd)
	if iface != "" {
		if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, iface); err != nil {
			return 0, opError("setsockopt SO_BINDTODEVICE "+iface, err)
		}
	}
	if err := unix.Connect(fd, sa); err != nil {
		return 0, opError("connect", err)
	}
	mtu, err := unix.GetsockoptInt(fd, level, opt)
	if err != nil {
		return 0, opError("getsockopt IP_MTU", err)
	}
	return mtu, nil
}

// pathMTU is Conn.PathMTU on Linux: through the sockets Listen opened.
func (c *Conn) pathMTU(dst netip.Addr) (int, error) { return c.mtu.pathMTU(dst) }

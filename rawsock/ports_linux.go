//go:build linux

package rawsock

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// holdPort binds a TCP socket to port on the wildcard address and returns
// it: AF_INET6 with IPV6_V6ONLY off, which holds the port for IPv4 too, or
// AF_INET when v4 is set or the kernel has no IPv6 (then v4 comes back
// set). A port another socket holds is an error wrapping ErrPortsInUse.
func holdPort(port uint16, v4 bool) (fd int, isV4 bool, err error) {
	if !v4 {
		fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		switch {
		case err == nil:
			// Off whatever net.ipv6.bindv6only says.
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
				unix.Close(fd)
				return -1, false, opError("setsockopt IPV6_V6ONLY", err)
			}
			return fd, false, bindPort(fd, &unix.SockaddrInet6{Port: int(port)}, port)
		case err == unix.EAFNOSUPPORT:
			// Booted with ipv6.disable=1 or built without IPv6: an
			// IPv4 socket holds the port everywhere it can be used.
		default:
			return -1, false, portSocketError(err)
		}
	}
	fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, true, portSocketError(err)
	}
	return fd, true, bindPort(fd, &unix.SockaddrInet4{Port: int(port)}, port)
}

// bindPort binds fd, closing it on failure.
func bindPort(fd int, sa unix.Sockaddr, port uint16) error {
	err := unix.Bind(fd, sa)
	if err == nil {
		return nil
	}
	unix.Close(fd)
	switch err {
	case unix.EADDRINUSE:
		return ErrPortsInUse
	case unix.EACCES:
		return fmt.Errorf("rawsock: bind port %d: %w (ports below net.ipv4.ip_unprivileged_port_start need CAP_NET_BIND_SERVICE)", port, os.ErrPermission)
	}
	return opError("bind", err)
}

func portSocketError(err error) error {
	if err == unix.EMFILE || err == unix.ENFILE {
		return fmt.Errorf("rawsock: out of file descriptors while holding source ports (one socket each): raise the open-file limit (ulimit -n): %w", err)
	}
	return opError("socket", err)
}

func closePort(fd int) error {
	if err := unix.Close(fd); err != nil {
		return opError("close", err)
	}
	return nil
}

// portFDMargin is the descriptors kept free for everything else a run
// opens: raw, packet and netlink sockets, epoll and event fds, files.
const portFDMargin = 64

// fdRoom returns how many more descriptors this process may open, less
// portFDMargin: the soft RLIMIT_NOFILE (which Go raises to the hard limit
// at start) minus those open now.
func fdRoom() (int, error) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0, opError("getrlimit", err)
	}
	open := 0
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		open = len(ents)
	} else if !errors.Is(err, os.ErrNotExist) {
		return 0, err
	}
	room := int64(min(lim.Cur, 1<<20)) - int64(open) - portFDMargin
	return int(max(room, 0)), nil
}

package probe

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// netns is the network namespace of the thread that called NewClient,
// kept so that what a client opens later (its RST guard) lands there too,
// whichever goroutine asks.
type netns struct {
	f        *os.File
	dev, ino uint64
}

const threadNetNS = "/proc/thread-self/ns/net"

// currentNetNS returns the calling thread's network namespace, or nil
// when /proc does not tell (the client then does without).
func currentNetNS() *netns {
	f, err := os.Open(threadNetNS)
	if err != nil {
		return nil
	}
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) != nil {
		f.Close()
		return nil
	}
	return &netns{f: f, dev: st.Dev, ino: st.Ino}
}

// do runs fn in namespace n: on the calling thread when it is already
// there, else on a locked thread that joins n (which needs CAP_SYS_ADMIN)
// and returns to its own namespace afterwards, or ends with its goroutine
// if it cannot.
func (n *netns) do(fn func() error) error {
	if n == nil {
		return fn()
	}
	runtime.LockOSThread()
	var st unix.Stat_t
	same := unix.Stat(threadNetNS, &st) == nil && st.Dev == n.dev && st.Ino == n.ino
	if same {
		defer runtime.UnlockOSThread()
		return fn()
	}
	runtime.UnlockOSThread()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open(threadNetNS)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(n.f.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("joining the client's network namespace (setns, which needs CAP_SYS_ADMIN; or create the client with ClientConfig.Guard): %w", err)
			return
		}
		ferr := fn()
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		} // else the thread stays locked, and ends with this goroutine
		errc <- ferr
	}()
	return <-errc
}

func (n *netns) close() {
	if n != nil {
		n.f.Close()
	}
}

// localLinkAddr returns an error unless a is one of the interfaces'
// addresses, in the calling thread's network namespace: a link-local one
// (when no global address serves a destination, the kernel's routes give
// an interface's link-local one as the source, and its own connections
// use it) or a secondary one.
func localLinkAddr(a netip.Addr) error {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return err
	}
	for _, ia := range addrs {
		if p, err := netip.ParsePrefix(ia.String()); err == nil && p.Addr().WithZone("") == a {
			return nil
		}
	}
	return errors.New("not an address of this host")
}

// gettid returns the calling thread's id.
func gettid() int { return unix.Gettid() }

// localAddr returns an error unless the kernel takes a as an address of
// this host, in the calling thread's network namespace: a UDP socket
// connected to a gets a itself as its source, as any destination of a
// local route does (an interface's address; AnyIP's local routes without
// a preferred source), or it is an interface's address (a secondary
// one's local route gives the primary address as the source). Loopback
// addresses are this host's whatever the
// route's preferred source. A bind would not tell: with
// net.ipv4.ip_nonlocal_bind (or net.ipv6.ip_nonlocal_bind) set, any
// address binds, and a user's probes could then be sent from any.
func localAddr(a netip.Addr) error {
	if a.IsLoopback() {
		return nil
	}
	if a.Is6() && a.IsLinkLocalUnicast() {
		// Connecting to a link-local address needs its interface,
		// which a is given without: the host's addresses tell.
		return localLinkAddr(a.WithZone(""))
	}
	// (As4 panics on an IPv6 address: each family builds its own.)
	var family int
	var sa unix.Sockaddr
	if a.Is4() {
		family, sa = unix.AF_INET, &unix.SockaddrInet4{Addr: a.As4(), Port: 9}
	} else {
		family, sa = unix.AF_INET6, &unix.SockaddrInet6{Addr: a.As16(), Port: 9}
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	// connect sends nothing: it looks the route up and picks a source.
	notLocal := errors.New("not an address of this host")
	if err := unix.Connect(fd, sa); err != nil {
		return notLocal // no route (unreachable, prohibit), a broadcast
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		return err
	}
	var src netip.Addr
	switch g := got.(type) {
	case *unix.SockaddrInet4:
		src = netip.AddrFrom4(g.Addr)
	case *unix.SockaddrInet6:
		src = netip.AddrFrom16(g.Addr)
	}
	if src != a.WithZone("") && localLinkAddr(a.WithZone("")) != nil {
		// Neither the source of its local route nor an interface's
		// address. (A secondary address's local route gives the
		// primary address as its source.)
		return notLocal
	}
	return nil
}

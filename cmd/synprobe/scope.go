package main

import (
	"fmt"
	"io"
	"net/netip"
	"sync"
)

// scopeCheck notes the targets that a link-local IPv6 source reaches only
// through a router. No router forwards a packet from a link-local source
// off its link (RFC 4291; Linux answers ICMPv6 "beyond scope of source
// address" and its own connections fail with EHOSTUNREACH), but a router
// does answer for its own addresses: those targets are probed, and the
// run warns that the others will read as filtered, and why.
type scopeCheck struct {
	sys network

	mu      sync.Mutex
	routers map[netip.Addr]*scopeNote // by next hop
	order   []netip.Addr
}

type scopeNote struct {
	src, dst netip.Addr // the first target beyond the router
	more     int        // and how many others
}

// check notes dst if src is link-local and the route to dst goes
// through a router. It is safe for concurrent use.
func (s *scopeCheck) check(src, dst netip.Addr) {
	if !src.Is6() || !src.IsLinkLocalUnicast() || dst.IsLinkLocalUnicast() || dst.IsLoopback() {
		return
	}
	gw, err := s.sys.nextHop(dst)
	if err != nil || !gw.IsValid() {
		return // on the link, or no route: the send will say
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.routers[gw]; n != nil {
		n.more++
		return
	}
	if s.routers == nil {
		s.routers = map[netip.Addr]*scopeNote{}
	}
	s.routers[gw] = &scopeNote{src: src.WithZone(""), dst: dst}
	s.order = append(s.order, gw)
}

// warn writes a line per router noted.
func (s *scopeCheck) warn(w io.Writer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, gw := range s.order {
		n := s.routers[gw]
		more := ""
		if n.more > 0 {
			more = fmt.Sprintf(" (and %d more targets)", n.more)
		}
		fmt.Fprintf(w, "synprobe: warning: source %v is link-local, and %v%s lies beyond router %v, which forwards nothing from a link-local source: only the router's own addresses can answer, the rest will read as filtered (icmp-beyond-scope, or timeout once the router's ICMP is rate-limited); give this host a global IPv6 address\n",
			n.src, n.dst, more, gw)
	}
}

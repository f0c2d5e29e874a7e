package main

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/synprobe/synprobe/rawsock"
)

// scopeCheck notes the targets that a link-local IPv6 source reaches only
// through a router. No router forwards a packet from a link-local source
// off its link (RFC 4291; Linux answers ICMPv6 "beyond scope of source
// address" and its own connections fail with EHOSTUNREACH), but a router
// does answer for its own addresses: those targets are probed, and the
// run warns that the others will read as filtered, and why.
type scopeCheck struct {
	sys     network
	ifindex int // -I's, or 0

	mu      sync.Mutex
	routers map[netip.Addr]*scopeNote // by next hop
	order   []netip.Addr
	links   map[int][]netip.Addr // the addresses of interfaces, by index
	err     error                // a refusal (a link-local source of another interface)
}

// onLink reports whether a is an address of interface ifindex (or the
// interface cannot be read).
func (s *scopeCheck) onLink(a netip.Addr, ifindex int) bool {
	addrs, ok := s.links[ifindex]
	if !ok {
		ifi, err := net.InterfaceByIndex(ifindex)
		if err != nil {
			return true
		}
		ias, err := ifi.Addrs()
		if err != nil {
			return true
		}
		for _, ia := range ias {
			if p, err := netip.ParsePrefix(ia.String()); err == nil {
				addrs = append(addrs, p.Addr().WithZone(""))
			}
		}
		if s.links == nil {
			s.links = map[int][]netip.Addr{}
		}
		s.links[ifindex] = addrs
	}
	return slices.Contains(addrs, a)
}

type scopeNote struct {
	src, dst netip.Addr // the first target beyond the router
	more     int        // and how many others
}

// check notes dst if src is link-local and the route to dst goes
// through a router, and refuses src (err) if it is another interface's
// than the route's: the answers would go to that address on the route's
// link, where nothing has it (the kernel's own connection fails with
// ENETUNREACH). It is safe for concurrent use.
func (s *scopeCheck) check(src, dst netip.Addr) {
	if !src.Is6() || !src.IsLinkLocalUnicast() || dst.IsLinkLocalUnicast() || dst.IsLoopback() {
		return
	}
	r, err := s.sys.route(netip.Addr{}, dst, s.ifindex)
	if err != nil {
		return // no route: the send will say
	}
	gw := r.Gateway
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil && !s.onLink(src.WithZone(""), r.Ifindex) {
		s.err = &failure{fmt.Errorf("source %v is link-local to another interface than the route to %v takes (%s): the answers would go to it on that link, where nothing has it; give the source of that interface, or leave -S out", src.WithZone(""), dst, via(r))}
	}
	if !gw.IsValid() {
		return // on the link
	}
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

// policyCheck refuses a source whose packets this host's routing rules
// (ip rule from SRC) send another way than the raw sockets' packets go:
// those are routed by their destination alone, so the probes would leave
// by the wrong interface or router, and their answers, sent to a source
// that path does not serve, read as filtered. Without rules beyond the
// kernel's defaults, nothing is looked up.
type policyCheck struct {
	sys     network
	ifindex int // -I's, or 0

	mu    sync.Mutex
	rules [2]int8 // per family: 0 not read yet, 1 set, -1 none
	err   error   // the first refusal
}

// check notes a refusal if the routes from src to dst and to dst alone
// differ. It is safe for concurrent use.
func (p *policyCheck) check(src, dst netip.Addr) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := famOf(dst)
	if p.err != nil || !src.IsValid() || dst.IsLoopback() {
		return
	}
	if p.rules[f] == 0 {
		p.rules[f] = -1
		if set, err := p.sys.policyRules(dst.Is6()); err != nil || set {
			p.rules[f] = 1
		}
	}
	if p.rules[f] < 0 {
		return
	}
	from, err1 := p.sys.route(src, dst, p.ifindex)
	to, err2 := p.sys.route(netip.Addr{}, dst, p.ifindex)
	// Another table (a rule chose it) and another way: a multipath
	// route's hash alone may pick another of its next hops.
	if err1 != nil || err2 != nil || from.Table == to.Table || from.Ifindex == to.Ifindex && from.Gateway == to.Gateway {
		return // no route either way: the send will say
	}
	p.err = &failure{fmt.Errorf("source %v: this host's routing rules send its packets to %v %s, but synprobe's raw sockets route by the destination alone, %s: its probes would leave the wrong way and their answers read as filtered; give %v the same route from every source (ip rule), or another source",
		src, dst, via(from), via(to), dst)}
}

// newSourceChecks returns the checks of a run's sources, for sockets
// bound to interface iface ("": none).
func newSourceChecks(sys network, iface string) (*scopeCheck, *policyCheck) {
	ifindex := 0
	if ifi, err := net.InterfaceByName(iface); iface != "" && err == nil {
		ifindex = ifi.Index
	}
	return &scopeCheck{sys: sys, ifindex: ifindex}, &policyCheck{sys: sys, ifindex: ifindex}
}

// via describes a route: its interface and router.
func via(r rawsock.Route) string {
	name := fmt.Sprintf("interface %d", r.Ifindex)
	if ifi, err := net.InterfaceByIndex(r.Ifindex); err == nil {
		name = ifi.Name
	}
	if r.Gateway.IsValid() {
		return fmt.Sprintf("through %s via %v", name, r.Gateway)
	}
	return "through " + name
}

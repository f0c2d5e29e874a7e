package main

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/synprobe/synprobe/internal/netlab"
)

// routerLab makes the lab's target namespace a router: it forwards a far
// IPv4 /24 and IPv6 /64 to a dummy interface (where they go nowhere).
// A SYN to them with --ttl 1 expires at the router, which says so with
// an ICMP time exceeded from its address on the lab's link; one with a
// TTL to spare is forwarded and lost in silence.
func routerLab(t *testing.T) (l *netlab.Lab, far4, far6 netip.Addr) {
	l = netlab.New(t)
	n := l.TargetV4.As4()[2]
	far4 = netip.AddrFrom4([4]byte{198, 19, n, 5})
	far6 = netip.MustParseAddr(fmt.Sprintf("2001:db8:fe:%x::5", n))
	l.Run(t, l.Target, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
		"net.ipv4.icmp_ratelimit=0", "net.ipv6.icmp.ratelimit=0")
	// A veth pair of its own, whose far end answers nothing: no neighbour
	// resolves, so what is forwarded there is lost (the kernel's host
	// unreachable comes seconds later, after the runs below).
	l.Run(t, l.Target, "ip", "link", "add", "far0", "type", "veth", "peer", "name", "far1")
	l.Run(t, l.Target, "ip", "link", "set", "far0", "up")
	l.Run(t, l.Target, "ip", "link", "set", "far1", "up")
	l.Run(t, l.Target, "ip", "route", "add", netip.PrefixFrom(far4, 24).Masked().String(), "dev", "far0")
	l.Run(t, l.Target, "ip", "-6", "route", "add", netip.PrefixFrom(far6, 64).Masked().String(), "dev", "far0")
	l.Run(t, l.Prober, "ip", "route", "add", netip.PrefixFrom(far4, 24).Masked().String(), "via", l.TargetV4.String())
	l.Run(t, l.Prober, "ip", "-6", "route", "add", netip.PrefixFrom(far6, 64).Masked().String(), "via", l.TargetV6.String())
	return l, far4, far6
}

// timeExceeded counts the ICMP and ICMPv6 time exceeded messages in pkts,
// by their source.
func timeExceeded(pkts []netlab.CapturedPacket) map[netip.Addr]int {
	out := map[netip.Addr]int{}
	for _, p := range pkts {
		d := p.Data
		switch {
		case len(d) >= 28 && d[0]>>4 == 4 && d[9] == 1 && d[int(d[0]&15)*4] == 11:
			out[netip.AddrFrom4([4]byte(d[12:16]))]++
		case len(d) >= 48 && d[0]>>4 == 6 && d[6] == 58 && d[40] == 3:
			out[netip.AddrFrom16([16]byte(d[8:24]))]++
		}
	}
	return out
}

// TestIntegrationTTLExceeded: a SYN whose TTL runs out at a router is
// reported with the router's ICMP time exceeded as its reason, in words
// that say so ("ttl exceeded at ROUTER"), over IPv4 and IPv6, as the
// capture on the prober's link shows; and a firewall check that expects
// the far ports filtered fails with --ttl 1 (the SYNs never got there)
// and passes with a TTL that reaches them (forwarded, then lost).
func TestIntegrationTTLExceeded(t *testing.T) {
	l, far4, far6 := routerLab(t)
	c := l.StartCapture(t, l.Prober, l.ProberIf, "icmp or icmp6")
	r := runIn(t, l, l.Prober, "--ttl", "1", "-c", "2", "-i", "0.05", "-w", "0.5", hostPort(far4, 80), hostPort(far6, 80))
	pkts, err := c.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if r.code != exitNotOpen {
		t.Errorf("ping: exit %d, want %d: %s", r.code, exitNotOpen, r.stderr)
	}
	for _, tt := range []struct{ target, router netip.Addr }{{far4, l.TargetV4}, {far6, l.TargetV6}} {
		line := fmt.Sprintf("reason=icmp-ttl-exceeded from=%v ttl=64 (ttl exceeded at %v: the SYN never reached %v)", tt.router, tt.router, tt.target)
		if n := strings.Count(r.stdout, line); n != 2 {
			t.Errorf("%d lines with %q, want 2:\n%s", n, line, r.stdout)
		}
		// The witness: the router's messages on the wire, one a SYN.
		if n := timeExceeded(pkts)[tt.router]; n != 2 {
			t.Errorf("the capture holds %d time exceeded from %v, want 2", n, tt.router)
		}
	}
	if strings.Contains(r.stdout, "hint") {
		t.Errorf("a router's TTL expiry hinted at a middlebox:\n%s", r.stdout)
	}

	// A firewall check: the far ports are expected filtered.
	check := []string{"-w", "0.3", "--retries", "0", hostPort(far4, 80) + "=filtered", hostPort(far6, 80) + "=filtered"}
	c = l.StartCapture(t, l.Prober, l.ProberIf, "icmp or icmp6")
	r = runIn(t, l, l.Prober, append([]string{"scan", "--ttl", "1"}, check...)...)
	if pkts, err = c.Stop(); err != nil {
		t.Fatal(err)
	}
	if r.code != exitNotOpen || !strings.Contains(r.stdout, "2 pairs differ from what was expected") {
		t.Errorf("--ttl 1: exit %d, want %d and 2 mismatches:\n%s%s", r.code, exitNotOpen, r.stdout, r.stderr)
	}
	for _, tt := range []struct{ target, router netip.Addr }{{far4, l.TargetV4}, {far6, l.TargetV6}} {
		want := fmt.Sprintf("MISMATCH %v (%v=filtered): expected filtered, got no answer from the target: ttl exceeded at %v, ttl 64: the SYN (--ttl 1) never reached %v, whose port was not tested",
			netip.AddrPortFrom(tt.target, 80), netip.AddrPortFrom(tt.target, 80), tt.router, tt.target)
		if !strings.Contains(r.stdout, want) {
			t.Errorf("scan output lacks %q:\n%s", want, r.stdout)
		}
		if n := timeExceeded(pkts)[tt.router]; n != 1 {
			t.Errorf("scan: the capture holds %d time exceeded from %v, want 1", n, tt.router)
		}
	}
	c = l.StartCapture(t, l.Prober, l.ProberIf, "icmp or icmp6")
	r = runIn(t, l, l.Prober, append([]string{"scan"}, check...)...)
	if pkts, err = c.Stop(); err != nil {
		t.Fatal(err)
	}
	if r.code != exitOK || !strings.Contains(r.stdout, "every pair is as expected") || len(timeExceeded(pkts)) != 0 {
		t.Errorf("--ttl 64: exit %d, %d time exceeded on the wire, want 0 and none:\n%s%s", r.code, len(timeExceeded(pkts)), r.stdout, r.stderr)
	}
}

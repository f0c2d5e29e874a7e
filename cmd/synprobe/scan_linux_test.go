//go:build linux

package main

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/synprobe/synprobe/internal/netlab"
)

// scanLab is a lab whose target answers for a whole IPv4 /24 and a small
// IPv6 range (routed to its loopback), with real listeners on the given
// ports on every address. The ranges are returned.
func scanLab(t testing.TB, ports ...int) (*netlab.Lab, netip.Prefix, netip.Prefix) {
	l := netlab.New(t)
	n := l.TargetV4.As4()[2] // the lab's own number: keeps parallel labs apart
	v4 := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, n, 0}), 24)
	v6 := netip.MustParsePrefix(fmt.Sprintf("2001:db8:ff:%x::/120", n))
	l.Run(t, l.Target, "ip", "route", "add", "local", v4.String(), "dev", "lo")
	l.Run(t, l.Target, "ip", "-6", "route", "add", "local", v6.String(), "dev", "lo")
	l.Run(t, l.Prober, "ip", "route", "add", v4.String(), "via", l.TargetV4.String())
	l.Run(t, l.Prober, "ip", "-6", "route", "add", v6.String(), "via", l.TargetV6.String())
	// Deterministic reasons: no ICMP rate limit in the target.
	l.Run(t, l.Target, "sysctl", "-qw", "net.ipv4.icmp_ratelimit=0", "net.ipv4.icmp_msgs_per_sec=1000000",
		"net.ipv6.icmp.ratelimit=0", "net.ipv4.tcp_max_syn_backlog=65536")
	for _, p := range ports {
		ln := l.Listen(t, l.Target, "tcp", fmt.Sprintf(":%d", p)) // both families, every local address
		netlab.Serve(ln, func(c net.Conn) { c.Close() })
	}
	return l, v4, v6
}

// TestIntegrationScan scans a /28 and a small IPv6 range over 10 ports with
// listeners, a closed port, a drop, an ICMP reject and an RST reject (one
// host drops port 80 too), and checks every single verdict.
func TestIntegrationScan(t *testing.T) {
	l, v4, v6 := scanLab(t, 22, 80)
	dropHost := v4.Addr().Next().Next().Next().Next().Next() // .5
	l.Nft(t, l.Target, fmt.Sprintf(`table inet lab {
	chain input {
		type filter hook input priority 0;
		tcp dport 23 drop
		tcp dport 24 reject with icmpx admin-prohibited
		tcp dport 25 reject with tcp reset
		ip daddr %v tcp dport 80 drop
	}
}`, dropHost))
	sub4 := netip.PrefixFrom(v4.Addr(), 28)
	sub6 := netip.PrefixFrom(v6.Addr(), 126)
	want := func(a netip.Addr, port uint16) string {
		switch {
		case port == 22, port == 80 && a != dropHost:
			return "open/syn-ack"
		case port == 23, port == 80:
			return "filtered/timeout"
		case port == 24:
			return "filtered/icmp-admin-prohibited"
		}
		return "closed/rst"
	}
	r := runIn(t, l, l.Prober, "--json", "--rate", "0", "-w", "0.3", sub4.String()+":20-29,80", "["+sub6.String()+"]:22-25,80")
	if r.code != exitNotOpen {
		t.Errorf("exit %d: %s", r.code, r.stderr)
	}
	got := map[netip.AddrPort]string{}
	var summary map[string]any
	for _, m := range r.lines {
		switch m["type"] {
		case "result":
			ap := netip.AddrPortFrom(netip.MustParseAddr(m["addr"].(string)), uint16(m["port"].(float64)))
			if _, dup := got[ap]; dup {
				t.Errorf("%v reported twice", ap)
			}
			got[ap] = m["state"].(string) + "/" + m["reason"].(string)
		case "scan-summary":
			summary = m
		}
	}
	pairs := 0
	for _, p := range []netip.Prefix{sub4, sub6} {
		ports := []uint16{20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 80}
		if p.Addr().Is6() {
			ports = []uint16{22, 23, 24, 25, 80}
		}
		for a := p.Addr(); p.Contains(a); a = a.Next() {
			for _, port := range ports {
				pairs++
				ap := netip.AddrPortFrom(a, port)
				if got[ap] != want(a, port) {
					t.Errorf("%v: %q, want %q", ap, got[ap], want(a, port))
				}
			}
		}
	}
	if len(got) != pairs || summary == nil || summary["pairs"] != float64(pairs) {
		t.Errorf("%d results for %d pairs; summary %v", len(got), pairs, summary)
	}
	// The silent pairs (drops) were all probed again. (An answer delayed
	// past the wait on a loaded machine may add a retry: its verdict above
	// is still exact.)
	if silent := 16 + 4 + 1; summary["retries"].(float64) < float64(silent) {
		t.Errorf("retries %v, want at least %d", summary["retries"], silent)
	}
	if ss := l.Run(t, l.Target, "ss", "-Htan", "state", "syn-recv"); strings.TrimSpace(ss) != "" {
		t.Errorf("half-open connections left:\n%s", ss)
	}

	// A firewall check: the expectations hold, or each miss is named.
	ok := runIn(t, l, l.Prober, "-w", "0.3", "--rate", "0", sub4.String()+":22=open", sub4.String()+":23=filtered", sub4.String()+":25=closed", "["+sub6.String()+"]:24=filtered")
	if ok.code != exitOK || !strings.Contains(ok.stdout, "every pair is as expected") {
		t.Errorf("expectations met: exit %d\n%s%s", ok.code, ok.stdout, ok.stderr)
	}
	bad := runIn(t, l, l.Prober, "-w", "0.3", "--rate", "0", "--expect", "closed", sub4.String()+":80")
	if bad.code != exitNotOpen || strings.Count(bad.stdout, "\nMISMATCH ") != 16 ||
		!strings.Contains(bad.stdout, fmt.Sprintf("MISMATCH %v:80 (%v:80): expected closed, got filtered: no answer to 2 probes", dropHost, sub4)) {
		t.Errorf("expectations missed: exit %d\n%s", bad.code, bad.stdout)
	}
}

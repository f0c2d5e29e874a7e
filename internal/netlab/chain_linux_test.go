package netlab

import (
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// TestIntegrationChainLab: a connection from Prober reaches Target through
// three forwarding routers over IPv4 and IPv6, routes to every router's
// address lead through Prober's one link, and the namespaces go at
// cleanup. (synprobe trace's tests see each router answer at its hop.)
func TestIntegrationChainLab(t *testing.T) {
	var names []string
	t.Run("lab", func(t *testing.T) {
		l := NewChainLab(t, 3)
		names = append([]string(nil), l.namespaces...)
		p4 := l.ProberV4.As4()
		if want := netip.AddrFrom4([4]byte{p4[0], p4[1], p4[2], 26}); len(l.Routers) != 3 || l.TargetV4 != want {
			t.Fatalf("routers %+v, target %v, want %v", l.Routers, l.TargetV4, want)
		}
		for _, dst := range []netip.Addr{l.TargetV4, l.TargetV6} {
			ln := l.Listen(t, l.Target, "tcp", netip.AddrPortFrom(dst, 7).String())
			Serve(ln, echo)
			c, err := dialIn(l, l.Prober, netip.AddrPortFrom(dst, 7), 5*time.Second)
			if err != nil {
				t.Fatalf("dial %v: %v", dst, err)
			}
			c.Close()
			for _, r := range l.Routers {
				want := r.InV4
				if dst.Is6() {
					want = r.InV6
				}
				// The router's own address on the prober's side answers.
				if out := l.Run(t, l.Prober, "ip", "route", "get", want.String()); !strings.Contains(out, "dev out0") {
					t.Errorf("route to %v: %s", want, out)
				}
			}
		}
		if out := l.Run(t, l.Routers[1].NS, "sysctl", "-n", "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"); strings.Fields(out)[0] != "1" || strings.Fields(out)[1] != "1" {
			t.Errorf("r2 forwarding: %q", out)
		}
	})
	for _, ns := range names {
		if _, err := os.Stat(netnsDir + "/" + ns); err == nil {
			t.Errorf("namespace %s left behind", ns)
		}
	}
}

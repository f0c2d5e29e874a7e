//go:build linux

package rawsock

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/synprobe/synprobe/internal/netlab"
)

// TestIntegrationDirectPath: the Ethernet fast path is offered for a block
// routed by one gateway with nothing on the output path, and refused, with
// the reason, as soon as anything could treat two probes differently or
// refuse one: an output firewall, connection tracking, a route inside the
// block, policy routing, IPsec, an on-link block, a multipath route, an
// unresolved gateway.
func TestIntegrationDirectPath(t *testing.T) {
	lab := netlab.New(t)
	x := lab.TargetV4.As4()[2]
	block := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, x, 0}), 24)
	block6 := netip.MustParsePrefix(fmt.Sprintf("2001:db8:ff:%x::/120", x))
	mac := strings.Fields(lab.Run(t, lab.Target, "ip", "-br", "link", "show", "dev", lab.TargetIf))[2]
	lab.Run(t, lab.Prober, "ip", "route", "add", block.String(), "via", lab.TargetV4.String())
	lab.Run(t, lab.Prober, "ip", "-6", "route", "add", block6.String(), "via", lab.TargetV6.String())
	for _, a := range []netip.Addr{lab.TargetV4, lab.TargetV6} {
		lab.Run(t, lab.Prober, "ip", "neigh", "replace", a.String(), "lladdr", mac, "dev", lab.ProberIf, "nud", "permanent")
	}
	direct := func(prefixes ...netip.Prefix) (NextHop, error) {
		var hop NextHop
		err := lab.InNS(lab.Prober, func() (err error) {
			hop, err = DirectPath(prefixes, 0)
			return err
		})
		return hop, err
	}
	sub := func(bits int, host byte) netip.Prefix {
		b := block.Addr().As4()
		b[3] = host
		return netip.PrefixFrom(netip.AddrFrom4(b), bits)
	}
	ok := func(what string, prefixes ...netip.Prefix) {
		t.Helper()
		hop, err := direct(prefixes...)
		if err != nil {
			t.Errorf("%s: %v", what, err)
			return
		}
		want := lab.TargetV4
		if prefixes[0].Addr().Is6() {
			want = lab.TargetV6
		}
		if hop.Gateway != want || hop.DstMAC.String() != mac {
			t.Errorf("%s: hop %+v, want gateway %v at %s", what, hop, want, mac)
		}
	}
	refused := func(what, reason string, prefixes ...netip.Prefix) {
		t.Helper()
		if _, err := direct(prefixes...); err == nil || !strings.Contains(err.Error(), reason) {
			t.Errorf("%s: %v, want an error with %q", what, err, reason)
		}
	}

	ok("a routed block", block)
	ok("an IPv6 routed block", block6)
	ok("parts of the block", sub(25, 0), sub(32, 200))
	refused("a block of the connected subnet", "on the link", netip.PrefixFrom(lab.TargetV4, 32))
	refused("a block wider than the route", "lies inside", netip.PrefixFrom(block.Addr(), 16))

	// A more specific route inside the block.
	for _, typ := range []string{"prohibit", "blackhole", "unreachable"} {
		lab.Run(t, lab.Prober, "ip", "route", "add", typ, sub(28, 64).String())
		refused(typ+" route inside", "lies inside", block)
		refused(typ+" route for the block", "not a unicast route", sub(28, 64))
		ok("a part without it", sub(26, 128))
		lab.Run(t, lab.Prober, "ip", "route", "del", typ, sub(28, 64).String())
	}
	lab.Run(t, lab.Prober, "ip", "route", "add", sub(25, 128).String(), "via", lab.TargetV4.String(), "metric", "5")
	refused("a route inside, even the same way", "lies inside", block)
	lab.Run(t, lab.Prober, "ip", "route", "del", sub(25, 128).String())

	// Output firewalls; synprobe's own RST guard passes SYNs.
	lab.Nft(t, lab.Prober, "table inet synprobe_1_0000abcd {\n chain out {\n type filter hook output priority 0;\n tcp flags & rst == rst drop\n }\n}\n")
	ok("beside an RST guard", block)
	for _, hook := range []string{"output", "postrouting"} {
		lab.Nft(t, lab.Prober, fmt.Sprintf("table ip fw {\n chain c {\n type filter hook %s priority 0;\n ip daddr 203.0.113.0/24 drop\n }\n}\n", hook))
		refused("an nftables "+hook+" chain", "nftables chain ip fw c", block)
		ok("IPv4 rules do not touch IPv6", block6)
		lab.Run(t, lab.Prober, "nft", "delete", "table", "ip", "fw")
	}
	lab.Nft(t, lab.Prober, "table inet fw {\n chain c {\n type filter hook output priority 0;\n }\n}\n")
	refused("an inet output chain (IPv4)", "nftables chain inet fw c", block)
	refused("an inet output chain (IPv6)", "nftables chain inet fw c", block6)
	lab.Run(t, lab.Prober, "nft", "delete", "table", "inet", "fw")

	// Policy routing.
	lab.Run(t, lab.Prober, "ip", "rule", "add", "fwmark", "7", "lookup", "100")
	refused("a policy rule", "routing rule", block)
	lab.Run(t, lab.Prober, "ip", "rule", "del", "fwmark", "7", "lookup", "100")

	// IPsec.
	lab.Run(t, lab.Prober, "ip", "xfrm", "policy", "add", "dir", "out", "src", lab.ProberV4.String(), "dst", block.String(), "proto", "tcp", "action", "block")
	refused("an IPsec policy", "IPsec policies", block)
	lab.Run(t, lab.Prober, "ip", "xfrm", "policy", "flush")

	// Multipath.
	lab.Run(t, lab.Prober, "ip", "route", "replace", block.String(), "nexthop", "via", lab.TargetV4.String(), "nexthop", "via", lab.TargetV4.Next().String())
	refused("a multipath route", "features this check does not model", block)
	lab.Run(t, lab.Prober, "ip", "route", "replace", block.String(), "via", lab.TargetV4.String())

	// An unresolved gateway.
	lab.Run(t, lab.Prober, "ip", "neigh", "del", lab.TargetV4.String(), "dev", lab.ProberIf)
	refused("an unresolved gateway", "not resolved", block)
	lab.Run(t, lab.Prober, "ip", "neigh", "replace", lab.TargetV4.String(), "lladdr", mac, "dev", lab.ProberIf, "nud", "permanent")
	ok("a resolved gateway again", block)

	// Connection tracking, switched on by an input rule (last: its
	// entries outlive the rule).
	lab.Nft(t, lab.Prober, "table ip track {\n chain in {\n type filter hook input priority 0;\n ct state established accept\n }\n}\n")
	lab.InNS(lab.Prober, func() error { // a datagram: tracked for 30 s
		c, err := net.Dial("udp", netip.AddrPortFrom(lab.TargetV4, 9).String())
		if err == nil {
			c.Write([]byte("x"))
			c.Close()
		}
		return err
	})
	lab.Run(t, lab.Prober, "nft", "delete", "table", "ip", "track")
	refused("connection tracking", "connection tracking", block)
}

package netlab

import (
	"fmt"
	"net/netip"
	"strconv"
	"testing"
)

// MaxChainRouters bounds NewChainLab's routers: each link takes a /29 of
// the lab's /24.
const MaxChainRouters = 30

// NewChainLab creates Prober and Target with n Linux routers between them
// in a chain (Prober - r1 - ... - rn - Target), each router a namespace
// of its own with forwarding on for IPv4 and IPv6 and static routes, and
// registers their removal with tb.Cleanup. Link i (0 from Prober's side)
// is 198.18.X.8i/29 and 2001:db8:X:i::/64, its left end .8i+1 and ::1,
// its right end .8i+2 and ::2: ProberV4 is 198.18.X.1 and TargetV4
// 198.18.X.(8n+2). Every end has permanent neighbour entries for its
// peer. ICMP rate limits stay the kernel's defaults. It skips the test
// when not privileged.
func NewChainLab(tb testing.TB, n int) *Lab {
	tb.Helper()
	if n < 1 || n > MaxChainRouters {
		tb.Fatalf("netlab: %d routers: want 1 to %d", n, MaxChainRouters)
	}
	roles := []string{"p", "t"}
	for i := 1; i <= n; i++ {
		roles = append(roles, "r"+strconv.Itoa(i))
	}
	l, x := prepare(tb, roles...)
	v4 := func(link, end int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, x, byte(8*link + end)}) }
	v6 := func(link, end int) netip.Addr {
		return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, x, 0, byte(link), 15: byte(end)})
	}
	l.ProberIf, l.TargetIf = "out0", "in0"
	l.TargetV4, l.TargetV6 = v4(n, 2), v6(n, 2)
	for i := 1; i <= n; i++ {
		ns := l.namespaces[1+i]
		l.sysctl(tb, ns, map[string]string{
			"net/ipv6/conf/all/accept_dad":               "0",
			"net/ipv6/conf/default/accept_dad":           "0",
			"net/ipv6/conf/default/router_solicitations": "0",
			"net/ipv6/conf/default/accept_ra":            "0",
			"net/ipv4/ip_forward":                        "1",
			"net/ipv6/conf/all/forwarding":               "1",
		})
		l.Routers = append(l.Routers, ChainRouter{NS: ns, In: "in0", Out: "out0",
			InV4: v4(i-1, 2), InV6: v6(i-1, 2), OutV4: v4(i, 1), OutV6: v6(i, 1)})
	}
	// nsAt returns the namespace at position k of the chain: 0 Prober,
	// n+1 Target.
	nsAt := func(k int) string {
		switch k {
		case 0:
			return l.Prober
		case n + 1:
			return l.Target
		}
		return l.Routers[k-1].NS
	}
	// Link i joins position i (out0) and i+1 (in0).
	cmds := make([][]string, n+2)
	for k := range cmds {
		cmds[k] = []string{"link set lo up"}
	}
	for i := 0; i <= n; i++ {
		left, right := nsAt(i), nsAt(i+1)
		macL, macR := mac(x, byte(16+2*i)), mac(x, byte(17+2*i))
		l.run(tb, "ip", "link", "add", "out0", "netns", left, "address", macL,
			"type", "veth", "peer", "name", "in0", "netns", right, "address", macR)
		cmds[i] = append(cmds[i],
			"link set dev out0 up",
			fmt.Sprintf("addr add %s/29 dev out0", v4(i, 1)),
			fmt.Sprintf("addr add %s/64 dev out0 nodad", v6(i, 1)),
			fmt.Sprintf("neigh replace %s lladdr %s dev out0 nud permanent", v4(i, 2), macR),
			fmt.Sprintf("neigh replace %s lladdr %s dev out0 nud permanent", v6(i, 2), macR))
		cmds[i+1] = append(cmds[i+1],
			"link set dev in0 up",
			fmt.Sprintf("addr add %s/29 dev in0", v4(i, 2)),
			fmt.Sprintf("addr add %s/64 dev in0 nodad", v6(i, 2)),
			fmt.Sprintf("neigh replace %s lladdr %s dev in0 nud permanent", v4(i, 1), macL),
			fmt.Sprintf("neigh replace %s lladdr %s dev in0 nud permanent", v6(i, 1), macL))
	}
	// Routes: position k reaches link j through its left neighbour when j
	// lies left of its own links, through its right one otherwise.
	for k := 0; k <= n+1; k++ {
		for j := 0; j <= n; j++ {
			if j == k-1 || j == k {
				continue // its own
			}
			p4 := netip.PrefixFrom(v4(j, 0), 29)
			p6 := netip.PrefixFrom(v6(j, 0), 64)
			if j < k-1 {
				cmds[k] = append(cmds[k], fmt.Sprintf("route add %s via %s dev in0", p4, v4(k-1, 1)),
					fmt.Sprintf("route add %s via %s dev in0", p6, v6(k-1, 1)))
			} else {
				cmds[k] = append(cmds[k], fmt.Sprintf("route add %s via %s dev out0", p4, v4(k, 2)),
					fmt.Sprintf("route add %s via %s dev out0", p6, v6(k, 2)))
			}
		}
	}
	for k := 0; k <= n+1; k++ {
		l.batch(tb, nsAt(k), cmds[k]...)
	}
	l.waitReady(tb, l.Prober, "out0", v4(0, 2), v6(0, 2))
	l.waitReady(tb, l.Target, "in0", v4(n, 1), v6(n, 1))
	for i, r := range l.Routers {
		l.waitReady(tb, r.NS, "in0", v4(i, 1), v6(i, 1))
		l.waitReady(tb, r.NS, "out0", v4(i+1, 2), v6(i+1, 2))
	}
	return l
}

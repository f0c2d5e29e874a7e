//go:build linux

package rawsock

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/synprobe/synprobe/internal/netlab"
)

// ipJSON runs `ip -j ARGS` in namespace ns and decodes its output, the
// witness for what the kernel's tables hold.
func ipJSON(t *testing.T, lab *netlab.Lab, ns string, args ...string) []map[string]any {
	t.Helper()
	out := lab.Run(t, ns, "ip", append([]string{"-j"}, args...)...)
	var v []map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("ip -j %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return v
}

// TestIntegrationRouteTo: RouteTo gives the interface and gateway the
// kernel's own route lookup (ip route get) gives, for on-link and routed
// destinations of both families, and the kernel's reason for none.
func TestIntegrationRouteTo(t *testing.T) {
	lab := netlab.New(t)
	x := lab.TargetV4.As4()[2]
	routed4 := netip.AddrFrom4([4]byte{198, 19, x, 7})
	routed6 := netip.MustParseAddr(fmt.Sprintf("2001:db8:ff:%x::7", x))
	lab.Run(t, lab.Prober, "ip", "route", "add", netip.PrefixFrom(routed4, 24).Masked().String(), "via", lab.TargetV4.String())
	lab.Run(t, lab.Prober, "ip", "-6", "route", "add", netip.PrefixFrom(routed6, 64).Masked().String(), "via", lab.TargetV6.String())
	lab.Run(t, lab.Prober, "ip", "route", "add", "unreachable", "198.19.255.0/24")
	ifi := 0
	if err := lab.InNS(lab.Prober, func() error {
		dev, err := net.InterfaceByName(lab.ProberIf)
		if err == nil {
			ifi = dev.Index
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		dst, gw netip.Addr // gw invalid: on the link
	}{
		{lab.TargetV4, netip.Addr{}},
		{lab.TargetV6, netip.Addr{}},
		{routed4, lab.TargetV4},
		{routed6, lab.TargetV6},
		{netip.AddrFrom16(routed4.As16()), lab.TargetV4}, // v4-mapped
	} {
		var gotIf int
		var gotGW netip.Addr
		err := lab.InNS(lab.Prober, func() (err error) {
			gotIf, gotGW, err = RouteTo(tt.dst)
			return err
		})
		// The witness: ip route get.
		r := ipJSON(t, lab, lab.Prober, "route", "get", tt.dst.Unmap().String())
		witnessGW, _ := r[0]["gateway"].(string)
		if err != nil || gotIf != ifi || gotGW != tt.gw || r[0]["dev"] != lab.ProberIf || witnessGW != strings.TrimPrefix(tt.gw.String(), "invalid IP") {
			t.Errorf("RouteTo(%v) = %d, %v, %v; want %d (%s), %v; ip route get says %v", tt.dst, gotIf, gotGW, err, ifi, lab.ProberIf, tt.gw, r[0])
		}
	}
	err := lab.InNS(lab.Prober, func() error {
		_, _, err := RouteTo(netip.MustParseAddr("198.19.255.1"))
		return err
	})
	if !errors.Is(err, unix.EHOSTUNREACH) && !errors.Is(err, unix.ENETUNREACH) {
		t.Errorf("RouteTo an unreachable route: %v, want the kernel's unreachable error", err)
	} else {
		t.Logf("unreachable: %v", err)
	}
}

// TestIntegrationNeighbor: Neighbor finds the resolved link-layer address
// of a neighbour (ip neigh shows the same), and none for an address
// without an entry, on another interface or whose resolution failed.
func TestIntegrationNeighbor(t *testing.T) {
	lab := netlab.New(t)
	lab.Run(t, lab.Prober, "ip", "neigh", "add", "198.18.255.9", "dev", lab.ProberIf, "nud", "failed")
	var ifi, lo int
	lab.InNS(lab.Prober, func() error {
		dev, err := net.InterfaceByName(lab.ProberIf)
		if err == nil {
			ifi = dev.Index
		}
		if l, err := net.InterfaceByName("lo"); err == nil {
			lo = l.Index
		}
		return err
	})
	witness := map[netip.Addr]string{}
	for _, n := range ipJSON(t, lab, lab.Prober, "neigh", "show", "dev", lab.ProberIf) {
		a, _ := netip.ParseAddr(n["dst"].(string))
		if ll, ok := n["lladdr"].(string); ok {
			witness[a] = ll
		}
	}
	for _, tt := range []struct {
		ifi  int
		addr netip.Addr
		want bool
	}{
		{ifi, lab.TargetV4, true},
		{ifi, lab.TargetV6, true},
		{ifi, netip.AddrFrom16(lab.TargetV4.As16()), true},
		{lo, lab.TargetV4, false},
		{ifi, netip.MustParseAddr("198.18.255.9"), false},
		{ifi, netip.MustParseAddr("198.18.255.10"), false},
	} {
		var mac net.HardwareAddr
		var ok bool
		err := lab.InNS(lab.Prober, func() (err error) {
			mac, ok, err = Neighbor(tt.ifi, tt.addr)
			return err
		})
		switch {
		case err != nil:
			t.Errorf("Neighbor(%d, %v): %v", tt.ifi, tt.addr, err)
		case ok != tt.want:
			t.Errorf("Neighbor(%d, %v) = %v, %v; want found %v", tt.ifi, tt.addr, mac, ok, tt.want)
		case ok && mac.String() != witness[tt.addr.Unmap()]:
			t.Errorf("Neighbor(%d, %v) = %v; ip neigh says %q", tt.ifi, tt.addr, mac, witness[tt.addr.Unmap()])
		}
	}
}

// TestIntegrationLocalBroadcasts: the broadcast routes of the local
// table, as ip route shows them, each with its interface.
func TestIntegrationLocalBroadcasts(t *testing.T) {
	lab := netlab.New(t)
	lab.Run(t, lab.Prober, "ip", "addr", "add", "198.19.77.1/28", "dev", lab.ProberIf)
	lab.Run(t, lab.Prober, "ip", "addr", "add", "198.19.78.1/24", "broadcast", "198.19.78.99", "dev", lab.ProberIf)
	want := map[netip.Addr]string{}
	for _, r := range ipJSON(t, lab, lab.Prober, "route", "show", "table", "local", "type", "broadcast") {
		want[netip.MustParseAddr(r["dst"].(string))] = r["dev"].(string)
	}
	var got map[netip.Addr]string
	if err := lab.InNS(lab.Prober, func() (err error) {
		got, err = LocalBroadcasts()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	b := lab.ProberV4.As4()
	b[3] = 255
	for _, a := range []netip.Addr{netip.AddrFrom4(b), netip.MustParseAddr("198.19.77.15"), netip.MustParseAddr("198.19.78.99")} {
		if got[a] != lab.ProberIf {
			t.Errorf("LocalBroadcasts lacks %v on %s", a, lab.ProberIf)
		}
	}
	if !maps.Equal(got, want) {
		t.Errorf("LocalBroadcasts = %v; ip route show table local type broadcast: %v", got, want)
	}
	t.Logf("%v", got)
}

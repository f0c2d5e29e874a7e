//go:build linux

package rawsock

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/synprobe/synprobe/internal/netlab"
)

// The netlink requests rawsock makes (the RST guard's: rawsock/rstguard), timed inside a lab's prober
// namespace (root needed; they skip otherwise):
//
//	sudo go test -run XXX -bench 'DirectPath|RouteTo|Neighbor|LocalBroadcasts' -benchtime 200x ./rawsock

// routedLab is TestIntegrationDirectPath's lab: a /24 and an IPv6 /120
// routed through the target, whose address is resolved.
func routedLab(b *testing.B) (*netlab.Lab, netip.Prefix) {
	lab := netlab.New(b)
	x := lab.TargetV4.As4()[2]
	block := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, x, 0}), 24)
	mac := strings.Fields(lab.Run(b, lab.Target, "ip", "-br", "link", "show", "dev", lab.TargetIf))[2]
	lab.Run(b, lab.Prober, "ip", "route", "add", block.String(), "via", lab.TargetV4.String())
	lab.Run(b, lab.Prober, "ip", "neigh", "replace", lab.TargetV4.String(), "lladdr", mac, "dev", lab.ProberIf, "nud", "permanent")
	return lab, block
}

// BenchmarkDirectPath: every check DirectPath makes, passing.
func BenchmarkDirectPath(b *testing.B) {
	lab, block := routedLab(b)
	lab.InProber(b, func(b *testing.B) error {
		for b.Loop() {
			if _, err := DirectPath([]netip.Prefix{block}, 0); err != nil {
				return err
			}
		}
		return nil
	})
}

func BenchmarkRouteTo(b *testing.B) {
	lab, block := routedLab(b)
	dst := block.Addr().Next()
	lab.InProber(b, func(b *testing.B) error {
		for b.Loop() {
			if _, gw, err := RouteTo(dst); err != nil || gw != lab.TargetV4 {
				return fmt.Errorf("RouteTo = %v, %v", gw, err)
			}
		}
		return nil
	})
}

func BenchmarkNeighbor(b *testing.B) {
	lab, _ := routedLab(b)
	lab.InProber(b, func(b *testing.B) error {
		ifi, _, err := RouteTo(lab.TargetV4)
		if err != nil {
			return err
		}
		for b.Loop() {
			if _, ok, err := Neighbor(ifi, lab.TargetV4); err != nil || !ok {
				return fmt.Errorf("Neighbor = %v, %v", ok, err)
			}
		}
		return nil
	})
}

func BenchmarkLocalBroadcasts(b *testing.B) {
	lab := netlab.New(b)
	lab.InProber(b, func(b *testing.B) error {
		for b.Loop() {
			if m, err := LocalBroadcasts(); err != nil || len(m) == 0 {
				return fmt.Errorf("LocalBroadcasts = %v, %v", m, err)
			}
		}
		return nil
	})
}

// BenchmarkRouteLookups: LookupRoute on one socket (RouteLookups), as
// the command line's source checks ask, against RouteTo's socket per
// call (BenchmarkRouteTo).
func BenchmarkRouteLookups(b *testing.B) {
	lab, block := routedLab(b)
	dst := block.Addr().Next()
	lab.InProber(b, func(b *testing.B) error {
		r, err := NewRouteLookups()
		if err != nil {
			return err
		}
		defer r.Close()
		for b.Loop() {
			if rt, err := r.Lookup(netip.Addr{}, dst, 0); err != nil || rt.Gateway != lab.TargetV4 {
				return fmt.Errorf("Lookup = %+v, %v", rt, err)
			}
		}
		return nil
	})
}

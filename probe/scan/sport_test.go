package scan

import (
	"net/netip"
	"testing"

	"github.com/synprobe/synprobe/probe/probetest"
)

// TestSourcePorts: with a port list that has holes, every probe's source
// port is on the list, and the passes over a pair use as many different
// ports as there are passes, so an answer's port names its pass.
func TestSourcePorts(t *testing.T) {
	spec := mustSpec(t, "198.18.0.0/24:1-100")
	ports := []uint16{61000, 61001, 61002, 61005, 61100}
	for p := uint16(61200); p < 61300; p++ {
		ports = append(ports, p)
	}
	held := map[uint16]bool{}
	for _, p := range ports {
		held[p] = true
	}
	s, err := newScanner(probetest.NewConn(nil), Config{Set: mustNewSet(t, Block{Spec: spec}), Retries: MaxRetries}, wiring{Src4: netip.MustParseAddr("198.18.0.1"), PortLo: 61000, PortHi: 61299, Ports: ports, Recv: &feed{}})
	if err != nil {
		t.Fatal(err)
	}
	used := map[uint16]int{}
	for idx := range s.n {
		seen := map[uint16]bool{}
		for pass := range MaxRetries + 1 {
			p := s.sport(idx, pass)
			if !held[p] {
				t.Fatalf("pair %d pass %d: port %d is not ours", idx, pass, p)
			}
			if seen[p] {
				t.Fatalf("pair %d: port %d again in pass %d", idx, p, pass)
			}
			seen[p] = true
			used[p]++
		}
	}
	if len(used) != len(ports) {
		t.Errorf("%d of %d ports used", len(used), len(ports))
	}
	if _, err := newScanner(probetest.NewConn(nil), Config{Set: mustNewSet(t, Block{Spec: spec})}, wiring{PortLo: 61000, PortHi: 61099, Ports: ports}); err == nil {
		t.Error("ports outside PortLo..PortHi accepted")
	}
}

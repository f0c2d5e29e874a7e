package rawsock

import (
	"testing"

	"golang.org/x/net/bpf"
)

// TestPortRangeChecks runs the range checks behind a load of the port,
// with one range, with holes and with the most ranges a block may have.
func TestPortRangeChecks(t *testing.T) {
	many := make([]PortRange, maxPortRanges)
	for i := range many {
		p := uint16(10000 + 2*i)
		many[i] = PortRange{p, p} // every other port
	}
	for _, tt := range []struct {
		ranges []PortRange
		in     []uint16
		out    []uint16
	}{
		{[]PortRange{{61000, 61511}}, []uint16{61000, 61200, 61511}, []uint16{0, 60999, 61512, 65535}},
		{[]PortRange{{100, 101}, {104, 110}, {200, 200}}, []uint16{100, 101, 104, 110, 200}, []uint16{99, 102, 103, 111, 199, 201}},
		{many, []uint16{10000, 10002, 10000 + 2*(maxPortRanges-1)}, []uint16{9999, 10001, 10003, 10000 + 2*maxPortRanges}},
	} {
		prog := append([]bpf.Instruction{bpf.LoadAbsolute{Off: 0, Size: 2}}, portRangeChecks(tt.ranges)...)
		vm, err := bpf.NewVM(prog)
		if err != nil {
			t.Fatalf("%v: %v", tt.ranges, err)
		}
		for _, want := range []bool{true, false} {
			ports := tt.in
			if !want {
				ports = tt.out
			}
			for _, p := range ports {
				n, err := vm.Run([]byte{byte(p >> 8), byte(p)})
				if err != nil || (n != 0) != want {
					t.Errorf("%d ranges: port %d: accept %d, %v; want %v", len(tt.ranges), p, n, err, want)
				}
			}
		}
	}
	if err := checkRanges(append(many, PortRange{1, 1})); err == nil {
		t.Error("checkRanges accepted more than maxPortRanges ranges")
	}
	for _, bad := range [][]PortRange{nil, {{0, 5}}, {{6, 5}}} {
		if err := checkRanges(bad); err == nil {
			t.Errorf("checkRanges(%v) accepted", bad)
		}
	}
}

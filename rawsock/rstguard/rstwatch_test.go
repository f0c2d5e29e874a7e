package rstguard

import (
	"testing"

	"golang.org/x/net/bpf"

	"github.com/synprobe/synprobe/rawsock"
)

// TestPortRangeChecks runs the range checks behind a load of the port,
// with one range, with holes and with the most ranges a block may have.
func TestPortRangeChecks(t *testing.T) {
	many := make([]rawsock.PortRange, rawsock.MaxPortRanges)
	for i := range many {
		p := uint16(10000 + 2*i)
		many[i] = rawsock.PortRange{Lo: p, Hi: p} // every other port
	}
	for _, tt := range []struct {
		ranges []rawsock.PortRange
		in     []uint16
		out    []uint16
	}{
		{[]rawsock.PortRange{{Lo: 61000, Hi: 61511}}, []uint16{61000, 61200, 61511}, []uint16{0, 60999, 61512, 65535}},
		{[]rawsock.PortRange{{Lo: 100, Hi: 101}, {Lo: 104, Hi: 110}, {Lo: 200, Hi: 200}}, []uint16{100, 101, 104, 110, 200}, []uint16{99, 102, 103, 111, 199, 201}},
		{many, []uint16{10000, 10002, 10000 + 2*(rawsock.MaxPortRanges-1)}, []uint16{9999, 10001, 10003, 10000 + 2*rawsock.MaxPortRanges}},
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
	if err := rawsock.CheckRanges(append(many, rawsock.PortRange{Lo: 1, Hi: 1})); err == nil {
		t.Error("CheckRanges accepted more than MaxPortRanges ranges")
	}
	for _, bad := range [][]rawsock.PortRange{nil, {{Lo: 0, Hi: 5}}, {{Lo: 6, Hi: 5}}} {
		if err := rawsock.CheckRanges(bad); err == nil {
			t.Errorf("rawsock.CheckRanges(%v) accepted", bad)
		}
	}
}

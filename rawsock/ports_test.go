package rawsock

import (
	"errors"
	"strings"
	"testing"
)

func TestPortRangeOutside(t *testing.T) {
	for _, tt := range []struct {
		lo, hi         int
		wantLo, wantHi uint16
		err            bool
	}{
		{32768, 60999, 61000, 65535, false}, // Linux default
		{1024, 65000, 0, 0, true},           // nothing left on either side
		{10000, 65535, 1024, 9999, false},   // only below
		{49152, 65535, 1024, 49151, false},  // IANA dynamic range
		{0, 100, 0, 0, true},
		{5000, 4000, 0, 0, true},
	} {
		lo, hi, err := PortRangeOutside(tt.lo, tt.hi)
		if (err != nil) != tt.err || lo != tt.wantLo || hi != tt.wantHi {
			t.Errorf("PortRangeOutside(%d, %d) = %d, %d, %v; want %d, %d, err=%v", tt.lo, tt.hi, lo, hi, err, tt.wantLo, tt.wantHi, tt.err)
		}
	}
	// A valid range that leaves too little room says so, and how to fix it.
	if _, _, err := PortRangeOutside(1024, 65000); !errors.Is(err, ErrNoProbePorts) || !strings.Contains(err.Error(), "narrow it") {
		t.Errorf("PortRangeOutside(1024, 65000): %v", err)
	}
	if _, _, err := PortRangeOutside(5000, 4000); errors.Is(err, ErrNoProbePorts) {
		t.Errorf("a reversed range: %v, not a lack of room", err)
	}
}

func TestPortRanges(t *testing.T) {
	for _, tt := range []struct {
		ports []uint16
		want  string
	}{
		{nil, ""},
		{[]uint16{5}, "5"},
		{[]uint16{5, 6, 7}, "5-7"},
		{[]uint16{5, 6, 8, 10, 11, 65535}, "5-6,8,10-11,65535"},
	} {
		if got := FormatRanges(RangesOf(tt.ports)); got != tt.want {
			t.Errorf("RangesOf(%v) = %q, want %q", tt.ports, got, tt.want)
		}
	}
}

func TestReservePortsBadRequest(t *testing.T) {
	for _, req := range []PortRequest{
		{Lo: 0, Hi: 100, Min: 1},
		{Lo: 200, Hi: 100, Min: 1},
		{Lo: 100, Hi: 200, Min: 0},
		{Lo: 100, Hi: 200, Min: 10, Max: 5},
	} {
		if b, err := ReservePorts(req); err == nil {
			b.Close()
			t.Errorf("ReservePorts(%+v) succeeded", req)
		}
	}
	if _, err := ReservePort(0); err == nil {
		t.Error("ReservePort(0) succeeded")
	}
}

package rawsock

import "testing"

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
}

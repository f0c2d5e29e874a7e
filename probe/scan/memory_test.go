package scan

import (
	"runtime"
	"testing"
	"time"

	"github.com/synprobe/synprobe/probe/probetest"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// TestFlatMemory: setting up a scan of a /16 × 1000 ports (65.5 million
// pairs) allocates one bit per pair and fixed-size tables, nothing per
// pair.
func TestFlatMemory(t *testing.T) {
	spec := mustSpec(t, "198.18.0.0/16:1-1000")
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s, err := newScanner(probetest.NewConn(nil), Config{Set: mustNewSet(t, Block{Spec: spec}),
		Rate: 10000, Timeout: time.Second, Options: &wire.SYNOptions{MSS: 1460, WScale: 7},
	}, wiring{PortLo: 61000, PortHi: 65000, Recv: &feed{}})
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	pairs := s.n
	grew := after.TotalAlloc - before.TotalAlloc
	if pairs != 65536*1000 || grew > pairs/8+4<<20 {
		t.Errorf("%d pairs: setup allocated %d bytes, want at most one bit per pair (%d) plus 4 MiB", pairs, grew, pairs/8)
	}
	runtime.KeepAlive(s)
}

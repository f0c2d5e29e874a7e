package exporter

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// TestSeriesMemory: the series of 10,000 targets (the bench's: a /24's
// 250 hosts x 40 ports, one label, each probed once) take at most 2 KB a
// target of heap (about 1.5 KB measured; client_golang's vectors took
// 4.2 KB).
func TestSeriesMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 targets")
	}
	var b strings.Builder
	b.WriteString("modules:\n  rst: {mode: rst, timeout: 1s}\ntargets:\n  - interval: 1s\n    module: rst\n    labels: {bench: serve}\n    hosts:\n")
	for h := 1; h <= 250; h++ {
		for p := 20; p < 60; p++ {
			fmt.Fprintf(&b, "      - 198.19.201.%d:%d\n", h, p)
		}
	}
	cfg, err := Parse([]byte(b.String()), "x.yml")
	if err != nil {
		t.Fatal(err)
	}
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	set := newTargetSeries(cfg)
	hs := make([]*handles, len(cfg.Targets))
	for i, tg := range cfg.Targets {
		h := set.handles(tg, tg.Host)
		h.request()
		h.respond("rst")
		h.observe(set, 0.00002)
		hs[i] = h
	}
	per := float64(heap()-before) / float64(len(hs))
	runtime.KeepAlive(hs)
	runtime.KeepAlive(set)
	t.Logf("%.0f bytes a target", per)
	if per > 2048 {
		t.Errorf("%.0f bytes a target, want at most 2048", per)
	}
}

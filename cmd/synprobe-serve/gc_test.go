package main

import (
	"runtime/debug"
	"testing"
)

// TestGCPercent: 50 unless the environment sets GOGC, which stays the
// runtime's.
func TestGCPercent(t *testing.T) {
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)
	for _, c := range []struct {
		gogc string
		want int
	}{{"", 50}, {"100", 100}, {"off", 100}} {
		debug.SetGCPercent(100)
		gcPercent(func(k string) string {
			if k == "GOGC" {
				return c.gogc
			}
			return ""
		})
		if got := debug.SetGCPercent(100); got != c.want {
			t.Errorf("GOGC=%q: percent %d, want %d", c.gogc, got, c.want)
		}
	}
}

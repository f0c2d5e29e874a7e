//go:build linux

package rstguard

import (
	"fmt"
	"testing"

	"github.com/synprobe/synprobe/internal/netlab"
	"github.com/synprobe/synprobe/rawsock"
)

// The guard's netlink requests, timed inside a lab's prober namespace
// (root needed; they skip otherwise):
//
//	sudo go test -run XXX -bench . -benchtime 200x ./rawsock/rstguard

// BenchmarkRSTGuard: a guard's set-up (its netlink sockets, the log
// group's binding, the batch) and Close, as ack and fin runs pay once.
func BenchmarkRSTGuard(b *testing.B) {
	lab := netlab.New(b)
	lab.InProber(b, func(b *testing.B) error {
		for b.Loop() {
			g, err := New(Config{Ranges: []rawsock.PortRange{{Lo: 61000, Hi: 61009}, {Lo: 61020, Hi: 61029}}, Mark: testMark})
			if err != nil {
				return err
			}
			if err := g.Close(); err != nil {
				return err
			}
		}
		return nil
	})
}

// BenchmarkRSTGuardDropped: one Dropped, read from the log group.
func BenchmarkRSTGuardDropped(b *testing.B) {
	lab := netlab.New(b)
	lab.InProber(b, func(b *testing.B) error {
		g, err := New(Config{PortLo: 61000, PortHi: 61009, Mark: testMark})
		if err != nil {
			return err
		}
		defer g.Close()
		for b.Loop() {
			if _, err := g.Dropped(); err != nil {
				return err
			}
		}
		return nil
	})
}

func BenchmarkCleanupTables(b *testing.B) {
	lab := netlab.New(b)
	for i := range 4 {
		lab.Run(b, lab.Prober, "nft", "add", "table", "inet", fmt.Sprintf("other%d", i))
	}
	lab.InProber(b, func(b *testing.B) error {
		for b.Loop() {
			if _, err := CleanupTables(); err != nil {
				return err
			}
		}
		return nil
	})
}

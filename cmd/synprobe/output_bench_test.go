package main

import (
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/probe/scan"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// BenchmarkProbeLine: one open probe's line, text and JSON, as a ping
// without -c writes 5000 a second.
func BenchmarkProbeLine(b *testing.B) {
	tg := &probe.Target{Name: "x", Addr: netip.MustParseAddr("198.18.0.2"), Port: 80, Src: netip.MustParseAddr("198.18.0.1")}
	r := &probe.Result{Target: tg, Seq: 12345, SrcPort: 61234, Sent: time.Now(), State: probe.StateOpen, Reason: probe.ReasonSYNACK, RTT: 41237, KernelClock: true,
		From: tg.Addr, TTL: 64, DF: true, TOS: 2, Flags: wire.FlagSyn | wire.FlagAck, Window: 65160,
		Options: wire.SYNOptions{MSS: 1460, WScale: 7, SACKPermitted: true, Timestamps: true, TSVal: 123456789}}
	spec := &targetSpec{arg: "198.18.0.2:80", host: "198.18.0.2", port: 80}
	for _, bb := range []struct {
		name string
		o    *options
	}{{"text", &options{timeout: time.Second}}, {"json", &options{json: true}}} {
		b.Run(bb.name, func(b *testing.B) {
			p := newPrinter(io.Discard, bb.o)
			b.ReportAllocs()
			for b.Loop() {
				p.result(r, spec)
				r.Seq++
			}
		})
	}
}

// BenchmarkScanResultLine: one closed pair's line of a scan, text and
// JSON, as a scan of every port writes up to half a million a second.
func BenchmarkScanResultLine(b *testing.B) {
	spec, err := scan.ParseSpec("198.18.1.0/24:1-1000")
	if err != nil {
		b.Fatal(err)
	}
	set, err := scan.NewSet(scan.Block{Spec: &spec})
	if err != nil {
		b.Fatal(err)
	}
	addr, port, origin := set.Pair(1234)
	r := &probe.ScanResult{Addr: addr, Port: port, Src: netip.MustParseAddr("198.18.0.1"), SrcPort: 61234, Sent: time.Now(),
		State: probe.StateClosed, Reason: probe.ReasonRST, RTT: 41237,
		Reply: probe.Reply{From: addr, TTL: 64, DF: true, Flags: wire.FlagRst | wire.FlagAck}}
	for _, bb := range []struct {
		name string
		o    *options
	}{{"text", &options{timeout: time.Second}}, {"json", &options{json: true}}} {
		b.Run(bb.name, func(b *testing.B) {
			p := newPrinter(io.Discard, bb.o)
			b.ReportAllocs()
			for b.Loop() {
				p.scanResult(r, origin, "")
			}
		})
	}
}

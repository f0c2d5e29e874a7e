package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/probe/scan"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// failingWriter takes n writes, then fails every one with err.
type failingWriter struct {
	n   int
	err error
	buf bytes.Buffer
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.n == 0 {
		return 0, w.err
	}
	w.n--
	return w.buf.Write(p)
}

// TestOutputClosed: an endless run whose reader goes away (EPIPE, as with
// | head -1) ends at once as an interrupt does, with the status of its
// verdicts and nothing on stderr; any other write error ends it with
// exit 3 and one line.
func TestOutputClosed(t *testing.T) {
	for _, tt := range []struct {
		name   string
		args   []string
		writes int // that succeed
		err    error
		code   int
		stderr string
	}{
		{"ping EPIPE", []string{"-i", "0.001", "198.18.0.2:80"}, 3, &os.PathError{Op: "write", Path: "|1", Err: syscall.EPIPE}, exitOK, ""},
		// The header and the source ports line go out; the first close
		// report does not.
		{"ping fin EPIPE", []string{"--mode", "fin", "--hold", "0.05", "--close-timeout", "0.05", "-i", "0.01", "198.18.0.2:80"}, 2, syscall.EPIPE, exitOK, ""},
		// The first flush of the scan's results fails; the silent pairs
		// would keep it waiting for minutes.
		{"scan EPIPE", []string{"scan", "--json", "-w", "5", "--retries", "100", "198.18.0.2:1-200"}, 0, syscall.EPIPE, exitNotOpen, ""},
		{"ping ENOSPC", []string{"-i", "0.001", "198.18.0.2:80"}, 3, &os.PathError{Op: "write", Path: "out", Err: syscall.ENOSPC}, exitFailure,
			"synprobe: writing the output: write out: no space left on device\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := &failingWriter{n: tt.writes, err: tt.err}
			var errb bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			start := time.Now()
			code := run(ctx, tt.args, w, &errb, &fakeSystem{})
			if ctx.Err() != nil {
				t.Fatalf("the run went on after its output failed (%v)", time.Since(start))
			}
			if code != tt.code || errb.String() != tt.stderr {
				t.Errorf("exit %d, stderr %q; want %d, %q\nstdout:\n%s", code, errb.String(), tt.code, tt.stderr, w.buf.String())
			}
		})
	}
	if !errors.Is(&os.PathError{Err: syscall.EPIPE}, syscall.EPIPE) || !strings.Contains(syscall.EPIPE.Error(), "pipe") {
		t.Fatal("EPIPE is not what os reports")
	}
}

// TestOutputAllocs: a probe's line, text or JSON, and a scan's result
// line in JSON allocate nothing: a ping without -c at 5 kHz writes 5000 a
// second, and garbage at that rate is what made its memory grow. Counted
// over many lines, not averaged per line (testing.AllocsPerRun rounds
// down): the only allocations allowed are encoding/json's pooled buffers
// being refilled when the goroutine moves to another P, a few per P.
func TestOutputAllocs(t *testing.T) {
	tg := &probe.Target{Name: "x", Addr: netip.MustParseAddr("198.18.0.2"), Port: 80, Src: netip.MustParseAddr("198.18.0.1")}
	results := []probe.Result{
		{Target: tg, Seq: 12345, SrcPort: 61234, Sent: time.Now(), State: probe.StateOpen, Reason: probe.ReasonSYNACK, RTT: 41237, KernelClock: true,
			From: tg.Addr, TTL: 64, DF: true, TOS: 2, Flags: wire.FlagSyn | wire.FlagAck, Window: 65160,
			Options: wire.SYNOptions{MSS: 1460, WScale: 7, SACKPermitted: true, Timestamps: true, TSVal: 123456789}},
		{Target: tg, Seq: 99999, SrcPort: 61235, Sent: time.Now(), State: probe.StateClosed, Reason: probe.ReasonRST, RTT: 1234567, From: tg.Addr, TTL: 61, Flags: wire.FlagRst | wire.FlagAck},
		{Target: tg, Seq: 7, SrcPort: 61236, Sent: time.Now(), State: probe.StateFiltered, Reason: "icmp-admin-prohibited", RTT: 90000, From: netip.MustParseAddr("198.18.7.1"), TTL: 250, ICMPType: 3, ICMPCode: 13},
		{Target: tg, Seq: 8, SrcPort: 61237, Sent: time.Now(), State: probe.StateFiltered, Reason: probe.ReasonTimeout},
	}
	spec := &targetSpec{arg: "198.18.0.2:80", host: "198.18.0.2", port: 80}
	set, err := scan.NewSet(scan.Block{Spec: &scan.Spec{Arg: "198.18.0.0/24:80", Prefix: netip.MustParsePrefix("198.18.0.0/24"), Ports: []scan.PortRange{{Lo: 80, Hi: 80}}}})
	if err != nil {
		t.Fatal(err)
	}
	_, _, origin := set.Pair(2)
	const lines = 20000
	count := func(line func()) (mallocs, bytes uint64) {
		line() // warm the buffers
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range lines {
			line()
		}
		runtime.ReadMemStats(&after)
		return after.Mallocs - before.Mallocs, after.TotalAlloc - before.TotalAlloc
	}
	check := func(isJSON bool, what string, line func()) {
		if isJSON && raceEnabled {
			return // sync.Pool drops buffers on purpose (race_test.go)
		}
		n, b := count(line)
		t.Logf("%s: %d allocations (%d bytes) in %d lines", what, n, b, lines)
		if n > 64 {
			t.Errorf("%s: %d allocations (%d bytes) in %d lines", what, n, b, lines)
		}
	}
	for _, o := range []*options{{timeout: time.Second}, {json: true}} {
		p := newPrinter(io.Discard, o)
		for i := range results {
			r := &results[i]
			check(o.json, fmt.Sprintf("json=%v, %v/%v", o.json, r.State, r.Reason), func() { p.result(r, spec); r.Seq++ })
		}
	}
	p := newPrinter(io.Discard, &options{json: true})
	for i := range results {
		r := &results[i]
		sr := probe.ScanResult{Addr: r.Target.Addr, Port: r.Target.Port, Src: r.Target.Src, SrcPort: r.SrcPort, Sent: r.Sent,
			State: r.State, Reason: r.Reason, RTT: r.RTT, KernelClock: r.KernelClock,
			Reply: probe.Reply{From: r.From, ICMPType: r.ICMPType, ICMPCode: r.ICMPCode, TTL: r.TTL, TOS: r.TOS, IPID: r.IPID, DF: r.DF, Flags: r.Flags, Window: r.Window, Options: r.Options}}
		check(true, fmt.Sprintf("json scan result %v/%v", sr.State, sr.Reason), func() { p.scanResult(&sr, origin, "open"); sr.SrcPort++ })
	}
}

// TestRateString: a fin run's rate, from -i, to two decimals at most.
func TestRateString(t *testing.T) {
	for _, tt := range []struct {
		r    float64
		want string
	}{{1 / 1.3, "0.77"}, {100, "100"}, {1 / 0.003, "333.33"}, {1000, "1000"}, {1 / 3600.0, "0.00028"}} {
		if got := rateString(tt.r); got != tt.want {
			t.Errorf("rateString(%v) = %q, want %q", tt.r, got, tt.want)
		}
	}
}

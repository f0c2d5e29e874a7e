//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/synprobe/synprobe/internal/netlab"
	"github.com/synprobe/synprobe/rawsock/rstguard"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// established counts the server's ESTABLISHED connections on port.
func established(t *testing.T, l *netlab.Lab, port uint16) int {
	n := 0
	for _, line := range strings.Split(l.Run(t, l.Target, "ss", "-Htn", "state", "established"), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 {
			if ap, err := netip.ParseAddrPort(f[2]); err == nil && ap.Port() == port {
				n++
			}
		}
	}
	return n
}

// waitEstablished waits until the server holds at least n connections.
func waitEstablished(t *testing.T, l *netlab.Lab, port uint16, n int, cmd *exec.Cmd) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for established(t, l, port) < n {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the server never held %d connections", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitExit waits for synprobe, bounded, and returns its exit status.
func waitExit(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		switch {
		case err == nil:
			return 0
		case errors.As(err, &ee) && ee.Exited():
			return ee.ExitCode()
		}
		t.Fatalf("synprobe did not exit by itself: %v", err)
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		t.Fatal("synprobe did not exit within 15 s")
	}
	return -1
}

// nothingLeft checks that the server holds nothing of the prober's
// connections (no ESTABLISHED, CLOSE-WAIT, SYN-RECV...) and that no
// synprobe table is left in the prober's namespace.
func nothingLeft(t *testing.T, l *netlab.Lab) {
	t.Helper()
	if bad := leftovers(t, l, nil); len(bad) > 0 {
		t.Errorf("the server keeps state:\n%s", strings.Join(bad, "\n"))
	}
	if tables := proberTables(t, l); strings.Contains(tables, rstguard.TablePrefix) {
		t.Errorf("table left: %s", tables)
	}
}

// TestIntegrationSignals: SIGHUP, SIGTERM and SIGINT during a fin-mode
// hold reset every connection held, remove the table and print the
// summary, whose counts are what a capture saw on the wire: SYNs sent,
// SYN-ACKs received (all open, all interrupted), one RST of ours per
// connection, and the kernel's RSTs the guard kept off the wire.
func TestIntegrationSignals(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			l := closeLab(t) // each its own: a failure leaves state behind
			target := l.TargetV4
			if sig == syscall.SIGTERM {
				target = l.TargetV6
			}
			prober := l.ProberV4
			if target.Is6() {
				prober = l.ProberV6
			}
			c := l.StartCapture(t, l.Prober, l.ProberIf, "tcp port 85")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := l.Command(ctx, l.Prober, synprobeBinary(t), "--json", "--mode", "fin", "--hold", "5s", "-i", "0.05", hostPort(target, portNever))
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			waitEstablished(t, l, portNever, 4, cmd)
			// ip netns exec execs synprobe in place: this is its pid.
			cmd.Process.Signal(sig)
			code := waitExit(t, cmd)
			pkts, err := c.Stop()
			if err != nil {
				t.Fatal(err)
			}
			if code != exitOK || errb.Len() > 0 {
				t.Errorf("exit %d, stderr %q; want 0 (every probe answered open)", code, errb.String())
			}
			nothingLeft(t, l)

			var syns, synacks, rsts int
			var p wire.Packet
			for _, cp := range pkts {
				if wire.Parse(cp.Data, &p) != nil {
					continue
				}
				switch {
				case p.Src == prober && p.Flags == wire.FlagSyn:
					syns++
				case p.Dst == prober && p.Flags == wire.FlagSyn|wire.FlagAck:
					synacks++
				case p.Src == prober && p.Flags&wire.FlagRst != 0:
					rsts++
				}
			}
			var sum, guard map[string]any
			probes, interrupted := 0, 0
			sc := bufio.NewScanner(&out)
			for sc.Scan() {
				var m map[string]any
				if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
					t.Fatalf("bad JSON %q", sc.Text())
				}
				switch m["type"] {
				case "probe":
					probes++
					if m["interrupted"] == true && m["state"] == "open" && m["close"] == nil {
						interrupted++
					}
				case "summary":
					sum = m
				case "guard":
					guard = m
				}
			}
			if sum == nil || guard == nil {
				t.Fatalf("no summary or guard line:\n%s", out.String())
			}
			close, _ := sum["close"].(map[string]any)
			t.Logf("capture: %d SYNs, %d SYN-ACKs, %d RSTs of ours; summary %v; guard %v", syns, synacks, rsts, sum, guard)
			if syns < 4 || sum["sent"] != float64(syns) || sum["open"] != float64(synacks) ||
				sum["interrupted"] != float64(syns-synacks) || sum["loss_pct"] != 0.0 || close == nil || close["interrupted"] != float64(synacks) {
				t.Errorf("summary %v, close %v; the capture saw %d SYNs and %d SYN-ACKs", sum, close, syns, synacks)
			}
			// One RST per connection, and one per SYN still awaiting its
			// SYN-ACK (rare at -i 0.05).
			if probes != synacks || interrupted != synacks || rsts != syns {
				t.Errorf("%d probe lines (%d interrupted), %d RSTs of ours; want one line per SYN-ACK (%d), one RST per SYN (%d)", probes, interrupted, rsts, synacks, syns)
			}
			if guard["kernel_rsts_dropped"] != float64(synacks) || guard["kernel_rsts_escaped"] != 0.0 {
				t.Errorf("guard %v: want one kernel RST dropped per SYN-ACK (%d)", guard, synacks)
			}
		})
	}
}

// TestIntegrationSIGPIPE: synprobe's output goes into a real pipe whose
// reader (head -n 2) exits after the first two lines (the header and the
// source ports). The next write (the first close report) fails: the run ends as an interrupt does, resetting the
// connections it holds and removing its table, and exits by its verdicts.
func TestIntegrationSIGPIPE(t *testing.T) {
	l := closeLab(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	head := exec.Command("head", "-n", "2")
	head.Stdin = r
	var first bytes.Buffer
	head.Stdout = &first
	if err := head.Start(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := l.Command(ctx, l.Prober, synprobeBinary(t), "--mode", "fin", "--hold", "2s", "--close-timeout", "0.2", "-i", "0.05", hostPort(l.TargetV4, portNever))
	cmd.Stdout = w
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close() // synprobe holds the only write end
	if err := head.Wait(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(first.String(), "SYNPROBE ") {
		t.Errorf("head read %q", first.String())
	}
	waitEstablished(t, l, portNever, 4, cmd)
	// No signal from us: the first close report, after the hold, meets
	// the closed pipe.
	code := waitExit(t, cmd)
	if code != exitOK || errb.Len() > 0 {
		t.Errorf("exit %d, stderr %q; want 0, as after an interrupt", code, errb.String())
	}
	nothingLeft(t, l)
}

// TestIntegrationInterruptCounts: ping mode, interrupted while probes
// await their answer (a port the target drops, -w 5): the summary counts
// every SYN the capture saw, none of them lost, all unanswered at the
// interrupt.
func TestIntegrationInterruptCounts(t *testing.T) {
	l := verdictLab(t)
	c := l.StartCapture(t, l.Prober, l.ProberIf, "tcp port 81")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := l.Command(ctx, l.Prober, synprobeBinary(t), "-i", "0.05", "-w", "5", hostPort(l.TargetV4, 81))
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT)
	code := waitExit(t, cmd)
	pkts, err := c.Stop()
	if err != nil {
		t.Fatal(err)
	}
	syns := 0
	var p wire.Packet
	for _, cp := range pkts {
		if wire.Parse(cp.Data, &p) == nil && p.Src == l.ProberV4 && p.Flags == wire.FlagSyn {
			syns++
		}
	}
	want := "--- " + hostPort(l.TargetV4, 81) + " synprobe statistics ---\n" +
		strconv.Itoa(syns) + " probes sent, 0 open, 0 closed, 0 filtered, " + strconv.Itoa(syns) + " unanswered at interrupt, 0% loss\n"
	if code != exitNotOpen || syns < 2 || !strings.HasSuffix(out.String(), want) {
		t.Errorf("exit %d; the capture saw %d SYNs; output:\n%s\nwant it to end with:\n%s", code, syns, out.String(), want)
	}
}

package netlab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// StartCapture runs tcpdump on iface inside namespace ns, writing
// nanosecond-stamped copies of the packets that match bpfFilter (tcpdump
// syntax; empty for all), and returns once tcpdump is capturing. The
// copies are whole, so that their checksums can be verified (wire.Parse
// does); whole copies take room, so the kernel buffer is 64 MiB (-B): with
// tcpdump's default of 2 MiB, 64 KiB of data sent in a burst lost packets.
// The capture is killed at cleanup if Stop was not called.
func (l *Lab) StartCapture(tb testing.TB, ns, iface, bpfFilter string) *Capture {
	tb.Helper()
	if _, err := exec.LookPath("tcpdump"); err != nil {
		tb.Skip("netlab: tcpdump not found: install tcpdump")
	}
	c := &Capture{
		path:   filepath.Join(tb.TempDir(), "capture.pcap"),
		stderr: new(syncBuffer),
		done:   make(chan struct{}),
	}
	args := []string{"netns", "exec", ns, "tcpdump", "-i", iface, "-w", c.path,
		"-U", "--immediate-mode", "--time-stamp-precision=nano", "-s", "0", "-B", "65536", "-n"}
	if bpfFilter != "" {
		args = append(args, bpfFilter)
	}
	c.cmd = exec.Command("ip", args...) // ip execs tcpdump: signals reach it
	c.cmd.Stderr = c.stderr
	if err := c.cmd.Start(); err != nil {
		tb.Fatalf("netlab: starting tcpdump: %v", err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	tb.Cleanup(c.kill)

	deadline := time.Now().Add(settleTimeout)
	for !strings.Contains(c.stderr.String(), "listening on") {
		select {
		case <-c.done:
			tb.Fatalf("netlab: tcpdump exited: %v\n%s", c.err, c.stderr)
		case <-time.After(pollInterval):
		}
		if time.Now().After(deadline) {
			c.kill()
			tb.Fatalf("netlab: tcpdump not listening after %v:\n%s", settleTimeout, c.stderr)
		}
	}
	return c
}

// Stop lets tcpdump write out what it has seen, stops it with SIGINT and
// returns the captured IP packets in capture order.
func (c *Capture) Stop() ([]CapturedPacket, error) {
	c.stopOnce.Do(func() {
		c.settle()
		_ = c.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-c.done:
		case <-time.After(settleTimeout):
			c.kill()
		}
	})
	<-c.done
	if c.err != nil {
		return nil, fmt.Errorf("netlab: tcpdump: %v\n%s", c.err, c.stderr)
	}
	b, err := os.ReadFile(c.path)
	if err != nil {
		return nil, fmt.Errorf("netlab: %w", err)
	}
	return ParsePCAP(b)
}

// Counts returns tcpdump's own count of what it captured and what the
// kernel dropped before it could ("N packets captured, ... dropped by
// kernel"), once Stop has returned: for a test that finds packets
// missing from the capture.
func (c *Capture) Counts() string {
	var lines []string
	for _, l := range strings.Split(c.stderr.String(), "\n") {
		if strings.Contains(l, "packets") {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	return strings.Join(lines, "; ")
}

// settle waits, bounded, until the capture file has stopped growing, so
// packets still in tcpdump's ring are written before it is interrupted.
func (c *Capture) settle() {
	const quiet, limit = 100 * time.Millisecond, 3 * time.Second
	last, stable := int64(-1), 0
	for start := time.Now(); time.Since(start) < limit; {
		time.Sleep(quiet / 3)
		fi, err := os.Stat(c.path)
		if err != nil {
			return
		}
		if fi.Size() == last {
			if stable++; stable == 3 {
				return
			}
			continue
		}
		last, stable = fi.Size(), 0
	}
}

// kill ends tcpdump at once if it is still running and waits for it.
func (c *Capture) kill() {
	select {
	case <-c.done:
		return
	default:
	}
	if err := c.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return
	}
	<-c.done
}

//go:build !linux

package netlab

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"runtime"
	"testing"
	"time"
)

var errNotImplemented = fmt.Errorf("netlab: not implemented on %s", runtime.GOOS)

// New skips the test: labs need Linux network namespaces.
func New(tb testing.TB) *Lab {
	tb.Helper()
	tb.Skip(errNotImplemented)
	return nil
}

// NewDelayLab skips the test: labs need Linux network namespaces.
func NewDelayLab(tb testing.TB, delay time.Duration) *Lab {
	tb.Helper()
	tb.Skip(errNotImplemented)
	return nil
}

// NewLossyLab skips the test: labs need Linux network namespaces.
func NewLossyLab(tb testing.TB, delay time.Duration, loss Loss) *Lab {
	tb.Helper()
	tb.Skip(errNotImplemented)
	return nil
}

// NewChainLab skips the test: labs need Linux network namespaces.
func NewChainLab(tb testing.TB, routers int) *Lab {
	tb.Helper()
	tb.Skip(errNotImplemented)
	return nil
}

// Sweep has nothing to do outside Linux.
func Sweep() error { return nil }

// InNS reports that namespaces are Linux-only.
func (l *Lab) InNS(ns string, fn func() error) error { return errNotImplemented }

// Listen skips the test.
func (l *Lab) Listen(tb testing.TB, ns, network, addr string) net.Listener {
	tb.Helper()
	tb.Skip(errNotImplemented)
	return nil
}

// Command returns a command that fails: there is no `ip netns`.
func (l *Lab) Command(ctx context.Context, ns string, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// Run skips the test.
func (l *Lab) Run(tb testing.TB, ns, name string, args ...string) string {
	tb.Helper()
	tb.Skip(errNotImplemented)
	return ""
}

// Nft skips the test.
func (l *Lab) Nft(tb testing.TB, ns, ruleset string) {
	tb.Helper()
	tb.Skip(errNotImplemented)
}

// StartCapture skips the test.
func (l *Lab) StartCapture(tb testing.TB, ns, iface, bpfFilter string) *Capture {
	tb.Helper()
	tb.Skip(errNotImplemented)
	return nil
}

// Stop reports that captures are Linux-only.
func (c *Capture) Stop() ([]CapturedPacket, error) { return nil, errNotImplemented }

// Counts reports that captures are Linux-only.
func (c *Capture) Counts() string { return "" }

package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestParseMode(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want mode
		ok   bool
	}{
		{"hold", mode{name: "hold"}, true},
		{"speak-first", mode{name: "speak-first"}, true},
		{"rst", mode{name: "rst"}, true},
		{"never", mode{name: "never"}, true},
		{"close-delay=250ms", mode{name: "close-delay", delay: 250 * time.Millisecond}, true},
		{"half-close=1000", mode{name: "half-close", n: 1000}, true},
		{"close-delay", mode{}, false},
		{"close-delay=soon", mode{}, false},
		{"close-delay=-1s", mode{}, false},
		{"half-close=-3", mode{}, false},
		{"half-close=x", mode{}, false},
		{"hold=1", mode{}, false},
		{"linger", mode{}, false},
		{"", mode{}, false},
	} {
		got, err := parseMode(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseMode(%q) = %+v, %v; want %+v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestRunUsage(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"-listen", "127.0.0.1:0", "-mode", "bogus"},
		{"-listen", "127.0.0.1:0", "extra"},
		{"-nosuchflag"},
	} {
		var stderr bytes.Buffer
		err := run(context.Background(), args, io.Discard, &stderr)
		if !errors.As(err, new(usageError)) {
			t.Errorf("run(%q) = %v, want a usage error", args, err)
		}
	}
}

// syncBuffer is stdout for run while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRunReadyAndShutdown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var stdout syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-listen", "127.0.0.1:0"}, &stdout, io.Discard)
	}()
	for deadline := time.Now().Add(5 * time.Second); stdout.String() != "ready\n"; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no ready line; stdout %q", stdout.String())
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}

// startServe serves one loopback listener in mode m until the test ends.
func startServe(t *testing.T, m mode) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skipf("no loopback: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { serve(ctx, []net.Listener{ln}, m); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String()
}

func TestModes(t *testing.T) {
	for _, tc := range []struct {
		mode    string
		send    bool          // write and half-close before reading
		want    string        // bytes to read before the end
		end     error         // how the read ends: io.EOF, ECONNRESET or a timeout
		atLeast time.Duration // minimum time until the end
	}{
		{mode: "hold", send: true, end: io.EOF},
		{mode: "close-delay=150ms", send: true, end: io.EOF, atLeast: 150 * time.Millisecond},
		{mode: "speak-first", want: banner, end: io.EOF},
		{mode: "rst", end: syscall.ECONNRESET},
		{mode: "half-close=5000", send: true, want: strings.Repeat("\x00", 5000), end: io.EOF},
		{mode: "never", send: true, end: errTimeout},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			m, err := parseMode(tc.mode)
			if err != nil {
				t.Fatal(err)
			}
			c, err := net.DialTimeout("tcp", startServe(t, m), time.Second)
			if errors.Is(err, tc.end) && tc.end == syscall.ECONNRESET {
				return // the RST overtook connect's check of SO_ERROR
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			if tc.send {
				if _, err := c.Write([]byte("hello")); err != nil {
					t.Fatal(err)
				}
				if err := c.(*net.TCPConn).CloseWrite(); err != nil {
					t.Fatal(err)
				}
			}
			_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			got, err := io.ReadAll(c)
			if string(got) != tc.want {
				t.Errorf("read %d bytes %.20q, want %d bytes %.20q", len(got), got, len(tc.want), tc.want)
			}
			if err == nil {
				err = io.EOF // ReadAll hides EOF
			}
			if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
				err = errTimeout
			}
			if !errors.Is(err, tc.end) {
				t.Errorf("read ended with %v, want %v", err, tc.end)
			}
			if took := time.Since(start); took < tc.atLeast {
				t.Errorf("ended after %v, want at least %v", took, tc.atLeast)
			}
		})
	}
}

var errTimeout = errors.New("timeout")

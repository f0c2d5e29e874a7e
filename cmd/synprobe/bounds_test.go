package main

import (
	"strings"
	"testing"
)

// TestNumericBounds: numeric flags at extremes that would not probe any
// more (a thread per sender past Go's limit, a rate whose waits never end
// or whose conversions overflow, counts beyond int64) are refused with
// exit 2 and one line, never a Go runtime error.
func TestNumericBounds(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"scan", "--senders", "30000", "198.18.0.2:1-100"}, "--senders 30000: must be 0 (one per CPU) to 256"},
		{[]string{"scan", "--senders", "257", "198.18.0.2:1-100"}, "--senders 257: must be 0 (one per CPU) to 256"},
		{[]string{"scan", "--senders", "-1", "198.18.0.2:1-100"}, "--senders -1: must be 0 (one per CPU) to 256"},
		{[]string{"scan", "--rate", "Inf", "198.18.0.2:1-100"}, "--rate must be 0 (no limit) or 1 to 1e+09 probes per second (got +Inf)"},
		{[]string{"scan", "--rate", "1e308", "198.18.0.2:1-100"}, "--rate must be 0 (no limit) or 1 to 1e+09"},
		{[]string{"scan", "--rate", "0.5", "198.18.0.2:1-100"}, "--rate must be 0 (no limit) or 1 to 1e+09"},
		{[]string{"scan", "--rate", "1e-300", "198.18.0.2:1-100"}, "--rate must be 0 (no limit) or 1 to 1e+09"},
		{[]string{"scan", "--rate", "NaN", "198.18.0.2:1-100"}, "--rate must be 0 (no limit) or 1 to 1e+09"},
		{[]string{"scan", "--rate", "-Inf", "198.18.0.2:1-100"}, "--rate must be 0 (no limit) or 1 to 1e+09"},
		{[]string{"-c", "99999999999999999999", "198.18.0.2:80"}, "--count"},
		{[]string{"scan", "--retries", "1000000", "198.18.0.2:1-100"}, "--retries 1000000: must be 0 to 100"},
		{[]string{"-i", "1e300", "198.18.0.2:80"}, "too long"},
		{[]string{"--hold", "2562048h", "--mode", "fin", "198.18.0.2:80"}, "--hold"},
		{[]string{"--wscale", "99999999999", "198.18.0.2:80"}, "--wscale 99999999999: must be 0-14, or -1 for none"},
		{[]string{"--wscale", "99999999999999999999999", "198.18.0.2:80"}, "--wscale 99999999999999999999999: must be 0-14, or -1 for none"},
		{[]string{"--mss", "65536", "198.18.0.2:80"}, "--mss 65536: must be 0 to 65535"},
		{[]string{"--mark", "4294967296", "--mode", "ack", "198.18.0.2:80"}, "--mark 4294967296: must be 1 to 0xffffffff"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, stdout, stderr := runCLI(t, &fakeSystem{}, tt.args...)
			if code != exitUsage || stdout != "" || !strings.HasPrefix(stderr, "synprobe: ") || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 2 and one line with %q", code, stdout, stderr, tt.want)
			}
		})
	}
	// The bounds themselves are taken.
	for _, args := range [][]string{
		{"scan", "--senders", "256", "--rate", "1", "-w", "0.02", "--retries", "0", "198.18.0.2:80-81"},
		{"scan", "--rate", "1e9", "-w", "0.02", "--retries", "0", "198.18.0.2:80-81"},
	} {
		if code, _, stderr := runCLI(t, &fakeSystem{}, args...); code != exitOK || stderr != "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr)
		}
	}
}

package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestListenerArgs: bad input is one line naming the problem and exit 2,
// before anything is opened (so no root is needed).
func TestListenerArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "want one HOST:PORT, got 0 arguments"},
		{[]string{"a:1", "b:2"}, "want one HOST:PORT, got 2 arguments"},
		{[]string{"198.18.0.2"}, "198.18.0.2: want HOST:PORT"},
		{[]string{"198.18.0.2:0"}, `port "0": must be 1 to 65535`},
		{[]string{"198.18.0.2:x"}, `port "x": must be 1 to 65535`},
		{[]string{"224.0.0.1:80"}, "a multicast address, not one host's"},
		{[]string{"[::]:80"}, "the unspecified address, not one host's"},
		{[]string{"--observe", "0", "198.18.0.2:80"}, "--observe"},
		{[]string{"--observe", "0.5", "198.18.0.2:80"}, "--observe 500ms: must be 1.2s to 10m"},
		{[]string{"--observe", "11m", "198.18.0.2:80"}, "--observe 11m0s: must be 1.2s to 10m"},
		{[]string{"-w", "-1s", "198.18.0.2:80"}, "--timeout -1s: must be positive"},
		{[]string{"-w", "61", "198.18.0.2:80"}, "--timeout 1m1s: must be above 0 and at most 1m"},
		{[]string{"198.18.0.0/24:80"}, "one address, not a block"},
		{[]string{"-4", "[2001:db8::2]:80"}, "not an IPv4 address, but -4 was given"},
		{[]string{"-4", "-6", "198.18.0.2:80"}, "-4 and -6 exclude each other"},
		{[]string{"--pcap", "", "198.18.0.2:80"}, "--pcap needs a file name"},
		{[]string{"--nosuch", "198.18.0.2:80"}, "--nosuch"},
		{[]string{"-I", "nosuchif0", "198.18.0.2:80"}, "-I nosuchif0: no such interface"},
		{[]string{"-I", "lo", "198.18.0.2:80"}, "-I lo is a loopback interface, which reaches only loopback addresses"},
	} {
		var out, errb bytes.Buffer
		code := listenerMain(context.Background(), tc.args, &out, &errb)
		lines := strings.Split(strings.TrimSpace(errb.String()), "\n")
		if code != exitUsage || len(lines) != 1 || !strings.Contains(lines[0], tc.want) || !strings.HasPrefix(lines[0], "synprobe listener: ") || out.Len() != 0 {
			t.Errorf("%q: exit %d, stderr %q; want exit 2 and one line with %q", tc.args, code, errb.String(), tc.want)
		}
	}
	var out, errb bytes.Buffer
	if code := listenerMain(context.Background(), []string{"--help"}, &out, &errb); code != exitOK || !strings.HasPrefix(out.String(), "Usage: synprobe listener") {
		t.Errorf("--help: exit %d, %q", code, out.String())
	}
	for _, l := range strings.Split(out.String(), "\n") {
		if len([]rune(l)) > 80 {
			t.Errorf("help line wider than 80 columns: %q", l)
		}
	}
}

// TestWrap: findings are wrapped at spaces to 80 columns with their
// indent, words never cut.
func TestWrap(t *testing.T) {
	s := "the third ACK, sent late, met silence until the next SYN-ACK was due: taken into the accept queue (or ignored by a listener that waits for data: TCP_DEFER_ACCEPT with a long deferral)"
	got := "  - " + wrap(s, 76, "    ")
	for _, l := range strings.Split(got, "\n") {
		if len([]rune(l)) > 80 {
			t.Errorf("line wider than 80 columns: %q", l)
		}
	}
	if strings.Join(strings.Fields(got), " ") != "- "+s {
		t.Errorf("words changed: %q", got)
	}
}

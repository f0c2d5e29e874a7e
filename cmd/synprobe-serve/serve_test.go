package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/synprobe/synprobe/internal/cli"
)

// TestServeBadInput: every refusal is one line naming the problem, exit
// 2, before anything is opened; none shows a file's text.
func TestServeBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yml")
	os.WriteFile(bad, []byte("modules:\n  a: {mode: hunter2}\n"), 0o600)
	good := filepath.Join(dir, "good.yml")
	os.WriteFile(good, []byte("modules:\n  a: {mode: rst}\n"), 0o600)
	spoof := filepath.Join(dir, "spoof.yml")
	os.WriteFile(spoof, []byte("modules:\n  a: {mode: rst}\n  b: {mode: fin, source: 203.0.113.77}\n"), 0o600)
	spoof6 := filepath.Join(dir, "spoof6.yml")
	os.WriteFile(spoof6, []byte("modules:\n  c: {mode: rst, source: '2001:db8:ffff::77'}\n"), 0o600)
	web := filepath.Join(dir, "web.yml")
	os.WriteFile(web, []byte("basic_auth_users: hunter2\n"), 0o600)
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "synprobe serve: --config.file is required: the modules and targets to serve (docs/serve.md)"},
		{[]string{"--bogus"}, "synprobe serve: unknown flag: --bogus"},
		{[]string{"--config.file", good, "198.18.0.2:80"}, "synprobe serve: serve takes no targets on the command line: list them in --config.file"},
		{[]string{"--config.file", filepath.Join(dir, "none.yml")}, "synprobe serve: " + filepath.Join(dir, "none.yml") + ": no such file or directory"},
		{[]string{"--config.file", bad}, "synprobe serve: " + bad + ":2: mode: rst, ack or fin"},
		{[]string{"--config.file", good, "--ports", "0"}, "synprobe serve: --ports 0: from 1 to 32768"},
		{[]string{"--config.file", good, "--ports", "x"}, "synprobe serve: --ports x: not a number"},
		{[]string{"--config.file", good, "--web.listen-address", "9516"}, "synprobe serve: --web.listen-address 9516: want [host]:port"},
		{[]string{"--config.file", good, "--log.level", "loud"}, "synprobe serve: --log.level loud: debug, info, warn or error"},
		{[]string{"--config.file", good, "-Z", "nobody", "--keep-root"}, "synprobe serve: -Z and --keep-root exclude each other"},
		{[]string{"--config.file", good, "--web.config.file", web}, "synprobe serve: --web.config.file " + web + ": line 1: a string where the field wants basic_auth_users: a map of user: bcrypt hash\n"},
		{[]string{"--config.file", good, "-I", "nosuchdev0"}, "synprobe serve: -I nosuchdev0: no such interface (ip link lists them)"},
		{[]string{"--config.file", spoof}, "synprobe serve: " + spoof + ": module b: source: not an address of this host (ip address lists them)\n"},
		{[]string{"--config.file", spoof6}, "synprobe serve: " + spoof6 + ": module c: source: not an address of this host (ip address lists them)\n"},
	} {
		var stdout, stderr bytes.Buffer
		code := runServe(context.Background(), c.args, &stdout, &stderr, nil, nil)
		msg := stderr.String()
		if code != cli.ExitUsage || !strings.HasPrefix(msg, c.want) || strings.Count(msg, "\n") != 1 || strings.Contains(msg, "hunter2") {
			t.Errorf("%q: exit %d, %q; want 2, %q", c.args, code, msg, c.want)
		}
	}
}

func TestServeHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := runServe(context.Background(), []string{"--help"}, &stdout, &stderr, nil, nil); code != cli.ExitOK {
		t.Fatalf("exit %d", code)
	}
	for i, line := range strings.Split(stdout.String(), "\n") {
		if n := utf8.RuneCountInString(line); n > cli.HelpColumns {
			t.Errorf("line %d is %d columns: %q", i+1, n, line)
		}
	}
	for _, want := range []string{"--config.file", "--web.listen-address", "--web.config.file", "Examples:"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("help lacks %s", want)
		}
	}
}

// TestListenWebTaken: an address another program listens on is refused
// with what is wrong and the fix.
func TestListenWebTaken(t *testing.T) {
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	addr := other.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	ln, err := listenWeb(addr)
	if err == nil {
		ln.Close()
		t.Fatal("a taken address was listened on")
	}
	want := "--web.listen-address " + addr + ": the address is taken: another program listens on it (ss -ltnp 'sport = :" + port + "' shows which): give another address, or stop that program"
	if err.Error() != want {
		t.Errorf("got  %s\nwant %s", err, want)
	}
	if _, err := listenWeb("192.0.2.77:9516"); err == nil || !strings.Contains(err.Error(), "not an address of this host: give one of its addresses (ip addr lists them), or :9516 for all") {
		t.Errorf("a foreign address: %v", err)
	}
}

package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/synprobe/synprobe/internal/cli"
)

func (f *fakeSystem) realUID() int { return f.uid }

func (f *fakeSystem) getenv(key string) string { return f.env[key] }

func (f *fakeSystem) hostAddrs() ([]netip.Addr, error) {
	if f.addrs == nil {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("fe80::1")}, nil
	}
	return f.addrs, nil
}

func (f *fakeSystem) isLocal(a netip.Addr) bool {
	addrs, _ := f.hostAddrs()
	return isHostAddr(a, addrs)
}

// dropPrivileges records the call and what set-up had done by then.
func (f *fakeSystem) dropPrivileges(d cli.DropSpec) error {
	f.drops = append(f.drops, d)
	sent := 0
	if f.conn != nil {
		sent = len(f.conn.Sent())
	}
	f.events = append(f.events, fmt.Sprintf("drop: conn %v, guards %d, sent %d", f.conn != nil, len(f.guards), sent))
	return f.dropErr
}

// TestUnprivilegedRefusals: a caller other than root gets one line naming
// the rule and exit 2, before anything is set up; root may.
func TestUnprivilegedRefusals(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-S", "198.18.0.77", "-c", "1", "198.18.0.2:80"}, "-S 198.18.0.77: not an address of this host"},
		{[]string{"-S", "2001:db8::77", "-c", "1", "[2001:db8::2]:80"}, "-S 2001:db8::77: not an address of this host"},
		{[]string{"scan", "-S", "198.18.0.77", "198.18.0.0/30:80"}, "not an address of this host"}, // a scan
		{[]string{"-S", "127.0.0.1", "-c", "1", "198.18.0.2:80"}, "-S 127.0.0.1: a loopback address as the source of a probe to 198.18.0.2"},
		{[]string{"scan", "-S", "127.0.0.1", "198.18.0.0/30:80"}, "a loopback address as the source"}, // a scan
		{[]string{"--mode", "ack", "--mark", "7", "-c", "1", "198.18.0.2:80"}, "--mark 0x7: only synprobe's own mark 0x53594e50"},
		{[]string{"--mark", "7", "-c", "1", "198.18.0.2:80"}, "--mark 0x7"},
		{[]string{"-i", "0.001", "-c", "2", "198.18.0.2:80"}, "-i 1ms: no less than 2ms"},
		{[]string{"--mode", "fin", "--sport", "2222", "-c", "1", "198.18.0.2:80"}, "--sport 2222: synprobe cannot hold the port alone"},
		{[]string{"-Z", "root", "-c", "1", "198.18.0.2:80"}, "-Z root: only root can choose"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			sys := &fakeSystem{uid: 1000, held: map[uint16]bool{2222: true}}
			code, stdout, stderr := runCLI(t, sys, tt.args...)
			if code != exitUsage || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 2 and one line with %q", code, stdout, stderr, tt.want)
			}
			if !strings.Contains(tt.want, "-Z") && !strings.Contains(stderr, privilegeRule) {
				t.Errorf("stderr %q does not name the rule", stderr)
			}
			if sys.conn != nil || len(sys.guards) > 0 || len(sys.drops) > 0 {
				t.Errorf("refused after set-up began: conn %v, guards %d, drops %d", sys.conn != nil, len(sys.guards), len(sys.drops))
			}
		})
	}
	// What a local user may do.
	for _, args := range [][]string{
		{"-S", "198.18.0.1", "-c", "1", "198.18.0.2:80"},
		{"-S", "fe80::1%eth0", "-c", "1", "-w", "0.01", "[2001:db8::2]:80"}, // zone aside
		{"--mark", "0x53594e50", "--mode", "ack", "-c", "1", "198.18.0.2:80"},
		{"-i", "0.002", "-c", "2", "198.18.0.2:80"},
		{"--sport", "2223", "--mode", "fin", "-c", "1", "198.18.0.2:80"},
		{"--keep-root", "-c", "1", "198.18.0.2:80"},
		{"--ttl", "1", "--tos", "0xb8", "-c", "1", "198.18.0.2:80"},
		{"scan", "--rate", "0", "198.18.0.0/30:80"},
	} {
		sys := &fakeSystem{uid: 1000, held: map[uint16]bool{2222: true}}
		code, _, stderr := runCLI(t, sys, args...)
		if code == exitUsage || len(sys.drops) != 1 || sys.drops[0].SetUID {
			t.Errorf("%v as uid 1000: exit %d, drops %+v: %s", args, code, sys.drops, stderr)
		}
	}
	// Root keeps the full set; a port another socket holds is a runtime
	// failure for root (exit 3), as before.
	for _, args := range [][]string{
		{"--mode", "ack", "--mark", "7", "-c", "1", "198.18.0.2:80"},
		{"-i", "0.001", "-c", "2", "198.18.0.2:80"},
	} {
		sys := &fakeSystem{}
		if code, _, stderr := runCLI(t, sys, args...); code != exitOK {
			t.Errorf("%v as root: exit %d: %s", args, code, stderr)
		}
	}
	// Nobody gets a source whose answers could not reach synprobe: every
	// probe would be called filtered.
	for _, tt := range []struct{ src, want string }{
		{"198.18.0.77", "-S 198.18.0.77: not an address of this host: its answers would never reach synprobe"},
		{"0.0.0.0", "-S 0.0.0.0: not a unicast address"},
		{"::", "-S ::: not a unicast address"},
		{"224.0.0.1", "-S 224.0.0.1: not a unicast address"},
		{"127.0.0.1", "-S 127.0.0.1: a loopback address as the source of a probe to 198.18.0.2: its answers would never reach synprobe"},
	} {
		sys := &fakeSystem{}
		code, stdout, stderr := runCLI(t, sys, "-S", tt.src, "-c", "1", "198.18.0.2:80")
		if code != exitUsage || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tt.want) || sys.conn != nil {
			t.Errorf("-S %s as root: exit %d, %q; want exit 2 and %q", tt.src, code, stderr, tt.want)
		}
	}
	sys := &fakeSystem{held: map[uint16]bool{2222: true}}
	if code, _, stderr := runCLI(t, sys, "--sport", "2222", "-c", "1", "198.18.0.2:80"); code != exitFailure || strings.Contains(stderr, privilegeRule) {
		t.Errorf("--sport held, as root: exit %d: %s", code, stderr)
	}
}

// TestDropAfterSetup: the drop comes once, after the sockets and the guard
// exist and before the first probe; a failed drop sends nothing (exit 3).
func TestDropAfterSetup(t *testing.T) {
	for _, args := range [][]string{
		{"-c", "2", "-i", "0.01", "198.18.0.2:80"},
		{"--mode", "fin", "-c", "1", "198.18.0.2:80"},
		{"198.18.0.2:79-81"}, // a scan
	} {
		sys := &fakeSystem{env: map[string]string{"SUDO_UID": "1000", "SUDO_GID": "1001"}}
		runCLI(t, sys, args...)
		wantGuards := 0
		if args[0] == "--mode" {
			wantGuards = 1
		}
		want := fmt.Sprintf("drop: conn true, guards %d, sent 0", wantGuards)
		if len(sys.events) != 1 || sys.events[0] != want {
			t.Errorf("%v: %q, want [%q]", args, sys.events, want)
		}
		if len(sys.drops) == 1 && sys.drops[0] != (cli.DropSpec{SetUID: true, UID: 1000, GID: 1001, Who: "SUDO_UID 1000"}) {
			t.Errorf("%v: drop %+v, want to SUDO_UID 1000", args, sys.drops[0])
		}
		if sys.conn == nil || len(sys.conn.Sent()) == 0 {
			t.Errorf("%v: nothing sent after the drop", args)
		}
	}
	sys := &fakeSystem{dropErr: errors.New("cannot drop privileges: capset: operation not permitted")}
	code, stdout, stderr := runCLI(t, sys, "-c", "1", "198.18.0.2:80")
	if code != exitFailure || stdout != "" || !strings.Contains(stderr, "cannot drop privileges") || len(sys.conn.Sent()) != 0 {
		t.Errorf("failed drop: exit %d, stdout %q, stderr %q, %d sent", code, stdout, stderr, len(sys.conn.Sent()))
	}
}

func TestIsHostAddr(t *testing.T) {
	host := []netip.Addr{netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("::ffff:198.18.0.9"), netip.MustParseAddr("fe80::1%eth0")}
	for a, want := range map[string]bool{
		"198.18.0.1": true, "198.18.0.9": true, "::ffff:198.18.0.1": true, "fe80::1": true, "fe80::1%eth1": true,
		"198.18.0.2": false, "2001:db8::1": false, "0.0.0.0": false,
	} {
		if got := isHostAddr(netip.MustParseAddr(a), host); got != want {
			t.Errorf("isHostAddr(%s) = %v, want %v", a, got, want)
		}
	}
}

// TestFileErrorsQuoteNothing: whatever goes wrong with the targets of a
// file (a name that does not resolve, two lines that conflict), the error
// names the file and line, never what the line holds.
func TestFileErrorsQuoteNothing(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		content, want string
	}{
		{"# db\nhunter2secret:4444\n", "targets:2: cannot resolve the host name: no such host"},
		{"198.18.0.2:80=open\n198.18.0.2:80=closed\n", "targets:1 and "},
		{"lab.test:80\nS3cr3tPassw0rd:1\n", "targets:2: cannot resolve"},
	} {
		path := dir + "/targets"
		if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
			t.Fatal(err)
		}
		code, stdout, stderr := runCLI(t, &fakeSystem{}, "scan", "-f", path)
		if code != exitUsage || stdout != "" || !strings.Contains(stderr, tt.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tt.content, code, stderr, tt.want)
		}
		for _, secret := range []string{"hunter2", "S3cr3t", "=open", "=closed", "4444"} {
			if strings.Contains(stderr, secret) {
				t.Errorf("%q: stderr %q shows %q", tt.content, stderr, secret)
			}
		}
	}
	// A name given on the command line is the user's own: it is named.
	if _, _, stderr := runCLI(t, &fakeSystem{}, "-c", "1", "nowhere.invalid:80"); !strings.Contains(stderr, `"nowhere.invalid"`) {
		t.Errorf("command-line name: %q", stderr)
	}
}

// TestUnownedGuardKeepsPrivileges: on a kernel without owned tables the
// guard's table can only be deleted with CAP_NET_ADMIN, so the run keeps
// its privileges rather than leave the rule behind, and says so.
func TestUnownedGuardKeepsPrivileges(t *testing.T) {
	sys := &fakeSystem{unownedGuard: true}
	code, _, stderr := runCLI(t, sys, "--mode", "ack", "-c", "1", "198.18.0.2:80")
	if code != exitOK || len(sys.drops) != 0 || !strings.Contains(stderr, "keeps its privileges to delete table inet synprobe_1_00000000") || !sys.guards[0].closed {
		t.Errorf("exit %d, drops %v, guard closed %v, stderr %q", code, sys.drops, sys.guards[0].closed, stderr)
	}
}

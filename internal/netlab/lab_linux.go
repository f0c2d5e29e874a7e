package netlab

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const (
	netnsDir = "/run/netns" // where iproute2 keeps named namespaces

	cmdTimeout    = 30 * time.Second // for every ip/nft/sysctl child
	settleTimeout = 5 * time.Second  // for links, addresses, tcpdump start
	pollInterval  = 10 * time.Millisecond

	skipPrivileges = "netlab: needs root or CAP_NET_ADMIN: run as root (sudo go test ...)"
)

// labSeq numbers the labs of this process; with the pid it makes names
// unique across concurrently running test binaries.
var labSeq atomic.Uint32

// staleName matches namespaces made by this package: sp<pid>x<n><role>.
var staleName = regexp.MustCompile(`^sp([0-9]+)x[0-9]+[ptr][0-9]*$`)

// New creates a Prober and a Target namespace joined by a veth pair, with
// addresses, links up and permanent neighbour entries, and registers their
// removal with tb.Cleanup. It skips the test when not privileged.
func New(tb testing.TB) *Lab {
	tb.Helper()
	l, x := prepare(tb, "p", "t")
	l.ProberIf, l.TargetIf = l.Prober, l.Target
	macP, macT := mac(x, 1), mac(x, 2)
	l.run(tb, "ip", "link", "add", l.ProberIf, "netns", l.Prober, "address", macP,
		"type", "veth", "peer", "name", l.TargetIf, "netns", l.Target, "address", macT)
	l.configureEnds(tb, macP, macT)
	return l
}

// prepare checks privileges, sweeps stale labs, and creates one namespace
// per role suffix ("p", "t", "r"), returning the lab with names and
// addresses filled in and the subnet number X.
func prepare(tb testing.TB, roles ...string) (*Lab, uint8) {
	tb.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		tb.Skip("netlab: ip (iproute2) not found: install iproute2")
	}
	if !privileged() {
		tb.Skip(skipPrivileges)
	}
	if err := Sweep(); err != nil {
		tb.Logf("netlab: sweeping stale namespaces: %v", err)
	}

	var n uint32
	for try := 0; ; try++ {
		n = labSeq.Add(1) - 1
		if _, err := os.Stat(filepath.Join(netnsDir, nsName(n, roles[0]))); errors.Is(err, os.ErrNotExist) {
			break
		}
		if try == 100 {
			tb.Fatalf("netlab: no free namespace name after %d tries", try)
		}
	}
	x := uint8(n)
	l := &Lab{
		ProberV4: netip.AddrFrom4([4]byte{198, 18, x, 1}),
		TargetV4: netip.AddrFrom4([4]byte{198, 18, x, 2}),
		ProberV6: netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, x, 15: 1}),
		TargetV6: netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, x, 15: 2}),
	}
	tb.Cleanup(l.destroy)
	for _, role := range roles {
		ns := nsName(n, role)
		out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput()
		if err != nil {
			if bytes.Contains(out, []byte("not permitted")) || bytes.Contains(out, []byte("denied")) {
				tb.Skipf("%s (ip netns add: %s)", skipPrivileges, bytes.TrimSpace(out))
			}
			tb.Fatalf("netlab: ip netns add %s: %v: %s", ns, err, bytes.TrimSpace(out))
		}
		l.namespaces = append(l.namespaces, ns)
		switch role {
		case "p":
			l.Prober = ns
		case "t":
			l.Target = ns
		case "r":
			l.Router = ns
		}
	}
	for _, ns := range []string{l.Prober, l.Target} {
		// Before any interface exists, so new ones inherit the defaults:
		// no DAD, no router solicitations cluttering captures.
		l.sysctl(tb, ns, map[string]string{
			"net/ipv6/conf/all/accept_dad":               "0",
			"net/ipv6/conf/default/accept_dad":           "0",
			"net/ipv6/conf/default/router_solicitations": "0",
			"net/ipv6/conf/default/accept_ra":            "0",
		})
	}
	return l, x
}

func nsName(n uint32, role string) string {
	return fmt.Sprintf("sp%dx%d%s", os.Getpid(), n, role)
}

// mac returns a locally administered unicast address for host h of lab x.
func mac(x uint8, h byte) string {
	return fmt.Sprintf("02:73:70:%02x:00:%02x", x, h)
}

// configureEnds addresses and raises ProberIf and TargetIf, adds permanent
// neighbour entries for the peers and waits until both can send.
func (l *Lab) configureEnds(tb testing.TB, macP, macT string) {
	tb.Helper()
	type end struct {
		ns, ifname           string
		v4, v6, peer4, peer6 netip.Addr
		peerMAC              string
	}
	ends := []end{
		{l.Prober, l.ProberIf, l.ProberV4, l.ProberV6, l.TargetV4, l.TargetV6, macT},
		{l.Target, l.TargetIf, l.TargetV4, l.TargetV6, l.ProberV4, l.ProberV6, macP},
	}
	for _, e := range ends {
		l.batch(tb, e.ns,
			"link set lo up",
			"link set "+e.ifname+" up",
			fmt.Sprintf("addr add %s/24 dev %s", e.v4, e.ifname),
			fmt.Sprintf("addr add %s/64 dev %s nodad", e.v6, e.ifname),
			fmt.Sprintf("neigh replace %s lladdr %s dev %s nud permanent", e.peer4, e.peerMAC, e.ifname),
			fmt.Sprintf("neigh replace %s lladdr %s dev %s nud permanent", e.peer6, e.peerMAC, e.ifname),
		)
	}
	for _, e := range ends {
		l.waitReady(tb, e.ns, e.ifname, e.peer4, e.peer6)
	}
}

// waitReady waits (bounded) until ifname has carrier and no tentative IPv6
// address, then checks that both peers are routed through it.
func (l *Lab) waitReady(tb testing.TB, ns, ifname string, peers ...netip.Addr) {
	tb.Helper()
	deadline := time.Now().Add(settleTimeout)
	for {
		link := l.output(tb, ns, "ip", "-o", "link", "show", "dev", ifname)
		tentative := l.output(tb, ns, "ip", "-o", "-6", "addr", "show", "dev", ifname, "tentative")
		if strings.Contains(link, "LOWER_UP") && strings.TrimSpace(tentative) == "" {
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("netlab: %s/%s not ready after %v:\n%s%s", ns, ifname, settleTimeout, link, tentative)
		}
		time.Sleep(pollInterval)
	}
	for _, p := range peers {
		if out := l.output(tb, ns, "ip", "-o", "route", "get", p.String()); !strings.Contains(out, "dev "+ifname) {
			tb.Fatalf("netlab: %s: route to %s does not use %s: %s", ns, p, ifname, out)
		}
	}
}

// destroy deletes the lab's namespaces; registered by prepare.
func (l *Lab) destroy() {
	for _, ns := range l.namespaces {
		_ = deleteNS(ns)
	}
}

func deleteNS(ns string) error {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "delete", ns).CombinedOutput()
	if err != nil {
		if _, serr := os.Stat(filepath.Join(netnsDir, ns)); errors.Is(serr, os.ErrNotExist) {
			return nil // somebody else swept it
		}
		return fmt.Errorf("netlab: ip netns delete %s: %v: %s", ns, err, bytes.TrimSpace(out))
	}
	return nil
}

// Sweep deletes namespaces left by netlab in processes that no longer run
// (a test binary killed with SIGKILL cannot run its cleanups).
func Sweep() error {
	ents, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("netlab: %w", err)
	}
	var errs []error
	for _, e := range ents {
		m := staleName.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil || pid == os.Getpid() || alive(pid) {
			continue
		}
		errs = append(errs, deleteNS(e.Name()))
	}
	return errors.Join(errs...)
}

// alive reports whether pid runs; a zombie (killed, not yet reaped) does
// not count.
func alive(pid int) bool {
	if err := unix.Kill(pid, 0); err != nil && !errors.Is(err, unix.EPERM) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	// pid (comm) state ...; comm may itself contain ") ".
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z' && stat[i+2] != 'X'
	}
	return true
}

// privileged reports whether the effective capabilities include
// CAP_SYS_ADMIN (to create and enter namespaces) and CAP_NET_ADMIN.
func privileged() bool {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return os.Geteuid() == 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return false
			}
			const need = 1<<unix.CAP_SYS_ADMIN | 1<<unix.CAP_NET_ADMIN
			return caps&need == need
		}
	}
	return os.Geteuid() == 0
}

// InNS runs fn on an OS thread that has joined namespace ns. Sockets fn
// creates belong to ns for good. fn runs on another goroutine, so it must not
// call t.FailNow (t.Fatal); return an error instead. If the thread cannot
// return to its original namespace it is left locked, and Go discards it.
func (l *Lab) InNS(ns string, fn func() error) error {
	return inNS(ns, fn)
}

func inNS(ns string, fn func() error) error {
	target, err := os.Open(filepath.Join(netnsDir, ns))
	if err != nil {
		return fmt.Errorf("netlab: %w", err)
	}
	defer target.Close()

	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netlab: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netlab: setns %s: %w", ns, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Still locked: the thread exits with this goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("netlab: setns back from %s: %w", ns, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Listen creates a kernel listener inside namespace ns, closed at cleanup.
func (l *Lab) Listen(tb testing.TB, ns, network, addr string) net.Listener {
	tb.Helper()
	var ln net.Listener
	err := l.InNS(ns, func() (err error) {
		ln, err = net.Listen(network, addr)
		return err
	})
	if err != nil {
		tb.Fatalf("netlab: listen %s %s in %s: %v", network, addr, ns, err)
	}
	tb.Cleanup(func() { ln.Close() })
	return ln
}

// Command returns `ip netns exec NS name args...`.
func (l *Lab) Command(ctx context.Context, ns string, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// Run runs name in namespace ns and returns its combined output; any
// failure is fatal.
func (l *Lab) Run(tb testing.TB, ns, name string, args ...string) string {
	tb.Helper()
	return l.output(tb, ns, name, args...)
}

func (l *Lab) output(tb testing.TB, ns, name string, args ...string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := l.Command(ctx, ns, name, args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("netlab: %s: %s %s: %v\n%s", ns, name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// run runs a command in the test's own namespace; failure is fatal.
func (l *Lab) run(tb testing.TB, name string, args ...string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, name, args...).CombinedOutput(); err != nil {
		tb.Fatalf("netlab: %s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// batch runs ip commands, one per line, in namespace ns with one `ip -batch`.
func (l *Lab) batch(tb testing.TB, ns string, cmds ...string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "-n", ns, "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("netlab: %s: ip -batch: %v\n%s\ncommands:\n%s", ns, err, out, strings.Join(cmds, "\n"))
	}
}

// sysctl writes /proc/sys entries (path relative to /proc/sys) in ns.
func (l *Lab) sysctl(tb testing.TB, ns string, kv map[string]string) {
	tb.Helper()
	err := l.InNS(ns, func() error {
		var errs []error
		for k, v := range kv {
			errs = append(errs, os.WriteFile("/proc/sys/"+k, []byte(v), 0))
		}
		return errors.Join(errs...)
	})
	if err != nil {
		tb.Fatalf("netlab: %s: sysctl: %v", ns, err)
	}
}

// Nft loads ruleset into namespace ns with `nft -f -`.
func (l *Lab) Nft(tb testing.TB, ns, ruleset string) {
	tb.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		tb.Skip("netlab: nft not found: install nftables")
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := l.Command(ctx, ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		tb.Fatalf("netlab: %s: nft -f -: %v\n%s\nruleset:\n%s", ns, err, stderr.Bytes(), ruleset)
	}
}

//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synprobe/synprobe/internal/netlab"
	"github.com/synprobe/synprobe/rawsock/rstguard"
)

// setcapBinary returns a private copy of the binary with the file
// capabilities that `make install SETCAP=1` gives, in a directory that
// nobody can read.
func setcapBinary(t *testing.T, l *netlab.Lab) string {
	t.Helper()
	for _, tool := range []string{"setpriv", "setcap"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "synprobe")
	data, err := os.ReadFile(synprobeBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	l.Run(t, l.Prober, "setcap", "cap_net_raw,cap_net_admin+ep", bin)
	return bin
}

// asNobody is the command line that runs bin as nobody, with no group and
// no inheritable capability: a local user running the setcap'd binary.
func asNobody(bin string, args ...string) []string {
	return append([]string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", bin}, args...)
}

// runCmd runs argv in namespace ns with extra environment variables.
func runCmd(t *testing.T, l *netlab.Lab, ns string, env []string, argv ...string) cliRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := l.Command(ctx, ns, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := cliRun{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run %v: %v", argv, err)
	}
	return r
}

// threadCreds are the credentials of one thread, from its status file.
type threadCreds struct {
	tid                                string
	uid, gid, groups                   string
	capInh, capPrm, capEff, capBnd, am string
	noNewPrivs                         string
}

func (c threadCreds) String() string {
	return fmt.Sprintf("tid %s: Uid %s Gid %s Groups [%s] CapInh %s CapPrm %s CapEff %s CapBnd %s CapAmb %s NoNewPrivs %s",
		c.tid, c.uid, c.gid, c.groups, c.capInh, c.capPrm, c.capEff, c.capBnd, c.am, c.noNewPrivs)
}

// procCreds reads /proc/PID/task/*/status: every thread of the process.
func procCreds(t *testing.T, pid int) []threadCreds {
	t.Helper()
	dirs, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no threads of pid %d: %v", pid, err)
	}
	var all []threadCreds
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "status"))
		if err != nil {
			continue // the thread ended
		}
		c := threadCreds{tid: filepath.Base(d)}
		for _, line := range strings.Split(string(b), "\n") {
			k, v, _ := strings.Cut(line, ":")
			v = strings.Join(strings.Fields(v), " ")
			switch k {
			case "Uid":
				c.uid = v
			case "Gid":
				c.gid = v
			case "Groups":
				c.groups = v
			case "CapInh":
				c.capInh = v
			case "CapPrm":
				c.capPrm = v
			case "CapEff":
				c.capEff = v
			case "CapBnd":
				c.capBnd = v
			case "CapAmb":
				c.am = v
			case "NoNewPrivs":
				c.noNewPrivs = v
			}
		}
		all = append(all, c)
	}
	return all
}

const noCaps = "0000000000000000"

// inspected is a run whose process was looked at once set up.
type inspected struct {
	cliRun
	threads []threadCreds
	// taken says which descriptors a process of the run's own uid took
	// from it (pidfd_getfd) once set up, "" if none (runs that leave
	// uid 0 only).
	taken  string
	tried  int
	tables string // nft list tables in the prober namespace, during the run
	after  string // and after it
}

// inspectRun starts argv in the prober namespace, waits for its first
// line of output (set-up is done before it), reads every thread's
// credentials and the namespace's nftables tables twice, 200 ms apart
// (threads started meanwhile are read too), and waits for the end.
func inspectRun(t *testing.T, l *netlab.Lab, env []string, argv ...string) inspected {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := l.Command(ctx, l.Prober, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// ip netns exec and setpriv exec: the pid is synprobe's.
	br := bufio.NewReader(pipe)
	first, err := br.ReadString('\n')
	if err != nil {
		cmd.Wait()
		t.Fatalf("no output from %v: %v\n%s", argv, err, errb.String())
	}
	if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", cmd.Process.Pid)); strings.TrimSpace(string(comm)) != "synprobe" {
		t.Fatalf("pid %d is %q, not synprobe", cmd.Process.Pid, comm)
	}
	var r inspected
	seen := map[string]bool{}
	for i := range 2 {
		for _, c := range procCreds(t, cmd.Process.Pid) {
			if !seen[c.tid] {
				seen[c.tid] = true
				r.threads = append(r.threads, c)
			}
		}
		if i == 0 {
			r.tables = l.Run(t, l.Prober, "nft", "list", "tables")
			time.Sleep(200 * time.Millisecond)
		}
	}
	r.taken, r.tried = takeFDs(t, cmd.Process.Pid, r.threads)
	rest, _ := io.ReadAll(br)
	err = cmd.Wait()
	r.stdout, r.stderr = first+string(rest), errb.String()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	r.after = l.Run(t, l.Prober, "nft", "list", "tables")
	return r
}

// checkDropped asserts that every thread has no capability, cannot gain
// one (no_new_privs) and runs as uid:gid with the given groups.
func checkDropped(t *testing.T, r inspected, uid, gid int, groups string, bnd string) {
	t.Helper()
	if len(r.threads) == 0 {
		t.Fatal("no thread read")
	}
	ids := func(n int) string { s := strconv.Itoa(n); return s + " " + s + " " + s + " " + s }
	for _, c := range r.threads {
		if c.capInh != noCaps || c.capPrm != noCaps || c.capEff != noCaps || c.am != noCaps || c.noNewPrivs != "1" ||
			c.uid != ids(uid) || c.gid != ids(gid) || c.groups != groups || (bnd != "" && c.capBnd != bnd) {
			t.Errorf("thread keeps privileges: %v", c)
		}
	}
	if uid != 0 {
		// Not dumpable: the run's own user can neither ptrace it nor
		// take its raw sockets.
		if r.tried == 0 || r.taken != "" {
			t.Errorf("uid %d took descriptors of the run (of %d tried): %s", uid, r.tried, r.taken)
		}
	}
	t.Logf("%d threads, e.g. %v", len(r.threads), r.threads[0])
}

// takeFDs tries to take every descriptor of process pid with
// pidfd_getfd, which ptrace's access rules guard, as the uid and gid the
// process runs as, from a thread of this test that takes them (a
// system call's setresuid changes one thread's credentials; the thread
// is never unlocked, and ends with its goroutine). It returns the
// descriptors taken ("" if none) and how many were tried. A run that
// stays uid 0 is not tried.
func takeFDs(t *testing.T, pid int, threads []threadCreds) (string, int) {
	t.Helper()
	if len(threads) == 0 {
		return "", 0
	}
	uid, _ := strconv.Atoi(strings.Fields(threads[0].uid)[0])
	gid, _ := strconv.Atoi(strings.Fields(threads[0].gid)[0])
	if uid == 0 {
		return "", 0
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("fds of %d: %v", pid, err)
	}
	type result struct {
		taken string
		tried int
		err   error
	}
	done := make(chan result, 1)
	var take func()
	take = func() {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// The main thread, whose credentials /proc/self shows
			// for the whole test process, and which never ends: hold
			// it while another thread takes its place.
			defer runtime.UnlockOSThread()
			other := make(chan struct{})
			go func() { take(); close(other) }()
			<-other
			return
		}
		// Never unlocked: the thread ends with its goroutine.
		var res result
		if _, _, e := syscall.RawSyscall(syscall.SYS_SETRESGID, uintptr(gid), uintptr(gid), uintptr(gid)); e != 0 {
			res.err = e
		} else if _, _, e := syscall.RawSyscall(syscall.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid)); e != 0 {
			res.err = e
		} else if pfd, err := unix.PidfdOpen(pid, 0); err != nil {
			res.err = err
		} else {
			for _, e := range ents {
				fd, err := strconv.Atoi(e.Name())
				if err != nil {
					continue
				}
				res.tried++
				if nfd, err := unix.PidfdGetfd(pfd, fd, 0); err == nil {
					link, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", pid, fd))
					res.taken += fmt.Sprintf(" %d (%s)", fd, link)
					unix.Close(nfd)
				} else if !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EBADF) {
					res.err = err
				}
			}
			unix.Close(pfd)
		}
		done <- res
	}
	go take()
	res := <-done
	if res.err != nil {
		t.Fatalf("taking descriptors of %d as %d:%d: %v", pid, uid, gid, res.err)
	}
	return res.taken, res.tried
}

// TestIntegrationLeastPrivilege runs the setcap'd binary as nobody and the
// plain one as root, and reads every thread's credentials while they run:
// once set up, no capability is left on any thread, none can be gained
// back, and a root run is no longer uid 0 (unless --keep-root). The RST
// guard still goes at exit.
func TestIntegrationLeastPrivilege(t *testing.T) {
	l := verdictLab(t)
	bin := setcapBinary(t, l)
	target := hostPort(l.TargetV4, 80)

	t.Run("nobody/probe", func(t *testing.T) {
		r := inspectRun(t, l, nil, asNobody(bin, "-c", "4", "-i", "0.2", target)...)
		if r.code != 0 || !strings.Contains(r.stdout, "4 probes sent, 4 open") {
			t.Errorf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		checkDropped(t, r, 65534, 65534, "", "")
	})
	t.Run("nobody/ack", func(t *testing.T) {
		r := inspectRun(t, l, nil, asNobody(bin, "--mode", "ack", "-c", "4", "-i", "0.2", "--json", hostPort(l.TargetV6, 80))...)
		if r.code != 0 || !strings.Contains(r.stdout, `"open":4`) || !strings.Contains(r.stdout, `"kernel_rsts_escaped":0`) {
			t.Errorf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		checkDropped(t, r, 65534, 65534, "", "")
		checkGuard(t, r)
	})
	t.Run("nobody/fin", func(t *testing.T) {
		r := inspectRun(t, l, nil, asNobody(bin, "--mode", "fin", "--hold", "0.1", "-c", "3", "-i", "0.2", "--json", target)...)
		if r.code != 0 || strings.Count(r.stdout, `"close":{"pattern":"`) != 3 || !strings.Contains(r.stdout, `"kernel_rsts_escaped":0`) {
			t.Errorf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		checkDropped(t, r, 65534, 65534, "", "")
		checkGuard(t, r)
	})
	t.Run("nobody/ambient", func(t *testing.T) {
		// As a systemd unit with AmbientCapabilities runs it: the plain
		// binary, the capabilities inherited; the ambient set goes too.
		r := inspectRun(t, l, nil, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=+net_raw,+net_admin",
			"--ambient-caps=+net_raw,+net_admin", synprobeBinary(t), "--mode", "ack", "-c", "3", "-i", "0.2", "--json", target)
		if r.code != 0 || !strings.Contains(r.stdout, `"open":3`) {
			t.Errorf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		checkDropped(t, r, 65534, 65534, "", "")
		checkGuard(t, r)
	})
	t.Run("nobody/own-source-and-sport", func(t *testing.T) {
		// -S with the host's own address and a --sport nobody else
		// holds: what a local user may ask for.
		r := runCmd(t, l, l.Prober, nil, asNobody(bin, "--mode", "fin", "-c", "1", "--json", "-S", l.ProberV4.String(), "--sport", "40123", target)...)
		if r.code != 0 || !strings.Contains(r.stdout, `"sport":40123`) || !strings.Contains(r.stdout, `"close":{"pattern":"`) {
			t.Errorf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("nobody/scan", func(t *testing.T) {
		// 16 sending threads, locked to their OS threads, start after
		// the drop: the threads the runtime creates then are covered.
		// 20000 pairs: answers come through the packet ring.
		// Read while it scans: its output comes at the end.
		r := inspectDrop(t, l, nil, nil, asNobody(bin, "scan", "--senders", "16", "--rate", "20000", "-w", "0.2", l.TargetV4.String()+":1-20000")...)
		if !strings.Contains(r.stdout, "--- scan of 20000 pairs: 1 open, 19997 closed, 2 filtered") || !strings.Contains(r.stdout, "answers read from packet ring") {
			t.Errorf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if len(r.threads) < 17 {
			t.Errorf("%d threads: want the 16 senders and the receiver", len(r.threads))
		}
		checkDropped(t, r, 65534, 65534, "", "")
	})
	t.Run("root/sudo", func(t *testing.T) {
		// As sudo runs it: the invoking user is SUDO_UID, SUDO_GID.
		r := inspectRun(t, l, []string{"SUDO_UID=4242", "SUDO_GID=4343"}, synprobeBinary(t), "--mode", "fin", "--hold", "0.1", "-c", "3", "-i", "0.2", "--json", target)
		if r.code != 0 || strings.Count(r.stdout, `"close":{"pattern":"`) != 3 {
			t.Errorf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		checkDropped(t, r, 4242, 4343, "", "")
		checkGuard(t, r)
	})
	t.Run("root/nobody", func(t *testing.T) {
		r := inspectRun(t, l, []string{"SUDO_UID="}, synprobeBinary(t), "-c", "3", "-i", "0.2", target)
		if r.code != 0 {
			t.Errorf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		checkDropped(t, r, 65534, 65534, "", "")
	})
	t.Run("root/-Z", func(t *testing.T) {
		r := inspectRun(t, l, []string{"SUDO_UID=4242"}, synprobeBinary(t), "-Z", "nobody", "-c", "3", "-i", "0.2", target)
		if r.code != 0 {
			t.Errorf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		checkDropped(t, r, 65534, 65534, "", "")
	})
	t.Run("root/keep-root", func(t *testing.T) {
		r := inspectRun(t, l, []string{"SUDO_UID=4242"}, synprobeBinary(t), "--keep-root", "--mode", "ack", "-c", "3", "-i", "0.2", "--json", target)
		if r.code != 0 {
			t.Errorf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		// uid 0 stays, and so does its group list; no capability does.
		groups := ""
		if len(r.threads) > 0 {
			groups = r.threads[0].groups
		}
		checkDropped(t, r, 0, 0, groups, "")
		checkGuard(t, r)
	})
}

// checkGuard asserts that the run's RST guard existed while it ran, is
// gone after it, and counted the kernel RSTs it dropped though the run
// held no privilege by then.
func checkGuard(t *testing.T, r inspected) {
	t.Helper()
	m := regexp.MustCompile(`"table":"(` + rstguard.TablePrefix + `[0-9a-f_]+)"`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("no guard line:\n%s", r.stdout)
	}
	if !strings.Contains(r.tables, "table inet "+m[1]) {
		t.Errorf("table %s not there during the run:\n%s", m[1], r.tables)
	}
	if strings.Contains(r.after, rstguard.TablePrefix) {
		t.Errorf("a guard table is left after the run:\n%s", r.after)
	}
	if d := regexp.MustCompile(`"kernel_rsts_dropped":([0-9]+)`).FindStringSubmatch(r.stdout); d == nil || d[1] == "0" {
		t.Errorf("the guard counted no kernel RST:\n%s", r.stdout)
	}
}

// TestIntegrationUnprivilegedRefusals: what a local user running the
// setcap'd binary may not do is refused, in one line naming the rule, with
// exit 2, before a packet is sent. Root may.
func TestIntegrationUnprivilegedRefusals(t *testing.T) {
	l := verdictLab(t)
	bin := setcapBinary(t, l)
	target := hostPort(l.TargetV4, 80)
	// A listener of another program on the prober: its port is not ours.
	l.Listen(t, l.Prober, "tcp", "0.0.0.0:2222")
	capt := l.StartCapture(t, l.Prober, l.ProberIf, "tcp")
	for _, tt := range []struct {
		name string
		args []string
		rule string
	}{
		{"spoofed source", []string{"-S", "198.18.0.77", "-c", "1", target}, "-S 198.18.0.77: not an address of this host"},
		{"spoofed source v6", []string{"-S", "2001:db8:ffff::7", "-c", "1", hostPort(l.TargetV6, 80)}, "not an address of this host"},
		{"mark", []string{"--mode", "ack", "--mark", "0x1234", "-c", "1", target}, "--mark 0x1234: only synprobe's own mark 0x53594e50"},
		{"sport held by a listener", []string{"--mode", "fin", "--sport", "2222", "-c", "1", target}, "--sport 2222: synprobe cannot hold the port alone"},
		{"privileged sport", []string{"--mode", "fin", "--sport", "99", "-c", "1", target}, "--sport 99: synprobe cannot hold the port alone"},
		{"flood", []string{"-i", "0.001", "-c", "5", target}, "-i 1ms: no less than 2ms between rounds"},
		{"other user", []string{"-Z", "root", "-c", "1", target}, "-Z root: only root can choose the user"},
		// The scan verb and trace (which sets up a probe.Client of its
		// own) apply the same rules.
		{"scan spoofed source", []string{"scan", "-S", "198.18.0.77", target}, "-S 198.18.0.77: not an address of this host"},
		{"scan loopback source", []string{"scan", "-S", "127.0.0.1", target}, "-S 127.0.0.1: a loopback address as the source"},
		{"scan sport held by a listener", []string{"scan", "--sport", "2222", target}, "--sport 2222: synprobe cannot hold the port alone"},
		{"trace spoofed source", []string{"trace", "-S", "198.18.0.77", "-q", "1", target}, "-S 198.18.0.77: not an address of this host"},
		{"trace spoofed source v6", []string{"trace", "-S", "2001:db8:ffff::7", "-q", "1", hostPort(l.TargetV6, 80)}, "-S 2001:db8:ffff::7: not an address of this host"},
		{"trace loopback source", []string{"trace", "-S", "127.0.0.1", "-q", "1", target}, "-S 127.0.0.1: a loopback address as the source"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := runCmd(t, l, l.Prober, nil, asNobody(bin, tt.args...)...)
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			if r.code != exitUsage || r.stdout != "" || len(lines) != 1 || !strings.Contains(lines[0], tt.rule) {
				t.Errorf("exit %d, want 2 and one line with %q:\n%s%s", r.code, tt.rule, r.stdout, r.stderr)
			}
			if tt.rule != "" && !strings.Contains(r.stderr, "a caller other than root") && !strings.Contains(tt.name, "other user") {
				t.Errorf("the line does not name the rule: %s", r.stderr)
			}
		})
	}
	if pkts, err := capt.Stop(); err != nil || len(pkts) != 0 {
		t.Errorf("refused runs sent %d packets (%v)", len(pkts), err)
	}
	// The listener still answers: nothing took its port.
	if r := runCmd(t, l, l.Target, nil, synprobeBinary(t), "-c", "1", "-w", "0.5", hostPort(l.ProberV4, 2222)); r.code != 0 {
		t.Errorf("the prober's listener on 2222 no longer answers: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// Root is refused a spoofed source too: no answer could come back,
	// and every probe would be called filtered. Its own mark it keeps.
	r := runCmd(t, l, l.Prober, nil, synprobeBinary(t), "-S", "198.18.0.77", "-c", "1", "-w", "0.2", target)
	if r.code != exitUsage || !strings.Contains(r.stderr, "-S 198.18.0.77: not an address of this host: its answers would never reach synprobe") {
		t.Errorf("root with a spoofed source: exit %d, want 2\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runCmd(t, l, l.Prober, nil, synprobeBinary(t), "--mode", "ack", "--mark", "0x1234", "-c", "1", target)
	if r.code != exitOK {
		t.Errorf("root with --mark: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// With net.ipv4.ip_nonlocal_bind and net.ipv6.ip_nonlocal_bind set,
	// any address binds: the source is still judged by the kernel's
	// routes, and every verb still refuses another host's.
	l.Run(t, l.Prober, "sysctl", "-q", "-w", "net.ipv4.ip_nonlocal_bind=1", "net.ipv6.ip_nonlocal_bind=1")
	capt = l.StartCapture(t, l.Prober, l.ProberIf, "tcp")
	for _, argv := range [][]string{
		{synprobeBinary(t), "-S", "198.18.0.77", "-c", "1", "-w", "0.2", target},
		{synprobeBinary(t), "scan", "-S", "2001:db8:ffff::7", "-w", "0.2", hostPort(l.TargetV6, 80)},
		{synprobeBinary(t), "trace", "-S", "198.18.0.77", "-q", "1", "-w", "0.2", target},
		asNobody(bin, "-S", "198.18.0.77", "-c", "1", "-w", "0.2", target),
		asNobody(bin, "trace", "-S", "2001:db8:ffff::7", "-q", "1", "-w", "0.2", hostPort(l.TargetV6, 80)),
	} {
		r := runCmd(t, l, l.Prober, nil, argv...)
		if r.code != exitUsage || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, ": not an address of this host") {
			t.Errorf("%v with ip_nonlocal_bind: exit %d, want 2\n%s%s", argv, r.code, r.stdout, r.stderr)
		}
	}
	if pkts, err := capt.Stop(); err != nil || len(pkts) != 0 {
		t.Errorf("refused runs sent %d packets (%v)", len(pkts), err)
	}
}

// TestIntegrationSecretFile: a root run given a file it may read and the
// user may not (a password file, by mistake or on purpose) shows none of
// its bytes, from a path or from standard input.
func TestIntegrationSecretFile(t *testing.T) {
	l := netlab.New(t)
	dir := t.TempDir()
	secrets := map[string]string{
		"shadow":  "root:$6$Zq8sVfX1$kT7yH2pW9mN4bC6dE1fG3hJ5kL7mN9pQ2rS4tU6vW8xY0zA2bC4dE6fG8hJ0kL2mN4pQ6rS8tU0vW2xY4zA6:19876:0:99999:7:::\n",
		"second":  "# a comment\n198.18.0.2:80\nhunter2:s3cr3tpassw0rd\n",
		"control": "\x01\x02binary\xffjunk-line-with-secret-XYZZY\n",
		"spaces":  "  token ghp_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\n",
		"huge":    strings.Repeat("S3CRETqzjw", 8000) + "\n",
	}
	for name, content := range secrets {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, how := range []string{"path", "stdin"} {
			var r cliRun
			if how == "path" {
				r = runCmd(t, l, l.Prober, nil, synprobeBinary(t), "-c", "1", "-f", path)
			} else {
				cmd := l.Command(context.Background(), l.Prober, "sh", "-c", synprobeBinary(t)+" -c 1 -f - < "+path)
				var out, errb bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &errb
				err := cmd.Run()
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					r.code = ee.ExitCode()
				}
				r.stdout, r.stderr = out.String(), errb.String()
			}
			output := r.stdout + r.stderr
			if r.code != exitUsage {
				t.Errorf("%s via %s: exit %d, want 2\n%s", name, how, r.code, output)
			}
			if leak := leaked(content, output, path); leak != "" {
				t.Errorf("%s via %s: the output shows %q of the file:\n%s", name, how, leak, output)
			}
			t.Logf("%s via %s: %s", name, how, strings.TrimSpace(output))
		}
	}
}

// leaked returns a piece of content (4 bytes or more, outside the file's
// name) that appears in output, "" if none does.
func leaked(content, output, path string) string {
	output = strings.ReplaceAll(output, path, "")
	for _, tok := range regexp.MustCompile(`[^\s:#$]{4,}`).FindAllString(content, -1) {
		for i := 0; i+4 <= len(tok); i++ {
			if strings.Contains(output, tok[i:i+4]) && !strings.Contains("stdin synprobe line", tok[i:i+4]) {
				return tok[i : i+4]
			}
		}
	}
	return ""
}

// setcapPair copies synprobe and synprobe-serve into a directory of /tmp
// that any user can search (synprobe looks for synprobe-serve beside
// itself, as its caller), and gives both the file capabilities that
// make install SETCAP=1 gives.
func setcapPair(t *testing.T, l *netlab.Lab) string {
	t.Helper()
	for _, tool := range []string{"setpriv", "setcap"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	dir, err := os.MkdirTemp("", "synprobe-setcap-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	built := filepath.Dir(synprobeBinary(t))
	for _, name := range []string{"synprobe", "synprobe-serve"} {
		data, err := os.ReadFile(filepath.Join(built, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o755); err != nil {
			t.Fatal(err)
		}
		l.Run(t, l.Prober, "setcap", "cap_net_raw,cap_net_admin+ep", filepath.Join(dir, name))
	}
	return filepath.Join(dir, "synprobe")
}

// inspectDrop starts argv in the prober namespace, waits until its main
// thread has given up its capabilities and set no_new_privs (at most
// 20 s: a run that never drops them fails), reads every thread's
// credentials twice, 200 ms apart, then calls during (if any: a serve is
// probed, then sent SIGTERM) and waits for the end.
func inspectDrop(t *testing.T, l *netlab.Lab, env []string, during func(pid int), argv ...string) inspected {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := l.Command(ctx, l.Prober, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	pid := cmd.Process.Pid
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		// ip netns exec and setpriv exec: the pid becomes synprobe's
		// (or synprobe-serve's, which synprobe serve execs).
		if strings.HasPrefix(string(comm), "synprobe") && strings.Contains(string(b), "\nCapEff:\t"+noCaps+"\n") && strings.Contains(string(b), "\nNoNewPrivs:\t1\n") {
			break
		}
		select {
		case <-done:
			t.Fatalf("%v ended before it gave up its privileges: exit %d\n%s%s", argv, cmd.ProcessState.ExitCode(), out.String(), errb.String())
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-done
			t.Fatalf("%v kept its capabilities for 20 s:\n%s\n%s%s", argv, b, out.String(), errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // the drop's last all-thread call
	var r inspected
	seen := map[string]bool{}
	for i := range 2 {
		for _, c := range procCreds(t, pid) {
			if !seen[c.tid] {
				seen[c.tid] = true
				r.threads = append(r.threads, c)
			}
		}
		if i == 0 {
			r.tables = l.Run(t, l.Prober, "nft", "list", "tables")
			time.Sleep(200 * time.Millisecond)
		}
	}
	r.taken, r.tried = takeFDs(t, pid, r.threads)
	if during != nil {
		during(pid)
	}
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatalf("%v did not end", argv)
	}
	r.stdout, r.stderr, r.code = out.String(), errb.String(), cmd.ProcessState.ExitCode()
	r.after = l.Run(t, l.Prober, "nft", "list", "tables")
	return r
}

// TestIntegrationLeastPrivilegeVerbs: the verbs with set-ups of their own
// (trace, listener, and serve, which synprobe execs as synprobe-serve)
// give up every privilege as ping and scan do: run by a local user with
// the setcap'd binaries, they work and keep no capability; run as root,
// they leave uid 0 for SUDO_UID's user, nobody or -Z's, unless
// --keep-root; a -Z of a caller other than root names only itself.
func TestIntegrationLeastPrivilegeVerbs(t *testing.T) {
	l := verdictLab(t)
	bin := setcapPair(t, l)
	plain := synprobeBinary(t)
	// A trace to a dropped port: hop 1 is the target, silent; three hops
	// of 0.5 s.
	trace := []string{"trace", "-q", "1", "-w", "0.5", "--max-hops", "3", "--max-silent", "3", hostPort(l.TargetV4, 81)}
	listener := []string{"listener", "--observe", "1.2", hostPort(l.TargetV4, 80)}
	cfg := filepath.Join(filepath.Dir(bin), "serve.yml") // where nobody can read it
	os.WriteFile(cfg, []byte("modules:\n  fin: {mode: fin, timeout: 500ms, close_timeout: 1s}\n"), 0o644)
	const addr = "127.0.0.1:9516"
	serve := []string{"serve", "--config.file", cfg, "--web.listen-address", addr}
	// probeServe asks serve for a fin probe (its RST guard at work
	// without a privilege), then ends it.
	probeServe := func(t *testing.T) func(int) {
		return func(pid int) {
			c := nsClient(l, l.Prober)
			waitFor(t, "synprobe serve", 20*time.Second, func() bool {
				resp, err := c.Get("http://" + addr + "/-/healthy")
				if err == nil {
					resp.Body.Close()
				}
				return err == nil && resp.StatusCode == 200
			})
			code, body := httpGet(t, c, "GET", "http://"+addr+"/probe?module=fin&target="+hostPort(l.TargetV4, 80))
			if code != 200 || !strings.Contains(body, "\nprobe_success 1\n") || strings.Contains(body, "probe_tcp_close{pattern=\"rst\"} 1") {
				t.Errorf("fin probe: %d\n%s", code, body)
			}
			syscall.Kill(pid, syscall.SIGTERM)
		}
	}
	nobody := func(args ...string) []string { return asNobody(bin, args...) }
	root := func(args ...string) []string { return append([]string{plain}, args...) }
	sudo := []string{"SUDO_UID=4242", "SUDO_GID=4343"}
	for _, tt := range []struct {
		name     string
		env      []string
		argv     []string
		serve    bool
		uid, gid int
		code     int
		stdout   string
	}{
		{name: "trace/nobody", argv: nobody(trace...), uid: 65534, gid: 65534, code: exitNotOpen, stdout: "filtered"},
		{name: "trace/sudo", env: sudo, argv: root(trace...), uid: 4242, gid: 4343, code: exitNotOpen, stdout: "filtered"},
		{name: "trace/-Z", env: sudo, argv: root(withFlags(trace, "-Z", "nobody")...), uid: 65534, gid: 65534, code: exitNotOpen, stdout: "filtered"},
		{name: "trace/keep-root", env: sudo, argv: root(withFlags(trace, "--keep-root")...), uid: 0, gid: 0, code: exitNotOpen, stdout: "filtered"},
		{name: "listener/nobody", argv: nobody(listener...), uid: 65534, gid: 65534, code: exitOK, stdout: "healthy"},
		{name: "listener/sudo", env: sudo, argv: root(listener...), uid: 4242, gid: 4343, code: exitOK, stdout: "healthy"},
		{name: "listener/-Z", env: sudo, argv: root(withFlags(listener, "-Z", "nobody")...), uid: 65534, gid: 65534, code: exitOK, stdout: "healthy"},
		{name: "listener/keep-root", env: sudo, argv: root(withFlags(listener, "--keep-root")...), uid: 0, gid: 0, code: exitOK, stdout: "healthy"},
		{name: "serve/nobody", argv: nobody(serve...), serve: true, uid: 65534, gid: 65534},
		{name: "serve/sudo", env: sudo, argv: append([]string{bin}, serve...), serve: true, uid: 4242, gid: 4343},
		{name: "serve/root", env: []string{"SUDO_UID="}, argv: append([]string{bin}, serve...), serve: true, uid: 65534, gid: 65534},
		{name: "serve/-Z", env: sudo, argv: append([]string{bin}, withFlags(serve, "-Z", "nobody")...), serve: true, uid: 65534, gid: 65534},
		{name: "serve/keep-root", env: sudo, argv: append([]string{bin}, withFlags(serve, "--keep-root")...), serve: true, uid: 0, gid: 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var during func(int)
			if tt.serve {
				during = probeServe(t)
			}
			r := inspectDrop(t, l, tt.env, during, tt.argv...)
			if r.code != tt.code || !strings.Contains(r.stdout, tt.stdout) {
				t.Errorf("exit %d, want %d and %q in the output\n%s%s", r.code, tt.code, tt.stdout, r.stdout, r.stderr)
			}
			groups := ""
			if tt.uid == 0 && len(r.threads) > 0 {
				groups = r.threads[0].groups // uid 0 keeps its group list
			}
			checkDropped(t, r, tt.uid, tt.gid, groups, "")
			if strings.Contains(r.after, rstguard.TablePrefix) {
				t.Errorf("a guard table is left after the run:\n%s", r.after)
			}
		})
	}
	// -Z is root's choice in every verb: one line, exit 2, nothing run.
	for _, verb := range [][]string{trace, listener, serve} {
		r := runCmd(t, l, l.Prober, nil, asNobody(bin, withFlags(verb, "-Z", "root")...)...)
		if lines := strings.Split(strings.TrimSpace(r.stderr), "\n"); r.code != exitUsage || r.stdout != "" || len(lines) != 1 || !strings.Contains(lines[0], "-Z root: only root can choose") {
			t.Errorf("%s -Z root as nobody: exit %d, want 2 and one line\n%s%s", verb[0], r.code, r.stdout, r.stderr)
		}
	}
}

// withFlags puts flags after a verb's name: VERB FLAGS... ARGS....
func withFlags(verb []string, flags ...string) []string {
	return append(append([]string{verb[0]}, flags...), verb[1:]...)
}

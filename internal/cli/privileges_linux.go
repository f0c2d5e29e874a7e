//go:build linux

package cli

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// DropPrivileges ends set-up: from here on the process keeps no
// capability on any thread, cannot gain one through execve, and, when d
// says so, runs as d.UID:d.GID with no supplementary group (root runs,
// unless --keep-root). Every step
// runs on every thread of the process (syscall.AllThreadsSyscall, which
// needs a CGO_ENABLED=0 build); threads the Go runtime starts later are
// cloned from these and inherit their credentials, and AllThreadsSyscall
// holds off thread creation while it runs.
//
// Order matters: the steps that need a capability (securebits:
// CAP_SETPCAP; setgroups, setresgid: CAP_SETGID;
// setresuid: CAP_SETUID) come before capset clears the sets.
func DropPrivileges(d DropSpec) error {
	// A setuid-root binary (not how synprobe is installed, but possible):
	// the real user is the one to become.
	if !d.SetUID && os.Geteuid() == 0 && os.Getuid() != 0 {
		d.SetUID, d.UID, d.GID, d.Who = true, os.Getuid(), os.Getgid(), "the real user"
	}
	if !d.SetUID && !holdsCapabilities() {
		// Nothing to give up (no capability, not root); no_new_privs
		// is still worth having, and costs no privilege.
		if err := allThreads(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); err != nil && !errors.Is(err, errCgo) {
			return fmt.Errorf("prctl PR_SET_NO_NEW_PRIVS: %w", err)
		}
		return nil
	}
	// Not dumpable, now and (below) once the credentials are final: the
	// caller's user must not ptrace this process, nor take its raw
	// sockets with pidfd_getfd, once it has no capability left (while it
	// has some, the kernel refuses that already). A capability set that
	// only shrinks leaves the flag as it was: a setcap'd binary run by a
	// user stayed dumpable after its drop. A process-wide flag: one call.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return dropError("prctl PR_SET_DUMPABLE", err)
	}
	// no_new_privs: no execve from here on (a setuid binary, a binary
	// with file capabilities) gives this process anything back.
	if err := allThreads(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); err != nil {
		return dropError("prctl PR_SET_NO_NEW_PRIVS", err)
	}
	// Root staying uid 0 (--keep-root, CAP_SETPCAP): uid 0 gets no
	// capability from execve either (SECBIT_NOROOT), and neither
	// keep-caps nor the ambient set can be turned on again; all locked.
	// A run that leaves uid 0 can never return to it; file capabilities
	// do not give CAP_SETPCAP. Either way no_new_privs and the empty
	// permitted set keep execve from granting anything. The bounding set
	// is left as it is: clearing it takes one all-threads call per
	// capability, 41 stops of the world that cost 5-12 ms before the
	// first probe (measured), and it would guard nothing more.
	if !d.SetUID && hasEffective(unix.CAP_SETPCAP) {
		// linux/securebits.h: NOROOT, NOROOT_LOCKED, KEEP_CAPS_LOCKED
		// (with KEEP_CAPS off), NO_CAP_AMBIENT_RAISE and its lock.
		const bits = 1<<0 | 1<<1 | 1<<5 | 1<<6 | 1<<7
		if err := allThreads(unix.SYS_PRCTL, unix.PR_SET_SECUREBITS, bits, 0); err != nil {
			return dropError("prctl PR_SET_SECUREBITS", err)
		}
	}
	if d.SetUID {
		// No supplementary groups: synprobe opens no file after set-up.
		if err := allThreads(unix.SYS_SETGROUPS, 0, 0, 0); err != nil {
			return dropError("setgroups", err)
		}
		if err := allThreads(unix.SYS_SETRESGID, uintptr(d.GID), uintptr(d.GID), uintptr(d.GID)); err != nil {
			return dropError(fmt.Sprintf("setresgid %d", d.GID), err)
		}
		// Leaving uid 0 for good clears the permitted, effective and
		// ambient sets (no SECBIT_KEEP_CAPS).
		if err := allThreads(unix.SYS_SETRESUID, uintptr(d.UID), uintptr(d.UID), uintptr(d.UID)); err != nil {
			return dropError(fmt.Sprintf("setresuid %d", d.UID), err)
		}
	}
	// Effective, permitted and inheritable: all empty. The kernel empties
	// the ambient set with them (it must be within permitted and
	// inheritable). Leaving uid 0 cleared all but the inheritable set
	// already.
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	err := allThreads(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
	runtime.KeepAlive(&hdr)
	runtime.KeepAlive(&data)
	if err != nil {
		return dropError("capset", err)
	}
	if holdsCapabilities() {
		return errors.New("cannot drop privileges: capabilities remain after capset")
	}
	// A uid change set the flag to fs.suid_dumpable, which an
	// administrator may have set to 1.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return dropError("prctl PR_SET_DUMPABLE", err)
	}
	return nil
}

var errCgo = errors.New("built with cgo")

// allThreads runs a system call on every thread of the process; an error
// means that no thread ran it.
func allThreads(trap, a1, a2, a3 uintptr) error {
	_, _, e := syscall.AllThreadsSyscall(trap, a1, a2, a3)
	switch e {
	case 0:
		return nil
	case syscall.ENOTSUP:
		return errCgo
	}
	return e
}

func dropError(op string, err error) error {
	if errors.Is(err, errCgo) {
		return errors.New("cannot drop privileges on every thread: this synprobe was built with cgo; build it with CGO_ENABLED=0 (make build does)")
	}
	return fmt.Errorf("cannot drop privileges: %s: %w", op, err)
}

// capSets reads the calling thread's capability sets.
func capSets() (eff, prm, inh uint64, ok bool) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, 0, 0, false
	}
	join := func(lo, hi uint32) uint64 { return uint64(hi)<<32 | uint64(lo) }
	return join(data[0].Effective, data[1].Effective), join(data[0].Permitted, data[1].Permitted),
		join(data[0].Inheritable, data[1].Inheritable), true
}

// holdsCapabilities reports whether the calling thread has any capability
// in its effective, permitted or inheritable set (or cannot tell).
func holdsCapabilities() bool {
	eff, prm, inh, ok := capSets()
	return !ok || eff|prm|inh != 0
}

func hasEffective(c uint) bool {
	eff, _, _, ok := capSets()
	return ok && eff&(1<<c) != 0
}

package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// `synprobe serve` is a binary of its own, synprobe-serve
// (cmd/synprobe-serve, docs/serve.md): the Prometheus packages it links
// would cost every probe and scan their size and initialisation
// (docs/design.md). synprobe execs it in its own place, so that the pid,
// signals, capabilities (ambient ones survive execve of a binary without
// file capabilities) and the systemd unit's view of the process carry
// over.

// serveBinary is the file `synprobe serve` runs.
const serveBinary = "synprobe-serve"

// serveMain replaces this process with synprobe-serve ARGS; it returns
// only if that cannot be done.
func serveMain(args []string, stderr io.Writer) int {
	path, err := findServe(os.Executable, lookPath, secureExec())
	if err == nil {
		err = syscall.Exec(path, append([]string{path}, args...), os.Environ())
		err = fmt.Errorf("cannot run %s: %v", path, err)
	}
	fmt.Fprintf(stderr, "synprobe serve: %v\n", err)
	return exitFailure
}

// findServe looks for synprobe-serve beside this binary, then in PATH;
// not in PATH when this run has privileges that its caller lacks
// (secure: setuid or file capabilities), where anyone's PATH would choose
// the program that gets them.
func findServe(executable func() (string, error), lookPath func(string) (string, bool), secure bool) (string, error) {
	beside := serveBinary
	if exe, err := executable(); err == nil {
		beside = filepath.Join(filepath.Dir(exe), serveBinary)
		if fi, err := os.Stat(beside); err == nil && fi.Mode().IsRegular() {
			return beside, nil
		}
	}
	if !secure {
		if p, ok := lookPath(serveBinary); ok {
			return p, nil
		}
	}
	return "", errors.New(beside + " not found: serve is a binary of its own, installed beside synprobe (make install installs both)")
}

// lookPath finds an executable file in PATH's absolute directories. Not
// os/exec's LookPath: linking os/exec costs every run 0.3 MB of RSS
// (measured with synprobe --version).
func lookPath(name string) (string, bool) {
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		if !filepath.IsAbs(dir) {
			continue // "" and relative directories: the caller's working directory
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, true
		}
	}
	return "", false
}

// secureExec reports whether the kernel started this process in secure
// mode (AT_SECURE: setuid, setgid or file capabilities), or cannot tell.
func secureExec() bool {
	if os.Getuid() != os.Geteuid() || os.Getgid() != os.Getegid() {
		return true
	}
	auxv, err := unix.Auxv()
	if err != nil {
		return true
	}
	const atSecure = 23 // linux/auxvec.h
	for _, kv := range auxv {
		if kv[0] == atSecure {
			return kv[1] != 0
		}
	}
	return true
}

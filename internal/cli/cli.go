// Package cli is what synprobe's two commands share: synprobe (probes and
// scans) and synprobe-serve (the Prometheus exporter that `synprobe serve`
// runs). Exit statuses, usage errors, the version, and the privileges a run
// gives up once set up (docs/privileges.md).
//
// It must not import what only serve needs (client_golang,
// exporter-toolkit): every synprobe run would pay for their
// initialisation (docs/design.md).
package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime/debug"
	"strings"

	"github.com/spf13/pflag"
)

// Exit statuses (docs/exit-codes.md).
const (
	ExitOK      = 0 // every target answered open
	ExitNotOpen = 1 // some target was closed, filtered or never answered
	ExitUsage   = 2 // bad input
	ExitFailure = 3 // runtime failure: privileges, sockets, routes
)

// HelpColumns is the width of the help text.
const HelpColumns = 80

// UsageError is bad input: exit status 2.
type UsageError struct{ msg string }

func (e *UsageError) Error() string { return e.msg }

// Usagef makes a UsageError.
func Usagef(format string, args ...any) error {
	return &UsageError{fmt.Sprintf(format, args...)}
}

// pflagValueError matches pflag's words for a value its flag refused.
var pflagValueError = regexp.MustCompile(`^invalid argument "(.*)" for "(?:-., )?(--[^"]+)" flag: (.*)$`)

// Parse parses args into fs quietly (the caller prints help and errors):
// help reports -h/--help; a refused flag or value is a usage error in
// FlagError's words.
func Parse(fs *pflag.FlagSet, args []string) (help bool, err error) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return true, nil
		}
		return false, FlagError(err)
	}
	return false, nil
}

// FlagError rewrites pflag's error for a refused value as "--flag VALUE:
// what is wrong", without strconv's words.
func FlagError(err error) error {
	m := pflagValueError.FindStringSubmatch(err.Error())
	if m == nil {
		return Usagef("%v", err)
	}
	why := m[3]
	if strings.Contains(why, "strconv.") {
		why = "not a number"
	}
	return Usagef("%s %s: %s", m[2], m[1], why)
}

// VersionString is what --version prints: linked, the version given at
// link time (make sets -X main.version=...), else the module version or
// VCS revision from the build info.
func VersionString(linked string) string {
	if linked != "" {
		return linked
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, when string
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "unknown (built without version control information)"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	if when != "" {
		rev += " (" + when + ")"
	}
	return rev
}

// PrivilegeFix says how to give the running binary what it lacks.
func PrivilegeFix(what string) string {
	exe, err := os.Executable()
	if err != nil {
		exe = "synprobe"
	}
	return fmt.Sprintf("%s: run with sudo, or grant the binary the capabilities once: sudo setcap cap_net_raw,cap_net_admin+ep %s", what, exe)
}

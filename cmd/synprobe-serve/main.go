// Command synprobe-serve is `synprobe serve`: synprobe's client as a
// Prometheus exporter (docs/serve.md). synprobe execs it for `synprobe
// serve ARGS...`; run on its own it takes the same ARGS. It is a binary of
// its own so that every other synprobe run is spared the Prometheus
// packages' size and initialisation (docs/design.md).
package main

import (
	"os"
	"runtime/debug"
	"syscall"

	"github.com/synprobe/synprobe/internal/cli"
)

// version is set by make (-X main.version=...); a plain go build leaves it
// empty and the build info says which revision it was built from.
var version string

func main() {
	gcPercent(os.Getenv)
	os.Exit(serveMain(os.Args[1:], os.Stdout, os.Stderr)) // its own signals (serve.go)
}

// gcPercent sets the collector's target to 50 unless the environment sets
// GOGC. Most of serve's heap is a scrape's garbage (client_golang builds
// the whole exposition before writing it: some 4 KB a target, 40 MB for
// 10,000), which the default of 100 lets the heap double over: peak RSS
// 112-114 MB against 87-88 MB at 50, for 51.6-52.1% of a core against
// 49.3-52.0% (docs/serve.md).
func gcPercent(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
}

// system is what serve needs from the host; tests replace it.
type system interface {
	// realUID and getenv tell who runs serve; dropPrivileges ends set-up.
	realUID() int
	getenv(key string) string
	dropPrivileges(d cli.DropSpec) error
}

// host is the real one.
type host struct{}

func (host) realUID() int                        { return syscall.Getuid() }
func (host) getenv(key string) string            { return os.Getenv(key) }
func (host) dropPrivileges(d cli.DropSpec) error { return cli.DropPrivileges(d) }

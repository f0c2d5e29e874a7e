// Command synprobe-serve is `synprobe serve`: synprobe's client as a
// Prometheus exporter (docs/serve.md). synprobe execs it for `synprobe
// serve ARGS...`; run on its own it takes the same ARGS. It is a binary of
// its own so that every other synprobe run is spared the Prometheus
// packages' size and initialisation (docs/design.md).
package main

import (
	"os"
	"syscall"

	"github.com/synprobe/synprobe/internal/cli"
)

// version is set by make (-X main.version=...); a plain go build leaves it
// empty and the build info says which revision it was built from.
var version string

func main() {
	os.Exit(serveMain(os.Args[1:], os.Stdout, os.Stderr)) // its own signals (serve.go)
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

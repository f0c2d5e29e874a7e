package wire_test

import (
	"testing"

	"github.com/synprobe/synprobe/internal/layouttest"
)

// TestLayout keeps the package portable: the same files on every OS, no
// build constraint, and no import that reaches the kernel (syscall, os,
// net, golang.org/x/sys, the netlink libraries). `make lint` builds and
// vets it for darwin too.
func TestLayout(t *testing.T) {
	layouttest.API(t, ".")
	layouttest.Portable(t, ".")
}

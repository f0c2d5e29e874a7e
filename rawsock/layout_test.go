package rawsock

import (
	"testing"

	"github.com/synprobe/synprobe/internal/layouttest"
)

// TestLayout keeps the package's exported API declared once, in portable
// files: the per-OS files (*_linux.go, *_others.go) declare unexported
// things only, and every stub of *_others.go stands for something
// *_linux.go declares. `make lint` also type-checks the module for
// darwin (GOOS=darwin go vet).
func TestLayout(t *testing.T) { layouttest.API(t, ".") }

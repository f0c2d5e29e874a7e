package rstguard

import (
	"testing"

	"github.com/synprobe/synprobe/internal/layouttest"
)

// TestLayout keeps the package's exported API declared once, in portable
// files, as rawsock's TestLayout does.
func TestLayout(t *testing.T) { layouttest.API(t, ".") }

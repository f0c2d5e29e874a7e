package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestFindServe: synprobe-serve beside the binary first, then in PATH,
// never from PATH for a run with privileges its caller lacks.
func TestFindServe(t *testing.T) {
	dir := t.TempDir()
	other := t.TempDir()
	exe := func() (string, error) { return filepath.Join(dir, "synprobe"), nil }
	inPath := func(string) (string, bool) { return filepath.Join(other, serveBinary), true }
	noPath := func(string) (string, bool) { return "", false }

	for _, secure := range []bool{false, true} {
		if _, err := findServe(exe, noPath, secure); err == nil || err.Error() != filepath.Join(dir, serveBinary)+" not found: serve is a binary of its own, installed beside synprobe (make install installs both)" {
			t.Errorf("secure %v, nowhere: %v", secure, err)
		}
	}
	if p, err := findServe(exe, inPath, false); err != nil || p != filepath.Join(other, serveBinary) {
		t.Errorf("in PATH: %q, %v", p, err)
	}
	if p, err := findServe(exe, inPath, true); err == nil || !strings.HasPrefix(err.Error(), filepath.Join(dir, serveBinary)+" not found") {
		t.Errorf("in PATH, secure: %q, %v; want not found", p, err)
	}
	os.Mkdir(filepath.Join(dir, serveBinary), 0o755) // a directory is not it
	if p, err := findServe(exe, noPath, false); err == nil {
		t.Errorf("a directory: %q", p)
	}
	os.Remove(filepath.Join(dir, serveBinary))
	os.WriteFile(filepath.Join(dir, serveBinary), nil, 0o755)
	for _, secure := range []bool{false, true} {
		if p, err := findServe(exe, inPath, secure); err != nil || p != filepath.Join(dir, serveBinary) {
			t.Errorf("beside, secure %v: %q, %v", secure, p, err)
		}
	}
}

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "x"), nil, 0o755)
	os.WriteFile(filepath.Join(dir, "plain"), nil, 0o644)
	os.Mkdir(filepath.Join(dir, "d"), 0o755)
	t.Setenv("PATH", "relative:"+t.TempDir()+"::"+dir)
	if p, ok := lookPath("x"); !ok || p != filepath.Join(dir, "x") {
		t.Errorf("x: %q, %v", p, ok)
	}
	for _, name := range []string{"plain", "d", "none"} {
		if p, ok := lookPath(name); ok {
			t.Errorf("%s: %q", name, p)
		}
	}
	t.Chdir(dir)
	t.Setenv("PATH", ".:")
	if p, ok := lookPath("x"); ok {
		t.Errorf("x from the working directory: %q", p)
	}
}

// TestNoServePackages: synprobe links nothing of serve's (docs/design.md:
// they cost every run 13 MB of binary, 2.5 ms of initialisation and 6.5
// MB of RSS); they belong in synprobe-serve.
func TestNoServePackages(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("needs the go command")
	}
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, banned := range []string{"github.com/prometheus/", "go.yaml.in/", "golang.org/x/crypto", "github.com/synprobe/synprobe/internal/exporter", "os/exec"} {
			if strings.HasPrefix(pkg, banned) {
				t.Errorf("synprobe links %s", pkg)
			}
		}
	}
}

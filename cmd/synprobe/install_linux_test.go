package main

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestMakeInstall: make install DESTDIR=... puts the binaries, synprobe(1)
// and the completions under DESTDIR/PREFIX and nowhere else, and what it
// installs is what the installed binary generates.
func TestMakeInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds both binaries")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	dest, out := t.TempDir(), t.TempDir()
	const prefix = "/usr"
	cmd := exec.Command("make", "-C", "../..", "install", "DESTDIR="+dest, "PREFIX="+prefix, "OUT="+out, "SETCAP=0")
	// Not the variables of a make that runs the tests (make test).
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "MAKEFLAGS" && k != "MFLAGS" && k != "MAKELEVEL" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, b)
	}
	var files []string
	filepath.WalkDir(dest, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dest, path)
			files = append(files, "/"+rel)
		}
		return err
	})
	want := []string{
		"/usr/bin/synprobe",
		"/usr/bin/synprobe-serve",
		"/usr/share/bash-completion/completions/synprobe",
		"/usr/share/fish/vendor_completions.d/synprobe.fish",
		"/usr/share/man/man1/synprobe.1",
		"/usr/share/zsh/site-functions/_synprobe",
	}
	if !slices.Equal(files, want) {
		t.Fatalf("make install wrote %q, want %q", files, want)
	}
	bin := filepath.Join(dest, prefix, "bin", "synprobe")
	for _, c := range []struct{ file, verb, arg string }{
		{"share/man/man1/synprobe.1", "man", ""},
		{"share/bash-completion/completions/synprobe", "completion", "bash"},
		{"share/zsh/site-functions/_synprobe", "completion", "zsh"},
		{"share/fish/vendor_completions.d/synprobe.fish", "completion", "fish"},
	} {
		args := []string{c.verb}
		if c.arg != "" {
			args = append(args, c.arg)
		}
		gen, err := exec.Command(bin, args...).Output()
		if err != nil {
			t.Fatalf("synprobe %v: %v", args, err)
		}
		installed, err := os.ReadFile(filepath.Join(dest, prefix, c.file))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(gen, installed) {
			t.Errorf("%s differs from synprobe %v", c.file, args)
		}
	}
	if man, err := exec.LookPath("man"); err == nil {
		cmd := exec.Command(man, "-w", "synprobe")
		cmd.Env = append(os.Environ(), "MANPATH="+filepath.Join(dest, prefix, "share/man"))
		if b, err := cmd.Output(); err != nil || string(b) != filepath.Join(dest, prefix, "share/man/man1/synprobe.1")+"\n" {
			t.Errorf("man -w synprobe with the installed MANPATH: %q, %v", b, err)
		}
	}
}

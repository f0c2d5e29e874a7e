// Package layouttest checks how a package's files are laid out across
// operating systems, for the TestLayout of rawsock, rawsock/rstguard and rawsock/wire. Test
// code only.
package layouttest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// file is one non-test Go file of the package.
type file struct {
	name string
	os   string // "linux", "others" or "" (portable)
	src  []byte
	ast  *ast.File
}

func files(t *testing.T, dir string) (*token.FileSet, []file) {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var out []file
	for _, f := range names {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		af, err := parser.ParseFile(fset, f, src, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		fl := file{name: filepath.Base(f), src: src, ast: af}
		switch {
		case strings.HasSuffix(f, "_linux.go"):
			fl.os = "linux"
		case strings.HasSuffix(f, "_others.go"):
			fl.os = "others"
		}
		out = append(out, fl)
	}
	return fset, out
}

// constrained reports whether f has a //go:build line.
func constrained(f *ast.File) bool {
	return slices.ContainsFunc(f.Comments, func(g *ast.CommentGroup) bool {
		return g.Pos() < f.Package && strings.HasPrefix(g.List[0].Text, "//go:build")
	})
}

// API checks that the package in dir declares its exported API once, as
// mdlayher/packet does: exported types, functions, methods, variables and
// constants live in the portable files, and the per-OS files
// (*_linux.go, *_others.go) declare unexported things only, so that the
// API of one platform cannot drift from another's. Every stub of
// *_others.go stands for something *_linux.go declares (no dead stubs).
// `make lint` also type-checks the module for darwin (GOOS=darwin go vet).
func API(t *testing.T, dir string) {
	t.Helper()
	fset, fs := files(t, dir)
	decls := map[string]map[string]bool{} // "linux", "others" -> declared names
	for _, f := range fs {
		switch {
		case f.os == "" && constrained(f.ast):
			t.Errorf("%s has a build constraint: name it *_linux.go or *_others.go", f.name)
			continue
		case f.os == "others" && !strings.Contains(string(f.src), "//go:build !linux\n"):
			t.Errorf("%s lacks //go:build !linux", f.name)
		case f.os == "":
			continue
		}
		if decls[f.os] == nil {
			decls[f.os] = map[string]bool{}
		}
		for name, pos := range topLevel(f.ast) {
			// An exported method of an unexported type (Error, say) is
			// no API.
			typ, method, isMethod := strings.Cut(name, ".")
			if !isMethod && ast.IsExported(name) || isMethod && ast.IsExported(typ) && ast.IsExported(method) {
				t.Errorf("%s: %s is exported: declare it in a portable file, and only unexported functions per OS", fset.Position(pos), name)
			}
			decls[f.os][name] = true
		}
	}
	for name := range decls["others"] {
		if !decls["linux"][name] && name != "errNotImplemented" {
			t.Errorf("%s is declared in an *_others.go file but in no *_linux.go file", name)
		}
	}
}

// Portable checks that the package in dir is the same on every OS and
// makes no system call of its own: no per-OS file, no build constraint,
// and no import of a package that reaches the kernel's network or file
// interfaces (syscall, golang.org/x/sys, os, net, the netlink libraries).
// crypto/rand, which reads the kernel's random numbers, is allowed.
func Portable(t *testing.T, dir string) {
	t.Helper()
	fset, fs := files(t, dir)
	for _, f := range fs {
		if f.os != "" || constrained(f.ast) {
			t.Errorf("%s is for some platforms only: this package is portable", f.name)
		}
		for _, imp := range f.ast.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			switch {
			case p == "syscall", p == "os", p == "net", p == "unsafe",
				strings.HasPrefix(p, "golang.org/x/sys/"),
				strings.HasPrefix(p, "github.com/mdlayher/"),
				strings.HasPrefix(p, "github.com/jsimonetti/"):
				t.Errorf("%s: imports %s: this package makes no system call", fset.Position(imp.Pos()), p)
			}
		}
	}
}

// topLevel returns the package-level names a file declares: types,
// functions, variables, constants, and methods as Type.method.
func topLevel(f *ast.File) map[string]token.Pos {
	out := map[string]token.Pos{}
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			name := d.Name.Name
			if d.Recv != nil && len(d.Recv.List) == 1 {
				typ := d.Recv.List[0].Type
				if s, ok := typ.(*ast.StarExpr); ok {
					typ = s.X
				}
				if id, ok := typ.(*ast.Ident); ok {
					name = id.Name + "." + name
				}
			}
			out[name] = d.Pos()
		case *ast.GenDecl:
			for _, s := range d.Specs {
				switch s := s.(type) {
				case *ast.TypeSpec:
					out[s.Name.Name] = s.Pos()
				case *ast.ValueSpec:
					for _, n := range s.Names {
						out[n.Name] = n.Pos()
					}
				}
			}
		}
	}
	return out
}

package wire

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestLayout keeps the package's exported API declared once, as
// mdlayher/packet does: exported types, functions, methods, variables and
// constants live in the portable files, and the per-OS files
// (*_linux.go, *_others.go) declare unexported things only, so that the
// API of one platform cannot drift from another's. Every stub of
// *_others.go stands for something *_linux.go declares (no dead stubs).
// `make lint` also type-checks the module for darwin (GOOS=darwin go vet).
func TestLayout(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	decls := map[string]map[string]bool{} // "linux", "others" -> declared names
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		osSpecific := ""
		switch {
		case strings.HasSuffix(f, "_linux.go"):
			osSpecific = "linux"
		case strings.HasSuffix(f, "_others.go"):
			osSpecific = "others"
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		af, err := parser.ParseFile(fset, f, src, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		constrained := slices.ContainsFunc(af.Comments, func(g *ast.CommentGroup) bool {
			return g.Pos() < af.Package && strings.HasPrefix(g.List[0].Text, "//go:build")
		})
		switch {
		case osSpecific == "" && constrained:
			t.Errorf("%s has a build constraint: name it *_linux.go or *_others.go", f)
			continue
		case osSpecific == "others" && !strings.Contains(string(src), "//go:build !linux\n"):
			t.Errorf("%s lacks //go:build !linux", f)
		case osSpecific == "":
			continue
		}
		if decls[osSpecific] == nil {
			decls[osSpecific] = map[string]bool{}
		}
		for name, pos := range topLevel(af) {
			// An exported method of an unexported type (Error, say) is
			// no API.
			typ, method, isMethod := strings.Cut(name, ".")
			if !isMethod && ast.IsExported(name) || isMethod && ast.IsExported(typ) && ast.IsExported(method) {
				t.Errorf("%s: %s is exported: declare it in a portable file, and only unexported functions per OS", fset.Position(pos), name)
			}
			decls[osSpecific][name] = true
		}
	}
	for name := range decls["others"] {
		if !decls["linux"][name] && name != "errNotImplemented" {
			t.Errorf("%s is declared in an *_others.go file but in no *_linux.go file", name)
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

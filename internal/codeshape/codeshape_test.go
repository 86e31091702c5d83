package codeshape_test

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// maxFuncLines is the longest a non-test function may be, counted from its
// func line to its closing brace inclusive: past it a function does several
// things at once, and its steps deserve names of their own.
const maxFuncLines = 80

// TestFunctionLength fails when any non-test function or method in the module
// (outside testdata and generated files) is longer than maxFuncLines.
func TestFunctionLength(t *testing.T) {
	root := moduleRoot(t)
	funcs := scanFuncs(t, root)
	if len(funcs) == 0 {
		t.Fatalf("found no functions under %s: the scan is broken", root)
	}
	var long []string
	for _, f := range funcs {
		if f.lines > maxFuncLines {
			long = append(long, f.String())
		}
	}
	if len(long) > 0 {
		t.Errorf("%d function(s) longer than %d lines; split each into named steps:\n\t%s",
			len(long), maxFuncLines, strings.Join(long, "\n\t"))
	}
}

// funcShape is one function declaration's place and length.
type funcShape struct {
	path  string // slash-separated, relative to the module root
	line  int
	name  string // Recv.Name for a method
	lines int
}

func (f funcShape) String() string {
	return fmt.Sprintf("%s:%d %s (%d lines)", f.path, f.line, f.name, f.lines)
}

// moduleRoot walks up from the test's directory to the one holding go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		} else if !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// scanFuncs parses every non-test, non-generated .go file under root and
// returns its function declarations, sorted by path and line.
func scanFuncs(t *testing.T, root string) []funcShape {
	t.Helper()
	var funcs []funcShape
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && skipDir(path, d.Name()) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments|parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		if ast.IsGenerated(f) {
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		funcs = append(funcs, fileFuncs(fset, filepath.ToSlash(rel), f)...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(funcs, func(i, j int) bool {
		if funcs[i].path != funcs[j].path {
			return funcs[i].path < funcs[j].path
		}
		return funcs[i].line < funcs[j].line
	})
	return funcs
}

// skipDir tells which directories hold no code of this module: testdata,
// vendor, hidden and underscore directories (which the go tool ignores too),
// and nested modules.
func skipDir(path, name string) bool {
	if name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
		return true
	}
	_, err := os.Stat(filepath.Join(path, "go.mod"))
	return err == nil
}

// fileFuncs lists the function declarations of one parsed file.
func fileFuncs(fset *token.FileSet, rel string, f *ast.File) []funcShape {
	var funcs []funcShape
	for _, decl := range f.Decls {
		fn, ok := decl.(*ast.FuncDecl)
		if !ok || fn.Body == nil {
			continue
		}
		start := fset.Position(fn.Pos()).Line
		end := fset.Position(fn.End()).Line
		funcs = append(funcs, funcShape{path: rel, line: start, name: funcName(fn), lines: end - start + 1})
	}
	return funcs
}

// funcName is Name for a function and Recv.Name for a method.
func funcName(fn *ast.FuncDecl) string {
	if fn.Recv == nil || len(fn.Recv.List) == 0 {
		return fn.Name.Name
	}
	typ := fn.Recv.List[0].Type
	if star, ok := typ.(*ast.StarExpr); ok {
		typ = star.X
	}
	switch x := typ.(type) {
	case *ast.IndexExpr: // generic receiver T[P]
		typ = x.X
	case *ast.IndexListExpr: // generic receiver T[P, Q]
		typ = x.X
	}
	if id, ok := typ.(*ast.Ident); ok {
		return id.Name + "." + fn.Name.Name
	}
	return fn.Name.Name
}

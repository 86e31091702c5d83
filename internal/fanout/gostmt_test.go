package fanout_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// waiters are the go statements allowed outside this package, by file and
// enclosing function, with how many each may hold. Each runs one blocking
// call so that its caller can stop waiting on a context; none works on a
// host's output. A goroutine that does (reads, parses or changes a host)
// goes through fanout.ForEach, Guard or Go, so that a panic in it becomes
// that host's error instead of killing relctl with its locks held.
var waiters = map[string]int{
	"healthcheck/probe.go: BoundedDial":          2, // the dial, and closing a late conn
	"internal/transport/agentfwd.go: serveAgent": 2, // discarding a forwarded agent channel's requests, copying the agent's replies to it
	"internal/transport/conn.go: watch":          1, // serving one forwarded agent channel (forward_agent hosts only): bytes copied, never parsed
	"healthcheck/probe.go: probeCommand":         1, // one Run, bounded by the probe's timeout
	"internal/output/output.go: Confirm":         1, // one ReadString on stdin
	"internal/transport/conn.go: keepalive":      1, // one SendRequest
	"internal/transport/conn.go: Run":            2, // copying stdin, waiting for the session
	"internal/transport/conn.go: killGroup":      1, // one kill command
	"internal/transport/conn.go: openSession":    2, // NewSession, and closing a late one
	"internal/transport/ssh.go: dial":            2, // a connection's close watcher and keepalive loop
}

// TestGoStatements keeps every goroutine relctl starts going through this
// package: a new go statement in non-test code (outside testenv, which is
// the world rather than the player) fails here until it uses fanout or is
// added to waiters with a reason.
func TestGoStatements(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	found := map[string][]string{} // "file: func" -> positions
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			switch {
			case rel != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "vendor"),
				rel == "testenv", rel == "internal/sshdtest", rel == "internal/metricstest", rel == "internal/fanout":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				if g, ok := n.(*ast.GoStmt); ok {
					pos := fset.Position(g.Pos()).String()
					key := rel + ": " + fn.Name.Name
					found[key] = append(found[key], pos)
				}
				return true
			})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(found["internal/transport/conn.go: Run"]) == 0 {
		t.Fatalf("found no go statement in internal/transport/conn.go's Run: the scan is broken (found %v)", found)
	}
	keys := make([]string, 0, len(found))
	for k := range found {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	const advice = "run per-host work with fanout.ForEach (or fanout.Guard, fanout.Go), so that a panic in it is that host's error, not relctl's end with its locks held; a goroutine that only waits on one blocking call may be added to waiters with the reason"
	for _, key := range keys {
		if pos := found[key]; len(pos) > waiters[key] {
			t.Errorf("%s: %d go statement(s), %d allowed:\n\t%s\n%s", key, len(pos), waiters[key], strings.Join(pos, "\n\t"), advice)
		}
	}
}

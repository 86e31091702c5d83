package playbooks

import (
	"errors"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// position is a 1-based line and column in a file.
type position struct{ Line, Column int }

// positions maps key paths ("steps.2.run", "checks.health.url") to where they
// appear in one file, so semantic problems found after decoding can still
// point at a line. Array-of-tables entries and array elements get 0-based
// indexes as path parts.
type positions struct {
	file string
	keys map[string]position
	// kinds records the TOML kind of each key's value, to catch values
	// go-toml would reject without a position (e.g. pause = 5).
	kinds map[string]unstable.Kind
	// strings holds string values, to check durations with a position.
	strings map[string]string
	// tokens holds each string value as written, so a problem found inside
	// a template can point at the very byte (templateFilePosition).
	tokens map[string]stringToken
	// arrayTables holds paths (without indexes) declared with [[...]].
	arrayTables map[string]bool
}

// indexPositions parses doc and records every key's position. A syntax error
// leaves the index partial; the decoder reports the error itself.
func indexPositions(file string, doc []byte) *positions {
	ix := &positions{
		file:        file,
		keys:        map[string]position{},
		kinds:       map[string]unstable.Kind{},
		strings:     map[string]string{},
		tokens:      map[string]stringToken{},
		arrayTables: map[string]bool{},
	}
	p := &unstable.Parser{}
	p.Reset(doc)
	counts := map[string]int{} // array table path (with parent indexes) -> entries seen
	var table []string         // current table prefix, with indexes
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = table[:0]
			it := e.Key()
			it.Next()
			head := it.Node() // the whole header points at its first key part
			it = e.Key()
			var plain []string
			for it.Next() {
				name := string(it.Node().Data)
				table = append(table, name)
				plain = append(plain, name)
				full := strings.Join(table, ".")
				last := !hasNext(it)
				ix.set(full, p, head)
				if last && e.Kind == unstable.ArrayTable {
					ix.arrayTables[strings.Join(plain, ".")] = true
					n := counts[full]
					counts[full] = n + 1
					table = append(table, strconv.Itoa(n))
					ix.set(strings.Join(table, "."), p, head)
					continue
				}
				// A header crossing an earlier [[x]] refers to its latest entry.
				if !last && counts[full] > 0 {
					table = append(table, strconv.Itoa(counts[full]-1))
				}
			}
		case unstable.KeyValue:
			ix.keyValue(p, table, e)
		}
	}
	return ix
}

func hasNext(it unstable.Iterator) bool { return !it.IsLast() }

func (ix *positions) set(path string, p *unstable.Parser, n *unstable.Node) {
	if _, ok := ix.keys[path]; ok {
		return
	}
	s := p.Shape(n.Raw)
	ix.keys[path] = position{s.Start.Line, s.Start.Column}
}

// keyValue records a key = value and, for arrays and inline tables, what is inside.
func (ix *positions) keyValue(p *unstable.Parser, prefix []string, kv *unstable.Node) {
	path := append([]string(nil), prefix...)
	it := kv.Key()
	var first *unstable.Node
	for it.Next() {
		if first == nil {
			first = it.Node()
		}
		path = append(path, string(it.Node().Data))
		ix.set(strings.Join(path, "."), p, first)
	}
	ix.value(p, path, kv.Value(), first)
}

func (ix *positions) value(p *unstable.Parser, path []string, v, at *unstable.Node) {
	key := strings.Join(path, ".")
	ix.kinds[key] = v.Kind
	if v.Kind == unstable.String {
		ix.strings[key] = string(v.Data)
		if v.Raw.Length > 0 {
			s := p.Shape(v.Raw)
			ix.tokens[key] = stringToken{raw: string(p.Raw(v.Raw)), line: s.Start.Line, col: s.Start.Column}
		}
	}
	switch v.Kind {
	case unstable.Array:
		it := v.Children()
		i := 0
		for it.Next() {
			el := it.Node()
			if el.Kind == unstable.Comment {
				continue
			}
			elPath := append(append([]string(nil), path...), strconv.Itoa(i))
			at := el
			if el.Raw.Length == 0 { // arrays carry no range of their own
				at = firstRanged(el)
			}
			if at != nil {
				ix.set(strings.Join(elPath, "."), p, at)
			}
			ix.value(p, elPath, el, at)
			i++
		}
	case unstable.InlineTable:
		it := v.Children()
		for it.Next() {
			if it.Node().Kind == unstable.KeyValue {
				ix.keyValue(p, path, it.Node())
			}
		}
	}
}

// firstRanged finds the first node under n that has a source range.
func firstRanged(n *unstable.Node) *unstable.Node {
	if n == nil || !n.Valid() {
		return nil
	}
	if n.Raw.Length > 0 {
		return n
	}
	it := n.Children()
	for it.Next() {
		if r := firstRanged(it.Node()); r != nil {
			return r
		}
	}
	return nil
}

// has reports whether the file set keyPath explicitly.
func (ix *positions) has(keyPath string) bool {
	if ix == nil {
		return false
	}
	_, ok := ix.keys[keyPath]
	return ok
}

// badDuration reports whether key holds a string that is not a duration;
// decodeFile has reported it already, so checks on its value skip it.
func (ix *positions) badDuration(key string) bool {
	v, ok := ix.strings[key]
	if !ok {
		return false
	}
	var d Duration
	return d.parse(v) != nil
}

// where returns "file:line:col" for keyPath, or for its nearest ancestor
// that appears in the file, or just the file name.
func (ix *positions) where(keyPath string) string {
	if ix == nil {
		return ""
	}
	for k := keyPath; k != ""; {
		if pos, ok := ix.keys[k]; ok {
			return ix.file + ":" + strconv.Itoa(pos.Line) + ":" + strconv.Itoa(pos.Column)
		}
		i := strings.LastIndexByte(k, '.')
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return ix.file
}

// problem builds a Problem located at keyPath (or its nearest known ancestor).
func (ix *positions) problem(keyPath, format string, args ...any) Problem {
	pr := Problem{File: ix.file, Message: sprintf(format, args...)}
	for k := keyPath; k != ""; {
		if pos, ok := ix.keys[k]; ok {
			pr.Line, pr.Column = pos.Line, pos.Column
			break
		}
		i := strings.LastIndexByte(k, '.')
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return pr
}

// stringToken is a string value as written in the file, and where it starts.
type stringToken struct {
	raw       string
	line, col int
}

// templateProblem is problem, but for an error inside the template at
// keyPath that knows its byte offset (a refused action): it points at the
// action itself rather than at the key.
func (ix *positions) templateProblem(keyPath string, err error, format string, args ...any) Problem {
	pr := ix.problem(keyPath, format, args...)
	var sce *ShellContextError
	if ix == nil || !errors.As(err, &sce) {
		return pr
	}
	if tok, ok := ix.tokens[keyPath]; ok {
		if line, col, ok := templateFilePosition(tok.raw, tok.line, tok.col, sce.Offset); ok {
			pr.Line, pr.Column = line, col
		}
	}
	return pr
}

// pathsAt lists the key paths recorded at a position (longest first).
func (ix *positions) pathsAt(line, col int) []string {
	var out []string
	for k, pos := range ix.keys {
		if pos.Line == line && pos.Column == col {
			out = append(out, k)
		}
	}
	sortByLenDesc(out)
	return out
}

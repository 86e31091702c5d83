package playbooks

import (
	"cmp"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// Problem is one thing wrong with a configuration file, with where it is.
// Line and Column are 0 when the problem has no single place (e.g. a missing key).
type Problem struct {
	File         string
	Line, Column int
	Message      string
}

// String renders "file:line:col: message" (or "file: message" without a position).
func (p Problem) String() string {
	switch {
	case p.Line > 0 && p.Column > 0:
		return fmt.Sprintf("%s:%d:%d: %s", p.File, p.Line, p.Column, p.Message)
	case p.Line > 0:
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Message)
	default:
		return fmt.Sprintf("%s: %s", p.File, p.Message)
	}
}

// Problems is every problem found while loading; it is the error Load returns
// when the configuration is invalid, so users can fix everything in one pass.
type Problems []Problem

// Error lists one problem per line, sorted by file, line and column.
func (ps Problems) Error() string {
	sorted := slices.Clone(ps)
	sorted.sort()
	lines := make([]string, len(sorted))
	for i, p := range sorted {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

func (ps Problems) sort() {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

func sortByLenDesc(s []string) {
	slices.SortFunc(s, func(a, b string) int { return cmp.Or(cmp.Compare(len(b), len(a)), cmp.Compare(a, b)) })
}

// displayKey drops array indexes: users find the entry by its line, and
// 0-based indexes would only confuse.
func displayKey(path string) string {
	parts := strings.Split(path, ".")
	out := parts[:0]
	for _, p := range parts {
		if _, err := strconv.Atoi(p); err == nil {
			continue
		}
		out = append(out, p)
	}
	return strings.Join(out, ".")
}

// tableName shows the table holding path the way it is written in TOML.
func (ix *positions) tableName(parent string) string {
	if parent == "" {
		return "at the top level"
	}
	plain := displayKey(parent)
	if ix.arrayTables[plain] || strings.HasSuffix(parent, ".0") || lastIsIndex(parent) {
		return "in [[" + plain + "]]"
	}
	return "in [" + plain + "]"
}

func lastIsIndex(path string) bool {
	i := strings.LastIndexByte(path, '.')
	_, err := strconv.Atoi(path[i+1:])
	return err == nil
}

// decodeProblems turns go-toml's errors into Problems in plain words.
// root is the type decoded into, for the keys an unknown one may be a typo of.
func (ix *positions) decodeProblems(err error, root reflect.Type) Problems {
	var strict *toml.StrictMissingError
	var de *toml.DecodeError
	switch {
	case errors.As(err, &strict):
		var ps Problems
		for i := range strict.Errors {
			ps = append(ps, ix.strictProblem(&strict.Errors[i], root))
		}
		return ps
	case errors.As(err, &de):
		line, col := de.Position()
		msg := strings.TrimPrefix(de.Error(), "toml: ")
		if key := strings.Join(de.Key(), "."); key != "" {
			msg = key + ": " + plainTypeError(msg)
		}
		return Problems{{File: ix.file, Line: line, Column: col, Message: msg}}
	default:
		return Problems{{File: ix.file, Message: strings.TrimPrefix(err.Error(), "toml: ")}}
	}
}

func (ix *positions) strictProblem(e *toml.DecodeError, root reflect.Type) Problem {
	line, col := e.Position()
	key := []string(e.Key())
	// go-toml's key loses array indexes and inline-table parents; the
	// position index knows the real path.
	path := strings.Join(key, ".")
	if len(key) > 0 {
		last := key[len(key)-1]
		for _, cand := range ix.pathsAt(line, col) {
			if cand == last || strings.HasSuffix(cand, "."+last) {
				path = cand
				break
			}
		}
	}
	pr := Problem{File: ix.file, Line: line, Column: col}
	name, parent := path, ""
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		name, parent = path[i+1:], path[:i]
	}
	hint := ""
	if near := nearestKey(keysAt(root, parent), name); near != "" {
		hint = fmt.Sprintf(" (did you mean %s?)", near)
	}
	if strings.Contains(e.Error(), "missing table") {
		// The typo is the first part of the table's name no table has.
		parts := strings.Split(path, ".")
		for i := range parts {
			prefix := strings.Join(parts[:i], ".")
			if keys := keysAt(root, prefix); keys != nil && !slices.Contains(keys, parts[i]) {
				if near := nearestKey(keys, parts[i]); near != "" {
					hint = fmt.Sprintf(" (did you mean %s?)", strings.Join(append(append(slices.Clone(parts[:i]), near), parts[i+1:]...), "."))
				}
				break
			}
		}
		pr.Message = fmt.Sprintf("unknown table [%s]%s", displayKey(path), hint)
		return pr
	}
	pr.Message = fmt.Sprintf("unknown key %q %s%s", name, ix.tableName(parent), hint)
	return pr
}

// keysAt lists the keys the table at path accepts, following root's
// fields by their toml tags (an index or a map key steps into the element).
func keysAt(root reflect.Type, path string) []string {
	t := root
	var parts []string
	if path != "" {
		parts = strings.Split(path, ".")
	}
	for i := 0; ; i++ {
		for t != nil && (t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map) {
			if t.Kind() == reflect.Map || t.Kind() == reflect.Slice {
				if i >= len(parts) {
					return nil
				}
				i++ // the map key or index names an element
			}
			t = t.Elem()
		}
		if t == nil || t.Kind() != reflect.Struct {
			return nil
		}
		if i >= len(parts) {
			break
		}
		f, ok := fieldByTag(t, parts[i])
		if !ok {
			return nil
		}
		t = f.Type
	}
	var keys []string
	for i := range t.NumField() {
		if tag := tomlTag(t.Field(i)); tag != "" {
			keys = append(keys, tag)
		}
	}
	return keys
}

func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if tomlTag(t.Field(i)) == name {
			return t.Field(i), true
		}
	}
	return reflect.StructField{}, false
}

func tomlTag(f reflect.StructField) string {
	tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	if tag == "-" {
		return ""
	}
	return tag
}

// nearestKey is the key within a few edits of name (a typo), or "".
func nearestKey(keys []string, name string) string {
	best, bestDist := "", len(name)/3+2
	for _, k := range keys {
		if d := editDistance(strings.ToLower(name), k); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

var typeErrorRE = regexp.MustCompile(`^cannot decode TOML (\w+) into (?:struct field \S+|a Go value) of type (\S+)$`)

// plainTypeError rewrites "cannot decode TOML string into struct field
// playbooks.Host.Roles of type []string" as "expected a list of strings, got a string".
func plainTypeError(msg string) string {
	m := typeErrorRE.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	return fmt.Sprintf("expected %s, got %s", goTypeWords(m[2]), tomlKindWords(m[1]))
}

func goTypeWords(t string) string {
	t = strings.TrimPrefix(t, "*")
	switch {
	case t == "string":
		return "a string"
	case t == "bool":
		return "true or false"
	case strings.HasPrefix(t, "int") || strings.HasPrefix(t, "uint"):
		return "an integer"
	case strings.HasPrefix(t, "float"):
		return "a number"
	case t == "[]string":
		return "a list of strings"
	case strings.HasPrefix(t, "[]"):
		return "a list of tables"
	case strings.HasPrefix(t, "map["):
		return "a table"
	case strings.HasSuffix(t, "Duration"):
		return `a duration string like "30s"`
	default:
		return "a table"
	}
}

func tomlKindWords(k string) string {
	switch k {
	case "integer":
		return "an integer"
	case "array":
		return "a list"
	case "inline":
		return "an inline table"
	default:
		return "a " + k
	}
}

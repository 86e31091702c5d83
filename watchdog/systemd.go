package watchdog

import (
	"github.com/relctl/relctl/internal/shellquote"
	"strings"
)

// Unit is a parsed systemd unit file. Sections may repeat: systemd merges
// them, and so do Values and Value.
type Unit struct {
	File     string
	Sections []*UnitSection
}

// UnitSection is one "[Name]" block.
type UnitSection struct {
	Name    string
	Entries []UnitEntry
	Pos     Pos
}

// UnitEntry is one "Key=Value" assignment; continuation lines are joined
// with a space as systemd does.
type UnitEntry struct {
	Key   string
	Value string
	Pos   Pos
}

// ServiceSettings are the [Service] keys relctl looks at.
type ServiceSettings struct {
	Type, Restart, PIDFile UnitEntry // zero when unset
	ExecStart, ExecStop    []UnitEntry
}

// ParseUnit reads a systemd unit file: sections, keys and values with
// positions, comments (# and ;) and backslash continuation lines. It does
// not judge keys or values; systemd-analyze verify does on the host.
func ParseUnit(file string, src []byte) (*Unit, error) {
	u := &Unit{File: file}
	var cur *UnitSection
	lines := strings.Split(string(src), "\n")
	for i := 0; i < len(lines); i++ {
		lineNo := i + 1
		raw := strings.TrimSuffix(lines[i], "\r")
		text := strings.TrimLeft(raw, " \t")
		col := len([]rune(raw)) - len([]rune(text)) + 1
		pos := Pos{File: file, Line: lineNo, Column: col}
		text = strings.TrimRight(text, " \t")
		switch {
		case text == "" || text[0] == '#' || text[0] == ';':
			continue
		case text[0] == '[':
			if !strings.HasSuffix(text, "]") || len(text) < 3 {
				return nil, &SyntaxError{Pos: pos, Token: text, Msg: "section header must be [Name]"}
			}
			cur = &UnitSection{Name: text[1 : len(text)-1], Pos: pos}
			u.Sections = append(u.Sections, cur)
			continue
		}
		key, value, ok := strings.Cut(text, "=")
		key = strings.TrimSpace(key)
		if !ok || key == "" || strings.ContainsAny(key, " \t") {
			return nil, &SyntaxError{Pos: pos, Token: firstWord(text), Msg: "expected Key=Value or [Section]"}
		}
		if cur == nil {
			return nil, &SyntaxError{Pos: pos, Token: key, Msg: "assignment outside a section"}
		}
		value = strings.TrimSpace(value)
		// A trailing backslash continues the value; comment lines in between are skipped.
		for strings.HasSuffix(value, `\`) {
			value = strings.TrimRight(strings.TrimSuffix(value, `\`), " \t")
			if i+1 >= len(lines) {
				break
			}
			i++
			next := strings.TrimSpace(strings.TrimSuffix(lines[i], "\r"))
			if next != "" && (next[0] == '#' || next[0] == ';') {
				value += ` \`
				continue
			}
			value += " " + next
		}
		cur.Entries = append(cur.Entries, UnitEntry{Key: key, Value: strings.TrimSpace(value), Pos: pos})
	}
	return u, nil
}

func firstWord(s string) string {
	if f := strings.Fields(s); len(f) > 0 {
		return f[0]
	}
	return s
}

// Values returns the effective assignments of key in section: an empty
// assignment (ExecStart=) resets the list, as systemd does.
func (u *Unit) Values(section, key string) []UnitEntry {
	var out []UnitEntry
	for _, s := range u.Sections {
		if s.Name != section {
			continue
		}
		for _, e := range s.Entries {
			if e.Key != key {
				continue
			}
			if e.Value == "" {
				out = nil
				continue
			}
			out = append(out, e)
		}
	}
	return out
}

// Value returns the last effective assignment of key in section.
func (u *Unit) Value(section, key string) (UnitEntry, bool) {
	vs := u.Values(section, key)
	if len(vs) == 0 {
		return UnitEntry{}, false
	}
	return vs[len(vs)-1], true
}

// Service returns the [Service] settings relctl checks.
func (u *Unit) Service() ServiceSettings {
	var s ServiceSettings
	s.Type, _ = u.Value("Service", "Type")
	s.Restart, _ = u.Value("Service", "Restart")
	s.PIDFile, _ = u.Value("Service", "PIDFile")
	s.ExecStart = u.Values("Service", "ExecStart")
	s.ExecStop = u.Values("Service", "ExecStop")
	return s
}

// SystemdVerifyCommand is the shell command that asks systemd to check a
// unit file on the host. "--" keeps a path starting with '-' an argument.
func SystemdVerifyCommand(unitPath string) string {
	return "systemd-analyze verify -- " + shellquote.Quote(unitPath)
}

// SystemdIsActiveCommand is the shell command that exits 0 when unit is
// active (it prints the state: active, activating, failed, ...).
func SystemdIsActiveCommand(unit string) string {
	return "systemctl is-active -- " + shellquote.Quote(unit)
}

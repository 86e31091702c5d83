package playbooks

import (
	"strings"
	"unicode/utf8"
)

// templateFilePosition maps a byte offset in a template to where that byte
// is written in the TOML file holding the template: raw is the string token
// as written (quotes included) and line, col (1-based; col in bytes, as
// go-toml counts) where it starts. It follows basic and literal strings,
// single-line and multi-line, with their escapes, the newline trimmed after
// an opening triple quote, and line-ending backslashes. ok is false when raw
// is not a TOML string or offset is not in its value.
//
// Load reports a refused action at its run key today ("file:line:col:
// steps.run: template line N: ..."); with this, the problem can point at
// the action itself.
func templateFilePosition(raw string, line, col, offset int) (fline, fcol int, ok bool) {
	delim := tomlStringDelim(raw)
	if delim == "" || offset < 0 {
		return 0, 0, false
	}
	basic, multi := delim[0] == '"', len(delim) == 3
	c := &tomlCursor{body: raw[len(delim) : len(raw)-len(delim)], line: line, col: col + len(delim)}
	if multi { // a newline right after the opening delimiter is not part of the value
		switch {
		case strings.HasPrefix(c.body, "\r\n"):
			c.newline(2)
		case strings.HasPrefix(c.body, "\n"):
			c.newline(1)
		}
	}
	for c.i < len(c.body) {
		if c.decoded == offset {
			return c.line, c.col, true
		}
		if !c.step(basic, multi) {
			return 0, 0, false
		}
		if c.decoded > offset {
			return 0, 0, false // offset is inside an escape's bytes
		}
	}
	if c.decoded == offset {
		return c.line, c.col, true
	}
	return 0, 0, false
}

// tomlStringDelim returns the quotes raw opens and closes with, or "" when
// raw is not a TOML string.
func tomlStringDelim(raw string) string {
	for _, d := range []string{`"""`, `'''`, `"`, `'`} {
		if strings.HasPrefix(raw, d) && len(raw) >= 2*len(d) {
			return d
		}
	}
	return ""
}

// tomlCursor walks the body of a TOML string as written: i is the raw
// offset, line and col where byte i is in the file, decoded how many bytes
// of the value come before it.
type tomlCursor struct {
	body      string
	i         int
	line, col int
	decoded   int
}

// advance steps over n raw bytes on one line.
func (c *tomlCursor) advance(n int) {
	c.i += n
	c.col += n
}

// newline steps over a raw newline of n bytes.
func (c *tomlCursor) newline(n int) {
	c.i += n
	c.line, c.col = c.line+1, 1
}

// step reads what the value holds at i: a byte, a newline or (in a basic
// string) an escape. ok is false for an escape that is not valid.
func (c *tomlCursor) step(basic, multi bool) (ok bool) {
	b := c.body[c.i]
	switch {
	case b == '\n':
		c.newline(1)
		c.decoded++
	case b == '\r' && strings.HasPrefix(c.body[c.i:], "\r\n"):
		c.newline(2)
		c.decoded += 2 // a multi-line string keeps CRLF as it is
	case basic && b == '\\' && c.i+1 < len(c.body):
		return c.escape(multi)
	default:
		c.advance(1)
		c.decoded++
	}
	return true
}

// escape steps over the escape sequence of a basic string at i.
func (c *tomlCursor) escape(multi bool) (ok bool) {
	e := c.body[c.i+1]
	switch {
	case multi && (e == ' ' || e == '\t' || e == '\n' || e == '\r'):
		// A line-ending backslash drops the whitespace and
		// newlines that follow, up to the next visible character.
		c.advance(1)
		for c.i < len(c.body) && strings.IndexByte(" \t\r\n", c.body[c.i]) >= 0 {
			if c.body[c.i] == '\n' {
				c.newline(1)
			} else {
				c.advance(1)
			}
		}
	case e == 'u' || e == 'U':
		n := 6
		if e == 'U' {
			n = 10
		}
		if c.i+n > len(c.body) {
			return false
		}
		r := decodeHex(c.body[c.i+2 : c.i+n])
		if r < 0 {
			return false
		}
		c.advance(n)
		c.decoded += utf8.RuneLen(rune(r))
	default:
		c.advance(2)
		c.decoded++
	}
	return true
}

func decodeHex(s string) int {
	r := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			r = r*16 + int(c-'0')
		case c >= 'a' && c <= 'f':
			r = r*16 + int(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r*16 + int(c-'A'+10)
		default:
			return -1
		}
	}
	if !utf8.ValidRune(rune(r)) {
		return -1
	}
	return r
}

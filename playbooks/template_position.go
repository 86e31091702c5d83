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
	var delim string
	for _, d := range []string{`"""`, `'''`, `"`, `'`} {
		if strings.HasPrefix(raw, d) && len(raw) >= 2*len(d) {
			delim = d
			break
		}
	}
	if delim == "" || offset < 0 {
		return 0, 0, false
	}
	basic, multi := delim[0] == '"', len(delim) == 3
	body := raw[len(delim) : len(raw)-len(delim)]
	fline, fcol = line, col+len(delim)
	i := 0
	advance := func(n int) { // step over n raw bytes on one line
		i += n
		fcol += n
	}
	newline := func(n int) { // step over a raw newline of n bytes
		i += n
		fline, fcol = fline+1, 1
	}
	if multi { // a newline right after the opening delimiter is not part of the value
		switch {
		case strings.HasPrefix(body, "\r\n"):
			newline(2)
		case strings.HasPrefix(body, "\n"):
			newline(1)
		}
	}
	decoded := 0 // bytes of the value before raw offset i
	for i < len(body) {
		if decoded == offset {
			return fline, fcol, true
		}
		c := body[i]
		switch {
		case c == '\n':
			newline(1)
			decoded++
		case c == '\r' && strings.HasPrefix(body[i:], "\r\n"):
			newline(2)
			decoded += 2 // a multi-line string keeps CRLF as it is
		case basic && c == '\\' && i+1 < len(body):
			e := body[i+1]
			switch {
			case multi && (e == ' ' || e == '\t' || e == '\n' || e == '\r'):
				// A line-ending backslash drops the whitespace and
				// newlines that follow, up to the next visible character.
				advance(1)
				for i < len(body) && strings.IndexByte(" \t\r\n", body[i]) >= 0 {
					if body[i] == '\n' {
						newline(1)
					} else {
						advance(1)
					}
				}
			case e == 'u' || e == 'U':
				n := 6
				if e == 'U' {
					n = 10
				}
				if i+n > len(body) {
					return 0, 0, false
				}
				r := decodeHex(body[i+2 : i+n])
				if r < 0 {
					return 0, 0, false
				}
				advance(n)
				decoded += utf8.RuneLen(rune(r))
			default:
				advance(2)
				decoded++
			}
		default:
			advance(1)
			decoded++
		}
		if decoded > offset {
			return 0, 0, false // offset is inside an escape's bytes
		}
	}
	if decoded == offset {
		return fline, fcol, true
	}
	return 0, 0, false
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

package transport

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Printable makes text a host sent safe to print on an operator's terminal:
// control characters (escape sequences among them) and invalid UTF-8 become
// '?', and it is cut to at most n characters.
func Printable(s string, n int) string {
	var b strings.Builder
	i := 0
	for _, r := range strings.ToValidUTF8(s, "?") {
		if i == n {
			b.WriteString("…")
			break
		}
		if unicode.IsControl(r) || r == utf8.RuneError {
			r = '?'
		}
		b.WriteRune(r)
		i++
	}
	return b.String()
}

package transport

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// ShellQuote makes s one literal word for a POSIX shell. It lives here
// rather than in playbooks because transport must not import domain packages.
func ShellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, needsQuote) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func needsQuote(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return false
	}
	return !strings.ContainsRune("@%+=:,./_-", r)
}

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

package healthcheck

import (
	"net/url"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxObserved keeps an observation to one readable line in a summary.
const maxObserved = 200

// userinfoRE finds "scheme://user:pass@" anywhere in text, as a last line of
// defence for error messages that quote a URL.
var userinfoRE = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#@\s]*@`)

// RedactURL drops user:pass@ from a URL so it can be printed or logged
// (plans, status lines); unparseable text is scrubbed the same way.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return oneLine(raw)
	}
	u.User = nil
	return oneLine(u.String())
}

// withExcerpt appends the start of a body to head: `HTTP 500: {"status":…`.
func withExcerpt(head string, body []byte) string {
	ex := oneLine(string(body))
	if ex == "" {
		return head
	}
	return head + ": " + ex
}

// lastLine is the last non-blank line of text, which is where shells and
// scripts put the reason they failed.
func lastLine(text string) string {
	lines := strings.Split(strings.TrimRight(text, " \t\r\n"), "\n")
	return oneLine(lines[len(lines)-1])
}

// oneLine makes text safe for a one-line summary: valid UTF-8, no control
// characters, whitespace collapsed, credentials in URLs removed, and at most
// maxObserved bytes (cut on a rune boundary, marked with "...").
func oneLine(text string) string {
	text = strings.ToValidUTF8(text, "\uFFFD")
	text = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, text)
	text = strings.Join(strings.Fields(text), " ")
	text = userinfoRE.ReplaceAllString(text, "$1")
	if len(text) <= maxObserved {
		return text
	}
	cut := maxObserved
	for cut > 0 && !utf8.RuneStart(text[cut]) {
		cut--
	}
	return text[:cut] + "..."
}

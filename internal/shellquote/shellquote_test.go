package shellquote

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestQuoteForm(t *testing.T) {
	for in, want := range map[string]string{
		"":            "''",
		"web-1":       "'web-1'",
		"/srv/search": "'/srv/search'",
		"it's":        `'it'\''s'`,
		"''":          `''\'''\'''`,
		"$(id)":       "'$(id)'",
	} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %s, want %s", in, got, want)
		}
	}
}

// shells are the shells relctl's hosts run commands with; each must read a
// quoted word back as exactly the bytes it was made from.
var shells = []string{"dash", "bash", "sh"}

// roundTrip has shell print Quote(s) (and, in the same word, text around
// it, as a template places a value) and returns what it printed.
func roundTrip(t *testing.T, shell, dir, script string) string {
	t.Helper()
	cmd := exec.Command(shell, "-c", script)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s -c %q: %v\n%s", shell, script, err, out)
	}
	return string(out)
}

func hostileValues() []string {
	vs := []string{
		"", " ", "plain", "a b", "it's", "'", "''", `"double"`, `back\slash`, "\\'",
		"$(touch MARKER)", "`touch MARKER`", "${HOME}", "$HOME", "~", "~root", "a=~",
		"*", "?", "[a]", "{a,b}", "a,b", "!", "!!", "#comment", "-n", "--", "a\nb", "tab\there",
		"; touch MARKER", "&& touch MARKER", "| touch MARKER", "> MARKER", "$'\\x41'",
		"\xff\xfe", "é ü 中", "\r\n", "\x1b[31m",
	}
	// Every byte but NUL, alone and between quotes.
	for b := 1; b < 256; b++ {
		vs = append(vs, string([]byte{byte(b)}), "'"+string([]byte{byte(b)})+"'")
	}
	var all strings.Builder
	for b := 1; b < 256; b++ {
		all.WriteByte(byte(b))
	}
	return append(vs, all.String())
}

func TestQuoteThroughRealShells(t *testing.T) {
	values := hostileValues()
	for _, shell := range shells {
		if _, err := exec.LookPath(shell); err != nil {
			t.Logf("%s not installed: skipped", shell)
			continue
		}
		t.Run(shell, func(t *testing.T) {
			dir := t.TempDir()
			// One script per shell, one printf per value, each word
			// framed by <> so that a value that split or vanished shows.
			var script strings.Builder
			var want strings.Builder
			for _, v := range values {
				script.WriteString("printf '<%s>\\0' x" + Quote(v) + "y\n")
				want.WriteString("<x" + v + "y>\x00")
			}
			got := roundTrip(t, shell, dir, script.String())
			if got != want.String() {
				gs, ws := strings.Split(got, "\x00"), strings.Split(want.String(), "\x00")
				for i := range min(len(gs), len(ws)) {
					if gs[i] != ws[i] {
						t.Fatalf("%s printed %q for %q", shell, gs[i], ws[i])
					}
				}
				t.Fatalf("%s printed %d words, want %d", shell, len(gs), len(ws))
			}
			if _, err := os.Stat(filepath.Join(dir, "MARKER")); err == nil {
				t.Fatalf("%s ran an injected command", shell)
			}
		})
	}
}

func FuzzQuote(f *testing.F) {
	for _, v := range hostileValues() {
		f.Add(v)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, s string) {
		if strings.IndexByte(s, 0) >= 0 {
			t.Skip("no shell word can hold NUL")
		}
		for _, shell := range []string{"dash", "bash"} {
			if _, err := exec.LookPath(shell); err != nil {
				continue
			}
			if got := roundTrip(t, shell, dir, "printf '%s' "+Quote(s)); got != s {
				t.Fatalf("%s: round trip of %q gave %q", shell, s, got)
			}
		}
		if _, err := os.Stat(filepath.Join(dir, "MARKER")); err == nil {
			t.Fatalf("an injected command ran for %q", s)
		}
	})
}

package rollback

import (
	"strings"
	"testing"
)

// A prerelease refused by a plain range says why: otherwise "2.1.0-rc.1 is
// not >=2.0, <3" reads as a contradiction.
func TestSatisfiesPrereleaseSaysWhy(t *testing.T) {
	for _, tt := range []struct {
		version, constraint string
		ok                  bool
		problem             string
	}{
		{"2.1.0", ">=2.0, <3", true, ""},
		{"2.1.0-rc.1", ">=2.0, <3", false, `2.1.0-rc.1 is a prerelease, and ">=2.0, <3" accepts prereleases only when it names one`},
		{"2.1.0-rc.1", ">=2.1.0-0, <3", true, ""},
		{"3.0.0", ">=2.0, <3", false, ""},
	} {
		ok, problem := satisfies(tt.version, tt.constraint)
		if ok != tt.ok || !strings.Contains(problem, tt.problem) || (tt.problem == "" && problem != "") {
			t.Errorf("satisfies(%q, %q) = %v, %q; want %v, %q", tt.version, tt.constraint, ok, problem, tt.ok, tt.problem)
		}
	}
}

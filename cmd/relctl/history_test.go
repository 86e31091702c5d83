package main

import (
	"bytes"
	"testing"

	"github.com/relctl/relctl/internal/state"
)

// One warning per journal: what is wrong with it as a whole, else that its
// run is shown without the damaged lines; at most three lines named.
func TestWarnJournals(t *testing.T) {
	var errOut bytes.Buffer
	warnJournals(&errOut, []state.JournalProblem{
		{File: "/s/runs/a.jsonl", Reason: "no line of it is readable"},
		{File: "/s/runs/a.jsonl", Line: 1, Reason: "not a JSON object"},
		{File: "/s/runs/b.jsonl", Line: 2, Reason: "x"},
		{File: "/s/runs/b.jsonl", Line: 4, Reason: "y"},
		{File: "/s/runs/b.jsonl", Line: 6, Reason: "z"},
		{File: "/s/runs/b.jsonl", Line: 8, Reason: "w"},
		{File: "/s/runs/b.jsonl", Line: 9, Reason: "v"},
		{File: "/s/runs/c.jsonl", Reason: "cannot read it: permission denied"},
	}, "; suffix")
	want := `relctl: warning: /s/runs/a.jsonl: no line of it is readable: line 1: not a JSON object; suffix
relctl: warning: /s/runs/b.jsonl: the run is shown without line 2: x; line 4: y; line 6: z; and 2 more damaged lines; suffix
relctl: warning: /s/runs/c.jsonl: cannot read it: permission denied; suffix
`
	if errOut.String() != want {
		t.Errorf("warnings:\n%s\nwant:\n%s", errOut.String(), want)
	}
}

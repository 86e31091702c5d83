package rollback_test

import (
	"bytes"
	"encoding/xml"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/rollback"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// junitRecord is a rehearsal of search 1.2.0 in staging back to 1.1.0 with
// the given cycles; the caller sets the result and the forward deploy.
func junitRecord(cycles ...rollback.Cycle) *rollback.Record {
	started := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
	return &rollback.Record{
		Format: rollback.RecordFormat, Project: "search", Environment: "staging", For: "production", Playbook: "search",
		Release: "1.2.0", ReleaseDigest: "sha256:" + strings.Repeat("ab", 32), From: "1.1.0", To: "1.2.0",
		Result: rollback.ResultPassed, Cycles: cycles,
		Started: started, Finished: started.Add(95*time.Second + 250*time.Millisecond),
	}
}

func passedCycle(failAt, runID string) rollback.Cycle {
	return rollback.Cycle{FailAt: failAt, RunID: runID, Passed: true, Seconds: 20.5, RollbackSeconds: 3.25,
		TimeToHealthySeconds: 4.75, StepsUndone: 6, HostsRolledBack: 2, CheckRunID: "check-" + runID}
}

func TestWriteJUnit(t *testing.T) {
	passed := junitRecord(passedCycle("end of cutover", "r-1"))
	passed.Forward = &rollback.RunOutcome{RunID: "r-2", Passed: true, Seconds: 9.5}

	// --fail-at all: the third of four cycles failed, so the fourth never ran
	// and there was no forward deploy.
	const healthErr = `the release failed before the fail point: stage-2: step verify/health: GET http://127.0.0.1:8082/health: status 503, body "<html>down & out</html>"`
	thirdFailed := junitRecord(passedCycle("end of stage", "r-1"), passedCycle("end of activate", "r-2"),
		rollback.Cycle{FailAt: "end of verify", RunID: "r-3", Error: healthErr, Seconds: 31, RollbackSeconds: 5.5, TimeToHealthySeconds: 6.25, StepsUndone: 4, HostsRolledBack: 2})
	thirdFailed.Result, thirdFailed.Reason = rollback.ResultFailed, "cycle 3 (fail at the end of verify): "+healthErr
	thirdFailed.FailPoints = []string{"end of stage", "end of activate", "end of verify", "end of cutover"}

	const forwardErr = "deploy 1.2.0 to staging failed on stage-1: step activate/restart: exit status 1\n  stderr: bin/restart: \"port 8081\" in use"
	forwardFailed := junitRecord(passedCycle("end of cutover", "r-1"))
	forwardFailed.Forward = &rollback.RunOutcome{RunID: "r-2", Error: forwardErr, Seconds: 7.25}
	forwardFailed.Result, forwardFailed.Reason = rollback.ResultFailed, "deploying 1.2.0 again after the rollbacks failed: deploy 1.2.0 to staging failed on stage-1: step activate/restart: exit status 1"

	tests := []struct {
		golden string
		rec    *rollback.Record
		// failures by testcase: "" passed, else the failure's type and message.
		failures []junitOutcome
	}{
		{"junit-passed.golden", passed, []junitOutcome{{}}},
		{"junit-cycle3-failed.golden", thirdFailed, []junitOutcome{{}, {}, {"RehearsalFailed", healthErr, thirdFailed.Reason}}},
		{"junit-forward-failed.golden", forwardFailed, []junitOutcome{{"ForwardFailed", "deploying 1.2.0 again after the rollback failed", forwardErr}}},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			var b bytes.Buffer
			if err := rollback.WriteJUnit(&b, tt.rec); err != nil {
				t.Fatal(err)
			}
			checkGolden(t, filepath.Join("testdata", tt.golden), b.Bytes())

			var doc struct {
				XMLName xml.Name `xml:"testsuites"`
				Suites  []struct {
					Name     string `xml:"name,attr"`
					Tests    int    `xml:"tests,attr"`
					Failures int    `xml:"failures,attr"`
					Skipped  int    `xml:"skipped,attr"`
					Cases    []struct {
						Name    string    `xml:"name,attr"`
						Skipped *struct{} `xml:"skipped"`
						Failure *struct {
							Type    string `xml:"type,attr"`
							Message string `xml:"message,attr"`
							Text    string `xml:",chardata"`
						} `xml:"failure"`
					} `xml:"testcase"`
				} `xml:"testsuite"`
			}
			if err := xml.Unmarshal(b.Bytes(), &doc); err != nil {
				t.Fatalf("the output is not XML a CI system can read: %v\n%s", err, b.String())
			}
			if len(doc.Suites) != 1 {
				t.Fatalf("%d testsuites; want 1", len(doc.Suites))
			}
			suite := doc.Suites[0]
			wantFailures := 0
			for _, f := range tt.failures {
				if f.typ != "" {
					wantFailures++
				}
			}
			// One testcase per planned cycle; those after a failed one are skipped.
			planned := max(len(tt.rec.Cycles), len(tt.rec.FailPoints))
			skipped := 0
			for _, c := range suite.Cases {
				if c.Skipped != nil {
					skipped++
				}
			}
			if len(suite.Cases) != planned || suite.Tests != planned || suite.Failures != wantFailures ||
				skipped != planned-len(tt.rec.Cycles) || suite.Skipped != skipped {
				t.Errorf("suite %q: %d testcases, tests=%d, failures=%d, skipped=%d (attribute %d); want %d planned cycles, %d failures, %d skipped",
					suite.Name, len(suite.Cases), suite.Tests, suite.Failures, skipped, suite.Skipped, planned, wantFailures, planned-len(tt.rec.Cycles))
			}
			for i, c := range suite.Cases {
				if i >= len(tt.failures) {
					break
				}
				want := tt.failures[i]
				if !strings.HasPrefix(c.Name, "cycle ") || !strings.Contains(c.Name, tt.rec.Cycles[i].FailAt) {
					t.Errorf("testcase %d is named %q; want the cycle and its fail point %q", i+1, c.Name, tt.rec.Cycles[i].FailAt)
				}
				switch {
				case want.typ == "" && c.Failure != nil:
					t.Errorf("testcase %q failed (%+v); want passed", c.Name, *c.Failure)
				case want.typ != "" && c.Failure == nil:
					t.Errorf("testcase %q passed; want a %s failure", c.Name, want.typ)
				case want.typ != "" && (c.Failure.Type != want.typ || c.Failure.Message != want.message || c.Failure.Text != want.text):
					t.Errorf("testcase %q failure:\n got %s %q\n     %q\nwant %s %q\n     %q", c.Name, c.Failure.Type, c.Failure.Message, c.Failure.Text, want.typ, want.message, want.text)
				}
			}
		})
	}
}

// junitOutcome is what a CI system shows for one testcase.
type junitOutcome struct{ typ, message, text string }

// checkGolden compares got with the golden file; -update rewrites it.
func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// A fail point after a named step reads as such in the testcase name.
func TestWriteJUnitStepFailPoint(t *testing.T) {
	at := deploy.FailPoint{Phase: "activate", Step: "activate/restart"}
	rec := junitRecord(passedCycle(at.String(), "r-1"))
	rec.Forward = &rollback.RunOutcome{RunID: "r-2", Passed: true, Seconds: 9.5}
	var b bytes.Buffer
	if err := rollback.WriteJUnit(&b, rec); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Cases []struct {
			Name string `xml:"name,attr"`
		} `xml:"testsuite>testcase"`
	}
	if err := xml.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Cases) != 1 {
		t.Fatalf("%d testcases; want 1", len(doc.Cases))
	}
	name := doc.Cases[0].Name
	if strings.Contains(name, "fail at the after ") {
		t.Errorf("testcase named %q: a step fail point is worded \"fail after ...\"", name)
	}
	if !strings.Contains(name, "after activate/restart") {
		t.Errorf("testcase named %q; want it to say after activate/restart", name)
	}
}

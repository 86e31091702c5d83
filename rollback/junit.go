package rollback

import (
	"encoding/xml"
	"fmt"
	"io"

	"github.com/relctl/relctl/deploy"
)

// JUnit XML, the subset CI systems read: one testsuite, one testcase per
// rehearsal cycle.
type junitSuites struct {
	XMLName xml.Name   `xml:"testsuites"`
	Suites  []junitSet `xml:"testsuite"`
}

type junitSet struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr"`
	Properties []junitProperty `xml:"properties>property"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
	Skipped   *junitSkipped `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitSkipped struct {
	Message string `xml:"message,attr"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

// WriteJUnit writes the record as JUnit XML: one testcase per planned
// cycle (those after a failed one are skipped, so CI shows what was not
// rehearsed); the forward deploy after the last cycle belongs to that
// cycle's testcase.
func WriteJUnit(w io.Writer, rec *Record) error {
	set := junitSet{
		Name:      fmt.Sprintf("relctl rehearse %s %s %s", rec.Environment, rec.Playbook, rec.Release),
		Tests:     max(len(rec.Cycles), len(rec.FailPoints)),
		Time:      seconds(rec.Finished.Sub(rec.Started).Seconds()),
		Timestamp: rec.Started.UTC().Format("2006-01-02T15:04:05"),
		Properties: []junitProperty{
			{"release", rec.Release}, {"release_digest", rec.ReleaseDigest}, {"from_version", rec.From},
			{"environment", rec.Environment}, {"result", rec.Result},
		},
	}
	for i, c := range rec.Cycles {
		tc := junitCase{
			Name:      cycleName(rec, i, c.FailAt),
			Classname: "relctl.rehearse." + rec.Environment,
			Time:      seconds(c.Seconds),
			SystemOut: fmt.Sprintf("run %s: rollback %.1fs, healthy again %.1fs after the failure, %d steps undone on %d hosts",
				c.RunID, c.RollbackSeconds, c.TimeToHealthySeconds, c.StepsUndone, c.HostsRolledBack),
		}
		if !c.Passed {
			tc.Failure = &junitFailure{Message: c.Error, Type: "RehearsalFailed", Text: rec.Reason}
		}
		if last := i == len(rec.Cycles)-1; last && c.Passed && rec.Forward != nil {
			tc.Time = seconds(c.Seconds + rec.Forward.Seconds)
			tc.SystemOut += fmt.Sprintf("\nforward: deploy %s again (run %s): ", rec.Release, rec.Forward.RunID)
			if rec.Forward.Passed {
				tc.SystemOut += "ok"
			} else {
				tc.SystemOut += "FAILED"
				tc.Failure = &junitFailure{Message: "deploying " + rec.Release + " again after the rollback failed", Type: "ForwardFailed", Text: rec.Forward.Error}
			}
		}
		if tc.Failure != nil {
			set.Failures++
		}
		set.Cases = append(set.Cases, tc)
	}
	for i := len(rec.Cycles); i < len(rec.FailPoints); i++ {
		set.Cases = append(set.Cases, junitCase{Name: cycleName(rec, i, rec.FailPoints[i]), Classname: "relctl.rehearse." + rec.Environment,
			Time: seconds(0), Skipped: &junitSkipped{Message: "not run: an earlier cycle failed"}})
		set.Skipped++
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(junitSuites{Suites: []junitSet{set}}); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

func cycleName(rec *Record, i int, point string) string {
	return fmt.Sprintf("cycle %d: fail %s, roll back %s to %s", i+1, deploy.FailClause(point), rec.To, rec.From)
}

func seconds(s float64) string { return fmt.Sprintf("%.3f", s) }

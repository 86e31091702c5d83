// Package notify tells the outside world about relctl's runs: the
// [[notify]] entries of relctl.toml, each a webhook (a Slack-compatible JSON
// body POSTed to a URL that comes from a secret) or a command (argv, no
// shell, the event as JSON on stdin). A notification that fails is
// reported to the caller and never becomes the run's failure.
package notify

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/relctl/relctl/internal/hostlist"
)

// SchemaVersion is Event.Schema: bumped when a field changes meaning or
// goes away (new fields do not bump it).
const SchemaVersion = 1

// Results an Event carries. A run's end has the journal's words for how it
// ended; the others are the gate's and a rehearsal's.
const (
	ResultStarted        = "started"         // start
	ResultSucceeded      = "succeeded"       // the run ended well
	ResultRolledBack     = "rolled-back"     // failed; every touched host is back and healthy
	ResultRollbackFailed = "rollback-failed" // failed; some hosts are not back or not healthy
	ResultFailed         = "failed"          // failed; no rollback ran
	ResultInterrupted    = "interrupted"     // stopped by a signal
	ResultRefused        = "refused"         // refused before any host changed (a lock, the gate)
	ResultOverridden     = "overridden"      // the gate refused, --skip-rehearsal went on
	ResultPassed         = "passed"          // a rehearsal passed
)

// Outcomes a host can have in Event.Hosts.
const (
	HostOK         = "ok"          // on the release, as asked
	HostRolledBack = "rolled-back" // back on its previous release, healthy
	HostUnchanged  = "unchanged"   // never switched
	HostUnresolved = "unresolved"  // not known to be on its previous release and healthy: look at it
	HostSkipped    = "skipped"     // finished by the interrupted run --resume finished
)

// Event is what one notification says, for people (Summary) and programs
// (every other field): the JSON a command reads on stdin, and the "relctl"
// object of a webhook's body.
type Event struct {
	Schema int `json:"schema"`
	// Type is the event: one of playbooks.NotifyEvents.
	Type string `json:"type"`
	Run  string `json:"run"`
	// Kind is what ran: deploy, rollback, rehearse.
	Kind     string `json:"kind"`
	Project  string `json:"project"`
	Env      string `json:"environment"`
	Playbook string `json:"playbook,omitempty"`
	Release  string `json:"release"`
	// From is the release the environment ran before (when known).
	From   string `json:"from,omitempty"`
	Result string `json:"result"`
	// ExitCode is relctl's exit code for the command, once it is known
	// (not for start).
	ExitCode *int `json:"exit_code,omitempty"`
	// Hosts lists the run's hosts by outcome (HostOK...).
	Hosts      map[string][]string `json:"hosts,omitempty"`
	Operator   string              `json:"operator"`
	Controller string              `json:"controller,omitempty"`
	Time       time.Time           `json:"time"`
	// Detail says more in one line: why it failed, the gate's refusal, the
	// rehearsal record.
	Detail string `json:"detail,omitempty"`
	// Summary is the one line a person reads (the webhook body's text).
	Summary string `json:"summary"`

	// Also are the other events this one is: a failed deploy that was
	// rolled back is a failure and a rollback. An entry told about several
	// gets one message, of the first of Type, Also... it asked for.
	Also []string `json:"-"`
}

// IntPtr is a pointer to n, for ExitCode.
func IntPtr(n int) *int { return &n }

// AllHosts lists every host of the event, sorted.
func (e *Event) AllHosts() []string {
	var out []string
	for _, hs := range e.Hosts {
		out = append(out, hs...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Text is the one-line summary: what, how it went, why, and where (the
// run, the hosts folded into ranges). Hosts left unresolved are always
// named.
func (e *Event) Text() string {
	var b strings.Builder
	b.WriteString(e.headline())
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	if bad := e.Hosts[HostUnresolved]; len(bad) > 0 && !strings.Contains(e.Detail, hostlist.Compress(bad)) {
		b.WriteString("; unresolved: " + hostlist.Compress(bad))
	}
	var where []string
	if e.Run != "" {
		where = append(where, "run "+e.Run)
	}
	if hosts := e.AllHosts(); len(hosts) > 0 {
		where = append(where, hostlist.Abbrev(hosts, 120))
	}
	if len(where) > 0 {
		b.WriteString(" (" + strings.Join(where, "; ") + ")")
	}
	return b.String()
}

// what is "relctl deploy of search 1.2.0 to production", as the kind reads.
func (e *Event) what() string {
	switch e.Kind {
	case "rollback":
		return fmt.Sprintf("relctl rollback of %s in %s to %s", e.Project, e.Env, e.Release)
	case "rehearse":
		return fmt.Sprintf("relctl rehearsal of %s %s in %s", e.Project, e.Release, e.Env)
	}
	kind := e.Kind
	if kind == "" {
		kind = "deploy"
	}
	return fmt.Sprintf("relctl %s of %s %s to %s", kind, e.Project, e.Release, e.Env)
}

// headline is how it went, with an emoji a chat shows.
func (e *Event) headline() string {
	what := e.what()
	switch e.Result {
	case ResultStarted:
		return fmt.Sprintf(":rocket: %s started by %s", what, e.Operator)
	case ResultSucceeded:
		if e.Type == "rollback" {
			return ":rewind: " + what + " succeeded"
		}
		return ":white_check_mark: " + what + " succeeded"
	case ResultPassed:
		return ":white_check_mark: " + what + " passed"
	case ResultRolledBack:
		return ":x: " + what + " FAILED and was rolled back"
	case ResultRollbackFailed:
		return ":rotating_light: " + what + " FAILED and its rollback did not restore every host"
	case ResultInterrupted:
		return ":warning: " + what + " was interrupted"
	case ResultRefused:
		if e.Type == "gate-refused" {
			return ":no_entry: " + what + " was refused by the rehearsal gate"
		}
		return ":no_entry: " + what + " was refused"
	case ResultOverridden:
		return fmt.Sprintf(":warning: %s: the rehearsal gate refused it, and %s overrode it with --skip-rehearsal", what, e.Operator)
	}
	return ":x: " + what + " FAILED"
}

// OneLine makes s fit a one-line detail: its first line, control
// characters dropped, at most max bytes (cut at a rune boundary).
func OneLine(s string, max int) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.TrimSpace(s))
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && s[cut]&0xc0 == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}

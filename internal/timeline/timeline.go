// Package timeline draws one run as a self-contained HTML page: an SVG Gantt
// chart with a row per host, grouped by batch, a bar per step coloured by
// phase and outcome, the failure marked and the automatic rollback as its
// own span; above BandThreshold hosts each batch is one band of how many
// hosts were in each phase over time, plus rows for the hosts that did not
// end well. The page loads nothing (inline CSS, script and SVG; a Content
// Security Policy forbids the rest) and every value is escaped by
// html/template. Its input is plain data (Run): the caller reads the run.
package timeline

import (
	"time"
)

// Phases relctl runs, in order; other phase names are drawn in one
// neutral colour.
const (
	PhasePreflight = "preflight"
	PhaseRollback  = "rollback"
	PhaseMove      = "move"
)

// Step outcomes a bar shows.
const (
	StatusOK         = "ok"
	StatusFailed     = "failed"
	StatusSkipped    = "skipped"
	StatusRolledBack = "rolled-back" // it ran, and the rollback undid it
	StatusUnfinished = "unfinished"  // started, never ended (the run died, or still runs)
)

// BandThreshold is the number of hosts above which a batch is drawn as a
// band instead of one row per host.
const BandThreshold = 100

// Run is everything the page shows.
type Run struct {
	ID         string
	Env        string
	Kind       string // deploy, rollback, ...
	Release    string
	From       string // release before, when known
	Result     string
	Operator   string
	Controller string
	Source     string // where the run was read from, e.g. "journal on this machine"
	Started    time.Time
	Finished   time.Time // zero when the run has no end (interrupted)

	Batches  []Batch
	Rollback *Span // the automatic rollback, nil when none ran

	// Notes are caveats shown under the header, e.g. that batches were
	// inferred or that some steps have no timings.
	Notes []string
}

// Batch is a group of hosts drawn together.
type Batch struct {
	Name  string
	Hosts []Host
}

// Host is one host's steps, in the order they ran.
type Host struct {
	Name  string
	Steps []Step
}

// Step is one step on one host. A step without Start or End is not drawn:
// the page lists it and says its timing is unknown.
type Step struct {
	Phase    string
	Name     string
	Status   string
	Detail   string // what it did, or its error
	Start    time.Time
	End      time.Time
	Duration time.Duration // when known without Start/End (listed, not drawn)
	// Approx says Start and End are placed, not recorded: the bar is drawn
	// dashed and its tooltip says so.
	Approx bool
}

// ID is "phase/name", as the journal names a step.
func (s Step) ID() string { return s.Phase + "/" + s.Name }

// Timed says whether the step can be drawn.
func (s Step) Timed() bool { return !s.Start.IsZero() && !s.End.IsZero() && !s.End.Before(s.Start) }

// Span is a stretch of the run, such as the automatic rollback.
type Span struct {
	Label string
	Start time.Time
	End   time.Time
}

// Hosts is the number of hosts in the run.
func (r *Run) Hosts() int {
	n := 0
	for _, b := range r.Batches {
		n += len(b.Hosts)
	}
	return n
}

// failed says whether a step of the host failed or never ended: such a
// host always has a row of its own.
func (h *Host) failed() bool {
	for _, s := range h.Steps {
		if s.Status == StatusFailed || s.Status == StatusUnfinished {
			return true
		}
	}
	return false
}

// rolledBack says whether the rollback ran on the host.
func (h *Host) rolledBack() bool {
	for _, s := range h.Steps {
		if s.Phase == PhaseRollback || s.Status == StatusRolledBack {
			return true
		}
	}
	return false
}

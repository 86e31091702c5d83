package deploy

import (
	"fmt"
	"strings"
	"time"
)

// Step statuses.
const (
	StatusOK      = "ok"
	StatusFailed  = "failed"
	StatusSkipped = "skipped"
)

// StepResult is how one step (or one undo) ended on one host.
type StepResult struct {
	Host    string        `json:"host"`
	Phase   string        `json:"phase"`
	Name    string        `json:"name"`
	Kind    string        `json:"kind"`
	Status  string        `json:"status"`
	Detail  string        `json:"detail,omitempty"`
	Error   string        `json:"error,omitempty"`
	Elapsed time.Duration `json:"elapsed_ns"`
}

// ID is "phase/name".
func (r *StepResult) ID() string { return r.Phase + "/" + r.Name }

// HostReport is what happened on one host.
type HostReport struct {
	Name    string        `json:"name"`
	Address string        `json:"address"`
	Batch   int           `json:"batch"`
	Reached bool          `json:"reached"`
	Skipped bool          `json:"skipped,omitempty"` // resume: already done by the interrupted run
	Before  string        `json:"before"`            // current release before the run
	After   string        `json:"after"`             // current release at the end, as last seen
	Steps   []*StepResult `json:"steps"`
	Error   string        `json:"error,omitempty"`
	// Unknown: a switch failed and the host could not be read afterwards.
	Unknown bool `json:"unknown,omitempty"`
	// Panic: relctl itself failed (a Go panic, a bug) while working on this
	// host; the stack is in the run log. Once the host was touched, relctl
	// cannot vouch for what it left there, even after a rollback that passed.
	Panic string `json:"panic,omitempty"`

	// LeftOut: what an aborted run (the second interrupt: no rollback) left
	// undone here, e.g. out of the load balancer.
	LeftOut string `json:"left_out,omitempty"`

	// Touched: a step past preflight started on this host.
	Touched bool `json:"touched"`
	// Rollback: what the automatic rollback did here (nil when it did not run on this host).
	Rollback *HostRollback `json:"rollback,omitempty"`
}

// HostRollback is the automatic rollback's outcome on one host.
type HostRollback struct {
	Steps   []*StepResult `json:"steps"`   // undos, restore steps and checks, in order
	Healthy bool          `json:"healthy"` // health checks passed on the restored release
	Error   string        `json:"error,omitempty"`
}

// Changed says whether the run left this host on another release than before.
func (h *HostReport) Changed() bool { return h.After != h.Before }

// Unresolved says whether the host is not known to be back where it was and
// healthy: changed, or rolled back with an error, or unhealthy after it.
func (h *HostReport) Unresolved() bool {
	if h.Changed() || h.Unknown || h.Suspect() || h.LeftOut != "" {
		return true
	}
	return h.Rollback != nil && (h.Rollback.Error != "" || !h.Rollback.Healthy)
}

// Suspect says whether relctl panicked while working on the host after it
// started changing it: whatever the rollback says, a person must look.
func (h *HostReport) Suspect() bool { return h.Panic != "" && h.Touched }

// restored says whether the host is back where it was and healthy, by what
// relctl saw (a panic aside).
func (h *HostReport) restored() bool {
	return !h.Changed() && !h.Unknown && (h.Rollback == nil || (h.Rollback.Error == "" && h.Rollback.Healthy))
}

// Report is the outcome of a run.
type Report struct {
	RunID    string        `json:"run_id"`
	Kind     string        `json:"kind"`
	Env      string        `json:"environment"`
	Version  string        `json:"release"`
	Started  time.Time     `json:"started"`
	Finished time.Time     `json:"finished"`
	Hosts    []*HostReport `json:"hosts"`
	// RolledBack: the automatic rollback ran after a failure.
	RolledBack bool `json:"rolled_back"`
	// MoveSteps are the steps of a [move] on hosts that are not targets:
	// load balancers, dependents, old hosts (finalize).
	MoveSteps []*StepResult `json:"move_steps,omitempty"`
	// MoveUnresolved: a move's undo failed; traffic or dependents may still
	// point at the new hosts.
	MoveUnresolved string `json:"move_unresolved,omitempty"`
}

// Host returns the named host's report.
func (r *Report) Host(name string) *HostReport {
	for _, h := range r.Hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// Changed lists the hosts whose current release the run switched (and left switched).
func (r *Report) Changed() []string {
	var out []string
	for _, h := range r.Hosts {
		if h.Changed() {
			out = append(out, h.Name)
		}
	}
	return out
}

// Unresolved lists the hosts not known to be on their previous release and
// healthy, and "move" when a move's undo failed.
func (r *Report) Unresolved() []string {
	var out []string
	for _, h := range r.Hosts {
		if h.Unresolved() {
			out = append(out, h.Name)
		}
	}
	if r.MoveUnresolved != "" {
		out = append(out, "move")
	}
	return out
}

// Failure is a run that stopped. Err holds every host's error.
type Failure struct {
	Phase  string
	Batch  int // 0 for preflight
	Report *Report
	Err    error
	// Interrupted: stopped by a signal rather than by a failing step.
	Interrupted bool
}

func (f *Failure) Error() string {
	where := "preflight"
	if f.Batch > 0 {
		where = fmt.Sprintf("batch %d, %s phase", f.Batch, f.Phase)
	}
	verb := "failed"
	if f.Interrupted {
		verb = "was interrupted"
	}
	kind := f.Report.Kind
	if kind == "" {
		kind = KindDeploy
	}
	msg := fmt.Sprintf("%s of %s to %s %s in %s: %v", kind, f.Report.Version, f.Report.Env, verb, where, f.Err)
	var bad, suspect []string
	for _, h := range f.Report.Hosts {
		switch {
		case h.Suspect() && h.restored():
			suspect = append(suspect, h.Name)
		case h.Unresolved():
			bad = append(bad, h.Name)
		}
	}
	if f.Report.MoveUnresolved != "" {
		bad = append(bad, "move")
	}
	if f.Report.RolledBack {
		if len(bad) > 0 {
			msg += fmt.Sprintf("\nrollback did not restore every host: %s", strings.Join(bad, ", "))
		} else if len(suspect) == 0 {
			msg += "\nevery touched host was rolled back and is healthy on its previous release"
		}
	}
	if len(suspect) > 0 {
		msg += fmt.Sprintf("\nrelctl itself failed (a panic) while changing these hosts; they look restored, but are not vouched for: %s (look with relctl status --env %s)",
			strings.Join(suspect, ", "), f.Report.Env)
	}
	return msg
}

func (f *Failure) Unwrap() error { return f.Err }

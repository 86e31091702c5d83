package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/state"
)

// progress prints one line per batch and per finished step on stderr.
type progress struct {
	mu      sync.Mutex
	w       io.Writer
	logPath string
}

func newProgress(w io.Writer, logPath string) *progress {
	return &progress{w: w, logPath: logPath}
}

func (p *progress) observe(ev deploy.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch ev.Kind {
	case deploy.RunStarted:
		pl := ev.Plan
		verb := "Deploying"
		switch {
		case pl.Move != nil && pl.Kind == deploy.KindRollback:
			verb = "Moving traffic and dependents back to the old hosts of"
		case pl.Kind == deploy.KindFinalize:
			verb = "Retiring the old hosts of"
		case pl.Kind == deploy.KindRollback:
			verb = "Rolling back to"
		}
		fmt.Fprintf(p.w, "%s %s %s on %s: %d hosts in %d batches (run %s)\n", verb, pl.Playbook, pl.Version, pl.Env,
			len(pl.Hosts()), len(pl.Batches), pl.RunID)
		fmt.Fprintf(p.w, "Run log: %s\n", p.logPath)
	case deploy.PreflightDone:
		fmt.Fprintf(p.w, "Preflight: %d hosts reachable, preflight steps passed\n", len(ev.Plan.Hosts()))
	case deploy.BatchStarted:
		label := ""
		if ev.Batch.Canary {
			label = " (canary)"
		}
		names := make([]string, len(ev.Batch.Hosts))
		for i, h := range ev.Batch.Hosts {
			names[i] = h.Name
		}
		fmt.Fprintf(p.w, "Batch %d/%d%s: %s\n", ev.Batch.Index, len(ev.Plan.Batches), label, strings.Join(names, ", "))
	case deploy.LocksTaken:
		for _, l := range ev.Locks {
			if l.Err != "" {
				fmt.Fprintf(p.w, "Not locked: %s %s\n", l.Host, l.Err)
				continue
			}
			fmt.Fprintf(p.w, "Took over the stale lock on %s: %s\n", l.Host, describeOwner(l))
		}
	case deploy.Stopping:
		fmt.Fprintf(p.w, "Stopping: no new steps; running steps finish, then touched hosts roll back\n")
	case deploy.RollbackStarted:
		fmt.Fprintf(p.w, "Rolling back %d touched host%s: %s\n", len(ev.Hosts), plural(len(ev.Hosts)), strings.Join(ev.Hosts, ", "))
	case deploy.RollbackHostDone:
		if ev.Err != nil {
			fmt.Fprintf(p.w, "  %-14s ROLLBACK FAILED: %s\n", ev.Host, firstLine(ev.Err.Error()))
		}
	case deploy.StepDone, deploy.RollbackStepDone:
		r := ev.Result
		status := r.Status
		detail := r.Detail
		if r.Status == deploy.StatusFailed {
			status = "FAILED"
			detail = firstLine(r.Error)
		}
		fmt.Fprintf(p.w, "  %-14s %-26s %-7s %6s  %s\n", r.Host, r.ID(), status, shortDuration(r.Elapsed), detail)
	case deploy.Pausing:
		fmt.Fprintf(p.w, "Pausing %s before batch %d\n", ev.Pause, ev.Batch.Index)
	case deploy.RunDone:
		var locked *state.LockedError
		if errors.As(ev.Err, &locked) {
			return // refused before anything ran; the error says by whom
		}
		rep := ev.Report
		elapsed := shortDuration(rep.Finished.Sub(rep.Started))
		what := fmt.Sprintf("Deploy of %s to %s", rep.Version, rep.Env)
		switch {
		case ev.Plan.Move != nil && rep.Kind != deploy.KindDeploy:
			what = fmt.Sprintf("Move %s of %s in %s", map[bool]string{true: "back", false: "finalize"}[rep.Kind == deploy.KindRollback], rep.Version, rep.Env)
		case rep.Kind == deploy.KindRollback:
			what = fmt.Sprintf("Rollback of %s to %s", rep.Env, rep.Version)
		}
		switch {
		case ev.Err == nil && ev.Plan.Move != nil && rep.Kind != deploy.KindDeploy:
			fmt.Fprintf(p.w, "%s done (%s)\n", what, elapsed)
		case ev.Err == nil:
			fmt.Fprintf(p.w, "%s done: %d/%d hosts on %s (%s)\n", what, len(rep.Hosts), len(rep.Hosts), rep.Version, elapsed)
		case rep.RolledBack && len(rep.Unresolved()) == 0:
			fmt.Fprintf(p.w, "%s FAILED and was rolled back: every touched host is healthy on its previous release (%s)\n", what, elapsed)
		default:
			fmt.Fprintf(p.w, "%s FAILED after %s\n", what, elapsed)
		}
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func shortDuration(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}

// table writes aligned columns.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, headers ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	t.row(headers...)
	return t
}

func (t *table) row(cols ...string) { fmt.Fprintln(t.tw, strings.Join(cols, "\t")) }
func (t *table) flush()             { t.tw.Flush() }

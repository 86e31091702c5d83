package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/relctl/relctl/deploy"
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
		fmt.Fprintf(p.w, "Deploying %s %s to %s: %d hosts in %d batches (run %s)\n", pl.Playbook, pl.Version, pl.Env,
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
	case deploy.StepDone:
		r := ev.Result
		status := "ok"
		detail := r.Detail
		if r.Status == deploy.StatusFailed {
			status = "FAILED"
			detail = firstLine(r.Error)
		}
		fmt.Fprintf(p.w, "  %-14s %-22s %-6s %6s  %s\n", r.Host, r.ID(), status, shortDuration(r.Elapsed), detail)
	case deploy.Pausing:
		fmt.Fprintf(p.w, "Pausing %s before batch %d\n", ev.Pause, ev.Batch.Index)
	case deploy.RunDone:
		rep := ev.Report
		elapsed := shortDuration(rep.Finished.Sub(rep.Started))
		if ev.Err == nil {
			fmt.Fprintf(p.w, "Deployed %s to %s: %d/%d hosts on %s (%s)\n", rep.Version, rep.Env, len(rep.Hosts), len(rep.Hosts), rep.Version, elapsed)
		} else {
			fmt.Fprintf(p.w, "Deploy of %s to %s FAILED after %s\n", rep.Version, rep.Env, elapsed)
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

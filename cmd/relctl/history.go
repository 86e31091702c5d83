package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/relctl/relctl/internal/output"
	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/internal/timeline"
	"github.com/relctl/relctl/playbooks"
)

// historyRow is one run (or a forced unlock) in `relctl history`.
type historyRow struct {
	RunID    string        `json:"run_id"`
	Command  string        `json:"command"`
	Operator string        `json:"operator"`
	When     time.Time     `json:"when"`
	Release  string        `json:"release"`
	From     string        `json:"from,omitempty"`
	Result   string        `json:"result"`
	Duration time.Duration `json:"duration_ns"`
	Reason   string        `json:"reason,omitempty"`
	Source   string        `json:"source"` // journal (this machine) or hosts
}

// HistoryOptions are `relctl history`'s inputs.
type HistoryOptions struct {
	IO          *output.IOStreams
	Project     func() (*playbooks.Project, error)
	StateDir    func(*playbooks.Config) string
	OpenSession openSessionFunc

	Env    string
	Format string
}

func newCmdHistory(f *Factory, runF func(*HistoryOptions) error) *cobra.Command {
	opts := &HistoryOptions{IO: f.IOStreams, Project: f.Project, StateDir: f.StateDir, OpenSession: f.OpenSession}
	cmd := &cobra.Command{
		Use:   "history --env ENV",
		Short: "List the environment's runs: id, operator, when, release, result, duration",
		Long: `History merges this machine's journal (state_dir/runs/*.jsonl, one durable
line per step) with the run summaries and unlock records kept on every host,
so runs made from other machines appear too. "relctl history show ID" lists
a run's steps per host.

A damaged journal hides nothing else: every run relctl can read is listed,
and a warning on stderr names each journal (or line) it could not read and
what is wrong with it; the exit code stays 0. A journal whose last line was
torn by a crash shows its run up to there.`,
		Example: `  relctl history --env production
  relctl history --env production --output json
  relctl history show 20261123T114501Z-3f9a1c`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag(cmd, "env", opts.Env); err != nil {
				return err
			}
			if err := checkFormat(opts.Format); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return historyRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVarP(&opts.Env, "env", "e", "", "environment (from relctl.toml)")
	cmd.Flags().StringVarP(&opts.Format, "output", "o", "text", "output format: text or json")
	cmd.AddCommand(newCmdHistoryShow(f, nil))
	return cmd
}

func historyRun(ctx context.Context, opts *HistoryOptions) error {
	proj, err := opts.Project()
	if err != nil {
		return err
	}
	rows, problems, err := collectHistory(ctx, opts, proj)
	if err != nil {
		return err
	}
	defer warnJournals(opts.IO.ErrOut, problems, "")
	if opts.Format == "json" {
		if problems == nil {
			problems = []state.JournalProblem{}
		}
		return writeJSON(opts.IO.Out, map[string]any{"environment": opts.Env, "runs": rows, "journal_problems": problems})
	}
	printHistory(opts.IO.Out, rows)
	return nil
}

// printHistory is one row per run, newest first.
func printHistory(w io.Writer, rows []historyRow) {
	t := newTable(w, "RUN", "WHEN", "OPERATOR", "COMMAND", "RELEASE", "RESULT", "DURATION")
	for _, r := range rows {
		result := r.Result
		if r.Reason != "" {
			result += " (" + r.Reason + ")"
		}
		release := orDash(r.Release)
		if r.From != "" && r.From != r.Release {
			release = r.From + " -> " + release
		}
		t.row(r.RunID, r.When.Local().Format(time.DateTime), r.Operator, r.Command, release, result, shortDuration(r.Duration))
	}
	t.flush()
}

// collectHistory merges env's runs from this machine's journals and the
// hosts' records. problems are the journals, or lines of env's runs, that
// could not be read: a journal of which nothing is readable may hold a run
// of any environment.
func collectHistory(ctx context.Context, opts *HistoryOptions, proj *playbooks.Project) (_ []historyRow, problems []state.JournalProblem, _ error) {
	env := opts.Env
	runs, unreadable, err := state.ReadRuns(opts.StateDir(proj.Config))
	if err != nil {
		return nil, nil, err
	}
	problems = unreadable
	byID := map[string]*historyRow{}
	var rows []*historyRow
	add := func(r historyRow) {
		if old, ok := byID[r.RunID]; ok {
			if old.Result == "interrupted" && r.Result != "" {
				old.Result = r.Result
			}
			if old.From == "" {
				old.From = r.From // the journal of a deploy does not say; the hosts do
			}
			return
		}
		row := r
		byID[r.RunID] = &row
		rows = append(rows, &row)
	}
	for _, r := range runs {
		if r.Env == env {
			problems = append(problems, r.Problems...)
			add(historyRow{RunID: r.RunID, Command: r.Command, Operator: r.Operator, When: r.Started, Release: r.Release,
				From: r.From, Result: r.Result, Duration: r.Duration, Source: "journal"})
		}
	}
	summaries, events, warn := hostRecords(ctx, opts.OpenSession, proj, env)
	if warn != "" {
		fmt.Fprintln(opts.IO.ErrOut, "relctl: warning: "+warn)
	}
	for _, s := range summaries {
		add(historyRow{RunID: s.RunID, Command: s.Command, Operator: s.Operator, When: s.Started, Release: s.Release,
			From: s.From, Result: s.Result, Duration: s.Finished.Sub(s.Started), Source: "hosts"})
	}
	for _, ev := range events {
		if row, ok := byID[ev.RunID]; ok && ev.Kind == "skip-rehearsal" {
			row.Reason = "rehearsal gate skipped: " + ev.Reason
			continue
		}
		add(historyRow{RunID: ev.RunID, Command: ev.Kind, Operator: ev.Operator, When: ev.Time, Result: "done", Reason: ev.Reason, Source: "hosts"})
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].When.After(rows[j].When) })
	out := make([]historyRow, len(rows))
	for i, r := range rows {
		out[i] = *r
	}
	return out, problems, nil
}

// warnJournals prints one warning per journal with problems: the file, what
// is wrong with it as a whole (or that its run is shown without the damaged
// lines), the first few damaged lines, and then suffix.
func warnJournals(w io.Writer, problems []state.JournalProblem, suffix string) {
	var files []string
	byFile := map[string][]state.JournalProblem{}
	for _, p := range problems {
		if byFile[p.File] == nil {
			files = append(files, p.File)
		}
		byFile[p.File] = append(byFile[p.File], p)
	}
	const shown = 3
	for _, f := range files {
		var whole string
		var lines []string
		for _, p := range byFile[f] {
			switch {
			case p.Line == 0 && whole == "":
				whole = p.Reason
			case p.Line == 0:
				whole += "; " + p.Reason
			default:
				lines = append(lines, fmt.Sprintf("line %d: %s", p.Line, p.Reason))
			}
		}
		msg := f + ": " + whole
		if whole == "" {
			msg = f + ": the run is shown without " + strings.Join(lines[:min(shown, len(lines))], "; ")
		} else if len(lines) > 0 {
			msg += ": " + strings.Join(lines[:min(shown, len(lines))], "; ")
		}
		if len(lines) > shown {
			msg += fmt.Sprintf("; and %d more damaged lines", len(lines)-shown)
		}
		fmt.Fprintln(w, "relctl: warning: "+msg+suffix)
	}
}

// hostRecords reads run summaries and history events from every host of env.
func hostRecords(ctx context.Context, open openSessionFunc, proj *playbooks.Project, env string) ([]state.HostRunSummary, []state.HistoryEvent, string) {
	sess, err := open(proj.Config, "history-"+state.NewRunID(time.Now()), false)
	if err != nil {
		return nil, nil, err.Error()
	}
	defer sess.Close()
	targets, failed, err := envTargetConns(ctx, sess.pool, proj, env)
	if err != nil {
		return nil, nil, err.Error()
	}
	var summaries []state.HostRunSummary
	var events []state.HistoryEvent
	seenEvent := map[string]bool{}
	for _, t := range targets {
		s, err := state.ReadHostRunSummaries(ctx, t.Conn, t.Layout)
		if err != nil {
			failed[t.Host] = err
			continue
		}
		summaries = append(summaries, s...)
		st, err := state.ReadHostState(ctx, t.Conn, t.Layout, "history")
		if err != nil {
			failed[t.Host] = err
			continue
		}
		for _, ev := range st.History.Events {
			if key := ev.RunID + ev.Kind; !seenEvent[key] {
				seenEvent[key] = true
				events = append(events, ev)
			}
		}
	}
	if len(failed) > 0 {
		var names []string
		for h := range failed {
			names = append(names, h)
		}
		sort.Strings(names)
		return summaries, events, "could not read history from " + strings.Join(names, ", ")
	}
	return summaries, events, ""
}

// HistoryShowOptions are `relctl history show`'s inputs.
type HistoryShowOptions struct {
	IO          *output.IOStreams
	Project     func() (*playbooks.Project, error)
	StateDir    func(*playbooks.Config) string
	OpenSession openSessionFunc

	RunID    string
	Env      string
	Format   string
	Timeline string // also write the run's HTML timeline to this file
}

func newCmdHistoryShow(f *Factory, runF func(*HistoryShowOptions) error) *cobra.Command {
	opts := &HistoryShowOptions{IO: f.IOStreams, Project: f.Project, StateDir: f.StateDir, OpenSession: f.OpenSession}
	cmd := &cobra.Command{
		Use:   "show RUN-ID",
		Short: "Show one run's steps per host",
		Long: `Show one run's steps per host, from this machine's journal or (with --env,
when this machine has no journal of it) from the hosts' run summaries.

--timeline FILE also writes the run as one self-contained HTML page (inline
SVG, CSS and script; it loads nothing): a Gantt chart with a row per host,
grouped by batch, a bar per step coloured by phase and outcome, the failure
marked, the automatic rollback as its own span, and each bar's host, step,
duration and detail on hover. Above 100 hosts each batch is one band of how
many hosts were in each phase, with rows only for hosts that failed, did not
finish or (the first 20 of each batch) were rolled back. Steps whose timings
the record lacks are listed under the chart; the page says so.`,
		Example: `  relctl history show 20261123T114501Z-3f9a1c
  relctl history show 20261123T1145 --env production --output json
  relctl history show 20261123T114501Z-3f9a1c --timeline run.html`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.RunID = args[0]
			if err := checkFormat(opts.Format); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return historyShowRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVarP(&opts.Env, "env", "e", "", "read the run from this environment's hosts when this machine has no journal of it")
	cmd.Flags().StringVarP(&opts.Format, "output", "o", "text", "output format: text or json")
	cmd.Flags().StringVar(&opts.Timeline, "timeline", "", "also write the run as a self-contained HTML page with a Gantt chart to `FILE`")
	return cmd
}

func historyShowRun(ctx context.Context, opts *HistoryShowOptions) error {
	proj, err := opts.Project()
	if err != nil {
		return err
	}
	rec, fromHosts, err := loadRun(ctx, opts, proj)
	if err != nil {
		return err
	}
	defer warnJournals(opts.IO.ErrOut, rec.Problems, "")
	if opts.Format == "json" {
		err = writeJSON(opts.IO.Out, rec)
	} else {
		printRun(opts.IO.Out, rec)
	}
	if err != nil || opts.Timeline == "" {
		return err
	}
	if err := writeTimeline(opts.Timeline, runTimeline(rec, fromHosts)); err != nil {
		return err
	}
	fmt.Fprintf(opts.IO.ErrOut, "Timeline: %s\n", opts.Timeline)
	return nil
}

// loadRun reads the run from this machine's journal, else (with --env) from
// the hosts' run summaries, which it returns too (nil: read from the
// journal); a damaged journal is warned about.
func loadRun(ctx context.Context, opts *HistoryShowOptions, proj *playbooks.Project) (*state.RunRecord, []state.HostRunSummary, error) {
	rec, err := state.LoadRun(opts.StateDir(proj.Config), opts.RunID)
	var damaged *state.JournalError
	switch {
	case err == nil:
		return rec, nil, nil
	case opts.Env != "" && (errors.Is(err, state.ErrNoSuchRun) || errors.As(err, &damaged)):
		if damaged != nil {
			warnJournals(opts.IO.ErrOut, damaged.Problems, "; read the run from the hosts of "+opts.Env+" instead")
		}
		local := err
		rec, summaries, err := runFromHosts(ctx, opts.OpenSession, proj, opts.Env, opts.RunID)
		if err != nil {
			if damaged != nil {
				return nil, nil, fmt.Errorf("%w; %v", local, err) // the journal's damage, not a usage mistake
			}
			return nil, nil, usageErrorf("%v", err)
		}
		return rec, summaries, nil
	case errors.Is(err, state.ErrNoSuchRun):
		return nil, nil, usageErrorf("%v (runs made from another machine: add --env ENV to read them from the hosts)", err)
	}
	// The journal is there but unreadable: not a usage mistake.
	return nil, nil, fmt.Errorf("%w (add --env ENV to read the run from the hosts)", err)
}

// printRun is the run's heading, then its steps per host, then where it ended.
func printRun(w io.Writer, rec *state.RunRecord) {
	if rec.Command == "" {
		fmt.Fprintf(w, "Run %s: its run-start line is unreadable, %s\n", rec.RunID, rec.Result)
	} else {
		fmt.Fprintf(w, "Run %s: %s %s to %s by %s@%s, %s, %s\n", rec.RunID, rec.Command, rec.Release, rec.Env,
			rec.Operator, rec.Controller, rec.Started.Local().Format(time.DateTime), rec.Result)
	}
	byHost := map[string][]state.JournalEvent{}
	var hosts []string
	for _, ev := range rec.Steps {
		if ev.Host == "" || ev.Kind != "step-end" {
			continue
		}
		if byHost[ev.Host] == nil {
			hosts = append(hosts, ev.Host)
		}
		byHost[ev.Host] = append(byHost[ev.Host], ev)
	}
	sort.Strings(hosts)
	for _, h := range hosts {
		fmt.Fprintf(w, "\n%s\n", h)
		t := newTable(w, "  STEP", "STATUS", "DETAIL")
		for _, ev := range byHost[h] {
			detail := ev.Detail
			if ev.Error != "" {
				detail = firstLine(ev.Error)
			}
			t.row("  "+ev.Step, ev.Status, detail)
		}
		t.flush()
	}
	if len(rec.Hosts) > 0 {
		fmt.Fprintf(w, "\nEnded with: %s\n", describeFleet(rec.Hosts))
	}
}

// runFromHosts rebuilds a run record from the hosts' run summaries, and
// returns the summaries it used.
func runFromHosts(ctx context.Context, open openSessionFunc, proj *playbooks.Project, env, id string) (*state.RunRecord, []state.HostRunSummary, error) {
	summaries, _, _ := hostRecords(ctx, open, proj, env)
	var rec *state.RunRecord
	var used []state.HostRunSummary
	for _, s := range summaries {
		if !strings.HasPrefix(s.RunID, id) || (rec != nil && s.RunID != rec.RunID) {
			continue
		}
		used = append(used, s)
		if rec == nil {
			rec = &state.RunRecord{RunID: s.RunID, Env: s.Env, Command: s.Command, Release: s.Release, From: s.From,
				Operator: s.Operator, Controller: s.Controller, Started: s.Started, Finished: s.Finished, Result: s.Result,
				Hosts: map[string]string{}}
		}
		for _, st := range s.Steps {
			rec.Steps = append(rec.Steps, state.JournalEvent{Kind: "step-end", Host: s.Host, Step: st.Phase + "/" + st.Name,
				Status: st.Status, Detail: st.Detail, Error: st.Error})
		}
	}
	if rec == nil {
		return nil, nil, fmt.Errorf("no run %q in this machine's journal or on the hosts of %s", id, env)
	}
	return rec, used, nil
}

// runTimeline is what `history show --timeline` draws: the run's steps per
// host with their times, from the journal, or from the hosts' run summaries
// (fromHosts) when the run was read from there.
func runTimeline(rec *state.RunRecord, fromHosts []state.HostRunSummary) *timeline.Run {
	run := &timeline.Run{ID: rec.RunID, Env: rec.Env, Kind: rec.Command, Release: rec.Release, From: rec.From,
		Result: rec.Result, Operator: rec.Operator, Controller: rec.Controller, Started: rec.Started, Finished: rec.Finished}
	if rec.Command == "" {
		run.Notes = append(run.Notes, "The run's first journal line (its command, release and operator) is unreadable.")
	}
	if n := len(rec.Problems); n > 0 {
		run.Notes = append(run.Notes, fmt.Sprintf("%d part(s) of the journal could not be read (relctl history show names them): the run is drawn without them.", n))
	}
	if rec.Result == state.ResultInterrupted {
		run.Notes = append(run.Notes, "The journal has no end for this run (relctl was killed, or the run still goes on): a step that never ended is drawn up to the run's last event, as unfinished.")
	}
	var hosts []timeline.Host
	if fromHosts != nil {
		run.Source = "the hosts' run summaries"
		hosts, placed := hostsFromSummaries(fromHosts)
		markRolledBack(hosts)
		run.Rollback = rollbackFromSteps(rec.Command, hosts)
		if placed {
			timeline.SortHosts(hosts)
			run.Batches = []timeline.Batch{{Name: "hosts", Hosts: hosts}}
			run.Notes = append(run.Notes, "Read from the hosts' run summaries, which record neither batches nor when each step started.")
			return run
		}
		run.Batches = timeline.InferBatches(hosts)
		run.Notes = append(run.Notes, "Batches are inferred from when each host's steps ran (the hosts' run summaries do not record them).")
		return run
	}
	run.Source = "this machine's journal"
	hosts, run.Rollback = hostsFromJournal(rec)
	markRolledBack(hosts)
	run.Batches = timeline.InferBatches(hosts)
	run.Notes = append(run.Notes, "Batches are inferred from when each host's steps ran (the journal does not record them).")
	return run
}

// hostsFromJournal is each host's steps from the journal, and the automatic
// rollback's span: from its rollback-start to the end of its last step. A
// step that never ended is unfinished up to the run's last event.
func hostsFromJournal(rec *state.RunRecord) ([]timeline.Host, *timeline.Span) {
	steps := journalSteps{byHost: map[string]*timeline.Host{}, open: map[[2]string][]int{}}
	last := rec.Finished
	var rollbackStart time.Time
	for _, ev := range rec.Steps {
		if ev.Time.After(last) {
			last = ev.Time
		}
		if ev.Kind == "rollback-start" && rollbackStart.IsZero() {
			rollbackStart = ev.Time
		}
		steps.add(ev)
	}
	hosts := make([]timeline.Host, 0, len(steps.order))
	for _, name := range steps.order {
		h := steps.byHost[name]
		for i := range h.Steps {
			if h.Steps[i].Status == timeline.StatusUnfinished {
				h.Steps[i].End = last
			}
		}
		hosts = append(hosts, *h)
	}
	var span *timeline.Span
	if !rollbackStart.IsZero() {
		span = &timeline.Span{Label: "automatic rollback", Start: rollbackStart, End: rollbackEnd(hosts, rollbackStart)}
	}
	return hosts, span
}

// journalSteps pairs each step-end with its step-start, per host and step
// in order. One whose start is missing has no timing.
type journalSteps struct {
	byHost map[string]*timeline.Host
	order  []string
	open   map[[2]string][]int // host and step -> indexes of its steps started, not ended
}

func (j *journalSteps) add(ev state.JournalEvent) {
	if ev.Host == "" || (ev.Kind != "step-start" && ev.Kind != "step-end") {
		return
	}
	h := j.byHost[ev.Host]
	if h == nil {
		h = &timeline.Host{Name: ev.Host}
		j.byHost[ev.Host] = h
		j.order = append(j.order, ev.Host)
	}
	k := [2]string{ev.Host, ev.Step}
	phase, name := splitStepID(ev.Step)
	if ev.Kind == "step-start" {
		j.open[k] = append(j.open[k], len(h.Steps))
		h.Steps = append(h.Steps, timeline.Step{Phase: phase, Name: name, Status: timeline.StatusUnfinished, Start: ev.Time})
		return
	}
	st := timeline.Step{Phase: phase, Name: name, End: ev.Time, Status: ev.Status, Detail: stepDetail(ev.Detail, ev.Error)}
	idx := j.open[k]
	if len(idx) == 0 {
		h.Steps = append(h.Steps, st) // an end without its start: no timing
		return
	}
	st.Start = h.Steps[idx[0]].Start
	h.Steps[idx[0]], j.open[k] = st, idx[1:]
}

// hostsFromSummaries is each host's steps from its run summary. A summary
// records each step's duration but (so far) not its start: such steps are
// placed one after the other from the run's start, marked so, and placed
// says there were some.
func hostsFromSummaries(summaries []state.HostRunSummary) (hosts []timeline.Host, placed bool) {
	seen := map[string]bool{}
	for _, s := range summaries {
		if seen[s.Host] {
			continue
		}
		seen[s.Host] = true
		h := timeline.Host{Name: s.Host}
		cursor := s.Started
		for _, sr := range s.Steps {
			st := timeline.Step{Phase: sr.Phase, Name: sr.Name, Status: sr.Status, Detail: stepDetail(sr.Detail, sr.Error), Duration: sr.Elapsed}
			switch {
			case !sr.Started.IsZero():
				st.Start, st.End = sr.Started, sr.Started.Add(sr.Elapsed)
			case !cursor.IsZero():
				st.Start, st.End, st.Approx = cursor, cursor.Add(sr.Elapsed), true
				placed = true
			}
			if !st.End.IsZero() {
				cursor = st.End
			}
			h.Steps = append(h.Steps, st)
		}
		hosts = append(hosts, h)
	}
	return hosts, placed
}

// rollbackFromSteps is the automatic rollback's span from its steps, when a
// deploy (not a rollback run) has some.
func rollbackFromSteps(command string, hosts []timeline.Host) *timeline.Span {
	if command == "rollback" {
		return nil
	}
	var start time.Time
	for _, h := range hosts {
		for _, s := range h.Steps {
			if s.Phase == timeline.PhaseRollback && s.Timed() && (start.IsZero() || s.Start.Before(start)) {
				start = s.Start
			}
		}
	}
	if start.IsZero() {
		return nil
	}
	return &timeline.Span{Label: "automatic rollback", Start: start, End: rollbackEnd(hosts, start)}
}

// rollbackEnd is when the last rollback step ended (start when none did).
func rollbackEnd(hosts []timeline.Host, start time.Time) time.Time {
	end := start
	for _, h := range hosts {
		for _, s := range h.Steps {
			if s.Phase == timeline.PhaseRollback && s.Timed() && s.End.After(end) {
				end = s.End
			}
		}
	}
	return end
}

// markRolledBack marks a step the rollback undid (its undo-NAME step ran
// ok on the host) as rolled back.
func markRolledBack(hosts []timeline.Host) {
	for _, h := range hosts {
		undone := map[string]bool{}
		for _, s := range h.Steps {
			if s.Phase == timeline.PhaseRollback && s.Status == timeline.StatusOK {
				if name, ok := strings.CutPrefix(s.Name, "undo-"); ok {
					undone[name] = true
				}
			}
		}
		for i, s := range h.Steps {
			if s.Phase != timeline.PhaseRollback && s.Phase != timeline.PhasePreflight && s.Status == timeline.StatusOK && undone[s.Name] {
				h.Steps[i].Status = timeline.StatusRolledBack
			}
		}
	}
}

// splitStepID splits "phase/name".
func splitStepID(id string) (phase, name string) {
	if p, n, ok := strings.Cut(id, "/"); ok {
		return p, n
	}
	return "", id
}

// stepDetail is what a step's tooltip says: its error, else its detail.
func stepDetail(detail, err string) string {
	if err != "" {
		return err
	}
	return detail
}

// writeTimeline renders run to path atomically: a temporary file beside
// it, renamed over it once complete.
func writeTimeline(path string, run *timeline.Run) error {
	var b bytes.Buffer
	if err := timeline.Render(&b, run); err != nil {
		return fmt.Errorf("rendering the timeline: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing the timeline: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	// The page holds step details and errors from a 0600 journal: it stays
	// 0600 (CreateTemp's mode), whatever the umask.
	_, err = tmp.Write(b.Bytes())
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("writing the timeline %s: %w", path, err)
	}
	return nil
}

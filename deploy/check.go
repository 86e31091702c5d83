package deploy

import (
	"context"
	"errors"
	"fmt"
	"github.com/relctl/relctl/internal/shellquote"
	"strconv"
	"strings"

	"github.com/relctl/relctl/healthcheck"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/playbooks"
)

// CheckOptions select what `relctl check` looks at.
type CheckOptions struct {
	Env      string
	Playbook string
	Hosts    []string
	// Release, when set, is the candidate: its artifact must fit on every
	// host and its watchdog snippet must pass there too.
	Release string
	RunID   string
}

// CheckReport is `relctl check`: per host, every check and how it ended.
type CheckReport struct {
	Env     string        `json:"environment"`
	Release string        `json:"release,omitempty"`
	Hosts   []*HostReport `json:"hosts"`
}

// Failed lists the hosts where a check failed or that could not be reached.
func (r *CheckReport) Failed() []string {
	var out []string
	for _, h := range r.Hosts {
		if h.Error != "" || !h.Reached {
			out = append(out, h.Name)
			continue
		}
		for _, s := range h.Steps {
			if s.Status == StatusFailed {
				out = append(out, h.Name)
				break
			}
		}
	}
	return out
}

// ErrChecksFailed is returned by Check when any host failed a check.
var ErrChecksFailed = errors.New("checks failed")

// Check runs, on every host and changing nothing, what a deploy would check
// before moving traffic: reachability, rollback readiness of the current
// release, its watchdog config and health; with a candidate release, free
// disk space for its artifact and its watchdog config too.
func (e *Engine) Check(ctx context.Context, proj *playbooks.Project, opts CheckOptions) (*CheckReport, error) {
	version := opts.Release
	if version == "" {
		version = "0.0.0-check"
	}
	p, err := BuildPlan(proj, PlanOptions{Env: opts.Env, Version: version, Playbook: opts.Playbook, Hosts: opts.Hosts,
		RunID: opts.RunID, SkipArtifact: opts.Release == ""})
	if err != nil {
		return nil, err
	}
	p.Kind = "check"
	rep := &CheckReport{Env: p.Env, Release: opts.Release}
	r := &run{engine: e, plan: p, runs: map[string]*hostRun{}, stop: make(chan struct{}), done: make(chan struct{})}
	r.report = &Report{RunID: p.RunID, Kind: p.Kind, Env: p.Env, Version: p.Version}
	for _, hp := range p.Hosts() {
		hr := &HostReport{Name: hp.Name, Address: hp.Address}
		r.report.Hosts = append(r.report.Hosts, hr)
		rep.Hosts = append(rep.Hosts, hr)
	}
	_ = e.forEach(ctx, p.Hosts(), e.MaxParallel, func(ctx context.Context, hp *HostPlan) error {
		if err := r.connect(ctx, hp); err != nil {
			return err
		}
		r.mu.Lock()
		h := r.runs[hp.Name] // other hosts are connecting at the same time
		r.mu.Unlock()
		if err := h.learnState(ctx); err != nil {
			return err
		}
		steps, err := hostCheckSteps(p, hp, opts.Release != "")
		if err != nil {
			return err
		}
		for _, s := range steps {
			if _, err := h.runStepOnly(ctx, s); err != nil && ctx.Err() != nil {
				return err
			}
		}
		return nil
	})
	if bad := rep.Failed(); len(bad) > 0 {
		return rep, fmt.Errorf("%w on %s", ErrChecksFailed, strings.Join(bad, ", "))
	}
	return rep, nil
}

// runStepOnly runs a step and records its result, without treating the host
// as touched.
func (h *hostRun) runStepOnly(ctx context.Context, s *Step) (*StepResult, error) {
	h.engine.emit(Event{Kind: StepStarted, Plan: h.plan, Host: h.host.Name, Step: s})
	res, err := h.execute(ctx, s, s.Action.Do)
	h.report.Steps = append(h.report.Steps, res)
	h.engine.emit(Event{Kind: StepDone, Plan: h.plan, Host: h.host.Name, Result: res})
	return res, err
}

// hostChecksSteps are the read-only checks of one host: the features'
// (rollback readiness, watchdog) around free disk space for a candidate,
// then one probe of every health check.
func hostCheckSteps(p *Plan, hp *HostPlan, candidate bool) ([]*Step, error) {
	slots, err := collect(func(f feature, add *stepSlots) error { return f.checkSteps(p, hp, candidate, add) })
	if err != nil {
		return nil, err
	}
	var core []*Step
	if candidate {
		core = append(core, &Step{Phase: phaseCheck, Name: "disk-space", Kind: "disk-space",
			Action: &diskSpaceAction{need: 2*p.Artifact.Size + 1<<20}})
	}
	health := &Step{Phase: phaseCheck, Name: "health", Kind: playbooks.StepCheck, Action: &currentHealthProbe{plan: p}}
	return append(slots.around(phaseCheck, core), health), nil
}

// diskSpaceAction requires room for the artifact and its unpacked copy.
type diskSpaceAction struct{ need int64 }

func (a *diskSpaceAction) Do(ctx context.Context, h *hostRun) (string, error) {
	dir := h.host.Layout.BaseDir
	res, err := h.conn.Run(ctx, "mkdir -p -- "+shellquote.Quote(dir)+" && df -Pk -- "+shellquote.Quote(dir), transport.RunOptions{Label: "check/disk-space"})
	if err != nil {
		return "", err
	}
	lines := strings.Split(strings.TrimSpace(string(res.Stdout)), "\n")
	fields := strings.Fields(lines[len(lines)-1])
	if len(fields) < 4 {
		return "", fmt.Errorf("cannot read df output: %q", res.Stdout)
	}
	freeKB, err := strconv.ParseInt(fields[3], 10, 64)
	if err != nil {
		return "", fmt.Errorf("cannot read df output: %q", res.Stdout)
	}
	if free := freeKB * 1024; free < a.need {
		return "", fmt.Errorf("%s has %s free, the release needs %s", dir, humanBytes(free), humanBytes(a.need))
	}
	return fmt.Sprintf("%s free, needs %s", humanBytes(freeKB*1024), humanBytes(a.need)), nil
}

// currentWatchdogCheck checks the watchdog snippet of the release the host
// runs now, from its release directory.
type currentWatchdogCheck struct{ plan *Plan }

func (a *currentWatchdogCheck) Do(ctx context.Context, h *hostRun) (string, error) {
	cur := h.state.Current
	if cur == "" {
		return "no current release", nil
	}
	hp, err := h.withVersion(cur)
	if err != nil {
		return "", err
	}
	checks, err := hostChecks(a.plan.pb, hp)
	if err != nil {
		return "", err
	}
	spec, err := newWatchdogSpec(a.plan.pb, hp, checks)
	if err != nil {
		return "", err
	}
	return (&watchdogCheckAction{spec: spec}).Do(ctx, h)
}

// candidateWatchdogCheck checks the candidate release's snippet, read from
// the local artifact (nothing is uploaded); files the snippet names inside
// the new release are looked up in the artifact.
type candidateWatchdogCheck struct{ plan *Plan }

func (a *candidateWatchdogCheck) Do(ctx context.Context, h *hostRun) (string, error) {
	checks, err := hostChecks(a.plan.pb, h.host)
	if err != nil {
		return "", err
	}
	spec, err := newWatchdogSpec(a.plan.pb, h.host, checks)
	if err != nil {
		return "", err
	}
	// One index of the artifact serves every host: its entries and the
	// snippet, never the other files' contents (they are searched streaming).
	index := indexFor(a.plan.Artifact, spec.Snippet)
	tmpl, ok, err := index.keptFile(ctx)
	if err != nil {
		return "", fmt.Errorf("the artifact %s: %w", a.plan.Artifact.Name, err)
	}
	if !ok {
		return "", fmt.Errorf("the artifact %s has no %s", a.plan.Artifact.Name, spec.Snippet)
	}
	rendered, err := playbooks.RenderText(spec.Snippet, string(tmpl), spec.data)
	if err != nil {
		return "", fmt.Errorf("%s: %w", spec.Snippet, err)
	}
	host := &hostFS{conn: h.conn}
	return (&watchdogCheckAction{spec: spec}).validate(ctx, h, []byte(rendered),
		&artifactFS{index: index, root: spec.ReleaseDir, current: spec.CurrentDir, host: host})
}

// currentHealthProbe probes each health check once against the current release.
type currentHealthProbe struct{ plan *Plan }

func (a *currentHealthProbe) Do(ctx context.Context, h *hostRun) (string, error) {
	cur := h.state.Current
	if cur == "" {
		return "", errors.New("no release is active")
	}
	hp, err := h.withVersion(cur)
	if err != nil {
		return "", err
	}
	checks, err := hostChecks(a.plan.pb, hp)
	if err != nil {
		return "", err
	}
	var ok, failed []string
	for _, c := range checks {
		observed, err := healthcheck.Probe(ctx, c, h.conn)
		if err != nil {
			failed = append(failed, c.Name+": "+err.Error())
			continue
		}
		ok = append(ok, c.Name+": "+observed)
	}
	if len(failed) > 0 {
		return "", errors.New(strings.Join(failed, "; "))
	}
	return strings.Join(ok, "; "), nil
}

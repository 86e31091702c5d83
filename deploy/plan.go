// Package deploy is relctl's engine: it turns configuration into a Plan
// (hosts in batches, canary first; per host an ordered list of steps) and
// executes it over a transport with bounded parallelism, reporting every
// step through an Observer. It knows nothing of cobra or the terminal.
package deploy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/relctl/relctl/internal/fleet"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/playbooks"
)

// ErrBadInput marks errors in what the user asked for (exit code 2).
var ErrBadInput = errors.New("bad input")

func badInput(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadInput, fmt.Sprintf(format, args...))
}

// Kinds of run.
const (
	KindDeploy   = "deploy"
	KindRollback = "rollback"
)

// Plan is everything a deploy (or a rollback) will do, computed without
// touching a host. The same engine executes both kinds.
type Plan struct {
	RunID string `json:"run_id"`
	Kind  string `json:"kind"`
	// AutoRollback: on failure, undo every touched host (deploys; a rollback
	// run is not itself rolled back).
	AutoRollback bool `json:"auto_rollback"`
	// ProveSupervision: after monit runs the service, kill it and require
	// that monit restarts it (playbooks with a [watchdog]).
	ProveSupervision bool `json:"prove_supervision,omitempty"`
	// From is the release the fleet ran before (rollback runs: the release rolled back from).
	From         string        `json:"from,omitempty"`
	Project      string        `json:"project"`
	Env          string        `json:"environment"`
	Version      string        `json:"release"`
	Playbook     string        `json:"playbook"`
	Artifact     ArtifactInfo  `json:"artifact"`
	Digest       string        `json:"release_digest"`
	KeepReleases int           `json:"keep_releases"`
	MaxParallel  int           `json:"max_parallel"`
	Pause        time.Duration `json:"pause"`
	Batches      []*Batch      `json:"batches"`
	// Move is the [move]: old hosts and dependents (nil when the run does
	// not move, cut over, move back or finalize).
	Move *MoveSummary `json:"move,omitempty"`
	// After are the steps after the last batch, in order: a move's steps on
	// load balancers, dependents, old hosts and the new hosts' record.
	After []*HostStep `json:"after_batches,omitempty"`
	// UndoAfter: the run undoes After in reverse instead of doing it (a
	// move back: the automatic rollback's reverse walk, from the record).
	UndoAfter bool `json:"undo_after_batches,omitempty"`

	// trafficPerHost: [traffic] is switched per host (no move to cut over,
	// or the move is cut over already or being resumed).
	trafficPerHost bool
	// afterResumed: After finishes an unfinished run's steps (a cutover),
	// whose changes the rollback undoes too.
	afterResumed bool
	proj         *playbooks.Project
	pb           *playbooks.Playbook
	env          *playbooks.Environment
}

// Batch is a set of hosts deployed together; the first may be the canary.
type Batch struct {
	Index  int         `json:"index"` // 1-based
	Canary bool        `json:"canary"`
	Hosts  []*HostPlan `json:"hosts"`
}

// HostPlan is one host's ordered steps.
type HostPlan struct {
	Name    string                  `json:"name"`
	Address string                  `json:"address"`
	Target  transport.Target        `json:"-"`
	Layout  state.Layout            `json:"-"`
	Data    *playbooks.TemplateData `json:"-"`
	Steps   []*Step                 `json:"steps"`

	checks map[string]*playbooks.Check
	host   *playbooks.Host
	// artifact is this host's pulled artifact when it is not the plan's
	// (artifact.url rendered for this host: its own URL, same file).
	artifact *ArtifactInfo
}

// Step is one named unit of work on a host.
type Step struct {
	Phase  string `json:"phase"`
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	Action Action `json:"-"`
	// Describe is what the step will do, for `relctl plan`; Undo what its
	// undo does, when that is not in Describe already.
	Describe string `json:"describe"`
	Undo     string `json:"undo,omitempty"`
}

// CanUndo says whether the step has an undo (the reverse walk runs it).
func (s *Step) CanUndo() bool {
	_, ok := s.Action.(Undoer)
	return ok
}

// UndoNeeded says whether the step's undo has something to put back, as
// far as the plan knows (a move back: what the move record holds); why
// says why not. The reverse walk skips an undo that is not needed.
func (s *Step) UndoNeeded() (needed bool, why string) {
	if u, ok := s.Action.(undoNeeder); ok {
		return u.undoNeeded()
	}
	return s.CanUndo(), ""
}

// ID is "phase/name", the step's name in logs and reports.
func (s *Step) ID() string { return s.Phase + "/" + s.Name }

// Hosts lists every host in batch order.
func (p *Plan) Hosts() []*HostPlan {
	var out []*HostPlan
	for _, b := range p.Batches {
		out = append(out, b.Hosts...)
	}
	return out
}

// PlanOptions select what to plan.
type PlanOptions struct {
	Env      string
	Version  string
	Playbook string // required when more than one playbook applies to Env
	RunID    string
	// Hosts limits the plan to these host names (all targeted hosts when empty).
	Hosts []string
	// SkipArtifact plans without reading the artifact (validation of templates only).
	SkipArtifact bool
	// MoveDone: the playbook's [move] is already cut over (its record on
	// the new hosts says so): deploy to the new hosts without moving again.
	MoveDone bool
	// MoveResume is a cutover that did not finish (its record says
	// cutting-over): the new one keeps its saved states.
	MoveResume *MoveRecord
	// ProveSupervision: see Plan.ProveSupervision.
	ProveSupervision bool
}

// BuildPlan resolves hosts, batches, artifact and per-host steps.
func BuildPlan(proj *playbooks.Project, opts PlanOptions) (*Plan, error) {
	if err := playbooks.ValidateVersion(opts.Version); err != nil {
		return nil, badInput("release %q: %v", opts.Version, err)
	}
	env, pb, hosts, err := resolveTargets(proj, opts.Env, opts.Playbook, opts.Hosts)
	if err != nil {
		return nil, err
	}

	p := &Plan{
		RunID: opts.RunID, Kind: KindDeploy, AutoRollback: true, ProveSupervision: opts.ProveSupervision,
		Project: proj.Config.Project, Env: env.Name, Version: opts.Version,
		Playbook: pb.Name, KeepReleases: pb.KeepReleases,
		MaxParallel: pb.Strategy.MaxParallel, Pause: pb.Strategy.Pause.Duration,
		proj: proj, pb: pb, env: env,
		// A move switches traffic once, for all hosts; once (or while
		// resuming after) it may carry the traffic, its new hosts are
		// drained per host.
		trafficPerHost: pb.Move == nil || opts.MoveDone || opts.MoveResume != nil,
	}
	var hostPlans []*HostPlan
	arts := &planArtifact{cfg: proj.Config, pb: pb, skip: opts.SkipArtifact}
	for _, h := range hosts {
		hp, err := newHostPlan(p, h)
		if err != nil {
			return nil, err
		}
		if err := arts.add(p, hp); err != nil {
			return nil, err
		}
		if hp.Steps, err = buildSteps(pb, p, hp); err != nil {
			return nil, err
		}
		hostPlans = append(hostPlans, hp)
	}
	batches, err := batchHosts(hostPlans, pb.Strategy)
	if err != nil {
		return nil, err
	}
	p.Batches = batches
	if pb.Move != nil && !opts.SkipArtifact && !opts.MoveDone {
		mv, err := renderMove(p, hostPlans, opts.MoveResume)
		if err != nil {
			return nil, err
		}
		p.Move, p.After = &mv.summary, mv.cutoverSteps()
	}
	return p, nil
}

// resolveTargets finds the environment, the playbook and its target hosts
// (only the named ones when only is set).
func resolveTargets(proj *playbooks.Project, envName, playbook string, only []string) (*playbooks.Environment, *playbooks.Playbook, []*playbooks.Host, error) {
	env, err := proj.Environment(envName)
	if err != nil {
		return nil, nil, nil, badInput("%v", err)
	}
	pb, err := choosePlaybook(proj, envName, playbook)
	if err != nil {
		return nil, nil, nil, err
	}
	hosts, err := selectHosts(pb.TargetHosts(env), only, env.Name)
	if err != nil {
		return nil, nil, nil, err
	}
	if len(hosts) == 0 {
		return nil, nil, nil, badInput("playbook %s targets roles %v but environment %s has no host with them", pb.Name, pb.Roles, env.Name)
	}
	return env, pb, hosts, nil
}

// newHostPlan is one host's plan, its templates rendered for p.Version; the
// steps are the caller's to add.
func newHostPlan(p *Plan, h *playbooks.Host) (*HostPlan, error) {
	data, err := p.proj.Data(p.pb, p.env, h, p.Version, p.RunID)
	if err != nil {
		return nil, badInput("host %s: %v", h.Name, err)
	}
	return &HostPlan{
		Name: h.Name, Address: h.Address, Data: data,
		Target: fleet.Target(p.proj.Config, h),
		Layout: state.Layout{BaseDir: data.BaseDir},
		checks: p.pb.Checks, host: h,
	}, nil
}

func choosePlaybook(proj *playbooks.Project, env, name string) (*playbooks.Playbook, error) {
	pbs, err := proj.PlaybooksFor(env)
	if err != nil {
		return nil, badInput("%v", err)
	}
	if name != "" {
		for _, pb := range pbs {
			if pb.Name == name {
				return pb, nil
			}
		}
		return nil, badInput("playbook %q does not apply to environment %s (it has: %s)", name, env, playbookNames(pbs))
	}
	switch len(pbs) {
	case 0:
		return nil, badInput("no playbook applies to environment %s", env)
	case 1:
		return pbs[0], nil
	}
	return nil, badInput("environment %s has several playbooks (%s): choose one with --playbook", env, playbookNames(pbs))
}

func playbookNames(pbs []*playbooks.Playbook) string {
	names := make([]string, len(pbs))
	for i, pb := range pbs {
		names[i] = pb.Name
	}
	return strings.Join(names, ", ")
}

func selectHosts(targeted []*playbooks.Host, only []string, env string) ([]*playbooks.Host, error) {
	if len(only) == 0 {
		return targeted, nil
	}
	byName := map[string]*playbooks.Host{}
	for _, h := range targeted {
		byName[h.Name] = h
	}
	var out []*playbooks.Host
	seen := map[string]bool{}
	for _, n := range only {
		if seen[n] {
			return nil, badInput("host %q is listed twice in --hosts", n)
		}
		seen[n] = true
		h, ok := byName[n]
		if !ok {
			return nil, badInput("host %q is not a target of this playbook in environment %s", n, env)
		}
		out = append(out, h)
	}
	return out, nil
}

// ReleaseDigest identifies what is released: the version, the artifact and
// the playbook that ships it. The same on every host.
func ReleaseDigest(pb *playbooks.Playbook, version, artifactSHA string) (string, error) {
	body, err := os.ReadFile(pb.Path)
	if err != nil {
		return "", fmt.Errorf("reading playbook: %w", err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "relctl-release-v1\nversion %s\nartifact %s\nplaybook %d\n", version, artifactSHA, len(body))
	h.Write(body)
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// batchHosts puts the canary hosts first, then batches of batch_size.
func batchHosts(hosts []*HostPlan, s playbooks.Strategy) ([]*Batch, error) {
	size, err := BatchSize(s.BatchSize, len(hosts))
	if err != nil {
		return nil, badInput("strategy.batch_size: %v", err)
	}
	var batches []*Batch
	rest := hosts
	if c := min(s.Canary, len(hosts)); c > 0 {
		batches = append(batches, &Batch{Canary: true, Hosts: rest[:c]})
		rest = rest[c:]
	}
	for len(rest) > 0 {
		n := min(size, len(rest))
		batches = append(batches, &Batch{Hosts: rest[:n]})
		rest = rest[n:]
	}
	for i, b := range batches {
		b.Index = i + 1
	}
	return batches, nil
}

// BatchSize resolves a batch_size (a count, or "N%" of total hosts, rounded
// up) to a host count of at least 1.
func BatchSize(v any, total int) (int, error) {
	switch x := v.(type) {
	case nil:
		return 1, nil
	case int64:
		if x < 1 {
			return 0, fmt.Errorf("must be at least 1, got %d", x)
		}
		return int(min(x, int64(math.MaxInt32))), nil
	case int:
		return BatchSize(int64(x), total)
	case string:
		pct, ok := strings.CutSuffix(strings.TrimSpace(x), "%")
		if !ok {
			n, err := strconv.Atoi(x)
			if err != nil {
				return 0, fmt.Errorf("%q is neither a count nor a percentage like \"25%%\"", x)
			}
			return BatchSize(int64(n), total)
		}
		f, err := strconv.ParseFloat(pct, 64)
		if err != nil || math.IsNaN(f) || f <= 0 || f > 100 {
			return 0, fmt.Errorf("%q: a percentage must be above 0%% and at most 100%%", x)
		}
		return max(1, int(math.Ceil(f*float64(total)/100))), nil
	}
	return 0, fmt.Errorf("must be a count or a percentage string, got %T", v)
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// SecretNames lists the secrets the plan's playbook refers to in its run
// steps and rollback steps: what a run of it resolves before it starts.
func (p *Plan) SecretNames() []string {
	if p == nil || p.pb == nil || p.proj == nil {
		return nil
	}
	return p.pb.SecretNames(p.proj.Config)
}

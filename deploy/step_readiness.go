package deploy

import (
	"context"
	"fmt"
	"github.com/relctl/relctl/internal/shellquote"
	"strings"

	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/playbooks"
)

func readinessStep(pb *playbooks.Playbook, target string) *Step {
	what := "the current release"
	if target != "" {
		what = "release " + target
	}
	checks := "its directory and artifact sha256 match history"
	if len(pb.Rollback.Requires) > 0 {
		checks += "; " + strings.Join(pb.Rollback.Requires, ", ") + " present"
	}
	return &Step{
		Phase: playbooks.PhasePreflight, Name: kindReadiness, Kind: kindReadiness,
		Action:   &readinessAction{Target: target, Requires: pb.Rollback.Requires},
		Describe: fmt.Sprintf("check %s can be rolled back to: %s", what, checks),
	}
}

// readinessAction proves, before any host is switched, that the release a
// rollback would return to is intact on the host: its directory exists, its
// artifact still has the sha256 history recorded, and the files the playbook
// requires of a rollback target are there.
type readinessAction struct {
	Target   string // "" means the host's current release
	Requires []string
}

func (a *readinessAction) Do(ctx context.Context, h *hostRun) (string, error) {
	st := h.state
	target := a.Target
	if target == "" {
		// What this host returns to if the run fails: what it ran before.
		target = h.report.Before
	}
	if target == "" {
		return "no current release (first deploy): nothing to roll back to", nil
	}
	if a.Target == "" && target == h.plan.Version && h.plan.Kind == KindDeploy {
		// Re-deploying the current release: this run re-uploads and repairs it.
		return "current is " + target + ", the release being deployed again", nil
	}
	act := latestActivation(&st.History, target)
	layout := h.host.Layout
	var script strings.Builder
	dir := shellquote.Quote(layout.Release(target))
	fmt.Fprintf(&script, "test -d %s || printf 'missing: release directory %%s\\n' %s\n", dir, dir)
	for _, r := range a.Requires {
		fmt.Fprintf(&script, "test -e %s || echo %s\n", shellquote.Quote(layout.Release(target)+"/"+r), shellquote.Quote("missing: "+r))
	}
	checked := []string{"directory"}
	limit := transport.ControlLimit
	if act != nil && act.Artifact != "" && act.ArtifactSHA256 != "" {
		art := layout.Release(target) + "/" + act.Artifact
		fmt.Fprintf(&script, "s=$(sha256sum -- %s 2>/dev/null) || s=unreadable; echo \"artifact: ${s%%%% *}\"\n", shellquote.Quote(art))
		checked = append(checked, "artifact sha256")
		limit = transport.CommandLimit // hashing takes as long as the artifact is big
	}
	res, err := h.conn.Run(ctx, script.String(), transport.RunOptions{Label: "preflight/" + kindReadiness, Limit: limit})
	if err != nil {
		return "", err
	}
	var problems []string
	for _, line := range strings.Split(strings.TrimSpace(string(res.Stdout)), "\n") {
		switch {
		case strings.HasPrefix(line, "missing: "):
			problems = append(problems, line)
		case strings.HasPrefix(line, "artifact: "):
			got := strings.TrimPrefix(line, "artifact: ")
			if got != act.ArtifactSHA256 {
				problems = append(problems, fmt.Sprintf("artifact %s has sha256 %s, history recorded %s", act.Artifact, got, act.ArtifactSHA256))
			}
		}
	}
	if len(problems) > 0 {
		return "", fmt.Errorf("cannot roll back to %s: %s", target, strings.Join(problems, "; "))
	}
	checked = append(checked, a.Requires...)
	return fmt.Sprintf("rollback target %s intact (%s)", target, strings.Join(checked, ", ")), nil
}

// latestActivation is the newest activation of version in history, or nil.
func latestActivation(h *state.History, version string) *state.Activation {
	for i := len(h.Activations) - 1; i >= 0; i-- {
		if h.Activations[i].Version == version {
			return &h.Activations[i]
		}
	}
	return nil
}

// readinessFeature proves, in preflight, that what a rollback would return
// to is intact: the current release for a deploy, the target for a rollback.
type readinessFeature struct{}

func (readinessFeature) deploySteps(p *Plan, _ *HostPlan, add *stepSlots) error {
	add.after(playbooks.PhasePreflight, readinessStep(p.pb, ""))
	return nil
}

func (readinessFeature) rollbackSteps(p *Plan, _ *HostPlan, _ bool, add *stepSlots) error {
	add.after(playbooks.PhasePreflight, readinessStep(p.pb, p.Version))
	return nil
}

func (readinessFeature) restoreSteps(*Plan, *HostPlan, *stepSlots) error { return nil }

func (readinessFeature) checkSteps(p *Plan, _ *HostPlan, _ bool, add *stepSlots) error {
	s := readinessStep(p.pb, "")
	s.Phase = phaseCheck
	add.before(phaseCheck, s)
	return nil
}

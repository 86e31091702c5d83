package deploy

import (
	"fmt"
	"strings"

	"github.com/relctl/relctl/playbooks"
)

// watchdogFeature is a playbook's [watchdog] (monit or systemd): the
// release's snippet is checked before any host changes and installed with
// the release; monit lets go of the service while relctl restarts it and
// takes it back after; a rollback puts the old snippet back.
type watchdogFeature struct{}

func (watchdogFeature) deploySteps(p *Plan, hp *HostPlan, add *stepSlots) error {
	if p.pb.Watchdog == nil {
		return nil
	}
	if p.Artifact.SHA256 != strings.Repeat("0", 64) {
		// Every host, before any host changes: the candidate's snippet,
		// read from the local artifact, against each host's monit.
		add.after(playbooks.PhasePreflight, &Step{Phase: playbooks.PhasePreflight, Name: "watchdog-precheck", Kind: kindWatchdogCheck,
			Action:   &candidateWatchdogCheck{plan: p},
			Describe: fmt.Sprintf("before any host changes: %s from the artifact, checked against this host's %s", p.pb.Watchdog.Snippet, p.pb.Watchdog.Kind)})
	}
	check, install, err := watchdogSteps(p, hp)
	if err != nil {
		return badInput("host %s: watchdog: %v", hp.Name, err)
	}
	add.after(playbooks.PhaseStage, check)
	// Out of monit's hands before relctl restarts the service itself.
	if err := addUnmonitor(p, hp, playbooks.PhaseActivate, add.before); err != nil {
		return err
	}
	add.after(playbooks.PhaseActivate, install)
	return nil
}

func (watchdogFeature) rollbackSteps(p *Plan, hp *HostPlan, switching bool, add *stepSlots) error {
	if p.pb.Watchdog == nil {
		return nil
	}
	if !switching {
		// Already on the target: its [rollback] steps run only if it is
		// unhealthy, out of monit's hands; monit gets the service back
		// after them, or after a rollback that stopped between its
		// unmonitor and its watchdog-install.
		unmonitor, err := watchdogUnmonitorStep(p, hp, playbooks.PhaseActivate)
		if err != nil {
			return badInput("host %s: watchdog: %v", hp.Name, err)
		}
		if unmonitor == nil {
			return nil
		}
		supervised, err := watchdogSupervisedStep(p, hp, playbooks.PhaseActivate)
		if err != nil {
			return badInput("host %s: watchdog: %v", hp.Name, err)
		}
		add.before(phaseRestore, unmonitor)
		add.after(playbooks.PhaseActivate, supervised)
		return nil
	}
	// The target's watchdog config is checked before any host switches,
	// and going back to a release means going back to its watchdog config.
	check, install, err := watchdogSteps(p, hp)
	if err != nil {
		return badInput("host %s: watchdog: %v", hp.Name, err)
	}
	check.Phase = playbooks.PhasePreflight
	add.after(playbooks.PhasePreflight, check)
	// The [rollback] steps restart the service: out of monit's hands
	// first; watchdog-install hands it back.
	if err := addUnmonitor(p, hp, playbooks.PhaseActivate, add.before); err != nil {
		return err
	}
	add.after(playbooks.PhaseActivate, install)
	return nil
}

// restoreSteps: the [rollback] steps restart the service, so monit must
// not race them; the old snippet is back (its undo ran first), so monit
// gets the service back after them, and relctl waits until it supervises
// the restored release before its health is checked.
func (watchdogFeature) restoreSteps(p *Plan, hp *HostPlan, add *stepSlots) error {
	if p.pb.Watchdog == nil {
		return nil
	}
	if err := addUnmonitor(p, hp, phaseRollback, add.before); err != nil {
		return err
	}
	supervised, err := watchdogSupervisedStep(p, hp, phaseRollback)
	if err != nil {
		return err
	}
	add.after(phaseRollback, supervised)
	return nil
}

func (watchdogFeature) checkSteps(p *Plan, _ *HostPlan, candidate bool, add *stepSlots) error {
	if p.pb.Watchdog == nil {
		return nil
	}
	add.after(phaseCheck, &Step{Phase: phaseCheck, Name: "watchdog-current", Kind: kindWatchdogCheck,
		Action: &currentWatchdogCheck{plan: p}})
	if candidate {
		add.after(phaseCheck, &Step{Phase: phaseCheck, Name: "watchdog-" + p.Version, Kind: kindWatchdogCheck,
			Action: &candidateWatchdogCheck{plan: p}})
	}
	return nil
}

// addUnmonitor adds the watchdog-unmonitor step under phase with add (only
// with monit: systemd's own restart is the one relctl asks for).
func addUnmonitor(p *Plan, hp *HostPlan, phase string, add func(phase string, steps ...*Step)) error {
	unmonitor, err := watchdogUnmonitorStep(p, hp, phase)
	if err != nil {
		return badInput("host %s: watchdog: %v", hp.Name, err)
	}
	if unmonitor != nil {
		add(phase, unmonitor)
	}
	return nil
}

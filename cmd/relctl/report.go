package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/relctl/relctl/deploy"
)

// printReport is the result table: where each host was and is now.
func printReport(w io.Writer, rep *deploy.Report) {
	if rep == nil {
		return
	}
	t := newTable(w, "HOST", "BEFORE", "AFTER", "RESULT")
	for _, h := range rep.Hosts {
		t.row(h.Name, orDash(h.Before), orDash(h.After), hostResult(h))
	}
	t.flush()
	if len(rep.MoveSteps) > 0 {
		fmt.Fprintln(w, "\nMove (load balancers, dependents, old hosts):")
		t := newTable(w, "HOST", "STEP", "RESULT", "DETAIL")
		for _, s := range rep.MoveSteps {
			detail := s.Detail
			if s.Error != "" {
				detail = firstLine(s.Error)
			}
			t.row(s.Host, s.Name, s.Status, detail)
		}
		t.flush()
	}
	if rep.MoveUnresolved != "" {
		fmt.Fprintf(w, "MOVE NOT UNDONE: traffic or dependents may still point at the new hosts: %s\n", firstLine(rep.MoveUnresolved))
	}
}

// hostResult is a host's RESULT column.
func hostResult(h *deploy.HostReport) string {
	failedAt := ""
	for _, s := range h.Steps {
		if s.Status == deploy.StatusFailed {
			failedAt = " at " + s.ID()
		}
	}
	switch {
	case h.Skipped:
		return "skipped (finished by the interrupted run)"
	case !h.Reached && h.Error != "":
		return "unreachable"
	case h.LeftOut != "":
		return "ABORTED: " + h.LeftOut
	case h.Rollback != nil && h.Rollback.Error != "":
		return "ROLLBACK FAILED"
	case h.Rollback != nil && h.Rollback.Healthy:
		if failedAt != "" {
			return "failed" + failedAt + ", rolled back, healthy"
		}
		return "rolled back, healthy"
	case h.Rollback != nil:
		return "rolled back, NOT healthy"
	case failedAt != "":
		return "failed" + failedAt
	case len(h.Steps) == 0:
		return "not changed"
	case !h.Touched:
		return "not changed (stopped after preflight)"
	case h.Error != "":
		return "failed"
	}
	return "ok"
}

// printFailureHelp says, per host, which steps ran, what the rollback did,
// and what to do next.
func printFailureHelp(w io.Writer, p *deploy.Plan, rep *deploy.Report, logPath string) {
	fmt.Fprintln(w, "\nSteps run per host:")
	for _, h := range rep.Hosts {
		printHostSteps(w, h)
	}
	bad := rep.Unresolved()
	switch {
	case len(bad) == 0 && rep.RolledBack:
		fmt.Fprintf(w, "Every touched host is back on its previous release and healthy.\n")
	case len(bad) == 0:
		fmt.Fprintf(w, "No host's current release was changed.\n")
	default:
		printUnresolved(w, rep, bad)
		printNextCommands(w, p, rep, bad)
	}
	fmt.Fprintf(w, "Run log: %s\n", logPath)
}

// printHostSteps is one host's steps and, after a rollback, its undo.
func printHostSteps(w io.Writer, h *deploy.HostReport) {
	if len(h.Steps) == 0 {
		return
	}
	var parts []string
	for _, s := range h.Steps {
		parts = append(parts, s.ID()+" "+s.Status)
	}
	fmt.Fprintf(w, "  %s: %s\n", h.Name, strings.Join(parts, ", "))
	if h.Rollback == nil {
		return
	}
	parts = parts[:0]
	for _, s := range h.Rollback.Steps {
		parts = append(parts, s.Name+" "+s.Status)
	}
	health := "healthy"
	if !h.Rollback.Healthy {
		health = "NOT healthy"
	}
	fmt.Fprintf(w, "  %s rollback: %s -> on %s, %s\n", h.Name, strings.Join(parts, ", "), orDash(h.After), health)
}

// printUnresolved names the hosts (and the move) not known to be restored, and why.
func printUnresolved(w io.Writer, rep *deploy.Report, bad []string) {
	fmt.Fprintf(w, "Hosts NOT known to be back on their previous release and healthy: %s\n", strings.Join(bad, ", "))
	for _, name := range bad {
		h := rep.Host(name)
		if h == nil { // the move's undo, not a host
			fmt.Fprintf(w, "  move: not undone: %s\n", firstLine(rep.MoveUnresolved))
			continue
		}
		why := "on " + orDash(h.After)
		switch {
		case h.LeftOut != "":
			why += ": " + h.LeftOut
		case h.Rollback != nil && h.Rollback.Error != "":
			why += ": " + firstLine(h.Rollback.Error)
		}
		fmt.Fprintf(w, "  %s: %s\n", name, why)
	}
}

// printNextCommands are the commands that finish the job for the unresolved hosts.
func printNextCommands(w io.Writer, p *deploy.Plan, rep *deploy.Report, bad []string) {
	fmt.Fprintf(w, "Next: relctl status --env %s\n", p.Env)
	if rep.MoveUnresolved != "" {
		fmt.Fprintf(w, "Then: relctl rollback --env %s --playbook %s --to prev (moves traffic and dependents back)\n", p.Env, p.Playbook)
	}
	versions, back := rollbackTargets(p, rep, bad)
	for _, v := range versions {
		fmt.Fprintf(w, "Then: relctl rollback --env %s --playbook %s --to %s --hosts %s\n", p.Env, p.Playbook, v, strings.Join(back[v], ","))
	}
}

// rollbackTargets groups the unresolved hosts by the release to put them
// on: the one they ran before, or a rollback's own target (to finish it).
func rollbackTargets(p *deploy.Plan, rep *deploy.Report, bad []string) (versions []string, hosts map[string][]string) {
	hosts = map[string][]string{}
	for _, name := range bad {
		h := rep.Host(name)
		if h == nil {
			continue
		}
		v := h.Before
		if p.Kind == deploy.KindRollback {
			v = p.Version
		}
		if v == "" {
			continue
		}
		if hosts[v] == nil {
			versions = append(versions, v)
		}
		hosts[v] = append(hosts[v], name)
	}
	return versions, hosts
}

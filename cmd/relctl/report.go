package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/relctl/relctl/deploy"
)

// printReport is the result table: where each host was and is now. Up to
// perHostMax hosts it has a row per host; with more, a row per outcome
// (release before, after, result) with its hosts folded, every host that
// did not end well named, and the command that shows each host.
func printReport(w io.Writer, rep *deploy.Report) {
	if rep == nil {
		return
	}
	if len(rep.Hosts) > perHostMax {
		printReportGrouped(w, rep)
	} else {
		t := newTable(w, "HOST", "BEFORE", "AFTER", "RESULT")
		for _, h := range rep.Hosts {
			t.row(h.Name, orDash(h.Before), orDash(h.After), hostResult(h))
		}
		t.flush()
	}
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

// printReportGrouped is the result table of a large run: one row per
// outcome, HOSTS last (it is the long column).
func printReportGrouped(w io.Writer, rep *deploy.Report) {
	groups := groupHosts(len(rep.Hosts), func(i int) (string, []string) {
		h := rep.Hosts[i]
		return h.Name, []string{orDash(h.Before), orDash(h.After), hostResult(h)}
	})
	t := newTable(w, "COUNT", "BEFORE", "AFTER", "RESULT", "HOSTS")
	for _, g := range groups {
		names := someHosts(g.hosts)
		if !endedWell(g.cols[2]) {
			names = allHosts(g.hosts)
		}
		t.row(fmt.Sprint(len(g.hosts)), g.cols[0], g.cols[1], g.cols[2], names)
	}
	t.flush()
	if rep.RunID != "" {
		fmt.Fprintf(w, "Per host: relctl history show %s\n", rep.RunID)
	}
}

// endedWell says a RESULT needs no one to look at its hosts; the hosts of
// any other result are all named.
func endedWell(result string) bool {
	switch result {
	case "ok", "not changed", "not changed (stopped after preflight)", "rolled back, healthy",
		"skipped (finished by the interrupted run)":
		return true
	}
	return false
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
// and what to do next. With more than perHostMax hosts, the hosts whose
// steps ended alike share a line.
func printFailureHelp(w io.Writer, p *deploy.Plan, rep *deploy.Report, logPath string) {
	fmt.Fprintln(w, "\nSteps run per host:")
	if len(rep.Hosts) > perHostMax {
		printStepsGrouped(w, rep)
	} else {
		for _, h := range rep.Hosts {
			printHostSteps(w, h)
		}
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
	steps, undo := hostSteps(h)
	if steps == "" {
		return
	}
	fmt.Fprintf(w, "  %s: %s\n", h.Name, steps)
	if undo != "" {
		fmt.Fprintf(w, "  %s rollback: %s\n", h.Name, undo)
	}
}

// printStepsGrouped is printHostSteps with one line per distinct steps (and
// one per distinct undo), the hosts folded; a host with a failed step or
// a failed or unhealthy rollback is always named.
func printStepsGrouped(w io.Writer, rep *deploy.Report) {
	groups := groupHosts(len(rep.Hosts), func(i int) (string, []string) {
		steps, undo := hostSteps(rep.Hosts[i])
		return rep.Hosts[i].Name, []string{steps, undo}
	})
	for _, g := range groups {
		if g.cols[0] == "" {
			continue
		}
		names := someHosts(g.hosts)
		if strings.Contains(g.cols[0], deploy.StatusFailed) || strings.Contains(g.cols[1], deploy.StatusFailed) ||
			strings.HasSuffix(g.cols[1], "NOT healthy") {
			names = allHosts(g.hosts)
		}
		fmt.Fprintf(w, "  %s: %s\n", names, g.cols[0])
		if g.cols[1] != "" {
			fmt.Fprintf(w, "  %s rollback: %s\n", names, g.cols[1])
		}
	}
}

// hostSteps is "stage/upload ok, ..." and, after a rollback, its undo
// "undo-activate ok, ... -> on 1.0.0, healthy"; "" without steps.
func hostSteps(h *deploy.HostReport) (steps, undo string) {
	if len(h.Steps) == 0 {
		return "", ""
	}
	var parts []string
	for _, s := range h.Steps {
		parts = append(parts, s.ID()+" "+s.Status)
	}
	steps = strings.Join(parts, ", ")
	if h.Rollback == nil {
		return steps, ""
	}
	parts = parts[:0]
	for _, s := range h.Rollback.Steps {
		parts = append(parts, s.Name+" "+s.Status)
	}
	health := "healthy"
	if !h.Rollback.Healthy {
		health = "NOT healthy"
	}
	return steps, fmt.Sprintf("%s -> on %s, %s", strings.Join(parts, ", "), orDash(h.After), health)
}

// printUnresolved names the hosts (and the move) not known to be restored,
// and why: a line per host, or with more than perHostMax hosts in the run,
// a line per reason naming all its hosts.
func printUnresolved(w io.Writer, rep *deploy.Report, bad []string) {
	fmt.Fprintf(w, "Hosts NOT known to be back on their previous release and healthy: %s\n", allHosts(bad))
	why := func(i int) (string, []string) {
		h := rep.Host(bad[i])
		if h == nil { // the move's undo, not a host
			return bad[i], []string{"not undone: " + firstLine(rep.MoveUnresolved)}
		}
		why := "on " + orDash(h.After)
		switch {
		case h.LeftOut != "":
			why += ": " + h.LeftOut
		case h.Rollback != nil && h.Rollback.Error != "":
			why += ": " + firstLine(h.Rollback.Error)
		}
		return bad[i], []string{why}
	}
	if len(rep.Hosts) <= perHostMax {
		for i := range bad {
			name, cols := why(i)
			fmt.Fprintf(w, "  %s: %s\n", name, cols[0])
		}
		return
	}
	for _, g := range groupHosts(len(bad), why) {
		fmt.Fprintf(w, "  %s: %s\n", allHosts(g.hosts), g.cols[0])
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

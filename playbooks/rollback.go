package playbooks

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// RollbackSteps lists the playbook's [[rollback.steps]], in the order
// written: what brings a restored release back into service.
func (pb *Playbook) RollbackSteps() []*Step {
	return slices.Clone(pb.Rollback.Steps)
}

func (pb *Playbook) applyRollbackDefaults(cfg *Config) {
	for i, s := range pb.Rollback.Steps {
		if s.Kind == "" {
			s.Kind = StepRun
		}
		if s.Name == "" {
			s.Name = "rollback-" + strconv.Itoa(i+1)
		}
		if !pb.pos.has(fmt.Sprintf("rollback.steps.%d.timeout", i)) {
			s.Timeout = cfg.SSH.CommandTimeout
		}
	}
}

// validateRollback checks [rollback]: requires are plain paths inside a
// release directory, and steps are run steps without phase or undo.
func (pb *Playbook) validateRollback() Problems {
	ix := pb.pos
	var ps Problems
	for i, r := range pb.Rollback.Requires {
		if err := checkRequire(r); err != nil {
			ps = append(ps, ix.problem(fmt.Sprintf("rollback.requires.%d", i), "rollback.requires: %v", err))
		}
	}
	names := map[string]string{}
	for i, s := range pb.Rollback.Steps {
		key := fmt.Sprintf("rollback.steps.%d", i)
		add := func(sub, format string, args ...any) {
			k := key
			if sub != "" {
				k += "." + sub
			}
			ps = append(ps, ix.problem(k, "rollback step %q: "+format, append([]any{s.Name}, args...)...))
		}
		if err := validName(s.Name); err != nil {
			add("name", "%v", err)
		} else if at, dup := names[s.Name]; dup {
			add("name", "duplicate rollback step name (also at %s)", at)
		} else {
			names[s.Name] = ix.where(key + ".name")
		}
		if s.Kind != StepRun {
			add("kind", "kind %q is not allowed: rollback steps are run steps (relctl switches current back itself)", s.Kind)
		}
		if s.Run == "" {
			add("", "missing run (the command)")
		}
		if s.Phase != "" || ix.has(key+".phase") {
			add("phase", "phase is not allowed: rollback steps have no phase (they run after current is switched back)")
		}
		if s.Undo != "" || ix.has(key+".undo") {
			add("undo", "undo is not allowed: a rollback step is not itself undone")
		}
		if len(s.Checks) > 0 || ix.has(key+".checks") {
			add("checks", "checks is not allowed: the playbook's check steps run after the rollback steps")
		}
		if s.Timeout.Duration <= 0 && ix.has(key+".timeout") && !ix.badDuration(key+".timeout") {
			add("timeout", "timeout must be more than 0s")
		}
		ps = append(ps, templateSyntax(ix, key+".run", s.Run, true)...)
	}
	return ps
}

// checkRequire accepts a plain relative path that stays inside the release
// directory; it is checked on hosts as-is, never rendered as a template.
func checkRequire(r string) error {
	switch {
	case strings.TrimSpace(r) == "":
		return fmt.Errorf("an entry is empty (write a path inside the release directory, e.g. \"bin/start\")")
	case strings.ContainsFunc(r, unicode.IsControl):
		return fmt.Errorf("%q contains a control character", r)
	case strings.Contains(r, "{{"):
		return fmt.Errorf("%q contains a template action; requires are plain paths, the same for every release", r)
	case path.IsAbs(r):
		return fmt.Errorf("%q is absolute; write it relative to the release directory (e.g. \"bin/start\")", r)
	case slices.Contains(strings.Split(r, "/"), ".."):
		return fmt.Errorf("%q has a \"..\" part; it must stay inside the release directory", r)
	case path.Clean(r) == ".":
		return fmt.Errorf("%q is the release directory itself; name a file inside it", r)
	}
	return nil
}

// validateWatchdog checks [watchdog]: a known kind, a snippet path inside the
// release directory, template syntax, and the service to wait for.
func (pb *Playbook) validateWatchdog() Problems {
	w := pb.Watchdog
	if w == nil {
		return nil
	}
	ix := pb.pos
	var ps Problems
	add := func(key, format string, args ...any) { ps = append(ps, ix.problem(key, format, args...)) }
	switch w.Kind {
	case WatchdogMonit, WatchdogSystemd:
	case "":
		add("watchdog", "watchdog.kind is missing (use %q or %q)", WatchdogMonit, WatchdogSystemd)
	default:
		add("watchdog.kind", "watchdog.kind %q is not valid (use %q or %q)", w.Kind, WatchdogMonit, WatchdogSystemd)
	}
	if w.Snippet == "" {
		add("watchdog", "watchdog.snippet is missing (the snippet template's path inside the release, e.g. \"monit/app.monitrc\")")
	} else if err := checkRequire(w.Snippet); err != nil {
		add("watchdog.snippet", "watchdog.snippet: %v", err)
	}
	for _, kv := range [][2]string{{"watchdog.install_path", w.InstallPath}, {"watchdog.control_file", w.ControlFile}} {
		key, text := kv[0], kv[1]
		if key == "watchdog.control_file" && w.Kind == WatchdogSystemd {
			if text != "" {
				add(key, "watchdog.control_file is for monit; systemd needs none")
			}
			continue
		}
		if text == "" {
			add("watchdog", "%s is missing", key)
			continue
		}
		ps = append(ps, templateSyntax(ix, key, text, false)...)
	}
	if w.Service == "" {
		add("watchdog", "watchdog.service is missing (the monit service or systemd unit to wait for)")
	} else if err := validName(w.Service); err != nil {
		add("watchdog.service", "watchdog.service: %v", err)
	}
	if w.Timeout.Duration <= 0 && ix.has("watchdog.timeout") && !ix.badDuration("watchdog.timeout") {
		add("watchdog.timeout", "watchdog.timeout must be more than 0s")
	}
	return ps
}

package deploy

import (
	"context"
	"errors"
	"fmt"
	"github.com/relctl/relctl/internal/fleet"
	"github.com/relctl/relctl/internal/shellquote"
	"path"
	"strconv"
	"strings"

	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/watchdog"
)

// pidfileOf is the pidfile the monit snippet's check of service names ("" if none).
func pidfileOf(snippet []byte, service string) string {
	cfg, err := watchdog.ParseMonit("snippet", snippet)
	if err != nil {
		return ""
	}
	for _, svc := range cfg.Services {
		if svc.Name == service {
			return svc.Pidfile
		}
	}
	return ""
}

// systemdSupervisor is the watchdog of hosts that run systemd: the release
// ships a unit file template, installed at install_path.
type systemdSupervisor struct{ s *watchdogSpec }

func (systemdSupervisor) name() string { return "systemd" }

// Commands, built in one place so unit tests can check them.
func (d systemdSupervisor) onSystemd() string {
	return "test -d /run/systemd/system || { echo 'this host does not run systemd (no /run/systemd/system)' >&2; exit 1; }"
}
func (d systemdSupervisor) verifyCmd(unitPath string) string {
	return d.onSystemd() + " && " + watchdog.SystemdVerifyCommand(unitPath)
}
func (d systemdSupervisor) reloadCmd(starting bool) string {
	cmd := d.onSystemd() + " && systemctl daemon-reload"
	if starting {
		cmd += " && systemctl restart -- " + shellquote.Quote(d.s.Service)
	}
	return cmd
}
func (d systemdSupervisor) statusCmd() string {
	return watchdog.SystemdIsActiveCommand(d.s.Service) + "; systemctl show -p MainPID --value -- " + shellquote.Quote(d.s.Service)
}

func (d systemdSupervisor) reload(ctx context.Context, h *hostRun, starting bool) error {
	limit := transport.ControlLimit
	if starting {
		// systemctl restart waits for the service to stop and start
		// (TimeoutStopSec and TimeoutStartSec, 90s each by default).
		limit = transport.CommandLimit
	}
	_, err := h.conn.Run(ctx, d.reloadCmd(starting), transport.RunOptions{Label: "watchdog/reload", Limit: limit})
	return err
}

func (d systemdSupervisor) pidfile(unit []byte) string {
	u, err := watchdog.ParseUnit("unit", unit)
	if err != nil {
		return ""
	}
	return u.Service().PIDFile.Value
}

// parseSystemdStatus reads statusCmd's output: is-active's word, then MainPID.
func parseSystemdStatus(out string) (active string, pid int) {
	lines := strings.Fields(out)
	if len(lines) > 0 {
		active = lines[0]
	}
	if len(lines) > 1 {
		pid, _ = strconv.Atoi(lines[len(lines)-1])
	}
	return active, pid
}

func (d systemdSupervisor) waitRunning(ctx context.Context, h *hostRun, pidfile string, notPID int) (int, error) {
	var active string
	var pid int
	err := poll(ctx, d.s.Timeout, func() (bool, error) {
		res, err := h.conn.Run(ctx, d.statusCmd(), transport.RunOptions{Label: "watchdog/status"})
		var ce *transport.CommandError
		if err != nil && !errors.As(err, &ce) { // is-active exits non-zero while not active
			return false, err
		}
		if res == nil {
			return false, err
		}
		active, pid = parseSystemdStatus(string(res.Stdout))
		return active == "active" && pid > 0 && pid != notPID && pidAlive(ctx, h, pid, pidfile), nil
	})
	if err == errPollTimeout {
		return 0, fmt.Errorf("systemd does not run %s after %s: %q, main pid %d", d.s.Service, d.s.Timeout, active, pid)
	}
	if err != nil {
		return 0, fmt.Errorf("systemd does not run %s: %w", d.s.Service, err)
	}
	return pid, nil
}

// validate runs systemd-analyze verify on the rendered unit (uploaded to a
// scratch directory under the unit's own name), then checks that its
// ExecStart/ExecStop programs exist in the new release.
func (d systemdSupervisor) validate(ctx context.Context, h *hostRun, rendered []byte, fsys watchdog.FS) (string, error) {
	s := d.s
	u, err := watchdog.ParseUnit(s.Snippet, rendered)
	if err != nil {
		return "", err
	}
	scratch := path.Join(h.host.Layout.StateDir(), "watchdog-check."+h.plan.RunID)
	unitPath := path.Join(scratch, path.Base(s.InstallPath))
	defer h.conn.Run(context.WithoutCancel(ctx), "rm -rf -- "+shellquote.Quote(scratch), transport.RunOptions{Label: "watchdog/cleanup"})
	if err := fleet.WriteFile(ctx, h.conn, rendered, unitPath, 0o644); err != nil {
		return "", err
	}
	if _, err := h.conn.Run(ctx, d.verifyCmd(unitPath), transport.RunOptions{Label: "watchdog/systemd-analyze"}); err != nil {
		return "", errors.New(strings.ReplaceAll(err.Error(), unitPath, s.Snippet))
	}
	var problems []string
	svc := u.Service()
	for _, e := range append(append([]watchdog.UnitEntry{}, svc.ExecStart...), svc.ExecStop...) {
		prog := watchdog.CommandPath(strings.TrimLeft(e.Value, "-@:+!"))
		if prog == "" || !path.IsAbs(prog) {
			continue
		}
		fi, err := fsys.Stat(ctx, prog)
		switch {
		case err != nil:
			return "", err
		case !fi.Exists:
			problems = append(problems, fmt.Sprintf("%s: %s %q does not exist", e.Pos, e.Key, prog))
		case !fi.Executable():
			problems = append(problems, fmt.Sprintf("%s: %s %q is not executable", e.Pos, e.Key, prog))
		}
	}
	if len(problems) > 0 {
		return "", errors.New(strings.Join(problems, "; "))
	}
	return fmt.Sprintf("%s: systemd-analyze verify OK", s.Snippet), nil
}

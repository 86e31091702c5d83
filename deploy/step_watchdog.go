package deploy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/relctl/relctl/internal/fleet"
	"github.com/relctl/relctl/internal/shellquote"
	"io/fs"
	"net"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/relctl/relctl/healthcheck"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/playbooks"
	"github.com/relctl/relctl/watchdog"
)

// Implicit steps of a playbook with a [watchdog] table.
const (
	kindWatchdogCheck      = "watchdog-check"
	kindWatchdogInstall    = "watchdog-install"
	kindWatchdogSupervised = "watchdog-supervised"
	kindWatchdogUnmonitor  = "watchdog-unmonitor"
)

// watchdogSpec is a playbook's [watchdog] rendered for one host and release.
type watchdogSpec struct {
	Snippet     string // the snippet template inside the release directory, relative ("monit/app.monitrc")
	ReleaseDir  string
	CurrentDir  string
	InstallPath string
	ControlFile string
	Service     string
	Timeout     time.Duration
	HealthPorts []int
	data        *playbooks.TemplateData
	sup         supervisor
}

func newWatchdogSpec(pb *playbooks.Playbook, hp *HostPlan, checks []healthcheck.Spec) (*watchdogSpec, error) {
	w := pb.Watchdog
	install, err := playbooks.RenderText("watchdog.install_path", w.InstallPath, hp.Data)
	if err != nil {
		return nil, err
	}
	control := ""
	if w.ControlFile != "" {
		if control, err = playbooks.RenderText("watchdog.control_file", w.ControlFile, hp.Data); err != nil {
			return nil, err
		}
	}
	spec := &watchdogSpec{
		Snippet: w.Snippet, ReleaseDir: hp.Data.ReleaseDir, CurrentDir: hp.Data.CurrentDir,
		InstallPath: install, ControlFile: control, Service: w.Service, Timeout: w.Timeout.Duration, data: hp.Data,
	}
	spec.sup = monitSupervisor{spec}
	if w.Kind == playbooks.WatchdogSystemd {
		spec.sup = systemdSupervisor{spec}
	}
	for _, c := range checks {
		if p := checkPort(c); p > 0 {
			spec.HealthPorts = append(spec.HealthPorts, p)
		}
	}
	return spec, nil
}

// checkPort is the port an http or tcp check probes, 0 when it has none.
func checkPort(c healthcheck.Spec) int {
	hostport := c.Address
	if c.Type == playbooks.CheckHTTP {
		u, err := url.Parse(c.URL)
		if err != nil {
			return 0
		}
		if hostport = u.Host; u.Port() == "" {
			return map[string]int{"http": 80, "https": 443}[u.Scheme]
		}
	}
	_, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(port)
	return n
}

// hostChecks renders every check the playbook defines for hp.
func hostChecks(pb *playbooks.Playbook, hp *HostPlan) ([]healthcheck.Spec, error) {
	var out []healthcheck.Spec
	for _, name := range sortedKeys(pb.Checks) {
		spec, err := RenderCheck(pb.Checks[name], hp.Data)
		if err != nil {
			return nil, err
		}
		out = append(out, spec)
	}
	return out, nil
}

// watchdogSteps are the implicit steps of a playbook with a [watchdog]: the
// check closes the stage phase (before any host switches), the install closes
// the activate phase (before health checks gate cutover).
func watchdogSteps(p *Plan, hp *HostPlan) (check, install *Step, err error) {
	checks, err := hostChecks(p.pb, hp)
	if err != nil {
		return nil, nil, err
	}
	spec, err := newWatchdogSpec(p.pb, hp, checks)
	if err != nil {
		return nil, nil, err
	}
	checkText := fmt.Sprintf("render %s for this host; monit -t with it in place of %s (in a copy of %s); pidfile dirs, start/stop programs in the new release, ports vs health checks",
		spec.Snippet, spec.InstallPath, spec.ControlFile)
	if p.pb.Watchdog.Kind == playbooks.WatchdogSystemd {
		checkText = fmt.Sprintf("render %s for this host; systemd-analyze verify it; ExecStart/ExecStop programs in the new release", spec.Snippet)
	}
	checkAction := &watchdogCheckAction{spec: spec}
	check = &Step{Phase: playbooks.PhaseStage, Name: kindWatchdogCheck, Kind: kindWatchdogCheck,
		Action: checkAction, Describe: checkText}
	sup := spec.sup.name()
	install = &Step{Phase: playbooks.PhaseActivate, Name: kindWatchdogInstall, Kind: kindWatchdogInstall,
		Action: &watchdogInstallAction{spec: spec, check: checkAction, prove: p.ProveSupervision},
		Describe: fmt.Sprintf("install it at %s (keeping the old one for rollback), %s reload, %swait until %s runs %s with a live pid%s",
			spec.InstallPath, sup, handBackWords(spec, ", "), sup, spec.Service, map[bool]string{true: "; kill it and wait until " + sup + " restarts it", false: ""}[p.ProveSupervision])}
	return check, install, nil
}

// watchdogUnmonitorStep takes the service out of monit's supervision before
// relctl restarts it itself (phase activate of a deploy or rollback plan,
// or before an automatic rollback's [rollback] steps): between a restart's
// stop and start, monit's cycle would see the service down and run its own
// start program, and relctl's start would then fail. handBack (in
// watchdog-install or watchdog-supervised) gives it back. nil for systemd,
// whose own restart is the one relctl asks for.
func watchdogUnmonitorStep(p *Plan, hp *HostPlan, phase string) (*Step, error) {
	if p.pb.Watchdog == nil || p.pb.Watchdog.Kind != playbooks.WatchdogMonit {
		return nil, nil
	}
	spec, err := newWatchdogSpec(p.pb, hp, nil)
	if err != nil {
		return nil, err
	}
	then := "watchdog-install monitors it again"
	if phase == "rollback" {
		then = "watchdog-supervised monitors it again"
	}
	return &Step{Phase: phase, Name: kindWatchdogUnmonitor, Kind: kindWatchdogUnmonitor,
		Action: &watchdogUnmonitorAction{spec: spec},
		Describe: fmt.Sprintf("monit -c %s unmonitor %s (if monit knows it), wait until monit reports it Not monitored, so relctl's restart does not race monit's; %s",
			spec.ControlFile, spec.Service, then)}, nil
}

// watchdogUnmonitorAction takes the service out of monit's supervision.
type watchdogUnmonitorAction struct {
	spec *watchdogSpec
	// tookOut: this run's Do found the service supervised and unmonitored it.
	tookOut bool
}

func (a *watchdogUnmonitorAction) Do(ctx context.Context, h *hostRun) (string, error) {
	m := monitSupervisor{a.spec}
	tookOut, detail, err := m.unmonitor(ctx, h)
	a.tookOut = tookOut
	return detail, err
}

// Undo does not hand the service back at once when current was switched
// back: the rollback's [rollback] steps restart it next, and monit must not
// race them; the rollback's watchdog-supervised step monitors it after.
// Where no restore follows (current never moved, or could not be switched
// back), monit gets the service back now.
func (a *watchdogUnmonitorAction) Undo(ctx context.Context, h *hostRun) (string, error) {
	s := a.spec
	if !a.tookOut {
		return fmt.Sprintf("this run did not take %s out of monit's supervision: nothing to hand back", s.Service), nil
	}
	if _, back := h.switchState(); back && h.report.After == h.report.Before {
		return "", errRestoredLater
	}
	if err := (monitSupervisor{s}).monitor(ctx, h); err != nil {
		return "", err
	}
	return fmt.Sprintf("monitor %s: monit supervises it again (no restart followed)", s.Service), nil
}

// watchdogCheckAction validates the release's snippet on the host before
// anything is switched: the real `monit -t` on a copy of the control file that
// includes the new snippet in place of the installed one, then what monit -t
// does not check.
type watchdogCheckAction struct {
	spec *watchdogSpec
	// validated is the snippet as validated for this host (nil until Do
	// passed): watchdog-install installs exactly these bytes.
	validated []byte
}

func (a *watchdogCheckAction) Do(ctx context.Context, h *hostRun) (string, error) {
	s := a.spec
	rendered, err := snippetFor(ctx, h, s)
	if err != nil {
		return "", err
	}
	detail, err := a.validate(ctx, h, rendered, &hostFS{conn: h.conn, from: s.CurrentDir, to: s.ReleaseDir})
	if err != nil {
		return "", err
	}
	a.validated = rendered
	return detail, nil
}

// validate parses the rendered snippet, runs monit -t with it and the checks
// monit -t does not make, looking files up in fsys.
func (a *watchdogCheckAction) validate(ctx context.Context, h *hostRun, rendered []byte, fsys watchdog.FS) (string, error) {
	s := a.spec
	name := s.Snippet
	if sd, ok := s.sup.(systemdSupervisor); ok {
		return sd.validate(ctx, h, rendered, fsys)
	}
	// A monit that does not run would supervise nothing after activation.
	if err := (monitSupervisor{s}).running(ctx, h); err != nil {
		return "", err
	}
	// The real monit -t is the authority on syntax; relctl's parser then
	// reads the snippet for the checks monit -t does not make.
	if err := a.monitT(ctx, h, rendered); err != nil {
		return "", err
	}
	cfg, err := watchdog.ParseMonit(name, rendered)
	if err != nil {
		return "", err
	}
	opts := watchdog.CheckOptions{HealthPorts: s.HealthPorts, BaseDir: h.host.Layout.BaseDir}
	// relctl drives monit as the SSH user, so monit reads the control file as
	// that user: it must own it, mode at most 0700.
	if res, err := h.conn.Run(ctx, "id -u", transport.RunOptions{Label: "watchdog/uid"}); err == nil {
		if uid, err := strconv.Atoi(strings.TrimSpace(string(res.Stdout))); err == nil {
			opts.ControlFile, opts.MonitUID = s.ControlFile, uid
		}
	}
	problems := watchdog.Check(ctx, cfg, fsys, opts)
	msgs := make([]string, 0, len(problems))
	for _, p := range problems {
		msgs = append(msgs, p.String())
	}
	if rs, ok := fsys.(releaseSearcher); ok {
		more, err := pidfilesWritten(ctx, cfg, rs, s.Snippet)
		if err != nil {
			return "", err
		}
		msgs = append(msgs, more...)
	}
	if len(msgs) > 0 {
		return "", errors.New(strings.Join(msgs, "; "))
	}
	return fmt.Sprintf("%s: monit -t OK; %d service(s) checked", name, len(cfg.Services)), nil
}

// renderSnippet reads the snippet template from the release directory on the
// host and renders it for the host.
func renderSnippet(ctx context.Context, h *hostRun, s *watchdogSpec) ([]byte, error) {
	file := path.Join(s.ReleaseDir, s.Snippet)
	res, err := h.conn.Run(ctx, "cat -- "+shellquote.Quote(file), transport.RunOptions{Label: "watchdog/read-snippet"})
	if err != nil {
		return nil, fmt.Errorf("reading the release's watchdog snippet %s: %w", s.Snippet, err)
	}
	out, err := playbooks.RenderText(s.Snippet, string(res.Stdout), s.data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.Snippet, err)
	}
	return []byte(out), nil
}

// monitT runs the real monit -t on a scratch copy of the control file whose
// include of the snippet's directory points at a scratch copy of that
// directory holding the new snippet in place of the installed one.
func (a *watchdogCheckAction) monitT(ctx context.Context, h *hostRun, rendered []byte) error {
	s := a.spec
	res, err := h.conn.Run(ctx, "cat -- "+shellquote.Quote(s.ControlFile), transport.RunOptions{Label: "watchdog/read-control", QuietStdout: true})
	if err != nil {
		return fmt.Errorf("reading monit control file %s: %w", s.ControlFile, err)
	}
	control := string(res.Stdout)
	cfg, err := watchdog.ParseMonit(s.ControlFile, res.Stdout)
	if err != nil {
		return fmt.Errorf("monit control file: %w", err)
	}
	var inc *watchdog.Include
	for i := range cfg.Includes {
		if ok, _ := path.Match(cfg.Includes[i].Pattern, s.InstallPath); ok {
			inc = &cfg.Includes[i]
		}
	}
	if inc == nil {
		return fmt.Errorf("monit control file %s does not include %s (add: include \"%s/*\")", s.ControlFile, s.InstallPath, path.Dir(s.InstallPath))
	}
	scratch := path.Join(h.host.Layout.StateDir(), "watchdog-check."+h.plan.RunID)
	conf := path.Join(scratch, "conf")
	// Rewrite the include on its own line (the pattern may also appear in a
	// comment elsewhere): monit -t must read the candidate, not the installed one.
	lines := strings.SplitAfter(control, "\n")
	if inc.Pos.Line < 1 || inc.Pos.Line > len(lines) || !strings.Contains(lines[inc.Pos.Line-1], inc.Pattern) {
		return fmt.Errorf("monit control file %s: cannot find the include of %s on line %d", s.ControlFile, inc.Pattern, inc.Pos.Line)
	}
	lines[inc.Pos.Line-1] = strings.Replace(lines[inc.Pos.Line-1], inc.Pattern, path.Join(conf, path.Base(inc.Pattern)), 1)
	scratchControl := strings.Join(lines, "")
	snippetCopy := path.Join(conf, path.Base(s.InstallPath))
	defer h.conn.Run(context.WithoutCancel(ctx), "rm -rf -- "+shellquote.Quote(scratch), transport.RunOptions{Label: "watchdog/cleanup"})
	prep := fmt.Sprintf("rm -rf -- %[1]s && mkdir -p %[2]s && for f in %[3]s; do [ -f \"$f\" ] && cp -p \"$f\" %[2]s/; done; rm -f -- %[4]s",
		shellquote.Quote(scratch), shellquote.Quote(conf), quoteGlob(inc.Pattern), shellquote.Quote(snippetCopy))
	if _, err := h.conn.Run(ctx, prep, transport.RunOptions{Label: "watchdog/scratch"}); err != nil {
		return err
	}
	if err := fleet.WriteFile(ctx, h.conn, rendered, snippetCopy, 0o600); err != nil {
		return err
	}
	scratchFile := path.Join(scratch, "monitrc")
	if err := fleet.WriteFile(ctx, h.conn, []byte(scratchControl), scratchFile, 0o600); err != nil {
		return err
	}
	err = watchdog.MonitSyntaxCheck(ctx, watchdog.ConnRunner{Conn: h.conn}, scratchFile)
	if err == nil {
		return nil
	}
	// Name the release's snippet and the real control file, not the scratch copies.
	msg := strings.NewReplacer(snippetCopy, s.Snippet, scratchFile, s.ControlFile).Replace(err.Error())
	return errors.New(msg)
}

// quoteGlob shell-quotes a path but leaves its last element's glob open.
func quoteGlob(pattern string) string {
	dir, base := path.Split(pattern)
	var b strings.Builder
	b.WriteString(shellquote.Quote(dir))
	for _, r := range base {
		if r == '*' || r == '?' {
			b.WriteRune(r)
			continue
		}
		b.WriteString(shellquote.Quote(string(r)))
	}
	return b.String()
}

// watchdogInstallAction installs the validated snippet, reloads monit and
// waits until monit runs the service with a live pid. Its undo puts the old
// snippet back byte for byte and reloads monit.
type watchdogInstallAction struct {
	spec  *watchdogSpec
	check *watchdogCheckAction // the step that validated the snippet
	prove bool
	// old is what was installed before this run put the snippet in place
	// (nil until Do read it): its undo puts these bytes back.
	old *fleet.File
}

func (a *watchdogInstallAction) Do(ctx context.Context, h *hostRun) (string, error) {
	s := a.spec
	var snippet []byte
	if a.check != nil {
		snippet = a.check.validated
	}
	if snippet == nil {
		var err error
		if snippet, err = snippetFor(ctx, h, s); err != nil {
			return "", err
		}
	}
	// Keep what is installed now: the rollback puts exactly these bytes back.
	old, err := fleet.ReadFile(ctx, h.conn, s.InstallPath, "watchdog/save")
	if err != nil {
		return "", err
	}
	a.old = old
	if old.Present && h.report.Before != "" {
		// Kept on the host too: a later `relctl rollback --to` that release
		// (from any machine, or after relctl died) puts exactly these bytes back.
		if err := fleet.WriteFile(ctx, h.conn, old.Body, savedSnippetPath(h, s, h.report.Before), 0o600); err != nil {
			return "", fmt.Errorf("keeping the installed snippet: %w", err)
		}
	}
	if err := fleet.WriteFile(ctx, h.conn, snippet, s.InstallPath, 0o600); err != nil {
		return "", err
	}
	if err := s.sup.reload(ctx, h, true); err != nil {
		return "", err
	}
	pidfile := s.sup.pidfile(snippet)
	pid, err := s.sup.handBack(ctx, h, pidfile)
	if err != nil {
		return "", fmt.Errorf("%w%s", err, snippetLine(s, snippet))
	}
	detail := fmt.Sprintf("installed %s; %s%s runs %s (pid %d)", s.InstallPath, handBackWords(s, ": "), s.sup.name(), s.Service, pid)
	if a.prove {
		again, err := proveSupervision(ctx, h, s, pidfile, pid)
		if err != nil {
			return "", err
		}
		detail += fmt.Sprintf("; killed pid %d, %s restarted it (pid %d)", pid, s.sup.name(), again)
	}
	return detail, nil
}

// Undo restores the snippet that was installed before, byte for byte (or
// removes the new one when there was none), and reloads monit.
func (a *watchdogInstallAction) Undo(ctx context.Context, h *hostRun) (string, error) {
	s := a.spec
	old := a.old
	if old == nil {
		return "", errNoUndo // never installed
	}
	var detail string
	if old.Present {
		if err := fleet.WriteFile(ctx, h.conn, old.Body, s.InstallPath, old.Mode); err != nil {
			return "", err
		}
		sum := sha256.Sum256(old.Body)
		detail = fmt.Sprintf("restored %s (%d bytes, sha256 %s)", s.InstallPath, len(old.Body), hex.EncodeToString(sum[:6]))
	} else {
		if _, err := h.conn.Run(ctx, "rm -f -- "+shellquote.Quote(s.InstallPath), transport.RunOptions{Label: "watchdog/remove"}); err != nil {
			return "", err
		}
		detail = "removed " + s.InstallPath + " (there was none before)"
	}
	if err := s.sup.reload(ctx, h, false); err != nil {
		return "", err
	}
	return detail + "; " + s.sup.name() + " reloaded", nil
}

// supervisor is what relctl needs from a watchdog: monit or systemd.
type supervisor interface {
	name() string
	// reload makes the supervisor read its configuration again; starting
	// says the new release should be (re)started under it now.
	reload(ctx context.Context, h *hostRun, starting bool) error
	// pidfile is the pidfile the config names for the service ("" if none).
	pidfile(config []byte) string
	// waitRunning waits until the service runs supervised with a live pid
	// other than notPID (and, given a pidfile, the pid in it).
	waitRunning(ctx context.Context, h *hostRun, pidfile string, notPID int) (int, error)
	// handBack gives the service back to the supervisor after relctl's own
	// restart, then waits as waitRunning does (any pid).
	handBack(ctx context.Context, h *hostRun, pidfile string) (int, error)
}

// handBack: systemd's restart (reload with starting) already put the
// service in its hands; only wait.
func (d systemdSupervisor) handBack(ctx context.Context, h *hostRun, pidfile string) (int, error) {
	return d.waitRunning(ctx, h, pidfile, 0)
}

// handBackWords names what handBack does, followed by sep, for a step's
// description or detail ("" for systemd: nothing beyond its restart).
func handBackWords(s *watchdogSpec, sep string) string {
	if _, ok := s.sup.(monitSupervisor); ok {
		return "monitor " + s.Service + sep
	}
	return ""
}

// monitSupervisor talks to the host's monit daemon.
type monitSupervisor struct{ s *watchdogSpec }

func (monitSupervisor) name() string { return "monit" }

func (m monitSupervisor) cmd(args string) string {
	return "monit -c " + shellquote.Quote(m.s.ControlFile) + " " + args
}

func (m monitSupervisor) reload(ctx context.Context, h *hostRun, _ bool) error {
	res, err := h.conn.Run(ctx, m.cmd("reload"), transport.RunOptions{Label: "watchdog/reload"})
	if err != nil {
		return err
	}
	// monit reload exits 0 when there is no daemon to reload.
	if out := string(res.Stdout) + string(res.Stderr); strings.Contains(out, "not running") {
		return fmt.Errorf("monit reload: %s", strings.TrimSpace(out))
	}
	return nil
}

// running says whether the host's monit daemon answers.
func (m monitSupervisor) running(ctx context.Context, h *hostRun) error {
	res, err := h.conn.Run(ctx, m.cmd("summary"), transport.RunOptions{Label: "watchdog/summary"})
	if err != nil {
		return fmt.Errorf("the monit daemon does not answer (monit -c %s summary): %w", m.s.ControlFile, err)
	}
	if out := string(res.Stdout) + string(res.Stderr); strings.Contains(out, "not running") {
		return fmt.Errorf("the monit daemon is not running (monit -c %s summary: %s)", m.s.ControlFile, strings.TrimSpace(out))
	}
	return nil
}

func (m monitSupervisor) pidfile(config []byte) string { return pidfileOf(config, m.s.Service) }

func (m monitSupervisor) service(h *hostRun) watchdog.MonitService {
	return watchdog.MonitService{Runner: watchdog.ConnRunner{Conn: h.conn}, Control: m.s.ControlFile, Name: m.s.Service}
}

// unmonitor takes the service out of monit's supervision and waits until
// monit reports it "Not monitored" (monit acts on its next cycle). tookOut
// is false when there was nothing to take out: monit does not know the
// service (a first deploy) or already leaves it alone.
func (m monitSupervisor) unmonitor(ctx context.Context, h *hostRun) (tookOut bool, detail string, err error) {
	s, svc := m.s, m.service(h)
	st, err := svc.Status(ctx)
	switch {
	case errors.Is(err, watchdog.ErrMonitNoService):
		return false, fmt.Sprintf("monit does not know %s yet: nothing to unmonitor", s.Service), nil
	case err != nil:
		return false, "", err
	case st.Unmonitored():
		return false, fmt.Sprintf("%s already not monitored by monit", s.Service), nil
	}
	if err := m.request(ctx, svc, svc.Unmonitor, watchdog.MonitStatus.Unmonitored); err != nil {
		return false, "", fmt.Errorf("unmonitor %s: %w", s.Service, err)
	}
	return true, fmt.Sprintf("unmonitor %s: monit reports it Not monitored (was %s, pid %d)", s.Service, strings.ToLower(st.Status), st.PID), nil
}

// monitor gives the service back to monit and waits until monit took it
// (monitored or initializing), not until it runs.
func (m monitSupervisor) monitor(ctx context.Context, h *hostRun) error {
	svc := m.service(h)
	monitored := func(st watchdog.MonitStatus) bool { return !st.Unmonitored() }
	if err := m.request(ctx, svc, svc.Monitor, monitored); err != nil {
		return fmt.Errorf("monitor %s: %w", m.s.Service, err)
	}
	return nil
}

// request polls monit's status of the service until reached says the
// request is done, asking again while it is not: a monit reload that is
// still under way when the request arrives drops it.
func (m monitSupervisor) request(ctx context.Context, svc watchdog.MonitService, ask func(context.Context) error, reached func(watchdog.MonitStatus) bool) error {
	var last watchdog.MonitStatus
	err := poll(ctx, m.s.Timeout, func() (bool, error) {
		st, err := svc.Status(ctx)
		if err != nil {
			return false, err
		}
		if last = st; reached(st) {
			return true, nil
		}
		return false, ask(ctx)
	})
	if err == errPollTimeout {
		return fmt.Errorf("monit did not act on it within %s: status %q, monitoring %q", m.s.Timeout, last.Status, last.Monitoring)
	}
	return err
}

// handBack monitors the service again and waits until monit runs it. The
// monitor request is repeated while monit reports the service unknown or
// not monitored: right after a reload monit may not know it yet, or may
// have dropped the request.
func (m monitSupervisor) handBack(ctx context.Context, h *hostRun, pidfile string) (int, error) {
	return m.wait(ctx, h, pidfile, 0, true)
}

// waitRunning polls `monit status` until monit runs the service with a live
// pid other than notPID, for at most the watchdog timeout. When the snippet
// names a pidfile, the pid must also be the one in it: right after a reload
// monit may still report what it saw under the old configuration.
func (m monitSupervisor) waitRunning(ctx context.Context, h *hostRun, pidfile string, notPID int) (int, error) {
	return m.wait(ctx, h, pidfile, notPID, false)
}

func (m monitSupervisor) wait(ctx context.Context, h *hostRun, pidfile string, notPID int, monitor bool) (int, error) {
	s, svc := m.s, m.service(h)
	var last watchdog.MonitStatus
	err := poll(ctx, s.Timeout, func() (bool, error) {
		st, err := svc.Status(ctx)
		if err != nil {
			return false, err // ErrMonitNoService too: the daemon has not read its reload yet
		}
		if last = st; monitor && st.Unmonitored() {
			return false, svc.Monitor(ctx)
		}
		if !last.Running() || last.PID == notPID {
			return false, nil
		}
		return pidAlive(ctx, h, last.PID, pidfile), nil
	})
	if err == errPollTimeout {
		return 0, fmt.Errorf("monit does not run %s after %s: status %q, monitoring %q, pid %d (does the service write the pidfile the snippet names, %s?)",
			s.Service, s.Timeout, last.Status, last.Monitoring, last.PID, orNone(pidfile))
	}
	if err != nil {
		return 0, fmt.Errorf("monit does not run %s: %w", s.Service, err)
	}
	return last.PID, nil
}

// pidAlive says whether pid lives on the host (and is the pid in pidfile).
func pidAlive(ctx context.Context, h *hostRun, pid int, pidfile string) bool {
	check := fmt.Sprintf("kill -0 %d", pid)
	if pidfile != "" {
		check += fmt.Sprintf(" && [ \"$(cat -- %s 2>/dev/null)\" = %d ]", shellquote.Quote(pidfile), pid)
	}
	_, err := h.conn.Run(ctx, check, transport.RunOptions{Label: "watchdog/pid"})
	return err == nil
}

var errPollTimeout = errors.New("timed out")

// poll calls try every half second until it reports done, for at most
// timeout; the last error try returned is kept for the caller.
func poll(ctx context.Context, timeout time.Duration, try func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		done, err := try()
		if done {
			return nil
		}
		lastErr = err
		if time.Now().After(deadline) {
			if lastErr != nil {
				return lastErr
			}
			return errPollTimeout
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// proveSupervision kills the supervised process and waits until the
// supervisor has restarted it: the watchdog really watches.
func proveSupervision(ctx context.Context, h *hostRun, s *watchdogSpec, pidfile string, pid int) (int, error) {
	if _, err := h.conn.Run(ctx, fmt.Sprintf("kill -9 %d", pid), transport.RunOptions{Label: "watchdog/prove-supervision"}); err != nil {
		return 0, fmt.Errorf("killing %s (pid %d): %w", s.Service, pid, err)
	}
	again, err := s.sup.waitRunning(ctx, h, pidfile, pid)
	if err != nil {
		return 0, fmt.Errorf("supervision not proven: killed pid %d, %w", pid, err)
	}
	return again, nil
}

// watchdogSupervisedStep reloads the supervisor on a host whose snippet is
// already in place, hands it the service back and waits until it runs it.
func watchdogSupervisedStep(p *Plan, hp *HostPlan, phase string) (*Step, error) {
	hc, err := hostChecks(p.pb, hp)
	if err != nil {
		return nil, err
	}
	spec, err := newWatchdogSpec(p.pb, hp, hc)
	if err != nil {
		return nil, err
	}
	sup := spec.sup.name()
	return &Step{Phase: phase, Name: kindWatchdogSupervised, Kind: kindWatchdogSupervised,
		Action:   &watchdogSupervisedAction{spec: spec, prove: p.ProveSupervision},
		Describe: fmt.Sprintf("%s reload, %swait until %s runs %s", sup, handBackWords(spec, ", "), sup, spec.Service)}, nil
}

// watchdogSupervisedAction reloads monit during a rollback, gives it the
// service back (taken out by watchdog-unmonitor before the [rollback]
// steps) and waits until it runs the restored release's service (and, with
// prove, that it restarts it).
type watchdogSupervisedAction struct {
	spec  *watchdogSpec
	prove bool
}

func (a *watchdogSupervisedAction) Do(ctx context.Context, h *hostRun) (string, error) {
	res, err := h.conn.Run(ctx, "cat -- "+shellquote.Quote(a.spec.InstallPath), transport.RunOptions{Label: "watchdog/read-installed"})
	if err != nil {
		return "", fmt.Errorf("reading the installed snippet: %w", err)
	}
	sup := a.spec.sup
	if err := sup.reload(ctx, h, true); err != nil {
		return "", err
	}
	pidfile := sup.pidfile(res.Stdout)
	pid, err := sup.handBack(ctx, h, pidfile)
	if err != nil {
		return "", err
	}
	detail := fmt.Sprintf("%s%s runs %s (pid %d)", handBackWords(a.spec, ": "), sup.name(), a.spec.Service, pid)
	if a.prove {
		again, err := proveSupervision(ctx, h, a.spec, pidfile, pid)
		if err != nil {
			return "", err
		}
		detail += fmt.Sprintf("; killed pid %d, %s restarted it (pid %d)", pid, sup.name(), again)
	}
	return detail, nil
}

// hostFS is the host's file system for watchdog checks, over SSH. Paths under
// the current symlink are looked up in the new release, which current will
// point at once activated.
type hostFS struct {
	conn     transport.Conn
	from, to string
}

func (f *hostFS) Stat(ctx context.Context, p string) (watchdog.FileInfo, error) {
	if f.from != "" && (p == f.from || strings.HasPrefix(p, f.from+"/")) {
		p = f.to + strings.TrimPrefix(p, f.from)
	}
	res, err := f.conn.Run(ctx, "stat -L -c '%f %u %g' -- "+shellquote.Quote(p)+" 2>/dev/null || echo absent", transport.RunOptions{Label: "watchdog/stat"})
	if err != nil {
		return watchdog.FileInfo{}, err
	}
	fields := strings.Fields(string(res.Stdout))
	if len(fields) != 3 {
		return watchdog.FileInfo{}, nil
	}
	raw, err := strconv.ParseUint(fields[0], 16, 32)
	if err != nil {
		return watchdog.FileInfo{}, fmt.Errorf("stat %s: %q", p, res.Stdout)
	}
	uid, _ := strconv.Atoi(fields[1])
	gid, _ := strconv.Atoi(fields[2])
	const typeMask, dirType = 0o170000, 0o040000
	return watchdog.FileInfo{Exists: true, IsDir: raw&typeMask == dirType, Mode: fsMode(raw & 0o777), UID: uid, GID: gid}, nil
}

func fsMode(perm uint64) fs.FileMode { return fs.FileMode(perm) }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// snippetLine points at the snippet's statement for the service, so a
// failure names the file and line to fix.
func snippetLine(s *watchdogSpec, snippet []byte) string {
	if _, ok := s.sup.(monitSupervisor); !ok {
		return ""
	}
	cfg, err := watchdog.ParseMonit(s.Snippet, snippet)
	if err != nil {
		return ""
	}
	for _, svc := range cfg.Services {
		if svc.Name == s.Service {
			what := "check " + svc.Kind + " " + svc.Name
			if svc.Pidfile != "" {
				what += " with pidfile " + svc.Pidfile
			}
			return fmt.Sprintf("; see %s: %s", svc.Pos, what)
		}
	}
	return ""
}

// releaseSearcher finds text in the new release's files.
type releaseSearcher interface {
	// releaseMentions looks for needle in every file of the release but
	// skip (the snippet itself, a path inside the release).
	releaseMentions(ctx context.Context, needle, skip string) (bool, error)
}

// pidfilesWritten checks, for every process check with a pidfile, that
// something in the new release names that pidfile: a start script that never
// mentions it will not write it, and monit would never see the service run.
// (After activation relctl also waits for monit to report the pid that is in
// the pidfile; this catches the mistake before anything is switched.)
func pidfilesWritten(ctx context.Context, cfg *watchdog.MonitConfig, rs releaseSearcher, snippet string) ([]string, error) {
	var out []string
	for _, svc := range cfg.Services {
		if svc.Kind != watchdog.KindProcess || svc.Pidfile == "" || svc.Start == nil {
			continue
		}
		base := path.Base(svc.Pidfile)
		found, err := rs.releaseMentions(ctx, base, snippet)
		if err != nil {
			return nil, err
		}
		if !found {
			out = append(out, fmt.Sprintf("%s: %s: pidfile %q: nothing in the new release mentions %s, so its start program will not write it (monit would never see the service running)",
				svc.Pos, svc, svc.Pidfile, base))
		}
	}
	return out, nil
}

func (f *hostFS) releaseMentions(ctx context.Context, needle, skip string) (bool, error) {
	skipPath := path.Join(f.to, skip)
	cmd := "grep -rlF -- " + shellquote.Quote(needle) + " " + shellquote.Quote(f.to) + " 2>/dev/null | grep -vxF -- " + shellquote.Quote(skipPath) + " | head -n 1"
	res, err := f.conn.Run(ctx, cmd, transport.RunOptions{Label: "watchdog/pidfile-writer"})
	if err != nil {
		var ce *transport.CommandError
		if errors.As(err, &ce) && ce.ExitCode == 1 { // grep -v found nothing left
			return false, nil
		}
		return false, err
	}
	return strings.TrimSpace(string(res.Stdout)) != "", nil
}

// savedSnippetPath is where the host keeps the snippet that was installed
// while version was current.
func savedSnippetPath(h *hostRun, s *watchdogSpec, version string) string {
	return path.Join(h.host.Layout.StateDir(), "watchdog", version+"."+path.Base(s.InstallPath))
}

// snippetFor is the snippet this run installs: for a rollback, the bytes
// that were installed while the target release was current, when the host
// kept them; otherwise the release's template rendered for the host.
func snippetFor(ctx context.Context, h *hostRun, s *watchdogSpec) ([]byte, error) {
	if h.plan.Kind == KindRollback {
		saved := savedSnippetPath(h, s, h.plan.Version)
		res, err := h.conn.Run(ctx, fmt.Sprintf("if [ -f %[1]s ]; then echo present; cat -- %[1]s; else echo absent; fi", shellquote.Quote(saved)),
			transport.RunOptions{Label: "watchdog/read-saved"})
		if err != nil {
			return nil, err
		}
		if head, body, _ := bytes.Cut(res.Stdout, []byte("\n")); string(head) == "present" {
			return body, nil
		}
	}
	return renderSnippet(ctx, h, s)
}

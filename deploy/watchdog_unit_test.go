package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/internal/transport/localconn"
	"github.com/relctl/relctl/watchdog"
)

// The [watchdog] feature with the real monit: every localconn host runs
// its own monit daemon (control file BASE/monit/monitrc, its HTTP
// interface a unix socket beside it), all inside the test's temp dirs.
// The release's service is a shell loop that bin/start puts in the
// background; it ends by itself once the host's directory is gone.

// monitFleet is a fleet of two hosts, each with its monit daemon, and
// artifacts that ship a monit snippet.
type monitFleet struct{ *fleet }

func newMonitFleet(t *testing.T) *monitFleet {
	t.Helper()
	bin, err := exec.LookPath("monit")
	if err != nil {
		t.Skip("monit is not installed (make test-deps installs it): the watchdog tests run the real monit")
	}
	f := &monitFleet{newFleet(t, 2, strategyCanary, readTestdata(t, "watchdog_monit.toml"))}
	for _, v := range []string{"1.0.0", "2.0.0"} {
		writeFile(t, filepath.Join(f.dir, "artifacts", "app-"+v+".tar.gz"), string(watchdogArtifact(t, v)))
	}
	for _, n := range f.names {
		f.startMonit(bin, n)
	}
	return f
}

// badSnippet is a monit snippet monit -t refuses (line 2).
const badSnippet = "check process app with pidfile \"/nonexistent/app.pid\"\n  strt program = \"/bin/true\"\n"

// watchdogArtifact is artifact's release plus the service monit runs
// (bin/start, bin/stop) and its snippet, which names the release.
func watchdogArtifact(t *testing.T, version string) []byte {
	t.Helper()
	return watchdogArtifactWith(t, version, "# app {{.Version}}\ncheck process app with pidfile \"{{.BaseDir}}/run/app.pid\"\n"+
		"  start program = \"{{.CurrentDir}}/bin/start {{.BaseDir}}\"\n"+
		"  stop program = \"{{.CurrentDir}}/bin/stop {{.BaseDir}}\"\n")
}

// watchdogArtifactWith is watchdogArtifact with the given snippet template.
func watchdogArtifactWith(t *testing.T, version, snippet string) []byte {
	return tarball(t, []tarFile{
		{"VERSION", version + "\n", 0o644},
		{"bin/restart", "#!/bin/sh\nset -e\ncat \"$(dirname \"$0\")/../VERSION\" > \"$1/running\"\n", 0o755},
		{"bin/start", "#!/bin/sh\nmkdir -p \"$1/run\"\n" +
			"sh -c 'while [ -d \"$0/releases\" ]; do sleep 1; done' \"$1\" </dev/null >/dev/null 2>&1 &\n" +
			"echo $! > \"$1/run/app.pid\"\n", 0o755},
		{"bin/stop", "#!/bin/sh\nkill \"$(cat \"$1/run/app.pid\")\" 2>/dev/null\nrm -f \"$1/run/app.pid\"\nexit 0\n", 0o755},
		{"monit/app.monitrc", snippet, 0o644},
	})
}

func (f *monitFleet) monitDir(name string) string { return filepath.Join(f.base(name), "monit") }
func (f *monitFleet) control(name string) string  { return filepath.Join(f.monitDir(name), "monitrc") }

// installed is the snippet installed on the host, and its mode.
func (f *monitFleet) installed(name string) (string, os.FileMode) {
	f.t.Helper()
	p := filepath.Join(f.monitDir(name), "conf.d", "app.monitrc")
	b, err := os.ReadFile(p)
	if err != nil {
		f.t.Fatalf("%s: the installed snippet: %v", name, err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		f.t.Fatal(err)
	}
	return string(b), fi.Mode().Perm()
}

// startMonit writes the host's control file and starts its monit daemon,
// which the test's cleanup stops (with the service it started).
func (f *monitFleet) startMonit(bin, name string) {
	t := f.t
	t.Helper()
	dir := f.monitDir(name)
	socket := filepath.Join(dir, "monit.sock")
	if len(socket) > 100 {
		t.Fatalf("the monit socket path %s is too long for a unix socket: shorten the test's name", socket)
	}
	for _, d := range []string{filepath.Join(dir, "conf.d"), filepath.Join(f.base(name), "run")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	q := func(file string) string { return strconv.Quote(filepath.Join(dir, file)) }
	control := "set daemon 1\n" +
		"set pidfile " + q("monit.pid") + "\nset idfile " + q("monit.id") + "\nset statefile " + q("monit.state") + "\n" +
		"set logfile " + q("monit.log") + "\n" +
		"set httpd unixsocket " + q("monit.sock") + "\n  allow localhost\n" +
		"include " + q("conf.d/*") + "\n"
	if err := os.WriteFile(f.control(name), []byte(control), 0o600); err != nil {
		t.Fatal(err)
	}
	monit := func(args ...string) *exec.Cmd {
		cmd := exec.Command(bin, append([]string{"-c", f.control(name)}, args...)...)
		cmd.Dir = f.host(name).Root
		cmd.WaitDelay = 5 * time.Second
		return cmd
	}
	if out, err := monit().CombinedOutput(); err != nil {
		t.Fatalf("%s: starting monit: %v\n%s", name, err, out)
	}
	t.Cleanup(func() { f.stopMonit(name, monit) })
	// monit daemonizes: wait until it answers (not a synchronisation with relctl).
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := monit("summary").CombinedOutput()
		if err == nil && !strings.Contains(string(out), "not running") {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "monit.log"))
			t.Fatalf("%s: monit does not answer: %v\n%s\nmonit.log:\n%s", name, err, out, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stopMonit stops the host's monit daemon, then the service it ran.
func (f *monitFleet) stopMonit(name string, monit func(...string) *exec.Cmd) {
	pid := readPIDFile(filepath.Join(f.monitDir(name), "monit.pid"))
	_ = monit("quit").Run()
	if pid > 0 && !waitProcessGone(pid, 10*time.Second) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if svc := readPIDFile(filepath.Join(f.base(name), "run", "app.pid")); svc > 0 {
		_ = syscall.Kill(svc, syscall.SIGKILL)
	}
}

func readPIDFile(p string) int {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

func waitProcessGone(pid int, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// tune is an operator's edit of the installed snippet: a rollback must put
// these bytes back, not the release's snippet rendered again. It returns
// the snippet as tuned.
func (f *monitFleet) tune(name string) string {
	f.t.Helper()
	p := filepath.Join(f.monitDir(name), "conf.d", "app.monitrc")
	body, err := os.ReadFile(p)
	if err != nil {
		f.t.Fatal(err)
	}
	body = append(body, "# tuned by ops\n"...)
	if err := os.WriteFile(p, body, 0o600); err != nil {
		f.t.Fatal(err)
	}
	return string(body)
}

// assertSupervised checks that the host's monit runs the service with the
// pid in its pidfile, and that the process lives.
func (f *monitFleet) assertSupervised(name string) {
	f.t.Helper()
	conn, err := f.conns.Get(f.t.Context(), transport.Target{Name: name})
	if err != nil {
		f.t.Fatal(err)
	}
	st, err := watchdog.MonitService{Runner: watchdog.ConnRunner{Conn: conn}, Control: f.control(name), Name: "app"}.Status(f.t.Context())
	if err != nil {
		f.t.Errorf("%s: monit status app: %v", name, err)
		return
	}
	inFile := readPIDFile(filepath.Join(f.base(name), "run", "app.pid"))
	if !st.Running() || st.PID != inFile || syscall.Kill(st.PID, 0) != nil {
		f.t.Errorf("%s: monit says %q, %q, pid %d (pidfile %d): want the service running, supervised", name, st.Status, st.Monitoring, st.PID, inFile)
	}
}

// TestWatchdogMonit: a deploy with [watchdog] kind monit runs relctl's
// watchdog steps around the playbook's; a watchdog-check that fails stops
// the run before any host switches; the automatic rollback puts back the
// snippet that was installed, byte for byte. The subtests run in parallel:
// they mostly wait on monit's cycles.
func TestWatchdogMonit(t *testing.T) {
	t.Run("deploy", func(t *testing.T) {
		t.Parallel() // most of the time is spent waiting on monit\'s cycles
		f := newMonitFleet(t)
		f.seed("1.0.0")
		before, _ := f.installed("web-1")
		// --prove-supervision: monit must restart the service relctl kills.
		p, err := deploy.BuildPlan(f.proj, deploy.PlanOptions{Env: "production", Version: "2.0.0", RunID: "wd", ProveSupervision: true})
		if err != nil {
			t.Fatal(err)
		}
		rep, err := run(t.Context(), newTestEngine(f.fleet), p, runOptions{})
		if err != nil {
			t.Fatalf("deploy: %v", err)
		}
		f.assertOn("2.0.0", f.names...)
		for _, n := range f.names {
			steps := stepStatuses(rep.Host(n).Steps)
			order := []string{"preflight/watchdog-precheck ok", "stage/unpack ok", "stage/watchdog-check ok", "activate/watchdog-unmonitor ok",
				"activate/activate ok", "activate/restart ok", "activate/watchdog-install ok", "verify/health ok"}
			last := -1
			for _, s := range order {
				i := slices.Index(steps, s)
				if i <= last {
					t.Errorf("%s: steps %q: want %q, in this order", n, steps, order)
					break
				}
				last = i
			}
			snippet, mode := f.installed(n)
			if !strings.HasPrefix(snippet, "# app 2.0.0\n") || mode != 0o600 {
				t.Errorf("%s: installed snippet (mode %o):\n%s\nwant 2.0.0's, mode 600", n, mode, snippet)
			}
			f.assertSupervised(n)
			for _, s := range rep.Host(n).Steps {
				if s.Name == "watchdog-unmonitor" && !strings.Contains(s.Detail, "monit reports it Not monitored") {
					t.Errorf("%s: watchdog-unmonitor %q: the service was not taken out of monit's hands", n, s.Detail)
				}
				if s.Name == "watchdog-install" && !strings.Contains(s.Detail, "monit restarted it") {
					t.Errorf("%s: watchdog-install %q: supervision not proven", n, s.Detail)
				}
			}
		}
		// Kept on the host for a later `relctl rollback --to 1.0.0`.
		if kept, err := os.ReadFile(filepath.Join(f.base("web-1"), ".relctl", "watchdog", "1.0.0.app.monitrc")); err != nil || string(kept) != before {
			t.Errorf("web-1 keeps 1.0.0's snippet as %q (%v), want %q", kept, err, before)
		}
	})

	t.Run("check fails", func(t *testing.T) {
		t.Parallel() // most of the time is spent waiting on monit\'s cycles
		f := newMonitFleet(t)
		f.seed("1.0.0")
		before := map[string]string{}
		for _, n := range f.names {
			before[n], _ = f.installed(n)
		}
		// web-1's unpacked release is not the artifact's: its snippet does not parse.
		e := newTestEngine(f.fleet, func(e *deploy.Engine) {
			e.Observe = func(ev deploy.Event) {
				if ev.Kind == deploy.StepDone && ev.Host == "web-1" && ev.Result.ID() == "stage/unpack" {
					writeFile(t, filepath.Join(f.base("web-1"), "releases", "2.0.0", "monit", "app.monitrc"), badSnippet)
				}
			}
		})
		rep, err := run(t.Context(), e, f.plan("2.0.0", "wd"), runOptions{})
		// monit -t's own words, naming the release's snippet (not relctl's scratch copy).
		if fail := failure(t, err); fail.Phase != "stage" || !strings.Contains(err.Error(), "web-1: step stage/watchdog-check: monit/app.monitrc:2: monit -t: syntax error 'strt'") {
			t.Errorf("err = %v, want web-1's watchdog-check failing in stage on monit -t", err)
		}
		if got := lastStep(rep.Host("web-1")); got != "stage/watchdog-check failed" {
			t.Errorf("web-1's last step %q, want its failed watchdog-check", got)
		}
		for _, n := range f.names {
			for _, s := range rep.Host(n).Steps {
				if s.Phase == "activate" {
					t.Errorf("%s: step %s ran after the watchdog-check failed", n, s.ID())
				}
			}
			if f.host(n).Ran("activate 2.0.0") {
				t.Errorf("%s switched", n)
			}
			if got, _ := f.installed(n); got != before[n] {
				t.Errorf("%s: the installed snippet changed:\n%s", n, got)
			}
			f.assertSupervised(n)
		}
		f.assertOn("1.0.0", f.names...)
		if len(rep.Unresolved()) != 0 {
			t.Errorf("unresolved %v", rep.Unresolved())
		}
		f.assertNoLocks()
	})

	t.Run("precheck fails", func(t *testing.T) {
		t.Parallel() // most of the time is spent waiting on monit\'s cycles
		f := newMonitFleet(t)
		f.seed("1.0.0")
		writeFile(t, filepath.Join(f.dir, "artifacts", "app-2.0.0.tar.gz"), string(watchdogArtifactWith(t, "2.0.0", badSnippet)))
		rep, err := run(t.Context(), newTestEngine(f.fleet), f.plan("2.0.0", "wd"), runOptions{})
		if fail := failure(t, err); fail.Phase != "preflight" || !strings.Contains(err.Error(), "step preflight/watchdog-precheck: monit/app.monitrc:2: monit -t: syntax error 'strt'") {
			t.Errorf("err = %v, want the candidate's snippet refused in preflight", err)
		}
		for _, n := range f.names {
			if h := rep.Host(n); h.Touched || f.host(n).Ran("stage/unpack") {
				t.Errorf("%s touched by a run whose watchdog precheck failed", n)
			}
			f.assertSupervised(n)
		}
		f.assertOn("1.0.0", f.names...)
		f.assertNoLocks()
	})

	t.Run("switch fails", func(t *testing.T) {
		t.Parallel() // most of the time is spent waiting on monit\'s cycles
		f := newMonitFleet(t)
		f.seed("1.0.0")
		f.host("web-2").Fail(localconn.Fault{Label: "activate 2.0.0", Exit: 1, Stderr: "ln: read-only file system"})
		rep, err := run(t.Context(), newTestEngine(f.fleet), f.plan("2.0.0", "wd"), runOptions{})
		if fail := failure(t, err); fail.Phase != "activate" || !rep.RolledBack || len(rep.Unresolved()) != 0 {
			t.Errorf("err = %v (rolled back %v, unresolved %v), want web-2's switch failing, rolled back", err, rep.RolledBack, rep.Unresolved())
		}
		// web-2 never switched: no restart follows, monit gets the service back at once.
		var handBack *deploy.StepResult
		for _, s := range rep.Host("web-2").Rollback.Steps {
			if s.Name == "undo-watchdog-unmonitor" {
				handBack = s
			}
		}
		if handBack == nil || handBack.Status != deploy.StatusOK || !strings.Contains(handBack.Detail, "monit supervises it again (no restart followed)") {
			t.Errorf("web-2's undo of watchdog-unmonitor: %+v, want the service handed back to monit", handBack)
		}
		for _, n := range f.names {
			f.assertRestored(rep, n, "1.0.0")
			f.assertSupervised(n)
		}
		f.assertNoLocks()
	})

	t.Run("rollback run", func(t *testing.T) {
		t.Parallel() // most of the time is spent waiting on monit\'s cycles
		f := newMonitFleet(t)
		f.seed("1.0.0")
		tuned := f.tune("web-2")
		f.seed("2.0.0")
		if got, _ := f.installed("web-2"); !strings.HasPrefix(got, "# app 2.0.0\n") {
			t.Fatalf("web-2's snippet after the deploy of 2.0.0:\n%s", got)
		}
		// `relctl rollback`: the snippet installed while 1.0.0 was current comes back.
		rep, err := run(t.Context(), newTestEngine(f.fleet), f.rollbackPlan("1.0.0", "2.0.0", "back"), runOptions{})
		if err != nil {
			t.Fatalf("rollback: %v", err)
		}
		f.assertOn("1.0.0", f.names...)
		if got, _ := f.installed("web-2"); got != tuned {
			t.Errorf("web-2's snippet after the rollback run:\n%s\nwant the one it had on 1.0.0:\n%s", got, tuned)
		}
		for _, n := range f.names {
			steps := stepStatuses(rep.Host(n).Steps)
			for _, s := range []string{"preflight/watchdog-check ok", "activate/watchdog-unmonitor ok", "activate/watchdog-install ok"} {
				if !slices.Contains(steps, s) {
					t.Errorf("%s: steps %q, want %q among them", n, steps, s)
				}
			}
			f.assertSupervised(n)
		}
		f.assertNoLocks()
	})

	t.Run("rollback", func(t *testing.T) {
		t.Parallel() // most of the time is spent waiting on monit\'s cycles
		f := newMonitFleet(t)
		f.seed("1.0.0")
		f.tune("web-2")
		before := map[string]string{}
		for _, n := range f.names {
			before[n], _ = f.installed(n)
		}
		f.host("web-2").Fail(localconn.Fault{Label: "health/health", Text: "2.0.0", Exit: 1, Stderr: "not serving"})
		rep, err := run(t.Context(), newTestEngine(f.fleet), f.plan("2.0.0", "wd"), runOptions{})
		if fail := failure(t, err); fail.Phase != "verify" || !rep.RolledBack {
			t.Errorf("err = %v (rolled back %v), want web-2's health check failing, rolled back", err, rep.RolledBack)
		}
		if len(rep.Unresolved()) != 0 {
			t.Errorf("unresolved %v", rep.Unresolved())
		}
		for _, n := range f.names {
			f.assertRestored(rep, n, "1.0.0")
			got, mode := f.installed(n)
			if got != before[n] || mode != 0o600 {
				t.Errorf("%s: the snippet after the rollback (mode %o):\n%s\nwant, byte for byte (mode 600):\n%s", n, mode, got, before[n])
			}
			rb := stepStatuses(rep.Host(n).Rollback.Steps)
			for _, s := range []string{"rollback/undo-watchdog-install ok", "rollback/watchdog-supervised ok"} {
				if !slices.Contains(rb, s) {
					t.Errorf("%s: rollback steps %q, want %q among them", n, rb, s)
				}
			}
			if i, j := slices.Index(rb, "rollback/undo-watchdog-install ok"), slices.Index(rb, "rollback/watchdog-supervised ok"); i > j {
				t.Errorf("%s: rollback steps %q: the snippet back before monit supervises again", n, rb)
			}
			f.assertSupervised(n)
		}
		f.assertNoLocks()
	})
}

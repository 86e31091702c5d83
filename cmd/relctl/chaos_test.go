package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/relctl/relctl/testenv"
)

// The hostile-host matrix: every fault mode of testenv, switched on as one
// host enters each phase of a deploy (or its automatic rollback), must end
// the deploy with exit 3 or 4 naming that host - or, for a fault in what the
// run no longer reads (history.json after the activation), finish it -
// without a panic, without a lock left on any host and without losing any
// activation a host's history.json held before. `make chaos` prints the
// table of outcomes.

// chaosTableEnv names a file TestChaosMatrix writes its table to (scripts/chaos.sh).
const chaosTableEnv = "RELCTL_CHAOS_TABLE"

var (
	chaosFaults = []string{"truncate", "drop-lines", "garbage", "never-ends", "unreadable"}
	chaosPhases = []string{"preflight", "stage", "activate", "verify", "cutover", "post", "rollback"}
)

const (
	// chaosHost is the faulted host: the second batch, so a failure there
	// rolls back the canary too.
	chaosHost = "staging-2"
	// In the rollback column chaosHost fails its activate/restart, and the
	// fault hits the canary's rollback.
	chaosCanary = "staging-1"
	chaosLB     = "staging-lb"
	// chaosCommandTimeout bounds each command relctl runs (ssh.command_timeout,
	// and ssh.control_timeout for relctl's own): it is what ends a
	// never-ending command that has no step timeout. Far above what a
	// command takes on a loaded CI machine (a restart: ~1s).
	chaosCommandTimeout = "8s"
	// chaosRunLimit only keeps a hung relctl from hanging the test.
	chaosRunLimit = 4 * time.Minute
)

// chaosPlaybook is appended to the testenv search playbook: a command in
// verify (a command check), cutover and post, so each phase has a command
// of the host to fault, and a way to know the host reached the phase.
const chaosPlaybook = `
# Added by TestChaosMatrix.
[checks.ready]
type = "command"
command = "test -x {{.CurrentDir}}/bin/start"
timeout = "2s"
interval = "200ms"
retries = 1

[[steps]]
phase = "verify"
name = "ready"
kind = "check"
checks = ["ready"]

[[steps]]
phase = "cutover"
name = "announce"
run = "echo {{.Version}} > {{.BaseDir}}/announced"

[[steps]]
phase = "post"
name = "smoke"
run = "test -s {{.BaseDir}}/announced"
`

// chaosCell is one fault in one phase.
type chaosCell struct {
	fault, phase string
	traffic      bool   // needs the cluster with HAProxy (cutover)
	host         string // the faulted host, which the failure must name
	// trigger: the fault is switched on once a command with this label is
	// held on triggerHost, i.e. the host is about to leave the phase before
	// (the held command then runs unfaulted); "" switches it on before the run.
	triggerHost, trigger string
	spec                 testenv.FaultSpec
	// also: faults set on other hosts at the trigger (the rollback column's
	// first failure).
	also map[string]testenv.FaultSpec
	// target says what the fault hits, for the table's legend.
	target string
	// wantDone: the fault comes after the run's last read of what it hits,
	// so the deploy must finish (exit 0, every host on 1.1.0) - and still
	// not write where history.json became unreadable.
	wantDone bool
}

// chaosNotApplicable says why a cell has no fault to inject ("" if it has):
// relctl reads no host output in the post phase (prune works from the state
// read under the lock, kept up to date by the run's own switch).
func chaosNotApplicable(fault, phase string) string {
	if phase == "post" && fault != "never-ends" && fault != "unreadable" {
		return "relctl reads no host output in post"
	}
	return ""
}

func (c chaosCell) name() string { return c.fault + "/" + c.phase }

// testName has no "/", which -run would take for a level.
func (c chaosCell) testName() string { return c.fault + "-in-" + c.phase }

// chaosOutputFault is fault mode f on the commands labelled step.
func chaosOutputFault(f, step string) testenv.FaultSpec {
	switch f {
	case "truncate":
		return testenv.FaultSpec{TruncateStep: step}
	case "drop-lines":
		s := testenv.FaultSpec{DropLinesStep: step}
		switch step {
		case "read-state":
			// A wrapper that eats one line: the releases section's marker
			// (issue 10's nil-pointer panic).
			s.DropMatching = "^--relctl-releases--"
		case testenv.ForwardLabel:
			// Every 3rd line of an HTTP answer: a header and the blank line.
		default:
			s.DropEvery = 1 // one-line outputs (a sha256): drop them whole
		}
		return s
	case "garbage":
		return testenv.FaultSpec{GarbageStep: step}
	case "never-ends":
		return testenv.FaultSpec{NeverEndsStep: step}
	}
	panic("unknown fault " + f)
}

// chaosCells lays out the matrix. Per phase: where the fault is switched on,
// and which command it hits (output faults hit a command whose output relctl
// reads; never-ends a command of the phase; unreadable makes the host's
// history.json a directory from the phase on).
func chaosCells() []chaosCell {
	type phase struct {
		triggerHost, trigger string
		host                 string
		output, neverEnds    string // step labels
		traffic              bool
	}
	phases := map[string]phase{
		"preflight": {host: chaosHost, output: "read-state", neverEnds: "preflight/rollback-ready"},
		"stage":     {host: chaosHost, trigger: "preflight/rollback-ready", output: "upload", neverEnds: "stage/unpack"},
		// The activate script's answer (it ends with a line relctl checks).
		"activate": {host: chaosHost, trigger: "stage/unpack", output: "activate", neverEnds: "activate/restart"},
		"verify":   {host: chaosHost, trigger: "activate/restart", output: testenv.ForwardLabel, neverEnds: "health/ready"},
		// HAProxy's answers, on the load balancer, as the host comes back into it.
		"cutover":  {host: chaosLB, triggerHost: chaosHost, trigger: "health/ready", output: "traffic/haproxy", neverEnds: "traffic/haproxy", traffic: true},
		"post":     {host: chaosHost, trigger: "cutover/announce", neverEnds: "post/smoke"},
		"rollback": {host: chaosCanary, triggerHost: chaosHost, trigger: "activate/restart", output: "read-state", neverEnds: "rollback/restart"},
	}
	var cells []chaosCell
	for _, f := range chaosFaults {
		for _, name := range chaosPhases {
			p := phases[name]
			if chaosNotApplicable(f, name) != "" {
				continue
			}
			c := chaosCell{fault: f, phase: name, traffic: p.traffic, host: p.host, triggerHost: p.triggerHost, trigger: p.trigger}
			if c.triggerHost == "" {
				c.triggerHost = c.host
			}
			switch f {
			case "unreadable":
				c.target = ".relctl/history.json"
				if c.host == chaosLB {
					// The load balancer keeps no history: the search host's
					// becomes unreadable as it enters cutover.
					c.host = chaosHost
				}
				c.spec = testenv.FaultSpec{Unreadable: c.target}
				// After activation nothing reads history.json any more (the
				// run keeps what it wrote): the deploy ends well, and writes
				// nothing where it was.
				c.wantDone = name == "verify" || name == "cutover" || name == "post"
			case "never-ends":
				c.target = p.neverEnds
				c.spec = chaosOutputFault(f, p.neverEnds)
			default:
				c.target = p.output
				c.spec = chaosOutputFault(f, p.output)
			}
			if name == "rollback" {
				c.also = map[string]testenv.FaultSpec{chaosHost: {FailStep: "activate/restart"}}
			}
			cells = append(cells, c)
		}
	}
	return cells
}

// chaosOutcome is one cell's result.
type chaosOutcome struct {
	pass    bool
	exit    int
	reasons []string
	// notes are what the table reports without failing the cell.
	notes   []string
	excerpt string // the end of relctl's stderr
	took    time.Duration
}

// chaosRawOutputFails makes "relctl printed a host's raw bytes" fail a cell
// rather than note it.
const chaosRawOutputFails = false

// rawBytes says whether s holds what a terminal should never get from a
// host: invalid UTF-8, NUL, ESC or another control character.
func rawBytes(s string) bool {
	if !utf8.ValidString(s) {
		return true
	}
	return strings.IndexFunc(s, func(r rune) bool {
		return r != '\n' && r != '\t' && r != '\r' && (r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0))
	}) >= 0
}

func (o chaosOutcome) short() string {
	if o.pass {
		return fmt.Sprintf("PASS exit=%d", o.exit)
	}
	r := "?"
	if len(o.reasons) > 0 {
		r = o.reasons[0]
		if len(o.reasons) > 1 {
			r += fmt.Sprintf(" (+%d)", len(o.reasons)-1)
		}
	}
	return fmt.Sprintf("FAIL exit=%d: %s", o.exit, r)
}

// chaosWorkersEnv sets how many cells run at once on clusters without a
// load balancer (default 3); the cutover column runs on its own cluster
// with HAProxy, beside them. Cells mostly wait (health checks, timeouts).
const chaosWorkersEnv = "RELCTL_CHAOS_WORKERS"

func TestChaosMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("the hostile-host matrix takes a minute: `make chaos` or go test without -short")
	}
	bin, err := exec.LookPath("relctl")
	if err != nil {
		t.Fatalf("relctl is not on PATH (TestMain puts the test binary there): %v", err)
	}
	haveTraffic := true
	for _, b := range []string{"/usr/sbin/haproxy", "/usr/bin/socat"} {
		if _, err := os.Stat(b); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s not installed: `make test` installs it", b)
			}
			haveTraffic = false
		}
	}
	workers := 3
	if v := os.Getenv(chaosWorkersEnv); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			workers = n
		}
	}
	base, err := os.MkdirTemp("", "chaos-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)

	cells := chaosCells()
	var (
		mu       sync.Mutex
		outcomes = map[string]chaosOutcome{}
		plain    = make(chan chaosCell, len(cells))
		traffic  = make(chan chaosCell, len(cells))
	)
	// The slowest first: they wait out health checks and timeouts.
	slow := func(c chaosCell) bool { return c.phase == "verify" || c.fault == "never-ends" }
	for _, first := range []bool{true, false} {
		for _, c := range cells {
			switch {
			case slow(c) != first:
			case c.traffic:
				traffic <- c
			default:
				plain <- c
			}
		}
	}
	close(plain)
	close(traffic)
	t.Run("cells", func(t *testing.T) {
		var wg sync.WaitGroup
		// Each worker runs its cells one after the other on one cluster,
		// and replaces the cluster when a cell leaves it changed.
		work := func(name string, opts testenv.Options, queue <-chan chaosCell) {
			defer wg.Done()
			var c *chaosCluster
			defer func() {
				if c != nil {
					c.c.Close()
				}
			}()
			n := 0
			for cell := range queue {
				t.Run(cell.testName(), func(t *testing.T) {
					if cell.traffic && !haveTraffic {
						t.Skip("haproxy or socat not installed")
					}
					if c == nil {
						n++
						var err error
						if c, err = startChaosCluster(bin, filepath.Join(base, fmt.Sprintf("%s%d", name, n)), opts); err != nil {
							t.Fatalf("chaos cluster: %v", err)
						}
					}
					o := runChaosCell(t, bin, c, cell)
					// A load balancer's server states are not worth checking
					// back to what they were: its cluster serves one cell.
					why := "one cell per cluster with a load balancer"
					if !opts.Traffic {
						why = c.dirty()
					}
					if why != "" {
						t.Logf("a fresh cluster for the next cell: %s", why)
						c.c.Close()
						c = nil
					} else {
						c.reset()
					}
					mu.Lock()
					outcomes[cell.name()] = o
					mu.Unlock()
					if !o.pass {
						t.Errorf("%s (%s on %s): %s\nrelctl's stderr ends:\n%s", cell.name(), cell.target, cell.host, strings.Join(o.reasons, "; "), o.excerpt)
					}
				})
			}
		}
		for i := range workers {
			wg.Add(1)
			go work(fmt.Sprintf("c%d-", i+1), testenv.Options{}, plain)
		}
		wg.Add(1)
		go work("t-", testenv.Options{Traffic: true}, traffic)
		wg.Wait()
	})
	table := chaosTable(cells, outcomes)
	t.Log("\n" + table)
	if p := os.Getenv(chaosTableEnv); p != "" {
		if err := os.WriteFile(p, []byte(table), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// chaosTable is the matrix as a markdown table, then what each cell hit
// and why each failing cell failed.
func chaosTable(cells []chaosCell, outcomes map[string]chaosOutcome) string {
	var b strings.Builder
	b.WriteString("| fault \\ phase | " + strings.Join(chaosPhases, " | ") + " |\n")
	b.WriteString("|---" + strings.Repeat("|---", len(chaosPhases)) + "|\n")
	byName := map[string]chaosCell{}
	for _, c := range cells {
		byName[c.name()] = c
	}
	passed, failed, skipped := 0, 0, 0
	for _, f := range chaosFaults {
		row := []string{f}
		for _, p := range chaosPhases {
			o, ok := outcomes[f+"/"+p]
			switch {
			case !ok && chaosNotApplicable(f, p) != "":
				row = append(row, "n/a")
			case !ok:
				row = append(row, "skipped")
				skipped++
			case o.pass && len(o.notes) > 0:
				row = append(row, fmt.Sprintf("PASS (%d) note", o.exit))
				passed++
			case o.pass:
				row = append(row, fmt.Sprintf("PASS (%d)", o.exit))
				passed++
			default:
				row = append(row, fmt.Sprintf("**FAIL** (%d)", o.exit))
				failed++
			}
		}
		b.WriteString("| " + strings.Join(row, " | ") + " |\n")
	}
	fmt.Fprintf(&b, "\n%d cells: %d pass, %d fail, %d skipped. (N) is relctl's exit code; every cell must end 3 or 4, but unreadable in verify, cutover and post 0.\n", len(cells), passed, failed, skipped)
	fmt.Fprintf(&b, "n/a: %s. unreadable in verify, cutover, post: history.json becomes unreadable after the run's last read and write of it (the activation), so the deploy ends well (exit 0) and writes nothing there.\n", chaosNotApplicable("truncate", "post"))
	b.WriteString("Each cell must also: not panic, name the faulted host in relctl's error, leave no lock on any host, lose no activation from any host's history.json.\n")
	b.WriteString("\"note\": passed, but relctl printed a host's raw bytes (invalid UTF-8, control characters) to the terminal.\n\n")
	b.WriteString("| cell | faulted host: what | switched on | outcome |\n|---|---|---|---|\n")
	for _, f := range chaosFaults {
		for _, p := range chaosPhases {
			c, ok := byName[f+"/"+p]
			if !ok {
				continue
			}
			on := "before the run"
			if c.trigger != "" {
				on = "after " + c.triggerHost + " ran " + c.trigger
			}
			if len(c.also) > 0 {
				on += " (and " + chaosHost + " fails activate/restart)"
			}
			o, ok := outcomes[c.name()]
			res := "skipped"
			if ok {
				res = o.short()
				if !o.pass {
					res = fmt.Sprintf("FAIL exit=%d: %s", o.exit, strings.Join(o.reasons, "; "))
				}
				if len(o.notes) > 0 {
					res += "; note: " + strings.Join(o.notes, "; ")
				}
				res += fmt.Sprintf(" [%s]", o.took.Round(100*time.Millisecond))
			}
			fmt.Fprintf(&b, "| %s | %s: %s (%s) | %s | %s |\n", c.name(), c.host, c.target, c.spec, on, strings.ReplaceAll(res, "|", "/"))
		}
	}
	return b.String()
}

// chaosCluster is one testenv cluster with the chaos playbook and 1.0.0 on
// every staging host.
type chaosCluster struct {
	c   *testenv.Cluster
	dir string
}

// reset makes a clean cluster ready for the next cell: 1.1.0 is uploaded
// afresh (an intact staged copy is not uploaded again, and the stage
// column faults the upload).
func (c *chaosCluster) reset() {
	for _, h := range c.stagingHosts() {
		os.RemoveAll(filepath.Join(h.BaseDir, "releases", "1.1.0"))
		os.Remove(filepath.Join(h.BaseDir, "announced"))
	}
}

func startChaosCluster(bin, dir string, opts testenv.Options) (*chaosCluster, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Two search hosts: the canary (batch 1) and the faulted host (batch 2),
	// so a failure rolls back both.
	opts.Dir, opts.Hosts = dir, 2
	c, err := testenv.Start(ctx, opts)
	if err != nil {
		return nil, err
	}
	cc := &chaosCluster{c: c, dir: dir}
	fail := func(err error) (*chaosCluster, error) {
		c.Close()
		return nil, err
	}
	cfg := filepath.Join(dir, testenv.ConfigFile)
	b, err := os.ReadFile(cfg)
	if err != nil {
		return fail(err)
	}
	re := regexp.MustCompile(`(?m)^command_timeout = .*$`)
	if !re.Match(b) {
		return fail(fmt.Errorf("%s has no command_timeout to shorten", cfg))
	}
	b = re.ReplaceAll(b, []byte(`command_timeout = "`+chaosCommandTimeout+`"`+"\n"+`control_timeout = "`+chaosCommandTimeout+`"`))
	if err := os.WriteFile(cfg, b, 0o644); err != nil {
		return fail(err)
	}
	pb := filepath.Join(dir, testenv.PlaybookFile)
	b, err = os.ReadFile(pb)
	if err != nil {
		return fail(err)
	}
	// A damaged health check fails after fewer attempts (twice: in verify
	// and again in the rollback); a healthy start still has seconds.
	re = regexp.MustCompile(`(?m)^retries = 25$`)
	if !re.Match(b) {
		return fail(fmt.Errorf("%s: no [checks.health] retries = 25 to lower", pb))
	}
	b = append(re.ReplaceAll(b, []byte("retries = 12")), chaosPlaybook...)
	if err := os.WriteFile(pb, b, 0o644); err != nil {
		return fail(err)
	}
	res := runChaosRelctl(bin, dir, chaosRunLimit, "deploy", "--env", "staging", "--release", "1.0.0", "--yes")
	if res.exit != 0 {
		return fail(fmt.Errorf("baseline deploy of 1.0.0: exit %d\n%s", res.exit, chaosTail(res.stderr, 20)))
	}
	return cc, nil
}

func (c *chaosCluster) stagingHosts() []testenv.HostInfo {
	var out []testenv.HostInfo
	for _, h := range c.c.Hosts() {
		if h.Env == "staging" && h.HasRole(testenv.RoleSearch) {
			out = append(out, h)
		}
	}
	return out
}

// dirty says why the cluster is not as a fresh one with 1.0.0 ("" if it is).
func (c *chaosCluster) dirty() string {
	if len(c.c.Faults()) > 0 {
		return "faults still set"
	}
	for _, h := range c.c.Hosts() {
		if chaosExists(filepath.Join(h.BaseDir, ".relctl", "lock")) {
			return h.Name + ": lock left"
		}
	}
	for _, h := range c.stagingHosts() {
		if link, _ := os.Readlink(filepath.Join(h.BaseDir, "current")); link != "releases/1.0.0" {
			return fmt.Sprintf("%s: current is %q", h.Name, link)
		}
		if _, err := readActivations(h.BaseDir); err != nil {
			return h.Name + ": " + err.Error()
		}
		if leftovers, _ := filepath.Glob(filepath.Join(h.BaseDir, ".relctl", "*.testenv-original")); len(leftovers) > 0 {
			return h.Name + ": " + strings.Join(leftovers, ", ")
		}
	}
	return ""
}

func chaosExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// chaosActivation is what identifies an activation in history.json.
type chaosActivation struct {
	Version string `json:"version"`
	Kind    string `json:"kind"`
	RunID   string `json:"run_id"`
	Time    string `json:"time"`
}

// readActivations reads base/.relctl/history.json ("none": no file).
func readActivations(base string) ([]chaosActivation, error) {
	p := filepath.Join(base, ".relctl", "history.json")
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("history.json unreadable: %v", err)
	}
	var h struct {
		Activations []chaosActivation `json:"activations"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, fmt.Errorf("history.json is not valid JSON: %v", err)
	}
	return h.Activations, nil
}

type relctlRun struct {
	exit           int
	stdout, stderr string
	timedOut       bool
}

// runRelctl runs the relctl binary in dir; limit only guards against a hang.
func runChaosRelctl(bin, dir string, limit time.Duration, args ...string) relctlRun {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	return runChaosRelctlCtx(ctx, bin, dir, args...)
}

func runChaosRelctlCtx(ctx context.Context, bin, dir string, args ...string) relctlRun {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "RELCTL_OPERATOR=chaos")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	r := relctlRun{exit: cmd.ProcessState.ExitCode(), stdout: out.String(), stderr: errOut.String()}
	if ctx.Err() != nil {
		r.timedOut = true
	}
	if err != nil && r.exit == 0 {
		r.exit = -1
	}
	return r
}

func chaosTail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

var panicRE = regexp.MustCompile(`(?m)^(panic: |fatal error: |goroutine \d+ \[)`)

// runChaosCell runs one deploy of 1.1.0 with the cell's fault and judges it.
func runChaosCell(t *testing.T, bin string, c *chaosCluster, cell chaosCell) chaosOutcome {
	hosts := c.c.Hosts()
	before := map[string][]chaosActivation{}
	for _, h := range hosts {
		acts, err := readActivations(h.BaseDir)
		if err != nil {
			t.Fatalf("%s before the run: %v", h.Name, err)
		}
		before[h.Name] = acts
	}
	set := func(host string, f testenv.FaultSpec) {
		if err := c.c.SetFault(host, f); err != nil {
			t.Errorf("fault %s on %s: %v", f, host, err)
		}
	}
	var armErr string
	if cell.trigger == "" {
		set(cell.host, cell.spec)
	} else {
		set(cell.triggerHost, testenv.FaultSpec{HangStep: cell.trigger})
	}

	ctx, cancel := context.WithTimeout(t.Context(), chaosRunLimit)
	defer cancel()
	done := make(chan relctlRun, 1)
	start := time.Now()
	go func() {
		done <- runChaosRelctlCtx(ctx, bin, c.dir, "deploy", "--env", "staging", "--release", "1.1.0", "--yes")
	}()
	var res relctlRun
	if cell.trigger != "" {
		// Switch the fault on once the trigger host is held in its trigger
		// command; the faults replace the hang, so that command goes on.
		tick := time.NewTicker(10 * time.Millisecond)
	wait:
		for {
			select {
			case res = <-done:
				armErr = fmt.Sprintf("relctl never reached %s on %s", cell.trigger, cell.triggerHost)
				break wait
			case <-tick.C:
				if c.c.Held()[cell.triggerHost] == 0 {
					continue
				}
				set(cell.host, cell.spec)
				for h, f := range cell.also {
					set(h, f)
				}
				if cell.host != cell.triggerHost && cell.also[cell.triggerHost] == (testenv.FaultSpec{}) {
					set(cell.triggerHost, testenv.FaultSpec{})
				}
				break wait
			}
		}
		tick.Stop()
	}
	if armErr == "" {
		res = <-done
	}
	took := time.Since(start)
	// Clear every fault: an unreadable file comes back, unless relctl wrote
	// where it was (then testenv keeps both).
	for _, h := range hosts {
		if err := c.c.SetFault(h.Name, testenv.FaultSpec{}); err != nil {
			t.Errorf("clearing %s: %v", h.Name, err)
		}
	}

	o := chaosOutcome{exit: res.exit, took: took, excerpt: chaosTail(res.stderr, 12)}
	fail := func(format string, args ...any) { o.reasons = append(o.reasons, fmt.Sprintf(format, args...)) }
	if armErr != "" {
		fail("%s", armErr)
	}
	if res.timedOut {
		fail("relctl did not end within %s", chaosRunLimit)
	}
	if panicRE.MatchString(res.stdout) || panicRE.MatchString(res.stderr) {
		m := panicRE.FindString(res.stderr + res.stdout)
		line := ""
		for _, l := range strings.Split(res.stderr+res.stdout, "\n") {
			if strings.HasPrefix(l, strings.TrimSpace(m)) {
				line = l
				break
			}
		}
		fail("panic: %s", strings.TrimSpace(strings.TrimPrefix(line, "panic: ")))
		o.excerpt = panicExcerpt(res.stderr + res.stdout)
	}
	switch {
	case res.timedOut:
	case cell.wantDone:
		if res.exit != 0 {
			fail("exit %d, want 0: nothing the run reads after this point is faulted", res.exit)
		}
		for _, h := range hosts {
			if link, err := os.Readlink(filepath.Join(h.BaseDir, "current")); err == nil && link != "releases/1.1.0" && h.Name != chaosLB {
				fail("%s is on %s, want 1.1.0", h.Name, link)
			}
		}
	case res.exit != 3 && res.exit != 4:
		if res.exit == 0 {
			fail("exit 0: the deploy succeeded on a host that misbehaved")
		} else {
			fail("exit %d, want 3 or 4", res.exit)
		}
	}
	if msg := relctlError(res.stderr); !cell.wantDone && !strings.Contains(msg, cell.host) {
		if msg == "" {
			fail("no error message")
		} else {
			fail("the error does not name %s: %q", cell.host, chaosFirstLine(msg))
		}
	}
	for _, h := range hosts {
		if chaosExists(filepath.Join(h.BaseDir, ".relctl", "lock")) {
			fail("lock left on %s", h.Name)
		}
	}
	for _, h := range hosts {
		if why := historyLost(h.BaseDir, before[h.Name]); why != "" {
			fail("%s: history lost: %s", h.Name, why)
		}
	}
	if rawBytes(res.stderr) || rawBytes(res.stdout) {
		what := "relctl printed the host's raw bytes (invalid UTF-8 or control characters) to the terminal"
		if chaosRawOutputFails {
			fail("%s", what)
		} else {
			o.notes = append(o.notes, what)
		}
	}
	o.pass = len(o.reasons) == 0
	t.Logf("%s: exit %d in %s\n%s", cell.name(), res.exit, took.Round(time.Millisecond), chaosTail(res.stderr, 6))
	return o
}

// relctlError is relctl's error message: from the last stderr line that
// starts with "relctl: " to the end.
func relctlError(stderr string) string {
	lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "relctl: ") {
			return strings.Join(lines[i:], "\n")
		}
	}
	return ""
}

func chaosFirstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	if len(l) > 160 {
		l = l[:160] + "…"
	}
	return l
}

// panicExcerpt is the panic line and the first frames after it.
func panicExcerpt(out string) string {
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if panicRE.MatchString(l) {
			end := min(i+14, len(lines))
			return strings.Join(lines[i:end], "\n")
		}
	}
	return ""
}

// historyLost says which activations of before base's history.json no
// longer has ("" if none was lost).
func historyLost(base string, before []chaosActivation) string {
	p := filepath.Join(base, ".relctl", "history.json")
	if orig, _ := filepath.Glob(p + ".testenv-original"); len(orig) > 0 {
		what := "replaced"
		if fi, err := os.Lstat(p); err == nil && fi.IsDir() {
			what = "written into (it was a directory)"
			if entries, _ := os.ReadDir(p); len(entries) > 0 {
				what += ": " + entries[0].Name()
			}
		}
		return "relctl wrote where history.json was unreadable: " + what
	}
	after, err := readActivations(base)
	if err != nil {
		return err.Error()
	}
	have := map[chaosActivation]bool{}
	for _, a := range after {
		have[a] = true
	}
	var lost []string
	for _, a := range before {
		if !have[a] {
			lost = append(lost, a.Version+" ("+a.Kind+", run "+a.RunID+")")
		}
	}
	if len(lost) > 0 {
		sort.Strings(lost)
		return fmt.Sprintf("%d of %d activations gone: %s", len(lost), len(before), strings.Join(lost, ", "))
	}
	return ""
}

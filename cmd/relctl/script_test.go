package main

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/relctl/relctl/internal/output"
	"github.com/relctl/relctl/testenv"
)

var update = flag.Bool("update", false, "rewrite golden files and cmp targets in testdata")

// TestMain lets the test binary act as relctl for the scripts, and as
// relctl-exit, which checks relctl's exact exit code.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"relctl":      func() { os.Exit(run(os.Args[1:], output.System())) },
		"relctl-exit": func() { os.Exit(relctlExit(os.Args[1:])) },
	})
}

// relctlExit is `exec relctl-exit N ARGS...`: run relctl ARGS in this very
// process and succeed only when it returns exactly N. In the foreground its
// stdout and stderr are relctl's, for the stdout/stderr commands; in the
// background (`exec relctl-exit 130 deploy ... &d1&`, `kill -INT d1`,
// `wait d1`) a signal reaches relctl itself, as there is no wrapper process
// in between. Anything that bypasses run's return (a panic, an os.Exit
// elsewhere) exits non-zero, so a script line using it fails rather than
// passes.
func relctlExit(args []string) int {
	if len(args) < 1 || args[0] == "" {
		fmt.Fprintln(os.Stderr, "usage: relctl-exit N ARGS... (ARGS without the word relctl)")
		return 99
	}
	want, err := strconv.Atoi(args[0])
	if err != nil || want < 0 || (len(args) > 1 && args[1] == "relctl") {
		fmt.Fprintln(os.Stderr, "usage: relctl-exit N ARGS... (N a number; ARGS without the word relctl)")
		return 99
	}
	got := run(args[1:], output.System())
	if got != want {
		fmt.Fprintf(os.Stderr, "relctl-exit: relctl %s exited %d, want %d\n", strings.Join(args[1:], " "), got, want)
		if got == 0 {
			return 98
		}
		return got
	}
	return 0
}

// TestScripts drives the relctl binary against a real testenv cluster: one
// cluster of SSH hosts per script, in $CLUSTER (the script starts there).
func TestScripts(t *testing.T) {
	testscript.Run(t, scriptParams("testdata/script", setupCluster))
}

// TestScriptsTraffic runs the traffic scripts against a cluster with a real
// HAProxy load balancer, app servers and spare hosts.
func TestScriptsTraffic(t *testing.T) {
	for _, bin := range []string{"/usr/sbin/haproxy", "/usr/bin/socat"} {
		if _, err := os.Stat(bin); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s not installed: `make test` installs it", bin)
			}
			t.Skipf("%s not installed (apt-get install -y haproxy socat, or run `make test`)", bin)
		}
	}
	testscript.Run(t, scriptParams("testdata/script-traffic", func(env *testscript.Env) error {
		return startClusterWith(env, testenv.Options{Traffic: true})
	}))
}

// TestScriptsFleet runs the scripts that need more batches than three hosts
// make: six hosts per environment, so the demo playbook (canary 1, then 50%)
// deploys in three batches: staging-1; staging-2..4; staging-5..6.
func TestScriptsFleet(t *testing.T) {
	testscript.Run(t, scriptParams("testdata/script-fleet", func(env *testscript.Env) error {
		return startClusterWith(env, testenv.Options{Hosts: fleetHosts})
	}))
}

// fleetHosts is the number of hosts per environment TestScriptsFleet starts.
const fleetHosts = 6

// TestScriptsMonit runs the watchdog scripts against a cluster whose hosts
// each run a real monit daemon supervising the service.
func TestScriptsMonit(t *testing.T) {
	if _, err := exec.LookPath("monit"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("monit not installed: `make test` installs it")
		}
		t.Skip("monit not installed (apt-get install -y monit, or run `make test`)")
	}
	testscript.Run(t, scriptParams("testdata/script-monit", func(env *testscript.Env) error {
		return startCluster(env, true)
	}))
}

func scriptParams(dir string, setup func(*testscript.Env) error) testscript.Params {
	return testscript.Params{
		Dir:           dir,
		UpdateScripts: *update,
		Setup:         setup,
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"current":     cmdCurrent,
			"serves":      cmdServes,
			"sshdown":     cmdSSH(true),
			"sshup":       cmdSSH(false),
			"handshakes":  cmdHandshakes,
			"inorder":     cmdInOrder,
			"waitfor":     cmdWaitFor,
			"fault":       cmdFault,
			"held":        cmdHeld,
			"consistent":  cmdConsistent,
			"killservice": cmdKillService,
			"junit":       cmdJUnit,
			"lbload":      cmdLBLoad,
			"lbstate":     cmdLBState,
			"lbcmd":       cmdLBCmd,
			"events":      cmdEvents,
			"receiver":    cmdReceiver,
		},
	}
}

const clusterKey = "cluster"

func setupCluster(env *testscript.Env) error { return startCluster(env, false) }

func startCluster(env *testscript.Env, monit bool) error {
	return startClusterWith(env, testenv.Options{Monit: monit})
}

func startClusterWith(env *testscript.Env, opts testenv.Options) error {
	dir := filepath.Join(env.WorkDir, "cluster")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	opts.Dir = dir
	if opts.Hosts == 0 {
		opts.Hosts = 3
	}
	c, err := testenv.Start(ctx, opts)
	if err != nil {
		return err
	}
	env.Defer(func() { c.Close() })
	env.Values[clusterKey] = c
	env.Setenv("CLUSTER", dir)
	for _, h := range c.Hosts() {
		// e.g. STAGING_1_SSH=127.0.0.1:40001 and STAGING_1_PORT=40002, for cmpenv golden files.
		prefix := strings.ToUpper(strings.ReplaceAll(h.Name, "-", "_"))
		env.Setenv(prefix+"_SSH", h.Address)
		env.Setenv(prefix+"_PORT", strconv.Itoa(h.ServicePort))
	}
	env.Setenv("RELCTL_OPERATOR", "tester")
	if repo, err := filepath.Abs("../.."); err == nil {
		env.Setenv("REPO", repo) // the repository, for its example playbooks
	}
	env.Cd = dir
	return nil
}

func cluster(ts *testscript.TestScript) *testenv.Cluster {
	return ts.Value(clusterKey).(*testenv.Cluster)
}

func hostInfo(ts *testscript.TestScript, name string) testenv.HostInfo {
	for _, h := range cluster(ts).Hosts() {
		if h.Name == name {
			return h
		}
	}
	ts.Fatalf("no host %q in the cluster", name)
	return testenv.HostInfo{}
}

// junit FILE TESTCASES FAILURES: FILE parses as JUnit XML with that many
// testcases and failed testcases, every failure with a message.
func cmdJUnit(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 || neg {
		ts.Fatalf("usage: junit FILE TESTCASES FAILURES")
	}
	var doc struct {
		Suites []struct {
			Tests    int `xml:"tests,attr"`
			Failures int `xml:"failures,attr"`
			Cases    []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Message string `xml:"message,attr"`
				} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal([]byte(ts.ReadFile(args[0])), &doc); err != nil {
		ts.Fatalf("%s: not XML: %v", args[0], err)
	}
	if len(doc.Suites) != 1 {
		ts.Fatalf("%s: %d testsuites, want 1", args[0], len(doc.Suites))
	}
	suite := doc.Suites[0]
	failed := 0
	for _, c := range suite.Cases {
		if c.Failure != nil {
			failed++
			if c.Failure.Message == "" {
				ts.Fatalf("%s: testcase %q fails without a message", args[0], c.Name)
			}
		}
	}
	got := fmt.Sprintf("%d %d", len(suite.Cases), failed)
	if want := args[1] + " " + args[2]; got != want || suite.Tests != len(suite.Cases) || suite.Failures != failed {
		ts.Fatalf("%s: %d testcases (tests=%d), %d failed (failures=%d); want %s", args[0], len(suite.Cases), suite.Tests, failed, suite.Failures, want)
	}
}

// current HOST VERSION: HOST's current symlink points at releases/VERSION ("none": no symlink).
func cmdCurrent(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: current HOST VERSION")
	}
	link, err := os.Readlink(filepath.Join(hostInfo(ts, args[0]).BaseDir, "current"))
	got := "none"
	if err == nil {
		got = strings.TrimPrefix(link, "releases/")
	}
	if (got == args[1]) == neg {
		ts.Fatalf("%s: current is %s (symlink %q), want %s%s", args[0], got, link, map[bool]string{true: "not ", false: ""}[neg], args[1])
	}
}

// serves HOST VERSION: HOST's service answers GET /health with 200 naming VERSION.
func cmdServes(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: serves HOST VERSION")
	}
	url := "http://127.0.0.1:" + strconv.Itoa(hostInfo(ts, args[0]).ServicePort) + "/health"
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	ok := false
	var body []byte
	if err == nil {
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		ok = resp.StatusCode == 200 && strings.Contains(string(body), `"version":"`+args[1]+`"`)
	}
	if ok == neg {
		ts.Fatalf("%s: GET %s: err=%v body=%s; want %sserving %s", args[0], url, err, body, map[bool]string{true: "not ", false: ""}[neg], args[1])
	}
}

// sshdown/sshup HOST: close or reopen the host's SSH port.
func cmdSSH(down bool) func(*testscript.TestScript, bool, []string) {
	return func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 1 || neg {
			ts.Fatalf("usage: sshdown|sshup HOST")
		}
		ts.Check(cluster(ts).SetSSHDown(args[0], down))
	}
}

// handshakes HOST N: the host's SSH server completed N handshakes so far.
func cmdHandshakes(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: handshakes HOST N")
	}
	want, err := strconv.Atoi(args[1])
	ts.Check(err)
	got := cluster(ts).Handshakes()[args[0]]
	if (got == want) == neg {
		ts.Fatalf("%s: %d SSH handshakes, want %d", args[0], got, want)
	}
}

// inorder FILE RE...: each regexp matches a line of FILE after the line the previous one matched.
func cmdInOrder(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 || neg {
		ts.Fatalf("usage: inorder FILE REGEXP...")
	}
	lines := strings.Split(ts.ReadFile(args[0]), "\n")
	at := 0
	for _, pat := range args[1:] {
		re, err := regexp.Compile(pat)
		ts.Check(err)
		found := false
		for ; at < len(lines); at++ {
			if re.MatchString(lines[at]) {
				found = true
				at++
				break
			}
		}
		if !found {
			ts.Fatalf("%s: no line matching %q after the previous match", args[0], pat)
		}
	}
}

// waitfor GLOB REGEXP: wait (up to a minute, polling) until a file matching
// GLOB has a line matching REGEXP. It waits for a state, it asserts no time.
func cmdWaitFor(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 || neg {
		ts.Fatalf("usage: waitfor GLOB REGEXP")
	}
	re, err := regexp.Compile(args[1])
	ts.Check(err)
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		files, _ := filepath.Glob(ts.MkAbs(args[0]))
		for _, f := range files {
			if b, err := os.ReadFile(f); err == nil && re.Match(b) {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	ts.Fatalf("no file %s has a line matching %q", args[0], args[1])
}

// consistent ENV: on every host of ENV, history.json is valid JSON and its
// newest activation is the release current points at.
func cmdConsistent(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 || neg {
		ts.Fatalf("usage: consistent ENV")
	}
	for _, h := range cluster(ts).Hosts() {
		if h.Env != args[0] {
			continue
		}
		link, _ := os.Readlink(filepath.Join(h.BaseDir, "current"))
		cur := strings.TrimPrefix(link, "releases/")
		body, err := os.ReadFile(filepath.Join(h.BaseDir, ".relctl", "history.json"))
		if err != nil && cur == "" {
			continue
		}
		ts.Check(err)
		var hist struct {
			Activations []struct {
				Version string `json:"version"`
			} `json:"activations"`
		}
		if err := json.Unmarshal(body, &hist); err != nil {
			ts.Fatalf("%s: history.json is not valid JSON: %v", h.Name, err)
		}
		if n := len(hist.Activations); n == 0 || hist.Activations[n-1].Version != cur {
			ts.Fatalf("%s: current is %q but the newest activation in history is %+v", h.Name, cur, hist.Activations)
		}
	}
}

// fault HOST [drop-ssh] [hang] [fail-step=STEP] [hang-step=STEP] [truncate-step=STEP]
// [drop-lines-step=STEP [drop-every=N] [drop-matching=RE]] [garbage-step=STEP]
// [never-ends-step=STEP] [unreadable=FILE] | clear:
// replace the host's injected faults.
func cmdFault(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 || neg {
		ts.Fatalf("usage: fault HOST clear|drop-ssh|hang|fail-step=STEP|hang-step=STEP...")
	}
	var f testenv.FaultSpec
	for _, a := range args[1:] {
		k, v, _ := strings.Cut(a, "=")
		switch k {
		case "clear":
		case "drop-ssh":
			f.DropSSH = true
		case "hang":
			f.Hang = true
		case "fail-step":
			f.FailStep = v
		case "hang-step":
			f.HangStep = v
		case "truncate-step":
			f.TruncateStep = v
		case "drop-lines-step":
			f.DropLinesStep = v
		case "drop-every":
			n, err := strconv.Atoi(v)
			ts.Check(err)
			f.DropEvery = n
		case "drop-matching":
			f.DropMatching = v
		case "garbage-step":
			f.GarbageStep = v
		case "never-ends-step":
			f.NeverEndsStep = v
		case "unreadable":
			f.Unreadable = v
		default:
			ts.Fatalf("fault: unknown %q", a)
		}
	}
	ts.Check(cluster(ts).SetFault(args[0], f))
}

// held HOST: wait (polling, up to a minute) until a command of HOST is held
// by a hang-step fault, i.e. relctl is inside that step now.
func cmdHeld(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 || neg {
		ts.Fatalf("usage: held HOST")
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if cluster(ts).Held()[args[0]] > 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	ts.Fatalf("%s: no command held after a minute", args[0])
}

// killservice HOST: kill -9 the host's service (the pid in its pidfile) and
// wait (up to a minute) until a new process answers /health: the watchdog
// restarted it.
func cmdKillService(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 || neg {
		ts.Fatalf("usage: killservice HOST")
	}
	h := hostInfo(ts, args[0])
	pidfile := filepath.Join(h.BaseDir, "run", "search.pid")
	read := func() int {
		b, _ := os.ReadFile(pidfile)
		n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return n
	}
	old := read()
	if old <= 1 {
		ts.Fatalf("%s: no pid in %s", args[0], pidfile)
	}
	ts.Check(syscall.Kill(old, syscall.SIGKILL))
	deadline := time.Now().Add(time.Minute)
	client := &http.Client{Timeout: 2 * time.Second}
	for time.Now().Before(deadline) {
		if pid := read(); pid > 1 && pid != old {
			if resp, err := client.Get("http://127.0.0.1:" + strconv.Itoa(h.ServicePort) + "/health"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	ts.Fatalf("%s: killed pid %d; no new healthy process after a minute: nothing supervises the service", args[0], old)
}

// lbLoads are the request streams `lbload start` runs, by script.
var lbLoads sync.Map // *testscript.TestScript -> *lbLoad

type lbLoad struct {
	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	results []lbResult
}

// minLBRequests is the least a stream sends before `lbload stop` ends it.
const minLBRequests = 20

type lbResult struct {
	status int
	body   string
	err    error
}

// lbload start ENV: request GET /health through ENV's load balancer, one
// after the other, until `lbload stop ENV VERSION...`, which fails unless
// every answer was 200 from one of the versions (never a 5xx, never an
// error, never another version).
func cmdLBLoad(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: lbload start ENV | lbload stop ENV VERSION...")
	}
	lb, ok := cluster(ts).LB(args[1])
	if !ok {
		ts.Fatalf("no load balancer in %s", args[1])
	}
	switch args[0] {
	case "start":
		l := &lbLoad{stop: make(chan struct{}), done: make(chan struct{})}
		lbLoads.Store(ts, l)
		url := "http://127.0.0.1:" + strconv.Itoa(lb.LBPort) + "/health"
		go func() {
			defer close(l.done)
			client := &http.Client{Timeout: 10 * time.Second}
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				r := lbResult{}
				resp, err := client.Get(url)
				if err != nil {
					r.err = err
				} else {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					r.status, r.body = resp.StatusCode, strings.TrimSpace(string(b))
				}
				l.mu.Lock()
				l.results = append(l.results, r)
				l.mu.Unlock()
				time.Sleep(10 * time.Millisecond)
			}
		}()
	case "stop":
		v, ok := lbLoads.LoadAndDelete(ts)
		if !ok {
			ts.Fatalf("lbload stop without start")
		}
		l := v.(*lbLoad)
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			l.mu.Lock()
			n := len(l.results)
			l.mu.Unlock()
			if n >= minLBRequests {
				break
			}
		}
		close(l.stop)
		<-l.done
		versions := map[string]int{}
		bad := 0
		for _, r := range l.results {
			ok := r.err == nil && r.status == 200
			if ok {
				ok = false
				for _, want := range args[2:] {
					if strings.Contains(r.body, want) {
						versions[want]++
						ok = true
					}
				}
			}
			if !ok {
				bad++
				if bad <= 5 {
					ts.Logf("bad answer: status %d body %q err %v", r.status, r.body, r.err)
				}
			}
		}
		ts.Logf("%d requests through the load balancer: %v, %d bad", len(l.results), versions, bad)
		if bad > 0 || len(l.results) < minLBRequests {
			ts.Fatalf("%d of %d requests through the load balancer were not a 200 from %v", bad, len(l.results), args[2:])
		}
	default:
		ts.Fatalf("usage: lbload start ENV | lbload stop ENV VERSION...")
	}
}

// lbstate save ENV FILE | lbstate same ENV FILE: the state and weight of
// every server of the search backend, as `show servers state` says, saved
// to FILE or compared with it (waiting up to 15s for health checks to
// settle after a run).
func cmdLBState(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: lbstate save|same ENV FILE")
	}
	read := func() string {
		out, err := cluster(ts).HAProxyCommand(context.Background(), args[1], "show servers state "+testenv.HAProxyBackend)
		if err != nil {
			ts.Fatalf("show servers state: %v", err)
		}
		return serverStates(ts, out)
	}
	file := ts.MkAbs(args[2])
	switch args[0] {
	case "save":
		if err := os.WriteFile(file, []byte(read()), 0o644); err != nil {
			ts.Fatalf("%v", err)
		}
	case "same":
		want := ts.ReadFile(args[2])
		deadline := time.Now().Add(15 * time.Second)
		for {
			got := read()
			if got == want {
				return
			}
			if time.Now().After(deadline) {
				ts.Fatalf("show servers state differs from before:\n--- before\n%s--- now\n%s", want, got)
			}
			time.Sleep(200 * time.Millisecond)
		}
	default:
		ts.Fatalf("usage: lbstate save|same ENV FILE")
	}
}

// serverStates keeps, per server, what a run must give back: name, address,
// port, operational state, admin state, user and initial weight.
func serverStates(ts *testscript.TestScript, out string) string {
	var cols map[string]int
	var b strings.Builder
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
		case f[0] == "#":
			cols = map[string]int{}
			for i, name := range f[1:] {
				cols[name] = i
			}
		case cols != nil && len(f) == len(cols):
			for _, c := range []string{"srv_name", "srv_addr", "srv_port", "srv_op_state", "srv_admin_state", "srv_uweight", "srv_iweight"} {
				fmt.Fprintf(&b, "%s=%s ", c, f[cols[c]])
			}
			b.WriteString("\n")
		}
	}
	if b.Len() == 0 {
		ts.Fatalf("no server in show servers state:\n%s", out)
	}
	return b.String()
}

// lbcmd ENV COMMAND...: one HAProxy runtime API command on ENV's load
// balancer (e.g. set weight search/staging-2 37); its answer goes to stdout.
func cmdLBCmd(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: lbcmd ENV COMMAND...")
	}
	out, err := cluster(ts).HAProxyCommand(context.Background(), args[0], strings.Join(args[1:], " "))
	if err != nil {
		ts.Fatalf("%v", err)
	}
	ts.Stdout().Write([]byte(out))
}

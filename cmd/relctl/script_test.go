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
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/relctl/relctl/internal/output"
	"github.com/relctl/relctl/testenv"
)

var update = flag.Bool("update", false, "rewrite golden files and cmp targets in testdata")

// TestMain lets the test binary act as relctl for the scripts.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"relctl": func() { os.Exit(run(os.Args[1:], output.System())) },
	})
}

// TestScripts drives the relctl binary against a real testenv cluster: one
// cluster of SSH hosts per script, in $CLUSTER (the script starts there).
func TestScripts(t *testing.T) {
	testscript.Run(t, scriptParams("testdata/script", setupCluster))
}

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
		},
	}
}

const clusterKey = "cluster"

func setupCluster(env *testscript.Env) error { return startCluster(env, false) }

func startCluster(env *testscript.Env, monit bool) error {
	dir := filepath.Join(env.WorkDir, "cluster")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := testenv.Start(ctx, testenv.Options{Dir: dir, Hosts: 3, Monit: monit})
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

// fault HOST [drop-ssh] [hang] [fail-step=STEP] [hang-step=STEP] | clear:
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

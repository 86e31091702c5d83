package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// rollbackMarkerStep is a [rollback] step that records each of its runs on
// the host and, on the first, sleeps: the moment, visible to the test, at
// which every host is busy with its rollback through the bastion.
const rollbackMarkerStep = `[[rollback.steps]]
name = "marker"
run = "echo ran >> {{.BaseDir}}/rollback-marker; [ $(wc -l < {{.BaseDir}}/rollback-marker) -gt 1 ] || sleep 20"
`

// lostBastionProject is a bastionProject whose rollbacks run
// rollbackMarkerStep on all three hosts at once, retrying an unreachable
// host up to 8 times, 250ms apart at first.
func lostBastionProject(t *testing.T) *bastionProject {
	p := newBastionProject(t, rollbackMarkerStep)
	project := filepath.Dir(p.cfgPath)
	// Every host in one batch, so all three are rolled back at once.
	replaceInFile(t, filepath.Join(project, "playbooks", "search.toml"), "canary = 1\nbatch_size = 2\n", "canary = 0\nbatch_size = 3\n")
	// Attempts enough that the rollback outlasts the outage, whose end the
	// test chooses; short waits, so the test is quick.
	replaceInFile(t, p.cfgPath, "\n[environments.staging]\n", "\n[ssh]\nreconnect_attempts = 8\nreconnect_backoff = \"250ms\"\n\n[environments.staging]\n")
	return p
}

// cutBastionDuring runs relctl with args and, once every host runs the
// marker step (stepID), cuts the bastion: the relay refuses new
// connections and the connection relctl holds dies with its sshd. The
// bastion comes back once every host's re-dial of it failed once. It
// returns what relctl returned and the command's run log.
func cutBastionDuring(t *testing.T, p *bastionProject, stepID string, args ...string) (code int, out, errOut, log string) {
	t.Helper()
	project := filepath.Dir(p.cfgPath)
	bastionAddr := "bastion root@" + p.relay.Addr
	runLogs := filepath.Join(project, ".relctl", "runs", "*.log")
	before, _ := filepath.Glob(runLogs)
	for _, h := range p.hosts {
		os.Remove(filepath.Join(h.Root, "srv", "search", "rollback-marker"))
	}

	finished := make(chan struct{})
	go func() {
		defer close(finished)
		code, out, errOut = p.relctl(args...)
	}()
	// Whatever happens, relctl ends before the servers do.
	t.Cleanup(func() { p.relay.SetDown(false); <-finished })

	runLog := func() string {
		after, _ := filepath.Glob(runLogs)
		for _, f := range after {
			if !slices.Contains(before, f) {
				return string(mustRead(t, f))
			}
		}
		return ""
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(3 * time.Minute) // a hang, not a measure
		for !cond() {
			select {
			case <-finished:
				t.Fatalf("relctl %s ended (exit %d) before %s\nstdout:\n%s\nstderr:\n%s\nrun log:\n%s", strings.Join(args, " "), code, what, out, errOut, runLog())
			case <-time.After(50 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("still no %s; run log so far:\n%s", what, runLog())
			}
		}
	}

	waitFor("rollback marker on every host", func() bool {
		for _, h := range p.hosts {
			if _, err := os.Stat(filepath.Join(h.Root, "srv", "search", "rollback-marker")); err != nil {
				return false
			}
		}
		return true
	})
	p.relay.SetDown(true)
	if n := p.bastion.KillConnections(t); n == 0 {
		t.Fatal("the bastion had no connection to kill")
	}
	// Each host is retried and its re-dial of the bastion fails (it is
	// down) before the bastion comes back.
	waitFor("failed re-dial of the bastion for every host", func() bool {
		log := runLog()
		for i := range p.hosts {
			if !regexp.MustCompile(fmt.Sprintf(`(?m) web-%d %s: host unreachable \(web-%d \(127\.0\.0\.1:\d+\): %s \([^)]*\): ssh: handshake failed: .*\); retrying in 500ms$`, i+1, regexp.QuoteMeta(stepID), i+1, regexp.QuoteMeta(bastionAddr))).MatchString(log) {
				return false
			}
		}
		return true
	})
	p.relay.SetDown(false)
	<-finished
	return code, out, errOut, runLog()
}

// checkReconnected checks, for every host, that stepID lost its
// connection with the bastion's, ran again once the bastion was back (the
// marker ran twice), and that one new bastion connection carried all three.
func checkReconnected(t *testing.T, p *bastionProject, stepID, out, errOut, log string) {
	t.Helper()
	bastionAddr := "bastion root@" + p.relay.Addr
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf(format+"\nstdout:\n%s\nstderr:\n%s\nrun log:\n%s", append(args, out, errOut, log)...)
	}
	for i, h := range p.hosts {
		name := fmt.Sprintf("web-%d", i+1)
		if got := string(mustRead(t, filepath.Join(h.Root, "srv", "search", "rollback-marker"))); got != "ran\nran\n" {
			t.Errorf("%s: the marker step ran %d times, want 2 (once cut, once after the reconnect)", name, strings.Count(got, "ran"))
		}
		// stderr (-v): the step that lost its connection, then the same step done.
		if !regexp.MustCompile(`(?m)^  ` + name + ` +` + regexp.QuoteMeta(stepID) + ` +FAILED .*connection to ` + name + ` lost: its bastion's connection ended \(connection to ` + regexp.QuoteMeta(bastionAddr) + ` lost`).MatchString(errOut) {
			fail("%s: stderr shows no %s failed by the lost connection", name, stepID)
		}
		if !regexp.MustCompile(`(?m)^  ` + name + ` +` + regexp.QuoteMeta(stepID) + ` +ok `).MatchString(errOut) {
			fail("%s: stderr shows no %s done after the reconnect", name, stepID)
		}
		// The run log: lost, retried, reconnected through the bastion.
		for _, want := range []string{
			` ` + name + ` ` + regexp.QuoteMeta(stepID) + `: host unreachable \(connection to ` + name + ` lost: its bastion's connection ended \(connection to ` + regexp.QuoteMeta(bastionAddr) + ` lost: .*\)\); retrying in 250ms$`,
			` ` + name + ` ssh: connected \(handshake 2 with this host in this command\) through ` + regexp.QuoteMeta(bastionAddr) + `$`,
		} {
			if !regexp.MustCompile(`(?m)` + want).MatchString(log) {
				fail("%s: no line matching %s in the run log", name, want)
			}
		}
	}
	if !regexp.MustCompile(`(?m)ssh: connected to ` + regexp.QuoteMeta(bastionAddr) + ` \(handshake 2 with this bastion in this command\)$`).MatchString(log) {
		fail("the run log shows no second connection to the bastion")
	}
	if strings.Contains(log, "handshake 3 with this bastion") {
		fail("the bastion was dialled a third time: once back, its connection carries every host")
	}
	if strings.Contains(errOut, "ROLLBACK FAILED") {
		fail("a host's rollback failed")
	}
}

// TestBastionLostDuringRollback loses the bastion's connection while the
// automatic rollback of a failed deploy runs on every host behind it, and
// keeps the bastion unreachable through the next reconnect attempt: the
// hosts fail as unreachable, the rollback retries them with backoff,
// dials the bastion again once it answers (one login for all three hosts)
// and finishes: every host back on 1.1.0 and healthy, exit 3.
func TestBastionLostDuringRollback(t *testing.T) {
	p := lostBastionProject(t)
	if code, out, errOut := p.relctl("deploy", "--env", "staging", "--release", "1.1.0", "--yes"); code != 0 {
		t.Fatalf("deploy 1.1.0 through the bastion: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	// testenv's 1.2.0 fails its health check on every host: the rollback
	// of all three starts, and the bastion is cut during it.
	code, out, errOut, log := cutBastionDuring(t, p, "rollback/marker", "deploy", "-v", "--env", "staging", "--release", "1.2.0", "--yes")
	if code != exitFailedClean {
		t.Errorf("deploy 1.2.0 with the bastion lost during its rollback: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitFailedClean, out, errOut)
	}
	checkReconnected(t, p, "rollback/marker", out, errOut, log)
	for i, h := range p.hosts {
		name := fmt.Sprintf("web-%d", i+1)
		if !regexp.MustCompile(`(?m)^` + name + ` +1\.1\.0 +1\.1\.0 +failed at verify/health, rolled back, healthy$`).MatchString(out) {
			t.Errorf("%s: no row saying it was rolled back and is healthy:\n%s", name, out)
		}
		if got := p.current(h); got != "releases/1.1.0" {
			t.Errorf("after the rollback: %s: current -> %s, want releases/1.1.0", name, got)
		}
		if !regexp.MustCompile(`(?m)^  ` + name + ` rollback: .*, marker failed, marker ok, health ok -> on 1\.1\.0, healthy$`).MatchString(errOut) {
			t.Errorf("%s: the steps per host do not show the marker step failed, then done, and the host healthy:\n%s", name, errOut)
		}
	}
	if !strings.Contains(errOut, "Deploy of 1.2.0 to staging FAILED and was rolled back: every touched host is healthy on its previous release") {
		t.Errorf("stderr does not say every touched host is back and healthy:\n%s", errOut)
	}
	// The bastion saw the re-dial: the deploy's login and one more, for all three hosts.
	if n := p.bastionLogins(); n != 3 {
		t.Errorf("the bastion logged %d logins, want 3 (deploy 1.1.0; deploy 1.2.0 and its re-dial)\n%s", n, tail(p.bastion.Log(t), 40))
	}
}

// TestBastionLostDuringRollbackToPrev: the same outage during `relctl
// rollback --to prev`, the on-call's command: the hosts are retried, the
// bastion dialled again, and the rollback finishes (exit 0), every host on
// 1.0.0 and healthy.
func TestBastionLostDuringRollbackToPrev(t *testing.T) {
	p := lostBastionProject(t)
	for _, v := range []string{"1.0.0", "1.1.0"} {
		if code, out, errOut := p.relctl("deploy", "--env", "staging", "--release", v, "--yes"); code != 0 {
			t.Fatalf("deploy %s through the bastion: exit %d\nstdout:\n%s\nstderr:\n%s", v, code, out, errOut)
		}
	}
	code, out, errOut, log := cutBastionDuring(t, p, "activate/marker", "rollback", "-v", "--env", "staging", "--to", "prev", "--yes")
	if code != 0 {
		t.Errorf("rollback --to prev with the bastion lost during it: exit %d, want 0\nstdout:\n%s\nstderr:\n%s\nrun log:\n%s", code, out, errOut, log)
	}
	checkReconnected(t, p, "activate/marker", out, errOut, log)
	for i, h := range p.hosts {
		name := fmt.Sprintf("web-%d", i+1)
		if !regexp.MustCompile(`(?m)^` + name + ` +1\.1\.0 +1\.0\.0 +`).MatchString(out) {
			t.Errorf("%s: no row from 1.1.0 to 1.0.0:\n%s", name, out)
		}
		if got := p.current(h); got != "releases/1.0.0" {
			t.Errorf("after the rollback: %s: current -> %s, want releases/1.0.0", name, got)
		}
	}
	if n := p.bastionLogins(); n != 4 {
		t.Errorf("the bastion logged %d logins, want 4 (two deploys; the rollback and its re-dial)\n%s", n, tail(p.bastion.Log(t), 40))
	}
}

// replaceInFile replaces old, which must occur once, with new in the file.
func replaceInFile(t *testing.T, path, old, new string) {
	t.Helper()
	body := string(mustRead(t, path))
	if n := strings.Count(body, old); n != 1 {
		t.Fatalf("%s: %q occurs %d times, want once:\n%s", path, old, n, body)
	}
	writeFile(t, path, strings.Replace(body, old, new, 1))
}

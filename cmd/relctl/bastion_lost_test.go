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

// TestBastionLostDuringRollback loses the bastion's connection while the
// automatic rollback of a failed deploy runs on every host behind it, and
// keeps the bastion unreachable through the next reconnect attempt: the
// hosts fail as unreachable, the rollback retries them with backoff,
// dials the bastion again once it answers (one login for all three hosts)
// and finishes: every host back on 1.1.0 and healthy, exit 3.
func TestBastionLostDuringRollback(t *testing.T) {
	p := newBastionProject(t, rollbackMarkerStep)
	project := filepath.Dir(p.cfgPath)
	// Every host in one batch, so all three are rolled back at once.
	replaceInFile(t, filepath.Join(project, "playbooks", "search.toml"), "canary = 1\nbatch_size = 2\n", "canary = 0\nbatch_size = 3\n")
	// Attempts enough that the rollback outlasts the outage, whose end the
	// test chooses; short waits, so the test is quick.
	replaceInFile(t, p.cfgPath, "\n[environments.staging]\n", "\n[ssh]\nreconnect_attempts = 8\nreconnect_backoff = \"250ms\"\n\n[environments.staging]\n")
	bastionAddr := "bastion root@" + p.relay.Addr

	if code, out, errOut := p.relctl("deploy", "--env", "staging", "--release", "1.1.0", "--yes"); code != 0 {
		t.Fatalf("deploy 1.1.0 through the bastion: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if n := p.bastionLogins(); n != 1 {
		t.Fatalf("after one deploy the bastion logged %d logins, want 1", n)
	}
	runLogs := filepath.Join(project, ".relctl", "runs", "*.log")
	before, _ := filepath.Glob(runLogs)

	// testenv's 1.2.0 fails its health check on every host: the rollback
	// of all three starts, and the test cuts the bastion during it.
	var code int
	var out, errOut string
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		code, out, errOut = p.relctl("deploy", "--env", "staging", "--release", "1.2.0", "--yes")
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
				t.Fatalf("deploy 1.2.0 ended (exit %d) before %s\nstdout:\n%s\nstderr:\n%s\nrun log:\n%s", code, what, out, errOut, runLog())
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
	// The bastion goes away: new connections to it are refused, and the
	// one relctl holds (carrying every host) dies with its sshd.
	p.relay.SetDown(true)
	if n := p.bastion.KillConnections(t); n == 0 {
		t.Fatal("the bastion had no connection to kill")
	}
	// Each host is retried and its re-dial of the bastion fails (it is
	// down) before the bastion comes back.
	waitFor("failed re-dial of the bastion for every host", func() bool {
		log := runLog()
		for i := range p.hosts {
			if !regexp.MustCompile(fmt.Sprintf(`(?m) web-%d rollback/marker: host unreachable \(web-%d \(127\.0\.0\.1:\d+\): %s \([^)]*\): ssh: handshake failed: .*\); retrying in 500ms$`, i+1, i+1, regexp.QuoteMeta(bastionAddr))).MatchString(log) {
				return false
			}
		}
		return true
	})
	p.relay.SetDown(false)
	<-finished
	log := runLog()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf(format+"\nstdout:\n%s\nstderr:\n%s\nrun log:\n%s", append(args, out, errOut, log)...)
	}

	if code != exitFailedClean {
		fail("deploy 1.2.0 with the bastion lost during its rollback: exit %d, want %d", code, exitFailedClean)
	}
	for i, h := range p.hosts {
		name := fmt.Sprintf("web-%d", i+1)
		if !regexp.MustCompile(`(?m)^` + name + ` +1\.1\.0 +1\.1\.0 +failed at verify/health, rolled back, healthy$`).MatchString(out) {
			fail("%s: no row saying it was rolled back and is healthy", name)
		}
		if got := p.current(h); got != "releases/1.1.0" {
			t.Errorf("after the rollback: %s: current -> %s, want releases/1.1.0", name, got)
		}
		// Its marker step ran again once the host was back.
		if got := string(mustRead(t, filepath.Join(h.Root, "srv", "search", "rollback-marker"))); got != "ran\nran\n" {
			t.Errorf("%s: the marker step ran %d times, want 2 (once cut, once after the reconnect)", name, strings.Count(got, "ran"))
		}
		// stderr: the step that lost its connection, then the same step done.
		if !regexp.MustCompile(`(?m)^  ` + name + ` +rollback/marker +FAILED .*connection to ` + name + ` lost: its bastion's connection ended \(connection to ` + regexp.QuoteMeta(bastionAddr) + ` lost`).MatchString(errOut) {
			fail("%s: stderr shows no rollback/marker failed by the lost connection", name)
		}
		if !regexp.MustCompile(`(?m)^  ` + name + ` +rollback/marker +ok `).MatchString(errOut) {
			fail("%s: stderr shows no rollback/marker done after the reconnect", name)
		}
		if !regexp.MustCompile(`(?m)^  ` + name + ` rollback: .*, marker failed, marker ok, health ok -> on 1\.1\.0, healthy$`).MatchString(errOut) {
			fail("%s: the steps per host do not show the marker step failed, then done, and the host healthy", name)
		}
		// The run log: lost, retried, reconnected through the bastion.
		for _, want := range []string{
			` ` + name + ` rollback/marker: host unreachable \(connection to ` + name + ` lost: its bastion's connection ended \(connection to ` + regexp.QuoteMeta(bastionAddr) + ` lost: .*\)\); retrying in 250ms$`,
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
	if !strings.Contains(errOut, "Deploy of 1.2.0 to staging FAILED and was rolled back: every touched host is healthy on its previous release") {
		fail("stderr does not say every touched host is back and healthy")
	}
	// The bastion saw the re-dial: the deploy's login and one more, for all three hosts.
	if n := p.bastionLogins(); n != 3 {
		t.Errorf("the bastion logged %d logins, want 3 (deploy 1.1.0; deploy 1.2.0 and its re-dial)\n%s", n, tail(p.bastion.Log(t), 40))
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

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/relctl/relctl/testenv"
)

// tmuxPane is a pane of a private tmux server (its own socket, no user
// configuration): a real terminal for relctl, read back as text.
type tmuxPane struct {
	t      *testing.T
	socket string
}

func startTmux(t *testing.T, width, height int) *tmuxPane {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("tmux not installed: `make test` installs it")
		}
		t.Skip("tmux not installed (apt-get install -y tmux, or run `make test`)")
	}
	p := &tmuxPane{t: t, socket: fmt.Sprintf("relctl-test-%d", os.Getpid())}
	// A shell that waits for commands keeps the pane (and its last
	// screen) after relctl exits.
	p.tmux("-f", "/dev/null", "new-session", "-d", "-s", "relctl", "-x", strconv.Itoa(width), "-y", strconv.Itoa(height), "sh")
	t.Cleanup(func() { _ = exec.Command("tmux", "-L", p.socket, "kill-server").Run() })
	return p
}

func (p *tmuxPane) tmux(args ...string) string {
	p.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-L", p.socket}, args...)...).CombinedOutput()
	if err != nil {
		p.t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// run types a command line into the pane.
func (p *tmuxPane) run(line string) { p.tmux("send-keys", "-t", "relctl", line, "Enter") }

// capture is the pane's screen, trailing blank lines dropped.
func (p *tmuxPane) capture() string {
	return strings.TrimRight(p.tmux("capture-pane", "-p", "-t", "relctl"), "\n")
}

// watch captures the screen again and again, each distinct screen once,
// until done says the last one is the end; a limit guards against a hang
// only (nothing is asserted about time).
func (p *tmuxPane) watch(done func(screen string) bool) []string {
	p.t.Helper()
	var screens []string
	deadline := time.Now().Add(3 * time.Minute)
	for {
		s := p.capture()
		if len(screens) == 0 || screens[len(screens)-1] != s {
			screens = append(screens, s)
		}
		if done(s) {
			return screens
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("the pane never got to its end; last screen:\n%s", s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var (
	// the live view's header: "deploy search 1.1.0 in staging: 5/8 hosts
	// done · 3s elapsed · about 2s left"
	liveHeader = regexp.MustCompile(`(?m)^deploy search (\S+) in staging: (\d+)/(\d+) hosts done · \d+s elapsed`)
	// a bar: "batch 2/3 stage   [====>---] 2/4 done · 2 running · 0 failed · longest: staging-3 stage/slow 512ms"
	liveBar = regexp.MustCompile(`(?m)^(batch \d+/\d+ \w+|rollback) +\[[-=>]+\] (\d+)/(\d+) done · (\d+) running · (\d+) failed`)
)

// TestLiveViewOnATerminal runs relctl deploy in a tmux pane, a real
// terminal: while it runs, the screen holds the live view (a header with
// the hosts done and the time, a bar per phase of the batch), which
// updates: a later screen shows more hosts done. The final screen shows
// the outcome: the run's last line and the result table, no bar left
// behind. A failed deploy's automatic rollback gets its own section.
func TestLiveViewOnATerminal(t *testing.T) {
	pane := startTmux(t, 200, 80)
	bin, err := exec.LookPath("relctl")
	if err != nil {
		t.Fatalf("relctl is not on PATH (TestMain puts the test binary there): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := testenv.Start(ctx, testenv.Options{Dir: filepath.Join(t.TempDir(), "cluster"), Hosts: 8, Envs: []string{"staging"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A slow step in each batch, and in the rollback: the view is live for
	// seconds, not a blink.
	appendFile(t, filepath.Join(c.Dir(), "playbooks", "search.toml"), `
[[steps]]
phase = "stage"
name = "slow"
run = "sleep 1"

[[rollback.steps]]
name = "slow"
run = "sleep 1"
`)
	relctl := func(args string) {
		pane.run(fmt.Sprintf("cd %s && clear && %s %s; echo RELCTL-EXIT=$?", c.Dir(), bin, args))
	}
	// The typed line says RELCTL-EXIT=$?; the shell's answer has the code.
	exited := regexp.MustCompile(`(?m)^RELCTL-EXIT=\d+$`)
	ended := func(s string) bool { return exited.MatchString(s) }

	relctl("deploy --env staging --release 1.0.0 --yes")
	first := pane.watch(ended)
	if last := first[len(first)-1]; !strings.Contains(last, "RELCTL-EXIT=0") {
		t.Fatalf("deploy 1.0.0 failed:\n%s", last)
	}

	relctl("deploy --env staging --release 1.1.0 --yes")
	screens := pane.watch(ended)
	checkLiveUpdates(t, screens, "1.1.0")
	final := screens[len(screens)-1]
	for _, want := range []string{
		"RELCTL-EXIT=0",
		"Deploy of 1.1.0 to staging done: 8/8 hosts on 1.1.0",
		"batch 3/3 (staging-[6-8]): stage done: 3 ok",
	} {
		if !strings.Contains(final, want) {
			t.Errorf("the final screen has no %q:\n%s", want, final)
		}
	}
	if !regexp.MustCompile(`(?m)^HOST +BEFORE +AFTER +RESULT\n(staging-\d +1\.0\.0 +1\.1\.0 +ok\n){8}`).MatchString(final) {
		t.Errorf("the final screen has no result table of 8 hosts on 1.1.0:\n%s", final)
	}
	if m := liveHeader.FindStringSubmatch(final); m == nil || m[2] != "8" || !strings.Contains(final, "· done") {
		t.Errorf("the final screen's header does not say all 8 hosts are done:\n%s", final)
	}
	if liveBar.MatchString(final) {
		t.Errorf("a bar is left on the final screen:\n%s", final)
	}
	if n := strings.Count(final, "Deploying search 1.1.0 on staging"); n != 1 {
		t.Errorf("the run's first line is on the final screen %d times, want once (redrawn lines must not pile up):\n%s", n, final)
	}

	// staging-4 (batch 2) fails: the rollback is its own section, live,
	// and the final screen says the deploy was rolled back.
	if err := c.SetFault("staging-4", testenv.FaultSpec{FailStep: "activate/restart"}); err != nil {
		t.Fatal(err)
	}
	relctl("deploy --env staging --release 1.0.0 --yes")
	screens = pane.watch(ended)
	sawRollback := false
	for _, s := range screens {
		if strings.Contains(s, "── automatic rollback of 5 touched hosts: staging-[1-5]") && regexp.MustCompile(`(?m)^rollback +\[`).MatchString(s) {
			sawRollback = true
		}
	}
	if !sawRollback {
		t.Errorf("no screen showed the automatic rollback's section (its heading and bar); screens:\n%s", strings.Join(screens, "\n-----\n"))
	}
	final = screens[len(screens)-1]
	if !regexp.MustCompile(`(?m)^  staging-4 +activate/restart +FAILED `).MatchString(final) {
		t.Errorf("the final screen has no line for staging-4's failed step:\n%s", final)
	}
	for _, want := range []string{
		"RELCTL-EXIT=3",
		"Rolling back 5 touched hosts: staging-[1-5]",
		"Rollback done: 5 ok",
		"Deploy of 1.0.0 to staging FAILED and was rolled back",
		"FAILED, rolled back",
	} {
		if !strings.Contains(final, want) {
			t.Errorf("the final screen has no %q:\n%s", want, final)
		}
	}
}

// checkLiveUpdates: some screens show the live view of the release's
// deploy, and a later one shows more hosts done than an earlier one.
func checkLiveUpdates(t *testing.T, screens []string, release string) {
	t.Helper()
	var live []int // hosts done, per live screen
	for _, s := range screens {
		m := liveHeader.FindStringSubmatch(s)
		if m == nil || m[1] != release || !liveBar.MatchString(s) {
			continue
		}
		done, _ := strconv.Atoi(m[2])
		live = append(live, done)
	}
	if len(live) < 2 {
		t.Fatalf("%d screens showed the live view (header and bars), want several; screens:\n%s", len(live), strings.Join(screens, "\n-----\n"))
	}
	if live[len(live)-1] <= live[0] {
		t.Errorf("the live view did not move on: hosts done %v across its screens", live)
	}
	for i := 1; i < len(live); i++ {
		if live[i] < live[i-1] {
			t.Errorf("hosts done went back: %v", live)
		}
	}
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

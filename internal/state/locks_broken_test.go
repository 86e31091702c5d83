package state

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/relctl/relctl/internal/shellquote"
	"github.com/relctl/relctl/internal/transport"
)

// brokenLockForms are the forms a lock can take that no run of relctl
// makes, each planted by a shell command run in the host's .relctl.
func brokenLockForms(t *testing.T) []struct{ name, plant, want string } {
	valid, err := json.Marshal(LockOwner{Operator: "alice", Controller: "laptop", PID: 4242, RunID: "20260101T000000Z-valid",
		Env: "staging", Command: "deploy", Release: "1.0.0", Started: time.Now().UTC(), Heartbeat: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	future, err := json.Marshal(LockOwner{Operator: "alice", Controller: "laptop", PID: 4242, RunID: "20260101T000000Z-future",
		Env: "staging", Command: "deploy", Heartbeat: time.Now().UTC().Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	v := shellquote.Quote(string(valid))
	return []struct{ name, plant, want string }{
		{"plain file", "printf x > lock", "the lock is a plain file (1 byte), not a directory"},
		{"symlink to a lock elsewhere", "mkdir elsewhere && printf %s " + v + " > elsewhere/owner.json && ln -s elsewhere lock", "the lock is a symbolic link (to elsewhere), not a directory"},
		{"dangling symlink", "ln -s /nonexistent/lock lock", "the lock is a symbolic link (to /nonexistent/lock)"},
		{"named pipe", "mkfifo lock", "the lock is a named pipe, not a directory"},
		{"empty directory", "mkdir lock", "the lock directory is empty (no owner.json)"},
		{"directory without owner.json", "mkdir lock && : > lock/owner.json.tmp.x", "the lock directory has no owner.json (it holds owner.json.tmp.x)"},
		{"owner.json is a directory", "mkdir -p lock/owner.json", "owner.json is a directory"},
		{"owner.json is a symlink", "mkdir lock && printf %s " + v + " > precious && ln -s ../precious lock/owner.json", "owner.json is a symbolic link (to ../precious)"},
		{"owner.json is a named pipe", "mkdir lock && mkfifo lock/owner.json", "owner.json is not a regular file"},
		{"empty owner.json", "mkdir lock && : > lock/owner.json", "owner.json is empty"},
		{"blank owner.json", "mkdir lock && printf '  \\n\\n' > lock/owner.json", "owner.json is empty"},
		{"garbage", "mkdir lock && printf '\\001\\033[2Jgarbage' > lock/owner.json", "owner.json is not a JSON object"},
		{"truncated", "mkdir lock && printf %s " + shellquote.Quote(string(valid[:40])) + " > lock/owner.json", "owner.json is not valid: unexpected end of JSON input"},
		{"null", "mkdir lock && echo null > lock/owner.json", "owner.json is not a JSON object"},
		{"wrong types", `mkdir lock && echo '{"run_id":"x","pid":"12"}' > lock/owner.json`, "owner.json is not valid: json: cannot unmarshal string"},
		{"missing fields", `mkdir lock && echo '{"run_id":"20260101T000000Z-x","operator":"bob"}' > lock/owner.json`, "owner.json lacks env, command, controller, pid, heartbeat"},
		{"invalid run id", "mkdir lock && printf %s " + shellquote.Quote(strings.Replace(string(valid), "20260101T000000Z-valid", "../x y", 1)) + " > lock/owner.json", `owner.json has an invalid run_id "../x y"`},
		{"too large", "mkdir lock && head -c 70000 /dev/zero | tr '\\0' ' ' > lock/owner.json && printf %s " + v + " >> lock/owner.json", "owner.json is larger than 64 KiB"},
		{"heartbeat in the future", "mkdir lock && printf %s " + shellquote.Quote(string(future)) + " > lock/owner.json", "in the future (run 20260101T000000Z-future in staging by alice@laptop, pid 4242)"},
	}
}

// TestBrokenLocks: every broken form is held (a deploy, and a rollback that
// takes over stale locks, are refused with the unlock command), status sees
// it, and a forced unlock removes exactly it and records it in history.
func TestBrokenLocks(t *testing.T) {
	c := startCluster(t)
	for _, form := range brokenLockForms(t) {
		t.Run(form.name, func(t *testing.T) {
			targets := c.targets(t)
			broken := targets[1]
			run(t, broken, "mkdir -p "+shellquote.Quote(broken.Layout.StateDir())+" && cd "+shellquote.Quote(broken.Layout.StateDir())+" && "+form.plant, "")
			before := snapshot(t, broken.Layout.StateDir())

			states, err := InspectLocks(testCtx(t), targets, LockOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if st := states[0]; st.Held || st.Broken != "" {
				t.Errorf("%s: %+v, want no lock", st.Host, st)
			}
			st := states[1]
			if !st.Held || st.Stale || !strings.Contains(st.Broken, form.want) || st.Path != broken.Layout.LockDir() {
				t.Errorf("InspectLocks %s: %+v, want held and broken: %q", st.Host, st, form.want)
			}
			if strings.ContainsFunc(st.Broken, func(r rune) bool { return r < ' ' }) {
				t.Errorf("a control character reaches the terminal: %q", st.Broken)
			}

			for _, takeOver := range []bool{false, true} {
				_, _, err := AcquireLocks(testCtx(t), targets, owner("20260101T000000Z-newrun"), LockOptions{TakeOverStale: takeOver})
				var locked *LockedError
				if !errors.As(err, &locked) {
					t.Fatalf("takeOver=%v: got %v, want *LockedError", takeOver, err)
				}
				msg := err.Error()
				for _, w := range []string{"environment staging is locked by a broken lock on staging-2 (" + broken.Layout.LockDir() + ": ", form.want,
					"relctl unlock --env 'staging' --hosts 'staging-2' --force --reason 'removing a broken lock'"} {
					if !strings.Contains(msg, w) {
						t.Errorf("takeOver=%v: error does not contain %q:\n%s", takeOver, w, msg)
					}
				}
				if strings.Contains(msg, "stale") {
					t.Errorf("a broken lock is reported stale: %s", msg)
				}
				// Refused: nothing changed on either host.
				if got := snapshot(t, broken.Layout.StateDir()); got != before {
					t.Errorf("the broken lock changed:\n%s\nwas\n%s", got, before)
				}
				if got := stateDirEntries(t, targets[0]); len(got) != 0 {
					t.Errorf("%s: left %v", targets[0].Host, got)
				}
			}

			by := LockOwner{Operator: "carol", Controller: "ops-box", PID: os.Getpid(), RunID: "20260101T000100Z-unlock", Env: "staging", Command: "unlock"}
			removed, err := ForceUnlock(testCtx(t), targets, by, "removing a broken lock")
			if err != nil {
				t.Fatalf("ForceUnlock: %v", err)
			}
			if len(removed) != 1 || removed[0].Host != "staging-2" || !strings.Contains(removed[0].Broken, form.want) {
				t.Fatalf("removed = %+v", removed)
			}
			if _, err := os.Lstat(broken.Layout.LockDir()); !os.IsNotExist(err) {
				t.Errorf("the lock is still there (%v)", err)
			}
			entries := stateDirEntries(t, broken)
			slices.Sort(entries)
			if want := []string{"history.json"}; form.name == "symlink to a lock elsewhere" || form.name == "owner.json is a symlink" {
				// What a symbolic link pointed at is not removed.
				if !slices.Contains(entries, "elsewhere") && !slices.Contains(entries, "precious") {
					t.Errorf("the symlink's target was removed: %v", entries)
				}
			} else if !slices.Equal(entries, want) {
				t.Errorf(".relctl holds %v, want %v", entries, want)
			}
			var h History
			data, err := os.ReadFile(broken.Layout.HistoryFile())
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(data, &h); err != nil {
				t.Fatal(err)
			}
			if len(h.Events) != 1 || h.Events[0].Kind != "unlock" || !strings.Contains(h.Events[0].Detail["removed_broken"], form.want) || h.Events[0].Reason != "removing a broken lock" {
				t.Errorf("history events = %+v", h.Events)
			}

			set, _, err := AcquireLocks(testCtx(t), targets, owner("20260101T000000Z-after"), LockOptions{})
			if err != nil {
				t.Fatalf("after the forced unlock: %v", err)
			}
			if err := set.Release(testCtx(t)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// snapshot describes a directory tree (names, types, sizes) without
// following symbolic links.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		b.WriteString(rel + " " + info.Mode().String())
		if info.Mode().IsRegular() {
			data, _ := os.ReadFile(p)
			b.WriteString(" " + string(data))
		}
		b.WriteString("\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestLockWithUnknownFields: a newer relctl may write more fields; the lock
// is held by its run, live, not broken.
func TestLockWithUnknownFields(t *testing.T) {
	c := startCluster(t)
	targets := c.targets(t)
	o := owner("20260101T000000Z-newer")
	o.Controller, o.PID, o.Heartbeat = "laptop", 4242, time.Now().UTC()
	body, _ := json.Marshal(o)
	body = append([]byte(`{"lock_format":2,"labels":{"a":"b"},`), body[1:]...)
	run(t, targets[0], "mkdir -p "+shellquote.Quote(targets[0].Layout.LockDir())+" && cat > "+shellquote.Quote(targets[0].Layout.LockDir()+"/owner.json"), string(body))
	_, _, err := AcquireLocks(testCtx(t), targets, owner("20260101T000000Z-older"), LockOptions{TakeOverStale: true})
	var locked *LockedError
	if !errors.As(err, &locked) || len(locked.Holders) != 1 || locked.Holders[0].Broken != "" || locked.Holders[0].Owner == nil || locked.Holders[0].Owner.RunID != o.RunID {
		t.Fatalf("got %v (%+v), want held by %s", err, locked, o.RunID)
	}
}

// TestTransientEmptyLockDirectory: an empty lock directory that goes away
// (an older relctl's release between its rm and rmdir) is waited for, not
// reported broken.
func TestTransientEmptyLockDirectory(t *testing.T) {
	c := startCluster(t)
	targets := c.targets(t)
	run(t, targets[0], "mkdir -p "+shellquote.Quote(targets[0].Layout.LockDir()), "")
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(50 * time.Millisecond)
		os.Remove(targets[0].Layout.LockDir())
	}()
	set, _, err := AcquireLocks(testCtx(t), targets, owner("20260101T000000Z-patient"), LockOptions{})
	<-done
	if err != nil {
		t.Fatalf("AcquireLocks: %v", err)
	}
	if err := set.Release(testCtx(t)); err != nil {
		t.Fatal(err)
	}
}

// TestReleaseNeverShowsAnEmptyLock: while runs take and release the lock
// in a loop, a reader never sees a broken lock.
func TestReleaseNeverShowsAnEmptyLock(t *testing.T) {
	c := startCluster(t)
	targets := c.targets(t)[:1]
	stop := make(chan struct{})
	done := make(chan error)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			set, _, err := AcquireLocks(testCtx(t), targets, owner("20260101T000000Z-loop"+string(rune('a'+i%26))), LockOptions{})
			if err != nil {
				done <- err
				return
			}
			if err := set.Release(testCtx(t)); err != nil {
				done <- err
				return
			}
		}
	}()
	for range 40 {
		if st := inspectOne(testCtx(t), targets[0], LockOptions{}.withDefaults()); st.Broken != "" || st.Err != "" {
			t.Errorf("a reader saw %+v", st)
		}
		res, err := targets[0].Conn.Run(testCtx(t), inspectScript(targets[0].Layout), transport.RunOptions{Label: "test"})
		if err != nil {
			t.Fatal(err)
		}
		// (A lock released while it is read shows an empty owner.json: that
		// is told apart, and looked at again.)
		if p, err := parseProbe(res.Stdout); err != nil || p.word == "broken" {
			t.Errorf("a reader saw %q (%v)", res.Stdout, err)
		}
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// asUnprivileged runs a script as a user for whom permissions count (root
// reads anything): nobody, when the tests run as root.
func asUnprivileged(t *testing.T, script string) []byte {
	t.Helper()
	var cmd *exec.Cmd
	if os.Getuid() == 0 {
		setpriv, err := exec.LookPath("setpriv")
		if err != nil {
			t.Skip("running as root without setpriv: permissions cannot be tested")
		}
		cmd = exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "/bin/sh", "-c", script)
	} else {
		cmd = exec.Command("/bin/sh", "-c", script)
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return out
}

// unprivilegedBase is a base directory the unprivileged user owns.
func unprivilegedBase(t *testing.T) Layout {
	t.Helper()
	dir, err := os.MkdirTemp("", "locks-perm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
			if err == nil && info.IsDir() {
				os.Chmod(p, 0o755)
			}
			return nil
		})
		os.RemoveAll(dir)
	})
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(dir, "base")
	if err := os.MkdirAll(filepath.Join(base, ".relctl", "lock"), 0o755); err != nil {
		t.Fatal(err)
	}
	if os.Getuid() == 0 {
		for _, p := range []string{base, filepath.Join(base, ".relctl"), filepath.Join(base, ".relctl", "lock")} {
			if err := os.Chown(p, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}
	}
	return Layout{BaseDir: base}
}

// TestUnreadableLocks: a lock directory or an owner.json the SSH user
// cannot read is broken, and a forced unlock still removes it.
func TestUnreadableLocks(t *testing.T) {
	for _, tt := range []struct{ name, want string }{
		{"directory", "the lock directory cannot be read by the SSH user"},
		{"owner.json", "owner.json cannot be read by the SSH user"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := unprivilegedBase(t)
			owner := filepath.Join(l.LockDir(), "owner.json")
			if err := os.WriteFile(owner, []byte(`{"run_id":"20260101T000000Z-x"}`), 0o600); err != nil {
				t.Fatal(err)
			}
			if os.Getuid() == 0 {
				if err := os.Chown(owner, 65534, 65534); err != nil {
					t.Fatal(err)
				}
			}
			hidden := owner
			if tt.name == "directory" {
				hidden = l.LockDir()
			}
			if err := os.Chmod(hidden, 0); err != nil {
				t.Fatal(err)
			}
			p, err := parseProbe(asUnprivileged(t, inspectScript(l)))
			if err != nil {
				t.Fatal(err)
			}
			st := judgeProbe("h", l.LockDir(), p, LockOptions{}.withDefaults())
			if !st.Held || st.Broken != tt.want {
				t.Errorf("%+v, want broken: %s", st, tt.want)
			}
			out := asUnprivileged(t, forceRemoveScript(l, "20260101T000000Z-force"))
			if word, _ := firstLine(out); word != "removed" {
				t.Errorf("force remove said %q", out)
			}
			if entries, _ := os.ReadDir(l.StateDir()); len(entries) != 0 {
				t.Errorf(".relctl holds %v after the forced unlock", entries)
			}
		})
	}
}

package state

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relctl/relctl/internal/shellquote"
)

func owner(runID string) LockOwner {
	return LockOwner{Operator: "alice", Controller: Controller(), PID: os.Getpid(), RunID: runID, Env: "staging", Command: "deploy", Release: "1.2.0"}
}

// guard bounds a wait that should end long before it, to avoid a hung test.
const guard = 60 * time.Second

func TestAcquireLocksConcurrentOneWins(t *testing.T) {
	c := startCluster(t)
	for round := range 5 {
		targets := c.targets(t)
		ids := []string{"20260101T000000Z-aaaa" + string(rune('0'+round)), "20260101T000000Z-bbbb" + string(rune('0'+round))}
		type result struct {
			set *LockSet
			err error
		}
		results := make([]result, 2)
		var wg sync.WaitGroup
		for i, id := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				set, _, err := AcquireLocks(testCtx(t), targets, owner(id), LockOptions{})
				results[i] = result{set, err}
			}()
		}
		wg.Wait()

		var winner, loser int = -1, -1
		for i, r := range results {
			if r.err == nil {
				if winner >= 0 {
					t.Fatalf("round %d: both runs got the lock", round)
				}
				winner = i
			} else {
				loser = i
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: nobody got the lock: %v / %v", round, results[0].err, results[1].err)
		}
		var locked *LockedError
		if !errors.As(results[loser].err, &locked) {
			t.Fatalf("round %d: loser's error is %T %v, want *LockedError", round, results[loser].err, results[loser].err)
		}
		msg := locked.Error()
		for _, want := range []string{"environment staging is locked by run " + ids[winner], "deploy 1.2.0 in staging by alice@", "staging-1"} {
			if !strings.Contains(msg, want) {
				t.Errorf("round %d: error %q does not contain %q", round, msg, want)
			}
		}
		if strings.Contains(msg, "stale") {
			t.Errorf("a live lock is reported stale: %s", msg)
		}
		// Every host is the winner's; the loser left nothing behind.
		for _, tg := range targets {
			if o := readOwner(t, tg); o == nil || o.RunID != ids[winner] {
				t.Errorf("round %d: %s: lock owner %+v, want run %s", round, tg.Host, o, ids[winner])
			}
			if got := stateDirEntries(t, tg); len(got) != 1 || got[0] != "lock" {
				t.Errorf("round %d: %s: .relctl holds %v, want only lock", round, tg.Host, got)
			}
		}
		if err := results[winner].set.Release(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		for _, tg := range targets {
			if got := stateDirEntries(t, tg); len(got) != 0 {
				t.Errorf("after release %s: .relctl holds %v", tg.Host, got)
			}
		}
	}
}

func TestReleaseRemovesOnlyOurLock(t *testing.T) {
	c := startCluster(t)
	targets := c.targets(t)
	set, lockCtx, err := AcquireLocks(testCtx(t), targets, owner("20260101T000000Z-ours"), LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Another run replaced our lock on the second host (as a takeover would).
	other := owner("20260101T000000Z-theirs")
	other.Heartbeat = time.Now().UTC()
	body, _ := json.Marshal(other)
	run(t, targets[1], "cat > "+shellquote.Quote(targets[1].Layout.LockDir()+"/owner.json"), string(body))

	if err := set.Release(testCtx(t)); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if o := readOwner(t, targets[0]); o != nil {
		t.Errorf("%s: our lock is still there: %+v", targets[0].Host, o)
	}
	if o := readOwner(t, targets[1]); o == nil || o.RunID != other.RunID {
		t.Errorf("%s: the other run's lock was touched: %+v", targets[1].Host, o)
	}
	if err := set.Release(testCtx(t)); err != nil {
		t.Errorf("second Release: %v", err)
	}
	select {
	case <-lockCtx.Done():
	default:
		t.Error("lock context still live after Release")
	}
}

// deadPID is the pid of a process that has exited and been reaped.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("/bin/true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

func TestStaleLocks(t *testing.T) {
	c := startCluster(t)
	now := time.Now().UTC()
	tests := []struct {
		name       string
		holder     func() LockOwner
		takeOver   bool
		wantStale  string // "" = live
		wantLocked bool
	}{
		{
			name: "dead pid on this controller, refused",
			holder: func() LockOwner {
				o := owner("20260101T000000Z-dead01")
				o.PID, o.Heartbeat = deadPID(t), now
				return o
			},
			wantStale:  "is not running on this controller",
			wantLocked: true,
		},
		{
			name: "old heartbeat, refused",
			holder: func() LockOwner {
				o := owner("20260101T000000Z-old01")
				o.Controller, o.PID, o.Heartbeat = "laptop", 4242, now.Add(-10*time.Minute)
				return o
			},
			wantStale:  "heartbeat 10m", // 10m0s, or 10m1s on a slow machine: no timing in tests
			wantLocked: true,
		},
		{
			name: "dead pid, taken over",
			holder: func() LockOwner {
				o := owner("20260101T000000Z-dead02")
				o.PID, o.Heartbeat = deadPID(t), now
				return o
			},
			takeOver:  true,
			wantStale: "is not running on this controller",
		},
		{
			name: "old heartbeat, taken over",
			holder: func() LockOwner {
				o := owner("20260101T000000Z-old02")
				o.Controller, o.PID, o.Heartbeat = "laptop", 4242, now.Add(-10*time.Minute)
				return o
			},
			takeOver:  true,
			wantStale: "heartbeat 10m",
		},
		{
			name: "live holder elsewhere is never taken over",
			holder: func() LockOwner {
				o := owner("20260101T000000Z-live01")
				o.Controller, o.PID, o.Heartbeat = "laptop", 4242, time.Now().UTC()
				return o
			},
			takeOver:   true,
			wantLocked: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			targets := c.targets(t)
			holder := tt.holder()
			for _, tg := range targets {
				plantLock(t, tg, holder)
			}
			// Read-only view first, as `relctl status` shows it.
			states, err := InspectLocks(testCtx(t), targets, LockOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, st := range states {
				if !st.Held || st.Owner == nil || st.Owner.RunID != holder.RunID || st.Stale != (tt.wantStale != "") || !strings.Contains(st.StaleReason, tt.wantStale) {
					t.Errorf("InspectLocks %s: %+v", st.Host, st)
				}
			}

			me := owner("20260101T000000Z-newrun")
			set, _, err := AcquireLocks(testCtx(t), targets, me, LockOptions{TakeOverStale: tt.takeOver})
			if tt.wantLocked {
				var locked *LockedError
				if !errors.As(err, &locked) {
					t.Fatalf("got %v, want *LockedError", err)
				}
				msg := err.Error()
				wants := []string{"environment staging is locked by run " + holder.RunID, "on staging-1, staging-2"}
				if tt.wantStale != "" {
					wants = append(wants, "the lock is stale: ", tt.wantStale,
						"`relctl rollback --env staging --to prev` takes over a stale lock",
						"`relctl unlock --env staging --force --reason TEXT`")
				} else if strings.Contains(msg, "stale") {
					t.Errorf("live lock reported stale: %s", msg)
				}
				for _, w := range wants {
					if !strings.Contains(msg, w) {
						t.Errorf("error does not contain %q:\n%s", w, msg)
					}
				}
				for _, tg := range targets {
					if o := readOwner(t, tg); o == nil || o.RunID != holder.RunID {
						t.Errorf("%s: holder's lock changed: %+v", tg.Host, o)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("AcquireLocks: %v", err)
			}
			defer set.Release(testCtx(t))
			took := set.TookOver()
			if len(took) != len(targets) {
				t.Fatalf("TookOver = %+v, want one per host", took)
			}
			for _, st := range took {
				if st.Owner == nil || st.Owner.RunID != holder.RunID || !st.Stale || !strings.Contains(st.StaleReason, tt.wantStale) {
					t.Errorf("TookOver: %+v", st)
				}
			}
			for _, tg := range targets {
				if o := readOwner(t, tg); o == nil || o.RunID != me.RunID {
					t.Errorf("%s: owner after takeover %+v", tg.Host, o)
				}
				if got := stateDirEntries(t, tg); len(got) != 1 {
					t.Errorf("%s: leftovers in .relctl: %v", tg.Host, got)
				}
			}
		})
	}
}

func TestHeartbeatAndLostLock(t *testing.T) {
	c := startCluster(t)
	// Either cause is a lost lock: a heartbeat that reads between the
	// steps of a steal sees the directory gone, or another owner in it.
	causes := []string{"staging-2: the lock directory is gone", "staging-2: another run holds the lock"}
	tests := []struct {
		name  string
		steal func(t *testing.T, tg LockTarget)
	}{
		{
			name: "lock directory removed by hand",
			// Moved aside first: a heartbeat writing into it meanwhile must not make rm fail.
			steal: func(t *testing.T, tg LockTarget) {
				run(t, tg, "cd "+shellquote.Quote(tg.Layout.StateDir())+" && mv -T lock lock.removed && rm -rf lock.removed", "")
			},
		},
		{
			// What a takeover by another run does: the lock directory is
			// moved aside and a new one with the other run's owner.json is
			// renamed into place. (An in-place rewrite of owner.json by hand
			// can race a heartbeat that already checked: sh has no
			// compare-and-swap; the other run's own heartbeat reports that.)
			name: "another run took the lock over",
			steal: func(t *testing.T, tg LockTarget) {
				o := owner("20260101T000000Z-thief")
				o.Heartbeat = time.Now().UTC()
				body, _ := json.Marshal(o)
				dir := tg.Layout.StateDir()
				run(t, tg, "cd "+shellquote.Quote(dir)+" && mkdir lock.new && cat > lock.new/owner.json && mv -T lock lock.old && mv -T lock.new lock", string(body))
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			targets := c.targets(t)
			set, lockCtx, err := AcquireLocks(testCtx(t), targets, owner("20260101T000000Z-beat"), LockOptions{Refresh: 50 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer set.Release(testCtx(t))
			first := readOwner(t, targets[0])
			deadline := time.Now().Add(guard)
			for {
				o := readOwner(t, targets[0])
				if o != nil && o.Heartbeat.After(first.Heartbeat) {
					if !o.Started.Equal(first.Started) || o.RunID != first.RunID {
						t.Errorf("refresh changed more than the heartbeat: %+v -> %+v", first, o)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("heartbeat never refreshed")
				}
				time.Sleep(20 * time.Millisecond)
			}
			if lockCtx.Err() != nil {
				t.Fatalf("lock context cancelled while held: %v", context.Cause(lockCtx))
			}

			tt.steal(t, targets[1])
			select {
			case <-lockCtx.Done():
			case <-time.After(guard):
				t.Fatal("lock context not cancelled after the lock was lost")
			}
			cause := context.Cause(lockCtx)
			if !errors.Is(cause, ErrLockLost) || !(strings.Contains(cause.Error(), causes[0]) || strings.Contains(cause.Error(), causes[1])) {
				t.Errorf("cause = %v, want ErrLockLost mentioning one of %q", cause, causes)
			}
			if err := set.Release(testCtx(t)); err != nil {
				t.Errorf("Release after loss: %v", err)
			}
			if o := readOwner(t, targets[0]); o != nil {
				t.Errorf("%s: our lock was not released: %+v", targets[0].Host, o)
			}
			if tt.name == "owner.json names another run" {
				if o := readOwner(t, targets[1]); o == nil || o.RunID != "20260101T000000Z-thief" {
					t.Errorf("%s: the other run's lock was removed: %+v", targets[1].Host, o)
				}
			}
		})
	}
}

func TestForceUnlock(t *testing.T) {
	c := startCluster(t)
	targets := c.targets(t)
	holder := owner("20260101T000000Z-held")
	set, lockCtx, err := AcquireLocks(testCtx(t), targets[:1], holder, LockOptions{Refresh: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Release(testCtx(t))
	// Keep an activation on the host: the event is appended, history kept.
	hist := `{"activations":[{"version":"1.0.0","release_digest":"d","time":"2026-01-01T00:00:00Z","operator":"bob","controller":"ci","run_id":"r1"}]}`
	run(t, targets[0], "mkdir -p "+shellquote.Quote(targets[0].Layout.StateDir())+" && cat > "+shellquote.Quote(targets[0].Layout.HistoryFile()), hist)

	by := LockOwner{Operator: "carol", Controller: "ops-box", PID: os.Getpid(), RunID: "20260101T000100Z-unlock", Env: "staging", Command: "unlock"}
	removed, err := ForceUnlock(testCtx(t), targets, by, "deploy host crashed; INC-42")
	if err != nil {
		t.Fatalf("ForceUnlock: %v", err)
	}
	if len(removed) != 1 || removed[0].Host != targets[0].Host || removed[0].Owner == nil || removed[0].Owner.RunID != holder.RunID {
		t.Fatalf("removed = %+v, want the lock on %s held by %s", removed, targets[0].Host, holder.RunID)
	}
	for _, tg := range targets {
		if _, err := os.Stat(tg.Layout.LockDir()); !os.IsNotExist(err) {
			t.Errorf("%s: lock directory still there (%v)", tg.Host, err)
		}
	}
	data, err := os.ReadFile(targets[0].Layout.HistoryFile())
	if err != nil {
		t.Fatal(err)
	}
	var h History
	if err := json.Unmarshal(data, &h); err != nil {
		t.Fatal(err)
	}
	if len(h.Activations) != 1 || h.Activations[0].Version != "1.0.0" {
		t.Errorf("activations changed: %+v", h.Activations)
	}
	if len(h.Events) != 1 {
		t.Fatalf("events = %+v, want one unlock event", h.Events)
	}
	ev := h.Events[0]
	if ev.Kind != "unlock" || ev.Operator != "carol" || ev.Controller != "ops-box" || ev.Reason != "deploy host crashed; INC-42" ||
		ev.Detail["removed_run_id"] != holder.RunID || ev.Detail["removed_operator"] != "alice" || ev.Time.IsZero() {
		t.Errorf("unlock event = %+v", ev)
	}
	// The host without a lock got no event.
	if _, err := os.Stat(targets[1].Layout.HistoryFile()); !os.IsNotExist(err) {
		t.Errorf("%s: history written though no lock was removed", targets[1].Host)
	}
	// The run whose lock was removed learns it.
	select {
	case <-lockCtx.Done():
	case <-time.After(guard):
		t.Fatal("holder's lock context not cancelled after a forced unlock")
	}

	if _, err := ForceUnlock(testCtx(t), targets, by, "  "); err == nil || !strings.Contains(err.Error(), "reason is required") {
		t.Errorf("ForceUnlock without a reason: %v", err)
	}
}

func TestAcquireLocksRejectsUnsafeRunID(t *testing.T) {
	c := startCluster(t)
	targets := c.targets(t)
	for _, id := range []string{"", "../x", "a b", "x;rm -rf /", "$(id)"} {
		_, _, err := AcquireLocks(testCtx(t), targets, owner(id), LockOptions{})
		if err == nil || !strings.Contains(err.Error(), "invalid run id") {
			t.Errorf("run id %q: err = %v", id, err)
		}
	}
	for _, tg := range targets {
		if _, err := os.Stat(filepath.Dir(tg.Layout.LockDir())); !os.IsNotExist(err) {
			t.Errorf("%s: something was created for an invalid run id", tg.Host)
		}
	}
}

// TestLocksHostileBaseDir runs every lock script where the base directory
// has spaces, quotes and shell syntax in its name: nothing may execute or
// land elsewhere.
func TestLocksHostileBaseDir(t *testing.T) {
	c := startCluster(t)
	targets := c.targets(t)
	for i := range targets {
		targets[i].Layout.BaseDir = filepath.Join(targets[i].Layout.BaseDir, `it's a $(touch pwned) "dir"; echo x`)
	}
	ctx := testCtx(t)
	set, lockCtx, err := AcquireLocks(ctx, targets, owner("20260101T000000Z-hostile"), LockOptions{Refresh: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	first := readOwner(t, targets[0])
	if first == nil {
		t.Fatal("no owner.json under the hostile base dir")
	}
	deadline := time.Now().Add(guard)
	for o := readOwner(t, targets[0]); o == nil || !o.Heartbeat.After(first.Heartbeat); o = readOwner(t, targets[0]) {
		if time.Now().After(deadline) {
			t.Fatal("heartbeat never refreshed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	states, err := InspectLocks(ctx, targets, LockOptions{})
	if err != nil || !states[0].Held {
		t.Fatalf("InspectLocks = %+v, %v", states, err)
	}
	if err := set.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if context.Cause(lockCtx) == nil || errors.Is(context.Cause(lockCtx), ErrLockLost) {
		t.Errorf("cause after release = %v", context.Cause(lockCtx))
	}
	for _, h := range c.hosts {
		if matches, _ := filepath.Glob(filepath.Join(h.Root, "*pwned*")); len(matches) > 0 {
			t.Errorf("a command in the path ran: %v", matches)
		}
	}
	for _, tg := range targets {
		if got := stateDirEntries(t, tg); len(got) != 0 {
			t.Errorf("%s: left %v", tg.Host, got)
		}
	}
}

package state

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relctl/relctl/internal/shellquote"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/testenv"
)

// ownPool is a pool of this test's own, closed at its end: the faults these
// tests inject leave connections that no other test should inherit.
func (c *cluster) ownPool(t *testing.T, controlTimeout time.Duration) *transport.Pool {
	t.Helper()
	pool, err := transport.NewPool(transport.Options{
		User:           "relctl",
		IdentityFile:   filepath.Join(sharedDir, "id_ed25519"),
		KnownHostsFile: filepath.Join(sharedDir, "known_hosts"),
		HostKeyPolicy:  "strict",
		ConnectTimeout: 5 * time.Second,
		CommandTimeout: time.Minute,
		ControlTimeout: controlTimeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pool.Close() })
	return pool
}

// onPool moves targets onto pool's connections.
func onPool(t *testing.T, pool *transport.Pool, c *cluster, targets []LockTarget) {
	t.Helper()
	for i := range targets {
		h := c.hosts[i]
		conn, err := pool.Get(testCtx(t), transport.Target{Name: h.Name, Endpoint: transport.Endpoint{Address: h.Address}})
		if err != nil {
			t.Fatal(err)
		}
		targets[i].Conn = conn
		target := transport.Target{Name: h.Name, Endpoint: transport.Endpoint{Address: h.Address}}
		targets[i].Reconnect = func(ctx context.Context) (transport.Conn, error) { return pool.Get(ctx, target) }
	}
}

func setFault(t *testing.T, c *cluster, host string, f testenv.FaultSpec) {
	t.Helper()
	if err := c.env.SetFault(host, f); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.env.SetFault(host, testenv.FaultSpec{}) })
}

// waitHeld waits until a command of host is held by a HangStep fault.
func waitHeld(t *testing.T, c *cluster, host string) {
	t.Helper()
	for deadline := time.Now().Add(guard); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if c.env.Held()[host] > 0 {
			return
		}
	}
	t.Fatalf("%s: no command held", host)
}

// The defaults scaled down: TTL 2m (a heartbeat may take TTL/2 = 60s) and
// the engine's release budget of 30s become TTL 4s and 1s.
var scaledDown = LockOptions{TTL: 4 * time.Second, Refresh: 100 * time.Millisecond, ReleaseTimeout: time.Second}

// TestLockReleaseEndsAHeartbeatInFlight: a heartbeat that hangs on one host
// when the run ends is cut short by Release, which then removes the lock on
// every host, that one too, within the caller's short deadline - instead of
// waiting TTL/2 for the heartbeat and finding its deadline spent.
func TestLockReleaseEndsAHeartbeatInFlight(t *testing.T) {
	c := startCluster(t)
	targets := c.targets(t)
	onPool(t, c.ownPool(t, 0), c, targets)
	ctx := testCtx(t)
	ls, _, err := AcquireLocks(ctx, targets, owner("20260101T000000Z-hbhang"), scaledDown)
	if err != nil {
		t.Fatal(err)
	}
	hung := targets[1].Host
	setFault(t, c, hung, testenv.FaultSpec{HangStep: "lock heartbeat"})
	waitHeld(t, c, hung)

	rctx, cancel := context.WithTimeout(ctx, time.Second) // as run.unlock's budget
	defer cancel()
	start := time.Now()
	err = ls.Release(rctx)
	took := time.Since(start)
	if err != nil {
		t.Errorf("Release: %v", err)
	}
	if took >= scaledDown.TTL/2 {
		t.Errorf("Release took %s: it waited for the hung heartbeat (TTL/2 = %s)", took.Round(time.Millisecond), scaledDown.TTL/2)
	}
	for _, tg := range targets {
		if o := readOwner(t, tg); o != nil {
			t.Errorf("%s: lock of run %s left behind", tg.Host, o.RunID)
		}
	}
}

// TestLockReleaseWithAHungHost: a host that stops answering altogether
// during a heartbeat keeps its lock, and the error names it; every other
// host's lock is removed.
func TestLockReleaseWithAHungHost(t *testing.T) {
	c := startCluster(t)
	targets := c.targets(t)
	onPool(t, c.ownPool(t, 0), c, targets)
	ctx := testCtx(t)
	ls, _, err := AcquireLocks(ctx, targets, owner("20260101T000000Z-hosthang"), scaledDown)
	if err != nil {
		t.Fatal(err)
	}
	hung, fine := targets[1], targets[0]
	setFault(t, c, hung.Host, testenv.FaultSpec{HangStep: "lock heartbeat"})
	waitHeld(t, c, hung.Host)
	setFault(t, c, hung.Host, testenv.FaultSpec{HangStep: "lock heartbeat", Hang: true})

	rctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- ls.Release(rctx) }()
	select {
	case err = <-done:
	case <-time.After(guard):
		t.Fatal("Release never returned")
	}
	if err == nil || !strings.Contains(err.Error(), hung.Host+": releasing the lock: no answer within 1s") {
		t.Errorf("Release = %v, want an error naming %s", err, hung.Host)
	}
	if err != nil && strings.Contains(err.Error(), fine.Host+":") {
		t.Errorf("Release = %v: names %s, which answered", err, fine.Host)
	}
	if o := readOwner(t, fine); o != nil {
		t.Errorf("%s: lock of run %s left behind: one hung host kept the others locked", fine.Host, o.RunID)
	}
	if o := readOwner(t, hung); o == nil {
		t.Errorf("%s: no lock left, but the host never answered the release", hung.Host)
	}
}

// TestLockAnswerLostAfterTheLock: the lock command ran to its end on a host
// (the lock is in place) but its answer never came (cut at control_timeout).
// The refused run leaves no lock there; an Optional host is left out of the
// lock, named in NotLocked, and has no lock either.
func TestLockAnswerLostAfterTheLock(t *testing.T) {
	c := startCluster(t)
	pool := c.ownPool(t, 2*time.Second)
	for _, optional := range []bool{false, true} {
		t.Run(fmt.Sprintf("optional=%v", optional), func(t *testing.T) {
			targets := c.targets(t)
			onPool(t, pool, c, targets)
			lost := targets[1]
			targets[1].Optional = optional
			setFault(t, c, lost.Host, testenv.FaultSpec{NeverEndsStep: "lock"})
			ctx := testCtx(t)
			ls, _, err := AcquireLocks(ctx, targets, owner(fmt.Sprintf("20260101T000000Z-lost%v", optional)), LockOptions{})
			var locked *LockedError
			switch {
			case errors.As(err, &locked):
				t.Fatalf("AcquireLocks = %v, want no LockedError: nobody else holds a lock", err)
			case !optional && (err == nil || !strings.Contains(err.Error(), lost.Host+": taking the lock: ") || !errors.Is(err, context.DeadlineExceeded)):
				t.Errorf("AcquireLocks = %v, want %s's lock command cut at control_timeout", err, lost.Host)
			case optional && err != nil:
				t.Fatalf("AcquireLocks = %v, want the optional host left out", err)
			}
			if optional {
				nl := ls.NotLocked()
				if len(nl) != 1 || nl[0].Host != lost.Host || !strings.Contains(nl[0].Err, "the lock command failed: ") || !strings.Contains(nl[0].Err, "ssh.control_timeout 2s reached") {
					t.Errorf("NotLocked = %+v, want %s and its lock command's failure", nl, lost.Host)
				}
				if o := readOwner(t, targets[0]); o == nil {
					t.Errorf("%s: not locked", targets[0].Host)
				}
			}
			if o := readOwner(t, lost); o != nil {
				t.Errorf("%s: the lock the cut command put in place (run %s) is left behind", lost.Host, o.RunID)
			}
			if err := ls.Release(ctx); err != nil {
				t.Errorf("Release: %v", err)
			}
			for _, tg := range targets {
				if o := readOwner(t, tg); o != nil {
					t.Errorf("%s: lock of run %s left behind", tg.Host, o.RunID)
				}
			}
		})
	}
}

// connLostAfter runs one command of the given label for real, then reports
// the connection lost instead of its answer.
type connLostAfter struct {
	transport.Conn
	label string
	used  bool
}

func (c *connLostAfter) Run(ctx context.Context, cmd string, o transport.RunOptions) (*transport.Result, error) {
	res, err := c.Conn.Run(ctx, cmd, o)
	if o.Label == c.label && !c.used {
		c.used = true
		return nil, fmt.Errorf("%s: %w: the answer never came", c.Conn.Host(), transport.ErrConnectionLost)
	}
	return res, err
}

// TestLockReconnectsWhenTheAnswerIsLost: a connection lost after the lock
// command ran is dialled again, and the lock found there, naming this run,
// is this run's.
func TestLockReconnectsWhenTheAnswerIsLost(t *testing.T) {
	c := startCluster(t)
	targets := c.targets(t)
	real := targets[1].Conn
	targets[1].Conn = &connLostAfter{Conn: real, label: "lock"}
	targets[1].Reconnect = func(context.Context) (transport.Conn, error) { return real, nil }
	ctx := testCtx(t)
	o := owner("20260101T000000Z-reconnect")
	ls, _, err := AcquireLocks(ctx, targets, o, LockOptions{})
	if err != nil {
		t.Fatalf("AcquireLocks = %v, want the lock taken on a new connection", err)
	}
	for _, tg := range targets {
		if got := readOwner(t, tg); got == nil || got.RunID != o.RunID {
			t.Errorf("%s: lock %+v, want run %s's", tg.Host, got, o.RunID)
		}
	}
	if err := ls.Release(ctx); err != nil {
		t.Errorf("Release: %v", err)
	}
	for _, tg := range targets {
		if got := readOwner(t, tg); got != nil {
			t.Errorf("%s: lock of run %s left behind", tg.Host, got.RunID)
		}
	}
}

// TestLockedByAnotherEnvironment: a host whose lock path two environments
// share, locked by a staging run, refuses a production run naming staging,
// and points at staging's run, never at unlocking production.
func TestLockedByAnotherEnvironment(t *testing.T) {
	c := startCluster(t)
	targets := c.targets(t)
	ctx := testCtx(t)
	staging := owner("20260101T000000Z-staging")
	ls, _, err := AcquireLocks(ctx, targets, staging, LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer ls.Release(ctx)
	production := owner("20260101T000000Z-production")
	production.Env = "production"
	_, _, err = AcquireLocks(ctx, targets, production, LockOptions{})
	var locked *LockedError
	if !errors.As(err, &locked) {
		t.Fatalf("AcquireLocks = %v, want *LockedError", err)
	}
	msg := err.Error()
	for _, want := range []string{
		"environment production is locked by run " + staging.RunID + " (deploy 1.2.0 in staging by alice@",
		", a run in environment staging, which locks these hosts at the same place",
		"the lock is staging's: wait for that run to finish (`relctl status --env staging` shows it) rather than unlocking production",
		"`relctl unlock --env staging --force --reason TEXT`",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "relctl unlock --env production") {
		t.Errorf("message suggests unlocking production, which removes staging's live lock:\n%s", msg)
	}
}

// TestLockedErrorEnvironments: the holder's environment is always named;
// only a live run of another environment gets the hint to look there.
func TestLockedErrorEnvironments(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	holder := func(host, run, env string, stale bool) HostLockState {
		st := HostLockState{Host: host, Path: "/srv/x/.relctl/lock", Held: true, Stale: stale,
			Owner: &LockOwner{RunID: run, Env: env, Command: "deploy", Release: "1.1.0", Operator: "bob", Controller: "ci", PID: 7, Heartbeat: now.Add(-3 * time.Second)}}
		if stale {
			st.StaleReason = "heartbeat 5m old (ttl 2m)"
		}
		return st
	}
	for _, tt := range []struct {
		name      string
		holders   []HostLockState
		want, not []string
	}{
		{"same environment", []HostLockState{holder("web-1", "r1", "production", false)},
			[]string{"by run r1 (deploy 1.1.0 in production by bob@ci, pid 7, heartbeat 3s ago) on web-1\n",
				"wait for that run to finish; if it is gone, `relctl unlock --env production --force --reason TEXT` removes the lock"},
			[]string{"a run in environment", "relctl status"}},
		{"another environment", []HostLockState{holder("lb-1", "r2", "staging", false)},
			[]string{"by run r2 (deploy 1.1.0 in staging by bob@ci, pid 7, heartbeat 3s ago) on lb-1, a run in environment staging, which locks these hosts at the same place\n",
				"the lock is staging's: wait for that run to finish (`relctl status --env staging` shows it) rather than unlocking production, which would remove a live run's lock; if it is gone, `relctl unlock --env staging --force --reason TEXT` removes the lock"},
			[]string{"relctl unlock --env production", "wait for that run to finish;"}},
		{"both", []HostLockState{holder("web-1", "r1", "production", false), holder("lb-1", "r2", "staging", false)},
			[]string{"on web-1; by run r2", "wait for that run to finish; if it is gone, `relctl unlock --env production", "the lock is staging's"}, nil},
		{"another environment, stale", []HostLockState{holder("lb-1", "r2", "staging", true)},
			[]string{"a run in environment staging", "the lock is stale: heartbeat 5m old", "takes over a stale lock"},
			[]string{"the lock is staging's"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			msg := (&LockedError{Env: "production", Holders: tt.holders, now: now}).Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("lacks %q:\n%s", w, msg)
				}
			}
			for _, w := range tt.not {
				if strings.Contains(msg, w) {
					t.Errorf("has %q:\n%s", w, msg)
				}
			}
		})
	}
}

// TestLockRemovedButNotRecorded: a lock removed from a host whose history.json
// cannot be read is reported as removed; the error says that only its
// history entry is missing, naming host and file.
func TestLockRemovedButNotRecorded(t *testing.T) {
	c := startCluster(t)
	tg := c.targets(t)[0]
	plantLock(t, tg, owner("20260101T000000Z-dead"))
	run(t, tg, "mkdir -p "+shellquote.Quote(tg.Layout.HistoryFile()), "")
	by := owner("20260101T000000Z-unlocker")
	by.Command = "unlock"
	removed, err := ForceUnlock(testCtx(t), []LockTarget{tg}, by, "test")
	if len(removed) != 1 || removed[0].Host != tg.Host {
		t.Errorf("removed = %+v, want %s's lock", removed, tg.Host)
	}
	if o := readOwner(t, tg); o != nil {
		t.Errorf("lock of run %s still there", o.RunID)
	}
	var unrecorded *UnrecordedUnlockError
	if !errors.As(err, &unrecorded) {
		t.Fatalf("ForceUnlock = %v, want *UnrecordedUnlockError", err)
	}
	want := tg.Host + ": the lock (" + tg.Layout.LockDir() + ") was removed, but the history entry saying so could not be written: " + tg.Layout.HistoryFile() + " is a directory"
	if !strings.HasPrefix(unrecorded.Error(), want) || !errors.Is(err, ErrHostState) {
		t.Errorf("error %q\nwant it to start %q and wrap ErrHostState", unrecorded.Error(), want)
	}
}

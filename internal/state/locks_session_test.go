package state

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestLockThenReadsInTheLocksSession: LockTarget.Then runs in the lock's
// own session right after the lock is in place, and Got receives exactly
// its output; its exit status does not change the lock's answer.
func TestLockThenReadsInTheLocksSession(t *testing.T) {
	c := startCluster(t)
	targets := c.targets(t)
	var mu sync.Mutex
	got := map[string]string{}
	for i := range targets {
		host := targets[i].Host
		must(t, os.MkdirAll(targets[i].Layout.BaseDir, 0o755))
		must(t, os.WriteFile(filepath.Join(targets[i].Layout.BaseDir, "marker"), []byte(host+"\n"), 0o644))
		// What the script sees: the lock already there, and its own files.
		targets[i].Then = "test -d " + targets[i].Layout.LockDir() + " && echo locked; cat " + filepath.Join(targets[i].Layout.BaseDir, "marker") + "; exit 7"
		targets[i].Got = func(out []byte) {
			mu.Lock()
			defer mu.Unlock()
			got[host] = string(out)
		}
	}
	set, _, err := AcquireLocks(testCtx(t), targets, owner("20260101T000000Z-then"), LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range targets {
		if want := "locked\n" + tg.Host + "\n"; got[tg.Host] != want {
			t.Errorf("%s: Got %q, want %q", tg.Host, got[tg.Host], want)
		}
		// Its exit status (7) is not the lock's: the lock is held.
		if o := readOwner(t, tg); o == nil || o.RunID != "20260101T000000Z-then" {
			t.Errorf("%s: lock owner %+v", tg.Host, o)
		}
	}
	must(t, set.Release(testCtx(t)))
}

// TestReleaseAfterRunsThePreludeThenUnlocks: each host's prelude runs in its
// release session with its stdin; a prelude that fails is reported to Done
// with its status and stderr, and the lock is given back all the same.
func TestReleaseAfterRunsThePreludeThenUnlocks(t *testing.T) {
	c := startCluster(t)
	targets := c.targets(t)
	set, _, err := AcquireLocks(testCtx(t), targets, owner("20260101T000000Z-prelude"), LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ok, bad := targets[0], targets[1]
	out := filepath.Join(ok.Layout.BaseDir, "summary")
	var mu sync.Mutex
	done := map[string]error{}
	record := func(host string) func(error) {
		return func(err error) { mu.Lock(); defer mu.Unlock(); done[host] = err }
	}
	pre := map[string]Prelude{
		ReleaseKey(ok.Host, ok.Layout):   {Script: "cat > " + out + "; echo " + markPrelude + " 9", Stdin: []byte("hello\n"), Done: record(ok.Host)},
		ReleaseKey(bad.Host, bad.Layout): {Script: "echo 'disk full' >&2; exit 4", Done: record(bad.Host)},
	}
	if err := set.ReleaseAfter(testCtx(t), pre); err != nil {
		t.Fatalf("ReleaseAfter: %v", err)
	}
	if b, err := os.ReadFile(out); err != nil || string(b) != "hello\n" {
		t.Errorf("%s: the prelude wrote %q (%v), want its stdin", ok.Host, b, err)
	}
	// A prelude printing a look-alike status line does not fool the release.
	if done[ok.Host] != nil {
		t.Errorf("%s: Done(%v), want nil", ok.Host, done[ok.Host])
	}
	if e := done[bad.Host]; e == nil || !strings.Contains(e.Error(), "exit status 4") || !strings.Contains(e.Error(), "disk full") {
		t.Errorf("%s: Done(%v), want exit status 4 and its stderr", bad.Host, e)
	}
	for _, tg := range targets {
		if o := readOwner(t, tg); o != nil {
			t.Errorf("%s: the lock is still there: %+v", tg.Host, o)
		}
	}
}

// TestRunSummaryScriptKeepsTheNewest: the summary is stored, and old ones
// are trimmed to maxHostRunSummaries only once there are more.
func TestRunSummaryScriptKeepsTheNewest(t *testing.T) {
	c := startCluster(t)
	tg := c.targets(t)[0]
	dir := tg.Layout.RunsDir()
	must(t, os.MkdirAll(dir, 0o755))
	for i := range maxHostRunSummaries + 3 {
		must(t, os.WriteFile(filepath.Join(dir, "20250101T0000"+twoDigits(i)+"Z-old.json"), []byte("{}\n"), 0o644))
	}
	must(t, WriteHostRunSummary(testCtx(t), tg.Conn, tg.Layout, HostRunSummary{RunID: "20260101T000000Z-new", Result: "succeeded", Host: tg.Host}))
	entries, err := os.ReadDir(dir)
	must(t, err)
	if len(entries) != maxHostRunSummaries {
		t.Fatalf("%d summaries kept, want %d", len(entries), maxHostRunSummaries)
	}
	if last := entries[len(entries)-1].Name(); last != "20260101T000000Z-new.json" {
		t.Errorf("newest kept is %s, want the new one", last)
	}
	if first := entries[0].Name(); first != "20250101T0000"+twoDigits(4)+"Z-old.json" {
		t.Errorf("oldest kept is %s: the 4 oldest should be gone", first)
	}
}

func twoDigits(i int) string { return string(rune('0'+i/10)) + string(rune('0'+i%10)) }

// TestReleaseAfterPreludeWithoutNewline: a prelude whose output does not end
// with a newline still has its status read (and the release its word).
func TestReleaseAfterPreludeWithoutNewline(t *testing.T) {
	c := startCluster(t)
	targets := c.targets(t)[:1]
	set, _, err := AcquireLocks(testCtx(t), targets, owner("20260101T000000Z-nonl"), LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var doneErr error
	called := false
	pre := map[string]Prelude{ReleaseKey(targets[0].Host, targets[0].Layout): {
		Script: "printf 'summary written'", Done: func(err error) { called, doneErr = true, err }}}
	if err := set.ReleaseAfter(testCtx(t), pre); err != nil {
		t.Errorf("ReleaseAfter: %v", err)
	}
	if !called || doneErr != nil {
		t.Errorf("Done called %v with %v, want nil", called, doneErr)
	}
	if o := readOwner(t, targets[0]); o != nil {
		t.Errorf("the lock is still there: %+v", o)
	}
}

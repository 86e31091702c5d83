package transport

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRunLog(t *testing.T) {
	f := newFixture(t, 1)
	logPath := filepath.Join(t.TempDir(), "state", "runs", "run-1.log")
	log, err := OpenRunLog(logPath)
	if err != nil {
		t.Fatal(err)
	}
	c := f.conn(t, func(o *Options) { o.Output = log })
	log.Event("host-1", "batch %d/%d (canary): %s", 1, 3, "host-1")
	if _, err := c.Run(testContext(t), "echo hi; echo oops >&2; printf 'no newline'", RunOptions{Label: "stage/greet"}); err != nil {
		t.Fatal(err)
	}
	_, _ = c.Run(testContext(t), "exit 4", RunOptions{Label: "fail"})
	if err := log.Close(); err != nil {
		t.Fatal(err)
	}

	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(logPath); fi.Mode().Perm() != 0o600 {
		t.Errorf("run log mode = %v, want 0600", fi.Mode().Perm())
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	want := []string{
		`host-1 ssh: connected \(handshake 1 with this host in this command\)`,
		`host-1 batch 1/3 \(canary\): host-1`,
		`host-1 \[stage/greet\] \$ echo hi; echo oops >&2; printf 'no newline'`,
		`host-1 \[stage/greet\] (out\| hi|err\| oops)`,
		`host-1 \[stage/greet\] (out\| hi|err\| oops)`,
		`host-1 \[stage/greet\] out\| no newline`,
		`host-1 \[stage/greet\] exit 0 \(\d+ms\)`,
		`host-1 \[fail\] \$ exit 4`,
		`host-1 \[fail\] exit 4 \(\d+ms\)`,
	}
	if len(lines) != len(want) {
		t.Fatalf("run log has %d lines, want %d:\n%s", len(lines), len(want), data)
	}
	for i, line := range lines {
		stamp, rest, _ := strings.Cut(line, " ")
		if _, err := time.Parse(time.RFC3339, stamp); err != nil {
			t.Errorf("line %d: time %q is not RFC 3339: %v", i+1, stamp, err)
		}
		if !regexp.MustCompile("^" + want[i] + "$").MatchString(rest) {
			t.Errorf("line %d = %q, want %s", i+1, rest, want[i])
		}
	}
}

func TestRunLogConcurrentWritersAndNil(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "run.log")
	log, err := OpenRunLog(logPath)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 50 {
				log.Event("h", "writer %d line %d", i, j)
			}
		}()
	}
	wg.Wait()
	_ = log.Close()
	log.Event("h", "after close is dropped")
	data, _ := os.ReadFile(logPath)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 1000 {
		t.Errorf("%d lines, want 1000", len(lines))
	}
	line := regexp.MustCompile(`^\S+ h writer \d+ line \d+$`)
	for _, l := range lines {
		if !line.MatchString(l) {
			t.Fatalf("interleaved or malformed line %q", l)
		}
	}

	var none *RunLog // a nil log discards
	none.Event("h", "nothing")
	if err := none.Close(); err != nil {
		t.Error(err)
	}
}

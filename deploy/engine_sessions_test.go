package deploy_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/internal/transport/localconn"
)

// TestDeploySessionsPerHost: what a deploy asks each host, session by
// session. The state is read in the lock's session (lock+read-state) and
// never again; the
// run summary is written in the session that gives the lock back.
func TestDeploySessionsPerHost(t *testing.T) {
	f := newFleet(t, 2, strategyCanary)
	f.seed("1.0.0")
	for _, n := range f.names {
		f.host(n).ResetCommands()
	}
	if _, err := run(t.Context(), newTestEngine(f), f.plan("2.0.0", "sessions"), runOptions{}); err != nil {
		t.Fatal(err)
	}
	// (localconn's upload is one command; over SSH it is the transport's.)
	want := []string{"lock+read-state", "preflight/writable", "preflight/rollback-ready", "stage/upload:verify", "upload",
		"stage/unpack", "activate 2.0.0", "activate/restart", "health/health", "cutover/announce", "post/notify", "write run summary, unlock"}
	for _, n := range f.names {
		var got []string
		for _, l := range f.host(n).Labels() {
			if strings.HasPrefix(l, "upload ") {
				l = "upload"
			}
			got = append(got, l)
		}
		if strings.Join(got, " | ") != strings.Join(want, " | ") {
			t.Errorf("%s ran\n  %s\nwant\n  %s", n, strings.Join(got, " | "), strings.Join(want, " | "))
		}
	}
}

// TestActivateRereadsAHistoryChangedUnderIt: history.json written by
// someone else after the run read it under the lock is not overwritten: the
// activation is refused, the host read again, and the activation built on
// what is there now.
func TestActivateRereadsAHistoryChangedUnderIt(t *testing.T) {
	f := newFleet(t, 2, strategyCanary)
	f.seed("1.0.0")
	hist := filepath.Join(f.base("web-2"), ".relctl", "history.json")
	f.host("web-2").ResetCommands()
	f.host("web-2").Fail(localconn.Fault{Label: "stage/unpack", Times: 1, OnStart: func() {
		var h state.History
		b, err := os.ReadFile(hist)
		if err == nil {
			err = json.Unmarshal(b, &h)
		}
		if err != nil {
			t.Errorf("reading history.json: %v", err)
			return
		}
		h.Events = append(h.Events, state.HistoryEvent{Kind: "unlock", Operator: "someone", Reason: "written while the deploy ran"})
		b, _ = json.Marshal(h)
		if err := os.WriteFile(hist, b, 0o644); err != nil {
			t.Error(err)
		}
	}})
	if _, err := run(t.Context(), newTestEngine(f), f.plan("2.0.0", "cas"), runOptions{}); err != nil {
		t.Fatal(err)
	}
	f.assertOn("2.0.0", f.names...)
	b, err := os.ReadFile(hist)
	if err != nil {
		t.Fatal(err)
	}
	var h state.History
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatalf("history.json: %v\n%s", err, b)
	}
	if len(h.Events) != 1 || h.Events[0].Reason != "written while the deploy ran" {
		t.Errorf("the other writer's event is lost: %+v", h.Events)
	}
	if n := len(h.Activations); n != 2 || h.Activations[1].Version != "2.0.0" || h.Activations[1].Previous != "1.0.0" {
		t.Errorf("activations %+v, want 1.0.0 then 2.0.0 (from 1.0.0)", h.Activations)
	}
	labels := f.host("web-2").Labels()
	if c := count(labels, "activate 2.0.0"); c != 2 {
		t.Errorf("web-2: %d activate sessions, want 2 (refused, then on a fresh read): %v", c, labels)
	}
	if c := count(labels, "read-state"); c != 1 {
		t.Errorf("web-2: %d reads of its own, want 1 (after the refusal): %v", c, labels)
	}
}

func count(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}

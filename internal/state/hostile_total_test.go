package state

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/relctl/relctl/internal/shellquote"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/testenv"
)

// TestHostileHostOutput reads host state over real SSH from a host whose
// output a wrapper damages (testenv's output faults): never a panic, never
// a state read wrong, always an error that says the output was not the
// script's; and a history event is not written from a damaged read.
func TestHostileHostOutput(t *testing.T) {
	c := startCluster(t)
	tg := c.targets(t)[0]
	ctx := testCtx(t)
	l := tg.Layout
	run(t, tg, "mkdir -p "+shellquote.Quote(l.Release("1.0.0"))+" "+shellquote.Quote(l.Release("1.1.0"))+" "+shellquote.Quote(l.StateDir())+
		" && ln -s releases/1.1.0 "+shellquote.Quote(l.Current())+" && cat > "+shellquote.Quote(l.HistoryFile()), goodHistory+"\n")
	t.Cleanup(func() { c.env.SetFault(tg.Host, testenv.FaultSpec{}) })

	const label = "hostile-read"
	faults := []struct {
		name string
		f    testenv.FaultSpec
	}{
		{"every 3rd line dropped", testenv.FaultSpec{DropLinesStep: label}},
		{"every 2nd line dropped", testenv.FaultSpec{DropLinesStep: label, DropEvery: 2}},
		{"every line dropped", testenv.FaultSpec{DropLinesStep: label, DropEvery: 1}},
		{"the releases marker dropped", testenv.FaultSpec{DropLinesStep: label, DropMatching: "^--relctl-releases--"}},
		{"the history marker dropped", testenv.FaultSpec{DropLinesStep: label, DropMatching: "^--relctl-history--"}},
		{"the end marker dropped", testenv.FaultSpec{DropLinesStep: label, DropMatching: "^--relctl-end--"}},
		{"a release name dropped", testenv.FaultSpec{DropLinesStep: label, DropMatching: `^1\.0\.0$`}},
		{"a history line dropped", testenv.FaultSpec{DropLinesStep: label, DropMatching: `activations`}},
		{"truncated", testenv.FaultSpec{TruncateStep: label}},
		{"garbage", testenv.FaultSpec{GarbageStep: label}},
	}
	for _, ft := range faults {
		t.Run(ft.name, func(t *testing.T) {
			if err := c.env.SetFault(tg.Host, ft.f); err != nil {
				t.Fatal(err)
			}
			st, err := ReadHostState(ctx, tg.Conn, l, label)
			if err == nil || !errors.Is(err, ErrHostOutput) {
				t.Fatalf("read %+v, err %v; want ErrHostOutput", st, err)
			}
		})
	}

	// The read of AppendHistoryEvent damaged: nothing is written.
	before, err := os.ReadFile(l.HistoryFile())
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []testenv.FaultSpec{{DropLinesStep: "read history", DropMatching: "^--relctl-end--"}, {TruncateStep: "read history"}, {GarbageStep: "read history"}} {
		if err := c.env.SetFault(tg.Host, f); err != nil {
			t.Fatal(err)
		}
		err := AppendHistoryEvent(ctx, tg.Conn, l, HistoryEvent{Kind: "unlock", Operator: "o", Controller: "c"})
		if err == nil || !errors.Is(err, ErrHostOutput) {
			t.Errorf("%+v: %v", f, err)
		}
		if after, _ := os.ReadFile(l.HistoryFile()); string(after) != string(before) {
			t.Fatalf("%+v: history written from a damaged read:\n%s", f, after)
		}
	}
	if err := c.env.SetFault(tg.Host, testenv.FaultSpec{}); err != nil {
		t.Fatal(err)
	}
	if st, err := ReadHostState(ctx, tg.Conn, l, label); err != nil || st.Current != "1.1.0" || len(st.Releases) != 2 || len(st.History.Activations) != 2 {
		t.Fatalf("healthy again: %+v, %v", st, err)
	}
}

// TestAppendHistoryEventRefuses: a history.json that is a directory, or
// changes between the read and the write, is never written over or into.
func TestAppendHistoryEventRefuses(t *testing.T) {
	c := startCluster(t)
	tg := c.targets(t)[0]
	ctx := testCtx(t)
	l := tg.Layout
	run(t, tg, "mkdir -p "+shellquote.Quote(l.HistoryFile()), "")
	err := AppendHistoryEvent(ctx, tg.Conn, l, HistoryEvent{Kind: "unlock", Operator: "o", Controller: "c"})
	if err == nil || !errors.Is(err, ErrHostState) || !strings.Contains(err.Error(), l.HistoryFile()+" is a directory; move it aside") {
		t.Fatalf("history.json a directory: %v", err)
	}
	if entries, _ := os.ReadDir(l.HistoryFile()); len(entries) != 0 {
		t.Fatalf("written into the directory: %v", entries)
	}

	// The write script alone (as if the file changed after the read):
	// refused by its own check, nothing written.
	script := strings.Join([]string{"set -e", scriptPrelude, guardReplace(l.HistoryFile(), "absent", ""), "echo written"}, "\n")
	_, err = tg.Conn.Run(ctx, script, transport.RunOptions{})
	var ce *transport.CommandError
	if !errors.As(err, &ce) || ce.ExitCode != 3 || !strings.Contains(ce.Tail, "is a directory: relctl will not replace it") {
		t.Fatalf("guard over SSH: %v", err)
	}
}

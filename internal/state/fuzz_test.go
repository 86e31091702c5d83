package state

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The parsers of what hosts print never panic, and every error they return
// is ErrHostState (a file relctl will not trust, with its fix) or
// ErrHostOutput (output that is not the script's). The seed corpora under
// testdata/fuzz are real outputs of the read scripts (run with dash on this
// machine; -update-seeds rewrites them) and hostile variants of them: lines
// dropped, cut short, repeated, reordered, NUL bytes, garbage.

var updateSeeds = flag.Bool("update-seeds", false, "rewrite testdata/fuzz/*/real-* and hostile-* from the read scripts run with dash")

func typedErr(t *testing.T, err error) {
	t.Helper()
	if err != nil && !errors.Is(err, ErrHostState) && !errors.Is(err, ErrHostOutput) {
		t.Fatalf("untyped error %T: %v", err, err)
	}
	var se *StateError
	if errors.As(err, &se) && (se.Path == "" || se.Fix == "") {
		t.Fatalf("a StateError without its path or fix: %#v", se)
	}
}

func FuzzParseHostState(f *testing.F) {
	f.Add(hs("releases/1.1.0", "1.0.0\n1.1.0\n", `{"activations":[{"version":"1.1.0"}]}`))
	f.Add(hs("", "", ""))
	f.Add("--relctl-current--\n--relctl-releases--\n--relctl-history--\n")
	f.Fuzz(func(t *testing.T, out string) {
		l := Layout{BaseDir: "/srv/search"}
		st, err := l.ParseHostState(out)
		typedErr(t, err)
		if err != nil {
			return
		}
		if st.HistorySum != sumAbsent {
			if b, err := hex.DecodeString(st.HistorySum); err != nil || len(b) != sha256.Size {
				t.Fatalf("history sum %q", st.HistorySum)
			}
		}
		for _, a := range st.History.Activations {
			if a.Version == "" {
				t.Fatalf("an activation without a version was accepted: %+v", a)
			}
		}
		_ = st.Previous()
		_ = PruneCandidates(st, 2)
	})
}

func FuzzParseFileRead(f *testing.F) {
	f.Add([]byte("--relctl-file-- present 3 644\nabc\n--relctl-end--\n"))
	f.Add([]byte("--relctl-file-- absent\n--relctl-end--\n"))
	f.Add([]byte("--relctl-file-- unreadable cannot-search 1\n--relctl-end--\n"))
	f.Fuzz(func(t *testing.T, out []byte) {
		file, err := ParseFileRead("/etc/monit/conf.d/search", out)
		typedErr(t, err)
		if err != nil {
			return
		}
		sum := sha256.Sum256(file.Body)
		switch {
		case !file.Present && (file.SHA256 != sumAbsent || len(file.Body) != 0):
			t.Fatalf("absent file %+v", file)
		case file.Present && file.SHA256 != hex.EncodeToString(sum[:]):
			t.Fatalf("sha256 %s of %q", file.SHA256, file.Body)
		case file.Mode > 0o777:
			t.Fatalf("mode %o", file.Mode)
		}
	})
}

func FuzzParseHostRunSummaries(f *testing.F) {
	f.Add([]byte("--relctl-runs-- absent\n--relctl-end--\n"))
	f.Add([]byte("--relctl-runs-- present\n--relctl-run-summary-- r1.json present 16 644\n{\"run_id\":\"r1\"}\n--relctl-end--\n"))
	f.Fuzz(func(t *testing.T, out []byte) {
		sums, problems, err := ParseHostRunSummaries("/srv/search/.relctl/runs", out)
		typedErr(t, err)
		for _, p := range problems {
			if !errors.Is(p, ErrHostState) {
				t.Fatalf("problem %v is not ErrHostState", p)
			}
		}
		for _, s := range sums {
			if s.RunID == "" {
				t.Fatalf("a summary without a run id: %+v", s)
			}
		}
	})
}

func FuzzParseHistory(f *testing.F) {
	f.Add([]byte(goodHistory))
	f.Add([]byte("{}"))
	f.Add([]byte("null"))
	f.Add([]byte(`{"activations":[{"version":"1","time":"x"}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		h, err := ParseHistory(".relctl/history.json", body)
		typedErr(t, err)
		if err == nil {
			_ = h.RecentVersions()
			_ = h.Latest()
		}
	})
}

// seedLayout is where the real seeds were read: a fixed path, so that
// regenerating them changes nothing but what the scripts print.
const seedBase = "/tmp/relctl-fuzz-seeds/srv/search"

// TestFuzzSeedsReal runs the read scripts with dash on real layouts and
// checks that what they print parses as it should; with -update-seeds it
// also rewrites the seed corpora from those outputs and hostile variants.
func TestFuzzSeedsReal(t *testing.T) {
	if _, err := os.Stat("/usr/bin/dash"); err != nil && !*updateSeeds {
		t.Skip("dash not installed")
	}
	l := Layout{BaseDir: seedBase}
	must(t, os.RemoveAll(filepath.Dir(filepath.Dir(seedBase))))
	t.Cleanup(func() { os.RemoveAll(filepath.Dir(filepath.Dir(seedBase))) })
	read := func(script string) string {
		out, stderr, err := shellRun(t, "dash", script, "", false)
		if err != nil {
			t.Fatalf("%v: %s", err, stderr)
		}
		return out
	}
	type seed struct{ name, out string }
	var states, files, runs []seed

	states = append(states, seed{"fresh", read(l.ReadScript())})
	must(t, os.MkdirAll(l.Release("1.0.0"), 0o755))
	must(t, os.MkdirAll(l.Release("1.1.0"), 0o755))
	must(t, os.Symlink("releases/1.1.0", l.Current()))
	must(t, os.MkdirAll(l.StateDir(), 0o755))
	must(t, os.WriteFile(l.HistoryFile(), []byte(goodHistory+"\n"), 0o644))
	deployed := read(l.ReadScript())
	states = append(states, seed{"deployed", deployed})
	must(t, os.Rename(l.HistoryFile(), l.HistoryFile()+".keep"))
	must(t, os.Mkdir(l.HistoryFile(), 0o755))
	states = append(states, seed{"history-directory", read(l.ReadScript())})
	must(t, os.Remove(l.HistoryFile()))
	must(t, os.Symlink("history.json", l.HistoryFile()))
	states = append(states, seed{"history-symlink-loop", read(l.ReadScript())})
	must(t, os.Remove(l.HistoryFile()))
	must(t, os.Rename(l.HistoryFile()+".keep", l.HistoryFile()))

	for _, s := range states {
		st, err := l.ParseHostState(s.out)
		if s.name == "fresh" || s.name == "deployed" {
			if err != nil {
				t.Fatalf("%s: %v\n%q", s.name, err, s.out)
			}
			if s.name == "deployed" && (st.Current != "1.1.0" || len(st.Releases) != 2 || len(st.History.Activations) != 2) {
				t.Fatalf("deployed read as %+v", st)
			}
		} else if !errors.Is(err, ErrHostState) {
			t.Fatalf("%s: %v", s.name, err)
		}
	}
	// Hostile variants of a real output: each line dropped, cut at each
	// line and mid-line, a marker repeated, sections swapped, NULs.
	lines := strings.SplitAfter(deployed, "\n")
	var hostile []seed
	for i := range lines {
		if lines[i] == "" {
			continue // after the last newline
		}
		hostile = append(hostile, seed{fmt.Sprintf("drop-line-%d", i), strings.Join(append(append([]string{}, lines[:i]...), lines[i+1:]...), "")})
		hostile = append(hostile, seed{fmt.Sprintf("cut-before-line-%d", i), strings.Join(lines[:i], "")})
		hostile = append(hostile, seed{fmt.Sprintf("repeat-line-%d", i), strings.Join(append(append(append([]string{}, lines[:i+1]...), lines[i]), lines[i+1:]...), "")})
	}
	hostile = append(hostile,
		seed{"cut-mid-line", deployed[:len(deployed)/2]},
		seed{"no-trailing-newline", strings.TrimSuffix(deployed, "\n")},
		seed{"nul-bytes", strings.ReplaceAll(deployed, "1.1.0", "1.\x001.0")},
		seed{"garbage", "\x00\xff\xfe\x1b[2J--relctl-\n"},
		seed{"sections-swapped", strings.Replace(strings.Replace(deployed, markCurrent, "@@", 1), markReleases, markCurrent, 1)},
		seed{"huge-line", "--relctl-current-- present\n" + strings.Repeat("x", 70000) + "\n"},
	)
	for _, s := range hostile {
		if _, err := l.ParseHostState(s.out); err == nil {
			t.Errorf("hostile %s parsed without an error: %q", s.name, s.out)
		} else if !errors.Is(err, ErrHostOutput) && !errors.Is(err, ErrHostState) {
			t.Errorf("hostile %s: untyped error %v", s.name, err)
		}
	}

	files = append(files, seed{"absent", read(ReadFileScript(l.BaseDir + "/conf.d/search"))})
	files = append(files, seed{"history", read(ReadFileScript(l.HistoryFile()))})
	files = append(files, seed{"directory", read(ReadFileScript(l.Releases()))})
	for _, s := range files {
		if _, err := ParseFileRead(l.BaseDir+"/conf.d/search", []byte(s.out)); (err == nil) != (s.name != "directory") {
			t.Errorf("file %s: %v", s.name, err)
		}
	}

	runs = append(runs, seed{"absent", read(l.runSummariesScript())})
	must(t, os.MkdirAll(l.RunsDir(), 0o755))
	must(t, os.WriteFile(filepath.Join(l.RunsDir(), "20260301T120000Z-0001.json"), []byte(`{"run_id":"20260301T120000Z-0001","env":"staging","command":"deploy","result":"succeeded","started":"2026-03-01T12:00:00Z","finished":"2026-03-01T12:00:30Z"}`+"\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(l.RunsDir(), "20260301T130000Z-bad.json"), []byte("{not json"), 0o644))
	must(t, os.Mkdir(filepath.Join(l.RunsDir(), "20260301T140000Z-dir.json"), 0o755))
	runs = append(runs, seed{"two-and-a-directory", read(l.runSummariesScript())})
	sums, problems, err := ParseHostRunSummaries(l.RunsDir(), []byte(runs[1].out))
	if err != nil || len(sums) != 1 || len(problems) != 2 {
		t.Fatalf("runs: %d summaries, problems %v, %v\n%q", len(sums), problems, err, runs[1].out)
	}

	if !*updateSeeds {
		return
	}
	write := func(target, name, typ, v string) {
		dir := filepath.Join("testdata", "fuzz", target)
		must(t, os.MkdirAll(dir, 0o755))
		must(t, os.WriteFile(filepath.Join(dir, name), []byte("go test fuzz v1\n"+typ+"("+strconv.Quote(v)+")\n"), 0o644))
	}
	for _, s := range states {
		write("FuzzParseHostState", "real-"+s.name, "string", s.out)
	}
	for _, s := range hostile {
		write("FuzzParseHostState", "hostile-"+s.name, "string", s.out)
	}
	for _, s := range files {
		write("FuzzParseFileRead", "real-"+s.name, "[]byte", s.out)
	}
	for _, s := range runs {
		write("FuzzParseHostRunSummaries", "real-"+s.name, "[]byte", s.out)
	}
	history, err := os.ReadFile(l.HistoryFile())
	must(t, err)
	write("FuzzParseHistory", "real-history", "[]byte", string(history))
	write("FuzzParseHistory", "hostile-nul", "[]byte", "{\"activations\":[\x00]}")
	write("FuzzParseHistory", "hostile-truncated", "[]byte", string(history[:len(history)/2]))
	write("FuzzParseHistory", "hostile-array", "[]byte", "[{\"version\":\"1.0.0\"}]")
	write("FuzzParseHistory", "hostile-no-version", "[]byte", "{\"activations\":[{\"previous\":\"1.0.0\"}]}")
	write("FuzzParseHistory", "hostile-deep-nesting", "[]byte", "{\"x\":"+strings.Repeat("[", 20000)+strings.Repeat("]", 20000)+"}")
}

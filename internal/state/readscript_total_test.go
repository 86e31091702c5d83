package state

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The read and write scripts run under the SSH user's login shell, dash or
// bash: these tests run them with both, on this machine, and as an
// unprivileged user where a case needs permissions to bite (root reads
// everything).

var shells = []string{"dash", "bash"}

// shellRun runs script with shell in dir's world; asNobody drops to uid 65534.
func shellRun(t *testing.T, shell, script, stdin string, asNobody bool) (string, string, error) {
	t.Helper()
	path, err := exec.LookPath(shell)
	if err != nil {
		t.Skipf("%s not installed", shell)
	}
	cmd := exec.Command(path, "-c", script)
	if asNobody {
		if os.Getuid() != 0 {
			t.Skip("needs root to run a script as another user")
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// worldDir is a temporary directory every user can reach.
func worldDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	for p := d; p != "/" && p != "."; p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			break
		}
		if p == os.TempDir() {
			break
		}
	}
	return d
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

const goodHistory = `{"activations":[{"version":"1.0.0","release_digest":"d","time":"2026-01-01T00:00:00Z","operator":"a","controller":"c","run_id":"r"},` +
	`{"version":"1.1.0","previous":"1.0.0","release_digest":"d","time":"2026-01-02T00:00:00Z","operator":"a","controller":"c","run_id":"r2"}]}`

// TestReadScriptStates: every shape a host's layout can be in, read with
// dash and bash: absent is none, present is parsed, and everything else is
// an error naming the path and the fix.
func TestReadScriptStates(t *testing.T) {
	tests := []struct {
		name     string
		setup    func(t *testing.T, l Layout)
		nobody   bool
		wantErr  string // substring; "" = no error
		wantCur  string
		wantRels int
		wantActs int
	}{
		{name: "fresh host: nothing there", setup: func(t *testing.T, l Layout) {}},
		{name: "base dir but nothing in it", setup: func(t *testing.T, l Layout) { must(t, os.MkdirAll(l.BaseDir, 0o755)) }},
		{name: "a deployed host", wantCur: "1.1.0", wantRels: 2, wantActs: 2, setup: func(t *testing.T, l Layout) {
			must(t, os.MkdirAll(l.Release("1.0.0"), 0o755))
			must(t, os.MkdirAll(l.Release("1.1.0"), 0o755))
			must(t, os.Symlink("releases/1.1.0", l.Current()))
			must(t, os.MkdirAll(l.StateDir(), 0o755))
			must(t, os.WriteFile(l.HistoryFile(), []byte(goodHistory), 0o644))
		}},
		{name: "history without a trailing newline, with a line like a marker", wantActs: 1, setup: func(t *testing.T, l Layout) {
			must(t, os.MkdirAll(l.StateDir(), 0o755))
			must(t, os.WriteFile(l.HistoryFile(), []byte("{\"activations\":[{\"version\":\"1.0.0\"}],\n\"x\":\"\\n--relctl-end--\"\n}"), 0o644))
		}},
		{name: "history.json is a directory", wantErr: "/.relctl/history.json is a directory; move it aside (mv ", setup: func(t *testing.T, l Layout) {
			must(t, os.MkdirAll(l.HistoryFile(), 0o755))
		}},
		{name: "history.json is a dangling symlink", wantErr: "history.json is a symlink to nothing", setup: func(t *testing.T, l Layout) {
			must(t, os.MkdirAll(l.StateDir(), 0o755))
			must(t, os.Symlink("gone.json", l.HistoryFile()))
		}},
		{name: "history.json is a symlink loop", wantErr: "history.json is a symlink to nothing", setup: func(t *testing.T, l Layout) {
			must(t, os.MkdirAll(l.StateDir(), 0o755))
			must(t, os.Symlink("history.json", l.HistoryFile()))
		}},
		{name: "history.json is a FIFO", wantErr: "history.json is not a regular file", setup: func(t *testing.T, l Layout) {
			must(t, os.MkdirAll(l.StateDir(), 0o755))
			must(t, syscall.Mkfifo(l.HistoryFile(), 0o644))
		}},
		{name: "history.json is empty", wantErr: "history.json is empty", setup: func(t *testing.T, l Layout) {
			must(t, os.MkdirAll(l.StateDir(), 0o755))
			must(t, os.WriteFile(l.HistoryFile(), nil, 0o644))
		}},
		{name: "history.json is garbage", wantErr: "history.json: not valid JSON at byte 1", setup: func(t *testing.T, l Layout) {
			must(t, os.MkdirAll(l.StateDir(), 0o755))
			must(t, os.WriteFile(l.HistoryFile(), []byte("\x00garbage"), 0o644))
		}},
		{name: "history.json is null", wantErr: "history.json: holds null, not a JSON object", setup: func(t *testing.T, l Layout) {
			must(t, os.MkdirAll(l.StateDir(), 0o755))
			must(t, os.WriteFile(l.HistoryFile(), []byte("null\n"), 0o644))
		}},
		{name: ".relctl is a file", wantErr: "/.relctl is not a directory, so ", setup: func(t *testing.T, l Layout) {
			must(t, os.MkdirAll(l.BaseDir, 0o755))
			must(t, os.WriteFile(l.StateDir(), []byte("x"), 0o644))
		}},
		{name: "releases is a file", wantErr: "/releases is not a directory", setup: func(t *testing.T, l Layout) {
			must(t, os.MkdirAll(l.BaseDir, 0o755))
			must(t, os.WriteFile(l.Releases(), []byte("x"), 0o644))
		}},
		{name: "releases is a dangling symlink", wantErr: "/releases is a symlink to nothing", setup: func(t *testing.T, l Layout) {
			must(t, os.MkdirAll(l.BaseDir, 0o755))
			must(t, os.Symlink("/nonexistent/relctl", l.Releases()))
		}},
		{name: "current is a directory", wantErr: "/current is not a symlink", setup: func(t *testing.T, l Layout) {
			must(t, os.MkdirAll(l.Current(), 0o755))
		}},
		{name: "current dangling is still current", wantCur: "9.9.9", setup: func(t *testing.T, l Layout) {
			must(t, os.MkdirAll(l.BaseDir, 0o755))
			must(t, os.Symlink("releases/9.9.9", l.Current()))
		}},
		{name: "history.json unreadable by the SSH user", nobody: true, wantErr: "history.json cannot be read by the SSH user", setup: func(t *testing.T, l Layout) {
			must(t, os.MkdirAll(l.StateDir(), 0o755))
			must(t, os.WriteFile(l.HistoryFile(), []byte(goodHistory), 0o600))
		}},
		{name: ".relctl not searchable by the SSH user", nobody: true, wantErr: "/.relctl cannot be searched by the SSH user, so ", setup: func(t *testing.T, l Layout) {
			must(t, os.MkdirAll(l.StateDir(), 0o755))
			must(t, os.WriteFile(l.HistoryFile(), []byte(goodHistory), 0o644))
			must(t, os.Chmod(l.StateDir(), 0o700))
		}},
		{name: "base dir not searchable by the SSH user", nobody: true, wantErr: "cannot be searched by the SSH user", setup: func(t *testing.T, l Layout) {
			must(t, os.MkdirAll(l.StateDir(), 0o755))
			must(t, os.Chmod(l.BaseDir, 0o700))
		}},
		{name: "releases with odd and multibyte names, in a UTF-8 locale", wantRels: 4, setup: func(t *testing.T, l Layout) {
			// ${#} would count characters here: the script counts bytes.
			t.Setenv("LC_ALL", "C.UTF-8")
			t.Setenv("LANG", "C.UTF-8")
			for _, n := range []string{"1.0.0", "é-ü-1.0", "a b", ".hidden"} {
				must(t, os.MkdirAll(l.Release(n), 0o755))
			}
			must(t, os.Symlink("/nonexistent/relctl", l.Release("dangling")))
		}},
		{name: "releases not readable by the SSH user", nobody: true, wantErr: "/releases cannot be read by the SSH user", setup: func(t *testing.T, l Layout) {
			must(t, os.MkdirAll(l.Release("1.0.0"), 0o755))
			must(t, os.Chmod(l.Releases(), 0o700))
		}},
	}
	for _, sh := range shells {
		for _, tt := range tests {
			t.Run(sh+"/"+tt.name, func(t *testing.T) {
				l := Layout{BaseDir: filepath.Join(worldDir(t), "srv", "it's here")}
				tt.setup(t, l)
				out, stderr, err := shellRun(t, sh, l.ReadScript(), "", tt.nobody)
				if err != nil {
					t.Fatalf("script failed: %v\n%s", err, stderr)
				}
				st, err := l.ParseHostState(out)
				if tt.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrHostState) {
						t.Fatalf("err = %v, want %q (ErrHostState)\noutput: %q", err, tt.wantErr, out)
					}
					if !strings.Contains(err.Error(), "then re-run") {
						t.Errorf("error names no fix: %v", err)
					}
					return
				}
				if err != nil {
					t.Fatalf("%v\noutput: %q", err, out)
				}
				if st.Current != tt.wantCur || len(st.Releases) != tt.wantRels || len(st.History.Activations) != tt.wantActs {
					t.Errorf("current %q, %d releases, %d activations; want %q, %d, %d", st.Current, len(st.Releases), len(st.History.Activations), tt.wantCur, tt.wantRels, tt.wantActs)
				}
			})
		}
	}
}

// TestActivateScriptRefuses: the write checks again, on the host, in the
// same script, and changes nothing when the history is not a regular file it
// can read, or is no longer what was read.
func TestActivateScriptRefuses(t *testing.T) {
	hist := []byte(goodHistory)
	tests := []struct {
		name    string
		setup   func(t *testing.T, l Layout)
		sum     func(l Layout) string
		nobody  bool
		wantErr string
		check   func(t *testing.T, l Layout)
	}{
		{name: "history.json is a directory", wantErr: "history.json is a directory: relctl will not replace it; move it aside (mv ",
			setup: func(t *testing.T, l Layout) { must(t, os.MkdirAll(l.HistoryFile(), 0o755)) },
			check: func(t *testing.T, l Layout) {
				if entries, _ := os.ReadDir(l.HistoryFile()); len(entries) != 0 {
					t.Errorf("something was written into the directory: %v", entries)
				}
			}},
		{name: "history.json is a symlink loop", wantErr: "is a symlink to nothing",
			setup: func(t *testing.T, l Layout) {
				must(t, os.MkdirAll(l.StateDir(), 0o755))
				must(t, os.Symlink("history.json", l.HistoryFile()))
			}},
		{name: "history.json is a FIFO", wantErr: "is not a regular file",
			setup: func(t *testing.T, l Layout) {
				must(t, os.MkdirAll(l.StateDir(), 0o755))
				must(t, syscall.Mkfifo(l.HistoryFile(), 0o644))
			}},
		{name: "history changed since it was read", wantErr: "history.json changed since relctl read it",
			setup: func(t *testing.T, l Layout) {
				must(t, os.MkdirAll(l.StateDir(), 0o755))
				must(t, os.WriteFile(l.HistoryFile(), hist, 0o644))
			},
			sum: func(Layout) string { return strings.Repeat("0", 64) },
			check: func(t *testing.T, l Layout) {
				if b, _ := os.ReadFile(l.HistoryFile()); !bytes.Equal(b, hist) {
					t.Errorf("history replaced: %q", b)
				}
			}},
		{name: "history appeared since it was read as absent", wantErr: "history.json changed since relctl read it",
			setup: func(t *testing.T, l Layout) {
				must(t, os.MkdirAll(l.StateDir(), 0o755))
				must(t, os.WriteFile(l.HistoryFile(), hist, 0o644))
			},
			sum: func(Layout) string { return "absent" }},
		{name: "history unreadable by the SSH user", nobody: true, wantErr: "cannot be read by the SSH user",
			setup: func(t *testing.T, l Layout) {
				must(t, os.MkdirAll(l.StateDir(), 0o777))
				must(t, os.WriteFile(l.HistoryFile(), hist, 0o600))
			}},
		{name: "current is a directory", wantErr: "/current is not a symlink: relctl will not replace it",
			setup: func(t *testing.T, l Layout) { must(t, os.MkdirAll(l.Current(), 0o755)) }},
	}
	for _, sh := range shells {
		for _, tt := range tests {
			t.Run(sh+"/"+tt.name, func(t *testing.T) {
				l := Layout{BaseDir: filepath.Join(worldDir(t), "srv")}
				must(t, os.MkdirAll(l.Release("2.0.0"), 0o777))
				tt.setup(t, l)
				sum := ""
				if tt.sum != nil {
					sum = tt.sum(l)
				}
				_, stderr, err := shellRun(t, sh, l.ActivateScriptIfUnchanged("2.0.0", "r9", sum), goodHistory+"\n", tt.nobody)
				var exit *exec.ExitError
				if !errors.As(err, &exit) || exit.ExitCode() != 3 || !strings.Contains(stderr, tt.wantErr) || !strings.Contains(stderr, "re-run") {
					t.Fatalf("err = %v, stderr %q; want exit 3 saying %q", err, stderr, tt.wantErr)
				}
				if link, err := os.Readlink(l.Current()); err == nil {
					t.Errorf("current switched to %s", link)
				}
				if tmps, _ := filepath.Glob(l.HistoryFile() + ".tmp.*"); len(tmps) > 0 {
					t.Errorf("temp files left: %v", tmps)
				}
				if tt.check != nil {
					tt.check(t, l)
				}
			})
		}
	}
}

// TestActivateScriptIfUnchanged: with the sum that was read, the switch goes
// through, with dash and bash; an empty stdin changes nothing.
func TestActivateScriptIfUnchanged(t *testing.T) {
	for _, sh := range shells {
		t.Run(sh, func(t *testing.T) {
			l := Layout{BaseDir: filepath.Join(worldDir(t), "srv")}
			must(t, os.MkdirAll(l.Release("1.0.0"), 0o755))
			must(t, os.MkdirAll(l.Release("1.1.0"), 0o755))
			out, _, err := shellRun(t, sh, l.ReadScript(), "", false)
			must(t, err)
			st, err := l.ParseHostState(out)
			must(t, err)
			if st.HistorySum != "absent" {
				t.Fatalf("sum of a missing history = %q", st.HistorySum)
			}
			if _, stderr, err := shellRun(t, sh, l.ActivateScriptIfUnchanged("1.0.0", "r1", st.HistorySum), goodHistory+"\n", false); err != nil {
				t.Fatalf("%v: %s", err, stderr)
			}
			out, _, err = shellRun(t, sh, l.ReadScript(), "", false)
			must(t, err)
			if st, err = l.ParseHostState(out); err != nil || st.Current != "1.0.0" || len(st.History.Activations) != 2 {
				t.Fatalf("after the switch: %+v, %v", st, err)
			}
			if _, stderr, err := shellRun(t, sh, l.ActivateScriptIfUnchanged("1.1.0", "r2", st.HistorySum), goodHistory+"\n", false); err != nil {
				t.Fatalf("%v: %s", err, stderr)
			}
			if link, _ := os.Readlink(l.Current()); link != "releases/1.1.0" {
				t.Errorf("current -> %q", link)
			}
			// Nothing on stdin (a connection that dropped): nothing changes.
			_, stderr, err := shellRun(t, sh, l.ActivateScript("1.0.0", "r3"), "", false)
			if err == nil || !strings.Contains(stderr, "no history arrived") {
				t.Errorf("empty stdin: %v %q", err, stderr)
			}
			if link, _ := os.Readlink(l.Current()); link != "releases/1.1.0" {
				t.Errorf("current -> %q after a refused switch", link)
			}
			if b, _ := os.ReadFile(l.HistoryFile()); string(b) != goodHistory+"\n" {
				t.Errorf("history = %q", b)
			}
		})
	}
}

// TestReadFileScript: the generic file read, with its mode, under dash and bash.
func TestReadFileScript(t *testing.T) {
	for _, sh := range shells {
		t.Run(sh, func(t *testing.T) {
			d := worldDir(t)
			p := filepath.Join(d, "conf.d", "search monit")
			read := func() (*HostFile, error) {
				out, stderr, err := shellRun(t, sh, ReadFileScript(p), "", false)
				if err != nil {
					t.Fatalf("%v: %s", err, stderr)
				}
				return ParseFileRead(p, []byte(out))
			}
			if f, err := read(); err != nil || f.Present || f.SHA256 != "absent" {
				t.Fatalf("missing file: %+v, %v", f, err)
			}
			must(t, os.MkdirAll(filepath.Dir(p), 0o755))
			body := "check process search\n\x00binary\nno newline at the end"
			must(t, os.WriteFile(p, []byte(body), 0o640))
			must(t, os.Chmod(p, 0o640))
			f, err := read()
			if err != nil || !f.Present || string(f.Body) != body || !f.ModeKnown || f.Mode != 0o640 {
				t.Fatalf("present file: %+v, %v", f, err)
			}
			must(t, os.Remove(p))
			must(t, os.Mkdir(p, 0o755))
			if _, err := read(); err == nil || !strings.Contains(err.Error(), p+" is a directory") {
				t.Fatalf("a directory: %v", err)
			}
		})
	}
}

// TestReadFileScriptWithoutStat: a host without stat(1) still reads the
// file; its size comes from wc -c, its mode is unknown.
func TestReadFileScriptWithoutStat(t *testing.T) {
	bin := t.TempDir()
	for _, tool := range []string{"cat", "wc"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Skip(tool + " not installed")
		}
		must(t, os.Symlink(p, filepath.Join(bin, tool)))
	}
	f := filepath.Join(worldDir(t), "state.json")
	must(t, os.WriteFile(f, []byte("{\"a\":1}\n"), 0o640))
	for _, sh := range shells {
		t.Run(sh, func(t *testing.T) {
			shellPath, err := exec.LookPath(sh)
			if err != nil {
				t.Skipf("%s not installed", sh)
			}
			cmd := exec.Command(shellPath, "-c", ReadFileScript(f))
			cmd.Env = []string{"PATH=" + bin}
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("script failed: %v", err)
			}
			hf, err := ParseFileRead(f, out)
			if err != nil {
				t.Fatalf("%v\noutput: %q", err, out)
			}
			if string(hf.Body) != "{\"a\":1}\n" || hf.ModeKnown {
				t.Errorf("read %q (mode known %v), want the file and no mode", hf.Body, hf.ModeKnown)
			}
		})
	}
}

// TestRefusedWritesLeaveNoTempFile: a switch refused after its history
// arrived (history changed since it was read) removes its temp file, also
// under a base directory whose name needs quoting.
func TestRefusedWritesLeaveNoTempFile(t *testing.T) {
	for _, sh := range shells {
		t.Run(sh, func(t *testing.T) {
			l := Layout{BaseDir: filepath.Join(worldDir(t), "srv", "it's $here")}
			must(t, os.MkdirAll(l.Release("1.0.0"), 0o755))
			must(t, os.MkdirAll(l.StateDir(), 0o755))
			must(t, os.WriteFile(l.HistoryFile(), []byte(goodHistory+"\n"), 0o644))
			stale := strings.Repeat("0", 64)
			_, stderr, err := shellRun(t, sh, l.ActivateScriptIfUnchanged("1.0.0", "r1", stale), goodHistory+"\n", false)
			if err == nil || !strings.Contains(stderr, ChangedSinceRead) {
				t.Fatalf("a stale sum: err %v, stderr %q; want the refusal", err, stderr)
			}
			entries, err := os.ReadDir(l.StateDir())
			must(t, err)
			for _, e := range entries {
				if e.Name() != "history.json" {
					t.Errorf(".relctl holds %s after the refusal", e.Name())
				}
			}
			if b, _ := os.ReadFile(l.HistoryFile()); string(b) != goodHistory+"\n" {
				t.Errorf("history = %q", b)
			}
		})
	}
}

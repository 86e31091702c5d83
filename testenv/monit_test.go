package testenv

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/template"
	"time"

	toml "github.com/pelletier/go-toml/v2"
	"golang.org/x/crypto/ssh"

	"github.com/relctl/relctl/playbooks"
)

func requireMonit(t *testing.T) {
	t.Helper()
	if _, err := findMonit(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("monit not installed; CI must run these tests (apt-get install -y monit)")
		}
		t.Skip("monit not installed (apt-get install -y monit, or run `make test`)")
	}
}

// snippetData is what relctl hands the snippet template.
type snippetData struct {
	BaseDir, CurrentDir, ReleaseDir, Version string
	Vars                                     map[string]any
}

// renderSnippet extracts version's monit snippet from its artifact and
// renders it for host h, as relctl does.
func renderSnippet(t *testing.T, version string, h HostInfo) string {
	t.Helper()
	art, err := BuildArtifact(version)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(art))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			t.Fatalf("%s: no %s in the artifact", version, MonitSnippetFile)
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Name != MonitSnippetFile {
			continue
		}
		body, _ := io.ReadAll(tr)
		tmpl, err := template.New(MonitSnippetFile).Option("missingkey=error").Parse(string(body))
		if err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		err = tmpl.Execute(&out, snippetData{
			BaseDir:    h.BaseDir,
			CurrentDir: filepath.Join(h.BaseDir, "current"),
			ReleaseDir: filepath.Join(h.BaseDir, "releases", version),
			Version:    version,
			Vars:       map[string]any{"port": h.ServicePort, "base_dir": h.BaseDir},
		})
		if err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
}

// Every artifact's snippet, rendered, goes through the real `monit -t`:
// the demo versions and the missing-pidfile one pass, 1.3.0 does not.
func TestMonitSnippetsUnderMonitT(t *testing.T) {
	requireMonit(t)
	h := HostInfo{BaseDir: "/srv/search", ServicePort: 8080}
	tests := []struct {
		version string
		rc      int
		output  string // substring of monit -t's output
		pidfile string
	}{
		{"1.0.0", 0, "Control file syntax OK", `pidfile "/srv/search/run/search.pid"`},
		{"1.1.0", 0, "Control file syntax OK", `pidfile "/srv/search/run/search.pid"`},
		{MissingPidfileVersion, 0, "Control file syntax OK", `pidfile "/srv/search/run/search-server.pid"`},
		{BadMonitSyntaxVersion, 1, "search.monitrc:1: syntax error", `pidfile "/srv/search/run/search.pid"`},
	}
	if got := append(slices.Clone(DemoVersions), WatchdogVersions...); len(got) != len(tests) {
		t.Fatalf("versions %v: the table covers %d", got, len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			dir := t.TempDir()
			snippet := renderSnippet(t, tt.version, h)
			if !strings.Contains(snippet, tt.pidfile) {
				t.Errorf("snippet lacks %s:\n%s", tt.pidfile, snippet)
			}
			if err := os.WriteFile(filepath.Join(dir, "search.monitrc"), []byte(snippet), 0o644); err != nil {
				t.Fatal(err)
			}
			rc := fmt.Sprintf("set idfile %q\nset statefile %q\ninclude %q\n",
				filepath.Join(dir, "monit.id"), filepath.Join(dir, "monit.state"), filepath.Join(dir, "search.monitrc"))
			if err := os.WriteFile(filepath.Join(dir, "monitrc"), []byte(rc), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("monit", "-t", "-c", filepath.Join(dir, "monitrc")).CombinedOutput()
			code := 0
			var exitErr *exec.ExitError
			if errors.As(err, &exitErr) {
				code = exitErr.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.rc || !strings.Contains(string(out), tt.output) {
				t.Errorf("monit -t: rc %d %q, want rc %d with %q", code, out, tt.rc, tt.output)
			}
		})
	}
}

func TestMonitNotInstalled(t *testing.T) {
	old := monitSearchPath
	monitSearchPath = t.TempDir() // a PATH without monit
	t.Cleanup(func() { monitSearchPath = old })
	dir := t.TempDir()
	const want = "monit is not installed (apt-get install -y monit)"

	_, err := Start(t.Context(), Options{Dir: dir, Hosts: 1, Monit: true})
	if !errors.Is(err, ErrMonitNotInstalled) || err.Error() != want {
		t.Errorf("Start: %v, want %q", err, want)
	}
	_, err = Up(t.Context(), Options{Dir: dir, Hosts: 1, Monit: true}, []string{os.Args[0]})
	if !errors.Is(err, ErrMonitNotInstalled) || err.Error() != want {
		t.Errorf("Up: %v, want %q", err, want)
	}
	if pids := markedProcesses(dir); len(pids) > 0 {
		t.Errorf("processes started: %v", pids)
	}
}

// Without Options.Monit nothing about monit appears.
func TestNoMonitByDefault(t *testing.T) {
	c := startCluster(t, 1)
	cfg := mustRead(t, filepath.Join(c.Dir(), ConfigFile))
	if strings.Contains(cfg, "monit") {
		t.Errorf("relctl.toml mentions monit:\n%s", cfg)
	}
	for _, h := range c.Hosts() {
		if h.MonitControl != "" || h.MonitPort != 0 {
			t.Errorf("%s: %+v", h.Name, h)
		}
		if _, err := os.Stat(filepath.Join(h.Root, "monit")); err == nil {
			t.Errorf("%s: a monit directory was created", h.Name)
		}
	}
}

var (
	monitStatusRE = regexp.MustCompile(`(?m)^\s+status\s+(.+?)\s*$`)
	monitPIDRE    = regexp.MustCompile(`(?m)^\s+pid\s+(\d+)\s*$`)
)

// monitProcess asks a host's monit, over SSH as relctl would, about one
// process service: its status text and pid (0 when none).
func monitProcess(t *testing.T, client *ssh.Client, h HostInfo, name string) (string, int, string) {
	t.Helper()
	res := run(t, client, "monit -c "+shellQuote(h.MonitControl)+" status "+shellQuote(name), "", nil)
	status := ""
	if m := monitStatusRE.FindStringSubmatch(res.stdout); m != nil {
		status = m[1]
	}
	pid := 0
	if m := monitPIDRE.FindStringSubmatch(res.stdout); m != nil {
		pid, _ = strconv.Atoi(m[1])
	}
	return status, pid, res.stdout + res.stderr
}

// waitSupervised polls monit until it reports name running with a live pid
// other than not; the deadline only guards against a hang.
func waitSupervised(t *testing.T, client *ssh.Client, h HostInfo, name string, not int) int {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		status, pid, out := monitProcess(t, client, h, name)
		if status == "OK" && pid > 0 && pid != not && processAlive(pid) {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: monit never reported %s running with a new pid; last answer:\n%s\nmonit.log:\n%s",
				h.Name, name, out, logTail(filepath.Join(h.Root, "monit", MonitLogFile), 20))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestMonitSupervisesDemoService: every host's own monit answers; a
// rendered snippet in conf.d plus a reload makes monit start the demo
// service, restart it after kill -9, and Close leaves nothing running.
func TestMonitSupervisesDemoService(t *testing.T) {
	requireMonit(t)
	c := startClusterWith(t, Options{Hosts: 1, Monit: true})
	hosts := c.Hosts()

	var cfg playbooks.Config
	if err := toml.Unmarshal([]byte(mustRead(t, filepath.Join(c.Dir(), ConfigFile))), &cfg); err != nil {
		t.Fatal(err)
	}
	ports := map[int]string{}
	for _, h := range hosts {
		t.Run("files/"+h.Name, func(t *testing.T) {
			if h.MonitControl != filepath.Join(h.Root, "monit", "monitrc") || h.MonitConfDir != filepath.Join(h.Root, "monit", "conf.d") {
				t.Errorf("monit files at %s, %s", h.MonitControl, h.MonitConfDir)
			}
			if other, dup := ports[h.MonitPort]; dup || h.MonitPort == 0 || h.MonitPort == h.ServicePort || h.MonitPort == h.SSHPort {
				t.Errorf("monit port %d (shared with %q?)", h.MonitPort, other)
			}
			ports[h.MonitPort] = h.Name
			fi, err := os.Stat(h.MonitControl)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("monitrc mode %v, want 0600", fi.Mode().Perm())
			}
			rc := mustRead(t, h.MonitControl)
			mdir := filepath.Join(h.Root, "monit")
			for _, want := range []string{
				"set daemon 1\n",
				fmt.Sprintf("set pidfile %q\n", filepath.Join(mdir, "monit.pid")),
				fmt.Sprintf("set idfile %q\n", filepath.Join(mdir, "monit.id")),
				fmt.Sprintf("set statefile %q\n", filepath.Join(mdir, "monit.state")),
				fmt.Sprintf("set logfile %q\n", filepath.Join(mdir, "monit.log")),
				fmt.Sprintf("set httpd port %d and use address 127.0.0.1 allow admin:", h.MonitPort),
				fmt.Sprintf("include %q\n", filepath.Join(mdir, "conf.d", "*.monitrc")),
			} {
				if !strings.Contains(rc, want) {
					t.Errorf("monitrc lacks %q:\n%s", want, rc)
				}
			}
			if strings.Contains(rc, "secret") {
				t.Errorf("monitrc uses the reserved word secret:\n%s", rc)
			}
			if entries, err := os.ReadDir(h.MonitConfDir); err != nil || len(entries) != 0 {
				t.Errorf("conf.d: %v %v, want it empty", entries, err)
			}
			vars := hostVars(t, &cfg, h)
			if vars["monit_control"] != h.MonitControl || vars["monit_confdir"] != h.MonitConfDir {
				t.Errorf("relctl.toml vars %v", vars)
			}
			client := dialHost(t, c.Dir(), h)
			res := run(t, client, "monit -c "+shellQuote(h.MonitControl)+" summary", "", nil)
			if res.status != 0 || !strings.Contains(res.stdout, "Monit 5") || !strings.Contains(res.stdout, "System") {
				t.Errorf("monit summary: %+v", res)
			}
		})
	}
	// Each monit has its own credentials.
	allow := regexp.MustCompile(`allow admin:\S+`)
	if a, b := allow.FindString(mustRead(t, hosts[0].MonitControl)), allow.FindString(mustRead(t, hosts[1].MonitControl)); a == "" || a == b {
		t.Errorf("credentials %q and %q", a, b)
	}

	h := hosts[0]
	client := dialHost(t, c.Dir(), h)
	must := func(cmd, stdin string) string {
		t.Helper()
		res := run(t, client, cmd, stdin, nil)
		if res.status != 0 || res.signal != "" {
			t.Fatalf("%s: %+v", cmd, res)
		}
		return res.stdout
	}
	monitCmd := "monit -c " + shellQuote(h.MonitControl) + " "
	port := strconv.Itoa(h.ServicePort)

	// Release 1.1.0 in place by hand, as relctl's playbook would: unpacked, current.
	rel := filepath.Join(h.BaseDir, "releases", "1.1.0")
	art := filepath.Join(rel, ArtifactName("1.1.0"))
	must("mkdir -p "+shellQuote(rel)+" && cat > "+shellQuote(art), mustRead(t, filepath.Join(c.Dir(), "artifacts", ArtifactName("1.1.0"))))
	must("tar -xzf "+shellQuote(art)+" -C "+shellQuote(rel)+" && ln -sfn "+shellQuote(rel)+" "+shellQuote(filepath.Join(h.BaseDir, "current")), "")

	// The rendered snippet into conf.d, checked, then reload.
	snippet := filepath.Join(h.MonitConfDir, "search.monitrc")
	must("cat > "+shellQuote(snippet), renderSnippet(t, "1.1.0", h))
	if out := must(monitCmd+"-t", ""); !strings.Contains(out, "Control file syntax OK") {
		t.Errorf("monit -t: %q", out)
	}
	must(monitCmd+"reload", "")
	first := waitSupervised(t, client, h, "search", 0)
	if got := strings.TrimSpace(mustRead(t, filepath.Join(h.BaseDir, "run", "search.pid"))); got != strconv.Itoa(first) {
		t.Errorf("monit reports pid %d, the service's pid file says %s", first, got)
	}
	expectHTTP(t, port, "/health", 200, `"version":"1.1.0"`)

	// kill -9: monit notices on a later cycle and starts it again.
	must("kill -9 "+strconv.Itoa(first), "")
	second := waitSupervised(t, client, h, "search", first)
	expectHTTP(t, port, "/health", 200, `"version":"1.1.0"`)
	t.Logf("monit restarted search: pid %d -> %d", first, second)

	monitPID := readPID(filepath.Join(h.Root, "monit", "monit.pid"))
	if !isMarked(monitPID, c.Dir()) || !isMarked(second, c.Dir()) {
		t.Errorf("monit (%d) or the service it started (%d) lacks the cluster's marker", monitPID, second)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if pids := markedProcesses(c.Dir()); len(pids) > 0 {
		t.Errorf("processes left after Close: %v", pids)
	}
	for _, pid := range []int{monitPID, second} {
		if processAlive(pid) {
			t.Errorf("pid %d still alive after Close", pid)
		}
	}
}

func hostVars(t *testing.T, cfg *playbooks.Config, h HostInfo) map[string]any {
	t.Helper()
	env := cfg.Environments[h.Env]
	if env == nil {
		t.Fatalf("no environment %s in relctl.toml", h.Env)
	}
	for _, ch := range env.Hosts {
		if ch.Name == h.Name {
			return ch.Vars
		}
	}
	t.Fatalf("%s missing from relctl.toml", h.Name)
	return nil
}

// The daemon passes Options.Monit through serve's argv (MonitFlag); Down
// stops the monits.
func TestDaemonWithMonit(t *testing.T) {
	requireMonit(t)
	dir := t.TempDir()
	t.Setenv(serveDirEnv, dir)
	t.Setenv(serveHostsEnv, "1")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	st, err := Up(ctx, Options{Dir: dir, Hosts: 1, Monit: true}, []string{os.Args[0]})
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	t.Cleanup(func() { Down(context.WithoutCancel(t.Context()), dir) })
	if !st.Monit || len(st.Hosts) != 2 {
		t.Fatalf("status: %+v", st)
	}
	var monits []int
	for _, hs := range st.Hosts {
		h := hs.HostInfo
		client := dialHost(t, dir, h)
		res := run(t, client, "monit -c "+shellQuote(h.MonitControl)+" summary", "", nil)
		if res.status != 0 || !strings.Contains(res.stdout, "Monit 5") {
			t.Errorf("%s: monit summary: %+v", h.Name, res)
		}
		pid := readPID(filepath.Join(h.Root, "monit", "monit.pid"))
		if !isMarked(pid, dir) {
			t.Errorf("%s: monit pid %d is not the cluster's", h.Name, pid)
		}
		monits = append(monits, pid)
	}
	if err := Down(ctx, dir); err != nil {
		t.Fatalf("Down: %v", err)
	}
	for _, pid := range monits {
		if processAlive(pid) {
			t.Errorf("monit %d alive after Down", pid)
		}
	}
	if pids := markedProcesses(dir); len(pids) > 0 {
		t.Errorf("processes left after Down: %v", pids)
	}
	if st, err := GetStatus(ctx, dir); err != nil || st.Running || !st.Monit {
		t.Errorf("status after Down: %+v, %v", st, err)
	}
}

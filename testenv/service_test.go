package testenv

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	toml "github.com/pelletier/go-toml/v2"

	"github.com/relctl/relctl/playbooks"
)

func TestArtifactsAreDeterministic(t *testing.T) {
	dir := t.TempDir()
	if err := writeArtifacts(dir); err != nil {
		t.Fatal(err)
	}
	for _, v := range append(slices.Clone(DemoVersions), WatchdogVersions...) {
		t.Run(v, func(t *testing.T) {
			again, err := BuildArtifact(v)
			if err != nil {
				t.Fatal(err)
			}
			onDisk := mustRead(t, filepath.Join(dir, "artifacts", ArtifactName(v)))
			if sha256.Sum256([]byte(onDisk)) != sha256.Sum256(again) {
				t.Fatal("two builds of the same artifact differ")
			}
			var got []string
			zr, err := gzip.NewReader(bytes.NewReader(again))
			if err != nil {
				t.Fatal(err)
			}
			tr := tar.NewReader(zr)
			for {
				hdr, err := tr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(tr)
				got = append(got, fmt.Sprintf("%s %o", hdr.Name, hdr.Mode))
				if hdr.Name == "VERSION" && string(body) != v+"\n" {
					t.Errorf("VERSION = %q", body)
				}
			}
			want := "VERSION 644|bin/ 755|bin/restart 755|bin/start 755|bin/stop 755|monit/ 755|monit/search.monitrc 644|server.py 644"
			if strings.Join(got, "|") != want {
				t.Errorf("entries = %s, want %s", strings.Join(got, "|"), want)
			}
		})
	}
}

// The generated files must load as relctl's own config types, strictly.
func TestConfigMatchesRelctlTypes(t *testing.T) {
	c := startCluster(t, 2)
	tests := []struct {
		file string
		into any
	}{
		{ConfigFile, &playbooks.Config{}},
		{PlaybookFile, &playbooks.Playbook{}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			dec := toml.NewDecoder(strings.NewReader(mustRead(t, filepath.Join(c.Dir(), tt.file))))
			dec.DisallowUnknownFields()
			if err := dec.Decode(tt.into); err != nil {
				t.Fatalf("%s: %v", tt.file, err)
			}
		})
	}
	var cfg playbooks.Config
	toml.Unmarshal([]byte(mustRead(t, filepath.Join(c.Dir(), ConfigFile))), &cfg)
	for _, h := range c.Hosts() {
		env := cfg.Environments[h.Env]
		if env == nil {
			t.Fatalf("no environment %s", h.Env)
		}
		found := false
		for _, ch := range env.Hosts {
			if ch.Name == h.Name {
				found = true
				if ch.Address != h.Address || ch.Vars["base_dir"] != h.BaseDir || ch.Vars["port"] != int64(h.ServicePort) {
					t.Errorf("%s in relctl.toml: %+v, want %+v", h.Name, ch, h)
				}
			}
		}
		if !found {
			t.Errorf("%s missing from relctl.toml", h.Name)
		}
	}
}

// TestDeployByHand does what relctl's search playbook does, by hand over
// SSH: upload, unpack, start, check health, restart into another release,
// stop; then Close leaves no process behind.
func TestDeployByHand(t *testing.T) {
	c := startCluster(t, 1)
	h := c.Hosts()[0]
	client := dialHost(t, c.Dir(), h)
	base, port := h.BaseDir, fmt.Sprint(h.ServicePort)

	must := func(cmd, stdin string) string {
		t.Helper()
		res := run(t, client, cmd, stdin, nil)
		if res.status != 0 || res.signal != "" {
			t.Fatalf("%s: %+v", cmd, res)
		}
		return res.stdout
	}
	install := func(version string) string {
		rel := filepath.Join(base, "releases", version)
		art := filepath.Join(rel, ArtifactName(version))
		must("mkdir -p "+shellQuote(rel)+" && cat > "+shellQuote(art), mustRead(t, filepath.Join(c.Dir(), "artifacts", ArtifactName(version))))
		must("tar -xzf "+shellQuote(art)+" -C "+shellQuote(rel)+" && test -x "+shellQuote(rel)+"/bin/start", "")
		return rel
	}

	rel110 := install("1.1.0")
	out := must(shellQuote(rel110)+"/bin/start "+shellQuote(base)+" "+port, "")
	if !strings.Contains(out, "search 1.1.0 started") {
		t.Errorf("start said %q", out)
	}
	expectHTTP(t, port, "/health", 200, `{"status":"ok","service":"search","version":"1.1.0"}`)
	expectHTTP(t, port, "/search?q=release", 200, `"version":"1.1.0"`)

	// A second start while running is refused with a clear message.
	res := run(t, client, shellQuote(rel110)+"/bin/start "+shellQuote(base)+" "+port, "", nil)
	if res.status != 1 || !strings.Contains(res.stderr, "already running") {
		t.Errorf("second start: %+v", res)
	}

	rel120 := install("1.2.0")
	must(shellQuote(rel120)+"/bin/restart "+shellQuote(base)+" "+port, "")
	expectHTTP(t, port, "/health", 500, `{"status":"failing","version":"1.2.0","reason":"index not loaded"}`)

	out = must(shellQuote(rel120)+"/bin/stop "+shellQuote(base), "")
	if !strings.Contains(out, "search stopped") {
		t.Errorf("stop said %q", out)
	}
	if _, err := http.Get("http://127.0.0.1:" + port + "/health"); err == nil {
		t.Error("service still answers after stop")
	}
	if out := must(shellQuote(rel120)+"/bin/stop "+shellQuote(base), ""); !strings.Contains(out, "not running") {
		t.Errorf("stop with nothing running said %q", out)
	}

	// Left running on purpose: Close must stop it.
	must(shellQuote(rel110)+"/bin/start "+shellQuote(base)+" "+port, "")
	if pids := markedProcesses(c.Dir()); len(pids) != 1 {
		t.Errorf("marked processes while the service runs: %v, want just the service", pids)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if pids := markedProcesses(c.Dir()); len(pids) > 0 {
		t.Errorf("processes left after Close: %v", pids)
	}
}

func TestStartFailsWithLogTail(t *testing.T) {
	c := startCluster(t, 1)
	h := c.Hosts()[0]
	client := dialHost(t, c.Dir(), h)
	// Something else holds the port: the service dies at bind.
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", fmt.Sprintf("127.0.0.1:%d", h.ServicePort))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	rel := filepath.Join(h.BaseDir, "releases", "1.0.0")
	art := filepath.Join(rel, ArtifactName("1.0.0"))
	setup := run(t, client, "mkdir -p "+shellQuote(rel)+" && cat > "+shellQuote(art)+" && tar -xzf "+shellQuote(art)+" -C "+shellQuote(rel),
		mustRead(t, filepath.Join(c.Dir(), "artifacts", ArtifactName("1.0.0"))), nil)
	if setup.status != 0 {
		t.Fatalf("setup: %+v", setup)
	}
	res := run(t, client, shellQuote(rel)+"/bin/start "+shellQuote(h.BaseDir)+fmt.Sprintf(" %d", h.ServicePort), "", nil)
	if res.status != 1 || !strings.Contains(res.stderr, "exited during start-up") || !strings.Contains(res.stderr, "Address already in use") {
		t.Errorf("start with port taken: %+v", res)
	}
	res = run(t, client, shellQuote(rel)+"/bin/start "+shellQuote(h.BaseDir)+" 80x", "", nil)
	if res.status != 2 || !strings.Contains(res.stderr, "PORT must be a number") {
		t.Errorf("start with bad port: %+v", res)
	}
}

func expectHTTP(t *testing.T, port, path string, status int, body string) {
	t.Helper()
	client := http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://127.0.0.1:" + port + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status || !strings.Contains(string(b), body) {
		t.Errorf("GET %s = %d %q, want %d with %q", path, resp.StatusCode, b, status, body)
	}
}

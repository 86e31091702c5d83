package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relctl/relctl/internal/output"
	"github.com/relctl/relctl/internal/sshdtest"
	"github.com/relctl/relctl/testenv"
)

// TestDeployRealOpenSSH runs the same deploy as the testenv scripts against
// real OpenSSH sshd processes, with strict known_hosts checking.
func TestDeployRealOpenSSH(t *testing.T) {
	dir := t.TempDir()
	key, pub := sshdtest.NewClientKey(t, dir)
	servers := sshdtest.Start(t, 3, pub)
	sshdtest.WriteKnownHosts(t, filepath.Join(dir, "known_hosts"), servers)

	var cfg strings.Builder
	fmt.Fprintf(&cfg, `project = "search"
[ssh]
user = "root"
identity_file = %q
known_hosts = "known_hosts"
host_key_policy = "strict"
use_agent = false
connect_timeout = "10s"

[environments.staging]
`, filepath.Base(key))
	ports := map[string]int{}
	for _, s := range servers {
		ports[s.Name] = freePort(t)
		base := filepath.Join(s.Root, "srv", "search")
		fmt.Fprintf(&cfg, "[[environments.staging.hosts]]\nname = %q\naddress = %q\nroles = [\"search\"]\nvars = { base_dir = %q, port = %d }\n",
			s.Name, s.Addr, base, ports[s.Name])
		t.Cleanup(func() { exec.Command(filepath.Join(base, "current", "bin", "stop"), base).Run() })
	}
	writeFile(t, filepath.Join(dir, "relctl.toml"), cfg.String())
	writeFile(t, filepath.Join(dir, "playbooks", "search.toml"), realSSHDPlaybook)
	for _, v := range []string{"1.0.0", "1.1.0"} {
		art, err := testenv.BuildArtifact(v)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, "artifacts", testenv.ArtifactName(v)), string(art))
	}
	cfgPath := filepath.Join(dir, "relctl.toml")

	for _, v := range []string{"1.0.0", "1.1.0"} {
		var out, errOut bytes.Buffer
		code := run([]string{"deploy", "-c", cfgPath, "--env", "staging", "--release", v, "--yes"}, output.Test(strings.NewReader(""), &out, &errOut))
		if code != 0 {
			t.Fatalf("deploy %s: exit %d\nstdout:\n%s\nstderr:\n%s", v, code, out.String(), errOut.String())
		}
		for _, s := range servers {
			link, err := os.Readlink(filepath.Join(s.Root, "srv", "search", "current"))
			if err != nil || link != "releases/"+v {
				t.Errorf("%s: current -> %q (%v), want releases/%s", s.Name, link, err, v)
			}
			if got := healthBody(t, ports[s.Name]); !strings.Contains(got, `"version":"`+v+`"`) {
				t.Errorf("%s: /health = %s, want version %s", s.Name, got, v)
			}
		}
	}

	var out, errOut bytes.Buffer
	if code := run([]string{"status", "-c", cfgPath, "--env", "staging", "-o", "json"}, output.Test(nil, &out, &errOut)); code != 0 {
		t.Fatalf("status: exit %d: %s", code, errOut.String())
	}
	if n := strings.Count(out.String(), `"current": "1.1.0",`+"\n"+`      "previous": "1.0.0",`+"\n"+`      "healthy": true`); n != 3 {
		t.Errorf("status: %d hosts on 1.1.0 after 1.0.0 and healthy, want 3:\n%s", n, out.String())
	}

	// Strict known_hosts: a host whose key is not known is refused before anything runs.
	writeFile(t, filepath.Join(dir, "known_hosts"), "")
	out.Reset()
	errOut.Reset()
	code := run([]string{"deploy", "-c", cfgPath, "--env", "staging", "--release", "1.0.0", "--yes"}, output.Test(nil, &out, &errOut))
	if code != exitFailedClean || !strings.Contains(errOut.String(), "Host key verification failed") {
		t.Errorf("deploy with empty known_hosts: exit %d, want %d and a host key error; stderr:\n%s", code, exitFailedClean, errOut.String())
	}
}

const realSSHDPlaybook = `name = "search"
roles = ["search"]
[artifact]
path = "artifacts/search-{{.Version}}.tar.gz"
[strategy]
canary = 1
batch_size = 2
[checks.health]
type = "http"
url = "http://127.0.0.1:{{.Vars.port}}/health"
body_contains = "{{.Version}}"
interval = "200ms"
retries = 25
healthy_for = 2
[[steps]]
phase = "preflight"
name = "base-dir"
run = "mkdir -p {{.BaseDir}} && test -w {{.BaseDir}}"
[[steps]]
phase = "stage"
kind = "upload"
[[steps]]
phase = "stage"
name = "unpack"
run = "tar -xzf {{.Artifact}} -C {{.ReleaseDir}}"
[[steps]]
phase = "activate"
kind = "activate"
[[steps]]
phase = "activate"
name = "restart"
run = "{{.CurrentDir}}/bin/restart {{.BaseDir}} {{.Vars.port}}"
[[steps]]
phase = "verify"
name = "health"
kind = "check"
checks = ["health"]
`

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func healthBody(t *testing.T, port int) string {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/health", port))
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, b)
}

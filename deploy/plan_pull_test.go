package deploy_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/playbooks"
)

// mirror is an artifact store: /app-VERSION.tar.gz and its .sha256, and a
// count of requests per path.
type mirror struct {
	*httptest.Server
	mu    sync.Mutex
	count map[string]int
}

func newMirror(t *testing.T, files map[string][]byte) *mirror {
	m := &mirror{count: map[string]int{}}
	m.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		m.count[r.URL.Path]++
		m.mu.Unlock()
		name := strings.TrimPrefix(r.URL.Path, "/")
		if body, ok := files[name]; ok {
			_, _ = w.Write(body)
			return
		}
		if body, ok := files[strings.TrimSuffix(name, ".sha256")]; ok {
			sum := sha256.Sum256(body)
			fmt.Fprintf(w, "%s  %s\n", hex.EncodeToString(sum[:]), strings.TrimSuffix(name, ".sha256"))
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(m.Close)
	return m
}

func (m *mirror) requests(p string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.count[p]
}

// pulledFleet is a fleet of len(vars) hosts whose playbook has the hosts
// pull url, each host with its vars.
func pulledFleet(t *testing.T, vars []map[string]string, artifactLines string) *fleet {
	t.Helper()
	f := newFleet(t, 1, strategyCanary)
	f.names = nil
	cfg := readTestdata(t, "relctl.toml")
	for i, v := range vars {
		name := fmt.Sprintf("web-%d", i+1)
		f.names = append(f.names, name)
		extra := ""
		for k, val := range v {
			extra += fmt.Sprintf(", %s = %q", k, val)
		}
		cfg += fmt.Sprintf("\n[[environments.production.hosts]]\nname = %q\naddress = \"%s.test:22\"\nroles = [\"app\"]\nvars = { base_dir = %q%s }\n",
			name, name, f.base(name), extra)
	}
	pb := strings.Replace(readTestdata(t, "app.toml"), "# STRATEGY (replaced by the test)", strategyCanary, 1)
	pb = strings.Replace(pb, `path = "artifacts/app-{{.Version}}.tar.gz"`, artifactLines, 1)
	writeFile(t, filepath.Join(f.dir, "relctl.toml"), cfg)
	writeFile(t, filepath.Join(f.dir, "playbooks", "app.toml"), pb)
	proj, err := playbooks.Load(filepath.Join(f.dir, "relctl.toml"))
	if err != nil {
		t.Fatalf("loading the test project:\n%v", err)
	}
	f.proj = proj
	return f
}

// artifact.url is a template rendered per host: with a per-host mirror,
// each host fetches from its own mirror (the plan says so, and the deploy
// does it), and each mirror's checksum file is read once.
func TestPulledURLRenderedPerHost(t *testing.T) {
	body := artifact(t, "2.0.0")
	us := newMirror(t, map[string][]byte{"app-2.0.0.tar.gz": body})
	eu := newMirror(t, map[string][]byte{"app-2.0.0.tar.gz": body})
	host := func(m *mirror) string { return strings.TrimPrefix(m.URL, "http://") }
	f := pulledFleet(t, []map[string]string{{"mirror": host(us)}, {"mirror": host(eu)}, {"mirror": host(eu)}},
		`url = "http://{{.Vars.mirror}}/app-{{.Version}}.tar.gz"`)
	p := f.plan("2.0.0", "pull")
	want := map[string]string{"web-1": us.URL, "web-2": eu.URL, "web-3": eu.URL}
	fetches := 0
	for _, hp := range p.Hosts() {
		for _, s := range hp.Steps {
			if !strings.HasPrefix(s.Describe, "fetch ") {
				continue
			}
			fetches++
			if !strings.HasPrefix(s.Describe, "fetch "+want[hp.Name]+"/app-2.0.0.tar.gz ") {
				t.Errorf("%s: %q; want a fetch from its own mirror %s", hp.Name, s.Describe, want[hp.Name])
			}
		}
	}
	if fetches != 3 {
		t.Fatalf("%d fetch steps in the plan, want 3", fetches)
	}
	if n, m := us.requests("/app-2.0.0.tar.gz.sha256"), eu.requests("/app-2.0.0.tar.gz.sha256"); n != 1 || m != 1 {
		t.Errorf("the checksum files were read %d and %d times; want once per mirror", n, m)
	}
	sum := sha256.Sum256(body)
	if p.Artifact.SHA256 != hex.EncodeToString(sum[:]) || p.Artifact.Name != "app-2.0.0.tar.gz" {
		t.Errorf("plan's artifact: %+v", p.Artifact)
	}

	rep, err := run(t.Context(), newTestEngine(f), p, runOptions{})
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	for _, n := range f.names {
		if h := rep.Host(n); h.After != "2.0.0" {
			t.Errorf("%s is on %q", n, h.After)
		}
	}
	if n, m := us.requests("/app-2.0.0.tar.gz"), eu.requests("/app-2.0.0.tar.gz"); n != 1 || m != 2 {
		t.Errorf("the artifact was fetched %d times from the first host's mirror and %d times from the others'; want 1 and 2", n, m)
	}
}

// The release digest, history and rehearsal records name one artifact:
// hosts whose rendered artifact.url gives another sha256 or another file
// name are refused before any host changes, naming both hosts.
func TestPulledArtifactMustBeTheSameOnEveryHost(t *testing.T) {
	good, other := artifact(t, "2.0.0"), artifact(t, "2.0.1")
	a := newMirror(t, map[string][]byte{"app-2.0.0.tar.gz": good})
	b := newMirror(t, map[string][]byte{"app-2.0.0.tar.gz": other})
	sumA, sumB := sha256.Sum256(good), sha256.Sum256(other)
	host := func(m *mirror) string { return strings.TrimPrefix(m.URL, "http://") }
	tests := []struct {
		name     string
		vars     []map[string]string
		artifact string
		want     []string
	}{
		{
			name:     "sha256 from each mirror's checksum file",
			vars:     []map[string]string{{"mirror": host(a)}, {"mirror": host(a)}, {"mirror": host(b)}},
			artifact: `url = "http://{{.Vars.mirror}}/app-{{.Version}}.tar.gz"`,
			want: []string{"playbooks/app.toml:", "host web-1 (app-2.0.0.tar.gz, sha256 " + hex.EncodeToString(sumA[:]),
				"host web-3 (app-2.0.0.tar.gz, sha256 " + hex.EncodeToString(sumB[:]) + " from " + b.URL + "/app-2.0.0.tar.gz.sha256)"},
		},
		{
			name:     "file name",
			vars:     []map[string]string{{"flavor": "x"}, {"flavor": "y"}},
			artifact: "url = \"https://s.example/app-{{.Vars.flavor}}.tgz\"\nsha256 = \"" + strings.Repeat("ab", 32) + "\"",
			want:     []string{"host web-1 (app-x.tgz, sha256 abab", "host web-2 (app-y.tgz, sha256 abab"},
		},
		{
			name:     "declared sha256",
			vars:     []map[string]string{{"sum": strings.Repeat("ab", 32)}, {"sum": strings.Repeat("cd", 32)}},
			artifact: "url = \"https://s.example/app.tgz\"\nsha256 = \"{{.Vars.sum}}\"",
			want:     []string{"host web-1 (app.tgz, sha256 " + strings.Repeat("ab", 32) + " from artifact.sha256)", "host web-2 (app.tgz, sha256 " + strings.Repeat("cd", 32)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := pulledFleet(t, tt.vars, tt.artifact)
			_, err := deploy.BuildPlan(f.proj, deploy.PlanOptions{Env: "production", Version: "2.0.0", RunID: "pull"})
			if !errors.Is(err, deploy.ErrBadInput) {
				t.Fatalf("BuildPlan: %v; want bad input", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the error does not say %q:\n%v", w, err)
				}
			}
		})
	}
}

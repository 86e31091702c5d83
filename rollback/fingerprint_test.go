package rollback

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/playbooks"
	"github.com/relctl/relctl/testenv"
)

var (
	digestA = strings.Repeat("a", 64)
	digestB = strings.Repeat("b", 64)
)

// host is a readable host on Debian 12 with monit 5.33.0 and release version.
func host(name, version string, files map[string]string) HostFingerprint {
	return HostFingerprint{Name: name, Roles: []string{"search"}, OS: "Debian GNU/Linux 12 (bookworm)",
		Watchdog: "monit 5.33.0", Current: version, Files: files}
}

func fleetOf(env string, roles map[string]int, hosts ...HostFingerprint) *Fingerprint {
	return &Fingerprint{Env: env, Playbook: "search", Roles: roles, Hosts: hosts}
}

func TestSummary(t *testing.T) {
	tests := []struct {
		name string
		fp   *Fingerprint
		want []SummaryItem
	}{
		{
			name: "uniform fleet",
			fp: fleetOf("staging", map[string]int{"search": 2, "db": 1},
				host("s1", "1.0.0", map[string]string{"bin/start": digestA, "monit/search.monitrc": digestB}),
				host("s2", "1.0.0", map[string]string{"bin/start": digestA, "monit/search.monitrc": digestB})),
			want: []SummaryItem{
				{"hosts with role db", "1"},
				{"hosts with role search", "2"},
				{"os", "Debian GNU/Linux 12 (bookworm)"},
				{"watchdog", "monit 5.33.0"},
				{"current release", "1.0.0"},
				{"file bin/start", "sha256:aaaaaaaaaaaa"},
				{"file monit/search.monitrc", "sha256:bbbbbbbbbbbb"},
			},
		},
		{
			name: "mixed fleet shows distinct values, sorted",
			fp: fleetOf("production", map[string]int{"search": 3},
				host("p1", "1.1.0", map[string]string{"bin/start": digestB}),
				HostFingerprint{Name: "p2", OS: "Ubuntu 24.04 LTS", Watchdog: "monit 5.34.0", Files: map[string]string{"bin/start": FileMissing}},
				host("p3", "1.0.0", map[string]string{"bin/start": digestA})),
			want: []SummaryItem{
				{"hosts with role search", "3"},
				{"os", "Debian GNU/Linux 12 (bookworm), Ubuntu 24.04 LTS"},
				{"watchdog", "monit 5.33.0, monit 5.34.0"},
				{"current release", "1.0.0, 1.1.0, none"},
				{"file bin/start", "missing, sha256:aaaaaaaaaaaa, sha256:bbbbbbbbbbbb"},
			},
		},
		{
			name: "unreadable hosts are counted, not summarised",
			fp: fleetOf("staging", map[string]int{"search": 2},
				host("s1", "1.0.0", nil),
				HostFingerprint{Name: "s2", Roles: []string{"search"}, Error: "dial tcp: connection refused"}),
			want: []SummaryItem{
				{"hosts with role search", "2"},
				{"os", "Debian GNU/Linux 12 (bookworm)"},
				{"watchdog", "monit 5.33.0"},
				{"current release", "1.0.0"},
				{"unreadable hosts", "1"},
			},
		},
		{
			name: "no readable host",
			fp:   fleetOf("staging", map[string]int{"search": 1}, HostFingerprint{Name: "s1", Error: "timeout"}),
			want: []SummaryItem{
				{"hosts with role search", "1"},
				{"os", "unknown"},
				{"watchdog", "unknown"},
				{"current release", "unknown"},
				{"unreadable hosts", "1"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.fp.Summary(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Summary() =\n%v\nwant\n%v", got, tt.want)
			}
		})
	}
}

func TestCompareFingerprints(t *testing.T) {
	files := map[string]string{"bin/start": digestA}
	staging := fleetOf("staging", map[string]int{"search": 3},
		host("s1", "1.0.0", files), host("s2", "1.0.0", files), host("s3", "1.0.0", files))
	tests := []struct {
		name string
		b    *Fingerprint
		want []Difference
	}{
		{
			name: "same roles, OS, release and files on other host names: no difference",
			b: fleetOf("production", map[string]int{"search": 3},
				host("p1", "1.0.0", files), host("p2", "1.0.0", files), host("p3", "1.0.0", files)),
		},
		{
			name: "more hosts on the same OS differ only in the role count",
			b: fleetOf("production", map[string]int{"search": 5},
				host("p1", "1.0.0", files), host("p2", "1.0.0", files), host("p3", "1.0.0", files),
				host("p4", "1.0.0", files), host("p5", "1.0.0", files)),
			want: []Difference{{"hosts with role search", "3", "5"}},
		},
		{
			name: "another release with another bin/start",
			b: fleetOf("production", map[string]int{"search": 3},
				host("p1", "1.1.0", map[string]string{"bin/start": digestB})),
			want: []Difference{
				{"current release", "1.0.0", "1.1.0"},
				{"file bin/start", "sha256:aaaaaaaaaaaa", "sha256:bbbbbbbbbbbb"},
			},
		},
		{
			name: "keys only one side has show a dash",
			b: fleetOf("production", map[string]int{"search": 3, "db": 2},
				host("p1", "1.0.0", nil),
				HostFingerprint{Name: "p2", Error: "connection refused"}),
			want: []Difference{
				{"file bin/start", "sha256:aaaaaaaaaaaa", "-"},
				{"hosts with role db", "-", "2"},
				{"unreadable hosts", "-", "1"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CompareFingerprints(staging, tt.b); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("CompareFingerprints() =\n%v\nwant\n%v", got, tt.want)
			}
			rows := SideBySide(staging, tt.b)
			var differing int
			for _, r := range rows {
				if !r.Same() {
					differing++
				}
			}
			if differing != len(tt.want) || len(rows) < len(staging.Summary()) {
				t.Errorf("SideBySide has %d rows, %d differing; want every key of both and %d differing:\n%v", len(rows), differing, len(tt.want), rows)
			}
		})
	}
}

func TestDigest(t *testing.T) {
	files := map[string]string{"bin/start": digestA}
	base := fleetOf("staging", map[string]int{"search": 2}, host("s1", "1.0.0", files), host("s2", "1.0.0", files))
	d := base.Digest()
	if !strings.HasPrefix(d, "sha256:") || len(d) != len("sha256:")+64 {
		t.Fatalf("Digest() = %q, want sha256:<64 hex>", d)
	}
	if again := base.Digest(); again != d {
		t.Errorf("Digest() changed between calls: %s then %s", d, again)
	}
	// Host names, host order and the environment's name are not part of it.
	renamed := fleetOf("production", map[string]int{"search": 2}, host("p2", "1.0.0", files), host("p1", "1.0.0", files))
	if got := renamed.Digest(); got != d {
		t.Errorf("same fleet under other names: digest %s, want %s", got, d)
	}
	differs := map[string]*Fingerprint{
		"role count": fleetOf("staging", map[string]int{"search": 3}, host("s1", "1.0.0", files), host("s2", "1.0.0", files)),
		"release":    fleetOf("staging", map[string]int{"search": 2}, host("s1", "1.1.0", files), host("s2", "1.0.0", files)),
		"unreadable": fleetOf("staging", map[string]int{"search": 2}, host("s1", "1.0.0", files), HostFingerprint{Name: "s2", Error: "refused"}),
		"file past the 12 hex Summary shows": fleetOf("staging", map[string]int{"search": 2},
			host("s1", "1.0.0", map[string]string{"bin/start": strings.Repeat("a", 63) + "b"}), host("s2", "1.0.0", files)),
	}
	for what, fp := range differs {
		if fp.Digest() == d {
			t.Errorf("a different %s has the same digest %s", what, d)
		}
	}
}

// hostileFile is a release file name a shell would misread unquoted.
const hostileFile = `odd dir/it's a "quoted" $(touch PWNED) name`

func TestParseHostFingerprint(t *testing.T) {
	files := []string{"bin/start", hostileFile}
	const header = "relctl-fingerprint 1\n"
	tests := []struct {
		name    string
		kind    string
		out     string
		want    *HostFingerprint
		wantErr string
	}{
		{
			name: "monit host with a release",
			kind: "monit",
			out: header + "os-release \"Debian GNU/Linux 12 (bookworm)\"\nuname Linux 6.1.0\nwatchdog This is Monit version 5.33.0\n" +
				"current /srv/search/releases/1.1.0\nfile 1 " + digestB + "  -\nfile 0 " + digestA + " *stdin\nend\n",
			want: &HostFingerprint{OS: "Debian GNU/Linux 12 (bookworm)", Watchdog: "monit 5.33.0", Current: "1.1.0",
				Files: map[string]string{"bin/start": digestA, hostileFile: digestB}},
		},
		{
			name: "systemd host, no os-release, a missing file",
			kind: "systemd",
			out:  header + "uname Linux 6.1.0\nwatchdog systemd 252 (252.38-1~deb12u1)\ncurrent /srv/releases/1.0.0\nfile 0 missing\nfile 1 unreadable\nend\n",
			want: &HostFingerprint{OS: "Linux 6.1.0", Watchdog: "systemd 252", Current: "1.0.0",
				Files: map[string]string{"bin/start": FileMissing, hostileFile: FileUnreadable}},
		},
		{
			name: "no watchdog table, no release yet, single-quoted os-release",
			out:  header + "os-release 'Alpine Linux v3.20'\nuname Linux 6.1.0\ncurrent\nend\n",
			want: &HostFingerprint{OS: "Alpine Linux v3.20", Watchdog: "none",
				Files: map[string]string{"bin/start": FileMissing, hostileFile: FileMissing}},
		},
		{
			name: "monit not on the host",
			kind: "monit",
			out:  header + "uname Linux 6.1.0\nwatchdog\ncurrent\nend\n",
			want: &HostFingerprint{OS: "Linux 6.1.0", Watchdog: "monit not installed",
				Files: map[string]string{"bin/start": FileMissing, hostileFile: FileMissing}},
		},
		{name: "no header", out: "Welcome to host!\n" + header + "current\nend\n", wantErr: "header"},
		{name: "cut off", out: header + "uname Linux\ncurrent /a/1.0.0\nfile 0 " + digestA + "  -\n", wantErr: "cut off"},
		{name: "a file not reported", out: header + "uname Linux\ncurrent /a/1.0.0\nfile 0 " + digestA + "  -\nend\n", wantErr: "no line for file " + hostileFile},
		{name: "a file twice", out: header + "current /a/1.0.0\nfile 0 missing\nfile 0 missing\nfile 1 missing\nend\n", wantErr: "file bin/start twice"},
		{name: "a file index out of range", out: header + "current /a/1.0.0\nfile 2 missing\nend\n", wantErr: "file line"},
		{name: "not a digest", out: header + "current /a/1.0.0\nfile 0 sha256sum: not found\nfile 1 missing\nend\n", wantErr: "is not a sha256"},
		{name: "an unknown line", out: header + "current\nhello\nend\n", wantErr: "unknown line"},
		{name: "current twice", out: header + "current /a/1\ncurrent /a/2\nend\n", wantErr: "current twice"},
		{name: "no current line", out: header + "uname Linux\nend\n", wantErr: "no current line"},
		{name: "watchdog expected", kind: "monit", out: header + "current\nend\n", wantErr: "no watchdog line"},
		{name: "a digest without a release", out: header + "current\nfile 0 missing\nend\n", wantErr: "without a current release"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseHostFingerprint(tt.out, tt.kind, files)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// hostilePlaybookTOML replaces the testenv's: a systemd watchdog and a rollback
// requirement whose name needs quoting.
const hostilePlaybookTOML = `name = "search"
roles = ["search"]

[artifact]
path = "artifacts/search-{{.Version}}.tar.gz"

[[steps]]
phase = "stage"
kind = "upload"

[[steps]]
phase = "activate"
kind = "activate"

[rollback]
requires = ["bin/start", "odd dir/it's a \"quoted\" $(touch PWNED) name"]

[watchdog]
kind = "systemd"
snippet = "systemd/search.service"
install_path = "/etc/systemd/system/search.service"
service = "search"
`

// TestReadFingerprint reads a real testenv cluster over SSH: one host on a
// release with every file, one without the oddly named file, one down.
func TestReadFingerprint(t *testing.T) {
	if !strings.Contains(hostilePlaybookTOML, strings.ReplaceAll(hostileFile, `"`, `\"`)) {
		t.Fatal("the playbook must name hostileFile")
	}
	ctx := zerolog.Nop().WithContext(t.Context())
	dir, err := os.MkdirTemp("", "fingerprint-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cluster, err := testenv.Start(startCtx, testenv.Options{Dir: dir, Hosts: 3, Envs: []string{"staging"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cluster.Close() })
	if err := os.WriteFile(filepath.Join(dir, testenv.PlaybookFile), []byte(hostilePlaybookTOML), 0o644); err != nil {
		t.Fatal(err)
	}
	proj, err := playbooks.Load(filepath.Join(dir, testenv.ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	pool, err := transport.NewPool(transport.Options{
		User: "relctl", IdentityFile: filepath.Join(dir, "id_ed25519"), KnownHostsFile: filepath.Join(dir, "known_hosts"),
		HostKeyPolicy: "strict", ConnectTimeout: 5 * time.Second, CommandTimeout: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	contents := map[string]string{
		"bin/start":              "#!/bin/sh\nexec ./server\n",
		"systemd/search.service": "[Service]\nExecStart=/srv/search/current/bin/start\n",
		hostileFile:              "odd but legal\n",
	}
	hosts := cluster.Hosts()
	for i, h := range hosts {
		release := filepath.Join(h.BaseDir, "releases", "1.0.0")
		for name, body := range contents {
			if i == 2 && name == hostileFile {
				continue
			}
			p := filepath.Join(release, filepath.FromSlash(name))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Symlink("releases/1.0.0", filepath.Join(h.BaseDir, "current")); err != nil {
			t.Fatal(err)
		}
	}
	down := hosts[1].Name
	if err := cluster.SetSSHDown(down, true); err != nil {
		t.Fatal(err)
	}

	fp, err := ReadFingerprint(ctx, pool, proj, "staging", "", 2)
	if err != nil {
		t.Fatal(err)
	}
	if fp.Env != "staging" || fp.Playbook != "search" || !reflect.DeepEqual(fp.Roles, map[string]int{"search": 3}) {
		t.Errorf("fingerprint of %s/%s with roles %v, want staging/search with 3 search hosts", fp.Env, fp.Playbook, fp.Roles)
	}
	wantOS := localPrettyName(t)
	for i, h := range fp.Hosts {
		if h.Name != hosts[i].Name {
			t.Fatalf("host %d is %s, want %s (config order)", i, h.Name, hosts[i].Name)
		}
		if h.Name == down {
			if h.Error == "" {
				t.Errorf("%s is down but has no error: %+v", h.Name, h)
			}
			continue
		}
		if h.Error != "" {
			t.Fatalf("%s: %s", h.Name, h.Error)
		}
		if h.Current != "1.0.0" || h.OS != wantOS || !strings.HasPrefix(h.Watchdog, "systemd ") {
			t.Errorf("%s: current %q, OS %q, watchdog %q; want 1.0.0, %q, systemd <version>", h.Name, h.Current, h.OS, h.Watchdog, wantOS)
		}
		for name, body := range contents {
			want := hexSHA256(body)
			if i == 2 && name == hostileFile {
				want = FileMissing
			}
			if got := h.Files[name]; got != want {
				t.Errorf("%s: file %q = %q, want %q", h.Name, name, got, want)
			}
		}
	}
	for _, h := range hosts {
		if _, err := os.Stat(filepath.Join(h.BaseDir, "releases", "1.0.0", "PWNED")); err == nil {
			t.Errorf("%s: the hostile file name ran a command on the host", h.Name)
		}
	}
	summary := map[string]string{}
	for _, it := range fp.Summary() {
		summary[it.Key] = it.Value
	}
	if got := summary["file "+hostileFile]; got != "missing, sha256:"+hexSHA256(contents[hostileFile])[:12] {
		t.Errorf("summary of %q = %q, want both the missing one and the digest", hostileFile, got)
	}
	if got := summary["unreadable hosts"]; got != "1" {
		t.Errorf("summary: unreadable hosts = %q, want 1 (%s is down)", got, down)
	}

	if _, err := ReadFingerprint(ctx, pool, proj, "nowhere", "", 2); !errors.Is(err, deploy.ErrBadInput) {
		t.Errorf("unknown environment: err = %v, want ErrBadInput", err)
	}
	if _, err := ReadFingerprint(ctx, pool, proj, "staging", "nosuch", 2); !errors.Is(err, deploy.ErrBadInput) || !strings.Contains(err.Error(), `playbook "nosuch"`) {
		t.Errorf("unknown playbook: err = %v, want ErrBadInput naming it", err)
	}
}

func hexSHA256(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// localPrettyName is this machine's PRETTY_NAME: testenv hosts run here.
func localPrettyName(t *testing.T) string {
	b, err := os.ReadFile("/etc/os-release")
	if err != nil {
		t.Skip("no /etc/os-release here")
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			return unquoteOSRelease(v)
		}
	}
	t.Skip("no PRETTY_NAME in /etc/os-release")
	return ""
}

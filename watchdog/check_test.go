package watchdog

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// layout creates files under root: a path ending in "/" is a directory,
// otherwise a file with the given mode.
func layout(t *testing.T, root string, files map[string]os.FileMode) {
	t.Helper()
	for p, mode := range files {
		full := filepath.Join(root, p)
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(full, mode); err != nil { // umask must not decide the test
			t.Fatal(err)
		}
	}
}

const searchSnippet = `check process search with pidfile /run/search/search.pid
    start program = "/srv/search/current/bin/start" as uid search
    stop program = "/srv/search/current/bin/stop --graceful"
    if failed port 8080 protocol http request "/health" then restart
`

func TestCheck(t *testing.T) {
	healthy := map[string]os.FileMode{
		"run/search/":                  0,
		"srv/search/current/bin/start": 0o755,
		"srv/search/current/bin/stop":  0o750,
	}
	without := func(drop string) map[string]os.FileMode {
		m := map[string]os.FileMode{}
		for k, v := range healthy {
			if k != drop {
				m[k] = v
			}
		}
		return m
	}
	tests := []struct {
		name    string
		snippet string
		files   map[string]os.FileMode
		opts    CheckOptions
		want    []string
	}{
		{
			name:    "all good",
			snippet: searchSnippet,
			files:   healthy,
			opts:    CheckOptions{HealthPorts: []int{8080}},
		},
		{
			name:    "start program missing",
			snippet: searchSnippet,
			files:   without("srv/search/current/bin/start"),
			opts:    CheckOptions{HealthPorts: []int{8080}},
			want:    []string{`search.monitrc:2:5: check process search: start program "/srv/search/current/bin/start" does not exist`},
		},
		{
			name:    "stop program not executable",
			snippet: searchSnippet,
			files: map[string]os.FileMode{
				"run/search/": 0, "srv/search/current/bin/start": 0o755, "srv/search/current/bin/stop": 0o644,
			},
			want: []string{`search.monitrc:3:5: check process search: stop program "/srv/search/current/bin/stop" is not executable (mode 0644)`},
		},
		{
			name:    "program is a directory",
			snippet: searchSnippet,
			files: map[string]os.FileMode{
				"run/search/": 0, "srv/search/current/bin/start/": 0, "srv/search/current/bin/stop": 0o755,
			},
			want: []string{`search.monitrc:2:5: check process search: start program "/srv/search/current/bin/start" is not executable (mode 0755)`},
		},
		{
			name:    "pidfile directory missing",
			snippet: searchSnippet,
			files:   without("run/search/"),
			want:    []string{`search.monitrc:1:1: check process search: pidfile "/run/search/search.pid": directory "/run/search" does not exist (only a directory under the release's base_dir may be left for its start program to create)`},
		},
		{
			name:    "pidfile directory missing outside base_dir",
			snippet: searchSnippet,
			files:   without("run/search/"),
			opts:    CheckOptions{BaseDir: "/srv/search"},
			want:    []string{`search.monitrc:1:1: check process search: pidfile "/run/search/search.pid": directory "/run/search" does not exist (only a directory under the release's base_dir may be left for its start program to create)`},
		},
		{
			// A first deploy: the start program makes the directory.
			name:    "pidfile directory missing under base_dir",
			snippet: searchSnippet,
			files:   without("run/search/"),
			opts:    CheckOptions{BaseDir: "/run"},
		},
		{
			name:    "pidfile directory is a file",
			snippet: searchSnippet,
			files: map[string]os.FileMode{
				"run/search": 0o644, "srv/search/current/bin/start": 0o755, "srv/search/current/bin/stop": 0o755,
			},
			opts: CheckOptions{BaseDir: "/run"},
			want: []string{`search.monitrc:1:1: check process search: pidfile "/run/search/search.pid": "/run/search" is not a directory`},
		},
		{
			name:    "relative pidfile and program",
			snippet: "check process w with pidfile run/w.pid\n  start program = \"bin/start\"\n  stop program = \"'/opt/my app/stop' now\"\n",
			files:   map[string]os.FileMode{"opt/my app/stop": 0o755},
			want: []string{
				`search.monitrc:1:1: check process w: pidfile "run/w.pid" is not an absolute path`,
				`search.monitrc:2:3: check process w: start program "bin/start" is not an absolute path (monit does not search PATH)`,
			},
		},
		{
			name:    "no start program",
			snippet: "check process w matching \"w\"\n  if failed port 80 then restart\n",
			files:   map[string]os.FileMode{},
			want:    []string{`search.monitrc:1:1: check process w: has no start program: monit could not restart it`},
		},
		{
			name:    "ports disagree both ways",
			snippet: searchSnippet + "    if failed host localhost port 9090 then alert\n    if failed host db.internal port 5432 then alert\n",
			files:   healthy,
			opts:    CheckOptions{HealthPorts: []int{8080, 8443}},
			want: []string{
				`search.monitrc:5:5: check process search: monit tests port 9090, which no health check covers`,
				`search.monitrc:1:1: check process search: health checks probe port 8443, which no 'if failed port' test in this snippet watches`,
			},
		},
		{
			name:    "check host on localhost counts, remote host does not",
			snippet: searchSnippet + "check host local with address 127.0.0.1\n  if failed port 8443 then alert\ncheck host remote with address 10.0.0.9\n  if failed port 22 then alert\n",
			files:   healthy,
			opts:    CheckOptions{HealthPorts: []int{8080, 8443}},
		},
		{
			name:    "ports not compared without health ports",
			snippet: searchSnippet + "    if failed port 9999 then alert\n",
			files:   healthy,
		},
		{
			name:    "non-process services are not checked for programs",
			snippet: "check file f with path /nope/f\ncheck program p with path \"/nope/p\"\n",
			files:   map[string]os.FileMode{},
		},
		{
			name:    "control file mode and owner",
			snippet: searchSnippet,
			files:   map[string]os.FileMode{"run/search/": 0, "srv/search/current/bin/start": 0o755, "srv/search/current/bin/stop": 0o755, "etc/monitrc": 0o644},
			opts:    CheckOptions{ControlFile: "/etc/monitrc", MonitUID: os.Getuid() + 1},
			want: []string{
				`/etc/monitrc: monit control file has mode 0644; monit refuses more than 0700`,
				`/etc/monitrc: monit control file is owned by uid ` + strconv.Itoa(os.Getuid()) + `; monit runs as uid ` + strconv.Itoa(os.Getuid()+1) + ` and refuses a file it does not own`,
			},
		},
		{
			name:    "control file fine",
			snippet: searchSnippet,
			files:   map[string]os.FileMode{"run/search/": 0, "srv/search/current/bin/start": 0o755, "srv/search/current/bin/stop": 0o755, "etc/monitrc": 0o600},
			opts:    CheckOptions{ControlFile: "/etc/monitrc", MonitUID: os.Getuid()},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			layout(t, root, tt.files)
			cfg, err := ParseMonit("search.monitrc", []byte(tt.snippet))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range Check(t.Context(), cfg, LocalFS{Root: root}, tt.opts) {
				got = append(got, p.String())
				if strings.Contains(p.String(), root) {
					t.Errorf("problem names the local root: %s", p)
				}
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("problems:\n--- got\n%s\n--- want\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestCheckFollowsCurrentSymlink(t *testing.T) {
	root := t.TempDir()
	layout(t, root, map[string]os.FileMode{"run/search/": 0, "srv/search/releases/1.2.0/bin/start": 0o755, "srv/search/releases/1.2.0/bin/stop": 0o755})
	if err := os.Symlink("releases/1.2.0", filepath.Join(root, "srv/search/current")); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseMonit("search.monitrc", []byte(searchSnippet))
	if err != nil {
		t.Fatal(err)
	}
	if probs := Check(t.Context(), cfg, LocalFS{Root: root}, CheckOptions{}); len(probs) != 0 {
		t.Errorf("problems through a relative current link: %v", probs)
	}
}

func TestCommandPath(t *testing.T) {
	tests := []struct{ cmd, want string }{
		{"/srv/bin/start", "/srv/bin/start"},
		{"  /srv/bin/start --foreground  ", "/srv/bin/start"},
		{`"/opt/my app/start" now`, "/opt/my app/start"},
		{`'/opt/x'`, "/opt/x"},
		{"bin/start", "bin/start"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := CommandPath(tt.cmd); got != tt.want {
			t.Errorf("CommandPath(%q) = %q, want %q", tt.cmd, got, tt.want)
		}
	}
}

func TestStartScriptMentionsPidfile(t *testing.T) {
	tests := []struct {
		name   string
		script string
		pid    string
		want   bool
	}{
		{"literal path", "#!/bin/sh\nexec daemon --pidfile /run/search/search.pid\n", "/run/search/search.pid", true},
		{"dir and base apart", "#!/bin/sh\nPIDDIR=/run/search\necho $$ > \"$PIDDIR/search.pid\"\n", "/run/search/search.pid", true},
		{"another pidfile", "#!/bin/sh\necho $$ > /run/search/server.pid\n", "/run/search/search.pid", false},
		{"no pidfile at all", "#!/bin/sh\nexec server\n", "/run/search/search.pid", false},
		{"empty pidfile", "#!/bin/sh\n", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := StartScriptMentionsPidfile([]byte(tt.script), tt.pid); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

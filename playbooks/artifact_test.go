package playbooks

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// pulledPlaybook is goodPlaybook with the artifact fetched by the hosts.
var pulledPlaybook = strings.Replace(goodPlaybook,
	`path = "artifacts/search-{{.Version}}.tar.gz"`,
	`url = "https://store.example/search/search-{{.Version}}.tar.gz"`, 1)

func TestArtifactValidation(t *testing.T) {
	withArtifact := func(lines string) string {
		return strings.Replace(goodPlaybook, "path = \"artifacts/search-{{.Version}}.tar.gz\"\n", lines, 1)
	}
	tests := []struct {
		name, playbook, want string
	}{
		{
			name:     "path and url",
			playbook: withArtifact("path = \"a.tgz\"\nurl = \"https://s/a.tgz\"\n"),
			want:     `playbooks/web.toml:6:1: artifact.path and artifact.url exclude each other: relctl pushes the file at path, or the hosts fetch url`,
		},
		{
			name:     "neither",
			playbook: withArtifact(""),
			want:     `playbooks/web.toml:4:2: missing required key artifact.path (the file shipped to every host)`,
		},
		{
			name:     "pull settings with path",
			playbook: withArtifact("path = \"a.tgz\"\nsha256 = \"00\"\nretries = 2\n"),
			want: `playbooks/web.toml:6:1: artifact.sha256 goes with artifact.url (the hosts fetch the artifact); with artifact.path relctl computes the sha256 itself
playbooks/web.toml:7:1: artifact.retries goes with artifact.url (the hosts fetch the artifact); with artifact.path relctl computes the sha256 itself`,
		},
		{
			name:     "two checksum sources, bad sha256",
			playbook: withArtifact("url = \"https://s/a.tgz\"\nsha256 = \"abc\"\nmanifest = \"https://s/SHA256SUMS\"\n"),
			want: `playbooks/web.toml:6:1: artifact.sha256 "abc" is not a sha256 (64 hex digits)
playbooks/web.toml:7:1: artifact.sha256 and artifact.manifest exclude each other: give the sha256 one way`,
		},
		{
			name:     "unknown key stays an error",
			playbook: withArtifact("url = \"https://s/a.tgz\"\nchecksum = \"x\"\n"),
			want:     `playbooks/web.toml:6:1: unknown key "checksum" in [artifact]`,
		},
		{
			name:     "bad auth settings, retries, timeouts",
			playbook: withArtifact("url = \"https://s/a.tgz\"\nauth_header_env = \"MY-TOKEN\"\nauth_header_name = \"X Token\"\nretries = -1\ntimeout = \"0s\"\n"),
			want: `playbooks/web.toml:6:1: artifact.auth_header_env "MY-TOKEN" is not an environment variable name
playbooks/web.toml:7:1: artifact.auth_header_name "X Token" is not an HTTP header name
playbooks/web.toml:8:1: artifact.retries must be between 0 and 20 (got -1)
playbooks/web.toml:9:1: artifact.timeout must be more than 0s`,
		},
		{
			name:     "duration written as a number",
			playbook: withArtifact("url = \"https://s/a.tgz\"\nconnect_timeout = 5\n"),
			want:     `playbooks/web.toml:6:1: artifact.connect_timeout: expected a duration string like "30s", got an integer`,
		},
		{
			name:     "header name without a source",
			playbook: withArtifact("url = \"https://s/a.tgz\"\nauth_header_name = \"X-Token\"\n"),
			want:     `playbooks/web.toml:6:1: artifact.auth_header_name needs artifact.auth_header_env (where the header's value comes from)`,
		},
		{
			name:     "url template syntax",
			playbook: withArtifact("url = \"https://s/a-{{.Version\"\n"),
			want:     `playbooks/web.toml:5:1: artifact.url: template: unclosed action`,
		},
		{
			name:     "url template field",
			playbook: withArtifact("url = \"https://s/a-{{.Versoin}}.tgz\"\n"),
			want:     `playbooks/web.toml:5:1: playbook "web": artifact.url: template: <.Versoin>: can't evaluate field Versoin in type *playbooks.TemplateData (host "web-1" in environment "staging")`,
		},
		{
			name:     "not http, credentials redacted",
			playbook: withArtifact("url = \"ftp://bob:hunter2@s/a.tgz\"\n"),
			want:     `playbooks/web.toml:5:1: playbook "web": artifact.url ftp://REDACTED@s/a.tgz: must be an http:// or https:// URL (host "web-1" in environment "staging")`,
		},
		{
			name:     "url names no file",
			playbook: withArtifact("url = \"https://s/dir/\"\n"),
			want:     `playbooks/web.toml:5:1: playbook "web": artifact.url https://s/dir/: does not name a file (its path's last segment is the file's name on the host) (host "web-1" in environment "staging")`,
		},
		{
			name:     "file name with a line break",
			playbook: withArtifact("url = \"https://s/a/x%0Ay.tgz\"\n"),
			want:     `playbooks/web.toml:5:1: playbook "web": artifact.url https://s/a/x%0Ay.tgz: names the file "x\ny.tgz" (its path's last segment, decoded, is the file's name on the host): a name may hold only letters, digits and . _ + ~ - (host "web-1" in environment "staging")`,
		},
		{
			name:     "manifest rendered per host",
			playbook: withArtifact("url = \"https://s/a.tgz\"\nmanifest = \"https://s/{{.Vars.channel}}/SHA256SUMS\"\n"),
			want:     `playbooks/web.toml:6:1: artifact.manifest: template: <.Vars.channel>: map has no entry for key "channel" (rendering for host "web-1" in environment "staging")`,
		},
		{
			name:     "watchdog needs the artifact on the controller",
			playbook: pulledPlaybook + "\n[watchdog]\nkind = \"systemd\"\nservice = \"search\"\n",
			want: `playbooks/web.toml:5:1: [watchdog] needs artifact.path for now: the watchdog snippet is checked from the artifact on the controller before any host changes, and with artifact.url the controller never has the artifact
playbooks/web.toml:18:2: watchdog.snippet is missing (the snippet template's path inside the release, e.g. "monit/app.monitrc")
playbooks/web.toml:18:2: watchdog.install_path is missing`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			writeProject(t, map[string]string{"relctl.toml": goodConfig, "playbooks/web.toml": tt.playbook})
			_, err := Load("relctl.toml")
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("Load: want Problems, got %T %v", err, err)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("problems:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestArtifactPullDefaultsAndData(t *testing.T) {
	writeProject(t, map[string]string{"relctl.toml": goodConfig, "playbooks/web.toml": pulledPlaybook})
	p, err := Load("relctl.toml")
	if err != nil {
		t.Fatal(err)
	}
	pb := p.Playbooks["web"]
	a := pb.Artifact
	if !a.Pulled() || a.ConnectTimeout.Duration != 10*time.Second || a.Timeout.Duration != 10*time.Minute || a.Retries != 3 || a.AuthHeaderName != "Authorization" {
		t.Errorf("defaults: %+v", a)
	}
	env := p.Config.Environments["staging"]
	d, err := p.Data(pb, env, env.Hosts[0], "1.4.0", "r1")
	if err != nil {
		t.Fatal(err)
	}
	if d.ArtifactName != "search-1.4.0.tar.gz" || d.Artifact != "/srv/search/releases/1.4.0/search-1.4.0.tar.gz" {
		t.Errorf("data: name %q, artifact %q", d.ArtifactName, d.Artifact)
	}
	src, err := pb.ArtifactChecksum(d, "https://store.example/search/search-1.4.0.tar.gz?token=abc")
	if err != nil {
		t.Fatal(err)
	}
	if src.Kind != ChecksumFile || src.Value != "https://store.example/search/search-1.4.0.tar.gz.sha256?token=abc" {
		t.Errorf("default checksum source: %+v", src)
	}
}

func TestArtifactChecksumSources(t *testing.T) {
	hex := strings.Repeat("aB", 32)
	d := &TemplateData{Version: "2.0.0", Vars: map[string]string{"sum": hex}}
	tests := []struct {
		art      Artifact
		kind     string
		value    string
		wantErr  string
		artifact string
	}{
		{art: Artifact{SHA256: "{{.Vars.sum}}"}, kind: ChecksumValue, value: strings.ToLower(hex)},
		{art: Artifact{SHA256: "{{.Version}}"}, wantErr: `artifact.sha256 renders "2.0.0", not a sha256 (64 hex digits)`},
		{art: Artifact{SHA256URL: "https://s/{{.Version}}/sum.txt"}, kind: ChecksumFile, value: "https://s/2.0.0/sum.txt"},
		{art: Artifact{Manifest: "http://s/{{.Version}}/SHA256SUMS"}, kind: ChecksumManifest, value: "http://s/2.0.0/SHA256SUMS"},
		{art: Artifact{Manifest: "file:///etc/SHA256SUMS"}, wantErr: `artifact.manifest: file:///etc/SHA256SUMS is not an http:// or https:// URL`},
		{art: Artifact{}, kind: ChecksumFile, value: "https://s/a%20b.tgz.sha256", artifact: "https://s/a%20b.tgz"},
	}
	for _, tt := range tests {
		pb := &Playbook{Name: "web", Artifact: tt.art}
		pb.Artifact.URL = "https://s/x"
		au := tt.artifact
		if au == "" {
			au = "https://s/a.tgz"
		}
		src, err := pb.ArtifactChecksum(d, au)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("%+v: error %v, want %q", tt.art, err, tt.wantErr)
			}
			continue
		}
		if err != nil || src.Kind != tt.kind || src.Value != tt.value {
			t.Errorf("%+v: got %+v, %v; want %s %s", tt.art, src, err, tt.kind, tt.value)
		}
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://store.example/a/search-1.0.tar.gz", "https://store.example/a/search-1.0.tar.gz"},
		{"https://bob:hunter2@store.example/a.tgz", "https://REDACTED@store.example/a.tgz"},
		{"https://ghp_token123@store.example/a.tgz", "https://REDACTED@store.example/a.tgz"},
		{"https://s3.example/b/a.tgz?X-Amz-Signature=deadbeef&X-Amz-Expires=300", "https://s3.example/b/a.tgz?X-Amz-Signature=REDACTED&X-Amz-Expires=REDACTED"},
		{"https://s/a.tgz?secrettoken", "https://s/a.tgz?REDACTED"},
		{"https://s/a.tgz?a=1&&b=", "https://s/a.tgz?a=REDACTED&&b=REDACTED"},
		{"https://s/a.tgz?", "https://s/a.tgz"},
		{"https://s/a.tgz#frag", "https://s/a.tgz#REDACTED"},
		{"http://127.0.0.1:8080/x/a.tgz", "http://127.0.0.1:8080/x/a.tgz"},
		// Unparsable: no query, no user information.
		{"https://bob:p%zz@s/a.tgz?k=v", "https://REDACTED@s/a.tgz?REDACTED"},
		{"http://[::1/a?tok=1", "http://[::1/a?REDACTED"},
		{"bob:pw@s/a\n.tgz", "REDACTED@s/a?.tgz"},
	}
	for _, tt := range tests {
		if got := RedactURL(tt.in); got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
		for _, secret := range []string{"hunter2", "deadbeef", "ghp_token123", "secrettoken", "tok=1", "frag"} {
			if strings.Contains(tt.in, secret) && strings.Contains(RedactURL(tt.in), secret) {
				t.Errorf("RedactURL(%q) keeps %q", tt.in, secret)
			}
		}
	}
}

// The file name comes from the URL's decoded path: it reaches the host's
// paths and the fetch script's command line, so only a plain file name is
// accepted (a NUL there makes sshd drop the connection).
func TestArtifactFileNameFromTheURL(t *testing.T) {
	for _, tt := range []struct{ url, name string }{
		{"https://s/a/search-1.0.tar.gz", "search-1.0.tar.gz"},
		{"https://s/a/app_2.0+build.7~rc1.tgz?sig=x", "app_2.0+build.7~rc1.tgz"},
		{"https://s/a/x%00y.tar.gz", ""},
		{"https://s/a/x%0Ay.tar.gz", ""},
		{"https://s/a/%1b%5b2J.tar.gz", ""},
		{"https://s/a/x%FFy.tar.gz", ""},
		{"https://s/a/%C3%A9t%C3%A9.tgz", ""},
		{"https://s/a/it's.tgz", ""},
		{"https://s/a/$(reboot).tgz", ""},
		{"https://s/a/a%20b.tgz", ""},
		{"https://s/a/a%5Cb.tgz", ""},
	} {
		name, err := checkFetchURL(tt.url)
		switch {
		case tt.name == "" && err == nil:
			t.Errorf("%s: file name %q accepted", tt.url, name)
		case tt.name == "" && !strings.Contains(err.Error(), "a name may hold only letters, digits and . _ + ~ -") && !strings.Contains(err.Error(), "does not name a file"):
			t.Errorf("%s: %v", tt.url, err)
		case tt.name != "" && (err != nil || name != tt.name):
			t.Errorf("%s: got %q, %v; want %q", tt.url, name, err, tt.name)
		}
	}
}

package playbooks

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sshProject writes relctl.toml (body after project and before the
// environment), one playbook, and ~/.ssh/config under a HOME of its own,
// and loads it.
func sshProject(t *testing.T, toml, sshConfig string, keys ...string) (*Project, string, error) {
	t.Helper()
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", home)
	for _, k := range keys {
		if err := os.WriteFile(filepath.Join(home, ".ssh", k), []byte("a key"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if sshConfig != "" {
		if err := os.WriteFile(filepath.Join(home, ".ssh", "config"), []byte(sshConfig), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "playbooks"), 0o755); err != nil {
		t.Fatal(err)
	}
	pb := "name = \"app\"\nroles = [\"app\"]\n[artifact]\npath = \"a-{{.Version}}.tgz\"\n[[steps]]\nphase = \"stage\"\nkind = \"upload\"\n[[steps]]\nphase = \"activate\"\nkind = \"activate\"\n"
	if err := os.WriteFile(filepath.Join(dir, "playbooks", "app.toml"), []byte(pb), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "relctl.toml")
	if err := os.WriteFile(cfg, []byte("project = \"app\"\n"+toml), 0o644); err != nil {
		t.Fatal(err)
	}
	proj, err := Load(cfg)
	return proj, home, err
}

const sshTestEnv = `
[environments.prod.vars]
base_dir = "/srv/app"
[[environments.prod.hosts]]
name = "web-1"
roles = ["app"]
[[environments.prod.hosts]]
name = "web-2"
address = "10.0.0.2"
user = "alice"
proxy_jump = "none"
roles = ["app"]
`

func TestSSHSettingsPrecedence(t *testing.T) {
	sshConfig := `Host web-*
    HostName web.internal
    Port 2222
    User deploy
    ProxyJump ops@jump:2200
    IdentityFile ~/.ssh/fleet
    ForwardAgent yes
    StrictHostKeyChecking accept-new
    ConnectTimeout 7

Host jump
    HostName 192.0.2.1
    User nobody
    Port 22
`
	proj, home, err := sshProject(t, sshTestEnv, sshConfig, "fleet")
	if err != nil {
		t.Fatal(err)
	}
	hosts := proj.Config.Environments["prod"].Hosts
	w1, w2 := hosts[0], hosts[1]

	// web-1: everything from ~/.ssh/config.
	if w1.Address != "web.internal:2222" || w1.User != "deploy" {
		t.Errorf("web-1: address %q user %q, want web.internal:2222 deploy", w1.Address, w1.User)
	}
	s := w1.SSH
	for _, c := range []struct{ name, got, from, want, wantFrom string }{
		{"hostname", s.HostName.Value, s.HostName.From, "web.internal", "~/.ssh/config:2"},
		{"port", s.Port.Value, s.Port.From, "2222", "~/.ssh/config:3"},
		{"user", s.User.Value, s.User.From, "deploy", "~/.ssh/config:4"},
		{"proxy_jump", s.ProxyJump.Value, s.ProxyJump.From, "ops@jump:2200", "~/.ssh/config:5"},
		{"policy", s.HostKeyPolicy.Value, s.HostKeyPolicy.From, HostKeyAcceptNew, "~/.ssh/config:8"},
		{"timeout", s.ConnectTimeout.Value, s.ConnectTimeout.From, "7s", "~/.ssh/config:9"},
		{"forward_agent", s.ForwardAgent.Value, s.ForwardAgent.From, "no", "default"},
	} {
		if c.got != c.want || c.from != c.wantFrom {
			t.Errorf("web-1 %s = %q from %q, want %q from %q", c.name, c.got, c.from, c.want, c.wantFrom)
		}
	}
	if len(s.IdentityFiles) != 1 || s.IdentityFiles[0].Value != filepath.Join(home, ".ssh", "fleet") {
		t.Errorf("web-1 identity files %+v, want ~/.ssh/fleet", s.IdentityFiles)
	}
	if len(s.Notes) != 1 || !strings.Contains(s.Notes[0], "ForwardAgent yes at ~/.ssh/config:7 is not used") {
		t.Errorf("web-1 notes %q, want the unused ForwardAgent", s.Notes)
	}
	// Its bastion: proxy_jump's user and port, the config's HostName.
	if len(s.Jumps) != 1 {
		t.Fatalf("web-1 jumps %+v, want one", s.Jumps)
	}
	j := s.Jumps[0]
	if j.Address() != "192.0.2.1:2200" || j.User.Value != "ops" || j.User.From != "proxy_jump" || j.HostName.From != "~/.ssh/config:12" {
		t.Errorf("bastion %s user %q (%s) hostname from %s, want 192.0.2.1:2200 ops from proxy_jump, hostname from ~/.ssh/config:12", j.Address(), j.User.Value, j.User.From, j.HostName.From)
	}

	// web-2: relctl.toml wins where it says something.
	s = w2.SSH
	if w2.Address != "10.0.0.2:2222" || w2.User != "alice" || len(s.Jumps) != 0 {
		t.Errorf("web-2: address %q user %q jumps %d, want 10.0.0.2:2222 (port from ~/.ssh/config) alice, none", w2.Address, w2.User, len(s.Jumps))
	}
	if !strings.HasSuffix(s.User.From, "relctl.toml:11:1 (environments.prod.hosts.user)") || !strings.Contains(s.HostName.From, "relctl.toml:") {
		t.Errorf("web-2 user from %q, hostname from %q: want relctl.toml positions", s.User.From, s.HostName.From)
	}
}

func TestSSHSettingsTomlLevels(t *testing.T) {
	toml := `[ssh]
user = "ci"
proxy_jump = "gw.example.com"
forward_agent = true
host_key_policy = "strict"
connect_timeout = "3s"
config = ""
` + sshTestEnv + `[environments.prod.ssh]
proxy_jump = "ops@gw2:2022,inner"
forward_agent = false
`
	proj, _, err := sshProject(t, toml, "Host *\n    User ignored\n")
	if err != nil {
		t.Fatal(err)
	}
	w1 := proj.Config.Environments["prod"].Hosts[0].SSH
	if w1.User.Value != "ci" || w1.HostName.Value != "web-1" || w1.HostName.From != fromName || w1.Port.Value != "22" {
		t.Errorf("web-1 %s@%s (hostname from %q), want ci@web-1:22 from the name (config = \"\" reads no ~/.ssh/config)", w1.User.Value, w1.Address(), w1.HostName.From)
	}
	if w1.ForwardAgent.Value != "no" || !strings.Contains(w1.ForwardAgent.From, "environments.prod.ssh.forward_agent") {
		t.Errorf("web-1 forward_agent %q from %q, want the environment's no", w1.ForwardAgent.Value, w1.ForwardAgent.From)
	}
	if len(w1.Jumps) != 2 || w1.Jumps[0].Address() != "gw2:2022" || w1.Jumps[0].User.Value != "ops" || w1.Jumps[1].Address() != "inner:22" || w1.Jumps[1].User.Value != "ci" {
		t.Errorf("web-1 jumps %+v, want ops@gw2:2022 then ci@inner:22", w1.Jumps)
	}
	if w1.ConnectTimeout.Value != "3s" || w1.HostKeyPolicy.Value != HostKeyStrict {
		t.Errorf("web-1 timeout %q policy %q", w1.ConnectTimeout.Value, w1.HostKeyPolicy.Value)
	}
	if w2 := proj.Config.Environments["prod"].Hosts[1].SSH; len(w2.Jumps) != 0 || w2.ProxyJump.Value != "none" {
		t.Errorf("web-2 (proxy_jump = \"none\") jumps %+v", w2.Jumps)
	}
}

func TestSSHSettingsProblems(t *testing.T) {
	for _, tt := range []struct {
		name, toml, sshConfig, want string
	}{
		{"bad proxy_jump in relctl.toml", "[ssh]\nproxy_jump = \"a b\"\n" + sshTestEnv, "",
			`relctl.toml:3:1: ssh.proxy_jump: ProxyJump "a b"`},
		{"empty host proxy_jump", strings.Replace(sshTestEnv, `proxy_jump = "none"`, `proxy_jump = ""`, 1), "",
			`proxy_jump: empty: write "none"`},
		{"empty address", strings.Replace(sshTestEnv, `address = "10.0.0.2"`, `address = ""`, 1), "",
			"address is empty"},
		{"ProxyCommand", sshTestEnv, "Host web-1\n    ProxyCommand nc %h %p\n",
			`host "web-1": ~/.ssh/config:2 sets ProxyCommand, which relctl does not run`},
		{"ProxyCommand after ProxyJump none", sshTestEnv, "Host web-1\n    ProxyJump none\nHost *\n    ProxyCommand nc %h %p\n",
			`host "web-1": ~/.ssh/config:4 sets ProxyCommand, which relctl does not run`},
		{"CanonicalizeHostname", sshTestEnv, "Host *\n    CanonicalizeHostname yes\n",
			`~/.ssh/config:2 sets CanonicalizeHostname yes, which relctl does not do`},
		{"RevokedHostKeys", sshTestEnv, "Host *\n    RevokedHostKeys ~/.ssh/krl\n",
			`sets RevokedHostKeys, which relctl does not read: list the revoked keys as @revoked lines`},
		{"quoted keyword", sshTestEnv, "\"Host\" other\n    HostName q.example.com\n",
			`~/.ssh/config:1: keyword "Host" is quoted or escaped`},
		{"bastion loop", sshTestEnv, "Host web-1\n    ProxyJump a\nHost a\n    ProxyJump b\nHost b\n    ProxyJump a\n",
			"bastion a is reached through itself (ProxyJump at ~/.ssh/config:4)"},
		{"unparseable ssh_config", sshTestEnv, "Host web-1\n    Port notaport\n",
			`~/.ssh/config:2`},
		{"missing ssh.config file", "[ssh]\nconfig = \"nope/config\"\n" + sshTestEnv, "",
			`ssh.config: stat`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := sshProject(t, tt.toml, tt.sshConfig)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load: %v\nwant an error with %q", err, tt.want)
			}
		})
	}
}

// TestSSHSettingsDefaults: with nothing set anywhere, ssh's defaults: the
// keys of ~/.ssh/id_* that exist (the others listed as skipped), the user's
// and the system's known_hosts files, the name as the host name.
func TestSSHSettingsDefaults(t *testing.T) {
	proj, home, err := sshProject(t, sshTestEnv, "Match host web-1.lan\n    Port 2200\nHost web-1\n    HostName web-1.lan\n", "id_ed25519")
	if err != nil {
		t.Fatal(err)
	}
	s := proj.Config.Environments["prod"].Hosts[0].SSH
	if len(s.IdentityFiles) != 1 || s.IdentityFiles[0].Value != filepath.Join(home, ".ssh", "id_ed25519") || s.IdentityFiles[0].From != fromDefault {
		t.Errorf("identity files %+v, want the default ~/.ssh/id_ed25519 alone", s.IdentityFiles)
	}
	if len(s.Skipped) != len(defaultIdentities)-1 {
		t.Errorf("skipped %+v, want the %d other default keys", s.Skipped, len(defaultIdentities)-1)
	}
	want := []string{filepath.Join(home, ".ssh", "known_hosts"), filepath.Join(home, ".ssh", "known_hosts2")}
	if got := s.KnownHostsFiles(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("known_hosts %q, want %q", got, want)
	}
	if got := s.GlobalKnownHostsFiles(); strings.Join(got, " ") != "/etc/ssh/ssh_known_hosts /etc/ssh/ssh_known_hosts2" {
		t.Errorf("global known_hosts %q, want the system's two, read only", got)
	}
	if !s.SkipUnusable {
		t.Error("default keys: SkipUnusable false, want an unusable one left out as ssh does")
	}
	// Match host sees the HostName found so far, as ssh's does: the
	// Match block above the Host block does not apply, as ssh reads blocks
	// in order; the Port stays 22.
	if s.HostName.Value != "web-1.lan" || s.Port.Value != "22" {
		t.Errorf("web-1 at %s:%s, want web-1.lan:22", s.HostName.Value, s.Port.Value)
	}
	proj, _, err = sshProject(t, sshTestEnv, "Host web-1\n    HostName web-1.lan\nMatch host web-1.lan\n    Port 2200\n")
	if err != nil {
		t.Fatal(err)
	}
	if s := proj.Config.Environments["prod"].Hosts[0].SSH; s.Port.Value != "2200" || s.Port.From != "~/.ssh/config:4" {
		t.Errorf("web-1 port %s from %s, want 2200 from the Match host block (~/.ssh/config:4)", s.Port.Value, s.Port.From)
	}
}

// TestUnknownKeyNamesTheNearest: a typo of a key or table is named with the
// key it is closest to, at any depth; a key like nothing known is not.
func TestUnknownKeyNamesTheNearest(t *testing.T) {
	for _, tt := range []struct{ toml, want string }{
		{"[ssh]\nmax_paralel = 3\n" + sshTestEnv, `unknown key "max_paralel" in [ssh] (did you mean max_parallel?)`},
		{"[ssh]\nproxyjump = \"b\"\n" + sshTestEnv, `unknown key "proxyjump" in [ssh] (did you mean proxy_jump?)`},
		{sshTestEnv + "[environments.prod.ssh]\nforwardagent = true\n", `unknown key "forwardagent" in [environments.prod.ssh] (did you mean forward_agent?)`},
		{strings.Replace(sshTestEnv, "roles = [\"app\"]\n", "roles = [\"app\"]\nrole = \"x\"\n", 1), `unknown key "role" in [[environments.prod.hosts]] (did you mean roles?)`},
		{"[sssh]\nuser = \"x\"\n" + sshTestEnv, `unknown table [sssh] (did you mean ssh?)`},
		{"[ssh]\nzzzzzzzz = 1\n" + sshTestEnv, `unknown key "zzzzzzzz" in [ssh]` + "\n"},
	} {
		_, _, err := sshProject(t, tt.toml, "")
		if err == nil || !strings.Contains(err.Error()+"\n", tt.want) {
			t.Errorf("Load: %v\nwant %q", err, tt.want)
		}
	}
}

// TestSSHSettingsTomlFeedsMatch: relctl.toml's user and address are read
// before ~/.ssh/config, as ssh's -l and -o HostName are: Match user, Match
// host and the %r, %h, %p tokens see them.
func TestSSHSettingsTomlFeedsMatch(t *testing.T) {
	toml := "[ssh]\nuser = \"deploy\"\n" + strings.Replace(sshTestEnv, `address = "10.0.0.2"`, `address = "10.0.0.2:2200"`, 1)
	proj, home, err := sshProject(t, toml, "Match user deploy\n    IdentitiesOnly yes\nMatch host 10.0.0.*\n    HostKeyAlias fleet-ten\nHost *\n    UserKnownHostsFile ~/.ssh/kh_%r_%p\n")
	if err != nil {
		t.Fatal(err)
	}
	w1, w2 := proj.Config.Environments["prod"].Hosts[0].SSH, proj.Config.Environments["prod"].Hosts[1].SSH
	if w1.IdentitiesOnly.Value != "yes" {
		t.Errorf("web-1 (ssh.user deploy): IdentitiesOnly %q, want yes from Match user deploy", w1.IdentitiesOnly.Value)
	}
	if got := w1.KnownHostsFiles(); len(got) != 1 || got[0] != filepath.Join(home, ".ssh", "kh_deploy_22") {
		t.Errorf("web-1 known_hosts %q, want ~/.ssh/kh_deploy_22", got)
	}
	// web-2 has user = "alice" and address 10.0.0.2:2200 in relctl.toml.
	if w2.HostKeyAlias.Value != "fleet-ten" || w1.HostKeyAlias.Value != "" {
		t.Errorf("HostKeyAlias web-1 %q web-2 %q, want none and fleet-ten (Match host sees relctl.toml's address)", w1.HostKeyAlias.Value, w2.HostKeyAlias.Value)
	}
	if got := w2.KnownHostsFiles(); len(got) != 1 || got[0] != filepath.Join(home, ".ssh", "kh_alice_2200") {
		t.Errorf("web-2 known_hosts %q, want ~/.ssh/kh_alice_2200", got)
	}
}

// TestSSHSettingsBastionKeys: a bastion's keys are ssh's for it when its
// configuration names some, relctl.toml's otherwise.
func TestSSHSettingsBastionKeys(t *testing.T) {
	toml := "[ssh]\nidentity_file = \"~/.ssh/fleet\"\nproxy_jump = \"jump\"\n" + strings.Replace(sshTestEnv, `proxy_jump = "none"`, `proxy_jump = "other"`, 1)
	proj, home, err := sshProject(t, toml, "Host jump\n    IdentityFile ~/.ssh/jump_key\n", "fleet", "jump_key")
	if err != nil {
		t.Fatal(err)
	}
	hosts := proj.Config.Environments["prod"].Hosts
	if j := hosts[0].SSH.Jumps[0]; len(j.IdentityFiles) != 1 || j.IdentityFiles[0].Value != filepath.Join(home, ".ssh", "jump_key") {
		t.Errorf("bastion jump keys %+v, want ~/.ssh/jump_key from ~/.ssh/config", j.IdentityFiles)
	}
	if j := hosts[1].SSH.Jumps[0]; len(j.IdentityFiles) != 1 || j.IdentityFiles[0].Value != filepath.Join(home, ".ssh", "fleet") || j.SkipUnusable {
		t.Errorf("bastion other keys %+v (skip unusable %v), want relctl.toml's ~/.ssh/fleet, which must work", j.IdentityFiles, j.SkipUnusable)
	}
}

package testenv

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/relctl/relctl/internal/signing"
)

// Files written in the cluster directory. relctl.toml refers to the ones
// inside DIR by relative path so the directory is self-contained.
const (
	ClientKeyFile  = "id_ed25519"
	KnownHostsFile = "known_hosts"
	ConfigFile     = "relctl.toml"
	PlaybookFile   = "playbooks/search.toml"
	// AllowedSignersFile trusts the client key to sign rehearsal records.
	AllowedSignersFile = "allowed_signers"
	// SignerName is the principal testenv's rehearsal records are signed as.
	SignerName  = "relctl-testenv"
	StateFile   = "testenv.json"
	SocketFile  = "testenv.sock"
	LogFile     = "testenv.log"
	hostKeysDir = "hostkeys"
	hostsDir    = "hosts"
)

// stateFile is DIR/testenv.json: who serves the cluster, and its ports so a
// later `up` of the same DIR keeps known_hosts and relctl.toml valid.
type stateFile struct {
	Dir   string     `json:"dir"`
	PID   int        `json:"pid"` // 0 when no daemon runs
	Monit bool       `json:"monit,omitempty"`
	Hosts []HostInfo `json:"hosts"`
}

func readState(dir string) (*stateFile, error) {
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		return nil, err
	}
	var st stateFile
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, StateFile), err)
	}
	return &st, nil
}

func writeState(dir string, st *stateFile) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, StateFile), append(b, '\n'), 0o644)
}

// writeFileAtomic replaces path so readers never see a half-written file.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// loadOrCreateKey reads an OpenSSH ed25519 private key from path, or creates
// one (0600) when the file does not exist; reuse keeps known_hosts valid.
func loadOrCreateKey(path, comment string) (ssh.Signer, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		s, err := ssh.ParsePrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return s, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, err
	}
	return ssh.NewSignerFromKey(priv)
}

func writeClientKey(dir string) (ssh.Signer, error) {
	s, err := loadOrCreateKey(filepath.Join(dir, ClientKeyFile), "relctl-testenv")
	if err != nil {
		return nil, fmt.Errorf("client key: %w", err)
	}
	pub := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.PublicKey()))) + " relctl-testenv\n"
	if err := writeFileAtomic(filepath.Join(dir, ClientKeyFile+".pub"), []byte(pub), 0o644); err != nil {
		return nil, err
	}
	return s, nil
}

func writeKnownHosts(dir string, hosts []*sshHost) error {
	var b strings.Builder
	for _, h := range hosts {
		b.WriteString(knownhosts.Line([]string{knownhosts.Normalize(h.info.Address)}, h.hostKey.PublicKey()))
		b.WriteByte('\n')
	}
	return writeFileAtomic(filepath.Join(dir, KnownHostsFile), []byte(b.String()), 0o644)
}

// writeConfig writes relctl.toml: every host with its roles and vars. With
// traffic, search-like hosts also get service_host, and each environment's
// spare, load balancer and app hosts follow its search hosts.
func writeConfig(dir string, envs []string, hosts []HostInfo, traffic bool) error {
	var b strings.Builder
	b.WriteString(`# Written by ` + "`relctl testenv up`" + `: a local cluster of SSH hosts on 127.0.0.1.
project = "search"

[ssh]
user = "relctl"
identity_file = "id_ed25519"
known_hosts = "known_hosts"
host_key_policy = "strict"
connect_timeout = "5s"
command_timeout = "2m"
keepalive = "10s"
max_parallel = 50
# The cluster is reached as written here, whatever your ~/.ssh/config says
# (a "Host *" ProxyJump there would otherwise apply to it too).
config = ""

# relctl rehearse signs its records with this key (the client key) as this
# principal; allowed_signers lists it for the relctl-rehearsal namespace.
[rehearsal]
signing_key = "id_ed25519"
signer = "` + SignerName + `"
`)
	gated := slices.Contains(envs, "staging")
	for _, env := range envs {
		fmt.Fprintf(&b, "\n[environments.%s]\n", env)
		if env == "production" && gated {
			b.WriteString("# Deploys here need a passing, signed rehearsal of the release in staging.\n")
			b.WriteString("require_rehearsal = \"staging\"\n")
			fmt.Fprintf(&b, "allowed_signers = %s\n", tomlString(AllowedSignersFile))
			b.WriteString("rehearsal_max_age = \"24h\"\n")
		}
		for _, h := range hosts {
			if h.Env == env {
				writeConfigHost(&b, h, traffic)
			}
		}
	}
	return writeFileAtomic(filepath.Join(dir, ConfigFile), []byte(b.String()), 0o644)
}

// writeConfigHost writes h's [[environments.<env>.hosts]] table, saying
// what a host other than a search host is for.
func writeConfigHost(b *strings.Builder, h HostInfo, traffic bool) {
	roles := h.Roles
	if len(roles) == 0 {
		roles = []string{RoleSearch}
	}
	quoted := make([]string, len(roles))
	for i, r := range roles {
		quoted[i] = tomlString(r)
	}
	switch {
	case h.HasRole(RoleSearchNext):
		b.WriteString("# A spare search host: nothing deployed; where a host move takes the service.\n")
	case h.HasRole(RoleLB):
		b.WriteString("# HAProxy in front of the search hosts: backend \"" + HAProxyBackend + "\", one server per search host\n")
		b.WriteString("# and spare (spares start in maintenance), named after the host.\n")
	case h.HasRole(RoleApp):
		b.WriteString("# An app that talks to the search hosts listed in app_config (read at start).\n")
	}
	fmt.Fprintf(b, "[[environments.%s.hosts]]\n", h.Env)
	fmt.Fprintf(b, "name = %s\n", tomlString(h.Name))
	fmt.Fprintf(b, "address = %s\n", tomlString(h.Address))
	fmt.Fprintf(b, "roles = [%s]\n", strings.Join(quoted, ", "))
	fmt.Fprintf(b, "[environments.%s.hosts.vars]\n", h.Env)
	fmt.Fprintf(b, "base_dir = %s\n", tomlString(h.BaseDir))
	writeConfigHostVars(b, h, traffic)
}

// writeConfigHostVars writes the vars the playbook reads for h's role.
func writeConfigHostVars(b *strings.Builder, h HostInfo, traffic bool) {
	switch {
	case h.HasRole(RoleLB):
		fmt.Fprintf(b, "lb_port = %d            # HAProxy's frontend on 127.0.0.1\n", h.LBPort)
		fmt.Fprintf(b, "haproxy_socket = %s\n", tomlString(h.HAProxySocket))
		fmt.Fprintf(b, "haproxy_backend = %s\n", tomlString(HAProxyBackend))
	case h.HasRole(RoleApp):
		fmt.Fprintf(b, "app_port = %d            # the app's HTTP port on 127.0.0.1\n", h.AppPort)
		fmt.Fprintf(b, "app_dir = %s\n", tomlString(h.AppDir))
		fmt.Fprintf(b, "app_config = %s\n", tomlString(h.AppConfig))
		fmt.Fprintf(b, "app_restart = %s\n", tomlString(h.AppRestart))
	default:
		fmt.Fprintf(b, "port = %d            # the demo service's HTTP port for this host\n", h.ServicePort)
		if traffic {
			b.WriteString("service_host = \"127.0.0.1\"   # the address the service listens on\n")
		}
		if h.MonitControl != "" {
			b.WriteString("# This host's own monit daemon: `monit -c <monit_control>`; snippets go in monit_confdir.\n")
			fmt.Fprintf(b, "monit_control = %s\n", tomlString(h.MonitControl))
			fmt.Fprintf(b, "monit_confdir = %s\n", tomlString(h.MonitConfDir))
		}
	}
}

// writeAllowedSigners trusts the client key to sign rehearsal records.
func writeAllowedSigners(dir string, key ssh.PublicKey) error {
	line := signing.AllowedSignersLine(SignerName, []string{signing.RehearsalNamespace}, key)
	return writeFileAtomic(filepath.Join(dir, AllowedSignersFile), []byte(line+"\n"), 0o644)
}

// tomlString quotes s as a TOML basic string: a JSON string is one (JSON
// escapes control characters as \uXXXX, which TOML accepts; Go's %q may not).
func tomlString(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	return string(b)
}

const searchPlaybook = `# The demo "search" service: canary first, then half the hosts at a time.
# relctl shell-quotes every {{...}} value itself: never put template actions
# inside quotes.
name = "search"
roles = ["search"]      # deployed to every host with the "search" role
keep_releases = 3       # release directories kept per host

[artifact]
# Resolved against relctl.toml's directory; uploaded to each host's release dir.
path = "artifacts/search-{{.Version}}.tar.gz"

[strategy]
canary = 1              # one host first; stop there if it fails
batch_size = "50%"      # then half of the targeted hosts per batch
max_parallel = 4

# Polled through each host's SSH connection until it passes healthy_for
# times in a row, or fails after retries.
[checks.health]
type = "http"
url = "http://127.0.0.1:{{.Vars.port}}/health"
expect_status = 200
body_contains = "{{.Version}}"
timeout = "2s"
interval = "200ms"
retries = 25
healthy_for = 2

[[steps]]
phase = "preflight"
name = "base-dir"
run = "mkdir -p {{.BaseDir}}/run {{.BaseDir}}/log && test -w {{.BaseDir}}"

[[steps]]
phase = "stage"
kind = "upload"         # the artifact, checked against its sha256

[[steps]]
phase = "stage"
name = "unpack"
run = "tar -xzf {{.Artifact}} -C {{.ReleaseDir}} && test -x {{.ReleaseDir}}/bin/start"

[[steps]]
phase = "activate"
kind = "activate"       # points BaseDir/current at the new release

[[steps]]
phase = "activate"
name = "restart"
run = "{{.CurrentDir}}/bin/restart {{.BaseDir}} {{.Vars.port}}"

[[steps]]
phase = "verify"
name = "health"
kind = "check"
checks = ["health"]

# What a release needs to be a rollback target (checked on every host before
# any host is switched), and how a restored release is brought back into
# service once current points at it again. Health checks run after.
[rollback]
requires = ["bin/start", "bin/stop", "bin/restart"]

[[rollback.steps]]
name = "restart"
run = "{{.CurrentDir}}/bin/restart {{.BaseDir}} {{.Vars.port}}"
`

// watchdogTable is added to the playbook when the hosts run monit.
const watchdogTable = `
# Each host's monit supervises the service. Before any host switches, relctl
# renders the release's snippet for the host and checks it (the real monit -t
# with it in place of the installed one, then pidfile dirs, start/stop
# programs and ports); after activation it installs it, reloads monit and
# waits until monit runs the service; a rollback puts the old one back.
[watchdog]
kind = "monit"
snippet = "monit/search.monitrc"
install_path = "{{.Vars.monit_confdir}}/search.monitrc"
control_file = "{{.Vars.monit_control}}"
service = "search"
timeout = "20s"
`

// trafficTable is added to the playbook when the cluster has load balancers.
const trafficTable = `
# HAProxy on each environment's lb host sends traffic to the search hosts.
# Before a host's release is switched it leaves the load balancer (drained,
# then maint); after its checks passed it comes back with the state and
# weight it had. A rollback restores every server exactly.
[traffic]
provider = "haproxy"
lb_role = "lb"
socket = "{{.Vars.haproxy_socket}}"   # on the lb host, reached over SSH
backend = "search"
drain_timeout = "10s"
`

func writePlaybook(dir string, monit, traffic bool) error {
	body := searchPlaybook
	if monit {
		body += watchdogTable
	}
	if traffic {
		body += trafficTable
	}
	return writeFileAtomic(filepath.Join(dir, PlaybookFile), []byte(body), 0o644)
}

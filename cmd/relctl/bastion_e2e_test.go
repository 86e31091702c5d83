package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/relctl/relctl/internal/output"
	"github.com/relctl/relctl/internal/sshdtest"
	"github.com/relctl/relctl/testenv"
)

// bastionProject is a project whose hosts only a real OpenSSH bastion
// reaches (their sshd run in a network namespace of their own), every host
// and the bastion verified by a host certificate and logging relctl in by a
// user certificate, with no plain key anywhere: one CA signs both.
// relctl.toml names the hosts by their ~/.ssh/config aliases (web-1...)
// and says nothing else about SSH; ~/.ssh/config (under a HOME of the
// test's) says how to reach them. The bastion logs at DEBUG1 (logins and
// forwards); the relay is its public side, which a test may cut.
type bastionProject struct {
	t       *testing.T
	sshDir  string
	caPub   string
	hosts   []*sshdtest.Server
	bastion *sshdtest.Server
	relay   *sshdtest.Relay
	cfgPath string
}

func newBastionProject(t *testing.T, playbookExtra string) *bastionProject {
	t.Helper()
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	sshDir := filepath.Join(home, ".ssh")
	if err := os.MkdirAll(sshDir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", home)
	t.Setenv("SSH_AUTH_SOCK", "")

	ca := sshdtest.NewCA(t, dir, "fleet-ca")
	caPub := strings.TrimSpace(string(mustRead(t, ca.Path+".pub")))
	// The user key and its certificate, where ssh looks for them.
	key := filepath.Join(sshDir, "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	ca.Sign(t, key+".pub", false, "root", "-5m:+1h")
	userCAs := filepath.Join(dir, "user_ca.pub")
	writeFile(t, userCAs, caPub+"\n")

	ns := sshdtest.NewNetNS(t)
	opts := sshdtest.Options{NetNS: ns, HostCertificate: sshdtest.SignHostKey(ca, "127.0.0.1", "-5m:+1h"), TrustedUserCAKeys: userCAs}
	hosts := sshdtest.StartWith(t, 3, nil, opts)
	opts.LogLevel = "DEBUG1"
	bastion := sshdtest.StartWith(t, 1, nil, opts)[0]
	relay := sshdtest.NewRelay(t, ns, bastion.Addr)

	// The hosts cannot be dialled from here: only the bastion reaches them.
	for _, h := range hosts {
		if c, err := net.DialTimeout("tcp", h.Addr, 2*time.Second); err == nil {
			c.Close()
			t.Fatalf("%s (%s) answers from the test's network: the test would not prove the bastion is used", h.Name, h.Addr)
		}
	}

	// known_hosts: the CA only, no key of any host.
	writeFile(t, filepath.Join(sshDir, "known_hosts"), "@cert-authority 127.0.0.1,[127.0.0.1]:* "+caPub+"\n")
	var sshConfig strings.Builder
	fmt.Fprintf(&sshConfig, `# the fleet, as its operators reach it with ssh
Host jump
    HostName 127.0.0.1
    Port %d
    User root

Host web-*
    ProxyJump jump
    User root
    HostName 127.0.0.1
`, relayPort(t, relay.Addr))
	for i, h := range hosts {
		fmt.Fprintf(&sshConfig, "\nHost web-%d\n    Port %d\n", i+1, h.Port)
	}
	fmt.Fprintf(&sshConfig, "\nHost *\n    IdentityFile ~/.ssh/id_ed25519\n    StrictHostKeyChecking yes\n    ConnectTimeout 20\n")
	writeFile(t, filepath.Join(sshDir, "config"), sshConfig.String())

	var cfg strings.Builder
	cfg.WriteString("project = \"search\"\n\n[environments.staging]\n")
	for i, h := range hosts {
		base := filepath.Join(h.Root, "srv", "search")
		fmt.Fprintf(&cfg, "[[environments.staging.hosts]]\nname = \"web-%d\"\nroles = [\"search\"]\nvars = { base_dir = %q, port = %d }\n", i+1, base, freePort(t))
		t.Cleanup(func() { exec.Command(filepath.Join(base, "current", "bin", "stop"), base).Run() })
	}
	project := filepath.Join(dir, "project")
	writeFile(t, filepath.Join(project, "relctl.toml"), cfg.String())
	// testenv's 1.2.0 fails its health check (its index never loads).
	writeFile(t, filepath.Join(project, "playbooks", "search.toml"), realSSHDPlaybook+`[[rollback.steps]]
name = "restart"
run = "{{.CurrentDir}}/bin/restart {{.BaseDir}} {{.Vars.port}}"
`+playbookExtra)
	for _, v := range []string{"1.0.0", "1.1.0", "1.2.0"} {
		art, err := testenv.BuildArtifact(v)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(project, "artifacts", testenv.ArtifactName(v)), string(art))
	}
	return &bastionProject{t: t, sshDir: sshDir, caPub: caPub, hosts: hosts, bastion: bastion, relay: relay, cfgPath: filepath.Join(project, "relctl.toml")}
}

// relctl runs relctl on the project: exit code, stdout, stderr.
func (p *bastionProject) relctl(args ...string) (int, string, string) {
	p.t.Helper()
	var out, errOut bytes.Buffer
	code := run(append(args, "-c", p.cfgPath), output.Test(strings.NewReader(""), &out, &errOut))
	return code, out.String(), errOut.String()
}

// current is where host h's current link points (or why it cannot be read).
func (p *bastionProject) current(h *sshdtest.Server) string {
	link, err := os.Readlink(filepath.Join(h.Root, "srv", "search", "current"))
	if err != nil {
		return err.Error()
	}
	return link
}

// bastionLogins counts the bastion's logins so far.
func (p *bastionProject) bastionLogins() int {
	return strings.Count(p.bastion.Log(p.t), "Accepted publickey for root")
}

// TestBastionCertificatesSSHConfig deploys, rolls back automatically and
// rolls back on request through the bastionProject's bastion, one bastion
// login per command, and refuses hosts whose certificates no trusted CA
// line covers.
func TestBastionCertificatesSSHConfig(t *testing.T) {
	p := newBastionProject(t, "")
	hosts, bastion, relctl, current, sshDir, caPub := p.hosts, p.bastion, p.relctl, p.current, p.sshDir, p.caPub
	bastionLogins := p.bastionLogins

	// validate --explain-ssh shows where each setting came from.
	code, out, errOut := relctl("validate", "--explain-ssh", "web-2")
	if code != 0 {
		t.Fatalf("validate --explain-ssh: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`host web-2 \(environment staging\): root@127\.0\.0\.1:\d+ through root@127\.0\.0\.1:\d+`),
		regexp.MustCompile(`(?m)^port +\d+ +~/\.ssh/config:16$`),
		regexp.MustCompile(`(?m)^identity_file +~/\.ssh/id_ed25519 +~/\.ssh/config:\d+$`),
		regexp.MustCompile(`(?m)^proxy_jump +jump +~/\.ssh/config:8$`),
		regexp.MustCompile(`(?m)^host_key_policy +strict +~/\.ssh/config:\d+$`),
		regexp.MustCompile(`bastion 1 of 1: jump`),
	} {
		if !want.MatchString(out) {
			t.Errorf("validate --explain-ssh web-2: no match for %s in:\n%s", want, out)
		}
	}

	for i, v := range []string{"1.0.0", "1.1.0"} {
		code, out, errOut := relctl("deploy", "--env", "staging", "--release", v, "--yes")
		if code != 0 {
			t.Fatalf("deploy %s through the bastion: exit %d\nstdout:\n%s\nstderr:\n%s", v, code, out, errOut)
		}
		for _, h := range hosts {
			if got := current(h); got != "releases/"+v {
				t.Errorf("after deploy %s: %s: current -> %s", v, h.Name, got)
			}
		}
		// One login to the bastion per command, for every host behind it.
		if n := bastionLogins(); n != i+1 {
			t.Errorf("after %d deploys the bastion logged %d logins, want %d (one per command)", i+1, n, i+1)
		}
	}

	code, out, errOut = relctl("deploy", "--env", "staging", "--release", "1.2.0", "--yes")
	if code != exitFailedClean || !regexp.MustCompile(`(?m)^web-1 +1\.1\.0 +1\.1\.0 +failed at verify/health, rolled back, healthy$`).MatchString(out) {
		t.Fatalf("deploy 1.2.0 (fails on the canary) through the bastion: exit %d, want %d with web-1 rolled back\nstdout:\n%s\nstderr:\n%s", code, exitFailedClean, out, errOut)
	}
	for _, h := range hosts {
		if got := current(h); got != "releases/1.1.0" {
			t.Errorf("after the automatic rollback: %s: current -> %s, want releases/1.1.0", h.Name, got)
		}
	}

	code, out, errOut = relctl("rollback", "--env", "staging", "--to", "prev", "--yes")
	if code != 0 {
		t.Fatalf("rollback --to prev through the bastion: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, h := range hosts {
		if got := current(h); got != "releases/1.0.0" {
			t.Errorf("after rollback: %s: current -> %s, want releases/1.0.0", h.Name, got)
		}
	}
	log := bastion.Log(t)
	if n := strings.Count(log, "Accepted publickey for root"); n != 4 {
		t.Errorf("the bastion logged %d logins for 4 commands, want 4", n)
	}
	if !strings.Contains(log, "ED25519-CERT") {
		t.Errorf("the bastion's log shows no certificate login:\n%s", tail(log, 40))
	}
	// The bastion forwarded to every host's sshd (direct-tcpip).
	for _, h := range hosts {
		if !regexp.MustCompile(`server_request_direct_tcpip: originator .* target 127\.0\.0\.1 port ` + fmt.Sprint(h.Port) + `\b`).MatchString(log) {
			t.Errorf("the bastion's log shows no forward to %s (port %d)", h.Name, h.Port)
		}
	}

	// Host keys are verified by certificate, not accepted: with the CA
	// trusted only for another address, nothing is reached, the bastion
	// first, and nothing changes.
	writeFile(t, filepath.Join(sshDir, "known_hosts"), "@cert-authority 10.9.9.9 "+caPub+"\n")
	code, out, errOut = relctl("deploy", "--env", "staging", "--release", "1.1.0", "--yes")
	if code != exitFailedClean || !strings.Contains(errOut, "Host key verification failed") || !strings.Contains(errOut, "bastion root@127.0.0.1:") {
		t.Errorf("deploy with the CA trusted for another host: exit %d, want %d and the bastion's host key refused; stderr:\n%s", code, exitFailedClean, errOut)
	}
	for _, h := range hosts {
		if got := current(h); got != "releases/1.0.0" {
			t.Errorf("after the refused deploy: %s: current -> %s, want releases/1.0.0", h.Name, got)
		}
	}
}

func relayPort(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	fmt.Sscan(p, &n)
	return n
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

package sshdtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// Options change what Start configures beyond the defaults.
type Options struct {
	// HostCertificate, when set, is called once per server after its host
	// keys are written (s.Root, s.HostKeyPath, s.HostPubKey are set; the
	// port is not chosen yet) and
	// returns the path of a certificate for the ed25519 host key; sshd gets
	// a HostCertificate line for it. SignHostKey makes one.
	HostCertificate func(t testing.TB, s *Server) string
	// TrustedUserCAKeys is a file of CA public keys; sshd gets a
	// TrustedUserCAKeys line, so user certificates they signed log in.
	TrustedUserCAKeys string
	// NetNS, when set, runs the servers inside the namespace (ip netns
	// exec): they listen on its 127.0.0.1, out of the test's reach.
	NetNS *NetNS
	// LogLevel sets sshd's LogLevel (e.g. "VERBOSE": logins and forwards).
	LogLevel string
	// Config is more sshd_config lines (e.g. "AllowAgentForwarding no"),
	// after the defaults (sshd takes a keyword's first value: these cannot
	// change one the defaults set).
	Config []string
}

// CA is a certificate authority made with ssh-keygen.
type CA struct {
	Path   string // the private key; Path+".pub" is the public key
	PubKey ssh.PublicKey
}

// NewCA makes an ed25519 CA key in dir with `ssh-keygen -t ed25519`.
func NewCA(t testing.TB, dir, name string) *CA {
	t.Helper()
	path := filepath.Join(dir, name)
	keygen(t, "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", path)
	pub, err := os.ReadFile(path + ".pub")
	if err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey(pub)
	if err != nil {
		t.Fatalf("sshdtest: CA %s: %v", path, err)
	}
	return &CA{Path: path, PubKey: k}
}

// Sign signs the public key file pubPath with `ssh-keygen -s`: a host
// certificate when host, else a user certificate, for principals
// (comma-separated) and validity (ssh-keygen -V, e.g. "-5m:+1h"). It
// returns the certificate's path: pubPath without ".pub", plus "-cert.pub".
func (ca *CA) Sign(t testing.TB, pubPath string, host bool, principals, validity string) string {
	t.Helper()
	args := []string{"-q", "-s", ca.Path, "-I", filepath.Base(pubPath), "-n", principals, "-V", validity}
	if host {
		args = append(args, "-h")
	}
	keygen(t, append(args, pubPath)...)
	return strings.TrimSuffix(pubPath, ".pub") + "-cert.pub"
}

// SignHostKey returns an Options.HostCertificate that signs each server's
// ed25519 host key with ca for principals and validity.
func SignHostKey(ca *CA, principals, validity string) func(testing.TB, *Server) string {
	return func(t testing.TB, s *Server) string {
		t.Helper()
		pub := s.HostKeyPath + ".pub"
		if err := os.WriteFile(pub, ssh.MarshalAuthorizedKey(s.HostPubKey), 0o600); err != nil {
			t.Fatalf("sshdtest: %v", err)
		}
		return ca.Sign(t, pub, true, principals, validity)
	}
}

// WritePublicKey writes pub in authorized_keys format to path.
func WritePublicKey(t testing.TB, path string, pub ssh.PublicKey) {
	t.Helper()
	if err := os.WriteFile(path, ssh.MarshalAuthorizedKey(pub), 0o600); err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
}

func keygen(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.Command("ssh-keygen", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("sshdtest: ssh-keygen %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

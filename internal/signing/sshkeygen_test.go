package signing

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
)

// The tests check relctl against the real OpenSSH tools, so that what relctl
// signs ssh-keygen accepts and the other way round.

var installOpenSSHClient sync.Once

// sshKeygen returns the path of ssh-keygen, installing openssh-client when it
// is missing (as scripts/install-test-deps.sh does).
func sshKeygen(t *testing.T) string {
	t.Helper()
	const path = "/usr/bin/ssh-keygen"
	installOpenSSHClient.Do(func() {
		if _, err := os.Stat(path); err == nil {
			return
		}
		for _, args := range [][]string{{"update", "-qq"}, {"install", "-y", "-qq", "--no-install-recommends", "openssh-client"}} {
			cmd := exec.Command("apt-get", args...)
			cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Logf("apt-get %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
	})
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("ssh-keygen is needed and could not be installed: %v", err)
	}
	return path
}

// runTool runs an OpenSSH tool and returns its combined output and exit error.
func runTool(t *testing.T, stdin []byte, env []string, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return string(out), err
}

// generateKey makes a key pair with ssh-keygen in dir and returns the private
// key path and the public key.
func generateKey(t *testing.T, dir, name string, keygenArgs ...string) (string, ssh.PublicKey) {
	t.Helper()
	path := filepath.Join(dir, name)
	args := append([]string{"-q", "-C", name, "-f", path}, keygenArgs...)
	if !slices.Contains(keygenArgs, "-N") {
		args = append(args, "-N", "")
	}
	if out, err := runTool(t, nil, nil, sshKeygen(t), args...); err != nil {
		t.Fatalf("ssh-keygen %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return path, readPublicKey(t, path+".pub")
}

func readPublicKey(t *testing.T, path string) ssh.PublicKey {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return pub
}

func writeFile(t *testing.T, path string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// keygenVerify runs `ssh-keygen -Y verify` the way an operator checks a record
// by hand; extra holds options such as -Overify-time=.
func keygenVerify(t *testing.T, allowedSigners, principal, namespace, sigPath string, message []byte, extra ...string) (string, error) {
	t.Helper()
	args := append([]string{"-Y", "verify", "-f", allowedSigners, "-I", principal, "-n", namespace, "-s", sigPath}, extra...)
	return runTool(t, message, nil, sshKeygen(t), args...)
}

// fixedKey is an ed25519 key the tests can build without ssh-keygen.
func fixedKey(t *testing.T, seedByte byte) (ssh.Signer, ssh.PublicKey) {
	t.Helper()
	signer, err := ssh.NewSignerFromKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seedByte}, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	return signer, signer.PublicKey()
}

func authorizedKey(key ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
}

// keygenFindPrincipals returns what `ssh-keygen -Y find-principals` prints on
// stdout (one principal a line), "" when it finds none.
func keygenFindPrincipals(t *testing.T, allowedSigners, sigPath string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(sshKeygen(t), "-Y", "find-principals", "-s", sigPath, "-f", allowedSigners)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("ssh-keygen -Y find-principals: %v", err)
	}
	if err != nil {
		return "", fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

package sshdtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Each server is a separate sshd that lets the client key in, verifiable
// through the known_hosts file WriteKnownHosts produces.
func TestStart(t *testing.T) {
	dir := t.TempDir()
	keyPath, pub := NewClientKey(t, dir)
	if fi, err := os.Stat(keyPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("client key %s: %v %v", keyPath, fi, err)
	}
	servers := Start(t, 3, pub)
	kh := filepath.Join(dir, "known_hosts")
	WriteKnownHosts(t, kh, servers)
	data, _ := os.ReadFile(kh)
	if n := strings.Count(string(data), "\n"); n != 3 || !strings.HasPrefix(string(data), "[127.0.0.1]:") {
		t.Errorf("known_hosts =\n%s", data)
	}

	pemBytes, _ := os.ReadFile(keyPath)
	signer, err := ssh.ParsePrivateKey(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := knownhosts.New(kh)
	if err != nil {
		t.Fatal(err)
	}
	ports := map[int]bool{}
	for _, s := range servers {
		ports[s.Port] = true
		if !strings.HasPrefix(s.Addr, "127.0.0.1:") {
			t.Errorf("%s listens on %s", s.Name, s.Addr)
		}
		client, err := ssh.Dial("tcp", s.Addr, &ssh.ClientConfig{
			User:              "root",
			Auth:              []ssh.AuthMethod{ssh.PublicKeys(signer)},
			HostKeyCallback:   cb,
			HostKeyAlgorithms: []string{ssh.KeyAlgoED25519},
			Timeout:           30 * time.Second,
		})
		if err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		sess, err := client.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		out, err := sess.Output("echo $HOME")
		client.Close()
		if err != nil || strings.TrimSpace(string(out)) != s.Home {
			t.Errorf("%s: HOME = %q (%v), want %s", s.Name, out, err, s.Home)
		}
	}
	if len(ports) != 3 {
		t.Errorf("ports %v are not distinct", ports)
	}
}

package sshdtest

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/ssh"
)

// AuthorizeKey adds pub to the server's authorized_keys, so that two
// keys (or more) log in; sshd reads the file at each login.
func (s *Server) AuthorizeKey(t testing.TB, pub ssh.PublicKey) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(s.Root, "authorized_keys"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
	defer f.Close()
	if _, err := f.Write(ssh.MarshalAuthorizedKey(pub)); err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
}

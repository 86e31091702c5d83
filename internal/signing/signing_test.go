package signing

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

var testKeyTypes = []struct {
	name       string
	keygenArgs []string
}{
	{"ed25519", []string{"-t", "ed25519"}},
	{"ecdsa-p256", []string{"-t", "ecdsa", "-b", "256"}},
	{"rsa", []string{"-t", "rsa", "-b", "2048"}},
}

var record = []byte(`{"release":"v1.4.2","environment":"staging","rehearsed":true}` + "\n")

func TestSignIsAcceptedBySSHKeygen(t *testing.T) {
	for _, kt := range testKeyTypes {
		t.Run(kt.name, func(t *testing.T) {
			dir := t.TempDir()
			keyPath, pub := generateKey(t, dir, "id_"+kt.name, kt.keygenArgs...)
			signer, err := LoadSigner(keyPath)
			if err != nil {
				t.Fatalf("LoadSigner: %v", err)
			}
			sig := mustSign(t, signer, RehearsalNamespace, record)
			if !strings.HasPrefix(string(sig), "-----BEGIN SSH SIGNATURE-----\n") {
				t.Fatalf("signature is not armored:\n%s", sig)
			}
			sigPath := writeFile(t, filepath.Join(dir, "record.json.sig"), sig)
			line := AllowedSignersLine("ci@example.com", []string{RehearsalNamespace}, pub)
			allowed := writeFile(t, filepath.Join(dir, "allowed_signers"), []byte(line+"\n"))

			out, err := keygenVerify(t, allowed, "ci@example.com", RehearsalNamespace, sigPath, record)
			if err != nil || !strings.Contains(out, "Good") {
				t.Fatalf("ssh-keygen -Y verify: %v\n%s", err, out)
			}

			changed := append([]byte(nil), record...)
			changed[3] ^= 0x01
			out, err = keygenVerify(t, allowed, "ci@example.com", RehearsalNamespace, sigPath, changed)
			if err == nil || strings.Contains(out, "Good") {
				t.Fatalf("ssh-keygen accepted a changed record: %v\n%s", err, out)
			}

			signers, err := ParseAllowedSigners(allowed, []byte(line))
			if err != nil {
				t.Fatal(err)
			}
			got, err := Verify(record, sig, signers, RehearsalNamespace, time.Now())
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got.Fingerprint != ssh.FingerprintSHA256(pub) || got.Principals[0] != "ci@example.com" || got.Line != 1 {
				t.Errorf("Verify = %+v", got)
			}
		})
	}
}

func TestVerifyAcceptsSSHKeygenSignatures(t *testing.T) {
	for _, kt := range testKeyTypes {
		for _, hash := range []string{"sha512", "sha256"} {
			t.Run(kt.name+"/"+hash, func(t *testing.T) {
				dir := t.TempDir()
				keyPath, pub := generateKey(t, dir, "id_"+kt.name, kt.keygenArgs...)
				recordPath := writeFile(t, filepath.Join(dir, "record.json"), record)
				out, err := runTool(t, nil, nil, sshKeygen(t), "-Y", "sign", "-f", keyPath, "-n", RehearsalNamespace,
					"-O", "hashalg="+hash, recordPath)
				if err != nil {
					t.Fatalf("ssh-keygen -Y sign: %v\n%s", err, out)
				}
				sig, err := os.ReadFile(recordPath + ".sig")
				if err != nil {
					t.Fatal(err)
				}
				signers, err := ParseAllowedSigners("allowed_signers", []byte("*@example.com "+authorizedKey(pub)+"\n"))
				if err != nil {
					t.Fatal(err)
				}
				got, err := Verify(record, sig, signers, RehearsalNamespace, time.Now())
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				want := Verification{Principals: []string{"*@example.com"}, Fingerprint: keygenFingerprint(t, keyPath+".pub"),
					Path: "allowed_signers", Line: 1}
				if got.Fingerprint != want.Fingerprint || got.Line != want.Line || got.Path != want.Path || got.Principals[0] != want.Principals[0] {
					t.Errorf("Verify = %+v, want %+v", *got, want)
				}

				changed := append([]byte(nil), record...)
				changed[len(changed)-2] = '!'
				if _, err := Verify(changed, sig, signers, RehearsalNamespace, time.Now()); err == nil {
					t.Error("Verify accepted a changed record")
				}
			})
		}
	}
}

// keygenFingerprint asks ssh-keygen for the SHA256 fingerprint it shows users.
func keygenFingerprint(t *testing.T, pubPath string) string {
	t.Helper()
	out, err := runTool(t, nil, nil, sshKeygen(t), "-l", "-E", "sha256", "-f", pubPath)
	if err != nil {
		t.Fatalf("ssh-keygen -l: %v\n%s", err, out)
	}
	return strings.Fields(out)[1]
}

func TestSignRefusesAnEmptyNamespace(t *testing.T) {
	signer, _ := fixedKey(t, 1)
	if _, err := Sign(signer, "", record); err == nil || err.Error() != "sign: the namespace must not be empty" {
		t.Errorf("Sign with no namespace: %v", err)
	}
}

func TestLoadSignerEncryptedKeyWithoutAgent(t *testing.T) {
	keyPath, _ := generateKey(t, t.TempDir(), "id_locked", "-t", "ed25519", "-N", "correct horse")
	t.Setenv("SSH_AUTH_SOCK", "")
	_, err := LoadSigner(keyPath)
	want := "signing key " + keyPath + " is passphrase-protected and no ssh-agent is available " +
		"(SSH_AUTH_SOCK is not set): start ssh-agent and run ssh-add " + keyPath
	if err == nil || err.Error() != want {
		t.Fatalf("LoadSigner error = %v\nwant %s", err, want)
	}
}

func TestLoadSignerErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope")
	if _, err := LoadSigner(missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: %v", err)
	}
	garbage := writeFile(t, filepath.Join(dir, "garbage"), []byte("not a key\n"))
	if _, err := LoadSigner(garbage); err == nil || err.Error() != "signing key "+garbage+": ssh: no key found" {
		t.Errorf("garbage file: %v", err)
	}
}

// TestLoadSignerThroughAgent signs with passphrase-protected keys held by a
// real ssh-agent: an OpenSSH-format key (its public half is in the file) and
// an RSA key in the old PEM format (found through its .pub file).
func TestLoadSignerThroughAgent(t *testing.T) {
	dir := t.TempDir()
	socket := startSSHAgent(t, dir)
	t.Setenv("SSH_AUTH_SOCK", socket)

	for _, kt := range []struct {
		name       string
		keygenArgs []string
		pemFormat  bool
	}{
		{"ed25519", []string{"-t", "ed25519"}, false},
		{"rsa-pem", []string{"-t", "rsa", "-b", "2048"}, true},
	} {
		t.Run(kt.name, func(t *testing.T) {
			keyPath, pub := generateKey(t, dir, "id_"+kt.name, kt.keygenArgs...)
			if out, err := runTool(t, nil, []string{"SSH_AUTH_SOCK=" + socket}, "ssh-add", "-q", keyPath); err != nil {
				t.Fatalf("ssh-add: %v\n%s", err, out)
			}
			// Lock the file only after the agent has the key, so no prompt is needed.
			args := []string{"-p", "-q", "-P", "", "-N", "correct horse", "-f", keyPath}
			if kt.pemFormat {
				args = append(args, "-m", "PEM")
			}
			if out, err := runTool(t, nil, nil, sshKeygen(t), args...); err != nil {
				t.Fatalf("ssh-keygen -p: %v\n%s", err, out)
			}

			signer, err := LoadSigner(keyPath)
			if err != nil {
				t.Fatalf("LoadSigner: %v", err)
			}
			sigPath := writeFile(t, keyPath+".record.sig", mustSign(t, signer, RehearsalNamespace, record))
			allowed := writeFile(t, keyPath+".allowed", []byte(AllowedSignersLine("ops", nil, pub)+"\n"))
			if out, err := keygenVerify(t, allowed, "ops", RehearsalNamespace, sigPath, record); err != nil || !strings.Contains(out, "Good") {
				t.Fatalf("ssh-keygen -Y verify of an agent signature: %v\n%s", err, out)
			}
		})
	}

	t.Run("key not in the agent", func(t *testing.T) {
		keyPath, pub := generateKey(t, dir, "id_absent", "-t", "ed25519", "-N", "correct horse")
		_, err := LoadSigner(keyPath)
		want := "signing key " + keyPath + " is passphrase-protected and the ssh-agent does not hold it (" +
			ssh.FingerprintSHA256(pub) + "): run ssh-add " + keyPath
		if err == nil || err.Error() != want {
			t.Fatalf("LoadSigner error = %v\nwant %s", err, want)
		}
	})
}

// startSSHAgent runs ssh-agent in the foreground and returns its socket once
// it listens (it prints the socket only after binding it).
func startSSHAgent(t *testing.T, dir string) string {
	t.Helper()
	socket := filepath.Join(dir, "agent.sock")
	cmd := exec.Command("ssh-agent", "-D", "-a", socket)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("ssh-agent: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.Contains(line, socket) {
		t.Fatalf("ssh-agent did not report its socket: %q, %v", line, err)
	}
	return socket
}

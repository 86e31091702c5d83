package signing

import (
	"bytes"
	"crypto/rand"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hiddeco/sshsig"
	"golang.org/x/crypto/ssh"
)

func TestVerifyRefusals(t *testing.T) {
	alice, alicePub := fixedKey(t, 1)
	_, bobPub := fixedKey(t, 2)
	aliceKey, bobKey := authorizedKey(alicePub), authorizedKey(bobPub)
	fingerprint := ssh.FingerprintSHA256(alicePub)
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	good := mustSign(t, alice, RehearsalNamespace, record)
	const file = "conf/allowed_signers"
	const header = "# ops\n"

	tests := []struct {
		name      string
		message   []byte
		sig       []byte
		allowed   string // without the header line
		namespace string
		wantIs    error
		want      string
	}{
		{
			name:    "changed message",
			message: bytes.Replace(record, []byte("v1.4.2"), []byte("v1.4.3"), 1),
			allowed: "alice " + aliceKey,
			wantIs:  ErrSignatureMismatch,
			want:    "signature does not verify: the record was changed after it was signed",
		},
		{
			name:    "wrong namespace",
			sig:     mustSign(t, alice, "git", record),
			allowed: "alice " + aliceKey,
			wantIs:  ErrWrongNamespace,
			want:    `signature namespace "git" is not relctl-rehearsal`,
		},
		{
			name:    "key not listed",
			allowed: "bob " + bobKey,
			wantIs:  ErrSignerNotAllowed,
			want:    "key " + fingerprint + " is not in allowed_signers conf/allowed_signers",
		},
		{
			name:    "line allows other namespaces",
			allowed: `alice namespaces="git,file" ` + aliceKey,
			wantIs:  ErrSignerNotAllowed,
			want: "allowed_signers conf/allowed_signers line 2 allows key " + fingerprint +
				" only for namespaces git,file, not relctl-rehearsal",
		},
		{
			name:    "expired valid-before",
			allowed: `alice valid-before="20250101Z" ` + aliceKey,
			wantIs:  ErrSignerNotAllowed,
			want: "allowed_signers conf/allowed_signers line 2 allowed key " + fingerprint +
				" only until 2025-01-01 00:00:00 UTC (valid-before); it is now 2026-06-01 12:00:00 UTC",
		},
		{
			name:    "not yet valid-after",
			allowed: `alice valid-after="203001021530Z" ` + aliceKey,
			wantIs:  ErrSignerNotAllowed,
			want: "allowed_signers conf/allowed_signers line 2 allows key " + fingerprint +
				" only from 2030-01-02 15:30:00 UTC (valid-after); it is now 2026-06-01 12:00:00 UTC",
		},
		{
			name:    "cert-authority line",
			allowed: "*@example.com cert-authority " + aliceKey,
			wantIs:  ErrSignerNotAllowed,
			want: "allowed_signers conf/allowed_signers line 2 lists key " + fingerprint +
				" as cert-authority, which admits only certificates it signed",
		},
		{
			name:    "every line that lists the key is explained",
			allowed: `alice namespaces="git" ` + aliceKey + "\nbob " + bobKey + "\n" + `alice valid-before="20250101Z" ` + aliceKey,
			wantIs:  ErrSignerNotAllowed,
			want: "allowed_signers conf/allowed_signers line 2 allows key " + fingerprint +
				" only for namespaces git, not relctl-rehearsal; allowed_signers conf/allowed_signers line 4 allowed key " +
				fingerprint + " only until 2025-01-01 00:00:00 UTC (valid-before); it is now 2026-06-01 12:00:00 UTC",
		},
		{
			name:    "garbage signature",
			sig:     []byte("this is not a signature\n"),
			allowed: "alice " + aliceKey,
			wantIs:  ErrMalformedSignature,
			want:    "not a valid SSH signature: invalid PEM block",
		},
		{
			name:    "another PEM block",
			sig:     []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
			allowed: "alice " + aliceKey,
			wantIs:  ErrMalformedSignature,
			want:    `not a valid SSH signature: invalid PEM type "CERTIFICATE": expected "SSH SIGNATURE"`,
		},
		{
			name:    "certificate signer",
			sig:     certificateSignature(t, alice),
			allowed: "*@example.com cert-authority " + aliceKey,
			wantIs:  ErrCertificateSigner,
			want:    "signed with a certificate: certificate signers are not supported",
		},
		{
			name:      "the caller's namespace is checked, not the file's",
			allowed:   `alice namespaces="*" ` + aliceKey,
			namespace: "git",
			wantIs:    ErrWrongNamespace,
			want:      `signature namespace "relctl-rehearsal" is not git`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			message, sig, namespace := record, good, RehearsalNamespace
			if tt.message != nil {
				message = tt.message
			}
			if tt.sig != nil {
				sig = tt.sig
			}
			if tt.namespace != "" {
				namespace = tt.namespace
			}
			signers, err := ParseAllowedSigners(file, []byte(header+tt.allowed+"\n"))
			if err != nil {
				t.Fatal(err)
			}
			got, err := Verify(message, sig, signers, namespace, now)
			if err == nil {
				t.Fatalf("Verify accepted it: %+v", got)
			}
			if err.Error() != tt.want {
				t.Errorf("error = %s\nwant    %s", err, tt.want)
			}
			var verifyErr *VerifyError
			if !errors.Is(err, tt.wantIs) || !errors.As(err, &verifyErr) {
				t.Errorf("error %v is not a *VerifyError wrapping %v", err, tt.wantIs)
			}
		})
	}

	t.Run("no signers at all", func(t *testing.T) {
		_, err := Verify(record, good, nil, RehearsalNamespace, now)
		want := "key " + fingerprint + " is not in allowed_signers (no signers listed)"
		if err == nil || err.Error() != want {
			t.Errorf("error = %v\nwant    %s", err, want)
		}
	})
}

// certificateSignature signs record with a user certificate for alice, issued
// by alice's own key acting as CA, the way `ssh-keygen -Y sign` does with a
// certificate.
func certificateSignature(t *testing.T, alice ssh.Signer) []byte {
	t.Helper()
	cert := &ssh.Certificate{
		Key:             alice.PublicKey(),
		CertType:        ssh.UserCert,
		ValidPrincipals: []string{"alice@example.com"},
		ValidBefore:     ssh.CertTimeInfinity,
	}
	if err := cert.SignCert(rand.Reader, alice); err != nil {
		t.Fatal(err)
	}
	certSigner, err := ssh.NewCertSigner(cert, alice)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Sign(certSigner, RehearsalNamespace, record); !errors.Is(err, ErrCertificateSigner) {
		t.Fatalf("Sign with a certificate: %v, want %v", err, ErrCertificateSigner)
	}
	sig, err := sshsig.Sign(bytes.NewReader(record), certSigner, sshsig.HashSHA512, RehearsalNamespace)
	if err != nil {
		t.Fatal(err)
	}
	return sshsig.Armor(sig)
}

// TestVerifyAgreesWithSSHKeygen runs the same decision through Verify and
// `ssh-keygen -Y verify -Overify-time=...`: both must accept or both refuse.
func TestVerifyAgreesWithSSHKeygen(t *testing.T) {
	dir := t.TempDir()
	keyPath, pub := generateKey(t, dir, "id_ci", "-t", "ed25519")
	signer, err := LoadSigner(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	sig := mustSign(t, signer, RehearsalNamespace, record)
	sigPath := writeFile(t, filepath.Join(dir, "record.json.sig"), sig)
	keyText := authorizedKey(pub)
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	verifyTime := "-Overify-time=" + now.Format("20060102150405") + "Z"

	tests := []struct {
		name      string
		line      string
		principal string // what -I names; Verify callers check it with AllowsPrincipal
		wantOK    bool
	}{
		{"plain key", "ci " + keyText, "ci", true},
		{"our namespace", `ci namespaces="relctl-rehearsal" ` + keyText, "ci", true},
		{"namespace pattern", `ci namespaces="git,relctl-*" ` + keyText, "ci", true},
		{"other namespace", `ci namespaces="git" ` + keyText, "ci", false},
		{"namespace negated", `ci namespaces="*,!relctl-rehearsal" ` + keyText, "ci", false},
		{"inside the validity window", `ci valid-after="20250101Z",valid-before="20270101Z" ` + keyText, "ci", true},
		{"valid-before is now", `ci valid-before="20260601120000Z" ` + keyText, "ci", true},
		{"valid-after is now", `ci valid-after="20260601120000Z" ` + keyText, "ci", true},
		{"expired a second ago", `ci valid-before="20260601115959Z" ` + keyText, "ci", false},
		{"valid from the next second", `ci valid-after="20260601120001Z" ` + keyText, "ci", false},
		// Without Z both read local time; a day's margin keeps these true in any zone.
		{"local valid-before tomorrow", `ci valid-before="20260603" ` + keyText, "ci", true},
		{"local valid-before yesterday", `ci valid-before="20260531" ` + keyText, "ci", false},
		{"cert-authority", "ci cert-authority " + keyText, "ci", false},
		{"principal wildcard", "*@example.com,!mallory@example.com " + keyText, "alice@example.com", true},
		{"principal negated", "*@example.com,!mallory@example.com " + keyText, "mallory@example.com", false},
		{"principal not listed", "alice@example.com " + keyText, "bob@example.com", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			allowed := writeFile(t, filepath.Join(t.TempDir(), "allowed_signers"), []byte(tt.line+"\n"))
			out, keygenErr := keygenVerify(t, allowed, tt.principal, RehearsalNamespace, sigPath, record, verifyTime)
			keygenOK := keygenErr == nil && strings.Contains(out, "Good")

			signers, err := ParseAllowedSigners(allowed, []byte(tt.line))
			if err != nil {
				t.Fatal(err)
			}
			verification, verifyErr := Verify(record, sig, signers, RehearsalNamespace, now)
			ours := verifyErr == nil && signers[0].AllowsPrincipal(tt.principal)

			if keygenOK != tt.wantOK || ours != tt.wantOK {
				t.Errorf("ssh-keygen accepts: %v (%s); relctl accepts: %v (%+v, %v); want %v",
					keygenOK, strings.TrimSpace(out), ours, verification, verifyErr, tt.wantOK)
			}
		})
	}
}

package rollback

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/relctl/relctl/internal/signing"
)

// Release digests of two builds of release 1.2.0.
var (
	rehearsedDigest = "sha256:" + strings.Repeat("ab", 32)
	rebuiltDigest   = "sha256:" + strings.Repeat("cd", 32)
)

// rehearsalFinished is when sampleRecord's rehearsal finished.
var rehearsalFinished = time.Date(2026, 6, 1, 10, 5, 0, 0, time.UTC)

// newRecordSigner is a fresh ed25519 key, the kind `relctl rehearse` signs with.
func newRecordSigner(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// allowedSignersOf parses an allowed_signers file listing each key for the
// rehearsal namespace, as a gated environment would trust them.
func allowedSignersOf(t *testing.T, path string, principals map[string]ssh.Signer) []signing.AllowedSigner {
	t.Helper()
	var b strings.Builder
	for name, s := range principals {
		b.WriteString(signing.AllowedSignersLine(name, []string{signing.RehearsalNamespace}, s.PublicKey()) + "\n")
	}
	signers, err := signing.ParseAllowedSigners(path, []byte(b.String()))
	if err != nil {
		t.Fatalf("allowed_signers:\n%s\n%v", b.String(), err)
	}
	return signers
}

// sampleRecord is a passed rehearsal of search 1.2.0 in staging, rolled back
// to 1.1.0 (what production runs), one cycle and the forward deploy.
func sampleRecord() *Record {
	return &Record{
		Format: RecordFormat, Project: "search", Environment: "staging", For: "production", Playbook: "search",
		Release: "1.2.0", ReleaseDigest: rehearsedDigest, ArtifactSHA256: strings.Repeat("ef", 32),
		From: "1.1.0", To: "1.2.0",
		Fingerprint: &Fingerprint{Env: "staging", Playbook: "search", Roles: map[string]int{"search": 2}, Hosts: []HostFingerprint{
			{Name: "stage-1", Roles: []string{"search"}, OS: "Debian GNU/Linux 12 (bookworm)", Watchdog: "monit 5.33.0", Current: "1.1.0",
				Files: map[string]string{"bin/start": strings.Repeat("01", 32)}},
			{Name: "stage-2", Roles: []string{"search"}, Error: "dial tcp 127.0.0.1:22002: connect: connection refused"},
		}},
		FingerprintDigest: "sha256:" + strings.Repeat("12", 32),
		Result:            ResultPassed,
		Cycles: []Cycle{{FailAt: "end of cutover", RunID: "r-1", Passed: true, Seconds: 12.5, RollbackSeconds: 3.25,
			TimeToHealthySeconds: 4.5, StepsUndone: 6, HostsRolledBack: 2, CheckRunID: "check-r-2"}},
		Forward:       &RunOutcome{RunID: "r-3", Passed: true, Seconds: 8},
		RelctlVersion: "0.9.0",
		Started:       rehearsalFinished.Add(-5 * time.Minute),
		Finished:      rehearsalFinished,
		Operator:      "ana@laptop", Controller: "laptop", Signer: "ana@example.com",
	}
}

func TestRecordName(t *testing.T) {
	hexPart := strings.Repeat("0123456789abcdef", 4)
	tests := []struct {
		digest string
		want   string // "" when refused
	}{
		{"sha256:" + hexPart, hexPart + ".json"},
		{rehearsedDigest, strings.Repeat("ab", 32) + ".json"},
		{hexPart, ""},                        // no algorithm
		{"sha512:" + hexPart, ""},            // another algorithm
		{"sha256:" + hexPart[:62], ""},       // too short
		{"sha256:" + hexPart + "00", ""},     // too long
		{"sha256:" + hexPart[:63] + "g", ""}, // not hex
		{"sha256:../../" + hexPart[6:], ""},  // a path
		{"sha256:" + hexPart[:32] + "/" + hexPart[33:], ""},
		{"sha256:", ""},
		{"", ""},
	}
	for _, tt := range tests {
		got, err := RecordName(tt.digest)
		if tt.want == "" {
			if err == nil || !strings.Contains(err.Error(), "is not sha256:<64 hex digits>") {
				t.Errorf("RecordName(%q) = %q, %v; want an error saying it is not sha256:<64 hex digits>", tt.digest, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("RecordName(%q) = %q, %v; want %q", tt.digest, got, err, tt.want)
		}
	}
}

func TestSignParseRoundTrip(t *testing.T) {
	signer := newRecordSigner(t)
	rec := sampleRecord()
	sr, err := Sign(rec, signer)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(sr.JSON, []byte("}\n")) || !bytes.Contains(sr.JSON, []byte("\n  \"format\": \"relctl-rehearsal/v1\",\n")) {
		t.Errorf("record JSON is not indented JSON ending in a newline:\n%s", sr.JSON)
	}
	if !bytes.HasPrefix(sr.Signature, []byte("-----BEGIN SSH SIGNATURE-----\n")) {
		t.Errorf("signature is not an armored SSHSIG:\n%s", sr.Signature)
	}
	got, err := ParseRecord(sr.JSON)
	if err != nil {
		t.Fatalf("ParseRecord of a signed record: %v", err)
	}
	if !reflect.DeepEqual(got, rec) {
		t.Errorf("round trip changed the record:\n got %+v\nwant %+v", got, rec)
	}
	signers := allowedSignersOf(t, "allowed_signers", map[string]ssh.Signer{"ana@example.com": signer})
	v, err := signing.Verify(sr.JSON, sr.Signature, signers, signing.RehearsalNamespace, rehearsalFinished)
	if err != nil {
		t.Fatalf("the signature does not verify: %v", err)
	}
	if !reflect.DeepEqual(v.Principals, []string{"ana@example.com"}) || v.Fingerprint != ssh.FingerprintSHA256(signer.PublicKey()) {
		t.Errorf("verified as %+v; want ana@example.com with the signing key", v)
	}
	// The signature is for the rehearsal namespace only.
	if _, err := signing.Verify(sr.JSON, sr.Signature, signers, "git", rehearsalFinished); !errors.Is(err, signing.ErrWrongNamespace) {
		t.Errorf("verifying a rehearsal signature as a git signature: %v; want ErrWrongNamespace", err)
	}
}

func TestParseRecordRejects(t *testing.T) {
	sr, err := Sign(sampleRecord(), newRecordSigner(t))
	if err != nil {
		t.Fatal(err)
	}
	good := string(sr.JSON)
	tests := []struct {
		name string
		body string
		want string
	}{
		{"unknown top-level field", strings.Replace(good, "\n  \"project\":", "\n  \"approved\": true,\n  \"project\":", 1), `not a rehearsal record: json: unknown field "approved"`},
		{"unknown field in a cycle", strings.Replace(good, `"fail_at":`, `"skipped": true, "fail_at":`, 1), `unknown field "skipped"`},
		{"another format", strings.Replace(good, `"relctl-rehearsal/v1"`, `"relctl-rehearsal/v2"`, 1), `record format "relctl-rehearsal/v2", want "relctl-rehearsal/v1"`},
		{"no format", strings.Replace(good, `"format": "relctl-rehearsal/v1",`, "", 1), `record format "", want "relctl-rehearsal/v1"`},
		{"a field of the wrong type", strings.Replace(good, `"steps_undone": 6`, `"steps_undone": "six"`, 1), "not a rehearsal record: json: cannot unmarshal string"},
		{"not JSON", "format: relctl-rehearsal/v1\n", "not a rehearsal record:"},
		{"empty", "", "not a rehearsal record: EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.body == good {
				t.Fatal("the case does not change the record")
			}
			rec, err := ParseRecord([]byte(tt.body))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseRecord = %+v, %v; want an error saying %q", rec, err, tt.want)
			}
		})
	}
}

func TestSaveLoadLocal(t *testing.T) {
	stateDir := filepath.Join(t.TempDir(), ".relctl")
	signer := newRecordSigner(t)
	rec := sampleRecord()
	sr, err := Sign(rec, signer)
	if err != nil {
		t.Fatal(err)
	}
	p, err := SaveLocal(stateDir, rec, sr)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(stateDir, "rehearsals", strings.Repeat("ab", 32)+".json"); p != want {
		t.Errorf("SaveLocal wrote %s; want %s", p, want)
	}
	loaded, where, err := LoadLocal(stateDir, rec.ReleaseDigest)
	if err != nil {
		t.Fatal(err)
	}
	if where != p || !bytes.Equal(loaded.JSON, sr.JSON) || !bytes.Equal(loaded.Signature, sr.Signature) {
		t.Errorf("LoadLocal = %s, %d JSON bytes (same: %v), %d signature bytes (same: %v); want exactly what SaveLocal wrote to %s",
			where, len(loaded.JSON), bytes.Equal(loaded.JSON, sr.JSON), len(loaded.Signature), bytes.Equal(loaded.Signature, sr.Signature), p)
	}
	entries, err := os.ReadDir(RecordsDir(stateDir))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{filepath.Base(p), filepath.Base(p) + ".sig"}; !reflect.DeepEqual(names, want) {
		t.Errorf("records dir holds %v; want only %v (no temporary files)", names, want)
	}

	// A new rehearsal of the same digest replaces both files.
	rec2 := sampleRecord()
	rec2.Operator = "bo@ci"
	sr2, err := Sign(rec2, signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := SaveLocal(stateDir, rec2, sr2); err != nil {
		t.Fatal(err)
	}
	loaded, _, err = LoadLocal(stateDir, rec.ReleaseDigest)
	if err != nil || !bytes.Equal(loaded.JSON, sr2.JSON) || !bytes.Equal(loaded.Signature, sr2.Signature) {
		t.Errorf("after saving a second record, LoadLocal returned the first (or %v)", err)
	}

	bad := sampleRecord()
	bad.ReleaseDigest = "sha256:../../etc/passwd"
	if _, err := SaveLocal(stateDir, bad, sr); err == nil || !strings.Contains(err.Error(), "is not sha256:<64 hex digits>") {
		t.Errorf("SaveLocal of a record with digest %q: %v; want refused", bad.ReleaseDigest, err)
	}
}

func TestLoadLocalMissing(t *testing.T) {
	stateDir := t.TempDir()
	sr, where, err := LoadLocal(stateDir, rebuiltDigest)
	if !errors.Is(err, errNoRecord) || sr != nil {
		t.Fatalf("LoadLocal without a record = %+v, %v; want errNoRecord", sr, err)
	}
	if want := filepath.Join(stateDir, "rehearsals", strings.Repeat("cd", 32)+".json"); where != want {
		t.Errorf("LoadLocal looked at %s; want %s", where, want)
	}
	if _, _, err := LoadLocal(stateDir, "sha256:nothex"); err == nil || errors.Is(err, errNoRecord) {
		t.Errorf("LoadLocal with a malformed digest = %v; want an error other than errNoRecord", err)
	}
}

// A record whose .sig is missing still loads: the gate reports the missing
// signature rather than "no record".
func TestLoadLocalWithoutSignature(t *testing.T) {
	stateDir := t.TempDir()
	sr, err := Sign(sampleRecord(), newRecordSigner(t))
	if err != nil {
		t.Fatal(err)
	}
	p, err := SaveLocal(stateDir, sampleRecord(), sr)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p + ".sig"); err != nil {
		t.Fatal(err)
	}
	loaded, where, err := LoadLocal(stateDir, rehearsedDigest)
	if err != nil {
		t.Fatalf("LoadLocal without .sig: %v", err)
	}
	if where != p || !bytes.Equal(loaded.JSON, sr.JSON) || len(loaded.Signature) != 0 {
		t.Errorf("LoadLocal = %s, same JSON %v, %d signature bytes; want %s, the JSON, no signature", where, bytes.Equal(loaded.JSON, sr.JSON), len(loaded.Signature), p)
	}
}

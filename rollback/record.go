package rollback

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/relctl/relctl/internal/fleet"
	"github.com/relctl/relctl/internal/shellquote"
	"github.com/relctl/relctl/internal/signing"
	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/internal/transport"
)

// RecordFormat names the rehearsal record's JSON layout.
const RecordFormat = "relctl-rehearsal/v1"

// Rehearsal results.
const (
	ResultPassed = "passed"
	ResultFailed = "failed"
)

// Record is what a rehearsal proved, signed so that a production deploy on
// another machine can trust it: this release (by digest), rolled back from
// to-version to from-version on an environment that looked like this.
type Record struct {
	Format         string `json:"format"`
	Project        string `json:"project"`
	Environment    string `json:"environment"`               // where it was rehearsed
	For            string `json:"for_environment,omitempty"` // the gated environment whose release it started from
	Playbook       string `json:"playbook"`
	Release        string `json:"release"`
	ReleaseDigest  string `json:"release_digest"`
	ArtifactSHA256 string `json:"artifact_sha256"`
	From           string `json:"from_version"`
	To             string `json:"to_version"`
	// Fingerprint is the rehearsal environment when the rehearsal started.
	Fingerprint       *Fingerprint `json:"environment_fingerprint"`
	FingerprintDigest string       `json:"environment_fingerprint_digest"`
	// FailPoints are the cycles planned (--fail-at), in order; Cycles the
	// ones that ran: a failed cycle ends the rehearsal.
	FailPoints []string `json:"fail_points"`
	Result     string   `json:"result"` // passed | failed
	Reason     string   `json:"reason,omitempty"`
	Cycles     []Cycle  `json:"cycles"`
	// Forward is the deploy that put the environment on the release again
	// after the last cycle (nil when a cycle failed first).
	Forward       *RunOutcome `json:"forward,omitempty"`
	RelctlVersion string      `json:"relctl_version"`
	Started       time.Time   `json:"started"`
	Finished      time.Time   `json:"finished"`
	Operator      string      `json:"operator"`
	Controller    string      `json:"controller"`
	Signer        string      `json:"signer"`
}

// Cycle is one forced failure and the automatic rollback that followed.
type Cycle struct {
	FailAt string `json:"fail_at"`
	RunID  string `json:"run_id"`
	Passed bool   `json:"passed"`
	Error  string `json:"error,omitempty"`
	// Seconds is the whole cycle: deploy, forced failure, rollback, check.
	Seconds float64 `json:"seconds"`
	// RollbackSeconds runs from the start of the rollback until every host's
	// rollback finished; TimeToHealthySeconds from the forced failure until
	// the last host was healthy on the previous release again.
	RollbackSeconds      float64 `json:"rollback_seconds"`
	TimeToHealthySeconds float64 `json:"time_to_healthy_seconds"`
	StepsUndone          int     `json:"steps_undone"`
	HostsRolledBack      int     `json:"hosts_rolled_back"`
	// CheckRunID is the read-only check run after the rollback.
	CheckRunID string `json:"check_run_id,omitempty"`
}

// RunOutcome is one plain deploy run.
type RunOutcome struct {
	RunID   string  `json:"run_id"`
	Passed  bool    `json:"passed"`
	Error   string  `json:"error,omitempty"`
	Seconds float64 `json:"seconds"`
}

// Passed says whether the rehearsal passed.
func (r *Record) Passed() bool { return r.Result == ResultPassed }

// RecordName is the file name of the record of a release digest
// ("sha256:<hex>" -> "<hex>.json"); its signature is that plus ".sig".
func RecordName(digest string) (string, error) {
	hexPart, ok := strings.CutPrefix(digest, "sha256:")
	if b, err := hex.DecodeString(hexPart); !ok || err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("release digest %q is not sha256:<64 hex digits>", digest)
	}
	return hexPart + ".json", nil
}

// RecordsDir is where the controller keeps records: <state dir>/rehearsals.
func RecordsDir(stateDir string) string { return filepath.Join(stateDir, "rehearsals") }

// HostRecordsDir is where a host keeps them: <base_dir>/.relctl/rehearsals.
func HostRecordsDir(l state.Layout) string { return path.Join(l.StateDir(), "rehearsals") }

// SignedRecord is a record's exact bytes and its armored SSHSIG signature.
type SignedRecord struct {
	JSON      []byte
	Signature []byte
}

// Sign encodes the record and signs the bytes in the relctl-rehearsal namespace.
func Sign(rec *Record, signer ssh.Signer) (*SignedRecord, error) {
	body, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return nil, err
	}
	body = append(body, '\n')
	sig, err := signing.Sign(signer, signing.RehearsalNamespace, body)
	if err != nil {
		return nil, fmt.Errorf("signing the rehearsal record: %w", err)
	}
	return &SignedRecord{JSON: body, Signature: sig}, nil
}

// SaveLocal writes the signed record into the controller's state dir and
// returns the path of the JSON file.
func SaveLocal(stateDir string, rec *Record, sr *SignedRecord) (string, error) {
	name, err := RecordName(rec.ReleaseDigest)
	if err != nil {
		return "", err
	}
	dir := RecordsDir(stateDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	p := filepath.Join(dir, name)
	// Both are written beside the pair, then renamed into place. A reader
	// between the two renames sees a mismatched pair and reports the
	// signature; the gate also reads the copies on the staging hosts.
	for _, f := range []struct {
		path string
		data []byte
	}{{p + ".sig.tmp", sr.Signature}, {p + ".tmp", sr.JSON}} {
		if err := os.WriteFile(f.path, f.data, 0o644); err != nil {
			return "", err
		}
	}
	if err := os.Rename(p+".sig.tmp", p+".sig"); err != nil {
		return "", err
	}
	return p, os.Rename(p+".tmp", p)
}

// SaveOnHost writes the signed record into the host's .relctl/rehearsals.
func SaveOnHost(ctx context.Context, conn transport.Conn, l state.Layout, rec *Record, sr *SignedRecord) error {
	name, err := RecordName(rec.ReleaseDigest)
	if err != nil {
		return err
	}
	p := path.Join(HostRecordsDir(l), name)
	for _, f := range []struct {
		path string
		data []byte
	}{{p + ".sig", sr.Signature}, {p, sr.JSON}} {
		if err := fleet.WriteFile(ctx, conn, f.data, f.path, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// errNoRecord: there is no record for the digest where we looked.
var errNoRecord = errors.New("no record")

// LoadLocal reads the signed record of a release digest from the state dir.
func LoadLocal(stateDir, digest string) (*SignedRecord, string, error) {
	name, err := RecordName(digest)
	if err != nil {
		return nil, "", err
	}
	p := filepath.Join(RecordsDir(stateDir), name)
	body, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, p, errNoRecord
	}
	if err != nil {
		return nil, p, err
	}
	sig, err := os.ReadFile(p + ".sig")
	if errors.Is(err, fs.ErrNotExist) {
		return &SignedRecord{JSON: body}, p, nil // verification reports the missing signature
	}
	if err != nil {
		return nil, p, err
	}
	return &SignedRecord{JSON: body, Signature: sig}, p, nil
}

// LoadFromHost reads the signed record of a release digest from a host, in
// one command: the JSON's length, the JSON, then the signature.
func LoadFromHost(ctx context.Context, conn transport.Conn, l state.Layout, digest string) (*SignedRecord, string, error) {
	name, err := RecordName(digest)
	if err != nil {
		return nil, "", err
	}
	p := path.Join(HostRecordsDir(l), name)
	q := shellquote.Quote(p)
	res, err := conn.Run(ctx, fmt.Sprintf(`if [ -f %[1]s ]; then wc -c < %[1]s; cat %[1]s; cat %[2]s 2>/dev/null; else echo absent; fi`, q, shellquote.Quote(p+".sig")),
		transport.RunOptions{Label: "read rehearsal record", QuietStdout: true})
	if err != nil {
		return nil, p, err
	}
	head, rest, _ := bytes.Cut(res.Stdout, []byte("\n"))
	if string(head) == "absent" {
		return nil, p, errNoRecord
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(head)))
	if err != nil || n < 0 || n > len(rest) {
		return nil, p, fmt.Errorf("reading %s: unexpected output %q", p, head)
	}
	sr := &SignedRecord{JSON: rest[:n]}
	if len(rest) > n {
		sr.Signature = rest[n:]
	}
	return sr, p, nil
}

// ParseRecord decodes a record's JSON strictly.
func ParseRecord(body []byte) (*Record, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var rec Record
	if err := dec.Decode(&rec); err != nil {
		return nil, fmt.Errorf("not a rehearsal record: %w", err)
	}
	if rec.Format != RecordFormat {
		return nil, fmt.Errorf("record format %q, want %q", rec.Format, RecordFormat)
	}
	return &rec, nil
}

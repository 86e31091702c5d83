package rollback

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/signing"
	"github.com/relctl/relctl/playbooks"
)

// TestEvaluate runs one record through every condition of the rehearsal
// gate: production requires a rehearsal in staging, runs 1.1.0, and is
// asked to take 1.2.0 (digest rehearsedDigest).
func TestEvaluate(t *testing.T) {
	ana, mallory := newRecordSigner(t), newRecordSigner(t)
	const signersPath = "conf/allowed_signers"
	signers := allowedSignersOf(t, signersPath, map[string]ssh.Signer{"ana@example.com": ana})
	now := rehearsalFinished.Add(24 * time.Hour)
	plan := &deploy.Plan{Project: "search", Env: "production", Version: "1.2.0", Playbook: "search", Digest: rehearsedDigest}
	env := &playbooks.Environment{Name: "production", RequireRehearsal: "staging", AllowedSigners: "allowed_signers",
		RehearsalMaxAge: playbooks.Duration{Duration: 168 * time.Hour}}
	const running = "1.1.0"
	const rehearse = "relctl rehearse --env staging --release 1.2.0"
	const source = "/ops/.relctl/rehearsals/abab.json"

	sign := func(t *testing.T, edit func(*Record), signer ssh.Signer) *SignedRecord {
		t.Helper()
		rec := sampleRecord()
		if edit != nil {
			edit(rec)
		}
		sr, err := Sign(rec, signer)
		if err != nil {
			t.Fatal(err)
		}
		return sr
	}
	signed := func(edit func(*Record)) func(*testing.T) *candidate {
		return func(t *testing.T) *candidate {
			return &candidate{source: source, signed: sign(t, edit, ana)}
		}
	}

	tests := []struct {
		name      string
		candidate func(t *testing.T) *candidate
		rank      int
		// reason and fix: every string must appear in GateError.Reason / .Fix.
		reason []string
		fix    []string
	}{
		{name: "good record", candidate: signed(nil)},
		{name: "rehearsal_max_age old to the second", candidate: signed(func(r *Record) { r.Finished = now.Add(-168 * time.Hour) })},
		{
			name: "unreadable record",
			candidate: func(*testing.T) *candidate {
				return &candidate{source: "stage-1:/srv/search/.relctl/rehearsals/abab.json", readErr: errors.New("ssh: handshake failed")}
			},
			rank:   rankUnreadable,
			reason: []string{"reading the rehearsal record stage-1:/srv/search/.relctl/rehearsals/abab.json: ssh: handshake failed"},
			fix:    []string{rehearse},
		},
		{
			name: "one byte of the JSON changed after signing",
			candidate: func(t *testing.T) *candidate {
				sr := sign(t, nil, ana)
				changed := bytes.Replace(sr.JSON, []byte(`"operator": "ana@laptop"`), []byte(`"operator": "anb@laptop"`), 1)
				if bytes.Equal(changed, sr.JSON) {
					t.Fatal("the case does not change the record")
				}
				return &candidate{source: source, signed: &SignedRecord{JSON: changed, Signature: sr.Signature}}
			},
			rank:   rankSignature,
			reason: []string{"the signature of the rehearsal record " + source + " does not verify against allowed_signers " + signersPath, "changed after it was signed"},
			fix:    []string{rehearse, "signed with a key listed in " + signersPath},
		},
		{
			name: "no signature",
			candidate: func(t *testing.T) *candidate {
				return &candidate{source: source, signed: &SignedRecord{JSON: sign(t, nil, ana).JSON}}
			},
			rank:   rankSignature,
			reason: []string{"the rehearsal record " + source + " has no signature", source + ".sig is missing"},
			fix:    []string{rehearse},
		},
		{
			name: "key not in allowed_signers",
			candidate: func(t *testing.T) *candidate {
				return &candidate{source: source, signed: sign(t, nil, mallory)}
			},
			rank: rankSignature,
			reason: []string{"signature of the rehearsal record " + source + " does not verify",
				"key " + ssh.FingerprintSHA256(mallory.PublicKey()) + " is not in allowed_signers " + signersPath},
			fix: []string{rehearse, "signed with a key listed in " + signersPath},
		},
		{
			name: "signed by an allowed key for another namespace",
			candidate: func(t *testing.T) *candidate {
				sr := sign(t, nil, ana)
				sig, err := signing.Sign(ana, "git", sr.JSON)
				if err != nil {
					t.Fatal(err)
				}
				return &candidate{source: source, signed: &SignedRecord{JSON: sr.JSON, Signature: sig}}
			},
			rank:   rankSignature,
			reason: []string{"does not verify", `signature namespace "git" is not relctl-rehearsal`},
			fix:    []string{rehearse},
		},
		{
			name:      "signed, but another record format",
			candidate: signed(func(r *Record) { r.Format = "relctl-rehearsal/v0" }),
			rank:      rankSignature,
			reason:    []string{"the rehearsal record " + source + ": record format \"relctl-rehearsal/v0\""},
			fix:       []string{rehearse},
		},
		{
			name:      "record for another digest of the release",
			candidate: signed(func(r *Record) { r.ReleaseDigest = rebuiltDigest }),
			rank:      rankRelease,
			reason: []string{"is for 1.2.0 (digest " + rebuiltDigest + "), not 1.2.0 (digest " + rehearsedDigest + ")",
				"the playbook or the artifact changed since it was rehearsed"},
			fix: []string{rehearse},
		},
		{
			name:      "record for another release",
			candidate: signed(func(r *Record) { r.Release, r.To = "1.2.1", "1.2.1" }),
			rank:      rankRelease,
			reason:    []string{"is for 1.2.1 (digest " + rehearsedDigest + "), not 1.2.0"},
			fix:       []string{rehearse},
		},
		{
			name:      "record from another environment",
			candidate: signed(func(r *Record) { r.Environment = "qa" }),
			rank:      rankRelease,
			reason:    []string{"was made in qa, but production requires a rehearsal in staging"},
			fix:       []string{rehearse},
		},
		{
			name: "failed rehearsal",
			candidate: signed(func(r *Record) {
				r.Result, r.Reason = ResultFailed, "cycle 1 (fail at the end of cutover): the rollback left hosts not known to be healthy on 1.1.0: stage-2"
				r.Cycles[0].Passed, r.Forward = false, nil
			}),
			rank: rankFailed,
			reason: []string{"the rehearsal of 1.2.0 in staging failed (2026-06-01T10:05:00Z, by ana@laptop)",
				"cycle 1 (fail at the end of cutover): the rollback left hosts not known to be healthy on 1.1.0: stage-2"},
			fix: []string{"fix the release (or its rollback path), then " + rehearse},
		},
		{
			name:      "rehearsed from another release than production runs",
			candidate: signed(func(r *Record) { r.From = "1.0.0" }),
			rank:      rankFrom,
			reason:    []string{"the rehearsal rolled 1.2.0 back to 1.0.0, but production runs 1.1.0"},
			fix:       []string{"relctl deploy --env staging --release 1.1.0, then " + rehearse},
		},
		{
			name:      "older than rehearsal_max_age",
			candidate: signed(func(r *Record) { r.Finished = now.Add(-169 * time.Hour) }),
			rank:      rankAge,
			reason:    []string{"the rehearsal of 1.2.0 finished 169h0m0s ago", "at most 168h0m0s old (rehearsal_max_age)"},
			fix:       []string{rehearse},
		},
		{
			name:      "the record names a signer its key is not listed for",
			candidate: signed(func(r *Record) { r.Signer = "mallory" }),
			rank:      rankSignature,
			reason:    []string{`names its signer "mallory"`, "ana@example.com only"},
			fix:       []string{"[rehearsal] signer"},
		},
		{
			name:      "a record of another playbook",
			candidate: signed(func(r *Record) { r.Playbook = "cache" }),
			rank:      rankRelease,
			reason:    []string{"is for project search, playbook cache, not search, search"},
			fix:       []string{rehearse},
		},
		{
			name:      "a record made for another gated environment",
			candidate: signed(func(r *Record) { r.For = "production-eu" }),
			rank:      rankRelease,
			reason:    []string{"was made for production-eu, not production"},
			fix:       []string{rehearse + " --for production"},
		},
		{
			name:      "finished in the future: a wrong clock must not make a record valid forever",
			candidate: signed(func(r *Record) { r.Finished = now.Add(2 * time.Hour) }),
			rank:      rankAge,
			reason:    []string{"claims to have finished 2h0m0s from now", "clock"},
			fix:       []string{"correct the clock, then " + rehearse},
		},
		{
			name:      "a few minutes ahead is clock skew, accepted",
			candidate: signed(func(r *Record) { r.Finished = now.Add(4 * time.Minute) }),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.candidate(t)
			rank, gerr := evaluate(c, GateOptions{Now: now}, plan, env, running, signers, signersPath, rehearse)
			if tt.reason == nil {
				if gerr != nil {
					t.Fatalf("evaluate refused a good record (rank %d): %v", rank, gerr)
				}
				if c.record == nil || c.record.Release != "1.2.0" || c.verified == nil || !slices.Equal(c.verified.Principals, []string{"ana@example.com"}) {
					t.Errorf("accepted record %+v, signer %+v; want 1.2.0 signed by ana@example.com", c.record, c.verified)
				}
				return
			}
			if gerr == nil {
				t.Fatalf("evaluate accepted the record; want rank %d refusing it", tt.rank)
			}
			if rank != tt.rank {
				t.Errorf("rank = %d; want %d (%v)", rank, tt.rank, gerr)
			}
			for _, w := range tt.reason {
				if !strings.Contains(gerr.Reason, w) {
					t.Errorf("reason %q does not say %q", gerr.Reason, w)
				}
			}
			for _, w := range tt.fix {
				if !strings.Contains(gerr.Fix, w) {
					t.Errorf("fix %q does not say %q", gerr.Fix, w)
				}
			}
		})
	}
}

// The ranks order how far a record got, so that when several records are
// refused the user hears about the one closest to passing.
func TestGateRanksOrdered(t *testing.T) {
	ranks := []int{rankUnreadable, rankSignature, rankRelease, rankFailed, rankFrom, rankAge}
	for i := 1; i < len(ranks); i++ {
		if ranks[i] <= ranks[i-1] {
			t.Errorf("rank %d (%d) is not above rank %d (%d)", i, ranks[i], i-1, ranks[i-1])
		}
	}
}

func TestGateError(t *testing.T) {
	var err error = &GateError{Reason: "no rehearsal record for search 1.2.0", Fix: "relctl rehearse --env staging --release 1.2.0"}
	if want := "rehearsal gate: no rehearsal record for search 1.2.0\n  fix: relctl rehearse --env staging --release 1.2.0"; err.Error() != want {
		t.Errorf("Error() = %q; want %q", err.Error(), want)
	}
	if !errors.Is(err, ErrNotRehearsed) {
		t.Error("a GateError is not ErrNotRehearsed: main would not map it to its exit code")
	}
	wrapped := errors.Join(errors.New("deploy refused"), err)
	var ge *GateError
	if !errors.Is(wrapped, ErrNotRehearsed) || !errors.As(wrapped, &ge) || ge.Fix == "" {
		t.Errorf("a wrapped GateError loses ErrNotRehearsed or its fix: %v", wrapped)
	}
	noFix := &GateError{Reason: "the hosts of production run different releases"}
	if got := noFix.Error(); got != "rehearsal gate: the hosts of production run different releases" {
		t.Errorf("Error() without a fix = %q", got)
	}
}

package rollback

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/fleet"
	"github.com/relctl/relctl/internal/signing"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/playbooks"
)

// ErrNotRehearsed: a gated environment's deploy was refused because no
// valid rehearsal record covers it (exit 6).
var ErrNotRehearsed = errors.New("not rehearsed")

// GateError says which condition of the rehearsal gate failed and the
// command that fixes it.
type GateError struct {
	Reason string
	Fix    string
	rank   int
}

func (e *GateError) Error() string {
	msg := "rehearsal gate: " + e.Reason
	if e.Fix != "" {
		msg += "\n  fix: " + e.Fix
	}
	return msg
}

func (e *GateError) Unwrap() error { return ErrNotRehearsed }

// GateOptions describe the deploy the gate is asked about.
type GateOptions struct {
	Project     *playbooks.Project
	Plan        *deploy.Plan // the deploy to the gated environment
	StateDir    string
	Connector   deploy.Connector
	MaxParallel int
	Now         time.Time
}

// GateResult is a deploy the gate let through, and why.
type GateResult struct {
	// Required: the environment has require_rehearsal.
	Required bool
	// Note says why no record was needed (first deploy, already there).
	Note string
	// From is the release the gated environment runs now.
	From   string
	Record *Record
	// Source is where the accepted record was read (a path, or host:path).
	Source string
	Signer *signing.Verification
	// Differences between the rehearsal environment (as recorded) and the
	// gated environment now: shown as warnings.
	Differences []Difference
}

// CheckGate decides whether plan may be deployed to its environment: when
// the environment requires a rehearsal, a signed record must exist (in the
// state dir or on the rehearsal environment's hosts) that verifies against
// allowed_signers, names the same release digest, started from the release
// the environment runs now, passed, and is younger than rehearsal_max_age.
func CheckGate(ctx context.Context, o GateOptions) (*GateResult, error) {
	p := o.Plan
	env, err := o.Project.Environment(p.Env)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", deploy.ErrBadInput, err)
	}
	res := &GateResult{Required: env.RequireRehearsal != ""}
	if !res.Required {
		return res, nil
	}
	rehearse := fmt.Sprintf("relctl rehearse --env %s --release %s", env.RequireRehearsal, p.Version)
	if p.Playbook != "" && len(mustPlaybooks(o.Project, env.RequireRehearsal)) > 1 {
		rehearse += " --playbook " + p.Playbook
	}

	from, note, err := gatedFrom(ctx, o, p)
	if err != nil {
		return nil, err
	}
	res.From, res.Note = from, note
	if note != "" {
		return res, nil
	}

	signersPath := o.Project.Config.ResolvePath(env.AllowedSigners)
	body, err := os.ReadFile(signersPath)
	if err != nil {
		return nil, &GateError{Reason: fmt.Sprintf("cannot read allowed_signers (%s): %v", o.Project.Config.Where("environments."+p.Env+".allowed_signers"), err),
			Fix: "point allowed_signers at the OpenSSH allowed_signers file of the keys that sign rehearsals"}
	}
	signers, err := signing.ParseAllowedSigners(signersPath, body)
	if err != nil {
		return nil, &GateError{Reason: err.Error(), Fix: "correct " + signersPath + " (format: ssh-keygen(1), ALLOWED SIGNERS)"}
	}

	// Every copy is read (the state dir and every staging host) and the
	// newest record that verifies decides: an older passing copy left
	// somewhere must not outvote a newer failed rehearsal.
	cands := o.localCandidate(p.Digest)
	remote, hosts := o.hostCandidates(ctx, env.RequireRehearsal, p)
	cands = append(cands, remote...)
	var verified []*candidate
	var best *GateError
	bestRank := -1
	for i := range cands {
		c := &cands[i]
		rank, gerr := verifyCandidate(c, o, p, env, signers, signersPath, rehearse)
		if gerr != nil {
			if rank > bestRank {
				best, bestRank = gerr, rank
			}
			continue
		}
		verified = append(verified, c)
	}
	if len(verified) > 0 {
		newest := verified[0]
		for _, c := range verified[1:] {
			if c.record.Finished.After(newest.record.Finished) {
				newest = c
			}
		}
		if gerr := judge(newest, o, p, env, from, rehearse); gerr != nil {
			return nil, gerr
		}
		res.Record, res.Source, res.Signer = newest.record, newest.source, newest.verified
		return res.withDifferences(ctx, o), nil
	}
	if best == nil {
		where := RecordsDir(o.StateDir)
		if len(hosts) > 0 {
			where += " or on " + env.RequireRehearsal + "'s hosts (" + strings.Join(hosts, ", ") + ")"
		}
		best = &GateError{
			Reason: fmt.Sprintf("no rehearsal record for %s %s (release digest %s) in %s", p.Playbook, p.Version, p.Digest, where),
			Fix:    rehearse,
		}
	}
	return nil, best
}

// Ranks of how far a record got through the gate; the refusal names the
// condition of the record that got furthest.
const (
	rankUnreadable = iota
	rankSignature
	rankRelease
	rankFailed
	rankFrom
	rankAge
)

// maxClockSkew is how far in the future a record's finish time may lie
// (clocks of the CI runner and the deploying laptop differ a little).
const maxClockSkew = 5 * time.Minute

type candidate struct {
	source    string
	signed    *SignedRecord
	readErr   error
	record    *Record
	verified  *signing.Verification
	fromLocal bool
}

// evaluate verifies and judges one record (the gate's decision when it is
// the only one).
func evaluate(c *candidate, o GateOptions, p *deploy.Plan, env *playbooks.Environment, from string, signers []signing.AllowedSigner, signersPath, rehearse string) (int, *GateError) {
	if rank, gerr := verifyCandidate(c, o, p, env, signers, signersPath, rehearse); gerr != nil {
		return rank, gerr
	}
	if gerr := judge(c, o, p, env, from, rehearse); gerr != nil {
		return rankOf(gerr), gerr
	}
	return 0, nil
}

// verifyCandidate checks that a copy is a record for this release, signed
// by a key allowed_signers lists for the principal the record names.
func verifyCandidate(c *candidate, o GateOptions, p *deploy.Plan, env *playbooks.Environment, signers []signing.AllowedSigner, signersPath, rehearse string) (int, *GateError) {
	if c.readErr != nil {
		return rankUnreadable, &GateError{Reason: fmt.Sprintf("reading the rehearsal record %s: %v", c.source, c.readErr), Fix: rehearse}
	}
	if len(c.signed.Signature) == 0 {
		return rankSignature, &GateError{Reason: fmt.Sprintf("the rehearsal record %s has no signature (%s.sig is missing)", c.source, c.source), Fix: rehearse}
	}
	v, err := signing.Verify(c.signed.JSON, c.signed.Signature, signers, signing.RehearsalNamespace, o.Now)
	if err != nil {
		return rankSignature, &GateError{Reason: fmt.Sprintf("the signature of the rehearsal record %s does not verify against allowed_signers %s: %v", c.source, signersPath, err),
			Fix: rehearse + " (signed with a key listed in " + signersPath + ")"}
	}
	rec, err := ParseRecord(c.signed.JSON)
	if err != nil {
		return rankSignature, &GateError{Reason: fmt.Sprintf("the rehearsal record %s: %v", c.source, err), Fix: rehearse}
	}
	// As ssh-keygen -Y verify -I: the principal the record names must be
	// one the key's allowed_signers line lists.
	if !signerAllows(signers, v, rec.Signer) {
		return rankSignature, &GateError{Reason: fmt.Sprintf("the rehearsal record %s names its signer %q, but %s:%d lists its key (%s) for %s only",
			c.source, rec.Signer, signersPath, v.Line, v.Fingerprint, strings.Join(v.Principals, ",")),
			Fix: rehearse + " with [rehearsal] signer set to the key's principal in " + signersPath}
	}
	switch {
	case rec.ReleaseDigest != p.Digest || rec.Release != p.Version:
		return rankRelease, &GateError{Reason: fmt.Sprintf("the rehearsal record %s is for %s (digest %s), not %s (digest %s): the playbook or the artifact changed since it was rehearsed",
			c.source, rec.Release, rec.ReleaseDigest, p.Version, p.Digest), Fix: rehearse}
	case rec.Project != p.Project || rec.Playbook != p.Playbook:
		return rankRelease, &GateError{Reason: fmt.Sprintf("the rehearsal record %s is for project %s, playbook %s, not %s, %s", c.source, rec.Project, rec.Playbook, p.Project, p.Playbook), Fix: rehearse}
	case rec.Environment != env.RequireRehearsal:
		return rankRelease, &GateError{Reason: fmt.Sprintf("the rehearsal record %s was made in %s, but %s requires a rehearsal in %s", c.source, rec.Environment, p.Env, env.RequireRehearsal), Fix: rehearse}
	case rec.For != "" && rec.For != p.Env:
		return rankRelease, &GateError{Reason: fmt.Sprintf("the rehearsal record %s was made for %s, not %s", c.source, rec.For, p.Env), Fix: rehearse + " --for " + p.Env}
	}
	c.record, c.verified = rec, v
	return 0, nil
}

// judge decides on a verified record: passed, from the release the
// environment runs, recent.
func judge(c *candidate, o GateOptions, p *deploy.Plan, env *playbooks.Environment, from, rehearse string) *GateError {
	rec := c.record
	switch {
	case !rec.Passed():
		return &GateError{rank: rankFailed, Reason: fmt.Sprintf("the rehearsal of %s in %s failed (%s, by %s): %s", rec.Release, rec.Environment, rec.Finished.Format(time.RFC3339), rec.Operator, rec.Reason),
			Fix: "fix the release (or its rollback path), then " + rehearse}
	case rec.From != from:
		return &GateError{rank: rankFrom, Reason: fmt.Sprintf("the rehearsal rolled %s back to %s, but %s runs %s", rec.Release, rec.From, p.Env, from),
			Fix: fmt.Sprintf("relctl deploy --env %s --release %s, then %s", env.RequireRehearsal, from, rehearse)}
	}
	if skew := rec.Finished.Sub(o.Now); skew > maxClockSkew {
		return &GateError{rank: rankAge, Reason: fmt.Sprintf("the rehearsal of %s claims to have finished %s from now (%s): the clock of the machine that rehearsed (or this one) is wrong",
			rec.Release, skew.Round(time.Second), rec.Finished.Format(time.RFC3339)), Fix: "correct the clock, then " + rehearse}
	}
	if age := o.Now.Sub(rec.Finished); age > env.RehearsalMaxAge.Duration {
		return &GateError{rank: rankAge, Reason: fmt.Sprintf("the rehearsal of %s finished %s ago (%s); %s accepts rehearsals at most %s old (rehearsal_max_age)",
			rec.Release, age.Round(time.Minute), rec.Finished.Format(time.RFC3339), p.Env, env.RehearsalMaxAge.Duration), Fix: rehearse}
	}
	return nil
}

func rankOf(g *GateError) int { return g.rank }

// signerAllows says whether the allowed_signers line that let the key in
// lists principal.
func signerAllows(signers []signing.AllowedSigner, v *signing.Verification, principal string) bool {
	for _, s := range signers {
		if s.Line == v.Line && (v.Path == "" || s.Path == v.Path) {
			return s.AllowsPrincipal(principal)
		}
	}
	return false
}

func (o GateOptions) localCandidate(digest string) []candidate {
	sr, path, err := LoadLocal(o.StateDir, digest)
	if errors.Is(err, errNoRecord) {
		return nil
	}
	return []candidate{{source: path, signed: sr, readErr: err, fromLocal: true}}
}

// hostCandidates reads the record from every host of the rehearsal
// environment; it also returns the host names it looked at.
func (o GateOptions) hostCandidates(ctx context.Context, envName string, p *deploy.Plan) ([]candidate, []string) {
	env, err := o.Project.Environment(envName)
	if err != nil {
		return nil, nil
	}
	pb, ok := o.Project.Playbooks[p.Playbook]
	if !ok {
		return nil, nil
	}
	all := fleet.Hosts(o.Project, pb, env)
	names := make([]string, len(all))
	for i, h := range all {
		names[i] = h.Name
	}
	// A host whose layout is unknown has no record to offer: it is looked
	// at (named) but not read.
	hosts := slices.DeleteFunc(slices.Clone(all), func(h fleet.Host) bool { return h.Err != nil })
	found, errs := fleet.Read(ctx, o.Connector, hosts, max(o.MaxParallel, 1), func(ctx context.Context, h fleet.Host, conn transport.Conn) (*candidate, error) {
		sr, path, err := LoadFromHost(ctx, conn, h.Layout, p.Digest)
		if errors.Is(err, errNoRecord) {
			return nil, nil
		}
		return &candidate{source: h.Name + ":" + path, signed: sr, readErr: err}, nil
	})
	for i, err := range errs {
		if err != nil { // unreachable, not started, or a panic: this host's record is not readable
			found[i] = &candidate{source: hosts[i].Name + ":", readErr: err}
		}
	}
	var out []candidate
	for _, c := range found {
		if c != nil {
			out = append(out, *c)
		}
	}
	return out, names
}

// gatedFrom is the release the gated environment runs now, among the hosts
// the deploy changes. A note instead means no record is needed.
func gatedFrom(ctx context.Context, o GateOptions, p *deploy.Plan) (string, string, error) {
	var only []string
	for _, hp := range p.Hosts() {
		only = append(only, hp.Name)
	}
	f, err := ReadFleet(ctx, o.Connector, o.Project, p.Env, p.Playbook, only, o.MaxParallel)
	if err != nil {
		return "", "", err
	}
	if bad := f.Unreachable(); len(bad) > 0 {
		return "", "", &GateError{Reason: fmt.Sprintf("cannot read what %s runs: %s", p.Env, strings.Join(bad, "; ")),
			Fix: "bring the host back, or leave it out with --hosts"}
	}
	runs := map[string][]string{}
	empty := 0
	for _, h := range f.Hosts {
		if h.State == nil || (f.selected != nil && !f.selected[h.Name]) || h.State.Current == p.Version {
			continue
		}
		if h.State.Current == "" {
			empty++ // a new host: it has nothing to roll back to
			continue
		}
		runs[h.State.Current] = append(runs[h.State.Current], h.Name)
	}
	switch len(runs) {
	case 0:
		if empty > 0 {
			return "", fmt.Sprintf("no host of %s runs a release yet: a first deploy has no rollback to rehearse", p.Env), nil
		}
		return p.Version, fmt.Sprintf("every host of %s already runs %s", p.Env, p.Version), nil
	case 1:
		for v := range runs {
			return v, "", nil
		}
	}
	return "", "", &GateError{
		Reason: fmt.Sprintf("the hosts of %s run different releases (%s): no rehearsal started from all of them", p.Env, describeReleases(runs)),
		Fix:    fmt.Sprintf("finish the rollout or roll back first (relctl status --env %s)", p.Env),
	}
}

// withDifferences compares the recorded rehearsal environment with the
// gated one as it is now (best effort: the deploy reads its hosts anyway).
func (r *GateResult) withDifferences(ctx context.Context, o GateOptions) *GateResult {
	if r.Record == nil || r.Record.Fingerprint == nil {
		return r
	}
	now, err := ReadFingerprint(ctx, o.Connector, o.Project, o.Plan.Env, o.Plan.Playbook, o.MaxParallel)
	if err != nil {
		return r
	}
	for _, d := range CompareFingerprints(r.Record.Fingerprint, now) {
		if d.Key == "current release" {
			continue // the rehearsal environment ran the gated one's release: checked above
		}
		r.Differences = append(r.Differences, d)
	}
	sort.SliceStable(r.Differences, func(i, j int) bool { return r.Differences[i].Key < r.Differences[j].Key })
	return r
}

func mustPlaybooks(proj *playbooks.Project, env string) []*playbooks.Playbook {
	pbs, _ := proj.PlaybooksFor(env)
	return pbs
}

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/fleet"
	"github.com/relctl/relctl/internal/output"
	"github.com/relctl/relctl/internal/shellquote"
	"github.com/relctl/relctl/internal/signing"
	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/playbooks"
	"github.com/relctl/relctl/rollback"
)

// RehearseOptions are `relctl rehearse`'s inputs.
type RehearseOptions struct {
	IO          *output.IOStreams
	Project     func() (*playbooks.Project, error)
	StateDir    func(*playbooks.Config) string
	OpenSession openSessionFunc

	Env      string
	Release  string
	Playbook string
	FailAt   string
	For      string
	JUnit    string
	viewFlags
}

func newCmdRehearse(f *Factory, runF func(*RehearseOptions) error) *cobra.Command {
	opts := &RehearseOptions{IO: f.IOStreams, Project: f.Project, StateDir: f.StateDir, OpenSession: f.OpenSession}
	cmd := &cobra.Command{
		Use:   "rehearse --env ENV --release VERSION",
		Short: "Deploy a release to staging, force a failure, let the automatic rollback run, then deploy it again",
		Long: `Rehearse proves, before production needs it, that the rollback path works
for this exact release from this exact starting release. It deploys the
release to the environment (staging) with a failure forced at a chosen point,
lets the automatic rollback that production uses undo it (nothing about that
path is special), checks that the previous release is healthy and supervised
(monit is made to restart it), and finally deploys the release again so the
environment ends on it.

The rehearsal must start where production is: the environment that requires
this rehearsal (require_rehearsal in relctl.toml) must run one release, and
the rehearsal environment must run the same one. If it does not, rehearse
says so and shows the command that puts it there (exit 6).

--fail-at chooses the failure: a phase (stage, activate, verify, cutover,
post: the failure comes after the phase's last step), a step ("activate/restart"),
or all (one cycle at each phase boundary from stage to cutover). The default,
cutover, is the costliest place to fail: the release is active and verified
everywhere. The failure is forced on every host of the last batch, so by
then every host has been switched and every host is rolled back.

The result is a rehearsal record (JSON: release digest, from and to
versions, the environment's fingerprint, each cycle's timings, relctl
version, operator), signed in the SSHSIG format with the namespace
relctl-rehearsal ([rehearsal] signing_key, default ssh.identity_file), and
stored as <digest>.json and <digest>.json.sig in the state directory and in
every host's <base_dir>/.relctl/rehearsals/. Failed rehearsals are recorded
too, marked failed. Verify one with:
  ssh-keygen -Y verify -f allowed_signers -I SIGNER -n relctl-rehearsal -s REC.json.sig < REC.json

Exit 0 when the rehearsal passed; 3 when it failed and every host is healthy
on one release; 4 when hosts were left unresolved; 6 when it was refused
before it started.`,
		Example: `  relctl rehearse --env staging --release 1.1.0
  relctl rehearse --env staging --release 1.1.0 --fail-at all --junit rehearsal.xml
  relctl rehearse --env staging --release 1.1.0 --fail-at activate/restart`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag(cmd, "env", opts.Env); err != nil {
				return err
			}
			if err := requireFlag(cmd, "release", opts.Release); err != nil {
				return err
			}
			if err := opts.viewFlags.check(); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return rehearseRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVarP(&opts.Env, "env", "e", "", "the rehearsal environment (e.g. staging)")
	cmd.Flags().StringVarP(&opts.Release, "release", "r", "", "release version to rehearse")
	cmd.Flags().StringVar(&opts.Playbook, "playbook", "", "playbook, when the environment has several")
	cmd.Flags().StringVar(&opts.FailAt, "fail-at", "cutover", "where to force the failure: a phase, a step (phase/name), or all")
	cmd.Flags().StringVar(&opts.For, "for", "", "the gated environment to start from, when several require this rehearsal")
	cmd.Flags().StringVar(&opts.JUnit, "junit", "", "also write the result as JUnit XML to this file (one testcase per cycle)")
	opts.viewFlags.AddFlags(cmd.Flags())
	return cmd
}

func rehearseRun(ctx context.Context, opts *RehearseOptions) error {
	proj, err := opts.Project()
	if err != nil {
		return err
	}
	cfg := proj.Config
	signer, signerName, err := rehearsalSigner(cfg)
	if err != nil {
		return err
	}
	id := "rehearse-" + state.NewRunID(time.Now())
	sess, err := opts.OpenSession(cfg, id, false)
	if err != nil {
		return err
	}
	defer sess.Close()
	sess.view = opts.viewFlags
	stateDir := opts.StateDir(cfg)
	fmt.Fprintf(opts.IO.ErrOut, "Rehearsal %s: %s in %s (run log %s)\n", id, opts.Release, opts.Env, sess.logPath)
	runner := &rehearsalRunner{proj: proj, sess: sess, stateDir: stateDir}
	rec, err := rollback.Rehearse(ctx, runner, opts.rehearseOptions(proj, sess, signerName))
	if rec == nil {
		return err
	}
	results := opts.viewFlags.resultsTo(opts.IO)
	printRehearsal(results, rec)
	if opts.JUnit != "" {
		if jerr := writeJUnitFile(opts.JUnit, rec); jerr != nil {
			err = errors.Join(err, jerr)
		} else {
			fmt.Fprintf(results, "JUnit: %s\n", opts.JUnit)
		}
	}
	if serr := storeRecord(ctx, opts.IO, proj, sess, stateDir, rec, signer); serr != nil {
		return errors.Join(err, serr)
	}
	notifyRehearsal(ctx, proj, sess, id, rec, err) // [[notify]] rehearsal-recorded
	return err
}

// rehearseOptions are the rehearsal's inputs for rollback.Rehearse: the
// flags, the session's connections, who runs and signs it.
func (opts *RehearseOptions) rehearseOptions(proj *playbooks.Project, sess *session, signerName string) rollback.RehearseOptions {
	return rollback.RehearseOptions{
		Env: opts.Env, Release: opts.Release, Playbook: opts.Playbook, FailAt: opts.FailAt, For: opts.For,
		Project: proj, Connector: sess.pool, MaxParallel: proj.Config.SSH.MaxParallel,
		NewRunID: func() string { return state.NewRunID(time.Now()) },
		Operator: state.Operator(), Controller: state.Controller(), Signer: signerName, RelctlVersion: version,
		Say: func(format string, args ...any) { fmt.Fprintf(opts.IO.ErrOut, "\n==> "+format+"\n", args...) },
	}
}

// rehearsalSigner loads the key that signs records and the principal it
// signs as.
func rehearsalSigner(cfg *playbooks.Config) (ssh.Signer, string, error) {
	keyPath := cfg.Rehearsal.SigningKey
	where := cfg.Where("rehearsal.signing_key")
	if keyPath == "" {
		keyPath, where = cfg.SSH.IdentityFile, cfg.Where("ssh.identity_file")
	}
	if keyPath == "" {
		return nil, "", usageErrorf("rehearse signs its record and needs a key: set [rehearsal] signing_key (or ssh.identity_file) in %s", cfg.Path)
	}
	signer, err := signing.LoadSigner(cfg.ResolvePath(keyPath))
	if err != nil {
		return nil, "", &usageError{fmt.Errorf("rehearsal signing key (%s): %w", where, err)}
	}
	name := cfg.Rehearsal.Signer
	if name == "" {
		name = principalFor(cfg, signer.PublicKey())
	}
	return signer, name, nil
}

// principalFor is the name the key has in a gated environment's
// allowed_signers (its first principal that is not a pattern), so the
// record names the principal the gate and `ssh-keygen -Y verify -I` check;
// else the operator.
func principalFor(cfg *playbooks.Config, key ssh.PublicKey) string {
	for _, name := range sortedKeys(cfg.Environments) {
		env := cfg.Environments[name]
		if env.AllowedSigners == "" {
			continue
		}
		path := cfg.ResolvePath(env.AllowedSigners)
		body, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		signers, err := signing.ParseAllowedSigners(path, body)
		if err != nil {
			continue
		}
		for _, s := range signers {
			if !bytes.Equal(s.Key.Marshal(), key.Marshal()) {
				continue
			}
			for _, p := range s.Principals {
				if !strings.ContainsAny(p, "*?!") {
					return p
				}
			}
		}
	}
	return state.Operator()
}

// rehearsalRunner runs a rehearsal's deploys like `relctl deploy` does, on
// the rehearsal's connections, each with its own journal.
type rehearsalRunner struct {
	proj     *playbooks.Project
	sess     *session
	stateDir string
}

func (r *rehearsalRunner) Run(ctx context.Context, p *deploy.Plan, observe deploy.Observer) (*deploy.Report, error) {
	journal, err := state.OpenJournal(r.stateDir, p.RunID)
	if err != nil {
		return nil, fmt.Errorf("opening journal: %w", err)
	}
	defer journal.Close()
	journal.SetRedactor(r.sess.secrets.Redact)
	engine := r.sess.newEngine(r.proj)
	engine.Journal = journal
	return r.sess.execute(ctx, engine, p, deploy.RunOptions{}, r.sess.errOut, observe)
}

func (r *rehearsalRunner) Check(ctx context.Context, opts deploy.CheckOptions) (*deploy.CheckReport, error) {
	return r.sess.newEngine(r.proj).Check(ctx, r.proj, opts)
}

// printRehearsal is the result on stdout: one row per cycle.
func printRehearsal(w io.Writer, rec *rollback.Record) {
	fmt.Fprintln(w)
	t := newTable(w, "CYCLE", "FAIL AT", "RESULT", "ROLLBACK", "HEALTHY AFTER", "STEPS UNDONE", "HOSTS")
	for i, c := range rec.Cycles {
		result := "passed"
		if !c.Passed {
			result = "FAILED"
		}
		rollbackTime, healthyAfter := "-", "-" // not measured: no host was rolled back
		if c.HostsRolledBack > 0 {
			rollbackTime, healthyAfter = fmt.Sprintf("%.1fs", c.RollbackSeconds), fmt.Sprintf("%.1fs", c.TimeToHealthySeconds)
		}
		t.row(fmt.Sprint(i+1), c.FailAt, result, rollbackTime, healthyAfter, fmt.Sprint(c.StepsUndone), fmt.Sprint(c.HostsRolledBack))
	}
	t.flush()
	if f := rec.Forward; f != nil {
		result := "ok"
		if !f.Passed {
			result = "FAILED: " + firstLine(f.Error)
		}
		fmt.Fprintf(w, "Forward: deploy %s again (run %s): %s\n", rec.Release, f.RunID, result)
	}
	if rec.Passed() {
		fmt.Fprintf(w, "Rehearsal PASSED: %s %s rolled back to %s in %s and deployed again.\n", rec.Playbook, rec.Release, rec.From, rec.Environment)
	} else {
		fmt.Fprintf(w, "Rehearsal FAILED: %s\n", rec.Reason)
	}
}

// storeRecord signs the record and keeps it in the state dir and on every
// host of the rehearsal environment.
func storeRecord(ctx context.Context, ios *output.IOStreams, proj *playbooks.Project, sess *session, stateDir string, rec *rollback.Record, signer ssh.Signer) error {
	signed, err := rollback.Sign(rec, signer)
	if err != nil {
		return err
	}
	local, err := rollback.SaveLocal(stateDir, rec, signed)
	if err != nil {
		return fmt.Errorf("saving the rehearsal record: %w", err)
	}
	// Also after an interrupt: the record of what happened must reach the hosts.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	targets, failed, err := envTargetConns(ctx, sess.pool, proj, rec.Environment)
	if err != nil {
		return err
	}
	errs := fleet.EachErrors(ctx, targets, proj.Config.SSH.MaxParallel, func(t state.LockTarget) string { return t.Host }, func(ctx context.Context, t state.LockTarget) error {
		return rollback.SaveOnHost(ctx, t.Conn, t.Layout, rec, signed)
	})
	var stored []string
	for i, err := range errs {
		if err != nil {
			failed[targets[i].Host] = err
			continue
		}
		stored = append(stored, targets[i].Host)
	}
	slices.Sort(stored)
	w := sess.view.resultsTo(ios)
	fmt.Fprintf(w, "Record: %s (%s, signed by %s with %s)\n", relPath(local), rec.Result, rec.Signer, ssh.FingerprintSHA256(signer.PublicKey()))
	if len(stored) > 0 {
		fmt.Fprintf(w, "  also on %s: %s\n", someHosts(stored), filepath.Base(local))
	}
	for _, host := range sortedKeys(failed) {
		fmt.Fprintf(ios.ErrOut, "warning: the record could not be stored on %s: %v\n", host, failed[host])
	}
	fmt.Fprintf(w, "Verify: ssh-keygen -Y verify -f allowed_signers -I %s -n %s -s %s.sig < %s\n",
		shellquote.Quote(rec.Signer), signing.RehearsalNamespace, shellquote.Quote(relPath(local)), shellquote.Quote(relPath(local)))
	if len(stored) == 0 {
		// A production deploy from another machine reads the record from
		// staging's hosts: only this machine has it now.
		return fmt.Errorf("the rehearsal record reached no host of %s (only %s): store it again by rehearsing again once they are reachable", rec.Environment, relPath(local))
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func relPath(p string) string {
	if wd, err := os.Getwd(); err == nil {
		if r, err := filepath.Rel(wd, p); err == nil && !strings.HasPrefix(r, "..") {
			return r
		}
	}
	return p
}

func writeJUnitFile(path string, rec *rollback.Record) error {
	var b bytes.Buffer
	if err := rollback.WriteJUnit(&b, rec); err != nil {
		return err
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("writing JUnit: %w", err)
	}
	return nil
}

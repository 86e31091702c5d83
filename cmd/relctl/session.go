package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/output"
	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/internal/transport"
	"github.com/relctl/relctl/playbooks"
)

// session is what a run against hosts needs: run log, journal, connections;
// and where its progress goes, and the interrupt that stops it.
type session struct {
	stateDir string
	logPath  string
	log      *transport.RunLog
	journal  *state.Journal
	pool     *transport.Pool
	errOut   io.Writer
	stop     <-chan struct{}
	// ios is the terminal (a live view takes stderr's over); view, the
	// command's -v and --output.
	ios  *output.IOStreams
	view viewFlags
	// secrets are resolved by the first run that needs them, and masked
	// in the run log and the journal.
	secrets *playbooks.Secrets
}

func (s *session) Close() {
	if s.pool != nil {
		s.pool.Close()
	}
	if s.journal != nil {
		s.journal.Close()
	}
	s.log.Close()
}

// lazySession opens its session when a host is first needed (deploy.Prepare
// may read the hosts, or may fail before it does), so a deploy whose plan
// cannot be built leaves no run log or journal behind. It is the
// deploy.Connector of the session's connections.
type lazySession struct {
	open func() (*session, error)
	mu   sync.Mutex
	sess *session
	err  error
}

func (l *lazySession) get() (*session, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sess == nil && l.err == nil {
		l.sess, l.err = l.open()
	}
	return l.sess, l.err
}

func (l *lazySession) Get(ctx context.Context, t transport.Target) (transport.Conn, error) {
	s, err := l.get()
	if err != nil {
		return nil, err
	}
	return s.pool.Get(ctx, t)
}

func (l *lazySession) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sess != nil {
		l.sess.Close()
	}
}

// runPlan executes p on the connections the session already has (the
// ones that read the hosts to plan it: one SSH connection per host for the
// whole command), journaling it under the plan's run id.
func (s *session) runPlan(ctx context.Context, out io.Writer, proj *playbooks.Project, p *deploy.Plan, opts deploy.RunOptions) error {
	if s.journal == nil {
		var err error
		if s.journal, err = state.OpenJournal(s.stateDir, p.RunID); err != nil {
			return fmt.Errorf("opening journal: %w", err)
		}
		s.journal.SetRedactor(s.secrets.Redact)
	}
	_, err := s.execute(ctx, s.newEngine(proj), p, opts, out, nil)
	return err
}

// newEngine is an engine on the session's connections, configured from relctl.toml.
func (s *session) newEngine(proj *playbooks.Project) *deploy.Engine {
	return &deploy.Engine{
		Connector: s.pool, Log: s.log, Journal: s.journal,
		Operator: state.Operator(), Controller: state.Controller(),
		MaxParallel: proj.Config.SSH.MaxParallel, Stop: s.stop, LockTTL: proj.Config.LockTTL.Duration,
		Backoff: reconnectBackoff(proj.Config.SSH),
	}
}

// execute runs p on engine with the run's decisions (opts), shows it on
// stderr and, with --output json, its events on stdout (runView; every
// event goes on to also, when set), and writes the result table to out
// (stderr with --output json) and what to do next on a failure.
func (s *session) execute(ctx context.Context, engine *deploy.Engine, p *deploy.Plan, opts deploy.RunOptions, out io.Writer, also deploy.Observer) (*deploy.Report, error) {
	if opts.Secrets == nil {
		opts.Secrets = s.secrets
	}
	view := s.newRunView(p, opts, also)
	engine.Observe = view.observe
	rep, err := engine.Run(ctx, p, opts)
	view.close()
	if s.view.json() {
		out = s.errOut
	}
	var locked *state.LockedError
	if errors.As(err, &locked) {
		return rep, err
	}
	printReport(out, rep)
	var failure *deploy.Failure
	if errors.As(err, &failure) {
		printFailureHelp(s.errOut, p, rep, s.logPath)
	}
	return rep, err
}

// reconnectBackoff is the wait before each reconnect attempt: base, doubling.
func reconnectBackoff(s playbooks.SSHConfig) []time.Duration {
	out := make([]time.Duration, s.ReconnectAttempts)
	d := s.ReconnectBackoff.Duration
	for i := range out {
		out[i] = d
		d *= 2
	}
	return out
}

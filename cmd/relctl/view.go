package main

import (
	"io"

	"github.com/spf13/pflag"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/output"
)

// viewFlags say how a run that changes hosts shows itself (deploy,
// rollback, rehearse, finalize): -v for every host's every step, and
// --output json for its events on stdout.
type viewFlags struct {
	Verbose bool
	Output  string
}

func (v *viewFlags) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVarP(&v.Verbose, "verbose", "v", false, "print every host's every step (without it: a line per batch and phase, and every failure)")
	fs.StringVarP(&v.Output, "output", "o", "text", `"json": the run's events on stdout, a JSON object per line (schema relctl.event/v1); the rest goes to stderr`)
}

// check refuses an unknown --output.
func (v *viewFlags) check() error { return checkFormat(v.Output) }

func (v viewFlags) json() bool { return v.Output == "json" }

// resultsTo is where a command's results go: stdout, or with --output
// json (stdout carries the events alone) stderr.
func (v viewFlags) resultsTo(ios *output.IOStreams) io.Writer {
	if v.json() {
		return ios.ErrOut
	}
	return ios.Out
}

// runView is how one run is shown: the console on stderr (a live view on
// a terminal, else a line per batch and phase), the events on stdout with
// --output json, and an observer of the caller's (also).
type runView struct {
	tally  *tally
	lines  *progress
	events *eventStream
	also   deploy.Observer
	// live is the live view, made when the run starts if liveOn (a run
	// refused before it starts leaves the terminal alone).
	live   *liveView
	liveOn *output.IOStreams
	redact func(string) string
}

// newRunView starts showing run p of session s (opts: the run's own, for
// the hosts a resumed run skips).
func (s *session) newRunView(p *deploy.Plan, opts deploy.RunOptions, also deploy.Observer) *runView {
	v := &runView{tally: newTally(p, opts.Skip), also: also}
	v.lines = newProgress(s.errOut, s.logPath)
	v.lines.verbose, v.lines.tally = s.view.Verbose, v.tally
	redact := s.secrets.Redact
	if s.ios != nil && s.ios.CanRedraw() && !(s.view.json() && s.ios.IsStdoutTTY()) {
		// Bars on the terminal (unless the events go to the same one).
		v.liveOn, v.redact = s.ios, redact
	}
	if s.view.json() && s.ios != nil {
		v.events = newEventStream(s.ios.Out, redact)
		v.events.gateFrom = opts.Gate.From
	}
	return v
}

// observe is the run's Observer.
func (v *runView) observe(ev deploy.Event) {
	v.tally.observe(ev)
	if ev.Kind == deploy.RunStarted && v.liveOn != nil && v.live == nil {
		v.live = newLiveView(v.liveOn, ev.Plan, v.tally, v.redact)
	}
	if v.events != nil {
		v.events.observe(ev)
	}
	if v.live != nil {
		if ev.Kind == deploy.RunDone {
			// The bars end first: the run's last line, and the results
			// after it, go below them.
			v.live.close()
		} else {
			v.live.observe(ev)
		}
	}
	v.lines.observe(ev)
	if v.also != nil {
		v.also(ev)
	}
}

// close ends the live view, if the run ended without saying so.
func (v *runView) close() {
	if v.live != nil {
		v.live.close()
	}
}

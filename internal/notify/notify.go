package notify

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/relctl/relctl/internal/fanout"
	"github.com/relctl/relctl/playbooks"
)

// DefaultParallel is how many notifications are delivered at once.
const DefaultParallel = 4

// Options are what a Notifier needs besides its entries.
type Options struct {
	// Secret resolves a secret a webhook refers to (once per run: the
	// caller's secrets cache it), or says why it cannot.
	Secret func(ctx context.Context, name string) (string, error)
	// Redact masks every resolved secret in a text (errors, response
	// bodies, the event); nil masks nothing.
	Redact func(string) string
	// Dir is where commands run (relctl.toml's directory).
	Dir string
	// DropEnv names environment variables commands do not inherit: the
	// ones [secrets] are read from.
	DropEnv []string
	// UserAgent is sent with every webhook request ("relctl/VERSION").
	UserAgent string
	// Parallel bounds the deliveries at once; default DefaultParallel.
	Parallel int
	// Delivered, when set, is told how each delivery went (err nil: it
	// was accepted), e.g. for the run log. Called from many goroutines.
	Delivered func(name, event string, took time.Duration, err error)
}

// Notifier delivers events to the [[notify]] entries that want them.
type Notifier struct {
	entries []*playbooks.NotifyConfig
	opts    Options
	client  *http.Client
}

// New is a notifier for entries (relctl.toml's [[notify]]).
func New(entries []*playbooks.NotifyConfig, opts Options) *Notifier {
	if opts.Parallel <= 0 {
		opts.Parallel = DefaultParallel
	}
	if opts.Redact == nil {
		opts.Redact = func(s string) string { return s }
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "relctl"
	}
	return &Notifier{entries: entries, opts: opts, client: newClient()}
}

// Error is a notification that could not be delivered: the entry's name
// and why, masked.
type Error struct {
	Name string
	Err  error
}

func (e *Error) Error() string { return "notify " + e.Name + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// masked is an error whose message went through Redact; it still unwraps
// to the original, for errors.Is (a timeout).
type masked struct {
	msg string
	err error
}

func (m *masked) Error() string { return m.msg }
func (m *masked) Unwrap() error { return m.err }

// Wants says whether any entry is told about event in env (the caller can
// skip building it).
func (n *Notifier) Wants(event, env string) bool {
	return slices.ContainsFunc(n.entries, func(c *playbooks.NotifyConfig) bool { return c.Wants(event, env) })
}

// delivery is one entry's copy of an event.
type delivery struct {
	entry *playbooks.NotifyConfig
	event Event
}

// Fire delivers ev to every entry that wants it (one message per entry,
// typed as the first of ev.Type and ev.Also it asked for), at most
// Parallel at a time, each bounded by its timeout, and returns once all
// have ended: an *Error for each that failed. ctx cancels them all; pass
// a context that outlives an interrupt for a run's last word.
func (n *Notifier) Fire(ctx context.Context, ev Event) []error {
	var ds []delivery
	for _, c := range n.entries {
		if typ, ok := typeFor(c, ev); ok {
			e := ev
			e.Type = typ
			e.Schema = SchemaVersion
			if e.Time.IsZero() {
				e.Time = time.Now().UTC()
			}
			e.Detail = n.opts.Redact(e.Detail)
			e.Summary = n.opts.Redact(e.Text())
			ds = append(ds, delivery{entry: c, event: e})
		}
	}
	errs := fanout.ForEach(ctx, len(ds), n.opts.Parallel, func(i int) string { return "" }, func(ctx context.Context, i int) error {
		return n.deliver(ctx, ds[i])
	})
	var out []error
	for i, err := range errs {
		var named *Error
		switch {
		case err == nil:
		case errors.As(err, &named):
			out = append(out, err)
		default: // a panic, or not started: ctx ended first
			out = append(out, &Error{Name: ds[i].entry.Name, Err: &masked{msg: n.opts.Redact(err.Error()), err: err}})
		}
	}
	return out
}

// typeFor is the event type entry c gets for ev, if any.
func typeFor(c *playbooks.NotifyConfig, ev Event) (string, bool) {
	for _, t := range append([]string{ev.Type}, ev.Also...) {
		if c.Wants(t, ev.Env) {
			return t, true
		}
	}
	return "", false
}

// deliver sends one entry its event within the entry's timeout.
func (n *Notifier) deliver(ctx context.Context, d delivery) error {
	start := time.Now()
	timeout := d.entry.TimeoutOrDefault()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var err error
	if d.entry.Webhook != "" {
		err = n.post(ctx, d.entry, d.event)
	} else {
		err = n.runCommand(ctx, d.entry, d.event)
	}
	if err != nil && ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = &masked{msg: fmt.Sprintf("no answer within %v", timeout), err: context.DeadlineExceeded}
	}
	if err != nil {
		err = &Error{Name: d.entry.Name, Err: &masked{msg: n.opts.Redact(err.Error()), err: err}}
	}
	if n.opts.Delivered != nil {
		n.opts.Delivered(d.entry.Name, d.event.Type, time.Since(start), err)
	}
	return err
}

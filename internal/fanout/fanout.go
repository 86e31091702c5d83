// Package fanout runs one piece of work per host, many hosts at once: at most
// a given number at a time, none started once the context is done, and a
// panic in one host's work turned into that host's error (its stack handed
// to the context's recorder, e.g. the run log) instead of killing relctl
// with the other hosts half-done and their locks left behind. Every
// goroutine relctl starts goes through here (TestGoStatements keeps it so).
package fanout

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
)

// PanicError is a panic recovered from one host's work: a bug in relctl
// (which a misbehaving host may have triggered), never the host's own fault.
type PanicError struct {
	Host  string // "" for work that is not one host's
	Value any    // what was passed to panic
	Stack []byte // the panicking goroutine's stack
	// StackAt is where the recorder wrote the stack ("" when nowhere).
	StackAt string
}

func (e *PanicError) Error() string {
	msg := fmt.Sprintf("internal error (panic) in relctl: %v", e.Value)
	if e.Host != "" {
		msg = e.Host + ": " + msg
	}
	if e.StackAt != "" {
		msg += "; the stack is in " + e.StackAt
	}
	return msg
}

// Recorder keeps a recovered panic's stack somewhere a person can read it
// later (the run log) and returns where, for the error message.
type Recorder func(*PanicError) (where string)

type recorderKey struct{}

// WithRecorder returns ctx carrying rec: Guard, ForEach and Go hand it every
// panic they recover, before returning it as an error. The innermost
// recorder wins: the engine routes its hosts' panics to its run log.
func WithRecorder(ctx context.Context, rec Recorder) context.Context {
	return context.WithValue(ctx, recorderKey{}, rec)
}

// Recovered turns a recovered panic value into a *PanicError for host, with
// the current goroutine's stack, and records it. Call it only from the
// deferred function that called recover (Guard does).
func Recovered(ctx context.Context, host string, v any) *PanicError {
	p := &PanicError{Host: host, Value: v, Stack: debug.Stack()}
	if rec, ok := ctx.Value(recorderKey{}).(Recorder); ok && rec != nil {
		p.StackAt = rec(p)
	}
	return p
}

// Guard runs fn and returns its error; a panic in fn is returned as a
// *PanicError for host instead.
func Guard(ctx context.Context, host string, fn func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = Recovered(ctx, host, v)
		}
	}()
	return fn()
}

// ForEach runs fn(ctx, i) for i in [0, n), at most limit at once (all at
// once when limit <= 0), and returns the errors by index; host(i) names
// item i's host. An item not yet started when ctx ends gets "<host>: not
// started: <cause>"; a panic in fn is that item's *PanicError, and the
// other items go on.
func ForEach(ctx context.Context, n, limit int, host func(i int) string, fn func(ctx context.Context, i int) error) []error {
	if limit <= 0 || limit > n {
		limit = n
	}
	errs := make([]error, n)
	// limit workers take the items in order: no goroutine (and its stack)
	// waits per item, which at 1,000 hosts is most of them.
	var next atomic.Int64
	var wg sync.WaitGroup
	for range limit {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				name := host(i)
				if ctx.Err() != nil {
					errs[i] = fmt.Errorf("%s: not started: %w", name, context.Cause(ctx))
					continue
				}
				errs[i] = Guard(ctx, name, func() error { return fn(ctx, i) })
			}
		}()
	}
	wg.Wait()
	return errs
}

// Go runs fn on a goroutine of its own, for the few that are not one host's
// work (signal and lock watchers): a panic in fn is recorded and then passed
// to onPanic (nil: only recorded) rather than killing relctl.
func Go(ctx context.Context, what string, fn func(), onPanic func(*PanicError)) {
	go func() {
		defer func() {
			if v := recover(); v != nil {
				p := Recovered(ctx, "", fmt.Sprintf("%s: %v", what, v))
				if onPanic != nil {
					onPanic(p)
				}
			}
		}()
		fn()
	}()
}

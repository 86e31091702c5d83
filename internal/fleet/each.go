package fleet

import (
	"context"
	"fmt"
	"strings"

	"github.com/hashicorp/go-multierror"
	"github.com/rs/zerolog"

	"github.com/relctl/relctl/internal/fanout"
)

// Map runs fn for every item, at most limit at once (all at once when
// limit <= 0), and returns each item's result and error by index. fn's
// context carries a logger with the item's host (name(item)). An item not
// started when ctx ends gets "<host>: not started: <cause>", and a panic in
// fn is that item's *fanout.PanicError (its result the zero R); the other
// items go on.
func Map[T, R any](ctx context.Context, items []T, limit int, name func(T) string, fn func(context.Context, T) (R, error)) ([]R, []error) {
	results := make([]R, len(items))
	errs := fanout.ForEach(ctx, len(items), limit, func(i int) string { return name(items[i]) }, func(ctx context.Context, i int) error {
		ctx = zerolog.Ctx(ctx).With().Str("host", name(items[i])).Logger().WithContext(ctx)
		var err error
		results[i], err = fn(ctx, items[i])
		return err
	})
	return results, errs
}

// EachErrors is Map for work that only fails: each item's error by index.
// Use it when every host's outcome is kept apart (a fleet read's per-host
// error); Each when the failures are one error.
func EachErrors[T any](ctx context.Context, items []T, limit int, name func(T) string, fn func(context.Context, T) error) []error {
	_, errs := Map(ctx, items, limit, name, func(ctx context.Context, item T) (struct{}, error) {
		return struct{}{}, fn(ctx, item)
	})
	return errs
}

// Each is EachErrors with the failures collected by Join: nil when every
// item succeeded, else a *multierror.Error in item order, one host per
// line. fn's errors should name their host, as not-started and panic
// errors do.
func Each[T any](ctx context.Context, items []T, limit int, name func(T) string, fn func(context.Context, T) error) error {
	return Join(EachErrors(ctx, items, limit, name, fn))
}

// Join collects the non-nil errors, in order, into a *multierror.Error that
// prints as Format does; nil when there are none.
func Join(errs []error) error {
	var all *multierror.Error
	for _, err := range errs {
		if err != nil {
			all = multierror.Append(all, err)
		}
	}
	if all == nil {
		return nil
	}
	all.ErrorFormat = Format
	return all
}

// Format prints one host's error as itself, and several as a count and one
// "  - " line each (a multi-line error indented under its dash), so the
// hosts stay apart on the terminal. It is multierror's ErrorFormat.
func Format(errs []error) string {
	if len(errs) == 1 {
		return errs[0].Error()
	}
	lines := make([]string, len(errs))
	for i, err := range errs {
		lines[i] = "  - " + strings.ReplaceAll(err.Error(), "\n", "\n    ")
	}
	return fmt.Sprintf("%d hosts failed:\n%s", len(errs), strings.Join(lines, "\n"))
}

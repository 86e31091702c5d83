package rollback

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/state"
)

// A rehearsal records only what says something about the release: a run
// that never got to try (locked out, a host unreachable, interrupted) writes
// no record at all.
func TestReleaseFailed(t *testing.T) {
	reached := &deploy.Report{Hosts: []*deploy.HostReport{{Name: "s-1", Reached: true}, {Name: "s-2", Reached: true}}}
	unreached := &deploy.Report{Hosts: []*deploy.HostReport{{Name: "s-1", Reached: true}, {Name: "s-2"}}}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		rep  *deploy.Report
		err  error
		want bool
	}{
		{"a step failed", context.Background(), reached, &deploy.Failure{Phase: "verify", Report: reached, Err: errors.New("health")}, true},
		{"no error", context.Background(), reached, nil, false},
		{"locked by another run", context.Background(), reached, fmt.Errorf("taking locks: %w", &state.LockedError{}), false},
		{"a host could not be locked", context.Background(), reached, &deploy.Failure{Phase: "preflight", Report: reached, Err: fmt.Errorf("%w: staging-lb: timeout", deploy.ErrNotLocked)}, false},
		{"a host unreachable", context.Background(), unreached, &deploy.Failure{Phase: "preflight", Report: unreached, Err: errors.New("dial")}, false},
		{"interrupted", context.Background(), reached, &deploy.Failure{Phase: "activate", Report: reached, Err: errors.New("stopped"), Interrupted: true}, false},
		{"aborted", cancelled, reached, context.Canceled, false},
		{"no report", context.Background(), nil, errors.New("plan"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := releaseFailed(tt.ctx, tt.rep, tt.err); got != tt.want {
				t.Errorf("releaseFailed = %v, want %v", got, tt.want)
			}
		})
	}
}

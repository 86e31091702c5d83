package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/fanout"
	"github.com/relctl/relctl/internal/output"
	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/playbooks"
	"github.com/relctl/relctl/rollback"
)

// Exit codes; README.md documents them.
const (
	exitOK          = 0
	exitError       = 1 // unexpected error
	exitUsage       = 2 // usage or configuration error
	exitFailedClean = 3 // deploy failed and every touched host was rolled back and is healthy (or none was touched)
	exitUnknown     = 4 // rollback failed, or hosts left changed, unhealthy or in an unknown state
	exitLocked      = 5 // a lock is held by another run
	exitRefused     = 6 // refused by a safety gate
	exitInterrupted = 130
)

// usageError is a command-line mistake (exit 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// silentError carries an exit code for a failure already explained on the terminal.
type silentError struct{ code int }

func (e *silentError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// exitCode is the one place that maps errors to exit codes and prints them.
func exitCode(io *output.IOStreams, err error) int {
	if err == nil {
		return exitOK
	}
	var silent *silentError
	if errors.As(err, &silent) {
		return silent.code
	}
	code, problems := exitCodeOf(err)
	if problems != nil {
		fmt.Fprintln(io.ErrOut, problems.Error())
		fmt.Fprintf(io.ErrOut, "relctl: %d configuration problem%s\n", len(problems), plural(len(problems)))
		return code
	}
	msg := strings.TrimPrefix(err.Error(), deploy.ErrBadInput.Error()+": ")
	fmt.Fprintf(io.ErrOut, "relctl: %s\n", msg)
	return code
}

// exitCodeOf is the exit code err means (and, for configuration problems,
// the problems, which are printed as a list): exitCode's, and a run's
// result event's.
func exitCodeOf(err error) (int, playbooks.Problems) {
	if err == nil {
		return exitOK, nil
	}
	var silent *silentError
	if errors.As(err, &silent) {
		return silent.code, nil
	}
	var problems playbooks.Problems
	var usage *usageError
	var failure *deploy.Failure
	var locked *state.LockedError
	var rehearsal *rollback.RehearsalFailed
	var panicked *fanout.PanicError
	var unrecorded *state.UnrecordedUnlockError
	var secret *playbooks.SecretError
	switch {
	case errors.As(err, &panicked) && !errors.As(err, &failure) && !errors.As(err, &rehearsal):
		// A bug in relctl outside a run (a run's report says what changed):
		// never exit 2, whatever else the error wraps.
		return exitError, nil
	case errors.As(err, &locked):
		return exitLocked, nil
	case errors.Is(err, rollback.ErrNothingToRollBackTo), errors.Is(err, deploy.ErrChecksFailed),
		errors.Is(err, rollback.ErrNotRehearsed), errors.Is(err, rollback.ErrRehearsalRefused), errors.Is(err, deploy.ErrGateChanged),
		errors.Is(err, rollback.ErrIncompatible), errors.Is(err, rollback.ErrCompatibilityUnknown),
		errors.Is(err, deploy.ErrMoveState):
		return exitRefused, nil
	case errors.As(err, &rehearsal):
		if len(rehearsal.Unresolved()) > 0 {
			return exitUnknown, nil
		}
		return exitFailedClean, nil
	case errors.As(err, &problems):
		return exitUsage, problems
	case errors.As(err, &usage), errors.Is(err, deploy.ErrBadInput), isCobraUsage(err), errors.As(err, &secret):
		return exitUsage, nil
	case errors.As(err, &failure):
		switch {
		case len(failure.Report.Unresolved()) > 0:
			return exitUnknown, nil
		case failure.Interrupted:
			return exitInterrupted, nil
		case failure.Report.Kind == deploy.KindRollback:
			return exitRefused, nil // a rollback that changed nothing: a gate (e.g. readiness) refused it
		}
		return exitFailedClean, nil
	case errors.Is(err, context.Canceled):
		return exitInterrupted, nil
	case errors.As(err, &unrecorded):
		// unlock removed the lock; only its history entry is missing, often
		// for an unreadable history.json: not a refusal (nothing was refused).
		return exitError, nil
	case errors.Is(err, state.ErrHostState):
		// Outside a run (finalize, a move back, status reads): relctl refuses
		// to act on on-host state it could not read; the error names the fix.
		return exitRefused, nil
	}
	return exitError, nil
}

// isCobraUsage recognises cobra's own argument errors.
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "required flag", "accepts ", "requires at least", "invalid argument", "flag needs an argument"} {
		if strings.HasPrefix(msg, p) || strings.Contains(msg, " "+p) {
			return true
		}
	}
	return false
}

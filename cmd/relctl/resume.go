package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/relctl/relctl/deploy"
	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/playbooks"
)

// resumeTarget finds env's interrupted deploy (deploy.FindResume decides
// which; its release must be opts.Release when that is given) and says
// what it found, with a warning per damaged journal.
func resumeTarget(ctx context.Context, opts *DeployOptions, proj *playbooks.Project) (*deploy.ResumePoint, error) {
	res, warnings, err := deploy.FindResume(ctx, deploy.ResumeRequest{
		StateDir: opts.StateDir(proj.Config), Env: opts.Env, Release: opts.Release,
		ReadLocks: func(ctx context.Context) ([]state.HostLockState, error) { return opts.ReadLocks(ctx, proj, opts.Env) },
	})
	printJournalWarnings(opts.IO.ErrOut, warnings)
	if err != nil {
		return nil, err
	}
	w, run := opts.IO.ErrOut, res.Run
	fmt.Fprintf(w, "Resuming run %s: deploy %s to %s (started %s by %s)\n", run.RunID, run.Release,
		opts.Env, run.Started.Local().Format(time.DateTime), run.Operator)
	if len(res.Point.Skip) > 0 {
		fmt.Fprintf(w, "Already finished by that run, skipped: %s\n", someHosts(sortedKeys(res.Point.Skip)))
	}
	return &res.Point, nil
}

func printJournalWarnings(w io.Writer, warnings []deploy.JournalWarning) {
	for _, jw := range warnings {
		warnJournals(w, jw.Problems, jw.Suffix)
	}
}

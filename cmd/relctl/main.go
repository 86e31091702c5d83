// Command relctl pushes releases across a cluster over SSH, canary then
// batches, health-checked, with a rollback path that is rehearsed.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/relctl/relctl/internal/output"
)

func main() {
	os.Exit(run(os.Args[1:], output.System()))
}

// run executes one command line and returns the process exit code.
func run(args []string, io *output.IOStreams) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd(io)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	return exitCode(io, err)
}

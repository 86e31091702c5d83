// Command relctl pushes releases across a cluster over SSH, canary then
// batches, health-checked, and rolls every touched host back when anything
// fails.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/relctl/relctl/internal/output"
)

func main() {
	os.Exit(run(os.Args[1:], output.System()))
}

// run executes one command line and returns the process exit code. The
// first SIGINT/SIGTERM asks the running command to stop starting new work
// (a deploy then rolls back); the second aborts at once.
func run(args []string, io *output.IOStreams) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := make(chan struct{})
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		n := 0
		for {
			select {
			case <-sigs:
				n++
				if n == 1 {
					fmt.Fprintln(io.ErrOut, "relctl: interrupt: starting no new work; running steps finish, then touched hosts are rolled back (interrupt again to abort at once)")
					close(stop)
					continue
				}
				fmt.Fprintln(io.ErrOut, "relctl: second interrupt: aborting now; the journal records where every host stopped")
				cancel()
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	root := newRootCmd(io, stop)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	return exitCode(io, err)
}

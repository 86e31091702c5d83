// Command relctl pushes releases across a cluster over SSH, canary then
// batches, health-checked, and rolls every touched host back when anything
// fails.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/relctl/relctl/internal/fanout"
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
	// A panic recovered outside a run (whose run log takes its own) is
	// written out in full on stderr.
	ctx = fanout.WithRecorder(ctx, stderrRecorder(io.ErrOut))
	stop := make(chan struct{})
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	fanout.Go(ctx, "handling signals", func() {
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
	}, nil)
	return runRoot(ctx, io, newRootCmd(io, stop), args)
}

// runRoot runs the command tree and maps its outcome to an exit code. A
// panic that reaches here (outside any host's work: those are that host's
// error) is a bug in relctl: it never exits 2, which promises "nothing
// changed, fix the configuration".
func runRoot(ctx context.Context, io *output.IOStreams, root *cobra.Command, args []string) (code int) {
	defer func() {
		if v := recover(); v != nil {
			code = internalError(io, root, args, fanout.Recovered(ctx, "", v))
		}
	}()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	return exitCode(io, err)
}

// changesHosts are the commands that can change hosts: a panic in them
// leaves the hosts not vouched for (exit 4).
var changesHosts = map[string]bool{"deploy": true, "rollback": true, "rehearse": true, "finalize": true, "unlock": true}

// internalError reports a panic that reached runRoot: exit 4 for a command
// that may have changed hosts, 1 for the others.
func internalError(io *output.IOStreams, root *cobra.Command, args []string, p *fanout.PanicError) (code int) {
	fmt.Fprintf(io.ErrOut, "relctl: %s\n", p.Error())
	code = exitUnknown
	defer func() {
		if recover() != nil { // naming the command failed too: assume the worst
			code = exitUnknown
		}
	}()
	name := ""
	if cmd, _, err := root.Find(args); err == nil && cmd != nil {
		for cmd.HasParent() && cmd.Parent() != root {
			cmd = cmd.Parent()
		}
		if cmd != root {
			name = cmd.Name()
		}
	}
	if !changesHosts[name] {
		return exitError
	}
	fmt.Fprintf(io.ErrOut, "relctl: %s may have changed hosts before it failed: look with `relctl status --env ENV`; `relctl history` shows what it did\n", name)
	return exitUnknown
}

// stderrRecorder writes a recovered panic and its stack to w, whole.
func stderrRecorder(w io.Writer) fanout.Recorder {
	var mu sync.Mutex
	return func(p *fanout.PanicError) string {
		mu.Lock()
		defer mu.Unlock()
		who := ""
		if p.Host != "" {
			who = " on " + p.Host
		}
		fmt.Fprintf(w, "relctl: internal error (panic)%s: %v\n%s", who, p.Value, p.Stack)
		return "the output above"
	}
}

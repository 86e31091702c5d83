// Command relctl pushes releases across a cluster over SSH, canary then
// batches, health-checked, and rolls every touched host back when anything
// fails.
package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	runtimepprof "runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/relctl/relctl/internal/fanout"
	"github.com/relctl/relctl/internal/output"
)

func main() {
	if os.Getenv("GOGC") == "" {
		// The heap relctl keeps is mostly per host (connections, reports);
		// collecting at 1.5x of it rather than 2x keeps a 1,000-host run's
		// memory about a quarter lower for a GC that runs about twice as
		// often (no measurable CPU: bench-fleet). GOGC still overrides.
		debug.SetGCPercent(50)
	}
	stopProfiling := startProfiling(os.Stderr)
	code := run(os.Args[1:], output.System())
	stopProfiling()
	os.Exit(code)
}

// startProfiling is a debugging aid, off unless its environment variables
// are set, and not part of relctl's interface:
//
//   - RELCTL_MEMPROFILE=path writes a heap profile to path when relctl
//     exits, and path.peak (heap profile) and path.peak.txt (RSS, heap,
//     stacks, goroutines) whenever the process's RSS reaches a new peak
//     (polled every 100ms, at least 4 MiB above the last one). "%p" in path
//     is replaced by relctl's pid.
//   - RELCTL_PPROF_ADDR=127.0.0.1:port serves net/http/pprof on that
//     loopback address (any other address is refused) for the run.
//
// The returned func writes the exit profile and stops the rest.
func startProfiling(errOut io.Writer) (stop func()) {
	var stops []func()
	if addr := os.Getenv("RELCTL_PPROF_ADDR"); addr != "" {
		if s, err := servePprof(addr); err != nil {
			fmt.Fprintf(errOut, "relctl: RELCTL_PPROF_ADDR: %v\n", err)
		} else {
			stops = append(stops, func() { _ = s.Close() })
		}
	}
	if path := os.Getenv("RELCTL_MEMPROFILE"); path != "" {
		path = strings.ReplaceAll(path, "%p", strconv.Itoa(os.Getpid()))
		stops = append(stops, watchPeakRSS(path, errOut))
	}
	return func() {
		for _, s := range stops {
			s()
		}
	}
}

// servePprof serves net/http/pprof on a loopback address only.
func servePprof(addr string) (*http.Server, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("%q: only a loopback address (127.0.0.1:port) is served", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	s := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	fanout.Go(context.Background(), "serving pprof", func() { _ = s.Serve(ln) }, nil)
	return s, nil
}

// watchPeakRSS writes path.peak(.txt) at each new RSS peak; its stop
// writes path, the heap at exit.
func watchPeakRSS(path string, errOut io.Writer) (stop func()) {
	done, exited := make(chan struct{}), make(chan struct{})
	fanout.Go(context.Background(), "watching peak RSS", func() {
		defer close(exited)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		var peak int64
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			if rss := readRSS(); rss > peak+4<<20 {
				peak = rss
				writeHeapProfile(path+".peak", errOut)
				writeMemStats(path+".peak.txt", rss)
			}
		}
	}, nil)
	return func() {
		close(done)
		<-exited
		runtime.GC()
		writeHeapProfile(path, errOut)
	}
}

// readRSS is the process's resident set in bytes (Linux), 0 elsewhere.
func readRSS() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(string(f[1]), 10, 64)
	return pages * int64(os.Getpagesize())
}

func writeHeapProfile(path string, errOut io.Writer) {
	f, err := os.Create(path)
	if err == nil {
		err = runtimepprof.Lookup("heap").WriteTo(f, 0)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintf(errOut, "relctl: RELCTL_MEMPROFILE: %v\n", err)
	}
}

func writeMemStats(path string, rss int64) {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	const mib = 1 << 20
	s := fmt.Sprintf("rss %.1f MiB\nheap_inuse %.1f MiB\nheap_alloc %.1f MiB\nheap_idle %.1f MiB\nheap_released %.1f MiB\n"+
		"next_gc %.1f MiB\nstack_inuse %.1f MiB\nsys %.1f MiB\nnum_gc %d\ngoroutines %d\n",
		float64(rss)/mib, float64(m.HeapInuse)/mib, float64(m.HeapAlloc)/mib, float64(m.HeapIdle)/mib, float64(m.HeapReleased)/mib,
		float64(m.NextGC)/mib, float64(m.StackInuse)/mib, float64(m.Sys)/mib, m.NumGC, runtime.NumGoroutine())
	_ = os.WriteFile(path, []byte(s), 0o600)
}

// abortKey holds the command's root context, which only the second
// interrupt (or the command's end) cancels.
type abortKey struct{}

func withAbort(ctx context.Context) context.Context { return context.WithValue(ctx, abortKey{}, ctx) }

// outlivingStop is a context that outlives ctx's own cancellation (a run's
// last word is still sent after its context ended) but not the second
// interrupt: then it is cancelled too.
func outlivingStop(ctx context.Context) context.Context {
	root, ok := ctx.Value(abortKey{}).(context.Context)
	if !ok {
		return context.WithoutCancel(ctx)
	}
	out, cancel := context.WithCancel(context.WithoutCancel(ctx))
	context.AfterFunc(root, cancel)
	return out
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
	ctx = withAbort(ctx)
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

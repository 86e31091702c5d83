package fanout_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relctl/relctl/internal/fanout"
)

func names(n int) func(int) string { return func(i int) string { return fmt.Sprintf("web-%d", i+1) } }

// TestForEachPanicIsThatHostsError: one host's panic is its error, with the
// stack, recorded once; every other host's work runs to completion.
func TestForEachPanicIsThatHostsError(t *testing.T) {
	var mu sync.Mutex
	var recorded []*fanout.PanicError
	ctx := fanout.WithRecorder(context.Background(), func(p *fanout.PanicError) string {
		mu.Lock()
		defer mu.Unlock()
		recorded = append(recorded, p)
		return "/runs/r1.log"
	})
	var done atomic.Int32
	errs := fanout.ForEach(ctx, 4, 2, names(4), func(ctx context.Context, i int) error {
		switch i {
		case 1:
			var m map[string]int
			m["boom"]++ // a nil map write: a runtime panic
		case 2:
			return errors.New("web-3: plain failure")
		}
		done.Add(1)
		return nil
	})
	if got := done.Load(); got != 2 {
		t.Errorf("%d hosts finished their work, want 2 (web-1 and web-4)", got)
	}
	if errs[0] != nil || errs[3] != nil {
		t.Errorf("errors for the healthy hosts: %v, %v", errs[0], errs[3])
	}
	if errs[2] == nil || errs[2].Error() != "web-3: plain failure" {
		t.Errorf("web-3: %v, want its own error untouched", errs[2])
	}
	var p *fanout.PanicError
	if !errors.As(errs[1], &p) {
		t.Fatalf("web-2: %v (%T), want a *fanout.PanicError", errs[1], errs[1])
	}
	want := "web-2: internal error (panic) in relctl: assignment to entry in nil map; the stack is in /runs/r1.log"
	if p.Error() != want {
		t.Errorf("web-2: %q\nwant %q", p.Error(), want)
	}
	if p.Host != "web-2" || !strings.Contains(string(p.Stack), "goroutine ") || !strings.Contains(string(p.Stack), "fanout_test.go") {
		t.Errorf("panic error: host %q, stack:\n%s\nwant host web-2 and the stack of the panicking function", p.Host, p.Stack)
	}
	if len(recorded) != 1 || recorded[0] != p {
		t.Errorf("recorded %d panics, want exactly the one returned", len(recorded))
	}
}

// TestForEachBounded: never more than limit at once; every item runs.
func TestForEachBounded(t *testing.T) {
	var running, peak, ran atomic.Int32
	errs := fanout.ForEach(context.Background(), 12, 3, names(12), func(context.Context, int) error {
		n := running.Add(1)
		for {
			old := peak.Load()
			if n <= old || peak.CompareAndSwap(old, n) {
				break
			}
		}
		time.Sleep(5 * time.Millisecond)
		running.Add(-1)
		ran.Add(1)
		return nil
	})
	if peak.Load() > 3 || ran.Load() != 12 {
		t.Errorf("peak %d at once (limit 3), %d of 12 ran", peak.Load(), ran.Load())
	}
	for i, err := range errs {
		if err != nil {
			t.Errorf("item %d: %v", i, err)
		}
	}
}

// TestForEachCancelled: once the context ends, no new item starts, and each
// says so under its host's name.
func TestForEachCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var started atomic.Int32
	errs := fanout.ForEach(ctx, 5, 1, names(5), func(ctx context.Context, i int) error {
		started.Add(1)
		cancel()
		return nil
	})
	if started.Load() != 1 {
		t.Errorf("%d items started after the cancel, want 1", started.Load())
	}
	notStarted := 0
	for _, err := range errs {
		if err != nil {
			if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), ": not started: ") {
				t.Errorf("error %q, want <host>: not started: context canceled", err)
			}
			notStarted++
		}
	}
	if notStarted != 4 {
		t.Errorf("%d items report not started, want 4: %v", notStarted, errs)
	}
}

// TestGuardWithoutRecorder: the panic still becomes an error, with its stack.
func TestGuardWithoutRecorder(t *testing.T) {
	err := fanout.Guard(context.Background(), "db-1", func() error { panic("parser met a line it did not expect") })
	var p *fanout.PanicError
	if !errors.As(err, &p) || p.StackAt != "" || len(p.Stack) == 0 {
		t.Fatalf("Guard = %v, want a *PanicError with a stack and no location", err)
	}
	if want := "db-1: internal error (panic) in relctl: parser met a line it did not expect"; err.Error() != want {
		t.Errorf("%q, want %q", err.Error(), want)
	}
	if err := fanout.Guard(context.Background(), "db-1", func() error { return nil }); err != nil {
		t.Errorf("Guard of a fine function = %v", err)
	}
}

// TestGoPanicIsReported: a watcher goroutine's panic is recorded and handed
// to onPanic, named after what the goroutine was doing.
func TestGoPanicIsReported(t *testing.T) {
	recorded := make(chan *fanout.PanicError, 1)
	ctx := fanout.WithRecorder(context.Background(), func(p *fanout.PanicError) string { recorded <- p; return "" })
	got := make(chan *fanout.PanicError, 1)
	fanout.Go(ctx, "watching the locks", func() { panic("lost") }, func(p *fanout.PanicError) { got <- p })
	select {
	case p := <-got:
		if p.Error() != "internal error (panic) in relctl: watching the locks: lost" {
			t.Errorf("%q", p.Error())
		}
		if r := <-recorded; r != p {
			t.Errorf("recorded %v, want the same panic", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("onPanic was not called")
	}
}

package output

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"testing"
)

// While a live view has stderr's terminal, what others write to ErrOut
// goes above the view; after release, to the terminal again. A write that
// finds the view ended goes to the terminal.
func TestTakeOverErrOut(t *testing.T) {
	var term, above bytes.Buffer
	ios := Test(nil, io.Discard, &term)
	var got io.Writer
	release := ios.TakeOverErrOut(func(terminal io.Writer) io.Writer {
		got = terminal
		return &above
	})
	if got != &term {
		t.Fatalf("the view draws on %v, want the terminal", got)
	}
	io.WriteString(ios.ErrOut, "warning\n")
	release()
	io.WriteString(ios.ErrOut, "after\n")
	if above.String() != "warning\n" || term.String() != "after\n" {
		t.Errorf("above %q, terminal %q; want the warning above, the rest on the terminal", above.String(), term.String())
	}

	term.Reset()
	release = ios.TakeOverErrOut(func(io.Writer) io.Writer { return endedView{} })
	io.WriteString(ios.ErrOut, "late\n")
	release()
	if term.String() != "late\n" {
		t.Errorf("a write the ended view refused: terminal %q", term.String())
	}
}

type endedView struct{}

func (endedView) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

// Writers on many goroutines while the view comes and goes (-race).
func TestTakeOverErrOutConcurrent(t *testing.T) {
	var mu sync.Mutex
	var term strings.Builder
	ios := Test(nil, io.Discard, writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return term.Write(p)
	}))
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				io.WriteString(ios.ErrOut, "x\n")
			}
		}()
	}
	for range 20 {
		release := ios.TakeOverErrOut(func(terminal io.Writer) io.Writer { return terminal })
		release()
	}
	wg.Wait()
	if n := strings.Count(term.String(), "x\n"); n != 800 {
		t.Errorf("%d lines reached the terminal, want 800", n)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

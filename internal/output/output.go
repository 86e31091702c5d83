// Package output owns relctl's terminal: the IO streams with TTY detection,
// the terminal a live view takes over, and the zerolog logger setup.
// Results go to Out, progress to ErrOut, diagnostics through the logger
// carried in the context.
package output

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/term"
)

// IOStreams are the process's standard streams, replaceable in tests.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer

	stdinTTY, stdoutTTY, stderrTTY bool
	// errTerm is ErrOut as made (a live view takes it over); stderrFd is
	// the descriptor whose size is the terminal's, -1 without one.
	errTerm  *divertable
	stderrFd int
}

// System returns the real standard streams.
func System() *IOStreams {
	errTerm := &divertable{w: os.Stderr}
	return &IOStreams{
		In: os.Stdin, Out: os.Stdout, ErrOut: errTerm,
		stdinTTY:  term.IsTerminal(int(os.Stdin.Fd())),
		stdoutTTY: term.IsTerminal(int(os.Stdout.Fd())),
		stderrTTY: term.IsTerminal(int(os.Stderr.Fd())),
		errTerm:   errTerm, stderrFd: int(os.Stderr.Fd()),
	}
}

// Test returns streams over buffers, none of them a TTY.
func Test(in io.Reader, out, errOut io.Writer) *IOStreams {
	errTerm := &divertable{w: errOut}
	return &IOStreams{In: in, Out: out, ErrOut: errTerm, errTerm: errTerm, stderrFd: -1}
}

// SetTTY marks the streams as terminals (tests of interactive paths).
func (s *IOStreams) SetTTY(stdin, stdout, stderr bool) {
	s.stdinTTY, s.stdoutTTY, s.stderrTTY = stdin, stdout, stderr
}

func (s *IOStreams) IsStdinTTY() bool  { return s.stdinTTY }
func (s *IOStreams) IsStdoutTTY() bool { return s.stdoutTTY }
func (s *IOStreams) IsStderrTTY() bool { return s.stderrTTY }

// CanPrompt says whether a question can be asked and answered.
func (s *IOStreams) CanPrompt() bool { return s.stdinTTY && s.stderrTTY }

// CanRedraw says whether stderr is a terminal a live view can redraw in
// place (not one that says it cannot move the cursor: TERM=dumb).
func (s *IOStreams) CanRedraw() bool { return s.stderrTTY && os.Getenv("TERM") != "dumb" }

// StderrWidth is the width of stderr's terminal in columns; without one
// (or when it cannot be read), 100.
func (s *IOStreams) StderrWidth() int {
	if s.stderrTTY && s.stderrFd >= 0 {
		if w, _, err := term.GetSize(s.stderrFd); err == nil && w > 0 {
			return w
		}
	}
	return 100
}

// TakeOverErrOut is for a live view that redraws ErrOut's terminal: view
// gets that terminal to draw on and returns the writer that prints above
// the view; until release, everything written to ErrOut (progress lines,
// warnings, the interrupt notice) goes there. Streams not made by System
// or Test are not diverted.
func (s *IOStreams) TakeOverErrOut(view func(terminal io.Writer) (above io.Writer)) (release func()) {
	if s.errTerm == nil {
		view(s.ErrOut)
		return func() {}
	}
	s.errTerm.divert(view(s.errTerm.w))
	return func() { s.errTerm.divert(nil) }
}

// divertable is the writer under ErrOut that a live view can divert.
type divertable struct {
	mu    sync.Mutex
	w     io.Writer // the stream itself
	above io.Writer // while a live view has it: where writes go
}

func (d *divertable) Write(p []byte) (int, error) {
	d.mu.Lock()
	above := d.above
	d.mu.Unlock()
	if above != nil {
		if n, err := above.Write(p); err == nil {
			return n, nil
		}
		// The view ended while this was written: the terminal is free.
	}
	return d.w.Write(p)
}

func (d *divertable) divert(above io.Writer) {
	d.mu.Lock()
	d.above = above
	d.mu.Unlock()
}

// Confirm asks a yes/no question on ErrOut; only "y" or "yes" is a yes.
// Closing cancel (an interrupt) abandons the question with context.Canceled.
func (s *IOStreams) Confirm(question string, cancel <-chan struct{}) (bool, error) {
	fmt.Fprintf(s.ErrOut, "%s [y/N] ", question)
	type answer struct {
		line string
		err  error
	}
	ch := make(chan answer, 1)
	go func() {
		line, err := bufio.NewReader(s.In).ReadString('\n')
		ch <- answer{line, err}
	}()
	var a answer
	select {
	case a = <-ch:
	case <-cancel:
		fmt.Fprintln(s.ErrOut)
		return false, context.Canceled
	}
	if a.err != nil && a.err != io.EOF {
		return false, a.err
	}
	switch strings.ToLower(strings.TrimSpace(a.line)) {
	case "y", "yes":
		return true, nil
	}
	return false, nil
}

// NewLogger builds the diagnostics logger: console format on a TTY (or when
// asked), JSON lines otherwise. level is a zerolog level name.
func NewLogger(w io.Writer, format, level string, tty bool) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(strings.ToLower(level))
	if err != nil || level == "" {
		return zerolog.Nop(), fmt.Errorf("invalid --log-level %q (use debug, info, warn or error)", level)
	}
	switch format {
	case "", "auto":
		if tty {
			format = "console"
		} else {
			format = "json"
		}
	case "console", "json":
	default:
		return zerolog.Nop(), fmt.Errorf("invalid --log-format %q (use console or json)", format)
	}
	if format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly, NoColor: !tty}
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

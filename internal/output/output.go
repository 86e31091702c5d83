// Package output owns relctl's terminal: the IO streams with TTY detection,
// and the zerolog logger setup. Results go to Out, progress to ErrOut,
// diagnostics through the logger carried in the context.
package output

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
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
}

// System returns the real standard streams.
func System() *IOStreams {
	return &IOStreams{
		In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr,
		stdinTTY:  term.IsTerminal(int(os.Stdin.Fd())),
		stdoutTTY: term.IsTerminal(int(os.Stdout.Fd())),
		stderrTTY: term.IsTerminal(int(os.Stderr.Fd())),
	}
}

// Test returns streams over buffers, none of them a TTY.
func Test(in io.Reader, out, errOut io.Writer) *IOStreams {
	return &IOStreams{In: in, Out: out, ErrOut: errOut}
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

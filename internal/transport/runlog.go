package transport

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// RunLog is the per-run command log: every command, its output lines and
// how it ended, per host, plus the engine's events. Safe for concurrent use;
// a nil *RunLog discards everything.
//
// One goroutine at a time writes, outside mu; the lines others add
// meanwhile go out together in its next write (a group commit: at 1,000
// hosts a run logs some 200,000 lines, and hundreds of goroutines used to
// queue on one write(2) each). A line is in the file when line returns.
type RunLog struct {
	mu   sync.Mutex
	f    *os.File
	now  func() time.Time
	path string

	redact func(string) string // masks secrets in every line (SetRedactor)

	pending, spare  []byte     // lines not written yet; the buffer written last
	writing         bool       // a goroutine is writing, outside mu
	queued, written uint64     // lines added to pending, lines written
	wrote           *sync.Cond // on mu: a write ended
}

// logTime is RFC 3339 with milliseconds: commands often finish within a second.
const logTime = "2006-01-02T15:04:05.000Z07:00"

// maxSpare bounds the write buffer a RunLog keeps for its next write.
const maxSpare = 64 << 10

// OpenRunLog creates (or appends to) the log at path, creating its
// directories; the file is 0600 because output may be sensitive.
func OpenRunLog(path string) (*RunLog, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("run log: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("run log: %w", err)
	}
	l := &RunLog{f: f, now: time.Now, path: path}
	l.wrote = sync.NewCond(&l.mu)
	return l, nil
}

// Path is the file the log writes to.
func (l *RunLog) Path() string {
	if l == nil {
		return ""
	}
	return l.path
}

// SetRedactor makes the log pass every line through redact before it is
// written: it masks the run's secrets (their values, wherever a command's
// output or an error shows them).
func (l *RunLog) SetRedactor(redact func(string) string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.redact = redact
}

// Event records one line for host, e.g. "batch 1/3 (canary): staging-1".
func (l *RunLog) Event(host, format string, args ...any) {
	l.line(host, fmt.Sprintf(format, args...))
}

// line writes "<time> <host> <msg>"; write errors are dropped because a
// full disk must not abort a deploy half-way.
func (l *RunLog) line(host, msg string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return
	}
	if l.redact != nil {
		msg = l.redact(msg)
	}
	b := l.now().AppendFormat(l.pending, logTime)
	b = append(b, ' ')
	b = append(b, host...)
	b = append(b, ' ')
	b = append(b, msg...)
	l.pending = append(b, '\n')
	l.queued++
	l.flushTo(l.queued)
}

// flushTo returns once the first n lines are written, writing what is
// pending itself unless another goroutine is writing. Called with mu held.
func (l *RunLog) flushTo(n uint64) {
	for l.written < n {
		if l.writing {
			l.wrote.Wait()
			continue
		}
		f, b, upto := l.f, l.pending, l.queued
		l.pending, l.writing = l.spare[:0], true
		l.mu.Unlock()
		_, _ = f.Write(b)
		l.mu.Lock()
		l.writing, l.written = false, upto
		if cap(b) <= maxSpare {
			l.spare = b
		} else {
			l.spare = nil
		}
		l.wrote.Broadcast()
	}
}

// Close flushes and closes the file. Later writes are discarded.
func (l *RunLog) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	l.flushTo(l.queued)
	err := l.f.Close()
	l.f = nil
	return err
}

// outputSink collects one stream of one command: it keeps the bytes for the
// Result and writes each complete line to the run log as "[label] out| ...".
// With a pid marker set, a first line "<marker><pid>" is taken out of the
// stream and remembered.
type outputSink struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	partial []byte
	log     *RunLog
	prefix  string // "[label] out| "
	host    string
	marker  string // expected first line prefix; cleared once the first line is seen
	pid     int
	quiet   bool // keep the output out of the run log (it may hold secrets)
}

func newOutputSink(log *RunLog, host, label, stream, marker string) *outputSink {
	return &outputSink{log: log, host: host, prefix: "[" + label + "] " + stream + "| ", marker: marker}
}

func (s *outputSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.partial = append(s.partial, p...)
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			break
		}
		line := s.partial[:i]
		s.partial = s.partial[i+1:]
		if s.marker != "" {
			m := s.marker
			s.marker = ""
			if rest, ok := bytes.CutPrefix(line, []byte(m)); ok {
				if pid, err := strconv.Atoi(string(rest)); err == nil {
					s.pid = pid
					continue
				}
			}
		}
		s.buf.Write(line)
		s.buf.WriteByte('\n')
		if !s.quiet {
			s.log.line(s.host, s.prefix+string(line))
		}
	}
	return len(p), nil
}

// sinkReadSize is how much of a stream outputSink reads at once. x/crypto/ssh
// copies each stream of a session with io.Copy, which would allocate 32 KiB
// per stream and hold it for as long as the command runs: with 1,000 hosts
// running a command at once that was 64 MiB. The session's channel buffers
// what the host sent, so a small read only costs a few more copies.
const sinkReadSize = 1 << 10

var sinkBufs = sync.Pool{New: func() any { b := make([]byte, sinkReadSize); return &b }}

// ReadFrom is what io.Copy uses (the channel has no WriteTo): it reads r to
// its end through a small pooled buffer.
func (s *outputSink) ReadFrom(r io.Reader) (n int64, err error) {
	bp := sinkBufs.Get().(*[]byte)
	defer sinkBufs.Put(bp)
	buf := *bp
	for {
		m, err := r.Read(buf)
		if m > 0 {
			n += int64(m)
			_, _ = s.Write(buf[:m])
		}
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// flush takes in a last line that had no newline.
func (s *outputSink) flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.partial) > 0 {
		s.buf.Write(s.partial)
		if !s.quiet {
			s.log.line(s.host, s.prefix+string(s.partial))
		}
		s.partial = nil
	}
}

// bytes is what the stream printed, for the Result. It hands over the
// sink's own buffer: only call it once the session has ended (its copies
// have returned), as Run's outcome does.
func (s *outputSink) bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buf.Bytes()
	s.buf = bytes.Buffer{}
	if len(b) == 0 {
		return nil
	}
	return b[:len(b):len(b)]
}

// remotePID is the pid the command reported, 0 if none yet.
func (s *outputSink) remotePID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pid
}

package watchdog

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/relctl/relctl/internal/shellquote"
)

// ErrMonitNoService: the monit daemon has no service of that name (its
// snippet is not installed yet, or the daemon has not read it yet).
var ErrMonitNoService = errors.New("monit has no such service")

// MonitService is one service of a running monit daemon, driven through
// monit's own command line (`monit -c CONTROL ACTION NAME`), which talks to
// the daemon's httpd. The daemon acts on requests on its next cycle: poll
// Status to see them done.
type MonitService struct {
	Runner  Runner
	Control string // the control file: monit -c
	Name    string
}

func (m MonitService) command(action string) string {
	return "monit -c " + shellquote.Quote(m.Control) + " " + action + " " + shellquote.Quote(m.Name)
}

// Status is `monit status NAME`, or ErrMonitNoService.
func (m MonitService) Status(ctx context.Context) (MonitStatus, error) {
	stdout, err := m.run(ctx, "status")
	if err != nil {
		return MonitStatus{}, err
	}
	return DecodeMonitStatus(stdout)
}

// Monitor asks the daemon to supervise the service again.
func (m MonitService) Monitor(ctx context.Context) error { return m.request(ctx, "monitor") }

// Unmonitor asks the daemon to stop supervising the service: it neither
// starts nor restarts it until Monitor.
func (m MonitService) Unmonitor(ctx context.Context) error { return m.request(ctx, "unmonitor") }

func (m MonitService) request(ctx context.Context, action string) error {
	_, err := m.run(ctx, action)
	return err
}

// run runs one monit command and returns its stdout. A failing command is
// ErrMonitNoService when monit says it has no such service ("Service 'NAME'
// not found" from status, `There is no service named "NAME"` from an
// action), else an error with monit's words.
//
// monit's httpd answers one request at a time and, when busy, resets the
// connection: such a reset is tried again (busyRetries times, waiting a
// little longer each time) before it is an error.
func (m MonitService) run(ctx context.Context, action string) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		stdout, stderr, exit, err := m.Runner.Run(ctx, m.command(action))
		if err != nil {
			return nil, fmt.Errorf("monit -c %s %s %s: %w", m.Control, action, m.Name, err)
		}
		if exit == 0 {
			return stdout, nil
		}
		if attempt >= busyRetries || !strings.Contains(string(stderr)+string(stdout), "Connection reset by peer") {
			return nil, m.failure(action, stdout, stderr, exit)
		}
		select {
		case <-ctx.Done():
			return nil, m.failure(action, stdout, stderr, exit)
		case <-time.After(time.Duration(attempt+1) * busyWait):
		}
	}
}

// How often, and after how long, a request monit's busy httpd reset is
// tried again.
const (
	busyRetries = 3
	busyWait    = 250 * time.Millisecond
)

func (m MonitService) failure(action string, stdout, stderr []byte, exit int) error {
	out := strings.TrimSpace(string(stderr) + "\n" + string(stdout))
	if strings.Contains(out, "Service '"+m.Name+"' not found") || strings.Contains(out, `There is no service named "`+m.Name+`"`) {
		return fmt.Errorf("monit -c %s %s %s: %w", m.Control, action, m.Name, ErrMonitNoService)
	}
	if exit == 127 {
		return fmt.Errorf("monit -c %s %s %s: monit is not installed (exit 127)", m.Control, action, m.Name)
	}
	return fmt.Errorf("monit -c %s %s %s: exit %d: %s", m.Control, action, m.Name, exit, strings.ReplaceAll(out, "\n", "; "))
}

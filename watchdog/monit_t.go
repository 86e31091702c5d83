package watchdog

import (
	"context"
	"errors"
	"fmt"
	"github.com/relctl/relctl/internal/shellquote"
	"regexp"
	"strconv"
	"strings"

	"github.com/hashicorp/go-multierror"
	"github.com/rs/zerolog"

	"github.com/relctl/relctl/internal/transport"
)

// Runner runs one shell command where monit lives (locally or on a host).
// A command that ran returns its exit status and a nil err; err is for a
// command that could not be run at all.
type Runner interface {
	Run(ctx context.Context, cmd string) (stdout, stderr []byte, exit int, err error)
}

// ConnRunner runs commands over a transport connection.
type ConnRunner struct {
	Conn transport.Conn
}

var _ Runner = ConnRunner{}

// Run implements Runner: a non-zero exit is a status, not an error.
func (r ConnRunner) Run(ctx context.Context, cmd string) ([]byte, []byte, int, error) {
	res, err := r.Conn.Run(ctx, cmd, transport.RunOptions{Label: "watchdog/monit"})
	var ce *transport.CommandError
	switch {
	case errors.As(err, &ce) && ce.Signal == "" && ce.ExitCode >= 0 && res != nil:
		return res.Stdout, res.Stderr, ce.ExitCode, nil
	case err != nil:
		return nil, nil, -1, err
	}
	return res.Stdout, res.Stderr, res.ExitCode, nil
}

// Kinds of MonitError.
const (
	MonitSyntax       = "syntax"        // FILE:LINE: syntax error 'TOKEN'
	MonitNameConflict = "name-conflict" // FILE:LINE: Service name conflict, NAME already defined ...
	MonitPermission   = "permission"    // control file mode wider than 0700
	MonitOwner        = "owner"         // control file not owned by monit's user
	MonitNoFile       = "no-file"       // control file missing or not a regular file
	MonitOther        = "other"         // any other message from a failing monit -t
)

// MonitError is one complaint of `monit -t`, with the file and line monit
// named (Line is 0 for complaints about the control file as a whole).
type MonitError struct {
	Kind  string
	File  string
	Line  int
	Token string // syntax: the offending token; name-conflict: the service name
	Text  string // monit's message without the "FILE:LINE: " prefix
}

func (e *MonitError) Error() string {
	return fmt.Sprintf("%s: monit -t: %s", Pos{File: e.File, Line: e.Line}, e.Text)
}

var (
	monitLineRE       = regexp.MustCompile(`^(.+?):(\d+): (.*)$`)
	monitSyntaxRE     = regexp.MustCompile(`^syntax error '(.*)'$`)
	monitConflictRE   = regexp.MustCompile(`^Service name conflict, (.+?) already defined`)
	monitPermissionRE = regexp.MustCompile(`^The control file '(.+)' (permission \d+ is wrong, maximum \d+ allowed)`)
	monitOwnerRE      = regexp.MustCompile(`^The control file '(.+)' (must be owned by you)`)
	monitNoFileRE     = regexp.MustCompile(`^The control file '(.+)' (is not a file)|^(Cannot find the control file.*)`)
	monitWarningRE    = regexp.MustCompile(`^Program does not exist: `)
)

// MonitSyntaxCheck runs `monit -t -c controlFile` and returns nil when monit
// accepts the file, a *MonitError for its complaint, or a
// *multierror.Error of several. monit's warnings (a missing start program)
// do not fail the check; Check covers them, and they are logged at warn.
func MonitSyntaxCheck(ctx context.Context, runner Runner, controlFile string) error {
	cmd := "monit -t -c " + shellquote.Quote(controlFile)
	stdout, stderr, exit, err := runner.Run(ctx, cmd)
	if err != nil {
		return fmt.Errorf("monit -t -c %s: %w", controlFile, err)
	}
	if exit == 127 {
		return fmt.Errorf("monit -t -c %s: monit is not installed (exit 127)", controlFile)
	}
	log := zerolog.Ctx(ctx)
	var errs *multierror.Error
	var other []string
	for _, line := range strings.Split(string(stderr)+"\n"+string(stdout), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		me := parseMonitLine(line)
		switch {
		case me == nil:
			other = append(other, line)
		case me.Kind == "warning":
			log.Debug().Str("file", me.File).Int("line", me.Line).Msg("monit -t: " + me.Text)
		default:
			errs = multierror.Append(errs, me)
		}
	}
	if exit == 0 {
		// monit may print "FILE:LINE: ..." notes with rc 0; only the status decides.
		return nil
	}
	if errs == nil {
		return &MonitError{Kind: MonitOther, File: controlFile, Text: fmt.Sprintf("exit %d: %s", exit, tail(other, 5))}
	}
	if len(errs.Errors) == 1 {
		return errs.Errors[0]
	}
	return errs
}

// parseMonitLine recognises one line of monit -t output; nil for chatter
// ("Control file syntax OK", "New Monit id: ...").
func parseMonitLine(line string) *MonitError {
	if m := monitPermissionRE.FindStringSubmatch(line); m != nil {
		return &MonitError{Kind: MonitPermission, File: m[1], Text: m[2]}
	}
	if m := monitOwnerRE.FindStringSubmatch(line); m != nil {
		return &MonitError{Kind: MonitOwner, File: m[1], Text: m[2]}
	}
	if m := monitNoFileRE.FindStringSubmatch(line); m != nil {
		if m[1] != "" {
			return &MonitError{Kind: MonitNoFile, File: m[1], Text: m[2]}
		}
		return &MonitError{Kind: MonitNoFile, Text: m[3]}
	}
	m := monitLineRE.FindStringSubmatch(line)
	if m == nil {
		return nil
	}
	n, _ := strconv.Atoi(m[2])
	e := &MonitError{Kind: MonitOther, File: m[1], Line: n, Text: m[3]}
	if s := monitSyntaxRE.FindStringSubmatch(m[3]); s != nil {
		e.Kind, e.Token = MonitSyntax, s[1]
	} else if s := monitConflictRE.FindStringSubmatch(m[3]); s != nil {
		e.Kind, e.Token = MonitNameConflict, s[1]
	} else if monitWarningRE.MatchString(m[3]) {
		e.Kind = "warning"
	}
	return e
}

func tail(lines []string, n int) string {
	return strings.Join(lines[max(0, len(lines)-n):], "; ")
}

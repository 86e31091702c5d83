package watchdog

import "fmt"

// Pos is where a service, statement or token starts in a snippet. Line and
// Column are 1-based; Column counts runes.
type Pos struct {
	File   string
	Line   int
	Column int
}

// String is "file:line:col", or less when line or column are unknown (a
// control file's mode problem has no line).
func (p Pos) String() string {
	switch {
	case p.Line == 0:
		return p.File
	case p.Column == 0:
		return fmt.Sprintf("%s:%d", p.File, p.Line)
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Column)
}

// SyntaxError is a snippet (monit or systemd) that the parser cannot read.
type SyntaxError struct {
	Pos   Pos
	Token string // the offending token as written; "" at end of input
	Msg   string
}

func (e *SyntaxError) Error() string {
	if e.Token == "" {
		return fmt.Sprintf("%s: syntax error at end of input: %s", e.Pos, e.Msg)
	}
	return fmt.Sprintf("%s: syntax error near '%s': %s", e.Pos, e.Token, e.Msg)
}

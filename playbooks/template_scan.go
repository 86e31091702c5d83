package playbooks

import (
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// This file decides where a template action may stand in a shell command.
//
// relctl writes every value as one single-quoted word. That word is inert
// only where the shell reads it as (part of) an ordinary word at command
// level: there, in POSIX sh (dash) and in bash alike, nothing inside single
// quotes is expanded. Everywhere else the shell reads the text differently
// (in quotes, a comment, a heredoc body, arithmetic, [[ ]], ${...},
// backquotes), or the word goes to something that runs it as code (eval,
// sh -c, let, a shell reading its script from a pipe, ...). The scanner
// follows the shell's grammar closely enough to know which of the two a
// value's position is; it accepts the first and refuses everything else,
// naming the position and the safe way to write it. Where it cannot follow
// the syntax with certainty it refuses every later value rather than guess.
//
// The same scanner reads the template text (so Load reports problems
// without data) and, in RenderCommand, the very text the shell will read,
// with each value replaced by a marker; the second pass sees exactly what
// {{if}} and {{range}} produced, so no choice of branches can move a value
// into a place the first pass did not see.

// ShellContextError is a template action standing where relctl's quoting
// would not keep its value one inert word. Line and Column (1-based; Column
// counts characters) locate the action in the template text.
type ShellContextError struct {
	Line, Column int
	Offset       int    // byte offset of the action in the template (see templateFilePosition)
	Action       string // the action as written, e.g. {{.Vars.w}}
	Reason       string // what is wrong and the safe way to write it
}

// Error keeps the form of relctl's other template errors: "template line N: "
// on lines after the first, the reason alone on the first.
func (e *ShellContextError) Error() string {
	if e.Line > 1 {
		return fmt.Sprintf("template line %d: %s", e.Line, e.Reason)
	}
	return e.Reason
}

// templatePosition returns the 1-based line and character column of offset at in text.
func templatePosition(text string, at int) (line, col int) {
	at = max(0, min(at, len(text)))
	line = 1 + strings.Count(text[:at], "\n")
	col = 1 + utf8.RuneCountInString(text[strings.LastIndexByte(text[:at], '\n')+1:at])
	return line, col
}

// slot is a value in the text the scanner reads: a printing action of the
// template, or what one action rendered.
type slot struct {
	action string // as written in the template
	at     int    // offset of the action in the template text
	list   int    // index of the element when the action rendered a list, else -1
	// value is what the action rendered, known when the scanner reads
	// rendered text; whether a value can be read as an option depends on it.
	value string
	known bool
}

type frameKind uint8

const (
	frameCommand      frameKind = iota // the top level, $( ), ( ), <( ) and >( )
	frameCase                          // case ... esac
	frameArray                         // bash name=( ... )
	frameSingle                        // '...'
	frameDollarSingle                  // bash $'...'
	frameDouble                        // "..." and bash $"..."
	frameBackquote                     // `...`
	frameParam                         // ${...}
	frameArith                         // $(( )), bash $[ ], (( )) and for (( ))
	frameTest                          // bash [[ ]]
)

type caseState uint8

const (
	caseSubject caseState = iota // case WORD
	caseIn                       // in
	casePattern                  // pattern | pattern )
	caseBody                     // commands up to ;; or esac
)

type frame struct {
	kind    frameKind
	opener  string // as written: "$((", "${", "[[", ...
	closer  byte   // frameCommand: ')' or 0 at the top; frameArith: ')' or ']'
	depth   int    // frameArith: parentheses or brackets open inside
	escape  bool   // frameDollarSingle: holds a backslash
	inWord  bool   // frameTest, frameArray: inside a word
	sub     bool   // frameArray: the element started with [ whose ] has not come
	caseAt  caseState
	words   int      // frameCase: words of the current pattern list
	cmd     *command // frameCommand, frameCase
	pipeFed *slotUse // a value written into the pipeline being read
	// nest counts the open { }, if, while, until, for and select of a
	// command-level frame; listSlot is its first value since the and-or
	// list being read began (at nest 0), so a compound command piped into
	// a shell is seen whole; anySlot is its first value at all.
	nest     int
	listSlot *slotUse
	anySlot  *slotUse
	// pipeNest is nest where pipeFed's pipeline began: the pipeline runs
	// on through ; and newlines inside a compound command it pipes into.
	pipeNest int
	// inherited is a value fed to the standard input of the whole frame
	// (a subshell, $( ), <( ) or >( ) in a pipeline it flows through).
	inherited *slotUse
	shellIn   bool // a shell or interpreter in it reads its script from stdin
}

// word is the shell word being read at command level.
type word struct {
	start   int
	plain   bool   // no quoting, expansion or value: it may be a reserved word
	lit     []byte // unquoted characters before the first quote, expansion or value
	litDone bool
	sub     bool   // lit opened an array subscript NAME[ whose ] has not come
	val     []byte // the word after quote removal, up to its first expansion or value
	dyn     bool   // holds an expansion or a value: val is only its beginning
	exp     bool   // holds an expansion: $x, $( ), `...`
	brace   int8   // 1: an unquoted {; 2: then an unquoted , or .. (bash may make several words of it)
	last    byte   // the previous unquoted character
	slots   []slotUse
	tail    bool // holds something after its first value
	slash   bool // holds a literal / after its first value: a path, not an option
}

// literal returns the word after quote removal, and whether it is all
// literal (no expansion, no value).
func (w *word) literal() (string, bool) { return string(w.val), !w.dyn }

// slotUse is a value in a word: directly, or inside a $( ), <( ) or >( )
// in the word (via names which).
type slotUse struct {
	sl     *slot
	at     int  // offset in the scanned text
	first  bool // the word starts with the value
	direct bool
	via    string
}

// argRule says how the arguments of a simple command are checked.
type argRule uint8

const (
	ruleNone     argRule = iota
	ruleWrapper          // runs its arguments as a command: sudo, env, nohup, ...
	ruleCode             // runs or evaluates its arguments: eval, let, trap, alias, watch
	ruleDeclare          // declare, typeset, local, export, readonly
	ruleNames            // read, unset, mapfile, readarray, getopts: arguments name variables
	ruleFlagName         // printf -v NAME, wait -p NAME
	ruleTest             // [ and test
	ruleShell            // sh, bash, ...: -c takes code, and without a script they read stdin
	ruleSu               // su, runuser: -c takes code
	ruleSSH              // ssh: the remote command is parsed again remotely
	ruleSource           // . and source
	ruleInterp           // sed, awk, perl, python, ...: program text
)

// command is the simple command being read in a command-level frame.
type command struct {
	inWord      bool
	w           word
	named       bool   // the command name is read; further words are arguments
	prefix      int    // assignments before the name
	redir       string // the next word is the target of this redirection operator
	forWord     int    // for/select: 1 the name comes, 2 in or do comes, 3 in its word list
	fnName      bool   // after "function"
	timeOpts    bool   // after bash's "time": -p and -- are its options, not the command
	coprocAt    bool   // after bash's "coproc": a NAME before a compound command is no command
	rule        argRule
	name        string // basename of the command that decided rule
	viaXargs    bool   // the command is run by xargs, with words from its input
	wrapped     bool   // the rule came from a word after a wrapper (env, sudo, find -exec, ...)
	xargsRepl   bool   // xargs -I: input replaces a string anywhere in the command
	st          ruleState
	here        *slotUse // a value fed to its standard input (here-string, <(...))
	feedsShell  bool     // it writes into a >(...) where a shell reads its script from stdin
	declUnknown int      // declare and the like: offset+1 of an expansion among its arguments
	anySlot     *slotUse // the first value anywhere in the command
	wordCount   int      // words read, redirections and assignments included
}

type ruleState struct {
	opts     string   // option letters seen
	optsDone bool     // -- seen, or the options ended
	optArg   string   // the next word is the argument of this option
	sawC     bool     // shell, su: -c seen
	program  bool     // interpreter: the program is given (option or operand)
	stdin    bool     // the script comes from standard input
	operand  bool     // shell, source: the script or command string is read; ssh: the destination
	prev     *word    // test: the previous argument
	names    []string // read-like: literal arguments
	unknown  *word    // an expansion where options are read: it could hold -c, -v, -i, ...
	dashed   bool     // ssh: -- after such an expansion (which may have eaten it as an option's argument)
}

// assignment is a value assigned to a variable, checked at the end against
// the variables that are integers (declare -i).
type assignment struct {
	names []string
	use   slotUse
	how   string
}

type shellScan struct {
	t      string
	text   string // the template, for positions
	orig   []int  // static: offset in t -> offset in text
	static bool
	slots  []slot // dynamic: the values, by marker number

	frames    []*frame
	poisoned  string // why the scanner lost track, if it did
	escapedAt int    // offset of a value right after an unquoted backslash

	pending      []heredoc   // operators seen on the current line
	pendingDepth int         // frames open when they were seen
	open         []openBlock // template blocks opened since the first pending operator
	cur          *heredoc    // the operator open blocks are reported against

	fdFed    *slotUse          // a value exec put on a file descriptor (exec 3<<< value)
	intNames map[string]string // variables whose assignments bash evaluates as arithmetic, and why
	aliases  map[string]string // alias name -> the first word of its value
	assigned []assignment
}

// heredoc is a << operator whose body starts after the current line.
type heredoc struct {
	op        string // as written, for messages: <<EOF, <<-'EOF'
	delim     string // after quote removal
	stripTabs bool   // <<- : leading tabs of the end line are ignored
	quoted    bool   // any quoting in the delimiter makes the body literal
}

type openBlock struct {
	at     int
	action string
}

// bashIntegers are bash's own variables whose assignments are arithmetic
// (checked with bash 5.2: assigning a[$(cmd)] to each runs cmd).
var bashIntegers = []string{"RANDOM", "SRANDOM", "OPTIND", "HISTCMD"}

// codeVariables hold text that bash or sh runs or expands again ($(...)
// included): PS4 under set -x, BASH_ENV when bash starts, the others in
// interactive shells.
var codeVariables = map[string]bool{"PS0": true, "PS1": true, "PS2": true, "PS4": true, "PROMPT_COMMAND": true, "BASH_ENV": true, "ENV": true}

// stdinScripts are script operands that read standard input or another
// file descriptor a value may have been written to (sh /dev/fd/3 3<<< ...).
var stdinScripts = stdinScriptRE.MatchString

var stdinScriptRE = regexp.MustCompile(`^(-|/dev/stdin|/dev/fd/[0-9]+|/proc/(self|thread-self|[0-9]+)/fd/[0-9]+)$`)

// quotedActionError reports the first action of a shell template standing
// where relctl's quoting would not keep its value one inert word, as a
// *ShellContextError; nil when every action is where a quoted word is inert.
func quotedActionError(text string) error {
	if i := strings.IndexByte(text, 0); i >= 0 {
		line, col := templatePosition(text, i)
		return &ShellContextError{Line: line, Column: col, Offset: i, Reason: "the command holds a NUL byte, which no shell command can carry"}
	}
	t, orig := applyTrimMarkers(text)
	s := &shellScan{t: t, text: text, orig: orig, static: true, escapedAt: -1}
	return s.run()
}

// renderedActionError scans the text a template rendered, where marker k
// (NUL, k in decimal, NUL) stands for slots[k].
func renderedActionError(text, rendered string, slots []slot) error {
	s := &shellScan{t: rendered, text: text, slots: slots, escapedAt: -1}
	return s.run()
}

// next reports a value or a control action at i: its end offset and either
// the value or the control action's text.
func (s *shellScan) next(i int) (end int, sl *slot, control string, ok bool) {
	t := s.t
	if s.static {
		// An action starts where the template has one: a trimmed blank
		// may put a literal { right before it ({ {{- x}}).
		if !strings.HasPrefix(t[i:], "{{") || !strings.HasPrefix(s.text[s.orig[i]:], "{{") {
			return 0, nil, "", false
		}
		end, action := scanAction(t, i)
		if printsOutput(action) {
			return end, &slot{action: action, at: s.orig[i], list: -1}, "", true
		}
		return end, nil, action, true
	}
	if t[i] != 0 {
		return 0, nil, "", false
	}
	j := strings.IndexByte(t[i+1:], 0)
	if j < 0 {
		return len(t), &slot{action: "{{?}}", list: -1}, "", true
	}
	k, err := strconv.Atoi(t[i+1 : i+1+j])
	if err != nil || k < 0 || k >= len(s.slots) {
		return i + 2 + j, &slot{action: "{{?}}", list: -1}, "", true
	}
	return i + 2 + j, &s.slots[k], "", true
}

func (s *shellScan) startsValue(i int) bool {
	if i >= len(s.t) {
		return false
	}
	if s.static {
		return strings.HasPrefix(s.t[i:], "{{") && strings.HasPrefix(s.text[s.orig[i]:], "{{")
	}
	return s.t[i] == 0
}

// refuse builds the error for a value.
func (s *shellScan) refuse(sl *slot, format string, args ...any) error {
	line, col := templatePosition(s.text, sl.at)
	return &ShellContextError{Line: line, Column: col, Offset: sl.at, Action: sl.action, Reason: fmt.Sprintf(format, args...)}
}

// errorf builds an error located at offset at of the scanned text (static
// scans; a dynamic scan has no template offset for plain text).
func (s *shellScan) errorf(at int, action, format string, args ...any) error {
	off := 0
	if s.static && at < len(s.orig) {
		off = s.orig[at]
	}
	line, col := templatePosition(s.text, off)
	return &ShellContextError{Line: line, Column: col, Offset: off, Action: action, Reason: fmt.Sprintf(format, args...)}
}

// poison records the first place the scanner cannot follow with certainty.
func (s *shellScan) poison(at int, why string) {
	if s.poisoned == "" {
		s.poisoned = fmt.Sprintf("%s (at %s)", why, excerpt(s.t, at))
	}
}

// excerpt shows the text at i, without markers, for messages.
func excerpt(t string, i int) string {
	i = max(0, min(i, len(t)))
	end := min(len(t), i+24)
	for end < len(t) && !utf8.RuneStart(t[end]) {
		end++
	}
	e := strings.ReplaceAll(t[i:end], "\x00", "")
	if nl := strings.IndexByte(e, '\n'); nl >= 0 {
		e = e[:nl]
	}
	return strconv.Quote(e)
}

func (s *shellScan) top() *frame { return s.frames[len(s.frames)-1] }

func (s *shellScan) push(f *frame) {
	if f.cmd != nil {
		// What flows into the command being read flows into a subshell,
		// a command or process substitution or a case inside it.
		for k := len(s.frames) - 1; k >= 0; k-- {
			if p := s.frames[k]; p.cmd != nil {
				f.inherited = p.pipeFed
				if f.inherited == nil {
					f.inherited = p.inherited
				}
				break
			}
		}
	}
	s.frames = append(s.frames, f)
}

func (s *shellScan) pop() {
	if len(s.frames) > 1 {
		s.frames = s.frames[:len(s.frames)-1]
	}
}

// owner returns the command whose word the text at frame k belongs to:
// through quotes down to a command-level frame; nil inside ${ }, $(( )),
// [[ ]], backquotes or an array (their text is not a word of a command).
func (s *shellScan) owner(k int) *command {
	for ; k >= 0; k-- {
		switch f := s.frames[k]; f.kind {
		case frameSingle, frameDouble, frameDollarSingle:
			continue
		case frameCommand, frameCase:
			return f.cmd
		default:
			return nil
		}
	}
	return nil
}

func (s *shellScan) run() error {
	s.frames = []*frame{{kind: frameCommand, cmd: &command{}}}
	s.intNames = map[string]string{}
	for _, n := range bashIntegers {
		s.intNames[n] = "which bash keeps as an integer"
	}
	for i := 0; i < len(s.t); {
		if k := s.top().kind; k != frameSingle && k != frameDollarSingle {
			if s.joinLines(i); i >= len(s.t) {
				break
			}
		}
		var end int
		var err error
		if actionEnd, sl, control, ok := s.next(i); ok {
			err = s.action(i, sl, control)
			end = max(actionEnd, i+1)
		} else {
			end, err = s.step(i)
		}
		if err != nil {
			return err
		}
		i = end
	}
	if err := s.endText(); err != nil {
		return err
	}
	return s.integerAssignments()
}

// action checks the template action at i: a value (sl) or a control block.
func (s *shellScan) action(i int, sl *slot, control string) error {
	if sl != nil {
		return s.value(i, sl)
	}
	err := s.block(i, control)
	if s.escapedAt == i {
		s.poison(i-1, `a backslash before a template block, which escapes whatever the block renders first`)
	}
	return err
}

// step reads the shell text at i in the innermost frame and returns where
// the next step starts.
func (s *shellScan) step(i int) (int, error) {
	before := s.top()
	end, err := s.stepFrame(before, i)
	if err != nil {
		return 0, err
	}
	if end <= i && s.top() == before {
		end = i + 1 // a step that opened or closed a frame may leave i to the next
	}
	if end > i && s.t[i] == '\n' && len(s.pending) > 0 && s.top().cmd == nil && s.top().kind != frameSingle && s.top().kind != frameDouble {
		s.poison(i, "a heredoc whose body would start inside "+s.top().opener)
	}
	return end, nil
}

// stepFrame reads the shell text at i as frame f (the innermost) reads it.
func (s *shellScan) stepFrame(f *frame, i int) (int, error) {
	t := s.t
	switch f.kind {
	case frameCommand:
		return s.stepCommand(f, i)
	case frameCase:
		if f.caseAt == caseBody {
			return s.stepCommand(f, i)
		}
		return s.stepCaseHead(f, i)
	case frameArray:
		return s.stepArray(f, i)
	case frameSingle:
		if t[i] == '\'' {
			s.pop()
		} else if c := s.owner(len(s.frames) - 2); c != nil {
			c.quotedChar(i, t[i])
		}
		return i + 1, nil
	case frameDollarSingle:
		return s.stepDollarSingle(f, i), nil
	case frameDouble:
		return s.stepDouble(i), nil
	case frameBackquote:
		switch t[i] {
		case '\\':
			return s.escaped(i), nil
		case '`':
			s.pop()
		}
		return i + 1, nil
	case frameParam:
		return s.stepParam(i), nil
	case frameArith:
		return s.stepArith(f, i), nil
	case frameTest:
		return s.stepTest(f, i), nil
	}
	return 0, nil
}

// endText ends every word and command still open where the text ends.
func (s *shellScan) endText() error {
	for k := len(s.frames) - 1; k >= 0; k-- {
		f := s.frames[k]
		if f.cmd == nil || f.kind == frameCase && f.caseAt != caseBody {
			continue
		}
		if err := s.endWord(f); err != nil {
			return err
		}
		if err := s.endCommand(f, ""); err != nil {
			return err
		}
	}
	return nil
}

// integerAssignments refuses a value assigned to a variable that turned out
// to be an integer (declare -i and bash's own), which only the whole text
// can tell.
func (s *shellScan) integerAssignments() error {
	for _, a := range s.assigned {
		for _, n := range a.names {
			if why, ok := s.intNames[n]; ok {
				return s.refuse(a.use.sl, "%s is %s %s, %s, so bash evaluates the value as arithmetic (a value like a[$(cmd)] runs cmd); check it is a number before assigning it, or use another variable", a.use.sl.action, a.how, n, why)
			}
		}
	}
	return nil
}

// cutContinuation removes the line continuation (backslash-newline) at i
// from the scanned text, keeping the offset mapping.
func (s *shellScan) cutContinuation(i int) {
	s.t = s.t[:i] + s.t[i+2:]
	if s.static {
		s.orig = append(s.orig[:i], s.orig[i+2:]...)
	}
}

// continuationAt reports whether a backslash-newline starts at i.
func (s *shellScan) continuationAt(i int) bool {
	return i+1 < len(s.t) && s.t[i] == '\\' && s.t[i+1] == '\n'
}

// joinLines removes line continuations where the shell does before it reads
// a token (everywhere but in single quotes, comments and quoted heredoc
// bodies): at i, and inside an operator that starts at i ($\<newline>((
// is $((, <\<newline>< is <<), so operators are matched in the joined text.
func (s *shellScan) joinLines(i int) {
	for s.continuationAt(i) {
		s.cutContinuation(i)
	}
	for k := 1; k <= 3 && i+k <= len(s.t) && tokenPrefix(s.t[i:i+k]); k++ {
		for s.continuationAt(i + k) {
			s.cutContinuation(i + k)
		}
	}
}

// multiTokens are the shell's operators and openers of more than one character.
var multiTokens = []string{"$((", "$(", "${", "$[", "$'", `$"`, "<<<", "<<-", "<<", "<(", ">(", "<&", ">&", ">>", "<>", ">|",
	"&>>", "&>", "&&", ";;&", ";;", ";&", "||", "|&", "((", "))", "]]"}

// tokenPrefix reports whether p begins a longer operator, or is a $ that a
// value could follow.
func tokenPrefix(p string) bool {
	if p == "$" {
		return true
	}
	for _, m := range multiTokens {
		if len(m) > len(p) && strings.HasPrefix(m, p) {
			return true
		}
	}
	return false
}

// escaped steps over a backslash and the character it escapes, unless a
// value follows, which value() then refuses.
func (s *shellScan) escaped(i int) int {
	if s.startsValue(i + 1) {
		s.escapedAt = i + 1
		return i + 1
	}
	return min(i+2, len(s.t))
}

// value checks a value at offset i of the scanned text.
func (s *shellScan) value(i int, sl *slot) error {
	a := sl.action
	if s.poisoned != "" {
		return s.refuse(sl, "%s comes after shell syntax relctl cannot follow with certainty: %s; so it cannot tell whether the value would stay one word; write that part more plainly", a, s.poisoned)
	}
	// The innermost frame that changes how the shell reads a quoted word.
	passedCommand := false
	for k := len(s.frames) - 1; k >= 0; k-- {
		f := s.frames[k]
		switch f.kind {
		case frameCommand, frameCase:
			passedCommand = true
		case frameDouble:
			if !passedCommand {
				return s.refuse(sl, "%s is inside double quotes; %s", a, s.quotesHint(k, a))
			}
		case frameSingle:
			return s.refuse(sl, "%s is inside single quotes; %s", a, s.quotesHint(k, a))
		case frameDollarSingle:
			return s.refuse(sl, "%s is inside $'...' quotes; relctl shell-quotes every value itself, so remove the quotes around it", a)
		case frameBackquote:
			return s.refuse(sl, "%s is inside backquotes `...`, where the shell processes backslashes a second time, so relctl's quoting cannot hold; use $(...) instead of backquotes", a)
		case frameParam:
			return s.refuse(sl, "%s is inside a parameter expansion ${...}, whose operand the shell expands again and, as an offset or a length, evaluates as arithmetic (a value like a[$(cmd)] runs cmd); assign the value to a variable first (v=%s) and use $v inside the braces, checking first that it is a number if it is an offset or a length", a, a)
		case frameArith:
			return s.refuse(sl, "%s is inside shell arithmetic %s, where the shell evaluates the text as an expression and quotes do not protect it (a value like a[$(cmd)] runs cmd); assign it to a variable and check it is a number first: n=%s; case $n in ''|*[!0-9]*) echo \"not a number: $n\" >&2; exit 1;; esac; then use $((n))", a, arithName(f.opener), a)
		case frameTest:
			return s.refuse(sl, "%s is inside [[ ]], where bash evaluates the operands of -eq, -lt and the like as arithmetic (a value like a[$(cmd)] runs cmd); use [ ] instead, which reads the value as one word: [ %s = yes ]", a, a)
		}
	}
	if s.escapedAt == i {
		return s.refuse(sl, "%s follows a backslash, which would break relctl's quoting of the value", a)
	}
	if i > 0 && s.t[i-1] == '$' {
		return s.refuse(sl, "%s follows a $, which makes relctl's quotes bash's $'...' quoting, where backslashes in the value are escapes; write the $ apart from the value, e.g. '$'%s", a, a)
	}
	if f := s.top(); f.kind == frameArray && f.sub {
		return s.refuse(sl, "%s is inside an array subscript [...], which bash evaluates as arithmetic (a value like a[$(cmd)] runs cmd); write the subscript literally, or check the value is a number first", a)
	}
	// The value is part of the word being read in each command-level frame
	// around it: directly in the innermost, inside a $( ) in the others.
	direct, via := true, ""
	for k := len(s.frames) - 1; k >= 0; k-- {
		f := s.frames[k]
		if f.cmd == nil {
			continue
		}
		c := f.cmd
		c.begin(i)
		if f.kind == frameCommand || f.caseAt == caseBody {
			if (!c.named || c.rule == ruleDeclare) && (c.w.sub || !c.w.litDone && subscriptOpen.Match(c.w.lit)) {
				return s.refuse(sl, "%s is inside an array subscript %s...], which bash evaluates as arithmetic (a value like a[$(cmd)] runs cmd); write the subscript literally, or check the value is a number first", a, c.w.lit)
			}
		}
		c.w.tail = c.w.tail || len(c.w.slots) > 0
		use := slotUse{sl: sl, at: i, first: c.w.start == i, direct: direct, via: via}
		c.w.slots = append(c.w.slots, use)
		c.w.endLit()
		c.w.plain, c.w.dyn = false, true
		if c.anySlot == nil {
			c.anySlot = &c.w.slots[len(c.w.slots)-1]
		}
		if f.listSlot == nil {
			f.listSlot = c.anySlot
		}
		if f.anySlot == nil {
			f.anySlot = c.anySlot
		}
		direct, via = false, f.opener
	}
	return nil
}

// quotesHint says what to do about a value inside the quotes of frame k:
// remove the quotes, or, when the quoted text is code for eval, trap,
// sh -c and the like, hand the value over in a variable.
func (s *shellScan) quotesHint(k int, action string) string {
	if c := s.owner(k - 1); c != nil && c.named {
		code := c.rule == ruleCode || c.rule == ruleShell && c.st.sawC || c.rule == ruleSu || c.rule == ruleSSH && c.st.operand
		if code {
			return fmt.Sprintf("the quoted text is code for %s, so the value would run as code; assign it to a variable first (v=%s) and use \"$v\" in the code", c.name, action)
		}
	}
	return "relctl shell-quotes every value itself, so remove the quotes around it"
}

var subscriptOpen = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*\[[^\]]*$`)

// optionLike reports whether a word starting with this value would be read
// as an option: the rendered value starts with - or +. In the template text
// the value is not known yet; RenderCommand's pass over the rendered text
// decides.
func optionLike(u *slotUse) bool {
	return u != nil && u.first && u.direct && u.sl.known && (strings.HasPrefix(u.sl.value, "-") || strings.HasPrefix(u.sl.value, "+"))
}

func arithName(opener string) string {
	switch opener {
	case "$[":
		return "$[ ]"
	case "((":
		return "(( ))"
	}
	return "$(( ))"
}

func (c *command) begin(i int) {
	if !c.inWord {
		c.inWord = true
		c.w = word{start: i, plain: true}
		c.wordCount++
	}
}

// literal adds an unquoted character to the word.
func (c *command) literal(i int, b byte) {
	c.begin(i)
	w := &c.w
	if !w.litDone {
		w.lit = append(w.lit, b)
	} else if w.sub && b == ']' {
		w.sub = false
	}
	if !w.dyn {
		w.val = append(w.val, b)
	}
	switch {
	case b == '{' && w.brace == 0:
		w.brace = 1
	case w.brace == 1 && (b == ',' || b == '.' && w.last == '.'):
		w.brace = 2
	}
	w.last = b
	if len(w.slots) > 0 {
		w.tail = true
		w.slash = w.slash || b == '/'
	}
}

// endLit ends the word's unquoted beginning (at a quote, an expansion or
// a value); a subscript NAME[ open there stays open up to an unquoted ].
func (w *word) endLit() {
	if !w.litDone {
		w.litDone = true
		w.sub = subscriptOpen.Match(w.lit)
	}
}

// quotedChar adds a character that quoting made literal.
func (c *command) quotedChar(i int, b byte) {
	c.quote(i)
	if !c.w.dyn {
		c.w.val = append(c.w.val, b)
	}
}

// quote marks the word as quoted (it is no reserved word, no assignment).
func (c *command) quote(i int) {
	c.begin(i)
	c.w.endLit()
	c.w.plain = false
	c.w.tail = c.w.tail || len(c.w.slots) > 0
}

func (c *command) expansion(i int) {
	c.quote(i)
	c.w.dyn, c.w.exp = true, true
}

// reset starts a new simple command.
func (c *command) reset() {
	*c = command{}
}

// wordPart opens a frame that is part of the word being read: quotes mark
// the word quoted, expansions make it dynamic.
func (s *shellScan) wordPart(i int, f *frame) {
	if c := s.owner(len(s.frames) - 1); c != nil {
		switch f.kind {
		case frameSingle, frameDouble, frameDollarSingle:
			c.quote(i)
		default:
			c.expansion(i)
		}
	}
	s.push(f)
}

// dollar opens the expansion at i (t[i] == '$'), returning the offset after
// its opener, or 0 when it opens no frame ($x, a lone $).
func (s *shellScan) dollar(i int, inDouble bool) int {
	t := s.t
	if s.startsValue(i + 1) {
		return 0 // ${{.X}}: the { is the action's; value() refuses the $ before it
	}
	switch {
	case strings.HasPrefix(t[i:], "$(("):
		s.wordPart(i, &frame{kind: frameArith, opener: "$((", closer: ')'})
		return i + 3
	case strings.HasPrefix(t[i:], "$("):
		s.wordPart(i, &frame{kind: frameCommand, opener: "$(", closer: ')', cmd: &command{}})
		return i + 2
	case strings.HasPrefix(t[i:], "${"):
		s.wordPart(i, &frame{kind: frameParam, opener: "${"})
		return i + 2
	case strings.HasPrefix(t[i:], "$["):
		s.wordPart(i, &frame{kind: frameArith, opener: "$[", closer: ']'})
		return i + 2
	case !inDouble && strings.HasPrefix(t[i:], "$'"):
		s.wordPart(i, &frame{kind: frameDollarSingle, opener: "$'"})
		return i + 2
	case !inDouble && strings.HasPrefix(t[i:], `$"`):
		s.wordPart(i, &frame{kind: frameDouble, opener: `$"`})
		return i + 2
	}
	return 0
}

// stepCommand reads one token's worth of text at command level.
func (s *shellScan) stepCommand(f *frame, i int) (int, error) {
	t := s.t
	c := f.cmd
	ch := t[i]
	if strings.IndexByte(" \t\n;&|)", ch) >= 0 {
		// The word ends; "case", "[[" or "esac" open or close a frame,
		// and then the new frame reads this character.
		if err := s.endWord(f); err != nil {
			return 0, err
		}
		if s.top() != f {
			return i, nil
		}
	}
	switch {
	case ch == ' ' || ch == '\t':
		return i + 1, nil
	case ch == '\n':
		if c.wordCount > 0 || c.named {
			if err := s.endCommand(f, "\n"); err != nil {
				return 0, err
			}
		}
		if len(s.pending) > 0 {
			if len(s.frames) != s.pendingDepth {
				s.poison(i, "a heredoc operator and the end of its line in different nestings of $( ) or ( )")
			}
			return s.bodies(i + 1)
		}
		return i + 1, nil
	case ch == '\\':
		if i+1 < len(t) && t[i+1] == '\n' {
			return i + 2, nil // a line continuation joins the lines
		}
		if !s.startsValue(i + 1) {
			c.quotedChar(i, t[min(i+1, len(t)-1)])
		}
		return s.escaped(i), nil
	case ch == '#' && !c.inWord:
		return s.comment(i)
	case ch == '\'' || ch == '"' || ch == '$' || ch == '`':
		return s.quotedPart(c, i), nil
	case ch == ';' || ch == '&' || ch == '|':
		return s.operatorAt(f, i)
	case ch == '<' || ch == '>':
		return s.redirection(f, i)
	case ch == '(':
		return s.openParen(f, i)
	case ch == ')':
		if f.kind == frameCommand && f.closer == ')' {
			if err := s.endCommand(f, ")"); err != nil {
				return 0, err
			}
			opener, inner := f.opener, f.anySlot
			shellIn := f.shellIn
			s.pop()
			if p := s.top(); shellIn {
				p.shellIn = true
				if opener == ">(" {
					if c := s.owner(len(s.frames) - 1); c != nil {
						c.feedsShell = true
					}
				}
			}
			if opener == "(" {
				p := s.top()
				p.cmd.named = true // a subshell is a whole command
				if p.listSlot == nil {
					p.listSlot = inner
				}
			}
			return i + 1, nil
		}
		s.poison(i, "a ) that closes nothing relctl saw open")
		return i + 1, nil
	}
	c.literal(i, ch)
	return i + 1, nil
}

var controlOps = []string{";;&", ";;", ";&", "&&", "||", "|&", "&>>", "&>", ";", "&", "|"}

func (s *shellScan) operatorAt(f *frame, i int) (int, error) {
	op := ""
	for _, o := range controlOps {
		if strings.HasPrefix(s.t[i:], o) {
			op = o
			break
		}
	}
	c := f.cmd
	if op == "&>" || op == "&>>" {
		c.redir = op
		return i + len(op), nil
	}
	if c.wordCount == 0 && !c.named && (op == "&&" || op == "||" || op == "|" || op == "|&") {
		return i + len(op), nil // nothing to end: a syntax error the shell reports
	}
	if err := s.endCommand(f, op); err != nil {
		return 0, err
	}
	if f.kind == frameCase && strings.HasPrefix(op, ";") && len(op) > 1 {
		f.caseAt, f.words = casePattern, 0
	}
	return i + len(op), nil
}

// redirection reads a redirection operator, a heredoc operator, a
// here-string or a process substitution at i.
func (s *shellScan) redirection(f *frame, i int) (int, error) {
	t := s.t
	c := f.cmd
	if i+1 < len(t) && t[i+1] == '(' {
		s.wordPart(i, &frame{kind: frameCommand, opener: t[i : i+2], closer: ')', cmd: &command{}})
		return i + 2, nil
	}
	// A word of digits (or bash's {name}) right before it is its fd, not an argument.
	if c.inWord && c.w.plain && (allDigits(string(c.w.lit)) || fdName.Match(c.w.lit)) {
		c.inWord = false
	} else if err := s.endWord(f); err != nil {
		return 0, err
	}
	switch {
	case strings.HasPrefix(t[i:], "<<<"):
		c.redir = "<<<"
		return i + 3, nil
	case strings.HasPrefix(t[i:], "<<"):
		return s.operator(i)
	}
	n := 1
	if i+1 < len(t) && strings.IndexByte("<>&|", t[i+1]) >= 0 {
		n = 2
	}
	c.redir = t[i : i+n]
	return i + n, nil
}

var fdName = regexp.MustCompile(`^\{[A-Za-z_][A-Za-z0-9_]*\}$`)

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func nextNonBlank(t string, i int) byte {
	for ; i < len(t); i++ {
		if t[i] != ' ' && t[i] != '\t' {
			return t[i]
		}
	}
	return 0
}

func (s *shellScan) openParen(f *frame, i int) (int, error) {
	t := s.t
	c := f.cmd
	if c.inWord {
		if !c.w.litDone && assignmentOpen.Match(c.w.lit) && (!c.named || c.rule == ruleDeclare) {
			c.expansion(i)
			s.push(&frame{kind: frameArray, opener: string(c.w.lit) + "("})
			return i + 1, nil
		}
		if c.w.plain && !c.named && c.prefix == 0 && nextNonBlank(t, i+1) == ')' {
			c.reset() // a function definition: name ( ) body
			return strings.IndexByte(t[i:], ')') + i + 1, nil
		}
		s.poison(i, "a ( inside a word (a bash extended glob?)")
		c.literal(i, '(')
		return i + 1, nil
	}
	switch {
	case c.forWord == 1 && strings.HasPrefix(t[i:], "(("):
		c.forWord = 0
		s.push(&frame{kind: frameArith, opener: "((", closer: ')'})
		return i + 2, nil
	case !c.named && c.prefix == 0 && strings.HasPrefix(t[i:], "(("):
		c.named = true
		s.push(&frame{kind: frameArith, opener: "((", closer: ')'})
		return i + 2, nil
	case !c.named && c.prefix == 0:
		s.push(&frame{kind: frameCommand, opener: "(", closer: ')', cmd: &command{}})
		return i + 1, nil
	case c.named && c.wordCount == 1 && c.rule == ruleNone && nextNonBlank(t, i+1) == ')':
		c.reset() // name () body
		return strings.IndexByte(t[i:], ')') + i + 1, nil
	}
	s.poison(i, "a ( where a command cannot start")
	return i + 1, nil
}

var assignmentOpen = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*\+?=$`)

// assignmentName returns the variable a word assigns to, from its unquoted
// prefix: NAME=, NAME+= or NAME[...]=.
func assignmentName(lit []byte) (string, bool) {
	m := assignmentRE.FindSubmatch(lit)
	if m == nil {
		return "", false
	}
	return string(m[1]), true
}

var assignmentRE = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)(?:\[[^\]]*\])?\+?=`)

// endCommand ends a simple command at the operator op (a newline, ")" or
// "" at the end of the text), and follows the pipeline it is part of.
func (s *shellScan) endCommand(f *frame, op string) error {
	c := f.cmd
	if c.rule == ruleNames && len(c.st.names) > 0 {
		for _, u := range []*slotUse{c.here, f.pipeFed, f.inherited, s.fdFed} {
			if u != nil {
				s.assigned = append(s.assigned, assignment{names: c.st.names, use: *u, how: "read into"})
				break
			}
		}
	}
	if c.rule == ruleFlagName && len(c.st.names) > 0 && c.anySlot != nil {
		s.assigned = append(s.assigned, assignment{names: c.st.names, use: *c.anySlot, how: "assigned by " + c.name + " " + map[bool]string{true: "-v", false: "-p"}[c.name == "printf"] + " to"})
	}
	if c.rule == ruleCode && (c.name == "alias" || c.name == "eval") {
		// An alias changes what any later command word means (dash
		// expands aliases in scripts, bash with expand_aliases), and eval
		// may define one.
		s.poison(c.w.start, "an alias definition (or an eval, which may define one), which changes what later commands mean")
	}
	if c.declUnknown > 0 {
		s.poison(c.declUnknown-1, "an expansion among the arguments of "+c.name+", which may declare a variable integer (-i) or a reference (-n)")
	}
	if c.rule == ruleWrapper && c.name == "exec" && c.here != nil && s.fdFed == nil {
		s.fdFed = c.here // exec 3<<< value: any later command may read it
	}
	if c.feedsShell && c.anySlot != nil {
		sl := c.anySlot.sl
		return s.refuse(sl, "%s is in a command that writes into a process substitution >(...) where a shell or interpreter reads the script it runs from its standard input, so the value could run as code; pass the value as an argument of a fixed script instead, e.g. sh -c '... \"$1\" ...' sh %s", sl.action, sl.action)
	}
	if s.readsScriptFromStdin(c) {
		f.shellIn = true
		feed := f.pipeFed
		for _, u := range []*slotUse{f.inherited, c.here, s.fdFed} {
			if feed == nil {
				feed = u
			}
		}
		if feed != nil {
			return s.refuse(feed.sl, "%s is fed to the standard input of %s, which reads the script it runs from there, so the value would run as code; pass the value as an argument of a fixed script instead, e.g. %s -c '... \"$1\" ...' %s %s", feed.sl.action, c.name, "sh", "sh", feed.sl.action)
		}
	}
	fed := c.anySlot
	if fed == nil && f.nest == 0 {
		fed = f.listSlot // the command ends a compound command: all of it is piped
	}
	c.reset()
	switch op {
	case "|", "|&":
		if f.pipeFed == nil {
			f.pipeFed, f.pipeNest = fed, f.nest
		}
	default:
		if f.nest <= f.pipeNest {
			f.pipeFed = nil
		}
		if f.nest == 0 {
			f.listSlot = nil
		}
	}
	return nil
}

// readsScriptFromStdin reports whether the command runs what its standard
// input holds: a shell without a script (or with -s or /dev/stdin), an
// interpreter without a program, . /dev/stdin, or xargs building a command
// line for a shell or eval.
func (s *shellScan) readsScriptFromStdin(c *command) bool {
	st := c.st
	switch c.rule {
	case ruleShell:
		// xargs appends its input: to sh -c without a command string it
		// is the command string; after one, it is only $0, $1, ...
		return c.xargsRepl || st.stdin || !st.operand
	case ruleSource:
		return st.stdin
	case ruleInterp:
		return c.xargsRepl || st.stdin || !st.program && c.name != "sed" && !strings.Contains(c.name, "awk")
	}
	return false
}

// assign checks a value assigned to name.
func (s *shellScan) assign(name string, w *word, how string) error {
	if name == "BASH_ALIASES" {
		s.poison(w.start, "an assignment to BASH_ALIASES, which defines an alias that changes what later commands mean")
	}
	if len(w.slots) == 0 {
		return nil
	}
	if name == "BASH_ALIASES" {
		sl := w.slots[0].sl
		return s.refuse(sl, "%s is %s BASH_ALIASES, which defines an alias, so the value would run as code where the alias is used; define aliases with fixed text", sl.action, how)
	}
	if codeVariables[name] {
		sl := w.slots[0].sl
		return s.refuse(sl, "%s is %s %s, whose text the shell expands again when it uses it (running any $(...) in it), so the value would run as code; set %s to fixed text", sl.action, how, name, name)
	}
	s.assigned = append(s.assigned, assignment{names: []string{name}, use: w.slots[0], how: how})
	return nil
}

// endWord classifies the word just read in a command-level frame.
func (s *shellScan) endWord(f *frame) error {
	c := f.cmd
	if !c.inWord {
		return nil
	}
	c.inWord = false
	w := c.w
	switch {
	case c.redir != "":
		c.redirectionTarget(&w)
		return nil
	case c.fnName:
		c.fnName = false
		return nil
	case c.forWord >= 1 && c.forWord <= 3:
		s.forLoopWord(c, &w)
		return nil
	case !c.named:
		return s.leadingWord(f, &w)
	}
	return s.argumentWord(c, &w)
}

// redirectionTarget notes a value that the redirection just read feeds to
// the command's standard input (<<< value, < <(... value ...)).
func (c *command) redirectionTarget(w *word) {
	switch {
	case len(w.slots) == 0:
	case c.redir == "<<<":
		c.here = &w.slots[0]
	case c.redir == "<" && w.slots[0].via == "<(":
		c.here = &w.slots[0]
	}
	c.redir = ""
}

// forLoopWord reads a word of for NAME in WORDS; do (or select), whose
// words are assigned to NAME.
func (s *shellScan) forLoopWord(c *command, w *word) {
	lit := string(w.lit)
	switch c.forWord {
	case 1:
		c.forWord = 2
		c.st.names = []string{lit} // for NAME in ...: each word is assigned to NAME
	case 2:
		switch {
		case w.plain && lit == "in":
			c.forWord = 3
		case w.plain && lit == "do":
			c.reset()
		default:
			s.poison(w.start, "a for loop relctl cannot read")
		}
	case 3:
		if len(w.slots) > 0 && len(c.st.names) > 0 {
			s.assigned = append(s.assigned, assignment{names: c.st.names, use: w.slots[0], how: "assigned by for to"})
		}
		// The loop's words: ordinary words.
	}
}

// leadingWord classifies a word before the command name: an option of
// time, the NAME of coproc NAME { ...; }, a reserved word, an assignment,
// or the command name itself.
func (s *shellScan) leadingWord(f *frame, w *word) error {
	c := f.cmd
	lit := string(w.lit)
	if c.timeOpts {
		c.timeOpts = false
		if w.plain && c.prefix == 0 && strings.HasPrefix(lit, "-") {
			c.timeOpts = true
			c.wordCount = 0
			return nil
		}
	}
	if c.coprocAt {
		c.coprocAt = false
		if w.plain && c.prefix == 0 && varName.MatchString(lit) && s.compoundAt(w.start+len(w.lit)) {
			c.wordCount = 0
			return nil
		}
	}
	if w.plain && c.prefix == 0 && s.reservedWord(f, lit) {
		return nil
	}
	if name, ok := assignmentName(w.lit); ok {
		c.prefix++
		return s.assign(name, w, "assigned to")
	}
	return s.commandName(c, w)
}

// reservedWord acts on lit as a reserved word (or bash's time, coproc and
// [[) where a command name could stand, and reports whether it was one.
func (s *shellScan) reservedWord(f *frame, lit string) bool {
	c := f.cmd
	switch lit {
	case "time":
		c.wordCount, c.timeOpts = 0, true
	case "coproc":
		c.wordCount, c.coprocAt = 0, true
	case "if", "while", "until", "{":
		f.nest++
		c.wordCount = 0 // a command comes next
	case "then", "else", "elif", "do", "!":
		c.wordCount = 0
	case "fi", "done", "}":
		f.nest = max(0, f.nest-1)
		c.named = true
	case "case":
		c.named = true
		s.push(&frame{kind: frameCase, opener: "case", cmd: &command{}})
	case "for", "select":
		f.nest++
		c.named, c.forWord = true, 1
	case "function":
		c.fnName = true
	case "[[":
		c.named = true
		s.push(&frame{kind: frameTest, opener: "[["})
	case "esac":
		if f.kind != frameCase {
			return false // an ordinary word outside a case
		}
		s.pop()
	default:
		return false
	}
	return true
}

// commandName reads the word that names the command and picks the rule its
// arguments are checked by.
func (s *shellScan) commandName(c *command, w *word) error {
	c.named = true
	if len(w.slots) > 0 && w.slots[0].first && w.slots[0].direct && w.slots[0].sl.list > 0 {
		sl := w.slots[0].sl
		return s.refuse(sl, "%s is a list, which renders as one word per element, and here an element after the first would be the command to run; use the list where several words belong, e.g. for r in %s; do ...; done", sl.action, sl.action)
	}
	if w.brace == 2 {
		s.poison(w.start, "a bash brace expansion {a,b} in a command name")
	}
	c.rule, c.name = s.ruleFor(w)
	return nil
}

// argumentWord classifies a word after the command name: options relctl
// cannot see through, or an argument checked by the command's rule.
func (s *shellScan) argumentWord(c *command, w *word) error {
	if w.brace == 2 && c.rule != ruleNone {
		// printf and [ ] mind only an option made by it; a script path,
		// a program name or a command string can be made of any.
		if v := string(w.val); c.rule != ruleFlagName && c.rule != ruleTest || strings.HasPrefix(v, "-") || strings.Contains(v, "{-") || strings.Contains(v, ",-") {
			s.poison(w.start, "a bash brace expansion {a,b} among the arguments of "+c.name+", which could make options or a script of it")
		}
	}
	if err := s.afterUnknownOptions(c, w); err != nil {
		return err
	}
	if c.st.unknown == w && c.rule != ruleTest && c.rule != ruleFlagName {
		if c.rule == ruleDeclare {
			// It may be -i, -n or a name declared so: later assignments
			// could be evaluated.
			c.declUnknown = w.start + 1
		}
		return nil // options, perhaps: not the command's operand
	}
	return s.argument(c, w)
}

var varName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// compoundAt reports whether a compound command starts at i, after blanks
// (bash's coproc NAME { ...; } takes NAME as the coprocess's name).
func (s *shellScan) compoundAt(i int) bool {
	t := s.t
	for i < len(t) && (t[i] == ' ' || t[i] == '\t') {
		i++
	}
	if i < len(t) && t[i] == '(' {
		return true
	}
	j := i
	for j < len(t) && strings.IndexByte(" \t\n;&|<>()", t[j]) < 0 {
		j++
	}
	switch t[i:j] {
	case "{", "if", "while", "until", "for", "case", "select", "[[", "function":
		return true
	}
	return false
}

// ruleFor picks how a command's arguments are checked, from its name.
func (s *shellScan) ruleFor(w *word) (argRule, string) {
	name, literal := w.literal()
	if !literal {
		return ruleWrapper, "" // $SUDO, a value: a program relctl cannot see; look at its arguments
	}
	if w.plain {
		for range 8 {
			a, ok := s.aliases[name]
			if !ok {
				break
			}
			name = a
		}
	}
	return ruleForName(path.Base(name))
}

func ruleForName(name string) (argRule, string) {
	if r, n := ruleForExactName(name); r != ruleNone {
		return r, n
	}
	// A versioned interpreter or shell: python3.11, perl5.36, bash5.2.
	if v := strings.TrimRight(name, "0123456789."); v != name && v != "" {
		if r, n := ruleForExactName(v); r == ruleInterp || r == ruleShell {
			return r, n
		}
	}
	return ruleNone, name
}

func ruleForExactName(name string) (argRule, string) {
	switch name {
	case "eval", "let", "trap", "alias", "watch", "compgen", "complete":
		return ruleCode, name
	case "declare", "typeset", "local", "export", "readonly":
		return ruleDeclare, name
	case "read", "unset", "mapfile", "readarray", "getopts":
		return ruleNames, name
	case "printf", "wait":
		return ruleFlagName, name
	case "[", "test":
		return ruleTest, name
	case "sh", "bash", "dash", "ksh", "mksh", "lksh", "pdksh", "oksh", "zsh", "ash", "yash", "posh", "rbash":
		return ruleShell, name
	case "su", "runuser":
		return ruleSu, name
	case "ssh":
		return ruleSSH, name
	case ".", "source":
		return ruleSource, name
	}
	if _, ok := interpreters[name]; ok {
		return ruleInterp, name
	}
	switch name {
	case "command", "builtin", "exec", "env", "nohup", "nice", "time", "timeout", "sudo", "doas",
		"setsid", "stdbuf", "xargs", "chroot", "ionice", "taskset", "chrt", "unshare", "nsenter",
		"busybox", "find", "flock", "unbuffer", "systemd-run":
		return ruleWrapper, name
	}
	return ruleNone, name
}

// argument checks a value in an argument of the command being read.
func (s *shellScan) argument(c *command, w *word) error {
	val, literal := w.literal()
	var first *slotUse
	if len(w.slots) > 0 {
		first = &w.slots[0]
	}
	// After a wrapper, relctl does not follow which word is an option's
	// argument (env -u sh bash -c ..., find -name sh -exec bash -c ...):
	// any later word naming a shell, su, ssh or an interpreter may be the
	// program it runs, so the strictest reading wins from there on.
	if c.wrapped && c.rule != ruleWrapper && c.rule != ruleSSH && literal {
		if r, name := ruleForName(path.Base(val)); r == ruleShell || r == ruleSu || r == ruleSSH || r == ruleInterp {
			c.rule, c.name, c.st = r, name, ruleState{}
			return nil
		}
	}
	switch c.rule {
	case ruleWrapper:
		return s.wrapperArgument(c, w, first)
	case ruleCode:
		return s.codeArgument(c, w, first)
	case ruleDeclare:
		return s.declareArgument(c, w, first)
	case ruleNames:
		return s.namesArgument(c, w, first)
	case ruleFlagName:
		return s.flagNameArgument(c, w, first)
	case ruleTest:
		return s.testArgument(c, w, first)
	case ruleShell:
		return s.shellArgument(c, w, first)
	case ruleSu:
		return s.suArgument(c, w, first)
	case ruleSSH:
		return s.sshArgument(c, w, first)
	case ruleSource:
		return s.sourceArgument(c, w, first)
	case ruleInterp:
		return s.interpArgument(c, w, first)
	}
	return nil
}

// wrapperArgument checks an argument of a command that runs its arguments
// as a command (env, sudo, xargs, find -exec, ...), and follows it to the
// program it runs.
func (s *shellScan) wrapperArgument(c *command, w *word, first *slotUse) error {
	val, literal := w.literal()
	st := &c.st
	if first != nil {
		// env NAME=value (and sudo's): the program it starts reads them.
		if name, _, ok := strings.Cut(val, "="); ok && (codeVariables[name] || strings.HasPrefix(name, "BASH_FUNC_")) {
			return s.refuse(first.sl, "%s is assigned to %s in the environment of the program %s starts, and a shell runs or expands that variable's text (BASH_ENV, ENV, prompts, PS4, exported functions), so the value would run as code; set %s to fixed text", first.sl.action, name, c.name, name)
		}
	}
	short := len(val) > 1 && val[0] == '-' && val[1] != '-'
	long, _, attached := strings.Cut(strings.TrimPrefix(val, "--"), "=")
	isLong := strings.HasPrefix(val, "--") && len(val) > 2
	if optionLike(first) && !st.optsDone && (c.name == "env" || c.name == "flock" || c.name == "xargs") {
		return s.refuse(first.sl, "%s is %q, where %s reads options, and some of them take a command line or code; put -- before it", first.sl.action, first.sl.value, c.name)
	}
	if literal && val == "--" {
		st.optsDone = true
	}
	if c.name == "env" || c.name == "flock" {
		// env -S STRING splits STRING into a command line; flock -c
		// COMMAND runs COMMAND through sh -c.
		letter, longName := "S", "split-string"
		if c.name == "flock" {
			letter, longName = "c", "command"
		}
		if first != nil && (st.optArg == letter || !st.optsDone && (short && strings.Contains(val, letter) || isLong && strings.HasPrefix(longName, long))) {
			if c.name == "env" {
				return s.refuse(first.sl, "%s is the string env -S splits into a command line, so the value would choose the command and its arguments; pass it as one argument of the command instead", first.sl.action)
			}
			return s.refuse(first.sl, "%s is the command flock -c runs through a shell, so it would run as code; pass the value as an argument of a fixed command instead: flock FILE sh -c '... \"$1\" ...' sh %s", first.sl.action, first.sl.action)
		}
		st.optArg = ""
		if literal && !st.optsDone && (short && strings.HasSuffix(val, letter) || isLong && !attached && strings.HasPrefix(longName, long)) {
			st.optArg = letter
		}
	}
	if c.name == "xargs" {
		c.viaXargs = true
		c.xargsRepl = c.xargsRepl || literal && (short && strings.ContainsAny(val, "Ii") || isLong && strings.HasPrefix("replace", long))
	}
	if literal {
		c.wrappedProgram(val)
	}
	return nil
}

// wrappedProgram follows a wrapper's literal argument val to the program it
// runs: a shell, su, ssh, an interpreter. Builtins (eval, declare, test -v,
// ...) run only through command and builtin, as the word right after them.
func (c *command) wrappedProgram(val string) {
	r, name := ruleForName(path.Base(val))
	switch r {
	case ruleShell, ruleSu, ruleSSH, ruleInterp:
		c.rule, c.name, c.st = r, name, ruleState{}
		c.wrapped = true
	case ruleNone, ruleWrapper:
	default:
		if (c.name == "command" || c.name == "builtin") && !c.st.program {
			c.rule, c.name, c.st = r, name, ruleState{}
		}
	}
	if len(val) > 0 && val[0] != '-' {
		c.st.program = true // command's and builtin's word is read
	}
}

// codeArgument refuses a value among the arguments of eval, let, trap,
// alias and the like, and notes the aliases alias defines.
func (s *shellScan) codeArgument(c *command, w *word, first *slotUse) error {
	if first != nil {
		return s.refuse(first.sl, "%s is an argument of %s, which %s, so quoting cannot keep the value from running; pass the value as data instead, e.g. assign it (v=%s) and have the code read \"$v\"", first.sl.action, c.name, codeWhy[c.name], first.sl.action)
	}
	if val, literal := w.literal(); c.name == "alias" && literal {
		s.alias(w.start, val)
	}
	return nil
}

// namesArgument refuses a value among the arguments of read, unset, mapfile
// and the like, which name variables, and notes the names.
func (s *shellScan) namesArgument(c *command, w *word, first *slotUse) error {
	if first != nil {
		return s.refuse(first.sl, "%s is an argument of %s, whose arguments name variables (and mapfile -C runs code), and bash evaluates an array subscript in a name (a[$(cmd)]) as arithmetic; write the arguments literally (a value belongs in a redirection: %s name <<< %s)", first.sl.action, c.name, c.name, first.sl.action)
	}
	if val, literal := w.literal(); literal && !strings.HasPrefix(val, "-") {
		c.st.names = append(c.st.names, val)
	}
	return nil
}

// flagNameArgument refuses a value as the variable name of printf -v or
// wait -p, and notes the name.
func (s *shellScan) flagNameArgument(c *command, w *word, first *slotUse) error {
	val, literal := w.literal()
	st := &c.st
	flag := "-v"
	if c.name == "wait" {
		flag = "-p"
	}
	if first != nil && (st.optArg == flag || strings.HasPrefix(val, flag)) {
		return s.refuse(first.sl, "%s is the variable name of %s %s, and bash evaluates an array subscript in a name (a[$(cmd)]) as arithmetic; write the name literally", first.sl.action, c.name, flag)
	}
	if st.optArg == flag && literal {
		st.names = append(st.names, val)
	}
	switch {
	case literal && val == flag:
		st.optArg = flag
	case st.optArg == "" && literal && (val == "--" || !strings.HasPrefix(val, "-")):
		st.optsDone = true // the format (printf) or the first pid (wait): no options after it
		st.optArg = ""
	default:
		st.optArg = ""
	}
	return nil
}

// testArgument refuses a value that [ or test could read as a variable
// name (after -v or -R, or after a value that may be -v), whose subscript
// bash evaluates.
func (s *shellScan) testArgument(c *command, w *word, first *slotUse) error {
	st := &c.st
	prev := st.prev
	st.prev = w
	if first == nil && !w.exp {
		return nil
	}
	if pv, pl := prev.literalOr(); pl && (pv == "-v" || pv == "-R") && first != nil {
		return s.refuse(first.sl, "%s follows %s in a test, which names a variable, and bash evaluates an array subscript in a name (a[$(cmd)]) as arithmetic; write the name literally", first.sl.action, pv)
	}
	if prev != nil && len(prev.slots) > 0 && !prev.tail && prev.slots[0].first && prev.slots[0].direct && prev.slots[0].sl.known && (prev.slots[0].sl.value == "-v" || prev.slots[0].sl.value == "-R") {
		p := prev.slots[0].sl
		return s.refuse(p, "%s is %q, right before another value or expansion in a test, so bash would evaluate the next word as a variable name with an arithmetic subscript (a[$(cmd)] runs cmd); put an operator between them, e.g. [ %s = ... ]", p.action, p.value, p.action)
	}
	return nil
}

// suArgument refuses a value as the command su -c or runuser -c runs.
func (s *shellScan) suArgument(c *command, w *word, first *slotUse) error {
	val, literal := w.literal()
	st := &c.st
	if first != nil && (st.sawC || strings.HasPrefix(val, "-c") || strings.HasPrefix(val, "--command") || strings.HasPrefix(val, "--session-command")) {
		return s.refuse(first.sl, "%s is the command %s -c runs through a shell, so it would run as code; pass the value as an argument or in the environment of a fixed command instead", first.sl.action, c.name)
	}
	st.sawC = literal && (val == "-c" || val == "--command" || val == "--session-command")
	return nil
}

// sourceArgument reads the script operand of . and source: refused when a
// value is written into it, noted when it is standard input.
func (s *shellScan) sourceArgument(c *command, w *word, first *slotUse) error {
	st := &c.st
	if st.operand {
		return nil
	}
	st.operand = true
	if first != nil && first.via == "<(" {
		return s.refuse(first.sl, "%s is written into the script %s reads (through <(...)), so it would run as code; pass the value to a fixed script as an argument or a variable instead", first.sl.action, c.name)
	}
	val, literal := w.literal()
	st.stdin = literal && stdinScripts(val) && val != "-"
	return nil
}

// literalOr returns a word's literal value; a nil word is not literal.
func (w *word) literalOr() (string, bool) {
	if w == nil {
		return "", false
	}
	return w.literal()
}

// afterUnknownOptions refuses a value after an expansion ($opts, "$o")
// that stands where the command reads options: it could hold -c, -v, -i
// or -e, and make the value code. It also notes such an expansion.
func (s *shellScan) afterUnknownOptions(c *command, w *word) error {
	st := &c.st
	if u := st.unknown; u != nil {
		name := excerptWord(s.t, u.start)
		if c.rule == ruleTest || c.rule == ruleFlagName {
			st.unknown = nil // only the word right after it
			if len(w.slots) > 0 && w.slots[0].first {
				sl := w.slots[0].sl
				return s.refuse(sl, "%s comes right after %s in %s, and if that held -v, bash would take the value as a variable name and evaluate its subscript as arithmetic (a[$(cmd)] runs cmd); put an operator or a literal word between them", sl.action, name, c.name)
			}
		} else if val, literal := w.literal(); c.rule == ruleSSH && literal && val == "--" {
			st.unknown, st.dashed = nil, true
		} else if len(w.slots) > 0 {
			sl := w.slots[0].sl
			fix := "put -- before " + name
			if c.rule == ruleSSH {
				fix = "put -- before the destination"
			}
			return s.refuse(sl, "%s comes after %s, an expansion where %s reads options, and if it held an option like -c, -i, -e or -o the value would be code; write the options literally, or %s", sl.action, name, c.name, fix)
		}
	}
	if !w.dyn || len(w.slots) > 0 || !w.exp || len(w.val) > 0 && w.val[0] != '-' && w.val[0] != '+' {
		return nil
	}
	var readsOptions bool
	switch c.rule {
	case ruleShell, ruleSSH, ruleSu:
		readsOptions = !st.optsDone && !st.operand
	case ruleInterp:
		readsOptions = !st.optsDone && (interpreters[c.name].permute || !st.operand)
	case ruleDeclare:
		readsOptions = !st.optsDone
	case ruleFlagName:
		readsOptions = !st.optsDone
	case ruleTest:
		readsOptions = true // operators may come anywhere: [ x = y -a -v z ]
	}
	if readsOptions {
		st.unknown = w
	}
	return nil
}

// excerptWord shows the word at i, for messages.
func excerptWord(t string, i int) string {
	end := i
	for end < len(t) && strings.IndexByte(" \t\n;&|<>", t[end]) < 0 {
		end++
	}
	return t[i:end]
}

var codeWhy = map[string]string{
	"eval":     "runs its arguments as shell code",
	"let":      "evaluates its arguments as arithmetic (a value like a[$(cmd)] runs cmd)",
	"trap":     "runs its action as shell code when the signal comes",
	"alias":    "defines shell code that runs where the alias is used (dash expands aliases in scripts)",
	"watch":    "joins its arguments into a command line for sh -c",
	"compgen":  "expands its word list again and runs its -C command and -F function",
	"complete": "expands its word list again and runs its -C command and -F function",
}

// alias records a literal alias definition name=value, so a command named
// after it is checked as the command its value starts with.
func (s *shellScan) alias(at int, def string) {
	name, value, ok := strings.Cut(def, "=")
	if !ok {
		return
	}
	if strings.HasSuffix(value, " ") || strings.HasSuffix(value, "\t") {
		s.poison(at, "an alias whose value ends in a blank, which makes the shell expand the next word as an alias too")
	}
	fields := strings.Fields(value)
	if len(fields) == 0 {
		return
	}
	if s.aliases == nil {
		s.aliases = map[string]string{}
	}
	s.aliases[name] = fields[0]
}

// declareArgument: declare [-options] name[=value] ...
func (s *shellScan) declareArgument(c *command, w *word, first *slotUse) error {
	st := &c.st
	val, literal := w.literal()
	if !st.optsDone && literal && len(val) > 1 && (val[0] == '-' || val[0] == '+') {
		if val == "--" {
			st.optsDone = true
		} else {
			st.opts += val[1:]
		}
		return nil
	}
	eq := strings.IndexByte(val, '=')
	name := val
	if eq >= 0 {
		name = val[:eq]
	}
	if i := strings.IndexAny(name, "+["); i >= 0 {
		name = name[:i]
	}
	if first == nil {
		if k := strings.IndexAny(st.opts, "inaA"); k >= 0 {
			if !literal {
				s.poison(w.start, c.name+" -"+st.opts+" with a name relctl cannot see")
			} else {
				if strings.Contains(st.opts, "i") {
					s.intNames[name] = "which the template declares integer (" + c.name + " -i)"
				} else {
					s.intNames[name] = "which the template declares with " + c.name + " -" + st.opts[k:k+1] + " (bash evaluates what is assigned to it)"
				}
			}
		}
		return nil
	}
	if eq < 0 {
		return s.refuse(first.sl, "%s is part of the name %s declares, and bash evaluates an array subscript in a name (a[$(cmd)]) as arithmetic; write the name literally: %s name=%s", first.sl.action, c.name, c.name, first.sl.action)
	}
	if bad := strings.Trim(st.opts, "rxgltu"); bad != "" {
		return s.refuse(first.sl, "%s is assigned by %s -%s, which makes bash evaluate the value (-i: as arithmetic, -n: as a variable name, -a/-A: as array elements), where a value like a[$(cmd)] runs cmd; assign it without that option, or check it is a number first", first.sl.action, c.name, bad)
	}
	return s.assign(name, w, "assigned by "+c.name+" to")
}

// shellArgument: sh [options] [-c command_string [name [args]] | script [args]].
func (s *shellScan) shellArgument(c *command, w *word, first *slotUse) error {
	st := &c.st
	val, literal := w.literal()
	if st.operand {
		return nil
	}
	if st.optArg != "" {
		st.optArg = ""
		if first != nil {
			return s.refuse(first.sl, "%s is the argument of an option of %s; write the options of a shell literally", first.sl.action, c.name)
		}
		return nil
	}
	if !st.optsDone && len(val) > 0 && (val[0] == '-' || val[0] == '+') && (len(val) > 1 || !literal) {
		if first != nil {
			return s.refuse(first.sl, "%s is part of an option of %s, so a value like c would make the next word code; write the options of a shell literally", first.sl.action, c.name)
		}
		switch {
		case val == "--" || val == "-":
			st.optsDone = true
			st.stdin = st.stdin || val == "-"
		case strings.HasPrefix(val, "--"):
			if val == "--rcfile" || val == "--init-file" {
				st.optArg = val
			}
		default:
			if strings.ContainsRune(val[1:], 'c') {
				st.sawC = true
			}
			if strings.ContainsRune(val[1:], 's') {
				st.stdin = true
			}
			if last := val[len(val)-1]; last == 'o' || last == 'O' {
				st.optArg = val
			}
		}
		return nil
	}
	st.operand = true
	if st.stdin && !st.sawC {
		return nil // sh -s: the words are arguments; the script comes from stdin
	}
	if first == nil {
		st.stdin = st.stdin || !st.sawC && literal && stdinScripts(val)
		return nil
	}
	if st.sawC {
		return s.refuse(first.sl, "%s is the command string of %s -c, which the shell runs as code; pass the value as an argument instead and use \"$1\" in the command: %s -c '... \"$1\" ...' %s %s", first.sl.action, c.name, c.name, c.name, first.sl.action)
	}
	if first.via == "<(" {
		return s.refuse(first.sl, "%s is written into the script %s runs (through <(...)), so it would run as code; pass the value to a fixed script as an argument instead", first.sl.action, c.name)
	}
	if optionLike(first) && !w.slash && !st.optsDone {
		return s.refuse(first.sl, "%s is %q, where %s reads options, so it would be read as options (-c makes the next word code); put -- before it: %s -- %s", first.sl.action, first.sl.value, c.name, c.name, first.sl.action)
	}
	return nil
}

// sshOptArgs are the ssh options that take an argument.
const sshOptArgs = "BbcDEeFIiJLlmOoPpQRSWw"

// sshArgument: ssh [options] destination [command [argument ...]].
func (s *shellScan) sshArgument(c *command, w *word, first *slotUse) error {
	st := &c.st
	val, literal := w.literal()
	refuseOption := func() error {
		return s.refuse(first.sl, "%s would name an ssh -o option (ProxyCommand runs a command); write the option name literally: -o User=%s", first.sl.action, first.sl.action)
	}
	if st.operand {
		if first != nil {
			return s.refuse(first.sl, "%s is part of the remote command of ssh, which joins its arguments into one line that the remote shell parses again, so relctl's quoting is undone; send the value on stdin instead: printf '%%s\\n' %s | ssh host 'read -r v; ... \"$v\"'", first.sl.action, first.sl.action)
		}
		return nil
	}
	if st.optArg != "" {
		opt := st.optArg
		st.optArg = ""
		if first != nil && opt == "o" && first.first {
			return refuseOption()
		}
		return nil
	}
	if !st.optsDone && len(val) > 0 && val[0] == '-' && (len(val) > 1 || !literal) {
		if val == "--" && literal {
			st.optsDone = true
			return nil
		}
		for k := 1; k < len(val); k++ {
			if strings.IndexByte(sshOptArgs, val[k]) < 0 {
				continue
			}
			switch {
			case k < len(val)-1: // the argument is attached: -oUser=x
			case literal:
				st.optArg = string(val[k])
			case val[k] == 'o' && first != nil:
				return refuseOption()
			}
			return nil
		}
		if first != nil {
			return s.refuse(first.sl, "%s is part of an option of ssh, so a value like oProxyCommand=... would run a command; write the options literally", first.sl.action)
		}
		return nil
	}
	st.operand = true
	if optionLike(first) && (!st.optsDone || st.dashed) {
		return s.refuse(first.sl, "%s is %q, where ssh reads options, and an option like -oProxyCommand=... runs a command; put -- before the destination: ssh -- %s ...", first.sl.action, first.sl.value, first.sl.action)
	}
	return nil
}

// interpreter describes the options of a program that runs program text.
type interpreter struct {
	code     string          // short options whose argument is program text
	longCode map[string]bool // long options whose argument is program text
	file     string          // short options whose argument is a program file
	args     string          // other short options that take an argument
	operand  bool            // without a code or file option, the first operand is program text
	permute  bool            // options may follow operands (GNU getopt)
}

var interpreters = map[string]interpreter{
	"sed":     {code: "e", longCode: map[string]bool{"expression": true}, file: "f", args: "l", operand: true, permute: true},
	"awk":     {code: "e", longCode: map[string]bool{"source": true}, file: "fE", args: "vFil", operand: true},
	"gawk":    {code: "e", longCode: map[string]bool{"source": true}, file: "fE", args: "vFil", operand: true},
	"mawk":    {file: "f", args: "vFW", operand: true},
	"nawk":    {file: "f", args: "vF", operand: true},
	"perl":    {code: "eE", args: "IiMmlCdDx0"},
	"python":  {code: "c", args: "mWXQ"},
	"python2": {code: "c", args: "mWXQ"},
	"python3": {code: "c", args: "mWXQ"},
	"ruby":    {code: "e", args: "IrCEFKTx0"},
	"node":    {code: "ep", longCode: map[string]bool{"eval": true, "print": true}, args: "r"},
	"nodejs":  {code: "ep", longCode: map[string]bool{"eval": true, "print": true}, args: "r"},
	"php":     {code: "rBRE", file: "F", args: "cdfz"},
}

// interpArgument checks the program text of sed, awk, perl, python, ruby,
// node and php: a value there is code. A value where options are read
// could itself be an option that takes code (-e ..., --expression=...).
func (s *shellScan) interpArgument(c *command, w *word, first *slotUse) error {
	st := &c.st
	in := interpreters[c.name]
	val, literal := w.literal()
	if st.optArg != "" {
		return s.interpOptionArgument(c, in, first, val, literal)
	}
	options := !st.optsDone && (in.permute || !st.operand)
	if options && len(val) > 1 && val[0] == '-' || options && len(val) == 1 && val == "-" && !literal {
		if val == "--" && literal {
			st.optsDone = true
			return nil
		}
		if strings.HasPrefix(val, "--") {
			return s.interpLongOption(c, in, first, val)
		}
		return s.interpShortOptions(c, in, first, val, literal)
	}
	return s.interpOperand(c, in, first, val, literal, options)
}

// refuseProgramText refuses the value first as program text of the
// interpreter c runs.
func (s *shellScan) refuseProgramText(c *command, first *slotUse) error {
	return s.refuse(first.sl, "%s is program text for %s, which runs it, so the value would run as code; pass the value as data instead (an argument the program reads, a variable, or a file)", first.sl.action, c.name)
}

// interpOptionArgument reads the word after an interpreter's option that
// takes an argument (st.optArg): program text, a program file or other.
func (s *shellScan) interpOptionArgument(c *command, in interpreter, first *slotUse, val string, literal bool) error {
	st := &c.st
	opt := st.optArg
	st.optArg = ""
	switch {
	case strings.Contains(in.code, opt) || in.longCode[opt]:
		st.program = true
		if first != nil {
			return s.refuseProgramText(c, first)
		}
	case strings.Contains(in.file, opt):
		st.program = true
		st.stdin = st.stdin || literal && stdinScripts(val)
	}
	return nil
}

// interpLongOption reads an interpreter's --option[=argument].
func (s *shellScan) interpLongOption(c *command, in interpreter, first *slotUse, val string) error {
	st := &c.st
	long, _, attached := strings.Cut(val[2:], "=")
	if in.longCode[long] {
		st.program = true
		if first != nil {
			return s.refuseProgramText(c, first)
		}
		if !attached {
			st.optArg = long
		}
	}
	if first != nil && !attached {
		return s.refuse(first.sl, "%s is part of an option of %s, and some of its options take program text; write the options literally", first.sl.action, c.name)
	}
	return nil
}

// interpShortOptions reads a word of an interpreter's short options, up to
// the first that takes an argument (the rest of the word, or the next word).
func (s *shellScan) interpShortOptions(c *command, in interpreter, first *slotUse, val string, literal bool) error {
	st := &c.st
	for k := 1; k < len(val); k++ {
		o := string(val[k])
		takes := strings.Contains(in.code+in.file+in.args, o)
		if !takes {
			continue
		}
		if k == len(val)-1 && literal {
			st.optArg = o
			return nil
		}
		// The rest of the word is the option's argument.
		if strings.Contains(in.code, o) {
			st.program = true
			if first != nil {
				return s.refuseProgramText(c, first)
			}
		}
		if strings.Contains(in.file, o) {
			st.program = true
		}
		return nil
	}
	if first != nil {
		return s.refuse(first.sl, "%s is part of an option of %s, and some of its options take program text; write the options literally", first.sl.action, c.name)
	}
	return nil
}

// interpOperand reads an interpreter's operand: the program text when no
// option gave one, else the script or its arguments. options tells whether
// the interpreter still reads options here.
func (s *shellScan) interpOperand(c *command, in interpreter, first *slotUse, val string, literal, options bool) error {
	st := &c.st
	if !st.operand && !st.program && in.operand {
		st.operand, st.program = true, true
		if first != nil {
			return s.refuseProgramText(c, first)
		}
		return nil
	}
	if optionLike(first) && options {
		opt := "-f"
		if in.code != "" {
			opt = "-" + in.code[:1]
		}
		return s.refuse(first.sl, "%s is %q, where %s reads options, and an option like %s takes program text it runs; put -- before it", first.sl.action, first.sl.value, c.name, opt)
	}
	if !st.operand && !st.program {
		st.stdin = literal && stdinScripts(val)
		if first != nil && first.via == "<(" {
			return s.refuseProgramText(c, first)
		}
	}
	st.operand = true
	if !in.permute {
		st.program = true // the rest are the program's arguments
	}
	return nil
}

// comment checks the shell comment starting at i and returns the offset of
// the newline that ends it.
func (s *shellScan) comment(i int) (int, error) {
	t := s.t
	j := i
	for j < len(t) && t[j] != '\n' {
		if end, sl, _, ok := s.next(j); ok {
			if sl != nil {
				return 0, s.refuse(sl, "%s is in a shell comment; a value holding a newline would end the comment and run as a command, so move it out of the comment", sl.action)
			}
			j = max(end, j+1)
			continue
		}
		j++
	}
	return j, nil
}

// quotedPart opens the quoting or expansion starting at t[i] (', ", $ or
// `) inside command c's current word, the same in a command and in a case
// head, and returns where reading goes on.
func (s *shellScan) quotedPart(c *command, i int) int {
	switch s.t[i] {
	case '\'':
		s.wordPart(i, &frame{kind: frameSingle, opener: "'"})
	case '"':
		s.wordPart(i, &frame{kind: frameDouble, opener: `"`})
	case '`':
		s.wordPart(i, &frame{kind: frameBackquote, opener: "`"})
	default: // '$'
		if end := s.dollar(i, false); end > 0 {
			return end
		}
		c.expansion(i)
	}
	return i + 1
}

// stepCaseHead reads the subject, "in" and the patterns of a case.
func (s *shellScan) stepCaseHead(f *frame, i int) (int, error) {
	t := s.t
	c := f.cmd
	ch := t[i]
	if strings.IndexByte(" \t\n;&|()<>", ch) >= 0 {
		if err := s.endCaseWord(f); err != nil {
			return 0, err
		}
		if s.top() != f { // esac ended the case: its frame reads this character
			return i, nil
		}
	}
	switch {
	case ch == ' ' || ch == '\t' || ch == '\n':
		return i + 1, nil
	case ch == '\\':
		if i+1 < len(t) && t[i+1] == '\n' {
			return i + 2, nil
		}
		c.quote(i)
		return s.escaped(i), nil
	case ch == '#' && !c.inWord:
		return s.comment(i)
	case ch == '\'' || ch == '"' || ch == '$' || ch == '`':
		return s.quotedPart(c, i), nil
	case f.caseAt == casePattern && ch == '|':
		return i + 1, nil
	case f.caseAt == casePattern && ch == '(' && !c.inWord && f.words == 0:
		return i + 1, nil
	case f.caseAt == casePattern && ch == ')':
		f.caseAt = caseBody
		c.reset()
		return i + 1, nil
	case strings.IndexByte(";&|()<>", ch) >= 0:
		s.poison(i, "a case statement relctl cannot read")
		return i + 1, nil
	}
	c.literal(i, ch)
	return i + 1, nil
}

func (s *shellScan) endCaseWord(f *frame) error {
	c := f.cmd
	if !c.inWord {
		return nil
	}
	c.inWord = false
	lit := string(c.w.lit)
	switch f.caseAt {
	case caseSubject:
		f.caseAt = caseIn
	case caseIn:
		if !c.w.plain || lit != "in" {
			s.poison(c.w.start, "a case without in")
		}
		f.caseAt, f.words = casePattern, 0
	case casePattern:
		if f.words == 0 && c.w.plain && lit == "esac" {
			s.pop()
			return nil
		}
		f.words++
	}
	c.w = word{}
	return nil
}

// stepArray reads the elements of a bash array assignment name=( ... ).
func (s *shellScan) stepArray(f *frame, i int) (int, error) {
	t := s.t
	ch := t[i]
	switch {
	case ch == ' ' || ch == '\t' || ch == '\n':
		f.inWord, f.sub = false, false
	case ch == ')':
		s.pop()
	case ch == '#' && !f.inWord:
		return s.comment(i)
	case ch == '\\':
		f.inWord = true
		return s.escaped(i), nil
	case ch == '\'':
		f.inWord = true
		s.push(&frame{kind: frameSingle, opener: "'"})
	case ch == '"':
		f.inWord = true
		s.push(&frame{kind: frameDouble, opener: `"`})
	case ch == '$':
		f.inWord = true
		if end := s.dollar(i, false); end > 0 {
			return end, nil
		}
	case ch == '`':
		f.inWord = true
		s.push(&frame{kind: frameBackquote, opener: "`"})
	case ch == '[' && !f.inWord:
		f.inWord, f.sub = true, true
	case ch == ']':
		f.inWord, f.sub = true, false
	case strings.IndexByte(";&|(<>", ch) >= 0:
		s.poison(i, "an array assignment relctl cannot read")
	default:
		f.inWord = true
	}
	return i + 1, nil
}

func (s *shellScan) stepDollarSingle(f *frame, i int) int {
	t := s.t
	switch t[i] {
	case '\\':
		f.escape = true
		return s.escaped(i)
	case '\'':
		if f.escape {
			s.poison(i, "a $'...' with a backslash, which bash reads as an escape and dash does not, so the two disagree about where the quotes end")
		}
		s.pop()
	default:
		if c := s.owner(len(s.frames) - 2); c != nil {
			c.quotedChar(i, t[i])
		}
	}
	return i + 1
}

func (s *shellScan) stepDouble(i int) int {
	t := s.t
	owner := s.owner(len(s.frames) - 2)
	switch t[i] {
	case '\\':
		if owner != nil && i+1 < len(t) && !s.startsValue(i+1) {
			switch n := t[i+1]; n {
			case '$', '`', '"', '\\':
				owner.quotedChar(i, n)
			case '\n':
			default:
				owner.quotedChar(i, '\\')
				owner.quotedChar(i, n)
			}
		}
		return s.escaped(i)
	case '"':
		s.pop()
	case '$':
		if end := s.dollar(i, true); end > 0 {
			return end
		}
		if owner != nil {
			owner.expansion(i)
		}
	case '`':
		s.wordPart(i, &frame{kind: frameBackquote, opener: "`"})
	default:
		if owner != nil {
			owner.quotedChar(i, t[i])
		}
	}
	return i + 1
}

func (s *shellScan) inDouble() bool {
	for _, f := range s.frames {
		if f.kind == frameDouble {
			return true
		}
	}
	return false
}

func (s *shellScan) stepParam(i int) int {
	t := s.t
	switch t[i] {
	case '}':
		s.pop()
	case '\\':
		return s.escaped(i)
	case '\'':
		if s.inDouble() {
			s.poison(i, "a ' inside a double-quoted ${...}, which bash reads as a quote and dash does not")
		}
		s.push(&frame{kind: frameSingle, opener: "'"})
	case '"':
		s.push(&frame{kind: frameDouble, opener: `"`})
	case '$':
		if end := s.dollar(i, s.inDouble()); end > 0 {
			return end
		}
	case '`':
		s.push(&frame{kind: frameBackquote, opener: "`"})
	}
	return i + 1
}

func (s *shellScan) stepArith(f *frame, i int) int {
	t := s.t
	switch ch := t[i]; ch {
	case '(', '[':
		if (ch == '(') == (f.closer == ')') {
			f.depth++
		}
	case ')', ']':
		if ch != f.closer {
			break
		}
		if f.depth > 0 {
			f.depth--
			break
		}
		s.pop()
		if ch == ']' {
			break
		}
		if i+1 < len(t) && t[i+1] == ')' {
			return i + 2
		}
		s.poison(i, "a "+f.opener+" that ends in a single ), which bash reads as a command substitution or subshell and dash as arithmetic; write $( ( or ( ( with a space")
	case '\'', '"':
		s.poison(i, "a quote inside arithmetic, where bash and dash treat quotes differently")
	case '\\':
		return s.escaped(i)
	case '$':
		if end := s.dollar(i, true); end > 0 {
			return end
		}
	case '`':
		s.push(&frame{kind: frameBackquote, opener: "`"})
	}
	return i + 1
}

// stepTest reads bash's [[ ... ]] up to its closing ]] word.
func (s *shellScan) stepTest(f *frame, i int) int {
	t := s.t
	ch := t[i]
	switch {
	case ch == ' ' || ch == '\t' || ch == '\n':
		f.inWord = false
	case ch == ']' && !f.inWord && strings.HasPrefix(t[i:], "]]") && (i+2 == len(t) || strings.IndexByte(" \t\n;&|)", t[i+2]) >= 0):
		s.pop()
		return i + 2
	case ch == '#' && !f.inWord:
		for i < len(t) && t[i] != '\n' {
			if _, sl, _, ok := s.next(i); ok && sl != nil {
				return i // value() refuses it
			}
			i++
		}
		return i
	case ch == '\\':
		f.inWord = true
		if i+1 < len(t) && t[i+1] == '\n' {
			return i + 2
		}
		return s.escaped(i)
	case ch == '\'':
		f.inWord = true
		s.push(&frame{kind: frameSingle, opener: "'"})
	case ch == '"':
		f.inWord = true
		s.push(&frame{kind: frameDouble, opener: `"`})
	case ch == '$':
		f.inWord = true
		if end := s.dollar(i, false); end > 0 {
			return end
		}
	case ch == '`':
		f.inWord = true
		s.push(&frame{kind: frameBackquote, opener: "`"})
	case strings.IndexByte("()<>&|!;", ch) >= 0:
		f.inWord = false
	default:
		f.inWord = true
	}
	return i + 1
}

// operator reads the heredoc operator at i (<<WORD or <<-WORD) and returns
// the offset after its delimiter word.
func (s *shellScan) operator(i int) (int, error) {
	h := heredoc{}
	join := func(j int) {
		for s.continuationAt(j) {
			s.cutContinuation(j)
		}
	}
	j := i + 2
	join(j)
	t := s.t
	if j < len(t) && t[j] == '-' {
		h.stripTabs = true
		j++
	}
	for join(j); j < len(s.t) && (s.t[j] == ' ' || s.t[j] == '\t'); join(j) {
		j++
	}
	t = s.t
	delimAction := func(j int) error {
		end, sl, control, _ := s.next(j)
		_ = end
		if sl != nil {
			return s.refuse(sl, "%s is part of a heredoc delimiter (%s); write the delimiter literally", sl.action, s.t[i:j])
		}
		return s.errorf(j, control, "%s is part of a heredoc delimiter (%s); write the delimiter literally", control, s.t[i:j])
	}
	var delim strings.Builder
	for ; j < len(s.t) && strings.IndexByte(" \t\n;&|<>()", s.t[j]) < 0; join(j) {
		t = s.t
		if _, _, _, ok := s.next(j); ok {
			return 0, delimAction(j)
		}
		switch q := t[j]; q {
		case '\'', '"':
			h.quoted = true
			for j++; j < len(t) && t[j] != q; j++ {
				if q == '"' {
					join(j)
					t = s.t
					if j >= len(t) || t[j] == q {
						break
					}
				}
				if _, _, _, ok := s.next(j); ok {
					return 0, delimAction(j)
				}
				if q == '"' && t[j] == '\\' && j+1 < len(t) {
					j++
				}
				delim.WriteByte(t[j])
			}
		case '\\':
			h.quoted = true
			if j+1 < len(t) {
				j++
				delim.WriteByte(t[j])
			}
		default:
			delim.WriteByte(q)
		}
		if j < len(t) {
			j++
		}
	}
	t = s.t
	if delim.Len() == 0 {
		return j, nil // not a heredoc the shell would accept either
	}
	h.op, h.delim = t[i:j], delim.String()
	if len(s.pending) == 0 {
		s.pendingDepth = len(s.frames)
	}
	s.pending = append(s.pending, h)
	if s.cur == nil {
		s.cur = &s.pending[0]
	}
	return j, nil
}

// bodies reads the bodies of the pending heredocs, starting at offset i
// (the line after their operators), and returns the offset after the last
// end line, or the end of the text when one is missing.
func (s *shellScan) bodies(i int) (int, error) {
	t := s.t
	for _, h := range s.pending {
		s.cur = &h
		for i < len(t) {
			// In an unquoted body a line ending in an odd number of
			// backslashes continues on the next: the shell compares
			// the joined line with the delimiter (foo\<newline>EOF is
			// no end line).
			var line strings.Builder
			nl := i
			for {
				e := strings.IndexByte(t[nl:], '\n')
				if e < 0 {
					line.WriteString(t[nl:])
					nl = len(t)
					break
				}
				e += nl
				if h.quoted || (e-nl-len(strings.TrimRight(t[nl:e], "\\")))%2 == 0 {
					line.WriteString(t[nl:e])
					nl = e
					break
				}
				line.WriteString(t[nl : e-1])
				nl = e + 1
			}
			end := nl // the newline ending the (joined) line, or len(t)
			ln := line.String()
			if h.stripTabs {
				ln = strings.TrimLeft(ln, "\t")
			}
			if s.withoutComments(ln) == h.delim {
				if len(s.open) > 0 {
					return 0, s.errorf(s.open[0].at, s.open[0].action, "%s after a heredoc operator (%s) opens a block that does not close before the heredoc ends, so the heredoc's end would depend on the template; keep the block wholly inside or wholly outside the heredoc", s.open[0].action, h.op)
				}
				i = end + 1
				break
			}
			// The line holds no end: every action on it is in the body.
			j := i
			for j < end || j < len(t) && t[j] != '\n' {
				if end, sl, control, ok := s.next(j); ok {
					if err := s.bodyAction(j, sl, control, h); err != nil {
						return 0, err
					}
					j = max(end, j+1) // an action may span lines
					continue
				}
				j++
			}
			i = j + 1
		}
	}
	s.pending, s.open, s.cur = nil, nil, nil
	return min(i, len(t)), nil
}

func (s *shellScan) bodyAction(at int, sl *slot, control string, h heredoc) error {
	action := control
	if sl != nil {
		action = sl.action
	}
	word := actionWord(control)
	if sl == nil && word != "template" && word != "block" {
		return s.block(at, control)
	}
	var reason string
	if h.quoted {
		reason = fmt.Sprintf("%s is inside a heredoc (%s) whose body is literal text, so relctl's quotes around the value would end up in it; write the value outside the heredoc, e.g. printf '%%s\\n' %s >> file", action, h.op, action)
	} else {
		reason = fmt.Sprintf("%s is inside an unquoted heredoc (%s), whose body the shell expands ($(...), `...`, $var), so relctl cannot quote the value; write it outside the heredoc, e.g. printf '%%s\\n' %s >> file", action, h.op, action)
	}
	if sl != nil {
		return s.refuse(sl, "%s", reason)
	}
	return s.errorf(at, action, "%s", reason)
}

// block follows template blocks between a heredoc operator and the end of
// its body: there, a block must open and close on the same side of the end
// line, and nothing may jump past it.
func (s *shellScan) block(at int, action string) error {
	if s.cur == nil {
		return nil
	}
	switch word := actionWord(action); word {
	case "if", "range", "with", "define", "block":
		s.open = append(s.open, openBlock{at, action})
	case "else", "end":
		if len(s.open) == 0 {
			return s.errorf(at, action, "%s after a heredoc operator (%s) belongs to a block opened before it, so the heredoc's end would depend on the template; keep the block wholly inside or wholly outside the heredoc", action, s.cur.op)
		}
		if word == "end" {
			s.open = s.open[:len(s.open)-1]
		}
	case "break", "continue":
		return s.errorf(at, action, "%s after a heredoc operator (%s) could skip the heredoc's end; move it outside the heredoc", action, s.cur.op)
	}
	return nil
}

// withoutComments drops template comments, which render as nothing.
func (s *shellScan) withoutComments(line string) string {
	if !s.static {
		return line
	}
	return withoutComments(line)
}

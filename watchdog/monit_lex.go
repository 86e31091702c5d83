package watchdog

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

type tokKind int

const (
	tokWord   tokKind = iota
	tokString         // "..." or '...', text is the content without quotes
	tokOp             // = != <> == < > <= >= ,
	tokBlock          // { ... } kept whole: event lists and mail-format bodies are free text
)

type token struct {
	kind tokKind
	text string
	raw  string // as written, for error messages
	pos  Pos
}

// kw is the token as a case-insensitive keyword; strings are never keywords.
func (t token) kw() string {
	if t.kind != tokWord {
		return ""
	}
	return strings.ToLower(t.text)
}

// opRunes end a word: monit accepts "cpu>80%" as well as "cpu > 80%".
const opRunes = "=<>!,"

type lexer struct {
	file      string
	src       []byte
	off       int
	line, col int
}

func (l *lexer) peek() rune {
	if l.off >= len(l.src) {
		return -1
	}
	r, _ := utf8.DecodeRune(l.src[l.off:])
	return r
}

func (l *lexer) advance() rune {
	r, n := utf8.DecodeRune(l.src[l.off:])
	l.off += n
	if r == '\n' {
		l.line++
		l.col = 1
	} else {
		l.col++
	}
	return r
}

func (l *lexer) pos() Pos { return Pos{File: l.file, Line: l.line, Column: l.col} }

// lexMonit splits a monit control file into tokens. Comments run from '#' to
// the end of the line, except inside quotes and braces.
func lexMonit(file string, src []byte) ([]token, error) {
	l := &lexer{file: file, src: src, line: 1, col: 1}
	var toks []token
	for {
		r := l.peek()
		start, startOff := l.pos(), l.off
		switch {
		case r < 0:
			return toks, nil
		case unicode.IsSpace(r):
			l.advance()
		case r == '#':
			for r := l.peek(); r >= 0 && r != '\n'; r = l.peek() {
				l.advance()
			}
		case r == '"' || r == '\'':
			quote := l.advance()
			var b strings.Builder
			for {
				c := l.peek()
				if c < 0 {
					return nil, &SyntaxError{Pos: start, Token: firstLine(string(src[startOff:])), Msg: "unterminated string"}
				}
				l.advance()
				if c == '\\' && l.peek() == quote {
					b.WriteRune(l.advance())
					continue
				}
				if c == quote {
					break
				}
				b.WriteRune(c)
			}
			toks = append(toks, token{kind: tokString, text: b.String(), raw: string(src[startOff:l.off]), pos: start})
		case r == '{':
			l.advance()
			for c := l.peek(); c != '}'; c = l.peek() {
				if c < 0 {
					return nil, &SyntaxError{Pos: start, Token: "{", Msg: "unterminated '{' block"}
				}
				l.advance()
			}
			l.advance()
			raw := string(src[startOff:l.off])
			toks = append(toks, token{kind: tokBlock, text: strings.TrimSpace(raw[1 : len(raw)-1]), raw: raw, pos: start})
		case r == '}':
			return nil, &SyntaxError{Pos: start, Token: "}", Msg: "'}' without '{'"}
		case strings.ContainsRune(opRunes, r):
			l.advance()
			if n := l.peek(); n == '=' || (r == '<' && n == '>') {
				l.advance()
			}
			op := string(src[startOff:l.off])
			toks = append(toks, token{kind: tokOp, text: op, raw: op, pos: start})
		default:
			for c := l.peek(); c >= 0 && !unicode.IsSpace(c) && !strings.ContainsRune(opRunes+"#{}", c); c = l.peek() {
				l.advance()
			}
			w := string(src[startOff:l.off])
			toks = append(toks, token{kind: tokWord, text: w, raw: w, pos: start})
		}
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

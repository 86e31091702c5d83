// Package shellquote owns the one way relctl turns a string into a shell
// word: for the commands relctl sends to hosts (transport, state, fleet),
// for the values it renders into playbook templates (playbooks) and for the
// commands it prints for an operator to copy. It is a leaf (it imports
// nothing of relctl) so that every one of those packages can use it.
package shellquote

import "strings"

// Quote makes s one literal word for a POSIX shell (dash, bash, busybox sh):
// s goes inside single quotes, where no byte is special, and each single
// quote in s closes the quoting, is written escaped (\') and reopens it.
//
// It always quotes, even a word such as web-1 that would mean the same bare,
// because a template value is pasted next to text that a bare word would
// join: $HOME{{.Vars.x}} with x = abc is $HOME'abc' quoted but the variable
// $HOMEabc bare, and {a{{.Vars.x}}} with x = b,c is a brace expansion bare.
// Quoted, the value is a literal whatever stands next to it.
//
// A NUL byte cannot be carried by any shell word (the shell sees the
// command as a C string): callers refuse such values before quoting
// (playbooks.RenderCommand does).
func Quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

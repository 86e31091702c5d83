package fleet

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"

	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/internal/transport"
)

// What a failed ReadFile was, for errors.Is: a file that is there but
// cannot be read (a directory, a dangling symlink, no permission, too
// large; a *state.StateError naming the fix), or an answer that is not the
// read script's (cut off, garbage from a login script: a
// *state.OutputError). An absent file is no error: File.Present is false.
var (
	ErrUnreadable = state.ErrHostState
	ErrBadAnswer  = state.ErrHostOutput
)

// defaultMode is the mode given to a file whose mode the host did not
// report (no GNU stat): readable by its owner only, the safe guess for a
// file that may hold credentials.
const defaultMode = 0o600

// File is a file as a host has it: whether it exists, its bytes and its
// permission bits, so that putting it back restores it exactly.
type File struct {
	Path    string
	Present bool
	Body    []byte
	Mode    uint32 // permission bits (defaultMode when the host did not say)
}

// ReadFile reads the file at path on conn with its permission bits, in one
// command; label names the command in the run log ("" says "read PATH").
// Its bytes stay out of the run log: the file may hold secrets. A missing
// file is a File that is not Present; see ErrUnreadable and ErrBadAnswer
// for the errors.
func ReadFile(ctx context.Context, conn transport.Conn, path, label string) (*File, error) {
	if label == "" {
		label = "read " + path
	}
	res, err := conn.Run(ctx, state.ReadFileScript(path), transport.RunOptions{Label: label, QuietStdout: true})
	if err != nil {
		return nil, err
	}
	return ParseFile(path, res.Stdout)
}

// ParseFile reads the output of state.ReadFileScript(path), as ReadFile does.
func ParseFile(path string, out []byte) (*File, error) {
	hf, err := state.ParseFileRead(path, out)
	if err != nil {
		return nil, err
	}
	f := &File{Path: path, Present: hf.Present, Body: hf.Body, Mode: defaultMode}
	if hf.ModeKnown {
		f.Mode = hf.Mode
	}
	return f, nil
}

// WriteFile puts body at path on conn with mode, through a temporary file
// renamed into place; the host checks the body's sha256 before the rename,
// so a cut-off upload never replaces the file.
func WriteFile(ctx context.Context, conn transport.Conn, body []byte, path string, mode uint32) error {
	sum := sha256.Sum256(body)
	return conn.Upload(ctx, bytes.NewReader(body), path, mode, hex.EncodeToString(sum[:]))
}

package deploy

import (
	"context"

	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/internal/transport"
)

// savedFile is a file as it was on a host: whether it existed, its bytes
// and its permission bits.
type savedFile struct {
	present bool
	body    []byte
	mode    uint32 // permission bits it had
}

// readRemoteFile reads a file with its permission bits, in one command
// (label names the command in the run log; "" says "read <path>"). A missing
// file is not present; one that exists but cannot be read (a directory, a
// symlink to nothing, no permission) is an error naming it and the fix.
func readRemoteFile(ctx context.Context, conn transport.Conn, p, label string) (*savedFile, error) {
	if label == "" {
		label = "read " + p
	}
	res, err := conn.Run(ctx, state.ReadFileScript(p), transport.RunOptions{Label: label, QuietStdout: true})
	if err != nil {
		return nil, err
	}
	return parseRemoteFile(p, res.Stdout)
}

// parseRemoteFile reads the output of state.ReadFileScript(p). A mode the
// host did not report is taken as 0600.
func parseRemoteFile(p string, out []byte) (*savedFile, error) {
	f, err := state.ParseFileRead(p, out)
	if err != nil {
		return nil, err
	}
	sf := &savedFile{present: f.Present, body: f.Body, mode: 0o600}
	if f.ModeKnown {
		sf.mode = f.Mode
	}
	return sf, nil
}

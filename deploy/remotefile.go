package deploy

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"

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
// (label names the command in the run log; "" says "read <path>").
func readRemoteFile(ctx context.Context, conn transport.Conn, p, label string) (*savedFile, error) {
	if label == "" {
		label = "read " + p
	}
	res, err := conn.Run(ctx, fmt.Sprintf("if [ -e %[1]s ]; then echo present $(stat -L -c %%a -- %[1]s); cat -- %[1]s; else echo absent; fi", transport.ShellQuote(p)),
		transport.RunOptions{Label: label, QuietStdout: true})
	if err != nil {
		return nil, err
	}
	head, rest, _ := bytes.Cut(res.Stdout, []byte("\n"))
	word, modeText, _ := strings.Cut(string(head), " ")
	f := &savedFile{present: word == "present", body: rest, mode: 0o600}
	if m, err := strconv.ParseUint(modeText, 8, 32); err == nil && m <= 0o777 {
		f.mode = uint32(m)
	}
	return f, nil
}

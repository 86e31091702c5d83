package state

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"time"
)

// NewRunID returns a sortable, unique run id such as 20261123T114501Z-3f9a1c.
func NewRunID(now time.Time) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// RunLogPath is where a run's command output and events are kept.
func RunLogPath(stateDir, runID string) string {
	return filepath.Join(stateDir, "runs", runID+".log")
}

// Operator names who runs relctl: $RELCTL_OPERATOR, else the local user.
func Operator() string {
	if op := os.Getenv("RELCTL_OPERATOR"); op != "" {
		return op
	}
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return fmt.Sprintf("uid-%d", os.Getuid())
}

// Controller names the machine relctl runs on.
func Controller() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "unknown"
	}
	return h
}

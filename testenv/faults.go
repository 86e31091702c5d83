package testenv

import (
	"fmt"
	"strings"
	"unicode"
)

// StepEnv is the environment variable relctl's transport sends with every
// command, set to the command's label (e.g. "verify/health"); step faults
// match on it.
const StepEnv = "RELCTL_STEP"

// FaultSpec is the set of faults active on one host. The zero value is a
// healthy host.
//
// A step NAME matches a command whose RELCTL_STEP label equals NAME, or
// whose label's part after the first "/" equals NAME: "health" matches
// "verify/health", "verify/health" matches only itself. When both step
// faults match a command, FailStep wins.
type FaultSpec struct {
	// DropSSH closes the host's SSH port (dials are refused) and drops its
	// open connections; processes on the host keep running.
	DropSSH bool `json:"drop_ssh,omitempty"`
	// Hang keeps connections open but stops answering: new connections get
	// no banner, new sessions and global requests (keepalives) no reply,
	// requests on open sessions are held and running commands' output
	// stops. A client sees a hang, not an error. Clearing it answers what
	// was held.
	Hang bool `json:"hang,omitempty"`
	// FailStep makes commands of that step exit 1 at once, without running,
	// with stderr "testenv: injected failure in step NAME on HOST".
	FailStep string `json:"fail_step,omitempty"`
	// HangStep holds commands of that step (they do not start) until the
	// host's HangStep changes; then they run normally. A signal from the
	// client or the session closing ends the wait.
	HangStep string `json:"hang_step,omitempty"`
}

// IsZero reports a host without faults.
func (f FaultSpec) IsZero() bool { return f == FaultSpec{} }

// String lists the active faults, e.g. "drop-ssh, fail-step=health"; "none".
func (f FaultSpec) String() string {
	var parts []string
	if f.DropSSH {
		parts = append(parts, "drop-ssh")
	}
	if f.Hang {
		parts = append(parts, "hang")
	}
	if f.FailStep != "" {
		parts = append(parts, "fail-step="+f.FailStep)
	}
	if f.HangStep != "" {
		parts = append(parts, "hang-step="+f.HangStep)
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// validate keeps step names printable: FailStep goes into a message.
func (f FaultSpec) validate() error {
	for _, s := range []struct{ flag, name string }{{"fail step", f.FailStep}, {"hang step", f.HangStep}} {
		if len(s.name) > 200 {
			return fmt.Errorf("testenv: %s name is longer than 200 bytes", s.flag)
		}
		if strings.TrimSpace(s.name) != s.name || strings.IndexFunc(s.name, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
			return fmt.Errorf("testenv: %s name %q: no control characters or surrounding spaces", s.flag, s.name)
		}
	}
	return nil
}

// stepMatches says whether the fault step name covers a command's label.
func stepMatches(name, label string) bool {
	if name == "" || label == "" {
		return false
	}
	if name == label {
		return true
	}
	_, after, ok := strings.Cut(label, "/")
	return ok && after == name
}

// stepOf is the command's label: the last RELCTL_STEP the client sent.
func stepOf(env []string) string {
	step := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, StepEnv+"="); ok {
			step = v
		}
	}
	return step
}

// SetFault replaces host's faults with f; SetFault(host, FaultSpec{})
// clears them. Held commands and requests are released as their fault
// goes away.
func (c *Cluster) SetFault(host string, f FaultSpec) error {
	return c.editFault(host, func(FaultSpec) FaultSpec { return f })
}

func (c *Cluster) editFault(host string, edit func(FaultSpec) FaultSpec) error {
	h, err := c.host(host)
	if err != nil {
		return err
	}
	f, err := h.editFault(edit)
	if err != nil {
		return err
	}
	c.log.Info().Str("host", host).Stringer("faults", f).Msg("testenv fault")
	return nil
}

// Faults returns the faults of every host that has any, by host name.
func (c *Cluster) Faults() map[string]FaultSpec {
	out := map[string]FaultSpec{}
	for _, h := range c.hosts {
		if f := h.faults(); !f.IsZero() {
			out[h.info.Name] = f
		}
	}
	return out
}

// Held counts, per host name, the commands a HangStep fault holds now: a
// test waits for it to know relctl reached the step.
func (c *Cluster) Held() map[string]int {
	out := make(map[string]int, len(c.hosts))
	for _, h := range c.hosts {
		out[h.info.Name] = int(h.held.Load())
	}
	return out
}

// SetSSHDown sets or clears only the DropSSH fault of host: its listener
// closes (dials are refused) and live connections drop; processes on the
// host keep running. SetSSHDown(host, false) reopens the same port.
func (c *Cluster) SetSSHDown(host string, down bool) error {
	return c.editFault(host, func(f FaultSpec) FaultSpec {
		f.DropSSH = down
		return f
	})
}

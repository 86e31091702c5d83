package watchdog

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MonitStatus is what `monit status NAME` says about one service.
type MonitStatus struct {
	Name       string
	Status     string // "OK", "Does not exist", "Execution failed", "Initializing", ...
	Monitoring string // "Monitored", "Not monitored", "Initializing", ...
	PID        int    // 0 when monit reports none
}

// Running says whether monit supervises a live process: monitored, status
// OK, with a pid.
func (s MonitStatus) Running() bool {
	return s.PID > 0 && strings.EqualFold(s.Status, "OK") && strings.EqualFold(s.Monitoring, "Monitored")
}

// Unmonitored says whether monit has stopped supervising the service
// (`monit unmonitor`, or monit gave up on it): it starts nothing for it.
func (s MonitStatus) Unmonitored() bool {
	return strings.EqualFold(s.Monitoring, "Not monitored")
}

// ParseMonitStatus reads the output of `monit status NAME` (monit 5.x)
// leniently: what DecodeMonitStatus reads, or as much of it as it could
// (a status that is not Running nor Unmonitored when nothing parsed).
func ParseMonitStatus(out []byte) MonitStatus {
	st, _ := DecodeMonitStatus(out)
	return st
}

// DecodeMonitStatus reads the output of `monit status NAME` (monit 5.x): a
// "Process 'NAME'" header and indented "key   value" lines. Output without
// exactly one service header, without its status line, with a status line
// before the header, a pid that is not a number, or NUL bytes is an error
// quoting the offending part; the MonitStatus returned with it holds what
// could be read (what ParseMonitStatus returns).
func DecodeMonitStatus(out []byte) (MonitStatus, error) {
	var st MonitStatus
	var problems []string
	services, sawStatus := 0, false
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		if !strings.HasPrefix(line, " ") {
			if i := strings.Index(line, "'"); i >= 0 {
				if j := strings.LastIndex(line, "'"); j > i {
					services++
					if services == 2 {
						problems = append(problems, fmt.Sprintf("more than one service (%q)", truncate(line, 80)))
					}
					st.Name = line[i+1 : j]
				}
			}
			continue
		}
		if services == 0 {
			problems = append(problems, fmt.Sprintf("%q comes before any service", truncate(strings.TrimSpace(line), 80)))
		}
		key, value := splitStatusLine(strings.TrimSpace(line))
		switch key {
		case "status":
			st.Status, sawStatus = value, true
		case "monitoring status":
			st.Monitoring = value
		case "pid":
			var err error
			if st.PID, err = strconv.Atoi(value); err != nil || st.PID < 0 {
				st.PID = 0
				problems = append(problems, fmt.Sprintf("pid %q is not a number", truncate(value, 40)))
			}
		}
	}
	switch {
	case bytes.IndexByte(out, 0) >= 0:
		problems = append(problems, "the output holds NUL bytes")
	case services == 0:
		problems = append(problems, fmt.Sprintf("no service in the output %q", truncate(strings.TrimSpace(string(out)), 80)))
	case !sawStatus:
		problems = append(problems, fmt.Sprintf("service %q has no status line", truncate(st.Name, 80)))
	}
	if len(problems) > 0 {
		return st, errors.New("unexpected output from monit status: " + strings.Join(problems, "; "))
	}
	return st, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// splitStatusLine splits "monitoring status            Monitored" at the run
// of two or more spaces between key and value.
func splitStatusLine(s string) (string, string) {
	if i := strings.Index(s, "  "); i >= 0 {
		return s[:i], strings.TrimSpace(s[i:])
	}
	return s, ""
}

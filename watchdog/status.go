package watchdog

import (
	"bufio"
	"bytes"
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

// ParseMonitStatus reads the output of `monit status NAME` (monit 5.x): a
// "Process 'NAME'" header and indented "key   value" lines.
func ParseMonitStatus(out []byte) MonitStatus {
	var st MonitStatus
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, " ") {
			if i := strings.Index(line, "'"); i >= 0 {
				if j := strings.LastIndex(line, "'"); j > i {
					st.Name = line[i+1 : j]
				}
			}
			continue
		}
		key, value := splitStatusLine(strings.TrimSpace(line))
		switch key {
		case "status":
			st.Status = value
		case "monitoring status":
			st.Monitoring = value
		case "pid":
			st.PID, _ = strconv.Atoi(value)
		}
	}
	return st
}

// splitStatusLine splits "monitoring status            Monitored" at the run
// of two or more spaces between key and value.
func splitStatusLine(s string) (string, string) {
	if i := strings.Index(s, "  "); i >= 0 {
		return s[:i], strings.TrimSpace(s[i:])
	}
	return s, ""
}

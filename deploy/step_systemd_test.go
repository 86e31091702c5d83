package deploy

import (
	"testing"
	"time"
)

// The systemd watchdog cannot run here (no systemd): these check the
// commands relctl sends and how it reads their answers.
func TestSystemdCommands(t *testing.T) {
	d := systemdSupervisor{&watchdogSpec{Service: "search's api.service", Timeout: time.Second}}
	guard := "test -d /run/systemd/system || { echo 'this host does not run systemd (no /run/systemd/system)' >&2; exit 1; }"
	tests := []struct{ name, got, want string }{
		{"verify", d.verifyCmd("/srv/a b/.relctl/x/search.service"),
			guard + " && systemd-analyze verify -- '/srv/a b/.relctl/x/search.service'"},
		{"reload", d.reloadCmd(false), guard + " && systemctl daemon-reload"},
		{"reload and restart", d.reloadCmd(true),
			guard + ` && systemctl daemon-reload && systemctl restart -- 'search'\''s api.service'`},
		{"status", d.statusCmd(),
			`systemctl is-active -- 'search'\''s api.service'; systemctl show -p MainPID --value -- 'search'\''s api.service'`},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, tt.got, tt.want)
		}
	}
}

func TestParseSystemdStatus(t *testing.T) {
	tests := []struct {
		out    string
		active string
		pid    int
	}{
		{"active\n4242\n", "active", 4242},
		{"activating\n0\n", "activating", 0},
		{"failed\n0\n", "failed", 0},
		{"inactive\n", "inactive", 0},
		{"", "", 0},
	}
	for _, tt := range tests {
		active, pid := parseSystemdStatus(tt.out)
		if active != tt.active || pid != tt.pid {
			t.Errorf("%q: got %q %d, want %q %d", tt.out, active, pid, tt.active, tt.pid)
		}
	}
}

func TestSystemdPidfile(t *testing.T) {
	d := systemdSupervisor{&watchdogSpec{Service: "search.service"}}
	unit := []byte("[Unit]\nDescription=search\n\n[Service]\nType=forking\nPIDFile=/srv/search/run/search.pid\nExecStart=/srv/search/current/bin/start /srv/search 8080\nRestart=always\n")
	if got := d.pidfile(unit); got != "/srv/search/run/search.pid" {
		t.Errorf("pidfile = %q", got)
	}
	if got := d.pidfile([]byte("[Service]\nExecStart=/bin/true\n")); got != "" {
		t.Errorf("no PIDFile: pidfile = %q, want empty", got)
	}
}

package watchdog

import (
	"strings"
	"testing"
)

func TestParseMonitStatus(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		want    MonitStatus
		running bool
	}{
		{"running", `Monit 5.33.0 uptime: 2m

Process 'search'
  status                       OK
  monitoring status            Monitored
  monitoring mode              active
  on reboot                    start
  pid                          4242
  parent pid                   1
  uptime                       1m
`, MonitStatus{Name: "search", Status: "OK", Monitoring: "Monitored", PID: 4242}, true},
		{"does not exist", `Process 'search'
  status                       Does not exist
  monitoring status            Monitored
`, MonitStatus{Name: "search", Status: "Does not exist", Monitoring: "Monitored"}, false},
		{"initializing after reload", `Process 'search'
  status                       Initializing
  monitoring status            Initializing
`, MonitStatus{Name: "search", Status: "Initializing", Monitoring: "Initializing"}, false},
		{"not monitored", `Process 'search'
  status                       Not monitored
  monitoring status            Not monitored
  pid                          17
`, MonitStatus{Name: "search", Status: "Not monitored", Monitoring: "Not monitored", PID: 17}, false},
		{"empty", "", MonitStatus{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ParseMonitStatus([]byte(tt.out))
			if got != tt.want || got.Running() != tt.running {
				t.Errorf("got %+v (running %v), want %+v (running %v)", got, got.Running(), tt.want, tt.running)
			}
		})
	}
}

func TestMonitStatusUnmonitored(t *testing.T) {
	for monitoring, want := range map[string]bool{
		"Not monitored": true, "not monitored": true,
		"Monitored": false, "Initializing": false, "": false,
	} {
		if got := (MonitStatus{Monitoring: monitoring}).Unmonitored(); got != want {
			t.Errorf("monitoring status %q: Unmonitored() = %v, want %v", monitoring, got, want)
		}
	}
}

func TestDecodeMonitStatus(t *testing.T) {
	running := "Monit 5.33.0 uptime: 2m\n\nProcess 'search'\n  status                       OK\n  monitoring status            Monitored\n  pid                          4242\n"
	tests := []struct {
		name    string
		out     string
		want    MonitStatus
		wantErr string
	}{
		{name: "running", out: running, want: MonitStatus{Name: "search", Status: "OK", Monitoring: "Monitored", PID: 4242}},
		{name: "CRLF line ends", out: strings.ReplaceAll(running, "\n", "\r\n"), want: MonitStatus{Name: "search", Status: "OK", Monitoring: "Monitored", PID: 4242}},
		{name: "empty", out: "", wantErr: "no service in the output"},
		{name: "garbage", out: "\x00\xff\xfe garbage", wantErr: "NUL bytes"},
		{name: "text, no service", out: "Monit: the monit daemon is not running\n", wantErr: "no service in the output"},
		{name: "truncated after the header", out: "Process 'search'\n", want: MonitStatus{Name: "search"}, wantErr: `service "search" has no status line`},
		{name: "truncated mid-line", out: "Process 'search'\n  status       O", want: MonitStatus{Name: "search", Status: "O"}},
		{name: "header line dropped", out: "  status   OK\n  pid   7\n", want: MonitStatus{Status: "OK", PID: 7}, wantErr: "comes before any service"},
		{name: "two services", out: "Process 'a'\n  status  OK\nProcess 'b'\n  status  OK\n", want: MonitStatus{Name: "b", Status: "OK"}, wantErr: "more than one service"},
		{name: "pid not a number", out: "Process 'search'\n  status  OK\n  pid  12ab\n", want: MonitStatus{Name: "search", Status: "OK"}, wantErr: `pid "12ab" is not a number`},
		{name: "pid negative", out: "Process 'search'\n  status  OK\n  pid  -4\n", want: MonitStatus{Name: "search", Status: "OK"}, wantErr: "is not a number"},
		{name: "pid overflows", out: "Process 'search'\n  status  OK\n  pid  99999999999999999999999\n", want: MonitStatus{Name: "search", Status: "OK"}, wantErr: "is not a number"},
		{name: "a single quote", out: "Process 'search\n  status  OK\n", want: MonitStatus{Status: "OK"}, wantErr: "comes before any service"},
		{name: "huge line", out: "Process 'search'\n  status  OK\n  data  " + strings.Repeat("x", 1<<20) + "\n  pid  5\n", want: MonitStatus{Name: "search", Status: "OK", PID: 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeMonitStatus([]byte(tt.out))
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if lenient := ParseMonitStatus([]byte(tt.out)); lenient != got {
				t.Errorf("ParseMonitStatus = %+v, DecodeMonitStatus %+v", lenient, got)
			}
		})
	}
}

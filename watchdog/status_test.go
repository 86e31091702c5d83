package watchdog

import "testing"

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

package watchdog

import (
	"strings"
	"testing"
)

// FuzzParseMonitStatus: any output of `monit status` gives a status or an
// error, never a panic; the lenient parse agrees with the strict one; and a
// status without an error names its service and has a status.
func FuzzParseMonitStatus(f *testing.F) {
	for _, seed := range []string{
		"Monit 5.33.0 uptime: 2m\n\nProcess 'search'\n  status                       OK\n  monitoring status            Monitored\n  monitoring mode              active\n  on reboot                    start\n  pid                          4242\n  parent pid                   1\n  uptime                       1m\n",
		"Process 'search'\n  status                       Not monitored\n  monitoring status            Not monitored\n  pid                          17\n",
		"Process 'search'\n  status                       Initializing\n",
		"",
		"\x00",
		"Process ''\n  status\n",
		"'\n  pid  -1\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, out []byte) {
		st, err := DecodeMonitStatus(out)
		if lenient := ParseMonitStatus(out); lenient != st {
			t.Fatalf("ParseMonitStatus = %+v, DecodeMonitStatus %+v", lenient, st)
		}
		if st.PID < 0 {
			t.Fatalf("negative pid %d", st.PID)
		}
		if err == nil && (!strings.Contains(string(out), "'"+st.Name+"'") || strings.IndexByte(string(out), 0) >= 0) {
			t.Fatalf("accepted %q as %+v", out, st)
		}
		_, _ = st.Running(), st.Unmonitored()
	})
}

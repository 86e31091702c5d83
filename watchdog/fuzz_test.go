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

// FuzzParseMonit: a monit snippet from any artifact or host gives a config or
// an error that names the file, never a panic.
func FuzzParseMonit(f *testing.F) {
	for _, seed := range []string{
		searchSnippet,
		"check process search with pidfile /srv/search/run/search.pid\n  start program = \"/srv/search/current/bin/start /srv/search 8080\" with timeout 10 seconds\n  stop program = \"/srv/search/current/bin/stop /srv/search\"\n  if failed host 127.0.0.1 port 8080 protocol http request \"/health\" for 3 cycles then restart\n  depends on cache\n",
		"set daemon 1\nset httpd port 2812 and use address 127.0.0.1 allow localhost\ninclude /etc/monit/conf.d/*\n",
		"check process x matching \"srv.*\"\n  start program = \"/bin/true\"\n",
		"check process\n",
		"check process a with pidfile \"unterminated\n",
		"check process a with pidfile /p\n  if failed port 99999 then restart\n",
		"\x00\xff check",
		"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		cfg, err := ParseMonit("search.monitrc", src)
		if err != nil {
			if !strings.Contains(err.Error(), "search.monitrc") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if cfg == nil {
			t.Fatal("nil config without an error")
		}
	})
}

// FuzzParseUnit: any systemd unit file gives a unit or an error naming the
// file, never a panic.
func FuzzParseUnit(f *testing.F) {
	for _, seed := range []string{
		"[Unit]\nDescription=search\n\n[Service]\nType=forking\nPIDFile=/srv/search/run/search.pid\nExecStart=/srv/search/current/bin/start /srv/search 8080\nExecStop=/srv/search/current/bin/stop /srv/search\nRestart=on-failure\n\n[Install]\nWantedBy=multi-user.target\n",
		"[Service]\nExecStart=/bin/a \\\n  --long \\\n  --flag\n; comment\n# comment\n",
		"Key=before any section\n",
		"[Service\n",
		"[Service]\n=novalue\nnoequals\n",
		"[Service]\nExecStart=\\",
		"\r\n[Service]\r\nType=simple\r\n",
		"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		u, err := ParseUnit("search.service", src)
		if err != nil {
			if !strings.Contains(err.Error(), "search.service") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if u == nil {
			t.Fatal("nil unit without an error")
		}
		_ = u.Service()
	})
}

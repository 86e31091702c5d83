package watchdog

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// dump renders a parsed config one fact per line, so a test reads like the
// structure a user expects from the snippet.
func dump(cfg *MonitConfig) string {
	var b strings.Builder
	for _, st := range cfg.Sets {
		fmt.Fprintf(&b, "%d:%d set %s %s\n", st.Pos.Line, st.Pos.Column, st.Keyword, strings.Join(st.Args, " "))
	}
	for _, in := range cfg.Includes {
		fmt.Fprintf(&b, "%d:%d include %s\n", in.Pos.Line, in.Pos.Column, in.Pattern)
	}
	for _, s := range cfg.Services {
		fmt.Fprintf(&b, "%d:%d %s\n", s.Pos.Line, s.Pos.Column, s)
		field := func(name, v string) {
			if v != "" {
				fmt.Fprintf(&b, "  %s %s\n", name, v)
			}
		}
		field("pidfile", s.Pidfile)
		field("matching", s.Matching)
		field("path", s.Path)
		field("address", s.Address)
		if s.Timeout != 0 {
			field("timeout", s.Timeout.String())
		}
		for _, pr := range []struct {
			name string
			p    *Program
		}{{"start", s.Start}, {"stop", s.Stop}, {"restart", s.Restart}} {
			if pr.p == nil {
				continue
			}
			fmt.Fprintf(&b, "  %d:%d %s %q", pr.p.Pos.Line, pr.p.Pos.Column, pr.name, pr.p.Command)
			if pr.p.UID != "" || pr.p.GID != "" {
				fmt.Fprintf(&b, " uid=%s gid=%s", pr.p.UID, pr.p.GID)
			}
			if pr.p.Timeout != 0 {
				fmt.Fprintf(&b, " timeout=%s", pr.p.Timeout)
			}
			b.WriteString("\n")
		}
		for _, pt := range s.Ports {
			fmt.Fprintf(&b, "  %d:%d port %d host=%s protocol=%s request=%s", pt.Pos.Line, pt.Pos.Column, pt.Port, pt.Host, pt.Protocol, pt.Request)
			if pt.Timeout != 0 {
				fmt.Fprintf(&b, " timeout=%s", pt.Timeout)
			}
			b.WriteString("\n")
		}
		for _, r := range s.Rules {
			fmt.Fprintf(&b, "  %d:%d if %s then %s", r.Pos.Line, r.Pos.Column, r.Condition, r.Action)
			if r.Else != "" {
				fmt.Fprintf(&b, " | %s", r.Else)
			}
			b.WriteString("\n")
		}
		for _, g := range s.Groups {
			field("group", g)
		}
		if len(s.DependsOn) > 0 {
			field("depends", strings.Join(s.DependsOn, ","))
		}
		field("every", s.Every)
		field("mode", s.Mode)
		field("onreboot", s.OnReboot)
		for _, a := range s.Alerts {
			fmt.Fprintf(&b, "  %d:%d %s %s\n", a.Pos.Line, a.Pos.Column, a.Keyword, strings.Join(a.Args, " "))
		}
		for _, o := range s.Other {
			fmt.Fprintf(&b, "  %d:%d other %s %s\n", o.Pos.Line, o.Pos.Column, o.Keyword, strings.Join(o.Args, " "))
		}
	}
	return b.String()
}

// parseCases are valid monit (TestParsedSnippetsAreValidMonit runs them
// through monit -t) with the structure the parser must find.
var parseCases = []struct {
	name string
	src  string
	want string
}{
	{
		name: "process with pidfile, uid/gid, timeouts, http port test",
		src: `check process search with pidfile /run/search/search.pid
    start program = "/srv/search/current/bin/start" as uid www-data and gid www-data with timeout 60 seconds
    stop program  = "/srv/search/current/bin/stop"
    if failed host 127.0.0.1 port 8080 protocol http request "/health" with timeout 5 seconds for 2 cycles then restart
    if 3 restarts within 5 cycles then unmonitor
    group search
`,
		want: `1:1 check process search
  pidfile /run/search/search.pid
  2:5 start "/srv/search/current/bin/start" uid=www-data gid=www-data timeout=1m0s
  3:5 stop "/srv/search/current/bin/stop"
  4:5 port 8080 host=127.0.0.1 protocol=http request=/health timeout=5s
  4:5 if failed host 127.0.0.1 port 8080 protocol http request "/health" with timeout 5 seconds for 2 cycles then restart
  5:5 if 3 restarts within 5 cycles then unmonitor
  group search
`,
	},
	{
		name: "process matching, no program keyword, restart program",
		src: `check process worker matching "worker --queue=jobs"
  start "/usr/local/bin/worker-ctl start"
  restart program = "/usr/local/bin/worker-ctl restart"
  if cpu > 80% for 5 cycles then alert
  if totalmem > 512 MB for 3 cycles then restart
  if children > 250 then alert
`,
		want: `1:1 check process worker
  matching worker --queue=jobs
  2:3 start "/usr/local/bin/worker-ctl start"
  3:3 restart "/usr/local/bin/worker-ctl restart"
  4:3 if cpu > 80% for 5 cycles then alert
  5:3 if totalmem > 512 MB for 3 cycles then restart
  6:3 if children > 250 then alert
`,
	},
	{
		name: "host with http and tcp port tests",
		src: `check host api-lb with address 127.0.0.1
    if failed port 443 protocol https request "/status" then alert
    if failed port 6379 type tcp then alert
    if failed ping then alert
`,
		want: `1:1 check host api-lb
  address 127.0.0.1
  2:5 port 443 host= protocol=https request=/status
  3:5 port 6379 host= protocol= request=
  2:5 if failed port 443 protocol https request "/status" then alert
  3:5 if failed port 6379 type tcp then alert
  4:5 if failed ping then alert
`,
	},
	{
		name: "file with checksum, timestamp, permission and size tests",
		src: `check file nginx.conf with path /etc/nginx/nginx.conf
   if changed checksum then alert
   if changed timestamp then exec "/usr/sbin/nginx -s reload" as uid root and gid root
   if failed permission 644 then unmonitor
   if failed uid root then unmonitor
   if size > 1 MB then alert
   if timestamp > 15 minutes then alert
`,
		want: `1:1 check file nginx.conf
  path /etc/nginx/nginx.conf
  2:4 if changed checksum then alert
  3:4 if changed timestamp then exec "/usr/sbin/nginx -s reload" as uid root and gid root
  4:4 if failed permission 644 then unmonitor
  5:4 if failed uid root then unmonitor
  6:4 if size > 1 MB then alert
  7:4 if timestamp > 15 minutes then alert
`,
	},
	{
		name: "program with status test, timeout, every",
		src: `check program backup-age with path "/usr/bin/find /var/backups -mmin -1560" with timeout 30 seconds
  every 10 cycles
  if status != 0 then alert
  if status != 0 for 3 cycles then exec "/usr/local/bin/page-oncall" else if succeeded then alert
`,
		want: `1:1 check program backup-age
  path /usr/bin/find /var/backups -mmin -1560
  timeout 30s
  3:3 if status != 0 then alert
  4:3 if status != 0 for 3 cycles then exec "/usr/local/bin/page-oncall" | else if succeeded then alert
  every 10 cycles
`,
	},
	{
		name: "set statements and includes",
		src: `set daemon 30 with start delay 60
set logfile /var/log/monit.log
set idfile /var/lib/monit/id
set httpd port 2812 and
    use address 127.0.0.1
    allow localhost
set alert ops@example.com not on { instance, action }
include /etc/monit/conf.d/*.conf
include "/etc/monit/conf-enabled/*"
`,
		want: `1:1 set daemon 30 with start delay 60
2:1 set logfile /var/log/monit.log
3:1 set idfile /var/lib/monit/id
4:1 set httpd port 2812 and use address 127.0.0.1 allow localhost
7:1 set alert ops@example.com not on instance, action
8:1 include /etc/monit/conf.d/*.conf
9:1 include /etc/monit/conf-enabled/*
`,
	},
	{
		name: "comments everywhere, not inside quotes",
		src: `# search service, managed by relctl
check process search # trailing comment
   with pidfile /run/search.pid   # the pidfile
   # start it
   start program = "/srv/bin/start # not a comment" # but this is
   #stop program = "/srv/bin/stop"
   if failed port 8080 then restart # port test
#end
`,
		want: `2:1 check process search
  pidfile /run/search.pid
  5:4 start "/srv/bin/start # not a comment"
  7:4 port 8080 host= protocol= request=
  7:4 if failed port 8080 then restart
`,
	},
	{
		name: "multi-line statements are free-form",
		src: `check process web
  with pidfile
    /run/web.pid
  start program = "/srv/web/bin/start"
      as uid www-data
      and gid www-data
  if failed
     port 80
     protocol http
  then
     restart
`,
		want: `1:1 check process web
  pidfile /run/web.pid
  4:3 start "/srv/web/bin/start" uid=www-data gid=www-data
  7:3 port 80 host= protocol=http request=
  7:3 if failed port 80 protocol http then restart
`,
	},
	{
		name: "group, depends on, every cron, mode, onreboot, alert",
		src: `check process app with pidfile /run/app.pid
  start program = "/srv/app/start"
  stop program = "/srv/app/stop"
  group web
  group backend
  depends on db, cache
  every "* 8-19 * * 1-5"
  mode passive
  onreboot laststate
  alert dev@example.com on { timeout, nonexist } with reminder on 10 cycles
  noalert ops@example.com
check process db with pidfile /run/db.pid
  not every "0-5 3 * * *"
  mode manual
check process cache with pidfile /run/cache.pid
  depends on db
  every 2 cycles
`,
		want: `1:1 check process app
  pidfile /run/app.pid
  2:3 start "/srv/app/start"
  3:3 stop "/srv/app/stop"
  group web
  group backend
  depends db,cache
  every * 8-19 * * 1-5
  mode passive
  onreboot laststate
  10:3 alert dev@example.com on timeout, nonexist with reminder on 10 cycles
  11:3 noalert ops@example.com
12:1 check process db
  pidfile /run/db.pid
  every not 0-5 3 * * *
  mode manual
15:1 check process cache
  pidfile /run/cache.pid
  depends db
  every 2 cycles
`,
	},
	{
		name: "system, filesystem, directory, fifo, network",
		src: `check system $HOST
  if loadavg (5min) > 4 then alert
  if memory usage > 90% then alert
check filesystem rootfs with path /
  if space usage > 85% then alert
check directory releases with path /srv/search/releases
  if failed permission 755 then alert
check fifo jobs with path /run/jobs.fifo
check network lo with interface lo
  if failed link then alert
check network eth0 with address 127.0.0.1
`,
		want: `1:1 check system $HOST
  2:3 if loadavg (5min) > 4 then alert
  3:3 if memory usage > 90% then alert
4:1 check filesystem rootfs
  path /
  5:3 if space usage > 85% then alert
6:1 check directory releases
  path /srv/search/releases
  7:3 if failed permission 755 then alert
8:1 check fifo jobs
  path /run/jobs.fifo
9:1 check network lo
  address lo
  10:3 if failed link then alert
11:1 check network eth0
  address 127.0.0.1
`,
	},
	{
		name: "keywords are case-insensitive, single-quoted pidfile",
		src: `CHECK PROCESS Search WITH PIDFILE '/run/Search.pid'
  START PROGRAM = "/srv/bin/start"
  IF cpu > 80% THEN ALERT
  IF FAILED PORT 9200 THEN RESTART
`,
		want: `1:1 check process Search
  pidfile /run/Search.pid
  2:3 start "/srv/bin/start"
  4:3 port 9200 host= protocol= request=
  3:3 if cpu > 80% then ALERT
  4:3 if FAILED PORT 9200 then RESTART
`,
	},
	{
		name: "statements not modelled are skipped to the next keyword",
		src: `check file app.log with path /var/log/app.log
  ignore content = "DEBUG"
  if content = "ERROR" then alert
  depend app
check process app with pidfile /run/app.pid
`,
		want: `1:1 check file app.log
  path /var/log/app.log
  3:3 if content = "ERROR" then alert
  depends app
  2:3 other ignore content = DEBUG
5:1 check process app
  pidfile /run/app.pid
`,
	},
	{
		name: "exec action with repeat every is not an every statement",
		src: `check process q with pidfile /run/q.pid
  if failed port 5672 then exec "/usr/local/bin/notify" repeat every 3 cycles
  every 2 cycles
`,
		want: `1:1 check process q
  pidfile /run/q.pid
  2:3 port 5672 host= protocol= request=
  2:3 if failed port 5672 then exec "/usr/local/bin/notify" repeat every 3 cycles
  every 2 cycles
`,
	},
	{
		name: "an include inside a check block does not end it",
		src: `check process app with pidfile /run/app.pid
  include /etc/monit/app-start.conf
  if failed port 8080 then restart
`,
		want: `2:3 include /etc/monit/app-start.conf
1:1 check process app
  pidfile /run/app.pid
  3:3 port 8080 host= protocol= request=
  3:3 if failed port 8080 then restart
`,
	},
	{
		name: "empty and comment-only snippets",
		src:  "# nothing here\n\n",
		want: "",
	},
}

func TestParseMonit(t *testing.T) {
	for _, tt := range parseCases {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseMonit("search.monitrc", []byte(tt.src))
			if err != nil {
				t.Fatalf("ParseMonit: %v", err)
			}
			if got := dump(cfg); got != tt.want {
				t.Errorf("parsed structure:\n--- got\n%s--- want\n%s", got, tt.want)
			}
			for _, s := range cfg.Services {
				if s.Pos.File != "search.monitrc" {
					t.Errorf("%s: Pos.File = %q", s, s.Pos.File)
				}
			}
		})
	}
}

func TestParseMonitSyntaxError(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		wantErr string
		wantTok string
	}{
		{"unknown service type", "check proces x with pidfile /a\n", "search.monitrc:1:7: syntax error near 'proces': unknown service type", "proces"},
		{"missing name", "check process", "search.monitrc:1:7: syntax error at end of input: expected a service name", ""},
		{"process without pidfile", "check process x\n  start program = \"/a\"\n", "search.monitrc:2:3: syntax error near 'start': check process x needs 'with pidfile PATH' or 'matching REGEX'", "start"},
		{"misspelt pidfile", "check process x with pidfle /a\n", "search.monitrc:1:22: syntax error near 'pidfle'", "pidfle"},
		{"host without address", "check host h\n if failed port 80 then alert\n", "search.monitrc:2:2: syntax error near 'if': check host h needs 'with address ADDRESS'", "if"},
		{"port not a number", "check process x with pidfile /a\n  if failed port abc then restart\n", "search.monitrc:2:18: syntax error near 'abc': expected a port number", "abc"},
		{"port out of range", "check host h with address 127.0.0.1\n  if failed port 70000 then alert\n", "search.monitrc:2:18: syntax error near '70000'", "70000"},
		{"if without then", "check process x with pidfile /a\n  if failed port 80 restart\ncheck process y with pidfile /b\n", "search.monitrc:3:1: syntax error near 'check': 'if' at 2:3 has no 'then'", "check"},
		{"unknown action", "check process x with pidfile /a\n  if failed port 80 then reboot\n", "search.monitrc:2:26: syntax error near 'reboot': unknown action", "reboot"},
		{"start without command", "check process x with pidfile /a\n  start program =\n  if failed port 80 then restart\n", "search.monitrc:3:3: syntax error near 'if': expected a command", "if"},
		{"unterminated string", "check process x with pidfile /a\n  start program = \"/bin/start\n", "search.monitrc:2:19: syntax error near '\"/bin/start': unterminated string", "\"/bin/start"},
		{"unterminated brace", "set alert a@b on { timeout\n", "search.monitrc:1:18: syntax error near '{': unterminated '{' block", "{"},
		{"garbage at top level", "chek process x with pidfile /a\n", "search.monitrc:1:1: syntax error near 'chek': expected 'check', 'set' or 'include'", "chek"},
		{"bad mode", "check process x with pidfile /a\n  mode sometimes\n", "search.monitrc:2:8: syntax error near 'sometimes': mode must be", "sometimes"},
		{"depends on without name", "check process x with pidfile /a\n  depends on\n", "search.monitrc:2:11: syntax error at end of input: expected a service name after 'depends on'", ""},
		{"depends list with trailing comma", "check process x with pidfile /a\n  depends on a,\ncheck process a with pidfile /b\n", "search.monitrc:3:1: syntax error near 'check': expected a service name", "check"},
		{"include without pattern", "include\n", "search.monitrc:1:1: syntax error at end of input: expected a file pattern", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseMonit("search.monitrc", []byte(tt.src))
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want a *SyntaxError", err)
			}
			if !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Errorf("error:\n got  %s\n want %s...", err, tt.wantErr)
			}
			if se.Token != tt.wantTok {
				t.Errorf("Token = %q, want %q", se.Token, tt.wantTok)
			}
		})
	}
}

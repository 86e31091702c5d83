package traffic

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/ with what the real haproxy answers")

const (
	sampleState = "testdata/show-servers-state.txt"
	sampleStat  = "testdata/show-stat.csv"
)

// sampleBackend is what testdata/ was captured from (HAProxy 2.6.12):
// every admin state relctl meets, set the way it meets them. web-5 shows
// that `state maint` after `state drain` leaves only FMAINT.
func sampleBackend() testBackend {
	return testBackend{name: "app", servers: []testServer{
		{name: "web-1", weight: 10},
		{name: "web-2", weight: 20},
		{name: "web-3", weight: 30},
		{name: "web-4", weight: 40, disabled: true},
		{name: "web-5", weight: 50},
		{name: "web-6", weight: 0},
	}}
}

// sampleWant is what the parsers must read from the sample; ports are the
// capture's, the rest follows from sampleBackend and setUpSample.
func sampleWant(ports map[string]int) []Server {
	return []Server{
		{Backend: "app", Name: "web-1", Addr: "127.0.0.1", Port: ports["web-1"], Admin: AdminReady, AdminBits: 0, Operational: 2, Weight: 10, Check: "no check"},
		{Backend: "app", Name: "web-2", Addr: "127.0.0.1", Port: ports["web-2"], Admin: AdminDrain, AdminBits: admFDrain, Operational: 2, Weight: 20, Check: "DRAIN"},
		{Backend: "app", Name: "web-3", Addr: "127.0.0.1", Port: ports["web-3"], Admin: AdminMaint, AdminBits: admFMaint, Operational: 0, Weight: 30, Check: "MAINT"},
		{Backend: "app", Name: "web-4", Addr: "127.0.0.1", Port: ports["web-4"], Admin: AdminMaint, AdminBits: admCMaint | admFMaint, Operational: 0, Weight: 40, Check: "MAINT"},
		{Backend: "app", Name: "web-5", Addr: "127.0.0.1", Port: ports["web-5"], Admin: AdminMaint, AdminBits: admFMaint, Operational: 0, Weight: 7, Check: "MAINT"},
		{Backend: "app", Name: "web-6", Addr: "127.0.0.1", Port: ports["web-6"], Admin: AdminReady, AdminBits: 0, Operational: 2, Weight: 0, Check: "no check"},
	}
}

// The ports the committed sample was captured with.
var samplePorts = map[string]int{"web-1": 36609, "web-2": 34751, "web-3": 35171, "web-4": 44325, "web-5": 33427, "web-6": 36925}

func setUpSample(t *testing.T, l *lb) {
	t.Helper()
	ctx := testCtx(t)
	steps := []error{
		l.rt.SetAdmin(ctx, "app", "web-2", AdminDrain),
		l.rt.SetAdmin(ctx, "app", "web-3", AdminMaint),
		l.rt.Drain(ctx, "app", "web-5", time.Minute, 20*time.Millisecond),
		l.rt.SetWeight(ctx, "app", "web-5", 7),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
}

// parseSample reads both answers as Servers does and joins them.
func parseSample(t *testing.T, state, stat string) []Server {
	t.Helper()
	servers, err := parseServersState(state)
	if err != nil {
		t.Fatalf("parseServersState: %v\n%s", err, state)
	}
	rows, err := parseStat(stat)
	if err != nil {
		t.Fatalf("parseStat: %v\n%s", err, stat)
	}
	for i := range servers {
		for _, r := range rows {
			if r.Backend == servers[i].Backend && r.Server == servers[i].Name {
				servers[i].Sessions, servers[i].Queued, servers[i].Check = r.Sessions, r.Queued, r.Status
			}
		}
	}
	return servers
}

func compareServers(t *testing.T, got, want []Server) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("parsed %d servers, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("server %d:\n got  %+v\n want %+v", i, got[i], want[i])
		}
	}
}

// TestParseLiveOutput parses what the real haproxy answers right now
// (and with -update keeps it as the committed sample).
func TestParseLiveOutput(t *testing.T) {
	l := startHAProxy(t, sampleBackend())
	setUpSample(t, l)
	ctx := testCtx(t)
	state, err := l.rt.send(ctx, "show servers state", true)
	if err != nil {
		t.Fatal(err)
	}
	stat, err := l.rt.send(ctx, "show stat", true)
	if err != nil {
		t.Fatal(err)
	}
	ports := map[string]int{}
	for name, a := range l.addrs {
		ports[name] = a.Port
	}
	compareServers(t, parseSample(t, state, stat), sampleWant(ports))

	// Servers reads the same through its one combined call.
	servers, err := l.rt.Servers(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	compareServers(t, servers, sampleWant(ports))

	if *update && !t.Failed() {
		for path, body := range map[string]string{sampleState: state, sampleStat: stat} {
			if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("wrote %s and %s; set samplePorts to %v", sampleState, sampleStat, ports)
	}
}

func TestParseCommittedSample(t *testing.T) {
	state, err := os.ReadFile(filepath.FromSlash(sampleState))
	if err != nil {
		t.Fatal(err)
	}
	stat, err := os.ReadFile(filepath.FromSlash(sampleStat))
	if err != nil {
		t.Fatal(err)
	}
	compareServers(t, parseSample(t, string(state), string(stat)), sampleWant(samplePorts))

	rows, err := parseStat(string(stat))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.Server == "FRONTEND" || r.Server == "BACKEND" {
			t.Errorf("parseStat kept the summary row %s/%s", r.Backend, r.Server)
		}
	}
}

const stateHeader = "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n"

// stateLine is one server of backend app in `show servers state` format 1.
func stateLine(name, adminBits, weight string) string {
	return "3 app 1 " + name + " 10.0.0.1 2 " + adminBits + " " + weight + " 10 12 1 0 2 0 0 0 0 - 8080 - 0 0 - - 0\n"
}

func TestParseServersState(t *testing.T) {
	tests := []struct {
		name    string
		answer  string
		want    []Server
		wantErr string // substring; errNotAnAnswer when "not a table"
	}{
		{
			name: "servers",
			answer: "1\n" + stateHeader +
				"3 app 1 web-1 10.0.0.1 2 0 10 10 12 1 0 2 0 0 0 0 - 8080 - 0 0 - - 0\n" +
				"3 app 2 web_2.b:c 10.0.0.2 1 48 256 100 3 6 3 4 6 0 0 0 web2.example 8443 - 1 0 - - 0\n\n",
			want: []Server{
				{Backend: "app", Name: "web-1", Addr: "10.0.0.1", Port: 8080, Admin: AdminReady, Operational: 2, Weight: 10},
				// IDRAIN from a tracked server plus RMAINT: maint wins.
				{Backend: "app", Name: "web_2.b:c", Addr: "10.0.0.2", Port: 8443, Admin: AdminMaint, AdminBits: admIDrain | admRMaint, Operational: 1, Weight: 256},
			},
		},
		{
			name:   "columns found by name, not position",
			answer: "1\n# srv_port srv_uweight srv_admin_state srv_op_state srv_addr srv_name be_name\n80 5 16 3 ::1 s b\n",
			want:   []Server{{Backend: "b", Name: "s", Addr: "::1", Port: 80, Admin: AdminDrain, AdminBits: admIDrain, Operational: 3, Weight: 5}},
		},
		{
			name:   "CMAINT alone is ready",
			answer: "1\n" + stateHeader + "3 app 1 web-1 10.0.0.1 2 4 10 10 12 1 0 2 0 0 0 0 - 8080 - 0 0 - - 0\n",
			want:   []Server{{Backend: "app", Name: "web-1", Addr: "10.0.0.1", Port: 8080, Admin: AdminReady, AdminBits: admCMaint, Operational: 2, Weight: 10}},
		},
		{name: "empty backend", answer: "1\n" + stateHeader + "\n", want: []Server{}},
		{name: "unknown backend", answer: "Can't find backend.\n", wantErr: "not a table"},
		{name: "permission denied", answer: "Permission denied\n", wantErr: "not a table"},
		{name: "nothing", answer: "\n", wantErr: "not a table"},
		{name: "other format", answer: "2\n" + stateHeader, wantErr: `format line "2"`},
		{name: "no header", answer: "1\n3 app 1 web-1\n", wantErr: "no column header"},
		{name: "missing column", answer: "1\n# be_id be_name srv_name\n3 app web-1\n", wantErr: "lacks column(s) srv_addr, srv_op_state, srv_admin_state, srv_uweight, srv_port"},
		{name: "short line", answer: "1\n" + stateHeader + "3 app 1 web-1 10.0.0.1 2 0\n", wantErr: "line 3 has 7 fields, the header 25"},
		{name: "weight not a number", answer: "1\n" + stateHeader + "3 app 1 web-1 10.0.0.1 2 0 ten 10 12 1 0 2 0 0 0 0 - 8080 - 0 0 - - 0\n", wantErr: `app/web-1: srv_uweight "ten" is not a number`},
		// Hostile answers: a wrapper that repeats or cuts lines, garbage.
		{name: "a server listed twice", answer: "1\n" + stateHeader + stateLine("web-1", "0", "10") + stateLine("web-1", "0", "10"), wantErr: "server app/web-1 is listed twice"},
		{name: "negative weight", answer: "1\n" + stateHeader + stateLine("web-1", "0", "-1"), wantErr: `srv_uweight "-1" is not a number`},
		{name: "signed weight", answer: "1\n" + stateHeader + stateLine("web-1", "0", "+5"), wantErr: `srv_uweight "+5" is not a number`},
		{name: "weight above 256", answer: "1\n" + stateHeader + stateLine("web-1", "0", "257"), wantErr: "srv_uweight 257 is more than 256"},
		{name: "admin bits out of range", answer: "1\n" + stateHeader + stateLine("web-1", "4096", "10"), wantErr: "srv_admin_state 4096 is more than 255"},
		{name: "huge number", answer: "1\n" + stateHeader + stateLine("web-1", "99999999999999999999", "10"), wantErr: "is not a number"},
		{name: "truncated last line", answer: "1\n" + stateHeader + strings.TrimSuffix(stateLine("web-1", "0", "10"), " - - 0\n"), wantErr: "line 3 has 22 fields, the header 25"},
		{name: "NUL bytes", answer: "1\n" + stateHeader + strings.Replace(stateLine("web-1", "0", "10"), "10.0.0.1", "10.0\x00.0.1", 1) + "\x00\x00\n", wantErr: "has 1 fields"},
		{name: "header only, garbage below", answer: "1\n" + stateHeader + "\xff\xfe\n", wantErr: "line 3 has 1 fields"},
		{name: "format line only", answer: "1\n", wantErr: "no column header"},
		{name: "CRLF line ends", answer: strings.ReplaceAll("1\n"+stateHeader+stateLine("web-1", "1", "10"), "\n", "\r\n"),
			want: []Server{{Backend: "app", Name: "web-1", Addr: "10.0.0.1", Port: 8080, Admin: AdminMaint, AdminBits: admFMaint, Operational: 2, Weight: 10}}},
		{name: "huge line", answer: "1\n" + stateHeader + strings.Repeat("x", 1<<20) + "\n", wantErr: "line 3 has 1 fields"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseServersState(tt.answer)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if tt.wantErr == "not a table" && !errors.Is(err, errNotAnAnswer) {
					t.Errorf("err = %v, want errNotAnAnswer", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			compareServers(t, got, tt.want)
		})
	}
}

func TestParseStat(t *testing.T) {
	const header = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,status,weight,\n"
	tests := []struct {
		name    string
		answer  string
		want    []statRow
		wantErr string
	}{
		{
			name: "rows",
			answer: header +
				"fe,FRONTEND,,,3,5,100,9,OPEN,,\n" +
				"app,web-1,0,0,2,4,,7,UP,10,\n" +
				"app,web-2,4,4,0,1,,2,MAINT (via app/web-1),20,\n" +
				"app,BACKEND,0,0,2,4,10,9,UP,30,\n\n",
			want: []statRow{
				{Backend: "app", Server: "web-1", Sessions: 2, Status: "UP"},
				{Backend: "app", Server: "web-2", Queued: 4, Status: "MAINT (via app/web-1)"},
			},
		},
		{name: "no servers", answer: header + "\n"},
		{name: "unknown proxy", answer: "No such proxy.\n", wantErr: "not a table"},
		{name: "missing column", answer: "# pxname,svname,status,\napp,web-1,UP,\n", wantErr: "lacks column(s) qcur, scur"},
		{name: "short line", answer: header + "app,web-1,0\n", wantErr: "line 2 has 3 fields"},
		{name: "sessions not a number", answer: header + "app,web-1,0,0,,4,,7,UP,10,\n", wantErr: `app/web-1: scur "" is not a number`},
		{name: "a row twice", answer: header + "app,web-1,0,0,2,4,,7,UP,10,\napp,web-1,0,0,2,4,,7,UP,10,\n", wantErr: "server app/web-1 is listed twice"},
		{name: "negative sessions", answer: header + "app,web-1,0,0,-2,4,,7,UP,10,\n", wantErr: `scur "-2" is not a number`},
		{name: "truncated row", answer: header + "app,web-1,0,0", wantErr: "line 2 has 4 fields"},
		{name: "NUL bytes", answer: header + "app,web-1,0,0,\x00,4,,7,UP,10,\n", wantErr: `scur "\x00" is not a number`},
		{name: "no header", answer: "app,web-1,0,0,2,4,,7,UP,10,\n", wantErr: "not a table"},
		{name: "header dropped, a row in its place", answer: "# app,web-1,0,0,2,4,,7,UP,10,\n", wantErr: "lacks column(s)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat(tt.answer)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("rows = %+v, want %+v", got, tt.want)
			}
			for i := range tt.want {
				if got[i] != tt.want[i] {
					t.Errorf("row %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestForcedAdmin(t *testing.T) {
	tests := []struct {
		s    Server
		want string
	}{
		{Server{Admin: AdminReady}, AdminReady},
		{Server{Admin: AdminMaint, AdminBits: admFMaint}, AdminMaint},
		{Server{Admin: AdminMaint, AdminBits: admFMaint | admFDrain}, AdminMaint},
		{Server{Admin: AdminDrain, AdminBits: admFDrain}, AdminDrain},
		{Server{Admin: AdminMaint, AdminBits: admIMaint}, AdminReady},             // inherited: nothing forced
		{Server{Admin: AdminMaint, AdminBits: admIMaint | admFDrain}, AdminDrain}, // forced drain under an inherited maint
		{Server{Admin: AdminReady, AdminBits: admCMaint}, AdminReady},             // `disabled`, since enabled
		{Server{Admin: AdminMaint}, AdminMaint},                                   // built by hand, no bits
		{Server{Admin: AdminDrain}, AdminDrain},                                   // built by hand, no bits
		{Server{}, AdminReady},
	}
	for _, tt := range tests {
		if got := tt.s.forcedAdmin(); got != tt.want {
			t.Errorf("%+v.forcedAdmin() = %q, want %q", tt.s, got, tt.want)
		}
	}
}

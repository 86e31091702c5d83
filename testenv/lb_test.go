package testenv

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	toml "github.com/pelletier/go-toml/v2"
	"golang.org/x/crypto/ssh"

	"github.com/relctl/relctl/playbooks"
)

var updateGolden = flag.Bool("update", false, "rewrite testenv/testdata golden files")

func requireHAProxy(t *testing.T) {
	t.Helper()
	if _, err := findHAProxy(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("haproxy not installed; CI must run these tests (scripts/install-test-deps.sh)")
		}
		t.Skip("haproxy not installed (apt-get install -y haproxy, or scripts/install-test-deps.sh)")
	}
}

func startTrafficCluster(t *testing.T, hostsPerEnv int) *Cluster {
	t.Helper()
	requireHAProxy(t)
	return startClusterWith(t, Options{Hosts: hostsPerEnv, Traffic: true})
}

// httpGet returns the status and body of GET http://127.0.0.1:port/path.
func httpGet(t *testing.T, port int, path string) (int, string) {
	t.Helper()
	client := http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
	if err != nil {
		t.Fatalf("GET :%d%s: %v", port, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET :%d%s: read body: %v", port, path, err)
	}
	return resp.StatusCode, string(b)
}

// lbStatus is each server's status in `show stat` (UP, DOWN, MAINT, ...).
func lbStatus(t *testing.T, c *Cluster, env string) map[string]string {
	t.Helper()
	out, err := c.HAProxyCommand(guard(t), env, "show stat")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	header := strings.Split(strings.TrimPrefix(lines[0], "# "), ",")
	px, sv, status := slices.Index(header, "pxname"), slices.Index(header, "svname"), slices.Index(header, "status")
	if px < 0 || sv < 0 || status < 0 {
		t.Fatalf("show stat header: %s", lines[0])
	}
	got := map[string]string{}
	for _, l := range lines[1:] {
		f := strings.Split(l, ",")
		if len(f) > status && f[px] == HAProxyBackend && f[sv] != "BACKEND" {
			got[f[sv]] = f[status]
		}
	}
	return got
}

// installRelease unpacks a demo release on h by hand over SSH, as
// TestDeployByHand does, and returns its directory.
func installRelease(t *testing.T, c *Cluster, client *ssh.Client, h HostInfo, version string) string {
	t.Helper()
	rel := filepath.Join(h.BaseDir, "releases", version)
	art := filepath.Join(rel, ArtifactName(version))
	res := run(t, client, "mkdir -p "+shellQuote(rel)+" && cat > "+shellQuote(art)+" && tar -xzf "+shellQuote(art)+" -C "+shellQuote(rel),
		mustRead(t, filepath.Join(c.Dir(), "artifacts", ArtifactName(version))), nil)
	if res.status != 0 {
		t.Fatalf("install %s on %s: %+v", version, h.Name, res)
	}
	return rel
}

func startSearch(t *testing.T, c *Cluster, h HostInfo, version string) {
	t.Helper()
	client := dialHost(t, c.Dir(), h)
	rel := installRelease(t, c, client, h, version)
	res := run(t, client, shellQuote(rel+"/bin/start")+" "+shellQuote(h.BaseDir)+" "+strconv.Itoa(h.ServicePort), "", nil)
	if res.status != 0 {
		t.Fatalf("start search %s on %s: %+v", version, h.Name, res)
	}
}

func TestTrafficHostsAndConfig(t *testing.T) {
	c := startTrafficCluster(t, 2)
	var names []string
	for _, h := range c.Hosts() {
		names = append(names, h.Name+":"+strings.Join(h.Roles, ","))
	}
	want := "staging-1:search staging-2:search staging-next-1:search-next staging-next-2:search-next staging-lb:lb staging-app-1:app staging-app-2:app " +
		"production-1:search production-2:search production-next-1:search-next production-next-2:search-next production-lb:lb production-app-1:app production-app-2:app"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("hosts:\n%s\nwant\n%s", got, want)
	}

	// relctl.toml loads as relctl's own config type, strictly, with every host's vars.
	dec := toml.NewDecoder(strings.NewReader(mustRead(t, filepath.Join(c.Dir(), ConfigFile))))
	dec.DisallowUnknownFields()
	var cfg playbooks.Config
	if err := dec.Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	for _, h := range c.Hosts() {
		vars := hostVars(t, &cfg, h)
		var want map[string]any
		switch {
		case h.HasRole(RoleLB):
			want = map[string]any{"base_dir": h.Root + "/srv/lb", "lb_port": int64(h.LBPort),
				"haproxy_socket": h.Root + "/haproxy/admin.sock", "haproxy_backend": "search"}
		case h.HasRole(RoleApp):
			want = map[string]any{"base_dir": h.Root + "/srv/app", "app_port": int64(h.AppPort), "app_dir": h.Root + "/app",
				"app_config": h.Root + "/app/app.conf", "app_restart": h.Root + "/app/bin/restart"}
		default:
			want = map[string]any{"base_dir": h.Root + "/srv/search", "port": int64(h.ServicePort), "service_host": "127.0.0.1"}
		}
		if !reflect.DeepEqual(vars, want) {
			t.Errorf("%s vars = %v, want %v", h.Name, vars, want)
		}
		for _, ch := range cfg.Environments[h.Env].Hosts {
			if ch.Name == h.Name && (!reflect.DeepEqual(ch.Roles, h.Roles) || ch.Address != h.Address) {
				t.Errorf("%s in relctl.toml: roles %v address %s, want %v %s", h.Name, ch.Roles, ch.Address, h.Roles, h.Address)
			}
		}
	}
	if lb, ok := c.LB("production"); !ok || lb.Name != "production-lb" {
		t.Errorf("LB(production) = %+v, %v", lb, ok)
	}
	if _, ok := c.LB("qa"); ok {
		t.Error("LB(qa) found a load balancer")
	}
	if apps := c.HostsWithRole("staging", RoleApp); len(apps) != 2 || apps[1].Name != "staging-app-2" {
		t.Errorf("staging apps: %+v", apps)
	}
	// Every new host is an SSH host like the others.
	lb, _ := c.LB("staging")
	if res := run(t, dialHost(t, c.Dir(), lb), "cat "+shellQuote(lb.HAProxyConfig), "", nil); !strings.Contains(res.stdout, "backend search") {
		t.Errorf("haproxy.cfg over SSH: %+v", res)
	}
}

// The load balancer and the apps answer for the search hosts behind them:
// nothing healthy at first, then the search service started by hand.
func TestTrafficThroughLoadBalancerAndApps(t *testing.T) {
	c := startTrafficCluster(t, 2)
	ctx := guard(t)
	lb, _ := c.LB("staging")
	search := c.HostsWithRole("staging", RoleSearch)
	apps := c.HostsWithRole("staging", RoleApp)

	state, err := c.HAProxyCommand(ctx, "staging", "show servers state "+HAProxyBackend)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"staging-1", "staging-2", "staging-next-1", "staging-next-2"} {
		if !strings.Contains(state, " "+HAProxyBackend+" ") || !strings.Contains(state, " "+name+" 127.0.0.1 ") {
			t.Errorf("show servers state lacks %s:\n%s", name, state)
		}
	}
	eventually(t, "search servers DOWN, spares in MAINT", func() bool {
		return reflect.DeepEqual(lbStatus(t, c, "staging"), map[string]string{
			"staging-1": "DOWN", "staging-2": "DOWN", "staging-next-1": "MAINT", "staging-next-2": "MAINT"})
	})
	if status, body := httpGet(t, lb.LBPort, "/health"); status != 503 {
		t.Errorf("LB /health with no search service: %d %q, want 503", status, body)
	}
	for _, app := range apps {
		if status, body := httpGet(t, app.AppPort, "/health"); status != 503 || body != "app: no backend healthy\n" {
			t.Errorf("%s /health with no search service: %d %q", app.Name, status, body)
		}
		if status, body := httpGet(t, app.AppPort, "/search"); status != 502 || body != "app: no backend healthy\n" {
			t.Errorf("%s /search with no search service: %d %q", app.Name, status, body)
		}
	}

	startSearch(t, c, search[1], "1.1.0")
	eventually(t, "staging-2 UP in the load balancer", func() bool { return lbStatus(t, c, "staging")["staging-2"] == "UP" })
	wantBody := `{"status":"ok","service":"search","version":"1.1.0"}` + "\n"
	for range 3 { // round robin skips the DOWN server
		if status, body := httpGet(t, lb.LBPort, "/health"); status != 200 || body != wantBody {
			t.Errorf("LB /health = %d %q, want 200 %q", status, body, wantBody)
		}
	}
	backends := fmt.Sprintf("127.0.0.1:%d,127.0.0.1:%d", search[0].ServicePort, search[1].ServicePort)
	for _, app := range apps {
		if status, body := httpGet(t, app.AppPort, "/health"); status != 200 || body != "app ok backends="+backends+"\n" {
			t.Errorf("%s /health = %d %q", app.Name, status, body)
		}
		for range 2 { // whichever backend is next in turn, the healthy one answers
			if status, body := httpGet(t, app.AppPort, "/search"); status != 200 || body != wantBody {
				t.Errorf("%s /search = %d %q, want 200 %q", app.Name, status, body, wantBody)
			}
		}
	}
	// Production is a world of its own.
	plb, _ := c.LB("production")
	if status, _ := httpGet(t, plb.LBPort, "/health"); status != 503 {
		t.Errorf("production LB /health = %d, want 503", status)
	}

	pids := trafficPIDs(c.Dir(), c.Hosts())
	if len(pids) != 6 { // two HAProxy, four apps
		t.Fatalf("traffic pids %v", pids)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for name, pid := range pids {
		if processAlive(pid) {
			t.Errorf("%s (pid %d) alive after Close", name, pid)
		}
	}
}

// trafficPIDs are the live HAProxy and app processes of the cluster in
// dir, by host name.
func trafficPIDs(dir string, hosts []HostInfo) map[string]int {
	out := map[string]int{}
	for _, h := range hosts {
		var pidFile string
		switch {
		case h.HasRole(RoleLB):
			pidFile = filepath.Join(h.Root, "haproxy", "haproxy.pid")
		case h.HasRole(RoleApp):
			pidFile = filepath.Join(h.AppDir, "run", "app.pid")
		default:
			continue
		}
		if pid := readPID(pidFile); pid > 0 && isMarked(pid, dir) {
			out[h.Name] = pid
		}
	}
	return out
}

// An app is re-pointed as relctl will do it: rewrite app.conf over SSH,
// run app_restart.
func TestAppRepointAndRestart(t *testing.T) {
	c := startTrafficCluster(t, 1)
	app := c.HostsWithRole("staging", RoleApp)[0]
	spare := c.HostsWithRole("staging", RoleSearchNext)[0]
	startSearch(t, c, spare, "1.0.0")
	client := dialHost(t, c.Dir(), app)

	if status, _ := httpGet(t, app.AppPort, "/health"); status != 503 {
		t.Fatalf("app /health before the move = %d, want 503", status)
	}
	conf := fmt.Sprintf("# moved\n127.0.0.1:%d  # %s\n", spare.ServicePort, spare.Name)
	if res := run(t, client, "cat > "+shellQuote(app.AppConfig), conf, nil); res.status != 0 {
		t.Fatalf("write app.conf: %+v", res)
	}
	oldPID := readPID(filepath.Join(app.AppDir, "run", "app.pid"))
	res := run(t, client, shellQuote(app.AppRestart), "", nil)
	if res.status != 0 || !strings.Contains(res.stdout, "app started") {
		t.Fatalf("restart: %+v", res)
	}
	if newPID := readPID(filepath.Join(app.AppDir, "run", "app.pid")); newPID == oldPID || processAlive(oldPID) {
		t.Errorf("restart kept pid %d (now %d)", oldPID, newPID)
	}
	if status, body := httpGet(t, app.AppPort, "/health"); status != 200 || body != fmt.Sprintf("app ok backends=127.0.0.1:%d\n", spare.ServicePort) {
		t.Errorf("app /health after the move = %d %q", status, body)
	}
	if status, body := httpGet(t, app.AppPort, "/search"); status != 200 || !strings.Contains(body, `"version":"1.0.0"`) {
		t.Errorf("app /search after the move = %d %q", status, body)
	}

	// A second start is refused; a restart onto a bad app.conf fails and says why.
	if res := run(t, client, shellQuote(filepath.Join(app.AppDir, "bin", "start")), "", nil); res.status != 1 || !strings.Contains(res.stderr, "app is already running") {
		t.Errorf("second start: %+v", res)
	}
	if res := run(t, client, "echo nonsense > "+shellQuote(app.AppConfig)+" && "+shellQuote(app.AppRestart), "", nil); res.status == 0 ||
		!strings.Contains(res.stderr, "app.conf:1: want host:port, got 'nonsense'") {
		t.Errorf("restart with a bad app.conf: %+v", res)
	}
}

// Server states survive a restart of the cluster (saved on Close, loaded
// at start), as they would a reload; app.conf is the host's and stays.
func TestLBStateAndAppConfigSurviveRestart(t *testing.T) {
	requireHAProxy(t)
	dir := t.TempDir()
	ctx := guard(t)
	first, err := Start(ctx, Options{Dir: dir, Hosts: 1, Traffic: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"set server search/staging-1 state maint", "set server search/staging-next-1 state ready"} {
		if out, err := first.HAProxyCommand(ctx, "staging", cmd); err != nil || strings.TrimSpace(out) != "" {
			t.Fatalf("%s: %q %v", cmd, out, err)
		}
	}
	app := first.HostsWithRole("staging", RoleApp)[0]
	conf := "# edited by hand\n127.0.0.1:1\n"
	if err := os.WriteFile(app.AppConfig, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	second, err := Start(ctx, Options{Dir: dir, Hosts: 1, Traffic: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { second.Close() })
	eventually(t, "staging-1 in MAINT and staging-next-1 out of it", func() bool {
		st := lbStatus(t, second, "staging")
		return st["staging-1"] == "MAINT" && st["staging-next-1"] == "DOWN"
	})
	if got := mustRead(t, app.AppConfig); got != conf {
		t.Errorf("app.conf after restart: %q, want %q", got, conf)
	}
	if status, body := httpGet(t, app.AppPort, "/health"); status != 503 || body != "app: no backend healthy\n" {
		t.Errorf("app /health = %d %q", status, body)
	}
}

func TestKeepMatchingServerState(t *testing.T) {
	header := "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port"
	saved := "1\n" + header + "\n" +
		"3 search 1 s-1 127.0.0.1 0 1 100 100 0 8 2 0 14 0 0 0 - 4001 - 0 0 - - 0\n" + // kept
		"3 search 2 s-2 127.0.0.1 2 0 100 100 0 8 2 0 14 0 0 0 - 4999 - 0 0 - - 0\n" + // port moved
		"3 search 3 gone 127.0.0.1 2 0 100 100 0 8 2 0 14 0 0 0 - 4003 - 0 0 - - 0\n" + // not configured
		"4 other 1 s-1 127.0.0.1 2 0 100 100 0 8 2 0 14 0 0 0 - 4001 - 0 0 - - 0\n" // other backend
	servers := []haproxyServer{{name: "s-1", port: 4001}, {name: "s-2", port: 4002}}
	tests := []struct{ name, saved, want string }{
		{"filtered", saved, "1\n" + header + "\n3 search 1 s-1 127.0.0.1 0 1 100 100 0 8 2 0 14 0 0 0 - 4001 - 0 0 - - 0\n"},
		{"missing", "", "1\n" + header + "\n"},
		{"garbage", "not a state file\n", "1\n" + header + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "server-state")
			if tt.saved != "" {
				os.WriteFile(path, []byte(tt.saved), 0o644)
			}
			if err := keepMatchingServerState(path, servers); err != nil {
				t.Fatal(err)
			}
			if got := mustRead(t, path); got != tt.want {
				t.Errorf("state:\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestHAProxyNotInstalled(t *testing.T) {
	old := haproxySearchPath
	haproxySearchPath = filepath.Join(t.TempDir(), "haproxy")
	t.Cleanup(func() { haproxySearchPath = old })
	dir := t.TempDir()
	if c, err := Start(t.Context(), Options{Dir: dir, Hosts: 1, Traffic: true}); !errors.Is(err, ErrHAProxyNotInstalled) {
		if err == nil {
			c.Close()
		}
		t.Errorf("Start without haproxy: %v", err)
	}
	if _, err := Up(t.Context(), Options{Dir: dir, Hosts: 1, Traffic: true}, []string{os.Args[0]}); !errors.Is(err, ErrHAProxyNotInstalled) {
		t.Errorf("Up without haproxy: %v", err)
	}
}

// Without Traffic, relctl.toml is what it always was (golden from before
// Traffic existed); with it, the new hosts follow each environment's
// search hosts. `go test ./testenv -run Golden -update` rewrites the files.
func TestConfigGolden(t *testing.T) {
	hosts := func(traffic, roles bool) []HostInfo {
		var out []HostInfo
		for e, env := range []string{"staging", "production"} {
			port := 22000 + 10*e
			opts := Options{Hosts: 2, Traffic: traffic}
			for _, spec := range hostSpecs(env, opts) {
				port++
				root := "/cluster/hosts/" + spec.name
				h := HostInfo{Name: spec.name, Env: env, Address: fmt.Sprintf("127.0.0.1:%d", port), SSHPort: port, Root: root}
				if roles || traffic {
					h.Roles = []string{spec.role}
				}
				switch spec.role {
				case RoleLB:
					h.BaseDir, h.LBPort = root+"/srv/lb", port+1000
					h.HAProxySocket, h.HAProxyConfig = root+"/haproxy/admin.sock", root+"/haproxy/haproxy.cfg"
				case RoleApp:
					h.BaseDir, h.AppPort, h.AppDir = root+"/srv/app", port+1000, root+"/app"
					h.AppConfig, h.AppRestart = root+"/app/app.conf", root+"/app/bin/restart"
				default:
					h.BaseDir, h.ServicePort = root+"/srv/search", port+1000
					if env == "production" {
						h.MonitPort = port + 2000
						h.MonitControl, h.MonitConfDir = root+"/monit/monitrc", root+"/monit/conf.d"
					}
				}
				out = append(out, h)
			}
		}
		return out
	}
	tests := []struct {
		golden  string
		hosts   []HostInfo
		traffic bool
	}{
		{"relctl.toml.golden", hosts(false, true), false},
		{"relctl.toml.golden", hosts(false, false), false}, // a testenv.json from before roles
		{"relctl-traffic.toml.golden", hosts(true, true), true},
	}
	for _, tt := range tests {
		dir := t.TempDir()
		if err := writeConfig(dir, []string{"staging", "production"}, tt.hosts, tt.traffic); err != nil {
			t.Fatal(err)
		}
		got := mustRead(t, filepath.Join(dir, ConfigFile))
		golden := filepath.Join("testdata", tt.golden)
		if *updateGolden && tt.traffic {
			if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if want := mustRead(t, golden); got != want {
			t.Errorf("relctl.toml differs from %s:\n%s", golden, got)
		}
	}
}

// `testenv down` stops the HAProxy and apps a daemon started. A daemon
// killed with -9 cannot: the next Up of the same DIR stops them before it
// starts its own, and Down sweeps whatever is left.
func TestDaemonTrafficDownAndKill9(t *testing.T) {
	requireHAProxy(t)
	dir := t.TempDir()
	t.Setenv(serveDirEnv, dir)
	t.Setenv(serveHostsEnv, "1")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	t.Cleanup(func() { Down(context.WithoutCancel(t.Context()), dir) })
	up := func() (*Status, []HostInfo, map[string]int) {
		t.Helper()
		st, err := Up(ctx, Options{Dir: dir, Hosts: 1, Traffic: true}, []string{os.Args[0]})
		if err != nil {
			t.Fatalf("Up: %v", err)
		}
		var hosts []HostInfo
		for _, h := range st.Hosts {
			hosts = append(hosts, h.HostInfo)
		}
		pids := trafficPIDs(dir, hosts)
		if len(pids) != 6 { // two HAProxy, four apps
			t.Fatalf("traffic pids after Up: %v", pids)
		}
		return st, hosts, pids
	}
	kill9 := func(st *Status, pids map[string]int) {
		t.Helper()
		if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if left := waitGone([]int{st.PID}, 30*time.Second); len(left) > 0 {
			t.Fatalf("daemon %d survived SIGKILL", st.PID)
		}
		for name, pid := range pids {
			if !processAlive(pid) {
				t.Fatalf("%s (pid %d) died with the daemon; this test needs it left behind", name, pid)
			}
		}
	}
	gone := func(when string, pids map[string]int) {
		t.Helper()
		for name, pid := range pids {
			if processAlive(pid) {
				t.Errorf("%s: %s (pid %d) still runs", when, name, pid)
			}
		}
	}

	st, hosts, pids := up()
	if !st.Traffic || len(hosts) != 10 {
		t.Fatalf("status: traffic %v, %d hosts", st.Traffic, len(hosts))
	}
	lb := hosts[slices.IndexFunc(hosts, func(h HostInfo) bool { return h.Name == "production-lb" })]
	if out, err := RunHAProxyCommand(ctx, lb.HAProxySocket, "show servers state search"); err != nil || !strings.Contains(out, " production-next-1 ") {
		t.Fatalf("production LB: %q %v", out, err)
	}
	if err := Down(ctx, dir); err != nil {
		t.Fatalf("Down: %v", err)
	}
	gone("after Down", pids)
	if saved, err := GetStatus(ctx, dir); err != nil || saved.Running || !saved.Traffic {
		t.Errorf("status after Down: %+v, %v", saved, err)
	}

	st, _, pids = up()
	kill9(st, pids)
	st, again, pids2 := up()
	gone("after Up following kill -9", pids)
	if !reflect.DeepEqual(again, hosts) {
		t.Errorf("hosts changed across kill -9 and Up:\n%+v\nthen\n%+v", hosts, again)
	}
	if status, _ := httpGet(t, lb.LBPort, "/health"); status != 503 {
		t.Errorf("production LB /health = %d, want 503", status)
	}

	kill9(st, pids2)
	if err := Down(ctx, dir); err != nil {
		t.Fatalf("Down: %v", err)
	}
	gone("after Down following kill -9", pids2)
	if pids := markedProcesses(dir); len(pids) > 0 {
		t.Errorf("processes left after Down: %v", pids)
	}
}

// With monit too, the search hosts and spares each run monit; the load
// balancer and app hosts run none (nothing deployed there is supervised).
func TestTrafficWithMonit(t *testing.T) {
	requireMonit(t)
	requireHAProxy(t)
	c := startClusterWith(t, Options{Hosts: 1, Traffic: true, Monit: true})
	for _, h := range c.Hosts() {
		supervised := h.HasRole(RoleSearch) || h.HasRole(RoleSearchNext)
		running := isMarked(readPID(filepath.Join(h.Root, "monit", "monit.pid")), c.Dir())
		if supervised != (h.MonitControl != "") || supervised != running {
			t.Errorf("%s: monit_control %q, monit running %v", h.Name, h.MonitControl, running)
		}
	}
	if got := len(c.monitPIDs); got != 4 {
		t.Errorf("monit daemons: %d, want 4", got)
	}
}

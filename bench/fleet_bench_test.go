package bench

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/relctl/relctl/internal/sshdtest"
	"github.com/relctl/relctl/internal/state"
	"github.com/relctl/relctl/testenv"
)

// BenchmarkFleet is issue 12's fleet benchmark: RELCTL_BENCH_HOSTS real
// OpenSSH sshd on 127.0.0.1 (`make bench-fleet HOSTS=200`), the real relctl
// binary running deploy 1.0.0, deploy 1.1.0 and rollback --to prev
// --parallel all, and one table row per command: wall time, the time per
// phase from the run's journal, handshakes and sessions per host from its
// run log, and relctl's peak RSS. Skipped unless RELCTL_BENCH_HOSTS is set.
//
// Knobs (environment): RELCTL_BENCH_HOSTS (required), RELCTL_BENCH_MAX_PARALLEL
// (ssh.max_parallel, default 100), RELCTL_BENCH_ARTIFACT_MIB (default 1),
// RELCTL_BENCH_CANARY (default 1), RELCTL_BENCH_BATCH (batch_size, default "100%"),
// RELCTL_BENCH_PULL=1 (then a 50 MiB artifact pushed over SSH against the
// same pulled by the hosts over HTTP: runPullComparison).
func BenchmarkFleet(b *testing.B) {
	cfg := fleetConfigFromEnv(b)
	raiseNoFile(b, cfg.hosts)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir := b.TempDir()
	if keep := os.Getenv("RELCTL_BENCH_DIR"); keep != "" {
		// The project, run logs and journals stay there for a look afterwards.
		dir = keep
		if err := os.MkdirAll(dir, 0o700); err != nil {
			b.Fatal(err)
		}
	}

	start := time.Now()
	key, pub, err := sshdtest.NewFleetClientKey(dir)
	if err != nil {
		b.Fatal(err)
	}
	fleet, err := sshdtest.StartFleet(ctx, filepath.Join(dir, "hosts"), cfg.hosts, 16, pub)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(fleet.Close)
	fmt.Fprintf(os.Stderr, "fleet: %d sshd started in %s\n", cfg.hosts, time.Since(start).Round(time.Millisecond))
	if err := sshdtest.WriteFleetKnownHosts(filepath.Join(dir, "known_hosts"), fleet.Servers); err != nil {
		b.Fatal(err)
	}
	if err := writeFleetProject(dir, key, fleet.Servers, cfg); err != nil {
		b.Fatal(err)
	}
	bin := filepath.Join(dir, "relctl")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/relctl/relctl/cmd/relctl").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}

	commands := []fleetCommand{
		{"deploy 1.0.0", []string{"deploy", "--env", "fleet", "--release", "1.0.0", "--yes"}, "1.0.0", 0},
		{"deploy 1.1.0", []string{"deploy", "--env", "fleet", "--release", "1.1.0", "--yes"}, "1.1.0", 0},
		{"rollback --to prev", []string{"rollback", "--env", "fleet", "--to", "prev", "--parallel", "all", "--yes"}, "1.0.0", 0},
	}
	var rows []fleetRow
	b.ResetTimer()
	for range b.N {
		for _, c := range commands {
			row := runFleetCommand(ctx, b, dir, bin, c, fleet.Servers)
			rows = append(rows, row)
			if ctx.Err() != nil {
				b.Fatal("interrupted")
			}
		}
	}
	if os.Getenv("RELCTL_BENCH_PULL") == "1" {
		rows = append(rows, runPullComparison(ctx, b, dir, bin, fleet.Servers, cfg)...)
	}
	b.StopTimer()
	printFleetTable(os.Stdout, cfg, rows)
}

// runPullComparison (RELCTL_BENCH_PULL=1) deploys two fresh releases of a
// RELCTL_BENCH_PULL_MIB (default 50) MiB artifact to the first
// RELCTL_BENCH_PULL_HOSTS hosts (default all, at most 50: each host writes
// the artifact and its unpacked copy): 2.0.0 pushed by relctl over SSH
// (artifact.path), then 2.1.0 pulled by every host itself over HTTP
// (artifact.url, its sha256 from the .sha256 beside it) from a net/http
// server on 127.0.0.1 (testenv.ServeArtifacts). Same playbook otherwise.
func runPullComparison(ctx context.Context, b *testing.B, dir, bin string, servers []*sshdtest.Server, cfg fleetConfig) []fleetRow {
	num := func(name string, def int) int {
		v := os.Getenv(name)
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("%s=%q: want a positive integer", name, v)
		}
		return n
	}
	mib := num("RELCTL_BENCH_PULL_MIB", 50)
	hosts := min(num("RELCTL_BENCH_PULL_HOSTS", min(cfg.hosts, 50)), cfg.hosts)
	for i, v := range []string{"2.0.0", "2.1.0"} {
		if err := writeFleetArtifact(filepath.Join(dir, "artifacts", "search-"+v+".tar.gz"), v, mib, uint64(7+i)); err != nil {
			b.Fatal(err)
		}
	}
	srv, err := testenv.ServeArtifacts(dir, testenv.ArtifactServerOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	names := make([]string, hosts)
	for i := range names {
		names[i] = servers[i].Name
	}
	playbook := filepath.Join(dir, "playbooks", "search.toml")
	pushed, err := os.ReadFile(playbook)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = os.WriteFile(playbook, pushed, 0o644) }()
	pulled := strings.Replace(string(pushed), `path = "artifacts/search-{{.Version}}.tar.gz"`,
		fmt.Sprintf("url = %q\nretries = 1", srv.URL+"/artifacts/search-{{.Version}}.tar.gz"), 1)
	deploy := func(v, how string) fleetCommand {
		return fleetCommand{name: fmt.Sprintf("deploy %s %s %d MiB to %d", v, how, mib, hosts),
			args: []string{"deploy", "--env", "fleet", "--release", v, "--hosts", strings.Join(names, ","), "--yes"}, want: v, hosts: hosts}
	}
	var rows []fleetRow
	for _, c := range []struct {
		playbook string
		cmd      fleetCommand
	}{{string(pushed), deploy("2.0.0", "pushed over SSH")}, {pulled, deploy("2.1.0", "pulled over HTTP")}} {
		if err := os.WriteFile(playbook, []byte(c.playbook), 0o644); err != nil {
			b.Fatal(err)
		}
		rows = append(rows, runFleetCommand(ctx, b, dir, bin, c.cmd, servers))
		if ctx.Err() != nil {
			b.Fatal("interrupted")
		}
	}
	fmt.Fprintf(os.Stderr, "artifact server requests: %s\n", artifactRequests(srv.Log))
	return rows
}

// artifactRequests counts the server's requests by path kind and client.
func artifactRequests(log string) string {
	body, _ := os.ReadFile(log)
	counts := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(body)), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		kind := "artifact"
		if strings.HasSuffix(f[1], ".sha256") {
			kind = ".sha256"
		}
		ua, _, _ := strings.Cut(strings.TrimPrefix(f[4], "ua="), "/")
		counts[fmt.Sprintf("%s %s by %s", kind, f[2], ua)]++
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = fmt.Sprintf("%d× %s", counts[k], k)
	}
	return strings.Join(keys, ", ")
}

type fleetConfig struct {
	hosts, maxParallel, artifactMiB, canary int
	batch                                   string
}

func fleetConfigFromEnv(b *testing.B) fleetConfig {
	hosts := os.Getenv("RELCTL_BENCH_HOSTS")
	if hosts == "" {
		b.Skip("RELCTL_BENCH_HOSTS is not set: `make bench-fleet HOSTS=200` starts that many sshd")
	}
	num := func(name, v string, def int) int {
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			b.Fatalf("%s=%q: want a non-negative integer", name, v)
		}
		return n
	}
	cfg := fleetConfig{
		hosts:       num("RELCTL_BENCH_HOSTS", hosts, 0),
		maxParallel: num("RELCTL_BENCH_MAX_PARALLEL", os.Getenv("RELCTL_BENCH_MAX_PARALLEL"), 100),
		artifactMiB: num("RELCTL_BENCH_ARTIFACT_MIB", os.Getenv("RELCTL_BENCH_ARTIFACT_MIB"), 1),
		canary:      num("RELCTL_BENCH_CANARY", os.Getenv("RELCTL_BENCH_CANARY"), 1),
		batch:       os.Getenv("RELCTL_BENCH_BATCH"),
	}
	if cfg.batch == "" {
		cfg.batch = "100%"
	}
	if cfg.hosts < 1 {
		b.Fatalf("RELCTL_BENCH_HOSTS=%q: want at least 1", hosts)
	}
	return cfg
}

// raiseNoFile lifts the soft RLIMIT_NOFILE to the hard one: the harness
// and relctl hold a few descriptors per host.
func raiseNoFile(b *testing.B, hosts int) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	if need := uint64(4*hosts + 256); lim.Cur < need {
		b.Fatalf("RLIMIT_NOFILE is %d; %d hosts need about %d (raise the hard limit: ulimit -Hn)", lim.Cur, hosts, need)
	}
}

// fleetPlaybook: upload, unpack, atomic switch, a check of kind command.
const fleetPlaybook = `name = "search"
roles = ["search"]
[artifact]
path = "artifacts/search-{{.Version}}.tar.gz"
[strategy]
canary = %d
batch_size = %q
[checks.version]
type = "command"
command = "grep -qx {{.Version}} {{.CurrentDir}}/VERSION"
interval = "200ms"
retries = 5
[[steps]]
phase = "preflight"
name = "base-dir"
run = "mkdir -p {{.BaseDir}} && test -w {{.BaseDir}}"
[[steps]]
phase = "stage"
kind = "upload"
[[steps]]
phase = "stage"
name = "unpack"
run = "tar -xzf {{.Artifact}} -C {{.ReleaseDir}}"
[[steps]]
phase = "activate"
kind = "activate"
[[steps]]
phase = "verify"
name = "version"
kind = "check"
checks = ["version"]
`

// writeFleetProject writes relctl.toml (one host per sshd, each with its
// own base_dir), the playbook and the artifacts of 1.0.0 and 1.1.0.
func writeFleetProject(dir, key string, servers []*sshdtest.Server, cfg fleetConfig) error {
	var c strings.Builder
	fmt.Fprintf(&c, `project = "search"
[ssh]
user = "root"
identity_file = %q
known_hosts = "known_hosts"
host_key_policy = "strict"
use_agent = false
connect_timeout = "30s"
max_parallel = %d

[environments.fleet]
`, filepath.Base(key), cfg.maxParallel)
	for _, s := range servers {
		fmt.Fprintf(&c, "[[environments.fleet.hosts]]\nname = %q\naddress = %q\nroles = [\"search\"]\nvars = { base_dir = %q }\n",
			s.Name, s.Addr, filepath.Join(s.Root, "srv", "search"))
	}
	if err := os.WriteFile(filepath.Join(dir, "relctl.toml"), []byte(c.String()), 0o644); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "playbooks"), 0o755); err != nil {
		return err
	}
	pb := fmt.Sprintf(fleetPlaybook, cfg.canary, cfg.batch)
	if err := os.WriteFile(filepath.Join(dir, "playbooks", "search.toml"), []byte(pb), 0o644); err != nil {
		return err
	}
	for i, v := range []string{"1.0.0", "1.1.0"} {
		if err := writeFleetArtifact(filepath.Join(dir, "artifacts", "search-"+v+".tar.gz"), v, cfg.artifactMiB, uint64(i)); err != nil {
			return err
		}
	}
	return nil
}

// writeFleetArtifact writes a .tar.gz of mib MiB of random (incompressible)
// data plus a VERSION file: the artifact is as big as it says. It streams,
// so the benchmark process stays small: a child inherits its parent's peak
// RSS in the rusage that "peak RSS" reads.
func writeFleetArtifact(path, version string, mib int, seed uint64) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<16)
	gw, _ := gzip.NewWriterLevel(bw, gzip.BestSpeed)
	tw := tar.NewWriter(gw)
	if err := tw.WriteHeader(&tar.Header{Name: "VERSION", Mode: 0o644, Size: int64(len(version) + 1), ModTime: time.Unix(0, 0)}); err != nil {
		return err
	}
	if _, err := tw.Write([]byte(version + "\n")); err != nil {
		return err
	}
	size := int64(mib) << 20
	if err := tw.WriteHeader(&tar.Header{Name: "data/blob.bin", Mode: 0o644, Size: size, ModTime: time.Unix(0, 0)}); err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(seed, 12))
	chunk := make([]byte, 1<<16)
	for left := size; left > 0; left -= int64(len(chunk)) {
		for i := 0; i+8 <= len(chunk); i += 8 {
			v := r.Uint64()
			for j := range 8 {
				chunk[i+j] = byte(v >> (8 * j))
			}
		}
		if _, err := tw.Write(chunk[:min(int64(len(chunk)), left)]); err != nil {
			return err
		}
	}
	for _, c := range []io.Closer{tw, gw} {
		if err := c.Close(); err != nil {
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Close()
}

type fleetCommand struct {
	name string
	args []string
	want string // the release every host it deploys to is on afterwards
	// hosts: the command deploys to the first hosts of the fleet (0: all).
	hosts int
}

// fleetRow is one command's measurements.
type fleetRow struct {
	name      string
	exit      int
	wall      time.Duration
	peakRSS   int64
	journal   fleetJournal
	log       fleetLog
	exitTime  time.Time
	startTime time.Time
	hosts     int           // the first hosts the command deployed to; 0: all
	wrongHost int           // hosts whose current is not the release the command should leave
	cpuRelctl time.Duration // user+system time of the relctl process
	cpuAll    time.Duration // busy time of the whole machine (sshd, shells, relctl) while it ran
	outTail   string
}

func runFleetCommand(ctx context.Context, b *testing.B, dir, bin string, c fleetCommand, servers []*sshdtest.Server) fleetRow {
	runs := filepath.Join(dir, ".relctl", "runs")
	before := listDir(runs)
	outPath := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".out")
	out, err := os.Create(outPath)
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--config", filepath.Join(dir, "relctl.toml"), "--log-format", "json", "--log-level", "error"}, c.args...)...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, out, out
	row := fleetRow{name: c.name, startTime: time.Now(), hosts: c.hosts}
	busy0 := machineBusy()
	peak, _, err := runMeasured(cmd, 1<<40)
	row.exitTime = time.Now()
	row.cpuAll = machineBusy() - busy0
	if cmd.ProcessState != nil {
		row.cpuRelctl = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	row.wall, row.peakRSS = row.exitTime.Sub(row.startTime), peak
	row.exit = cmd.ProcessState.ExitCode()
	body, _ := os.ReadFile(outPath)
	row.outTail = lastLines(string(body), 15)
	if err != nil {
		b.Errorf("%s: %v\n%s", c.name, err, row.outTail)
	}
	for _, name := range newEntries(before, listDir(runs)) {
		switch {
		case strings.HasSuffix(name, ".jsonl"):
			row.journal = readFleetJournal(b, filepath.Join(runs, name))
		case strings.HasSuffix(name, ".log"):
			row.log = readFleetLog(b, filepath.Join(runs, name))
		}
	}
	if c.hosts > 0 {
		servers = servers[:c.hosts]
	}
	for _, s := range servers {
		if link, err := os.Readlink(filepath.Join(s.Root, "srv", "search", "current")); err != nil || link != "releases/"+c.want {
			row.wrongHost++
		}
	}
	if row.wrongHost > 0 {
		b.Errorf("%s: %d hosts are not on %s afterwards", c.name, row.wrongHost, c.want)
	}
	return row
}

func listDir(dir string) map[string]bool {
	m := map[string]bool{}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		m[e.Name()] = true
	}
	return m
}

func newEntries(before, after map[string]bool) []string {
	var names []string
	for n := range after {
		if !before[n] {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// fleetJournal is what a run's journal says about where its time went.
type fleetJournal struct {
	runStart, firstStep, lastStepEnd, runEnd time.Time
	result                                   string
	busy                                     map[string]time.Duration // phase -> union of its steps' intervals
	steps                                    map[string]int           // phase -> steps ended
	failed                                   int
}

// readFleetJournal pairs step-start with step-end (and undo-start with
// undo-end) per host and step, and sums per phase (the step id's prefix,
// "stage/upload" -> "stage") the union of the intervals: the time some
// host was in that phase.
func readFleetJournal(b *testing.B, path string) fleetJournal {
	evs, err := state.ReadJournal(path)
	if err != nil {
		b.Errorf("journal %s: %v", path, err)
	}
	j := fleetJournal{busy: map[string]time.Duration{}, steps: map[string]int{}}
	open := map[string]time.Time{}
	intervals := map[string][][2]time.Time{}
	for _, ev := range evs {
		key := ev.Host + " " + ev.Step
		phase, _, _ := strings.Cut(ev.Step, "/")
		switch ev.Kind {
		case "run-start":
			j.runStart = ev.Time
		case "run-end":
			j.runEnd, j.result = ev.Time, ev.Result
		case "step-start", "undo-start":
			if j.firstStep.IsZero() {
				j.firstStep = ev.Time
			}
			open[key] = ev.Time
		case "step-end", "undo-end":
			if ev.Kind == "undo-end" {
				phase = "undo"
			}
			if ev.Time.After(j.lastStepEnd) {
				j.lastStepEnd = ev.Time
			}
			j.steps[phase]++
			if ev.Status == "failed" {
				j.failed++
			}
			if s, ok := open[key]; ok {
				intervals[phase] = append(intervals[phase], [2]time.Time{s, ev.Time})
				delete(open, key)
			}
		}
	}
	for phase, iv := range intervals {
		j.busy[phase] = unionLength(iv)
	}
	return j
}

func unionLength(iv [][2]time.Time) time.Duration {
	sort.Slice(iv, func(a, b int) bool { return iv[a][0].Before(iv[b][0]) })
	var total time.Duration
	var cur [2]time.Time
	for i, x := range iv {
		switch {
		case i == 0:
			cur = x
		case !x[0].After(cur[1]):
			if x[1].After(cur[1]) {
				cur[1] = x[1]
			}
		default:
			total += cur[1].Sub(cur[0])
			cur = x
		}
	}
	if len(iv) > 0 {
		total += cur[1].Sub(cur[0])
	}
	return total
}

// fleetLog counts, per host, the run log's connections and commands.
type fleetLog struct {
	handshakes, sessions map[string]int
	commands             []loggedCommand
}

// loggedCommand is one "[label] $ ..." line (when a session started, and its
// label) or one connection ("ssh-connected": when its handshake ended).
type loggedCommand struct {
	at    time.Time
	label string
}

func readFleetLog(b *testing.B, path string) fleetLog {
	l := fleetLog{handshakes: map[string]int{}, sessions: map[string]int{}}
	f, err := os.Open(path)
	if err != nil {
		b.Errorf("run log: %v", err)
		return l
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		fields := strings.SplitN(sc.Text(), " ", 3)
		if len(fields) < 3 {
			continue
		}
		host, msg := fields[1], fields[2]
		switch {
		case strings.HasPrefix(msg, "ssh: connected (handshake "):
			l.handshakes[host]++
			at, _ := time.Parse("2006-01-02T15:04:05.000Z07:00", fields[0])
			l.commands = append(l.commands, loggedCommand{at, "ssh-connected"})
		case strings.HasPrefix(msg, "[") && strings.Contains(msg, "] $ "):
			if end := strings.Index(msg, "] "); end > 0 && strings.HasPrefix(msg[end:], "] $ ") {
				l.sessions[host]++
				at, _ := time.Parse("2006-01-02T15:04:05.000Z07:00", fields[0])
				l.commands = append(l.commands, loggedCommand{at, sessionLabel(msg[1:end])})
			}
		}
	}
	if err := sc.Err(); err != nil && err != io.EOF {
		b.Errorf("run log %s: %v", path, err)
	}
	return l
}

// perHost shows counts per host over every host of the fleet as "n", or
// "min-max (avg a)" when the hosts differ.
func perHost(counts map[string]int, hosts int) string {
	if hosts == 0 {
		return "-"
	}
	lo, hi, sum := -1, 0, 0
	for i := 1; i <= hosts; i++ {
		n := counts[fmt.Sprintf("host-%d", i)]
		if lo < 0 || n < lo {
			lo = n
		}
		hi, sum = max(hi, n), sum+n
	}
	if lo == hi {
		return strconv.Itoa(lo)
	}
	return fmt.Sprintf("%d-%d (avg %.1f)", lo, hi, float64(sum)/float64(hosts))
}

var fleetPhases = []string{"preflight", "stage", "activate", "verify", "cutover", "post"}

func printFleetTable(w io.Writer, cfg fleetConfig, rows []fleetRow) {
	fmt.Fprintf(w, "\nfleet: %d real OpenSSH sshd on 127.0.0.1, ssh.max_parallel = %d, canary %d, batch_size %q, %d MiB artifact\n",
		cfg.hosts, cfg.maxParallel, cfg.canary, cfg.batch, cfg.artifactMiB)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := []string{"command", "exit", "wall", "pre-run", "connect+lock"}
	head = append(head, fleetPhases...)
	head = append(head, "tail", "(run-end→exit)", "unaccounted", "handshakes/host", "sessions/host", "peak RSS", "cpu relctl", "cpu machine")
	fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
	var notes []string
	for _, r := range rows {
		hosts := cfg.hosts
		if r.hosts > 0 {
			hosts = r.hosts
		}
		fmt.Fprintln(tw, strings.Join(r.cells(hosts), "\t")+"\t")
		for phase, d := range r.journal.busy {
			if !containsString(fleetPhases, phase) {
				notes = append(notes, fmt.Sprintf("%s: phase %q %s (%d steps)", r.name, phase, ms(d), r.journal.steps[phase]))
			}
		}
		notes = append(notes, fmt.Sprintf("%s: sessions per host by label: %s", r.name, r.sessionsByLabel(hosts)))
		j := r.journal
		for _, w := range []struct {
			what     string
			from, to time.Time
		}{{"before run-start", r.startTime, j.runStart}, {"from run-start to the first step", j.runStart, j.firstStep}, {"after the last step", j.lastStepEnd, r.exitTime}} {
			if s := r.sessionsBetween(w.from, w.to); s != "" {
				notes = append(notes, fmt.Sprintf("%s: sessions %s (started at +s from its start): %s", r.name, w.what, s))
			}
		}
		if r.exit != 0 || r.journal.result != "succeeded" || r.wrongHost > 0 {
			notes = append(notes, fmt.Sprintf("%s: exit %d, journal result %q, %d hosts not on the expected release; output:\n%s",
				r.name, r.exit, r.journal.result, r.wrongHost, r.outTail))
		}
	}
	tw.Flush()
	fmt.Fprintln(w, "pre-run: process start → run-start (reads before the run); connect+lock: run-start → first step;")
	fmt.Fprintln(w, "phase: union of its steps' intervals over all hosts; tail: last step end → process exit;")
	fmt.Fprintln(w, "unaccounted: wall minus all of those (gaps between phases and batches).")
	fmt.Fprintf(w, "cpu relctl: the relctl process's user+system time; cpu machine: every core's busy time meanwhile (%d cores: at most %d× wall).\n", runtime.NumCPU(), runtime.NumCPU())
	for _, n := range notes {
		fmt.Fprintln(w, n)
	}
}

func (r fleetRow) cells(hosts int) []string {
	j := r.journal
	span := func(from, to time.Time) (time.Duration, string) {
		if from.IsZero() || to.IsZero() {
			return 0, "-"
		}
		return to.Sub(from), ms(to.Sub(from))
	}
	accounted := time.Duration(0)
	add := func(d time.Duration, s string) string { accounted += d; return s }
	preRun := add(span(r.startTime, j.runStart))
	connect := add(span(j.runStart, j.firstStep))
	cells := []string{r.name, strconv.Itoa(r.exit), ms(r.wall), preRun, connect}
	for _, p := range fleetPhases {
		if d, ok := j.busy[p]; ok {
			cells = append(cells, add(d, ms(d)))
		} else {
			cells = append(cells, "-")
		}
	}
	tail := add(span(j.lastStepEnd, r.exitTime))
	_, afterEnd := span(j.runEnd, r.exitTime)
	return append(cells, tail, afterEnd, ms(r.wall-accounted),
		perHost(r.log.handshakes, hosts), perHost(r.log.sessions, hosts), fmt.Sprintf("%d MiB", r.peakRSS>>20),
		ms(r.cpuRelctl), ms(r.cpuAll))
}

// sessionsByLabel is every session of the run by label, per host on average
// ("label N; label N").
func (r fleetRow) sessionsByLabel(hosts int) string {
	counts := map[string]int{}
	var labels []string
	for _, c := range r.log.commands {
		if c.label == "ssh-connected" {
			continue
		}
		if counts[c.label] == 0 {
			labels = append(labels, c.label)
		}
		counts[c.label]++
	}
	parts := make([]string, 0, len(labels))
	for _, l := range labels {
		parts = append(parts, fmt.Sprintf("%s %.4g", l, float64(counts[l])/float64(hosts)))
	}
	return strings.Join(parts, "; ") // labels may hold a comma
}

// sessionsBetween summarizes the sessions started (and connections made) in [from, to), by label:
// what the time outside the steps is spent on.
func (r fleetRow) sessionsBetween(from, to time.Time) string {
	if from.IsZero() || to.IsZero() {
		return ""
	}
	type agg struct {
		n           int
		first, last time.Time
	}
	by := map[string]*agg{}
	var labels []string
	for _, c := range r.log.commands {
		if c.at.Before(from) || !c.at.Before(to) {
			continue
		}
		a := by[c.label]
		if a == nil {
			a = &agg{first: c.at}
			by[c.label] = a
			labels = append(labels, c.label)
		}
		a.n++
		a.last = c.at
	}
	var parts []string
	for _, l := range labels {
		a := by[l]
		parts = append(parts, fmt.Sprintf("%d× [%s] %s-%s", a.n, l, ms(a.first.Sub(from)), ms(a.last.Sub(from))))
	}
	return strings.Join(parts, "; ")
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.2fs", d.Seconds())
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// machineBusy is the time every core of the machine has spent not idle
// (/proc/stat), 0 where that cannot be read.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fields := strings.Fields(line)
	if len(fields) < 5 || fields[0] != "cpu" {
		return 0
	}
	var ticks int64
	for i, f := range fields[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ is 100 on Linux
}

// sessionLabel is a run log label without the path or version a command
// names ("upload /srv/x.tar.gz", "activate 1.1.0" count as one label each);
// others stay whole ("write run summary, unlock").
func sessionLabel(label string) string {
	if first, rest, ok := strings.Cut(label, " "); ok && rest != "" && (rest[0] == '/' || (rest[0] >= '0' && rest[0] <= '9')) {
		return first
	}
	return label
}

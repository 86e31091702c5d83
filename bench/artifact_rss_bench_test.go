package bench

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"

	"github.com/relctl/relctl/testenv"
)

// rssBudget is the bound on the controller: a 1 GiB-unpacked
// artifact checked on 50 hosts stays under it.
const rssBudget = 256 << 20

// rssKillAt stops a run whose RSS passes it (the machine is shared; code that
// holds the artifact per host would otherwise take tens of GiB). Override
// with RELCTL_BENCH_RSS_KILL_MIB.
const rssKillAt = 4 << 30

// inspectionRow is one measured run: relctl check on the first hosts hosts
// with a candidate whose artifact unpacks to mib MiB.
type inspectionRow struct {
	hosts int
	mib   int
}

// defaultInspectionRows end with the case. RELCTL_BENCH_ROWS
// overrides them: "2x1024,8x256" is hosts x unpacked MiB.
var defaultInspectionRows = []inspectionRow{{2, 1024}, {8, 1024}, {50, 1024}}

// BenchmarkArtifactInspectionRSS runs the relctl binary's `check --release`
// (the candidate's watchdog snippet is inspected from the local artifact on
// every host, as a deploy's preflight does) against testenv hosts that run
// monit, with an artifact that unpacks to 1 GiB of 1 MiB files (the .tar.gz
// stays small), and prints the controller's peak RSS: the getrusage maxrss
// of the relctl process, not of this test binary (which runs the cluster).
func BenchmarkArtifactInspectionRSS(b *testing.B) {
	rows, err := inspectionRows(os.Getenv("RELCTL_BENCH_ROWS"))
	if err != nil {
		b.Fatal(err)
	}
	killAt := int64(rssKillAt)
	if v := os.Getenv("RELCTL_BENCH_RSS_KILL_MIB"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			b.Fatalf("RELCTL_BENCH_RSS_KILL_MIB=%q: %v", v, err)
		}
		killAt = n << 20
	}
	hosts := 0
	for _, r := range rows {
		hosts = max(hosts, r.hosts)
	}
	ctx := zerolog.Nop().WithContext(context.Background())
	dir := b.TempDir()
	c, err := testenv.Start(ctx, testenv.Options{Dir: dir, Hosts: hosts, Envs: []string{"staging"}, Monit: true})
	if errors.Is(err, testenv.ErrMonitNotInstalled) {
		b.Skip("monit is not installed: the candidate's watchdog snippet is only inspected on hosts that run monit")
	}
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	bin := filepath.Join(dir, "relctl")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/relctl/relctl/cmd/relctl").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	relctl := func(ctx context.Context, args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, bin, append([]string{"--config", filepath.Join(dir, testenv.ConfigFile), "--log-format", "json", "--log-level", "error"}, args...)...)
		cmd.Dir = dir
		return cmd
	}
	// check probes the current release's health: every host needs one.
	if out, err := relctl(ctx, "deploy", "--env", "staging", "--release", "1.0.0", "--yes").CombinedOutput(); err != nil {
		b.Fatalf("deploy 1.0.0: %v\n%s", err, out)
	}
	versions := map[int]string{}
	for _, r := range rows {
		if versions[r.mib] != "" {
			continue
		}
		v := fmt.Sprintf("9.%d.0", r.mib)
		if err := writePaddedArtifact(dir, "1.1.0", v, r.mib); err != nil {
			b.Fatal(err)
		}
		versions[r.mib] = v
	}
	names := make([]string, 0, hosts)
	for _, h := range c.Hosts() {
		names = append(names, h.Name)
	}

	type result struct {
		inspectionRow
		size    int64
		wall    time.Duration
		peak    int64 // bytes
		killed  bool
		outcome string
	}
	var results []result
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, r := range rows {
			v := versions[r.mib]
			fi, err := os.Stat(filepath.Join(dir, "artifacts", testenv.ArtifactName(v)))
			if err != nil {
				b.Fatal(err)
			}
			cmd := relctl(ctx, "check", "--env", "staging", "--release", v, "--hosts", strings.Join(names[:r.hosts], ","))
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			start := time.Now()
			peak, killed, err := runMeasured(cmd, killAt)
			res := result{inspectionRow: r, size: fi.Size(), wall: time.Since(start), peak: peak, killed: killed, outcome: "ok"}
			switch {
			case killed:
				res.outcome = fmt.Sprintf("killed above %d MiB", killAt>>20)
			case cmd.ProcessState != nil && cmd.ProcessState.ExitCode() == 6:
				// A check failed on some host (under this load, now and then
				// a monit daemon does not answer); the inspection still ran.
				res.outcome = "exit 6: " + lastLines(out.String(), 1)
				b.Logf("check %d hosts, %d MiB: %v\n%s", r.hosts, r.mib, err, failedLines(out.String()))
			case err != nil:
				res.outcome = err.Error()
				b.Errorf("check %d hosts, %d MiB: %v\n%s", r.hosts, r.mib, err, lastLines(out.String(), 20))
			}
			results = append(results, res)
		}
	}
	b.StopTimer()

	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "hosts\tunpacked\t.tar.gz\twall time\tpeak RSS\tbudget\tresult\t\n")
	for _, r := range results {
		peak := fmt.Sprintf("%d MiB", r.peak>>20)
		if r.killed {
			peak = ">" + peak
		}
		verdict := "under"
		if r.killed || r.peak >= rssBudget {
			verdict = "OVER"
		}
		fmt.Fprintf(tw, "%d\t%d MiB\t%d KiB\t%s\t%s\t%s %d MiB\t%s\t\n",
			r.hosts, r.mib, r.size>>10, r.wall.Round(time.Millisecond), peak, verdict, rssBudget>>20, r.outcome)
		if r.killed || r.peak >= rssBudget {
			b.Errorf("check on %d hosts of a %d MiB-unpacked artifact peaked at %s RSS; the budget is %d MiB", r.hosts, r.mib, peak, rssBudget>>20)
		}
	}
	tw.Flush()
}

func inspectionRows(spec string) ([]inspectionRow, error) {
	if spec == "" {
		return defaultInspectionRows, nil
	}
	var rows []inspectionRow
	for _, f := range strings.Split(spec, ",") {
		h, m, ok := strings.Cut(strings.TrimSpace(f), "x")
		hosts, err1 := strconv.Atoi(h)
		mib, err2 := strconv.Atoi(m)
		if !ok || err1 != nil || err2 != nil || hosts < 1 || mib < 1 {
			return nil, fmt.Errorf("RELCTL_BENCH_ROWS: %q is not HOSTSxMIB (e.g. 50x1024)", f)
		}
		rows = append(rows, inspectionRow{hosts, mib})
	}
	return rows, nil
}

// runMeasured runs cmd, killing it when its resident set passes killAt, and
// returns its peak RSS in bytes (the kernel's maxrss).
func runMeasured(cmd *exec.Cmd, killAt int64) (peak int64, killed bool, err error) {
	if err := cmd.Start(); err != nil {
		return 0, false, err
	}
	done := make(chan struct{})
	watched := make(chan bool, 1)
	go func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				watched <- false
				return
			case <-t.C:
				if rss, ok := residentBytes(cmd.Process.Pid); ok && rss > killAt {
					_ = cmd.Process.Kill()
					watched <- true
					return
				}
			}
		}
	}()
	err = cmd.Wait()
	close(done)
	killed = <-watched
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		peak = ru.Maxrss << 10 // Linux reports KiB
	}
	return peak, killed, err
}

// residentBytes reads VmRSS of a running process.
func residentBytes(pid int) (int64, bool) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err == nil
		}
	}
	return 0, false
}

// writePaddedArtifact copies the demo artifact of base as version, with mib
// files of 1 MiB each (compressible, so the .tar.gz stays small) placed
// before the release's own files: a search through the release reads them
// all before it finds what the start script names.
func writePaddedArtifact(dir, base, version string, mib int) error {
	src, err := os.Open(filepath.Join(dir, "artifacts", testenv.ArtifactName(base)))
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.Create(filepath.Join(dir, "artifacts", testenv.ArtifactName(version)))
	if err != nil {
		return err
	}
	defer dst.Close()
	gw, err := gzip.NewWriterLevel(dst, gzip.BestSpeed)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(gw)
	line := []byte("padding: a large data file the release ships; nothing here names a pidfile\n")
	body := bytes.Repeat(line, (1<<20)/len(line)+1)[:1<<20]
	if err := tw.WriteHeader(&tar.Header{Name: "data/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Unix(0, 0)}); err != nil {
		return err
	}
	for i := range mib {
		hdr := &tar.Header{Name: fmt.Sprintf("data/part-%04d.bin", i), Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body)), ModTime: time.Unix(0, 0)}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(body); err != nil {
			return err
		}
	}
	gr, err := gzip.NewReader(src)
	if err != nil {
		return err
	}
	tr := tar.NewReader(gr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := gw.Close(); err != nil {
		return err
	}
	return dst.Close()
}

// failedLines are the report lines of the checks that failed.
func failedLines(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, "FAILED") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

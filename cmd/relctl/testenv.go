package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/relctl/relctl/internal/output"
	"github.com/relctl/relctl/testenv"
)

func newCmdTestenv(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "testenv",
		Short: "Run a local cluster of SSH hosts to try relctl on",
		Long: `testenv starts, in the background, a local cluster on 127.0.0.1: environments
staging and production, N SSH hosts each, which run real commands with /bin/sh,
each with its own monit daemon when monit is installed (--monit=false: none).
It writes relctl.toml, playbooks/search.toml, a client key, known_hosts and the
artifacts of a small search service into DIR: 1.0.0 and 1.1.0 work; 1.2.0
starts but fails its health check, and its monit snippet watches a pidfile it
never writes; 1.3.0's monit snippet is not valid monit syntax.

With --traffic each environment E also gets E-lb (role lb: a real HAProxy in
front of the search hosts, admin socket in its vars), E-app-1 and E-app-2
(role app: an app that calls the search hosts listed in its app.conf) and
spare hosts E-next-1..N (role search-next: nothing deployed, in maintenance
in the load balancer).`,
		Example: `  relctl testenv up --dir /tmp/relctl-demo --hosts 3
  cd /tmp/relctl-demo && relctl deploy --env staging --release 1.1.0 --yes
  relctl testenv status --dir /tmp/relctl-demo
  relctl testenv down --dir /tmp/relctl-demo`,
	}
	cmd.AddCommand(newCmdTestenvUp(f, nil), newCmdTestenvDown(f, nil), newCmdTestenvStatus(f, nil), newCmdTestenvFault(f, nil), newCmdTestenvServe(f, nil))
	return cmd
}

// requireDir is the usage error for a testenv command without --dir.
func requireDir(dir string) error {
	if dir == "" {
		return usageErrorf("--dir is required")
	}
	return nil
}

// TestenvUpOptions are `relctl testenv up`'s inputs.
type TestenvUpOptions struct {
	IO *output.IOStreams

	Dir     string
	Hosts   int
	Monit   bool
	Traffic bool
}

func newCmdTestenvUp(f *Factory, runF func(*TestenvUpOptions) error) *cobra.Command {
	opts := &TestenvUpOptions{IO: f.IOStreams}
	cmd := &cobra.Command{
		Use:     "up --dir DIR [--hosts N] [--traffic]",
		Short:   "Start the local cluster in the background; returns once every host accepts SSH",
		Example: "  relctl testenv up --dir /tmp/relctl-demo --hosts 3\n  relctl testenv up --dir /tmp/relctl-lb --hosts 2 --traffic",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireDir(opts.Dir); err != nil {
				return err
			}
			if opts.Hosts < 1 {
				return usageErrorf("--hosts must be at least 1")
			}
			if runF != nil {
				return runF(opts)
			}
			return testenvUpRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Dir, "dir", "", "directory for the cluster's files (created)")
	cmd.Flags().IntVar(&opts.Hosts, "hosts", 3, "hosts per environment")
	_, lookErr := exec.LookPath("monit")
	cmd.Flags().BoolVar(&opts.Monit, "monit", lookErr == nil, "each host runs its own monit daemon supervising the service, and the playbook gets a [watchdog] table (default: when monit is installed)")
	cmd.Flags().BoolVar(&opts.Traffic, strings.TrimPrefix(testenv.TrafficFlag, "--"), false, "add per environment a load balancer (HAProxy), two app hosts and spare search hosts")
	return cmd
}

func testenvUpRun(ctx context.Context, opts *TestenvUpOptions) error {
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	argv := []string{exe, "testenv", "serve", "--dir", dir, "--hosts", strconv.Itoa(opts.Hosts)}
	if opts.Monit {
		argv = append(argv, testenv.MonitFlag)
	}
	if opts.Traffic {
		argv = append(argv, testenv.TrafficFlag)
	}
	st, err := testenv.Up(ctx, testenv.Options{Dir: dir, Hosts: opts.Hosts, Monit: opts.Monit, Traffic: opts.Traffic}, argv)
	if err != nil {
		return err
	}
	withMonit := ""
	switch {
	case st.Monit && st.Traffic:
		withMonit = ", search hosts and spares running monit"
	case st.Monit:
		withMonit = ", each running monit"
	}
	if st.Traffic {
		withMonit += ", a load balancer and two apps per environment"
	}
	fmt.Fprintf(opts.IO.Out, "testenv is up in %s (pid %d): %d hosts%s\n", st.Dir, st.PID, len(st.Hosts), withMonit)
	printTestenvHosts(opts.IO.Out, st)
	fmt.Fprintf(opts.IO.Out, "\nNext: cd %s && relctl deploy --env staging --release 1.0.0 --yes\n", st.Dir)
	return nil
}

func printTestenvHosts(w io.Writer, st *testenv.Status) {
	t := newTable(w, "HOST", "ENV", "ROLES", "SSH", "SERVICE PORT", "SSH UP", "HANDSHAKES", "FAULTS", "HELD")
	for _, h := range st.Hosts {
		roles := strings.Join(h.Roles, ",")
		if roles == "" { // a testenv.json from before roles
			roles = testenv.RoleSearch
		}
		t.row(h.Name, h.Env, roles, h.Address, servicePort(h.HostInfo), yesNo(h.SSHUp), strconv.Itoa(h.Handshakes), h.Faults.String(), strconv.Itoa(h.Held))
	}
	t.flush()
	for _, h := range st.Hosts {
		if h.HasRole(testenv.RoleLB) {
			fmt.Fprintf(w, "%s: HAProxy on http://127.0.0.1:%d, admin socket %s\n", h.Name, h.LBPort, h.HAProxySocket)
		}
	}
}

// servicePort is the port of what the host serves: the search service,
// HAProxy's frontend or the app.
func servicePort(h testenv.HostInfo) string {
	switch {
	case h.HasRole(testenv.RoleLB):
		return strconv.Itoa(h.LBPort) + " (haproxy)"
	case h.HasRole(testenv.RoleApp):
		return strconv.Itoa(h.AppPort) + " (app)"
	}
	return strconv.Itoa(h.ServicePort)
}

// TestenvDownOptions are `relctl testenv down`'s inputs.
type TestenvDownOptions struct {
	IO  *output.IOStreams
	Dir string
}

func newCmdTestenvDown(f *Factory, runF func(*TestenvDownOptions) error) *cobra.Command {
	opts := &TestenvDownOptions{IO: f.IOStreams}
	cmd := &cobra.Command{
		Use:     "down --dir DIR",
		Short:   "Stop the local cluster and every process it started",
		Example: "  relctl testenv down --dir /tmp/relctl-demo",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireDir(opts.Dir); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return testenvDownRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Dir, "dir", "", "the directory given to `testenv up`")
	return cmd
}

func testenvDownRun(ctx context.Context, opts *TestenvDownOptions) error {
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return err
	}
	if err := testenv.Down(ctx, dir); err != nil {
		return err
	}
	fmt.Fprintf(opts.IO.Out, "testenv in %s is down\n", dir)
	return nil
}

// TestenvStatusOptions are `relctl testenv status`'s inputs.
type TestenvStatusOptions struct {
	IO     *output.IOStreams
	Dir    string
	Format string
}

func newCmdTestenvStatus(f *Factory, runF func(*TestenvStatusOptions) error) *cobra.Command {
	opts := &TestenvStatusOptions{IO: f.IOStreams}
	cmd := &cobra.Command{
		Use:     "status --dir DIR",
		Short:   "Show the local cluster's hosts, ports and SSH handshake counts",
		Example: "  relctl testenv status --dir /tmp/relctl-demo --output json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireDir(opts.Dir); err != nil {
				return err
			}
			if err := checkFormat(opts.Format); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return testenvStatusRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Dir, "dir", "", "the directory given to `testenv up`")
	cmd.Flags().StringVarP(&opts.Format, "output", "o", "text", "output format: text or json")
	return cmd
}

func testenvStatusRun(ctx context.Context, opts *TestenvStatusOptions) error {
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return err
	}
	st, err := testenv.GetStatus(ctx, dir)
	if err != nil {
		return err
	}
	if opts.Format == "json" {
		return writeJSON(opts.IO.Out, st)
	}
	if !st.Running {
		fmt.Fprintf(opts.IO.Out, "testenv in %s is not running\n", dir)
		return nil
	}
	fmt.Fprintf(opts.IO.Out, "testenv in %s is running (pid %d)\n", st.Dir, st.PID)
	printTestenvHosts(opts.IO.Out, st)
	return nil
}

// TestenvFaultOptions are `relctl testenv fault`'s inputs.
type TestenvFaultOptions struct {
	IO    *output.IOStreams
	Dir   string
	Host  string
	Fault testenv.FaultSpec
	Clear bool
}

func newCmdTestenvFault(f *Factory, runF func(*TestenvFaultOptions) error) *cobra.Command {
	opts := &TestenvFaultOptions{IO: f.IOStreams}
	cmd := &cobra.Command{
		Use:   "fault --dir DIR --host NAME FAULT... | --clear",
		Short: "Inject a fault into one host: SSH port closed, host hung, a step failing, held, never ending or with damaged output, a file unreadable",
		Long: `Fault replaces a testenv host's faults (flags combine; --clear removes them).
STEP is a command label relctl sends: it matches the label itself, its part
after the first "/" (health matches verify/health), or its first word
(upload matches "upload /srv/.../x.tar.gz", activate matches "activate 1.1.0").
The run log (-v) shows every label; forwarded connections (http checks dialled
through the host) are "forward ADDR".

  --drop-ssh              close the host's SSH port and drop its open connections
  --hang                  keep connections open but answer nothing (sessions, keepalives, output)
  --fail-step STEP        relctl's commands for STEP exit 1 without running
  --hang-step STEP        relctl's commands for STEP wait, without running, until the fault is cleared
  --truncate-step STEP    STEP runs; its stdout is cut in half, without a final newline
  --drop-lines-step STEP  STEP runs; every 3rd line of its stdout is dropped (--drop-every N),
                          or the lines a regexp matches (--drop-matching RE)
  --garbage-step STEP     STEP runs; its stdout is replaced by bytes that are not text (NUL, invalid UTF-8)
  --never-ends-step STEP  STEP runs; half its stdout is sent, then the command never ends
                          (until relctl kills it, closes the session, or the fault is cleared)
  --unreadable FILE       FILE (relative to the host's base_dir) becomes an empty directory;
                          --clear puts the original back (if the directory was written to,
                          that stays and the original goes beside it as FILE.testenv-original)`,
		Example: `  relctl testenv fault --dir /tmp/relctl-demo --host staging-2 --drop-ssh
  relctl testenv fault --dir /tmp/relctl-demo --host staging-1 --fail-step activate/restart
  relctl testenv fault --dir /tmp/relctl-demo --host staging-1 --drop-lines-step read-state --drop-matching '^--relctl-releases--'
  relctl testenv fault --dir /tmp/relctl-demo --host staging-1 --never-ends-step activate/restart
  relctl testenv fault --dir /tmp/relctl-demo --host staging-1 --unreadable .relctl/history.json
  relctl testenv fault --dir /tmp/relctl-demo --host staging-1 --clear`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := opts.validate(cmd); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return testenvFaultRun(cmd.Context(), opts)
		},
	}
	opts.addFlags(cmd)
	return cmd
}

func (opts *TestenvFaultOptions) validate(cmd *cobra.Command) error {
	if err := requireDir(opts.Dir); err != nil {
		return err
	}
	if err := requireFlag(cmd, "host", opts.Host); err != nil {
		return err
	}
	if opts.Clear == !opts.Fault.IsZero() {
		return usageErrorf("give --clear, or one or more of --drop-ssh, --hang, --fail-step, --hang-step, --truncate-step, --drop-lines-step, --garbage-step, --never-ends-step, --unreadable")
	}
	if (opts.Fault.DropEvery != 0 || opts.Fault.DropMatching != "") && opts.Fault.DropLinesStep == "" {
		return usageErrorf("--drop-every and --drop-matching need --drop-lines-step")
	}
	return nil
}

func (opts *TestenvFaultOptions) addFlags(cmd *cobra.Command) {
	fl, f := cmd.Flags(), &opts.Fault
	fl.StringVar(&opts.Dir, "dir", "", "the directory given to `testenv up`")
	fl.StringVar(&opts.Host, "host", "", "host name, e.g. staging-2")
	fl.BoolVar(&f.DropSSH, "drop-ssh", false, "close the host's SSH port and drop its connections")
	fl.BoolVar(&f.Hang, "hang", false, "the host stops answering")
	fl.StringVar(&f.FailStep, "fail-step", "", "relctl step whose commands fail on this host")
	fl.StringVar(&f.HangStep, "hang-step", "", "relctl step whose commands are held until --clear")
	fl.StringVar(&f.TruncateStep, "truncate-step", "", "relctl step whose stdout is cut in half (no final newline)")
	fl.StringVar(&f.DropLinesStep, "drop-lines-step", "", "relctl step whose stdout loses every Nth line (--drop-every)")
	fl.IntVar(&f.DropEvery, "drop-every", 0, "with --drop-lines-step: drop every Nth line (default 3)")
	fl.StringVar(&f.DropMatching, "drop-matching", "", "with --drop-lines-step: drop the lines this regexp matches instead")
	fl.StringVar(&f.GarbageStep, "garbage-step", "", "relctl step whose stdout is replaced by garbage bytes")
	fl.StringVar(&f.NeverEndsStep, "never-ends-step", "", "relctl step whose commands send half their output, then never end")
	fl.StringVar(&f.Unreadable, "unreadable", "", "a file of the host (relative to its base_dir) replaced by an empty directory until --clear")
	fl.BoolVar(&opts.Clear, "clear", false, "remove every fault from the host")
}

func testenvFaultRun(ctx context.Context, opts *TestenvFaultOptions) error {
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return err
	}
	if err := testenv.SetHostFault(ctx, dir, opts.Host, opts.Fault); err != nil {
		return err
	}
	fmt.Fprintf(opts.IO.Out, "%s: faults: %s\n", opts.Host, opts.Fault)
	return nil
}

// TestenvServeOptions are `relctl testenv serve`'s inputs (what `up` runs).
type TestenvServeOptions struct {
	Stop    <-chan struct{}
	Dir     string
	Hosts   int
	Monit   bool
	Traffic bool
}

func newCmdTestenvServe(f *Factory, runF func(*TestenvServeOptions) error) *cobra.Command {
	opts := &TestenvServeOptions{Stop: f.Stop}
	cmd := &cobra.Command{
		Use:    "serve",
		Hidden: true, // what `testenv up` runs in the background
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireDir(opts.Dir); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return testenvServeRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Dir, "dir", "", "cluster directory")
	cmd.Flags().IntVar(&opts.Hosts, "hosts", 3, "hosts per environment")
	cmd.Flags().BoolVar(&opts.Monit, strings.TrimPrefix(testenv.MonitFlag, "--"), false, "run monit on every host")
	cmd.Flags().BoolVar(&opts.Traffic, strings.TrimPrefix(testenv.TrafficFlag, "--"), false, "add load balancers, app hosts and spares")
	return cmd
}

func testenvServeRun(ctx context.Context, opts *TestenvServeOptions) error {
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return err
	}
	// SIGTERM (from `testenv down`) stops the cluster.
	ctx, cancel := stopOrCancel(ctx, opts.Stop)
	defer cancel()
	return testenv.Serve(ctx, testenv.Options{Dir: dir, Hosts: opts.Hosts, Monit: opts.Monit, Traffic: opts.Traffic})
}

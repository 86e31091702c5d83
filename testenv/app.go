package testenv

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"github.com/relctl/relctl/internal/shellquote"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-multierror"
)

//go:embed demo/app/app.py demo/app/bin/start demo/app/bin/stop demo/app/bin/restart
var appFiles embed.FS

// AppsPerEnv is how many app hosts (E-app-1, E-app-2) a cluster with
// Options.Traffic gives each environment.
const AppsPerEnv = 2

// Files of an app host, under DIR/hosts/E-app-N/app/ (HostInfo.AppDir).
const (
	appDirName     = "app"
	AppConfigFile  = "app.conf"    // its backends, one host:port per line; read at start
	AppPortFile    = "port"        // the port it listens on, for bin/start
	AppPIDFile     = "run/app.pid" // written by app.py once it listens
	AppLogFile     = "log/app.log"
	AppRestartFile = "bin/restart"
)

// writeAppFiles installs the app and its control scripts in info.AppDir.
// app.conf is written only when missing: it is the host's configuration,
// which relctl rewrites when the search service moves, and a later start of
// the same DIR keeps it as a real host's disk would.
func writeAppFiles(info HostInfo, backends []string) error {
	for _, name := range []string{"app.py", "bin/start", "bin/stop", "bin/restart"} {
		b, err := appFiles.ReadFile("demo/app/" + name)
		if err != nil {
			return err
		}
		mode := os.FileMode(0o755)
		if name == "app.py" {
			mode = 0o644
		}
		if err := writeFileAtomic(filepath.Join(info.AppDir, name), b, mode); err != nil {
			return err
		}
	}
	if err := writeFileAtomic(filepath.Join(info.AppDir, AppPortFile), []byte(strconv.Itoa(info.AppPort)+"\n"), 0o644); err != nil {
		return err
	}
	if _, err := os.Stat(info.AppConfig); err == nil {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by relctl testenv: the search hosts app %s talks to, one host:port\n", info.Name)
	b.WriteString("# per line. The app reads this file when it starts: restart it (bin/restart) after a change.\n")
	for _, be := range backends {
		b.WriteString(be + "\n")
	}
	return writeFileAtomic(info.AppConfig, []byte(b.String()), 0o644)
}

// appBackends are the search services app hosts of env start with.
func appBackends(env string, hosts []HostInfo) []string {
	var out []string
	for _, h := range hosts {
		if h.Env == env && h.HasRole(RoleSearch) {
			out = append(out, "127.0.0.1:"+strconv.Itoa(h.ServicePort))
		}
	}
	return out
}

// stopStaleApp stops an app an earlier run of this DIR left behind (its
// testenv was killed): bin/start would refuse to start next to it.
func stopStaleApp(appDir, marker string) {
	if pid := readPID(filepath.Join(appDir, AppPIDFile)); pid > 0 && isMarked(pid, marker) {
		stopPID(pid)
	}
}

// runOnHost runs command with /bin/sh in the host's root directory and the
// environment its SSH commands get (marker included, so Close and Down find
// what it leaves running), without an SSH connection: testenv's own work
// must not count as a handshake.
func runOnHost(ctx context.Context, info HostInfo, marker, command string) (string, error) {
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.Dir = info.Root
	cmd.Env = []string{
		"HOME=" + info.Root,
		"PATH=" + hostPATH,
		"LANG=C",
		"USER=root",
		"LOGNAME=root",
		"SHELL=/bin/sh",
		MarkerEnv + "=" + marker,
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second // should a detached child keep our output pipe open
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: %w: %s", command, err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// startApps installs and starts the app on every app host, through the
// host's shell (bin/start), as an operator would.
func (c *Cluster) startApps(ctx context.Context, infos []HostInfo) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs *multierror.Error
	)
	for _, h := range infos {
		if !h.HasRole(RoleApp) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := writeAppFiles(h, appBackends(h.Env, infos))
			if err == nil {
				var out string
				out, err = runOnHost(ctx, h, c.dir, shellquote.Quote(filepath.Join(h.AppDir, "bin", "start")))
				c.log.Debug().Str("host", h.Name).Str("output", strings.TrimSpace(out)).Msg("app started")
			}
			if err != nil {
				mu.Lock()
				errs = multierror.Append(errs, fmt.Errorf("%s: start app: %w", h.Name, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errs.ErrorOrNil()
}

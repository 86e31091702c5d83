package timeline

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The page is opened in a real browser: Debian's chromium, headless. The
// page's own script marks <body data-rendered="N"> with the bars it found,
// and window.onerror writes any script error into <html data-error>; the
// DOM after load (--dump-dom) shows both. A screenshot checks it draws.

var installChromium sync.Once

// chromium returns the browser's path, installing Debian's chromium when it
// is missing and the test runs as root. Without it the test is skipped,
// unless CI=true, where it fails.
func chromium(t *testing.T) string {
	t.Helper()
	find := func() string {
		for _, name := range []string{"chromium", "chromium-browser"} {
			if p, err := exec.LookPath(name); err == nil {
				return p
			}
		}
		return ""
	}
	installChromium.Do(func() {
		if find() != "" || os.Geteuid() != 0 {
			return
		}
		for _, args := range [][]string{{"update", "-qq"}, {"install", "-y", "-qq", "--no-install-recommends", "chromium"}} {
			cmd := exec.Command("apt-get", args...)
			cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Logf("apt-get %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
	})
	p := find()
	if p == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is not installed and could not be (apt-get install -y chromium): CI must run the browser test")
		}
		t.Skip("chromium is not installed (as root: apt-get install -y chromium)")
	}
	return p
}

// headless runs chromium on one page with args, in its own process group
// (it starts helpers) and profile, and returns its stdout.
func headless(t *testing.T, bin, page string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	profile := t.TempDir()
	args = append([]string{
		"--headless", "--disable-gpu", "--no-sandbox", // root: no sandbox
		"--disable-dev-shm-usage", // a small /dev/shm must not crash the renderer
		"--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
		"--user-data-dir=" + profile, "--virtual-time-budget=5000",
	}, args...)
	cmd := exec.CommandContext(ctx, bin, append(args, "file://"+page)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // helpers left behind
	}
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Fatalf("chromium %s: no result within 90s\nstderr:\n%s", strings.Join(args, " "), stderr.String())
		}
		t.Fatalf("chromium %s: %v\nstderr:\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

func TestChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	bin := chromium(t)
	dir := t.TempDir()
	tests := []struct {
		name       string
		run        *Run
		screenshot bool
	}{
		{"failed-canary", failedCanaryRun(), true},
		{"150-hosts", bigRun(), true},
		{"hostile", hostileRun(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			page := render(t, tt.run)
			path := filepath.Join(dir, tt.name+".html")
			if err := os.WriteFile(path, []byte(page), 0o644); err != nil {
				t.Fatal(err)
			}
			bars := count(page, ` data-step="`)
			checkDOM(t, string(headless(t, bin, path, "--dump-dom")), bars)
			checkHover(t, bin, filepath.Join(dir, tt.name+"-hover.html"), page)
			if tt.screenshot {
				shot := filepath.Join(dir, tt.name+".png")
				headless(t, bin, path, "--screenshot="+shot, "--window-size=1400,900", "--hide-scrollbars")
				checkScreenshot(t, shot)
			}
		})
	}
}

var renderedRE = regexp.MustCompile(`<body[^>]* data-rendered="(\d+)"`)

// checkDOM: the page's script ran to its end without an error, found every
// bar, and turned every bar's title into its tooltip; no script but the
// page's own two is in the document.
func checkDOM(t *testing.T, dom string, bars int) {
	t.Helper()
	if i := strings.Index(dom, "data-error="); i >= 0 {
		t.Fatalf("the page's script failed: %s", dom[i:min(len(dom), i+300)])
	}
	m := renderedRE.FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("no data-rendered on <body>: the page's script did not run to its end\n%.2000s", dom)
	}
	if n, _ := strconv.Atoi(m[1]); n != bars || bars == 0 {
		t.Errorf("the browser found %d bars, the page has %d", n, bars)
	}
	if got := strings.Count(dom, "<script"); got != 2 {
		t.Errorf("%d <script> elements in the DOM, want the page's 2", got)
	}
	if got := strings.Count(dom, `class="bar tt`); got != bars {
		t.Errorf("%d bar elements in the DOM, want %d", got, bars)
	}
	if got := regexp.MustCompile(`<g class="bar tt[^>]*data-tip="`).FindAllStringIndex(dom, -1); len(got) != bars {
		t.Errorf("%d bars with a tooltip (data-tip), want %d", len(got), bars)
	}
}

// hoverScript moves the mouse onto the failed bar (the first bar when none
// failed) and writes what the tooltip then shows into <html data-hover>.
const hoverScript = `<script>
(function () {
  var bar = document.querySelector('[data-status="failed"]') || document.querySelector('[data-step]');
  var r = bar.querySelector('rect').getBoundingClientRect();
  bar.querySelector('rect').dispatchEvent(new MouseEvent('mousemove', {bubbles: true, clientX: r.left + 1, clientY: r.top + 1}));
  var tip = document.getElementById('tip');
  document.documentElement.setAttribute('data-hover', (tip.hidden ? 'hidden: ' : 'shown: ') + tip.textContent);
})();
</script>
</body>`

// checkHover: hovering a bar shows its host, step, status and duration
// in the tooltip.
func checkHover(t *testing.T, bin, path, page string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Replace(page, "</body>", hoverScript, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	dom := string(headless(t, bin, path, "--dump-dom"))
	if i := strings.Index(dom, "data-error="); i >= 0 {
		t.Fatalf("script error while hovering: %s", dom[i:min(len(dom), i+300)])
	}
	m := regexp.MustCompile(`data-hover="([^"]*)"`).FindStringSubmatch(dom)
	if m == nil {
		t.Fatal("the hover script did not run")
	}
	if !regexp.MustCompile(`^shown: \S.*\n\S+/\S+: [a-z-]+, [0-9.]+(µs|ms|s)`).MatchString(m[1]) {
		t.Errorf("tooltip after hovering a bar: %q, want it shown with host, step, status and duration", m[1])
	}
}

// checkScreenshot: a PNG of the window's size that is not one flat colour
// (the bars' colours are there).
func checkScreenshot(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot %s: %v", path, err)
	}
	if b := img.Bounds(); b.Dx() < 1000 || b.Dy() < 600 {
		t.Errorf("screenshot is %dx%d, want the 1400x900 window", b.Dx(), b.Dy())
	}
	colours := distinctColours(img, 64)
	if colours < 8 {
		t.Errorf("screenshot has %d colours: the page did not draw", colours)
	}
	// The phase colours of the bars: stage blue, verify teal and rollback
	// gold are in every run drawn here.
	for name, want := range map[string][3]uint8{"stage": {0x4c, 0x78, 0xa8}, "verify": {0x2a, 0x9d, 0x8f}, "rollback": {0xb8, 0x86, 0x0b}} {
		if !hasColour(img, want) {
			t.Errorf("screenshot has no %s bar (#%02x%02x%02x)", name, want[0], want[1], want[2])
		}
	}
}

// distinctColours counts colours in img, stopping at limit.
func distinctColours(img image.Image, limit int) int {
	seen := map[[3]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, _ := img.At(x, y).RGBA()
			seen[[3]uint32{r >> 8, g >> 8, bl >> 8}] = true
			if len(seen) >= limit {
				return len(seen)
			}
		}
	}
	return len(seen)
}

func hasColour(img image.Image, want [3]uint8) bool {
	near := func(a uint32, b uint8) bool { d := int(a>>8) - int(b); return d > -6 && d < 6 }
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if near(r, want[0]) && near(g, want[1]) && near(bl, want[2]) {
				return true
			}
		}
	}
	return false
}

package sshdtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// sysSetns is setns(2) on linux/amd64 (the syscall package lacks the name there).
const sysSetns = 308

// NetNS is a network namespace with only its loopback up. A server started
// in it (Options.NetNS) listens on the namespace's own 127.0.0.1, which the
// test's namespace cannot reach: a host only a bastion in the same
// namespace reaches. No address outside 127.0.0.0/8 is involved.
type NetNS struct {
	Name string
}

// NewNetNS makes a network namespace with `ip netns add` and brings its
// loopback up; it is deleted when the test ends. The test is skipped (with
// the reason) when the machine refuses: not root, no ip, no namespaces -
// except under CI=true, where that fails it.
func NewNetNS(t testing.TB) *NetNS {
	t.Helper()
	skip := t.Skipf
	if os.Getenv("CI") == "true" {
		// CI runs as root with iproute2 installed (make test-deps): a
		// bastion test that cannot run there is a failure, not a skip.
		skip = t.Fatalf
	}
	if os.Geteuid() != 0 {
		skip("sshdtest: network namespaces need root (ip netns add)")
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	n := &NetNS{Name: "relctl-test-" + hex.EncodeToString(b)}
	if out, err := exec.Command("ip", "netns", "add", n.Name).CombinedOutput(); err != nil {
		skip("sshdtest: the kernel or ip refused a network namespace (ip netns add %s: %v: %s)", n.Name, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", n.Name).Run() })
	if out, err := exec.Command("ip", "netns", "exec", n.Name, "ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("sshdtest: ip netns exec %s ip link set lo up: %v: %s", n.Name, err, out)
	}
	return n
}

// Dial connects to addr from inside the namespace: the socket is made on
// a thread that entered the namespace, and stays in it.
func (n *NetNS) Dial(ctx context.Context, addr string) (net.Conn, error) {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer orig.Close()
	target, err := os.Open(filepath.Join("/run/netns", n.Name))
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer target.Close()
	if err := setns(target); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("setns %s: %w", n.Name, err)
	}
	var d net.Dialer
	c, dialErr := d.DialContext(ctx, "tcp", addr)
	if err := setns(orig); err != nil {
		// The thread stays in the namespace: leave it locked, so it ends
		// with this goroutine instead of running others.
		if c != nil {
			_ = c.Close()
		}
		return nil, fmt.Errorf("setns back: %w", err)
	}
	runtime.UnlockOSThread()
	return c, dialErr
}

func setns(f *os.File) error {
	if _, _, errno := syscall.RawSyscall(sysSetns, f.Fd(), syscall.CLONE_NEWNET, 0); errno != 0 {
		return errno
	}
	return nil
}

// Relay is a TCP port on the test's 127.0.0.1 that forwards each
// connection to an address inside a namespace: a bastion's public side.
type Relay struct {
	Addr string // 127.0.0.1:PORT in the test's namespace

	ln     net.Listener
	down   atomic.Bool
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// NewRelay listens on 127.0.0.1 and forwards to addr inside ns until the
// test ends.
func NewRelay(t testing.TB, ns *NetNS, addr string) *Relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
	r := &Relay{Addr: ln.Addr().String(), ln: ln, conns: map[net.Conn]struct{}{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go r.forward(ns, addr, c)
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		r.mu.Lock()
		r.closed = true
		for c := range r.conns {
			_ = c.Close()
		}
		r.mu.Unlock()
	})
	return r
}

func (r *Relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		_ = c.Close()
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

// SetDown makes the relay close every new connection at once (a bastion
// that is down) or forward them again.
func (r *Relay) SetDown(down bool) { r.down.Store(down) }

func (r *Relay) forward(ns *NetNS, addr string, in net.Conn) {
	if r.down.Load() {
		_ = in.Close()
		return
	}
	if !r.track(in) {
		return
	}
	out, err := ns.Dial(context.Background(), addr)
	if err != nil || !r.track(out) {
		_ = in.Close()
		return
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		_ = dst.Close()
		_ = src.Close()
		done <- struct{}{}
	}
	go pipe(in, out)
	go pipe(out, in)
	<-done
	<-done
	r.mu.Lock()
	delete(r.conns, in)
	delete(r.conns, out)
	r.mu.Unlock()
}

// LogPath is the server's log (sshd -e writes it; LogLevel sets how much).
func (s *Server) LogPath() string { return filepath.Join(s.Root, "sshd.log") }

// Log returns the server's log so far.
func (s *Server) Log(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(s.LogPath())
	if err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
	return string(b)
}

// KillConnections kills every process the listening sshd started (one
// tree per client connection) with SIGKILL, and returns how many: each
// client connection dies as with a crashed server; the listener stays.
func (s *Server) KillConnections(t testing.TB) int {
	t.Helper()
	if s.cmd == nil {
		t.Fatalf("sshdtest: %s is not running", s.Name)
	}
	pids := descendants(s.cmd.Process.Pid)
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return len(pids)
}

// descendants lists the processes below pid, from /proc.
func descendants(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	children := map[int][]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		rest := string(stat[strings.LastIndexByte(string(stat), ')')+1:])
		f := strings.Fields(rest)
		if len(f) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(f[1]); err == nil {
			children[ppid] = append(children[ppid], p)
		}
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		out = append(out, children[p]...)
		queue = append(queue, children[p]...)
	}
	return out
}

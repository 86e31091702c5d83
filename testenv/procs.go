package testenv

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// markedProcesses lists live processes (not zombies, not this one) whose
// environment carries MarkerEnv=dir.
func markedProcesses(dir string) []int {
	want := []byte(MarkerEnv + "=" + dir)
	entries, _ := os.ReadDir("/proc")
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue // gone, or a zombie (empty environ)
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if bytes.Equal(kv, want) {
				if processAlive(pid) {
					pids = append(pids, pid)
				}
				break
			}
		}
	}
	sort.Ints(pids)
	return pids
}

// processAlive is true when pid exists and is not a zombie: zombies cannot
// be killed and wait only for a parent (maybe an init that never reaps).
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if taskRunning("/proc/" + strconv.Itoa(pid) + "/stat") {
		return true
	}
	// A multi-threaded process (HAProxy) whose main thread exited first
	// shows a zombie while its other threads still run and hold its ports.
	tasks, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	for _, t := range tasks {
		if t.Name() != strconv.Itoa(pid) && taskRunning(filepath.Join("/proc", strconv.Itoa(pid), "task", t.Name(), "stat")) {
			return true
		}
	}
	return false
}

// taskRunning reads a /proc stat file: true unless it is gone or a zombie.
func taskRunning(statPath string) bool {
	b, err := os.ReadFile(statPath)
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	state := b[i+2]
	return state != 'Z' && state != 'X'
}

// waitGone polls until none of pids is alive or timeout passes; it returns
// those still alive.
func waitGone(pids []int, timeout time.Duration) []int {
	deadline := time.Now().Add(timeout)
	for {
		var alive []int
		for _, p := range pids {
			if processAlive(p) {
				alive = append(alive, p)
			}
		}
		if len(alive) == 0 || time.Now().After(deadline) {
			return alive
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sweepMarked stops every process marked with dir: TERM, then KILL. It
// repeats because a dying process may have started another.
func sweepMarked(dir string) error {
	for range 5 {
		pids := markedProcesses(dir)
		if len(pids) == 0 {
			return nil
		}
		for _, p := range pids {
			syscall.Kill(p, syscall.SIGTERM)
		}
		left := waitGone(pids, 5*time.Second)
		for _, p := range left {
			syscall.Kill(p, syscall.SIGKILL)
		}
		waitGone(left, 5*time.Second)
	}
	if pids := markedProcesses(dir); len(pids) > 0 {
		s := make([]string, len(pids))
		for i, p := range pids {
			s[i] = strconv.Itoa(p)
		}
		return fmt.Errorf("testenv: processes still running after TERM and KILL: %s", strings.Join(s, ", "))
	}
	return nil
}

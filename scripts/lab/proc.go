package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// spawn starts name with args inside namespace ns as a daemon: in a
// session of its own (a ^C of roost-lab does not reach it), without stdin,
// its output appended to logfile. It records the pid in pidfile and
// returns it: "ip netns exec" execs the command, so that pid is the
// daemon's own.
func spawn(ns, pidfile, logfile, name string, args ...string) (int, error) {
	os.Remove(pidfile) // a stale one would pass for the new process
	out, err := os.OpenFile(logfile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return 0, fmt.Errorf("%s: %s did not start: %w", ns, name, err)
	}
	defer out.Close() // the daemon has its own copy
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("%s: %s did not start: %w; see %s", ns, name, err, logfile)
	}
	// Reap it when it exits, so that no zombie of it outlives it while
	// roost-lab runs.
	go cmd.Wait()
	pid := cmd.Process.Pid
	if err := os.WriteFile(pidfile, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		cmd.Process.Kill()
		return 0, fmt.Errorf("%s: %s: %w", ns, name, err)
	}
	return pid, nil
}

// stopPid ends the process pidfile records (TERM, then KILL after 5 s) if
// it is still ns's, and removes pidfile.
func (l *lab) stopPid(pidfile, ns string) {
	if alive(pidfile, ns) {
		pid, _ := readPid(pidfile)
		syscall.Kill(pid, syscall.SIGTERM)
		if !waitFor(5*time.Second, func() bool { return !alive(pidfile, ns) }) {
			l.logf("%s: pid %d ignored SIGTERM, killing it", ns, pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	os.Remove(pidfile)
}

// updateFile writes content to name, through a rename so that a watcher
// never reads half a file, unless name holds it already; it reports
// whether it wrote.
func updateFile(name, content string) (bool, error) {
	if old, err := os.ReadFile(name); err == nil && bytes.Equal(old, []byte(content)) {
		return false, nil
	}
	if err := os.WriteFile(name+".new", []byte(content), 0o644); err != nil {
		return false, err
	}
	if err := os.Rename(name+".new", name); err != nil {
		return false, err
	}
	return true, nil
}

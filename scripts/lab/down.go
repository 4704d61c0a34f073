package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// down removes every process, namespace, mount and file the lab made: the
// daemons in the order they depend on each other, then the namespaces
// (with whatever still runs in them), the mounts, and the state directory
// when it has the lab's marker.
func (l *lab) down() error {
	s := l.spec
	if s.Etcd != nil {
		// The heartbeats and roost-sync before etcd, which they write to.
		beats, _ := filepath.Glob(l.pidfile(s.Etcd.Name, "heartbeat-*"))
		for _, f := range beats {
			l.stopPid(f, s.Etcd.Name)
		}
		l.stopPid(l.pidfile(s.Etcd.Name, "sync"), s.Etcd.Name)
	}
	var routers []string
	for _, n := range s.Nodes {
		routers = append(routers, n.Name)
	}
	for _, t := range s.Tors {
		routers = append(routers, t.Name)
	}
	for _, ns := range routers {
		// loader and agent before bird, bgpd before zebra: the order they
		// depend on.
		for _, name := range []string{"loader", "agent", "bird", "bgpd", "zebra"} {
			l.stopPid(l.pidfile(ns, name), ns)
		}
	}
	// etcd after the loaders, so that none is left waiting for it.
	var workloads []string
	for _, p := range s.Pods {
		workloads = append(workloads, p.Name)
	}
	for _, a := range s.attached() {
		workloads = append(workloads, a.Name)
	}
	for _, ns := range workloads {
		files, _ := filepath.Glob(l.pidfile(ns, "*"))
		for _, f := range files {
			l.stopPid(f, ns)
		}
	}
	for _, ns := range append(workloads, routers...) {
		if err := l.deleteNetns(ns); err != nil {
			return err
		}
	}
	// The nodes' cgroups (empty once the loaders and clients are gone;
	// the socket load balancers' links go with the BPF filesystems
	// below).
	if dir := l.cgroupDir(); mounted(dir, "cgroup2") {
		for _, n := range s.Nodes {
			if err := os.Remove(filepath.Join(dir, "roost-lab-"+n.Name)); err != nil && !os.IsNotExist(err) {
				return err
			}
		}
		if err := syscall.Unmount(dir, 0); err != nil {
			return fmt.Errorf("unmount %s: %w", dir, err)
		}
		l.logf("unmounted %s", dir)
	}
	// The BPF filesystems, and with them the pins that kept the programs
	// loaded after the loaders stopped. (Mounted twice by hand, a
	// directory is unmounted twice.)
	for _, n := range s.Nodes {
		for dir := l.dir(n.Name, "bpffs"); mounted(dir, "bpf"); {
			if err := syscall.Unmount(dir, 0); err != nil {
				return fmt.Errorf("%s: unmount %s: %w", n.Name, dir, err)
			}
			l.logf("%s: unmounted %s", n.Name, dir)
		}
	}
	if st, err := os.Stat(l.state); err != nil || !st.IsDir() {
		return nil
	}
	if !exists(l.marker()) {
		l.logf("left %s alone: it has no %s marker, so it is not the lab's", l.state, filepath.Base(l.marker()))
		return nil
	}
	if err := removeTree(l.state); err != nil {
		return err
	}
	l.logf("removed %s", l.state)
	return nil
}

// deleteNetns kills what still runs in namespace ns and deletes it, if it
// exists.
func (l *lab) deleteNetns(ns string) error {
	ok, err := netnsExists(ns)
	if err != nil || !ok {
		return err
	}
	out, err := output(0, "ip", "netns", "pids", ns)
	if err != nil {
		return err
	}
	for _, f := range strings.Fields(out) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		l.logf("%s: killing leftover pid %d (%s)", ns, pid, strings.ReplaceAll(string(cmdline), "\x00", " "))
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if err := ip("netns", "del", ns); err != nil {
		return err
	}
	l.logf("namespace %s deleted", ns)
	return nil
}

// removeTree removes dir and everything in it (a symbolic link, not what
// it points to), but never crosses into a mounted file system: it refuses
// when something is mounted on or below dir, and fails on a directory of
// another device (mounted meanwhile), leaving it.
func removeTree(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	resolved, err := filepath.EvalSymlinks(abs) // as mountinfo names it
	if err != nil {
		return err
	}
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(info), "\n") {
		// ID PARENT MAJOR:MINOR ROOT MOUNTPOINT ..., octal escapes in
		// MOUNTPOINT
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		if mp := unescapeMount(f[4]); mp == resolved || strings.HasPrefix(mp, resolved+"/") {
			return fmt.Errorf("left %s: a file system is mounted on %s (unmount it, then run down again)", dir, mp)
		}
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(abs, &st); err != nil {
		return err
	}
	return removeOnDevice(abs, st.Dev)
}

// removeOnDevice removes path, and below it what is on device dev.
func removeOnDevice(path string, dev uint64) error {
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	if st.Mode&syscall.S_IFMT == syscall.S_IFDIR {
		if st.Dev != dev {
			return fmt.Errorf("left %s: another file system is mounted there", path)
		}
		entries, err := os.ReadDir(path)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := removeOnDevice(filepath.Join(path, e.Name()), dev); err != nil {
				return err
			}
		}
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// unescapeMount undoes the octal escapes (\040 for a space) of a path in
// /proc/self/mountinfo.
func unescapeMount(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

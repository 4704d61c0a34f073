package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// status prints what runs, the report and the checks of a lab that is up,
// changing nothing (the checks only open TCP connections). It returns
// errChecks when something failed, after printing everything.
func (l *lab) status() error {
	if !exists(l.marker()) {
		return fmt.Errorf("the lab is not up (no %s)", l.marker())
	}
	// What "up" ran, whatever the environment says now.
	l.noAgent = exists(l.noAgentFlag())
	if err := l.findPrograms(); err != nil {
		return err
	}
	ok := l.processes()
	ok = l.report() && ok
	ok = l.reportPolicy() && ok
	if !ok {
		l.logf("a check failed (see above)")
		return errChecks
	}
	l.logf("all checks passed")
	return nil
}

// processes prints each daemon of the lab's namespaces (a pid file in
// their run directories) and whether it runs, and each node's BPF
// filesystem and whether it is mounted. It reports whether all are.
func (l *lab) processes() bool {
	ok := true
	l.section("processes")
	for _, ns := range l.spec.namespaces() {
		pidfiles, _ := filepath.Glob(l.pidfile(ns, "*")) // the pattern is valid
		for _, f := range pidfiles {
			name := strings.TrimSuffix(filepath.Base(f), ".pid")
			if !alive(f, ns) {
				l.printf("%-9s %-13s NOT RUNNING\n", ns, name)
				ok = false
				continue
			}
			pid, _ := os.ReadFile(f)
			l.printf("%-9s %-13s pid %s\n", ns, name, strings.TrimRight(string(pid), "\n"))
		}
	}
	for _, nd := range l.spec.Nodes {
		dir := l.dir(nd.Name, "bpffs")
		if !mounted(dir, "bpf") {
			l.printf("%-9s %-13s NOT MOUNTED on %s\n", nd.Name, "bpffs", dir)
			ok = false
			continue
		}
		l.printf("%-9s %-13s mounted on %s\n", nd.Name, "bpffs", dir)
	}
	return ok
}

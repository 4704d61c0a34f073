package main

import (
	"errors"
	"fmt"
	"os"
)

// up builds the lab, or completes it (every step is skipped when done),
// waits until the ToRs hold every PodCIDR and VIP and every roost-loader
// is ready, then prints the report and runs the checks, and those of the
// vms deregistered from roost-sync. It returns errChecks when a check
// failed.
func (l *lab) up() error {
	if err := l.findPrograms(); err != nil {
		return err
	}
	if !exists("/proc/sys/net/ipv6") {
		return errors.New("the kernel has no IPv6 (no /proc/sys/net/ipv6): the lab is dual-stack")
	}
	if err := os.MkdirAll(l.state, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(l.state, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(l.marker(), nil, 0o644); err != nil {
		return err
	}
	// What "status" and "down" will read (newLab).
	desc, err := os.ReadFile(l.file)
	if err != nil {
		return err
	}
	if _, err := updateFile(l.savedFile(), string(desc)); err != nil {
		return err
	}
	if l.noAgent {
		err = os.WriteFile(l.noAgentFlag(), nil, 0o644)
	} else if err = os.Remove(l.noAgentFlag()); errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	if err != nil {
		return err
	}
	if err := l.setupNetwork(); err != nil {
		return err
	}
	// The files first: the agents watch the services files.
	if err := l.writePolicyFiles(); err != nil {
		return err
	}
	for _, t := range l.spec.Tors {
		if err := l.startTor(t.Name); err != nil {
			return err
		}
	}
	for _, n := range l.spec.Nodes {
		if err := l.startNode(n.Name); err != nil {
			return err
		}
	}
	// etcd before the loaders, which wait for their first view from it.
	if err := l.startEtcd(); err != nil {
		return err
	}
	if err := l.startSync(); err != nil {
		return err
	}
	for _, vm := range l.spec.syncedVMs() {
		if err := l.register(vm); err != nil {
			return err
		}
	}
	if err := l.setupCgroups(); err != nil {
		return err
	}
	for _, n := range l.spec.Nodes {
		if err := l.startLoader(n.Name); err != nil {
			return err
		}
	}
	if err := l.startServers(); err != nil {
		return err
	}
	secs := int(l.timeout.Seconds())
	l.logf("waiting up to %ds for the ToRs to hold every PodCIDR (IPv4 and IPv6)", secs)
	if !waitFor(l.timeout, l.converged) {
		l.report()
		return fmt.Errorf("ToRs did not learn every PodCIDR of both families within %ds; logs are in %s/*/log", secs, l.state)
	}
	l.logf("converged")
	what := "enforce the seed policy on their pods"
	if l.spec.Etcd != nil {
		what += ", list every other cluster's workload and roost-sync's from etcd,"
	}
	l.logf("waiting up to %ds for the roost-loaders to %s and serve the VIP at their uplinks", secs, what)
	if !waitFor(l.timeout, l.loadersReady) {
		for _, n := range l.spec.Nodes {
			for _, what := range []string{"endpoints", "services"} {
				l.section(n.Name + ": roostctl " + what)
				out, err := l.roostctlLoader(n.Name, what)
				l.printf("%s", out)
				if err != nil {
					fmt.Fprintln(l.stderr, err)
				}
			}
		}
		return fmt.Errorf("the roost-loaders are not ready within %ds; see %s/node*/log/loader.log", secs, l.state)
	}
	l.logf("policy enforced, VIP served")
	ok := l.report()
	ok = l.reportPolicy() && ok
	ok = l.deregistrationChecks() && ok
	if !ok {
		l.logf("a check failed (see above); logs are in %s/*/log", l.state)
		return errChecks
	}
	l.logf("all checks passed")
	return nil
}

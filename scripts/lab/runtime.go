package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The lab's fixed settings.
const (
	frrDir       = "/usr/lib/frr"
	agentListen  = "127.0.0.1:9479" // every node's roost-agent, in its namespace
	loaderListen = "127.0.0.1:9480" // every node's roost-loader, in its namespace
	// roost-sync's lab settings: a vm it registers is kept by a heartbeat
	// every heartbeatInterval (a loop beside it, standing for an agent on
	// the vm), and expires syncHeartbeatTimeout after the last; its
	// endpoints outlive a dead roost-sync by syncLeaseTTL.
	heartbeatInterval    = 5 * time.Second
	syncHeartbeatTimeout = "20s"
	syncLeaseTTL         = "30s"
	podGateway           = "169.254.1.1" // on every host-side veth; the pods' next hop
	podGateway6          = "fe80::1"     // the same for IPv6
	// A check of a service is tried triesMin times, and more until every
	// backend got a try (at most triesMax): each try must give what the
	// check expects, whichever backend it went to.
	triesMin = 4
	triesMax = 16
	// cmdTimeout bounds every command the lab runs but the daemons.
	cmdTimeout = 30 * time.Second
)

// errChecks is returned when a check failed; what failed was printed
// already.
var errChecks = errors.New("a check failed")

// lab is one command's run: the description, where everything is, and the
// programs it runs.
type lab struct {
	spec    *Lab
	repo    string // the repository
	state   string // ROOST_LAB_DIR
	bin     string // ROOST_BIN
	file    string // ROOST_LAB_FILE, absolute
	timeout time.Duration
	noAgent bool
	prog    programs
	// stdout takes the report (sections, tables); stderr the log lines.
	stdout, stderr io.Writer
}

// programs are the paths of what the lab runs (findPrograms).
type programs struct {
	bird, birdc, vtysh, nc, nft, etcd, curl string
	agent, loader, roostctl, sync           string
}

// logf prints a log line, "lab: ...", on stderr.
func (l *lab) logf(format string, args ...any) {
	fmt.Fprintf(l.stderr, "lab: "+format+"\n", args...)
}

// printf prints on stdout (the report).
func (l *lab) printf(format string, args ...any) {
	fmt.Fprintf(l.stdout, format, args...)
}

// section prints a heading of the report.
func (l *lab) section(title string) {
	fmt.Fprintf(l.stdout, "\n=== %s ===\n", title)
}

// Paths in the state directory.

// marker proves the state directory is the lab's before "down" removes it.
func (l *lab) marker() string { return filepath.Join(l.state, ".roost-lab") }

// savedFile is the copy of the description "up" built the lab from.
func (l *lab) savedFile() string { return filepath.Join(l.state, "lab.yaml") }

// noAgentFlag is present when "up" ran with ROOST_LAB_NO_AGENT=1.
func (l *lab) noAgentFlag() string { return filepath.Join(l.state, "no-agent") }

// cgroupDir is where the cgroup v2 hierarchy is mounted again for the lab.
func (l *lab) cgroupDir() string { return filepath.Join(l.state, "cgroup") }

// dir returns <state>/<ns>/<elem...>: a namespace's directory (run/ for
// pid files and sockets, log/ for logs).
func (l *lab) dir(ns string, elem ...string) string {
	return filepath.Join(append([]string{l.state, ns}, elem...)...)
}

// pidfile returns the pid file of daemon name in namespace ns.
func (l *lab) pidfile(ns, name string) string { return l.dir(ns, "run", name+".pid") }

// clusterDir returns the directory of cluster c's endpoints and services
// files.
func (l *lab) clusterDir(c string) string { return filepath.Join(l.state, "clusters", c) }

// Running commands. Every command is bounded by a timeout; none inherits
// the lab's stdin.

// output runs name with args (with timeout, or cmdTimeout when zero) and
// returns its stdout; on failure the error holds the exit status and
// stderr.
func output(timeout time.Duration, name string, args ...string) (string, error) {
	return outputIn(timeout, nil, name, args...)
}

// outputIn is output with stdin.
func outputIn(timeout time.Duration, stdin io.Reader, name string, args ...string) (string, error) {
	if timeout <= 0 {
		timeout = cmdTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		return out.String(), fmt.Errorf("%s %s: no answer within %s", name, strings.Join(args, " "), timeout)
	}
	if err != nil {
		msg := strings.TrimSpace(errb.String())
		if msg == "" {
			msg = strings.TrimSpace(out.String())
		}
		if msg != "" {
			return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, msg)
		}
		return out.String(), fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return out.String(), nil
}

// combined runs name with args and returns its stdout and stderr together,
// as a terminal would show them, and its error.
func combined(timeout time.Duration, name string, args ...string) (string, error) {
	if timeout <= 0 {
		timeout = cmdTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return string(out), fmt.Errorf("%s %s: no answer within %s", name, strings.Join(args, " "), timeout)
	}
	return string(out), err
}

// nsOutput runs name with args inside namespace ns (ip netns exec).
func nsOutput(ns string, timeout time.Duration, name string, args ...string) (string, error) {
	return output(timeout, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// ip runs ip(8) with args; for "ip -n NS ...", pass "-n", ns first.
func ip(args ...string) error {
	_, err := output(0, "ip", args...)
	return err
}

// waitFor calls ok every 200 ms until it returns true, for at most d; it
// reports whether ok returned true.
func waitFor(d time.Duration, ok func() bool) bool {
	end := time.Now().Add(d)
	for {
		if ok() {
			return true
		}
		if time.Now().After(end) {
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// alive reports whether the pid in pidfile is a live (not zombie) process
// inside namespace ns, so that a recycled pid is never mistaken for one of
// the lab's.
func alive(pidfile, ns string) bool {
	pid, ok := readPid(pidfile)
	if !ok {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) STATE ...: comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' {
		return false
	}
	out, err := output(5*time.Second, "ip", "netns", "identify", strconv.Itoa(pid))
	return err == nil && strings.TrimSpace(out) == ns
}

// readPid returns the pid pidfile holds.
func readPid(pidfile string) (int, bool) {
	b, err := os.ReadFile(pidfile)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid, err == nil && pid > 0
}

// findPrograms sets l.prog, and says what to do when one is missing: the
// system's (bird2, frr, netcat-openbsd, nftables, with etcd etcd-server
// and curl; scripts/deps.sh installs them) and roost's, from l.bin.
func (l *lab) findPrograms() error {
	look := func(name, fallback string) string {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
		return fallback
	}
	p := &l.prog
	p.bird, p.birdc = look("bird", "/usr/sbin/bird"), look("birdc", "/usr/sbin/birdc")
	p.vtysh = look("vtysh", "/usr/bin/vtysh")
	// OpenBSD's netcat by name: the traditional one takes other flags.
	p.nc = look("nc.openbsd", "/usr/bin/nc.openbsd")
	p.nft = look("nft", "/usr/sbin/nft")
	for _, x := range []string{p.bird, p.birdc, p.vtysh, filepath.Join(frrDir, "zebra"), filepath.Join(frrDir, "bgpd")} {
		if !executable(x) {
			return fmt.Errorf("%s not found: install bird2 and frr (scripts/deps.sh)", x)
		}
	}
	if !executable(p.nc) {
		return fmt.Errorf("%s not found: install netcat-openbsd (scripts/deps.sh)", p.nc)
	}
	if !executable(p.nft) {
		return fmt.Errorf("%s not found: install nftables (scripts/deps.sh)", p.nft)
	}
	if _, err := user.Lookup("frr"); err != nil {
		return errors.New("user frr does not exist: install frr (scripts/deps.sh)")
	}
	if l.spec.Etcd != nil {
		p.etcd, p.curl = look("etcd", "/usr/bin/etcd"), look("curl", "/usr/bin/curl")
		if !executable(p.etcd) {
			return fmt.Errorf("%s not found: install etcd-server (scripts/deps.sh)", p.etcd)
		}
		if !executable(p.curl) {
			return fmt.Errorf("%s not found: install curl (scripts/deps.sh)", p.curl)
		}
	}
	p.agent = filepath.Join(l.bin, "roost-agent")
	p.loader = filepath.Join(l.bin, "roost-loader")
	p.roostctl = filepath.Join(l.bin, "roostctl")
	p.sync = filepath.Join(l.bin, "roost-sync")
	need := []string{p.loader, p.roostctl}
	if !l.noAgent {
		need = append(need, p.agent)
	}
	if l.spec.Sync != nil {
		need = append(need, p.sync)
	}
	for _, x := range need {
		if !executable(x) {
			return fmt.Errorf("%s not found: run 'make build' or point ROOST_BIN at the directory holding roost-agent, roost-loader, roost-sync and roostctl", x)
		}
	}
	return nil
}

func executable(name string) bool {
	st, err := os.Stat(name)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

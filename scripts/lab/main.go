// Command roost-lab builds roost's network-namespace lab from its
// description file, checks it, and tears it down: a two-ToR BGP fabric on
// one machine (FRR), nodes of one or more Kubernetes clusters on it (BIRD,
// roost-agent, roost-loader), their pods and outside workloads, and, with
// several clusters, etcd and roost-sync joining them in the global view.
//
//	roost-lab up          build (or complete) the lab, wait until the ToRs
//	                      hold every PodCIDR and VIP and every roost-loader
//	                      enforces the policy, follows the global view and
//	                      serves the VIPs, then print what each side sees
//	                      and run the traffic checks (and those of a vm
//	                      deregistered from roost-sync, registered again
//	                      after); exit 1 when a check fails
//	roost-lab status      print the same and run the same checks, changing
//	                      nothing (the checks open TCP connections only)
//	roost-lab down        remove every namespace, process, mount and file
//	                      the lab made
//	roost-lab check FILE  validate a description file; print nothing when
//	                      it is valid
//
// The topology is data: the description file (scripts/lab/lab.yaml by
// default) names the clusters, ToRs, nodes, links, etcd and roost-sync,
// pods, external workloads (vms), services and traffic checks with their
// addresses, ASNs, labels and ports, so that adding a node, a cluster or a
// workload is a change of that file. Every problem of a file is reported
// at once, each as "FILE:LINE: PATH: MESSAGE". "up" keeps a copy of the
// file it built from in the state directory, which "status" and "down"
// read. docs/lab.md describes the default file's lab.
//
// Environment:
//
//	ROOST_LAB_DIR       state directory (default /run/roost-lab): configs,
//	                    sockets, pid files, logs, BPF filesystems, etcd's data
//	ROOST_BIN           where roost-agent, roost-loader, roost-sync and
//	                    roostctl are (default <repo>/bin, "make build")
//	ROOST_LAB_FILE      the description file (default
//	                    <repo>/scripts/lab/lab.yaml)
//	ROOST_LAB_TIMEOUT   seconds "up" waits for the ToRs to converge, then for
//	                    the loaders, and for a deregistration to reach every
//	                    loader (default 60)
//	ROOST_LAB_NO_AGENT  1: "up" runs BIRD with a hand-written config
//	                    equivalent to roost-agent's, and no agent; "status"
//	                    remembers it
//
// The exit status is 0 when everything passed, 1 when something failed,
// and 2 for a wrong command line.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usageText = `usage: roost-lab up|status|down
       roost-lab check FILE
  up      create the lab (idempotent), wait until the ToRs hold every PodCIDR
          (IPv4 and IPv6) and every roost-loader enforces the seed policy,
          follows the global view and serves the VIP, then run the checks,
          and those of a vm deregistered from roost-sync
  status  show ToR RIBs, node peers/routes, the policy, the global view and
          the traffic checks without changing anything
  down    remove every namespace, process, mount and file the lab made
  check   validate a description file (print nothing when it is valid)
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 2 && args[0] == "check" {
		if _, err := parseFile(args[1]); err != nil {
			fmt.Fprintf(stderr, "roost-lab: %v\n", err)
			return 1
		}
		return 0
	}
	if len(args) != 1 || (args[0] != "up" && args[0] != "status" && args[0] != "down") {
		fmt.Fprint(stderr, usageText)
		return 2
	}
	l, err := newLab(args[0], stdout, stderr)
	if err == nil {
		err = l.command(args[0])
	}
	if err != nil {
		if !errors.Is(err, errChecks) {
			fmt.Fprintf(stderr, "lab: error: %v\n", err)
		}
		return 1
	}
	return 0
}

// parseFile reads and validates the description file name.
func parseFile(name string) (*Lab, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	lab, err := Parse(f, name)
	if err != nil {
		return nil, fmt.Errorf("%s is not a valid lab description:\n%w", name, err)
	}
	return lab, nil
}

// newLab reads the environment and the description for cmd: for "status"
// and "down" of a lab that is up, the copy "up" saved (so that they find
// what was built, whatever ROOST_LAB_FILE says now), else ROOST_LAB_FILE.
func newLab(cmd string, stdout, stderr io.Writer) (*lab, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("must run as root (namespaces, FRR, BIRD)")
	}
	repo, err := repoDir()
	if err != nil {
		return nil, err
	}
	l := &lab{repo: repo, stdout: stdout, stderr: stderr}
	l.state = envOr("ROOST_LAB_DIR", "/run/roost-lab")
	l.bin = envOr("ROOST_BIN", filepath.Join(repo, "bin"))
	secs := envOr("ROOST_LAB_TIMEOUT", "60")
	n, err := strconv.Atoi(secs)
	if err != nil || n <= 0 {
		return nil, fmt.Errorf("ROOST_LAB_TIMEOUT=%s: want a number of seconds", secs)
	}
	l.timeout = time.Duration(n) * time.Second
	l.noAgent = os.Getenv("ROOST_LAB_NO_AGENT") == "1"
	l.file = envOr("ROOST_LAB_FILE", filepath.Join(repo, "scripts", "lab", "lab.yaml"))
	if l.file, err = filepath.Abs(l.file); err != nil {
		return nil, err
	}
	if err := l.lock(); err != nil {
		return nil, err
	}
	from := l.file
	if cmd != "up" && exists(l.marker()) && exists(l.savedFile()) {
		from = l.savedFile()
	}
	if l.spec, err = parseFile(from); err != nil {
		return nil, err
	}
	return l, nil
}

// command runs cmd, which newLab accepted.
func (l *lab) command(cmd string) error {
	switch cmd {
	case "up":
		return l.up()
	case "status":
		return l.status()
	default:
		return l.down()
	}
}

// repoDir finds the repository: the directory holding go.mod and
// scripts/lab, from the working directory upwards, else from the
// executable's (bin/roost-lab).
func repoDir() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, dir := range starts {
		for {
			if exists(filepath.Join(dir, "go.mod")) && exists(filepath.Join(dir, "scripts", "lab", "lab.yaml")) {
				return dir, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", errors.New("cannot find the repository (go.mod and scripts/lab/lab.yaml) above the working directory or roost-lab's")
}

// lock takes the lab's lock (<state>.lock), so that one command runs at a
// time; it is released when the process exits. The file descriptor is
// close-on-exec, so no daemon the lab starts holds it.
func (l *lab) lock() error {
	name := strings.TrimSuffix(l.state, "/") + ".lock"
	f, err := os.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	for i := 0; ; i++ {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil // f stays open until exit
		}
		if i == 0 {
			l.logf("waiting for another roost-lab command (lock %s)", name)
		}
		if i >= 600 {
			f.Close()
			return fmt.Errorf("lock %s: another roost-lab command holds it for 10 minutes", name)
		}
		time.Sleep(time.Second)
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func exists(name string) bool {
	_, err := os.Stat(name)
	return err == nil
}

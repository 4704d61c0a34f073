// Command labspec reads the lab's description file (scripts/lab/lab.yaml:
// its clusters, ToRs, nodes, links, etcd and roost-sync, pods, external
// workloads, services and traffic checks), validates it, and prints it as
// bash declarations for scripts/lab.sh, with what is rendered from it
// alone: each cluster's endpoints and services files, and roost-sync's
// registration of each vm it registers.
//
//	labspec check FILE   validate FILE; print nothing when it is valid
//	labspec env FILE     validate FILE and print it as bash declarations
//	                     (read-only global arrays), for lab.sh to evaluate:
//	                     eval "$(labspec env FILE)"
//
// Every problem of the file is reported at once, each as "FILE:LINE: PATH:
// MESSAGE" (e.g. "lab.yaml:12: links[1].node: "node9" is not a node of the
// file (it names nothing)"); the exit status is then 1, and 2 for a wrong
// command line. WriteBash documents the arrays.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func usage(stderr io.Writer) int {
	fmt.Fprintln(stderr, "usage: labspec check|env FILE")
	return 2
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) != 2 || (args[0] != "check" && args[0] != "env") {
		return usage(stderr)
	}
	f, err := os.Open(args[1])
	if err != nil {
		fmt.Fprintf(stderr, "labspec: %v\n", err)
		return 1
	}
	defer f.Close()
	lab, err := Parse(f, args[1])
	if err != nil {
		fmt.Fprintf(stderr, "labspec: %s is not a valid lab description:\n%v\n", args[1], err)
		return 1
	}
	if args[0] == "check" {
		return 0
	}
	w := bufio.NewWriter(stdout)
	err = lab.WriteBash(w)
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		fmt.Fprintf(stderr, "labspec: %v\n", err)
		return 1
	}
	return 0
}

// Command roost-sync registers workloads outside Kubernetes (VMs, bare-metal
// hosts) in roost's global endpoint view on etcd, from a file and an HTTP
// API, so that every roost-loader enforces policy on them. See
// docs/roost-sync.md and `roost-sync --help`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	default:
		fmt.Fprintln(os.Stderr, "roost-sync:", err)
		os.Exit(1)
	}
}

// Command roost-agent is roost's routing sidecar: it announces this node's
// PodCIDRs to its ToR peers through BIRD. See README.md and
// `roost-agent --help`.
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
		fmt.Fprintln(os.Stderr, "roost-agent:", err)
		os.Exit(1)
	}
}

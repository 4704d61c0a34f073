// Command roostctl inspects and operates roost on a node: BGP sessions, what
// each ToR is sent and why a prefix is missing, the rendered BIRD config, and
// reloads. See `roostctl --help`.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "roostctl:", err)
		os.Exit(1)
	}
}

package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/spf13/cobra"

	"github.com/roost-net/roost/internal/agentapi"
	"github.com/roost-net/roost/internal/loaderapi"
)

func newReadyCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "ready agent|loader",
		Short: "Exit 0 when roost-agent or roost-loader is ready (a health check)",
		Long: `ready asks roost-agent (--agent) or roost-loader (--loader) for /readyz and
exits 0 when it answers 200, else prints the reason and exits 1.

The agent is ready when BIRD answers and runs the config rendered from the
current inputs; the loader when its last policy apply succeeded. The compose
file uses this as the containers' health check.`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"agent", "loader"},
		RunE: func(cmd *cobra.Command, args []string) error {
			var base, path string
			switch args[0] {
			case "agent":
				base, path = agentapi.NewClient(o.agent).Base, agentapi.PathReadyz
			case "loader":
				base, path = loaderapi.NewClient(o.loader).Base, loaderapi.PathReadyz
			default:
				return fmt.Errorf("ready %q: want agent or loader", args[0])
			}
			ctx, cancel := o.context(cmd)
			defer cancel()
			msg, err := readyz(ctx, base+path)
			if err != nil {
				return fmt.Errorf("%s not ready: %w", args[0], err)
			}
			if o.output == "json" {
				return printJSON(cmd.OutOrStdout(), map[string]any{"component": args[0], "ready": true, "message": msg})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s ready: %s\n", args[0], msg)
			return nil
		},
	}
}

// readyz gets url and returns its body when the status is 200, or an error
// carrying the status and body.
func readyz(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	msg := strings.TrimSpace(string(body))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s: %s", url, resp.Status, msg)
	}
	return msg, nil
}

package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/roost-net/roost/internal/agentapi"
)

// drainPoll is how often "roostctl drain" looks whether the node is
// drained.
const drainPoll = 200 * time.Millisecond

func newDrainCmd(o *options) *cobra.Command {
	var (
		wait   string
		noWait bool
	)
	cmd := &cobra.Command{
		Use:   "drain",
		Short: "Take this node out of service: GRACEFUL_SHUTDOWN, then withdraw everything",
		Long: `drain asks roost-agent to take the node out of service without dropping a
flow: everything the node announces (PodCIDRs and VIPs) is sent again with
the GRACEFUL_SHUTDOWN community (65535:0, RFC 8326), so that the fabric
prefers other paths; after the wait (--wait, or the agent's drain.wait) it is
all withdrawn. The BGP sessions stay up throughout. The state is kept in the
agent's drain.stateFile: it survives a restart of the agent and of BIRD, and
shows in "roostctl status" and the metric roost_drain_state.

drain waits until the node is drained and prints its state; --no-wait returns
as soon as the drain has begun. Draining a node that is draining or drained
changes nothing. "roostctl undrain" announces everything again.

The agent serves drain only on its control socket (--agent-socket, default
` + agentapi.DefaultControlSocket + `), which only root may use by default.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if wait != "" {
				if d, err := time.ParseDuration(wait); err != nil || d < 0 || d > time.Hour {
					return fmt.Errorf("--wait %q: want a duration from 0 to 1h (e.g. 30s)", wait)
				}
			}
			ctx, cancel := o.context(cmd)
			c := o.controlClient()
			d, err := c.Drain(ctx, wait)
			cancel()
			if err != nil {
				return err
			}
			if !noWait && d.State == agentapi.DrainDraining {
				// Bounded by the withdrawal time the agent gave, plus
				// --timeout for it to get there.
				limit := time.Until(d.WithdrawAt) + o.timeout
				fmt.Fprintf(cmd.ErrOrStderr(), "draining: routes announced with GRACEFUL_SHUTDOWN; withdrawing at %s\n", d.WithdrawAt.Format(time.RFC3339))
				if d, err = waitDrained(cmd.Context(), c, limit); err != nil {
					return err
				}
			}
			return printDrain(cmd.OutOrStdout(), o.output, d)
		},
	}
	cmd.Flags().StringVar(&wait, "wait", "", "how long to announce with GRACEFUL_SHUTDOWN before withdrawing (default: the agent's drain.wait)")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return once the drain has begun, without waiting for the withdrawal")
	return cmd
}

func newUndrainCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "undrain",
		Short: "Put this node back into service: announce everything again",
		Long: `undrain asks roost-agent to announce everything again, without
GRACEFUL_SHUTDOWN, also while a drain is waiting. The state is kept in the
agent's drain.stateFile. Served on the control socket only (--agent-socket).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := o.context(cmd)
			defer cancel()
			d, err := o.controlClient().Undrain(ctx)
			if err != nil {
				return err
			}
			return printDrain(cmd.OutOrStdout(), o.output, d)
		},
	}
}

// waitDrained polls the agent until the node is drained, for at most
// limit.
func waitDrained(ctx context.Context, c *agentapi.Client, limit time.Duration) (agentapi.Drain, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	t := time.NewTicker(drainPoll)
	defer t.Stop()
	var last agentapi.Drain
	for {
		s, err := c.Status(ctx)
		if err == nil {
			last = s.Drain
			switch s.Drain.State {
			case agentapi.DrainDrained:
				return s.Drain, nil
			case agentapi.DrainNone:
				return s.Drain, fmt.Errorf("the node was undrained while the drain waited")
			}
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return last, fmt.Errorf("waiting for the drain: %w", err)
			}
			return last, fmt.Errorf("not drained within %s (state %s)", limit.Round(time.Second), last.State)
		case <-t.C:
		}
	}
}

// printDrain prints d as one line, or as JSON.
func printDrain(w io.Writer, output string, d agentapi.Drain) error {
	if output == "json" {
		return printJSON(w, d)
	}
	_, err := fmt.Fprintln(w, drainLine(d))
	return err
}

// drainLine says the drain state in words, for drain and status.
func drainLine(d agentapi.Drain) string {
	var s string
	switch d.State {
	case agentapi.DrainDraining:
		s = fmt.Sprintf("draining since %s: GRACEFUL_SHUTDOWN on every route, withdrawn at %s", d.Since.Format(time.RFC3339), d.WithdrawAt.Format(time.RFC3339))
	case agentapi.DrainDrained:
		s = fmt.Sprintf("drained since %s: nothing announced, sessions up", d.Since.Format(time.RFC3339))
	default:
		s = "not drained"
	}
	if d.Error != "" {
		s += " (not saved: " + d.Error + ")"
	}
	return s
}

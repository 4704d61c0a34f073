package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/roost-net/roost/internal/agentapi"
)

func newStatusCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show roost-agent's state: desired prefixes, last apply, BIRD, readiness",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := o.context(cmd)
			defer cancel()
			s, err := o.agentClient().Status(ctx)
			if err != nil {
				return err
			}
			if o.output == "json" {
				return printJSON(cmd.OutOrStdout(), s)
			}
			return printStatus(cmd.OutOrStdout(), s)
		},
	}
}

func printStatus(w io.Writer, s agentapi.Status) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	ready := "yes"
	if !s.Ready {
		ready = "no: " + s.ReadyMessage
	}
	fmt.Fprintf(tw, "Node:\t%s\n", s.Node)
	fmt.Fprintf(tw, "Source:\t%s\n", s.Source)
	fmt.Fprintf(tw, "Ready:\t%s\n", ready)
	fmt.Fprintf(tw, "Desired:\t%s\n", prefixList(s.Desired))
	if s.Drain.State != "" && s.Drain.State != agentapi.DrainNone || s.Drain.Error != "" {
		fmt.Fprintf(tw, "Drain:\t%s\n", drainLine(s.Drain))
	}
	if s.SourceMessage != "" {
		fmt.Fprintf(tw, "Source message:\t%s\n", s.SourceMessage)
	}
	if s.ConfigError != "" {
		fmt.Fprintf(tw, "Config error:\t%s\n", oneLine(s.ConfigError))
	}
	la := s.LastApply
	when := "never"
	if !la.Time.IsZero() {
		when = la.Time.Format(time.RFC3339) + " (" + la.Duration.Round(time.Microsecond).String() + ")"
	}
	fmt.Fprintf(tw, "Last apply:\t%s at %s\n", la.Result, when)
	if la.Error != "" {
		fmt.Fprintf(tw, "Last error:\t%s (%d failures in a row)\n", oneLine(la.Error), la.Failures)
	}
	if la.RolledBack {
		fmt.Fprintf(tw, "Rolled back:\tyes: a session that was Established did not come back\n")
	}
	fmt.Fprintf(tw, "BIRD runs:\t%s\n", prefixList(la.Applied))
	b := s.Bird
	if b.Up {
		line := fmt.Sprintf("up, %s, last reboot %s", b.Version, b.LastReboot)
		if b.LastReconfig != "" {
			line += ", last reconfig " + b.LastReconfig
		}
		fmt.Fprintf(tw, "BIRD:\t%s\n", line)
	} else {
		fmt.Fprintf(tw, "BIRD:\tdown: %s\n", oneLine(b.Error))
	}
	if b.Rollbacks != 0 || b.ExternalReconfigs != 0 {
		fmt.Fprintf(tw, "BIRD changes:\t%d rollbacks, %d reconfigurations by others (undone)\n", b.Rollbacks, b.ExternalReconfigs)
	}
	if b.Repair != "" {
		fmt.Fprintf(tw, "BIRD repair:\t%s\n", oneLine(b.Repair))
	}
	if s.BlackholeRoutes {
		line := prefixList(s.Blackholes)
		if s.BlackholeError != "" {
			line += "; last sync failed: " + oneLine(s.BlackholeError)
		}
		fmt.Fprintf(tw, "Blackholes:\t%s\n", line)
	} else {
		fmt.Fprintf(tw, "Blackholes:\toff (blackholeRoutes: false)\n")
	}
	for _, p := range s.Peers {
		fmt.Fprintf(tw, "Peer %s:\t%s\n", p.Name, peerLine(p))
	}
	return tw.Flush()
}

// peerLine describes a peer of the agent's status in one line.
func peerLine(p agentapi.Peer) string {
	line := fmt.Sprintf("%s AS%d", p.Neighbor, p.ASN)
	if p.Family != "" {
		line += " " + p.Family
	}
	switch {
	case p.State == agentapi.StateUnknown || p.BGPState == agentapi.StateUnknown:
		return line + ", state unknown (BIRD does not answer)"
	case p.State == "" && p.BGPState == "":
		return line + ", not polled yet"
	}
	return fmt.Sprintf("%s, %s %s, %d exported", line, p.State, p.BGPState, p.Exported)
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", "; ") }

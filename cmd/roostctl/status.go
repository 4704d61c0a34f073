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
	fmt.Fprintf(tw, "BIRD runs:\t%s\n", prefixList(la.Applied))
	if s.Bird.Up {
		fmt.Fprintf(tw, "BIRD:\tup, %s, last reboot %s\n", s.Bird.Version, s.Bird.LastReboot)
	} else {
		fmt.Fprintf(tw, "BIRD:\tdown: %s\n", s.Bird.Error)
	}
	for _, p := range s.Peers {
		fmt.Fprintf(tw, "Peer %s:\t%s AS%d %s %s\n", p.Name, p.Neighbor, p.ASN, p.State, p.BGPState)
	}
	return tw.Flush()
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", "; ") }

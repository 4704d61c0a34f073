package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/roost-net/roost/internal/loaderapi"
	"github.com/roost-net/roost/internal/policy"
)

func (o *options) loaderClient() *loaderapi.Client {
	return loaderapi.NewClient(o.loader)
}

func newEndpointsCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "endpoints",
		Short: "Show the endpoints roost-loader knows: IPs, identity, local, ingress enforced",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := o.context(cmd)
			defer cancel()
			s, err := o.loaderClient().Status(ctx)
			if err != nil {
				return err
			}
			if o.output == "json" {
				return printJSON(cmd.OutOrStdout(), s.Endpoints)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tIPS\tIDENTITY\tLOCAL\tINGRESS\tLABELS")
			for _, e := range s.Endpoints {
				ingress := "open"
				if e.Enforced {
					ingress = "enforced"
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", e.Name, addrList(e.IPs), e.Identity, yesNo(e.Local), ingress, labelList(e.Labels))
			}
			for _, sk := range s.Skipped {
				fmt.Fprintf(tw, "%s\t\t\tskipped\t\t%s\n", sk.Name, sk.Reason)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if s.LastApply.Result != loaderapi.ResultOK {
				fmt.Fprintf(cmd.OutOrStdout(), "last apply %s: %s\n", s.LastApply.Result, s.LastApply.Error)
			}
			return nil
		},
	}
}

func newIdentitiesCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "identities",
		Short: "Show the security identities: reserved, label sets and CIDRs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := o.context(cmd)
			defer cancel()
			res, err := o.loaderClient().Policy(ctx)
			if err != nil {
				return err
			}
			if o.output == "json" {
				return printJSON(cmd.OutOrStdout(), res.Identities)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tKIND\tLABELS OR PREFIX\tENDPOINTS")
			for _, id := range res.Identities {
				kind, what := "labels", labelList(id.Labels)
				switch {
				case id.Reserved != "":
					kind, what = "reserved", id.Reserved
				case id.Prefix.IsValid():
					kind, what = "cidr", id.Prefix.String()
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", id.ID, kind, what, dash(strings.Join(id.Endpoints, ",")))
			}
			return tw.Flush()
		},
	}
}

func newPolicyCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "policy [ENDPOINT]",
		Short: "Show the resolved ingress policy of local endpoints, and the datapath's verdict counters",
		Long: `policy prints, for each local endpoint (or the one named), whether its
ingress is enforced and its resolved allow/deny entries with the rules they
come from, then the datapath's packet counters by verdict reason.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := o.context(cmd)
			defer cancel()
			c := o.loaderClient()
			res, err := c.Policy(ctx)
			if err != nil {
				return err
			}
			eps := res.Endpoints
			if len(args) == 1 {
				eps = nil
				for _, ep := range res.Endpoints {
					if ep.Name == args[0] {
						eps = append(eps, ep)
					}
				}
				if len(eps) == 0 {
					return fmt.Errorf("no local endpoint %q (see roostctl endpoints)", args[0])
				}
			}
			counters, err := c.Counters(ctx)
			if err != nil {
				return err
			}
			if o.output == "json" {
				return printJSON(cmd.OutOrStdout(), map[string]any{"endpoints": eps, "counters": counters})
			}
			return printPolicy(cmd.OutOrStdout(), eps, res, counters)
		},
	}
}

func printPolicy(w io.Writer, eps []policy.EndpointPolicy, res policy.Resolved, counters []loaderapi.Counter) error {
	names := map[policy.Identity]string{}
	for _, id := range res.Identities {
		names[id.ID] = id.String()
	}
	for _, ep := range eps {
		state := "ingress open (no rule selects it)"
		if ep.Enforced {
			state = "ingress enforced (default deny)"
		}
		fmt.Fprintf(w, "%s %s identity %d: %s\n", ep.Name, addrList(ep.IPs), ep.Identity, state)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		if len(ep.Entries) > 0 {
			fmt.Fprintln(tw, "  VERDICT\tPROTO/PORTS\tFROM\tRULE")
		}
		for _, e := range ep.Entries {
			from := "any"
			if e.Remote != 0 {
				from = names[e.Remote]
				if from == "" {
					from = fmt.Sprint(e.Remote)
				}
			}
			var rules []string
			for _, s := range e.Sources {
				rules = append(rules, s.String())
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", e.Verdict, e.Ports(), from, strings.Join(rules, "; "))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(counters) > 0 {
		fmt.Fprintln(w, "counters (all endpoints):")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  REASON\tVERDICT\tPACKETS\tBYTES")
		for _, c := range counters {
			v := "pass"
			if c.Dropped {
				v = "drop"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\n", c.Reason, v, c.Packets, c.Bytes)
		}
		return tw.Flush()
	}
	return nil
}

func newDropsCmd(o *options) *cobra.Command {
	var follow bool
	cmd := &cobra.Command{
		Use:   "drops [--follow]",
		Short: "Show packets the datapath dropped (like cilium monitor --type drop)",
		Long: `drops prints the packets the eBPF datapath dropped on their way into a local
endpoint, most recent last: source and destination, ports, protocol, the
source's identity, the endpoint and the reason. roost-loader keeps the last
1024; --follow keeps printing new ones until interrupted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if !follow {
				var cancel context.CancelFunc
				ctx, cancel = o.context(cmd)
				defer cancel()
			}
			w := cmd.OutOrStdout()
			return o.loaderClient().Drops(ctx, follow, func(d loaderapi.Drop) error {
				if o.output == "json" {
					return printJSON(w, d)
				}
				_, err := fmt.Fprintln(w, dropLine(d))
				return err
			})
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new drops")
	return cmd
}

// dropLine formats a drop like Cilium's monitor does.
func dropLine(d loaderapi.Drop) string {
	proto := map[uint8]string{1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6", 132: "SCTP"}[d.Proto]
	if proto == "" {
		proto = fmt.Sprint(d.Proto)
	}
	ep := d.Endpoint
	if ep == "" {
		ep = fmt.Sprintf("ifindex %d", d.Ifindex)
	}
	return fmt.Sprintf("%s xx drop (%s) to endpoint %s, identity %d->: %s %s -> %s",
		d.Time.Format("15:04:05.000"), d.Reason, ep, d.SrcIdentity, proto,
		hostPort(d.Src, d.SrcPort), hostPort(d.Dst, d.DstPort))
}

func hostPort(a netip.Addr, port uint16) string {
	if !a.IsValid() {
		return "?"
	}
	if port == 0 {
		return a.String()
	}
	return netip.AddrPortFrom(a, port).String()
}

func newBPFCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "bpf",
		Short: "Show the attached eBPF programs, their versions (tags) and pins",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := o.context(cmd)
			defer cancel()
			b, err := o.loaderClient().BPF(ctx)
			if err != nil {
				return err
			}
			if o.output == "json" {
				return printJSON(cmd.OutOrStdout(), b)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "pins: %s\n", b.Pins)
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "INTERFACE\tIFINDEX\tHOOK\tPROGRAM\tMODE\tPROG ID\tTAG\tCURRENT\tLINK\tPIN")
			for _, a := range b.Attachments {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\t%s\t%s\t%d\t%s\n", dash(a.Interface), a.Ifindex, a.Hook, a.Program, a.Mode,
					a.ProgramID, a.Tag, yesNo(a.Current), a.LinkID, dash(a.Pin))
			}
			return tw.Flush()
		},
	}
}

func addrList(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

func labelList(m map[string]string) string {
	var s []string
	for k, v := range m {
		s = append(s, k+"="+v)
	}
	if len(s) == 0 {
		return "-"
	}
	slices.Sort(s)
	return strings.Join(s, ",")
}

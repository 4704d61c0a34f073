package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/roost-net/roost/internal/loaderapi"
	"github.com/roost-net/roost/internal/policy"
)

func (o *options) loaderClient() *loaderapi.Client {
	return loaderapi.NewClient(o.loader)
}

// ownLabels returns an endpoint's labels without those its namespace and
// cluster give it (its namespace has a column of its own; -o json has all).
func ownLabels(labels map[string]string, cluster string) map[string]string {
	out := make(map[string]string, len(labels))
	for k, v := range labels {
		switch {
		case k == policy.NamespaceLabel, strings.HasPrefix(k, policy.NamespaceLabelsPrefix), k == policy.ClusterLabel && v == cluster:
		default:
			out[k] = v
		}
	}
	return out
}

func newEndpointsCmd(o *options) *cobra.Command {
	var origin string
	cmd := &cobra.Command{
		Use:   "endpoints",
		Short: "Show the endpoints roost-loader knows: origin, namespace, IPs, identity, local, ingress enforced, own labels",
		Long: `Show the endpoints roost-loader knows and enforces policy with. ORIGIN is
where it learnt of each: "file" (its endpoints file), "kubernetes" (a pod of
its cluster), or, from the global view on etcd, "cluster:NAME" (a pod of
another cluster, named cluster:NAME/NAMESPACE/POD) and "sync:NAME" (an
outside workload that roost-sync NAME registered). Below the table: the
global view's state (with how many of the other clusters' nodes it knows,
whose addresses are remote-node to policy), and the endpoints and nodes of
the view that were skipped because another holds one of their addresses.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := o.context(cmd)
			defer cancel()
			s, err := o.loaderClient().Status(ctx)
			if err != nil {
				return err
			}
			eps := s.Endpoints
			if origin != "" {
				eps = slices.DeleteFunc(slices.Clone(eps), func(e loaderapi.Endpoint) bool { return e.Origin != origin })
			}
			if o.output == "json" {
				return printJSON(cmd.OutOrStdout(), eps)
			}
			return printEndpoints(cmd.OutOrStdout(), s, eps, origin == "")
		},
	}
	cmd.Flags().StringVar(&origin, "origin", "", `only the endpoints of this origin: file, kubernetes, cluster:NAME or sync:NAME`)
	return cmd
}

// printEndpoints prints eps as a table; with all, also the skipped
// endpoints and the global view's state.
func printEndpoints(w io.Writer, s loaderapi.Status, eps []loaderapi.Endpoint, all bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tORIGIN\tNAMESPACE\tIPS\tIDENTITY\tLOCAL\tINGRESS\tLABELS")
	for _, e := range eps {
		ingress := "open"
		if e.Enforced {
			ingress = "enforced"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", e.Name, dash(e.Origin), dash(e.Labels[policy.NamespaceLabel]), addrList(e.IPs), e.Identity,
			yesNo(e.Local), ingress, labelList(ownLabels(e.Labels, s.Cluster)))
	}
	if all {
		for _, sk := range s.Skipped {
			fmt.Fprintf(tw, "%s\t\t\t\t\tskipped\t\t%s\n", sk.Name, sk.Reason)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if s.LastApply.Result != loaderapi.ResultOK {
		fmt.Fprintf(w, "last apply %s: %s\n", s.LastApply.Result, s.LastApply.Error)
	}
	if g := s.GlobalView; g != nil && all {
		printGlobalView(w, g)
	}
	return nil
}

// printGlobalView prints the global view's state in a few lines.
func printGlobalView(w io.Writer, g *loaderapi.GlobalView) {
	state := "connected"
	if !g.Connected {
		state = "NOT connected (enforcing the last view)"
		if !g.Listed {
			state = "NOT connected (no view yet)"
		}
	}
	var origins []string
	for _, o := range slices.Sorted(maps.Keys(g.Origins)) {
		origins = append(origins, fmt.Sprintf("%s=%d", o, g.Origins[o]))
	}
	var nodes []string
	for _, o := range slices.Sorted(maps.Keys(g.Nodes)) {
		nodes = append(nodes, fmt.Sprintf("%s=%d", o, g.Nodes[o]))
	}
	fmt.Fprintf(w, "global view: %s, revision %d, age %s; from the view: %s; other clusters' nodes (remote-node): %s; own cluster's (from local sources): %d\n",
		state, g.Revision, g.ViewAge.Round(time.Millisecond), dash(strings.Join(origins, " ")), dash(strings.Join(nodes, " ")), g.Own)
	if g.LastError != "" {
		fmt.Fprintf(w, "global view: last error at %s: %s\n", g.LastErrorTime.Format(time.RFC3339), g.LastError)
	}
	if p := g.Publisher; p != nil {
		role := "standby"
		if p.Leader {
			role = "leader"
		}
		fmt.Fprintf(w, "publisher of %s: %s, %d endpoints, %d nodes, generation %d published %d\n", p.Origin, role, p.Endpoints, p.Nodes, p.Generation, p.Published)
	}
	for _, c := range g.Conflicts {
		fmt.Fprintf(w, "conflict: %s\n", c)
	}
	for _, p := range g.Problems {
		fmt.Fprintf(w, "bad key: %s\n", p)
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
		Short: "Show the resolved ingress policy of local endpoints, with the datapath's counters per entry and per reason",
		Long: `policy prints, for each local endpoint (or the one named), whether its
ingress is enforced and its resolved allow/deny entries with the rules they
come from, grouped by source. Beside each source are the datapath's counters
of the policy entry that decides its traffic: packets (and bytes) of new
traffic it allowed, denied with a deny rule, and denied because no rule
matched (default deny). The datapath keeps one entry per source identity,
with the rules for any source folded in, so its counters cover all of that
source's rows; "any" counts the sources without an entry of their own.
Replies to the endpoint's own connections count under no entry. Then the
datapath's packet counters by verdict reason, for all endpoints, and what
the loader refused or ignored of its inputs: policy objects of the
Kubernetes API it refused (the others stay enforced) and fields it ignored.`,
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
			entries := []loaderapi.EntryCounter{}
			for _, e := range res.EntryCounters {
				if slices.ContainsFunc(eps, func(ep policy.EndpointPolicy) bool { return ep.Name == e.Endpoint }) {
					entries = append(entries, e)
				}
			}
			counters, err := c.Counters(ctx)
			if err != nil {
				return err
			}
			st, err := c.Status(ctx)
			if err != nil {
				return err
			}
			if o.output == "json" {
				return printJSON(cmd.OutOrStdout(), map[string]any{"endpoints": eps, "entryCounters": entries, "counters": counters,
					"policyErrors": st.PolicyErrors, "warnings": st.Warnings, "notes": st.Notes})
			}
			if err := printPolicy(cmd.OutOrStdout(), eps, res.Resolved, entries, counters); err != nil {
				return err
			}
			return printPolicyInputs(cmd.OutOrStdout(), st)
		},
	}
}

// printPolicy prints each endpoint's entries, grouped by source, with the
// counters of the datapath entry that decides each source, then the
// counters by reason.
func printPolicy(w io.Writer, eps []policy.EndpointPolicy, res policy.Resolved, entries []loaderapi.EntryCounter, counters []loaderapi.Counter) error {
	names := map[policy.Identity]string{}
	for _, id := range res.Identities {
		names[id.ID] = id.Short(res.Cluster)
	}
	from := func(remote policy.Identity) string {
		if remote == policy.IdentityAny {
			return "any"
		}
		if n := names[remote]; n != "" {
			return n
		}
		return fmt.Sprint(remote)
	}
	anyCounted := false
	for _, ep := range eps {
		state := "ingress open (no rule selects it)"
		if ep.Enforced {
			state = "ingress enforced (default deny)"
		}
		fmt.Fprintf(w, "%s %s identity %d: %s\n", ep.Name, addrList(ep.IPs), ep.Identity, state)
		own := map[policy.Identity]loaderapi.EntryCounter{}
		for _, e := range entries {
			if e.Endpoint == ep.Name {
				own[policy.Identity(e.Remote)] = e
			}
		}
		// Rows by source, in the entries' order within each; a source
		// with a datapath entry and no row of its own (the wildcard
		// entry without rules) gets a row for its counters.
		rows := slices.Clone(ep.Entries)
		for remote := range own {
			if !slices.ContainsFunc(rows, func(e policy.Entry) bool { return e.Remote == remote }) {
				rows = append(rows, policy.Entry{Remote: remote})
			}
		}
		slices.SortStableFunc(rows, func(a, b policy.Entry) int { return cmp.Compare(a.Remote, b.Remote) })
		if len(rows) == 0 {
			continue
		}
		counted := len(own) > 0
		anyCounted = anyCounted || counted
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		if counted {
			fmt.Fprintln(tw, "  FROM\tVERDICT\tPROTO/PORTS\tALLOWED\tDENIED\tNO RULE\tRULE")
		} else {
			fmt.Fprintln(tw, "  FROM\tVERDICT\tPROTO/PORTS\tRULE")
		}
		for i, e := range rows {
			verdict, ports := e.Verdict.String(), e.Ports()
			var rules []string
			for _, s := range e.Sources {
				rules = append(rules, s.String())
			}
			if e.Verdict == 0 { // the row of a datapath entry alone (the zero Verdict is invalid)
				verdict, ports, rules = "-", "-", []string{"(no rule for any source)"}
			}
			if !counted {
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", from(e.Remote), verdict, ports, strings.Join(rules, "; "))
				continue
			}
			// The counters go on the first row of each source.
			cells := [3]string{}
			if i == 0 || rows[i-1].Remote != e.Remote {
				cells = entryCells(own, e.Remote)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", from(e.Remote), verdict, ports, cells[0], cells[1], cells[2], strings.Join(rules, "; "))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if anyCounted {
		fmt.Fprintln(w, `ALLOWED, DENIED (by a deny rule), NO RULE (default deny): packets (bytes) of new traffic from
that source, counted by the datapath's entry for it, which applies the rules for "any" too;
"any" counts the sources without an entry of their own.`)
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

// printPolicyInputs prints what the loader refused or ignored of its
// policy inputs: policy objects of the Kubernetes API it refused (the rest
// is enforced), fields it ignored, and what the Kubernetes sources lack.
func printPolicyInputs(w io.Writer, st loaderapi.Status) error {
	if len(st.PolicyErrors) > 0 {
		fmt.Fprintln(w, "policy objects refused (the rest is enforced; a refused object's last good version, if any, stays):")
		for _, e := range st.PolicyErrors {
			name := e.Name
			if e.Namespace != "" {
				name = e.Namespace + "/" + e.Name
			}
			fmt.Fprintf(w, "  %s %s: %s\n", e.Kind, name, strings.ReplaceAll(e.Error, "\n", "\n    "))
		}
	}
	if len(st.Warnings) > 0 {
		fmt.Fprintln(w, "ignored:")
		for _, warn := range st.Warnings {
			fmt.Fprintf(w, "  %s\n", warn)
		}
	}
	for _, n := range st.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	return nil
}

// entryCells returns the ALLOWED, DENIED and NO RULE cells of source
// remote: its own datapath entry's counters, else those of the entry for
// any source, which then decides its traffic.
func entryCells(own map[policy.Identity]loaderapi.EntryCounter, remote policy.Identity) [3]string {
	e, ok := own[remote]
	switch {
	case !ok && remote != policy.IdentityAny:
		if _, ok := own[policy.IdentityAny]; ok {
			return [3]string{"as any"}
		}
		return [3]string{"-", "-", "-"}
	case !ok:
		return [3]string{"-", "-", "-"}
	case !e.Counted:
		return [3]string{"not counted", "", ""}
	}
	return [3]string{countCell(e.Allowed), countCell(e.Denied), countCell(e.DefaultDenied)}
}

// countCell formats packets and bytes as "12 (840 B)", or "0".
func countCell(c loaderapi.Count) string {
	if c.Packets == 0 && c.Bytes == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (%s)", c.Packets, byteSize(c.Bytes))
}

// byteSize formats n bytes as "840 B", "12.3 KiB", "4.5 MiB" or "1.2 GiB".
func byteSize(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, suffix := float64(n)/unit, "KiB"
	for _, s := range []string{"MiB", "GiB", "TiB"} {
		if v < unit {
			break
		}
		v, suffix = v/unit, s
	}
	return fmt.Sprintf("%.1f %s", v, suffix)
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

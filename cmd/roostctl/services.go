package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/roost-net/roost/internal/loaderapi"
)

func newServicesCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "services",
		Short: "Show the Services roost-loader load-balances, at the socket and at the uplinks, with counters",
		Long: `services shows what roost-loader's load balancers serve, from the services file
(and, with kubernetes.enabled, the Services of the cluster): the file, and
when its last change was refused, why (the last good set stays served), and
notes on what was left out.

The socket load balancer (socketLB.enabled) serves cluster, external and
load-balancer IPs to the node's own processes and pods: each frontend
(protocol/address:port) with its active backends and session affinity.
CONNECTIONS counts, per frontend, the connections (and UDP sends) sent to one
of its backends since it was added. Its counters count the socket programs'
decisions: translated (a connect or sendto sent to a backend),
translated-affinity, no-backend (refused), reverse-translated (recvfrom,
getpeername showing the frontend), pass (not a frontend).

The uplink load balancer (xdpLB.enabled) serves VIPs (external and
load-balancer IPs) and node ports to clients outside the fabric, at XDP on
the uplinks: the interfaces and how the program is attached (native or
generic), the algorithm and size of the Maglev tables, and the flows the
connection table remembers. Each frontend has its KIND (vip or nodeport; a
node port has a frontend on each node address, and one on 0.0.0.0 or :: for
the packets other nodes encapsulate to this node's backends), session
affinity (ClientIP: by the client's address alone) and backends, local (DNAT)
or remote (encapsulated to their node), active (takes new flows) or draining
(keeps the flows it has). PACKETS (bytes) counts what reached the frontend on
this node, CONNECTIONS the flows this node gave a backend from the Maglev
table. Its counters count the programs' decisions: local, encapsulated,
decapsulated, reply-translated (a reply's source set back to the frontend),
no-backend, not-served, decap-unknown-backend, malformed and error (dropped;
malformed is passed when not to a VIP), pass (not a frontend).

A load balancer that is not enabled shows no section; -o json gives the whole
document of GET /v1/services (the uplink under "uplink").`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := o.context(cmd)
			defer cancel()
			st, err := o.loaderClient().Services(ctx)
			if err != nil {
				return err
			}
			if o.output == "json" {
				return printJSON(cmd.OutOrStdout(), st)
			}
			return printServices(cmd.OutOrStdout(), st)
		},
	}
}

func printServices(w io.Writer, st loaderapi.Services) error {
	fmt.Fprintf(w, "services file: %s (%d services)\n", dash(st.File), st.Services)
	if st.Error != "" {
		fmt.Fprintf(w, "last change refused (the last good set is served): %s\n", st.Error)
	}
	for _, n := range st.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	// The socket load balancer, when enabled, always has counters (one
	// per reason): a document with an uplink and neither counters nor
	// frontends is of a loader without it.
	if st.Uplink == nil || len(st.Frontends) > 0 || len(st.Counters) > 0 {
		if err := printSocketLB(w, st); err != nil {
			return err
		}
	}
	if st.Uplink != nil {
		return printUplinkLB(w, *st.Uplink)
	}
	return nil
}

// printSocketLB prints the socket load balancer's frontends and counters.
func printSocketLB(w io.Writer, st loaderapi.Services) error {
	if st.Uplink != nil {
		fmt.Fprintln(w, "\nsocket load balancer:")
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FRONTEND\tBACKENDS\tAFFINITY\tCONNECTIONS")
	for _, f := range st.Frontends {
		backends := strings.Join(f.Backends, ",")
		if backends == "" {
			backends = "(none: refused)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", f.Frontend, backends, dash(f.Affinity), f.Connections)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return printReasonCounters(w, st.Counters)
}

// printUplinkLB prints the uplink load balancer: interfaces, tables,
// flows, frontends and counters.
func printUplinkLB(w io.Writer, u loaderapi.Uplink) error {
	fmt.Fprintf(w, "\nuplink load balancer: %s, table size %d, %d flows in the connection table\n", dash(u.Algorithm), u.MaglevSize, u.Flows)
	names := make([]string, 0, len(u.Interfaces))
	for n := range u.Interfaces {
		names = append(names, n)
	}
	sort.Strings(names)
	ifaces := make([]string, 0, len(names))
	for _, n := range names {
		ifaces = append(ifaces, fmt.Sprintf("%s (%s)", n, dash(u.Interfaces[n])))
	}
	if len(ifaces) == 0 {
		ifaces = append(ifaces, "(none)")
	}
	fmt.Fprintf(w, "interfaces: %s\n", strings.Join(ifaces, ", "))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FRONTEND\tKIND\tAFFINITY\tBACKENDS\tPACKETS\tCONNECTIONS")
	for _, f := range u.Frontends {
		var bs []string
		for _, b := range f.Backends {
			where := "remote"
			if b.Local {
				where = "local"
			}
			bs = append(bs, fmt.Sprintf("%s (%s, %s)", b.Addr, where, dash(b.State)))
		}
		backends := strings.Join(bs, ", ")
		if backends == "" {
			backends = "(none: dropped)"
		}
		affinity := "-"
		if f.Affinity {
			affinity = "ClientIP"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d (%s)\t%d\n", f.Frontend, dash(f.Kind), affinity, backends, f.Packets, byteSize(f.Bytes), f.Connections)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return printReasonCounters(w, u.Counters)
}

// printReasonCounters prints a load balancer's counters by reason, sorted.
func printReasonCounters(w io.Writer, counters map[string]uint64) error {
	names := make([]string, 0, len(counters))
	for n := range counters {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(w, "counters:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, n := range names {
		fmt.Fprintf(tw, "  %s\t%d\n", n, counters[n])
	}
	return tw.Flush()
}

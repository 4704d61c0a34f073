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
		Short: "Show the Services roost-loader serves at the socket, and its counters",
		Long: `services lists what roost-loader's socket load balancer serves (with
socketLB.enabled): each frontend (protocol/address:port of a cluster, external
or load-balancer IP) with its active backends and session affinity, the
services file it came from and, when the last change of that file was
refused, why (the last good set stays served). CONNECTIONS counts, per
frontend, the connections (and UDP sends) sent to one of its backends since
it was added. The counters below count the socket programs' decisions:
translated (a connect or sendto sent to a backend), translated-affinity,
no-backend (refused), reverse-translated (recvfrom, getpeername showing the
frontend), pass (not a frontend).`,
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
	names := make([]string, 0, len(st.Counters))
	for n := range st.Counters {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(w, "counters:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, n := range names {
		fmt.Fprintf(tw, "  %s\t%d\n", n, st.Counters[n])
	}
	return tw.Flush()
}

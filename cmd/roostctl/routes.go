package main

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/roost-net/roost/internal/birdconf"
	"github.com/roost-net/roost/internal/birdctl"
	"github.com/roost-net/roost/internal/inspect"
	"github.com/roost-net/roost/internal/routes"
)

func newRoutesCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "routes",
		Short: "Show, per prefix, whether BIRD has it, which peer is sent it, and the kernel blackhole",
		Long: `routes joins what roost-agent wants announced (its /v1/status) with what BIRD
holds (roost's static protocols) and what it sends each peer ("show route
export <peer>"), and, when the agent keeps kernel blackhole routes, whether
the prefix's exists. A prefix is for the peers whose session carries its
address family (IPv4 or IPv6): "-" marks the others. A prefix not sent to
every peer of its family, sent without being desired, without a session of
its family or without its blackhole route is flagged with the reason, and
the command exits non-zero.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := o.context(cmd)
			defer cancel()
			st, err := o.agentClient().Status(ctx)
			if err != nil {
				return err
			}
			c, err := o.dialBird(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			f := inspect.Facts{Status: st, InBird: map[netip.Prefix]bool{}, Exported: map[string]map[netip.Prefix]bool{}}
			protos := []string{birdconf.StaticProtocol4, birdconf.StaticProtocol6}
			if len(st.VIPs) > 0 {
				protos = append(protos, birdconf.VIPProtocol4, birdconf.VIPProtocol6)
			}
			for _, proto := range protos {
				rs, err := c.Routes(ctx, birdctl.RouteQuery{Protocol: proto})
				if err != nil {
					return fmt.Errorf("routes of %s: %w", proto, err)
				}
				for _, r := range rs {
					f.InBird[r.Prefix] = true
				}
			}
			if f.Sessions, err = sessions(ctx, c, o.birdLogFile(cmd)); err != nil {
				return err
			}
			for _, s := range f.Sessions {
				rs, err := c.Routes(ctx, birdctl.RouteQuery{Export: s.Protocol})
				if errors.Is(err, birdctl.ErrNoTables) {
					// The peer's channel is not up: BIRD sends it nothing.
					rs, err = nil, nil
				}
				if err != nil {
					return fmt.Errorf("routes exported to %s: %w", s.Name, err)
				}
				set := map[netip.Prefix]bool{}
				for _, r := range rs {
					set[r.Prefix] = true
				}
				f.Exported[s.Protocol] = set
			}
			if st.BlackholeRoutes {
				if holes, err := kernelBlackholes(o.timeout); err != nil {
					f.BlackholeError = err.Error()
				} else {
					f.Blackholes = map[netip.Prefix]bool{}
					for _, p := range holes {
						f.Blackholes[p] = true
					}
				}
			}
			rows := inspect.Routes(f)
			if o.output == "json" {
				err = printJSON(cmd.OutOrStdout(), rows)
			} else {
				err = printRoutes(cmd.OutOrStdout(), rows, f)
			}
			if err != nil {
				return err
			}
			if !inspect.AllOK(rows) {
				return fmt.Errorf("some prefixes are not announced as desired (see PROBLEMS)")
			}
			return nil
		},
	}
}

func printRoutes(w io.Writer, rows []inspect.Route, f inspect.Facts) error {
	var peers []string
	for _, s := range f.Sessions {
		peers = append(peers, s.Name)
	}
	slices.Sort(peers)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	head := []string{"PREFIX", "DESIRED", "IN BIRD"}
	for _, p := range peers {
		head = append(head, "TO "+strings.ToUpper(p))
	}
	head = append(head, "BLACKHOLE", "PROBLEMS")
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, r := range rows {
		cols := []string{r.Prefix.String(), yesNo(r.Desired), yesNo(r.InBird)}
		for _, p := range peers {
			cell := yesNo(r.ExportedTo[p])
			if !slices.Contains(r.ExpectedOn, p) && !r.ExportedTo[p] {
				cell = "-" // not of the session's family
			}
			cols = append(cols, cell)
		}
		var bh string
		switch {
		case r.VIP:
			bh = "vip" // a VIP: in the agent's VIP table, not the main one
		case !f.Status.BlackholeRoutes:
			bh = "-" // the agent keeps none
		case r.Blackhole == nil:
			bh = "?" // the kernel could not be read
		default:
			bh = yesNo(*r.Blackhole)
		}
		problems := strings.Join(r.Problems, "; ")
		if problems == "" && r.Note != "" {
			problems = "(" + r.Note + ")"
		}
		cols = append(cols, bh, dash(problems))
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
	}
	if len(rows) == 0 {
		fmt.Fprintln(tw, "(no prefixes desired or exported)")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if f.BlackholeError != "" {
		fmt.Fprintf(w, "kernel blackholes unknown: %s\n", f.BlackholeError)
	}
	return nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// kernelBlackholes lists roost's blackhole routes, every netlink request
// bounded by timeout.
func kernelBlackholes(timeout time.Duration) ([]netip.Prefix, error) {
	h, err := routes.NewHandle(timeout)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	return routes.NewBlackholes(h, 0).List()
}

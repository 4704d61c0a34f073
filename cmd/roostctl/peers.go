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

	"github.com/roost-net/roost/internal/birdconf"
	"github.com/roost-net/roost/internal/birdctl"
	"github.com/roost-net/roost/internal/config"
	"github.com/roost-net/roost/internal/inspect"
)

func newPeersCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "peers",
		Short: "Show the BGP sessions to the ToRs as BIRD reports them",
		Long: `peers lists roost's BGP sessions as BIRD reports them: state, BGP state,
since when, the last error and how many routes each peer is sent. It reads
BIRD's control socket in restricted (read-only) mode.

A session refused over an AS number has a last error that says what to fix.
For "BGP Error: Bad peer AS" (BIRD refused the peer's AS) it names the AS the
peer sent and the AS agent.yaml expects (peers[].asn); for "Received: Bad
peer AS", that the peer refused this node's AS (agent.yaml asn). BIRD tells
the AS a peer sent only in its log file: peers reads its last 256 KiB from
--bird-log, which must match roost-agent's bird.logFile. When it cannot,
peers says so, and the rest of its output is the same.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := o.context(cmd)
			defer cancel()
			c, err := o.dialBird(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			ss, err := sessions(ctx, c, o.birdLogFile(cmd))
			if err != nil {
				return err
			}
			if o.output == "json" {
				return printJSON(cmd.OutOrStdout(), ss)
			}
			return printPeers(cmd.OutOrStdout(), ss)
		},
	}
}

// dialBird opens a restricted session on BIRD's control socket.
func (o *options) dialBird(ctx context.Context) (*birdctl.Client, error) {
	c, err := birdctl.Dial(ctx, o.birdSocket)
	if err != nil {
		return nil, fmt.Errorf("%w (is BIRD running? see --bird-socket)", err)
	}
	if err := c.Restrict(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// birdLogFile returns BIRD's log file: --bird-log, or by default bird.log in
// --bird-socket's directory, as roost-agent's bird.logFile defaults to.
func (o *options) birdLogFile(cmd *cobra.Command) string {
	if cmd.Flags().Changed("bird-log") {
		return o.birdLog
	}
	return config.DefaultLogFile(o.birdSocket)
}

// sessions lists roost's BGP protocols (named by birdconf.ProtocolName),
// each explained by inspect.Explain; BIRD's log file logFile ("" for none)
// is read, its tail only, when a session's last error needs it.
func sessions(ctx context.Context, c *birdctl.Client, logFile string) ([]inspect.Session, error) {
	ps, err := c.Protocols(ctx, birdctl.ProtocolQuery{All: true})
	if err != nil {
		return nil, err
	}
	out := []inspect.Session{}
	for _, p := range ps {
		if !strings.EqualFold(p.Proto, "BGP") || !strings.HasPrefix(p.Name, birdconf.ProtocolPrefix) {
			continue
		}
		// birdconf renders the peer's name as the description.
		name := p.Description
		if name == "" {
			name = strings.TrimPrefix(p.Name, birdconf.ProtocolPrefix)
		}
		s := inspect.Session{
			Name: name, Protocol: p.Name, Neighbor: p.NeighborAddress, ASN: p.NeighborAS, LocalASN: p.LocalAS,
			State: p.State, BGPState: p.BGPState, Since: p.Since, LastError: p.LastError,
		}
		for _, ch := range p.Channels {
			s.Exported += ch.Exported
		}
		if len(p.Channels) == 1 && (p.Channels[0].Name == inspect.FamilyIPv4 || p.Channels[0].Name == inspect.FamilyIPv6) {
			s.Family = p.Channels[0].Name
		}
		out = append(out, s)
	}
	var log inspect.BirdLog
	if slices.ContainsFunc(out, inspect.Session.NeedsBirdLog) {
		log = readBirdLog(logFile)
	}
	for i := range out {
		out[i] = inspect.Explain(out[i], log)
	}
	return out, nil
}

// readBirdLog reads the tail of BIRD's log file (and of its backup, when the
// file is short) for what it says of sessions refused over an AS number. It
// never fails: a file that cannot be read is described in the result.
func readBirdLog(file string) inspect.BirdLog {
	log := inspect.BirdLog{File: file}
	if file == "" {
		return log
	}
	data, err := birdctl.ReadLogTail(file, birdconf.LogBackup(file), birdctl.MaxLogTail)
	if err != nil {
		log.Err = err.Error()
		return log
	}
	log.BadPeerAS = birdctl.ParseBadPeerAS(data)
	return log
}

func printPeers(w io.Writer, ss []inspect.Session) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tNEIGHBOR\tASN\tSTATE\tBGP STATE\tSINCE\tEXPORTED\tLAST ERROR")
	for _, s := range ss {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%d\t%s\n", s.Name, s.Neighbor, s.ASN, s.State, dash(s.BGPState), s.Since, s.Exported, dash(s.LastErrorText()))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func prefixList(ps []netip.Prefix) string {
	if len(ps) == 0 {
		return "(none)"
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/roost-net/roost/internal/agentapi"
)

// options are the flags every subcommand shares.
type options struct {
	birdSocket  string
	birdLog     string
	agent       string
	agentSocket string
	loader      string
	output      string
	timeout     time.Duration
}

// run builds the command tree and executes it with args.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newRootCmd()
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	return cmd.ExecuteContext(ctx)
}

func newRootCmd() *cobra.Command {
	o := &options{}
	cmd := &cobra.Command{
		Use:   "roostctl",
		Short: "Inspect and operate roost on this node",
		Long: `roostctl inspects and operates roost on this node.

Routing (peers, routes, status, config, reload, drain, undrain) reads BIRD
through its control socket in restricted (read-only) mode, and roost-agent
through its HTTP API: status and health on its TCP address (--agent), the
rendered config, reload, drain and undrain only on its control socket
(--agent-socket, root only by default).
Policy (endpoints, identities, policy, drops, bpf) and load balancing
(services) read roost-loader's HTTP API. Every command prints a table, or
JSON with -o json.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if o.output != "table" && o.output != "json" {
				return fmt.Errorf("-o %q: want table or json", o.output)
			}
			return nil
		},
	}
	f := cmd.PersistentFlags()
	f.StringVar(&o.birdSocket, "bird-socket", "/run/bird/bird.ctl", "BIRD control socket")
	f.StringVar(&o.birdLog, "bird-log", "", "BIRD's log file, read to tell which AS a refused peer sent; must match roost-agent's bird.logFile (default: bird.log in --bird-socket's directory, /run/bird/bird.log, as for bird.logFile; \"\" reads none)")
	f.StringVar(&o.agent, "agent", "127.0.0.1:9479", "roost-agent API address (host:port or URL): status, health")
	f.StringVar(&o.agentSocket, "agent-socket", agentapi.DefaultControlSocket, "roost-agent control socket: config, reload, drain, undrain (root only by default)")
	f.StringVar(&o.loader, "loader", "127.0.0.1:9480", "roost-loader API address (host:port or URL)")
	f.StringVarP(&o.output, "output", "o", "table", "output format: table or json")
	f.DurationVar(&o.timeout, "timeout", 10*time.Second, "time limit for each command")
	cmd.AddCommand(newPeersCmd(o), newRoutesCmd(o), newStatusCmd(o), newConfigCmd(o), newReloadCmd(o),
		newDrainCmd(o), newUndrainCmd(o), newEndpointsCmd(o), newIdentitiesCmd(o), newPolicyCmd(o), newDropsCmd(o), newBPFCmd(o),
		newServicesCmd(o), newReadyCmd(o), newCRDsCmd(o))
	return cmd
}

// agentClient returns a client for roost-agent's TCP address (--agent),
// which serves its status.
func (o *options) agentClient() *agentapi.Client {
	c := agentapi.NewClient(o.agent)
	c.HTTP.Timeout = o.timeout
	return c
}

// controlClient returns a client for roost-agent's control socket
// (--agent-socket), which serves its config and reload.
func (o *options) controlClient() *agentapi.Client {
	c := agentapi.NewControlClient(o.agentSocket)
	c.HTTP.Timeout = o.timeout
	return c
}

func (o *options) context(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), o.timeout)
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

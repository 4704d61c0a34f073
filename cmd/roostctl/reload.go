package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/roost-net/roost/internal/agentapi"
)

func newReloadCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "reload",
		Short: "Make roost-agent re-read its config and apply it to BIRD now",
		Long: `reload asks roost-agent to re-read its config file and apply again (BIRD
loads the rendered config and the agent confirms it), even when nothing
changed, and prints the result. It fails when the config file is invalid or
the apply fails; BIRD keeps its running config then.

The agent serves reload only on its control socket (--agent-socket, default
` + agentapi.DefaultControlSocket + `), which only root may use by default.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := o.context(cmd)
			defer cancel()
			s, err := o.controlClient().Reload(ctx)
			if err != nil {
				return err
			}
			if o.output == "json" {
				if err := printJSON(cmd.OutOrStdout(), s); err != nil {
					return err
				}
			} else if err := printStatus(cmd.OutOrStdout(), s); err != nil {
				return err
			}
			if s.LastApply.Result != agentapi.ResultOK {
				return fmt.Errorf("apply %s: %s", s.LastApply.Result, s.LastApply.Error)
			}
			return nil
		},
	}
}

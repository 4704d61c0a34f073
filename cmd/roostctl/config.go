package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/roost-net/roost/internal/inspect"
)

func newConfigCmd(o *options) *cobra.Command {
	var diff bool
	cmd := &cobra.Command{
		Use:   "config [--diff]",
		Short: "Show the BIRD config roost-agent renders now",
		Long: `config prints the BIRD config roost-agent renders from its current inputs.

With --diff it prints instead the difference from the file BIRD is started
with and reconfigured from (the agent's bird.conf): empty when BIRD runs what
the agent renders. Exits non-zero when they differ.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := o.context(cmd)
			defer cancel()
			c, err := o.agentClient().Config(ctx)
			if err != nil {
				return err
			}
			if !diff {
				if o.output == "json" {
					return printJSON(cmd.OutOrStdout(), c)
				}
				_, err := fmt.Fprint(cmd.OutOrStdout(), c.Rendered)
				return err
			}
			onDisk, err := os.ReadFile(c.File)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("read %s: %w", c.File, err)
			}
			d := inspect.Diff(c.File, "rendered by roost-agent", string(onDisk), c.Rendered)
			if o.output == "json" {
				if err := printJSON(cmd.OutOrStdout(), map[string]any{"file": c.File, "equal": d == "", "diff": d}); err != nil {
					return err
				}
			} else {
				fmt.Fprint(cmd.OutOrStdout(), d)
			}
			if d != "" {
				return fmt.Errorf("%s differs from what roost-agent renders (see roostctl status)", c.File)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&diff, "diff", false, "show the difference from the config file on disk")
	return cmd
}

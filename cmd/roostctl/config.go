package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/roost-net/roost/internal/agentapi"
	"github.com/roost-net/roost/internal/inspect"
)

func newConfigCmd(o *options) *cobra.Command {
	var diff bool
	cmd := &cobra.Command{
		Use:   "config [--diff]",
		Short: "Show the BIRD config roost-agent renders now",
		Long: `config prints the BIRD config roost-agent renders from its current inputs,
with every password replaced by ` + agentapi.Redacted + `.

With --diff it prints instead the difference from the file BIRD is started
with and reconfigured from (the agent's bird.conf): empty when BIRD runs what
the agent renders. Exits non-zero when they differ. The file's passwords are
redacted the same way before comparing, so no secret is printed and a
changed password does not show as a difference.

The agent serves its config only on its control socket (--agent-socket,
default ` + agentapi.DefaultControlSocket + `), which only root may use by default;
--diff also reads the agent's bird.conf (mode 0640).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := o.context(cmd)
			defer cancel()
			c, err := o.controlClient().Config(ctx)
			if err != nil {
				return err
			}
			// The agent redacts already; redacting again costs nothing and
			// keeps a secret off the terminal whatever the agent's version.
			rendered := string(inspect.RedactBirdConfig([]byte(c.Rendered)))
			if !diff {
				if o.output == "json" {
					return printJSON(cmd.OutOrStdout(), agentapi.Config{File: c.File, Rendered: rendered})
				}
				_, err := fmt.Fprint(cmd.OutOrStdout(), rendered)
				return err
			}
			onDisk, err := os.ReadFile(c.File)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("read %s: %w", c.File, err)
			}
			redacted := inspect.RedactBirdConfig(onDisk)
			hasPasswords := !bytes.Equal(redacted, onDisk)
			d := inspect.Diff(c.File, "rendered by roost-agent", string(redacted), rendered)
			if o.output == "json" {
				if err := printJSON(cmd.OutOrStdout(), map[string]any{
					"file": c.File, "equal": d == "", "diff": d, "passwordsRedacted": hasPasswords,
				}); err != nil {
					return err
				}
			} else {
				fmt.Fprint(cmd.OutOrStdout(), d)
				if hasPasswords {
					fmt.Fprintf(cmd.ErrOrStderr(), "(passwords redacted on both sides, not compared)\n")
				}
			}
			if d != "" {
				return fmt.Errorf("%s differs from what roost-agent renders (see roostctl status)", c.File)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&diff, "diff", false, "show the difference from the config file on disk (passwords redacted)")
	return cmd
}

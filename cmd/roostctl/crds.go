package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/roost-net/roost/internal/crds"
)

func newCRDsCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "crds",
		Short: "Print the CustomResourceDefinitions of the Cilium policy kinds roost enforces",
		Long: `crds prints the CustomResourceDefinitions of CiliumNetworkPolicy (cnp) and
CiliumClusterwideNetworkPolicy (ccnp), group cilium.io, version v2, as roost
ships them. Install them on a cluster that does not run Cilium with

    roostctl crds | kubectl apply -f -

after which kubectl apply -f policy.yaml works. Their schema only asks for
objects: roost-loader validates each policy itself and reports the ones it
rejects, with the field at fault. On a cluster that runs Cilium, keep
Cilium's own definitions.

The output is YAML (two documents); with -o json it is one JSON List.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.output == "json" {
				return printCRDsJSON(cmd.OutOrStdout())
			}
			_, err := cmd.OutOrStdout().Write(crds.Manifests)
			return err
		},
	}
}

// printCRDsJSON writes the manifests as one v1 List, which kubectl apply
// also takes.
func printCRDsJSON(w io.Writer) error {
	var items []any
	dec := yaml.NewDecoder(bytes.NewReader(crds.Manifests))
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("crds: embedded manifest %d: %w", len(items)+1, err)
		}
		items = append(items, doc)
	}
	return printJSON(w, map[string]any{"apiVersion": "v1", "kind": "List", "items": items})
}

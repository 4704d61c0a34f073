package crds

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/roost-net/roost/internal/policy"
)

// crd is what the test checks of a CustomResourceDefinition
// (k8s.io/apiextensions-apiserver is not a dependency of roost).
type crd struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		Group string `yaml:"group"`
		Scope string `yaml:"scope"`
		Names struct {
			Kind       string   `yaml:"kind"`
			ListKind   string   `yaml:"listKind"`
			Plural     string   `yaml:"plural"`
			Singular   string   `yaml:"singular"`
			ShortNames []string `yaml:"shortNames"`
		} `yaml:"names"`
		Versions []struct {
			Name    string `yaml:"name"`
			Served  bool   `yaml:"served"`
			Storage bool   `yaml:"storage"`
			Schema  struct {
				OpenAPIV3Schema schema `yaml:"openAPIV3Schema"`
			} `yaml:"schema"`
		} `yaml:"versions"`
	} `yaml:"spec"`
}

type schema struct {
	Type                  string            `yaml:"type"`
	Properties            map[string]schema `yaml:"properties"`
	Items                 *schema           `yaml:"items"`
	PreserveUnknownFields bool              `yaml:"x-kubernetes-preserve-unknown-fields"`
}

func decode(t *testing.T) []crd {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(Manifests))
	var out []crd
	for {
		var c crd
		err := dec.Decode(&c)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("decode document %d: %v", len(out)+1, err)
		}
		out = append(out, c)
	}
}

func TestManifests(t *testing.T) {
	got := decode(t)
	tests := []struct {
		name, kind, plural, singular, scope, short string
	}{
		{"ciliumnetworkpolicies.cilium.io", policy.KindCNP, "ciliumnetworkpolicies", "ciliumnetworkpolicy", "Namespaced", "cnp"},
		{"ciliumclusterwidenetworkpolicies.cilium.io", policy.KindCCNP, "ciliumclusterwidenetworkpolicies", "ciliumclusterwidenetworkpolicy", "Cluster", "ccnp"},
	}
	if len(got) != len(tests) {
		t.Fatalf("%d documents, want %d", len(got), len(tests))
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := got[i]
			if c.APIVersion != "apiextensions.k8s.io/v1" || c.Kind != "CustomResourceDefinition" {
				t.Errorf("document %d is %s %s, want apiextensions.k8s.io/v1 CustomResourceDefinition", i+1, c.APIVersion, c.Kind)
			}
			if c.Metadata.Name != tt.name {
				t.Errorf("name %q, want %q", c.Metadata.Name, tt.name)
			}
			s := c.Spec
			if s.Group != "cilium.io" || s.Scope != tt.scope {
				t.Errorf("group %q scope %q, want cilium.io %s", s.Group, s.Scope, tt.scope)
			}
			n := s.Names
			if n.Kind != tt.kind || n.ListKind != tt.kind+"List" || n.Plural != tt.plural || n.Singular != tt.singular ||
				!slices.Equal(n.ShortNames, []string{tt.short}) {
				t.Errorf("names %+v, want kind %s, plural %s, short name %s", n, tt.kind, tt.plural, tt.short)
			}
			if n.Plural+"."+s.Group != c.Metadata.Name {
				t.Errorf("name %q is not <plural>.<group>", c.Metadata.Name)
			}
			if len(s.Versions) != 1 || s.Versions[0].Name != "v2" || !s.Versions[0].Served || !s.Versions[0].Storage {
				t.Fatalf("versions %+v, want v2 only, served and stored", s.Versions)
			}
			root := s.Versions[0].Schema.OpenAPIV3Schema
			if root.Type != "object" {
				t.Errorf("schema type %q, want object", root.Type)
			}
			for _, f := range []string{"spec", "status"} {
				if p := root.Properties[f]; p.Type != "object" || !p.PreserveUnknownFields {
					t.Errorf("%s: %+v, want an object that keeps unknown fields", f, p)
				}
			}
			if p := root.Properties["specs"]; p.Type != "array" || p.Items == nil || p.Items.Type != "object" || !p.Items.PreserveUnknownFields {
				t.Errorf("specs: %+v, want an array of objects that keep unknown fields", p)
			}
		})
	}
}

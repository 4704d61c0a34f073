package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/roost-net/roost/internal/crds"
)

func TestCRDs(t *testing.T) {
	out, err := roostctl("crds")
	if err != nil || out != string(crds.Manifests) {
		t.Errorf("crds: %v, output is not the manifests:\n%s", err, out)
	}

	out, err = roostctl("crds", "-o", "json")
	var list struct {
		Kind  string
		Items []struct {
			Kind     string
			Metadata struct{ Name string }
		}
	}
	if err != nil || json.Unmarshal([]byte(out), &list) != nil {
		t.Fatalf("crds -o json: %v\n%s", err, out)
	}
	var names []string
	for _, it := range list.Items {
		names = append(names, it.Kind+" "+it.Metadata.Name)
	}
	want := "CustomResourceDefinition ciliumnetworkpolicies.cilium.io, CustomResourceDefinition ciliumclusterwidenetworkpolicies.cilium.io"
	if list.Kind != "List" || strings.Join(names, ", ") != want {
		t.Errorf("crds -o json: a %s of %q, want a List of %s", list.Kind, names, want)
	}

	out, err = roostctl("crds", "--help")
	if err != nil || !strings.Contains(out, "roostctl crds | kubectl apply -f -") {
		t.Errorf("crds --help: %v, does not say how to install them:\n%s", err, out)
	}
	if _, err := roostctl("crds", "extra"); err == nil {
		t.Error("crds with an argument: no error")
	}
}

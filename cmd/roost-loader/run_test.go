package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func config(t *testing.T, policyDir, endpointsFile string) string {
	t.Helper()
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	path := filepath.Join(t.TempDir(), "loader.yaml")
	text := fmt.Sprintf("node: node1\npolicyDir: %s\nendpointsFile: %s\n", abs(policyDir), abs(endpointsFile))
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDryRun(t *testing.T) {
	good := config(t, "../../internal/endpoints/testdata/policies", "../../internal/endpoints/testdata/endpoints/lab.yaml")
	badPolicies := t.TempDir()
	os.WriteFile(filepath.Join(badPolicies, "egress.yaml"), []byte("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: x}\nspec:\n  endpointSelector: {}\n  egress: [{}]\n"), 0o644)
	bad := config(t, badPolicies, "../../internal/endpoints/testdata/endpoints/lab.yaml")
	tests := []struct {
		name    string
		args    []string
		wantErr string
		wantOut []string
	}{
		{"seed", []string{"--config", good, "--dry-run"}, "", []string{"db", "6379"}},
		{"unsupported field", []string{"--config", bad, "--dry-run"}, "egress", nil},
		{"missing config", []string{"--config", "/nonexistent/loader.yaml", "--dry-run"}, "/nonexistent/loader.yaml", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := run(context.Background(), tt.args, &out, &errb)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("err = %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}

func TestHelp(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, &out, &errb); !errors.Is(err, flag.ErrHelp) || !strings.Contains(errb.String(), "--dry-run validates") {
		t.Errorf("--help: %v\n%s", err, errb.String())
	}
}

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

func abs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// config writes a loader.yaml of the given files; servicesFile "" is none.
func config(t *testing.T, policyDir, endpointsFile, servicesFile string) string {
	t.Helper()
	if servicesFile != "" {
		servicesFile = abs(t, servicesFile)
	}
	path := filepath.Join(t.TempDir(), "loader.yaml")
	text := fmt.Sprintf("node: node1\npolicyDir: %s\nendpointsFile: %s\nservicesFile: %q\n", abs(t, policyDir), abs(t, endpointsFile), servicesFile)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestDryRun(t *testing.T) {
	const (
		policies  = "../../internal/endpoints/testdata/policies"
		endpoints = "../../internal/endpoints/testdata/endpoints/lab.yaml"
		services  = "../../internal/services/testdata/services.yaml"
	)
	badPolicies := t.TempDir()
	writeFile(t, filepath.Join(badPolicies, "egress.yaml"), "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: x}\nspec:\n  endpointSelector: {}\n  egress: [{}]\n")
	badServices := filepath.Join(t.TempDir(), "services.yaml")
	writeFile(t, badServices, "services:\n- name: db\n  clusterIPs: [10.96.0.10]\n  ports:\n  - {name: a, port: 80}\n  - {name: b, port: 70000}\n")
	badServicesError := badServices + ":6: services[0].ports[1].port: 70000 is not a port (1..65535)"
	tests := []struct {
		name     string
		args     []string
		wantErrs []string // each must be in the error; none for success
		wantOut  []string
	}{
		{
			name:    "seed",
			args:    []string{"--config", config(t, policies, endpoints, ""), "--dry-run"},
			wantOut: []string{"db", "6379", "services:\n  none\n"},
		},
		{
			name:     "unsupported field",
			args:     []string{"--config", config(t, badPolicies, endpoints, ""), "--dry-run"},
			wantErrs: []string{"egress"},
		},
		{
			name:     "missing config",
			args:     []string{"--config", "/nonexistent/loader.yaml", "--dry-run"},
			wantErrs: []string{"/nonexistent/loader.yaml"},
		},
		{
			name: "services",
			args: []string{"--config", config(t, policies, endpoints, services), "--dry-run"},
			wantOut: []string{
				"endpoints:\n  db [10.244.1.10]",
				"services:\n  default/db\n" +
					"    clusterIP 10.96.0.10:6379/TCP redis -> 10.244.1.10:6379 on node1, 10.244.2.12:6379 on node2 (not ready, serving, terminating)\n" +
					"    externalIP 192.0.2.10:6379/TCP redis -> 10.244.1.10:6379 on node1, 10.244.2.12:6379 on node2 (not ready, serving, terminating)\n",
			},
		},
		{
			name:    "missing services file",
			args:    []string{"--config", config(t, policies, endpoints, "/nonexistent/services.yaml"), "--dry-run"},
			wantOut: []string{"services:\n  none\n"},
		},
		{
			name:     "bad services file",
			args:     []string{"--config", config(t, policies, endpoints, badServices), "--dry-run"},
			wantErrs: []string{badServicesError},
		},
		{
			name:     "bad services file and bad policy, reported together",
			args:     []string{"--config", config(t, badPolicies, endpoints, badServices), "--dry-run"},
			wantErrs: []string{"egress", badServicesError},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := run(context.Background(), tt.args, &out, &errb)
			if len(tt.wantErrs) == 0 && err != nil {
				t.Fatalf("err = %v", err)
			}
			if len(tt.wantErrs) > 0 {
				if err == nil {
					t.Fatalf("dry run succeeded, want errors %q:\n%s", tt.wantErrs, out.String())
				}
				for _, w := range tt.wantErrs {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("err = %v\nwant it to contain %q", err, w)
					}
				}
				if out.Len() > 0 {
					t.Errorf("a failed dry run printed:\n%s", out.String())
				}
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

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/roost-net/roost/internal/agentapi"
)

// fakeAgent serves a fixed status and config.
func fakeAgent(t *testing.T, file, rendered string) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc(agentapi.PathStatus, func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(agentapi.Status{
			Node: "node1", Source: "static", Ready: true,
			Desired:   []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")},
			LastApply: agentapi.Apply{Result: agentapi.ResultOK},
			Bird:      agentapi.Bird{Up: true, Version: "2.0.12"},
		})
	})
	mux.HandleFunc(agentapi.PathConfig, func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(agentapi.Config{File: file, Rendered: rendered})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func roostctl(args ...string) (string, error) {
	var out, errb bytes.Buffer
	err := run(context.Background(), args, &out, &errb)
	return out.String() + errb.String(), err
}

func TestStatusAndConfig(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bird.conf")
	srv := fakeAgent(t, file, "router id 10.0.1.2;\n")

	out, err := roostctl("--agent", srv.URL, "status")
	if err != nil || !strings.Contains(out, "Desired:") || !strings.Contains(out, "10.244.1.0/24") || !strings.Contains(out, "Ready:") {
		t.Errorf("status: %v\n%s", err, out)
	}
	out, err = roostctl("--agent", srv.URL, "status", "-o", "json")
	var s agentapi.Status
	if err != nil || json.Unmarshal([]byte(out), &s) != nil || s.Node != "node1" {
		t.Errorf("status -o json: %v\n%s", err, out)
	}
	if out, err := roostctl("--agent", srv.URL, "config"); err != nil || out != "router id 10.0.1.2;\n" {
		t.Errorf("config: %v %q", err, out)
	}
	// No file yet: --diff shows the whole render and fails.
	out, err = roostctl("--agent", srv.URL, "config", "--diff")
	if err == nil || !strings.Contains(out, "+router id 10.0.1.2;") {
		t.Errorf("config --diff without file: %v\n%s", err, out)
	}
	os.WriteFile(file, []byte("router id 10.0.1.2;\n"), 0o640)
	if out, err := roostctl("--agent", srv.URL, "config", "--diff"); err != nil || out != "" {
		t.Errorf("config --diff equal: %v %q", err, out)
	}
}

func TestBadUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad output", []string{"-o", "yaml", "status"}, `-o "yaml": want table or json`},
		{"agent down", []string{"--agent", "127.0.0.1:1", "status"}, "is roost-agent running?"},
		{"bird down", []string{"--bird-socket", "/nonexistent/bird.ctl", "peers"}, "is BIRD running?"},
		{"extra args", []string{"peers", "x"}, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := roostctl(tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

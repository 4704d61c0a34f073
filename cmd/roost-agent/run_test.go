package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roost-net/roost/internal/config"
	"github.com/roost-net/roost/internal/testenv"
)

func TestDryRun(t *testing.T) {
	good := "../../internal/config/testdata/agent.yaml"
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("asn: 0\nrouterID: 10.0.1.2\npodCIDRs: [10.244.1.0/33]\npeers: [{name: tor1, address: 10.0.1.1, asn: 65000}]\n"), 0o644)
	tests := []struct {
		name    string
		args    []string
		wantErr []string
		wantOut string
	}{
		{"good", []string{"--config", good, "--dry-run"}, nil, "route 10.244.1.0/24 blackhole;"},
		{"bad", []string{"--config", bad, "--dry-run"}, []string{"asn: 0 is out of range", `podCIDRs[0]: "10.244.1.0/33"`}, ""},
		{"missing", []string{"--config", "/nonexistent/agent.yaml", "--dry-run"}, []string{"/nonexistent/agent.yaml"}, ""},
		{"stray argument", []string{"--config", good, "extra"}, []string{"unexpected arguments"}, ""},
		{"bad log level", []string{"--config", good, "--log-level", "loud"}, []string{"--log-level"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := run(context.Background(), tt.args, &out, &errb)
			for _, w := range tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want %q", err, w)
				}
			}
			if tt.wantErr == nil && err != nil {
				t.Errorf("err = %v", err)
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Errorf("stdout lacks %q:\n%s", tt.wantOut, out.String())
			}
		})
	}
}

func TestHelp(t *testing.T) {
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"--help"}, &out, &errb)
	if !errors.Is(err, flag.ErrHelp) || !strings.Contains(errb.String(), "--dry-run validates") {
		t.Errorf("--help: %v\n%s", err, errb.String())
	}
}

func TestRestartOnlySettingsRefused(t *testing.T) {
	base := config.Default()
	base.Node = "node1"
	tests := []struct {
		name   string
		change func(*config.Config)
		want   string // "" for a reload that is taken
	}{
		{"peers and prefixes", func(c *config.Config) { c.ASN = 65111; c.Debounce = time.Second }, ""},
		{"timeouts", func(c *config.Config) { c.Bird.Timeout = time.Second; c.Bird.ConfirmTimeout = 0 }, ""},
		{"kubernetes on", func(c *config.Config) { c.Kubernetes.Enabled = true }, "kubernetes.enabled"},
		{"bird socket", func(c *config.Config) { c.Bird.Socket = "/run/other/bird.ctl" }, "bird.socket"},
		{"blackholes off", func(c *config.Config) { c.BlackholeRoutes = false }, "blackholeRoutes"},
		{"listen and node", func(c *config.Config) { c.Listen = "127.0.0.1:1"; c.Node = "x" }, "node, listen take(s) effect only when roost-agent restarts"},
		{"control socket", func(c *config.Config) { c.ControlSocket = "/tmp/x.sock" }, "controlSocket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base
			tt.change(&c)
			err := restartOnly(base, c)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestAgentDeps keeps client-go's clientset and informers out of the
// roost-agent binary: it links internal/services for the VIPs, and the
// Kubernetes conversion of services once brought the clientset along,
// which took the binary from 33 to 56 MB. The etcd client of the global
// endpoint view (gRPC, zap) is the loader's business, not the agent's.
func TestAgentDeps(t *testing.T) {
	testenv.NoClientset(t)
	testenv.NoEtcdClient(t)
}

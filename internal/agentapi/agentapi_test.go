package agentapi

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
)

func TestClientHints(t *testing.T) {
	tests := []struct {
		name   string
		client *Client
		want   string
	}{
		{"tcp", NewClient("127.0.0.1:1"), "(is roost-agent running? see --agent)"},
		{"control socket", NewControlClient(filepath.Join(t.TempDir(), "none.sock")), "see --agent-socket)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.client.Status(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestControlClient(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathConfig, func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(Config{File: "/etc/bird/bird.conf", Rendered: "router id 10.0.1.2;\n"})
	})
	mux.HandleFunc("POST "+PathReload, func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(Status{Node: "node1", LastApply: Apply{Result: ResultOK}})
	})
	srv := &httptest.Server{Listener: l, Config: &http.Server{Handler: mux}}
	srv.Start()
	t.Cleanup(srv.Close)

	c := NewControlClient(sock)
	cfg, err := c.Config(context.Background())
	if err != nil || cfg.File != "/etc/bird/bird.conf" || cfg.Rendered != "router id 10.0.1.2;\n" {
		t.Errorf("Config = %+v, %v", cfg, err)
	}
	s, err := c.Reload(context.Background())
	if err != nil || s.Node != "node1" || s.LastApply.Result != ResultOK {
		t.Errorf("Reload = %+v, %v", s, err)
	}
}

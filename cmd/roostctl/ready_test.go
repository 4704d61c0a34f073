package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestReady(t *testing.T) {
	ready := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		if !ready {
			http.Error(w, "not ready: last apply failed: bird: syntax error", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	}))
	t.Cleanup(srv.Close)

	tests := []struct {
		name    string
		ready   bool
		args    []string
		wantErr string // "" = success
		wantOut string
	}{
		{"agent ready", true, []string{"--agent", srv.URL, "ready", "agent"}, "", "agent ready: ready"},
		{"loader ready", true, []string{"--loader", srv.URL, "ready", "loader"}, "", "loader ready: ready"},
		{"loader not ready", false, []string{"--loader", srv.URL, "ready", "loader"}, "loader not ready: " + srv.URL + "/readyz: 503 Service Unavailable: not ready: last apply failed: bird: syntax error", ""},
		{"agent down", true, []string{"--agent", "127.0.0.1:1", "ready", "agent"}, "agent not ready: ", ""},
		{"unknown component", true, []string{"ready", "bird"}, `ready "bird": want agent or loader`, ""},
		{"no component", true, []string{"ready"}, "accepts 1 arg(s)", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ready = tt.ready
			out, err := roostctl(tt.args...)
			if tt.wantErr == "" {
				if err != nil || !strings.Contains(out, tt.wantOut) {
					t.Errorf("err = %v, out = %q, want %q", err, out, tt.wantOut)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

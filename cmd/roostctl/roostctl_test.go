package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/roost-net/roost/internal/agentapi"
)

func testStatus() agentapi.Status {
	return agentapi.Status{
		Node: "node1", Source: "static", Ready: true,
		Desired:   []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")},
		LastApply: agentapi.Apply{Result: agentapi.ResultOK},
		Bird:      agentapi.Bird{Up: true, Version: "2.0.12"},
	}
}

// fakeAgent serves a fixed status on TCP, as roost-agent's listen address
// does: no config, no reload.
func fakeAgent(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc(agentapi.PathStatus, func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(testStatus())
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// control is a fake roost-agent control socket: it serves a config and
// reload on a unix socket, and records the requests it got.
type control struct {
	socket string
	mu     sync.Mutex
	cfg    agentapi.Config
	reload agentapi.Status
	reqs   []string // "METHOD path"
}

func fakeControl(t *testing.T, cfg agentapi.Config) *control {
	t.Helper()
	c := &control{socket: filepath.Join(t.TempDir(), "agent.sock"), cfg: cfg, reload: testStatus()}
	l, err := net.Listen("unix", c.socket)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+agentapi.PathConfig, func(w http.ResponseWriter, r *http.Request) {
		c.record(r)
		c.mu.Lock()
		defer c.mu.Unlock()
		json.NewEncoder(w).Encode(c.cfg)
	})
	mux.HandleFunc("POST "+agentapi.PathReload, func(w http.ResponseWriter, r *http.Request) {
		c.record(r)
		c.mu.Lock()
		defer c.mu.Unlock()
		json.NewEncoder(w).Encode(c.reload)
	})
	srv := &httptest.Server{Listener: l, Config: &http.Server{Handler: mux}}
	srv.Start()
	t.Cleanup(srv.Close)
	return c
}

func (c *control) record(r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reqs = append(c.reqs, r.Method+" "+r.URL.Path)
}

func (c *control) requests() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.reqs...)
}

func roostctl(args ...string) (string, error) {
	var out, errb bytes.Buffer
	err := run(context.Background(), args, &out, &errb)
	return out.String() + errb.String(), err
}

func TestStatus(t *testing.T) {
	srv := fakeAgent(t)
	out, err := roostctl("--agent", srv.URL, "status")
	if err != nil || !strings.Contains(out, "Desired:") || !strings.Contains(out, "10.244.1.0/24") || !strings.Contains(out, "Ready:") {
		t.Errorf("status: %v\n%s", err, out)
	}
	out, err = roostctl("--agent", srv.URL, "status", "-o", "json")
	var s agentapi.Status
	if err != nil || json.Unmarshal([]byte(out), &s) != nil || s.Node != "node1" {
		t.Errorf("status -o json: %v\n%s", err, out)
	}
}

func TestConfigUsesControlSocket(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bird.conf")
	srv := fakeAgent(t)
	c := fakeControl(t, agentapi.Config{File: file, Rendered: "router id 10.0.1.2;\n"})

	// --agent is not where the config is served.
	if out, err := roostctl("--agent", srv.URL, "--agent-socket", filepath.Join(t.TempDir(), "none.sock"), "config"); err == nil || !strings.Contains(err.Error(), "see --agent-socket") {
		t.Errorf("config without a control socket: %v %q", err, out)
	}
	if out, err := roostctl("--agent", srv.URL, "--agent-socket", c.socket, "config"); err != nil || out != "router id 10.0.1.2;\n" {
		t.Errorf("config: %v %q", err, out)
	}
	out, err := roostctl("--agent-socket", c.socket, "config", "-o", "json")
	var got agentapi.Config
	if err != nil || json.Unmarshal([]byte(out), &got) != nil || got.File != file {
		t.Errorf("config -o json: %v %q", err, out)
	}
	// No file yet: --diff shows the whole render and fails.
	out, err = roostctl("--agent-socket", c.socket, "config", "--diff")
	if err == nil || !strings.Contains(out, "+router id 10.0.1.2;") {
		t.Errorf("config --diff without file: %v\n%s", err, out)
	}
	os.WriteFile(file, []byte("router id 10.0.1.2;\n"), 0o640)
	if out, err := roostctl("--agent-socket", c.socket, "config", "--diff"); err != nil || out != "" {
		t.Errorf("config --diff equal: %v %q", err, out)
	}
	want := []string{"GET " + agentapi.PathConfig, "GET " + agentapi.PathConfig, "GET " + agentapi.PathConfig, "GET " + agentapi.PathConfig}
	if got := c.requests(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("control socket got %q, want %q", got, want)
	}
}

func TestConfigDiffRedacted(t *testing.T) {
	const (
		secret1 = "s3cret"
		secret2 = "p#a;s{s}'w/*o*/rd"
		head    = "router id 10.0.1.2;\n"
		peers   = "protocol bgp bgp_tor_a {\n\tneighbor 10.0.1.1 as 65000;\n\tpassword \"%s\";\n}\n" +
			"protocol bgp bgp_tor_b {\n\tneighbor 10.0.2.1 as 65000;\n\tpassword\t\"%s\";\n}\n"
	)
	conf := func(head, pw1, pw2 string) string { return head + fmt.Sprintf(peers, pw1, pw2) }
	rendered := conf(head, agentapi.Redacted, agentapi.Redacted)
	tests := []struct {
		name     string
		onDisk   string
		wantErr  bool
		wantDiff []string // lines the diff must hold
	}{
		{name: "equal but for the passwords", onDisk: conf(head, secret1, secret2)},
		{name: "other change", onDisk: conf("router id 10.0.9.9;\n", secret1, secret2), wantErr: true,
			wantDiff: []string{"-router id 10.0.9.9;", "+router id 10.0.1.2;"}},
		{name: "password added on disk only", onDisk: conf(head, secret1, secret2) + "protocol bgp x {\n\tpassword \"" + secret1 + "\";\n}\n", wantErr: true,
			wantDiff: []string{"-\tpassword \"<redacted>\";"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "bird.conf")
			if err := os.WriteFile(file, []byte(tt.onDisk), 0o600); err != nil {
				t.Fatal(err)
			}
			c := fakeControl(t, agentapi.Config{File: file, Rendered: rendered})
			for _, format := range []string{"table", "json"} {
				out, err := roostctl("--agent-socket", c.socket, "config", "--diff", "-o", format)
				if (err != nil) != tt.wantErr {
					t.Errorf("-o %s: err = %v, want error %v\n%s", format, err, tt.wantErr, out)
				}
				if strings.Contains(out, secret1) || strings.Contains(out, secret2) {
					t.Errorf("-o %s: a secret is printed:\n%s", format, out)
				}
				if format == "json" {
					var j struct {
						Equal             bool   `json:"equal"`
						Diff              string `json:"diff"`
						PasswordsRedacted bool   `json:"passwordsRedacted"`
					}
					if err := json.Unmarshal([]byte(out), &j); err != nil || j.Equal == tt.wantErr || !j.PasswordsRedacted {
						t.Errorf("-o json: %v %+v", err, j)
					}
					continue
				}
				if !tt.wantErr && out != "(passwords redacted on both sides, not compared)\n" {
					t.Errorf("equal configs: %q", out)
				}
				for _, l := range tt.wantDiff {
					if !strings.Contains(out, "\n"+l+"\n") {
						t.Errorf("diff lacks %q:\n%s", l, out)
					}
				}
			}
		})
	}
}

func TestReloadUsesControlSocket(t *testing.T) {
	srv := fakeAgent(t)
	c := fakeControl(t, agentapi.Config{})
	out, err := roostctl("--agent", srv.URL, "--agent-socket", c.socket, "reload")
	if err != nil || !strings.Contains(out, "Node:") || !strings.Contains(out, " ok at never") {
		t.Errorf("reload: %v\n%s", err, out)
	}
	if got := c.requests(); len(got) != 1 || got[0] != "POST "+agentapi.PathReload {
		t.Errorf("control socket got %q", got)
	}

	c.mu.Lock()
	c.reload.LastApply = agentapi.Apply{Result: agentapi.ResultFailed, Error: "bird: syntax error", Failures: 1}
	c.mu.Unlock()
	out, err = roostctl("--agent-socket", c.socket, "reload", "-o", "json")
	var s agentapi.Status
	if err == nil || !strings.Contains(err.Error(), "apply failed: bird: syntax error") || json.Unmarshal([]byte(out), &s) != nil {
		t.Errorf("failed reload: %v\n%s", err, out)
	}

	// Only the control socket serves reload: --agent alone does not.
	if _, err := roostctl("--agent", srv.URL, "--agent-socket", filepath.Join(t.TempDir(), "none.sock"), "reload"); err == nil || !strings.Contains(err.Error(), "is roost-agent running") || !strings.Contains(err.Error(), "see --agent-socket") {
		t.Errorf("reload without a control socket: %v", err)
	}
}

func TestBadUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad output", []string{"-o", "yaml", "status"}, `-o "yaml": want table or json`},
		{"agent down", []string{"--agent", "127.0.0.1:1", "status"}, "is roost-agent running? see --agent)"},
		{"control socket missing", []string{"--agent-socket", "/nonexistent/agent.sock", "config"}, "/nonexistent/agent.sock"},
		{"control socket hint", []string{"--agent-socket", "/nonexistent/agent.sock", "reload"}, "see --agent-socket)"},
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

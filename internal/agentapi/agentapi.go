// Package agentapi is the HTTP API of roost-agent as both ends see it: the
// JSON documents it serves, its paths, and a small client for roostctl.
package agentapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// Paths served by roost-agent on its listen address.
const (
	PathHealthz = "/healthz"
	PathReadyz  = "/readyz"
	PathMetrics = "/metrics"
	PathStatus  = "/v1/status"
	PathConfig  = "/v1/config"
	PathReload  = "/v1/reload"
)

// Apply results.
const (
	ResultOK      = "ok"      // BIRD runs the rendered config
	ResultFailed  = "failed"  // the last attempt failed; BIRD runs the previous config
	ResultWaiting = "waiting" // nothing was rendered yet (e.g. informer not synced)
	ResultPending = "pending" // no attempt yet
)

// Status is the document served at PathStatus.
type Status struct {
	Node string `json:"node"`
	// Source is "static" or "kubernetes".
	Source string `json:"source"`
	// Desired are the prefixes this node must announce.
	Desired []netip.Prefix `json:"desired"`
	// SourceMessage says why Desired is what it is when that is not
	// obvious, e.g. "node has no spec.podCIDRs yet".
	SourceMessage string `json:"sourceMessage,omitempty"`
	// ConfigError is the error of the last failed reload of the agent's
	// own config file; the agent keeps running the config it had.
	ConfigError  string         `json:"configError,omitempty"`
	Peers        []Peer         `json:"peers"`
	LastApply    Apply          `json:"lastApply"`
	Bird         Bird           `json:"bird"`
	Blackholes   []netip.Prefix `json:"blackholes,omitempty"`
	Ready        bool           `json:"ready"`
	ReadyMessage string         `json:"readyMessage,omitempty"`
}

// Peer is one configured peer as the agent sees it.
type Peer struct {
	Name     string     `json:"name"`
	Protocol string     `json:"protocol"` // BIRD protocol name
	Neighbor netip.Addr `json:"neighbor"`
	ASN      uint32     `json:"asn"`
	// State and BGPState come from BIRD's last poll ("" when unknown).
	State    string `json:"state"`
	BGPState string `json:"bgpState"`
}

// Apply describes the last apply attempt.
type Apply struct {
	Result   string        `json:"result"`
	Time     time.Time     `json:"time"`
	Error    string        `json:"error,omitempty"`
	Duration time.Duration `json:"durationNs"`
	// Prefixes BIRD was last successfully configured with.
	Applied []netip.Prefix `json:"applied"`
	// Attempts counts consecutive failures (0 after a success).
	Failures int `json:"failures"`
}

// Bird is what the agent last learnt of BIRD.
type Bird struct {
	Up         bool      `json:"up"`
	Version    string    `json:"version,omitempty"`
	LastReboot string    `json:"lastReboot,omitempty"`
	Error      string    `json:"error,omitempty"`
	Polled     time.Time `json:"polled"`
}

// Config is the document served at PathConfig.
type Config struct {
	// File is the path of the BIRD config file the agent owns.
	File string `json:"file"`
	// Rendered is what the agent renders from its current inputs ("" when
	// it renders nothing yet).
	Rendered string `json:"rendered"`
}

// Client talks to a roost-agent.
type Client struct {
	Base string // e.g. http://127.0.0.1:9479
	HTTP *http.Client
}

// NewClient returns a client for the agent at addr (host:port or URL).
func NewClient(addr string) *Client {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return &Client{Base: strings.TrimRight(addr, "/"), HTTP: &http.Client{Timeout: 5 * time.Second}}
}

// Status fetches PathStatus.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	return s, c.do(ctx, http.MethodGet, PathStatus, &s)
}

// Config fetches PathConfig.
func (c *Client) Config(ctx context.Context) (Config, error) {
	var s Config
	return s, c.do(ctx, http.MethodGet, PathConfig, &s)
}

// Reload asks the agent to re-read its config and apply again, and returns
// the status after that apply.
func (c *Client) Reload(ctx context.Context) (Status, error) {
	var s Status
	return s, c.do(ctx, http.MethodPost, PathReload, &s)
}

func (c *Client) do(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, nil)
	if err != nil {
		return fmt.Errorf("agent %s: %w", path, err)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("agent %s: %w (is roost-agent running? see --agent)", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("agent %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("agent %s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("agent %s: decode: %w", path, err)
	}
	return nil
}

// Package agentapi is the HTTP API of roost-agent as both ends see it: the
// JSON documents it serves, its paths, and a small client for roostctl.
package agentapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// Paths served by roost-agent. Health, readiness, metrics and status are
// served on its TCP listen address; the rendered config and reload only on
// its control socket, a unix socket whose file permissions say who may use
// it (root only by default).
const (
	PathHealthz = "/healthz"
	PathReadyz  = "/readyz"
	PathMetrics = "/metrics"
	PathStatus  = "/v1/status"
	PathConfig  = "/v1/config"
	PathReload  = "/v1/reload"
	// PathDrain (POST, a DrainRequest) and PathUndrain (POST) take the
	// node out of service and back, on the control socket only.
	PathDrain   = "/v1/drain"
	PathUndrain = "/v1/undrain"
)

// DefaultControlSocket is where roost-agent serves PathConfig and PathReload
// by default.
const DefaultControlSocket = "/run/roost/agent.sock"

// Peer states the agent reports besides BIRD's own.
const (
	// StateUnknown: BIRD does not answer, so the session's state is not
	// known (it is not assumed to be what it was).
	StateUnknown = "unknown"
)

// Redacted replaces every secret in what the agent serves.
const Redacted = "<redacted>"

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
	ConfigError string `json:"configError,omitempty"`
	Peers       []Peer `json:"peers"`
	LastApply   Apply  `json:"lastApply"`
	Bird        Bird   `json:"bird"`
	// BlackholeRoutes says whether the agent keeps kernel blackhole routes
	// (config blackholeRoutes).
	BlackholeRoutes bool `json:"blackholeRoutes"`
	// Blackholes are roost's blackhole routes the kernel held at the last
	// sync (read back from the kernel, not what was wanted).
	Blackholes []netip.Prefix `json:"blackholes"`
	// BlackholeError is the error of the last failed blackhole sync; ""
	// after a successful one.
	BlackholeError string `json:"blackholeError,omitempty"`
	Ready          bool   `json:"ready"`
	ReadyMessage   string `json:"readyMessage,omitempty"`
	// VIPs are the services' VIPs this node announces (config vips), kept
	// in their own kernel table rather than in BIRD's static protocols;
	// VIPError is the last failed sync of them ("" after a good one).
	VIPs     []netip.Prefix `json:"vips,omitempty"`
	VIPError string         `json:"vipError,omitempty"`
	// Drain is the node's drain state (roostctl drain).
	Drain Drain `json:"drain"`
}

// Peer is one configured peer as the agent sees it.
type Peer struct {
	Name     string     `json:"name"`
	Protocol string     `json:"protocol"` // BIRD protocol name
	Neighbor netip.Addr `json:"neighbor"`
	ASN      uint32     `json:"asn"`
	// Family is the session's address family, "ipv4" or "ipv6": the
	// family of the prefixes it carries.
	Family string `json:"family"`
	// State and BGPState come from BIRD's last poll; both are
	// StateUnknown while BIRD does not answer, "" before the first poll.
	State    string `json:"state"`
	BGPState string `json:"bgpState"`
	// Exported counts the routes BIRD exports to the peer (0 unless
	// Established).
	Exported int `json:"exported"`
}

// Apply describes the last apply attempt.
type Apply struct {
	Result   string        `json:"result"`
	Time     time.Time     `json:"time"`
	Error    string        `json:"error,omitempty"`
	Duration time.Duration `json:"durationNs"`
	// Prefixes BIRD was last successfully configured with.
	Applied []netip.Prefix `json:"applied"`
	// Failures counts consecutive failures (0 after a success).
	Failures int `json:"failures"`
	// RolledBack is true when the attempt's config was undone because a
	// session that was Established did not come back (configure timeout).
	RolledBack bool `json:"rolledBack,omitempty"`
}

// Bird is what the agent last learnt of BIRD.
type Bird struct {
	Up         bool   `json:"up"`
	Version    string `json:"version,omitempty"`
	LastReboot string `json:"lastReboot,omitempty"`
	// LastReconfig is BIRD's last reconfiguration time, by whoever made it.
	LastReconfig string    `json:"lastReconfig,omitempty"`
	Error        string    `json:"error,omitempty"`
	Polled       time.Time `json:"polled"`
	// Rollbacks counts configs BIRD undid since the agent started;
	// ExternalReconfigs counts reconfigurations the agent did not make
	// (and undid by applying its own config again).
	Rollbacks         int `json:"rollbacks"`
	ExternalReconfigs int `json:"externalReconfigs"`
	// Repair says what the agent last did to bird.conf while BIRD was down
	// (e.g. replaced a file BIRD could not parse); "" when nothing.
	Repair string `json:"repair,omitempty"`
}

// Drain states.
const (
	// DrainNone: everything is announced as usual.
	DrainNone = "none"
	// DrainDraining: everything is announced with GRACEFUL_SHUTDOWN
	// (65535:0) until WithdrawAt.
	DrainDraining = "draining"
	// DrainDrained: nothing is announced; the sessions stay up.
	DrainDrained = "drained"
)

// Drain is the node's drain state, kept across restarts (config
// drain.stateFile).
type Drain struct {
	State string `json:"state"` // DrainNone, DrainDraining or DrainDrained
	// Since is when the drain began (zero for DrainNone).
	Since time.Time `json:"since,omitzero"`
	// WithdrawAt is when a draining node withdraws everything.
	WithdrawAt time.Time `json:"withdrawAt,omitzero"`
	// Error is the last failure to keep the state in its file ("" when
	// none): the state holds in memory, but would not survive a restart.
	Error string `json:"error,omitempty"`
}

// DrainRequest is the body of PathDrain.
type DrainRequest struct {
	// Wait overrides config drain.wait: how long the routes carry
	// GRACEFUL_SHUTDOWN before they are withdrawn ("" for the config's).
	Wait string `json:"wait,omitempty"`
}

// Config is the document served at PathConfig.
type Config struct {
	// File is the path of the BIRD config file the agent owns.
	File string `json:"file"`
	// Rendered is what the agent renders from its current inputs ("" when
	// it renders nothing yet), with every password replaced by Redacted.
	Rendered string `json:"rendered"`
}

// Client talks to a roost-agent.
type Client struct {
	Base string // e.g. http://127.0.0.1:9479
	HTTP *http.Client
	// Hint is added to errors reaching the agent at all, to say what to
	// check, e.g. "is roost-agent running? see --agent".
	Hint string
}

// NewClient returns a client for the agent's TCP listen address addr
// (host:port or URL), which serves health, readiness, metrics and Status.
func NewClient(addr string) *Client {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return &Client{
		Base: strings.TrimRight(addr, "/"),
		HTTP: &http.Client{Timeout: 5 * time.Second},
		Hint: "is roost-agent running? see --agent",
	}
}

// NewControlClient returns a client for the agent's control socket at path
// (see DefaultControlSocket), which serves Config and Reload.
func NewControlClient(path string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}
	return &Client{
		Base: "http://roost-agent",
		HTTP: &http.Client{Timeout: 5 * time.Second, Transport: tr},
		Hint: "is roost-agent running, and may you use its control socket (root only by default)? see --agent-socket",
	}
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

// Drain asks the agent to drain the node (wait "" for its configured
// wait) and returns the drain state it entered.
func (c *Client) Drain(ctx context.Context, wait string) (Drain, error) {
	var d Drain
	body, _ := json.Marshal(DrainRequest{Wait: wait})
	return d, c.send(ctx, http.MethodPost, PathDrain, bytes.NewReader(body), &d)
}

// Undrain asks the agent to announce everything again.
func (c *Client) Undrain(ctx context.Context) (Drain, error) {
	var d Drain
	return d, c.send(ctx, http.MethodPost, PathUndrain, nil, &d)
}

func (c *Client) do(ctx context.Context, method, path string, out any) error {
	return c.send(ctx, method, path, nil, out)
}

func (c *Client) send(ctx context.Context, method, path string, in io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, in)
	if err != nil {
		return fmt.Errorf("agent %s: %w", path, err)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		if c.Hint != "" {
			return fmt.Errorf("agent %s: %w (%s)", path, err, c.Hint)
		}
		return fmt.Errorf("agent %s: %w", path, err)
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

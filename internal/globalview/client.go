package globalview

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Client is a connection to etcd, with the key layout and timeouts of one
// Config. Publishers and subscribers share it. It is safe for concurrent
// use.
type Client struct {
	etcd    *clientv3.Client
	layout  Layout
	timeout time.Duration // per request
	dial    time.Duration
	eps     []string
	tls     *tls.Config // nil for http
}

// New makes a client for cfg without contacting etcd: a daemon starts with
// etcd down, keeps its last view (or none) and catches up later. Use Check
// to learn whether etcd answers. It returns an error when cfg is invalid or
// its TLS files do not load.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("etcd config: %w", err)
	}
	tlsCfg, err := cfg.tlsConfig()
	if err != nil {
		return nil, fmt.Errorf("etcd config: %w", err)
	}
	eps := make([]string, len(cfg.Endpoints))
	for i, ep := range cfg.Endpoints {
		eps[i] = strings.TrimSuffix(ep, "/")
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   eps,
		DialTimeout: cfg.DialTimeout,
		// Keepalive pings find a connection to a member that stopped
		// answering (a frozen process, a lost host) and move to another.
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: cfg.RequestTimeout,
		TLS:                  tlsCfg,
		// Errors reach the caller through return values and status;
		// the client's own logging would repeat them on stderr.
		Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	return &Client{etcd: cli, layout: Layout{Root: cfg.Prefix}, timeout: cfg.RequestTimeout, dial: cfg.DialTimeout, eps: eps, tls: tlsCfg}, nil
}

// Close ends the connection. Publishers and subscribers using c must have
// stopped.
func (c *Client) Close() error { return c.etcd.Close() }

// Layout returns the key layout.
func (c *Client) Layout() Layout { return c.layout }

// Check makes one linearizable read (it needs a quorum) within the request
// timeout and returns its revision, or an error that says what is likely
// wrong (unreachable, a certificate refused, an unknown CA).
func (c *Client) Check(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := c.etcd.Get(ctx, c.layout.Root, clientv3.WithCountOnly())
	if err != nil {
		return 0, c.explain(err)
	}
	return resp.Header.Revision, nil
}

// count returns how many keys are under prefix, and the revision.
func (c *Client) count(ctx context.Context, prefix string) (n, rev int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := c.etcd.Get(ctx, prefix, clientv3.WithRange(clientv3.GetPrefixRangeEnd(prefix)), clientv3.WithCountOnly())
	if err != nil {
		return 0, 0, c.explain(err)
	}
	return resp.Count, resp.Header.Revision, nil
}

// explain wraps an error of a request with the endpoints and, when etcd
// did not answer in time, what a connection to each endpoint finds: the
// etcd client retries a refused connection or a failed TLS handshake until
// the deadline and then reports only the deadline.
func (c *Client) explain(err error) error {
	if !errors.Is(err, context.DeadlineExceeded) && status.Code(err) != codes.Unavailable && status.Code(err) != codes.DeadlineExceeded {
		return fmt.Errorf("etcd %s: %w", strings.Join(c.eps, ","), err)
	}
	var found []string
	for _, ep := range c.eps {
		if why := c.diagnose(ep); why != "" {
			found = append(found, why)
		}
	}
	if len(found) == 0 {
		found = append(found, "every endpoint accepts connections: is etcd overloaded, or without a quorum?")
	}
	return fmt.Errorf("etcd %s: %w (%s)", strings.Join(c.eps, ","), err, strings.Join(found, "; "))
}

// diagnose connects to one endpoint as the etcd client would and returns
// what goes wrong, with a hint, or "" when nothing does.
func (c *Client) diagnose(ep string) string {
	u, err := url.Parse(ep)
	if err != nil {
		return ""
	}
	timeout := min(c.dial, 2*time.Second)
	conn, err := net.DialTimeout("tcp", u.Host, timeout)
	if err != nil {
		return fmt.Sprintf("%s: %v: is etcd running and reachable there?", ep, err)
	}
	defer conn.Close()
	if c.tls == nil {
		return ""
	}
	cfg := c.tls.Clone()
	cfg.ServerName = u.Hostname()
	cfg.NextProtos = []string{"h2"}
	tc := tls.Client(conn, cfg)
	_ = tc.SetDeadline(time.Now().Add(timeout))
	if err := tc.Handshake(); err != nil {
		return fmt.Sprintf("%s: %v%s", ep, err, tlsHint(err))
	}
	// With TLS 1.3 the server checks the client's certificate after the
	// handshake: a refusal arrives as an alert on the first read, where
	// an accepted client reads the server's HTTP/2 settings.
	_ = tc.SetReadDeadline(time.Now().Add(timeout))
	var b [1]byte
	if _, err := tc.Read(b[:]); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Sprintf("%s: %v%s", ep, err, tlsHint(err))
	}
	return ""
}

// tlsHint says what to do about a TLS error.
func tlsHint(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "certificate required"), strings.Contains(msg, "bad certificate"),
		strings.Contains(msg, "unknown certificate authority"), strings.Contains(msg, "certificate unknown"):
		return ": etcd refused this client's certificate: set certFile and keyFile to a client certificate signed by the CA of etcd's --trusted-ca-file"
	case strings.Contains(msg, "x509:"):
		return ": etcd's serving certificate does not verify: set caFile to the CA that signed it, and name etcd by a host or IP its certificate holds"
	}
	return ""
}

package globalview

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/roost-net/roost/internal/fieldcheck"
)

// Config says how to reach etcd and where in it the global view lives. A
// configuration package embeds it (loader.yaml, roost-sync's) and calls
// Problems with its own field path.
type Config struct {
	// Endpoints are etcd's client URLs, all https or all http (http only
	// without TLS files, for a lab).
	Endpoints []string
	// CAFile verifies etcd's serving certificates; empty: the system's
	// roots.
	CAFile string
	// CertFile and KeyFile are this client's certificate and key, for
	// etcd's --client-cert-auth; both or neither.
	CertFile, KeyFile string
	// DialTimeout bounds connecting to one endpoint.
	DialTimeout time.Duration
	// RequestTimeout bounds every request that is not a watch.
	RequestTimeout time.Duration
	// Prefix is the root of the key layout; it starts and ends with '/'.
	Prefix string
}

// DefaultPrefix is the root of the key layout unless configured.
const DefaultPrefix = "/roost/v1/"

// Default returns the defaults: no endpoints (the global view is off until
// some are configured), 5 s to dial, 5 s per request, DefaultPrefix.
func Default() Config {
	return Config{DialTimeout: 5 * time.Second, RequestTimeout: 5 * time.Second, Prefix: DefaultPrefix}
}

// Validate returns every problem of c at once, each naming its field.
func (c Config) Validate() error { return c.Problems("").Err() }

// Problems returns every problem of c, each at its field below path ("" or
// a parent's path such as "globalView.etcd").
func (c Config) Problems(path string) fieldcheck.Problems {
	var ps fieldcheck.Problems
	field := func(name string) string {
		if path == "" {
			return name
		}
		return path + "." + name
	}
	if len(c.Endpoints) == 0 {
		ps.Add(field("endpoints"), "at least one etcd client URL is needed (https://host:2379)")
	}
	schemes := map[string]bool{}
	for i, ep := range c.Endpoints {
		f := fmt.Sprintf("%s[%d]", field("endpoints"), i)
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Path != "" && u.Path != "/" {
			ps.Add(f, "%q must be a URL https://host:port", ep)
			continue
		}
		if _, port, err := net.SplitHostPort(u.Host); err != nil || port == "" {
			ps.Add(f, "%q must name a port (https://host:2379)", ep)
			continue
		}
		schemes[u.Scheme] = true
	}
	if len(schemes) > 1 {
		ps.Add(field("endpoints"), "mixes http and https URLs: use one scheme for every endpoint")
	}
	tlsFiles := c.CAFile != "" || c.CertFile != "" || c.KeyFile != ""
	if schemes["http"] && tlsFiles {
		ps.Add(field("endpoints"), "are http URLs, but caFile, certFile or keyFile is set: use https URLs")
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		if c.CertFile == "" {
			ps.Add(field("certFile"), "is empty, but keyFile is set: set both or neither")
		} else {
			ps.Add(field("keyFile"), "is empty, but certFile is set: set both or neither")
		}
	}
	for _, f := range []struct{ name, path string }{{"caFile", c.CAFile}, {"certFile", c.CertFile}, {"keyFile", c.KeyFile}} {
		if f.path == "" {
			continue
		}
		if st, err := os.Stat(f.path); err != nil {
			ps.Add(field(f.name), "%v", err)
		} else if st.IsDir() {
			ps.Add(field(f.name), "%s is a directory, want a PEM file", f.path)
		}
	}
	if c.DialTimeout <= 0 {
		ps.Add(field("dialTimeout"), "%v must be positive", c.DialTimeout)
	}
	if c.RequestTimeout <= 0 {
		ps.Add(field("requestTimeout"), "%v must be positive", c.RequestTimeout)
	}
	if !strings.HasPrefix(c.Prefix, "/") || !strings.HasSuffix(c.Prefix, "/") || len(c.Prefix) < 2 {
		ps.Add(field("prefix"), "%q must start and end with '/' (default %q)", c.Prefix, DefaultPrefix)
	}
	return ps
}

// tlsConfig returns the client's TLS configuration, or nil for http.
func (c Config) tlsConfig() (*tls.Config, error) {
	if len(c.Endpoints) == 0 || !strings.HasPrefix(c.Endpoints[0], "https://") {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("caFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("caFile: %s holds no PEM certificate", c.CAFile)
		}
		cfg.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("certFile, keyFile: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// Package loaderconfig is roost-loader's configuration: its schema,
// defaults, loading with unknown fields rejected, and validation that
// reports every problem at once with its field path.
//
// A Config returned by Load is validated and must be treated as immutable.
package loaderconfig

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"

	"gopkg.in/yaml.v3"
)

// DefaultPath is where roost-loader reads its configuration by default.
const DefaultPath = "/etc/roost/loader.yaml"

// Config is the validated configuration of roost-loader.
type Config struct {
	// Node is this node's name, as Kubernetes knows it when Kubernetes is
	// enabled; also a label in logs and metrics.
	Node string
	// BPFFS is the directory on a BPF filesystem where the loader pins its
	// maps, programs and links.
	BPFFS string
	// PolicyDir holds the CiliumNetworkPolicy files (*.yaml, *.yml).
	PolicyDir string
	// EndpointsFile lists external workloads and pods not known to
	// Kubernetes; empty for none.
	EndpointsFile string
	// Kubernetes selects Kubernetes Pods as an endpoint source.
	Kubernetes Kubernetes
	// Listen is the host:port of the health, metrics and inspection API.
	Listen string
	// HostIPs are the node's own addresses: the ipcache maps them to the
	// host identity (policy.WithHostIPs). Empty means roost-loader takes
	// them from the node's interfaces itself.
	HostIPs []netip.Addr
}

// Kubernetes configures the Kubernetes endpoint source.
type Kubernetes struct {
	Enabled bool
	// Kubeconfig is a kubeconfig path; empty means in-cluster.
	Kubeconfig string
}

// Default returns the configuration defaults. Node is left empty: the caller
// fills in the hostname.
func Default() Config {
	return Config{
		BPFFS:         "/sys/fs/bpf/roost",
		PolicyDir:     "/etc/roost/policies",
		EndpointsFile: "/etc/roost/endpoints.yaml",
		Listen:        "127.0.0.1:9480",
	}
}

// file is the YAML form of Config: plain strings, so that one bad value does
// not stop the others from being checked.
type file struct {
	Node          *string   `yaml:"node"`
	BPFFS         *string   `yaml:"bpffs"`
	PolicyDir     *string   `yaml:"policyDir"`
	EndpointsFile *string   `yaml:"endpointsFile"`
	Kubernetes    *kubeFile `yaml:"kubernetes"`
	Listen        *string   `yaml:"listen"`
	HostIPs       []string  `yaml:"hostIPs"`
}

type kubeFile struct {
	Enabled    bool   `yaml:"enabled"`
	Kubeconfig string `yaml:"kubeconfig"`
}

// Load reads a YAML configuration from r on top of defaults (normally
// Default with Node set to the hostname) and validates it. Unknown fields are
// an error. Paths are cleaned (a trailing '/' is dropped). The returned error
// lists every problem found, each with its field path.
func Load(r io.Reader, defaults Config) (Config, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	var f file
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("parse config: %w", err)
	}
	c, convErrs := f.apply(defaults)
	// A field that failed to convert was left at its default; Validate's
	// complaint about that default would only repeat the problem.
	bad := map[string]bool{}
	var errs []error
	for _, p := range convErrs {
		bad[p.field] = true
		errs = append(errs, p)
	}
	for _, p := range c.problems() {
		if !bad[p.field] {
			errs = append(errs, p)
		}
	}
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	return c, nil
}

// problem is one thing wrong with a config, at a field path.
type problem struct {
	field string
	msg   string
}

func (p problem) Error() string { return p.field + ": " + p.msg }

// problems collects problems, each at its field.
type problems []problem

func (ps *problems) add(field, format string, args ...any) {
	*ps = append(*ps, problem{field: field, msg: fmt.Sprintf(format, args...)})
}

// apply converts the YAML form onto defaults, collecting conversion errors.
func (f file) apply(c Config) (Config, problems) {
	var errs problems
	bad := errs.add
	if f.Node != nil {
		c.Node = *f.Node
	}
	if f.BPFFS != nil {
		c.BPFFS = cleanPath(*f.BPFFS)
	}
	if f.PolicyDir != nil {
		c.PolicyDir = cleanPath(*f.PolicyDir)
	}
	if f.EndpointsFile != nil {
		c.EndpointsFile = cleanPath(*f.EndpointsFile)
	}
	if f.Kubernetes != nil {
		c.Kubernetes = Kubernetes{Enabled: f.Kubernetes.Enabled, Kubeconfig: f.Kubernetes.Kubeconfig}
	}
	if f.Listen != nil {
		c.Listen = *f.Listen
	}
	if f.HostIPs != nil {
		// A bad entry stays as the zero Addr, so that the indices
		// Validate reports are those of the file.
		c.HostIPs = nil
		if len(f.HostIPs) > 0 {
			c.HostIPs = make([]netip.Addr, len(f.HostIPs))
		}
		for i, s := range f.HostIPs {
			a, err := netip.ParseAddr(s)
			if err != nil {
				bad(fmt.Sprintf("hostIPs[%d]", i), "%q is not an IP address", s)
				continue
			}
			c.HostIPs[i] = a
		}
	}
	return c, errs
}

// cleanPath cleans a non-empty path; the empty path stays empty.
func cleanPath(p string) string {
	if p == "" {
		return ""
	}
	return filepath.Clean(p)
}

// Validate reports every problem of c at once, each naming its field.
func (c Config) Validate() error {
	var errs []error
	for _, p := range c.problems() {
		errs = append(errs, p)
	}
	return errors.Join(errs...)
}

func (c Config) problems() problems {
	var errs problems
	bad := errs.add
	if c.Node == "" {
		bad("node", "must be set (the hostname is the default)")
	}
	if !filepath.IsAbs(c.BPFFS) {
		bad("bpffs", "%q must be an absolute path (a directory on the BPF filesystem, e.g. /sys/fs/bpf/roost)", c.BPFFS)
	} else if c.BPFFS == "/" {
		bad("bpffs", "must not be /: the loader owns everything under it")
	}
	if !filepath.IsAbs(c.PolicyDir) {
		bad("policyDir", "%q must be an absolute path", c.PolicyDir)
	}
	if c.EndpointsFile != "" && !filepath.IsAbs(c.EndpointsFile) {
		bad("endpointsFile", "%q must be an absolute path, or empty for none", c.EndpointsFile)
	}
	if !c.Kubernetes.Enabled && c.Kubernetes.Kubeconfig != "" {
		bad("kubernetes.kubeconfig", "is set but kubernetes.enabled is false")
	}
	if c.Kubernetes.Kubeconfig != "" && !filepath.IsAbs(c.Kubernetes.Kubeconfig) {
		bad("kubernetes.kubeconfig", "%q must be an absolute path, or empty for in-cluster", c.Kubernetes.Kubeconfig)
	}
	if err := checkListen(c.Listen); err != nil {
		bad("listen", "%v", err)
	}
	seen := map[netip.Addr]int{}
	for i, a := range c.HostIPs {
		field := fmt.Sprintf("hostIPs[%d]", i)
		switch {
		case !a.IsValid():
			bad(field, "must be set")
			continue
		case a.Zone() != "":
			bad(field, "%s must not have a zone", a)
		case a.Is4In6():
			bad(field, "%s is IPv4-mapped; write %s", a, a.Unmap())
		case a.IsUnspecified() || a.IsMulticast() || a.IsLoopback():
			bad(field, "%s is not a unicast address of the node's interfaces", a)
		}
		if j, dup := seen[a]; dup {
			bad(field, "%s repeats hostIPs[%d]", a, j)
		}
		seen[a] = i
	}
	return errs
}

// checkListen accepts host:port with a literal IP host (or empty host) and a
// numeric port.
func checkListen(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port", s)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Errorf("%q: host must be an IP address", s)
		}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: port must be 0..65535", s)
	}
	return nil
}

// Package loaderconfig is roost-loader's configuration: its schema,
// defaults, loading with unknown fields rejected, and validation that
// reports every problem at once with its field path.
//
// A Config returned by Load is validated and must be treated as immutable.
package loaderconfig

import (
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"regexp"

	"github.com/roost-net/roost/internal/fieldcheck"
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
	// ServicesFile lists the services to load-balance and their
	// backends; empty for none. The socket load balancer (SocketLB)
	// serves it.
	ServicesFile string
	// SocketLB is the socket-level load balancer of the services'
	// frontends (east-west).
	SocketLB SocketLB
	// Kubernetes selects the Kubernetes API as a source: Pods, Namespaces,
	// Nodes, CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy.
	Kubernetes Kubernetes
	// Cluster is the local cluster's name: every endpoint carries it as
	// its io.cilium.k8s.policy.cluster label, and entity cluster selects
	// the endpoints that carry it.
	Cluster string
	// Listen is the host:port of the health, metrics and inspection API.
	Listen string
	// HostIPs are addresses of the node's own in addition to those the
	// loader finds on its interfaces: the ipcache maps them all to the host
	// identity, so rules with fromEntities host (and the implicit
	// allow-localhost) match traffic from them.
	HostIPs []netip.Addr
}

// SocketLB configures the socket-level load balancer.
type SocketLB struct {
	// Enabled attaches it; off, the services file is only checked.
	Enabled bool
	// Cgroup is the cgroup v2 directory it attaches to: every process in
	// it and below is served. Empty: the root of the cgroup v2 hierarchy
	// mounted in the loader's mount namespace (in a container, mount the
	// host's and name it here).
	Cgroup string
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
		ServicesFile:  "/etc/roost/services.yaml",
		Listen:        "127.0.0.1:9480",
		Cluster:       "default",
	}
}

// file is the YAML form of Config: plain strings, so that one bad value does
// not stop the others from being checked.
type file struct {
	Node          *string       `yaml:"node"`
	BPFFS         *string       `yaml:"bpffs"`
	PolicyDir     *string       `yaml:"policyDir"`
	EndpointsFile *string       `yaml:"endpointsFile"`
	ServicesFile  *string       `yaml:"servicesFile"`
	Kubernetes    *kubeFile     `yaml:"kubernetes"`
	SocketLB      *socketLBFile `yaml:"socketLB"`
	Listen        *string       `yaml:"listen"`
	Cluster       *string       `yaml:"cluster"`
	HostIPs       []string      `yaml:"hostIPs"`
}

type socketLBFile struct {
	Enabled bool   `yaml:"enabled"`
	Cgroup  string `yaml:"cgroup"`
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
	var f file
	if err := fieldcheck.Decode(r, &f); err != nil {
		return Config{}, err
	}
	c, convErrs := f.apply(defaults)
	if err := fieldcheck.Combine(convErrs, c.problems()); err != nil {
		return Config{}, err
	}
	return c, nil
}

// apply converts the YAML form onto defaults, collecting conversion errors.
func (f file) apply(c Config) (Config, fieldcheck.Problems) {
	var errs fieldcheck.Problems
	bad := errs.Add
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
	if f.ServicesFile != nil {
		c.ServicesFile = cleanPath(*f.ServicesFile)
	}
	if f.Kubernetes != nil {
		c.Kubernetes = Kubernetes{Enabled: f.Kubernetes.Enabled, Kubeconfig: f.Kubernetes.Kubeconfig}
	}
	if f.SocketLB != nil {
		c.SocketLB = SocketLB{Enabled: f.SocketLB.Enabled, Cgroup: cleanPath(f.SocketLB.Cgroup)}
	}
	if f.Listen != nil {
		c.Listen = *f.Listen
	}
	if f.Cluster != nil {
		c.Cluster = *f.Cluster
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

// clusterName is what Cilium accepts as a cluster name.
var clusterName = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,30}[a-z0-9])?$`)

// cleanPath cleans a non-empty path; the empty path stays empty.
func cleanPath(p string) string {
	if p == "" {
		return ""
	}
	return filepath.Clean(p)
}

// Validate reports every problem of c at once, each naming its field.
func (c Config) Validate() error { return c.problems().Err() }

func (c Config) problems() fieldcheck.Problems {
	var errs fieldcheck.Problems
	bad := errs.Add
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
	if c.ServicesFile != "" && !filepath.IsAbs(c.ServicesFile) {
		bad("servicesFile", "%q must be an absolute path, or empty for none", c.ServicesFile)
	}
	if c.SocketLB.Cgroup != "" && !filepath.IsAbs(c.SocketLB.Cgroup) {
		bad("socketLB.cgroup", "%q must be an absolute path (a cgroup v2 directory), or empty for the root of the hierarchy", c.SocketLB.Cgroup)
	}
	if !c.SocketLB.Enabled && c.SocketLB.Cgroup != "" {
		bad("socketLB.cgroup", "is set but socketLB.enabled is false")
	}
	if !c.Kubernetes.Enabled && c.Kubernetes.Kubeconfig != "" {
		bad("kubernetes.kubeconfig", "is set but kubernetes.enabled is false")
	}
	if c.Kubernetes.Kubeconfig != "" && !filepath.IsAbs(c.Kubernetes.Kubeconfig) {
		bad("kubernetes.kubeconfig", "%q must be an absolute path, or empty for in-cluster", c.Kubernetes.Kubeconfig)
	}
	if err := fieldcheck.Listen(c.Listen); err != nil {
		bad("listen", "%v", err)
	}
	if !clusterName.MatchString(c.Cluster) {
		bad("cluster", "%q must be 1-32 lower-case letters, digits and '-', starting with a letter and not ending with '-' (a Cilium cluster name)", c.Cluster)
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

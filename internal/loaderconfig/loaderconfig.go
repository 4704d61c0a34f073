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
	"slices"
	"strings"
	"time"

	"github.com/roost-net/roost/internal/fieldcheck"
	"github.com/roost-net/roost/internal/globalview"
	"github.com/roost-net/roost/internal/maglev"
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
	// XDPLB is the load balancer at the uplinks (north-south): VIPs and
	// node ports.
	XDPLB XDPLB
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
	// GlobalView is the global endpoint view on etcd: every cluster's
	// endpoints and every outside workload, enforced with the local ones.
	GlobalView GlobalView
}

// GlobalView configures the global endpoint view (docs/globalview.md).
type GlobalView struct {
	// Enabled is true when loader.yaml has a globalView section: the
	// loader then follows every origin's endpoints, and waits for its
	// first view of them before it applies a policy.
	Enabled bool
	// Etcd is how to reach etcd and where the view lives.
	Etcd globalview.Config
	// Publish has this loader campaign to publish its cluster's local
	// endpoints (the endpoints file's and Kubernetes' workloads) as the
	// origin cluster:<cluster>; one loader of the cluster, elected, writes.
	Publish bool
	// PublishTTL is the lease of the published endpoints: when every
	// publisher of the cluster is gone, they expire this long after the
	// last keepalive.
	PublishTTL time.Duration
	// SyncTimeout bounds the wait for the first view: after it the loader
	// enforces its local endpoints alone (and is not ready) rather than
	// nothing, until a view comes.
	SyncTimeout time.Duration
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

// XDPLB configures the uplink load balancer (bpf/lb.c).
type XDPLB struct {
	// Enabled attaches it; off, the services' VIPs and node ports are not
	// served.
	Enabled bool
	// Interfaces are the node's uplinks, where VIP and node-port traffic
	// arrives and replies leave: XDP and the reply translation attach
	// to each.
	Interfaces []string
	// Mode is the XDP attach mode: "auto" (native where the driver has
	// it, generic elsewhere; the default), "native" or "generic".
	Mode string
	// MaglevSize is the size of each frontend's Maglev table, a prime; 0
	// for maglev.DefaultSize (65537).
	MaglevSize uint64
	// SourceIPv4 and SourceIPv6 are the outer source addresses of packets
	// encapsulated to a backend on another node; unset, the first global
	// address of that family on the first interface.
	SourceIPv4, SourceIPv6 netip.Addr
}

// XDP attach modes.
var xdpModes = []string{"auto", "native", "generic"}

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
		GlobalView:    GlobalView{Etcd: globalview.Default(), Publish: true, PublishTTL: 30 * time.Second, SyncTimeout: time.Minute},
	}
}

// file is the YAML form of Config: plain strings, so that one bad value does
// not stop the others from being checked.
type file struct {
	Node          *string         `yaml:"node"`
	BPFFS         *string         `yaml:"bpffs"`
	PolicyDir     *string         `yaml:"policyDir"`
	EndpointsFile *string         `yaml:"endpointsFile"`
	ServicesFile  *string         `yaml:"servicesFile"`
	Kubernetes    *kubeFile       `yaml:"kubernetes"`
	SocketLB      *socketLBFile   `yaml:"socketLB"`
	XDPLB         *xdpLBFile      `yaml:"xdpLB"`
	Listen        *string         `yaml:"listen"`
	Cluster       *string         `yaml:"cluster"`
	HostIPs       []string        `yaml:"hostIPs"`
	GlobalView    *globalViewFile `yaml:"globalView"`
}

type globalViewFile struct {
	Etcd        *globalview.File `yaml:"etcd"`
	Publish     *bool            `yaml:"publish"`
	PublishTTL  *string          `yaml:"publishTTL"`
	SyncTimeout *string          `yaml:"syncTimeout"`
}

type socketLBFile struct {
	Enabled bool   `yaml:"enabled"`
	Cgroup  string `yaml:"cgroup"`
}

type xdpLBFile struct {
	Enabled    bool     `yaml:"enabled"`
	Interfaces []string `yaml:"interfaces"`
	Mode       string   `yaml:"mode"`
	MaglevSize uint64   `yaml:"maglevSize"`
	SourceIPv4 string   `yaml:"sourceIPv4"`
	SourceIPv6 string   `yaml:"sourceIPv6"`
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
	if x := f.XDPLB; x != nil {
		c.XDPLB = XDPLB{Enabled: x.Enabled, Interfaces: x.Interfaces, Mode: x.Mode, MaglevSize: x.MaglevSize}
		for _, a := range []struct {
			field, s string
			to       *netip.Addr
		}{{"xdpLB.sourceIPv4", x.SourceIPv4, &c.XDPLB.SourceIPv4}, {"xdpLB.sourceIPv6", x.SourceIPv6, &c.XDPLB.SourceIPv6}} {
			if a.s == "" {
				continue
			}
			ip, err := netip.ParseAddr(a.s)
			if err != nil {
				bad(a.field, "%q is not an IP address", a.s)
				continue
			}
			*a.to = ip
		}
	}
	if f.Listen != nil {
		c.Listen = *f.Listen
	}
	if f.Cluster != nil {
		c.Cluster = *f.Cluster
	}
	if g := f.GlobalView; g != nil {
		c.GlobalView.Enabled = true
		if g.Etcd != nil {
			var ps fieldcheck.Problems
			c.GlobalView.Etcd, ps = g.Etcd.Apply(c.GlobalView.Etcd, "globalView.etcd")
			errs = append(errs, ps...)
		}
		if g.Publish != nil {
			c.GlobalView.Publish = *g.Publish
		}
		for _, d := range []struct {
			field string
			s     *string
			to    *time.Duration
		}{{"globalView.publishTTL", g.PublishTTL, &c.GlobalView.PublishTTL}, {"globalView.syncTimeout", g.SyncTimeout, &c.GlobalView.SyncTimeout}} {
			if d.s == nil {
				continue
			}
			v, err := time.ParseDuration(*d.s)
			if err != nil {
				bad(d.field, "%q is not a duration (e.g. 30s)", *d.s)
				continue
			}
			*d.to = v
		}
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
	c.xdpProblems(bad)
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
	if c.GlobalView.Enabled {
		errs = append(errs, c.GlobalView.Etcd.Problems("globalView.etcd")...)
		if c.GlobalView.PublishTTL < 3*time.Second || c.GlobalView.PublishTTL%time.Second != 0 {
			bad("globalView.publishTTL", "%v must be whole seconds, at least 3s (a standby publisher takes over within a third of it)", c.GlobalView.PublishTTL)
		}
		if c.GlobalView.SyncTimeout <= 0 {
			bad("globalView.syncTimeout", "%v must be positive", c.GlobalView.SyncTimeout)
		}
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

func (c Config) xdpProblems(bad func(field, format string, args ...any)) {
	x := c.XDPLB
	if !x.Enabled {
		if len(x.Interfaces) > 0 || x.Mode != "" || x.MaglevSize != 0 || x.SourceIPv4.IsValid() || x.SourceIPv6.IsValid() {
			bad("xdpLB", "has settings but xdpLB.enabled is false")
		}
		return
	}
	if len(x.Interfaces) == 0 {
		bad("xdpLB.interfaces", "must name the node's uplinks (the interfaces facing the ToRs)")
	}
	seen := map[string]int{}
	for i, name := range x.Interfaces {
		field := fmt.Sprintf("xdpLB.interfaces[%d]", i)
		if name == "" || len(name) > 15 || strings.ContainsAny(name, "/ \t") {
			bad(field, "%q is not an interface name", name)
		}
		if j, dup := seen[name]; dup {
			bad(field, "%q repeats xdpLB.interfaces[%d]", name, j)
		}
		seen[name] = i
	}
	if x.Mode != "" && !slices.Contains(xdpModes, x.Mode) {
		bad("xdpLB.mode", "%q must be one of %s", x.Mode, strings.Join(xdpModes, ", "))
	}
	if x.MaglevSize != 0 {
		if err := maglev.CheckSize(x.MaglevSize); err != nil {
			bad("xdpLB.maglevSize", "%v", err)
		}
	}
	if a := x.SourceIPv4; a.IsValid() && (!a.Is4() || a.IsUnspecified() || a.IsMulticast() || a.IsLoopback()) {
		bad("xdpLB.sourceIPv4", "%s must be a unicast IPv4 address of this node", a)
	}
	if a := x.SourceIPv6; a.IsValid() && (!a.Is6() || a.Is4In6() || a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() || a.IsLoopback()) {
		bad("xdpLB.sourceIPv6", "%s must be a unicast IPv6 address of this node", a)
	}
}

package main

import (
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/roost-net/roost/internal/yamlfields"
)

// The two families, in the order everything of a family is listed: index 0
// is IPv4 ("ipv4" in the file), index 1 IPv6.
var families = [2]struct {
	key  string
	n    int
	name string
}{{"ipv4", 4, "IPv4"}, {"ipv6", 6, "IPv6"}}

// Lab is a parsed and validated description file.
type Lab struct {
	UplinkMTU int64
	// Clusters are the clusters' names: [DefaultCluster] for a file
	// without clusters, whose nodes are all of that one.
	Clusters []string
	Tors     []Tor
	Nodes    []Node
	Links    []Link
	Etcd     *Etcd // nil for none
	Sync     *Sync // nil for none
	Pods     []Pod
	VMs      []VM
	Services []Service
	Checks   [2][]Check // per family
}

// DefaultCluster is the one cluster of a file without clusters: the name
// roost-loader (and Cilium) use when none is configured.
const DefaultCluster = "default"

// Tor is a ToR (FRR).
type Tor struct {
	Name     string
	ASN      int64
	RouterID netip.Addr
}

// Node is a node (BIRD, roost-agent, roost-loader) of a cluster.
type Node struct {
	Name     string
	Cluster  string
	ASN      int64
	RouterID netip.Addr
	PodCIDR  [2]netip.Prefix
	Lo       [2]netip.Addr
}

// Link is a veth between a ToR and a node, with each end's address (and
// prefix length) per family.
type Link struct {
	Tor, Node         string
	TorAddr, NodeAddr [2]netip.Prefix
}

// Pod is a workload on a node.
type Pod struct {
	Name, Node, App string
	IP              [2]netip.Addr
	Listen          []int64
}

// VM is an external workload on a subnet of one ToR: listed in the
// endpoints file of Cluster, or registered through roost-sync Sync (one
// of the two is set).
type VM struct {
	Name, Tor, App string
	Cluster, Sync  string
	Addr           [2]netip.Prefix
	Gateway        [2]netip.Addr
	Listen         []int64
}

// Service is an entry of the services file of Cluster, its backends'.
type Service struct {
	Name       string
	Cluster    string
	ClusterIP  netip.Addr
	ExternalIP netip.Addr // the zero Addr for none
	Port       int64
	Backends   []string
}

// Check is a traffic check: Server is a workload, "svc:NAME" or "vip:NAME".
// Deregistered, for a client registered through roost-sync, is what the
// check gives once the client is deregistered ("" for not checked).
type Check struct {
	Client, Server string
	Port           int64
	Expect         string
	Deregistered   string
}

// Parse reads and validates a description file; source names it in
// problems. The error lists every problem, each as "source:line: path:
// message".
func Parse(r io.Reader, source string) (*Lab, error) {
	p := &parser{
		Parser:   yamlfields.New(source),
		kinds:    map[string]string{},
		addrs:    map[netip.Addr]string{},
		clusters: map[string]bool{},
		lab:      &Lab{},
	}
	p.file(p.Decode(r, "a lab description"))
	if err := p.Err(); err != nil {
		return nil, err
	}
	return p.lab, nil
}

type parser struct {
	*yamlfields.Parser
	lab *Lab
	// kinds maps every namespace's name to its kind ("tor", "node", "pod",
	// "vm", "etcd"); addrs every address a namespace holds to its path.
	kinds map[string]string
	addrs map[netip.Addr]string
	// clusters holds the clusters' names, clusterAt their entries (in
	// the order of lab.Clusters); listed whether the file lists them
	// (else every node is of DefaultCluster).
	clusters  map[string]bool
	clusterAt []*yaml.Node
	listed    bool
	// owned lists the prefixes that must not overlap (PodCIDRs, link and
	// vm subnets), with their paths.
	owned []ownedPrefix
}

type ownedPrefix struct {
	prefix netip.Prefix
	path   string
}

// nameRE is what a namespace's name may be: it names a namespace and, at
// the other end of a veth, an interface (at most 15 bytes).
var nameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,14}$`)

func (p *parser) file(n *yaml.Node) {
	if yamlfields.IsNull(n) {
		if len(p.Problems()) == 0 { // not a syntax error
			p.Failf(n, "", "the file is empty")
		}
		return
	}
	f := p.Object(n, "", "uplinkMTU", "clusters", "tors", "nodes", "links", "etcd", "sync", "pods", "vms", "services", "checks")
	if f == nil {
		return
	}
	for _, key := range []string{"uplinkMTU", "tors", "nodes", "links"} {
		if f[key] == nil {
			p.Failf(n, key, "missing")
		}
	}
	if f["uplinkMTU"] != nil {
		p.lab.UplinkMTU = p.inRange(f["uplinkMTU"], "uplinkMTU", "an MTU", 1280, 65535)
	}
	// In the order of their references, whatever the file's order.
	p.clusterList(f["clusters"])
	for i, t := range p.List(f["tors"], "tors") {
		p.tor(t, yamlfields.Index("tors", i))
	}
	for i, t := range p.List(f["nodes"], "nodes") {
		p.node(t, yamlfields.Index("nodes", i))
	}
	for i, t := range p.List(f["links"], "links") {
		p.link(t, yamlfields.Index("links", i))
	}
	if f["etcd"] != nil {
		p.etcd(f["etcd"], "etcd")
	}
	if f["sync"] != nil {
		p.sync(f["sync"], "sync")
	}
	for i, t := range p.List(f["pods"], "pods") {
		p.pod(t, yamlfields.Index("pods", i))
	}
	for i, t := range p.List(f["vms"], "vms") {
		p.vm(t, yamlfields.Index("vms", i))
	}
	for i, t := range p.List(f["services"], "services") {
		p.service(t, yamlfields.Index("services", i))
	}
	if f["checks"] != nil {
		c := p.Object(f["checks"], "checks", "ipv4", "ipv6")
		for fam := range families {
			path := yamlfields.Join("checks", families[fam].key)
			for i, t := range p.List(c[families[fam].key], path) {
				p.check(t, yamlfields.Index(path, i), fam)
			}
		}
	}
	if len(p.lab.Tors) == 0 && f["tors"] != nil {
		p.Failf(f["tors"], "tors", "no ToR: the lab needs one at least")
	}
	if len(p.lab.Nodes) == 0 && f["nodes"] != nil {
		p.Failf(f["nodes"], "nodes", "no node: the lab needs one at least")
	}
	p.clustersUsed(f["clusters"], f["etcd"] != nil)
	p.overlaps()
}

// name reads a namespace's name and records it as of kind; a name already
// taken, or not fit for a namespace and an interface, is a problem.
func (p *parser) name(obj map[string]*yaml.Node, parent *yaml.Node, path, kind string) string {
	n := obj["name"]
	path = yamlfields.Join(path, "name")
	if n == nil {
		p.Failf(parent, path, "missing")
		return ""
	}
	s, ok := p.Str(n, path)
	if !ok {
		return ""
	}
	switch {
	case !nameRE.MatchString(s):
		p.Failf(n, path, "%q is not a name: lower-case letters, digits and '-', starting with a letter, at most 15 characters (it names a namespace and an interface)", s)
		return ""
	case s == "lo" || s == "eth0":
		p.Failf(n, path, "%q is an interface every namespace (or pod) has already", s)
		return ""
	case p.kinds[s] != "":
		p.Failf(n, path, "%q is already the name of a %s: every ToR, node, pod, vm and etcd is a namespace and needs a name of its own", s, p.kinds[s])
		return ""
	}
	p.kinds[s] = kind
	return s
}

// ref reads the name of a namespace of kind (a reference), and checks that
// it exists.
func (p *parser) ref(obj map[string]*yaml.Node, parent *yaml.Node, path, key, kind string) string {
	n := obj[key]
	path = yamlfields.Join(path, key)
	if n == nil {
		p.Failf(parent, path, "missing")
		return ""
	}
	s, ok := p.Str(n, path)
	if !ok {
		return ""
	}
	if p.kinds[s] != kind {
		what := "nothing"
		if p.kinds[s] != "" {
			what = "a " + p.kinds[s]
		}
		p.Failf(n, path, "%q is not a %s of the file (it names %s)", s, kind, what)
		return ""
	}
	return s
}

// required returns obj[key], or records that it is missing.
func (p *parser) required(obj map[string]*yaml.Node, parent *yaml.Node, path, key string) *yaml.Node {
	if obj[key] == nil {
		p.Failf(parent, yamlfields.Join(path, key), "missing")
	}
	return obj[key]
}

func (p *parser) asn(n *yaml.Node, path string) int64 {
	return p.inRange(n, path, "an AS number", 1, 4294967295)
}

func (p *parser) port(n *yaml.Node, path string) int64 {
	return p.inRange(n, path, "a port number", 1, 65535)
}

// inRange reads an integer from lo to hi, what it is called in errors; 0
// when n is nil.
func (p *parser) inRange(n *yaml.Node, path, what string, lo, hi int64) int64 {
	if n == nil {
		return 0
	}
	v, ok := p.Integer(n, path, fmt.Sprintf("%s (%d to %d)", what, lo, hi))
	if ok && (v < lo || v > hi) {
		p.Failf(n, path, "%d is not %s (%d to %d)", v, what, lo, hi)
	}
	return v
}

// addr reads an address of family fam (0 IPv4, 1 IPv6; -1 either).
func (p *parser) addr(n *yaml.Node, path string, fam int) netip.Addr {
	if n == nil {
		return netip.Addr{}
	}
	s, ok := p.Str(n, path)
	if !ok {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		p.Failf(n, path, "%q is not an IP address", s)
		return netip.Addr{}
	}
	if fam >= 0 && a.Is4() != (fam == 0) {
		p.Failf(n, path, "%s is not an %s address", s, families[fam].name)
		return netip.Addr{}
	}
	if a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() {
		p.Failf(n, path, "%s cannot be a host's address", s)
		return netip.Addr{}
	}
	return a
}

// prefix reads ADDRESS/BITS of family fam; an interface address (iface)
// is any host of its subnet, a network (!iface) has no host bits.
func (p *parser) prefix(n *yaml.Node, path string, fam int, iface bool) netip.Prefix {
	if n == nil {
		return netip.Prefix{}
	}
	s, ok := p.Str(n, path)
	if !ok {
		return netip.Prefix{}
	}
	pf, err := netip.ParsePrefix(s)
	if err != nil {
		p.Failf(n, path, "%q is not ADDRESS/BITS", s)
		return netip.Prefix{}
	}
	if pf.Addr().Is4() != (fam == 0) {
		p.Failf(n, path, "%s is not an %s prefix", s, families[fam].name)
		return netip.Prefix{}
	}
	switch {
	case !iface && pf.Masked() != pf:
		p.Failf(n, path, "%s has host bits set: did you mean %s?", s, pf.Masked())
		return netip.Prefix{}
	case iface && (pf.Addr() == pf.Masked().Addr() || pf.Bits() == pf.Addr().BitLen()):
		p.Failf(n, path, "%s is not a host's address on a subnet", s)
		return netip.Prefix{}
	}
	return pf
}

// hold records that a namespace holds a, at path: no two may hold the same.
func (p *parser) hold(n *yaml.Node, path string, a netip.Addr) {
	if !a.IsValid() {
		return
	}
	if other, ok := p.addrs[a]; ok {
		p.Failf(n, path, "%s is already %s", a, other)
		return
	}
	p.addrs[a] = path
}

func (p *parser) own(pf netip.Prefix, path string) {
	if pf.IsValid() {
		p.owned = append(p.owned, ownedPrefix{pf.Masked(), path})
	}
}

// overlaps reports PodCIDRs and subnets that overlap.
func (p *parser) overlaps() {
	for i, a := range p.owned {
		for _, b := range p.owned[:i] {
			if a.prefix.Overlaps(b.prefix) {
				p.Failf(nil, a.path, "%s overlaps %s (%s)", a.prefix, b.prefix, b.path)
			}
		}
	}
}

func (p *parser) tor(n *yaml.Node, path string) {
	o := p.Object(n, path, "name", "asn", "routerID")
	if o == nil {
		return
	}
	t := Tor{
		Name:     p.name(o, n, path, "tor"),
		ASN:      p.asn(p.required(o, n, path, "asn"), yamlfields.Join(path, "asn")),
		RouterID: p.addr(p.required(o, n, path, "routerID"), yamlfields.Join(path, "routerID"), 0),
	}
	p.routerID(o["routerID"], yamlfields.Join(path, "routerID"), t.RouterID)
	p.lab.Tors = append(p.lab.Tors, t)
}

// routerID checks that no two BGP speakers share a router ID.
func (p *parser) routerID(n *yaml.Node, path string, id netip.Addr) {
	if !id.IsValid() {
		return
	}
	for _, t := range p.lab.Tors {
		if t.RouterID == id {
			p.Failf(n, path, "%s is already the router ID of %s", id, t.Name)
		}
	}
	for _, o := range p.lab.Nodes {
		if o.RouterID == id {
			p.Failf(n, path, "%s is already the router ID of %s", id, o.Name)
		}
	}
}

func (p *parser) node(n *yaml.Node, path string) {
	o := p.Object(n, path, "name", "cluster", "asn", "routerID", "ipv4", "ipv6")
	if o == nil {
		return
	}
	nd := Node{
		Name:     p.name(o, n, path, "node"),
		Cluster:  DefaultCluster,
		ASN:      p.asn(p.required(o, n, path, "asn"), yamlfields.Join(path, "asn")),
		RouterID: p.addr(p.required(o, n, path, "routerID"), yamlfields.Join(path, "routerID"), 0),
	}
	p.routerID(o["routerID"], yamlfields.Join(path, "routerID"), nd.RouterID)
	if p.listed || o["cluster"] != nil {
		nd.Cluster = p.clusterRef(o, n, path)
	}
	for fam, f := range families {
		fp := yamlfields.Join(path, f.key)
		fo := p.Object(p.required(o, n, path, f.key), fp, "podCIDR", "lo")
		if o[f.key] == nil || fo == nil {
			continue
		}
		nd.PodCIDR[fam] = p.prefix(p.required(fo, o[f.key], fp, "podCIDR"), yamlfields.Join(fp, "podCIDR"), fam, false)
		p.own(nd.PodCIDR[fam], yamlfields.Join(fp, "podCIDR"))
		lp := yamlfields.Join(fp, "lo")
		nd.Lo[fam] = p.addr(p.required(fo, o[f.key], fp, "lo"), lp, fam)
		p.hold(fo["lo"], lp, nd.Lo[fam])
		if nd.Lo[fam].IsValid() && nd.PodCIDR[fam].IsValid() && !nd.PodCIDR[fam].Contains(nd.Lo[fam]) {
			p.Failf(fo["lo"], lp, "%s is not in the node's PodCIDR %s (the ToRs route it by the PodCIDR)", nd.Lo[fam], nd.PodCIDR[fam])
		}
	}
	p.lab.Nodes = append(p.lab.Nodes, nd)
}

func (p *parser) link(n *yaml.Node, path string) {
	o := p.Object(n, path, "tor", "node", "ipv4", "ipv6")
	if o == nil {
		return
	}
	l := Link{Tor: p.ref(o, n, path, "tor", "tor"), Node: p.ref(o, n, path, "node", "node")}
	if l.Tor != "" && l.Node != "" {
		for _, other := range p.lab.Links {
			if other.Tor == l.Tor && other.Node == l.Node {
				p.Failf(n, path, "a second link between %s and %s (each end is named after the other namespace)", l.Tor, l.Node)
			}
		}
	}
	for fam, f := range families {
		fp := yamlfields.Join(path, f.key)
		fo := p.Object(p.required(o, n, path, f.key), fp, "tor", "node")
		if o[f.key] == nil || fo == nil {
			continue
		}
		tp, np := yamlfields.Join(fp, "tor"), yamlfields.Join(fp, "node")
		l.TorAddr[fam] = p.prefix(p.required(fo, o[f.key], fp, "tor"), tp, fam, true)
		l.NodeAddr[fam] = p.prefix(p.required(fo, o[f.key], fp, "node"), np, fam, true)
		p.hold(fo["tor"], tp, l.TorAddr[fam].Addr())
		p.hold(fo["node"], np, l.NodeAddr[fam].Addr())
		if l.TorAddr[fam].IsValid() && l.NodeAddr[fam].IsValid() {
			if l.TorAddr[fam].Masked() != l.NodeAddr[fam].Masked() {
				p.Failf(fo["node"], np, "%s is not on the subnet of the ToR's end, %s", l.NodeAddr[fam], l.TorAddr[fam].Masked())
			} else {
				p.own(l.TorAddr[fam], fp)
			}
		}
	}
	p.lab.Links = append(p.lab.Links, l)
}

// listen reads a workload's listening ports.
func (p *parser) listen(n *yaml.Node, path string) []int64 {
	var ports []int64
	for i, v := range p.List(n, path) {
		port := p.port(v, yamlfields.Index(path, i))
		for _, q := range ports {
			if q == port {
				p.Failf(v, yamlfields.Index(path, i), "port %d is listed twice", port)
			}
		}
		ports = append(ports, port)
	}
	return ports
}

func (p *parser) app(o map[string]*yaml.Node, parent *yaml.Node, path string) string {
	n := p.required(o, parent, path, "app")
	if n == nil {
		return ""
	}
	s, _ := p.Str(n, yamlfields.Join(path, "app"))
	if s != "" && !labelRE.MatchString(s) {
		p.Failf(n, yamlfields.Join(path, "app"), "%q is not a label value", s)
	}
	return s
}

var labelRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$`)

func (p *parser) pod(n *yaml.Node, path string) {
	o := p.Object(n, path, "name", "node", "ipv4", "ipv6", "app", "listen")
	if o == nil {
		return
	}
	pd := Pod{Name: p.name(o, n, path, "pod"), Node: p.ref(o, n, path, "node", "node"), App: p.app(o, n, path)}
	var node *Node
	for i := range p.lab.Nodes {
		if p.lab.Nodes[i].Name == pd.Node {
			node = &p.lab.Nodes[i]
		}
	}
	for fam, f := range families {
		fp := yamlfields.Join(path, f.key)
		pd.IP[fam] = p.addr(p.required(o, n, path, f.key), fp, fam)
		p.hold(o[f.key], fp, pd.IP[fam])
		if node != nil && pd.IP[fam].IsValid() && node.PodCIDR[fam].IsValid() && !node.PodCIDR[fam].Contains(pd.IP[fam]) {
			p.Failf(o[f.key], fp, "%s is not in %s's PodCIDR %s", pd.IP[fam], node.Name, node.PodCIDR[fam])
		}
	}
	pd.Listen = p.listen(o["listen"], yamlfields.Join(path, "listen"))
	p.lab.Pods = append(p.lab.Pods, pd)
}

func (p *parser) vm(n *yaml.Node, path string) {
	o := p.Object(n, path, "name", "tor", "cluster", "sync", "ipv4", "ipv6", "app", "listen")
	if o == nil {
		return
	}
	v := VM{Name: p.name(o, n, path, "vm"), Tor: p.ref(o, n, path, "tor", "tor"), App: p.app(o, n, path)}
	switch {
	case o["cluster"] != nil && o["sync"] != nil:
		p.Failf(o["sync"], yamlfields.Join(path, "sync"), "a vm has cluster or sync, not both: it is listed in its cluster's endpoints file, or registered through roost-sync")
	case o["sync"] != nil:
		v.Sync = p.syncRef(o["sync"], yamlfields.Join(path, "sync"))
	case o["cluster"] != nil || p.listed:
		if o["cluster"] == nil {
			p.Failf(n, path, "neither cluster nor sync: name the cluster whose endpoints file lists the vm, or the syncer that registers it (sync: %s)", p.syncName())
		} else {
			v.Cluster = p.clusterRef(o, n, path)
		}
	default:
		v.Cluster = DefaultCluster
	}
	for fam, f := range families {
		fp := yamlfields.Join(path, f.key)
		v.Addr[fam], v.Gateway[fam] = p.subnet(p.required(o, n, path, f.key), fp, fam, "vm")
	}
	v.Listen = p.listen(o["listen"], yamlfields.Join(path, "listen"))
	p.lab.VMs = append(p.lab.VMs, v)
}

// subnet reads a namespace's address on a ToR's subnet and the ToR's
// address there, its gateway ({address: ADDRESS/BITS, gateway: ADDRESS});
// what names the namespace's kind in problems.
func (p *parser) subnet(n *yaml.Node, path string, fam int, what string) (netip.Prefix, netip.Addr) {
	fo := p.Object(n, path, "address", "gateway")
	if n == nil || fo == nil {
		return netip.Prefix{}, netip.Addr{}
	}
	ap, gp := yamlfields.Join(path, "address"), yamlfields.Join(path, "gateway")
	addr := p.prefix(p.required(fo, n, path, "address"), ap, fam, true)
	gw := p.addr(p.required(fo, n, path, "gateway"), gp, fam)
	p.hold(fo["address"], ap, addr.Addr())
	p.hold(fo["gateway"], gp, gw)
	if addr.IsValid() && gw.IsValid() {
		if !addr.Contains(gw) {
			p.Failf(fo["gateway"], gp, "%s is not on the %s's subnet %s", gw, what, addr.Masked())
		} else {
			p.own(addr, path)
		}
	}
	return addr, gw
}

func (p *parser) service(n *yaml.Node, path string) {
	o := p.Object(n, path, "name", "clusterIP", "externalIP", "port", "backends")
	if o == nil {
		return
	}
	var s Service
	np := yamlfields.Join(path, "name")
	if nn := p.required(o, n, path, "name"); nn != nil {
		if name, ok := p.Str(nn, np); ok {
			switch {
			case !nameRE.MatchString(name):
				p.Failf(nn, np, "%q is not a name: lower-case letters, digits and '-', starting with a letter", name)
			case p.lab.service(name) != nil:
				p.Failf(nn, np, "a second service %q", name)
			default:
				s.Name = name
			}
		}
	}
	// IPv4 only: lab.sh routes and checks the VIPs as /32s.
	s.ClusterIP = p.addr(p.required(o, n, path, "clusterIP"), yamlfields.Join(path, "clusterIP"), 0)
	p.hold(o["clusterIP"], yamlfields.Join(path, "clusterIP"), s.ClusterIP)
	if o["externalIP"] != nil {
		s.ExternalIP = p.addr(o["externalIP"], yamlfields.Join(path, "externalIP"), 0)
		p.hold(o["externalIP"], yamlfields.Join(path, "externalIP"), s.ExternalIP)
	}
	s.Port = p.port(p.required(o, n, path, "port"), yamlfields.Join(path, "port"))
	bp := yamlfields.Join(path, "backends")
	bs := p.List(p.required(o, n, path, "backends"), bp)
	if o["backends"] != nil && len(bs) == 0 {
		p.Failf(o["backends"], bp, "no backend")
	}
	for i, b := range bs {
		ip := yamlfields.Index(bp, i)
		name, ok := p.Str(b, ip)
		if !ok {
			continue
		}
		pd := p.lab.pod(name)
		switch {
		case pd == nil:
			p.Failf(b, ip, "%q is not a pod of the file (a backend is a pod)", name)
		case s.Port != 0 && !listens(pd.Listen, s.Port):
			p.Failf(b, ip, "%s does not listen on the service's port %d (its listen list)", name, s.Port)
		}
		if c := p.lab.podCluster(name); c != "" {
			if s.Cluster == "" {
				s.Cluster = c
			} else if c != s.Cluster {
				p.Failf(b, ip, "%s is a pod of cluster %s, the service's first backend one of %s: a service's backends are of one cluster, whose nodes serve it", name, c, s.Cluster)
			}
		}
		s.Backends = append(s.Backends, name)
	}
	p.lab.Services = append(p.lab.Services, s)
}

func listens(ports []int64, port int64) bool {
	for _, q := range ports {
		if q == port {
			return true
		}
	}
	return false
}

func (p *parser) check(n *yaml.Node, path string, fam int) {
	o := p.Object(n, path, "client", "server", "port", "expect", "deregistered")
	if o == nil {
		return
	}
	var c Check
	cp := yamlfields.Join(path, "client")
	cn := p.required(o, n, path, "client")
	if cn != nil {
		if name, ok := p.Str(cn, cp); ok {
			if k := p.kinds[name]; k != "pod" && k != "vm" {
				p.Failf(cn, cp, "%q is not a pod or vm of the file", name)
			}
			c.Client = name
		}
	}
	c.Port = p.port(p.required(o, n, path, "port"), yamlfields.Join(path, "port"))
	c.Expect = yamlfields.OneOf(p.Parser, p.required(o, n, path, "expect"), yamlfields.Join(path, "expect"), "", "allow", "drop")
	if dn := o["deregistered"]; dn != nil {
		dp := yamlfields.Join(path, "deregistered")
		c.Deregistered = yamlfields.OneOf(p.Parser, dn, dp, "", "allow", "drop")
		if v := p.lab.vm(c.Client); c.Client != "" && (v == nil || v.Sync == "") {
			p.Failf(dn, dp, "%s is not a vm registered through roost-sync (a vm with sync:): only such a client is deregistered", c.Client)
		}
	}
	sp := yamlfields.Join(path, "server")
	sn := p.required(o, n, path, "server")
	if sn == nil {
		return
	}
	server, ok := p.Str(sn, sp)
	if !ok {
		return
	}
	c.Server = server
	if kind, name, isSvc := strings.Cut(server, ":"); isSvc {
		s := p.lab.service(name)
		switch {
		case kind != "svc" && kind != "vip":
			p.Failf(sn, sp, "%q: a server is a workload, svc:SERVICE or vip:SERVICE", server)
		case s == nil:
			p.Failf(sn, sp, "%q is not a service of the file", name)
		case fam != 0:
			p.Failf(sn, sp, "%s: the lab's services are IPv4 only; check them under checks.ipv4", server)
		case kind == "vip" && !s.ExternalIP.IsValid():
			p.Failf(sn, sp, "service %s has no externalIP", name)
		case c.Port != 0 && c.Port != s.Port:
			p.Failf(o["port"], yamlfields.Join(path, "port"), "%d is not service %s's port %d", c.Port, name, s.Port)
		case kind == "svc" && c.Client != "" && p.lab.podCluster(c.Client) != s.Cluster:
			p.Failf(cn, cp, "%s: a cluster IP is served by the socket load balancer of the client's node: the client must be a pod of cluster %s", server, s.Cluster)
		}
		p.lab.Checks[fam] = append(p.lab.Checks[fam], c)
		return
	}
	// A pod: its node's roost-loader counts the drops of a check.
	switch pd := p.lab.pod(server); {
	case pd == nil:
		p.Failf(sn, sp, "%q is not a pod of the file, nor svc:SERVICE or vip:SERVICE (a server is a pod: its node counts the drops)", server)
	case c.Port != 0 && !listens(pd.Listen, c.Port):
		p.Failf(o["port"], yamlfields.Join(path, "port"), "%s does not listen on %d (its listen list)", server, c.Port)
	}
	p.lab.Checks[fam] = append(p.lab.Checks[fam], c)
}

func (l *Lab) pod(name string) *Pod {
	for i := range l.Pods {
		if l.Pods[i].Name == name {
			return &l.Pods[i]
		}
	}
	return nil
}

func (l *Lab) vm(name string) *VM {
	for i := range l.VMs {
		if l.VMs[i].Name == name {
			return &l.VMs[i]
		}
	}
	return nil
}

func (l *Lab) node(name string) *Node {
	for i := range l.Nodes {
		if l.Nodes[i].Name == name {
			return &l.Nodes[i]
		}
	}
	return nil
}

// podCluster returns the cluster of pod name (its node's), "" for no pod.
func (l *Lab) podCluster(name string) string {
	if pd := l.pod(name); pd != nil {
		if nd := l.node(pd.Node); nd != nil {
			return nd.Cluster
		}
	}
	return ""
}

func (l *Lab) service(name string) *Service {
	for i := range l.Services {
		if l.Services[i].Name == name {
			return &l.Services[i]
		}
	}
	return nil
}

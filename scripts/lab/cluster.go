package main

import (
	"net/netip"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/roost-net/roost/internal/yamlfields"
)

// Etcd is the lab's etcd: one member in a namespace of its own on a subnet
// of one ToR, as a vm is. Every node's roost-loader follows the global
// view there and publishes its cluster's endpoints to it.
type Etcd struct {
	Name, Tor string
	// Addr and Gateway per family; the IPv6 ones are zero for none.
	Addr    [2]netip.Prefix
	Gateway [2]netip.Addr
}

// Sync is the lab's roost-sync: it runs in etcd's namespace, listens on
// Port there, and publishes the vms registered through its API as origin
// sync:<Name>, into Cluster when set.
type Sync struct {
	Name    string
	Port    int64
	Cluster string
}

// The etcd member's client and peer ports, in its namespace.
const (
	EtcdClientPort = 2379
	EtcdPeerPort   = 2380
)

// clusterRE is what Cilium accepts as a cluster name, the rule of
// globalview's origins (and of loader.yaml's cluster); syncers' names
// follow it too. The tests check that the two agree.
var clusterRE = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,30}[a-z0-9])?$`)

const clusterRule = "1-32 lower-case letters, digits and '-', starting with a letter and not ending with '-'"

// clusterList reads the clusters; without them (n nil) the lab has one,
// DefaultCluster.
func (p *parser) clusterList(n *yaml.Node) {
	if n == nil {
		p.clusters[DefaultCluster] = true
		p.lab.Clusters = []string{DefaultCluster}
		return
	}
	p.listed = true
	items := p.List(n, "clusters")
	if len(items) == 0 && len(p.Problems()) == 0 {
		p.Failf(n, "clusters", "no cluster: list one at least, or leave clusters out for one cluster (%s)", DefaultCluster)
	}
	for i, t := range items {
		path := yamlfields.Index("clusters", i)
		o := p.Object(t, path, "name")
		if o == nil {
			continue
		}
		name, ok := p.Str(p.required(o, t, path, "name"), yamlfields.Join(path, "name"))
		switch {
		case !ok:
		case !clusterRE.MatchString(name):
			p.Failf(o["name"], yamlfields.Join(path, "name"), "%q is not a cluster name: %s (Cilium's rule)", name, clusterRule)
		case p.clusters[name]:
			p.Failf(o["name"], yamlfields.Join(path, "name"), "a second cluster %q", name)
		default:
			p.clusters[name] = true
			p.lab.Clusters = append(p.lab.Clusters, name)
			p.clusterAt = append(p.clusterAt, t)
		}
	}
}

// clusterRef reads obj's cluster, a reference to a cluster of the file.
func (p *parser) clusterRef(obj map[string]*yaml.Node, parent *yaml.Node, path string) string {
	n := p.required(obj, parent, path, "cluster")
	path = yamlfields.Join(path, "cluster")
	if n == nil {
		return ""
	}
	s, ok := p.Str(n, path)
	switch {
	case !ok:
		return ""
	case !p.listed:
		p.Failf(n, path, "%q is not a cluster of the file: it lists no clusters (add them under clusters)", s)
		return ""
	case !p.clusters[s]:
		p.Failf(n, path, "%q is not a cluster of the file (clusters: %s)", s, strings.Join(p.lab.Clusters, ", "))
		return ""
	}
	return s
}

// clustersUsed checks that every cluster listed has a node, and that
// several clusters have an etcd to meet in.
func (p *parser) clustersUsed(n *yaml.Node, hasEtcd bool) {
	if !p.listed {
		return
	}
	for i, c := range p.lab.Clusters {
		if p.lab.clusterNodes(c) == nil {
			p.Failf(p.clusterAt[i], "clusters", "cluster %s has no node (a node names its cluster)", c)
		}
	}
	if len(p.lab.Clusters) > 1 && !hasEtcd {
		p.Failf(n, "clusters", "%d clusters and no etcd: the loaders of one cluster learn the other clusters' endpoints only from etcd's global view", len(p.lab.Clusters))
	}
}

// clusterNodes returns the names of cluster c's nodes, in the file's order.
func (l *Lab) clusterNodes(c string) []string {
	var names []string
	for _, nd := range l.Nodes {
		if nd.Cluster == c {
			names = append(names, nd.Name)
		}
	}
	return names
}

func (p *parser) etcd(n *yaml.Node, path string) {
	o := p.Object(n, path, "name", "tor", "ipv4", "ipv6")
	if o == nil {
		return
	}
	e := &Etcd{Name: p.name(o, n, path, "etcd"), Tor: p.ref(o, n, path, "tor", "tor")}
	e.Addr[0], e.Gateway[0] = p.subnet(p.required(o, n, path, "ipv4"), yamlfields.Join(path, "ipv4"), 0, "etcd")
	if o["ipv6"] != nil {
		e.Addr[1], e.Gateway[1] = p.subnet(o["ipv6"], yamlfields.Join(path, "ipv6"), 1, "etcd")
	}
	// The ToRs do not route each other's subnets: a loader reaches etcd
	// over its node's link to etcd's ToR.
	if e.Tor != "" {
		for _, nd := range p.lab.Nodes {
			linked := false
			for _, l := range p.lab.Links {
				linked = linked || (l.Tor == e.Tor && l.Node == nd.Name)
			}
			if !linked {
				p.Failf(o["tor"], yamlfields.Join(path, "tor"), "%s is not linked to %s: every node's roost-loader reaches etcd over its link to etcd's ToR", nd.Name, e.Tor)
			}
		}
	}
	p.lab.Etcd = e
}

func (p *parser) sync(n *yaml.Node, path string) {
	o := p.Object(n, path, "name", "port", "cluster")
	if o == nil {
		return
	}
	if p.lab.Etcd == nil {
		p.Failf(n, path, "roost-sync needs etcd: add an etcd entry (roost-sync runs in its namespace)")
	}
	s := &Sync{}
	np := yamlfields.Join(path, "name")
	if name, ok := p.Str(p.required(o, n, path, "name"), np); ok {
		if clusterRE.MatchString(name) {
			s.Name = name
		} else {
			p.Failf(o["name"], np, "%q is not a syncer's name: %s (it publishes as origin sync:<name>)", name, clusterRule)
		}
	}
	pp := yamlfields.Join(path, "port")
	s.Port = p.port(p.required(o, n, path, "port"), pp)
	if s.Port == EtcdClientPort || s.Port == EtcdPeerPort {
		p.Failf(o["port"], pp, "%d is etcd's, in the same namespace", s.Port)
	}
	if o["cluster"] != nil {
		s.Cluster = p.clusterRef(o, n, path)
	}
	p.lab.Sync = s
}

// syncRef reads a vm's sync: the name of the file's syncer.
func (p *parser) syncRef(n *yaml.Node, path string) string {
	s, ok := p.Str(n, path)
	switch {
	case !ok:
		return ""
	case p.lab.Sync == nil:
		p.Failf(n, path, "%q: the file has no sync entry (roost-sync) to register the vm", s)
		return ""
	case s != p.lab.Sync.Name:
		p.Failf(n, path, "%q is not the file's syncer (%s)", s, p.lab.Sync.Name)
		return ""
	}
	return s
}

// syncName returns the file's syncer's name, for messages.
func (p *parser) syncName() string {
	if p.lab.Sync != nil && p.lab.Sync.Name != "" {
		return p.lab.Sync.Name
	}
	return "SYNCER"
}

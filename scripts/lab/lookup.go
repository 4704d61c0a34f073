package main

import (
	"net/netip"
	"os"
	"strings"
)

// Lookups in a description, shared by the commands. fam is a family's
// index: 0 IPv4, 1 IPv6 (families).

// workloadIP returns the address of family fam of workload w (a pod or a
// vm); the zero Addr for none.
func (s *Lab) workloadIP(w string, fam int) netip.Addr {
	if p := s.pod(w); p != nil {
		return p.IP[fam]
	}
	if v := s.vm(w); v != nil {
		return v.Addr[fam].Addr()
	}
	return netip.Addr{}
}

// workloadApp returns the app label of workload w.
func (s *Lab) workloadApp(w string) string {
	if p := s.pod(w); p != nil {
		return p.App
	}
	if v := s.vm(w); v != nil {
		return v.App
	}
	return ""
}

// podNode returns the node of pod w; "" for a vm (on no node).
func (s *Lab) podNode(w string) string {
	if p := s.pod(w); p != nil {
		return p.Node
	}
	return ""
}

// workloadCluster returns the cluster whose endpoints file lists w (a
// pod's node's, or a vm's Cluster); "" for a vm roost-sync registers.
func (s *Lab) workloadCluster(w string) string {
	if c := s.podCluster(w); c != "" {
		return c
	}
	if v := s.vm(w); v != nil {
		return v.Cluster
	}
	return ""
}

// enforcedPod reports whether the seed policy selects pod w: the
// app=protected-db ones.
func (s *Lab) enforcedPod(w string) bool { return s.workloadApp(w) == "protected-db" }

// nodeCluster returns node n's cluster.
func (s *Lab) nodeCluster(n string) string {
	if nd := s.node(n); nd != nil {
		return nd.Cluster
	}
	return ""
}

// link returns the link between tor and node; nil for none.
func (s *Lab) link(tor, node string) *Link {
	for i := range s.Links {
		if s.Links[i].Tor == tor && s.Links[i].Node == node {
			return &s.Links[i]
		}
	}
	return nil
}

// nodeLinks returns node's links, in the file's order.
func (s *Lab) nodeLinks(node string) []Link {
	var out []Link
	for _, k := range s.Links {
		if k.Node == node {
			out = append(out, k)
		}
	}
	return out
}

// uplinks returns the names of node's uplinks: each is named after the ToR
// at its other end.
func (s *Lab) uplinks(node string) []string {
	var out []string
	for _, k := range s.nodeLinks(node) {
		out = append(out, k.Tor)
	}
	return out
}

// vips returns the external IPs (VIPs) of cluster c's services (of every
// service when c is ""): the nodes of a service's cluster announce and
// serve them.
func (s *Lab) vips(c string) []netip.Addr {
	var out []netip.Addr
	for _, sv := range s.Services {
		if (c == "" || sv.Cluster == c) && sv.ExternalIP.IsValid() {
			out = append(out, sv.ExternalIP)
		}
	}
	return out
}

// Attached is a namespace on a subnet of one ToR: a vm, or etcd.
type Attached struct {
	Name, Tor string
	Addr      [2]netip.Prefix // per family; the zero Prefix for none
	Gateway   [2]netip.Addr   // the ToR's address on the subnet
}

// attached returns the namespaces on a ToR's subnet: the vms, then etcd.
func (s *Lab) attached() []Attached {
	var out []Attached
	for _, v := range s.VMs {
		out = append(out, Attached{Name: v.Name, Tor: v.Tor, Addr: v.Addr, Gateway: v.Gateway})
	}
	if s.Etcd != nil {
		out = append(out, Attached{Name: s.Etcd.Name, Tor: s.Etcd.Tor, Addr: s.Etcd.Addr, Gateway: s.Etcd.Gateway})
	}
	return out
}

// syncedVMs returns the vms roost-sync registers.
func (s *Lab) syncedVMs() []string {
	var out []string
	for _, v := range s.VMs {
		if v.Sync != "" {
			out = append(out, v.Name)
		}
	}
	return out
}

// etcdIP returns etcd's address of family fam; the zero Addr for none.
func (s *Lab) etcdIP(fam int) netip.Addr {
	if s.Etcd == nil {
		return netip.Addr{}
	}
	return s.Etcd.Addr[fam].Addr()
}

// syncListen returns roost-sync's API address: etcd's IPv4 address and
// the sync port.
func (s *Lab) syncListen() string {
	if s.Sync == nil {
		return ""
	}
	return netip.AddrPortFrom(s.etcdIP(0), uint16(s.Sync.Port)).String()
}

// namespaces returns every namespace of the lab, in the order they are
// made: the ToRs, the nodes, the pods, the attached.
func (s *Lab) namespaces() []string {
	var out []string
	for _, t := range s.Tors {
		out = append(out, t.Name)
	}
	for _, n := range s.Nodes {
		out = append(out, n.Name)
	}
	for _, p := range s.Pods {
		out = append(out, p.Name)
	}
	for _, a := range s.attached() {
		out = append(out, a.Name)
	}
	return out
}

// mounted reports whether a file system of type fstype ("bpf", "cgroup2")
// is mounted on dir.
func mounted(dir, fstype string) bool {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[1] == dir && f[2] == fstype {
			return true
		}
	}
	return false
}

package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// WorkloadNamespace is every workload's namespace: the endpoints files
// name none (roost-loader's default), and roost-lab registers the synced
// vms in it.
const WorkloadNamespace = "default"

// EndpointsFile returns roost-loader's endpoints file for the nodes of
// cluster c: its pods and the vms it lists, each with its addresses (IPv4
// then IPv6) and app label, and its nodes with their addresses (one per
// uplink and lo's, IPv4 then IPv6). To policy, a node is host on itself
// and remote-node elsewhere, in its cluster and, through the global view,
// in the others.
func (l *Lab) EndpointsFile(c string) string {
	var b, entries strings.Builder
	entry := func(name, app string, ips ...netip.Addr) {
		fmt.Fprintf(&entries, "\n  - name: %s\n    ips: [%s]\n    labels: {app: %s}", name, addrs(ips), strconv.Quote(app))
	}
	for _, p := range l.Pods {
		if l.podCluster(p.Name) == c {
			entry(p.Name, p.App, p.IP[:]...)
		}
	}
	for _, v := range l.VMs {
		if v.Cluster == c {
			entry(v.Name, v.App, v.Addr[0].Addr(), v.Addr[1].Addr())
		}
	}
	if entries.Len() == 0 {
		entries.WriteString(" []")
	}
	b.WriteString("# written by roost-lab (scripts/lab): the workloads of cluster " + c + "\nendpoints:" + entries.String() + "\n")
	b.WriteString("# its nodes: their uplinks' and lo's addresses\nnodes:\n")
	for _, nd := range l.Nodes {
		if nd.Cluster != c {
			continue
		}
		var ips []netip.Addr
		for fam := range families {
			for _, k := range l.Links {
				if k.Node == nd.Name {
					ips = append(ips, k.NodeAddr[fam].Addr())
				}
			}
			ips = append(ips, nd.Lo[fam])
		}
		fmt.Fprintf(&b, "  - name: %s\n    ips: [%s]\n", nd.Name, addrs(ips))
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// ServicesFile returns roost-loader's (and roost-agent's) services file
// for the nodes of cluster c: the services whose backends are its pods.
func (l *Lab) ServicesFile(c string) string {
	var b strings.Builder
	b.WriteString("# written by roost-lab (scripts/lab): the services of cluster " + c + "\nservices:")
	n := 0
	for _, s := range l.Services {
		if s.Cluster != c {
			continue
		}
		n++
		fmt.Fprintf(&b, "\n  - name: %s\n    clusterIPs: [%s]\n", s.Name, s.ClusterIP)
		if s.ExternalIP.IsValid() {
			fmt.Fprintf(&b, "    externalIPs: [%s]\n", s.ExternalIP)
		}
		var backends []string
		for _, name := range s.Backends {
			if p := l.pod(name); p != nil {
				backends = append(backends, fmt.Sprintf("{ip: %s, node: %s}", p.IP[0], p.Node))
			}
		}
		fmt.Fprintf(&b, "    ports: [{port: %d}]\n    backends: [%s]", s.Port, strings.Join(backends, ", "))
	}
	if n == 0 {
		b.WriteString(" []")
	}
	return b.String()
}

// Registration returns the body of roost-sync's PUT
// /v1/workloads/{namespace}/{name} for vm v: its addresses and app label.
func (v VM) Registration() string {
	var ips []string
	for _, a := range v.Addr {
		if a.IsValid() {
			ips = append(ips, a.Addr().String())
		}
	}
	b, err := json.Marshal(struct {
		IPs    []string          `json:"ips"`
		Labels map[string]string `json:"labels"`
	}{ips, map[string]string{"app": v.App}})
	if err != nil {
		panic(err) // strings only
	}
	return string(b)
}

// ViewName returns the name a roost-loader of another cluster lists
// workload w by, learnt from the global view: "cluster:C/NAMESPACE/NAME"
// for a pod of cluster C or a vm its endpoints file lists,
// "sync:S/NAMESPACE/NAME" for a vm syncer S registers; "" for no
// workload.
func (l *Lab) ViewName(w string) string {
	origin := ""
	if c := l.podCluster(w); c != "" {
		origin = "cluster:" + c
	} else if v := l.vm(w); v != nil && v.Cluster != "" {
		origin = "cluster:" + v.Cluster
	} else if v != nil && v.Sync != "" {
		origin = "sync:" + v.Sync
	} else {
		return ""
	}
	return origin + "/" + WorkloadNamespace + "/" + w
}

// addrs prints the valid addresses of ips, ", "-separated.
func addrs(ips []netip.Addr) string {
	var s []string
	for _, a := range ips {
		if a.IsValid() {
			s = append(s, a.String())
		}
	}
	return strings.Join(s, ", ")
}

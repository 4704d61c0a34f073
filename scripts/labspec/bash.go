package main

import (
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Quote returns s as one bash word that stands for s exactly: in single
// quotes, each single quote written '\”.
func Quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// bashWriter prints read-only global bash declarations (declare -g, so
// that they stay global when evaluated inside a function).
type bashWriter struct {
	w   io.Writer
	err error
}

func (b *bashWriter) printf(format string, args ...any) {
	if b.err == nil {
		_, b.err = fmt.Fprintf(b.w, format, args...)
	}
}

// scalar declares NAME=value.
func (b *bashWriter) scalar(name, value string) {
	b.printf("declare -gr %s=%s\n", name, Quote(value))
}

// array declares the indexed array NAME.
func (b *bashWriter) array(name string, values []string) {
	q := make([]string, len(values))
	for i, v := range values {
		q[i] = Quote(v)
	}
	b.printf("declare -gra %s=(%s)\n", name, strings.Join(q, " "))
}

// assoc is an associative array's entries in the order they are printed.
type assoc struct{ keys, values []string }

func (a *assoc) set(key, value string) {
	a.keys = append(a.keys, key)
	a.values = append(a.values, value)
}

// assoc declares the associative array NAME.
func (b *bashWriter) assoc(name string, a assoc) {
	q := make([]string, len(a.keys))
	for i := range a.keys {
		q[i] = "[" + Quote(a.keys[i]) + "]=" + Quote(a.values[i])
	}
	b.printf("declare -grA %s=(%s)\n", name, strings.Join(q, " "))
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// WriteBash prints the lab as the bash declarations lab.sh evaluates. A
// family is 4 or 6 in keys ("node1/6"); records of several fields are
// space-separated (names and addresses hold no spaces).
//
//	UPLINK_MTU                     the node-ToR links' MTU
//	CLUSTERS                       names ("default" alone for a file without clusters)
//	TORS, NODES, PODS, VMS         names, in the file's order
//	TOR_ASN[tor], TOR_ROUTER_ID[tor]
//	CLUSTER_NODES[c]               its nodes, space-separated
//	NODE_CLUSTER[node], NODE_ASN[node], NODE_ROUTER_ID[node]
//	NODE_PODCIDR[node/F], NODE_LO[node/F]
//	LINKS                          "TOR NODE N", N numbering the links from 1
//	LINK_ID[tor/node]              N
//	LINK_ADDR[N/tor/F], LINK_ADDR[N/node/F]   each end's address
//	LINK_BITS[N/F]                 the link's prefix length
//	WORKLOAD_IP[w/F], WORKLOAD_APP[w]          pods and vms
//	WORKLOAD_CLUSTER[w]            the cluster whose endpoints file lists w
//	                               (not set for a vm roost-sync registers)
//	POD_NODE[pod]
//	VM_SYNC[vm]                    the syncer that registers vm (only those)
//	ATTACHED                       the namespaces on a ToR's subnet: vms, then etcd
//	SUBNET_TOR[ns], SUBNET_ADDR[ns/F] (ADDRESS/BITS), SUBNET_NET[ns/F] (the
//	                               prefix), SUBNET_GATEWAY[ns/F] (the ToR's
//	                               address): of ATTACHED; etcd's IPv6 keys are
//	                               not set when it has none
//	SERVERS                        "WORKLOAD PORT..." (those that listen)
//	SERVICES                       "NAME CLUSTER-IP EXTERNAL-IP|- PORT BACKEND..."
//	SERVICE_CLUSTER[name]          its backends' cluster, whose nodes serve it
//	ENDPOINTS_FILE[c], SERVICES_FILE[c]        cluster c's files (their text)
//	ETCD                           etcd's namespace ("" for none)
//	SYNC, SYNC_PORT, SYNC_CLUSTER  roost-sync's name ("" for none), its API
//	                               port in etcd's namespace, its cluster ("" none)
//	WORKLOAD_NAMESPACE             every workload's namespace
//	REGISTRATION[vm]               roost-sync's PUT body for a vm it registers
//	VIEW_NAME[w]                   the name another cluster's loader lists w
//	                               by, from the global view (only with etcd)
//	CHECKS, CHECKS6                "CLIENT SERVER PORT allow|drop"
//	DEREG_CHECKS, DEREG_CHECKS6    the same, expected once the client is
//	                               deregistered from roost-sync
func (l *Lab) WriteBash(w io.Writer) error {
	b := &bashWriter{w: w}
	b.printf("# the lab's description, printed by scripts/labspec\n")
	b.scalar("UPLINK_MTU", itoa(l.UplinkMTU))
	b.array("CLUSTERS", l.Clusters)
	var clusterNodes assoc
	for _, c := range l.Clusters {
		clusterNodes.set(c, strings.Join(l.clusterNodes(c), " "))
	}
	b.assoc("CLUSTER_NODES", clusterNodes)

	var names []string
	var torASN, torID assoc
	for _, t := range l.Tors {
		names = append(names, t.Name)
		torASN.set(t.Name, itoa(t.ASN))
		torID.set(t.Name, t.RouterID.String())
	}
	b.array("TORS", names)
	b.assoc("TOR_ASN", torASN)
	b.assoc("TOR_ROUTER_ID", torID)

	names = nil
	var nodeCluster, nodeASN, nodeID, podCIDR, lo assoc
	for _, n := range l.Nodes {
		names = append(names, n.Name)
		nodeCluster.set(n.Name, n.Cluster)
		nodeASN.set(n.Name, itoa(n.ASN))
		nodeID.set(n.Name, n.RouterID.String())
		for fam, f := range families {
			key := fmt.Sprintf("%s/%d", n.Name, f.n)
			podCIDR.set(key, n.PodCIDR[fam].String())
			lo.set(key, n.Lo[fam].String())
		}
	}
	b.array("NODES", names)
	b.assoc("NODE_CLUSTER", nodeCluster)
	b.assoc("NODE_ASN", nodeASN)
	b.assoc("NODE_ROUTER_ID", nodeID)
	b.assoc("NODE_PODCIDR", podCIDR)
	b.assoc("NODE_LO", lo)

	var links []string
	var linkID, linkAddr, linkBits assoc
	for i, k := range l.Links {
		n := i + 1
		links = append(links, fmt.Sprintf("%s %s %d", k.Tor, k.Node, n))
		linkID.set(k.Tor+"/"+k.Node, strconv.Itoa(n))
		for fam, f := range families {
			linkAddr.set(fmt.Sprintf("%d/tor/%d", n, f.n), k.TorAddr[fam].Addr().String())
			linkAddr.set(fmt.Sprintf("%d/node/%d", n, f.n), k.NodeAddr[fam].Addr().String())
			linkBits.set(fmt.Sprintf("%d/%d", n, f.n), strconv.Itoa(k.TorAddr[fam].Bits()))
		}
	}
	b.array("LINKS", links)
	b.assoc("LINK_ID", linkID)
	b.assoc("LINK_ADDR", linkAddr)
	b.assoc("LINK_BITS", linkBits)

	var pods, vms, servers, attached []string
	var ip, app, wCluster, podNode, vmSync, subnetTor, subnetAddr, subnetNet, subnetGateway, registration, viewName assoc
	listen := func(name string, ports []int64) {
		if len(ports) == 0 {
			return
		}
		s := name
		for _, p := range ports {
			s += " " + itoa(p)
		}
		servers = append(servers, s)
	}
	for _, p := range l.Pods {
		pods = append(pods, p.Name)
		for fam, f := range families {
			ip.set(fmt.Sprintf("%s/%d", p.Name, f.n), p.IP[fam].String())
		}
		app.set(p.Name, p.App)
		wCluster.set(p.Name, l.podCluster(p.Name))
		podNode.set(p.Name, p.Node)
		listen(p.Name, p.Listen)
	}
	attach := func(name, tor string, addr [2]netip.Prefix, gw [2]netip.Addr) {
		attached = append(attached, name)
		subnetTor.set(name, tor)
		for fam, f := range families {
			if !addr[fam].IsValid() {
				continue
			}
			key := fmt.Sprintf("%s/%d", name, f.n)
			subnetAddr.set(key, addr[fam].String())
			subnetNet.set(key, addr[fam].Masked().String())
			subnetGateway.set(key, gw[fam].String())
		}
	}
	for _, v := range l.VMs {
		vms = append(vms, v.Name)
		attach(v.Name, v.Tor, v.Addr, v.Gateway)
		for fam, f := range families {
			ip.set(fmt.Sprintf("%s/%d", v.Name, f.n), v.Addr[fam].Addr().String())
		}
		app.set(v.Name, v.App)
		if v.Cluster != "" {
			wCluster.set(v.Name, v.Cluster)
		}
		if v.Sync != "" {
			vmSync.set(v.Name, v.Sync)
			registration.set(v.Name, v.Registration())
		}
		listen(v.Name, v.Listen)
	}
	etcd := ""
	if l.Etcd != nil {
		etcd = l.Etcd.Name
		attach(l.Etcd.Name, l.Etcd.Tor, l.Etcd.Addr, l.Etcd.Gateway)
		for _, w := range slices.Concat(pods, vms) {
			viewName.set(w, l.ViewName(w))
		}
	}
	b.array("PODS", pods)
	b.array("VMS", vms)
	b.assoc("WORKLOAD_IP", ip)
	b.assoc("WORKLOAD_APP", app)
	b.assoc("WORKLOAD_CLUSTER", wCluster)
	b.assoc("POD_NODE", podNode)
	b.assoc("VM_SYNC", vmSync)
	b.array("ATTACHED", attached)
	b.assoc("SUBNET_TOR", subnetTor)
	b.assoc("SUBNET_ADDR", subnetAddr)
	b.assoc("SUBNET_NET", subnetNet)
	b.assoc("SUBNET_GATEWAY", subnetGateway)
	b.array("SERVERS", servers)

	var services []string
	var serviceCluster, endpointsFile, servicesFile assoc
	for _, s := range l.Services {
		vip := "-"
		if s.ExternalIP.IsValid() {
			vip = s.ExternalIP.String()
		}
		services = append(services, strings.Join(append([]string{s.Name, s.ClusterIP.String(), vip, itoa(s.Port)}, s.Backends...), " "))
		serviceCluster.set(s.Name, s.Cluster)
	}
	b.array("SERVICES", services)
	b.assoc("SERVICE_CLUSTER", serviceCluster)
	for _, c := range l.Clusters {
		endpointsFile.set(c, l.EndpointsFile(c))
		servicesFile.set(c, l.ServicesFile(c))
	}
	b.assoc("ENDPOINTS_FILE", endpointsFile)
	b.assoc("SERVICES_FILE", servicesFile)

	b.scalar("ETCD", etcd)
	syncName, syncPort, syncCluster := "", "", ""
	if l.Sync != nil {
		syncName, syncPort, syncCluster = l.Sync.Name, itoa(l.Sync.Port), l.Sync.Cluster
	}
	b.scalar("SYNC", syncName)
	b.scalar("SYNC_PORT", syncPort)
	b.scalar("SYNC_CLUSTER", syncCluster)
	b.scalar("WORKLOAD_NAMESPACE", WorkloadNamespace)
	b.assoc("REGISTRATION", registration)
	b.assoc("VIEW_NAME", viewName)

	for fam, names := range [2][2]string{{"CHECKS", "DEREG_CHECKS"}, {"CHECKS6", "DEREG_CHECKS6"}} {
		var checks, dereg []string
		for _, c := range l.Checks[fam] {
			checks = append(checks, c.String())
			if c.Deregistered != "" {
				d := c
				d.Expect = c.Deregistered
				dereg = append(dereg, d.String())
			}
		}
		b.array(names[0], checks)
		b.array(names[1], dereg)
	}
	return b.err
}

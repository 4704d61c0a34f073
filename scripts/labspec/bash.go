package main

import (
	"fmt"
	"io"
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
//	TORS, NODES, PODS, VMS         names, in the file's order
//	TOR_ASN[tor], TOR_ROUTER_ID[tor]
//	NODE_ASN[node], NODE_ROUTER_ID[node]
//	NODE_PODCIDR[node/F], NODE_LO[node/F]
//	LINKS                          "TOR NODE N", N numbering the links from 1
//	LINK_ID[tor/node]              N
//	LINK_ADDR[N/tor/F], LINK_ADDR[N/node/F]   each end's address
//	LINK_BITS[N/F]                 the link's prefix length
//	WORKLOAD_IP[w/F], WORKLOAD_APP[w]          pods and vms
//	POD_NODE[pod]
//	VM_TOR[vm], VM_NET[vm/F] (a prefix), VM_GATEWAY[vm/F]
//	SERVERS                        "WORKLOAD PORT..." (those that listen)
//	SERVICES                       "NAME CLUSTER-IP EXTERNAL-IP|- PORT BACKEND..."
//	CHECKS, CHECKS6                "CLIENT SERVER PORT allow|drop"
func (l *Lab) WriteBash(w io.Writer) error {
	b := &bashWriter{w: w}
	b.printf("# the lab's description, printed by scripts/labspec\n")
	b.scalar("UPLINK_MTU", itoa(l.UplinkMTU))

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
	var nodeASN, nodeID, podCIDR, lo assoc
	for _, n := range l.Nodes {
		names = append(names, n.Name)
		nodeASN.set(n.Name, itoa(n.ASN))
		nodeID.set(n.Name, n.RouterID.String())
		for fam, f := range families {
			key := fmt.Sprintf("%s/%d", n.Name, f.n)
			podCIDR.set(key, n.PodCIDR[fam].String())
			lo.set(key, n.Lo[fam].String())
		}
	}
	b.array("NODES", names)
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

	var pods, vms, servers []string
	var ip, app, podNode, vmTor, vmNet, vmGateway assoc
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
		podNode.set(p.Name, p.Node)
		listen(p.Name, p.Listen)
	}
	for _, v := range l.VMs {
		vms = append(vms, v.Name)
		vmTor.set(v.Name, v.Tor)
		for fam, f := range families {
			key := fmt.Sprintf("%s/%d", v.Name, f.n)
			ip.set(key, v.Addr[fam].Addr().String())
			vmNet.set(key, v.Addr[fam].Masked().String())
			vmGateway.set(key, v.Gateway[fam].String())
		}
		app.set(v.Name, v.App)
		listen(v.Name, v.Listen)
	}
	b.array("PODS", pods)
	b.array("VMS", vms)
	b.assoc("WORKLOAD_IP", ip)
	b.assoc("WORKLOAD_APP", app)
	b.assoc("POD_NODE", podNode)
	b.assoc("VM_TOR", vmTor)
	b.assoc("VM_NET", vmNet)
	b.assoc("VM_GATEWAY", vmGateway)
	b.array("SERVERS", servers)

	var services []string
	for _, s := range l.Services {
		vip := "-"
		if s.ExternalIP.IsValid() {
			vip = s.ExternalIP.String()
		}
		services = append(services, strings.Join(append([]string{s.Name, s.ClusterIP.String(), vip, itoa(s.Port)}, s.Backends...), " "))
	}
	b.array("SERVICES", services)

	for fam, name := range [2]string{"CHECKS", "CHECKS6"} {
		var checks []string
		for _, c := range l.Checks[fam] {
			checks = append(checks, c.String())
		}
		b.array(name, checks)
	}
	return b.err
}

package policy

import (
	"fmt"
	"strings"
)

// String describes the identity: "reserved:host", "cidr:10.0.0.0/8" or
// "labels:app=db,tier=backend" ("labels:" alone for no labels).
func (i IdentityInfo) String() string {
	switch {
	case i.Reserved != "":
		return "reserved:" + i.Reserved
	case i.ID.IsCIDR():
		return "cidr:" + i.Prefix.String()
	default:
		return "labels:" + canonicalLabels(i.Labels)
	}
}

// Short describes the identity compactly for tables: a label identity as
// "namespace:k=v,k=v" with only the workload's own labels (not its
// namespace's labels, nor ClusterLabel when it is cluster), reserved and
// CIDR identities as String does.
func (i IdentityInfo) Short(cluster string) string {
	ns, ok := i.Labels[NamespaceLabel]
	if i.Reserved != "" || i.ID.IsCIDR() || !ok {
		return i.String()
	}
	own := make(map[string]string, len(i.Labels))
	for k, v := range i.Labels {
		switch {
		case k == NamespaceLabel, strings.HasPrefix(k, NamespaceLabelsPrefix), k == ClusterLabel && v == cluster:
		default:
			own[k] = v
		}
	}
	if len(own) == 0 {
		return ns + ":(no labels)"
	}
	return ns + ":" + canonicalLabels(own)
}

// String returns the rule reference as "policy rule (file:line)".
func (r RuleRef) String() string {
	if r.Policy == "" {
		return "implicit " + r.Rule
	}
	return fmt.Sprintf("%s %s (%s)", r.Policy, r.Rule, r.Source)
}

// Ports returns the entry's protocol and ports: "all" (every protocol and
// port: an L3 entry), "TCP" (every port), "TCP/80", "UDP/8000-8100" or
// "ICMP/8" (an ICMP type).
func (e Entry) Ports() string {
	switch {
	case e.Protocol == ProtoAny:
		return "all"
	case e.AllPorts():
		return e.Protocol.String()
	case e.EndPort == e.Port:
		return fmt.Sprintf("%s/%d", e.Protocol, e.Port)
	default:
		return fmt.Sprintf("%s/%d-%d", e.Protocol, e.Port, e.EndPort)
	}
}

// String is the stable text form of the resolution, used by --dry-run and
// the golden tests: identities, ipcache, then each local endpoint's table.
func (r Resolved) String() string {
	var b strings.Builder
	names := make(map[Identity]string, len(r.Identities))
	b.WriteString("identities:\n")
	for _, id := range r.Identities {
		names[id.ID] = id.String()
		fmt.Fprintf(&b, "  %d %s", id.ID, id)
		if len(id.Endpoints) > 0 {
			fmt.Fprintf(&b, " [%s]", strings.Join(id.Endpoints, " "))
		}
		b.WriteByte('\n')
	}
	b.WriteString("ipcache:\n")
	for _, e := range r.IPCache {
		fmt.Fprintf(&b, "  %s %d\n", e.Prefix, e.Identity)
	}
	b.WriteString("endpoints:\n")
	for _, ep := range r.Endpoints {
		ips := make([]string, len(ep.IPs))
		for i, ip := range ep.IPs {
			ips[i] = ip.String()
		}
		state := "open"
		if ep.Enforced {
			state = "enforced"
		}
		fmt.Fprintf(&b, "  %s [%s] identity %d: ingress %s\n", ep.Name, strings.Join(ips, " "), ep.Identity, state)
		for _, ref := range ep.SelectedBy {
			fmt.Fprintf(&b, "    selected by %s\n", ref)
		}
		for _, e := range ep.Entries {
			from := "any"
			if e.Remote != IdentityAny {
				from = fmt.Sprintf("%d %s", e.Remote, names[e.Remote])
			}
			refs := make([]string, len(e.Sources))
			for i, s := range e.Sources {
				refs[i] = s.String()
			}
			fmt.Fprintf(&b, "    %-5s %s from %s <- %s\n", e.Verdict, e.Ports(), from, strings.Join(refs, "; "))
		}
	}
	return b.String()
}

package services

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/roost-net/roost/internal/community"
)

// Describe returns services as text, one line per frontend and port with
// the backends of its family, sorted by service name:
//
//	services:
//	  default/db
//	    clusterIP 10.96.0.10:6379/TCP redis -> 10.244.1.10:6379 on node1, 10.244.2.12:6379 on node2 (not ready, serving, terminating)
//	    nodePort *:30079/TCP redis -> ...
//
// Settings other than the defaults follow the service's name. A backend
// whose named port does not resolve shows why.
func Describe(svcs []Service) string {
	var b strings.Builder
	b.WriteString("services:\n")
	if len(svcs) == 0 {
		b.WriteString("  none\n")
	}
	sorted := slices.Clone(svcs)
	slices.SortStableFunc(sorted, func(a, b Service) int { return strings.Compare(a.FullName(), b.FullName()) })
	for _, s := range sorted {
		fmt.Fprintf(&b, "  %s%s\n", s.FullName(), settings(s))
		for _, fe := range s.Frontends() {
			for _, p := range s.Ports {
				fmt.Fprintf(&b, "    %s %s/%s%s -> %s\n", fe.Kind, netip.AddrPortFrom(fe.Addr, p.Port), p.Protocol, portName(p), backends(p, s.BackendsFor(fe.Addr)))
			}
		}
		for _, p := range s.Ports {
			if p.NodePort != 0 {
				fmt.Fprintf(&b, "    nodePort *:%d/%s%s -> %s\n", p.NodePort, p.Protocol, portName(p), backends(p, s.Backends))
			}
		}
	}
	return b.String()
}

// settings lists the service's settings that are not the defaults.
func settings(s Service) string {
	var out []string
	if s.ExternalTrafficPolicy != TrafficPolicyCluster {
		out = append(out, "externalTrafficPolicy "+string(s.ExternalTrafficPolicy))
	}
	if s.InternalTrafficPolicy != TrafficPolicyCluster {
		out = append(out, "internalTrafficPolicy "+string(s.InternalTrafficPolicy))
	}
	if s.SessionAffinity != SessionAffinityNone {
		out = append(out, fmt.Sprintf("sessionAffinity %s %s", s.SessionAffinity, s.SessionAffinityTimeout))
	}
	if len(s.BGPCommunities) > 0 {
		out = append(out, "bgpCommunities "+community.Join(s.BGPCommunities))
	}
	if len(out) == 0 {
		return ""
	}
	return " (" + strings.Join(out, ", ") + ")"
}

func portName(p Port) string {
	if p.Name == "" {
		return ""
	}
	return " " + p.Name
}

// backends lists bs as the targets of p.
func backends(p Port, bs []Backend) string {
	if len(bs) == 0 {
		return "none"
	}
	out := make([]string, len(bs))
	for i, b := range bs {
		s := b.IP.String()
		var notes []string
		if port, err := Resolve(p, b); err != nil {
			notes = append(notes, fmt.Sprintf("no %s port %q", p.Protocol, p.TargetPortName))
		} else {
			s = netip.AddrPortFrom(b.IP, port).String()
		}
		if b.Node != "" {
			s += " on " + b.Node
		}
		if !b.Ready || !b.Serving || b.Terminating {
			notes = append(notes, cond(b.Ready, "ready"), cond(b.Serving, "serving"))
			if b.Terminating {
				notes = append(notes, "terminating")
			}
		}
		if len(notes) > 0 {
			s += " (" + strings.Join(notes, ", ") + ")"
		}
		out[i] = s
	}
	return strings.Join(out, ", ")
}

func cond(ok bool, name string) string {
	if ok {
		return name
	}
	return "not " + name
}

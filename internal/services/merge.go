package services

import (
	"fmt"
	"slices"
)

// Merge returns the file's services followed by the Kubernetes services
// that do not clash with them, and a note on each one left out: the file
// wins. A Kubernetes service with the namespace and name of a file service
// is left out, and so is every frontend address of a Kubernetes service
// that would serve a port and protocol a file service serves there. The
// file is the node operator's own word, so nothing created in the cluster
// can take a frontend from it, and a clash costs only the clashing
// service. roost-loader and roost-agent (its VIPs) merge alike.
func Merge(file, kube []Service) ([]Service, []string) {
	if len(kube) == 0 {
		return file, nil
	}
	out := slices.Clone(file)
	var notes []string
	names := make(map[string]bool, len(file))
	claims := NewClaims()
	for i := range out {
		names[out[i].FullName()] = true
		claims.Claim(&out[i]) // the file has no clashes: nothing is left out
	}
	for _, s := range kube {
		if names[s.FullName()] {
			notes = append(notes, fmt.Sprintf("service %s from Kubernetes left out: the services file has a service of that name, and wins", s.FullName()))
			continue
		}
		for _, n := range claims.Claim(&s) {
			notes = append(notes, n+" (a service of the services file)")
		}
		if len(s.Frontends()) == 0 {
			notes = append(notes, fmt.Sprintf("service %s from Kubernetes left out: its frontends are the services file's", s.FullName()))
			continue
		}
		out = append(out, s)
	}
	return out, notes
}

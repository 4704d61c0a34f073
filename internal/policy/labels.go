package policy

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// Label keys Cilium derives from Kubernetes for every pod. A workload's own
// labels under DerivedPrefix are dropped (EndpointLabels): a pod cannot
// claim another namespace, service account or cluster.
const (
	// DerivedPrefix starts every key Cilium derives.
	DerivedPrefix = "io.cilium.k8s."
	// NamespaceLabelsPrefix starts the keys that carry the labels of the
	// endpoint's namespace.
	NamespaceLabelsPrefix = "io.cilium.k8s.namespace.labels."
	// ServiceAccountLabel carries a pod's service account.
	ServiceAccountLabel = "io.cilium.k8s.policy.serviceaccount"
	// ClusterLabel carries the name of the endpoint's cluster; entity
	// cluster selects the endpoints whose ClusterLabel is the local
	// cluster's name (WithCluster).
	ClusterLabel = "io.cilium.k8s.policy.cluster"
)

// EndpointLabels returns the labels an endpoint is selected by, as Cilium
// derives them for a pod (SanitizePodLabels): its own labels without those
// under DerivedPrefix, then NamespaceLabel, NamespaceLabelsPrefix plus
// each label of its namespace, ServiceAccountLabel when serviceAccount is
// set, and ClusterLabel. own and nsLabels are not modified.
func EndpointLabels(own map[string]string, namespace string, nsLabels map[string]string, serviceAccount, cluster string) map[string]string {
	out := make(map[string]string, len(own)+len(nsLabels)+3)
	for k, v := range own {
		if !strings.HasPrefix(k, DerivedPrefix) {
			out[k] = v
		}
	}
	for k, v := range nsLabels {
		out[NamespaceLabelsPrefix+k] = v
	}
	out[NamespaceLabel] = namespace
	if serviceAccount != "" {
		out[ServiceAccountLabel] = serviceAccount
	}
	out[ClusterLabel] = cluster
	return out
}

// ignoreRule is one entry of Cilium's default identity label filter: a
// regular expression that must match at the start of a key, and whether
// it ignores (or includes) the keys it matches.
type ignoreRule struct {
	expr   *regexp.Regexp
	ignore bool
}

// labelFilter is Cilium's default identity label filter
// (pkg/labelsfilter): a key is ignored when an ignore rule matches it and
// no include rule matches a longer part of it.
var labelFilter = func() []ignoreRule {
	var out []ignoreRule
	for _, e := range []string{
		regexp.QuoteMeta(NamespaceLabel),
		regexp.QuoteMeta("io.cilium.k8s.namespace.labels"),
		regexp.QuoteMeta("app.kubernetes.io"),
		regexp.QuoteMeta(ClusterLabel),
		regexp.QuoteMeta(ServiceAccountLabel),
		`!io\.kubernetes`,
		`!kubernetes\.io`,
		"!" + regexp.QuoteMeta("statefulset.kubernetes.io/pod-name"),
		"!" + regexp.QuoteMeta("apps.kubernetes.io/pod-index"),
		"!" + regexp.QuoteMeta("batch.kubernetes.io/job-completion-index"),
		"!" + regexp.QuoteMeta("batch.kubernetes.io/controller-uid"),
		`!.*beta\.kubernetes\.io`,
		`!k8s\.io`,
		`!pod-template-generation`,
		`!pod-template-hash`,
		`!controller-revision-hash`,
		`!controller-uid`,
		`!annotation.*`,
		`!etcd_node`,
	} {
		r := ignoreRule{}
		if strings.HasPrefix(e, "!") {
			r.ignore, e = true, e[1:]
		}
		r.expr = regexp.MustCompile(e)
		out = append(out, r)
	}
	return out
}()

// IsSecurityLabel reports whether a label key counts for identity and
// selection, by Cilium's default label filter.
func IsSecurityLabel(key string) bool {
	included, ignored := 0, 0
	for _, r := range labelFilter {
		m := r.expr.FindStringIndex(key)
		if m == nil || m[0] != 0 {
			continue
		}
		switch {
		case r.ignore && (ignored == 0 || m[1] < ignored):
			ignored = m[1]
		case !r.ignore && m[1] > included:
			included = m[1]
		}
	}
	return ignored == 0 || included > ignored
}

// SecurityLabels returns the labels of set that count for identity.
func SecurityLabels(set map[string]string) map[string]string {
	out := make(map[string]string, len(set))
	for k, v := range set {
		if IsSecurityLabel(k) {
			out[k] = v
		}
	}
	return out
}

// canonicalLabels is the sorted "k=v,k=v" form of a label set: injective,
// since valid keys and values contain neither ',' nor '='.
func canonicalLabels(set map[string]string) string {
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(set)) {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(set[k])
	}
	return b.String()
}

// reservedNamesSelectable are the reserved labels a selector may name with
// the reserved: source, and what each selects in roost.
var reservedNamesSelectable = map[string]bool{
	"host": true, "remote-node": true, "world": true, "world-ipv4": true, "world-ipv6": true,
	"health": true, "init": true, "unmanaged": true, "ingress": true, "kube-apiserver": false,
}

// selectorKey splits a selector key into its Cilium label source (any when
// it has none) and the key, as Cilium parses it: "k8s:app", "any:app" and
// "app" are app of source k8s, any and any; "reserved:host", "$host" and
// "reserved.host" are the reserved label host.
func selectorKey(raw string) (source, key string, err error) {
	src, key, ok := strings.Cut(raw, ":")
	switch {
	case strings.HasPrefix(raw, "$"):
		// Cilium's short form of a reserved label: $host.
		src, key, ok = sourceReserved, raw[1:], true
	case !ok && strings.HasPrefix(raw, sourceReserved+"."):
		// Cilium reads "reserved.world" as reserved:world too.
		src, key, ok = sourceReserved, strings.TrimPrefix(raw, sourceReserved+"."), true
	}
	if !ok {
		return sourceAny, raw, nil
	}
	switch src {
	case sourceK8s, sourceAny:
		return src, key, nil
	case sourceReserved:
		known, ok := reservedNamesSelectable[key]
		switch {
		case !ok:
			return "", "", fmt.Errorf("unknown reserved label %q (host, remote-node, world, world-ipv4, world-ipv6, health, init, unmanaged, ingress)", key)
		case !known:
			return "", "", fmt.Errorf("reserved:%s is not supported by roost (it does not track the API server's addresses)", key)
		}
		return src, key, nil
	default:
		return "", "", fmt.Errorf("label source %q is not supported by roost (only k8s:, any: and reserved:)", src)
	}
}

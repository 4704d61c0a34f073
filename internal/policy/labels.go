package policy

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// namespaceLabelsPrefix starts the keys that carry a pod's namespace's
// labels, as Cilium sets them.
const namespaceLabelsPrefix = "io.cilium.k8s.namespace.labels."

// includedKeys and ignoredKeys are Cilium's default identity label filter
// (pkg/labelsfilter): a key is ignored when it starts with an ignored
// prefix, unless an included prefix matches a longer part of it.
var (
	includedKeys = []string{
		NamespaceLabel,
		"io.cilium.k8s.namespace.labels",
		"app.kubernetes.io",
		"io.cilium.k8s.policy.cluster",
	}
	ignoredKeys = []string{
		"io.kubernetes",
		"kubernetes.io",
		"statefulset.kubernetes.io/pod-name",
		"apps.kubernetes.io/pod-index",
		"batch.kubernetes.io/job-completion-index",
		"k8s.io",
		"pod-template-generation",
		"pod-template-hash",
		"controller-revision-hash",
		"annotation",
		"etcd_node",
	}
)

// IsSecurityLabel reports whether a label key counts for identity and
// selection, by Cilium's default label filter.
func IsSecurityLabel(key string) bool {
	ignored := 0 // length of the shortest ignore match, 0 for none
	for _, p := range ignoredKeys {
		if strings.HasPrefix(key, p) && (ignored == 0 || len(p) < ignored) {
			ignored = len(p)
		}
	}
	// Cilium's `.*beta\.kubernetes\.io` matches anywhere in the key.
	if i := strings.LastIndex(key, "beta.kubernetes.io"); i >= 0 {
		if n := i + len("beta.kubernetes.io"); ignored == 0 || n < ignored {
			ignored = n
		}
	}
	if ignored == 0 {
		return true
	}
	included := 0
	for _, p := range includedKeys {
		if strings.HasPrefix(key, p) && len(p) > included {
			included = len(p)
		}
	}
	return included > ignored
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

// selectorKey strips the Cilium label source from a selector key. Endpoint
// labels in roost have no source, so k8s: and any: select the same thing.
func selectorKey(raw string) (string, error) {
	src, key, ok := strings.Cut(raw, ":")
	if !ok {
		return raw, nil
	}
	switch src {
	case "k8s", "any":
		return key, nil
	case "reserved":
		return "", fmt.Errorf("reserved labels cannot be selected here; use fromEntities (host, world, cluster, all)")
	default:
		return "", fmt.Errorf("label source %q is not supported by roost (only k8s: and any:)", src)
	}
}

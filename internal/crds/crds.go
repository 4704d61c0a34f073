// Package crds holds the CustomResourceDefinitions of CiliumNetworkPolicy and
// CiliumClusterwideNetworkPolicy (group cilium.io, version v2) that roost
// ships, so that `kubectl apply -f policy.yaml` works on a cluster without
// Cilium: `roostctl crds | kubectl apply -f -` installs them.
//
// Their schema is minimal on purpose: spec, specs and status are objects
// whose fields the API server keeps as they are. roost validates the policies
// itself (internal/policy) and reports each one it rejects with the field at
// fault, which a schema could not say as precisely. The manifests are roost's
// own, not Cilium's; on a cluster that runs Cilium, keep Cilium's.
package crds

import _ "embed"

// Manifests is cilium-policies.yaml: two YAML documents, the
// CustomResourceDefinitions ciliumnetworkpolicies.cilium.io (namespaced,
// short name cnp) and ciliumclusterwidenetworkpolicies.cilium.io
// (cluster-scoped, short name ccnp), in that order.
//
//go:embed cilium-policies.yaml
var Manifests []byte

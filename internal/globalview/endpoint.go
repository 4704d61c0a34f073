package globalview

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/roost-net/roost/internal/policy"
)

// Kinds of origin: who publishes an endpoint.
const (
	// KindCluster is a Kubernetes cluster publishing its own endpoints;
	// the origin's name is the cluster's name.
	KindCluster = "cluster"
	// KindSync is roost-sync publishing workloads from outside any
	// cluster (VMs, bare metal); the origin's name is the syncer's.
	KindSync = "sync"
)

// ValueVersion is the version of the value format this package writes and
// reads. A value of another version is skipped and reported.
const ValueVersion = 1

// maxValueBytes bounds one encoded value, far below etcd's request limit
// (1.5 MiB by default), so that a batch of values always fits one request.
const maxValueBytes = 32 << 10

// Origin is who publishes an endpoint: a cluster or a syncer. Each origin
// has its own part of the key space, and only its publisher writes there.
type Origin struct {
	Kind string // KindCluster or KindSync
	Name string
}

// ClusterOrigin returns the origin of a Kubernetes cluster's endpoints.
func ClusterOrigin(name string) Origin { return Origin{Kind: KindCluster, Name: name} }

// SyncOrigin returns the origin of the outside workloads a syncer registers.
func SyncOrigin(name string) Origin { return Origin{Kind: KindSync, Name: name} }

// String returns the origin as it appears in keys: "cluster:prod".
func (o Origin) String() string { return o.Kind + ":" + o.Name }

// clusterName is what Cilium accepts as a cluster name (the same rule as
// loaderconfig's cluster field). Syncer names follow it too.
var clusterName = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,30}[a-z0-9])?$`)

// Validate reports whether o is a known kind with a valid name.
func (o Origin) Validate() error {
	if o.Kind != KindCluster && o.Kind != KindSync {
		return fmt.Errorf("origin %q: kind must be %q or %q", o, KindCluster, KindSync)
	}
	if !clusterName.MatchString(o.Name) {
		return fmt.Errorf("origin %q: name must be 1-32 lower-case letters, digits and '-', starting with a letter and not ending with '-'", o)
	}
	return nil
}

// ParseOrigin parses "cluster:<name>" or "sync:<name>".
func ParseOrigin(s string) (Origin, error) {
	kind, name, ok := strings.Cut(s, ":")
	if !ok {
		return Origin{}, fmt.Errorf("origin %q: want kind:name", s)
	}
	o := Origin{Kind: kind, Name: name}
	return o, o.Validate()
}

// Endpoint is one workload in the global view: its addresses and the labels
// policy selects it by.
type Endpoint struct {
	// Origin, Namespace and Name are the endpoint's key; a reader takes
	// them from the key, never from the value.
	Origin    Origin
	Namespace string
	Name      string
	// IPs are the endpoint's addresses; at least one.
	IPs []netip.Addr
	// Labels are every label the endpoint is selected by, as Cilium
	// derives them (policy.EndpointLabels): its own, its namespace's,
	// its service account, policy.NamespaceLabel and, for an endpoint of
	// a cluster, policy.ClusterLabel with the cluster's name.
	Labels map[string]string
	// Node is the node the endpoint runs on, for display; may be empty.
	Node string
}

// ID returns "<origin>/<namespace>/<name>": the endpoint's key below the
// endpoints prefix, unique in the global view.
func (e Endpoint) ID() string { return e.Origin.String() + "/" + e.Namespace + "/" + e.Name }

// value is the JSON form of an Endpoint in etcd. Fields may be added to
// version 1 as long as a reader that ignores them stays correct; anything
// else is a new version.
type value struct {
	V         int               `json:"v"`
	IPs       []netip.Addr      `json:"ips"`
	Labels    map[string]string `json:"labels,omitempty"`
	Namespace string            `json:"namespace"`
	Node      string            `json:"node,omitempty"`
}

// Validate checks e as a publisher must before writing it and a reader
// does after reading it: a valid origin, namespace and name, at least one
// valid address and none twice, labels that agree with the key.
func (e Endpoint) Validate() error {
	var errs []error
	if err := e.Origin.Validate(); err != nil {
		errs = append(errs, err)
	}
	if msgs := validation.IsDNS1123Label(e.Namespace); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("namespace %q: %s", e.Namespace, strings.Join(msgs, "; ")))
	}
	if msgs := validation.IsDNS1123Subdomain(e.Name); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("name %q: %s", e.Name, strings.Join(msgs, "; ")))
	}
	if err := validateIPs(e.IPs); err != nil {
		errs = append(errs, err)
	}
	if ns, ok := e.Labels[policy.NamespaceLabel]; ok && ns != e.Namespace {
		errs = append(errs, fmt.Errorf("label %s=%q does not match namespace %q", policy.NamespaceLabel, ns, e.Namespace))
	}
	if c, ok := e.Labels[policy.ClusterLabel]; ok {
		if e.Origin.Kind == KindCluster && c != e.Origin.Name {
			errs = append(errs, fmt.Errorf("label %s=%q does not match origin %s", policy.ClusterLabel, c, e.Origin))
		} else if !clusterName.MatchString(c) {
			errs = append(errs, fmt.Errorf("label %s=%q is not a cluster name", policy.ClusterLabel, c))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("endpoint %s: %w", e.ID(), errors.Join(errs...))
	}
	return nil
}

// withDerived returns e with policy.NamespaceLabel and, for a cluster's
// endpoint, policy.ClusterLabel set from the key where the labels lack
// them. It copies the labels when it adds one.
func (e Endpoint) withDerived() Endpoint {
	add := map[string]string{policy.NamespaceLabel: e.Namespace}
	if e.Origin.Kind == KindCluster {
		add[policy.ClusterLabel] = e.Origin.Name
	}
	copied := false
	for k, v := range add {
		if _, ok := e.Labels[k]; ok {
			continue
		}
		if !copied {
			e.Labels = maps.Clone(e.Labels)
			if e.Labels == nil {
				e.Labels = make(map[string]string, len(add))
			}
			copied = true
		}
		e.Labels[k] = v
	}
	return e
}

// encode returns the value stored for e, which must be valid. Equal
// endpoints encode to equal bytes (IPs sorted, labels in key order), so a
// publisher compares bytes to know whether a key changed.
func encode(e Endpoint) ([]byte, error) {
	e = e.withDerived()
	ips := slices.Clone(e.IPs)
	slices.SortFunc(ips, netip.Addr.Compare)
	b, err := json.Marshal(value{V: ValueVersion, IPs: ips, Labels: e.Labels, Namespace: e.Namespace, Node: e.Node})
	if err != nil {
		return nil, fmt.Errorf("endpoint %s: %w", e.ID(), err)
	}
	if len(b) > maxValueBytes {
		return nil, fmt.Errorf("endpoint %s: encoded value is %d bytes, more than the %d allowed", e.ID(), len(b), maxValueBytes)
	}
	return b, nil
}

// Layout is the key layout under a root prefix (Config.Prefix):
//
//	<root>endpoints/<origin>/<namespace>/<name>   an endpoint (value: JSON)
//	<root>endpoints/<origin>/_nodes/<name>        a cluster's node (value: JSON)
//	<root>leaders/<origin>/<lease id in hex>      a publisher's candidacy
type Layout struct{ Root string }

// Endpoints returns the prefix every endpoint key starts with.
func (l Layout) Endpoints() string { return l.Root + "endpoints/" }

// OriginPrefix returns the prefix of origin's endpoint keys.
func (l Layout) OriginPrefix(o Origin) string { return l.Endpoints() + o.String() + "/" }

// Leaders returns the election prefix of origin's publishers.
func (l Layout) Leaders(o Origin) string { return l.Root + "leaders/" + o.String() + "/" }

// Key returns e's key.
func (l Layout) Key(e Endpoint) string { return l.OriginPrefix(e.Origin) + e.Namespace + "/" + e.Name }

// errVersion marks a value of a version this package does not read.
var errVersion = errors.New("unknown value version")

// decode returns the endpoint stored at key with value data. The origin,
// namespace and name come from the key; a value that does not parse, has
// another version, or disagrees with its key is an error.
func (l Layout) decode(key string, data []byte) (Endpoint, error) {
	rest, ok := strings.CutPrefix(key, l.Endpoints())
	if !ok {
		return Endpoint{}, fmt.Errorf("key %q: not under %q", key, l.Endpoints())
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 {
		return Endpoint{}, fmt.Errorf("key %q: want %s<origin>/<namespace>/<name>", key, l.Endpoints())
	}
	origin, err := ParseOrigin(parts[0])
	if err != nil {
		return Endpoint{}, fmt.Errorf("key %q: %w", key, err)
	}
	var v value
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&v); err != nil {
		return Endpoint{}, fmt.Errorf("key %q: value does not parse: %w", key, err)
	}
	if v.V != ValueVersion {
		return Endpoint{}, fmt.Errorf("key %q: %w %d (this reader knows %d)", key, errVersion, v.V, ValueVersion)
	}
	if v.Namespace != parts[1] {
		return Endpoint{}, fmt.Errorf("key %q: value's namespace %q does not match the key", key, v.Namespace)
	}
	e := Endpoint{Origin: origin, Namespace: parts[1], Name: parts[2], IPs: v.IPs, Labels: v.Labels, Node: v.Node}
	if err := e.Validate(); err != nil {
		return Endpoint{}, fmt.Errorf("key %q: %w", key, err)
	}
	return e.withDerived(), nil
}

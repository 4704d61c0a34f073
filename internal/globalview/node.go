package globalview

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// nodesSegment is where an origin's nodes are, in the place of an
// endpoint's namespace: "_" is in no DNS label, so no endpoint's key is a
// node's, and the loaders' one watch of the endpoints prefix carries both.
const nodesSegment = "_nodes"

// Node is a node of a cluster: its addresses. To the loaders of the other
// clusters traffic from them is remote-node, as Cilium's ClusterMesh makes
// every connected cluster's nodes; without them it would be the world's,
// and a rule that admits the world (fromEntities: [world]) would admit
// them where Cilium does not. Only a cluster origin has nodes.
type Node struct {
	// Origin and Name are the node's key; a reader takes them from the
	// key, never from the value.
	Origin Origin
	Name   string
	// IPs are the node's addresses; at least one.
	IPs []netip.Addr
}

// ID returns "<origin>/_nodes/<name>": the node's key below the endpoints
// prefix, unique in the global view and never an endpoint's ID.
func (n Node) ID() string { return n.Origin.String() + "/" + nodesSegment + "/" + n.Name }

// nodeValue is the JSON form of a Node in etcd, versioned as an
// endpoint's value is (ValueVersion).
type nodeValue struct {
	V   int          `json:"v"`
	IPs []netip.Addr `json:"ips"`
}

// Validate checks n as a publisher must before writing it and a reader
// does after reading it: a cluster origin, a valid name, at least one
// valid address and none twice.
func (n Node) Validate() error {
	var errs []error
	if err := n.Origin.Validate(); err != nil {
		errs = append(errs, err)
	} else if n.Origin.Kind != KindCluster {
		errs = append(errs, fmt.Errorf("origin %s: only a cluster has nodes", n.Origin))
	}
	if msgs := validation.IsDNS1123Subdomain(n.Name); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("name %q: %s", n.Name, strings.Join(msgs, "; ")))
	}
	if err := validateIPs(n.IPs); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("node %s: %w", n.ID(), errors.Join(errs...))
	}
	return nil
}

// validateIPs checks a key's addresses: at least one, each a plain IPv4
// or IPv6 address, none twice.
func validateIPs(ips []netip.Addr) error {
	if len(ips) == 0 {
		return errors.New("no IPs")
	}
	var errs []error
	seen := make(map[netip.Addr]bool, len(ips))
	for _, ip := range ips {
		switch {
		case !ip.IsValid():
			errs = append(errs, errors.New("an invalid IP"))
		case ip.Zone() != "" || ip.Is4In6():
			errs = append(errs, fmt.Errorf("IP %s: want a plain IPv4 or IPv6 address", ip))
		case seen[ip]:
			errs = append(errs, fmt.Errorf("IP %s twice", ip))
		}
		seen[ip] = true
	}
	return errors.Join(errs...)
}

// encodeNode returns the value stored for n, which must be valid; equal
// nodes encode to equal bytes.
func encodeNode(n Node) ([]byte, error) {
	ips := slices.Clone(n.IPs)
	slices.SortFunc(ips, netip.Addr.Compare)
	b, err := json.Marshal(nodeValue{V: ValueVersion, IPs: ips})
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", n.ID(), err)
	}
	if len(b) > maxValueBytes {
		return nil, fmt.Errorf("node %s: encoded value is %d bytes, more than the %d allowed", n.ID(), len(b), maxValueBytes)
	}
	return b, nil
}

// NodeKey returns n's key.
func (l Layout) NodeKey(n Node) string { return l.OriginPrefix(n.Origin) + nodesSegment + "/" + n.Name }

// isNodeKey reports whether key has a node's shape:
// <root>endpoints/<origin>/_nodes/<name>.
func (l Layout) isNodeKey(key string) bool {
	rest, ok := strings.CutPrefix(key, l.Endpoints())
	if !ok {
		return false
	}
	parts := strings.Split(rest, "/")
	return len(parts) == 3 && parts[1] == nodesSegment
}

// decodeNode returns the node stored at key (which isNodeKey) with value
// data; a value that does not parse, has another version or is invalid is
// an error.
func (l Layout) decodeNode(key string, data []byte) (Node, error) {
	parts := strings.Split(strings.TrimPrefix(key, l.Endpoints()), "/")
	origin, err := ParseOrigin(parts[0])
	if err != nil {
		return Node{}, fmt.Errorf("key %q: %w", key, err)
	}
	var v nodeValue
	if err := json.NewDecoder(bytes.NewReader(data)).Decode(&v); err != nil {
		return Node{}, fmt.Errorf("key %q: value does not parse: %w", key, err)
	}
	if v.V != ValueVersion {
		return Node{}, fmt.Errorf("key %q: %w %d (this reader knows %d)", key, errVersion, v.V, ValueVersion)
	}
	n := Node{Origin: origin, Name: parts[2], IPs: v.IPs}
	if err := n.Validate(); err != nil {
		return Node{}, fmt.Errorf("key %q: %w", key, err)
	}
	return n, nil
}

package policy

import (
	"crypto/sha256"
	"encoding/binary"
	"strconv"
)

// Identity is the numeric security identity of a traffic source.
//
// Reserved identities keep Cilium's numbers. A set of security labels gets
// an identity in [MinLabelIdentity, MaxLabelIdentity] and a CIDR prefix one
// in [MinCIDRIdentity, MaxCIDRIdentity], derived from SHA-256 of the
// canonical label set ("k=v,k=v", keys sorted) or of the prefix. So the
// same labels give the same number on every node and after every restart,
// with nothing stored. Two label sets whose hashes collide (for 10,000 label
// sets the chance that any pair does is about 2%) are resolved so that only
// the collision's loser moves: the lexically smaller label set keeps the
// hashed number and the other takes the next free one. Label sets that
// collide with nothing always get their hashed number, whatever else
// exists. The loser's number can change when the set of label sets changes;
// WithPrevious keeps numbers already handed out for as long as their label
// sets exist.
type Identity uint32

// Reserved identities and identity ranges.
const (
	// IdentityAny is Cilium's "unknown" identity 0. No source is ever given
	// it; in a policy Entry it is the wildcard that matches every source.
	IdentityAny Identity = 0
	// IdentityHost is the local node (its own addresses, see WithHostIPs).
	IdentityHost Identity = 1
	// IdentityWorld is any source outside the cluster. The ipcache always
	// maps the default routes to IdentityWorldIPv4 and IdentityWorldIPv6,
	// so the datapath only needs IdentityWorld if it misses the ipcache.
	IdentityWorld Identity = 2
	// IdentityRemoteNode is every other node of the cluster (their
	// addresses, see WithRemoteNodeIPs).
	IdentityRemoteNode Identity = 6
	IdentityWorldIPv4  Identity = 9
	IdentityWorldIPv6  Identity = 10

	MinLabelIdentity Identity = 256
	MaxLabelIdentity Identity = 1<<31 - 1
	MinCIDRIdentity  Identity = 1 << 31
	MaxCIDRIdentity  Identity = 1<<32 - 1
)

// reservedNames names the reserved identities roost uses.
var reservedNames = map[Identity]string{
	IdentityHost:       "host",
	IdentityWorld:      "world",
	IdentityRemoteNode: "remote-node",
	IdentityWorldIPv4:  "world-ipv4",
	IdentityWorldIPv6:  "world-ipv6",
}

// IsCIDR reports whether id is a CIDR identity.
func (id Identity) IsCIDR() bool { return id >= MinCIDRIdentity }

// IsLabels reports whether id is a label-set identity.
func (id Identity) IsLabels() bool { return id >= MinLabelIdentity && id <= MaxLabelIdentity }

// String returns the identity in decimal.
func (id Identity) String() string { return strconv.FormatUint(uint64(id), 10) }

// Identity table keys: one namespace for label sets, one for prefixes.
const (
	labelsKeyPrefix = "labels:"
	cidrKeyPrefix   = "cidr:"
)

// hashedIdentity maps key into [lo, hi] with SHA-256.
func hashedIdentity(key string, lo, hi Identity) Identity {
	sum := sha256.Sum256([]byte("roost identity v1\x00" + key))
	n := binary.BigEndian.Uint64(sum[:8])
	return lo + Identity(n%(uint64(hi-lo)+1))
}

// allocate gives each of keys (sorted, distinct, fewer than the range) an
// identity in [lo, hi]: first the one prev gave it, if still free and in
// range; then natural(key), if free, with lexically smaller keys first;
// then the next free number after natural(key), wrapping at hi.
func allocate(keys []string, lo, hi Identity, natural func(string) Identity, prev map[string]Identity) map[string]Identity {
	out := make(map[string]Identity, len(keys))
	taken := make(map[Identity]bool, len(keys))
	for _, k := range keys {
		if id, ok := prev[k]; ok && id >= lo && id <= hi && !taken[id] {
			out[k], taken[id] = id, true
		}
	}
	var losers []string
	for _, k := range keys {
		if _, ok := out[k]; ok {
			continue
		}
		if id := natural(k); !taken[id] {
			out[k], taken[id] = id, true
		} else {
			losers = append(losers, k)
		}
	}
	for _, k := range losers {
		id := natural(k)
		for taken[id] {
			if id == hi {
				id = lo
			} else {
				id++
			}
		}
		out[k], taken[id] = id, true
	}
	return out
}

// Package datapath is the Go side of roost's eBPF policy datapath
// (bpf/policy.c, contract in bpf/datapath.h): the identities, reasons and
// verdicts the programs use, the encoding of every map entry the loader
// writes (endpoints, ipcache, policy and verdict tables), the counters, the
// conntrack entries, and the decoding of drop events read from the ring
// buffer.
//
// Where the programs attach and how they decide is documented in
// bpf/policy.c. In short: to_endpoint runs at the host-side egress hook of
// an endpoint's veth and enforces the endpoint's ingress policy;
// from_endpoint runs at the host-side ingress hook and records the
// connections the endpoint opens, whose replies then pass.
//
// Policy is compiled per (endpoint, remote identity) into a VerdictTable
// (built from Rules; deny wins, then allow, else default deny) stored at an
// index of the verdicts map, and a policy entry pointing at it. The entry
// for IdentityAny serves identities without one of their own, so the
// compiler folds wildcard (L4-only) rules into every specific entry. Tables
// are meant to be shared between entries with the same rules.
//
// Counters: the counters map counts every packet by Reason. Besides, each
// policy entry names a slot of the policy_counters map (PolicyEntry.Counter,
// 0 for none) where to_endpoint counts the packets the entry decided, by the
// verdict its table gave (EntryCounter): whoever writes entries hands out
// the slots, one per entry, and resets a slot before reusing it.
//
// Order of writes, so that no window fails open: write a verdict table
// before a policy entry points at it; write the endpoint entry and its
// policy, attach from_endpoint, then attach to_endpoint; detach before
// deleting the endpoint entry. A missing endpoint entry drops, a missing
// policy entry of an enforcing endpoint denies, an all-zero verdict table
// denies.
//
// to_endpoint caches decisions per CPU under a generation number; every Maps
// write bumps the generation after it, which voids the cache. A freshly
// loaded collection has generation 0, which caches nothing, until its first
// bump. A loader that starts or upgrades loads the collection anew over the
// pinned maps and link.Updates every link to it; the flow cache and the
// generation variable belong to that one collection and are not pinned.
package datapath

import (
	"fmt"

	"github.com/roost-net/roost/bpf"
)

// Identity is a numeric security identity: one per distinct set of security
// labels. Small values are reserved (Cilium's numbering).
type Identity uint32

// Reserved identities.
const (
	// IdentityAny in a policy entry makes it the wildcard entry, used for
	// every identity without an entry of its own. As a source identity it
	// is "unknown", which therefore matches wildcard rules only.
	IdentityAny           = Identity(bpf.PolicyIdentityIDENTITY_ANY)
	IdentityUnknown       = IdentityAny
	IdentityHost          = Identity(bpf.PolicyIdentityIDENTITY_HOST)
	IdentityWorld         = Identity(bpf.PolicyIdentityIDENTITY_WORLD)
	IdentityUnmanaged     = Identity(bpf.PolicyIdentityIDENTITY_UNMANAGED)
	IdentityHealth        = Identity(bpf.PolicyIdentityIDENTITY_HEALTH)
	IdentityInit          = Identity(bpf.PolicyIdentityIDENTITY_INIT)
	IdentityRemoteNode    = Identity(bpf.PolicyIdentityIDENTITY_REMOTE_NODE)
	IdentityKubeAPIServer = Identity(bpf.PolicyIdentityIDENTITY_KUBE_APISERVER)
)

// Reason says why a program passed or dropped a packet. It indexes the
// counters and is the reason of a drop event.
type Reason uint8

// Reasons, as bpf/datapath.h defines them.
const (
	ReasonPassPolicy           = Reason(bpf.PolicyReasonREASON_PASS_POLICY)
	ReasonPassNotEnforced      = Reason(bpf.PolicyReasonREASON_PASS_NOT_ENFORCED)
	ReasonPassReply            = Reason(bpf.PolicyReasonREASON_PASS_REPLY)
	ReasonPassRelated          = Reason(bpf.PolicyReasonREASON_PASS_RELATED)
	ReasonPassNonIP            = Reason(bpf.PolicyReasonREASON_PASS_NON_IP)
	ReasonPassNDP              = Reason(bpf.PolicyReasonREASON_PASS_NDP)
	ReasonDropPolicyDeny       = Reason(bpf.PolicyReasonREASON_DROP_POLICY_DENY)
	ReasonDropPolicyDefault    = Reason(bpf.PolicyReasonREASON_DROP_POLICY_DEFAULT)
	ReasonDropFragment         = Reason(bpf.PolicyReasonREASON_DROP_FRAGMENT)
	ReasonDropMalformed        = Reason(bpf.PolicyReasonREASON_DROP_MALFORMED)
	ReasonDropUnknownEndpoint  = Reason(bpf.PolicyReasonREASON_DROP_UNKNOWN_ENDPOINT)
	ReasonDropVLAN             = Reason(bpf.PolicyReasonREASON_DROP_VLAN)
	ReasonDropExtHeaders       = Reason(bpf.PolicyReasonREASON_DROP_EXT_HEADERS)
	ReasonTrackNew             = Reason(bpf.PolicyReasonREASON_TRACK_NEW)
	ReasonTrackSeen            = Reason(bpf.PolicyReasonREASON_TRACK_SEEN)
	ReasonTrackNone            = Reason(bpf.PolicyReasonREASON_TRACK_NONE)
	ReasonTrackUnknownEndpoint = Reason(bpf.PolicyReasonREASON_TRACK_UNKNOWN_ENDPOINT)
	ReasonEventsLost           = Reason(bpf.PolicyReasonREASON_EVENTS_LOST)

	// numReasons is the size of the counters map.
	numReasons = int(bpf.PolicyReasonREASON_MAX)
)

var reasonNames = map[Reason]string{
	ReasonPassPolicy:           "pass-policy",
	ReasonPassNotEnforced:      "pass-not-enforced",
	ReasonPassReply:            "pass-reply",
	ReasonPassRelated:          "pass-related",
	ReasonPassNonIP:            "pass-non-ip",
	ReasonPassNDP:              "pass-ndp",
	ReasonDropPolicyDeny:       "drop-policy-deny",
	ReasonDropPolicyDefault:    "drop-policy-default",
	ReasonDropFragment:         "drop-fragment",
	ReasonDropMalformed:        "drop-malformed",
	ReasonDropUnknownEndpoint:  "drop-unknown-endpoint",
	ReasonDropVLAN:             "drop-vlan",
	ReasonDropExtHeaders:       "drop-ext-headers",
	ReasonTrackNew:             "track-new",
	ReasonTrackSeen:            "track-seen",
	ReasonTrackNone:            "track-none",
	ReasonTrackUnknownEndpoint: "track-unknown-endpoint",
	ReasonEventsLost:           "events-lost",
}

// String returns the reason's name, such as "drop-policy-deny".
func (r Reason) String() string {
	if s, ok := reasonNames[r]; ok {
		return s
	}
	return fmt.Sprintf("reason-%d", uint8(r))
}

// Dropped reports whether packets with this reason were dropped.
func (r Reason) Dropped() bool { return r >= 16 && r < 32 }

// Endpoint is the endpoints-map entry of one local endpoint, keyed by the
// ifindex of its host-side interface.
type Endpoint struct {
	ID uint32 // endpoint id: in policy and conntrack keys and in events
	// EnforceIngress is set when any ingress rule selects the endpoint:
	// ingress is then default deny. Unset, everything passes.
	EnforceIngress bool
}

func (e Endpoint) encode() bpf.PolicyEndpointInfo {
	v := bpf.PolicyEndpointInfo{Id: e.ID}
	if e.EnforceIngress {
		v.Flags |= uint32(bpf.PolicyEndpointFlagsENDPOINT_ENFORCE_INGRESS)
	}
	return v
}

// Counter is what the counters map holds for one reason, summed over CPUs.
type Counter struct {
	Packets uint64
	Bytes   uint64
}

// PolicyEntry is the value of a policy entry: the verdict table it points
// at, and its counter.
type PolicyEntry struct {
	Table uint32 // index into the verdicts map
	// Counter is the entry's index in the policy_counters map, 1 to
	// MaxEntryCounters - 1; 0 means the entry is not counted.
	Counter uint32
}

// MaxEntryCounters is the size of the policy_counters map, index 0 (never
// counted) included.
const MaxEntryCounters = int(bpf.PolicyPolicyCounterLimitsPOLICY_COUNTERS_MAX)

// EntryCounter is what to_endpoint decided with one policy entry, summed
// over CPUs: the packets its table allowed, denied by a deny rule, or gave
// no verdict (default deny). Packets that conntrack let through (replies,
// ICMP errors about the endpoint's own connections) are not in it.
type EntryCounter struct {
	Allowed       Counter
	Denied        Counter
	DefaultDenied Counter
}

// decodeEntryCounter sums the per-CPU values of one policy_counters slot.
func decodeEntryCounter(per []bpf.PolicyPolicyCounter) EntryCounter {
	var c EntryCounter
	add := func(to *Counter, from bpf.PolicyCounter) {
		to.Packets += from.Packets
		to.Bytes += from.Bytes
	}
	for _, p := range per {
		add(&c.Allowed, p.Verdicts[VerdictAllow])
		add(&c.Denied, p.Verdicts[VerdictDeny])
		add(&c.DefaultDenied, p.Verdicts[VerdictNone])
	}
	return c
}

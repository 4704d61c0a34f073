/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * datapath.h: the contract between roost's eBPF programs and user space.
 * Every struct and enum here is a map key, a map value, a ring-buffer record
 * or a code stored in one; bpf2go turns them into Go types in package bpf,
 * and internal/datapath encodes and decodes them. Changing a layout changes
 * pinned maps: the loader must then migrate them, so add, never reshape.
 *
 * Byte order: addresses and the ports of conntrack and fragment keys are in
 * network byte order, as in the packet; everything else is host order.
 */
#ifndef ROOST_DATAPATH_H
#define ROOST_DATAPATH_H

#include "include/kernel.h"

/* Reserved security identities (Cilium's numbering). Identity 0 in a policy
 * key is the wildcard "any identity"; an ipcache entry with identity 0 says
 * "identity unknown", which therefore matches only wildcard rules. A source
 * address that is in no ipcache map is world. */
enum identity {
	IDENTITY_ANY = 0,
	IDENTITY_HOST = 1,
	IDENTITY_WORLD = 2,
	IDENTITY_UNMANAGED = 3,
	IDENTITY_HEALTH = 4,
	IDENTITY_INIT = 5,
	IDENTITY_REMOTE_NODE = 6,
	IDENTITY_KUBE_APISERVER = 7,
};

/* Reasons: why a packet passed or was dropped. Each is an index into the
 * counters map and the reason of a drop event. */
enum reason {
	REASON_UNSPEC = 0,
	/* to_endpoint passed the packet. */
	REASON_PASS_POLICY = 1,       /* an allow rule matched */
	REASON_PASS_NOT_ENFORCED = 2, /* the endpoint is selected by no ingress rule */
	REASON_PASS_REPLY = 3,        /* reply in a connection the endpoint opened */
	REASON_PASS_RELATED = 4,      /* ICMP error about such a connection */
	REASON_PASS_NON_IP = 5,       /* ARP and other frames that are not IP */
	REASON_PASS_NDP = 6,          /* IPv6 neighbor solicitation or advertisement */
	/* to_endpoint dropped the packet. */
	REASON_DROP_POLICY_DENY = 16,     /* a deny rule matched */
	REASON_DROP_POLICY_DEFAULT = 17,  /* no rule allowed it: default deny */
	REASON_DROP_FRAGMENT = 18,        /* later fragment, ports unknown, no L3 allow */
	REASON_DROP_MALFORMED = 19,       /* truncated or invalid IP or L4 header */
	REASON_DROP_UNKNOWN_ENDPOINT = 20, /* no endpoints entry for this interface */
	REASON_DROP_VLAN = 21,            /* 802.1Q/802.1ad tagged frame */
	REASON_DROP_EXT_HEADERS = 22,     /* more IPv6 extension headers than parsed */
	/* from_endpoint, which never drops. */
	REASON_TRACK_NEW = 32,     /* opened a conntrack entry */
	REASON_TRACK_SEEN = 33,    /* belonged to a live conntrack entry */
	REASON_TRACK_NONE = 34,    /* not tracked (no entry, not an opening packet) */
	REASON_TRACK_UNKNOWN_ENDPOINT = 35, /* no endpoints entry for this interface */
	/* Either program. */
	REASON_EVENTS_LOST = 48, /* drop event not written: ring buffer full */
	REASON_MAX = 64,         /* size of the counters map */
};

/* endpoints: ifindex of the host-side interface -> endpoint. */
enum endpoint_flags {
	ENDPOINT_ENFORCE_INGRESS = 1, /* selected by an ingress rule: default deny */
};

struct endpoint_info {
	__u32 id;    /* endpoint id: in policy and conntrack keys and in events */
	__u32 flags; /* enum endpoint_flags */
};

/* ipcache: source address -> identity. Host addresses (/32, /128) live in
 * the hash maps, every shorter prefix in the LPM tries; a host entry is the
 * longest prefix there can be, so a hit there ends the lookup. */
struct ipcache_host4 {
	__u8 addr[4];
};

struct ipcache_host6 {
	__u8 addr[16];
};

struct ipcache_lpm4 {
	__u32 prefixlen;
	__u8 addr[4];
};

struct ipcache_lpm6 {
	__u32 prefixlen;
	__u8 addr[16];
};

struct ipcache_value {
	__u32 identity;
	__u32 flags; /* reserved, 0 */
};

/* policy: (endpoint, remote identity) -> verdict table and counter. The
 * entry for IDENTITY_ANY serves every identity that has no entry of its own,
 * so the compiler folds the wildcard rules into each specific entry. No entry
 * at all for an enforcing endpoint means default deny. counter took the
 * place of a reserved field that was always 0, so entries pinned before
 * counters existed read as "not counted" until the loader rewrites them. */
struct policy_key {
	__u32 endpoint;
	__u32 identity;
};

struct policy_value {
	__u32 table;   /* index into the verdicts array */
	__u32 counter; /* index into policy_counters; 0: not counted */
};

/* verdicts: index -> verdict table. A table maps the 24-bit space
 * (protocol << 16 | port) to a verdict, as a sorted list of interval starts:
 * bound = (protocol << 16 | port) << 8 | verdict, and bound i covers keys
 * from its start up to the next bound's start. Keys before the first bound
 * get VERDICT_NONE; an all-zero table denies everything. The port of
 * protocols without ports is 0; for ICMP and ICMPv6 it is the message type.
 * Deny precedence is resolved when the table is built. */
enum verdict_limits {
	VERDICT_TABLE_MAX = 256, /* bounds per table; a power of two */
	VERDICT_TABLE_LOG2 = 8,
};

enum verdict {
	VERDICT_NONE = 0,  /* no rule: default deny */
	VERDICT_ALLOW = 1,
	VERDICT_DENY = 2, /* a deny rule */
};

struct verdict_table {
	__u32 len;
	__u32 bounds[VERDICT_TABLE_MAX];
};

/* conntrack: connections an endpoint opened, keyed as the endpoint sent
 * them. IPv4 addresses fill the first 4 bytes of the address arrays. For ICMP
 * echo both ports hold the echo identifier. */
struct ct_key {
	__u32 endpoint;
	__u8 ep_addr[16];
	__u8 peer_addr[16];
	__be16 ep_port;
	__be16 peer_port;
	__u8 proto;
	__u8 family; /* 4 or 6 */
	__u8 pad[2];
};

enum ct_flags {
	CT_ESTABLISHED = 1, /* TCP: an ACK went either way after the SYN */
	CT_TX_FIN = 2,      /* TCP: the endpoint sent FIN */
	CT_RX_FIN = 4,      /* TCP: the peer sent FIN */
	CT_CLOSED = 8,      /* TCP: RST, or FIN both ways */
};

struct ct_value {
	__u64 expires; /* CLOCK_MONOTONIC (coarse) nanoseconds */
	__u32 flags;   /* enum ct_flags */
	__u32 pad;
};

/* fragments: the ports of a fragmented datagram, learned from its first
 * fragment when that passed, so later fragments get the same verdict. */
struct frag_key {
	__u8 src[16];
	__u8 dst[16];
	__be32 id; /* IPv4: the 16-bit ID in the low-order bytes */
	__u8 proto;
	__u8 family;
	__u8 pad[2];
};

struct frag_value {
	__be16 sport;
	__be16 dport;
	__u8 icmp_type;
	__u8 pad[3];
};

/* flow_cache: per-CPU, direct-mapped cache of to_endpoint's decisions,
 * written by to_endpoint alone. An entry counts only while its gen equals
 * the program's generation variable, which bump_generation increments after
 * every change to endpoints, ipcache, policy or verdicts; generation 0 turns
 * the cache off. Conntrack and fragment state are never cached. */
enum flow_cache_limits {
	FLOW_CACHE_SLOTS = 4096, /* per CPU; a power of two */
};

struct flow_key {
	__be32 src[4]; /* source address; IPv4 in src[0] */
	__u32 ifindex;
	__u16 port; /* host order: destination port, ICMP type, or 0 */
	__u8 proto;
	__u8 family;
} __attribute__((aligned(8)));

struct flow_entry {
	struct flow_key key;
	__u64 gen;
	__u32 endpoint;
	__u32 identity;
	__u8 verdict; /* enum verdict */
	__u8 enforce; /* the endpoint enforces ingress */
	__u8 pad[2];
	__u32 counter; /* the policy entry's counter, 0 when none */
};

/* counters: per-CPU array indexed by enum reason. */
struct counter {
	__u64 packets;
	__u64 bytes;
};

/* policy_counters: per-CPU array of what to_endpoint decided with each
 * policy entry, at the index in the entry's value (the loader gives each
 * entry its own). A packet counts once, under the verdict its entry's table
 * gave it, when that verdict decided: allowed packets, and dropped ones
 * (deny rule, or no rule: default deny, later fragments included). Replies
 * and ICMP errors that conntrack lets through count under their reason
 * only. Index 0 is never written: it means "not counted". */
enum policy_counter_limits {
	POLICY_COUNTERS_MAX = 65536, /* slots, index 0 included */
};

struct policy_counter {
	struct counter verdicts[3]; /* by enum verdict: none, allow, deny */
};

/* drops: ring buffer of drop_event records. */
struct drop_event {
	__u64 time; /* CLOCK_MONOTONIC (coarse) nanoseconds */
	__u8 src[16];
	__u8 dst[16];
	__u32 src_identity;
	__u32 endpoint;
	__u32 ifindex;
	__u32 len;   /* packet length */
	__u16 sport; /* host order; ICMP echo: identifier */
	__u16 dport;
	__u8 proto;
	__u8 family; /* 4 or 6; 0 when the packet did not parse */
	__u8 reason; /* enum reason */
	__u8 icmp_type;
};

#endif /* ROOST_DATAPATH_H */

//go:build ignore

/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * lb.c: load balancing of Services at the uplink, north-south.
 *
 * Clients outside the fabric reach a Service through a VIP (an external or
 * load-balancer IP) that every node announces, so the ToRs spread the
 * flows over the nodes by ECMP; or through a NodePort on a node's own
 * address. lb_xdp runs at XDP on each uplink and picks a backend for every
 * packet to such a frontend:
 *
 *   1. lb_conns, an LRU table of the flows this node has seen, keyed by the
 *      5-tuple: an established flow keeps its backend while that backend
 *      is in lb_backends, whatever changed since (terminating backends are
 *      drained: they get no new flow, and keep the ones they have).
 *   2. Otherwise the frontend's Maglev table (lb_maglev, one array per
 *      frontend, built by user space from the active backends sorted by
 *      address): entry hash(flow) % size. Every node builds the same table
 *      from the same backends and hashes the same flow the same way, so an
 *      ECMP rehash that moves a flow to another node keeps its backend.
 *
 * A per-CPU cache of the flows served (lb_cache, voided by user space
 * after every change) answers a flow's later packets before any of these
 * lookups.
 *
 * Then, by where the backend is:
 *
 *   local   the destination becomes the backend's address and port (DNAT,
 *           checksums updated incrementally), a reverse translation is
 *           recorded in lb_revnat, and the packet goes up the stack, which
 *           routes it to the pod (whose ingress policy sees the client).
 *   remote  the packet is encapsulated, IPIP (IPv4) or IPv6-in-IPv6, from
 *           this node's address to the backend's address, and sent back
 *           out of the uplink it came in on to the ToR it came from
 *           (XDP_TX, MACs swapped); the fabric routes it on the PodCIDR
 *           routes to the backend's node. There lb_xdp sees an
 *           encapsulated packet to a local backend of one of its
 *           frontends, checks that a node of the cluster sent it
 *           (lb_nodes), strips the outer header and goes on as for a
 *           local backend.
 *
 * The reply leaves the backend's node directly (direct server return):
 * lb_reply, at TC egress of each uplink, finds the flow in lb_revnat and
 * rewrites the source back to the frontend. The client's address is kept
 * all the way, so the backend's policy sees the real client.
 *
 * A node port has a frontend per address of the node, and one on the
 * unspecified address (0.0.0.0, ::) that only decapsulation looks up: the
 * packet another node encapsulated is to that node's address.
 *
 * Other traffic to a VIP (another port or protocol, ICMP, later fragments)
 * is dropped, so that it does not bounce between the node and the ToR on
 * the default route. Traffic to a node address that is not a NodePort is
 * left alone.
 *
 * Addresses in keys are 16 bytes, IPv6 or IPv4-mapped (::ffff:a.b.c.d),
 * ports in network byte order.
 */
#include "include/kernel.h"

typedef signed long long __s64;

#define BPF_MAP_TYPE_HASH_OF_MAPS 13
#define __array(name, val) typeof(val) *name[]

/* XDP (linux/bpf.h). */
struct xdp_md {
	__u32 data;
	__u32 data_end;
	__u32 data_meta;
	__u32 ingress_ifindex;
	__u32 rx_queue_index;
	__u32 egress_ifindex;
};

enum xdp_action {
	XDP_ABORTED = 0,
	XDP_DROP = 1,
	XDP_PASS = 2,
	XDP_TX = 3,
};

#define IPPROTO_IPIP 4
#define IPPROTO_IPV6 41

static long (*const bpf_skb_store_bytes)(void *skb, __u32 offset, const void *from, __u32 len,
					 __u64 flags) = (void *)9;
static long (*const bpf_l3_csum_replace)(void *skb, __u32 offset, __u64 from, __u64 to,
					 __u64 size) = (void *)10;
static long (*const bpf_l4_csum_replace)(void *skb, __u32 offset, __u64 from, __u64 to,
					 __u64 flags) = (void *)11;
static __s64 (*const bpf_csum_diff)(__be32 *from, __u32 from_size, __be32 *to, __u32 to_size,
				    __u32 seed) = (void *)28;
static long (*const bpf_xdp_adjust_head)(struct xdp_md *ctx, int delta) = (void *)44;

#define BPF_F_PSEUDO_HDR 0x10
#define BPF_F_MARK_MANGLED_0 0x20

/* Sizes; internal/xdplb reads them from the maps. The size of each Maglev
 * table (lb_maglev's inner arrays) is set by the loader at load time. */
#define LB_MAX_FRONTENDS 65536
#define LB_MAX_BACKENDS 262144
#define LB_MAX_CONNS 262144
#define LB_MAX_REVNAT 262144
#define LB_MAGLEV_SIZE 65537
#define LB_MAX_NODES 16384

/* The furthest an L4 header can start: Ethernet, an outer IPv6 header and
 * an inner IPv4 header with options. */
#define MAX_L4_OFFSET (ETH_HLEN + 40 + 60)

/* What lb_xdp and lb_revnat did with a packet, counted in lb_counters. */
enum reason {
	LB_PASS = 0,           /* not to a frontend: left alone */
	LB_LOCAL = 1,          /* to a local backend (DNAT) */
	LB_ENCAP = 2,          /* to a backend on another node (encapsulated, XDP_TX) */
	LB_DECAP = 3,          /* encapsulated to a local backend: decapsulated, DNAT */
	LB_NO_BACKEND = 4,     /* frontend without an active backend: dropped */
	LB_NOT_SERVED = 5,     /* to a VIP, but no frontend (port, protocol, ICMP, fragment): dropped */
	LB_DECAP_UNKNOWN = 6,  /* encapsulated to a frontend, no such local backend: dropped */
	LB_MALFORMED = 7,      /* truncated header: dropped (to a VIP) or passed */
	LB_REVNAT = 8,         /* lb_reply: a reply's source set back to the frontend */
	LB_ERROR = 9,          /* a helper failed: dropped */
	LB_DECAP_UNTRUSTED = 10, /* encapsulated by no node of the cluster: dropped */
	LB_REASON_MAX = 11,
};

enum svc_flags {
	LB_SVC_AFFINITY = 1, /* sessionAffinity: ClientIP: hash the client's address alone */
};

enum backend_flags {
	LB_BACKEND_LOCAL = 1, /* on this node: DNAT, no encapsulation */
};

struct svc_key {
	__u8 addr[16];
	__be16 port;
	__u8 proto; /* IPPROTO_TCP, IPPROTO_UDP */
	__u8 pad;
};

struct svc_value {
	__u32 id;    /* 1..LB_MAX_FRONTENDS-1; the key of its Maglev table and its stats */
	__u32 size;  /* entries in its Maglev table; 0: no active backend */
	__u32 flags; /* enum svc_flags */
	__u32 pad;
};

struct backend {
	__u8 addr[16];
	__be16 port;
	__u8 flags; /* enum backend_flags */
	__u8 pad;
};

/* lb_local: (frontend id, backend address) -> the backend's port, for each
 * backend of a frontend on this node: an encapsulated packet is ours when
 * its outer destination is one. */
struct local_key {
	__u32 id;
	__u8 addr[16];
};

struct flow {
	__u8 src[16];
	__u8 dst[16];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

struct conn {
	__u32 backend; /* id in lb_backends */
	__u32 pad;
};

/* lb_revnat: a translated flow as its replies leave: (backend, client) ->
 * the frontend the client sent to. */
struct revnat_value {
	__u8 addr[16];
	__be16 port;
	__u16 pad;
};

struct config {
	__be32 src4;     /* outer source of IPIP packets; 0: do not encapsulate IPv4 */
	__be32 src6[4];  /* outer source of IPv6-in-IPv6 packets */
	__u32 has_src6;  /* src6 is set */
};

struct svc_stats {
	__u64 packets;
	__u64 bytes;
	__u64 conns; /* flows given a backend from the Maglev table */
};

/* lb_cache: per-CPU, direct-mapped cache of the flows lb_xdp served from
 * a frontend, by flow hash: a hit skips the frontend, connection-table and
 * backend lookups. An entry counts only while its gen equals lb_gen, which
 * user space bumps after every change to the maps; lb_gen 0 turns the cache
 * off. The connection table stays the authority: the cache only repeats
 * what it said while nothing changed. */
enum cache_limits {
	LB_CACHE_SLOTS = 4096, /* per CPU; a power of two */
};

struct cache_entry {
	struct flow key;
	__u64 gen;
	struct backend be;
	__u32 svc; /* frontend id, for its counters */
};

struct lb_maglev_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_MAGLEV_SIZE);
	__type(key, __u32);
	__type(value, __u32);
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LB_MAX_FRONTENDS);
	__type(key, struct svc_key);
	__type(value, struct svc_value);
} lb_services SEC(".maps");

/* lb_vips: a VIP address (16 bytes) -> 1. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LB_MAX_FRONTENDS);
	__type(key, __u8[16]);
	__type(value, __u32);
} lb_vips SEC(".maps");

/* lb_nodes: an address (16 bytes) of a node of the cluster -> 1. Only
 * they may send lb_xdp encapsulated packets: a packet's inner source is
 * what the backend's policy sees, and the fabric's anti-spoofing checks
 * only the outer one. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LB_MAX_NODES);
	__type(key, __u8[16]);
	__type(value, __u32);
} lb_nodes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, LB_MAX_FRONTENDS);
	__type(key, __u32);
	__array(values, struct lb_maglev_inner);
} lb_maglev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LB_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct backend);
} lb_backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LB_MAX_BACKENDS);
	__type(key, struct local_key);
	__type(value, __be16);
} lb_local SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, LB_MAX_CONNS);
	__type(key, struct flow);
	__type(value, struct conn);
} lb_conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, LB_MAX_REVNAT);
	__type(key, struct flow);
	__type(value, struct revnat_value);
} lb_revnat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config);
} lb_config SEC(".maps");

/* lb_stats: per-CPU counters by frontend id (an array: its lookups are
 * inlined, where a hash lookup costs a call on every packet). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LB_MAX_FRONTENDS);
	__type(key, __u32);
	__type(value, struct svc_stats);
} lb_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LB_CACHE_SLOTS);
	__type(key, __u32);
	__type(value, struct cache_entry);
} lb_cache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lb_gen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LB_REASON_MAX);
	__type(key, __u32);
	__type(value, __u64);
} lb_counters SEC(".maps");

char __license[] SEC("license") = "Dual MIT/GPL";

/* Keep the enums in the BTF for bpf2go. */
const enum reason *unused_reason __attribute__((unused));
const enum svc_flags *unused_svc_flags __attribute__((unused));
const enum cache_limits *unused_cache_limits __attribute__((unused));
const enum backend_flags *unused_backend_flags __attribute__((unused));

static __always_inline void count(__u32 reason)
{
	__u64 *c = bpf_map_lookup_elem(&lb_counters, &reason);
	if (c)
		*c += 1;
}

/* The parsed packet: its flow and where its headers are. */
struct pkt {
	struct flow flow;
	__u32 l3;  /* offset of the (inner) IP header */
	__u32 l4;  /* offset of the L4 header */
	__u32 len; /* bytes from the IP header on */
	__u8 family;
	__u8 first_frag; /* the first fragment of a fragmented datagram */
	__u8 later_frag; /* a later fragment: no ports */
	__u8 pad;
};

static __always_inline void map4(__u8 *dst, __be32 a)
{
	__builtin_memset(dst, 0, 10);
	dst[10] = 0xff;
	dst[11] = 0xff;
	__builtin_memcpy(dst + 12, &a, 4);
}

/* parse4 reads the IPv4 header at off and its ports. It returns 0, or -1
 * when the header is truncated. */
static __always_inline int parse4(void *data, void *end, __u32 off, struct pkt *p)
{
	struct iphdr *ip = data + off;
	if ((void *)(ip + 1) > end)
		return -1;
	__u32 ihl = (ip->ihl_version & 0xf) * 4;
	if ((ip->ihl_version >> 4) != 4 || ihl < sizeof(*ip))
		return -1;
	p->family = 4;
	p->l3 = off;
	p->l4 = off + ihl;
	p->len = bpf_ntohs(ip->tot_len);
	p->flow.proto = ip->protocol;
	map4(p->flow.src, ip->saddr);
	map4(p->flow.dst, ip->daddr);
	__u16 frag = bpf_ntohs(ip->frag_off);
	p->later_frag = (frag & IP_OFFSET) != 0;
	p->first_frag = !p->later_frag && (frag & IP_MF);
	return 0;
}

static __always_inline int parse6(void *data, void *end, __u32 off, struct pkt *p)
{
	struct ipv6hdr *ip6 = data + off;
	if ((void *)(ip6 + 1) > end)
		return -1;
	if ((bpf_ntohl(ip6->vtc_flow) >> 28) != 6)
		return -1;
	p->family = 6;
	p->l3 = off;
	p->l4 = off + sizeof(*ip6);
	p->len = sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
	p->flow.proto = ip6->nexthdr; /* extension headers: not a frontend */
	__builtin_memcpy(p->flow.src, ip6->saddr, 16);
	__builtin_memcpy(p->flow.dst, ip6->daddr, 16);
	p->later_frag = p->flow.proto == IPPROTO_FRAGMENT;
	return 0;
}

/* ports reads the L4 ports; -1 when the header is truncated. */
static __always_inline int ports(void *data, void *end, struct pkt *p)
{
	if (p->flow.proto != IPPROTO_TCP && p->flow.proto != IPPROTO_UDP)
		return 0;
	if (p->later_frag)
		return 0;
	__u32 off = p->l4;
	if (off > MAX_L4_OFFSET)
		return -1;
	__be16 *l4 = data + off;
	if ((void *)(l4 + 2) > end)
		return -1;
	p->flow.sport = l4[0];
	p->flow.dport = l4[1];
	return 0;
}

static __always_inline __u32 rotl(__u32 x, int r) { return (x << r) | (x >> (32 - r)); }

static __always_inline __u32 mix(__u32 h, __u32 k)
{
	k *= 0xcc9e2d51;
	k = rotl(k, 15);
	k *= 0x1b873593;
	h ^= k;
	h = rotl(h, 13);
	return h * 5 + 0xe6546b64;
}

/* flow_hash hashes the client's address and port, the destination port
 * and the protocol (MurmurHash3's rounds, fixed seed): the same flow gets
 * the same hash on every node. With affinity, the client's address alone:
 * all its flows, to every port of the service (whose frontends have the
 * same backends, so the same table), go to one backend. */
static __always_inline __u32 flow_hash(const struct flow *f, int affinity)
{
	const __u32 *s = (const __u32 *)f->src;
	__u32 h = 0x726f6f73; /* "roos" */
	h = mix(h, s[0]);
	h = mix(h, s[1]);
	h = mix(h, s[2]);
	h = mix(h, s[3]);
	h = mix(h, affinity ? 0 : ((__u32)f->sport << 16 | f->dport));
	h = mix(h, affinity ? 0 : f->proto);
	h ^= 24;
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

/* csum_add32 adds the 16-bit words of a 32-bit word to a 32-bit sum. */
static __always_inline __u32 csum_add32(__u32 sum, __u32 w) { return sum + (w & 0xffff) + (w >> 16); }

static __always_inline __u16 csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

/* csum_update returns checksum check updated for 16-bit words whose sum went
 * from "from" to "to" (RFC 1624: HC' = ~(~HC + ~m + m')), each sum given
 * as the 32-bit sum of the old and the new words. */
static __always_inline __u16 csum_update(__u16 check, __u32 from, __u32 to)
{
	__u32 s = (__u16)~check;
	s += (__u16)~csum_fold(from);
	s = csum_add32(s, to);
	return ~csum_fold(s);
}

/* sum_words sums the 16-bit words of n 32-bit words. */
static __always_inline __u32 sum_words(const __u8 *b, int n)
{
	__u32 s = 0;
	const __u32 *w = (const __u32 *)b;
#pragma unroll
	for (int i = 0; i < 4; i++)
		if (i < n)
			s = csum_add32(s, w[i]);
	return s;
}

/* dnat rewrites the destination of the packet p describes to the
 * backend's address and port, with its checksums. */
static __always_inline int dnat(void *data, void *end, const struct pkt *p, const struct backend *be)
{
	__u32 from, to, l3 = p->l3, l4 = p->l4;
	/* Bounds the verifier can follow (the offsets went through the stack). */
	if (l3 > MAX_L4_OFFSET || l4 > MAX_L4_OFFSET)
		return -1;
	if (p->family == 4) {
		struct iphdr *ip = data + l3;
		if ((void *)(ip + 1) > end)
			return -1;
		__be32 old = ip->daddr, new;
		__builtin_memcpy(&new, be->addr + 12, 4);
		from = csum_add32(0, old);
		to = csum_add32(0, new);
		ip->check = csum_update(ip->check, from, to);
		ip->daddr = new;
	} else {
		struct ipv6hdr *ip6 = data + l3;
		if ((void *)(ip6 + 1) > end)
			return -1;
		from = sum_words((const __u8 *)ip6->daddr, 4);
		to = sum_words(be->addr, 4);
		__builtin_memcpy(ip6->daddr, be->addr, 16);
	}
	/* The L4 checksum covers the addresses (pseudo-header) and the port. */
	from = csum_add32(from, p->flow.dport);
	to = csum_add32(to, be->port);
	if (p->flow.proto == IPPROTO_TCP) {
		struct tcphdr *t = data + l4;
		if ((void *)(t + 1) > end)
			return -1;
		t->check = csum_update(t->check, from, to);
		t->dest = be->port;
	} else {
		struct udphdr *u = data + l4;
		if ((void *)(u + 1) > end)
			return -1;
		if (u->check || p->family == 6) {
			__u16 c = csum_update(u->check, from, to);
			u->check = c ? c : 0xffff;
		}
		u->dest = be->port;
	}
	return 0;
}

/* record remembers how to translate the replies of p's flow back. */
static __always_inline void record(const struct pkt *p, const struct backend *be)
{
	struct flow k = {};
	__builtin_memcpy(k.src, be->addr, 16);
	__builtin_memcpy(k.dst, p->flow.src, 16);
	k.sport = be->port;
	k.dport = p->flow.sport;
	k.proto = p->flow.proto;
	struct revnat_value *cur = bpf_map_lookup_elem(&lb_revnat, &k);
	if (cur && cur->port == p->flow.dport && __builtin_memcmp(cur->addr, p->flow.dst, 16) == 0)
		return;
	struct revnat_value v = {};
	__builtin_memcpy(v.addr, p->flow.dst, 16);
	v.port = p->flow.dport;
	bpf_map_update_elem(&lb_revnat, &k, &v, BPF_ANY);
}

static __always_inline int local(struct xdp_md *ctx, const struct pkt *p, const struct backend *be,
				 __u32 reason)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	if (dnat(data, end, p, be) < 0) {
		count(LB_MALFORMED);
		return XDP_DROP;
	}
	record(p, be);
	count(reason);
	return XDP_PASS;
}

/* encap sends the packet to a backend on another node, encapsulated, back
 * to the router it came from. */
static __always_inline int encap(struct xdp_md *ctx, const struct pkt *p, const struct backend *be)
{
	__u32 zero = 0;
	struct config *cfg = bpf_map_lookup_elem(&lb_config, &zero);
	if (!cfg)
		return XDP_DROP;
	__u8 mac[12];
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return XDP_DROP;
	__builtin_memcpy(mac, eth->h_source, 6); /* the router: the new destination */
	__builtin_memcpy(mac + 6, eth->h_dest, 6);

	if (p->family == 4) {
		if (!cfg->src4) {
			count(LB_ERROR);
			return XDP_DROP;
		}
		struct iphdr *inner = data + ETH_HLEN;
		if ((void *)(inner + 1) > end)
			return XDP_DROP;
		__u8 tos = inner->tos;
		__be16 tot = inner->tot_len;
		if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct iphdr))) {
			count(LB_ERROR);
			return XDP_DROP;
		}
		data = (void *)(long)ctx->data;
		end = (void *)(long)ctx->data_end;
		eth = data;
		struct iphdr *ip = data + ETH_HLEN;
		if ((void *)(ip + 1) > end)
			return XDP_DROP;
		__builtin_memcpy(eth->h_dest, mac, 6);
		__builtin_memcpy(eth->h_source, mac + 6, 6);
		eth->h_proto = bpf_htons(ETH_P_IP);
		ip->ihl_version = 0x45;
		ip->tos = tos;
		ip->tot_len = bpf_htons(bpf_ntohs(tot) + sizeof(struct iphdr));
		ip->id = 0;
		ip->frag_off = 0;
		ip->ttl = 64;
		ip->protocol = IPPROTO_IPIP;
		ip->check = 0;
		ip->saddr = cfg->src4;
		__builtin_memcpy(&ip->daddr, be->addr + 12, 4);
		__u32 s = 0;
		__u16 *w = (__u16 *)ip;
#pragma unroll
		for (int i = 0; i < 10; i++)
			s += w[i];
		ip->check = ~csum_fold(s);
	} else {
		if (!cfg->has_src6) {
			count(LB_ERROR);
			return XDP_DROP;
		}
		struct ipv6hdr *inner = data + ETH_HLEN;
		if ((void *)(inner + 1) > end)
			return XDP_DROP;
		__be32 vtc = inner->vtc_flow;
		__u16 plen = bpf_ntohs(inner->payload_len) + sizeof(struct ipv6hdr);
		if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct ipv6hdr))) {
			count(LB_ERROR);
			return XDP_DROP;
		}
		data = (void *)(long)ctx->data;
		end = (void *)(long)ctx->data_end;
		eth = data;
		struct ipv6hdr *ip6 = data + ETH_HLEN;
		if ((void *)(ip6 + 1) > end)
			return XDP_DROP;
		__builtin_memcpy(eth->h_dest, mac, 6);
		__builtin_memcpy(eth->h_source, mac + 6, 6);
		eth->h_proto = bpf_htons(ETH_P_IPV6);
		/* Version 6 and the inner traffic class; no flow label. */
		ip6->vtc_flow = vtc & bpf_htonl(0xfff00000);
		ip6->payload_len = bpf_htons(plen);
		ip6->nexthdr = IPPROTO_IPV6;
		ip6->hop_limit = 64;
		__builtin_memcpy(ip6->saddr, cfg->src6, 16);
		__builtin_memcpy(ip6->daddr, be->addr, 16);
	}
	count(LB_ENCAP);
	return XDP_TX;
}

static __always_inline void stats(__u32 id, __u32 len, int conn)
{
	struct svc_stats *s = bpf_map_lookup_elem(&lb_stats, &id);
	if (s) {
		s->packets++;
		s->bytes += len;
		s->conns += conn;
	}
}

/* balance serves a packet to frontend svc. */
/* remember puts p's flow and its backend in this CPU's cache slot. */
static __always_inline void remember(const struct pkt *p, __u32 hash, const struct backend *be, __u32 svc)
{
	__u32 zero = 0, slot = hash & (LB_CACHE_SLOTS - 1);
	__u64 *gen = bpf_map_lookup_elem(&lb_gen, &zero);
	if (!gen || !*gen)
		return;
	struct cache_entry *e = bpf_map_lookup_elem(&lb_cache, &slot);
	if (!e)
		return;
	e->key = p->flow;
	e->gen = *gen;
	e->be = *be;
	e->svc = svc;
}

static __always_inline int balance(struct xdp_md *ctx, struct pkt *p, const struct svc_value *svc, __u32 hash)
{
	if (p->first_frag) {
		/* Later fragments carry no ports to find the backend by. */
		count(LB_NOT_SERVED);
		return XDP_DROP;
	}
	struct backend *be = 0;
	int fresh = 0;
	struct conn *c = bpf_map_lookup_elem(&lb_conns, &p->flow);
	if (c)
		be = bpf_map_lookup_elem(&lb_backends, &c->backend);
	if (be && (be->flags & LB_BACKEND_LOCAL)) {
		/* The flow's reverse translation was recorded with its
		 * connection entry, and every reply refreshes it. */
		remember(p, hash, be, svc->id);
		stats(svc->id, p->len, 0);
		void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
		if (dnat(data, end, p, be) < 0) {
			count(LB_MALFORMED);
			return XDP_DROP;
		}
		count(LB_LOCAL);
		return XDP_PASS;
	}
	if (!be) {
		if (!svc->size) {
			stats(svc->id, p->len, 0);
			count(LB_NO_BACKEND);
			return XDP_DROP;
		}
		void *table = bpf_map_lookup_elem(&lb_maglev, &svc->id);
		if (!table) {
			count(LB_ERROR);
			return XDP_DROP;
		}
		__u32 slot = flow_hash(&p->flow, svc->flags & LB_SVC_AFFINITY) % svc->size;
		__u32 *id = bpf_map_lookup_elem(table, &slot);
		if (!id) {
			count(LB_ERROR);
			return XDP_DROP;
		}
		be = bpf_map_lookup_elem(&lb_backends, id);
		if (!be) {
			count(LB_ERROR);
			return XDP_DROP;
		}
		struct conn v = {.backend = *id};
		bpf_map_update_elem(&lb_conns, &p->flow, &v, BPF_ANY);
		fresh = 1;
	}
	remember(p, hash, be, svc->id);
	stats(svc->id, p->len, fresh);
	if (be->flags & LB_BACKEND_LOCAL)
		return local(ctx, p, be, LB_LOCAL);
	return encap(ctx, p, be);
}

/* cached serves a packet whose flow is in this CPU's cache: 1 when it did
 * (*action set), 0 when the flow is not there. */
static __always_inline int cached(struct xdp_md *ctx, const struct pkt *p, __u32 hash, int *action)
{
	__u32 zero = 0, slot = hash & (LB_CACHE_SLOTS - 1);
	__u64 *gen = bpf_map_lookup_elem(&lb_gen, &zero);
	struct cache_entry *e = bpf_map_lookup_elem(&lb_cache, &slot);
	if (!gen || !e || !*gen || e->gen != *gen)
		return 0;
	const __u64 *a = (const __u64 *)&e->key, *b = (const __u64 *)&p->flow;
	if (a[0] != b[0] || a[1] != b[1] || a[2] != b[2] || a[3] != b[3] || a[4] != b[4])
		return 0;
	stats(e->svc, p->len, 0);
	if (e->be.flags & LB_BACKEND_LOCAL) {
		void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
		if (dnat(data, end, p, &e->be) < 0) {
			count(LB_MALFORMED);
			*action = XDP_DROP;
			return 1;
		}
		count(LB_LOCAL);
		*action = XDP_PASS;
		return 1;
	}
	*action = encap(ctx, p, &e->be);
	return 1;
}

static __always_inline void frontend_key(struct svc_key *k, const struct pkt *p)
{
	__builtin_memcpy(k->addr, p->flow.dst, 16);
	k->port = p->flow.dport;
	k->proto = p->flow.proto;
	k->pad = 0;
}

/* not_frontend decides a packet that is to no frontend: dropped when to a
 * VIP, left alone otherwise. */
static __always_inline int not_frontend(const struct pkt *p)
{
	if (bpf_map_lookup_elem(&lb_vips, p->flow.dst)) {
		count(LB_NOT_SERVED);
		return XDP_DROP;
	}
	count(LB_PASS);
	return XDP_PASS;
}

/* decap serves an encapsulated packet (outer header at ETH_HLEN, of
 * outer_len bytes, outer destination dst) whose inner packet is p. */
static __always_inline int decap(struct xdp_md *ctx, struct pkt *p, const __u8 *src, const __u8 *dst,
				 __u32 outer_len)
{
	struct svc_key k;
	frontend_key(&k, p);
	struct svc_value *svc = bpf_map_lookup_elem(&lb_services, &k);
	if (!svc) {
		/* A node port of another node's address: the node port on
		 * any address (0.0.0.0 or ::) has this node's backends. */
		__builtin_memset(k.addr, 0, 16);
		if (p->family == 4)
			k.addr[10] = k.addr[11] = 0xff;
		svc = bpf_map_lookup_elem(&lb_services, &k);
	}
	if (!svc) {
		count(LB_PASS); /* someone else's tunnel */
		return XDP_PASS;
	}
	if (!bpf_map_lookup_elem(&lb_nodes, src)) {
		count(LB_DECAP_UNTRUSTED);
		return XDP_DROP;
	}
	struct local_key lk = {.id = svc->id};
	__builtin_memcpy(lk.addr, dst, 16);
	__be16 *port = bpf_map_lookup_elem(&lb_local, &lk);
	if (!port) {
		count(LB_DECAP_UNKNOWN);
		return XDP_DROP;
	}
	struct backend be = {.port = *port, .flags = LB_BACKEND_LOCAL};
	__builtin_memcpy(be.addr, dst, 16);

	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return XDP_DROP;
	struct ethhdr copy = *eth;
	copy.h_proto = p->family == 4 ? bpf_htons(ETH_P_IP) : bpf_htons(ETH_P_IPV6);
	if (bpf_xdp_adjust_head(ctx, (int)outer_len)) {
		count(LB_ERROR);
		return XDP_DROP;
	}
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > end)
		return XDP_DROP;
	*eth = copy;
	p->l3 -= outer_len;
	p->l4 -= outer_len;
	stats(svc->id, p->len, 0);
	return local(ctx, p, &be, LB_DECAP);
}

SEC("xdp")
int lb_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	struct pkt p = {};
	__u8 outer_src[16], outer_dst[16];
	__u32 outer_len = 0;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		if (parse4(data, end, ETH_HLEN, &p) < 0)
			return XDP_PASS;
		if (p.flow.proto == IPPROTO_IPIP && !p.later_frag && !p.first_frag) {
			__builtin_memcpy(outer_src, p.flow.src, 16);
			__builtin_memcpy(outer_dst, p.flow.dst, 16);
			outer_len = p.l4 - ETH_HLEN;
			__builtin_memset(&p, 0, sizeof(p));
			if (parse4(data, end, ETH_HLEN + outer_len, &p) < 0)
				return XDP_PASS;
		}
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		if (parse6(data, end, ETH_HLEN, &p) < 0)
			return XDP_PASS;
		if (p.flow.proto == IPPROTO_IPV6) {
			__builtin_memcpy(outer_src, p.flow.src, 16);
			__builtin_memcpy(outer_dst, p.flow.dst, 16);
			outer_len = sizeof(struct ipv6hdr);
			__builtin_memset(&p, 0, sizeof(p));
			if (parse6(data, end, ETH_HLEN + outer_len, &p) < 0)
				return XDP_PASS;
		}
	} else {
		return XDP_PASS;
	}
	if (ports(data, end, &p) < 0) {
		count(LB_MALFORMED);
		return XDP_PASS;
	}
	if (outer_len) {
		if ((p.flow.proto != IPPROTO_TCP && p.flow.proto != IPPROTO_UDP) || p.later_frag || p.first_frag) {
			count(LB_PASS);
			return XDP_PASS;
		}
		return decap(ctx, &p, outer_src, outer_dst, outer_len);
	}
	if (p.later_frag || (p.flow.proto != IPPROTO_TCP && p.flow.proto != IPPROTO_UDP))
		return not_frontend(&p);
	struct svc_key k;
	__u32 hash = flow_hash(&p.flow, 0);
	int action;
	if (!p.first_frag && cached(ctx, &p, hash, &action))
		return action;
	frontend_key(&k, &p);
	struct svc_value *svc = bpf_map_lookup_elem(&lb_services, &k);
	if (!svc)
		return not_frontend(&p);
	return balance(ctx, &p, svc, hash);
}

/* lb_pass does nothing: the benchmarks measure lb_xdp against it. */
SEC("xdp")
int lb_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

/* lb_reply, at TC egress of the uplinks: a reply of a flow lb_xdp
 * translated leaves with the frontend as its source. */
SEC("tc")
int lb_reply(struct __sk_buff *skb)
{
	struct flow k = {};
	__u32 l3 = ETH_HLEN, l4, csum_off;
	__u8 proto;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		if (bpf_skb_load_bytes(skb, l3, &ip, sizeof(ip)) < 0)
			return TC_ACT_UNSPEC;
		if (ip.frag_off & bpf_htons(IP_OFFSET))
			return TC_ACT_UNSPEC;
		proto = ip.protocol;
		l4 = l3 + (ip.ihl_version & 0xf) * 4;
		map4(k.src, ip.saddr);
		map4(k.dst, ip.daddr);
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;
		if (bpf_skb_load_bytes(skb, l3, &ip6, sizeof(ip6)) < 0)
			return TC_ACT_UNSPEC;
		proto = ip6.nexthdr;
		l4 = l3 + sizeof(ip6);
		__builtin_memcpy(k.src, ip6.saddr, 16);
		__builtin_memcpy(k.dst, ip6.daddr, 16);
	} else {
		return TC_ACT_UNSPEC;
	}
	if (proto == IPPROTO_TCP)
		csum_off = l4 + 16;
	else if (proto == IPPROTO_UDP)
		csum_off = l4 + 6;
	else
		return TC_ACT_UNSPEC;
	__be16 pp[2];
	if (bpf_skb_load_bytes(skb, l4, pp, sizeof(pp)) < 0)
		return TC_ACT_UNSPEC;
	k.sport = pp[0];
	k.dport = pp[1];
	k.proto = proto;
	struct revnat_value *v = bpf_map_lookup_elem(&lb_revnat, &k);
	if (!v)
		return TC_ACT_UNSPEC;
	struct revnat_value to = *v;
	__u64 l4flags = proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		__be32 old, new;
		__builtin_memcpy(&old, k.src + 12, 4);
		__builtin_memcpy(&new, to.addr + 12, 4);
		if (bpf_l4_csum_replace(skb, csum_off, old, new, BPF_F_PSEUDO_HDR | l4flags | 4) < 0 ||
		    bpf_l3_csum_replace(skb, l3 + 10, old, new, 4) < 0 ||
		    bpf_skb_store_bytes(skb, l3 + 12, &new, 4, 0) < 0)
			goto fail;
	} else {
		__s64 diff = bpf_csum_diff((__be32 *)k.src, 16, (__be32 *)to.addr, 16, 0);
		if (diff < 0 || bpf_l4_csum_replace(skb, csum_off, 0, diff, BPF_F_PSEUDO_HDR | l4flags) < 0 ||
		    bpf_skb_store_bytes(skb, l3 + 8, to.addr, 16, 0) < 0)
			goto fail;
	}
	if (bpf_l4_csum_replace(skb, csum_off, k.sport, to.port, l4flags | 2) < 0 ||
	    bpf_skb_store_bytes(skb, l4, &to.port, 2, 0) < 0)
		goto fail;
	count(LB_REVNAT);
	return TC_ACT_UNSPEC;
fail:
	count(LB_ERROR);
	return TC_ACT_SHOT;
}

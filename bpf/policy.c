//go:build ignore

/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * policy.c: L3/L4 ingress policy for the local endpoints of a node.
 *
 * Hooks. The programs are SCHED_CLS and run on the HOST side of an
 * endpoint's veth (TCX on Linux 6.6+, clsact with direct-action before):
 *
 *   to_endpoint      host-side EGRESS  (BPF_TCX_EGRESS, clsact egress):
 *                    packets going into the endpoint; enforces its ingress
 *                    policy.
 *   from_endpoint    host-side INGRESS (BPF_TCX_INGRESS, clsact ingress):
 *                    packets the endpoint sends; never drops, only records
 *                    the connections the endpoint opens, so replies pass.
 *   empty            does nothing: the floor benchmarks measure against.
 *   bump_generation  (SYSCALL, run with BPF_PROG_TEST_RUN) voids the flow
 *                    cache after the loader changed a map.
 *
 * A passed packet gets TC_ACT_UNSPEC (TCX_NEXT): the next program decides,
 * and with none left the packet passes, so roost never overrides another
 * program's drop. A dropped packet gets TC_ACT_SHOT (TCX_DROP).
 *
 * to_endpoint decides, in this order:
 *   1. The endpoint is the endpoints entry of skb->ifindex; none: drop
 *      (unknown endpoint). The loader writes the entry before it attaches.
 *   2. Not IP (ARP, LLDP, ...): pass. 802.1Q/802.1ad frames are not let
 *      through as "not IP" (they may carry IP): with enforcement, drop.
 *   3. Endpoint not enforcing ingress (selected by no ingress rule): pass.
 *   4. Truncated or invalid IPv4/IPv6/L4 header, or more IPv6 extension
 *      headers than the parser walks: drop.
 *   5. IPv6 neighbor solicitation/advertisement with hop limit 255 (so not
 *      routed): pass, as ARP does for IPv4.
 *   6. Source identity: ipcache host hash, else LPM trie, else world.
 *   7. Verdict from the policy entry of (endpoint, identity), else of
 *      (endpoint, any), looked up at (protocol, destination port or ICMP
 *      type): allow passes; deny or no rule goes on to 8.
 *   8. A reply in a connection the endpoint opened (conntrack), or an ICMP
 *      error quoting one: pass. Else drop, as denied or default-denied.
 *
 * Every packet counts once in the counters map, under its reason. A packet
 * that step 7 allowed, or that step 8 dropped, also counts in the counter of
 * the policy entry that decided it (policy_counters, at the index the entry
 * holds), under the table's verdict: allow, deny, or none (default deny).
 *
 * Flow cache. Steps 1, 3, 6 and 7 depend only on (ifindex, source address,
 * protocol, port), and each hash lookup costs a kernel call (about 28 ns on
 * the development VM, more than the rest of the program): to_endpoint keeps
 * their outcome (with the entry's counter index) in a per-CPU direct-mapped
 * cache, valid while the global generation is the one it was read under.
 * bump_generation, run after every write to endpoints, ipcache, policy or
 * verdicts, voids all of it; while the generation is 0 nothing is cached.
 * Steps 2, 4, 5 and 8, fragments without ports and conntrack state are never
 * cached. A cached decision counts in its entry's counter like any other.
 *
 * Fragments: a first fragment is decided like any packet, and when it passes
 * its ports are remembered (fragments map) under (src, dst, IP ID, protocol);
 * a later fragment with remembered ports is decided as if it carried them.
 * A later fragment without them passes only if the identity is allowed every
 * port of the protocol (an L3 rule, no deny) and is dropped as a fragment
 * otherwise. A first fragment too short to hold its L4 header is malformed.
 *
 * Conntrack (from_endpoint writes, to_endpoint reads and refreshes), key as
 * the endpoint sends: (endpoint, its address, peer address, its port, peer
 * port, protocol). TCP: only a SYN without ACK opens an entry (60 s); an ACK
 * without SYN either way makes it established (6 h); FIN both ways or an RST
 * closes it (10 s). UDP, SCTP and other port protocols: any packet from the
 * endpoint opens or refreshes an entry, 60 s. ICMP: an echo request from the
 * endpoint opens one for the echo reply, 60 s. Any packet of a live entry, in
 * either direction, restarts its lifetime (written at most once a second). An
 * expired entry is no entry; LRU eviction reclaims space. A reply passes
 * even when a deny rule covers it, as in Cilium: the endpoint asked for it.
 */

#include "datapath.h"

char __license[] SEC("license") = "Dual MIT/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32); /* ifindex of the host-side interface */
	__type(value, struct endpoint_info);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} endpoints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, struct ipcache_host4);
	__type(value, struct ipcache_value);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} ipcache_host4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, struct ipcache_host6);
	__type(value, struct ipcache_value);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} ipcache_host6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__type(key, struct ipcache_lpm4);
	__type(value, struct ipcache_value);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} ipcache_lpm4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__type(key, struct ipcache_lpm6);
	__type(value, struct ipcache_value);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} ipcache_lpm6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, struct policy_key);
	__type(value, struct policy_value);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} policy SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct verdict_table);
} verdicts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 131072);
	__type(key, struct ct_key);
	__type(value, struct ct_value);
} conntrack SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct frag_key);
	__type(value, struct frag_value);
} fragments SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, REASON_MAX);
	__type(key, __u32);
	__type(value, struct counter);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, POLICY_COUNTERS_MAX);
	__type(key, __u32);
	__type(value, struct policy_counter);
} policy_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FLOW_CACHE_SLOTS);
	__type(key, __u32);
	__type(value, struct flow_entry);
} flow_cache SEC(".maps");

/* generation versions the maps the flow cache depends on (see datapath.h);
 * only bump_generation changes it, atomically. */
volatile __u64 generation;

/* btf_anchor is never called: its parameter puts the contract's types that
 * no map names into BTF, so that bpf2go emits Go types for them. */
struct btf_types {
	struct drop_event drop_event;
	enum reason reason;
	enum identity identity;
	enum endpoint_flags endpoint_flags;
	enum verdict verdict;
	enum verdict_limits verdict_limits;
	enum ct_flags ct_flags;
	enum flow_cache_limits flow_cache_limits;
	enum policy_counter_limits policy_counter_limits;
};

__attribute__((noinline, used)) int btf_anchor(struct btf_types *t)
{
	return 0;
}

#define PASS TC_ACT_UNSPEC
#define DROP TC_ACT_SHOT

#define NSEC_PER_SEC 1000000000ULL
#define CT_LIFETIME_SYN (60 * NSEC_PER_SEC)
#define CT_LIFETIME_TCP (21600 * NSEC_PER_SEC)
#define CT_LIFETIME_CLOSE (10 * NSEC_PER_SEC)
#define CT_LIFETIME_OTHER (60 * NSEC_PER_SEC)
#define CT_REFRESH_EVERY (1 * NSEC_PER_SEC)

/* IPv6 extension headers walked before giving up (and dropping). */
#define IPV6_MAX_EXT_HEADERS 8
/* Headers that start below this offset are read in place when linear. */
#define MAX_DIRECT_OFF 512

#define ICMP_ECHOREPLY 0
#define ICMP_DEST_UNREACH 3
#define ICMP_ECHO 8
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12
#define ICMPV6_DEST_UNREACH 1
#define ICMPV6_PARAMPROB 4
#define ICMPV6_ECHO_REQUEST 128
#define ICMPV6_ECHO_REPLY 129
#define NDISC_NEIGHBOUR_SOLICITATION 135
#define NDISC_NEIGHBOUR_ADVERTISEMENT 136

enum frag_state {
	FRAG_NONE = 0,
	FRAG_FIRST = 1, /* offset 0, more fragments follow */
	FRAG_LATER = 2, /* offset > 0: no L4 header */
};

enum parse_status {
	PARSE_OK = 0,
	PARSE_NON_IP,
	PARSE_MALFORMED,
	PARSE_VLAN,
	PARSE_EXT_HEADERS,
};

/* pkt is what the parser learned about one packet. */
struct pkt {
	__be32 src[4]; /* IPv4: src[0], the rest zero */
	__be32 dst[4];
	__be16 sport; /* ICMP echo: the identifier, in both */
	__be16 dport;
	__be32 frag_id;
	__u32 l4_off;
	__u8 proto;
	__u8 family; /* 4, 6; 0 when not IP */
	__u8 frag;   /* enum frag_state */
	__u8 ports;  /* sport and dport are valid */
	__u8 tcp_flags;
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 hop_limit;
};

/* READ_HDR runs fn on the header of type T at offset off and returns what fn
 * returns, or fail when the packet is too short: fn reads the header in
 * place when it is in the linear part of the packet, else a copy. fn copies
 * fields into scalars only, so both ways end in the same verifier state. */
#define READ_HDR(skb, off, T, fail, fn, ...)                                           \
	({                                                                             \
		void *data_ = (void *)(long)(skb)->data;                               \
		void *end_ = (void *)(long)(skb)->data_end;                            \
		__u32 off_ = (off);                                                    \
		int ret_ = (fail), done_ = 0;                                          \
		if (off_ < MAX_DIRECT_OFF) {                                           \
			const T *hdr_ = data_ + off_;                                  \
			if ((const void *)(hdr_ + 1) <= end_) {                        \
				ret_ = fn(hdr_, ##__VA_ARGS__);                        \
				done_ = 1;                                             \
			}                                                              \
		}                                                                      \
		if (!done_) {                                                          \
			T buf_;                                                        \
			if (bpf_skb_load_bytes(skb, off_, &buf_, sizeof(buf_)) == 0)   \
				ret_ = fn(&buf_, ##__VA_ARGS__);                       \
		}                                                                      \
		ret_;                                                                  \
	})

/* icmp_is_echo reports whether an ICMP message carries an echo identifier. */
static __always_inline int icmp_is_echo(__u8 proto, __u8 type)
{
	if (proto == IPPROTO_ICMP)
		return type == ICMP_ECHO || type == ICMP_ECHOREPLY;
	return type == ICMPV6_ECHO_REQUEST || type == ICMPV6_ECHO_REPLY;
}

static __always_inline int is_icmp(__u8 proto)
{
	return proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6;
}

static __always_inline int read_tcp(const struct tcphdr *t, struct pkt *p)
{
	p->sport = t->source;
	p->dport = t->dest;
	p->tcp_flags = t->flags;
	p->ports = 1;
	return PARSE_OK;
}

static __always_inline int read_udp(const struct udphdr *u, struct pkt *p)
{
	p->sport = u->source;
	p->dport = u->dest;
	p->ports = 1;
	return PARSE_OK;
}

static __always_inline int read_sctp(const struct sctphdr *u, struct pkt *p)
{
	p->sport = u->source;
	p->dport = u->dest;
	p->ports = 1;
	return PARSE_OK;
}

static __always_inline int read_icmp(const struct icmphdr *ic, struct pkt *p)
{
	p->icmp_type = ic->type;
	p->icmp_code = ic->code;
	if (icmp_is_echo(p->proto, ic->type)) {
		p->sport = ic->id;
		p->dport = ic->id;
		p->ports = 1;
	}
	return PARSE_OK;
}

/* parse_l4 reads the L4 header at off. A first fragment too short for it
 * is malformed; a later fragment has none. */
static __always_inline int parse_l4(struct __sk_buff *skb, struct pkt *p, __u32 off)
{
	p->l4_off = off;
	if (p->frag == FRAG_LATER)
		return PARSE_OK;

	switch (p->proto) {
	case IPPROTO_TCP:
		return READ_HDR(skb, off, struct tcphdr, PARSE_MALFORMED, read_tcp, p);
	case IPPROTO_UDP:
		return READ_HDR(skb, off, struct udphdr, PARSE_MALFORMED, read_udp, p);
	case IPPROTO_SCTP:
		return READ_HDR(skb, off, struct sctphdr, PARSE_MALFORMED, read_sctp, p);
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		return READ_HDR(skb, off, struct icmphdr, PARSE_MALFORMED, read_icmp, p);
	}
	return PARSE_OK;
}

/* read_ipv4 reads an IPv4 header; it returns the header length, or -1. */
static __always_inline int read_ipv4(const struct iphdr *ip, struct pkt *p)
{
	__u32 ihl = (ip->ihl_version & 0xF) * 4;
	if ((ip->ihl_version >> 4) != 4 || ihl < sizeof(*ip) || bpf_ntohs(ip->tot_len) < ihl)
		return -1;
	p->family = 4;
	p->src[0] = ip->saddr;
	p->dst[0] = ip->daddr;
	p->proto = ip->protocol;
	p->hop_limit = ip->ttl;
	__u16 frag = bpf_ntohs(ip->frag_off);
	if (frag & IP_OFFSET)
		p->frag = FRAG_LATER;
	else if (frag & IP_MF)
		p->frag = FRAG_FIRST;
	p->frag_id = ip->id;
	return ihl;
}

static __always_inline int parse_ipv4(struct __sk_buff *skb, struct pkt *p)
{
	int ihl = READ_HDR(skb, ETH_HLEN, struct iphdr, -1, read_ipv4, p);
	if (ihl < (int)sizeof(struct iphdr))
		return PARSE_MALFORMED;
	return parse_l4(skb, p, ETH_HLEN + (ihl & 0x3C));
}

/* read_ipv6 reads an IPv6 header; it returns the next header, or -1. */
static __always_inline int read_ipv6(const struct ipv6hdr *ip6, struct pkt *p)
{
	if ((*(const __u8 *)ip6 >> 4) != 6)
		return -1;
	p->family = 6;
	__builtin_memcpy(p->src, ip6->saddr, 16);
	__builtin_memcpy(p->dst, ip6->daddr, 16);
	p->hop_limit = ip6->hop_limit;
	return ip6->nexthdr;
}

static __always_inline int is_ipv6_ext(__u8 nh)
{
	return nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING || nh == IPPROTO_DSTOPTS ||
	       nh == IPPROTO_AH || nh == IPPROTO_FRAGMENT;
}

static __always_inline int parse_ipv6(struct __sk_buff *skb, struct pkt *p)
{
	int next = READ_HDR(skb, ETH_HLEN, struct ipv6hdr, -1, read_ipv6, p);
	if (next < 0)
		return PARSE_MALFORMED;

	__u8 nh = next;
	__u32 off = ETH_HLEN + sizeof(struct ipv6hdr);
	/* Extension headers are rare: read them by copy, not in place. */
	for (int i = 0; i < IPV6_MAX_EXT_HEADERS && is_ipv6_ext(nh); i++) {
		if (nh == IPPROTO_FRAGMENT) {
			struct frag_hdr f;
			if (bpf_skb_load_bytes(skb, off, &f, sizeof(f)) < 0)
				return PARSE_MALFORMED;
			__u16 fo = bpf_ntohs(f.frag_off);
			p->frag_id = f.identification;
			nh = f.nexthdr;
			off += sizeof(f);
			if (fo & 0xFFF8) {
				/* What follows is payload, whatever nh says. */
				p->frag = FRAG_LATER;
				break;
			}
			if (fo & 1)
				p->frag = FRAG_FIRST;
			continue;
		}
		struct ipv6_opt_hdr o;
		if (bpf_skb_load_bytes(skb, off, &o, sizeof(o)) < 0)
			return PARSE_MALFORMED;
		off += nh == IPPROTO_AH ? ((__u32)o.hdrlen + 2) * 4 : ((__u32)o.hdrlen + 1) * 8;
		nh = o.nexthdr;
	}
	if (p->frag != FRAG_LATER && is_ipv6_ext(nh))
		return PARSE_EXT_HEADERS;
	p->proto = nh;
	return parse_l4(skb, p, off);
}

static __always_inline int parse(struct __sk_buff *skb, struct pkt *p)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	const struct ethhdr *eth = data;

	if ((const void *)(eth + 1) > end)
		return PARSE_NON_IP;
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		return parse_ipv4(skb, p);
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return parse_ipv6(skb, p);
	if (eth->h_proto == bpf_htons(ETH_P_8021Q) || eth->h_proto == bpf_htons(ETH_P_8021AD))
		return PARSE_VLAN;
	return PARSE_NON_IP;
}

static __always_inline void count(__u32 reason, __u32 len)
{
	struct counter *c = bpf_map_lookup_elem(&counters, &reason);
	if (c) {
		c->packets++;
		c->bytes += len;
	}
}

/* count_entry counts a packet of len bytes under verdict in the counter of
 * the policy entry that decided it (index 0: none). */
static __always_inline void count_entry(__u32 index, __u32 verdict, __u32 len)
{
	if (!index || verdict > VERDICT_DENY)
		return;
	struct policy_counter *c = bpf_map_lookup_elem(&policy_counters, &index);
	if (c) {
		c->verdicts[verdict].packets++;
		c->verdicts[verdict].bytes += len;
	}
}

static __always_inline int pass(struct __sk_buff *skb, __u32 reason)
{
	count(reason, skb->len);
	return PASS;
}

static __always_inline int drop(struct __sk_buff *skb, const struct pkt *p, __u32 endpoint,
				__u32 identity, __u32 reason)
{
	__u32 len = skb->len;
	count(reason, len);
	struct drop_event *e = bpf_ringbuf_reserve(&drops, sizeof(*e), 0);
	if (!e) {
		count(REASON_EVENTS_LOST, len);
		return DROP;
	}
	e->time = bpf_ktime_get_coarse_ns();
	__builtin_memcpy(e->src, p->src, 16);
	__builtin_memcpy(e->dst, p->dst, 16);
	e->src_identity = identity;
	e->endpoint = endpoint;
	e->ifindex = skb->ifindex;
	e->len = len;
	e->sport = bpf_ntohs(p->sport);
	e->dport = bpf_ntohs(p->dport);
	e->proto = p->proto;
	e->family = p->family;
	e->reason = reason;
	e->icmp_type = p->icmp_type;
	bpf_ringbuf_submit(e, 0);
	return DROP;
}

static __always_inline __u32 src_identity(const struct pkt *p)
{
	const struct ipcache_value *v;

	if (p->family == 4) {
		v = bpf_map_lookup_elem(&ipcache_host4, p->src);
		if (v)
			return v->identity;
		struct ipcache_lpm4 k = {.prefixlen = 32};
		__builtin_memcpy(k.addr, p->src, 4);
		v = bpf_map_lookup_elem(&ipcache_lpm4, &k);
	} else {
		v = bpf_map_lookup_elem(&ipcache_host6, p->src);
		if (v)
			return v->identity;
		struct ipcache_lpm6 k = {.prefixlen = 128};
		__builtin_memcpy(k.addr, p->src, 16);
		v = bpf_map_lookup_elem(&ipcache_lpm6, &k);
	}
	return v ? v->identity : IDENTITY_WORLD;
}

/* policy_table returns the verdict table of the policy entry of (endpoint,
 * identity), else of (endpoint, any), and sets *counter to that entry's
 * counter; with neither entry, it returns 0 and leaves *counter alone. */
static __always_inline const struct verdict_table *policy_table(__u32 endpoint, __u32 identity,
								__u32 *counter)
{
	struct policy_key k = {.endpoint = endpoint, .identity = identity};
	const struct policy_value *v = bpf_map_lookup_elem(&policy, &k);
	if (!v) {
		k.identity = IDENTITY_ANY;
		v = bpf_map_lookup_elem(&policy, &k);
		if (!v)
			return 0;
	}
	__u32 table = v->table;
	*counter = v->counter;
	return bpf_map_lookup_elem(&verdicts, &table);
}

#define BOUND(t, i) ((t)->bounds[(i) & (VERDICT_TABLE_MAX - 1)])

/* table_verdict looks key (protocol << 16 | port) up in t. With whole set,
 * an allow counts only if it covers every port of key's protocol. */
static __always_inline __u32 table_verdict(const struct verdict_table *t, __u32 key, int whole)
{
	__u64 n = t->len;
	if (n > VERDICT_TABLE_MAX)
		n = VERDICT_TABLE_MAX;
	__u64 probe = key << 8 | 0xFF;
	__u64 lo = 0;

	/* Binary search with power-of-two steps; lo ends as the number of
	 * bounds <= probe. A step is taken when neither lo + step - n nor
	 * bound - probe is positive, which the sign bit of their differences
	 * (64-bit, of 32-bit values) tells: no branch, so the verifier walks
	 * one path instead of one per outcome. */
#pragma unroll
	for (int i = VERDICT_TABLE_LOG2; i >= 0; i--) {
		__u64 step = 1ULL << i;
		if (step > n)
			continue; /* small tables skip the big steps */
		__u64 next = lo + step;
		__u64 bound = BOUND(t, next - 1);
		__u64 skip = ((n - next) | (probe - bound)) >> 63;
		lo += step & (skip - 1);
	}
	if (lo == 0)
		return VERDICT_NONE;
	__u32 v = BOUND(t, lo - 1) & 0xFF;
	if (whole && v == VERDICT_ALLOW && lo < n && (BOUND(t, lo) >> 8) <= (key | 0xFFFF))
		return VERDICT_NONE;
	return v;
}

static __always_inline __u32 policy_port(const struct pkt *p)
{
	if (is_icmp(p->proto))
		return p->icmp_type;
	return p->ports ? bpf_ntohs(p->dport) : 0;
}

static __always_inline __u64 ct_lifetime(__u8 proto, __u32 flags)
{
	if (proto != IPPROTO_TCP)
		return CT_LIFETIME_OTHER;
	if (flags & CT_CLOSED)
		return CT_LIFETIME_CLOSE;
	if (flags & CT_ESTABLISHED)
		return CT_LIFETIME_TCP;
	return CT_LIFETIME_SYN;
}

/* ct_refresh restarts the lifetime of a live entry for one more packet sent
 * by the endpoint (tx) or by the peer. */
static __always_inline void ct_refresh(struct ct_value *v, const struct pkt *p, int tx, __u64 now)
{
	__u32 old = v->flags, flags = old;

	if (p->proto == IPPROTO_TCP) {
		__u8 tcp = p->tcp_flags;
		if (tcp & TCP_FLAG_RST)
			flags |= CT_CLOSED;
		if (tcp & TCP_FLAG_FIN)
			flags |= tx ? CT_TX_FIN : CT_RX_FIN;
		if ((flags & (CT_TX_FIN | CT_RX_FIN)) == (CT_TX_FIN | CT_RX_FIN))
			flags |= CT_CLOSED;
		if ((tcp & (TCP_FLAG_ACK | TCP_FLAG_SYN)) == TCP_FLAG_ACK)
			flags |= CT_ESTABLISHED;
	}
	__u64 expires = now + ct_lifetime(p->proto, flags);
	if (flags != old) {
		__sync_fetch_and_or(&v->flags, flags & ~old);
		v->expires = expires;
	} else if (expires > v->expires + CT_REFRESH_EVERY) {
		v->expires = expires;
	}
}

static __always_inline void ct_key_init(struct ct_key *k, __u32 endpoint, const __be32 *ep_addr,
					const __be32 *peer_addr, __be16 ep_port, __be16 peer_port,
					__u8 proto, __u8 family)
{
	k->endpoint = endpoint;
	__builtin_memcpy(k->ep_addr, ep_addr, 16);
	__builtin_memcpy(k->peer_addr, peer_addr, 16);
	k->ep_port = ep_port;
	k->peer_port = peer_port;
	k->proto = proto;
	k->family = family;
}

/* ct_reply reports whether p, sent to the endpoint, is a reply in a live
 * connection the endpoint opened, and refreshes that connection. */
static __always_inline int ct_reply(const struct pkt *p, __u32 endpoint)
{
	if (!p->ports)
		return 0;
	if ((p->proto == IPPROTO_ICMP && p->icmp_type != ICMP_ECHOREPLY) ||
	    (p->proto == IPPROTO_ICMPV6 && p->icmp_type != ICMPV6_ECHO_REPLY))
		return 0;

	struct ct_key k = {};
	ct_key_init(&k, endpoint, p->dst, p->src, p->dport, p->sport, p->proto, p->family);
	struct ct_value *v = bpf_map_lookup_elem(&conntrack, &k);
	if (!v)
		return 0;
	__u64 now = bpf_ktime_get_coarse_ns();
	if (now >= v->expires)
		return 0;
	ct_refresh(v, p, 0, now);
	return 1;
}

static __always_inline int icmp_is_error(const struct pkt *p)
{
	if (p->proto == IPPROTO_ICMP)
		return p->icmp_type == ICMP_DEST_UNREACH || p->icmp_type == ICMP_TIME_EXCEEDED ||
		       p->icmp_type == ICMP_PARAMETERPROB;
	return p->proto == IPPROTO_ICMPV6 && p->icmp_type >= ICMPV6_DEST_UNREACH &&
	       p->icmp_type <= ICMPV6_PARAMPROB;
}

/* ct_related reports whether p is an ICMP error about a live connection the
 * endpoint opened: the packet it quotes was sent by the endpoint and is in
 * conntrack. Quoted packets are not walked past IPv6 extension headers. Read
 * by copy: errors are rare. */
static __always_inline int ct_related(struct __sk_buff *skb, const struct pkt *p, __u32 endpoint)
{
	if (p->frag != FRAG_NONE || !icmp_is_error(p))
		return 0;

	struct ct_key k = {};
	__u32 off = p->l4_off + sizeof(struct icmphdr);
	__u8 proto;

	if (p->family == 4) {
		struct iphdr ip;
		if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) < 0)
			return 0;
		if ((ip.ihl_version >> 4) != 4 || (ip.ihl_version & 0xF) < 5 ||
		    (bpf_ntohs(ip.frag_off) & IP_OFFSET) || ip.saddr != p->dst[0])
			return 0;
		proto = ip.protocol;
		__builtin_memcpy(k.ep_addr, &ip.saddr, 4);
		__builtin_memcpy(k.peer_addr, &ip.daddr, 4);
		off += (ip.ihl_version & 0xF) * 4;
	} else {
		struct ipv6hdr ip6;
		if (bpf_skb_load_bytes(skb, off, &ip6, sizeof(ip6)) < 0)
			return 0;
		if ((*(const __u8 *)&ip6 >> 4) != 6 ||
		    ((ip6.saddr[0] ^ p->dst[0]) | (ip6.saddr[1] ^ p->dst[1]) |
		     (ip6.saddr[2] ^ p->dst[2]) | (ip6.saddr[3] ^ p->dst[3])))
			return 0;
		proto = ip6.nexthdr;
		__builtin_memcpy(k.ep_addr, ip6.saddr, 16);
		__builtin_memcpy(k.peer_addr, ip6.daddr, 16);
		off += sizeof(ip6);
	}

	struct icmphdr l4; /* 8 bytes: ports, or the start of an ICMP header */
	if (bpf_skb_load_bytes(skb, off, &l4, sizeof(l4)) < 0)
		return 0;
	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP) {
		const struct udphdr *ports = (const void *)&l4;
		k.ep_port = ports->source;
		k.peer_port = ports->dest;
	} else if ((proto == IPPROTO_ICMP && l4.type == ICMP_ECHO) ||
		   (proto == IPPROTO_ICMPV6 && l4.type == ICMPV6_ECHO_REQUEST)) {
		k.ep_port = l4.id;
		k.peer_port = l4.id;
	} else {
		return 0;
	}
	k.endpoint = endpoint;
	k.proto = proto;
	k.family = p->family;

	const struct ct_value *v = bpf_map_lookup_elem(&conntrack, &k);
	return v && bpf_ktime_get_coarse_ns() < v->expires;
}

static __always_inline void frag_key_init(struct frag_key *k, const struct pkt *p)
{
	__builtin_memcpy(k->src, p->src, 16);
	__builtin_memcpy(k->dst, p->dst, 16);
	k->id = p->frag_id;
	k->proto = p->proto;
	k->family = p->family;
}

/* frag_remember records the ports of a first fragment that passed. */
static __always_inline void frag_remember(const struct pkt *p)
{
	if (p->frag != FRAG_FIRST)
		return;
	struct frag_key k = {};
	frag_key_init(&k, p);
	struct frag_value v = {.sport = p->sport, .dport = p->dport, .icmp_type = p->icmp_type};
	bpf_map_update_elem(&fragments, &k, &v, BPF_ANY);
}

/* frag_recall gives a later fragment the ports of its first fragment, if
 * that passed; it reports whether it did. */
static __always_inline int frag_recall(struct pkt *p)
{
	struct frag_key k = {};
	frag_key_init(&k, p);
	const struct frag_value *v = bpf_map_lookup_elem(&fragments, &k);
	if (!v)
		return 0;
	p->sport = v->sport;
	p->dport = v->dport;
	p->icmp_type = v->icmp_type;
	if (is_icmp(p->proto))
		p->ports = icmp_is_echo(p->proto, p->icmp_type);
	else
		p->ports = p->proto == IPPROTO_TCP || p->proto == IPPROTO_UDP ||
			   p->proto == IPPROTO_SCTP;
	return 1;
}

static __always_inline int is_ndp(const struct pkt *p)
{
	return p->proto == IPPROTO_ICMPV6 && p->frag == FRAG_NONE && p->hop_limit == 255 &&
	       p->icmp_code == 0 &&
	       (p->icmp_type == NDISC_NEIGHBOUR_SOLICITATION ||
		p->icmp_type == NDISC_NEIGHBOUR_ADVERTISEMENT);
}

static __always_inline void flow_key_init(struct flow_key *k, __u32 ifindex, const struct pkt *p)
{
	__builtin_memcpy(k->src, p->src, 16);
	k->ifindex = ifindex;
	k->port = policy_port(p);
	k->proto = p->proto;
	k->family = p->family;
}

/* flow_slot returns the flow cache slot of k. */
static __always_inline __u32 flow_slot(const struct flow_key *k)
{
	__u32 h = k->src[0] * 0x9E3779B1U;
	h ^= k->src[1] * 0x85EBCA77U;
	h ^= k->src[2] * 0xC2B2AE3DU;
	h ^= k->src[3] * 0x27D4EB2FU;
	h ^= (k->ifindex ^ ((__u32)k->port << 16 | (__u32)k->proto << 8 | k->family)) * 0x165667B1U;
	h ^= h >> 15;
	h *= 0x2C1B3C6DU;
	h ^= h >> 12;
	return h & (FLOW_CACHE_SLOTS - 1);
}

static __always_inline int flow_key_eq(const struct flow_key *a, const struct flow_key *b)
{
	const __u64 *x = (const void *)a, *y = (const void *)b;
	return ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2])) == 0;
}

SEC("tc")
int to_endpoint(struct __sk_buff *skb)
{
	struct pkt p = {};
	int status = parse(skb, &p);
	__u32 ifindex = skb->ifindex;
	/* Read before any lookup the decision depends on: a decision made
	 * while the maps change is cached under the old generation. */
	__u64 gen = generation;

	struct flow_key fk = {};
	struct flow_entry *slot = 0;
	__u32 endpoint, identity, verdict, counter = 0;
	int l3_only = 0;

	/* Cached decision: packets whose whole decision the key determines. */
	if (gen != 0 && status == PARSE_OK && p.frag != FRAG_LATER && !is_ndp(&p)) {
		flow_key_init(&fk, ifindex, &p);
		__u32 idx = flow_slot(&fk);
		slot = bpf_map_lookup_elem(&flow_cache, &idx);
		if (slot && slot->gen == gen && flow_key_eq(&slot->key, &fk)) {
			if (!slot->enforce)
				return pass(skb, REASON_PASS_NOT_ENFORCED);
			endpoint = slot->endpoint;
			identity = slot->identity;
			verdict = slot->verdict;
			counter = slot->counter;
			goto decided;
		}
	}

	const struct endpoint_info *ep = bpf_map_lookup_elem(&endpoints, &ifindex);
	if (!ep)
		return drop(skb, &p, 0, IDENTITY_ANY, REASON_DROP_UNKNOWN_ENDPOINT);
	endpoint = ep->id;

	if (status == PARSE_NON_IP)
		return pass(skb, REASON_PASS_NON_IP);
	if (!(ep->flags & ENDPOINT_ENFORCE_INGRESS)) {
		if (slot) {
			slot->key = fk;
			slot->gen = gen;
			slot->enforce = 0;
		}
		return pass(skb, REASON_PASS_NOT_ENFORCED);
	}
	switch (status) {
	case PARSE_OK:
		break;
	case PARSE_VLAN:
		return drop(skb, &p, endpoint, IDENTITY_ANY, REASON_DROP_VLAN);
	case PARSE_EXT_HEADERS:
		return drop(skb, &p, endpoint, IDENTITY_ANY, REASON_DROP_EXT_HEADERS);
	default:
		return drop(skb, &p, endpoint, IDENTITY_ANY, REASON_DROP_MALFORMED);
	}

	if (is_ndp(&p))
		return pass(skb, REASON_PASS_NDP);

	identity = src_identity(&p);
	/* A later fragment whose first fragment was not seen is decided on L3
	 * alone: its ports are unknown. */
	l3_only = p.frag == FRAG_LATER && !frag_recall(&p);

	const struct verdict_table *t = policy_table(endpoint, identity, &counter);
	verdict = t ? table_verdict(t, (__u32)p.proto << 16 | policy_port(&p), l3_only)
		    : VERDICT_NONE;
	if (slot) {
		slot->key = fk;
		slot->gen = gen;
		slot->endpoint = endpoint;
		slot->identity = identity;
		slot->verdict = verdict;
		slot->enforce = 1;
		slot->counter = counter;
	}

decided:
	if (verdict == VERDICT_ALLOW) {
		count_entry(counter, VERDICT_ALLOW, skb->len);
		frag_remember(&p);
		return pass(skb, REASON_PASS_POLICY);
	}
	if (ct_reply(&p, endpoint)) {
		frag_remember(&p);
		return pass(skb, REASON_PASS_REPLY);
	}
	if (ct_related(skb, &p, endpoint))
		return pass(skb, REASON_PASS_RELATED);
	count_entry(counter, verdict, skb->len);
	if (verdict == VERDICT_DENY)
		return drop(skb, &p, endpoint, identity, REASON_DROP_POLICY_DENY);
	return drop(skb, &p, endpoint, identity,
		    l3_only ? REASON_DROP_FRAGMENT : REASON_DROP_POLICY_DEFAULT);
}

SEC("tc")
int from_endpoint(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	const struct endpoint_info *ep = bpf_map_lookup_elem(&endpoints, &ifindex);
	if (!ep)
		return pass(skb, REASON_TRACK_UNKNOWN_ENDPOINT);

	struct pkt p = {};
	if (parse(skb, &p) != PARSE_OK || !p.ports)
		return pass(skb, REASON_TRACK_NONE);
	/* Only an echo request opens an ICMP entry; answering pings opens none. */
	if ((p.proto == IPPROTO_ICMP && p.icmp_type != ICMP_ECHO) ||
	    (p.proto == IPPROTO_ICMPV6 && p.icmp_type != ICMPV6_ECHO_REQUEST))
		return pass(skb, REASON_TRACK_NONE);

	struct ct_key k = {};
	ct_key_init(&k, ep->id, p.src, p.dst, p.sport, p.dport, p.proto, p.family);
	struct ct_value *v = bpf_map_lookup_elem(&conntrack, &k);
	__u64 now = bpf_ktime_get_coarse_ns();
	int live = v && now < v->expires;
	int opens = p.proto != IPPROTO_TCP ||
		    (p.tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;

	if (live && !(opens && (v->flags & CT_CLOSED))) {
		ct_refresh(v, &p, 1, now);
		return pass(skb, REASON_TRACK_SEEN);
	}
	if (!opens)
		return pass(skb, REASON_TRACK_NONE);
	struct ct_value nv = {.expires = now + ct_lifetime(p.proto, 0)};
	bpf_map_update_elem(&conntrack, &k, &nv, BPF_ANY);
	return pass(skb, REASON_TRACK_NEW);
}

SEC("tc")
int empty(struct __sk_buff *skb)
{
	return TC_ACT_UNSPEC;
}

/* bump_generation voids every cached decision; the loader runs it
 * (BPF_PROG_TEST_RUN) after each change to the maps decisions depend on. */
SEC("syscall")
int bump_generation(void *ctx)
{
	__sync_fetch_and_add(&generation, 1);
	return 0;
}

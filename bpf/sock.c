//go:build ignore

/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * sock.c: socket-level load balancing of Services, east-west.
 *
 * Hooks. The programs are CGROUP_SOCK_ADDR programs attached to a cgroup
 * (the root cgroup on a node: every pod and every host process):
 *
 *   sock_connect4/6      connect(): a TCP or UDP socket connecting to a
 *                        service frontend (address, port, protocol) is
 *                        connected to one of its backends instead.
 *   sock_sendmsg4/6      sendmsg()/sendto() on an unconnected UDP socket
 *                        to a frontend: the datagram goes to a backend.
 *   sock_recvmsg4/6      recvmsg()/recvfrom() on a UDP socket: a datagram
 *                        from a backend this socket was sent to shows as
 *                        coming from the frontend (a DNS reply comes back
 *                        from the service address).
 *   sock_getpeername4/6  getpeername(): a socket connected to a backend
 *                        says it is connected to the frontend.
 *
 * The translation happens once per connect() or sendmsg(), before the
 * kernel builds a packet: no per-packet NAT, and the backend's node sees
 * the client's own address (its policy sees the client's identity).
 *
 * Addresses are 16 bytes: IPv6, or IPv4-mapped (::ffff:a.b.c.d), so an
 * IPv6 socket connecting to a v4-mapped frontend is served too.
 *
 * Maps (the contract with internal/socklb):
 *   sock_services   frontend (address, port, protocol) -> service: its id,
 *                   the number of active backends, flags, affinity timeout.
 *   sock_backends   (service id, slot) -> backend address and port. Slots
 *                   0..count-1 hold the active backends; terminating ones
 *                   are not in them, so they get no new connections, and
 *                   connections they have keep going (nothing here sees
 *                   an established socket again).
 *   sock_members    (service id, backend) -> 1 for every active backend:
 *                   session affinity checks its remembered backend here.
 *   sock_revnat     (socket cookie, backend) -> frontend, written at every
 *                   translation, read by recvmsg and getpeername (LRU).
 *   sock_affinity   (network namespace cookie, service id) -> backend and
 *                   when it was last used, for sessionAffinity: ClientIP
 *                   (LRU). The socket's network namespace stands for the
 *                   client: a pod is its own, the host's processes share
 *                   one.
 *   sock_counters   per-CPU counters by reason (enum reason).
 *   sock_frontend_stats  per-CPU connections (and UDP sends) translated,
 *                   by service id; user space creates a frontend's entry
 *                   with the frontend and removes it with it.
 *
 * A frontend with no active backend refuses: connect() and sendmsg() fail
 * with ECONNREFUSED, as kube-proxy's REJECT rule makes them.
 */
#include "include/kernel.h"

struct bpf_sock_addr {
	__u32 user_family;
	__u32 user_ip4;
	__u32 user_ip6[4];
	__u32 user_port;
	__u32 family;
	__u32 type;
	__u32 protocol;
	__u32 msg_src_ip4;
	__u32 msg_src_ip6[4];
	__u64 sk;
};

static __u32 (*const bpf_get_prandom_u32)(void) = (void *)7;
static __u64 (*const bpf_get_socket_cookie)(void *ctx) = (void *)46;
static __u64 (*const bpf_get_netns_cookie)(void *ctx) = (void *)122;
static long (*const bpf_set_retval)(int retval) = (void *)187;

#define ECONNREFUSED 111

/* Sizes; internal/socklb reads them from the maps. */
#define SOCK_MAX_SERVICES 65536
#define SOCK_MAX_BACKENDS 262144
#define SOCK_MAX_REVNAT 262144
#define SOCK_MAX_AFFINITY 65536

/* svc_flags */
enum svc_flags {
	SVC_F_AFFINITY = 1, /* sessionAffinity: ClientIP */
};

/* reason: what a program did, counted in sock_counters. */
enum reason {
	SOCK_PASS = 0,          /* not a frontend: left alone */
	SOCK_XLATE = 1,         /* translated to a backend */
	SOCK_XLATE_AFFINITY = 2, /* translated to the remembered backend */
	SOCK_NO_BACKEND = 3,    /* frontend without an active backend: refused */
	SOCK_REVNAT = 4,        /* recvmsg/getpeername shown as the frontend */
	SOCK_REASON_MAX = 5,
};

struct svc_key {
	__u8 addr[16]; /* IPv6 or IPv4-mapped */
	__u16 port;    /* network byte order */
	__u8 proto;    /* IPPROTO_TCP, IPPROTO_UDP */
	__u8 pad;
};

struct svc_value {
	__u32 id;               /* > 0 */
	__u16 count;            /* active backends: slots 0..count-1 */
	__u16 flags;            /* enum svc_flags */
	__u32 affinity_timeout; /* seconds, with SVC_F_AFFINITY */
};

struct slot_key {
	__u32 id;
	__u32 slot;
};

struct backend {
	__u8 addr[16]; /* IPv6 or IPv4-mapped, the frontend's family */
	__u16 port;    /* network byte order */
	__u16 pad;
};

struct member_key {
	__u32 id;
	struct backend backend;
};

struct revnat_key {
	__u64 cookie;
	struct backend backend;
	__u32 pad;
};

struct affinity_key {
	__u64 netns;
	__u32 id;
	__u32 pad;
};

struct affinity_value {
	struct backend backend;
	__u64 last_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SOCK_MAX_SERVICES);
	__type(key, struct svc_key);
	__type(value, struct svc_value);
} sock_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SOCK_MAX_BACKENDS);
	__type(key, struct slot_key);
	__type(value, struct backend);
} sock_backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SOCK_MAX_BACKENDS);
	__type(key, struct member_key);
	__type(value, __u8);
} sock_members SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SOCK_MAX_REVNAT);
	__type(key, struct revnat_key);
	__type(value, struct backend);
} sock_revnat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SOCK_MAX_AFFINITY);
	__type(key, struct affinity_key);
	__type(value, struct affinity_value);
} sock_affinity SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SOCK_REASON_MAX);
	__type(key, __u32);
	__type(value, __u64);
} sock_counters SEC(".maps");

/* btf_anchor is never called: its parameter puts the contract's types that
 * no map names into BTF, so that bpf2go emits Go types for them. */
struct btf_types {
	enum reason reason;
	enum svc_flags flags;
};

__attribute__((noinline, used)) int btf_anchor(struct btf_types *t)
{
	return 0;
}

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, SOCK_MAX_SERVICES);
	__type(key, __u32);
	__type(value, __u64);
} sock_frontend_stats SEC(".maps");

static __always_inline void count(__u32 reason)
{
	__u64 *c = bpf_map_lookup_elem(&sock_counters, &reason);

	if (c)
		*c += 1;
}

/* The socket's destination as a frontend key. */
static __always_inline void key4(struct svc_key *k, const struct bpf_sock_addr *ctx)
{
	__u32 ip = ctx->user_ip4;

	__builtin_memset(k, 0, sizeof(*k));
	k->addr[10] = 0xff;
	k->addr[11] = 0xff;
	__builtin_memcpy(&k->addr[12], &ip, 4);
	k->port = (__u16)ctx->user_port;
}

static __always_inline void key6(struct svc_key *k, const struct bpf_sock_addr *ctx)
{
	__u32 ip[4];

	ip[0] = ctx->user_ip6[0];
	ip[1] = ctx->user_ip6[1];
	ip[2] = ctx->user_ip6[2];
	ip[3] = ctx->user_ip6[3];
	__builtin_memset(k, 0, sizeof(*k));
	__builtin_memcpy(k->addr, ip, 16);
	k->port = (__u16)ctx->user_port;
}

/*
 * pick returns the backend for a new connection or datagram to the
 * frontend svc, remembering it for affinity; NULL when there is none (0).
 */
static __always_inline const struct backend *pick(void *ctx, const struct svc_value *svc,
						       struct affinity_value *aff)
{
	struct slot_key sk = {.id = svc->id};
	const struct backend *be;
	struct affinity_key ak = {};
	__u64 now = 0;

	if (svc->count == 0)
		return 0;
	if (svc->flags & SVC_F_AFFINITY) {
		struct affinity_value *old;

		ak.netns = bpf_get_netns_cookie(ctx);
		ak.id = svc->id;
		now = bpf_ktime_get_coarse_ns();
		old = bpf_map_lookup_elem(&sock_affinity, &ak);
		if (old && now - old->last_ns <= (__u64)svc->affinity_timeout * 1000000000ULL) {
			struct member_key mk = {.id = svc->id, .backend = old->backend};

			if (bpf_map_lookup_elem(&sock_members, &mk)) {
				old->last_ns = now;
				count(SOCK_XLATE_AFFINITY);
				return &old->backend;
			}
		}
	}
	sk.slot = bpf_get_prandom_u32() % svc->count;
	be = bpf_map_lookup_elem(&sock_backends, &sk);
	if (!be) {
		/* The count was read just before the backends shrank: slot 0
		 * is the last one removed. */
		sk.slot = 0;
		be = bpf_map_lookup_elem(&sock_backends, &sk);
		if (!be)
			return 0;
	}
	if (svc->flags & SVC_F_AFFINITY) {
		aff->backend = *be;
		aff->last_ns = now;
		bpf_map_update_elem(&sock_affinity, &ak, aff, BPF_ANY);
	}
	count(SOCK_XLATE);
	return be;
}

/* remember lets recvmsg and getpeername show the frontend for backend. */
static __always_inline void remember(void *ctx, const struct backend *be, const struct svc_key *k)
{
	struct revnat_key rk = {.cookie = bpf_get_socket_cookie(ctx), .backend = *be};
	struct backend front = {.port = k->port};

	__builtin_memcpy(front.addr, k->addr, 16);
	bpf_map_update_elem(&sock_revnat, &rk, &front, BPF_ANY);
}

/* set_dest writes a's address and port into the socket address: the
 * destination for connect and sendmsg, the peer for recvmsg and
 * getpeername. */
static __always_inline void set_dest(struct bpf_sock_addr *ctx, const struct backend *a, int v6)
{
	if (v6) {
		__u32 ip[4];

		__builtin_memcpy(ip, a->addr, 16);
		ctx->user_ip6[0] = ip[0];
		ctx->user_ip6[1] = ip[1];
		ctx->user_ip6[2] = ip[2];
		ctx->user_ip6[3] = ip[3];
	} else {
		__u32 ip;

		__builtin_memcpy(&ip, &a->addr[12], 4);
		ctx->user_ip4 = ip;
	}
	ctx->user_port = a->port;
}

static __always_inline int xlate(struct bpf_sock_addr *ctx, int v6)
{
	struct affinity_value aff = {};
	const struct backend *be;
	struct svc_value *svc;
	struct svc_key k;

	if (ctx->protocol != IPPROTO_TCP && ctx->protocol != IPPROTO_UDP)
		return 1;
	if (v6)
		key6(&k, ctx);
	else
		key4(&k, ctx);
	k.proto = ctx->protocol;
	svc = bpf_map_lookup_elem(&sock_services, &k);
	if (!svc) {
		count(SOCK_PASS);
		return 1;
	}
	be = pick(ctx, svc, &aff);
	if (!be) {
		count(SOCK_NO_BACKEND);
		bpf_set_retval(-ECONNREFUSED);
		return 0;
	}
	remember(ctx, be, &k);
	{
		__u64 *n = bpf_map_lookup_elem(&sock_frontend_stats, &svc->id);

		if (n)
			*n += 1;
	}
	set_dest(ctx, be, v6);
	return 1;
}

static __always_inline int revnat(struct bpf_sock_addr *ctx, int v6)
{
	struct revnat_key rk = {};
	struct backend *front;
	struct svc_key k;

	if (v6)
		key6(&k, ctx);
	else
		key4(&k, ctx);
	rk.cookie = bpf_get_socket_cookie(ctx);
	__builtin_memcpy(rk.backend.addr, k.addr, 16);
	rk.backend.port = k.port;
	front = bpf_map_lookup_elem(&sock_revnat, &rk);
	if (!front)
		return 1;
	set_dest(ctx, front, v6);
	count(SOCK_REVNAT);
	return 1;
}

SEC("cgroup/connect4")
int sock_connect4(struct bpf_sock_addr *ctx) { return xlate(ctx, 0); }

SEC("cgroup/connect6")
int sock_connect6(struct bpf_sock_addr *ctx) { return xlate(ctx, 1); }

SEC("cgroup/sendmsg4")
int sock_sendmsg4(struct bpf_sock_addr *ctx) { return xlate(ctx, 0); }

SEC("cgroup/sendmsg6")
int sock_sendmsg6(struct bpf_sock_addr *ctx) { return xlate(ctx, 1); }

SEC("cgroup/recvmsg4")
int sock_recvmsg4(struct bpf_sock_addr *ctx) { return revnat(ctx, 0); }

SEC("cgroup/recvmsg6")
int sock_recvmsg6(struct bpf_sock_addr *ctx) { return revnat(ctx, 1); }

SEC("cgroup/getpeername4")
int sock_getpeername4(struct bpf_sock_addr *ctx) { return revnat(ctx, 0); }

SEC("cgroup/getpeername6")
int sock_getpeername6(struct bpf_sock_addr *ctx) { return revnat(ctx, 1); }

char __license[] SEC("license") = "Dual MIT/GPL";

// Package bpf holds roost's eBPF programs: the C sources, and the Go
// bindings and objects bpf2go makes from them, committed so that building
// roost needs no C compiler.
//
// policy.c enforces L3/L4 ingress policy for the local endpoints of a node.
// Its programs attach on the host side of each endpoint's veth:
//
//   - to_endpoint at the host-side EGRESS hook (TCX egress, or clsact
//     egress before Linux 6.6): traffic into the endpoint, which it decides.
//   - from_endpoint at the host-side INGRESS hook: traffic the endpoint
//     sends, where it records the connections the endpoint opens.
//   - empty does nothing; benchmarks measure the others against it.
//   - bump_generation (a SYSCALL program, run with BPF_PROG_TEST_RUN) voids
//     to_endpoint's flow cache after a map changed.
//
// sock.c load-balances Services at the socket (east-west): its
// CGROUP_SOCK_ADDR programs (connect, sendmsg, recvmsg and getpeername, for
// IPv4 and IPv6) rewrite a socket's destination from a service frontend to
// one of its backends once per connect() or sendto(), so no packet is
// translated; internal/socklb loads them and fills their maps.
//
// policy.c's opening comment gives the rules (order of decisions, fragments,
// conntrack, flow cache); datapath.h is the contract with user space (map
// layouts, reasons, identities), which internal/datapath encodes and
// decodes. Regenerate with `go generate ./bpf` (needs clang-19 and
// llvm-strip-19, from Debian's clang-19 and llvm-19 packages; the output is
// byte-stable for that compiler and independent of the checkout path);
// TestGeneratedCurrent fails when the committed files differ from what it
// produces.
package bpf

//go:generate go tool bpf2go -cc clang-19 -target bpfel -cflags "-O2 -g -Wall -Werror -mcpu=v3" -type drop_event -type reason -type identity -type endpoint_flags -type verdict -type verdict_limits -type ct_flags -type flow_cache_limits -type policy_counter_limits -type flow_key Policy policy.c
//go:generate go tool bpf2go -cc clang-19 -target bpfel -cflags "-O2 -g -Wall -Werror -mcpu=v3" -type svc_key -type svc_value -type slot_key -type backend -type member_key -type revnat_key -type affinity_key -type affinity_value -type reason -type svc_flags Sock sock.c
//go:generate go tool bpf2go -cc clang-19 -target bpfel -cflags "-O2 -g -Wall -Werror -mcpu=v3" -type svc_key -type svc_value -type backend -type local_key -type flow -type conn -type revnat_value -type config -type svc_stats -type reason -type svc_flags -type backend_flags -type cache_limits -type cache_entry Lb lb.c

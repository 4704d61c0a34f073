#!/usr/bin/env bash
# lab.sh — roost's network-namespace lab: a two-ToR BGP fabric on one machine,
# with two Kubernetes clusters' nodes and pods on it, eBPF policy enforced on
# them, and the global endpoint view (etcd, roost-sync) joining the clusters.
#
#   scripts/lab.sh up       build (or complete) the lab, wait until the ToRs
#                           hold every PodCIDR of both families (IPv4 and
#                           IPv6) and every roost-loader enforces the seed
#                           policy, knows the other cluster's workloads and
#                           roost-sync's from etcd, and serves the VIP at its
#                           uplinks, then print what each side sees and run
#                           the traffic checks, and those of a vm
#                           deregistered from roost-sync (then registered
#                           again); exits non-zero when one check does not
#                           give what it should
#   scripts/lab.sh status   print the same and run the same checks, changing
#                           nothing (the checks only open TCP connections;
#                           the deregistration is "up"'s only)
#   scripts/lab.sh down     remove every namespace, process, mount and file it
#                           made
#
# The topology is data: the description file scripts/lab/lab.yaml
# (ROOST_LAB_FILE) names the clusters, ToRs, nodes, links, etcd and
# roost-sync, pods, external workloads (vms), services and traffic checks
# with their addresses, ASNs, labels and ports; scripts/labspec
# (bin/labspec, built by "make build") validates it and prints it as the
# bash arrays this script evaluates (and each cluster's endpoints and
# services files, rendered), so that adding a node, a cluster or a workload
# is a change of that file. "up" keeps what it built from in
# <state>/lab.env, which "status" and "down" read. Below is the default
# file's lab. A file without clusters, etcd and sync
# (scripts/labspec/testdata/three-nodes.yaml) is one cluster, "default",
# whose loaders follow no global view.
#
# Topology (network namespaces; the root namespace is never touched, except
# for what is mounted in the state directory: the BPF filesystems and the
# cgroup v2 hierarchy). The lab is dual-stack: every link, node and
# workload has an IPv6 address beside its IPv4 one, and every BGP session
# has an IPv6 twin (a session per family, each carrying its own family):
#
#   link            subnets                        ToR end    node end
#   tor1 -- node1   10.0.1.0/30   fd00:0:1::/64    .1  ::1    .2  ::2
#   tor2 -- node1   10.0.2.0/30   fd00:0:2::/64    .1  ::1    .2  ::2
#   tor1 -- node2   10.0.3.0/30   fd00:0:3::/64    .1  ::1    .2  ::2
#   tor2 -- node2   10.0.4.0/30   fd00:0:4::/64    .1  ::1    .2  ::2
#   tor1 -- node3   10.0.5.0/30   fd00:0:5::/64    .1  ::1    .2  ::2
#   tor2 -- node3   10.0.6.0/30   fd00:0:6::/64    .1  ::1    .2  ::2
#   tor1 -- node4   10.0.7.0/30   fd00:0:7::/64    .1  ::1    .2  ::2
#   tor2 -- node4   10.0.11.0/30  fd00:0:11::/64   .1  ::1    .2  ::2
#
#   tor1, tor2  FRR (zebra + bgpd, one instance per namespace with "-N <tor>"),
#               AS 65000, router ids 10.0.1.1 and 10.0.2.1; they install what
#               they learn into their own kernel FIB (ECMP allowed) and
#               forward; they do not peer with each other. Each has two
#               sessions with each node: IPv4 (address-family ipv4 unicast)
#               and IPv6 (ipv6 unicast), between the link's addresses of
#               that family. Both learn the VIP 192.0.2.10/32 from the
#               roost-agents of cluster lab1's nodes, which serve it, and
#               install it with a next hop per node (ECMP)
#   node1       BIRD + roost-agent + roost-loader, cluster lab1, AS 65101,
#               router id 10.0.1.2, PodCIDRs 10.244.1.0/24 and fd00:244:1::/64
#   node2       the same, cluster lab1, AS 65102, router id 10.0.3.2,
#               PodCIDRs 10.244.2.0/24 and fd00:244:2::/64
#   node3       the same, cluster lab2, AS 65103, router id 10.0.5.2,
#               PodCIDRs 10.244.3.0/24 and fd00:244:3::/64
#   node4       the same, cluster lab2, AS 65104, router id 10.0.7.2,
#               PodCIDRs 10.244.4.0/24 and fd00:244:4::/64
#   etcd        etcd 3.4 (Debian's, one member, data in <state>/etcd/data)
#               on 10.0.8.10/24 and fd00:0:8::10/64, a subnet of tor1 (.1,
#               ::1), client port 2379; and roost-sync "lab", its API on
#               10.0.8.10:9482, registering vm2
#
# The veth interface at each end is named after the namespace at the other
# end, except inside a pod, where it is eth0. Each node has a default route
# of each family via both ToRs (ECMP), learns nothing by BGP, and owns
# 10.244.<n>.1 and fd00:244:<n>::1 on lo, so "ip netns exec node1 ping -I
# 10.244.1.1 10.244.2.1" (and -I fd00:244:1::1 fd00:244:2::1) crosses the
# fabric. IPv6 duplicate address detection is off in every namespace
# (accept_dad=0, and "nodad" on what the lab adds): FRR 8.4's zebra never
# tells bgpd about a link-local address that was still tentative when zebra
# started, and bgpd then never brings up the IPv6 sessions of that link.
# Both ends of the node-ToR links have MTU 1600: the uplink load balancer
# sends a VIP's packets for a backend on the other node back to the ToR
# encapsulated (IPIP, 20 bytes more than the 1500 they came with). The
# pods', vms' and etcd's links keep 1500.
#
# Workloads (one namespace each, named as in the endpoints files):
#
#   name       where            addresses                        labels
#   db         pod on node1     10.244.1.10/32 fd00:244:1::10    app=protected-db
#   employee   pod on node1     10.244.1.11/32 fd00:244:1::11    app=employee
#   guest      pod on node2     10.244.2.10/32 fd00:244:2::10    app=guest
#   employee2  pod on node2     10.244.2.11/32 fd00:244:2::11    app=employee
#   db2        pod on node2     10.244.2.12/32 fd00:244:2::12    app=protected-db
#   employee3  pod on node3     10.244.3.10/32 fd00:244:3::10    app=employee
#   guest3     pod on node4     10.244.4.10/32 fd00:244:4::10    app=guest
#   vm1        behind tor1      10.0.9.10/24   fd00:0:9::10/64   app=employee (an
#                               external workload, in lab1's endpoints file)
#   vm2        behind tor2      10.0.10.10/24  fd00:0:10::10/64  app=employee
#                               (registered through roost-sync's API)
#
# (The pods' IPv6 addresses are /128s.) A pod is wired as Calico and Cilium
# wire them: its eth0 holds its /32 and /128 and routes everything via
# 169.254.1.1 and fe80::1, addresses of every host-side veth; the node
# routes the pod's /32 and /128 to the host-side veth (the /32 is the route
# roost-loader finds a local endpoint by) and forwards. vm1 sits on
# 10.0.9.0/24 and fd00:0:9::/64, subnets of tor1 only (tor1 .1 and ::1, vm1
# .10 and ::10, vm1's default routes via tor1): each node routes them via
# its tor1 uplink, and tor2 does not know them; vm2 and tor2 likewise, and
# etcd and tor1. A vm reaches the PodCIDRs through its ToR, which learnt
# them by BGP. So pod traffic between the nodes, and the vms', really
# crosses the ToRs, over either family.
#
# Policy: each node runs roost-loader (config <state>/nodeN/loader.yaml) on a
# private BPF filesystem mounted at <state>/nodeN/bpffs, with the seed
# policy (internal/endpoints/testdata/policies/seed.yaml, copied to
# <state>/policies: only app=employee may reach app=protected-db, on TCP 6379)
# and its cluster's endpoints file, <state>/clusters/<cluster>/endpoints.yaml
# (lab1: the five pods of node1 and node2, and vm1; lab2: employee3 and
# guest3), each workload with its IPv4 and IPv6 address (the datapath
# decides by the host-side veth, whatever the family, and knows a source of
# either family by its address); the policy protects db and db2 alike. db
# listens on TCP 6379 and 22, db2 on 6379 (netcat, one listener per
# family). The traffic checks, once over IPv4 and once over IPv6:
# employee, employee2, vm1, employee3 (of cluster lab2) and vm2 reach
# db:6379, employee db2:6379 (across the ToRs); guest's and guest3's SYNs
# to db:6379 (and guest's to db2:6379) and employee's to db:22 are dropped,
# and the drops show in the "roostctl drops" of the server's node.
#
# Global view (docs/globalview.md): every loader follows etcd
# (loader.yaml's cluster and globalView: etcd http://10.0.8.10:2379,
# publish) and campaigns to publish its cluster's endpoints file as origin
# cluster:<cluster>; one loader per cluster, elected, writes. So lab1's
# loaders know employee3 and guest3 as cluster:lab2/default/<pod>, lab2's
# know lab1's workloads as cluster:lab1/default/<name>, and all know vm2 as
# sync:lab/default/vm2: "up" registers it (PUT
# /v1/workloads/default/vm2, labspec's body) and starts its heartbeat, a
# loop in etcd's namespace (<state>/etcd/run/heartbeat-vm2.pid) that posts
# one every 5 s and registers vm2 again when refused (roost-sync is
# configured with heartbeatTimeout 20s, leaseTTL 30s). After the checks,
# "up" stops the heartbeat, deregisters vm2 (DELETE), waits until no loader
# lists it, checks that vm2's flows are now dropped (to policy it is the
# world), and registers it again. The report's "global view" section has
# each loader's endpoints by origin, its view and publisher state, and
# roost-sync's workloads. The ToRs count the packets they forward (for the
# VIA column) in nftables counters (table inet roost_lab) that leave out
# the traffic to and from etcd's subnets, which the loaders keep up.
#
# Services: <state>/clusters/lab1/services.yaml names db, with the backends
# db and db2 (one on each node of lab1), behind cluster IP 10.96.0.10:6379
# and VIP (externalIPs) 192.0.2.10:6379, IPv4 only (the service checks run
# over IPv4); lab2's services file is empty (a service belongs to its
# backends' cluster, whose nodes alone serve and announce it).
#   - Each node's roost-loader attaches its socket load balancer to a cgroup
#     of its own (<state>/cgroup/roost-lab-nodeN, on the cgroup v2 hierarchy
#     mounted again at <state>/cgroup), and the checks run the clients of a
#     node's pods in that node's cgroup: employee2 reaches db by the cluster
#     IP (db across the ToRs, db2 on its own node), and guest, translated
#     the same way at connect, is still dropped by both backends' policy,
#     by the cluster IP and by the VIP alike.
#   - Each node's roost-loader also serves its cluster's VIPs at its uplinks
#     (xdpLB: XDP, generic mode, on its veths tor1 and tor2): vm1's packets
#     to 192.0.2.10:6379 reach a node of lab1 by tor1's ECMP route (each
#     such node's roost-agent announces the VIP, read from the same
#     services file: agent.yaml vips.servicesFile); that node's XDP
#     picks the backend (Maglev) and DNATs to its own, or encapsulates it
#     (IPIP, from its tor1 address to the backend's) back to tor1, which
#     routes it to the other node, whose XDP decapsulates it; the reply
#     leaves the backend's node directly, its source set back to the VIP
#     at the uplink's TC egress.
#   A check of a service is tried 4 times, and more (at most 16) until each
#   backend got a try; every try must give what the check expects, and
#   the table says how many tries each backend got (the pod that accepted
#   them, by its own TCP counters, or whose node dropped them). So vm1
#   reaches both db and db2 through the VIP. Each node's "roostctl
#   services" in the report shows what its two load balancers serve, with
#   their counters (local, encapsulated, decapsulated, reply-translated).
#
# Environment:
#   ROOST_LAB_DIR       state directory (default /run/roost-lab): configs,
#                       sockets, pid files, logs and BPF filesystems of every
#                       daemon, etcd's data
#   ROOST_BIN           where roost-agent, roost-loader, roost-sync and
#                       roostctl are (default <repo>/bin, built by "make
#                       build"); also labspec, else <repo>/bin/labspec, else
#                       "go run"
#   ROOST_LAB_FILE      the lab's description file (default
#                       <repo>/scripts/lab/lab.yaml; "bin/labspec check FILE"
#                       validates one); "status" and "down" of a lab that is
#                       up use the one "up" read, as <state>/lab.env
#   ROOST_LAB_TIMEOUT   seconds "up" waits for the ToRs to converge (both
#                       families), then for the loaders to enforce the
#                       policy, follow the global view and serve the VIP,
#                       and for a deregistration to reach every loader
#                       (default 60)
#   ROOST_LAB_NO_AGENT  1: "up" runs BIRD with a hand-written config
#                       equivalent to what roost-agent renders, and no agent
#                       (for testing the lab itself); "status" remembers it;
#                       the loaders and the traffic checks run all the same
#
# Query a ToR:  vtysh --vty_socket /run/roost-lab/tor1/run -c 'show bgp summary'
#               vtysh --vty_socket /run/roost-lab/tor1/run -c 'show ipv6 route bgp'
# Query a node: ip netns exec node1 bin/roostctl --bird-socket \
#                 /run/roost-lab/node1/run/bird.ctl peers
#               ip netns exec node1 bin/roostctl drops   (the loader's API is
#                 127.0.0.1:9480 inside each node, roostctl's default)
#               ip netns exec node1 bin/roostctl -o json services   (its
#                 "uplink" object is the uplink load balancer's state)
#               ip netns exec node1 bin/roostctl endpoints --origin sync:lab
# etcd and roost-sync:
#               ip netns exec etcd curl -s 10.0.8.10:9482/v1/workloads
#               ip netns exec etcd curl -s -X DELETE 10.0.8.10:9482/v1/workloads/default/vm2
#                 (vm2's heartbeat registers it again within 5 s)
# Try a flow:   ip netns exec guest nc -z -v -w 2 10.244.1.10 6379
#               ip netns exec employee2 nc -z -v -w 2 fd00:244:1::10 6379
#               ip netns exec vm1 nc -z -v -w 2 192.0.2.10 6379
#               ip netns exec employee3 nc -z -v -w 2 10.244.1.10 6379
#
# Packages (bird2, frr, iproute2, netcat-openbsd, nftables, etcd-server,
# curl) come from scripts/deps.sh; this script installs nothing.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO
readonly STATE="${ROOST_LAB_DIR:-/run/roost-lab}"
readonly BIN="${ROOST_BIN:-$REPO/bin}"
readonly TIMEOUT="${ROOST_LAB_TIMEOUT:-60}"
NO_AGENT="${ROOST_LAB_NO_AGENT:-0}" # "status" reads $NO_AGENT_FLAG instead
readonly MARKER="$STATE/.roost-lab" # proves the directory is ours before "down" removes it
readonly NO_AGENT_FLAG="$STATE/no-agent" # present when "up" ran with ROOST_LAB_NO_AGENT=1
readonly FRR_DIR=/usr/lib/frr
readonly CGROUP_DIR="$STATE/cgroup" # the cgroup v2 hierarchy, mounted again for the lab
readonly AGENT_LISTEN=127.0.0.1:9479
readonly LOADER_LISTEN=127.0.0.1:9480
readonly ETCD_CLIENT_PORT=2379 ETCD_PEER_PORT=2380 # labspec's EtcdClientPort, EtcdPeerPort
# roost-sync's lab settings: a vm it registers is kept by a heartbeat every
# HEARTBEAT_INTERVAL seconds (a loop beside it, standing for an agent on
# the vm), and expires SYNC_HEARTBEAT_TIMEOUT after the last; its
# endpoints outlive a dead roost-sync by SYNC_LEASE_TTL.
readonly HEARTBEAT_INTERVAL=5 SYNC_HEARTBEAT_TIMEOUT=20s SYNC_LEASE_TTL=30s
readonly POD_GATEWAY=169.254.1.1 # on every host-side veth; the pods' next hop
readonly POD_GATEWAY6=fe80::1     # the same for IPv6
readonly SEED_POLICY="$REPO/internal/endpoints/testdata/policies/seed.yaml"
LAB_FILE="${ROOST_LAB_FILE:-$REPO/scripts/lab/lab.yaml}"
[[ $LAB_FILE == /* ]] || LAB_FILE=$PWD/$LAB_FILE
readonly LAB_FILE
readonly LAB_ENV="$STATE/lab.env" # the description "up" built the lab from, as bash

# The lab's topology is data: LAB_FILE, which scripts/labspec validates and
# prints as read-only bash arrays (load_lab evaluates them; labspec's
# WriteBash documents each): CLUSTERS, TORS, NODES, PODS and VMS (names);
# ATTACHED (the namespaces on a ToR's subnet: the vms and etcd); ETCD and
# SYNC (etcd's namespace and roost-sync's name, "" for none); LINKS
# ("<tor> <node> <n>", n numbering the links from 1); SERVERS ("<workload>
# <port>...": TCP servers, netcat, accepting one connection after another,
# one listener per family); SERVICES (roost-loader's services file: "<name>
# <cluster IP> <external IP (VIP), or -> <port> <backend workload>..."; the
# socket load balancer of each node serves the cluster and external IPs to
# the processes in that node's cgroup (<state>/cgroup/roost-lab-<node>),
# which the lab's clients of that node's pods run in; the uplink load
# balancer (xdpLB) of each node serves the external IPs to what arrives
# from the ToRs); CHECKS and CHECKS6 (the traffic checks over IPv4 and over
# IPv6: "<client> <server> <port> <expectation: allow|drop>"; a server
# "svc:NAME" is service NAME's cluster IP, "vip:NAME" its external IP, both
# IPv4 only), and DEREG_CHECKS and DEREG_CHECKS6 (those of the vms
# roost-sync registers, as they must go once the vm is deregistered);
# UPLINK_MTU (both ends of every node-ToR link); ENDPOINTS_FILE and
# SERVICES_FILE (each cluster's files, rendered by labspec); REGISTRATION
# (roost-sync's PUT body for each vm it registers); and the associative
# arrays the lookups below read.
#
# A check of a service is tried TRIES_MIN times, and more until every
# backend got a try (at most TRIES_MAX): each try must give what the check
# expects, whichever backend it went to.
readonly TRIES_MIN=4 TRIES_MAX=16

# labspec_env prints labspec's bash for LAB_FILE: by bin/labspec (ROOST_BIN,
# then the repository's bin, built by "make build"), else by "go run".
labspec_env() {
	local b
	for b in "$BIN/labspec" "$REPO/bin/labspec"; do
		if [[ -x $b ]]; then
			"$b" env "$LAB_FILE"
			return
		fi
	done
	command -v go >/dev/null || die "labspec not found in $BIN or $REPO/bin, and no go to run it: run 'make build'"
	(cd "$REPO" && go run ./scripts/labspec env "$LAB_FILE")
}

# load_lab CMD evaluates the lab's description: for "status" and "down" of
# a lab that is up, the one "up" saved in LAB_ENV (so that they find what
# was built, whatever LAB_FILE says now), else LAB_FILE's.
load_lab() {
	local env
	if [[ $1 != up && -f $MARKER && -f $LAB_ENV ]]; then
		env=$(<"$LAB_ENV")
	else
		env=$(labspec_env) || die "$LAB_FILE: not a valid lab description (see above)"
	fi
	eval "$env"
	LAB_ENV_TEXT=$env
	# A lab.env saved by a lab.sh before clusters lacks ETCD and ATTACHED:
	# that lab had no etcd, and its vms were all it attached to the ToRs.
	# Enough for "down" to remove it ("status" wants the rest: "up" again).
	if ! declare -p ETCD >/dev/null 2>&1; then
		declare -gr ETCD="" SYNC=""
		declare -gra ATTACHED=("${VMS[@]}")
	fi
}

# tor_asn, tor_router_id, node_asn, node_router_id, node_podcidr and
# node_lo print one ToR's or node's settings; node_podcidr and node_lo take
# a family, 4 (the default) or 6.
tor_asn() { echo "${TOR_ASN[$1]-}"; }
tor_router_id() { echo "${TOR_ROUTER_ID[$1]-}"; }
node_asn() { echo "${NODE_ASN[$1]-}"; }
node_router_id() { echo "${NODE_ROUTER_ID[$1]-}"; }
node_podcidr() { echo "${NODE_PODCIDR[$1/${2:-4}]-}"; }
node_lo() { echo "${NODE_LO[$1/${2:-4}]-}"; }
# link_addr N END FAMILY prints the address of END (tor or node) on link N;
# link_bits N FAMILY the prefix length of link N's subnet of FAMILY;
# link_id TOR NODE the N of the link between TOR and NODE.
link_addr() { echo "${LINK_ADDR[$1/$2/$3]-}"; }
link_bits() { echo "${LINK_BITS[$1/$2]-}"; }
link_id() { echo "${LINK_ID[$1/$2]-}"; }

# workload_ip, workload_app and pod_node print one workload's address, its
# "app" label and (pods only) its node; workload_ip takes a family, 4 (the
# default) or 6. vm_sync prints the syncer that registers a vm ("" for one
# in an endpoints file); view_name the name another cluster's roost-loader
# lists a workload by, learnt from etcd.
workload_ip() { echo "${WORKLOAD_IP[$1/${2:-4}]-}"; }
workload_app() { echo "${WORKLOAD_APP[$1]-}"; }
pod_node() { echo "${POD_NODE[$1]-}"; }
vm_sync() { echo "${VM_SYNC[$1]-}"; }
view_name() { echo "${VIEW_NAME[$1]-}"; }
# node_cluster prints a node's cluster; cluster_nodes a cluster's nodes.
node_cluster() { echo "${NODE_CLUSTER[$1]-}"; }
cluster_nodes() { echo "${CLUSTER_NODES[$1]-}"; }
# cluster_dir prints where a cluster's endpoints and services files are.
cluster_dir() { echo "$STATE/clusters/$1"; }
# vm_tor, subnet_addr, subnet_net and subnet_gateway print the ToR of a vm
# (or etcd: a namespace of ATTACHED), its address on that ToR's subnet of
# a family (4, the default, or 6; ADDRESS/BITS), the subnet, and its
# gateway (the ToR's address) on it; empty for a family it has none of.
vm_tor() { echo "${SUBNET_TOR[$1]-}"; }
subnet_addr() { echo "${SUBNET_ADDR[$1/${2:-4}]-}"; }
subnet_net() { echo "${SUBNET_NET[$1/${2:-4}]-}"; }
subnet_gateway() { echo "${SUBNET_GATEWAY[$1/${2:-4}]-}"; }
# etcd_ip prints etcd's address of a family (4, the default, or 6), empty
# for none; sync_listen roost-sync's host:port (etcd's IPv4 address).
etcd_ip() { local a; a=$(subnet_addr "$ETCD" "${1:-4}"); echo "${a%/*}"; }
sync_listen() { echo "$(etcd_ip):$SYNC_PORT"; }
# addr_port IP PORT prints IP:PORT as roostctl does, an IPv6 address in
# brackets; with PORT empty, what such a string starts with.
addr_port() {
	if [[ $1 == *:* ]]; then echo "[$1]:$2"; else echo "$1:$2"; fi
}
# ip_family IP prints ip(8)'s family option for IP (or a prefix): -4 or -6.
ip_family() { if [[ $1 == *:* ]]; then echo -6; else echo -4; fi; }
# service_ip, service_vip, service_port and service_backends print a
# service's cluster IP, its external IP ("-" for none), its port and its
# backend workloads (space-separated).
service_field() {
	local s f
	for s in "${SERVICES[@]}"; do
		read -ra f <<<"$s"
		[[ ${f[0]} == "$1" ]] && echo "${f[@]:$2}"
	done
	return 0
}
service_ip() { service_field "$1" 1 | cut -d' ' -f1; }
service_vip() { service_field "$1" 2 | cut -d' ' -f1; }
service_port() { service_field "$1" 3 | cut -d' ' -f1; }
service_backends() { service_field "$1" 4; }
service_cluster() { echo "${SERVICE_CLUSTER[$1]-}"; }
# enforced_pod succeeds for the pods the seed policy selects (ingress
# default-deny on them): those labelled app=protected-db.
enforced_pod() { [[ $(workload_app "$1") == protected-db ]]; }

log() { printf 'lab: %s\n' "$*" >&2; }
die() {
	printf 'lab: error: %s\n' "$*" >&2
	exit 1
}

usage() {
	cat >&2 <<EOF
usage: $0 up|down|status
  up      create the lab (idempotent), wait until the ToRs hold every PodCIDR
          (IPv4 and IPv6) and every roost-loader enforces the seed policy,
          follows the global view and serves the VIP, then run the checks,
          and those of a vm deregistered from roost-sync
  status  show ToR RIBs, node peers/routes, the policy, the global view and
          the traffic checks without changing anything
  down    remove every namespace, process, mount and file the lab made
EOF
	exit 2
}

# --- processes ---------------------------------------------------------------

# alive PIDFILE NS succeeds when the pid in PIDFILE is a live (not zombie)
# process inside namespace NS, so that a recycled pid is never mistaken for
# one of ours.
alive() {
	local pidfile=$1 ns=$2 pid state
	[[ -s $pidfile ]] || return 1
	pid=$(<"$pidfile")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
	[[ -n $state && $state != Z ]] || return 1
	[[ $(ip netns identify "$pid" 2>/dev/null) == "$ns" ]]
}

# stop_pid PIDFILE NS ends the process recorded in PIDFILE (TERM, then KILL
# after 5 s) if it is still ours, and removes PIDFILE.
stop_pid() {
	local pidfile=$1 ns=$2 pid i
	if alive "$pidfile" "$ns"; then
		pid=$(<"$pidfile")
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 50; i++)); do
			alive "$pidfile" "$ns" || break
			sleep 0.1
		done
		if alive "$pidfile" "$ns"; then
			log "$ns: pid $pid ignored SIGTERM, killing it"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	rm -f "$pidfile"
}

# spawn NS PIDFILE LOGFILE CMD... starts CMD inside namespace NS in its own
# session, detached from this script, appending its output to LOGFILE and
# recording its pid (that of CMD itself, not of a wrapper) in PIDFILE.
spawn() {
	local ns=$1 pidfile=$2 logfile=$3
	shift 3
	rm -f "$pidfile" # a stale one would pass for the new process
	# shellcheck disable=SC2016 # $0 and $@ belong to the inner shell
	setsid ip netns exec "$ns" bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" \
		</dev/null >>"$logfile" 2>&1 9<&- &
	local i
	for ((i = 0; i < 50; i++)); do
		[[ -s $pidfile ]] && return 0
		sleep 0.1
	done
	die "$ns: $1 did not start; see $logfile"
}

# wait_for SECONDS CMD... retries CMD every 0.2 s until it succeeds; it
# fails when SECONDS pass first.
wait_for() {
	local secs=$1 end
	shift
	end=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		((SECONDS < end)) || return 1
		sleep 0.2
	done
}

# --- programs ----------------------------------------------------------------

# find_programs sets BIRD, BIRDC, VTYSH, NC, NFT, AGENT, LOADER, ROOSTCTL, and
# with etcd ETCD_BIN and CURL, with roost-sync SYNCD, and dies with what to
# do when one is missing.
find_programs() {
	BIRD=$(command -v bird || echo /usr/sbin/bird)
	BIRDC=$(command -v birdc || echo /usr/sbin/birdc)
	VTYSH=$(command -v vtysh || echo /usr/bin/vtysh)
	# OpenBSD's netcat by name: the traditional one takes other flags.
	NC=$(command -v nc.openbsd || echo /usr/bin/nc.openbsd)
	NFT=$(command -v nft || echo /usr/sbin/nft)
	local p
	for p in "$BIRD" "$BIRDC" "$VTYSH" "$FRR_DIR/zebra" "$FRR_DIR/bgpd"; do
		[[ -x $p ]] || die "$p not found: install bird2 and frr (scripts/deps.sh)"
	done
	[[ -x $NC ]] || die "$NC not found: install netcat-openbsd (scripts/deps.sh)"
	[[ -x $NFT ]] || die "$NFT not found: install nftables (scripts/deps.sh)"
	id frr >/dev/null 2>&1 || die "user frr does not exist: install frr (scripts/deps.sh)"
	if [[ -n $ETCD ]]; then
		ETCD_BIN=$(command -v etcd || echo /usr/bin/etcd)
		CURL=$(command -v curl || echo /usr/bin/curl)
		[[ -x $ETCD_BIN ]] || die "$ETCD_BIN not found: install etcd-server (scripts/deps.sh)"
		[[ -x $CURL ]] || die "$CURL not found: install curl (scripts/deps.sh)"
	fi
	AGENT=$BIN/roost-agent
	LOADER=$BIN/roost-loader
	ROOSTCTL=$BIN/roostctl
	SYNCD=$BIN/roost-sync
	local need=("$LOADER" "$ROOSTCTL")
	[[ $NO_AGENT == 1 ]] || need+=("$AGENT")
	[[ -z $SYNC ]] || need+=("$SYNCD")
	for p in "${need[@]}"; do
		[[ -x $p ]] || die "$p not found: run 'make build' or point ROOST_BIN at the directory holding roost-agent, roost-loader, roost-sync and roostctl"
	done
}

# --- network -----------------------------------------------------------------

# make_netns creates namespace NS with lo up, unless it exists.
make_netns() {
	local ns=$1
	if ! ip netns list | awk '{print $1}' | grep -qx "$ns"; then
		ip netns add "$ns"
		log "namespace $ns created"
	fi
	ip -n "$ns" link set lo up
}

# make_link TOR NODE N creates the veth between TOR and NODE directly inside
# the two namespaces (never in the root namespace), addresses it (IPv4 and
# IPv6), gives both ends UPLINK_MTU and sets it up; each step is skipped or
# replaced when already done.
make_link() {
	local tor=$1 node=$2 n=$3
	if ! ip -n "$tor" link show "$node" >/dev/null 2>&1; then
		# A half-made pair cannot exist (veths die in pairs), but a stale end
		# left by something else can: clear it.
		ip -n "$node" link del "$tor" 2>/dev/null || true
		ip -n "$tor" link add "$node" type veth peer name "$tor" netns "$node"
	fi
	ip -n "$tor" addr replace "$(link_addr "$n" tor 4)/$(link_bits "$n" 4)" dev "$node"
	ip -n "$node" addr replace "$(link_addr "$n" node 4)/$(link_bits "$n" 4)" dev "$tor"
	# nodad: usable at once (see the header: zebra and tentative addresses).
	ip -n "$tor" addr replace "$(link_addr "$n" tor 6)/$(link_bits "$n" 6)" dev "$node" nodad
	ip -n "$node" addr replace "$(link_addr "$n" node 6)/$(link_bits "$n" 6)" dev "$tor" nodad
	ip -n "$tor" link set "$node" mtu "$UPLINK_MTU" up
	ip -n "$node" link set "$tor" mtu "$UPLINK_MTU" up
}

# make_pod POD wires POD to its node: a veth named POD on the node and eth0
# in the pod; the pod's /32 and /128 on eth0 and its default routes via
# POD_GATEWAY and POD_GATEWAY6, which every host-side veth holds (a /32 and
# a link-local /64); on the node, host routes to the pod's /32 and /128
# through the veth. Each step is skipped or replaced when already done.
make_pod() {
	local pod=$1 node ip ip6
	node=$(pod_node "$pod") ip=$(workload_ip "$pod") ip6=$(workload_ip "$pod" 6)
	if ! ip -n "$node" link show "$pod" >/dev/null 2>&1; then
		ip -n "$pod" link del eth0 2>/dev/null || true
		ip -n "$node" link add "$pod" type veth peer name eth0 netns "$pod"
	fi
	# A lab made by an IPv4-only lab.sh had IPv6 off on the host-side veth.
	ip netns exec "$node" sysctl -qw "net.ipv6.conf.$pod.disable_ipv6=0"
	ip -n "$node" addr replace "$POD_GATEWAY/32" dev "$pod"
	ip -n "$node" addr replace "$POD_GATEWAY6/64" dev "$pod" nodad
	ip -n "$pod" addr replace "$ip/32" dev eth0
	ip -n "$pod" addr replace "$ip6/128" dev eth0 nodad
	ip -n "$node" link set "$pod" up
	ip -n "$pod" link set eth0 up
	ip -n "$pod" route replace "$POD_GATEWAY" dev eth0 scope link
	ip -n "$pod" route replace default via "$POD_GATEWAY" dev eth0
	ip -n "$pod" -6 route replace default via "$POD_GATEWAY6" dev eth0
	ip -n "$node" route replace "$ip/32" dev "$pod"
	ip -n "$node" -6 route replace "$ip6/128" dev "$pod"
}

# make_attached NS wires NS (a vm, or etcd) to its ToR on its subnets
# (subnet_net), each family it has an address of: the ToR holds the
# gateways (subnet_gateway), NS its own addresses and default routes via
# them.
make_attached() {
	local ns=$1 tor family addr gw nodad
	tor=$(vm_tor "$ns")
	if ! ip -n "$tor" link show "$ns" >/dev/null 2>&1; then
		ip -n "$ns" link del "$tor" 2>/dev/null || true
		ip -n "$tor" link add "$ns" type veth peer name "$tor" netns "$ns"
	fi
	for family in 4 6; do
		addr=$(subnet_addr "$ns" "$family") gw=$(subnet_gateway "$ns" "$family") nodad=()
		[[ -n $addr ]] || continue
		[[ $family == 4 ]] || nodad=(nodad)
		ip -n "$tor" addr replace "$gw/${addr#*/}" dev "$ns" "${nodad[@]}"
		ip -n "$ns" addr replace "$addr" dev "$tor" "${nodad[@]}"
	done
	ip -n "$tor" link set "$ns" up
	ip -n "$ns" link set "$tor" up
	for family in 4 6; do
		gw=$(subnet_gateway "$ns" "$family")
		[[ -z $gw ]] || ip -n "$ns" "-$family" route replace default via "$gw" dev "$tor"
	done
}

# node_default_route NODE FAMILY sets NODE's default route of FAMILY: a
# next hop via each ToR it is linked to (ECMP).
node_default_route() {
	local link tor node n hops=()
	for link in "${LINKS[@]}"; do
		read -r tor node n <<<"$link"
		[[ $node == "$1" ]] && hops+=(nexthop via "$(link_addr "$n" tor "$2")" dev "$tor")
	done
	((${#hops[@]})) || return 0
	ip -n "$1" "-$2" route replace default "${hops[@]}"
}

# setup_network builds namespaces, links, sysctls and routes.
setup_network() {
	local ns link pod node tor n family net
	for ns in "${TORS[@]}" "${NODES[@]}" "${PODS[@]}" "${ATTACHED[@]}"; do
		make_netns "$ns"
		# No duplicate address detection (see the header); "default"
		# covers the veth ends made later. IPv6 on: a lab made by an
		# IPv4-only lab.sh had it off in the pods and vm1.
		ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
			net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0
	done
	for ns in "${TORS[@]}" "${NODES[@]}"; do
		# Hash flows by L4 ports so that ECMP spreads them.
		ip netns exec "$ns" sysctl -qw net.ipv4.fib_multipath_hash_policy=1 net.ipv6.fib_multipath_hash_policy=1
		ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1
		# A router: it also sends no router solicitations (which, from a
		# node into an enforced pod, would count as drops).
		ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.forwarding=1
	done
	for link in "${LINKS[@]}"; do
		# shellcheck disable=SC2086 # split "tor node n"
		make_link $link
	done
	for ns in "${NODES[@]}"; do
		ip -n "$ns" addr replace "$(node_lo "$ns")/32" dev lo
		ip -n "$ns" addr replace "$(node_lo "$ns" 6)/128" dev lo
	done
	for family in 4 6; do
		for node in "${NODES[@]}"; do node_default_route "$node" "$family"; done
	done
	for pod in "${PODS[@]}"; do make_pod "$pod"; done
	for ns in "${ATTACHED[@]}"; do make_attached "$ns"; done
	# Each node linked to the ToR of a vm (or etcd) routes its subnets via
	# that link.
	for ns in "${ATTACHED[@]}"; do
		for family in 4 6; do
			net=$(subnet_net "$ns" "$family")
			[[ -n $net ]] || continue
			for link in "${LINKS[@]}"; do
				read -r tor node n <<<"$link"
				[[ $tor == "$(vm_tor "$ns")" ]] || continue
				ip -n "$node" "-$family" route replace "$net" via "$(link_addr "$n" tor "$family")" dev "$tor"
			done
		done
	done
}

# vips [CLUSTER] prints the VIPs of the services (of CLUSTER), one per
# line: the nodes of a service's cluster announce and serve them.
vips() {
	local s vip
	for s in "${SERVICES[@]}"; do
		[[ -z ${1:-} || $(service_cluster "${s%% *}") == "$1" ]] || continue
		vip=$(service_vip "${s%% *}")
		[[ $vip == - ]] || echo "$vip"
	done
}

# --- ToRs (FRR) --------------------------------------------------------------

# tor_bgpd_conf TOR prints bgpd's config for TOR: two neighbors per node
# link, one per family, each activated in its own address family only.
tor_bgpd_conf() {
	local tor=$1 link t node n peer family
	cat <<EOF
frr defaults datacenter
hostname $tor
!
router bgp $(tor_asn "$tor")
 bgp router-id $(tor_router_id "$tor")
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 ! a VIP announced by several nodes (different ASes) is installed as ECMP
 bgp bestpath as-path multipath-relax
EOF
	for family in 4 6; do
		for link in "${LINKS[@]}"; do
			read -r t node n <<<"$link"
			[[ $t == "$tor" ]] || continue
			peer=$(link_addr "$n" node "$family")
			printf ' neighbor %s remote-as %s\n' "$peer" "$(node_asn "$node")"
			printf ' neighbor %s description %s\n' "$peer" "$node"
			printf ' neighbor %s timers connect 5\n' "$peer"
		done
	done
	for family in 4 6; do
		printf ' !\n address-family ipv%s unicast\n  maximum-paths 16\n' "$family"
		for link in "${LINKS[@]}"; do
			read -r t node n <<<"$link"
			[[ $t == "$tor" ]] || continue
			printf '  neighbor %s activate\n' "$(link_addr "$n" node "$family")"
		done
		printf ' exit-address-family\n'
	done
	printf 'exit\n'
}

# tor_vtysh TOR ARGS... runs vtysh against TOR's FRR.
tor_vtysh() {
	local tor=$1
	shift
	"$VTYSH" --vty_socket "$STATE/$tor/run" "$@"
}

# start_frr_daemon TOR DAEMON starts zebra or bgpd for TOR unless it runs,
# and waits until it answers vtysh.
start_frr_daemon() {
	local tor=$1 daemon=$2 dir=$STATE/$1
	if alive "$dir/run/$daemon.pid" "$tor"; then
		return 0
	fi
	rm -f "$dir/run/$daemon.pid" "$dir/run/$daemon.vty"
	# -N: FRR's pathspace, one instance per namespace; every path is given
	# explicitly so that all files stay in the state directory. The daemons
	# drop to the frr user, who owns $dir.
	ip netns exec "$tor" "$FRR_DIR/$daemon" -d -N "$tor" \
		-f "$dir/frr/$daemon.conf" -i "$dir/run/$daemon.pid" -z "$dir/run/zserv.api" \
		--vty_socket "$dir/run" -P 0 --log "file:$dir/log/$daemon.log" \
		</dev/null >>"$dir/log/$daemon.out" 2>&1 9<&- ||
		die "$tor: $daemon failed to start; see $dir/log/$daemon.out and $daemon.log"
	wait_for 15 tor_vtysh "$tor" -d "$daemon" -c 'show version' ||
		die "$tor: $daemon does not answer vtysh; see $dir/log/$daemon.log"
	log "$tor: $daemon started (pid $(<"$dir/run/$daemon.pid"))"
}

# start_tor TOR writes TOR's FRR config and starts zebra and bgpd.
start_tor() {
	local tor=$1 dir=$STATE/$1 conf
	mkdir -p "$dir/frr" "$dir/run" "$dir/log"
	conf=$(tor_bgpd_conf "$tor")
	printf 'frr defaults datacenter\nhostname %s\n' "$tor" >"$dir/frr/zebra.conf"
	if ! [[ -f $dir/frr/bgpd.conf ]] || [[ $(<"$dir/frr/bgpd.conf") != "$conf" ]]; then
		printf '%s\n' "$conf" >"$dir/frr/bgpd.conf"
		# A running bgpd keeps its old config; restart it on change.
		stop_pid "$dir/run/bgpd.pid" "$tor"
	fi
	chown -R frr:frr "$dir"
	chmod 0750 "$dir"
	local out
	# bgpd -C exits 0 even on a bad line, but prints it. -p 0: it would
	# bind the BGP port of the root namespace, which a BGP speaker of
	# something else on this machine may hold.
	out=$("$FRR_DIR/bgpd" -C -p 0 -f "$dir/frr/bgpd.conf" 2>&1) || true
	[[ -z $out ]] || die "$tor: bgpd rejects $dir/frr/bgpd.conf: $out"
	# Only a zebra started after duplicate address detection ended knows
	# the link-local addresses bgpd's IPv6 sessions need (see the header);
	# with DAD off this is at once, but a veth's link-local address appears
	# only once both ends are up.
	if ! alive "$dir/run/zebra.pid" "$tor"; then
		wait_for 15 no_tentative "$tor" ||
			die "$tor: IPv6 addresses still tentative after 15s: $(ip -n "$tor" -6 -o addr show tentative)"
	fi
	start_frr_daemon "$tor" zebra
	start_frr_daemon "$tor" bgpd
	tor_counters "$tor"
}

# no_tentative NS succeeds when no IPv6 address in NS is tentative (in
# duplicate address detection) and every interface that is up has its
# link-local address.
no_tentative() {
	local ns=$1 ifname
	[[ -z $(ip -n "$ns" -6 -o addr show tentative) ]] || return 1
	for ifname in $(ip -n "$ns" -o link show up | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }'); do
		[[ $ifname == lo ]] && continue
		[[ -n $(ip -n "$ns" -6 -o addr show dev "$ifname" scope link) ]] || return 1
	done
}

# --- nodes (BIRD + roost-agent) ----------------------------------------------

# node_bird_conf NODE prints the config roost-agent would render for NODE:
# its PodCIDRs (and the VIPs) as static blackholes, one static protocol per
# family, exported to both ToRs over the session of their family, nothing
# imported. Used only with ROOST_LAB_NO_AGENT=1.
node_bird_conf() {
	local node=$1 link tor t n
	cat <<EOF
# written by scripts/lab.sh (ROOST_LAB_NO_AGENT=1), standing in for roost-agent
router id $(node_router_id "$node");
protocol device {}
protocol static owned4 {
  ipv4;
$(owned_routes "$node" 4)
}
protocol static owned6 {
  ipv6;
$(owned_routes "$node" 6)
}
EOF
	for link in "${LINKS[@]}"; do
		read -r tor t n <<<"$link"
		[[ $t == "$node" ]] || continue
		cat <<EOF
protocol bgp $tor {
  local $(link_addr "$n" node 4) as $(node_asn "$node");
  neighbor $(link_addr "$n" tor 4) as $(tor_asn "$tor");
  graceful restart on;
  ipv4 { import none; export where proto = "owned4"; };
}
protocol bgp ${tor}_v6 {
  local $(link_addr "$n" node 6) as $(node_asn "$node");
  neighbor $(link_addr "$n" tor 6) as $(tor_asn "$tor");
  graceful restart on;
  ipv6 { import none; export where proto = "owned6"; };
}
EOF
	done
}

# owned_routes NODE FAMILY prints the static routes of node_bird_conf's
# protocol for FAMILY: NODE's PodCIDR and the VIPs of that family of its
# cluster's services.
owned_routes() {
	local vip
	printf '  route %s blackhole;\n' "$(node_podcidr "$1" "$2")"
	for vip in $(vips "$(node_cluster "$1")"); do
		case $2/$vip in
		4/*:*) ;;
		4/*) printf '  route %s/32 blackhole;\n' "$vip" ;;
		6/*:*) printf '  route %s/128 blackhole;\n' "$vip" ;;
		esac
	done
}

# node_agent_conf NODE prints roost-agent's config for NODE: both
# PodCIDRs, and two peers per ToR, one per family (the address's family
# picks the session's channel; a PodCIDR goes to the peers of its family).
node_agent_conf() {
	local node=$1 link tor t n
	cat <<EOF
# written by scripts/lab.sh
node: $node
asn: $(node_asn "$node")
routerID: $(node_router_id "$node")
podCIDRs: [$(node_podcidr "$node"), $(node_podcidr "$node" 6)]
kubernetes: {enabled: false, kubeconfig: ""}
peers:
EOF
	for link in "${LINKS[@]}"; do
		read -r tor t n <<<"$link"
		[[ $t == "$node" ]] || continue
		printf '  - {name: %s, address: %s, asn: %s}\n' "$tor" "$(link_addr "$n" tor 4)" "$(tor_asn "$tor")"
		printf '  - {name: %s-v6, address: %s, asn: %s}\n' "$tor" "$(link_addr "$n" tor 6)" "$(tor_asn "$tor")"
	done
	cat <<EOF
bird: {socket: $STATE/$node/run/bird.ctl, configDir: $STATE/$node/bird}
listen: $AGENT_LISTEN
controlSocket: $STATE/$node/run/agent.sock
vips: {servicesFile: $(cluster_dir "$(node_cluster "$node")")/services.yaml}
drain: {stateFile: $STATE/$node/drain.json}
EOF
}

# bird_answers NODE succeeds when NODE's BIRD answers on its socket.
bird_answers() { "$BIRDC" -s "$STATE/$1/run/bird.ctl" show status; }

# start_node starts NODE's BIRD (and, unless ROOST_LAB_NO_AGENT=1, its
# roost-agent) unless they run.
start_node() {
	local node=$1 dir=$STATE/$1 conf
	mkdir -p "$dir/bird" "$dir/run" "$dir/log"
	if [[ $NO_AGENT == 1 ]]; then
		conf=$(node_bird_conf "$node")
		if ! [[ -f $dir/bird/bird.conf ]] || [[ $(<"$dir/bird/bird.conf") != "$conf" ]]; then
			printf '%s\n' "$conf" >"$dir/bird/bird.conf"
			if alive "$dir/run/bird.pid" "$node"; then
				"$BIRDC" -s "$dir/run/bird.ctl" configure >/dev/null
			fi
		fi
		# What roost-agent keeps in the kernel for an owned prefix, with its
		# route protocol (167), so that an agent started later adopts it.
		ip -n "$node" route replace blackhole "$(node_podcidr "$node")" proto 167
		ip -n "$node" -6 route replace blackhole "$(node_podcidr "$node" 6)" proto 167
		# An agent left from an earlier "up" would fight the hand-written config.
		stop_pid "$dir/run/agent.pid" "$node"
	else
		# Rewritten only on change: an unchanged lab leaves the agent alone.
		conf=$(node_agent_conf "$node")
		if ! [[ -f $dir/agent.yaml ]] || [[ $(<"$dir/agent.yaml") != "$conf" ]]; then
			printf '%s\n' "$conf" >"$dir/agent.yaml.new"
			mv "$dir/agent.yaml.new" "$dir/agent.yaml"
			# A running agent read the old file at start.
			stop_pid "$dir/run/agent.pid" "$node"
		fi
		# BIRD needs a config to start; roost-agent replaces it.
		[[ -f $dir/bird/bird.conf ]] ||
			printf 'router id %s;\nprotocol device {}\n' "$(node_router_id "$node")" >"$dir/bird/bird.conf"
	fi
	if ! alive "$dir/run/bird.pid" "$node"; then
		rm -f "$dir/run/bird.ctl"
		spawn "$node" "$dir/run/bird.pid" "$dir/log/bird.log" \
			"$BIRD" -f -R -c "$dir/bird/bird.conf" -s "$dir/run/bird.ctl"
		wait_for 15 bird_answers "$node" ||
			die "$node: bird does not answer on $dir/run/bird.ctl; see $dir/log/bird.log"
		log "$node: bird started (pid $(<"$dir/run/bird.pid"))"
	fi
	[[ $NO_AGENT == 1 ]] && return 0
	if ! alive "$dir/run/agent.pid" "$node"; then
		local out
		out=$("$AGENT" --config "$dir/agent.yaml" --dry-run 2>&1) ||
			die "$node: roost-agent rejects $dir/agent.yaml: $out"
		spawn "$node" "$dir/run/agent.pid" "$dir/log/agent.log" \
			"$AGENT" --config "$dir/agent.yaml"
		sleep 0.5
		alive "$dir/run/agent.pid" "$node" ||
			die "$node: roost-agent exited at start; see $dir/log/agent.log"
		log "$node: roost-agent started (pid $(<"$dir/run/agent.pid"))"
	fi
}

# --- policy (roost-loader) and workloads -------------------------------------

# update_file FILE CONTENT writes CONTENT (and a newline) to FILE through a
# rename, so that a watcher never reads half a file, unless FILE holds it
# already. It succeeds when it wrote FILE, and fails when FILE was current.
update_file() {
	local file=$1 content=$2
	[[ -f $file && $(<"$file") == "$content" ]] && return 1
	printf '%s\n' "$content" >"$file.new"
	mv "$file.new" "$file"
}

# node_loader_conf NODE prints roost-loader's config for NODE: its
# cluster's endpoints and services files and, with etcd, the global view:
# every loader follows it and campaigns to publish its cluster's endpoints
# (those of the endpoints file, which all the cluster's nodes share).
node_loader_conf() {
	local node=$1 cdir
	cdir=$(cluster_dir "$(node_cluster "$node")")
	cat <<EOF
# written by scripts/lab.sh
node: $node
cluster: $(node_cluster "$node")
bpffs: $STATE/$node/bpffs
policyDir: $STATE/policies
endpointsFile: $cdir/endpoints.yaml
kubernetes: {enabled: false, kubeconfig: ""}
listen: $LOADER_LISTEN
servicesFile: $cdir/services.yaml
socketLB: {enabled: true, cgroup: $CGROUP_DIR/roost-lab-$node}
xdpLB: {enabled: true, interfaces: [$(node_uplinks "$node" ", ")], mode: generic}
EOF
	[[ -n $ETCD ]] || return 0
	cat <<EOF
globalView:
  etcd: {endpoints: ["http://$(etcd_ip):$ETCD_CLIENT_PORT"]}
  publish: true
EOF
}

# node_uplinks NODE [SEP] prints the names of NODE's uplinks (named after
# the ToR at the other end), separated by SEP (default a space).
node_uplinks() {
	local link tor node n names=""
	for link in "${LINKS[@]}"; do
		read -r tor node n <<<"$link"
		[[ $node == "$1" ]] && names+=${names:+${2:- }}$tor
	done
	echo "$names"
}

# cgroup2_mounted DIR succeeds when the cgroup v2 hierarchy is mounted on DIR.
cgroup2_mounted() { awk -v d="$1" '$2 == d && $3 == "cgroup2" { found = 1 } END { exit !found }' /proc/self/mounts; }

# setup_cgroups mounts the cgroup v2 hierarchy on <state>/cgroup (outside
# /sys, which "ip netns exec" mounts anew) and makes a cgroup per node:
# each node's roost-loader attaches its socket load balancer there, and the
# lab runs the clients of that node's pods in it.
setup_cgroups() {
	local node
	mkdir -p "$CGROUP_DIR"
	if ! cgroup2_mounted "$CGROUP_DIR"; then
		mount -t cgroup2 none "$CGROUP_DIR"
		log "cgroup v2 mounted on $CGROUP_DIR"
	fi
	for node in "${NODES[@]}"; do mkdir -p "$CGROUP_DIR/roost-lab-$node"; done
}

# in_cgroup NODE CMD... runs CMD in NODE's cgroup (as it is when NODE is
# empty: vm1 is on no node).
in_cgroup() {
	local node=$1
	shift
	if [[ -z $node ]]; then
		"$@"
		return
	fi
	# shellcheck disable=SC2016 # $0 and $@ belong to the inner shell
	bash -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$CGROUP_DIR/roost-lab-$node" "$@"
}

# bpffs_mounted DIR succeeds when a BPF filesystem is mounted on DIR.
bpffs_mounted() { awk -v d="$1" '$2 == d && $3 == "bpf" { found = 1 } END { exit !found }' /proc/self/mounts; }

# write_policy_files writes the seed policy, which every loader reads, and
# each cluster's endpoints and services files (labspec renders them), which
# the loaders of its nodes read (and its agents, the services file). A
# loader would notice a change by itself, but "up" could not tell when it
# has applied it, so the running loaders that read a changed file are
# restarted instead (their pinned programs keep enforcing meanwhile): a
# ready loader has then applied the files as they are now.
write_policy_files() {
	local policy=0 node c dir
	local -A changed=()
	[[ -f $SEED_POLICY ]] || die "$SEED_POLICY not found: the lab's policy comes from the repository"
	mkdir -p "$STATE/policies"
	update_file "$STATE/policies/seed.yaml" "$(<"$SEED_POLICY")" && policy=1
	for c in "${CLUSTERS[@]}"; do
		dir=$(cluster_dir "$c")
		mkdir -p "$dir"
		update_file "$dir/endpoints.yaml" "${ENDPOINTS_FILE[$c]}" && changed[$c]=1
		update_file "$dir/services.yaml" "${SERVICES_FILE[$c]}" && changed[$c]=1
	done
	for node in "${NODES[@]}"; do
		((policy)) || [[ -n ${changed[$(node_cluster "$node")]:-} ]] || continue
		if alive "$STATE/$node/run/loader.pid" "$node"; then
			log "$node: policy, endpoints or services changed, restarting roost-loader"
			stop_pid "$STATE/$node/run/loader.pid" "$node"
		fi
	done
}

# start_loader NODE mounts NODE's private BPF filesystem (the loader pins
# its maps and links there, never in /sys/fs/bpf) and starts NODE's
# roost-loader unless it runs; a changed config restarts it.
start_loader() {
	local node=$1 dir=$STATE/$1 out
	mkdir -p "$dir/bpffs" "$dir/run" "$dir/log"
	if ! bpffs_mounted "$dir/bpffs"; then
		mount -t bpf bpf "$dir/bpffs"
		log "$node: bpffs mounted on $dir/bpffs"
	fi
	if update_file "$dir/loader.yaml" "$(node_loader_conf "$node")"; then
		# A running loader read the old file at start.
		stop_pid "$dir/run/loader.pid" "$node"
	fi
	alive "$dir/run/loader.pid" "$node" && return 0
	out=$("$LOADER" --config "$dir/loader.yaml" --dry-run 2>&1) ||
		die "$node: roost-loader rejects its config, endpoints or policy ($dir/loader.yaml): $out"
	spawn "$node" "$dir/run/loader.pid" "$dir/log/loader.log" \
		"$LOADER" --config "$dir/loader.yaml"
	sleep 0.5
	alive "$dir/run/loader.pid" "$node" ||
		die "$node: roost-loader exited at start; see $dir/log/loader.log"
	log "$node: roost-loader started (pid $(<"$dir/run/loader.pid"))"
}

# listening NS FAMILY PORT succeeds when something listens on TCP PORT in
# NS over FAMILY (4 or 6).
listening() { [[ -n $(ip netns exec "$1" ss -Htln "-$2" "sport = :$3") ]]; }

# start_servers starts the SERVERS' TCP listeners (netcat, accepting one
# connection after another) unless they run: nc-PORT for IPv4 (OpenBSD's
# netcat listens on 0.0.0.0 only), nc6-PORT for IPv6.
start_servers() {
	local server pod ports port dir family name over
	for server in "${SERVERS[@]}"; do
		read -r pod ports <<<"$server"
		dir=$STATE/$pod
		mkdir -p "$dir/run" "$dir/log"
		for port in $ports; do
			for family in 4 6; do
				name=nc-$port over=""
				[[ $family == 4 ]] || name=nc6-$port over=" over IPv6"
				alive "$dir/run/$name.pid" "$pod" && continue
				spawn "$pod" "$dir/run/$name.pid" "$dir/log/$name.log" "$NC" "-$family" -d -l -k "$port"
				wait_for 5 listening "$pod" "$family" "$port" ||
					die "$pod: nc does not listen on $port$over; see $dir/log/$name.log"
				log "$pod: nc listening on $port$over (pid $(<"$dir/run/$name.pid"))"
			done
		done
	done
}

# --- etcd and roost-sync ----------------------------------------------------

# etcd_healthy succeeds when etcd answers /health with true (asked from its
# namespace, on 127.0.0.1).
etcd_healthy() {
	[[ $(ip netns exec "$ETCD" "$CURL" -sS -m 2 "http://127.0.0.1:$ETCD_CLIENT_PORT/health" 2>/dev/null) == *'"health":"true"'* ]]
}

# start_etcd starts etcd (one member; its data in <state>/<etcd>/data) in
# its namespace unless it runs, listening for clients on its addresses and
# 127.0.0.1, and waits until it is healthy.
start_etcd() {
	local ns=$ETCD dir=$STATE/$ETCD urls ip6
	[[ -n $ns ]] || return 0
	mkdir -p "$dir/run" "$dir/log"
	alive "$dir/run/etcd.pid" "$ns" && return 0
	urls="http://$(etcd_ip):$ETCD_CLIENT_PORT,http://127.0.0.1:$ETCD_CLIENT_PORT"
	ip6=$(etcd_ip 6)
	[[ -z $ip6 ]] || urls+=",http://[$ip6]:$ETCD_CLIENT_PORT"
	# The flags of internal/testenv's members; a data directory left by an
	# earlier "up" is reused (the --initial-* flags then do nothing).
	spawn "$ns" "$dir/run/etcd.pid" "$dir/log/etcd.log" "$ETCD_BIN" --name "$ns" --data-dir "$dir/data" \
		--listen-client-urls "$urls" --advertise-client-urls "http://$(etcd_ip):$ETCD_CLIENT_PORT" \
		--listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
		--initial-cluster "$ns=http://127.0.0.1:$ETCD_PEER_PORT" --initial-cluster-token roost-lab --initial-cluster-state new \
		--quota-backend-bytes $((256 << 20)) --logger zap --log-outputs stderr
	wait_for 30 etcd_healthy || die "$ns: etcd is not healthy after 30s; see $dir/log/etcd.log"
	log "$ns: etcd started on $urls (pid $(<"$dir/run/etcd.pid"))"
}

# sync_conf prints roost-sync's config: the lab's etcd (on 127.0.0.1, in
# the same namespace), no workloads file (the lab registers its vms
# through the API), its API on etcd's address.
sync_conf() {
	cat <<EOF
# written by scripts/lab.sh
name: $SYNC
etcd: {endpoints: ["http://127.0.0.1:$ETCD_CLIENT_PORT"]}
workloadsFile: ""
listen: $(sync_listen)
leaseTTL: $SYNC_LEASE_TTL
heartbeatTimeout: $SYNC_HEARTBEAT_TIMEOUT
EOF
	[[ -z $SYNC_CLUSTER ]] || echo "cluster: $SYNC_CLUSTER"
}

# sync_api METHOD PATH [BODY] calls roost-sync's API (from etcd's
# namespace) and prints the answer's body; it fails, printing the status
# and body on stderr, unless the status is 2xx.
sync_api() {
	local method=$1 path=$2 body=${3:-} out code
	local args=(-sS -m 5 -X "$method" -w '\n%{http_code}')
	[[ -z $body ]] || args+=(-H 'Content-Type: application/json' --data "$body")
	out=$(ip netns exec "$ETCD" "$CURL" "${args[@]}" "http://$(sync_listen)$path" 2>&1) || {
		echo "$method $path: $out" >&2
		return 1
	}
	code=${out##*$'\n'} out=${out%$'\n'*}
	if [[ $code != 2?? ]]; then
		echo "$method $path: HTTP $code: $out" >&2
		return 1
	fi
	printf '%s\n' "$out"
}

# sync_ready succeeds when roost-sync answers /readyz: it is its origin's
# writer and etcd holds its current set.
sync_ready() { sync_api GET /readyz >/dev/null; }

# start_sync starts roost-sync in etcd's namespace unless it runs (a
# changed config restarts it), and waits until it is ready.
start_sync() {
	local ns=$ETCD dir=$STATE/$ETCD out
	[[ -n $SYNC ]] || return 0
	if update_file "$dir/sync.yaml" "$(sync_conf)"; then
		stop_pid "$dir/run/sync.pid" "$ns"
	fi
	if ! alive "$dir/run/sync.pid" "$ns"; then
		out=$("$SYNCD" --config "$dir/sync.yaml" --dry-run 2>&1) ||
			die "$ns: roost-sync rejects $dir/sync.yaml: $out"
		spawn "$ns" "$dir/run/sync.pid" "$dir/log/sync.log" "$SYNCD" --config "$dir/sync.yaml"
		log "$ns: roost-sync $SYNC started on $(sync_listen) (pid $(<"$dir/run/sync.pid"))"
	fi
	wait_for 30 sync_ready || die "$ns: roost-sync is not ready after 30s: $(sync_api GET /readyz 2>&1); see $dir/log/sync.log"
}

# register VM registers VM with roost-sync (PUT, labspec's REGISTRATION
# body), and starts VM's heartbeat unless it runs: a loop in etcd's
# namespace (<state>/<etcd>/run/heartbeat-VM.pid), standing for an agent on
# the vm, that posts a heartbeat every HEARTBEAT_INTERVAL seconds and
# registers VM again when the heartbeat is refused (roost-sync keeps API
# workloads in memory only: a restarted one answers 404).
register() {
	local vm=$1 dir=$STATE/$ETCD path
	path=/v1/workloads/$WORKLOAD_NAMESPACE/$vm
	sync_api PUT "$path" "${REGISTRATION[$vm]}" >/dev/null || die "$vm: roost-sync refuses its registration (above)"
	alive "$dir/run/heartbeat-$vm.pid" "$ETCD" && return 0
	# shellcheck disable=SC2016 # expanded by the loop's shell
	spawn "$ETCD" "$dir/run/heartbeat-$vm.pid" "$dir/log/heartbeat-$vm.log" bash -c '
		url=$1 body=$2 every=$3
		while sleep "$every"; do
			curl -fsS -m 5 -o /dev/null -X POST "$url/heartbeat" && continue
			curl -fsS -m 5 -o /dev/null -X PUT -H "Content-Type: application/json" --data "$body" "$url" &&
				echo "$(date -u +%FT%TZ) registered again"
		done' heartbeat "http://$(sync_listen)$path" "${REGISTRATION[$vm]}" "$HEARTBEAT_INTERVAL"
	log "$vm: registered with roost-sync $SYNC, heartbeat every ${HEARTBEAT_INTERVAL}s (pid $(<"$dir/run/heartbeat-$vm.pid"))"
}

# deregister VM stops VM's heartbeat and deregisters it (DELETE).
deregister() {
	stop_pid "$STATE/$ETCD/run/heartbeat-$1.pid" "$ETCD"
	sync_api DELETE "/v1/workloads/$WORKLOAD_NAMESPACE/$1" >/dev/null || die "$1: roost-sync refuses its deregistration (above)"
	log "$1: deregistered from roost-sync $SYNC"
}

# synced_vms prints the vms roost-sync registers, one per line.
synced_vms() {
	local vm
	for vm in "${VMS[@]}"; do [[ -z $(vm_sync "$vm") ]] || echo "$vm"; done
}

# roostctl_loader NODE ARGS... runs roostctl against NODE's roost-loader.
roostctl_loader() {
	local node=$1
	shift
	ip netns exec "$node" "$ROOSTCTL" --loader "$LOADER_LISTEN" "$@"
}

# json_flat prints the JSON on stdin, as roostctl -o json indents it (one
# member or element a line), one scalar a line: its path, a tab, its value
# (strings unquoted), e.g. "uplink.frontends[0].backends[1].local	false".
json_flat() {
	awk '{
		line = $0
		sub(/^[ \t]+/, "", line)
		sub(/,$/, "", line)
		if (line == "}" || line == "]") { depth--; next }
		key = ""
		if (match(line, /^"[^"]*": /)) {
			key = substr(line, 2, RLENGTH - 4)
			line = substr(line, RLENGTH + 1)
		} else if (depth > 0 && arr[depth]) {
			key = "[" idx[depth]++ "]"
		}
		p = depth > 0 ? path[depth] : ""
		if (key !~ /^\[/ && p != "") p = p "."
		p = p key
		if (line == "{" || line == "[") {
			depth++
			path[depth] = p; arr[depth] = line == "["; idx[depth] = 0
			next
		}
		if (line ~ /^".*"$/) line = substr(line, 2, length(line) - 2)
		print p "\t" line
	}'
}

# services_flat NODE prints NODE's roost-loader's /v1/services (roostctl -o
# json services) through json_flat.
services_flat() { roostctl_loader "$1" --timeout 2s -o json services | json_flat; }

# uplink_backends FRONTEND reads services_flat's output and prints the
# backends the uplink load balancer has for FRONTEND (tcp/ADDR:PORT), one a
# line: address:port, local or remote, state.
uplink_backends() {
	awk -F'\t' -v want="$1" '$1 ~ /^uplink\.frontends\[/ {
		split($1, k, /[][]/) # "uplink.frontends", i, ".backends", j, ".addr"
		if (k[3] == ".frontend" && $2 == want) fe[k[2]] = 1
		if (k[3] == ".backends") {
			if (k[5] == ".local") $2 = $2 == "true" ? "local" : "remote"
			b[k[2], k[4], k[5]] = $2
			if (!((k[2], k[4]) in seen)) { seen[k[2], k[4]] = 1; order[++n] = k[2] SUBSEP k[4] }
		}
	}
	END {
		for (x = 1; x <= n; x++) {
			split(order[x], ij, SUBSEP)
			if (ij[1] in fe) print b[order[x], ".addr"], b[order[x], ".local"], b[order[x], ".state"]
		}
	}'
}

# uplink_ready NODE succeeds when NODE's roost-loader has attached its uplink
# load balancer to each of NODE's uplinks, and serves the VIP of every
# service of its cluster there with all of its service's backends, active,
# NODE's own as local.
uplink_ready() {
	local node=$1 flat uplink s name vip port b where want got
	flat=$(services_flat "$node" 2>/dev/null) || return 1
	! grep -q $'^error\t' <<<"$flat" || return 1
	for uplink in $(node_uplinks "$node"); do
		grep -q "^uplink\.interfaces\.$uplink"$'\t' <<<"$flat" || return 1
	done
	for s in "${SERVICES[@]}"; do
		name=${s%% *} vip=$(service_vip "${s%% *}") port=$(service_port "${s%% *}")
		[[ $vip != - && $(service_cluster "$name") == "$(node_cluster "$node")" ]] || continue
		want=$(for b in $(service_backends "$name"); do
			where=remote
			[[ $(pod_node "$b") != "$node" ]] || where=local
			echo "$(workload_ip "$b"):$port $where active"
		done | sort)
		got=$(uplink_backends "tcp/$vip:$port" <<<"$flat" | sort)
		[[ $got == "$want" ]] || return 1
	done
}

# loader_ready NODE succeeds when NODE's roost-loader answers, its last
# reconcile succeeded, it sees NODE's pods as local endpoints, with
# ingress enforced on exactly those the seed policy selects, it has every
# workload of the other clusters and of roost-sync from the global view
# (view_has), and it serves the VIPs at its uplinks (uplink_ready).
loader_ready() {
	local node=$1 out pod want w
	out=$(roostctl_loader "$node" --timeout 2s endpoints 2>/dev/null) || return 1
	! grep -q '^last apply' <<<"$out" || return 1
	for w in "${PODS[@]}" "${VMS[@]}"; do
		[[ -n $(view_name "$w") && ${WORKLOAD_CLUSTER[$w]-} != "$(node_cluster "$node")" ]] || continue
		view_has "$(view_name "$w")" <<<"$out" || return 1
	done
	for pod in "${PODS[@]}"; do
		[[ $(pod_node "$pod") == "$node" ]] || continue
		want="yes open"
		if enforced_pod "$pod"; then want="yes enforced"; fi
		# Columns by their header, not position: the table gains columns.
		[[ $(awk -v p="$pod" 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
			$1 == p { print $col["LOCAL"], $col["INGRESS"] }' <<<"$out") == "$want" ]] || return 1
	done
	uplink_ready "$node"
}

# view_has NAME succeeds when the table of "roostctl endpoints" on stdin
# lists NAME.
view_has() { awk -v n="$1" '$1 == n { found = 1 } END { exit !found }'; }

# view_lacks_everywhere NAME succeeds when no node's roost-loader lists
# NAME.
view_lacks_everywhere() {
	local node out
	for node in "${NODES[@]}"; do
		out=$(roostctl_loader "$node" --timeout 2s endpoints 2>/dev/null) || return 1
		! view_has "$1" <<<"$out" || return 1
	done
}

# loaders_ready succeeds when every node's loader is ready.
loaders_ready() {
	local node
	for node in "${NODES[@]}"; do loader_ready "$node" || return 1; done
}

# drops_after NODE LAST prints the drops NODE's roost-loader reports after
# the line LAST (all of them when LAST is empty), one per line as roostctl
# prints them.
drops_after() {
	roostctl_loader "$1" drops |
		awk -v last="$2" 'last == "" || found { print; next } $0 == last { found = 1 }'
}

# count_drops SRC DST PORT counts the drop lines on stdin from SRC (any
# port) to DST:PORT.
count_drops() {
	awk -v s="$(addr_port "$1" "")" -v d="$(addr_port "$2" "$3")" \
		'$NF == d && $(NF-1) == "->" && index($(NF-2), s) == 1 { n++ } END { print n + 0 }'
}

# probe CLIENT IP PORT tries a TCP connection from CLIENT's namespace to
# IP:PORT, with 2 s to connect, and prints how it ended.
probe() {
	local out
	if out=$(in_cgroup "$(pod_node "$1")" ip netns exec "$1" "$NC" -z -v -n -w 2 "$2" "$3" 2>&1); then
		echo connected
	elif [[ $out == *"timed out"* ]]; then
		echo "no answer"
	elif [[ $out == *refused* ]]; then
		echo "refused (RST)"
	else
		echo "failed: ${out##*: }"
	fi
}

# snmp NS PROTO FIELD prints a counter of NS's /proc/net/snmp: FIELD of the
# "PROTO:" lines (Tcp PassiveOpens).
snmp() {
	ip netns exec "$1" cat /proc/net/snmp |
		awk -v p="$2:" -v f="$3" '$1 == p && !col { for (i = 2; i <= NF; i++) if ($i == f) col = i; next }
			$1 == p { print $col; exit }'
}

# tor_counters TOR sets up TOR's counters of forwarded packets, one per
# family (nftables, table inet roost_lab; reset by every "up"): every
# packet TOR forwards but those to or from etcd's subnets, the loaders'
# and roost-sync's traffic with etcd, which would otherwise pass for a
# check's flow crossing that ToR.
tor_counters() {
	local family rule net
	local -A ip=([4]=ip [6]=ip6) proto=([4]=ipv4 [6]=ipv6)
	{
		printf 'table inet roost_lab\ndelete table inet roost_lab\n'
		printf 'table inet roost_lab {\n\tcounter forwarded4 {}\n\tcounter forwarded6 {}\n'
		printf '\tchain forward {\n\t\ttype filter hook forward priority 0; policy accept;\n'
		for family in 4 6; do
			rule="meta nfproto ${proto[$family]}"
			if [[ -n $ETCD ]]; then
				net=$(subnet_net "$ETCD" "$family")
				[[ -z $net ]] || rule+=" ${ip[$family]} saddr != $net ${ip[$family]} daddr != $net"
			fi
			printf '\t\t%s counter name forwarded%s\n' "$rule" "$family"
		done
		printf '\t}\n}\n'
	} | ip netns exec "$1" "$NFT" -f - || die "$1: nft refuses the lab's counters (table inet roost_lab)"
}

# tor_forwarded TOR [FAMILY] prints how many IPv4 (FAMILY 4, the default)
# or IPv6 (6) packets TOR has forwarded, etcd's left out (tor_counters;
# its BGP sessions are its own traffic, not counted either).
tor_forwarded() {
	ip netns exec "$1" "$NFT" list counter inet roost_lab "forwarded${2:-4}" | awk '$1 == "packets" { print $2; exit }'
}

# accepted POD prints how many TCP connections POD has accepted (its own
# count: each pod is a namespace).
accepted() { snmp "$1" Tcp PassiveOpens; }

# traffic FAMILY CHECK... runs the CHECKs ("CLIENT SERVER PORT EXPECT": of
# CHECKS or DEREG_CHECKS for FAMILY 4, of CHECKS6 or DEREG_CHECKS6 for 6),
# between the workloads' addresses of FAMILY, and prints a table of what each should
# give and what it gave: an allowed flow connects and is never dropped; a
# dropped flow gets no answer (not even a reset) and shows in the drops of
# its backend's node ("roostctl drops"). BACKENDS says which backend each
# try went to: the pod that accepted it, or whose node dropped it. VIA
# lists the ToRs that forwarded packets of FAMILY meanwhile: a flow between
# the nodes, or from vm1, must cross one, a flow within a node none. It
# returns non-zero when a check fails, after running them all.
traffic() {
	local family=$1 rc=0 check client server port expect target backends
	shift
	traffic_row "$family" CLIENT SOURCE DESTINATION EXPECTED RESULT BACKENDS VIA NEW-DROPS CHECK
	for check in "$@"; do
		read -r client server port expect <<<"$check"
		case $server in
		svc:*) target=$(service_ip "${server#svc:}") backends=$(service_backends "${server#svc:}") ;;
		vip:*) target=$(service_vip "${server#vip:}") backends=$(service_backends "${server#vip:}") ;;
		*) target=$(workload_ip "$server" "$family") backends=$server ;;
		esac
		# shellcheck disable=SC2086 # split the backends
		check_flow "$family" "$client" "$server $(addr_port "$target" "$port")" "$target" "$port" "$expect" $backends || rc=1
	done
	return "$rc"
}

# traffic_row FAMILY FIELD... prints a row of the traffic table of FAMILY:
# IPv6 addresses take wider columns.
traffic_row() {
	local fmt='%-10s %-12s %-24s %-9s %-14s %-12s %-10s %-10s %s\n'
	[[ $1 == 4 ]] || fmt='%-10s %-16s %-28s %-9s %-14s %-12s %-10s %-10s %s\n'
	shift
	# shellcheck disable=SC2059 # one of the two formats above
	printf "$fmt" "$@"
}

# check_flow FAMILY CLIENT SHOWN TARGET PORT EXPECT BACKEND... tries
# CLIENT's TCP connection, from its address of FAMILY, to TARGET:PORT,
# which reaches one of the BACKENDs (pods), and prints its row of the
# traffic table; it fails when a try did not give EXPECT (allow or drop).
# With one backend it tries once; with more, TRIES_MIN times and then until
# every backend got a try (at most TRIES_MAX times), and fails when one got
# none.
check_flow() {
	local family=$1 client=$2 shown=$3 target=$4 port=$5 expect=$6
	shift 6
	local backends=("$@")
	local src min=1 max=1 try i b node tor out got hit n tdrops drops=0 unknown=0 ok=ok fail this
	local via="" result="" served="" want=allowed
	local -A fwd last listed opens new results hits
	src=$(workload_ip "$client" "$family")
	if [[ $expect == drop ]]; then want=dropped; fi
	if ((${#backends[@]} > 1)); then min=$TRIES_MIN max=$TRIES_MAX; fi
	for ((try = 0; try < max; try++)); do
		if ((try >= min)); then
			n=0
			for b in "${backends[@]}"; do ((${hits[$b]:-0})) && n=$((n + 1)); done
			((n < ${#backends[@]})) || break
		fi
		for tor in "${TORS[@]}"; do fwd[$tor]=$(tor_forwarded "$tor" "$family"); done
		# Without the loader's API the flow is still tried (the pinned
		# programs enforce on), but its drops cannot be counted.
		last=() listed=()
		for b in "${backends[@]}"; do
			opens[$b]=$(accepted "$b")
			node=$(pod_node "$b")
			[[ -z ${listed[$node]:-} ]] || continue
			last[$node]="" listed[$node]=0
			if out=$(drops_after "$node" "" 2>/dev/null); then
				last[$node]=$(tail -n 1 <<<"$out") listed[$node]=1
			fi
		done
		got=$(probe "$client" "$target" "$port")
		results[$got]=$((${results[$got]:-0} + 1))
		# Drop events reach the loader through a ring buffer: give them a
		# moment.
		for ((i = 0; i < 15; i++)); do
			tdrops=0 fail=0
			for b in "${backends[@]}"; do
				node=$(pod_node "$b") new[$b]=0
				if ((listed[$node])) && out=$(drops_after "$node" "${last[$node]}" 2>/dev/null); then
					new[$b]=$(count_drops "$src" "$(workload_ip "$b" "$family")" "$port" <<<"$out")
					tdrops=$((tdrops + new[$b]))
				else
					fail=1
				fi
			done
			[[ $expect == drop && $tdrops == 0 && $fail == 0 ]] || break
			sleep 0.2
		done
		((fail)) && unknown=1
		drops=$((drops + tdrops))
		# The backend of this try: the one that accepted it or dropped it.
		hit="" n=0
		for b in "${backends[@]}"; do
			if (($(accepted "$b") > opens[$b] || new[$b] > 0)); then hit=$b n=$((n + 1)); fi
		done
		((n == 1)) || hit="?"
		hits[$hit]=$((${hits[$hit]:-0} + 1))
		this=""
		for tor in "${TORS[@]}"; do
			if [[ $(tor_forwarded "$tor" "$family") != "${fwd[$tor]}" ]]; then
				this+=${this:++}$tor
				[[ +$via+ == *+$tor+* ]] || via+=${via:++}$tor
			fi
		done
		[[ $ok == ok ]] || continue # report the first failure
		case $expect in
		allow) [[ $got == connected && $fail == 0 && $tdrops == 0 ]] || ok=FAIL ;;
		drop) [[ $got == "no answer" && $fail == 0 && $tdrops -gt 0 ]] || ok=FAIL ;;
		esac
		if [[ $ok == ok && $hit == "?" ]]; then
			ok="FAIL (no single backend)"
		elif [[ $ok == ok && -n $hit ]]; then
			if [[ $(pod_node "$client") != "$(pod_node "$hit")" && -z $this ]]; then
				ok="FAIL (crossed no ToR)"
			elif [[ $(pod_node "$client") == "$(pod_node "$hit")" && -n $this ]]; then
				ok="FAIL (left the node)"
			fi
		fi
	done
	for got in "${!results[@]}"; do
		if ((try == 1)); then result=$got; else result+=${result:+, }"${results[$got]}x $got"; fi
	done
	for b in "${backends[@]}" "?"; do
		((${hits[$b]:-0})) || continue
		if ((try == 1)); then served=$b; else served+=${served:+,}"$b:${hits[$b]}"; fi
	done
	if [[ $ok == ok ]]; then
		for b in "${backends[@]}"; do
			((${hits[$b]:-0})) || ok="FAIL ($b got no try)"
		done
	fi
	((unknown)) && drops="?"
	traffic_row "$family" "$client" "$src" "$shown" "$want" "$result" "${served:--}" "${via:--}" "$drops" "$ok"
	[[ $ok == ok ]]
}

# --- convergence and report --------------------------------------------------

# tor_holds TOR PREFIX succeeds when TOR's zebra has installed PREFIX, learned
# by BGP, into TOR's kernel.
tor_holds() { [[ -n $(ip -n "$1" "$(ip_family "$2")" -o route show "$2" proto bgp 2>/dev/null) ]]; }

# converged succeeds when every ToR holds every PodCIDR of both families
# (the IPv6 ones learnt over the IPv6 sessions) and every VIP over every
# node of its service's cluster.
converged() {
	local tor node vip c
	for tor in "${TORS[@]}"; do
		for node in "${NODES[@]}"; do
			tor_holds "$tor" "$(node_podcidr "$node")" || return 1
			tor_holds "$tor" "$(node_podcidr "$node" 6)" || return 1
		done
		for c in "${CLUSTERS[@]}"; do
			for vip in $(vips "$c"); do
				# shellcheck disable=SC2046 # count the cluster's nodes
				tor_holds_ecmp "$tor" "$vip/32" $(wc -w <<<"$(cluster_nodes "$c")") || return 1
			done
		done
	done
}

# tor_holds_ecmp TOR PREFIX N succeeds when TOR's kernel routes PREFIX
# (learnt by BGP) over N next hops.
tor_holds_ecmp() {
	local hops
	hops=$(ip -n "$1" "$(ip_family "$2")" -o route show "$2" proto bgp 2>/dev/null | grep -o 'nexthop via' | wc -l)
	((hops == $3))
}

# section prints a heading.
section() { printf '\n=== %s ===\n' "$*"; }

# report prints each ToR's BGP routes in zebra's RIB (with their FIB state)
# and its BGP summary, each node's peers and routes, and whether traffic
# crosses the fabric. It returns non-zero when a check failed, after printing
# everything.
report() {
	local rc=0 tor node
	for tor in "${TORS[@]}"; do
		section "$tor: show ip route bgp"
		tor_vtysh "$tor" -c 'show ip route bgp' || rc=1
		section "$tor: show bgp summary"
		tor_vtysh "$tor" -c 'show bgp ipv4 unicast summary' || rc=1
		section "$tor: show ipv6 route bgp"
		tor_vtysh "$tor" -c 'show ipv6 route bgp' || rc=1
		section "$tor: show bgp ipv6 unicast summary"
		tor_vtysh "$tor" -c 'show bgp ipv6 unicast summary' || rc=1
	done
	for node in "${NODES[@]}"; do
		if [[ $NO_AGENT == 1 ]]; then
			section "$node: birdc show protocols (ROOST_LAB_NO_AGENT=1)"
			"$BIRDC" -s "$STATE/$node/run/bird.ctl" show protocols || rc=1
			section "$node: birdc show route"
			"$BIRDC" -s "$STATE/$node/run/bird.ctl" show route || rc=1
			continue
		fi
		local what
		for what in peers routes; do
			section "$node: roostctl $what"
			ip netns exec "$node" "$ROOSTCTL" --bird-socket "$STATE/$node/run/bird.ctl" \
				--agent "http://$AGENT_LISTEN" "$what" || {
				echo "(roostctl $what failed)"
				rc=1
			}
		done
	done
	section "fabric"
	# From the first node's lo to every other node's.
	local first=${NODES[0]} from to family
	for family in 4 6; do
		if ! command -v ping >/dev/null; then
			echo "check skipped: ping is not installed (iputils-ping)"
			break
		fi
		from=$(node_lo "$first" "$family")
		for node in "${NODES[@]:1}"; do
			to=$(node_lo "$node" "$family")
			if ip netns exec "$first" ping "-$family" -c 1 -W 2 -I "$from" "$to" >/dev/null 2>&1; then
				echo "$first $from -> $node $to: reachable through the ToRs"
			else
				echo "$first $from -> $node $to: NOT reachable"
				rc=1
			fi
		done
	done
	return "$rc"
}

# hop NS DST [SRC IIF] prints NS's route to DST, for a packet from SRC that
# came in on IIF when given: where NS sends it next.
hop() {
	local ns=$1 dst=$2 src=${3:-} iif=${4:-} out
	if [[ -n $src ]]; then
		out=$(ip -n "$ns" -o route get "$dst" from "$src" iif "$iif" 2>&1)
	else
		out=$(ip -n "$ns" -o route get "$dst" 2>&1)
	fi
	out=${out%%\\*} # drop the cache details after the route
	out=$(tr -s ' ' <<<"$out")
	printf '  %-6s %s\n' "$ns" "${out% }"
}

# default_shape succeeds when the lab has what paths describes: the
# default file's tor1 and tor2, both linked to node1 and node2, db on node1,
# employee2 and db2 on node2, vm1 behind tor1, and service db's VIP.
default_shape() {
	local tor node
	for tor in tor1 tor2; do
		for node in node1 node2; do [[ -n $(link_id "$tor" "$node") ]] || return 1; done
	done
	[[ $(pod_node db) == node1 && $(pod_node employee2) == node2 && $(pod_node db2) == node2 ]] &&
		[[ $(vm_tor vm1) == tor1 && -n $(service_vip db) && $(service_vip db) != - ]]
}

# paths prints the hops of the flows between the nodes and from vm1: each
# node sends other nodes' pods and vm1 to a ToR (by its default route, and
# the route to vm1's subnet via tor1), and the ToRs send each PodCIDR to its
# node (by what that node's roost-agent announced). It describes the
# default file's workloads (default_shape), and says so in another lab.
paths() {
	if ! default_shape; then
		echo "(described for the workloads of the default lab, scripts/lab/lab.yaml, only)"
		return 0
	fi
	local db employee2 db2 vm1 vip
	db=$(workload_ip db) employee2=$(workload_ip employee2) db2=$(workload_ip db2) vm1=$(workload_ip vm1)
	vip=$(service_vip db)
	echo "employee2 -> db (node2 -> ToR -> node1):"
	hop node2 "$db" "$employee2" employee2
	hop tor1 "$db" "$(link_addr "$(link_id tor1 node2)" node 4)" node2
	hop tor2 "$db" "$(link_addr "$(link_id tor2 node2)" node 4)" node2
	hop node1 "$db" "$employee2" tor1
	echo "db -> employee2 (node1 -> ToR -> node2):"
	hop node1 "$employee2" "$db" db
	hop tor1 "$employee2" "$(link_addr "$(link_id tor1 node1)" node 4)" node1
	hop tor2 "$employee2" "$(link_addr "$(link_id tor2 node1)" node 4)" node1
	echo "vm1 -> db (tor1 -> node1), and back (node1 -> tor1):"
	hop tor1 "$db" "$vm1" vm1
	hop node1 "$vm1" "$db" db
	echo "vm1 -> VIP $vip (tor1 -> either node, by ECMP over both nodes' announcements; that node's XDP picks the backend):"
	local tor
	for tor in "${TORS[@]}"; do
		printf '  %-6s %s\n' "$tor" "$(ip -n "$tor" -o route show "$vip" | sed 's/\\\s*/ /g; s/ *$//' | tr -s ' ')"
	done
	echo "  a backend on the other node: encapsulated (IPIP) back to tor1, which routes it to that node:"
	hop tor1 "$db2" "$(link_addr "$(link_id tor1 node1)" node 4)" node1
	hop tor1 "$db" "$(link_addr "$(link_id tor1 node2)" node 4)" node2
	echo "  the reply leaves the backend's node directly (its uplinks' TC egress sets the VIP as source):"
	hop node1 "$vm1" "$db" db
	hop node2 "$vm1" "$db2" db2
	paths6
}

# paths6 prints the hops of the same flows over IPv6 (no VIP: the services
# are IPv4 only): the nodes' IPv6 default routes, and the routes the ToRs
# learnt over their IPv6 sessions.
paths6() {
	local db employee2 vm1
	db=$(workload_ip db 6) employee2=$(workload_ip employee2 6) vm1=$(workload_ip vm1 6)
	echo "employee2 -> db over IPv6 (node2 -> ToR -> node1):"
	hop node2 "$db" "$employee2" employee2
	hop tor1 "$db" "$(link_addr "$(link_id tor1 node2)" node 6)" node2
	hop tor2 "$db" "$(link_addr "$(link_id tor2 node2)" node 6)" node2
	hop node1 "$db" "$employee2" tor1
	echo "db -> employee2 over IPv6 (node1 -> ToR -> node2):"
	hop node1 "$employee2" "$db" db
	hop tor1 "$employee2" "$(link_addr "$(link_id tor1 node1)" node 6)" node1
	hop tor2 "$employee2" "$(link_addr "$(link_id tor2 node1)" node 6)" node1
	echo "vm1 -> db over IPv6 (tor1 -> node1), and back (node1 -> tor1):"
	hop tor1 "$db" "$vm1" vm1
	hop node1 "$vm1" "$db" db
}

# report_policy prints the paths, runs the traffic checks, prints the
# global view (with etcd), then prints for each node its drops, endpoints,
# its protected-db pod's policy with the datapath's counters, and what its
# socket and uplink load balancers serve ("roostctl services"). It returns non-zero when a check failed, after
# printing everything.
report_policy() {
	local rc=0 out n
	section "paths"
	paths
	section "traffic (seed policy: only app=employee may reach app=protected-db, on TCP 6379; svc:db is service db's cluster IP, vip:db its VIP)"
	traffic 4 "${CHECKS[@]}" || rc=1
	section "traffic over IPv6 (the same seed policy, the workloads' IPv6 addresses)"
	traffic 6 "${CHECKS6[@]}" || rc=1
	[[ -z $ETCD ]] || report_globalview || rc=1
	# Per node: its drops, endpoints, the policy of each of its enforced
	# pods, and its services.
	local args node pod all=()
	for node in "${NODES[@]}"; do
		all+=("$node drops" "$node endpoints")
		for pod in "${PODS[@]}"; do
			if [[ $(pod_node "$pod") == "$node" ]] && enforced_pod "$pod"; then all+=("$node policy $pod"); fi
		done
		all+=("$node services")
	done
	for args in "${all[@]}"; do
		section "${args%% *}: roostctl ${args#* }"
		if [[ $args == *drops ]]; then
			if out=$(roostctl_loader "${args%% *}" drops); then
				n=$(grep -c . <<<"$out" || true)
				if ((n > 20)); then
					echo "(the last 20 of $n)"
					tail -n 20 <<<"$out"
				else
					printf '%s\n' "$out"
				fi
			else
				echo "(roostctl drops failed)"
				rc=1
			fi
			continue
		fi
		# shellcheck disable=SC2086 # split "node command [endpoint]"
		roostctl_loader $args || {
			echo "(roostctl ${args#* } failed)"
			rc=1
		}
	done
	return "$rc"
}

# origin_counts NODE prints how many endpoints NODE's roost-loader enforces
# of each origin (file, kubernetes, cluster:NAME, sync:NAME), as
# "ORIGIN=COUNT" words.
origin_counts() {
	roostctl_loader "$1" --timeout 2s -o json endpoints | json_flat |
		awk -F'\t' '$1 ~ /^\[[0-9]+\]\.origin$/ { n[$2]++ } END { for (o in n) print o "=" n[o] }' |
		sort | paste -sd' '
}

# report_globalview prints, for each node, the endpoints its roost-loader
# enforces by origin and the state of its global view and publisher (the
# lines below "roostctl endpoints"' table), and what roost-sync has
# registered. It fails when a loader does not answer.
report_globalview() {
	local rc=0 node out counts
	section "global view (etcd $(etcd_ip):$ETCD_CLIENT_PORT): what each roost-loader enforces, by origin"
	for node in "${NODES[@]}"; do
		if ! counts=$(origin_counts "$node") || ! out=$(roostctl_loader "$node" --timeout 2s endpoints); then
			echo "$node: (roostctl endpoints failed)"
			rc=1
			continue
		fi
		printf '%-6s cluster %-6s %s\n' "$node" "$(node_cluster "$node")" "$counts"
		grep -E '^(global view|publisher|conflict|bad key)' <<<"$out" | sed 's/^/       /' || true
	done
	[[ -n $SYNC ]] || return "$rc"
	section "roost-sync $SYNC ($(sync_listen)): GET /v1/workloads"
	if out=$(sync_api GET /v1/workloads); then
		json_flat <<<"$out" | awk -F'\t' '
			$1 !~ /^workloads\[/ { next }
			{ split($1, k, /[][]/); i = k[2] + 0; f = substr(k[3], 2); if (i + 1 > n) n = i + 1 }
			f == "ips" { ips[i] = ips[i] (ips[i] == "" ? "" : ",") $2; next }
			f ~ /^labels\./ { lab[i] = lab[i] (lab[i] == "" ? "" : ",") substr(f, 8) "=" $2; next }
			{ v[i, f] = $2 }
			END {
				fmt = "%-20s %-7s %-26s %-13s %s\n"
				printf fmt, "WORKLOAD", "SOURCE", "IPS", "LABELS", "EXPIRES"
				for (j = 0; j < n; j++) printf fmt, v[j, "namespace"] "/" v[j, "name"], v[j, "source"], ips[j], lab[j], v[j, "expires"]
				if (n == 0) print "(none)"
			}'
	else
		rc=1
	fi
	return "$rc"
}

# deregistration_checks deregisters every vm roost-sync registers, waits
# until no loader lists it any more, runs DEREG_CHECKS and DEREG_CHECKS6
# (what the vm's checks give now), and registers the vms again, waiting
# until every loader lists them: the lab is left as "up" built it. It
# fails when a check fails or the view does not follow in TIMEOUT.
deregistration_checks() {
	local rc=0 vm began took
	local vms=()
	mapfile -t vms < <(synced_vms)
	((${#vms[@]})) || return 0
	section "deregistration: ${vms[*]} deregistered from roost-sync $SYNC"
	began=$EPOCHREALTIME
	for vm in "${vms[@]}"; do deregister "$vm"; done
	for vm in "${vms[@]}"; do
		if ! wait_for "$TIMEOUT" view_lacks_everywhere "$(view_name "$vm")"; then
			echo "$vm: still in a loader's view ${TIMEOUT}s after its deregistration"
			rc=1
		fi
	done
	took=$(awk -v a="$began" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
	echo "gone from every loader's view (${NODES[*]}) ${took}s after the DELETE"
	traffic 4 "${DEREG_CHECKS[@]}" || rc=1
	section "deregistration over IPv6"
	traffic 6 "${DEREG_CHECKS6[@]}" || rc=1
	section "registration again: ${vms[*]}"
	began=$EPOCHREALTIME
	for vm in "${vms[@]}"; do register "$vm"; done
	if wait_for "$TIMEOUT" loaders_ready; then
		took=$(awk -v a="$began" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
		echo "in every loader's view again ${took}s after the PUT"
	else
		echo "not in every loader's view ${TIMEOUT}s after the PUT"
		rc=1
	fi
	return "$rc"
}

# --- commands ----------------------------------------------------------------

cmd_up() {
	find_programs
	[[ -d /proc/sys/net/ipv6 ]] || die "the kernel has no IPv6 (no /proc/sys/net/ipv6): the lab is dual-stack"
	mkdir -p "$STATE"
	chmod 0755 "$STATE"
	touch "$MARKER"
	# What "status" and "down" will read (load_lab).
	printf '%s\n' "$LAB_ENV_TEXT" >"$LAB_ENV"
	if [[ $NO_AGENT == 1 ]]; then touch "$NO_AGENT_FLAG"; else rm -f "$NO_AGENT_FLAG"; fi
	setup_network
	local ns vm
	# The files first: the agents watch the services files.
	write_policy_files
	for ns in "${TORS[@]}"; do start_tor "$ns"; done
	for ns in "${NODES[@]}"; do start_node "$ns"; done
	# etcd before the loaders, which wait for their first view from it.
	start_etcd
	start_sync
	for vm in $(synced_vms); do register "$vm"; done
	setup_cgroups
	for ns in "${NODES[@]}"; do start_loader "$ns"; done
	start_servers
	log "waiting up to ${TIMEOUT}s for the ToRs to hold every PodCIDR (IPv4 and IPv6)"
	if ! wait_for "$TIMEOUT" converged; then
		report || true
		die "ToRs did not learn every PodCIDR of both families within ${TIMEOUT}s; logs are in $STATE/*/log"
	fi
	log "converged"
	local what="enforce the seed policy on their pods"
	[[ -z $ETCD ]] || what+=", list every other cluster's workload and roost-sync's from etcd,"
	log "waiting up to ${TIMEOUT}s for the roost-loaders to $what and serve the VIP at their uplinks"
	if ! wait_for "$TIMEOUT" loaders_ready; then
		for ns in "${NODES[@]}"; do
			section "$ns: roostctl endpoints"
			roostctl_loader "$ns" endpoints || true
			section "$ns: roostctl services"
			roostctl_loader "$ns" services || true
		done
		die "the roost-loaders are not ready within ${TIMEOUT}s; see $STATE/node*/log/loader.log"
	fi
	log "policy enforced, VIP served"
	local rc=0
	report || rc=1
	report_policy || rc=1
	deregistration_checks || rc=1
	if ((rc != 0)); then
		die "a check failed (see above); logs are in $STATE/*/log"
	fi
	log "all checks passed"
}

cmd_status() {
	[[ -f $MARKER ]] || die "the lab is not up (no $MARKER)"
	if [[ -f $NO_AGENT_FLAG ]]; then NO_AGENT=1; else NO_AGENT=0; fi
	find_programs
	local rc=0 ns f
	section "processes"
	for ns in "${TORS[@]}" "${NODES[@]}" "${PODS[@]}" "${ATTACHED[@]}"; do
		for f in "$STATE/$ns"/run/*.pid; do
			[[ -e $f ]] || continue
			if alive "$f" "$ns"; then
				printf '%-9s %-13s pid %s\n' "$ns" "$(basename "$f" .pid)" "$(<"$f")"
			else
				printf '%-9s %-13s NOT RUNNING\n' "$ns" "$(basename "$f" .pid)"
				rc=1
			fi
		done
	done
	for ns in "${NODES[@]}"; do
		if bpffs_mounted "$STATE/$ns/bpffs"; then
			printf '%-9s %-13s mounted on %s\n' "$ns" bpffs "$STATE/$ns/bpffs"
		else
			printf '%-9s %-13s NOT MOUNTED on %s\n' "$ns" bpffs "$STATE/$ns/bpffs"
			rc=1
		fi
	done
	report || rc=1
	report_policy || rc=1
	if ((rc != 0)); then
		log "a check failed (see above)"
		return "$rc"
	fi
	log "all checks passed"
}

cmd_down() {
	local ns f pid
	if [[ -n $ETCD ]]; then
		# The heartbeats and roost-sync before etcd, which they write to.
		for f in "$STATE/$ETCD"/run/heartbeat-*.pid; do
			[[ -e $f ]] && stop_pid "$f" "$ETCD"
		done
		stop_pid "$STATE/$ETCD/run/sync.pid" "$ETCD"
	fi
	for ns in "${NODES[@]}" "${TORS[@]}"; do
		# loader and agent before bird, bgpd before zebra: the order they
		# depend on
		for f in loader agent bird bgpd zebra; do
			stop_pid "$STATE/$ns/run/$f.pid" "$ns"
		done
	done
	# etcd after the loaders, so that none is left waiting for it.
	for ns in "${PODS[@]}" "${ATTACHED[@]}"; do
		for f in "$STATE/$ns"/run/*.pid; do
			[[ -e $f ]] || continue
			stop_pid "$f" "$ns"
		done
	done
	for ns in "${PODS[@]}" "${ATTACHED[@]}" "${NODES[@]}" "${TORS[@]}"; do
		ip netns list | awk '{print $1}' | grep -qx "$ns" || continue
		for pid in $(ip netns pids "$ns" 2>/dev/null); do
			log "$ns: killing leftover pid $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null))"
			kill -KILL "$pid" 2>/dev/null || true
		done
		ip netns del "$ns"
		log "namespace $ns deleted"
	done
	# The nodes' cgroups (empty once the loaders and clients are gone; the
	# socket load balancers' links go with the BPF filesystems below).
	if cgroup2_mounted "$CGROUP_DIR"; then
		for ns in "${NODES[@]}"; do
			if [[ -d $CGROUP_DIR/roost-lab-$ns ]]; then rmdir "$CGROUP_DIR/roost-lab-$ns"; fi
		done
		umount "$CGROUP_DIR"
		log "unmounted $CGROUP_DIR"
	fi
	# The BPF filesystems, and with them the pins that kept the programs
	# loaded after the loaders stopped. (Mounted twice by hand, a directory
	# is unmounted twice.)
	for ns in "${NODES[@]}"; do
		while bpffs_mounted "$STATE/$ns/bpffs"; do
			umount "$STATE/$ns/bpffs"
			log "$ns: unmounted $STATE/$ns/bpffs"
		done
	done
	if [[ -d $STATE ]]; then
		if [[ -f $MARKER ]]; then
			# never into a file system still mounted below it
			rm -rf --one-file-system -- "$STATE"
			log "removed $STATE"
		else
			log "left $STATE alone: it has no $(basename "$MARKER") marker, so it is not the lab's"
		fi
	fi
}

main() {
	[[ $# -eq 1 ]] || usage
	[[ $EUID -eq 0 ]] || die "must run as root (namespaces, FRR, BIRD)"
	[[ $TIMEOUT =~ ^[0-9]+$ ]] || die "ROOST_LAB_TIMEOUT=$TIMEOUT: want a number of seconds"
	# One lab command at a time. Every daemon is started with fd 9 closed,
	# or it would hold the lock for as long as it runs.
	exec 9<"${BASH_SOURCE[0]}"
	flock 9
	case "$1" in up | status | down) ;; *) usage ;; esac
	load_lab "$1"
	case "$1" in
	up) cmd_up ;;
	status) cmd_status ;;
	down) cmd_down ;;
	*) usage ;;
	esac
}

main "$@"

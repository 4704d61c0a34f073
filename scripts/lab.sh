#!/usr/bin/env bash
# lab.sh — roost's network-namespace lab: a two-ToR BGP fabric on one machine.
#
#   scripts/lab.sh up       build (or complete) the lab, wait until both ToRs
#                           hold both PodCIDRs, then print what each side sees
#   scripts/lab.sh status   print the same, changing nothing
#   scripts/lab.sh down     remove every namespace, process and file it made
#
# Topology (network namespaces; the root namespace is never touched):
#
#   link            subnet        ToR end    node end
#   tor1 -- node1   10.0.1.0/30   .1         .2
#   tor2 -- node1   10.0.2.0/30   .1         .2
#   tor1 -- node2   10.0.3.0/30   .1         .2
#   tor2 -- node2   10.0.4.0/30   .1         .2
#
#   tor1, tor2  FRR (zebra + bgpd, one instance per namespace with "-N <tor>"),
#               AS 65000, router ids 10.0.1.1 and 10.0.2.1; they install what
#               they learn into their own kernel FIB (ECMP allowed) and
#               forward; they do not peer with each other
#   node1       BIRD + roost-agent, AS 65101, router id 10.0.1.2, 10.244.1.0/24
#   node2       BIRD + roost-agent, AS 65102, router id 10.0.3.2, 10.244.2.0/24
#
# The veth interface at each end is named after the namespace at the other
# end. Each node has a default route via both ToRs (ECMP) and owns
# 10.244.<n>.1 on lo, so "ip netns exec node1 ping -I 10.244.1.1 10.244.2.1"
# crosses the fabric.
#
# Environment:
#   ROOST_LAB_DIR       state directory (default /run/roost-lab): configs,
#                       sockets, pid files and logs of every daemon
#   ROOST_BIN           where roost-agent and roostctl are (default <repo>/bin,
#                       built by "make build")
#   ROOST_LAB_TIMEOUT   seconds "up" waits for the ToRs to converge (default 60)
#   ROOST_LAB_NO_AGENT  1: "up" runs BIRD with a hand-written config
#                       equivalent to what roost-agent renders, and no agent
#                       (for testing the lab itself); "status" remembers it
#
# Query a ToR:  vtysh --vty_socket /run/roost-lab/tor1/run -c 'show bgp summary'
# Query a node: ip netns exec node1 bin/roostctl --bird-socket \
#                 /run/roost-lab/node1/run/bird.ctl peers
#
# Packages (bird2, frr, iproute2) come from scripts/deps.sh; this script
# installs nothing.
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
readonly AGENT_LISTEN=127.0.0.1:9479
readonly TOR_ASN=65000

readonly TORS=(tor1 tor2)
readonly NODES=(node1 node2)
# links: "<tor> <node> <n>" — subnet 10.0.<n>.0/30, ToR .1, node .2
readonly LINKS=("tor1 node1 1" "tor2 node1 2" "tor1 node2 3" "tor2 node2 4")

# node_asn, node_router_id, node_podcidr, node_lo print one node's settings.
node_asn() { case "$1" in node1) echo 65101 ;; node2) echo 65102 ;; esac; }
node_router_id() { case "$1" in node1) echo 10.0.1.2 ;; node2) echo 10.0.3.2 ;; esac; }
node_podcidr() { case "$1" in node1) echo 10.244.1.0/24 ;; node2) echo 10.244.2.0/24 ;; esac; }
node_lo() { case "$1" in node1) echo 10.244.1.1 ;; node2) echo 10.244.2.1 ;; esac; }
tor_router_id() { case "$1" in tor1) echo 10.0.1.1 ;; tor2) echo 10.0.2.1 ;; esac; }

log() { printf 'lab: %s\n' "$*" >&2; }
die() {
	printf 'lab: error: %s\n' "$*" >&2
	exit 1
}

usage() {
	cat >&2 <<EOF
usage: $0 up|down|status
  up      create the lab (idempotent) and wait until both ToRs hold both PodCIDRs
  status  show ToR RIBs and node peers/routes without changing anything
  down    remove every namespace, process and file the lab made
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

# find_programs sets BIRD, BIRDC, VTYSH, AGENT and ROOSTCTL, and dies with what
# to do when one is missing.
find_programs() {
	BIRD=$(command -v bird || echo /usr/sbin/bird)
	BIRDC=$(command -v birdc || echo /usr/sbin/birdc)
	VTYSH=$(command -v vtysh || echo /usr/bin/vtysh)
	local p
	for p in "$BIRD" "$BIRDC" "$VTYSH" "$FRR_DIR/zebra" "$FRR_DIR/bgpd"; do
		[[ -x $p ]] || die "$p not found: install bird2 and frr (scripts/deps.sh)"
	done
	id frr >/dev/null 2>&1 || die "user frr does not exist: install frr (scripts/deps.sh)"
	AGENT=$BIN/roost-agent
	ROOSTCTL=$BIN/roostctl
	if [[ $NO_AGENT != 1 ]]; then
		for p in "$AGENT" "$ROOSTCTL"; do
			[[ -x $p ]] || die "$p not found: run 'make build' or point ROOST_BIN at the directory holding roost-agent and roostctl"
		done
	fi
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
# the two namespaces (never in the root namespace), addresses it and sets it
# up; each step is skipped or replaced when already done.
make_link() {
	local tor=$1 node=$2 n=$3
	if ! ip -n "$tor" link show "$node" >/dev/null 2>&1; then
		# A half-made pair cannot exist (veths die in pairs), but a stale end
		# left by something else can: clear it.
		ip -n "$node" link del "$tor" 2>/dev/null || true
		ip -n "$tor" link add "$node" type veth peer name "$tor" netns "$node"
	fi
	ip -n "$tor" addr replace "10.0.$n.1/30" dev "$node"
	ip -n "$node" addr replace "10.0.$n.2/30" dev "$tor"
	ip -n "$tor" link set "$node" up
	ip -n "$node" link set "$tor" up
}

# setup_network builds namespaces, links, sysctls and node routes.
setup_network() {
	local ns link
	for ns in "${TORS[@]}" "${NODES[@]}"; do
		make_netns "$ns"
		# Hash flows by L4 ports so that ECMP spreads them.
		ip netns exec "$ns" sysctl -qw net.ipv4.fib_multipath_hash_policy=1
	done
	for ns in "${TORS[@]}"; do
		ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1
	done
	for link in "${LINKS[@]}"; do
		# shellcheck disable=SC2086 # split "tor node n"
		make_link $link
	done
	for ns in "${NODES[@]}"; do
		ip -n "$ns" addr replace "$(node_lo "$ns")/32" dev lo
	done
	ip -n node1 route replace default nexthop via 10.0.1.1 dev tor1 nexthop via 10.0.2.1 dev tor2
	ip -n node2 route replace default nexthop via 10.0.3.1 dev tor1 nexthop via 10.0.4.1 dev tor2
}

# --- ToRs (FRR) --------------------------------------------------------------

# tor_bgpd_conf TOR prints bgpd's config for TOR: one neighbor per node link.
tor_bgpd_conf() {
	local tor=$1 link t node n
	cat <<EOF
frr defaults datacenter
hostname $tor
!
router bgp $TOR_ASN
 bgp router-id $(tor_router_id "$tor")
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 ! a VIP announced by several nodes (different ASes) is installed as ECMP
 bgp bestpath as-path multipath-relax
EOF
	for link in "${LINKS[@]}"; do
		read -r t node n <<<"$link"
		[[ $t == "$tor" ]] || continue
		printf ' neighbor 10.0.%s.2 remote-as %s\n' "$n" "$(node_asn "$node")"
		printf ' neighbor 10.0.%s.2 description %s\n' "$n" "$node"
		printf ' neighbor 10.0.%s.2 timers connect 5\n' "$n"
	done
	printf ' !\n address-family ipv4 unicast\n  maximum-paths 16\n'
	for link in "${LINKS[@]}"; do
		read -r t node n <<<"$link"
		[[ $t == "$tor" ]] || continue
		printf '  neighbor 10.0.%s.2 activate\n' "$n"
	done
	printf ' exit-address-family\nexit\n'
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
	# bgpd -C exits 0 even on a bad line, but prints it.
	out=$("$FRR_DIR/bgpd" -C -f "$dir/frr/bgpd.conf" 2>&1) || true
	[[ -z $out ]] || die "$tor: bgpd rejects $dir/frr/bgpd.conf: $out"
	start_frr_daemon "$tor" zebra
	start_frr_daemon "$tor" bgpd
}

# --- nodes (BIRD + roost-agent) ----------------------------------------------

# node_bird_conf NODE prints the config roost-agent would render for NODE:
# its PodCIDR as a static blackhole, exported to both ToRs, nothing imported.
# Used only with ROOST_LAB_NO_AGENT=1.
node_bird_conf() {
	local node=$1 link tor t n
	cat <<EOF
# written by scripts/lab.sh (ROOST_LAB_NO_AGENT=1), standing in for roost-agent
router id $(node_router_id "$node");
protocol device {}
protocol static owned4 {
  ipv4;
  route $(node_podcidr "$node") blackhole;
}
EOF
	for link in "${LINKS[@]}"; do
		read -r tor t n <<<"$link"
		[[ $t == "$node" ]] || continue
		cat <<EOF
protocol bgp $tor {
  local 10.0.$n.2 as $(node_asn "$node");
  neighbor 10.0.$n.1 as $TOR_ASN;
  graceful restart on;
  ipv4 { import none; export where proto = "owned4"; };
}
EOF
	done
}

# node_agent_conf NODE prints roost-agent's config for NODE.
node_agent_conf() {
	local node=$1 link tor t n
	cat <<EOF
# written by scripts/lab.sh
node: $node
asn: $(node_asn "$node")
routerID: $(node_router_id "$node")
podCIDRs: [$(node_podcidr "$node")]
kubernetes: {enabled: false, kubeconfig: ""}
peers:
EOF
	for link in "${LINKS[@]}"; do
		read -r tor t n <<<"$link"
		[[ $t == "$node" ]] || continue
		printf '  - {name: %s, address: 10.0.%s.1, asn: %s}\n' "$tor" "$n" "$TOR_ASN"
	done
	cat <<EOF
bird: {socket: $STATE/$node/run/bird.ctl, configDir: $STATE/$node/bird}
listen: $AGENT_LISTEN
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

# --- convergence and report --------------------------------------------------

# tor_holds TOR PREFIX succeeds when TOR's zebra has installed PREFIX, learned
# by BGP, into TOR's kernel.
tor_holds() { [[ -n $(ip -n "$1" -o route show "$2" proto bgp 2>/dev/null) ]]; }

# converged succeeds when both ToRs hold both PodCIDRs.
converged() {
	local tor node
	for tor in "${TORS[@]}"; do
		for node in "${NODES[@]}"; do
			tor_holds "$tor" "$(node_podcidr "$node")" || return 1
		done
	done
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
	local from to
	from=$(node_lo node1) to=$(node_lo node2)
	if ! command -v ping >/dev/null; then
		echo "check skipped: ping is not installed (iputils-ping)"
	elif ip netns exec node1 ping -c 1 -W 2 -I "$from" "$to" >/dev/null 2>&1; then
		echo "node1 $from -> node2 $to: reachable through the ToRs"
	else
		echo "node1 $from -> node2 $to: NOT reachable"
		rc=1
	fi
	return "$rc"
}

# --- commands ----------------------------------------------------------------

cmd_up() {
	find_programs
	mkdir -p "$STATE"
	chmod 0755 "$STATE"
	touch "$MARKER"
	if [[ $NO_AGENT == 1 ]]; then touch "$NO_AGENT_FLAG"; else rm -f "$NO_AGENT_FLAG"; fi
	setup_network
	local ns
	for ns in "${TORS[@]}"; do start_tor "$ns"; done
	for ns in "${NODES[@]}"; do start_node "$ns"; done
	log "waiting up to ${TIMEOUT}s for both ToRs to hold both PodCIDRs"
	if ! wait_for "$TIMEOUT" converged; then
		report || true
		die "ToRs did not learn both PodCIDRs within ${TIMEOUT}s; logs are in $STATE/*/log"
	fi
	log "converged"
	report
}

cmd_status() {
	[[ -f $MARKER ]] || die "the lab is not up (no $MARKER)"
	if [[ -f $NO_AGENT_FLAG ]]; then NO_AGENT=1; else NO_AGENT=0; fi
	find_programs
	local rc=0 ns f
	section "processes"
	for ns in "${TORS[@]}" "${NODES[@]}"; do
		for f in "$STATE/$ns"/run/*.pid; do
			[[ -e $f ]] || continue
			if alive "$f" "$ns"; then
				printf '%-6s %-6s pid %s\n' "$ns" "$(basename "$f" .pid)" "$(<"$f")"
			else
				printf '%-6s %-6s NOT RUNNING\n' "$ns" "$(basename "$f" .pid)"
				rc=1
			fi
		done
	done
	report || rc=1
	return "$rc"
}

cmd_down() {
	local ns f pid
	for ns in "${NODES[@]}" "${TORS[@]}"; do
		# agent before bird, bgpd before zebra: the order they depend on
		for f in agent bird bgpd zebra; do
			stop_pid "$STATE/$ns/run/$f.pid" "$ns"
		done
	done
	for ns in "${NODES[@]}" "${TORS[@]}"; do
		ip netns list | awk '{print $1}' | grep -qx "$ns" || continue
		for pid in $(ip netns pids "$ns" 2>/dev/null); do
			log "$ns: killing leftover pid $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null))"
			kill -KILL "$pid" 2>/dev/null || true
		done
		ip netns del "$ns"
		log "namespace $ns deleted"
	done
	if [[ -d $STATE ]]; then
		if [[ -f $MARKER ]]; then
			rm -rf -- "$STATE"
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
	case "$1" in
	up) cmd_up ;;
	status) cmd_status ;;
	down) cmd_down ;;
	*) usage ;;
	esac
}

main "$@"

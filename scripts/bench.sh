#!/usr/bin/env bash
# bench.sh runs roost's benchmarks and prints the results with the machine
# they ran on. docs/benchmarks.md records them. Run as root (the privileged
# benchmarks start BIRD and FRR in network namespaces); `make bench` calls it.
#
#   scripts/bench.sh                   # everything
#   BENCH=PrivilegedApply scripts/bench.sh   # only the benchmarks whose top-level
#                                            # name matches this regexp
set -euo pipefail
cd "$(dirname "$0")/.."
filter=${BENCH:-}
out=${ROOST_BENCH_OUT:-/tmp/roost-bench.txt}

{
	echo "# roost benchmarks, $(date -u +%Y-%m-%dT%H:%MZ)"
	echo "# commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
	echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"
	echo "# memory: $(free -g | awk '/Mem:/ {print $2}') GiB, kernel $(uname -r)"
	echo "# $(bird --version 2>&1), $(/usr/lib/frr/bgpd --version 2>/dev/null | head -n1), $(go version)"
} | tee "$out"

# run PATTERN ARGS...: run the benchmarks matching PATTERN (and $BENCH).
run() {
	local pattern=$1
	shift
	if [ -n "$filter" ]; then
		echo "$pattern" | grep -Eq "$filter" || return 0
		pattern=$filter
	fi
	go test -run '^$' -bench "$pattern" "$@" | grep -E '^(Benchmark|ok|FAIL|---|panic)' | tee -a "$out"
}
# Pure: rendering and reply parsing.
run "BenchmarkRender|BenchmarkReadReply|BenchmarkParseRoutes" -benchmem ./internal/birdconf ./internal/birdctl
# Maglev table builds (the XDP path's tables).
run "BenchmarkBuild" -benchmem ./internal/maglev
if [ "$(id -u)" -ne 0 ]; then
	echo "bench: not root: skipping the benchmarks with BIRD and FRR in namespaces" >&2
	exit 0
fi
# Apply beside BIRD's own configure (the floor).
run "BenchmarkPrivilegedApply" -benchtime=3s ./internal/agent
# Change -> ToR latency over 40 changes of one prefix each.
run "BenchmarkPrivilegedChangeToToR" -benchtime=40x -timeout 30m ./internal/agent
# One VIP change -> its UPDATE on a ToR's wire: the kernel-table path beside
# the static protocol's reconfiguration.
run "BenchmarkPrivilegedVIPChange" -benchtime=100x -timeout 30m ./internal/agent
# The global endpoint view's write load at 10,000 endpoints on a real etcd
# (docs/benchmarks.md, issue 12).
run "BenchmarkPublish10k" -benchtime=1x ./internal/globalview
# One change in a 10,000-endpoint global view -> enforced by four loaders of
# two clusters (p50/p99 of every node).
run "BenchmarkPrivilegedGlobalViewConvergence" -benchtime=50x -timeout 20m ./cmd/roost-loader
# Resident memory of the roost-agent binary.
run "BenchmarkPrivilegedAgentRSS" -benchtime=1x ./internal/agent
# eBPF verdict cost per packet (BPF_PROG_TEST_RUN) beside an empty program.
run "BenchmarkPrivilegedVerdict" -benchtime=3000000x ./internal/datapath
# Policy change -> enforced, 1,000 and 10,000 endpoints (compile + map writes).
run "BenchmarkPrivilegedChangeToEnforce" -benchtime=20x ./internal/loader
# Real TCP between pods: no policy, eBPF, iptables; 1,000 and 10,000 rules.
run "BenchmarkPrivilegedTrafficVsIptables" -benchtime=10000x ./internal/loader
# A TCP connection through a cluster IP: direct, socket load balancer,
# kube-proxy's iptables chains; 1,000 and 10,000 services.
run "BenchmarkPrivilegedConnect" -benchtime=20000x ./internal/socklb
# The uplink load balancer per packet in test-run (XDP).
run "BenchmarkPrivilegedXDP" ./internal/xdplb
# A change of one service in a file of 10,000 -> served.
run "BenchmarkPrivilegedChangeToServed" -benchtime=20x ./internal/servicesd
echo "bench: results in $out"

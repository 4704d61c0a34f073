#!/usr/bin/env bash
# deps.sh installs what roost's build, tests and lab need on a Debian
# (bookworm) machine, and nothing when it is all there already. Run as root;
# without root it only reports what is missing.
#
#   scripts/deps.sh          # BIRD 2, FRR, gobgpd, iproute2, clang-19, Go,
#                            # etcd-server (the lab's global view)
#   scripts/deps.sh test     # and what the deployment test needs: Docker,
#                            # docker-compose, debootstrap, Salt from PyPI in
#                            # a venv at /opt/roost-test/salt, and Compose v2
#                            # built from the Go module proxy into
#                            # /opt/roost-test/bin/docker-compose-v2, and
#                            # a Kubernetes API server:
#                            # kube-apiserver built from the Go module
#                            # proxy into /opt/roost-test/bin/kube-apiserver,
#                            # and promtool (Debian's prometheus, server
#                            # kept stopped) for the alerting rules' tests
set -euo pipefail

case "${1:-}" in
"" | lab) with_test=0 ;;
test) with_test=1 ;;
*)
	echo "usage: deps.sh [test]" >&2
	exit 2
	;;
esac
SALT_VERSION=${ROOST_SALT_VERSION:-3008.4}
SALT_VENV=/opt/roost-test/salt
COMPOSE_V2_VERSION=${ROOST_COMPOSE_V2_VERSION:-2.40.3}
COMPOSE_V2=/opt/roost-test/bin/docker-compose-v2
KUBE_VERSION=${ROOST_KUBE_VERSION:-1.34.2}
KUBE_APISERVER=/opt/roost-test/bin/kube-apiserver

GO_VERSION=${ROOST_GO_VERSION:-1.26.8}
# Debian package → a file that proves it is installed.
declare -A PKGS=(
	[bird2]=/usr/sbin/bird
	[frr]=/usr/lib/frr/bgpd
	[gobgpd]=/usr/bin/gobgpd
	[iproute2]=/usr/sbin/ip
	[procps]=/usr/bin/pgrep
	[iputils-ping]=/usr/bin/ping
	[netcat-openbsd]=/usr/bin/nc.openbsd
	[iptables]=/usr/sbin/iptables
	# make bench: the iptables comparison lists the ruleset with nft; the
	# lab counts what its ToRs forward with it.
	[nftables]=/usr/sbin/nft
	[curl]=/usr/bin/curl
	# The store of the global endpoint view: the lab's etcd (roost-lab),
	# internal/globalview's tests (testenv.StartEtcd: one to three members
	# per test), and the store behind the tests' kube-apiserver
	# (internal/testenv).
	[etcd-server]=/usr/bin/etcd
	[unzip]=/usr/bin/unzip
	[ca-certificates]=/etc/ssl/certs/ca-certificates.crt
	# eBPF: the committed objects are rebuilt and compared by a test
	# (bpf/generate_test.go) with exactly this compiler.
	[clang-19]=/usr/bin/clang-19
	[llvm-19]=/usr/bin/llvm-strip-19
	[libbpf-dev]=/usr/include/bpf/bpf_helpers.h
	[bpftool]=/usr/sbin/bpftool
)

if [ "$with_test" = 1 ]; then
	PKGS+=(
		[docker.io]=/usr/sbin/dockerd
		[docker-compose]=/usr/bin/docker-compose
		[debootstrap]=/usr/sbin/debootstrap
		# Salt's venv is made from Debian's python3 with its site packages,
		# so that Salt's apt states can import python3-apt.
		[python3-venv]=/usr/lib/python3.11/ensurepip/_uninstall.py
		[python3-apt]=/usr/lib/python3/dist-packages/apt_pkg.cpython-311-x86_64-linux-gnu.so
		[openssl]=/usr/bin/openssl
		# promtool checks and unit-tests the alerting rules
		# (compose/monitoring, internal/monitoring). It comes only with the
		# Prometheus server, which must not run here: see below.
		[prometheus]=/usr/bin/promtool
	)
fi

missing=()
for pkg in "${!PKGS[@]}"; do
	[ -e "${PKGS[$pkg]}" ] || missing+=("$pkg")
done

if [ "${#missing[@]}" -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: missing Debian packages: ${missing[*]} (run scripts/deps.sh as root)" >&2
	else
		echo "deps: installing ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -q
		# The packages ship services; roost starts its own daemons, so keep
		# the packages' from starting here (no systemd on these machines,
		# but policy-rc.d also covers sysvinit).
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d.roost
		chmod +x /usr/sbin/policy-rc.d.roost
		[ -e /usr/sbin/policy-rc.d ] || ln -s /usr/sbin/policy-rc.d.roost /usr/sbin/policy-rc.d
		apt-get install -y -q --no-install-recommends "${missing[@]}"
		[ "$(readlink /usr/sbin/policy-rc.d 2>/dev/null)" != /usr/sbin/policy-rc.d.roost ] || rm -f /usr/sbin/policy-rc.d
		rm -f /usr/sbin/policy-rc.d.roost
		# Only promtool is wanted of the prometheus package. policy-rc.d
		# kept its server from starting; on a systemd host the package
		# also enabled it for the next boot, so undo that.
		if [[ " ${missing[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
			systemctl disable --now prometheus.service
		fi
	fi
fi

# Go: go.mod says go 1.26. Use the go on PATH when it is new enough, else
# fetch the toolchain from the Go module proxy (golang.org/toolchain) into
# /usr/local/go-roost and link it into /usr/local/bin.
go_ok() {
	command -v go >/dev/null 2>&1 || return 1
	local v
	v=$(go env GOVERSION 2>/dev/null | sed 's/^go//')
	[ "$(printf '%s\n%s\n' "1.26" "$v" | sort -V | head -n1)" = "1.26" ]
}
if ! go_ok; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: go >= 1.26 is missing (run scripts/deps.sh as root)" >&2
		exit 1
	fi
	proxy=${GOPROXY:-https://proxy.golang.org}
	proxy=${proxy%%,*}
	arch=$(dpkg --print-architecture)
	zip=/tmp/go-toolchain-$GO_VERSION.zip
	echo "deps: fetching go$GO_VERSION from the Go module proxy"
	curl -fsSL -o "$zip" "$proxy/golang.org/toolchain/@v/v0.0.1-go$GO_VERSION.linux-$arch.zip"
	rm -rf /usr/local/go-roost /tmp/go-toolchain
	unzip -q "$zip" -d /tmp/go-toolchain
	mv "/tmp/go-toolchain/golang.org/toolchain@v0.0.1-go$GO_VERSION.linux-$arch" /usr/local/go-roost
	chmod +x /usr/local/go-roost/bin/* /usr/local/go-roost/pkg/tool/*/*
	ln -sf /usr/local/go-roost/bin/go /usr/local/go-roost/bin/gofmt /usr/local/bin/
	rm -rf "$zip" /tmp/go-toolchain
fi

# Salt, for the deployment test (internal/e2e): from PyPI into a venv of
# Debian's python3.
if [ "$with_test" = 1 ] && ! "$SALT_VENV/bin/salt-call" --version 2>/dev/null | grep -q " $SALT_VERSION "; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: salt $SALT_VERSION is missing in $SALT_VENV (run scripts/deps.sh test as root)" >&2
		exit 0
	fi
	echo "deps: installing salt $SALT_VERSION from PyPI into $SALT_VENV"
	rm -rf "$SALT_VENV"
	/usr/bin/python3 -m venv --system-site-packages "$SALT_VENV"
	"$SALT_VENV/bin/pip" install -q --disable-pip-version-check "salt==$SALT_VERSION"
fi

# Compose v2, for the deployment test's second pass (the compose file must
# work with Debian's docker-compose 1.29 and with Compose v2). Debian
# bookworm does not package it and no Docker registry or download site is
# reachable here, so it is built from its module on the Go module proxy
# (about 2.5 minutes on 2 cores). Its go.mod has replace and exclude
# directives, so it is built as the main module, from a copy.
if [ "$with_test" = 1 ] && ! "$COMPOSE_V2" version 2>/dev/null | grep -q "v$COMPOSE_V2_VERSION"; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: Compose v2 is missing at $COMPOSE_V2 (run scripts/deps.sh test as root)" >&2
		exit 0
	fi
	echo "deps: building Compose v$COMPOSE_V2_VERSION from the Go module proxy into $COMPOSE_V2"
	mod=github.com/docker/compose/v2
	src=$(cd / && GOFLAGS=-mod=mod go mod download -json "$mod@v$COMPOSE_V2_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[ -n "$src" ] || {
		echo "deps: go mod download $mod@v$COMPOSE_V2_VERSION gave no directory" >&2
		exit 1
	}
	work=$(mktemp -d)
	cp -r "$src/." "$work/"
	chmod -R u+w "$work"
	mkdir -p "$(dirname "$COMPOSE_V2")"
	(cd "$work" && CGO_ENABLED=0 go build -trimpath \
		-ldflags "-s -w -X $mod/internal.Version=v$COMPOSE_V2_VERSION" \
		-o "$COMPOSE_V2" ./cmd)
	rm -rf "$work"
fi

# kube-apiserver, for the tests of every Kubernetes source (internal/testenv
# starts it on Debian's etcd). Kubernetes publishes no module for it to
# build alone, and no download site is reachable here: it is built from
# k8s.io/kubernetes on the Go module proxy by a module of our own that
# replaces each staging module k8s.io/kubernetes names (./staging/src/...)
# with its published v0.x.y (about 5 minutes and 2 GB of memory on 2 cores).
if [ "$with_test" = 1 ] && ! "$KUBE_APISERVER" --version 2>/dev/null | grep -q "v$KUBE_VERSION\$"; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: kube-apiserver is missing at $KUBE_APISERVER (run scripts/deps.sh test as root)" >&2
		exit 0
	fi
	echo "deps: building kube-apiserver v$KUBE_VERSION from the Go module proxy into $KUBE_APISERVER"
	mod=k8s.io/kubernetes
	gomod=$(cd / && GOFLAGS=-mod=mod go mod download -json "$mod@v$KUBE_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
	[ -n "$gomod" ] || {
		echo "deps: go mod download $mod@v$KUBE_VERSION gave no go.mod" >&2
		exit 1
	}
	staging=$(sed -n 's|^[[:space:]]*\(k8s.io/[^ ]*\) => ./staging/.*|\1|p' "$gomod")
	work=$(mktemp -d)
	{
		echo "module roost.test/kube-apiserver"
		echo
		echo "go $(sed -n 's/^go //p' "$gomod")"
		echo
		echo "require $mod v$KUBE_VERSION"
		echo
		echo "replace ("
		for m in $staging; do echo "	$m => $m v0.${KUBE_VERSION#1.}"; done
		echo ")"
	} >"$work/go.mod"
	mkdir -p "$(dirname "$KUBE_APISERVER")"
	(cd "$work" && GOFLAGS=-mod=mod go mod download "$mod" &&
		CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath \
			-ldflags "-s -w -X k8s.io/component-base/version.gitVersion=v$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${KUBE_VERSION#1.}" \
			-o "$KUBE_APISERVER" "$mod/cmd/kube-apiserver")
	rm -rf "$work"
fi

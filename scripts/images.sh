#!/usr/bin/env bash
# images.sh builds, saves and loads roost's two container images:
#
#   roost/bird:TAG    BIRD 2 from Debian bookworm (compose/bird/Dockerfile)
#   roost/roost:TAG   roost-agent, roost-loader, roost-sync, roostctl (compose/roost/Dockerfile)
#
#   scripts/images.sh build          # `make images`; needs bin/ (make build)
#   scripts/images.sh save DIR       # DIR/roost-bird-TAG.tar, DIR/roost-roost-TAG.tar
#   scripts/images.sh load DIR|FILE…  # docker load each tarball
#   scripts/images.sh tag            # print TAG
#
# Environment:
#   ROOST_IMAGE_TAG   tag of both images (default: the release in VERSION, the
#                     tag compose/env.example, the formula's defaults.yaml and
#                     salt/pillar.example name; set it for a build of your own
#                     changes: tags are taken as immutable)
#   ROOST_BASE_IMAGE  base of both images (default debian:bookworm-slim). When
#                     it is neither present nor pullable (no registry, as on
#                     an air-gapped site), roost-base:bookworm is built with
#                     scripts/base-image.sh and used instead.
#   APT_MIRROR        Debian mirror for the BIRD image's apt-get (and for
#                     base-image.sh)
#   ROOST_BIN_DIR     where the four binaries are (default bin, from make build)
#   DOCKER_HOST       the Docker engine, as for the docker CLI
set -euo pipefail
cd "$(dirname "$0")/.."

tag=${ROOST_IMAGE_TAG:-$(cat VERSION)}
bin=${ROOST_BIN_DIR:-bin}

base_image() {
	local want=${ROOST_BASE_IMAGE:-debian:bookworm-slim}
	if docker image inspect "$want" >/dev/null 2>&1; then
		echo "$want"
		return
	fi
	if docker pull -q "$want" >/dev/null 2>&1; then
		echo "$want"
		return
	fi
	if [ -n "${ROOST_BASE_IMAGE:-}" ]; then
		echo "images: base image $want is neither present nor pullable" >&2
		return 1
	fi
	echo "images: $want cannot be pulled; building roost-base:bookworm with debootstrap" >&2
	./scripts/base-image.sh roost-base:bookworm >&2
	echo roost-base:bookworm
}

build() {
	local b ctx
	for b in roost-agent roost-loader roost-sync roostctl; do
		[ -x "$bin/$b" ] || {
			echo "images: $bin/$b is missing: run make build first" >&2
			exit 1
		}
	done
	b=$(base_image)
	echo "images: base $b, tag $tag"
	# The BIRD image's apt-get needs the network; the engine may run
	# without a bridge, so builds use the host's network.
	docker build -q --network host --build-arg "BASE_IMAGE=$b" --build-arg "APT_MIRROR=${APT_MIRROR:-}" \
		-t "roost/bird:$tag" compose/bird >/dev/null
	echo "images: built roost/bird:$tag"
	# A context of just the four binaries.
	ctx=$(mktemp -d)
	trap 'rm -rf "$ctx"' RETURN
	mkdir "$ctx/bin"
	cp "$bin/roost-agent" "$bin/roost-loader" "$bin/roost-sync" "$bin/roostctl" "$ctx/bin/"
	cp compose/roost/Dockerfile "$ctx/"
	docker build -q --network host --build-arg "BASE_IMAGE=$b" -t "roost/roost:$tag" "$ctx" >/dev/null
	echo "images: built roost/roost:$tag"
}

save() {
	local dir=${1:?usage: images.sh save DIR}
	local img
	for img in "roost/bird:$tag" "roost/roost:$tag"; do
		docker image inspect "$img" >/dev/null 2>&1 || {
			echo "images: $img does not exist: build it (make images) or set ROOST_IMAGE_TAG to the tag you built" >&2
			exit 1
		}
	done
	mkdir -p "$dir"
	docker save -o "$dir/roost-bird-$tag.tar" "roost/bird:$tag"
	docker save -o "$dir/roost-roost-$tag.tar" "roost/roost:$tag"
	echo "images: saved $dir/roost-bird-$tag.tar $dir/roost-roost-$tag.tar"
}

load() {
	local f
	[ "$#" -gt 0 ] || {
		echo "usage: images.sh load DIR|FILE..." >&2
		exit 2
	}
	for f in "$@"; do
		if [ -d "$f" ]; then
			for t in "$f"/roost-*.tar; do
				[ -e "$t" ] || {
					echo "images: no roost-*.tar in $f" >&2
					exit 1
				}
				docker load -q -i "$t"
			done
		else
			docker load -q -i "$f"
		fi
	done
}

case "${1:-build}" in
build) build ;;
save) shift; save "$@" ;;
load) shift; load "$@" ;;
tag) echo "$tag" ;;
*)
	echo "usage: images.sh build | save DIR | load DIR|FILE... | tag" >&2
	exit 2
	;;
esac

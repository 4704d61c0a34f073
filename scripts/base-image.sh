#!/usr/bin/env bash
# base-image.sh builds a Debian bookworm base image without a registry:
# debootstrap (minbase) from the machine's own APT mirror, then
# `docker import`. This is the air-gapped path: `make images` uses it when
# the base image is neither present nor pullable.
#
#   scripts/base-image.sh [IMAGE]     # default roost-base:bookworm
#
# Environment: APT_MIRROR (default: the first deb.debian.org-style URI in
# /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list, else
# http://deb.debian.org/debian); ROOST_FORCE=1 rebuilds an existing image.
set -euo pipefail

image=${1:-roost-base:bookworm}
if [ "${ROOST_FORCE:-}" != 1 ] && docker image inspect "$image" >/dev/null 2>&1; then
	echo "base-image: $image exists (ROOST_FORCE=1 rebuilds it)"
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "base-image: debootstrap needs root" >&2
	exit 1
fi
command -v debootstrap >/dev/null || {
	echo "base-image: debootstrap is missing (apt-get install debootstrap)" >&2
	exit 1
}

mirror_of_host() {
	local f u
	for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
		[ -f "$f" ] || continue
		# deb822 "URIs: http://…/debian" or one-line "deb http://…/debian bookworm main".
		u=$(sed -nE 's#^URIs:[[:space:]]+(\S+/debian)/?$#\1#p; s#^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?(\S+/debian)/?[[:space:]].*#\2#p' "$f" | head -n1)
		if [ -n "$u" ]; then
			echo "$u"
			return
		fi
	done
	echo http://deb.debian.org/debian
}
mirror=${APT_MIRROR:-$(mirror_of_host)}

root=$(mktemp -d /var/tmp/roost-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "base-image: debootstrap bookworm from $mirror"
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1 || {
	tail -n 20 "$root.log" >&2
	rm -f "$root.log"
	exit 1
}
rm -f "$root.log"
# Keep what an image needs: no package lists, caches or logs.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
	"$root"/var/log/* "$root"/tmp/*
tar -C "$root" -c . | docker import -c 'CMD ["/bin/bash"]' -m "debootstrap --variant=minbase bookworm $mirror" - "$image" >/dev/null
echo "base-image: built $image"

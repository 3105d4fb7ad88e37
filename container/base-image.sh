#!/usr/bin/env bash
# The CPU image's base: a minimal Debian bookworm with python3 (3.11), python3-venv and ca-certificates,
# built from Debian's packages with debootstrap and imported into podman's image store. For build hosts that
# cannot pull from an image registry; a host that can uses `make container BASE_IMAGE=python:3.11-slim-bookworm`.
#
#   container/base-image.sh IMAGE            (make base-image)
#
# Cached: nothing is done when IMAGE exists (`podman rmi IMAGE` to rebuild it, e.g. for security updates).
# DEBIAN_MIRROR (default http://deb.debian.org/debian) and DEBIAN_SECURITY_MIRROR name a reachable mirror;
# plain HTTP is enough, apt checks every package against the Release files' signatures. Needs root.
set -euo pipefail

image=${1:?usage: container/base-image.sh IMAGE, e.g. localhost/dialogue-summarizer-base:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security_mirror=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
suite=bookworm

if podman image exists "$image"; then
  echo "base image $image exists (podman rmi $image to rebuild it)"
  exit 0
fi
for tool in debootstrap podman; do
  command -v "$tool" >/dev/null || { echo "error: $tool not found: apt-get install debootstrap podman" >&2; exit 2; }
done
if [ "$(id -u)" != 0 ]; then
  echo "error: debootstrap needs root (or give a ready base image: make container BASE_IMAGE=python:3.11-slim-bookworm)" >&2
  exit 2
fi

rootfs=$(mktemp -d /var/tmp/summarizer-base.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
started=$(date +%s)

# minbase: essential packages and apt only. python3-venv brings ensurepip's pip wheel, with which the image
# build installs the service's packages into a virtual environment (Debian's own python3 is
# "externally managed": pip refuses to install into it).
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates "$suite" "$rootfs" "$mirror"

# Security and point-release updates on top of the release's packages, as an official image carries them.
cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security_mirror $suite-security main
EOF
chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
  sh -c 'apt-get update -qq && apt-get upgrade -y -qq && apt-get clean'
# What a container never uses: package lists (refetched by apt-get update), caches, logs, documentation.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*

tar --numeric-owner -C "$rootfs" -c . | podman import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' \
  --message "debootstrap --variant=minbase $suite from $mirror, python3 python3-venv ca-certificates" \
  - "$image" >/dev/null
echo "base image $image built in $(( $(date +%s) - started )) s: $(podman image inspect --format '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}')"

#!/usr/bin/env bash
# A Python 3.11 base image made from Debian's packages, for machines that reach a Debian mirror but no
# container registry:  docker/base/build.sh [IMAGE]   (default local/python:3.11-bookworm; root, ~1 min).
# bookworm's python3 is 3.11, the Python of python:3.11-slim, so the same wheelhouse serves both.
# Kept in the engine's image store: a second call finds the image and returns at once.
set -euo pipefail
image=${1:-local/python:3.11-bookworm}
if docker image inspect "$image" >/dev/null 2>&1; then
    echo "base image $image: cached"
    exit 0
fi
# The mirror apt already uses (DEBIAN_MIRROR overrides); the security suite is not a full mirror.
mirror=${DEBIAN_MIRROR:-$(grep -rhE '^(deb |URIs:)' /etc/apt/sources.list /etc/apt/sources.list.d 2>/dev/null \
    | grep -oE 'https?://[^ ]+/debian/?' | head -n 1 || true)}
mirror=${mirror:-http://deb.debian.org/debian}
command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null; }
rootfs=$(mktemp -d /tmp/ecglens-rootfs.XXXXXX)
trap 'rm -rf "$rootfs" "$rootfs.log"' EXIT
# python-is-python3: the Dockerfiles and HEALTHCHECK call `python`; passwd: groupadd/useradd.
debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,passwd \
    bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || { tail -n 20 "$rootfs.log"; exit 1; }
# Lean: no package lists or cached .debs (nothing installs with apt later), docs, man pages or locales.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/usr/share/doc/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/*
tar -C "$rootfs" -c . | docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python"]' - "$image" >/dev/null
echo "base image $image: built from $mirror"

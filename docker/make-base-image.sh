#!/bin/sh
# Makes the Dockerfile's default base image from Debian packages, for machines that cannot
# pull images (no registry reachable) but can reach a Debian mirror. Docker users never need it.
#   usage: docker/make-base-image.sh [TAG]      (run as root; needs debootstrap and podman)
# Debian bookworm's python3 is 3.11, like python:3.11-slim-bookworm; the Dockerfile makes a
# venv at /opt/venv, so it works on both (/usr/bin/python3 here, /usr/local/bin/python there).
set -eu
TAG=${1:-docker.io/library/python:3.11-slim-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
ENGINE=${ENGINE:-podman}
rootfs=$(mktemp -d /tmp/base-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT

debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$rootfs" "$MIRROR"
# Slim like debian:*-slim: no docs but the copyright files, man pages or locales, now or in later
# installs; and no downloaded packages, package lists or logs.
printf 'path-exclude /usr/share/%s/*\n' doc man info locale > "$rootfs"/etc/dpkg/dpkg.cfg.d/slim
echo 'path-include /usr/share/doc/*/copyright' >> "$rootfs"/etc/dpkg/dpkg.cfg.d/slim
find "$rootfs"/usr/share/doc -type f ! -name copyright -delete
rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* \
    "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*
tar -C "$rootfs" -c . | $ENGINE import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$TAG"
$ENGINE image ls "$TAG"

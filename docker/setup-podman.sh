#!/bin/sh
# Podman for machines with no Docker daemon (this one, CI); run as root.
set -eu
if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman runc debootstrap
fi
# The sandbox refuses podman's default rlimits.
conf=/etc/containers/containers.conf
if ! grep -q '^ *default_ulimits' "$conf" 2>/dev/null; then
    if grep -q '^\[containers\]' "$conf" 2>/dev/null; then
        sed -i 's/^\[containers\]/&\ndefault_ulimits = []/' "$conf"
    else
        printf '[containers]\ndefault_ulimits = []\n' >> "$conf"
    fi
fi
podman --runtime runc info --format '{{.Host.OCIRuntime.Name}} {{.Version.Version}}'

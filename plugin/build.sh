#!/usr/bin/env bash
# plugin/build.sh: builds opensandbox-volume as a managed Docker plugin.
#
#   plugin/build.sh [--enable] [--push] [NAME]     (default NAME: opensandbox/volume:latest)
#
# 1. builds the release binary (or takes OSV_PLUGIN_BINARY, an already built one),
# 2. assembles a rootfs with no base image: the binary, the shared libraries ldd lists for
#    it, and the empty directories Docker and config.json mount over,
# 3. runs `docker plugin create NAME DIR` with the repository's config.json
#    (an existing plugin NAME is removed first, which Docker refuses while it is enabled),
# 4. with --enable: creates the host directories config.json binds (the state directory
#    and the credential profiles directory) and runs `docker plugin enable NAME`,
# 5. with --push: runs `docker plugin push NAME` (NAME then starts with the registry, e.g.
#    127.0.0.1:5001/opensandbox/volume:1.0).
#
# Environment: OSV_PLUGIN_BINARY (skip the cargo build), OSV_PLUGIN_STATE_DIR and
# OSV_PLUGIN_CREDENTIALS_DIR (host directories --enable creates; must match the plugin's
# `state` and `credentials` mount sources, whose defaults are the defaults here).
set -euo pipefail

log() { printf '[plugin/build.sh] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

enable=0
push=0
name=""
for arg in "$@"; do
    case $arg in
        --enable) enable=1 ;;
        --push) push=1 ;;
        -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $arg (use --enable, --push or a plugin NAME)" ;;
        *) [ -z "$name" ] || die "more than one NAME given: $name and $arg"; name=$arg ;;
    esac
done
name=${name:-opensandbox/volume:latest}

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if ! command -v cargo >/dev/null 2>&1 && [ -x "${HOME:-/root}/.cargo/bin/cargo" ]; then
    export PATH="${HOME:-/root}/.cargo/bin:$PATH"
fi

binary=${OSV_PLUGIN_BINARY:-}
if [ -z "$binary" ]; then
    log "building the release binary"
    (cd "$repo_root" && cargo build --release --quiet --bin opensandbox-volume)
    binary=$repo_root/target/release/opensandbox-volume
fi
[ -x "$binary" ] || die "no executable binary at $binary"

work=$(mktemp -d /tmp/osv-plugin.XXXXXX)
trap 'rm -rf -- "$work"' EXIT
rootfs=$work/rootfs
# Mount points: Docker's own (dev, proc, sys, tmp, etc for hosts/resolv.conf, the plugin
# socket directory) and config.json's (propagatedMount and its mounts).
mkdir -p "$rootfs"/{dev,proc,sys,tmp,etc,run/docker/plugins,mounts,state,credentials,host,var/run}
chmod 1777 "$rootfs/tmp"
install -m 0755 "$binary" "$rootfs/opensandbox-volume"
# Debug symbols are most of a binary's size (a debug build: 270 MB, 40 MB stripped), and
# every byte is pushed and pulled with the plugin.
if command -v strip >/dev/null 2>&1; then
    strip "$rootfs/opensandbox-volume"
fi

# The libraries the dynamic loader needs, at the paths it looks for them (ldd prints
# "name => /path (addr)" for libraries and "/path (addr)" for the loader itself).
libs=$(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
[ -n "$libs" ] || die "ldd lists no libraries for $binary; is it dynamically linked?"
for lib in $libs; do
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
done
# A quick proof that the rootfs is complete: the binary runs inside it, alone.
if command -v chroot >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    chroot "$rootfs" /opensandbox-volume --version >/dev/null ||
        die "the binary does not run inside the assembled rootfs (a library is missing?)"
fi
# What was built, readable in the plugin's rootfs (and what makes two tags' layers differ).
{
    echo "name: $name"
    echo "commit: $(git -C "$repo_root" describe --always --dirty 2>/dev/null || echo unknown)"
    echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"$rootfs/build-info"
# CA certificates, for https endpoints (AWS, OSS): the TLS stack reads the system's bundle.
ca_bundle=/etc/ssl/certs/ca-certificates.crt
[ -s "$ca_bundle" ] || die "no CA bundle at $ca_bundle (install the ca-certificates package)"
mkdir -p "$rootfs/etc/ssl/certs"
cp -L "$ca_bundle" "$rootfs/etc/ssl/certs/ca-certificates.crt"
cp "$repo_root/config.json" "$work/config.json"

if docker plugin inspect "$name" >/dev/null 2>&1; then
    log "removing the existing plugin $name"
    docker plugin rm "$name" >/dev/null ||
        die "could not remove the existing plugin $name; disable it first (docker plugin disable $name)"
fi
log "creating plugin $name ($(du -sh "$rootfs" | cut -f1) rootfs)"
docker plugin create "$name" "$work" >/dev/null

if [ "$enable" = 1 ]; then
    state=${OSV_PLUGIN_STATE_DIR:-/var/lib/opensandbox-volume-plugin}
    creds=${OSV_PLUGIN_CREDENTIALS_DIR:-/etc/opensandbox-volume/credentials}
    mkdir -p "$state" "$creds"
    chmod 0700 "$state" "$creds"
    log "enabling $name"
    docker plugin enable "$name" >/dev/null
fi
if [ "$push" = 1 ]; then
    log "pushing $name"
    docker plugin push "$name"
fi
log "done: $name"

#!/usr/bin/env bash
# scripts/check-install.sh: proves the legacy install end to end on a machine without
# systemd (CI): scripts/install.sh builds, installs and starts the daemon, dockerd finds
# it by its socket, a container writes through a host volume, and --uninstall stops it
# and keeps the state. Run by scripts/test.sh after cargo test; needs a running dockerd
# and the image in $OSV_TEST_IMAGE.
#
# It uses the tests' driver name (osvtest), its own directories, and refuses to run where
# it could disturb a real installation: under systemd, or when the binary is already
# installed in /usr/local/bin.
set -euo pipefail

# The tests' driver name: dockerd waits ~15 s on every dead legacy driver it has met
# whenever it lists volumes, so all tests share one name.
readonly DRIVER=osvtest
readonly BIN=/usr/local/bin/opensandbox-volume
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
image=${OSV_TEST_IMAGE:-osv-test-busybox}

log() { printf '[check-install.sh] %s\n' "$*" >&2; }
fail() { log "FAILED: $*"; exit 1; }

if [ -d /run/systemd/system ]; then
    log "skipped: systemd runs here, and this check would install a real service"
    exit 0
fi
if [ -e "$BIN" ]; then
    log "skipped: $BIN is already installed and this check would replace it"
    exit 0
fi

tmp=$(mktemp -d /tmp/osv-check-install.XXXXXX)
volume="osv-check-install-$$"
export OSV_SOCKET=/run/docker/plugins/$DRIVER.sock
export OSV_STATE_DIR=$tmp/state
export OSV_ALLOWED_HOST_PATHS=$tmp/allowed
export OSV_LOG_LEVEL=debug

cleanup() {
    set +e
    docker volume rm -f "$volume" >/dev/null 2>&1
    [ -e "$BIN" ] && "$repo_root/scripts/install.sh" --uninstall >/dev/null 2>&1
    # Only unmounted leftovers are deleted: never recurse into a live mount.
    if ! grep -q " $tmp" /proc/self/mountinfo; then rm -rf -- "$tmp"; fi
}
trap cleanup EXIT

mkdir -p "$tmp/allowed/data"
# The binary cargo test built, when there is one: a release build here would add
# about 5 minutes on 2 cores and test nothing the tests have not.
debug_build="${CARGO_TARGET_DIR:-$repo_root/target}/debug/opensandbox-volume"
if [ -z "${OSV_INSTALL_BINARY:-}" ] && [ -x "$debug_build" ]; then
    export OSV_INSTALL_BINARY=$debug_build
fi
"$repo_root/scripts/install.sh"
[ -x "$BIN" ] || fail "install.sh did not install $BIN"
[ -S "$OSV_SOCKET" ] || fail "no socket at $OSV_SOCKET after install.sh"

docker volume create -d "$DRIVER" -o type=host -o "path=$tmp/allowed/data" "$volume" >/dev/null
docker run --rm -v "$volume:/data" "$image" sh -c 'echo installed > /data/f'
[ "$(cat "$tmp/allowed/data/f")" = installed ] || fail "the container's write did not reach the host"
[ -n "$(ls "$OSV_STATE_DIR/volumes")" ] || fail "no state file was written"
docker volume rm "$volume" >/dev/null

# The unit file must order the daemon before dockerd (legacy plugins must be up first).
grep -q '^Before=docker.service' "$repo_root/scripts/opensandbox-volume.service" ||
    fail "the systemd unit is not ordered before docker.service"
grep -q '^ExecStart=/usr/local/bin/opensandbox-volume serve' \
    "$repo_root/scripts/opensandbox-volume.service" || fail "the unit does not run serve"

"$repo_root/scripts/install.sh" --uninstall
[ ! -e "$BIN" ] || fail "--uninstall left $BIN"
[ ! -e "$OSV_SOCKET" ] || fail "--uninstall left the socket"
[ -d "$OSV_STATE_DIR/volumes" ] || fail "--uninstall removed the state directory"
log "install check passed: install.sh → docker volume create/run/rm → --uninstall"

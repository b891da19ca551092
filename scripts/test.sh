#!/usr/bin/env bash
# scripts/test.sh: the project's single test command (CI runs it through .ci/run).
#
# On a fresh Debian 12 machine, as root, it
#   1. installs the missing system packages (docker.io, fuse3, busybox-static, s3fs,
#      docker-registry, ca-certificates, prometheus),
#   2. starts dockerd if no daemon answers, and stops that daemon (only that one) at exit,
#   3. builds the test image osv-test-busybox from scratch (nothing can be pulled),
#   4. runs cargo fmt --check, cargo clippy -D warnings and cargo test --all-targets,
#      passing this script's arguments on to cargo test, then scripts/check-install.sh
#      (the legacy install end to end, with the binary cargo test built), and last
#      scripts/check-leftovers.sh (no plugin, volume, container, mount, process or
#      socket of the tests left behind; Docker objects compared with a list taken
#      before the tests).
#
# Environment exported to the tests:
#   OSV_TEST_IMAGE=osv-test-busybox
#   OSV_TEST_REQUIRE_ALL=1           a test whose requirement (root, FUSE, an S3 server,
#                                    s3fs, dockerd) is missing fails instead of skipping
#   OSV_DOCKERD_STARTED_BY_TESTS=1   only when this script started dockerd; then also
#   OSV_DOCKERD_CMD                  the exact dockerd command line (no quoting inside, so it
#                                    may be split on whitespace); this script ran it as
#                                    `setsid $OSV_DOCKERD_CMD >>"$OSV_DOCKERD_LOG" 2>&1 &`
#   OSV_DOCKERD_LOG                  dockerd's log file
#   DOCKER_HOST                      unix:///var/run/docker.sock when this script started dockerd
#   OSV_MOTO_SERVER                  moto_server (PyPI moto[server], in /opt/osv-test-venv)
#   OSV_FAST_S3_SERVER               s3s-fs (crates.io, in /opt/osv-s3s-fs-VERSION), for the
#                                    1 GiB round trip
# A dockerd restarted by a test with OSV_DOCKERD_CMD writes the same pid file, so the exit
# trap stops it as well. The exit trap also removes the test processes' directories and S3
# server logs in /tmp, and dockerd's log after a run that passed (a failed run keeps the logs).
#
# Knobs:
#   OSV_SETUP_ONLY=1   stop after set-up (packages, dockerd, image, smoke test, S3 servers);
#                      for checking the machine without building the project's Rust code.
set -euo pipefail

readonly TEST_IMAGE=osv-test-busybox
readonly DOCKER_SOCK=unix:///var/run/docker.sock
# Own pid file (not dockerd's default /var/run/docker.pid) so we only ever stop daemons
# started with our command line.
readonly DOCKERD_PIDFILE=/run/osv-test-dockerd.pid
readonly DOCKERD_START_TIMEOUT=60
readonly PLUGIN_DIR=/run/docker/plugins

log() { printf '[test.sh] %s\n' "$*" >&2; }

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

# rustup installs cargo in ~/.cargo/bin, which non-login shells (CI) may not have on PATH.
if ! command -v cargo >/dev/null 2>&1 && [ -x "${HOME:-/root}/.cargo/bin/cargo" ]; then
    export PATH="${HOME:-/root}/.cargo/bin:$PATH"
fi

dockerd_pid=""       # set when this script started dockerd
dockerd_log=""

# ---------------------------------------------------------------------------------------
# Clean-up helpers (run before the tests and from the exit trap).

# True if some process listens on the unix socket at path $1 (/proc/net/unix lists bound
# sockets by the path given to bind(2), which may be spelt via the /var/run symlink).
socket_is_live() {
    awk -v a="$1" -v b="/var$1" '$8 == a || $8 == b { found = 1 } END { exit !found }' \
        /proc/net/unix
}

# Sockets of plugin daemons from earlier test runs. Live ones belong to a running test
# process (the tests' business); only remove the stale ones, which would otherwise make
# dockerd and the tests find a dead plugin.
remove_stale_test_sockets() {
    local s
    for s in "$PLUGIN_DIR"/osvtest*.sock; do
        [ -e "$s" ] || continue # glob matched nothing
        if [ -S "$s" ] && socket_is_live "$s"; then
            log "warning: $s is still served by a live process; left in place"
        else
            rm -f -- "$s"
            log "removed stale socket $s"
        fi
    done
}

# Pids of dockerds we started: the original one and any a test restarted via OSV_DOCKERD_CMD.
our_dockerd_pids() {
    local p
    for p in "$dockerd_pid" "$(cat "$DOCKERD_PIDFILE" 2>/dev/null || true)"; do
        [ -n "$p" ] || continue
        # Check the name so a recycled pid never makes us kill an unrelated process, and
        # skip zombies: a dockerd restarted by a test is re-parented to PID 1 when it exits,
        # which in containers may be slow to reap it.
        if [ "$(cat "/proc/$p/comm" 2>/dev/null || true)" = dockerd ] &&
            [ "$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | cut -d' ' -f1)" != Z ]; then
            echo "$p"
        fi
    done | sort -u
}

stop_our_dockerd() {
    [ -n "$dockerd_pid" ] || return 0
    local pids p i
    pids=$(our_dockerd_pids)
    [ -n "$pids" ] || return 0
    log "stopping the dockerd started by this script (pid $(echo "$pids" | tr '\n' ' '))"
    for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
    # dockerd stops its containers and its own containerd; give it 30 s, then SIGKILL.
    for i in $(seq 1 60); do
        [ -n "$(our_dockerd_pids)" ] || break
        if [ "$i" -eq 60 ]; then
            log "dockerd did not exit within 30 s; sending SIGKILL"
            for p in $(our_dockerd_pids); do kill -KILL "$p" 2>/dev/null || true; done
        fi
        sleep 0.5
    done
    # Reap it if it is our direct child (it is: setsid execs dockerd in place).
    wait "$dockerd_pid" 2>/dev/null || true
}

# The managed-plugin tests keep a registry's storage (tens of MB) in
# /tmp/osv-managed-PID for as long as their test process runs (a static,
# never dropped); remove those whose process is gone.
remove_stale_registries() {
    local d
    for d in /tmp/osv-managed-*; do
        [ -d "$d" ] || continue
        kill -0 "${d##*-}" 2>/dev/null && continue
        rm -rf -- "$d"
    done
}

# The shared test plugins keep their state in /tmp/osvtest*-PID for as long as their test
# process runs (a static, never dropped), and each test process's S3 server logs to
# /tmp/osv-moto-PID.log: remove those whose process is gone (the logs only after a run that
# passed: a failed one keeps them to read). Never a directory something is mounted below.
remove_stale_test_files() {
    local rc=$1 d f pid
    for d in /tmp/osvtest*-*; do
        [ -d "$d" ] || continue
        pid=${d##*-}
        case $pid in '' | *[!0-9]*) continue ;; esac
        kill -0 "$pid" 2>/dev/null && continue
        if awk -v p="$d/" 'index($2 "/", p) == 1 { found = 1 } END { exit !found }' /proc/self/mounts; then
            log "warning: $d still has a mount below it; left in place"
            continue
        fi
        rm -rf -- "$d"
    done
    [ "$rc" -eq 0 ] || return 0
    for f in /tmp/osv-moto-*.log; do
        [ -f "$f" ] || continue
        pid=${f##*-}
        pid=${pid%.log}
        kill -0 "$pid" 2>/dev/null || rm -f -- "$f"
    done
}

on_exit() {
    local rc=$?
    set +e
    remove_stale_test_sockets
    remove_stale_registries
    stop_our_dockerd
    remove_stale_test_files "$rc"
    # The log of the dockerd this script started: printed above when the run failed.
    [ "$rc" -eq 0 ] && [ -n "$dockerd_log" ] && rm -f -- "$dockerd_log"
    log "total wall-clock time: $((SECONDS / 60))m$((SECONDS % 60))s (exit status $rc)"
    exit "$rc"
}
trap on_exit EXIT
# Make Ctrl-C / SIGTERM go through the EXIT trap as well.
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------
# 1. System packages. Installed by hand on a dev machine they are not there on CI.

missing=()
if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
    missing+=(docker.io) # dockerd 20.10 + containerd + runc (+ a docker client)
fi
command -v fusermount3 >/dev/null 2>&1 || missing+=(fuse3)
# The test image needs a static busybox; the dynamic `busybox` package would not run
# inside a FROM-scratch image. dpkg-query (not dpkg -s) so "removed, config left" counts
# as missing.
if [ "$(dpkg-query -W -f='${Status}' busybox-static 2>/dev/null || true)" != "install ok installed" ]; then
    missing+=(busybox-static)
fi
# tests/fuse_s3/objectfs_interop.rs mounts the same bucket with s3fs (1.90 on Debian 12).
command -v s3fs >/dev/null 2>&1 || missing+=(s3fs)
# tests/docker_serial/docker_plugin.rs pushes the managed plugin to, and installs it from, a registry
# on loopback; plugin/build.sh puts the CA bundle into the plugin's rootfs.
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
[ -s /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
# tests/fuse_s3/objectfs_disk_full.rs formats a small ext4 image (mounted on a loop device).
command -v mkfs.ext4 >/dev/null 2>&1 || missing+=(e2fsprogs)
# tests/docker_serial/docker_swarm.rs makes a bridge for the second dockerd with `ip link`.
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
# tests/fuse_s3/plugin_metrics.rs scrapes the daemon with a real Prometheus server and checks
# what it serves with promtool; Debian's prometheus has both. Without its recommended node
# exporter, which the tests do not need.
missing_bare=()
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || missing_bare+=(prometheus)
if [ "${#missing[@]}" -gt 0 ] || [ "${#missing_bare[@]}" -gt 0 ]; then
    log "installing missing packages: ${missing[*]} ${missing_bare[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # With recommends, as in the verified recipe: docker.io recommends apparmor, whose
    # apparmor_parser dockerd needs to start containers on kernels with AppArmor enabled.
    if [ "${#missing[@]}" -gt 0 ]; then apt-get install -y -q "${missing[@]}"; fi
    if [ "${#missing_bare[@]}" -gt 0 ]; then
        apt-get install -y -q --no-install-recommends "${missing_bare[@]}"
    fi
fi

# ---------------------------------------------------------------------------------------
# 2. Docker daemon. A daemon may already run (dev machine); otherwise start our own.

if docker info >/dev/null 2>&1; then
    log "using the docker daemon that is already running"
else
    dockerd_log=$(mktemp /tmp/osv-dockerd.XXXXXX.log)
    # No quoting inside: tests may split it on whitespace to restart dockerd.
    dockerd_cmd="dockerd --host $DOCKER_SOCK --pidfile $DOCKERD_PIDFILE"
    log "starting dockerd (log: $dockerd_log)"
    start=$SECONDS
    # setsid: its own session, so a Ctrl-C aimed at the tests does not kill it before the
    # trap stops it in order. (Without job control setsid execs in place: $! is dockerd.)
    # shellcheck disable=SC2086 # word splitting of the command line is intended
    setsid $dockerd_cmd >>"$dockerd_log" 2>&1 </dev/null &
    dockerd_pid=$!
    export DOCKER_HOST=$DOCKER_SOCK
    until docker info >/dev/null 2>&1; do
        if ! kill -0 "$dockerd_pid" 2>/dev/null; then
            log "dockerd exited during start-up; its log:"
            cat "$dockerd_log" >&2
            exit 1
        fi
        if [ $((SECONDS - start)) -ge "$DOCKERD_START_TIMEOUT" ]; then
            log "dockerd did not answer within ${DOCKERD_START_TIMEOUT}s; its log:"
            cat "$dockerd_log" >&2
            exit 1
        fi
        sleep 0.5
    done
    log "dockerd ready after $((SECONDS - start))s"
    export OSV_DOCKERD_STARTED_BY_TESTS=1
    export OSV_DOCKERD_CMD="$dockerd_cmd"
    export OSV_DOCKERD_LOG="$dockerd_log"
fi
# The client (/usr/local/bin/docker may be much newer than Debian's 20.10 daemon) must
# negotiate an API version the daemon speaks; show both so a mismatch is obvious.
docker version --format \
    'docker client {{.Client.Version}} (API {{.Client.APIVersion}}), daemon {{.Server.Version}} (API {{.Server.APIVersion}})' >&2 ||
    { log "the docker client cannot talk to the daemon"; exit 1; }

# ---------------------------------------------------------------------------------------
# 3. Test image, built from scratch (no registry reachable). Rebuilt when the Dockerfile
# changes: the image carries the Dockerfile's hash as a label.

dockerfile="$repo_root/scripts/test-image/Dockerfile"
want_hash=$(sha256sum "$dockerfile" | cut -d' ' -f1)
have_hash=$(docker image inspect -f '{{index .Config.Labels "osv.dockerfile.sha256"}}' \
    "$TEST_IMAGE" 2>/dev/null || true)
if [ "$have_hash" != "$want_hash" ]; then
    log "building test image $TEST_IMAGE"
    ctx=$(mktemp -d /tmp/osv-test-image.XXXXXX)
    cp "$dockerfile" "$ctx/Dockerfile"
    cp /bin/busybox "$ctx/busybox"
    # Legacy builder: works with dockerd 20.10 and needs no buildx plugin.
    DOCKER_BUILDKIT=0 docker build -q --label "osv.dockerfile.sha256=$want_hash" \
        -t "$TEST_IMAGE" "$ctx" >/dev/null
    rm -rf -- "$ctx"
fi
export OSV_TEST_IMAGE=$TEST_IMAGE

# Smoke test: a container runs and sees a bind mount. Fails early and clearly if runc,
# cgroups or the storage driver do not work here, instead of in the middle of the tests.
probe_dir=$(mktemp -d /tmp/osv-probe.XXXXXX)
echo ok >"$probe_dir/probe"
if ! out=$(docker run --rm -v "$probe_dir:/x:ro" "$TEST_IMAGE" cat /x/probe 2>&1) || [ "$out" != ok ]; then
    rm -rf -- "$probe_dir"
    log "smoke test failed: docker run with a bind mount printed: $out"
    [ -n "$dockerd_log" ] && { log "dockerd log:"; tail -n 50 "$dockerd_log" >&2; }
    exit 1
fi
rm -rf -- "$probe_dir"
log "smoke test ok (container runs, bind mount visible)"

# ---------------------------------------------------------------------------------------
# 3b. S3 test server (begin). tests/fuse_s3/store_s3.rs runs moto_server (PyPI moto[server]), the
# most compatible S3 API available here. It lives in its own venv, created when missing;
# the tests find it through OSV_MOTO_SERVER.
readonly MOTO_VENV=/opt/osv-test-venv

# A python3 that can make a venv with pip: the one on PATH, else Debian's once
# python3-venv is installed (Debian's python3 lacks ensurepip without it).
venv_python() {
    local py
    for py in "$(command -v python3 || true)" /usr/bin/python3; do
        [ -n "$py" ] && [ -x "$py" ] && "$py" -c 'import venv, ensurepip' >/dev/null 2>&1 &&
            { echo "$py"; return 0; }
    done
    return 1
}

if [ ! -x "$MOTO_VENV/bin/moto_server" ]; then
    if ! python=$(venv_python); then
        log "installing python3-venv (needed to create $MOTO_VENV)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        apt-get install -y -q python3 python3-venv
        python=$(venv_python) || { log "no python3 can create a venv, even after installing python3-venv"; exit 1; }
    fi
    log "installing moto[server] into $MOTO_VENV (with $python)"
    rm -rf -- "$MOTO_VENV" # a half-made venv from an interrupted run
    "$python" -m venv "$MOTO_VENV"
    if ! "$MOTO_VENV/bin/pip" install -q --disable-pip-version-check 'moto[server]>=5,<6'; then
        rm -rf -- "$MOTO_VENV"
        log "pip could not install moto[server]"
        exit 1
    fi
fi
"$MOTO_VENV/bin/moto_server" --help >/dev/null 2>&1 ||
    { log "$MOTO_VENV/bin/moto_server does not run; remove $MOTO_VENV to reinstall it"; exit 1; }
# The Docker SDK for Python, for examples/sandbox_sdk.py (tests/docker/sandbox_server.rs), checked
# on its own so that an existing venv gets it too.
if ! "$MOTO_VENV/bin/python" -c 'import docker' >/dev/null 2>&1; then
    log "installing the Docker SDK for Python (docker) into $MOTO_VENV"
    "$MOTO_VENV/bin/pip" install -q --disable-pip-version-check 'docker>=7,<8' ||
        { log "pip could not install docker (the Docker SDK for Python)"; exit 1; }
fi
export OSV_MOTO_SERVER=$MOTO_VENV/bin/moto_server
# 3b. S3 test server (end).

# 3c. Fast S3 test server. The 1 GiB round trip in tests/fuse_s3/objectfs_fuse.rs runs against
# s3s-fs (crates.io: an S3 server in Rust keeping objects as files), since moto needs
# about five minutes for it. Built once into its own directory (about 2.5 minutes on
# 2 cores), reused when present; the tests find it through OSV_FAST_S3_SERVER.
# 0.14.1: later versions need rustc 1.96.
readonly S3S_FS_VERSION=0.14.1
readonly S3S_FS_ROOT=/opt/osv-s3s-fs-$S3S_FS_VERSION
if [ ! -x "$S3S_FS_ROOT/bin/s3s-fs" ]; then
    log "building s3s-fs $S3S_FS_VERSION into $S3S_FS_ROOT"
    start=$SECONDS
    # Unoptimised but for the hashes it computes over every byte it stores (MD5 ETags,
    # SHA-256 of signed payloads): half the build time of a release build, and the
    # 1 GiB test runs about as fast.
    if ! cargo install --quiet --locked --features binary --root "$S3S_FS_ROOT" \
        --config profile.release.opt-level=0 \
        --config profile.release.package.md-5.opt-level=3 \
        --config profile.release.package.sha2.opt-level=3 \
        --config profile.release.package.crc32c.opt-level=3 \
        --config profile.release.package.crc-fast.opt-level=3 \
        "s3s-fs@$S3S_FS_VERSION"; then
        rm -rf -- "$S3S_FS_ROOT"
        log "cargo could not install s3s-fs $S3S_FS_VERSION"
        exit 1
    fi
    log "s3s-fs built in $((SECONDS - start))s"
fi
"$S3S_FS_ROOT/bin/s3s-fs" --help >/dev/null 2>&1 ||
    { log "$S3S_FS_ROOT/bin/s3s-fs does not run; remove $S3S_FS_ROOT to rebuild it"; exit 1; }
export OSV_FAST_S3_SERVER=$S3S_FS_ROOT/bin/s3s-fs
# ---------------------------------------------------------------------------------------

remove_stale_test_sockets

if [ "${OSV_SETUP_ONLY:-}" = 1 ]; then
    log "OSV_SETUP_ONLY=1: set-up done, skipping cargo"
    exit 0
fi

# ---------------------------------------------------------------------------------------
# 4. The checks. Run all of them (a formatting slip should not hide test results) and
# fail at the end if any failed.

export OSV_TEST_REQUIRE_ALL=1
docker_before=$(mktemp /tmp/osv-docker-before.XXXXXX)
scripts/check-leftovers.sh --record "$docker_before"

failed=()
step() {
    log "==> $*"
    if ! "$@"; then
        failed+=("$*")
        log "FAILED: $*"
    fi
}
step cargo fmt --all -- --check
step cargo clippy --workspace --all-targets -- -D warnings
step cargo test --workspace --all-targets --no-fail-fast "$@"
# The legacy install path as an operator runs it (builds the release binary).
step scripts/check-install.sh
# Last, while dockerd still runs: nothing of the tests may be left behind.
step scripts/check-leftovers.sh --since "$docker_before"
rm -f -- "$docker_before"

if [ "${#failed[@]}" -gt 0 ]; then
    log "failed steps:"
    printf '[test.sh]   %s\n' "${failed[@]}" >&2
    exit 1
fi
log "all checks passed"

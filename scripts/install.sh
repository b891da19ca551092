#!/usr/bin/env bash
# scripts/install.sh: build opensandbox-volume and run it as a legacy Docker volume plugin
# (dockerd finds it through its socket in /run/docker/plugins; no `docker plugin` step).
#
#   scripts/install.sh               build, install to /usr/local/bin, (re)start the daemon
#   scripts/install.sh --uninstall   stop the daemon, remove the unit and the binary
#                                    (the state dir, /etc/default file and log are kept)
#
# With systemd as PID 1 the daemon runs as opensandbox-volume.service and reads its
# settings from /etc/default/opensandbox-volume (written once, with examples; the OSV_*
# variables set when this script first runs are written into it). Without systemd
# (containers, CI) it is started in the background with setsid, inherits this script's
# environment, logs to /var/log/opensandbox-volume.log and its pid goes to
# /run/opensandbox-volume.pid.
#
# Settings (environment variables the daemon reads, each also a `serve` flag):
#   OSV_SOCKET              plugin socket (default /run/docker/plugins/opensandbox.sock;
#                           the file name is the driver name: -d opensandbox)
#   OSV_STATE_DIR           volume registry (default /var/lib/opensandbox-volume)
#   OSV_MOUNT_ROOT          where mounts are made (default $OSV_STATE_DIR/mounts)
#   OSV_ALLOWED_HOST_PATHS  comma-separated host path prefixes type=host volumes may use
#                           (default empty: host volumes refused)
#   OSV_LOG_LEVEL           error|warn|info|debug|trace (default info)
#   OSV_LOG_FILE            the daemon's log file, rotated by size (default: stderr, i.e. the
#                           journal under systemd; /var/log/opensandbox-volume.log without it)
#   OSV_LOG_MAX_SIZE        size a log file is rotated at, this one and each volume's
#                           (default 10MiB)
#   OSV_LOG_MAX_FILES       files each log keeps, the current one included (default 3)
#   OSV_LOG_FORMAT          text|json (default text)
#
# OSV_INSTALL_BINARY=PATH installs that already built binary instead of running
# `cargo build --release` (scripts/check-install.sh uses the tests' build).
set -euo pipefail

readonly NAME=opensandbox-volume
readonly BIN=/usr/local/bin/$NAME
readonly UNIT=/etc/systemd/system/$NAME.service
readonly DEFAULTS=/etc/default/$NAME
readonly PIDFILE=/run/$NAME.pid
readonly LOGFILE=/var/log/$NAME.log
readonly DEFAULT_SOCKET=/run/docker/plugins/opensandbox.sock
readonly ENV_VARS=(OSV_SOCKET OSV_STATE_DIR OSV_MOUNT_ROOT OSV_ALLOWED_HOST_PATHS OSV_LOG_LEVEL
    OSV_LOG_FILE OSV_LOG_MAX_SIZE OSV_LOG_MAX_FILES OSV_LOG_FORMAT)
readonly START_TIMEOUT=10

log() { printf '[install.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

have_systemd() { [ -d /run/systemd/system ]; }

# True if some process listens on the unix socket $1 (a leftover socket file of a dead
# daemon is not listed in /proc/net/unix; the path may be spelt via the /var/run symlink).
socket_is_live() {
    awk -v a="$1" -v b="/var$1" '$8 == a || $8 == b { found = 1 } END { exit !found }' \
        /proc/net/unix
}

# The socket the daemon will use: under systemd the EnvironmentFile decides, otherwise
# this script's environment.
effective_socket() {
    local s=""
    if have_systemd && [ -r "$DEFAULTS" ]; then
        s=$(sed -n 's/^[[:space:]]*OSV_SOCKET[[:space:]]*=[[:space:]]*//p' "$DEFAULTS" |
            tail -n 1 | sed 's/[[:space:]]*$//; s/^"\(.*\)"$/\1/')
    elif ! have_systemd; then
        s=${OSV_SOCKET:-}
    fi
    echo "${s:-$DEFAULT_SOCKET}"
}

# True if pid $1 runs our binary (also after the binary was replaced: "... (deleted)").
is_our_daemon() {
    local exe
    exe=$(readlink "/proc/$1/exe" 2>/dev/null) || return 1
    [ "$exe" = "$BIN" ] || [ "$exe" = "$BIN (deleted)" ]
}

# Stop the background daemon a previous non-systemd install started. Only its own pid gets
# the signal (like KillMode=process): FUSE mount processes it started keep serving.
stop_background() {
    local pid
    pid=$(cat "$PIDFILE" 2>/dev/null || true)
    if [ -n "$pid" ] && is_our_daemon "$pid"; then
        log "stopping the running daemon (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 $((START_TIMEOUT * 5))); do
            is_our_daemon "$pid" || break
            sleep 0.2
        done
        if is_our_daemon "$pid"; then
            log "daemon did not exit within ${START_TIMEOUT}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
        fi
    fi
    rm -f "$PIDFILE"
}

# Wait until the daemon has created its socket (it replaces a stale one itself).
# $1: socket, $2: pid to watch (background mode) or empty (systemd).
wait_for_socket() {
    local socket=$1 pid=$2 deadline=$((SECONDS + START_TIMEOUT))
    until [ -S "$socket" ] && socket_is_live "$socket"; do
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            log "the daemon exited during start-up; end of $LOGFILE:"
            tail -n 30 "$LOGFILE" >&2 || true
            exit 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "no listening socket $socket after ${START_TIMEOUT}s"
            if [ -n "$pid" ]; then
                tail -n 30 "$LOGFILE" >&2 || true
            else
                systemctl status --no-pager "$NAME" >&2 || true
            fi
            exit 1
        fi
        sleep 0.2
    done
    log "daemon is serving $socket (driver name: $(basename "$socket" .sock))"
}

write_defaults_file() {
    local v
    {
        echo "# Settings of the opensandbox-volume daemon (systemd EnvironmentFile, KEY=value)."
        echo "# Edit, then: systemctl restart opensandbox-volume"
        echo "#"
        echo "# Plugin socket; its file name is the Docker driver name (-d opensandbox)."
        echo "#OSV_SOCKET=$DEFAULT_SOCKET"
        echo "# Durable volume registry."
        echo "#OSV_STATE_DIR=/var/lib/opensandbox-volume"
        echo "# Where the plugin makes the mounts it hands to Docker (default: STATE_DIR/mounts)."
        echo "#OSV_MOUNT_ROOT=/var/lib/opensandbox-volume/mounts"
        echo "# Comma-separated host path prefixes type=host volumes may use (empty: refused)."
        echo "#OSV_ALLOWED_HOST_PATHS=/srv/sandboxes,/data/shared"
        echo "# error, warn, info, debug or trace."
        echo "#OSV_LOG_LEVEL=info"
        echo "# The daemon's log file, rotated by size (default: stderr, the journal)."
        echo "#OSV_LOG_FILE=/var/log/opensandbox-volume.log"
        echo "# Size a log file is rotated at (this one and each volume's), and files kept."
        echo "#OSV_LOG_MAX_SIZE=10MiB"
        echo "#OSV_LOG_MAX_FILES=3"
        echo "# text, or json: one JSON object per line."
        echo "#OSV_LOG_FORMAT=text"
        for v in "${ENV_VARS[@]}"; do
            if [ -n "${!v+x}" ]; then
                echo ""
                echo "# Set from the environment of scripts/install.sh:"
                break
            fi
        done
        for v in "${ENV_VARS[@]}"; do
            if [ -n "${!v+x}" ]; then echo "$v=${!v}"; fi
        done
    } >"$DEFAULTS"
    chmod 0644 "$DEFAULTS"
    log "wrote $DEFAULTS"
}

uninstall() {
    local socket
    socket=$(effective_socket)
    stop_background
    if have_systemd; then
        # KillMode=process: FUSE mount processes of running containers survive the stop.
        systemctl disable --now "$NAME" 2>/dev/null || true
    fi
    if [ -e "$UNIT" ]; then
        rm -f "$UNIT"
        if have_systemd; then systemctl daemon-reload; fi
        log "removed $UNIT"
    fi
    rm -f "$BIN"
    # A leftover socket would make dockerd keep trying a dead plugin.
    if [ -S "$socket" ] && ! socket_is_live "$socket"; then rm -f "$socket"; fi
    log "uninstalled; kept the state dir, $DEFAULTS (if any) and $LOGFILE"
}

build_and_install_binary() {
    local built
    if [ -n "${OSV_INSTALL_BINARY:-}" ]; then
        built=$OSV_INSTALL_BINARY
        [ -x "$built" ] || die "OSV_INSTALL_BINARY=$built is not an executable file"
        log "installing the binary already built at $built (no cargo build)"
    else
        # rustup puts cargo in ~/.cargo/bin, which non-login shells may not have on PATH.
        if ! command -v cargo >/dev/null 2>&1 && [ -x "${HOME:-/root}/.cargo/bin/cargo" ]; then
            export PATH="${HOME:-/root}/.cargo/bin:$PATH"
        fi
        command -v cargo >/dev/null 2>&1 || die "cargo not found (install Rust with rustup)"
        log "building (cargo build --release)"
        (cd "$repo_root" && cargo build --release)
        built="${CARGO_TARGET_DIR:-$repo_root/target}/release/$NAME"
        [ -x "$built" ] || die "build produced no $built"
    fi
    # Copy, then rename over the old binary: a running daemon keeps its (old) file, and
    # writing into a running executable in place would fail with ETXTBSY.
    install -m 0755 "$built" "$BIN.new"
    mv -f "$BIN.new" "$BIN"
    log "installed $BIN"
}

install_systemd() {
    local v
    # A daemon left by an earlier install without systemd would hold the socket.
    stop_background
    install -m 0644 "$repo_root/scripts/$NAME.service" "$UNIT"
    log "installed $UNIT"
    if [ ! -e "$DEFAULTS" ]; then
        write_defaults_file
    else
        for v in "${ENV_VARS[@]}"; do
            if [ -n "${!v+x}" ]; then
                log "warning: $v is set here but the service reads $DEFAULTS, left unchanged; edit it there"
            fi
        done
    fi
    systemctl daemon-reload
    systemctl enable --now "$NAME"
    # enable --now leaves an already-running (older) daemon alone: restart it onto the new
    # binary. KillMode=process keeps existing FUSE mounts alive.
    systemctl restart "$NAME"
    wait_for_socket "$(effective_socket)" ""
}

install_background() {
    local socket pid
    socket=$(effective_socket)
    stop_background
    if [ -S "$socket" ] && socket_is_live "$socket"; then
        die "another process already serves $socket (a systemd unit, or a daemon started by hand?)"
    fi
    # Remove a stale socket so that waiting for the socket below means the new daemon is up.
    rm -f "$socket"
    mkdir -p "$(dirname "$socket")" "$(dirname "$LOGFILE")"
    # The OSV_* settings reach the daemon through the inherited environment.
    log "starting $BIN serve in the background (log: $LOGFILE)"
    # setsid: own session, so it outlives this script and the terminal; it execs in place,
    # so $! is the daemon's pid. It writes $LOGFILE itself, rotated by size (unless
    # OSV_LOG_FILE names another file); its stderr, for what comes before, follows it.
    OSV_LOG_FILE="${OSV_LOG_FILE:-$LOGFILE}" setsid "$BIN" serve </dev/null >>"$LOGFILE" 2>&1 &
    pid=$!
    echo "$pid" >"$PIDFILE"
    wait_for_socket "$socket" "$pid"
    log "daemon pid $pid (in $PIDFILE)"
}

main() {
    local mode=install
    case "${1:-}" in
        "") ;;
        --uninstall) mode=uninstall ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
    [ "$(id -u)" -eq 0 ] || die "run as root (writes /usr/local/bin, /run and /etc)"

    if [ "$mode" = uninstall ]; then
        uninstall
        return
    fi
    build_and_install_binary
    if have_systemd; then
        install_systemd
    else
        log "systemd is not PID 1: running the daemon without a service manager"
        install_background
    fi
}

main "$@"

# bench/lib.sh — shared by the bench/ scripts (sourced, not run): logging and
# arithmetic helpers, packages, builds, the work directory and its cleanup,
# one Garage server on loopback with a key and buckets, the s3fs and rclone
# credentials, and mounting/unmounting each client.
# The sourcing script sets ROOT first, then its options with parse_args
# (NO_BUILD, KEEP, OUT, BEFORE) before calling the other functions. Every step waits for Garage to be idle where it says so.

GARAGE_VERSION=2.5.0
# A script that reads Garage's request counters (bench/requests.sh) sets
# GARAGE_METRICS=1 before sourcing this file: it gets a Garage built with the
# `metrics` feature, installed apart so that the Garage the other scripts
# measure with stays the build they were measured with, and an admin API
# (ADMIN_URL, METRICS_TOKEN) serving /metrics.
if ((${GARAGE_METRICS:-0})); then
    GARAGE_ROOT=${OSV_GARAGE_METRICS_ROOT:-/opt/osv-garage-metrics}
    GARAGE_FEATURES=bundled-libs,lmdb,metrics
else
    GARAGE_ROOT=${OSV_GARAGE_ROOT:-/opt/osv-garage}
    GARAGE_FEATURES=bundled-libs,lmdb
fi
GARAGE=$GARAGE_ROOT/bin/garage
BIN=$ROOT/target/release/opensandbox-volume
BASE=$ROOT/target/release/examples/s3_baseline
# Seconds any single workload command may take before it counts as hung.
STEP_TIMEOUT=${STEP_TIMEOUT:-600}

# parse_args ARGS...: the options every bench script takes, `--out FILE`
# (or `--out=FILE`, made absolute), `--keep`, `--no-build` and `-h`/`--help`
# (the script's `usage`); any other is offered to the script's `own_arg`
# function, when it has one, which sets TAKEN to the number of arguments it
# used. An argument nobody takes prints the usage and exits with status 2.
parse_args() {
    while (($#)); do
        TAKEN=1
        case $1 in
        --out) OUT=${2:?--out needs a file}; TAKEN=2 ;;
        --out=*) OUT=${1#--out=} ;;
        --keep) KEEP=1 ;;
        --no-build) NO_BUILD=1 ;;
        -h | --help) usage; exit 0 ;;
        *)
            TAKEN=0
            if declare -F own_arg >/dev/null; then own_arg "$@"; fi
            ((TAKEN)) || { echo "unknown argument: $1" >&2; usage >&2; exit 2; }
            ;;
        esac
        shift "$TAKEN"
    done
    if [[ -n $OUT ]]; then OUT=$(realpath -m -- "$OUT"); fi
}

# log MSG: a timestamped line on stderr.
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
# die MSG: logs MSG as fatal and exits (the EXIT trap cleans up).
die() { log "FATAL: $*"; exit 1; }
# now: the wall clock in seconds with nanoseconds.
now() { date +%s.%N; }
# since T0: seconds elapsed since T0 (from now), three decimals.
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
# hex N: 2N random hexadecimal digits.
hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }
# calc EXPR [FORMAT]: floating-point arithmetic with awk.
calc() { awk "BEGIN { printf \"${2:-%.1f}\", $1 }"; }
# median of the numbers given as arguments.
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# isnum S: true when S is a non-negative decimal number.
isnum() { [[ ${1:-} =~ ^[0-9]+([.][0-9]+)?$ ]]; }
# field NAME LINE: value of NAME=… in a `RESULT …` line of s3_baseline.
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2" | head -1; }

# need_root_fuse: dies unless run as root with /dev/fuse present.
need_root_fuse() {
    [[ $(id -u) == 0 ]] || die "run as root (FUSE mounts and drop_caches)"
    [[ -e /dev/fuse ]] || die "/dev/fuse is missing"
}

# install_missing CMD:PACKAGE...: apt-get installs PACKAGE for each CMD not on PATH.
install_missing() {
    local pair missing=()
    for pair in "$@"; do command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}"); done
    if ((${#missing[@]})); then
        log "installing ${missing[*]} with apt-get"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# build_all: builds Garage if missing and (unless NO_BUILD) the release binaries.
build_all() {
    if [[ ! -x $GARAGE ]]; then
        log "building Garage $GARAGE_VERSION ($GARAGE_FEATURES) into $GARAGE_ROOT (about 12 minutes on 2 cores)"
        cargo install garage --version "$GARAGE_VERSION" --no-default-features --features "$GARAGE_FEATURES" --root "$GARAGE_ROOT"
    fi
    if ((!NO_BUILD)); then
        log "cargo build --release (binary and examples/s3_baseline)"
        (cd "$ROOT" && cargo build --release --quiet && cargo build --release --quiet --example s3_baseline)
    fi
    [[ -x $BIN ]] || die "$BIN is missing"
    [[ -x $BASE ]] || die "$BASE is missing"
}

# make_workdir: creates WORK (with logs/, mnt/, cache/) and installs the cleanup traps.
make_workdir() {
    WORK=$(mktemp -d /tmp/osv-bench.XXXXXX)
    LOGS=$WORK/logs
    mkdir -p "$LOGS" "$WORK/mnt" "$WORK/cache"
    GARAGE_PID=""
    PIDS=() # mount processes started by this script
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}
# Paths under WORK removed by cleanup besides garage/ and cache/ (set by the script).
CLEANUP_EXTRA=()
# Commands cleanup runs before it stops Garage (set by the script).
CLEANUP_HOOKS=()

# cleanup: unmounts, stops mounts and Garage, removes bulky work files (EXIT trap).
cleanup() {
    local rc=$? m p i
    set +e
    trap - EXIT INT TERM
    for m in "$WORK"/mnt/*; do
        [[ -d $m ]] || continue
        if mountpoint -q "$m"; then fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; fi
    done
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for ((i = 0; i < 100; i++)); do
        local alive=0
        for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
    for m in "$WORK"/mnt/*; do [[ -d $m ]] && mountpoint -q "$m" && umount -l "$m" 2>/dev/null; done
    for p in "${CLEANUP_HOOKS[@]}"; do $p; done
    if [[ -n $GARAGE_PID ]]; then
        kill -TERM "$GARAGE_PID" 2>/dev/null
        for ((i = 0; i < 100; i++)); do kill -0 "$GARAGE_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$GARAGE_PID" 2>/dev/null
    fi
    wait 2>/dev/null
    if ((KEEP)); then
        log "work directory kept: $WORK"
    else
        # rmdir only: never recurse into something that may still be mounted.
        rmdir "$WORK"/mnt/* "$WORK/mnt" 2>/dev/null
        rm -rf "${WORK:?}/garage" "${WORK:?}/cache"
        for p in "${CLEANUP_EXTRA[@]}"; do rm -rf "${WORK:?}/${p:?}"; done
        log "logs kept in $LOGS"
    fi
    exit "$rc"
}

# free_port N: a free TCP port on 127.0.0.1 at or above N (bounded search).
free_port() {
    local p
    for ((p = $1; p < $1 + 200; p++)); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
    done
    return 1
}

# g ARGS: the garage CLI against this run's configuration.
g() { "$GARAGE" -c "$WORK/garage.toml" "$@"; }

# start_garage BUCKET...: starts Garage on loopback, imports a key, creates BUCKETs, writes client credentials.
start_garage() {
    local b ok i
    S3_PORT=$(free_port 3900) || die "no free port"
    RPC_PORT=$(free_port $((S3_PORT + 1))) || die "no free port"
    ENDPOINT=http://127.0.0.1:$S3_PORT
    mkdir -p "$WORK/garage/meta" "$WORK/garage/data"
    cat >"$WORK/garage.toml" <<EOF
metadata_dir = "$WORK/garage/meta"
data_dir = "$WORK/garage/data"
db_engine = "lmdb"
replication_factor = 1
# Random data does not compress; zstd would only spend the 2 cores.
compression_level = "none"
rpc_bind_addr = "127.0.0.1:$RPC_PORT"
rpc_public_addr = "127.0.0.1:$RPC_PORT"
rpc_secret = "$(hex 32)"

[s3_api]
s3_region = "us-east-1"
api_bind_addr = "127.0.0.1:$S3_PORT"
root_domain = ".s3.garage.localhost"
EOF
    if ((${GARAGE_METRICS:-0})); then
        ADMIN_PORT=$(free_port $((RPC_PORT + 1))) || die "no free port"
        ADMIN_URL=http://127.0.0.1:$ADMIN_PORT
        METRICS_TOKEN=$(hex 16)
        printf '\n[admin]\napi_bind_addr = "127.0.0.1:%s"\nmetrics_token = "%s"\n' "$ADMIN_PORT" "$METRICS_TOKEN" >>"$WORK/garage.toml"
    fi
    log "starting Garage on $ENDPOINT (work dir $WORK)"
    RUST_LOG=${GARAGE_LOG:-warn} "$GARAGE" -c "$WORK/garage.toml" server >"$LOGS/garage.log" 2>&1 &
    GARAGE_PID=$!
    for ((i = 0; i < 150; i++)); do
        g status >/dev/null 2>&1 && break
        kill -0 "$GARAGE_PID" 2>/dev/null || { tail -20 "$LOGS/garage.log" >&2; die "Garage exited"; }
        sleep 0.2
    done
    g status >/dev/null 2>&1 || die "Garage did not come up (see $LOGS/garage.log)"
    NODE=$(g node id -q 2>/dev/null | cut -d@ -f1)
    [[ -n $NODE ]] || die "no Garage node id"
    g layout assign -z dc1 -c 10G "$NODE" >>"$LOGS/garage-cli.log" 2>&1
    g layout apply --version 1 >>"$LOGS/garage-cli.log" 2>&1
    KEY_ID=GK$(hex 12)
    KEY_SECRET=$(hex 32)
    g key import --yes -n bench "$KEY_ID" "$KEY_SECRET" >>"$LOGS/garage-cli.log" 2>&1
    for b in "$@"; do
        ok=0
        for ((i = 0; i < 50; i++)); do
            if g bucket create "$b" >>"$LOGS/garage-cli.log" 2>&1; then ok=1; break; fi
            sleep 0.2
        done
        ((ok)) || die "could not create bucket $b (see $LOGS/garage-cli.log)"
        g bucket allow --read --write --owner "$b" --key bench >>"$LOGS/garage-cli.log" 2>&1
    done

    unset AWS_CA_BUNDLE AWS_PROFILE AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY || true
    export OSV_ACCESS_KEY_ID=$KEY_ID OSV_ACCESS_KEY_SECRET=$KEY_SECRET
    # rclone: a named remote "bench" from environment variables only.
    export RCLONE_CONFIG_BENCH_TYPE=s3 RCLONE_CONFIG_BENCH_PROVIDER=Other \
        RCLONE_CONFIG_BENCH_ENDPOINT=$ENDPOINT RCLONE_CONFIG_BENCH_REGION=us-east-1 \
        RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=$KEY_ID RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=$KEY_SECRET \
        RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE=true
    : >"$WORK/rclone.conf"
    printf '%s:%s\n' "$KEY_ID" "$KEY_SECRET" >"$WORK/s3fs.passwd"
    chmod 600 "$WORK/s3fs.passwd"
}

# base ARGS: examples/s3_baseline against this run's Garage.
base() { "$BASE" --endpoint "$ENDPOINT" "$@"; }

DROP_OK=1
# drop_caches: syncs and drops the page cache (DROP_OK=0 when it could not).
drop_caches() {
    sync
    if ! echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then
        DROP_OK=0
        log "WARNING: could not drop the page cache; read figures may be warm"
    fi
}

# garage_ticks: Garage's CPU time in clock ticks (utime + stime).
garage_ticks() { awk '{ print $14 + $15 }' "/proc/$GARAGE_PID/stat" 2>/dev/null || echo 0; }
# settle: waits (at most 20 s) until Garage has been idle (≤ 1 tick in
# 0.5 s) so that work left over from the previous step (block GC after an
# upload, a multipart completion) is not charged to the next measurement.
settle() {
    local i a b
    for ((i = 0; i < 40; i++)); do
        a=$(garage_ticks); sleep 0.5; b=$(garage_ticks)
        ((b - a <= 1)) && return 0
    done
    log "Garage still busy after 20 s; measuring anyway"
}

PROBLEMS=() # misbehaviour worth reading, printed at the end
# problem MSG: records MSG for the "Problems seen" list and logs it.
problem() { PROBLEMS+=("$*"); log "PROBLEM: $*"; }

MNT_PID="" MNT_DIR="" MNT_KIND="" MNT_LOG=""
# mount_client KIND BUCKET TAG: mounts a fresh mountpoint and waits for it.
mount_client() {
    local kind=$1 bucket=$2 tag=$3 i
    MNT_DIR=$WORK/mnt/$tag MNT_LOG=$LOGS/$tag.log MNT_KIND=$kind
    mkdir -p "$MNT_DIR"
    case $kind in
    osv-* | old-*) # old-*: the --before binary
        local bin=$BIN flag
        [[ $kind == old-* ]] && bin=$BEFORE
        case ${kind#*-} in
        listing) flag=(--attrs-from-listing) ;;
        *) flag=(--upload "${kind#*-}") ;;
        esac
        "$bin" mount "$MNT_DIR" --bucket "$bucket" --endpoint "$ENDPOINT" \
            "${flag[@]}" --cache-dir "$WORK/cache/$tag" >"$MNT_LOG" 2>&1 &
        ;;
    s3fs)
        s3fs "$bucket" "$MNT_DIR" -f -o url="$ENDPOINT" -o use_path_request_style \
            -o endpoint=us-east-1 -o passwd_file="$WORK/s3fs.passwd" -o dbglevel=warn \
            >"$MNT_LOG" 2>&1 &
        ;;
    rclone)
        rclone mount "bench:$bucket" "$MNT_DIR" --config "$WORK/rclone.conf" \
            --vfs-cache-mode writes --cache-dir "$WORK/cache/$tag" --log-level NOTICE \
            >"$MNT_LOG" 2>&1 &
        ;;
    *) die "unknown client $kind" ;;
    esac
    MNT_PID=$!
    PIDS+=("$MNT_PID")
    for ((i = 0; i < 300; i++)); do
        if mountpoint -q "$MNT_DIR" && stat "$MNT_DIR/." >/dev/null 2>&1; then return 0; fi
        kill -0 "$MNT_PID" 2>/dev/null || break
        sleep 0.1
    done
    problem "$kind: mount of $bucket on $MNT_DIR failed; log: $(tail -5 "$MNT_LOG" | tr '\n' ' ')"
    return 1
}

# vmhwm PID: peak resident set (VmHWM) of PID in KiB, 0 when gone.
vmhwm() { local v; v=$(awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null) || true; echo "${v:-0}"; }

# unmount_client: stops the current mount the client's own way and waits
# (≤ 600 s) for its process to exit; sets UNMOUNT_S, PEAK_KB (VmHWM, sampled
# until exit) and MNT_RC.
unmount_client() {
    local t0 i v
    t0=$(now)
    PEAK_KB=$(vmhwm "$MNT_PID")
    case $MNT_KIND in
    osv-* | old-*) kill -TERM "$MNT_PID" 2>/dev/null || true ;; # documented stop: SIGTERM
    *) umount "$MNT_DIR" 2>/dev/null || fusermount3 -u "$MNT_DIR" 2>/dev/null || true ;;
    esac
    for ((i = 0; i < 6000; i++)); do
        kill -0 "$MNT_PID" 2>/dev/null || break
        v=$(vmhwm "$MNT_PID")
        ((v > PEAK_KB)) && PEAK_KB=$v
        sleep 0.1
    done
    if kill -0 "$MNT_PID" 2>/dev/null; then
        problem "$MNT_KIND: process $MNT_PID still running 600 s after unmount; killed"
        kill -KILL "$MNT_PID" 2>/dev/null || true
    fi
    MNT_RC=0
    wait "$MNT_PID" 2>/dev/null || MNT_RC=$?
    if mountpoint -q "$MNT_DIR"; then
        problem "$MNT_KIND: $MNT_DIR still mounted after its process exited; lazy unmount"
        umount -l "$MNT_DIR" 2>/dev/null || true
    fi
    UNMOUNT_S=$(since "$t0")
    local keep=() p
    for p in "${PIDS[@]}"; do [[ $p == "$MNT_PID" ]] || keep+=("$p"); done
    PIDS=("${keep[@]+"${keep[@]}"}")
    if ((MNT_RC != 0)); then
        problem "$MNT_KIND: mount process exited with status $MNT_RC; log tail: $(tail -5 "$MNT_LOG" | tr '\n' ' ')"
    fi
    if [[ $MNT_KIND == osv-* || $MNT_KIND == old-* ]] && grep -qE ' (ERROR|WARN) ' "$MNT_LOG"; then
        problem "$MNT_KIND: $(grep -cE ' (ERROR|WARN) ' "$MNT_LOG") ERROR/WARN line(s) in ${MNT_LOG#"$WORK"/}, first: $(grep -m1 -E ' (ERROR|WARN) ' "$MNT_LOG")"
    fi
}

# emit_report: the script's header() and table() and the problems seen, to
# stdout and $WORK/table.md, and to $OUT when set.
emit_report() {
    {
        echo
        header | sed 's/$/  /'
        echo
        table
        if ((${#PROBLEMS[@]})); then
            echo
            echo "Problems seen:"
            for p in "${PROBLEMS[@]}"; do echo "- $p"; done
        fi
    } >"$WORK/table.md"
    cat "$WORK/table.md"
    if [[ -n $OUT ]]; then
        mkdir -p "$(dirname "$OUT")"
        cp "$WORK/table.md" "$OUT"
        log "table written to $OUT"
    fi
}

#!/usr/bin/env bash
# bench/latency.sh — a tree read on a new mount when the store is not on
# loopback: 300 files of 1-8 KiB in 6 directories (bench/workloads.sh's
# input), written to one Garage bucket through objectfs, then read whole on
# a new mount with an empty cache (`diff -rq` with the input, as the
# coldread row of bench/agent.sh) by objectfs, s3fs and rclone, each talking
# to Garage through bench/delay_proxy.py, which adds DELAY ms each way to
# every chunk (a round trip of twice that, as to a store in another zone).
# Local disk (page cache dropped) is the reference. Each client runs ROUNDS
# times, alternating, each on a new mount; the table gives the median.
#
#   bench/latency.sh [--delay MS] [--rounds N] [--out FILE] [--keep] [--no-build]
#
#   --delay MS  one-way delay the proxy adds (default 10: 20 ms round trips)
#   --rounds N  rounds per client (default 3)
#   --out FILE  also write the table (Markdown) to FILE
#   --keep      keep the work directory
#   --no-build  use the binaries already in target/release
#
# Needs root (FUSE, drop_caches), /dev/fuse and python3; Garage as for
# bench/objectfs.sh (bench/lib.sh). Only loopback addresses are used.
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

OUT="" KEEP=0 NO_BUILD=0 BEFORE="" DELAY_MS=10 ROUNDS=3
# The options of this script only (bench/lib.sh parse_args has the common ones).
own_arg() {
    case $1 in
    --delay) DELAY_MS=${2:?--delay needs milliseconds}; TAKEN=2 ;;
    --rounds) ROUNDS=${2:?--rounds needs a number}; TAKEN=2 ;;
    esac
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
parse_args "$@"
[[ $DELAY_MS =~ ^[0-9]+$ && $ROUNDS =~ ^[1-9][0-9]*$ ]] || { usage >&2; exit 2; }

# shellcheck source=bench/workloads.sh
source "$ROOT/bench/workloads.sh"
BIG_MIB=1 # make_inputs' large file is not read here

need_root_fuse
install_missing s3fs:s3fs rclone:rclone fusermount3:fuse3 python3:python3
build_all
make_workdir
CLEANUP_EXTRA=(in local)
CLIENTS=(osv-async s3fs rclone)
declare -A CNAME=([local]="local disk (ext4)" [osv-async]="objectfs --upload async" [s3fs]="s3fs" [rclone]="rclone --vfs-cache-mode writes")
start_garage tree
make_inputs
DIRECT=$ENDPOINT

log "writing the $SMALL_N files to the bucket through objectfs (no delay)"
mount_client osv-async tree writer
cp -r "$IN/files" "$MNT_DIR/tree"
unmount_client
mkdir -p "$WORK/local"
cp -r "$IN/files" "$WORK/local/tree"

PROXY_PORT=$(free_port $((S3_PORT + 10))) || die "no free port"
python3 "$ROOT/bench/delay_proxy.py" "$PROXY_PORT" 127.0.0.1 "$S3_PORT" "$(calc "$DELAY_MS / 1000" %.4f)" \
    >"$LOGS/delay_proxy.log" 2>&1 &
PROXY_PID=$!
PIDS+=("$PROXY_PID")
ENDPOINT=http://127.0.0.1:$PROXY_PORT RCLONE_CONFIG_BENCH_ENDPOINT=http://127.0.0.1:$PROXY_PORT
for ((i = 0; i < 50; i++)); do (exec 3<>"/dev/tcp/127.0.0.1/$PROXY_PORT") 2>/dev/null && break; sleep 0.1; done

declare -A RUNS=() # [client] seconds of each round
# read_tree C DIR: times `diff -rq` of the input with DIR/tree; appends to RUNS[C].
read_tree() {
    local t0 secs
    t0=$(now)
    diff -rq "$IN/files" "$2/tree" >"$LOGS/diff-$1.out" 2>&1 || die "$1: the tree read differs (see $LOGS/diff-$1.out)"
    secs=$(since "$t0")
    RUNS[$1]+="$secs "
    log "$1: $secs s"
}
for ((r = 1; r <= ROUNDS; r++)); do
    drop_caches
    read_tree local "$WORK/local"
    for c in "${CLIENTS[@]}"; do
        mount_client "$c" tree "$c-$r" || die "$c: no mount"
        read_tree "$c" "$MNT_DIR"
        unmount_client
    done
done

median_of() { read -r -a v <<<"${RUNS[$1]}"; median "${v[@]}"; }
header() {
    echo "tree read on a new mount through a delay of $DELAY_MS ms each way — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, kernel $(uname -r)"
    echo "commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$( [[ -n $(git -C "$ROOT" status --porcelain 2>/dev/null) ]] && echo ' (working tree has uncommitted changes)'), Garage $("$GARAGE" --version 2>/dev/null | awk '{ sub(/^cargo:/, "", $2); print $2 }') on $DIRECT behind bench/delay_proxy.py; $SMALL_N files of 1-8 KiB in 6 directories; median of $ROUNDS rounds, each on a new mount with an empty cache"
}
table() {
    local c m l
    l=$(median_of local)
    echo "| Client | seconds (median) | rounds | × local disk | × objectfs |"
    echo "|---|---|---|---|---|"
    for c in local "${CLIENTS[@]}"; do
        m=$(median_of "$c")
        echo "| ${CNAME[$c]} | $m | ${RUNS[$c]% } | $(calc "$m / $l" %.1f)× | $(calc "$m / $(median_of osv-async)" %.2f)× |"
    done
}
emit_report

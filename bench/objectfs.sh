#!/usr/bin/env bash
# bench/objectfs.sh — objectfs (`opensandbox-volume mount`) against the raw S3
# API (examples/s3_baseline.rs), s3fs and rclone, all on ONE Garage server on
# loopback, in one run. Prints a Markdown table (workload × client) with the
# absolute figures, ratios to raw and to s3fs, and the targets marked
# PASS/FAIL. Figures are ratios measured in the same run: they are meant to be
# compared with each other, not with figures from another machine.
#
#   bench/objectfs.sh [--quick] [--out FILE] [--keep] [--no-build] [--before BIN]
#
#   --quick     256 MiB instead of 1 GiB, 200 small files, 500 listed objects
#   --out FILE  also write the table (Markdown) to FILE
#   --keep      keep the work directory (Garage data, caches, logs)
#   (OSV_BENCH_RUNS=N: reads, small files and listings are run N times, median
#   compared; default 3. Reads are interleaved: raw, then each mount, per round.
#   Every timed step waits first until Garage is idle.)
#   --no-build  do not run cargo build (use the binaries already in target/release)
#   --before BIN  also run every objectfs workload with BIN, an opensandbox-volume
#               binary of another commit (clients old-async, old-sync, old-listing,
#               interleaved with today's), to compare two commits in one run
#
# Needs root (FUSE mounts, drop_caches), /dev/fuse, and Garage in
# /opt/osv-garage/bin/garage (built here with cargo install if missing, ~12 min;
# override the directory with OSV_GARAGE_ROOT; OSV_BENCH_CLIENTS="s3fs rclone"
# runs a subset of the mounted clients). Installs s3fs, rclone and fuse3
# with apt-get when missing. Only loopback addresses are used.
# GARAGE_LOG=garage_api_common=debug (a RUST_LOG filter) with --keep logs every
# request with its Range header in logs/garage.log, to count what a client asks.
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

QUICK=0 OUT="" KEEP=0 NO_BUILD=0 BEFORE=""
while (($#)); do
    case $1 in
    --quick) QUICK=1 ;;
    --out) OUT=${2:?--out needs a file}; shift ;;
    --out=*) OUT=${1#--out=} ;;
    --keep) KEEP=1 ;;
    --no-build) NO_BUILD=1 ;;
    --before) BEFORE=${2:?--before needs a binary}; shift ;;
    --before=*) BEFORE=${1#--before=} ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
[[ -n $OUT ]] && OUT=$(realpath -m -- "$OUT")
if [[ -n $BEFORE ]]; then
    BEFORE=$(realpath -- "$BEFORE")
    [[ -x $BEFORE ]] || { echo "--before $BEFORE: not an executable" >&2; exit 2; }
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GARAGE_ROOT=${OSV_GARAGE_ROOT:-/opt/osv-garage}
GARAGE=$GARAGE_ROOT/bin/garage
BIN=$ROOT/target/release/opensandbox-volume
BASE=$ROOT/target/release/examples/s3_baseline

if ((QUICK)); then SIZE_MIB=256 SMALL_N=200 LIST_N=500; else SIZE_MIB=1024 SMALL_N=1000 LIST_N=2000; fi
SIZE=$((SIZE_MIB * 1024 * 1024))
# Seconds any single workload command may take before it counts as hung.
STEP_TIMEOUT=600

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }
# calc EXPR [FORMAT]: floating-point arithmetic with awk.
calc() { awk "BEGIN { printf \"${2:-%.1f}\", $1 }"; }
# median of the numbers given as arguments.
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# Reads and listings are short and noisy on 2 cores: each is run RUNS times
# and the median is compared.
RUNS=${OSV_BENCH_RUNS:-3}
isnum() { [[ ${1:-} =~ ^[0-9]+([.][0-9]+)?$ ]]; }
# field NAME LINE: value of NAME=… in a `RESULT …` line of s3_baseline.
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2" | head -1; }

[[ $(id -u) == 0 ]] || die "run as root (FUSE mounts and drop_caches)"
[[ -e /dev/fuse ]] || die "/dev/fuse is missing"

# ---------------------------------------------------------------- packages
missing=()
command -v s3fs >/dev/null || missing+=(s3fs)
command -v rclone >/dev/null || missing+=(rclone)
command -v fusermount3 >/dev/null || missing+=(fuse3)
if ((${#missing[@]})); then
    log "installing ${missing[*]} with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# ---------------------------------------------------------------- builds
if [[ ! -x $GARAGE ]]; then
    log "building Garage into $GARAGE_ROOT (about 12 minutes on 2 cores)"
    cargo install garage --no-default-features --features bundled-libs,lmdb --root "$GARAGE_ROOT"
fi
if ((!NO_BUILD)); then
    log "cargo build --release (binary and examples/s3_baseline)"
    (cd "$ROOT" && cargo build --release --quiet && cargo build --release --quiet --example s3_baseline)
fi
[[ -x $BIN ]] || die "$BIN is missing"
[[ -x $BASE ]] || die "$BASE is missing"

# ---------------------------------------------------------------- work dir, cleanup
WORK=$(mktemp -d /tmp/osv-bench.XXXXXX)
LOGS=$WORK/logs
mkdir -p "$LOGS" "$WORK/mnt" "$WORK/cache"
GARAGE_PID=""
declare -a PIDS=() # mount processes started by this script

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
        rm -rf "${WORK:?}/garage" "${WORK:?}/cache" "${WORK:?}/src.bin"
        log "logs kept in $LOGS"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A free TCP port on 127.0.0.1 at or above $1 (bounded search).
free_port() {
    local p
    for ((p = $1; p < $1 + 200; p++)); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
    done
    return 1
}

# ---------------------------------------------------------------- Garage
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
g() { "$GARAGE" -c "$WORK/garage.toml" "$@"; }

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
BUCKETS=(src raw osv-async osv-sync s3fs rclone)
[[ -n $BEFORE ]] && BUCKETS+=(old-async old-sync)
for b in "${BUCKETS[@]}"; do
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

base() { "$BASE" --endpoint "$ENDPOINT" "$@"; }

DROP_OK=1
drop_caches() {
    sync
    if ! echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then
        DROP_OK=0
        log "WARNING: could not drop the page cache; read figures may be warm"
    fi
}

# Garage's CPU time in clock ticks (utime + stime).
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

# ---------------------------------------------------------------- results
declare -A VAL=()   # [workload,client] number (MiB/s, files/s, entries/s, MiB)
declare -A SHOW=()  # [workload,client] text shown in the Result column
declare -A NOTE=()  # [workload,client] after-unmount / notes column
declare -A GOOD=()  # [workload,client] 1 when the data is all in the bucket
PROBLEMS=()         # misbehaviour worth reading, printed at the end

problem() { PROBLEMS+=("$*"); log "PROBLEM: $*"; }

# ---------------------------------------------------------------- mounts
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

# ---------------------------------------------------------------- workloads
SRC=$WORK/src.bin

# Sequential write of $SRC through a fresh mount on the client's bucket.
w_write() {
    local kind=$1 bucket=$2 t0 secs rc=0 size
    cat "$SRC" >/dev/null # source in the page cache, as for the raw client
    mount_client "$kind" "$bucket" "write-$kind" || { SHOW[write,$kind]="mount failed"; return 0; }
    settle
    t0=$(now)
    timeout -k 10 "$STEP_TIMEOUT" dd if="$SRC" of="$MNT_DIR/big" bs=8M status=none 2>>"$LOGS/write-$kind.dd" || rc=$?
    secs=$(since "$t0")
    unmount_client
    size=$(field size "$(base --bucket "$bucket" head --key big 2>>"$LOGS/baseline.err")")
    if ((rc != 0)); then
        problem "$kind: 'dd if=src of=MNT/big bs=8M' failed (status $rc): $(tr '\n' ' ' <"$LOGS/write-$kind.dd")"
        SHOW[write,$kind]="ERROR (dd status $rc)"
    else
        VAL[write,$kind]=$(calc "$SIZE_MIB / $secs")
        SHOW[write,$kind]="${VAL[write,$kind]} MiB/s (${secs} s)"
    fi
    if [[ $size == "$SIZE" ]]; then
        GOOD[write,$kind]=1
        NOTE[write,$kind]="complete; unmount ${UNMOUNT_S} s; write+unmount $(calc "$SIZE_MIB / ($secs + $UNMOUNT_S)") MiB/s"
    else
        NOTE[write,$kind]="INCOMPLETE (object size ${size:-?}, want $SIZE); unmount ${UNMOUNT_S} s"
        problem "$kind: after unmount, object 'big' in bucket $bucket has size ${size:-?} (want $SIZE)"
    fi
    VAL[rss-write,$kind]=$(calc "$PEAK_KB / 1024" %.0f)
}

# Sequential reads of src/big, interleaved: every client's read mount is
# opened first, then each round reads once through the raw client and once
# through every mount (page cache dropped and Garage idle before each), so a
# change in the machine's speed during the run hits every client alike.
# Medians of RUNS rounds are compared.
declare -A RMNT=() RPID=() RLOG=() RRATES=() RFAIL=()
read_once() { # read_once CLIENT: one timed read; appends to RRATES[CLIENT]
    local c=$1 t0 secs rc=0 got r
    drop_caches
    settle
    if [[ $c == raw ]]; then
        r=$(base --bucket src seq-read --key big --part-size 8M --jobs 8) || rc=$?
        got=$(field bytes "$r")
        [[ $rc == 0 && $got == "$SIZE" ]] || { RFAIL[$c]="seq-read status $rc, ${got:-?} of $SIZE bytes"; return 0; }
        RRATES[$c]+=" $(field mib_per_s "$r")"
        return 0
    fi
    t0=$(now)
    timeout -k 10 "$STEP_TIMEOUT" dd if="${RMNT[$c]}/big" of=/dev/null bs=8M 2>"$LOGS/read-$c.dd" || rc=$?
    secs=$(since "$t0")
    got=$(awk '/bytes/ { print $1; exit }' "$LOGS/read-$c.dd")
    if ((rc != 0)) || [[ $got != "$SIZE" ]]; then
        RFAIL[$c]="'dd if=MNT/big of=/dev/null bs=8M' status $rc, ${got:-?} of $SIZE bytes: $(tr '\n' ' ' <"$LOGS/read-$c.dd")"
        return 0
    fi
    RRATES[$c]+=" $(calc "$SIZE_MIB / $secs")"
}
w_reads() { # w_reads CLIENT...: the interleaved read phase for raw and CLIENTS
    local c r
    local -a cs=()
    for c in "$@"; do
        if mount_client "$c" src "read-$c"; then
            RMNT[$c]=$MNT_DIR RPID[$c]=$MNT_PID RLOG[$c]=$MNT_LOG cs+=("$c")
        else
            SHOW[read,$c]="mount failed"
        fi
    done
    for ((r = 0; r < RUNS; r++)); do
        for c in raw "${cs[@]}"; do
            [[ -z ${RFAIL[$c]:-} ]] && read_once "$c"
        done
        log "read round $((r + 1)): $(for c in raw "${cs[@]}"; do printf '%s=%s ' "$c" "${RRATES[$c]##* }"; done)"
    done
    for c in raw "${cs[@]}"; do
        if [[ -n ${RFAIL[$c]:-} ]]; then
            problem "$c: ${RFAIL[$c]}"
            SHOW[read,$c]="ERROR (${RFAIL[$c]%%:*})"
        else
            read -r -a rates <<<"${RRATES[$c]}"
            VAL[read,$c]=$(median "${rates[@]}")
            SHOW[read,$c]="${VAL[read,$c]} MiB/s (median of ${rates[*]})"
            NOTE[read,$c]="$SIZE bytes"
        fi
        [[ $c == raw ]] && continue
        VAL[rss-read,$c]=$(calc "$(vmhwm "${RPID[$c]}") / 1024" %.0f)
        MNT_DIR=${RMNT[$c]} MNT_PID=${RPID[$c]} MNT_LOG=${RLOG[$c]} MNT_KIND=$c
        unmount_client
    done
}

# $SMALL_N files of 4 KiB created and closed by one shell loop in a new
# directory run$R/, then unmount and count the objects; RUNS times, each on
# a fresh mount, median compared. Every run must leave all its files.
w_small() {
    local kind=$1 bucket=$2 t0 secs rc=0 fails objects r complete=1 counts=""
    local -a rates=()
    for ((r = 0; r < RUNS; r++)); do
        mount_client "$kind" "$bucket" "small-$kind-$r" || { SHOW[small,$kind]="mount failed"; return 0; }
        mkdir "$MNT_DIR/run$r" 2>/dev/null || { problem "$kind: mkdir run$r failed"; }
        settle
        t0=$(now)
        fails=$(timeout -k 10 "$STEP_TIMEOUT" bash -c '
            dir=$1 n=$2 data=$3 fails=0
            for ((i = 0; i < n; i++)); do
                printf -v f "%s/f%05d" "$dir" "$i"
                { printf "%s" "$data" >"$f"; } 2>/dev/null || fails=$((fails + 1))
            done
            echo "$fails"' _ "$MNT_DIR/run$r" "$SMALL_N" "$SMALL_DATA") || rc=$?
        secs=$(since "$t0")
        unmount_client
        objects=$(field objects "$(base --bucket "$bucket" count --prefix "run$r/f" 2>>"$LOGS/baseline.err")")
        counts+="${counts:+, }${objects:-?}"
        [[ $objects == "$SMALL_N" ]] || complete=0
        if ((rc != 0)) || [[ ${fails:-x} != 0 ]]; then
            problem "$kind: small-file loop status $rc, ${fails:-?} failed writes"
            SHOW[small,$kind]="ERROR (status $rc, ${fails:-?} failed)"
            return 0
        fi
        rates+=("$(calc "$SMALL_N / $secs")")
    done
    VAL[small,$kind]=$(median "${rates[@]}")
    SHOW[small,$kind]="${VAL[small,$kind]} files/s (median of ${rates[*]})"
    if ((complete)); then
        GOOD[small,$kind]=1
        NOTE[small,$kind]="$SMALL_N/$SMALL_N in bucket after each of $RUNS unmounts (last unmount ${UNMOUNT_S} s)"
    else
        NOTE[small,$kind]="**in bucket after unmount: $counts of $SMALL_N**"
        if [[ $kind == osv-* || $kind == old-* ]]; then
            problem "$kind: in bucket $bucket right after unmount: $counts of $SMALL_N small files"
        fi
    fi
}

# Cold `ls -l` of src/list/ ($LIST_N objects) on a fresh mount.
w_list() {
    local kind=$1 t0 secs rc=0 n r
    local -a times=()
    for ((r = 0; r < RUNS; r++)); do
        mount_client "$kind" src "list-$kind-$r" || { SHOW[list,$kind]="mount failed"; return 0; }
        drop_caches
        settle
        t0=$(now)
        timeout -k 10 "$STEP_TIMEOUT" ls -l "$MNT_DIR/list" >/dev/null 2>"$LOGS/list-$kind.err" || rc=$?
        secs=$(since "$t0")
        n=$(timeout -k 10 "$STEP_TIMEOUT" ls "$MNT_DIR/list" 2>/dev/null | wc -l) || true
        unmount_client
        ((rc == 0)) || break
        times+=("$secs")
    done
    if ((rc != 0)); then
        problem "$kind: 'ls -l MNT/list' status $rc: $(head -3 "$LOGS/list-$kind.err" | tr '\n' ' ')"
        SHOW[list,$kind]="ERROR (ls status $rc)"
        return 0
    fi
    secs=$(median "${times[@]}")
    VAL[list,$kind]=$(calc "$LIST_N / $secs" %.0f)
    SHOW[list,$kind]="${secs} s (${VAL[list,$kind]} entries/s; median of ${times[*]} s, each on a fresh mount)"
    NOTE[list,$kind]="$n entries listed"
    [[ $n == "$LIST_N" ]] || problem "$kind: ls of MNT/list shows $n entries, want $LIST_N"
}

# ---------------------------------------------------------------- run
T_START=$(now)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "generating ${SIZE_MIB} MiB of random data"
head -c "$SIZE" /dev/urandom >"$SRC"
SMALL_DATA=$(head -c 3072 /dev/urandom | base64 -w0) # 4096 bytes

log "raw: seq-write ${SIZE_MIB} MiB (8 MiB parts, 8 in flight) -> src/big"
settle
r=$(base --bucket src seq-write --key big --size "$SIZE" --part-size 8M --jobs 8)
VAL[write,raw]=$(field mib_per_s "$r")
SHOW[write,raw]="${VAL[write,raw]} MiB/s ($(field seconds "$r") s)"
NOTE[write,raw]="complete (in-memory data)"
GOOD[write,raw]=1

log "raw: $LIST_N PutObjects -> src/list/ (listing fixture)"
base --bucket src small --prefix list/ --count "$LIST_N" --jobs 32 >/dev/null

log "raw: small ($SMALL_N × 4 KiB, 32 in flight)"
settle
r=$(base --bucket raw small --count "$SMALL_N" --size 4096 --jobs 32)
VAL[small,raw]=$(field ops_per_s "$r")
SHOW[small,raw]="${VAL[small,raw]} files/s ($(field seconds "$r") s)"
NOTE[small,raw]="$(field objects "$(base --bucket raw count --prefix f)")/$SMALL_N in bucket"

log "raw: ListObjectsV2 of src/list/"
drop_caches
settle
r=$(base --bucket src count --prefix list/)
VAL[list,raw]=$(field ops_per_s "$r" | awk '{ printf "%.0f", $1 }')
SHOW[list,raw]="$(field seconds "$r") s (${VAL[list,raw]} entries/s)"
r2=$(base --bucket src stat --prefix list/ --jobs 32)
NOTE[list,raw]="$(field objects "$r") keys, LIST only (no stat); LIST + a HEAD per key (32 in flight, what \`ls -l\` needs when modes live in headers): $(field seconds "$r2") s"

DEFAULT_CLIENTS="osv-async osv-sync osv-listing s3fs rclone"
[[ -n $BEFORE ]] && DEFAULT_CLIENTS="osv-async old-async osv-sync old-sync osv-listing old-listing s3fs rclone"
read -r -a CLIENTS <<<"${OSV_BENCH_CLIENTS:-$DEFAULT_CLIENTS}"
for c in "${CLIENTS[@]}"; do
    if [[ $c == osv-listing || $c == old-listing ]]; then # only listings depend on where attributes come from
        log "$c: ls -l of $LIST_N entries"
        w_list "$c"
        log "$c: ${SHOW[list,$c]}"
        continue
    fi
    log "$c: write ${SIZE_MIB} MiB"
    w_write "$c" "$c"
    log "$c: ${SHOW[write,$c]}; ${NOTE[write,$c]:-}"
    log "$c: $SMALL_N small files"
    w_small "$c" "$c"
    log "$c: ${SHOW[small,$c]}; ${NOTE[small,$c]:-}"
    [[ $c == osv-sync || $c == old-sync ]] && continue # reads and listings do not depend on the upload mode
    log "$c: ls -l of $LIST_N entries"
    w_list "$c"
    log "$c: ${SHOW[list,$c]}"
done
READERS=()
for c in "${CLIENTS[@]}"; do [[ $c == *-sync || $c == *-listing ]] || READERS+=("$c"); done
log "reads of ${SIZE_MIB} MiB, $RUNS interleaved rounds: raw ${READERS[*]}"
w_reads "${READERS[@]}"
for c in raw "${READERS[@]}"; do log "$c: read ${SHOW[read,$c]:-}"; done
TOTAL_S=$(since "$T_START")

# ---------------------------------------------------------------- table
ratio() { # ratio A B -> "1.23×" or "—"
    if isnum "${1:-}" && isnum "${2:-}" && awk "BEGIN { exit !($2 > 0) }"; then calc "$1 / $2" "%.2f×"; else echo "—"; fi
}
verdict() { if [[ $1 == 1 ]]; then echo "**PASS**"; else echo "**FAIL**"; fi; }
ge() { isnum "${1:-}" && isnum "${2:-}" && awk "BEGIN { exit !($1 >= $2) }"; }

declare -A TARGET=() VERDICT=()
TARGET[write,osv-async]="≥ 0.8× raw, object complete after unmount"
ok=0; ge "${VAL[write,osv-async]:-}" "$(calc "0.8 * ${VAL[write,raw]:-0}" %.3f)" && [[ ${GOOD[write,osv-async]:-} == 1 ]] && ok=1
VERDICT[write,osv-async]=$(verdict $ok)
TARGET[write,osv-sync]="(informational; target is for async)"
TARGET[read,osv-async]="≥ 0.9× raw"
ok=0; ge "${VAL[read,osv-async]:-}" "$(calc "0.9 * ${VAL[read,raw]:-0}" %.3f)" && ok=1
VERDICT[read,osv-async]=$(verdict $ok)
TARGET[small,osv-async]="≥ 2,000 files/s, all in bucket after unmount"
ok=0; ge "${VAL[small,osv-async]:-}" 2000 && [[ ${GOOD[small,osv-async]:-} == 1 ]] && ok=1
VERDICT[small,osv-async]=$(verdict $ok)
TARGET[small,osv-sync]="≥ 2× s3fs, all in bucket after unmount"
ok=0; ge "${VAL[small,osv-sync]:-}" "$(calc "2 * ${VAL[small,s3fs]:-999999999}" %.3f)" && [[ ${GOOD[small,osv-sync]:-} == 1 ]] && ok=1
VERDICT[small,osv-sync]=$(verdict $ok)
TARGET[list,osv-async]="≥ 5× s3fs"
ok=0; ge "${VAL[list,osv-async]:-}" "$(calc "5 * ${VAL[list,s3fs]:-999999999}" %.3f)" && ok=1
VERDICT[list,osv-async]=$(verdict $ok)
TARGET[list,osv-listing]="≥ 5× s3fs"
ok=0; ge "${VAL[list,osv-listing]:-}" "$(calc "5 * ${VAL[list,s3fs]:-999999999}" %.3f)" && ok=1
VERDICT[list,osv-listing]=$(verdict $ok)
TARGET[rss-write,osv-async]="≤ 256 MiB"
ok=0; isnum "${VAL[rss-write,osv-async]:-}" && ((${VAL[rss-write,osv-async]} > 0 && ${VAL[rss-write,osv-async]} <= 256)) && ok=1
VERDICT[rss-write,osv-async]=$(verdict $ok)

declare -A WNAME=(
    [write]="seq write ${SIZE_MIB} MiB (dd bs=8M, until close returns)"
    [read]="seq read ${SIZE_MIB} MiB (cold, dd bs=8M)"
    [small]="$SMALL_N × 4 KiB files created + closed"
    [list]="cold \`ls -l\` of $LIST_N entries"
    [rss-write]="peak RSS (VmHWM) during the ${SIZE_MIB} MiB write"
)
declare -A CNAME=([raw]="raw S3 (s3_baseline)" [osv-async]="objectfs --upload async"
    [osv-sync]="objectfs --upload sync" [osv-listing]="objectfs --attrs-from-listing"
    [s3fs]="s3fs 1.90" [rclone]="rclone 1.60 mount"
    [old-async]="objectfs --upload async (--before)" [old-sync]="objectfs --upload sync (--before)"
    [old-listing]="objectfs --attrs-from-listing (--before)")
# "read" and "list" rows of objectfs do not depend on the upload mode.
label() {
    if [[ $2 == osv-async && ($1 == read || $1 == list) ]]; then echo "objectfs"
    elif [[ $2 == old-async && ($1 == read || $1 == list) ]]; then echo "objectfs (--before)"
    else echo "${CNAME[$2]}"; fi
}

table() {
    local w c
    echo "| Workload | Client | Result | × raw | × s3fs | In bucket after unmount / notes | Target | Verdict |"
    echo "|---|---|---|---|---|---|---|---|"
    for w in write read small list; do
        for c in raw osv-async old-async osv-sync old-sync osv-listing old-listing s3fs rclone; do
            [[ -n ${SHOW[$w,$c]:-} ]] || continue
            echo "| ${WNAME[$w]} | $(label "$w" "$c") | ${SHOW[$w,$c]} | $(ratio "${VAL[$w,$c]:-}" "${VAL[$w,raw]:-}") | $(ratio "${VAL[$w,$c]:-}" "${VAL[$w,s3fs]:-}") | ${NOTE[$w,$c]:-} | ${TARGET[$w,$c]:-} | ${VERDICT[$w,$c]:-} |"
        done
    done
    for c in osv-async old-async osv-sync old-sync s3fs rclone; do
        [[ -n ${VAL[rss-write,$c]:-} ]] || continue
        local extra=""
        [[ -n ${VAL[rss-read,$c]:-} ]] && extra="read mount: ${VAL[rss-read,$c]} MiB before unmount"
        echo "| ${WNAME[rss-write]} | ${CNAME[$c]} | ${VAL[rss-write,$c]} MiB | — | $(ratio "${VAL[rss-write,$c]}" "${VAL[rss-write,s3fs]:-}") | $extra | ${TARGET[rss-write,$c]:-} | ${VERDICT[rss-write,$c]:-} |"
    done
}

header() {
    echo "objectfs benchmark — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, kernel $(uname -r)"
    echo "commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$( [[ -n $(git -C "$ROOT" status --porcelain 2>/dev/null) ]] && echo ' (working tree has uncommitted changes)'), server: Garage $("$GARAGE" --version 2>/dev/null | awk '{ sub(/^cargo:/, "", $2); print $2 }') on $ENDPOINT (lmdb, 1 node, no compression)"
    [[ -n $BEFORE ]] && echo "--before: $BEFORE ($("$BEFORE" --version 2>/dev/null || echo 'no version')), mounted as the old-* clients"
    echo "sizes: ${SIZE_MIB} MiB, $SMALL_N small files, $LIST_N listed; page cache dropped before reads: $([[ $DROP_OK == 1 ]] && echo yes || echo NO); whole run ${TOTAL_S} s; load average at start ${LOAD_START}, at end $(cut -d' ' -f1-3 /proc/loadavg)"
}

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

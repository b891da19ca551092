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
# Garage, packages, mounts and cleanup: bench/lib.sh.

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

QUICK=0 OUT="" KEEP=0 NO_BUILD=0 BEFORE=""
# The options of this script only (bench/lib.sh parse_args has the common ones).
own_arg() {
    case $1 in
    --quick) QUICK=1; TAKEN=1 ;;
    --before) BEFORE=${2:?--before needs a binary}; TAKEN=2 ;;
    --before=*) BEFORE=${1#--before=}; TAKEN=1 ;;
    esac
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
parse_args "$@"
if [[ -n $BEFORE ]]; then
    BEFORE=$(realpath -- "$BEFORE")
    [[ -x $BEFORE ]] || { echo "--before $BEFORE: not an executable" >&2; exit 2; }
fi

if ((QUICK)); then SIZE_MIB=256 SMALL_N=200 LIST_N=500; else SIZE_MIB=1024 SMALL_N=1000 LIST_N=2000; fi
SIZE=$((SIZE_MIB * 1024 * 1024))
# Reads and listings are short and noisy on 2 cores: each is run RUNS times
# and the median is compared.
RUNS=${OSV_BENCH_RUNS:-3}
need_root_fuse

# ---------------------------------------------------------------- packages
install_missing s3fs:s3fs rclone:rclone fusermount3:fuse3

# ---------------------------------------------------------------- builds
build_all

# ---------------------------------------------------------------- work dir, cleanup
make_workdir
CLEANUP_EXTRA=(src.bin)

# ---------------------------------------------------------------- Garage
BUCKETS=(src raw osv-async osv-sync s3fs rclone)
[[ -n $BEFORE ]] && BUCKETS+=(old-async old-sync)
start_garage "${BUCKETS[@]}"

# ---------------------------------------------------------------- results
declare -A VAL=()   # [workload,client] number (MiB/s, files/s, entries/s, MiB)
declare -A SHOW=()  # [workload,client] text shown in the Result column
declare -A NOTE=()  # [workload,client] after-unmount / notes column
declare -A GOOD=()  # [workload,client] 1 when the data is all in the bucket

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

# Cold `ls -l` of src/list/ ($LIST_N objects) on a fresh mount; then the
# same again on that mount once its metadata is older than the TTL (2.5 s:
# objectfs's TTL and the kernel's are 1 s; s3fs keeps its stat cache for
# 900 s by default, so it asks nothing then).
w_list() {
    local kind=$1 t0 secs rc=0 n r
    local -a times=() again=()
    for ((r = 0; r < RUNS; r++)); do
        mount_client "$kind" src "list-$kind-$r" || { SHOW[list,$kind]="mount failed"; return 0; }
        drop_caches
        settle
        t0=$(now)
        timeout -k 10 "$STEP_TIMEOUT" ls -l "$MNT_DIR/list" >/dev/null 2>"$LOGS/list-$kind.err" || rc=$?
        secs=$(since "$t0")
        n=$(timeout -k 10 "$STEP_TIMEOUT" ls "$MNT_DIR/list" 2>/dev/null | wc -l) || true
        if ((rc == 0)); then
            sleep 2.5
            t0=$(now)
            timeout -k 10 "$STEP_TIMEOUT" ls -l "$MNT_DIR/list" >/dev/null 2>>"$LOGS/list-$kind.err" || rc=$?
            again+=("$(since "$t0")")
        fi
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
    secs=$(median "${again[@]}")
    VAL[relist,$kind]=$(calc "$LIST_N / $secs" %.0f)
    SHOW[relist,$kind]="${secs} s (${VAL[relist,$kind]} entries/s; median of ${again[*]} s)"
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
    [relist]="\`ls -l\` of the $LIST_N entries again, 2.5 s later (same mount, past objectfs's 1 s TTL)"
    [rss-write]="peak RSS (VmHWM) during the ${SIZE_MIB} MiB write"
)
declare -A CNAME=([raw]="raw S3 (s3_baseline)" [osv-async]="objectfs --upload async"
    [osv-sync]="objectfs --upload sync" [osv-listing]="objectfs --attrs-from-listing"
    [s3fs]="s3fs 1.90" [rclone]="rclone 1.60 mount"
    [old-async]="objectfs --upload async (--before)" [old-sync]="objectfs --upload sync (--before)"
    [old-listing]="objectfs --attrs-from-listing (--before)")
# "read", "list" and "relist" rows of objectfs do not depend on the upload mode.
label() {
    if [[ $2 == osv-async && ($1 == read || $1 == list || $1 == relist) ]]; then echo "objectfs"
    elif [[ $2 == old-async && ($1 == read || $1 == list || $1 == relist) ]]; then echo "objectfs (--before)"
    else echo "${CNAME[$2]}"; fi
}

table() {
    local w c
    echo "| Workload | Client | Result | × raw | × s3fs | In bucket after unmount / notes | Target | Verdict |"
    echo "|---|---|---|---|---|---|---|---|"
    for w in write read small list relist; do
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

emit_report

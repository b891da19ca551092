#!/usr/bin/env bash
# bench/agent.sh — agents' everyday workloads (issue 14, "Benchmark") on local
# disk, objectfs (`opensandbox-volume mount --upload async`, defaults), s3fs
# and rclone (`rclone mount --vfs-cache-mode writes`), the object clients all
# on ONE Garage server on loopback, in one run. Prints a Markdown table: per
# workload the seconds per client, the ratio to local disk, and the issue's
# targets for objectfs; then, per client, whether every file it wrote is in
# its bucket after unmount. Each workload runs once (no medians).
#
#   bench/agent.sh [--out FILE] [--keep] [--no-build]
#
#   --out FILE  also write the table (Markdown) to FILE
#   --keep      keep the work directory (Garage data, caches, logs)
#   --no-build  do not run cargo build (use the binaries already in target/release)
#   (OSV_BENCH_CLIENTS="osv-async s3fs rclone": the object clients to run, a
#   subset of these; local disk always runs, it is the reference.)
#
# Workloads (bench/workloads.sh), each in a fresh directory of the client's
# mount, inputs made on local disk before any clock starts: tar x of 300
# files of 1-8 KiB; git init/add/commit/status of those files; git add and
# commit after unpacking them again over the work tree; python3 -m
# venv (with pip); 1,000 SQLite INSERTs, one transaction each; mv of a
# directory of 300 files uploaded before the mount (written through an
# earlier mount, unmounted); the second read of a 256 MiB file (page cache
# dropped before the first); dd of 512 MiB with conv=fsync, compared with
# s3_baseline's raw multipart upload of 512 MiB in the same run. Then, for an
# object client, `git status` of that repository through a new mount with an
# empty cache directory (another host, or the sandbox restarted), twice: the
# first on the index the workloads' mount wrote, the second on the index the
# first refreshed; and the first read of the tar workload's files through a
# third (`diff -r` with the input, which is in the page cache); for local
# disk and bindfs, the same after dropping the page cache. A status that
# shows any change, or a file that differs, counts as failed. A workload
# a client cannot do is shown as "failed: <reason>".
#
# Two floors, measured in the same run, say what no client can beat while
# its fsync means "in the bucket": the SQLite workload's fsync calls of its
# files on local disk (counted with strace, not timed; the fsyncs of their
# directory are left out) times the latency of one raw
# PutObject of 8 KiB (s3_baseline small, one in flight); and, for dd, the
# raw multipart upload's own time. Two more say what no client of a new
# mount can beat while file modes and times live in object headers (as
# they do for objectfs and s3fs): for `git status`, one listing and a HEAD
# of each of 300 objects of 8 KiB (s3_baseline stat, 32 in flight);
# for the first read, one listing and a GET of each (s3_baseline fetch);
# the objects are those of the PutObject latency, in one prefix (the
# workloads' files are in 6 directories: a lower bound). A fifth says what
# FUSE alone costs: every workload also runs on bindfs over local disk (a
# FUSE filesystem that only passes each call on to the disk, with bindfs's
# default options; its rename fixture is copied in beneath it): what a FUSE
# client doing no work of its own takes on this machine.
#
# Needs root (FUSE mounts, drop_caches) and /dev/fuse; Garage as for
# bench/objectfs.sh (bench/lib.sh). Installs s3fs, rclone, fuse3, bindfs,
# strace, git and python3-venv with apt-get when missing. Only loopback addresses are used.
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

OUT="" KEEP=0 NO_BUILD=0 BEFORE=""
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
parse_args "$@"
# shellcheck source=bench/workloads.sh
source "$ROOT/bench/workloads.sh"
STEP_TIMEOUT=300

need_root_fuse
install_missing s3fs:s3fs rclone:rclone fusermount3:fuse3 bindfs:bindfs strace:strace
build_all
make_workdir
workload_tools
CLEANUP_EXTRA=(in local bindfs fsyncs)

read -r -a CLIENTS <<<"${OSV_BENCH_CLIENTS:-osv-async s3fs rclone}"
for c in "${CLIENTS[@]}"; do
    [[ $c == osv-async || $c == s3fs || $c == rclone ]] || die "OSV_BENCH_CLIENTS: unknown client $c"
done
start_garage raw "${CLIENTS[@]}"
make_inputs

# Rows after the workloads, each on a new mount (see above), and the script
# (for step, run with the directory) each runs.
REMOUNTS=(status-new status-again coldread)
WNAME[status-new]="\`git status\` on a new mount (empty cache), index from the writing mount"
WNAME[status-again]="\`git status\` on another new mount, index refreshed by the one before"
WNAME[coldread]="first read of the $SMALL_N files of \`tar x\` on another new mount (\`diff -r\` with the input)"
declare -A RSCRIPT=()
# shellcheck disable=SC2016
RSCRIPT[status-new]='out=$(cd "$1/git" && git status --porcelain) && { [[ -z $out ]] || { echo "git status shows $(wc -l <<<"$out") changed path(s)" >&2; exit 1; }; }'
RSCRIPT[status-again]=${RSCRIPT[status-new]}
# shellcheck disable=SC2016
RSCRIPT[coldread]='diff -rq "$2" "$1/tar"'

# ---------------------------------------------------------------- results
declare -A SECS=() # [workload,client] seconds
declare -A CELL=() # [workload,client] text of the cell
declare -A BUCKET=() # [client] text of the after-unmount check
declare -A BGOOD=()  # [client] 1 when every file is in the bucket

# step W C DIR SCRIPT ARGS...: runs SCRIPT (bash) with DIR and ARGS after Garage is idle; records seconds or the failure.
step() {
    local w=$1 c=$2 t0 secs rc=0 why
    shift 2
    settle
    t0=$(now)
    timeout -k 10 "$STEP_TIMEOUT" bash -c "$2" _ "$1" "${@:3}" >"$LOGS/$w-$c.out" 2>"$LOGS/$w-$c.err" || rc=$?
    secs=$(since "$t0")
    if ((rc != 0)); then
        why=$(grep -v '^\s*$' "$LOGS/$w-$c.err" | tail -1 | cut -c1-140 | tr '|' '/')
        ((rc == 124)) && why="timed out after $STEP_TIMEOUT s"
        CELL[$w,$c]="failed: ${why:-exit status $rc}"
        log "$c: $w failed (status $rc): ${why:-}"
        return 0
    fi
    SECS[$w,$c]=$secs
    log "$c: $w ${secs} s"
}

# prep P C DIR SCRIPT ARGS...: runs a preparation step; false (and logged) when it fails.
prep() {
    local c=$2
    shift 2
    timeout -k 10 "$STEP_TIMEOUT" bash -c "$2" _ "$1" "${@:3}" >>"$LOGS/prep-$c.log" 2>&1 || { log "$c: preparation failed: $2"; return 1; }
}

# skip W C REASON: workload W of client C could not run.
skip() { CELL[$1,$2]="failed: $3"; }

# listing DIR: "path<TAB>size" of every regular file under DIR, sorted.
listing() { (cd "$1" && find . -type f -printf '%P\t%s\n' | LC_ALL=C sort); }
# bucket_listing BUCKET: "key<TAB>size" of every object in BUCKET (directory markers left out), sorted.
bucket_listing() { rclone lsf -R --files-only --format ps --separator $'\t' --config "$WORK/rclone.conf" "bench:$1" | LC_ALL=C sort; }

# check_bucket C EXPECT PREFIX: compares the files in EXPECT (path<TAB>size) with the objects of C's bucket under PREFIX; sets CHECK and CHECK_OK.
check_bucket() {
    local c=$1 exp=$2 prefix=$3 tag=${3%/} got n_exp n_ok b_exp b_ok extra
    got=$LOGS/bucket-$c-${tag:-all}.tsv
    bucket_listing "$c" >"$got" 2>>"$LOGS/rclone-lsf.err" || true
    n_exp=$(wc -l <"$exp")
    b_exp=$(awk -F'\t' '{ s += $2 } END { printf "%d", s }' "$exp")
    n_ok=$(LC_ALL=C comm -12 "$exp" "$got" | wc -l)
    b_ok=$(LC_ALL=C comm -12 "$exp" "$got" | awk -F'\t' '{ s += $2 } END { printf "%d", s }')
    extra=$(LC_ALL=C comm -13 "$exp" "$got" | grep -c "^$prefix" || true)
    CHECK="$n_ok/$n_exp files, $b_ok/$b_exp bytes"
    ((extra)) && CHECK+=", $extra other object(s) under ${prefix:-the bucket} (symbolic links, markers)"
    CHECK_OK=0
    [[ $n_ok == "$n_exp" && $b_ok == "$b_exp" ]] && CHECK_OK=1
    ((CHECK_OK)) || LC_ALL=C comm -23 "$exp" "$got" >"$LOGS/missing-$c-${tag:-all}.tsv"
}

# run_client C: the rename fixture through a first mount, then every workload through a second, then the bucket checks.
run_client() {
    local c=$1 prep_note t0 i waited
    log "$c: writing the rename fixture ($SMALL_N files) through a first mount"
    mount_client "$c" "$c" "prep-$c" || { for w in "${WORKLOADS[@]}" "${REMOUNTS[@]}"; do skip "$w" "$c" mount; done; return 0; }
    write_fixture "$c" "$MNT_DIR" || true
    # Uploaded means in the bucket: wait for it (at most 120 s) before unmounting,
    # since a client may unmount before its uploads are done.
    sed 's|^|ren/|' "$IN/files.tsv" >"$LOGS/expect-$c-ren.tsv"
    t0=$(now)
    for ((i = 0; i < 240; i++)); do
        check_bucket "$c" "$LOGS/expect-$c-ren.tsv" ren/
        ((CHECK_OK)) && break
        sleep 0.5
    done
    waited=$(since "$t0")
    unmount_client
    check_bucket "$c" "$LOGS/expect-$c-ren.tsv" ren/
    prep_note="fixture ren/ after its unmount: $CHECK (waited ${waited} s for the bucket before unmounting)"
    log "$c: $prep_note"
    mount_client "$c" "$c" "run-$c" || { for w in "${WORKLOADS[@]}" "${REMOUNTS[@]}"; do skip "$w" "$c" mount; done; return 0; }
    run_workloads "$c" "$MNT_DIR"
    listing "$MNT_DIR" >"$LOGS/expect-$c.tsv"
    unmount_client
    check_bucket "$c" "$LOGS/expect-$c.tsv" ""
    BGOOD[$c]=$CHECK_OK
    BUCKET[$c]="$CHECK (files as the mount listed them before unmount; local disk has $(wc -l <"$LOGS/expect-local.tsv")); unmount ${UNMOUNT_S} s; $prep_note"
    ((CHECK_OK)) || problem "$c: files missing from bucket $c after unmount: see ${LOGS}/missing-$c-all.tsv"
    log "$c: ${BUCKET[$c]}"
    for w in "${REMOUNTS[@]}"; do
        mount_client "$c" "$c" "$w-$c" || { skip "$w" "$c" mount; continue; }
        step "$w" "$c" "$MNT_DIR" "${RSCRIPT[$w]}" "$IN/files"
        unmount_client
    done
}

# remounts_after_drop C DIR: the REMOUNTS rows of local disk or bindfs, C's
# files in DIR read after dropping the page cache.
remounts_after_drop() {
    local w
    for w in "${REMOUNTS[@]}"; do
        drop_caches
        step "$w" "$1" "$2" "${RSCRIPT[$w]}" "$IN/files"
    done
}

# ---------------------------------------------------------------- run
T_START=$(now)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "raw: seq-write ${DD_MIB} MiB (8 MiB parts, 8 in flight)"
settle
r=$(base --bucket raw seq-write --key big --size $((DD_MIB * 1024 * 1024)) --part-size 8M --jobs 8)
RAW_MIBS=$(field mib_per_s "$r") RAW_S=$(field seconds "$r")
log "raw: $SMALL_N PutObjects of 8 KiB, one at a time"
settle
r=$(base --bucket raw small --prefix lat/ --count "$SMALL_N" --size 8192 --jobs 1)
PUT_MS=$(calc "1000 / $(field ops_per_s "$r")" %.2f)
log "raw: a listing and a HEAD, then a listing and a GET, of each of those (32 in flight)"
settle
r=$(base --bucket raw stat --prefix lat/ --jobs 32)
STAT_S=$(field seconds "$r")
settle
r=$(base --bucket raw fetch --prefix lat/ --jobs 32)
FETCH_S=$(field seconds "$r")
log "local disk: the SQLite workload's fsync calls (strace, not timed)"
mkdir -p "$WORK/fsyncs"
FSYNCS=? DIR_FSYNCS=?
if strace -f -qq -y -e trace=fsync,fdatasync -o "$LOGS/sqlite-fsyncs.txt" \
    "$PY" -c "$SQLITE_PY" "$WORK/fsyncs/db" >/dev/null 2>"$LOGS/sqlite-fsyncs.err"; then
    # Lines like `fsync(3</path/db-journal>) = 0`: a file's fsync uploads it,
    # the directory's (SQLite syncs it after creating its journal) need not.
    d=$(realpath "$WORK/fsyncs")
    FSYNCS=$(grep -c "^[0-9]* *f[a-z]*sync([0-9]*<$d/db[^/>]*>)" "$LOGS/sqlite-fsyncs.txt" || true)
    DIR_FSYNCS=$(grep -c "^[0-9]* *f[a-z]*sync([0-9]*<$d>)" "$LOGS/sqlite-fsyncs.txt" || true)
    ((FSYNCS > 0)) || { problem "no fsync of SQLite's files found in $LOGS/sqlite-fsyncs.txt"; FSYNCS=?; }
else
    problem "strace of the SQLite workload failed: $(tail -1 "$LOGS/sqlite-fsyncs.err")"
fi
SQLITE_FLOOR=?
isnum "$FSYNCS" && SQLITE_FLOOR=$(calc "$FSYNCS * $PUT_MS / 1000" %.3f)

log "local disk: $WORK/local"
mkdir -p "$WORK/local"
cp -r "$IN/files" "$WORK/local/ren" && sync
run_workloads local "$WORK/local"
listing "$WORK/local" >"$LOGS/expect-local.tsv"
remounts_after_drop local "$WORK/local"
log "bindfs over local disk (FUSE alone): $WORK/mnt/bindfs"
mkdir -p "$WORK/bindfs" "$WORK/mnt/bindfs"
cp -r "$IN/files" "$WORK/bindfs/ren" && sync
if bindfs "$WORK/bindfs" "$WORK/mnt/bindfs" 2>"$LOGS/bindfs.err"; then
    run_workloads bindfs "$WORK/mnt/bindfs"
    remounts_after_drop bindfs "$WORK/mnt/bindfs"
    umount "$WORK/mnt/bindfs" || problem "bindfs: could not unmount $WORK/mnt/bindfs"
else
    problem "bindfs: mount failed: $(tail -1 "$LOGS/bindfs.err")"
    for w in "${WORKLOADS[@]}" "${REMOUNTS[@]}"; do skip "$w" bindfs "mount failed"; done
fi
for c in "${CLIENTS[@]}"; do run_client "$c"; done
TOTAL_S=$(since "$T_START")

# ---------------------------------------------------------------- table
# lt A B: true when A < B (numbers).
lt() { isnum "${1:-}" && isnum "${2:-}" && awk "BEGIN { exit !($1 < $2) }"; }
# cell W C: seconds and ratio to local disk, or the failure.
cell() {
    local w=$1 c=$2 s=${SECS[$1,$2]:-}
    if [[ -n $s ]]; then
        if [[ $c == local ]]; then echo "$s s"
        elif isnum "${SECS[$w,local]:-}"; then echo "$s s ($(calc "$s / ${SECS[$w,local]}" %.2f)×)"
        else echo "$s s"; fi
    else echo "${CELL[$w,$c]:-—}"; fi
}
# verdict W: the issue's targets for objectfs on row W, and which of them failed.
verdict() {
    local w=$1 o=${SECS[$1,osv-async]:-} l=${SECS[$1,local]:-} rc=${SECS[$1,rclone]:-} bad=()
    [[ -n $o ]] || { echo "**FAIL** (objectfs failed)"; return; }
    lt "$o" "$(calc "3 * $l" %.6f)" || bad+=("> 3× local")
    if [[ -n $rc ]]; then lt "$o" "$rc" || bad+=("not faster than rclone")
    elif [[ -z ${CELL[$w,rclone]:-} ]]; then bad+=("rclone not run"); fi
    case $w in
    read) awk "BEGIN { exit !(0.8 * $o <= $l) }" || bad+=("< 0.8× local throughput") ;;
    dd) lt "$(calc "0.8 * $RAW_MIBS" %.6f)" "$(calc "$DD_MIB / $o" %.6f)" || bad+=("$(calc "$DD_MIB / $o") MiB/s < 0.8× raw") ;;
    esac
    if ((${#bad[@]})); then echo -n "**FAIL** ($(printf '%s; ' "${bad[@]}" | sed 's/; $//'))"; else echo -n "**PASS**"; fi
    case $w in
    sqlite) echo -n "; floor for a durable fsync: $SQLITE_FLOOR s ($FSYNCS fsyncs of a file × $PUT_MS ms), $(isnum "$l" && isnum "$SQLITE_FLOOR" && calc "$SQLITE_FLOOR / $l" %.2f || echo ?)× local" ;;
    dd) echo -n "; floor: the raw multipart upload, $RAW_S s" ;;
    status-new | status-again) floor_of "$STAT_S" "a HEAD" "$l" ;;
    coldread) floor_of "$FETCH_S" "a GET" "$l" ;;
    esac
    local b=${SECS[$w,bindfs]:-}
    if isnum "$b" && isnum "$l"; then echo "; FUSE alone (bindfs): $(calc "$b / $l" %.2f)× local"; else echo; fi
}
# floor_of SECONDS WHAT LOCAL: the new-mount floor's part of a verdict.
floor_of() {
    echo -n "; floor for a new mount: a listing and $2 of each of $SMALL_N objects, $1 s, $(isnum "$1" && isnum "$3" && calc "$1 / $3" %.2f || echo ?)× local"
}
target() {
    case $1 in
    read) echo "≤ 3× local, < rclone, ≥ 0.8× local throughput" ;;
    dd) echo "≤ 3× local, < rclone, ≥ 0.8× raw multipart ($(calc "0.8 * $RAW_MIBS") MiB/s)" ;;
    *) echo "≤ 3× local, < rclone" ;;
    esac
}
declare -A CNAME=([local]="local disk (ext4)" [bindfs]="bindfs over local disk (FUSE alone)" [osv-async]="objectfs --upload async" [s3fs]="s3fs" [rclone]="rclone --vfs-cache-mode writes")

table() {
    local w c line
    line="| Workload | ${CNAME[local]} | ${CNAME[bindfs]}"
    for c in "${CLIENTS[@]}"; do line+=" | ${CNAME[$c]}"; done
    echo "$line | Target (objectfs) | Verdict |"
    line="|---|---|---"
    for c in "${CLIENTS[@]}"; do line+="|---"; done
    echo "$line|---|---|"
    for w in "${WORKLOADS[@]}" "${REMOUNTS[@]}"; do
        line="| ${WNAME[$w]} | $(cell "$w" local) | $(cell "$w" bindfs)"
        for c in "${CLIENTS[@]}"; do line+=" | $(cell "$w" "$c")"; done
        if [[ " ${CLIENTS[*]} " == *" osv-async "* ]]; then echo "$line | $(target "$w") | $(verdict "$w") |"
        else echo "$line | | |"; fi
    done
    echo
    echo "| Client | Every file in its bucket after unmount | Verdict |"
    echo "|---|---|---|"
    for c in "${CLIENTS[@]}"; do
        echo "| ${CNAME[$c]} | ${BUCKET[$c]:-not checked (mount failed)} | $([[ ${BGOOD[$c]:-0} == 1 ]] && echo "**PASS**" || echo "**FAIL**") |"
    done
}

header() {
    echo "agent workloads (issue 14) — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, kernel $(uname -r)"
    echo "commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$( [[ -n $(git -C "$ROOT" status --porcelain 2>/dev/null) ]] && echo ' (working tree has uncommitted changes)'), server: Garage $("$GARAGE" --version 2>/dev/null | awk '{ sub(/^cargo:/, "", $2); print $2 }') on $ENDPOINT (lmdb, 1 node, no compression); s3fs $(s3fs --version 2>/dev/null | grep -o 'V[0-9.]*' | head -1); $(rclone version 2>/dev/null | head -1); $("$PY" --version 2>&1); $(git --version)"
    echo "each workload run once (1 run, no medians), seconds from start to exit of the command; raw multipart upload of $DD_MIB MiB (s3_baseline seq-write, 8 MiB parts, 8 in flight): $RAW_MIBS MiB/s ($RAW_S s); one raw PutObject of 8 KiB (1 in flight): $PUT_MS ms; a listing and a HEAD of each of $SMALL_N such objects (32 in flight): $STAT_S s, and a GET of each: $FETCH_S s; the SQLite workload's fsync calls on local disk: $FSYNCS of its files, $DIR_FSYNCS of their directory; page cache dropped before the first read: $([[ $DROP_OK == 1 ]] && echo yes || echo NO); whole run ${TOTAL_S} s; load average at start ${LOAD_START}, at end $(cut -d' ' -f1-3 /proc/loadavg)"
}

emit_report

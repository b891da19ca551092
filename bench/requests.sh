#!/usr/bin/env bash
# bench/requests.sh — what a sandbox costs the object store (issue 16, "on
# paper, past this machine"): the S3 requests, by operation, and the bytes
# that objectfs (`opensandbox-volume mount --upload async`, defaults), s3fs
# and rclone (`rclone mount --vfs-cache-mode writes`) send to one Garage
# server on loopback for each agent workload of bench/agent.sh
# (bench/workloads.sh), for mounting and unmounting, for the first listing
# of a directory and the first read of a large object, and while mounts sit
# idle or a directory or a file is polled. Counted on the server's side, not
# by the clients: requests from Garage's own Prometheus counters
# (api_s3_request_counter and api_s3_error_counter, by api_endpoint, read
# from its admin API), bytes from nftables counters on Garage's S3 port (IP
# packets to and from it, headers included). Prints Markdown tables.
#
#   bench/requests.sh [--out FILE] [--keep] [--no-build] [--idle SECONDS] [--mounts N] [--quiet SECONDS]
#
#   --out FILE      also write the tables (Markdown) to FILE
#   --keep          keep the work directory
#   --no-build      use the binaries already in target/release
#   --idle SECONDS  how long idle mounts are watched, and how long a
#                   directory listing and a file read are repeated once a
#                   second (default 60)
#   --mounts N      idle mounts per client (default 5)
#   --quiet SECONDS a step has ended when Garage has seen no request and no
#                   byte for this long (default 7: longer than rclone's 5 s
#                   write-back delay and objectfs's 1 s upload delay)
#   (OSV_BENCH_CLIENTS="osv-async s3fs rclone": the clients, a subset of these.)
#
# Each step's figures are what reached Garage from the moment it started
# until Garage was quiet again, so a client's background uploads count for
# the step that caused them. Only one mount talks to Garage at a time. The
# counts depend little on the machine's speed (what objectfs folds within
# its upload delay, and how many new names it probes while their
# directory's listing is in flight, do); "active s" (from the step's start
# to its last request or byte) does.
#
# Needs root (FUSE mounts, drop_caches, nftables) and /dev/fuse; a Garage
# built with its `metrics` feature, in /opt/osv-garage-metrics (built here
# with cargo install if missing, ~12 min; override with
# OSV_GARAGE_METRICS_ROOT). Installs s3fs, rclone, fuse3, nftables, curl, git
# and python3-venv with apt-get when missing. Only loopback addresses are used.
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

OUT="" KEEP=0 NO_BUILD=0 BEFORE="" IDLE_S=60 IDLE_N=5 QUIET_S=7
# The options of this script only (bench/lib.sh parse_args has the common ones).
own_arg() {
    case $1 in
    --idle) IDLE_S=${2:?--idle needs seconds}; TAKEN=2 ;;
    --mounts) IDLE_N=${2:?--mounts needs a number}; TAKEN=2 ;;
    --quiet) QUIET_S=${2:?--quiet needs seconds}; TAKEN=2 ;;
    esac
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GARAGE_METRICS=1
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
parse_args "$@"
for v in "$IDLE_S" "$IDLE_N" "$QUIET_S"; do
    [[ $v =~ ^[1-9][0-9]*$ ]] || { echo "--idle, --mounts and --quiet take positive whole numbers" >&2; exit 2; }
done

# shellcheck source=bench/workloads.sh
source "$ROOT/bench/workloads.sh"
STEP_TIMEOUT=300
# The longest a step may keep Garage busy after its command returned.
QUIET_MAX_S=300

need_root_fuse
install_missing s3fs:s3fs rclone:rclone fusermount3:fuse3 nft:nftables curl:curl
build_all
make_workdir
workload_tools
CLEANUP_EXTRA=(in)

read -r -a CLIENTS <<<"${OSV_BENCH_CLIENTS:-osv-async s3fs rclone}"
for c in "${CLIENTS[@]}"; do
    [[ $c == osv-async || $c == s3fs || $c == rclone ]] || die "OSV_BENCH_CLIENTS: unknown client $c"
done
start_garage idle "${CLIENTS[@]}"
make_inputs

# ---------------------------------------------------------------- counters
# Byte counters on Garage's S3 port, in a table of this run's own (removed by cleanup).
NFT_TABLE=osv_bench_$$
nft add table inet "$NFT_TABLE"
CLEANUP_HOOKS+=("nft delete table inet $NFT_TABLE")
nft add chain inet "$NFT_TABLE" out "{ type filter hook output priority 0; policy accept; }"
nft add rule inet "$NFT_TABLE" out ip daddr 127.0.0.1 tcp dport "$S3_PORT" counter comment '"in"'
nft add rule inet "$NFT_TABLE" out ip saddr 127.0.0.1 tcp sport "$S3_PORT" counter comment '"out"'

# snapshot FILE: every counter now, one "name value" per line: req:ENDPOINT,
# err:ENDPOINT:STATUS (Garage), bytes:in, bytes:out (to and from Garage).
snapshot() {
    {
        curl -sf -H "Authorization: Bearer $METRICS_TOKEN" "$ADMIN_URL/metrics" | awk '
            function label(name) {
                if (!match($0, name "=\"[^\"]*\"")) return ""
                return substr($0, RSTART + length(name) + 2, RLENGTH - length(name) - 3)
            }
            /^api_s3_request_counter[{ ]/ { print "req:" label("api_endpoint"), $NF }
            /^api_s3_error_counter[{ ]/ { print "err:" label("api_endpoint") ":" label("status_code"), $NF }
        ' || die "could not read Garage's metrics at $ADMIN_URL/metrics"
        nft list table inet "$NFT_TABLE" | awk '
            /counter packets/ && /comment "in"/ { for (i = 1; i < NF; i++) if ($i == "bytes") print "bytes:in", $(i + 1) }
            /counter packets/ && /comment "out"/ { for (i = 1; i < NF; i++) if ($i == "bytes") print "bytes:out", $(i + 1) }
        '
    } >"$1"
}
# activity FILE: requests plus bytes in a snapshot (moves with any traffic).
activity() { awk '/^(req|bytes):/ { s += $2 } END { printf "%d", s }' "$1"; }
# delta A B: the counters that moved from snapshot A to snapshot B, "name increase".
delta() { awk 'NR == FNR { a[$1] = $2; next } $2 - a[$1] > 0 { print $1, $2 - a[$1] }' "$1" "$2"; }

# requests_now: Garage's count of S3 requests so far.
requests_now() {
    curl -sf -H "Authorization: Bearer $METRICS_TOKEN" "$ADMIN_URL/metrics" |
        awk '/^api_s3_request_counter[{ ]/ { s += $NF } END { printf "%d", s }'
}
SAMPLER_PID=""
# start_sampler FILE: writes "time requests" to FILE every 0.5 s until stop_sampler.
start_sampler() {
    while :; do
        printf '%s %s\n' "$(now)" "$(requests_now)"
        sleep 0.5
    done >"$1" &
    SAMPLER_PID=$!
}
stop_sampler() {
    [[ -n $SAMPLER_PID ]] || return 0
    kill "$SAMPLER_PID" 2>/dev/null || true
    wait "$SAMPLER_PID" 2>/dev/null || true
    SAMPLER_PID=""
}
CLEANUP_HOOKS+=(stop_sampler)
# peak FILE: the highest request rate over any second of a sampler's file
# (between two samples at least 1 s apart, the nearest such pair).
peak() {
    awk '{ t[NR] = $1; r[NR] = $2 }
        END {
            j = 1
            for (i = 1; i <= NR; i++) {
                if (j < i) j = i
                while (j <= NR && t[j] - t[i] < 1) j++
                if (j > NR) break
                v = (r[j] - r[i]) / (t[j] - t[i])
                if (v > m) m = v
            }
            printf "%.0f", m
        }' "$1"
}

# quiesce: waits until Garage has seen no request and no byte for QUIET_S
# seconds (at most QUIET_MAX_S); sets LAST_CHANGE, when traffic last moved.
quiesce() {
    local t0 last cur
    t0=$(now) LAST_CHANGE=$t0
    snapshot "$WORK/q"
    last=$(activity "$WORK/q")
    while awk -v a="$LAST_CHANGE" -v b="$(now)" -v q="$QUIET_S" 'BEGIN { exit !(b - a < q) }'; do
        if awk -v a="$t0" -v b="$(now)" -v m="$QUIET_MAX_S" 'BEGIN { exit !(b - a > m) }'; then
            problem "Garage still busy ${QUIET_MAX_S} s after a step; counting on"
            return 0
        fi
        sleep 0.5
        snapshot "$WORK/q"
        cur=$(activity "$WORK/q")
        if [[ $cur != "$last" ]]; then last=$cur LAST_CHANGE=$(now); fi
    done
}

declare -A SECS=() # [label,client] seconds the command took
declare -A WIN=()  # [label,client] seconds from its start to its last traffic
declare -A PEAK=() # [label,client] most requests in any one second
declare -A FAIL=() # [label,client] why it failed
mkdir -p "$WORK/rows"

# counted LABEL C CMD ARGS...: runs CMD (a command or a function of this
# shell) and records, as row LABEL of client C, what reached Garage from its
# start until Garage was quiet again; returns CMD's status.
counted() {
    local label=$1 c=$2 t0 end rc=0
    shift 2
    snapshot "$WORK/before"
    start_sampler "$WORK/samples"
    t0=$(now)
    "$@" || rc=$?
    SECS[$label,$c]=$(since "$t0")
    end=$(now)
    quiesce
    stop_sampler
    PEAK[$label,$c]=$(peak "$WORK/samples")
    snapshot "$WORK/after"
    delta "$WORK/before" "$WORK/after" >"$WORK/rows/$label.$c"
    awk -v a="$end" -v b="$LAST_CHANGE" 'BEGIN { exit !(b > a) }' && end=$LAST_CHANGE
    WIN[$label,$c]=$(awk -v a="$t0" -v b="$end" 'BEGIN { printf "%.3f", b - a }')
    log "$c: $label: $(awk '/^req:/ { s += $2 } END { printf "%d", s }' "$WORK/rows/$label.$c") requests"
    return "$rc"
}

# script LABEL C DIR SCRIPT ARGS...: SCRIPT (bash) with DIR and ARGS as $1...;
# on failure, FAIL says why.
script() {
    local label=$1 c=$2 rc=0
    shift 2
    timeout -k 10 "$STEP_TIMEOUT" bash -c "$2" _ "$1" "${@:3}" >>"$LOGS/$label-$c.out" 2>>"$LOGS/$label-$c.err" || rc=$?
    if ((rc != 0)); then
        FAIL[$label,$c]="failed (status $rc): $(grep -v '^\s*$' "$LOGS/$label-$c.err" | tail -1 | cut -c1-120 | tr '|' '/')"
        log "$c: $label failed (status $rc)"
    fi
    return "$rc"
}

# The hooks bench/workloads.sh calls.
step() { counted "$1" "$2" script "$@" || true; }
prep() { counted "$1" "$2" script "$@"; }
skip() { FAIL[$1,$2]="not run: $3"; : >"$WORK/rows/$1.$2"; }

# ---------------------------------------------------------------- workloads
# run_client C: the fixture through a first mount (not counted), then the
# mount, every workload and the unmount through a second one, each counted.
run_client() {
    local c=$1
    log "$c: writing the rename fixture through a first mount"
    mount_client "$c" "$c" "prep-$c" || { skip mount "$c" "mount failed"; return 0; }
    write_fixture "$c" "$MNT_DIR" >/dev/null || true
    unmount_client
    quiesce
    counted mount "$c" mount_client "$c" "$c" "run-$c" || { FAIL[mount,$c]="mount failed"; return 0; }
    run_workloads "$c" "$MNT_DIR"
    counted unmount "$c" unmount_client
}

# ---------------------------------------------------------------- idle
IDLE_FILES=100
POLLS=0
# poll DIR SCRIPT: runs SCRIPT (bash, DIR as $1) once a second for IDLE_S
# seconds; POLLS says how many times.
poll() {
    local t0 i=0
    t0=$(now)
    while awk -v a="$t0" -v b="$(now)" -v d="$IDLE_S" 'BEGIN { exit !(b - a < d) }'; do
        bash -c "$2" _ "$1" || return 1
        i=$((i + 1))
        sleep 1
    done
    POLLS=$i
}
declare -A NPOLLS=() # [label,client] commands run by poll

# idle_client C: IDLE_N mounts of C, each after one `ls -l` of a directory
# of IDLE_FILES objects (the first one counted), left alone for IDLE_S
# seconds; then one mount polled once a second for IDLE_S seconds, with
# `ls -l` of that directory, with `ls` of it, then with `cat` of one of its
# objects; then, through the same mount, the first read of a BIG_MIB MiB
# object it has not seen before.
idle_client() {
    local c=$1 i pids=()
    log "$c: $IDLE_N idle mounts for $IDLE_S s"
    for ((i = 0; i < IDLE_N; i++)); do
        mount_client "$c" idle "idle-$c-$i" || { skip idle "$c" "mount failed"; return 0; }
        pids+=("$MNT_PID")
        if ((i == 0)); then
            quiesce
            counted first-ls "$c" script first-ls "$c" "$MNT_DIR" 'ls -l "$1/dir" >/dev/null' || true
        else
            ls -l "$MNT_DIR/dir" >/dev/null
        fi
    done
    quiesce
    counted idle "$c" sleep "$IDLE_S"
    for ((i = 0; i < IDLE_N; i++)); do
        MNT_DIR=$WORK/mnt/idle-$c-$i MNT_LOG=$LOGS/idle-$c-$i.log MNT_KIND=$c MNT_PID=${pids[$i]}
        unmount_client
    done
    mount_client "$c" idle "poll-$c" || { skip poll-ls "$c" "mount failed"; return 0; }
    ls -l "$MNT_DIR/dir" >/dev/null
    cat "$MNT_DIR/dir/f00000" >/dev/null
    quiesce
    log "$c: \`ls -l\` once a second for $IDLE_S s"
    counted poll-ls "$c" poll "$MNT_DIR" 'ls -l "$1/dir" >/dev/null' || FAIL[poll-ls,$c]="failed"
    NPOLLS[poll-ls,$c]=$POLLS
    log "$c: \`ls\` once a second for $IDLE_S s"
    counted poll-names "$c" poll "$MNT_DIR" 'ls "$1/dir" >/dev/null' || FAIL[poll-names,$c]="failed"
    NPOLLS[poll-names,$c]=$POLLS
    log "$c: \`cat\` once a second for $IDLE_S s"
    counted poll-cat "$c" poll "$MNT_DIR" 'cat "$1/dir/f00000" >/dev/null' || FAIL[poll-cat,$c]="failed"
    NPOLLS[poll-cat,$c]=$POLLS
    drop_caches
    counted cold-read "$c" script cold-read "$c" "$MNT_DIR" 'dd if="$1/big" of=/dev/null bs=8M status=none' || true
    unmount_client
}

# ---------------------------------------------------------------- run
T_START=$(now)
base --bucket idle small --prefix dir/ --count "$IDLE_FILES" --size 4096 >>"$LOGS/idle-objects.log"
base --bucket idle seq-write --key big --size $((BIG_MIB * 1024 * 1024)) --part-size 8M --jobs 8 >>"$LOGS/idle-objects.log"
for c in "${CLIENTS[@]}"; do run_client "$c"; done
# objectfs is also watched with --attrs-from-listing, which spares a HEAD per listed file.
IDLE_CLIENTS=("${CLIENTS[@]}")
[[ " ${CLIENTS[*]} " == *" osv-async "* ]] && IDLE_CLIENTS+=(osv-listing)
for c in "${IDLE_CLIENTS[@]}"; do idle_client "$c"; done
TOTAL_S=$(since "$T_START")

# ---------------------------------------------------------------- report
declare -A CNAME=([osv-async]="objectfs --upload async" [osv-listing]="objectfs --attrs-from-listing" [s3fs]="s3fs" [rclone]="rclone --vfs-cache-mode writes")
declare -A LNAME=(
    [mount]="mount (until the mount answers)"
    [unmount]="unmount (until the process exits)"
    [first-ls]="first \`ls -l\` of $IDLE_FILES objects on a fresh mount"
    [idle]="$IDLE_N idle mounts, $IDLE_S s"
    [poll-ls]="\`ls -l\` of $IDLE_FILES objects once a second, $IDLE_S s"
    [poll-names]="\`ls\` (names only) of $IDLE_FILES objects once a second, $IDLE_S s"
    [poll-cat]="\`cat\` of one 4 KiB object once a second, $IDLE_S s"
    [cold-read]="first read of a $BIG_MIB MiB object (dd bs=8M, page cache dropped)"
)
for w in "${WORKLOADS[@]}"; do LNAME[$w]=${WNAME[$w]}; done
for p in "${PREPS[@]}"; do LNAME[$p]="(preparation) ${PNAME[$p]}"; done
WORKLOAD_ROWS=(ren-fixture mount tar git-input git git-rewrite regit venv sqlite rename read-copy read-first read dd unmount)
IDLE_ROWS=(first-ls idle poll-ls poll-names poll-cat cold-read)

# groups FILE: the requests of a row by kind, then total, errors, bytes to
# and from Garage: "GET HEAD PUT LIST COPY DELETE MPU OTHER TOTAL ERR IN OUT".
groups() {
    awk '
        /^req:/ {
            e = substr($1, 5); n = $2; t += n
            if (e == "GetObject") k = "GET"
            else if (e == "HeadObject") k = "HEAD"
            else if (e == "PutObject") k = "PUT"
            else if (e ~ /^List(Objects|ObjectsV2|ObjectVersions|MultipartUploads|Parts)$/) k = "LIST"
            else if (e == "CopyObject" || e == "UploadPartCopy") k = "COPY"
            else if (e == "DeleteObject" || e == "DeleteObjects") k = "DELETE"
            else if (e ~ /^(CreateMultipartUpload|UploadPart|CompleteMultipartUpload|AbortMultipartUpload)$/) k = "MPU"
            else k = "OTHER"
            g[k] += n
        }
        /^err:/ { errs += $2 }
        $1 == "bytes:in" { bin = $2 }
        $1 == "bytes:out" { bout = $2 }
        END {
            printf "%d %d %d %d %d %d %d %d %d %d %d %d\n", g["GET"], g["HEAD"], g["PUT"], g["LIST"],
                g["COPY"], g["DELETE"], g["MPU"], g["OTHER"], t, errs, bin, bout
        }
    ' "$1"
}
# human BYTES: B, KiB, MiB or GiB, three significant figures.
human() {
    awk -v b="$1" 'BEGIN {
        if (b < 1024) printf "%d B", b
        else if (b < 1048576) printf "%.1f KiB", b / 1024
        else if (b < 1073741824) printf "%.1f MiB", b / 1048576
        else printf "%.2f GiB", b / 1073741824
    }'
}
# errors FILE: "ENDPOINT STATUS ×N, …" of a row's error answers.
errors() { awk '/^err:/ { split($1, a, ":"); printf "%s%s %s ×%d", sep, a[2], a[3], $2; sep = ", " }' "$1"; }
# rate N SECONDS: N / SECONDS with one decimal, or — without a duration.
rate() { isnum "${2:-}" && awk -v n="$1" -v s="$2" 'BEGIN { exit !(s > 0) }' && calc "$1 / $2" || echo "—"; }

# client_table C: one row per step of client C, and their sum.
client_table() {
    local c=$1 label f g t=() n
    echo "| Step | GET | HEAD | PUT | LIST | COPY | DELETE | multipart (create, part, complete) | other | total | error answers | bytes to the store | bytes from the store | active s | requests/s while active | most requests in one second |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    local sum=(0 0 0 0 0 0 0 0 0 0 0 0)
    for label in "${WORKLOAD_ROWS[@]}"; do
        f=$WORK/rows/$label.$c
        [[ -f $f ]] || continue
        read -r -a g < <(groups "$f")
        for n in {0..11}; do sum[n]=$((sum[n] + g[n])); done
        local note=""
        [[ -n ${FAIL[$label,$c]:-} ]] && note=" (${FAIL[$label,$c]})"
        echo "| ${LNAME[$label]}$note | ${g[0]} | ${g[1]} | ${g[2]} | ${g[3]} | ${g[4]} | ${g[5]} | ${g[6]} | ${g[7]} | **${g[8]}** | ${g[9]} | $(human "${g[10]}") | $(human "${g[11]}") | ${WIN[$label,$c]:-—} | $(rate "${g[8]}" "${WIN[$label,$c]:-}") | ${PEAK[$label,$c]:-—} |"
    done
    echo "| all of the above | ${sum[0]} | ${sum[1]} | ${sum[2]} | ${sum[3]} | ${sum[4]} | ${sum[5]} | ${sum[6]} | ${sum[7]} | **${sum[8]}** | ${sum[9]} | $(human "${sum[10]}") | $(human "${sum[11]}") | | | |"
    echo
    local any=0
    for label in "${WORKLOAD_ROWS[@]}"; do
        f=$WORK/rows/$label.$c
        [[ -f $f ]] && grep -q '^err:' "$f" || continue
        ((any)) || echo "Error answers (endpoint, HTTP status): "
        any=1
        echo "- ${LNAME[$label]}: $(errors "$f")"
    done
}

# idle_table: what idle and polled mounts cost, per client.
idle_table() {
    local c label f g per
    echo "| Client | Step | GET | HEAD | PUT | LIST | other | total | bytes to the store | bytes from the store | requests per mount-hour | requests per command |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
    for c in "${IDLE_CLIENTS[@]}"; do
        for label in "${IDLE_ROWS[@]}"; do
            f=$WORK/rows/$label.$c
            [[ -f $f ]] || continue
            read -r -a g < <(groups "$f")
            local mounts=1 cmds="—"
            [[ $label == idle ]] && mounts=$IDLE_N
            [[ -n ${NPOLLS[$label,$c]:-} ]] && cmds="$(calc "${g[8]} / ${NPOLLS[$label,$c]}" %.2f) (${NPOLLS[$label,$c]} commands)"
            per=$(calc "${g[8]} * 3600 / ($mounts * $IDLE_S)" %.0f)
            [[ $label == cold-read || $label == first-ls ]] && per="—" cmds=${g[8]}
            local other=$((g[4] + g[5] + g[6] + g[7]))
            echo "| ${CNAME[$c]} | ${LNAME[$label]}${FAIL[$label,$c]:+ (${FAIL[$label,$c]})} | ${g[0]} | ${g[1]} | ${g[2]} | ${g[3]} | $other | **${g[8]}** | $(human "${g[10]}") | $(human "${g[11]}") | $per | $cmds |"
        done
    done
}

header() {
    echo "store requests per agent workload (issue 16) — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, kernel $(uname -r)"
    echo "commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$( [[ -n $(git -C "$ROOT" status --porcelain 2>/dev/null) ]] && echo ' (working tree has uncommitted changes)'), server: Garage $("$GARAGE" --version 2>/dev/null | awk '{ sub(/^cargo:/, "", $2); print $2 }') on $ENDPOINT (requests: its api_s3_request_counter; bytes: nftables counters on its port, IP headers included); s3fs $(s3fs --version 2>/dev/null | grep -o 'V[0-9.]*' | head -1); $(rclone version 2>/dev/null | head -1)"
    echo "a step ends when Garage has seen no request and no byte for $QUIET_S s; \"active s\" runs from its start to its last request or byte; whole run ${TOTAL_S} s"
}

table() {
    local c
    for c in "${CLIENTS[@]}"; do
        echo "#### ${CNAME[$c]}"
        echo
        client_table "$c"
        echo
    done
    echo "#### Idle, polled and cold-reading mounts"
    echo
    idle_table
}

emit_report

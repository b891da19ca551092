#!/usr/bin/env bash
# bench/idle.sh — what an idle object mount costs in memory (issue 16,
# "Density": where the idle memory goes). Mounts N objectfs mounts
# (`opensandbox-volume mount`, defaults) and N s3fs mounts of one Garage
# bucket on loopback, each with its own cache directory, lets them sit idle
# after one `ls`, and prints per client the resident memory of a mount
# process (median, max, total), split into anonymous and file-backed pages,
# its proportional share (PSS: pages shared with the other mounts, such as
# the binary's code, divided among them), its thread count, and, for objectfs, where the anonymous memory lies
# (heap, thread stacks, other mappings; from /proc/PID/smaps). Figures
# only: no target is checked here.
#
#   bench/idle.sh [--mounts N] [--out FILE] [--keep] [--no-build]
#
#   --mounts N  mounts per client (default 40)
#   --out FILE  also write the report (Markdown) to FILE
#   --keep      keep the work directory
#   --no-build  use the binaries already in target/release
#
# Needs root and /dev/fuse; Garage as for bench/objectfs.sh (bench/lib.sh).
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

OUT="" KEEP=0 NO_BUILD=0 BEFORE="" N=40
# The options of this script only (bench/lib.sh parse_args has the common ones).
own_arg() {
    case $1 in
    --mounts) N=${2:?--mounts needs a number}; TAKEN=2 ;;
    esac
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
parse_args "$@"
[[ $N =~ ^[1-9][0-9]*$ ]] || { echo "--mounts must be a positive number" >&2; exit 2; }


# Idle time before memory is read: past the first release of start-up pages
# (src/residency.rs, RELEASE_EVERY = 30 s), so the figures are a mount's steady state.
IDLE_S=40

need_root_fuse
install_missing s3fs:s3fs fusermount3:fuse3
build_all
make_workdir
BUCKET=idle
start_garage "$BUCKET"

# status_kb PID FIELD: a /proc/PID/status field in KiB (0 when gone).
status_kb() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# anon_split PID: "heap stacks other" anonymous resident KiB from smaps:
# [heap], the thread stacks (anonymous mappings right below a guard page
# are hard to tell apart, so stacks are counted from the threads' sizes:
# the [stack] mapping plus mappings of exactly a stack's size), the rest.
anon_split() {
    awk '
        /^[0-9a-f]+-[0-9a-f]+ / { name = $6; split($1, r, "-"); size = 0 }
        /^Size:/ { size = $2 }
        /^Anonymous:/ {
            if (name == "[heap]") heap += $2
            else if (name == "[stack]" || size == 8192 || size == 2048) stacks += $2
            else other += $2
        }
        END { printf "%d %d %d\n", heap, stacks, other }
    ' "/proc/$1/smaps" 2>/dev/null || echo "0 0 0"
}

# pss_kb PID: proportional set size in KiB (0 when gone).
pss_kb() { awk '$1 == "Pss:" { print $2 }' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }

declare -A RSS ANON FILEB PSS THREADS HEAP STACKS OTHER
for kind in osv-async s3fs; do
    pids=()
    log "$kind: mounting $N"
    for ((i = 0; i < N; i++)); do
        mount_client "$kind" "$BUCKET" "$kind-$i" || die "$kind mount $i failed"
        ls "$MNT_DIR" >/dev/null
        pids+=("$MNT_PID")
    done
    log "$kind: idle for $IDLE_S s"
    sleep "$IDLE_S"
    RSS[$kind]="" ANON[$kind]="" FILEB[$kind]="" PSS[$kind]="" THREADS[$kind]=""
    HEAP[$kind]="" STACKS[$kind]="" OTHER[$kind]=""
    for p in "${pids[@]}"; do
        RSS[$kind]+="$(status_kb "$p" VmRSS) "
        ANON[$kind]+="$(status_kb "$p" RssAnon) "
        FILEB[$kind]+="$(status_kb "$p" RssFile) "
        PSS[$kind]+="$(pss_kb "$p") "
        THREADS[$kind]+="$(awk '$1 == "Threads:" { print $2 }' "/proc/$p/status") "
        read -r h s o < <(anon_split "$p")
        HEAP[$kind]+="$h " STACKS[$kind]+="$s " OTHER[$kind]+="$o "
    done
    log "$kind: unmounting"
    for ((i = 0; i < N; i++)); do
        MNT_DIR=$WORK/mnt/$kind-$i MNT_LOG=$LOGS/$kind-$i.log MNT_KIND=$kind MNT_PID=${pids[$i]}
        unmount_client
    done
done

mib() { calc "$1 / 1024" "%.1f"; }
sum() { local t=0 v; for v in "$@"; do t=$((t + v)); done; echo "$t"; }
max() { printf '%s\n' "$@" | sort -n | tail -1; }

{
    echo "idle mounts (issue 16) — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(awk '/MemTotal/ { printf "%d GiB", $2 / 1048576 }' /proc/meminfo) RAM, kernel $(uname -r)  "
    echo "commit $(git -C "$ROOT" rev-parse --short HEAD), server: Garage on $ENDPOINT; s3fs $(s3fs --version 2>&1 | grep -o 'V[0-9][0-9.]*' | head -1); $N mounts per client, each after one \`ls\`, measured after $IDLE_S s idle  "
    echo
    echo "| Client | RSS per mount, median (max) | anonymous, median | file-backed, median | PSS, median | threads, median | total RSS of $N mounts | total PSS of $N mounts |"
    echo "|---|---|---|---|---|---|---|---|"
    for kind in osv-async s3fs; do
        # shellcheck disable=SC2086
        echo "| $kind | $(mib "$(median ${RSS[$kind]})") MiB ($(mib "$(max ${RSS[$kind]})") MiB) | $(mib "$(median ${ANON[$kind]})") MiB | $(mib "$(median ${FILEB[$kind]})") MiB | $(mib "$(median ${PSS[$kind]})") MiB | $(median ${THREADS[$kind]}) | $(mib "$(sum ${RSS[$kind]})") MiB | $(mib "$(sum ${PSS[$kind]})") MiB |"
    done
    echo
    echo "Anonymous memory of an objectfs mount, median: heap $(mib "$(median ${HEAP[osv-async]})") MiB, thread stacks $(mib "$(median ${STACKS[osv-async]})") MiB, other anonymous mappings (allocator arenas, buffers) $(mib "$(median ${OTHER[osv-async]})") MiB."
    if ((${#PROBLEMS[@]})); then
        echo
        echo "Problems seen:"
        printf -- '- %s\n' "${PROBLEMS[@]}"
    fi
} | tee "${OUT:-/dev/null}"

#!/usr/bin/env bash
# bench/density.sh — many object volumes on one host (issue 16, "Density"):
# what a sandbox's object volume adds to `docker run`, and what N idle
# mounts cost in memory. Starts Garage on loopback and the legacy plugin
# (`opensandbox-volume serve`, its own driver name and state directory),
# then starts N containers with an s3 volume of their own (own prefix,
# keys from a credential profile) interleaved with N containers with a
# host directory bound in, timing each `docker run -d` from start to exit.
# With all of them running and idle it reads every mount process's
# resident memory (RSS, anonymous, file-backed), its proportional share
# (PSS) and the drop in MemAvailable; then it removes every container and
# volume and checks that no mount, mount process or volume of the run is
# left. Prints the figures; targets are printed beside them, not enforced.
#
#   bench/density.sh [--volumes N] [--out FILE] [--keep] [--no-build]
#
#   --volumes N  containers per kind (default 200)
#   --out FILE   also write the report (Markdown) to FILE
#   --keep       keep the work directory
#   --no-build   use the binaries already in target/release
#
# Needs root, /dev/fuse, a dockerd answering on DOCKER_HOST (or the default
# socket) and the image OSV_TEST_IMAGE (default osv-test-busybox, built by
# scripts/test.sh); Garage as for bench/objectfs.sh (bench/lib.sh).
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

OUT="" KEEP=0 NO_BUILD=0 BEFORE="" N=200
# The options of this script only (bench/lib.sh parse_args has the common ones).
own_arg() {
    case $1 in
    --volumes) N=${2:?--volumes needs a number}; TAKEN=2 ;;
    esac
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
parse_args "$@"
[[ $N =~ ^[1-9][0-9]*$ ]] || { echo "--volumes must be a positive number" >&2; exit 2; }


# Idle time before memory is read: past the first release of start-up pages
# (src/residency.rs, RELEASE_EVERY = 30 s), so the figures are a mount's steady state.
IDLE_S=40

IMAGE=${OSV_TEST_IMAGE:-osv-test-busybox}
# The driver name: the plugin's socket file name, unique to this run.
DRIVER=osvdensity$$
SOCK=/run/docker/plugins/$DRIVER.sock
# Names of this run's containers and volumes start with this.
TAG=osvd$$-

need_root_fuse
docker info >/dev/null 2>&1 || die "no dockerd answers (start one, see ../shared/docs/ENVIRONMENT.md)"
docker image inspect "$IMAGE" >/dev/null 2>&1 || die "image $IMAGE is missing (scripts/test.sh builds it)"
build_all
make_workdir
BUCKET=density
start_garage "$BUCKET"
PLUGIN_PID=""

# Removes this run's containers and volumes and stops the plugin, then the
# shared cleanup (Garage, work directory). Runs on every exit.
density_cleanup() {
    local rc=$? ids i
    set +e
    ids=$(docker ps -aq --filter "name=^$TAG")
    [[ -n $ids ]] && docker rm -f $ids >/dev/null 2>&1
    ids=$(docker volume ls -q --filter "name=^$TAG")
    [[ -n $ids ]] && docker volume rm -f $ids >/dev/null 2>&1
    if [[ -n $PLUGIN_PID ]]; then
        kill -TERM "$PLUGIN_PID" 2>/dev/null
        for ((i = 0; i < 300; i++)); do kill -0 "$PLUGIN_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$PLUGIN_PID" 2>/dev/null
    fi
    rm -f "$SOCK"
    (exit "$rc")
    cleanup
}
trap density_cleanup EXIT

# The plugin: own socket, state directory and credential profile, so the
# keys never pass through docker's command line.
STATE=$WORK/state
mkdir -p "$STATE" "$WORK/credentials" "$WORK/host"
install -m 0600 /dev/null "$WORK/credentials/bench.json"
printf '{"accessKeyId": "%s", "accessKeySecret": "%s"}\n' "$KEY_ID" "$KEY_SECRET" >"$WORK/credentials/bench.json"
CLEANUP_EXTRA+=(state host)
"$BIN" serve --socket "$SOCK" --state-dir "$STATE" --credentials-dir "$WORK/credentials" \
    >"$LOGS/plugin.log" 2>&1 &
PLUGIN_PID=$!
for ((i = 0; i < 100; i++)); do [[ -S $SOCK ]] && break; sleep 0.1; done
[[ -S $SOCK ]] || die "the plugin did not listen on $SOCK (see $LOGS/plugin.log)"

# run_timed NAME ARGS...: `docker run -d --name NAME ARGS`, prints the seconds it took.
run_timed() {
    local name=$1 t0
    shift
    t0=$(now)
    docker run -d --name "$name" "$@" >>"$LOGS/docker-run.log" 2>&1 || die "docker run $name failed (see $LOGS/docker-run.log)"
    since "$t0"
}

# percentile P VALUES...: the P-th percentile (nearest rank).
percentile() {
    local p=$1
    shift
    printf '%s\n' "$@" | sort -g | awk -v p="$p" '{ v[NR] = $1 } END { r = int((p * NR + 99) / 100); if (r < 1) r = 1; print v[r] }'
}
ms() { calc "$1 * 1000" "%.0f"; }

mem_available_kb() { awk '/^MemAvailable:/ { print $2 }' /proc/meminfo; }
mount_pids() { pgrep -f -- "$BIN mount" || true; }
mounts_of_run() { grep -c " $STATE/" /proc/self/mountinfo || true; }

settle
sync
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
MEM_BEFORE=$(mem_available_kb)
MOUNT_PIDS_BEFORE=$(mount_pids | wc -l)
HOST_T=() OBJ_T=()
log "starting $N containers with a host directory and $N with an s3 volume, interleaved"
for ((i = 0; i < N; i++)); do
    mkdir -p "$WORK/host/$i"
    HOST_T+=("$(run_timed "${TAG}h$i" -v "$WORK/host/$i:/data" "$IMAGE" sleep 1000000)")
    OBJ_T+=("$(run_timed "${TAG}o$i" --mount "type=volume,source=${TAG}v$i,target=/data,volume-driver=$DRIVER,volume-opt=type=s3,volume-opt=bucket=$BUCKET,volume-opt=endpoint=$ENDPOINT,volume-opt=prefix=sandbox-$i,volume-opt=credentials=bench" "$IMAGE" sleep 1000000)")
    if (((i + 1) % 50 == 0)); then log "  $((i + 1)) of each running"; fi
done

# Every object container writes one file, so each mount has done real work.
for ((i = 0; i < N; i++)); do
    docker exec "${TAG}o$i" sh -c "echo sandbox-$i > /data/hello.txt" || problem "writing in ${TAG}o$i failed"
done
log "all running; idle for $IDLE_S s"
sleep "$IDLE_S"
MEM_AFTER=$(mem_available_kb)
mapfile -t PIDS_NOW < <(mount_pids)
RSS=() ANON=() FILEB=() PSS=() THREADS=()
for p in "${PIDS_NOW[@]}"; do
    RSS+=("$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$p/status")")
    ANON+=("$(awk '$1 == "RssAnon:" { print $2 }' "/proc/$p/status")")
    FILEB+=("$(awk '$1 == "RssFile:" { print $2 }' "/proc/$p/status")")
    PSS+=("$(awk '$1 == "Pss:" { print $2 }' "/proc/$p/smaps_rollup")")
    THREADS+=("$(awk '$1 == "Threads:" { print $2 }' "/proc/$p/status")")
done
NPROC=$((${#PIDS_NOW[@]} - MOUNT_PIDS_BEFORE))
NMOUNTS=$(mounts_of_run)
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

log "removing every container and volume"
t0=$(now)
docker rm -f $(docker ps -aq --filter "name=^$TAG") >/dev/null
docker volume rm $(docker volume ls -q --filter "name=^$TAG") >/dev/null
REMOVE_S=$(since "$t0")
for ((i = 0; i < 300; i++)); do
    [[ $(mount_pids | wc -l) -le $MOUNT_PIDS_BEFORE && $(mounts_of_run) -eq 0 ]] && break
    sleep 0.1
done
LEFT_PROCS=$(($(mount_pids | wc -l) - MOUNT_PIDS_BEFORE))
LEFT_MOUNTS=$(mounts_of_run)
LEFT_VOLUMES=$(docker volume ls -q --filter "name=^$TAG" | wc -l)
LEFT_STATE=$(find "$STATE" -mindepth 1 -maxdepth 1 -name '*.json' | wc -l)
((LEFT_PROCS <= 0)) || problem "$LEFT_PROCS mount processes left after removal"
((LEFT_MOUNTS == 0)) || problem "$LEFT_MOUNTS mounts left after removal"
((LEFT_VOLUMES == 0)) || problem "$LEFT_VOLUMES volumes left after removal"
# Every sandbox's file reached the bucket.
IN_BUCKET=0
for ((i = 0; i < N; i++)); do
    [[ $(base --bucket "$BUCKET" head --key "sandbox-$i/hello.txt" 2>/dev/null) =~ size=[0-9] ]] &&
        IN_BUCKET=$((IN_BUCKET + 1))
done
((IN_BUCKET == N)) || problem "only $IN_BUCKET of $N files reached the bucket"

mib() { calc "$1 / 1024" "%.1f"; }
sum() { local t=0 v; for v in "$@"; do t=$((t + v)); done; echo "$t"; }
HP50=$(percentile 50 "${HOST_T[@]}") HP99=$(percentile 99 "${HOST_T[@]}")
OP50=$(percentile 50 "${OBJ_T[@]}") OP99=$(percentile 99 "${OBJ_T[@]}")
{
    echo "density (issue 16) — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(awk '/MemTotal/ { printf "%d GiB", $2 / 1048576 }' /proc/meminfo) RAM, kernel $(uname -r)  "
    echo "commit $(git -C "$ROOT" rev-parse --short HEAD), $(docker version -f 'dockerd {{.Server.Version}}'), server: Garage on $ENDPOINT; $N containers of each kind, started interleaved, each \`docker run -d\` timed from start to exit; memory after $IDLE_S s idle; load average at start $LOAD_START, when all ran $LOAD_END  "
    echo
    echo "| \`docker run -d\` with | p50 | p99 | max |"
    echo "|---|---|---|---|"
    echo "| a host directory (\`-v DIR:/data\`) | $(ms "$HP50") ms | $(ms "$HP99") ms | $(ms "$(percentile 100 "${HOST_T[@]}")") ms |"
    echo "| an s3 volume of its own (objectfs) | $(ms "$OP50") ms | $(ms "$OP99") ms | $(ms "$(percentile 100 "${OBJ_T[@]}")") ms |"
    echo "| **overhead** (target: ≤ 100 ms p50, ≤ 300 ms p99) | **$(ms "$(calc "$OP50 - $HP50" "%.3f")") ms** | **$(ms "$(calc "$OP99 - $HP99" "%.3f")") ms** | |"
    echo
    echo "| $NPROC idle mount processes | median | max | total |"
    echo "|---|---|---|---|"
    echo "| RSS (target: ≤ 8 MiB) | $(mib "$(median "${RSS[@]}")") MiB | $(mib "$(percentile 100 "${RSS[@]}")") MiB | $(mib "$(sum "${RSS[@]}")") MiB |"
    echo "| anonymous | $(mib "$(median "${ANON[@]}")") MiB | $(mib "$(percentile 100 "${ANON[@]}")") MiB | $(mib "$(sum "${ANON[@]}")") MiB |"
    echo "| file-backed (mostly the shared binary) | $(mib "$(median "${FILEB[@]}")") MiB | $(mib "$(percentile 100 "${FILEB[@]}")") MiB | $(mib "$(sum "${FILEB[@]}")") MiB |"
    echo "| PSS | $(mib "$(median "${PSS[@]}")") MiB | $(mib "$(percentile 100 "${PSS[@]}")") MiB | $(mib "$(sum "${PSS[@]}")") MiB |"
    echo "| threads | $(median "${THREADS[@]}") | $(percentile 100 "${THREADS[@]}") | $(sum "${THREADS[@]}") |"
    echo
    echo "MemAvailable fell by $(mib $((MEM_BEFORE - MEM_AFTER))) MiB with $N containers of each kind running ($(calc "($MEM_BEFORE - $MEM_AFTER) / 1024 / $N" "%.2f") MiB per pair, containers and mounts together; the whole machine's figure, meaningful only when nothing else runs). FUSE mounts of the run: $NMOUNTS. Files in the bucket: $IN_BUCKET of $N."
    echo "Removal of all containers and volumes: $REMOVE_S s; left afterwards: $LEFT_PROCS mount processes, $LEFT_MOUNTS mounts, $LEFT_VOLUMES volumes, $LEFT_STATE registry entries."
    if ((${#PROBLEMS[@]})); then
        echo
        echo "Problems seen:"
        printf -- '- %s\n' "${PROBLEMS[@]}"
    fi
} | tee "${OUT:-/dev/null}"

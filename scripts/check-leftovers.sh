#!/usr/bin/env bash
# scripts/check-leftovers.sh: fails when the tests left something behind. Run by
# scripts/test.sh after cargo test and check-install.sh, while dockerd still runs.
#
#   scripts/check-leftovers.sh --record FILE   write the Docker objects that exist now
#                                              (plugins, volumes, containers) to FILE
#   scripts/check-leftovers.sh [--since FILE]  check; with FILE, every Docker object not
#                                              in it counts as a leftover as well
#
# A leftover is, one line each on stdout:
#   - a Docker plugin named osvtest* (the tests' managed plugins, the leak probe);
#   - a Docker volume of an osvtest* driver, of the tests' fixed names (osv-path-attacks-*,
#     osv-check-install-*), or not in the --since list;
#   - a container of the test image ($OSV_TEST_IMAGE, default osv-test-busybox), or not
#     in the --since list (the image itself stays);
#   - a Docker network not in the --since list (swarm init makes docker_gwbridge), and the
#     daemon's membership of a swarm when it was in none before (or, without --since, at all);
#   - an objectfs mount (source osv:BUCKET) or an s3fs one, or any mount under the tests'
#     temporary directories (/tmp/osvtest*, /tmp/osv-*, /tmp/.tmp*), in this mount namespace;
#   - a process of opensandbox-volume (serve, mount, supervise), moto_server, s3s-fs, s3fs,
#     the tests' docker-registry, the tests' prometheus (its database in /tmp/osv-prometheus-*;
#     a Prometheus of the host is not the tests'), or the swarm test's second dockerd and
#     its containerd (/tmp/osv-swarm-*);
#   - a socket or spec of the tests' driver in /run/docker/plugins (osvtest*);
#   - the swarm test's bridge of the second dockerd (network interface osvsw*).
# Processes and sockets of a test binary that just ended go away a moment later, so the
# check is repeated for up to $OSV_LEFTOVERS_WAIT seconds (default 10) before it fails.
# Exit status: 0 when nothing is left, 1 when something is (listed), 2 on bad usage.
set -euo pipefail

readonly PLUGIN_DIR=/run/docker/plugins
readonly TEST_IMAGE=${OSV_TEST_IMAGE:-osv-test-busybox}
wait_s=${OSV_LEFTOVERS_WAIT:-10}

docker_objects() {
    docker plugin ls --format 'plugin {{.Name}}'
    docker volume ls --format 'volume {{.Name}}'
    docker ps -a --format 'container {{.Names}}'
    docker network ls --format 'network {{.Name}}'
    echo "swarm $(docker info --format '{{.Swarm.LocalNodeState}}')"
}

since=""
case "${1:-}" in
--record)
    [ -n "${2:-}" ] || { echo "usage: $0 --record FILE" >&2; exit 2; }
    if docker info >/dev/null 2>&1; then docker_objects | sort >"$2"; else : >"$2"; fi
    exit 0
    ;;
--since)
    since=${2:?usage: $0 --since FILE}
    [ -r "$since" ] || { echo "$0: cannot read $since" >&2; exit 2; }
    ;;
"") ;;
*) echo "usage: $0 [--since FILE] | --record FILE" >&2; exit 2 ;;
esac

# True when "$1 $2" (kind, name) was there before the tests (only with --since).
known() {
    [ -n "$since" ] && grep -qxF -- "$1 $2" "$since"
}

find_leftovers() {
    if docker info >/dev/null 2>&1; then
        local name enabled driver image state
        while read -r name enabled; do
            case "$name" in *osvtest*) echo "plugin $name (enabled: $enabled)" ;;
            *) known plugin "$name" || echo "plugin $name (enabled: $enabled; new since the tests began)" ;;
            esac
        done < <(docker plugin ls --format '{{.Name}} {{.Enabled}}')
        while read -r driver name; do
            case "$driver/$name" in
            *osvtest*/* | */osv-path-attacks-* | */osv-check-install-*)
                echo "volume $name (driver $driver)" ;;
            *) known volume "$name" || echo "volume $name (driver $driver; new since the tests began)" ;;
            esac
        done < <(docker volume ls --format '{{.Driver}} {{.Name}}')
        while read -r name image; do
            if [ "$image" = "$TEST_IMAGE" ]; then
                echo "container $name (image $image)"
            elif ! known container "$name"; then
                echo "container $name (image $image; new since the tests began)"
            fi
        done < <(docker ps -a --format '{{.Names}} {{.Image}}')
        while read -r name; do
            known network "$name" || echo "network $name (new since the tests began)"
        done < <(if [ -n "$since" ]; then docker network ls --format '{{.Name}}'; fi)
        state=$(docker info --format '{{.Swarm.LocalNodeState}}')
        if [ "$state" != inactive ] && ! known swarm "$state"; then
            echo "swarm: the daemon is in a swarm (state $state)"
        fi
    fi

    # mountinfo: field 5 is the mount point; type and source follow the " - " separator.
    # objectfs mounts are `fuse` (or `fuse.objectfs`) with source osv:BUCKET.
    awk '{
        point = $5
        for (i = 7; i <= NF; i++) if ($i == "-") { type = $(i + 1); source = $(i + 2); break }
        if (type == "fuse.objectfs" || type == "fuse.s3fs" ||
            (type ~ "^fuse" && source ~ "^osv:") ||
            point ~ "^/tmp/(osvtest|osv-|\\.tmp)")
            print "mount " point " (" type " " source ")"
    }' /proc/self/mountinfo

    local dir pid argv0 cmd
    for dir in /proc/[0-9]*; do
        pid=${dir#/proc/}
        [ "$pid" != "$$" ] || continue
        cmd=$(tr '\0' ' ' <"$dir/cmdline" 2>/dev/null) || continue
        [ -n "$cmd" ] || continue # kernel thread or zombie
        argv0=${cmd%% *}
        case "${argv0##*/} $cmd" in
        "opensandbox-volume "*" serve"* | "opensandbox-volume "*" mount "* | \
            "opensandbox-volume "*" supervise"* | "moto_server "* | "s3s-fs "* | "s3fs "* | \
            "docker-registry "*/tmp/osv-managed-* | "dockerd "*/tmp/osv-swarm-* | \
            "containerd "*/tmp/osv-swarm-* | "prometheus "*/osv-prometheus-*)
            echo "process $pid: ${cmd% }" ;;
        *" "*moto_server" "*) # moto_server runs as `python .../moto_server`
            echo "process $pid: ${cmd% }" ;;
        esac
    done

    local f
    for f in "$PLUGIN_DIR"/osvtest*; do
        [ -e "$f" ] && echo "socket $f"
    done
    for f in /sys/class/net/osvsw*; do
        [ -e "$f" ] && echo "network interface ${f##*/}"
    done
    return 0
}

deadline=$((SECONDS + wait_s))
while :; do
    left=$(find_leftovers)
    [ -n "$left" ] || { echo "check-leftovers: nothing left behind"; exit 0; }
    [ "$SECONDS" -lt "$deadline" ] || break
    sleep 1
done
echo "$left" | sed 's/^/leftover: /'
echo "check-leftovers: $(echo "$left" | wc -l) leftover(s) of the tests" >&2
exit 1

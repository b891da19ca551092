#!/usr/bin/env bash
# scripts/stress.sh: the long form of tests/docker_serial/stress.rs, by hand, on a machine where
# scripts/test.sh has run once (dockerd, moto, the test image are then installed).
#
#   scripts/stress.sh [CONTAINERS [ROUNDS [VOLUMES]]]      defaults: 200 5 10
#
# Starts dockerd if none answers (stopping it again at exit), then runs the stress test
# with those sizes and prints its figures (containers per second, the plugin's peak RSS).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export OSV_STRESS_CONTAINERS=${1:-200} OSV_STRESS_ROUNDS=${2:-5} OSV_STRESS_VOLUMES=${3:-10}
export OSV_TEST_IMAGE=${OSV_TEST_IMAGE:-osv-test-busybox}
export OSV_MOTO_SERVER=${OSV_MOTO_SERVER:-/opt/osv-test-venv/bin/moto_server}
[ -x "$OSV_MOTO_SERVER" ] || { echo "no moto at $OSV_MOTO_SERVER: run scripts/test.sh once first" >&2; exit 1; }
started=""
if ! docker info >/dev/null 2>&1; then
    setsid dockerd --host unix:///var/run/docker.sock --pidfile /run/osv-stress-dockerd.pid \
        >/tmp/osv-stress-dockerd.log 2>&1 </dev/null &
    started=$!
    trap 'kill "$started" 2>/dev/null; wait "$started" 2>/dev/null || true' EXIT
    until docker info >/dev/null 2>&1; do sleep 0.5; done
fi
cargo test --release --test docker_serial stress:: -- --nocapture

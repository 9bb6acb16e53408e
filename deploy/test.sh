#!/usr/bin/env bash
# The test command: installs what is missing, builds everything, starts a private PostgreSQL
# cluster, runs every test tier with ctest, stops the cluster.
#
#   deploy/test.sh                 # BUILD_DIR=build by default
#   BUILD_DIR=build-ci deploy/test.sh -R unit     # extra arguments go to ctest (and skip fuzzing)
#   QUARTET_SKIP_FUZZ=1 deploy/test.sh             # everything but the 3 minutes of fuzzing
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build=${BUILD_DIR:-build}
jobs=${JOBS:-$(nproc)}

start=$(date +%s)
bash deploy/install-deps.sh
# Tests and benchmarks explicitly on: a build tree configured by the quickstart (tests off) must
# not turn this command into one that runs nothing.
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DQUARTET_BUILD_WORKER=ON \
  -DQUARTET_BUILD_TESTS=ON -DQUARTET_BUILD_BENCH=ON >/dev/null
echo "test.sh: building with $jobs jobs"
cmake --build "$build" -j "$jobs"
built=$(date +%s)
echo "test.sh: build took $((built - start)) s"

pgdir=$(mktemp -d /tmp/quartet-test-pg.XXXXXX)
cleanup() {
  "$root/deploy/pg.sh" stop "$pgdir" || true
  rm -rf "$pgdir"
}
trap cleanup EXIT
QUARTET_TEST_PG_URL=$(QUARTET_PG_FAST=1 "$root/deploy/pg.sh" start "$pgdir" quartet_test)
export QUARTET_TEST_PG_URL
export QUARTET_REQUIRE_PG=1
echo "test.sh: PostgreSQL at $QUARTET_TEST_PG_URL"

ctest --test-dir "$build" --output-on-failure --no-tests=error -j 2 --timeout 1500 "$@"
tested=$(date +%s)
echo "test.sh: tests took $((tested - built)) s"

# The fuzz targets (clang, sanitizers, a build of their own), 60 s each; only for a full run.
if [[ $# -eq 0 && "${QUARTET_SKIP_FUZZ:-0}" != 1 ]]; then
  BUILD_DIR="${FUZZ_BUILD_DIR:-build-fuzz}" JOBS="$jobs" bash deploy/fuzz.sh
  echo "test.sh: fuzzing took $(( $(date +%s) - tested )) s"
fi
echo "test.sh: total $(( $(date +%s) - start )) s"

#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) with clang and the sanitizers, and runs each one for a
# while from its seed corpus; any crash, sanitizer report or broken invariant fails the script.
#
#   deploy/fuzz.sh                 # every target, 60 s each
#   FUZZ_SECONDS=600 deploy/fuzz.sh fuzz_campaign_spec
#
# BUILD_DIR (default build-fuzz) is a separate build: every Quartet library in it is instrumented.
# Needs clang with libFuzzer (Debian's clang package); with QUARTET_FUZZ=1 the script installs it
# when it is missing. New inputs found are written to $BUILD_DIR/fuzz-corpus/<target>, crashes to
# $BUILD_DIR/fuzz-artifacts/; tests/fuzz/corpus is only read.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build=${BUILD_DIR:-build-fuzz}
seconds=${FUZZ_SECONDS:-60}
jobs=${JOBS:-$(nproc)}
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(fuzz_campaign_spec fuzz_worker_input fuzz_log_text)

if ! command -v clang++ >/dev/null; then
  if [[ ${QUARTET_FUZZ:-0} == 1 ]]; then
    apt-get install -y clang
  else
    echo "fuzz.sh: clang++ not found; install Debian's clang (or run with QUARTET_FUZZ=1)" >&2
    exit 1
  fi
fi

CC=clang CXX=clang++ cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DQUARTET_BUILD_FUZZ=ON -DQUARTET_BUILD_WORKER=OFF -DQUARTET_BUILD_TESTS=OFF \
  -DQUARTET_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" -j "$jobs" --target "${targets[@]}"

mkdir -p "$build/fuzz-artifacts"
for t in "${targets[@]}"; do
  corpus="$build/fuzz-corpus/$t"
  mkdir -p "$corpus"
  echo "fuzz.sh: $t for ${seconds} s"
  # Seeds first (read-only), then what this and earlier runs found.
  set +e
  "$build/tests/fuzz/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len=65536 -print_final_stats=1 -artifact_prefix="$build/fuzz-artifacts/$t-" \
    "$corpus" "$root/tests/fuzz/corpus/$t" 2>&1 | tail -n 25
  status=${PIPESTATUS[0]}
  set -e
  if [[ $status -ne 0 ]]; then
    echo "fuzz.sh: $t FAILED (exit $status); see $build/fuzz-artifacts/" >&2
    exit 1
  fi
  echo "fuzz.sh: $t ran clean"
done

#!/usr/bin/env bash
# Quartet end to end on one machine: installs what is missing, builds, starts a private PostgreSQL,
# a coordinator and a CPU worker training one candidate per core at once (slots), submits a demo
# campaign on Fashion-MNIST, shows its progress to the end, prints the coverage report and the
# best candidates, and stops everything it started.
#
#   deploy/quickstart.sh
#   QUARTET_HOME=/srv/quartet DEMO_BUDGET=12 deploy/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
home=${QUARTET_HOME:-$root/.quartet}
build=${BUILD_DIR:-build}
budget=${DEMO_BUDGET:-6}
train_limit=${DEMO_TRAIN_LIMIT:-4000}
families=${DEMO_FAMILIES:-Diffuser,DPN68,ICNet,MobileNetV3,ShuffleNet,SqueezeNet}
start=$(date +%s)
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "1/6 dependencies"
bash deploy/install-deps.sh

say "2/6 build (ccache + precompiled LibTorch header; the first build takes a while)"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DQUARTET_BUILD_TESTS=OFF \
  -DQUARTET_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" --target quartet-coordinator quartet-worker quartetctl
bin="$root/$build"

mkdir -p "$home/logs"
pids=()
stop_all() {
  local status=$?
  say "stopping what the quickstart started"
  for pid in "${pids[@]:-}"; do [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]:-}"; do
    [[ -n "$pid" ]] && { timeout 30 tail --pid="$pid" -f /dev/null 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; }
  done
  "$root/deploy/pg.sh" stop "$home/postgres" || true
  echo "database: $home/postgres (start it again with: deploy/pg.sh start $home/postgres)"
  echo "logs:     $home/logs (coordinator.log, worker.log)"
  echo "total time: $(( $(date +%s) - start )) s"
  exit $status
}
trap stop_all EXIT

say "3/6 PostgreSQL"
url=$("$root/deploy/pg.sh" start "$home/postgres")
umask 077 && echo "$url" > "$home/database_url" && umask 022
echo "private cluster at $url (URL in $home/database_url, never on a command line)"

say "4/6 coordinator and a CPU worker with a slot per core"
rm -f "$home/port"
"$bin/coordinator/quartet-coordinator" --listen=127.0.0.1:0 --port_file="$home/port" \
  --database_url_file="$home/database_url" --log_file="$home/logs/coordinator.log" &
pids+=($!)
for _ in $(seq 1 100); do [[ -s "$home/port" ]] && break; sleep 0.1; done
[[ -s "$home/port" ]] || { echo "coordinator did not start; see $home/logs/coordinator.log"; exit 1; }
addr="127.0.0.1:$(cat "$home/port")"
echo "coordinator on $addr"
# One process, one slot per core (--slots defaults to the online CPUs, one thread each): each slot
# leases, trains and reports a candidate of its own.
"$bin/worker/quartet-worker" --coordinator="$addr" --log_file="$home/logs/worker.log" \
  --state_dir="$home/worker" &
pids+=($!)
ctl() { "$bin/cli/quartetctl" --coordinator="$addr" "$@"; }

say "5/6 demo campaign: $budget candidates of 4 experts from {${families//,/, }} on Fashion-MNIST"
out=$(ctl campaign submit --name=quickstart --dataset=fashion-mnist --families="$families" -k 4 \
  --sampler=pair-covering --budget="$budget" --train-limit="$train_limit" --test-limit=1000 \
  --seed=1 --lr=0.003)
echo "$out"
id=$(echo "$out" | sed -n 's/^submitted campaign \([0-9]*\).*/\1/p')
ctl campaign watch "$id" --interval-ms=2000

say "6/6 coverage and results"
ctl report coverage "$id"
echo
ctl results top "$id" -n "$budget"

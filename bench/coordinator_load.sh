#!/usr/bin/env bash
# Coordinator load against Optuna's RDB storage, one run, one private PostgreSQL cluster with fsync
# on (as deployed: deploy/pg.sh without QUARTET_PG_FAST):
#   1. starts the cluster and a coordinator on 127.0.0.1 with worker and admin credentials;
#   2. submits the full C(29,4) = 23,751 space x QUARTET_LOAD_REPEATS repeats (uniform sampler,
#      synthetic data) with quartetctl;
#   3. runs the sweep alone against a second coordinator on --memory_store (what the store costs);
#   4. runs bench/optuna_load.py (database `optuna` of the same cluster) at the same concurrencies;
#   5. runs bench coordinator_load (growth, sweep, metrics) against the PostgreSQL coordinator with
#      the MemoryStore and Optuna rates beside its own.
# The comparisons run first so that the one recorded section holds the ratios. Everything it started (the
# coordinator, the cluster and its directory) goes on exit.
#   bench/coordinator_load.sh [coordinator_load flags, e.g. --record --growth_candidates=50000]
# Environment: QUARTET_BUILD_DIR (default build), QUARTET_LOAD_WORKERS (1,8,32,128,256),
# QUARTET_LOAD_SECONDS (10), QUARTET_LOAD_REPEATS (8), QUARTET_LOAD_ISSUE_AHEAD (256: pending
# candidates kept ready; the default 4 starves more than 4 workers), QUARTET_LOAD_POOL (4: the
# coordinator's --database_pool_size, its default).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${QUARTET_BUILD_DIR:-$root/build}
workers=${QUARTET_LOAD_WORKERS:-1,8,32,128,256}
seconds=${QUARTET_LOAD_SECONDS:-10}
repeats=${QUARTET_LOAD_REPEATS:-8}
issue_ahead=${QUARTET_LOAD_ISSUE_AHEAD:-256}
pool=${QUARTET_LOAD_POOL:-4}
COORDINATOR=$build/coordinator/quartet-coordinator
CTL=$build/cli/quartetctl
LOAD=$build/bench/coordinator_load
for b in "$COORDINATOR" "$CTL" "$LOAD"; do
  [[ -x "$b" ]] || { echo "coordinator_load.sh: $b missing; build it (-DQUARTET_BUILD_BENCH=ON)" >&2; exit 1; }
done
[[ -z "${QUARTET_PG_FAST:-}" ]] || { echo "coordinator_load.sh: unset QUARTET_PG_FAST (fsync must be on)" >&2; exit 1; }

work=$(mktemp -d /tmp/quartet-load.XXXXXX)
coord_pid="" mem_pid=""
cleanup() {
  local status=$?
  [[ -z "$mem_pid" ]] || kill -KILL "$mem_pid" 2>/dev/null || true
  if [[ -n "$coord_pid" ]]; then
    kill -TERM "$coord_pid" 2>/dev/null || true
    timeout 20 tail --pid="$coord_pid" -f /dev/null 2>/dev/null || kill -KILL "$coord_pid" 2>/dev/null || true
  fi
  "$root/deploy/pg.sh" stop "$work/pg" >/dev/null 2>&1 || true
  if [[ $status -ne 0 ]]; then
    echo "---- coordinator log (last 30 lines) ----" >&2
    tail -30 "$work/coordinator.log" >&2 2>/dev/null || true
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

url=$("$root/deploy/pg.sh" start "$work/pg" quartet)
optuna_url=$("$root/deploy/pg.sh" start "$work/pg" optuna)
postmaster=$(head -1 "$work/pg/data/postmaster.pid")
fsync=$(psql "$url" -qtAc "SHOW fsync")
[[ $fsync == on ]] || { echo "coordinator_load.sh: fsync is $fsync" >&2; exit 1; }
psql "$url" -qtAc "SHOW synchronous_commit" | grep -qx on || { echo "coordinator_load.sh: synchronous_commit is off" >&2; exit 1; }

admin=admin-$RANDOM$RANDOM$RANDOM worker=worker-$RANDOM$RANDOM$RANDOM
printf 'admin %s\nworker %s\n' "$admin" "$worker" > "$work/credentials"
echo "$admin" > "$work/admin_token"
echo "$worker" > "$work/worker_token"
echo "$url" > "$work/database_url"
"$COORDINATOR" --listen=127.0.0.1:0 --port_file="$work/port" \
  --database_url_file="$work/database_url" --credentials_file="$work/credentials" \
  --issue_ahead="$issue_ahead" --database_pool_size="$pool" --log_file="$work/coordinator.log" &
coord_pid=$!
for _ in $(seq 1 100); do [[ -s "$work/port" ]] && break; sleep 0.1; done
[[ -s "$work/port" ]] || { echo "coordinator_load.sh: the coordinator did not start" >&2; exit 1; }
addr="127.0.0.1:$(cat "$work/port")"

budget=$((23751 * repeats))
"$CTL" --coordinator="$addr" --token-file="$work/admin_token" campaign submit --name=load \
  --dataset=synthetic -k 4 --sampler=uniform --repeats="$repeats" --budget="$budget" --seed=5 \
  > "$work/submit.txt"
cat "$work/submit.txt"

echo "== The same sweep against a coordinator on --memory_store"
"$COORDINATOR" --memory_store --listen=127.0.0.1:0 --port_file="$work/mem_port" \
  --credentials_file="$work/credentials" --issue_ahead="$issue_ahead" \
  --log_file="$work/memory_coordinator.log" &
mem_pid=$!
for _ in $(seq 1 100); do [[ -s "$work/mem_port" ]] && break; sleep 0.1; done
[[ -s "$work/mem_port" ]] || { echo "coordinator_load.sh: the MemoryStore coordinator did not start" >&2; exit 1; }
mem_addr="127.0.0.1:$(cat "$work/mem_port")"
"$CTL" --coordinator="$mem_addr" --token-file="$work/admin_token" campaign submit --name=load \
  --dataset=synthetic -k 4 --sampler=uniform --repeats="$repeats" --budget="$budget" --seed=5 >/dev/null
"$LOAD" --coordinator="$mem_addr" --worker_token_file="$work/worker_token" --workers="$workers" \
  --seconds="${seconds}s" --coordinator_pid="$mem_pid" --growth_candidates=0 --metric_workers=0 \
  --rates_out="$work/memory.txt" | sed -n '/^Sweep/,/^$/p'
kill -TERM "$mem_pid"
timeout 20 tail --pid="$mem_pid" -f /dev/null || true
mem_pid=""

echo "== Optuna $(/usr/bin/python3 -c 'import optuna; print(optuna.__version__)') RDB storage, same cluster"
/usr/bin/python3 "$root/bench/optuna_load.py" --url="$optuna_url" --workers="$workers" \
  --seconds="$seconds" --postgres_pid="$postmaster" --out="$work/optuna.txt"

echo "== Quartet coordinator (pid $coord_pid, --issue_ahead=$issue_ahead, --database_pool_size=$pool)"
load=$(uptime | sed 's/.*load average: //')
"$LOAD" --coordinator="$addr" --worker_token_file="$work/worker_token" --workers="$workers" \
  --seconds="${seconds}s" --coordinator_pid="$coord_pid" --postgres_pid="$postmaster" \
  --optuna_results="$work/optuna.txt" --memory_results="$work/memory.txt" \
  --note="Driver: \`bench/coordinator_load.sh $*\` (PostgreSQL 15, fsync and synchronous_commit on; coordinator --issue_ahead=$issue_ahead --database_pool_size=$pool; campaign C(29,4) x $repeats repeats, uniform sampler; MEMORYSTORE: the same sweep against a coordinator on --memory_store, run first; Optuna $(/usr/bin/python3 -c 'import optuna; print(optuna.__version__)') RDBStorage, RandomSampler, threads sharing one storage, a study per level, run first on the same cluster). Load average before the Quartet phases: $load." \
  "$@" | tee "$work/load.txt"

completed=$(sed -n 's/^completed //p' "$work/load.txt")
stored=$(psql "$url" -qtAc "SELECT succeeded FROM campaigns ORDER BY id LIMIT 1")
echo "completions: bench $completed, coordinator $stored"
[[ "$completed" == "$stored" ]] || { echo "coordinator_load.sh: the coordinator counted $stored completions, the bench $completed" >&2; exit 1; }

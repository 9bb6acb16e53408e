#!/usr/bin/env bash
# The fault suite: real coordinator and worker processes on a private PostgreSQL cluster, under the
# faults an operator's cluster sees. Four campaigns, one per fault kind:
#   worker-kill    SIGKILL a worker at a random point of its candidate, WORKER_KILLS times
#   coord-kill     SIGKILL the coordinator, outages shorter and longer than the lease
#   pg-restart     restart PostgreSQL: fast restarts and stop / wait / start
#   worker-term    SIGTERM a worker mid-training (a drain), WORKER_TERMS times
# Then, for every campaign: DONE; every candidate SUCCEEDED exactly once; no finished result refused
# or discarded; every SUCCEEDED candidate has its final attempt's per-epoch metric rows; coverage
# counters equal a recount. Prints one FAULT line per trial and a summary table (bench/RESULTS.md).
#   fault_e2e.sh COORDINATOR WORKER QUARTETCTL
COORDINATOR=$1 WORKER=$2 CTL=$3
source "$(dirname "$0")/lib.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)

LEASE_S=${FAULT_LEASE_S:-6}
WORKER_KILLS=${FAULT_WORKER_KILLS:-10}
COORD_OUTAGES=(${FAULT_COORD_OUTAGES:-2 4 9 3 12})   # seconds; lease is LEASE_S
PG_RESTARTS=(${FAULT_PG_RESTARTS:-fast stop:8 fast})  # fast restart, or stop, wait N s, start
WORKER_TERMS=${FAULT_WORKER_TERMS:-3}
RANDOM=${FAULT_SEED:-7}

e2e_init fault
# A cluster of its own: this suite stops and restarts it.
pgdir="$E2E_DIR/pg"
url=$(QUARTET_PG_FAST=1 "$root/deploy/pg.sh" start "$pgdir" quartet_fault)
echo "$url" >"$E2E_DIR/database_url"
E2E_URL=$url
stop_private_pg() { "$root/deploy/pg.sh" stop "$pgdir" >/dev/null 2>&1 || true; }
trap 'e2e_cleanup; stop_private_pg' EXIT

now() { date +%s.%N; }
# health: SERVING or NOT_SERVING from grpc.health.v1 (raw bytes: field 1 = status enum).
health() {
  /usr/bin/python3 - "$COORD_ADDR" <<'PY'
import sys, grpc
ch = grpc.insecure_channel(sys.argv[1])
check = ch.unary_unary('/grpc.health.v1.Health/Check')
try:
    resp = check(b'', timeout=2)
    print({b'\x08\x01': 'SERVING', b'\x08\x02': 'NOT_SERVING'}.get(resp, repr(resp)))
except grpc.RpcError as e:
    print(e.code().name)
PY
}
health_is() { [[ $(health) == "$1" ]]; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
# poll SECONDS CMD...: runs CMD every 0.2 s until it succeeds; fails the suite after SECONDS.
poll() {
  local limit=$1; shift
  local end=$(( $(date +%s) + limit ))
  until "$@"; do
    (( $(date +%s) < end )) || e2e_fail "timed out after ${limit}s: $*"
    sleep 0.2
  done
}

port=""
coordinator_up() {
  local listen=127.0.0.1:${port:-0}
  rm -f "$E2E_DIR/port"
  "$COORDINATOR" --listen="$listen" --port_file="$E2E_DIR/port" \
    --database_url_file="$E2E_DIR/database_url" --log_file="$E2E_DIR/coordinator.log" \
    --lease="${LEASE_S}s" --heartbeat_interval=1s --issue_ahead=2 &
  COORD_PID=$!
  E2E_PIDS+=($COORD_PID)
  poll 20 test -s "$E2E_DIR/port"
  port=$(cat "$E2E_DIR/port")
  COORD_ADDR=127.0.0.1:$port
}

declare -A WPID
worker_up() {
  local id=$1
  "$WORKER" --coordinator="$COORD_ADDR" --worker_id="$id" --threads=1 --slots=1 \
    --log_file="$E2E_DIR/$id.log" --state_dir="$E2E_DIR/$id.state" &
  WPID[$id]=$!
  E2E_PIDS+=(${WPID[$id]})
}

# submit NAME BUDGET PRIORITY: prints the campaign id. Each phase's campaign outranks the earlier
# ones, so its faults hit its own candidates at once.
submit() {
  local out
  out=$(ctl campaign submit --name="$1" --dataset=synthetic --train-limit=384 --test-limit=64 \
    --families=AirNet,ShuffleNet,SqueezeNet,MobileNetV3 -k 2 --repeats=12 --budget="$2" \
    --priority="$3" --batch-size=32 --max-attempts=12 --seed=$((RANDOM)))
  echo "$out" | sed -n 's/^submitted campaign \([0-9]*\).*/\1/p'
}

# A candidate of campaign $1 leased to worker $2 that has begun training: "id token".
held_by() {
  sql "SELECT c.id || ' ' || c.lease_token FROM candidates c WHERE c.campaign_id = $1
       AND c.state = 2 AND c.worker_id LIKE '$2-%' LIMIT 1"
}
# wait_held CAMPAIGN [WORKER]: waits until a candidate of CAMPAIGN is leased (to WORKER); fails
# (status 1) when the campaign has nothing left to lease.
wait_held() {
  local who=""
  [[ -n "${2:-}" ]] && who="AND worker_id LIKE '$2-%'"
  for _ in $(seq 1 600); do  # at most 120 s
    [[ -n $(sql "SELECT 1 FROM candidates WHERE campaign_id = $1 AND state = 2 $who LIMIT 1") ]] &&
      return 0
    [[ $(sql "SELECT count(*) FILTER (WHERE state IN (1, 2)) > 0 OR (SELECT issued < budget
              FROM campaigns WHERE id = $1) FROM candidates WHERE campaign_id = $1") == t ]] ||
      return 1
    sleep 0.2
  done
  e2e_fail "no candidate of campaign $1 was leased ${2:+to $2 }within 120 s"
}
releases=()     # "kind seconds" per trial: fault to the candidate's next lease (or completion)
reattaches=()   # "kind seconds": recovery to the first renewed lease
record() { echo "FAULT $*"; }

# Waits until candidate $1 is leased again under a token other than $2 or has finished.
wait_release() {
  poll 60 bash -c "[[ \$(psql '$E2E_URL' -qtAc \"SELECT (state = 2 AND lease_token <> $2) OR state IN (3, 4, 5) FROM candidates WHERE id = $1\") == t ]]"
}
# Waits until some lease was renewed after time $1 (epoch seconds): a worker has reattached.
wait_renewal() {
  poll 60 bash -c "[[ \$(psql '$E2E_URL' -qtAc \"SELECT count(*) > 0 FROM candidates WHERE state IN (2, 3) AND (lease_deadline > to_timestamp($1) + interval '$LEASE_S seconds' OR finished_at > to_timestamp($1))\") == t ]]"
}

coordinator_up
for w in w1 w2; do worker_up $w; done
start_all=$(now)

# ---- 1. SIGKILL a worker at random points ------------------------------------------------------
c1=$(submit worker-kill 64 0)
[[ -n "$c1" ]] || e2e_fail "submit failed"
for trial in $(seq 1 "$WORKER_KILLS"); do
  w=w$(( (trial % 2) + 1 ))
  wait_held "$c1" "$w" || { record "worker-kill trial $trial skipped: campaign done"; break; }
  sleep "0.$(( RANDOM % 10 ))"
  cand="" token=""
  read -r cand token < <(held_by "$c1" "$w") || true
  [[ -n "${cand:-}" ]] || continue
  t0=$(now)
  kill -KILL "${WPID[$w]}"
  wait "${WPID[$w]}" 2>/dev/null || true
  worker_up "$w"
  wait_release "$cand" "$token"
  releases+=("worker-kill $(since "$t0")")
  record "worker-kill $trial: $w killed holding candidate $cand; re-leased after $(since "$t0") s"
done

# ---- 2. SIGKILL the coordinator ------------------------------------------------------------------
c2=$(submit coord-kill 20 1)
for outage in "${COORD_OUTAGES[@]}"; do
  wait_held "$c2" || { record "coord-kill skipped: campaign done"; break; }
  kill -KILL "$COORD_PID"
  wait "$COORD_PID" 2>/dev/null || true
  sleep "$outage"
  t_start=$(now)
  coordinator_up
  t0=$(now)  # serving again
  wait_renewal "${t0%.*}"
  reattaches+=("coord-kill $(since "$t0")")
  record "coord-kill: outage ${outage}s (lease ${LEASE_S}s); serving $(awk -v a="$t_start" -v b="$t0" 'BEGIN { printf "%.1f", b - a }') s after the restart; workers reattached $(since "$t0") s after that"
done

# ---- 3. Restart PostgreSQL -----------------------------------------------------------------------
c3=$(submit pg-restart 12 2)
for how in "${PG_RESTARTS[@]}"; do
  wait_held "$c3" || { record "pg-restart skipped: campaign done"; break; }
  if [[ $how == fast ]]; then
    "$root/deploy/pg.sh" restart "$pgdir"
  else
    "$root/deploy/pg.sh" stop "$pgdir"
    poll 10 health_is NOT_SERVING
    record "pg-restart: health NOT_SERVING while PostgreSQL is down"
    sleep "${how#stop:}"
    "$root/deploy/pg.sh" start "$pgdir" quartet_fault >/dev/null
    [[ $("$root/deploy/pg.sh" url "$pgdir" quartet_fault) == "$url" ]] ||
      e2e_fail "PostgreSQL came back on another port"
    poll 10 health_is SERVING
  fi
  t0=$(now)
  wait_renewal "${t0%.*}"
  reattaches+=("pg-restart $(since "$t0")")
  record "pg-restart ($how): leases renewed $(since "$t0") s after PostgreSQL was back"
done

# ---- 4. SIGTERM a worker mid-training -------------------------------------------------------------
c4=$(submit worker-term 12 3)
for trial in $(seq 1 "$WORKER_TERMS"); do
  w=w$(( (trial % 2) + 1 ))
  wait_held "$c4" "$w" || { record "worker-term trial $trial skipped: campaign done"; break; }
  cand="" token=""
  read -r cand token < <(held_by "$c4" "$w") || true
  [[ -n "${cand:-}" ]] || continue
  t0=$(now)
  kill -TERM "${WPID[$w]}"
  timeout 10 tail --pid="${WPID[$w]}" -f /dev/null || e2e_fail "$w did not stop within 10 s of SIGTERM"
  stopped=$(since "$t0")
  # A stop that lands after the last step lets the finished result through instead.
  [[ $(sql "SELECT preemptions > 0 OR state = 3 FROM candidates WHERE id = $cand") == t ]] ||
    e2e_fail "candidate $cand was neither handed back as a preemption nor completed"
  worker_up "$w"
  wait_release "$cand" "$token"
  releases+=("worker-term $(since "$t0")")
  record "worker-term $trial: $w stopped in $stopped s; candidate $cand re-leased after $(since "$t0") s"
done

# A stop while the coordinator is away: the hand-back cannot be delivered, so it is spooled and the
# worker still exits within 10 s; the next start delivers it.
if wait_held "$c4" w1; then
  read -r cand token < <(held_by "$c4" w1) || true
  kill -KILL "$COORD_PID"
  wait "$COORD_PID" 2>/dev/null || true
  t0=$(now)
  kill -TERM "${WPID[w1]}"
  timeout 10 tail --pid="${WPID[w1]}" -f /dev/null || e2e_fail "w1 did not stop within 10 s of SIGTERM with the coordinator down"
  stopped=$(since "$t0")
  ls "$E2E_DIR/w1.state/spool/"*.pb >/dev/null 2>&1 || e2e_fail "w1 spooled no report"
  coordinator_up
  worker_up w1
  poll 30 bash -c "! ls '$E2E_DIR'/w1.state/spool/*.pb >/dev/null 2>&1"
  record "worker-term with the coordinator down: w1 stopped in $stopped s, its report spooled and delivered at its next start"
fi

# ---- Checks --------------------------------------------------------------------------------------
for c in "$c1" "$c2" "$c3" "$c4"; do
  poll 400 bash -c "[[ \$(psql '$E2E_URL' -qtAc 'SELECT state FROM campaigns WHERE id = $c') == 4 ]]"
done
ids="$c1, $c2, $c3, $c4"
total=$(sql "SELECT count(*) FROM candidates WHERE campaign_id IN ($ids)")
ok=$(sql "SELECT count(*) FROM candidates WHERE campaign_id IN ($ids) AND state = 3")
[[ $ok == "$total" ]] || e2e_fail "$ok of $total candidates SUCCEEDED: $(sql "SELECT id, state, error_class, error_message FROM candidates WHERE campaign_id IN ($ids) AND state <> 3")"
twice=$(grep -ho "candidate [0-9]* of campaign [0-9]* ([^)]*) SUCCEEDED" "$E2E_DIR/coordinator.log" |
  sort | uniq -d | wc -l)
once=$(grep -ho "candidate [0-9]* of campaign [0-9]* ([^)]*) SUCCEEDED" "$E2E_DIR/coordinator.log" |
  sort -u | wc -l)
[[ $twice == 0 && $once == "$total" ]] || e2e_fail "completions logged: $once distinct, $twice twice (want $total, 0)"
refused=$(cat "$E2E_DIR"/w*.log | grep -c "report refused\|spooled report .* discarded\|not reported, its lease" || true)
[[ $refused == 0 ]] || e2e_fail "$refused finished results refused or discarded: $(grep -h "report refused\|discarded\|not reported" "$E2E_DIR"/w*.log)"
no_metrics=$(sql "SELECT count(*) FROM candidates c WHERE campaign_id IN ($ids) AND state = 3 AND
  NOT EXISTS (SELECT 1 FROM metrics m WHERE m.candidate_id = c.id AND m.attempt = c.attempt
              AND m.name = 'test_accuracy')")
[[ $no_metrics == 0 ]] || e2e_fail "$no_metrics SUCCEEDED candidates lack their final attempt's metric rows"
for c in "$c1" "$c2" "$c3" "$c4"; do
  bad=$(coverage_mismatches "$c")
  [[ $bad == 0 ]] || e2e_fail "campaign $c: $bad coverage rows differ from a recount"
done
spooled=$(cat "$E2E_DIR"/w*.log | grep -c "spooled for the next start" || true)
delivered=$(cat "$E2E_DIR"/w*.log | grep -c "spooled report of candidate .* delivered" || true)
revived=$(grep -c "lease taken back by its holder" "$E2E_DIR/coordinator.log" || true)
preempted=$(sql "SELECT coalesce(sum(preemptions), 0) FROM candidates WHERE campaign_id IN ($ids)")

summary() {  # summary KIND ARRAY...: trials, median and max seconds
  local kind=$1; shift
  local vals n
  vals=$(printf '%s\n' "$@" | awk -v k="$kind" '$1 == k { print $2 }' | sort -n)
  n=$(printf '%s\n' "$vals" | grep -c . || true)
  if [[ $n == 0 ]]; then echo "$kind: 0 trials"; return; fi
  printf '%s\n' "$vals" | awk -v k="$kind" -v n="$n" '{ v[NR] = $1 } END {
    m = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
    printf "%s: %d trials, median %.1f s, max %.1f s\n", k, n, m, v[n] }'
}
report() {
  echo "- Lease ${LEASE_S} s, heartbeat 1 s, 2 workers (1 thread each), $total candidates in 4 campaigns, $(since "$start_all") s in all"
  echo "- Fault to re-lease of the candidate the fault hit:"
  echo "  - $(summary worker-kill "${releases[@]}")"
  echo "  - $(summary worker-term "${releases[@]}")"
  echo "- Recovery to reattach (the first lease renewed or granted after the coordinator served again, or after PostgreSQL was back):"
  echo "  - $(summary coord-kill "${reattaches[@]}") (outages: ${COORD_OUTAGES[*]} s)"
  echo "  - $(summary pg-restart "${reattaches[@]}") (${PG_RESTARTS[*]})"
  echo "- Finished trainings lost (reports refused or discarded): $refused; metric rows lost (SUCCEEDED without final-attempt rows): $no_metrics"
  echo "- Leases taken back after an outage: $revived; reports spooled: $spooled, delivered from the spool: $delivered; preemptions (no attempt used): $preempted"
  echo "- Checks passed: every candidate SUCCEEDED exactly once, coverage counters equal a recount, every campaign DONE"
}
echo "== fault suite summary =="
report
if [[ -n "${FAULT_RECORD:-}" ]]; then
  {
    echo
    echo "## Fault suite"
    echo
    echo "- Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB RAM, $(. /etc/os-release && echo "$PRETTY_NAME")"
    echo "- Date: $(date +%F)"
    echo "- Command: \`FAULT_RECORD=\$PWD/bench/RESULTS.md ctest --test-dir build -L fault --output-on-failure\` (needs QUARTET_TEST_PG_URL; \`deploy/test.sh -L fault\` sets it)"
    report
  } >>"$FAULT_RECORD"
fi
echo "fault e2e: OK"

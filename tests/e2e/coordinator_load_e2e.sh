#!/usr/bin/env bash
# The coordinator load bench as a smoke test: a coordinator with credentials on the test cluster,
# a small campaign, then bench/coordinator_load at 1 and 8 fake workers for 2 s each, a 300
# completion growth phase and 2 metric streams. The bench must finish without an RPC error, and
# the database must agree with it: SUCCEEDED candidates and the campaign's counter equal the
# completions the bench counted, the step metric rows equal the points it was told were stored,
# nothing is left LEASED, and the coverage counters equal a recount.
#   coordinator_load_e2e.sh COORDINATOR QUARTETCTL COORDINATOR_LOAD
COORDINATOR=$1 WORKER=/bin/true CTL=$2 LOAD=$3
source "$(dirname "$0")/lib.sh"
e2e_init load

ADMIN=admin-$RANDOM$RANDOM WORKER_TOKEN=worker-$RANDOM$RANDOM
printf 'admin %s\nworker %s\n' "$ADMIN" "$WORKER_TOKEN" > "$E2E_DIR/credentials"
echo "$ADMIN" > "$E2E_DIR/admin_token"
echo "$WORKER_TOKEN" > "$E2E_DIR/worker_token"
start_coordinator --credentials_file="$E2E_DIR/credentials" --issue_ahead=16

out=$("$CTL" --coordinator="$COORD_ADDR" --token-file="$E2E_DIR/admin_token" campaign submit \
  --name=load-e2e --dataset=synthetic -k 4 --sampler=uniform --budget=5000 --seed=3)
id=$(echo "$out" | sed -n 's/^submitted campaign \([0-9]*\).*/\1/p')
[[ -n "$id" ]] || e2e_fail "no campaign id in: $out"

"$LOAD" --coordinator="$COORD_ADDR" --worker_token_file="$E2E_DIR/worker_token" --workers=1,8 \
  --seconds=2s --growth_candidates=300 --growth_windows=3 --growth_workers=8 --metric_workers=2 \
  --metric_seconds=1s --metric_batch=50 --coordinator_pid="${E2E_PIDS[0]}" \
  > "$E2E_DIR/load.log" 2>&1 || e2e_fail "the bench failed: $(tail -20 "$E2E_DIR/load.log")"
cat "$E2E_DIR/load.log"
completed=$(sed -n 's/^completed //p' "$E2E_DIR/load.log")
points=$(sed -n 's/^metric_points //p' "$E2E_DIR/load.log")
[[ $completed -ge 300 ]] || e2e_fail "only $completed completions"
[[ $points -gt 0 ]] || e2e_fail "no metric point stored"
[[ $(sql "SELECT count(*) FROM candidates WHERE campaign_id = $id AND state = 3") == "$completed" ]] ||
  e2e_fail "SUCCEEDED candidates differ from the bench's $completed completions"
[[ $(sql "SELECT succeeded FROM campaigns WHERE id = $id") == "$completed" ]] ||
  e2e_fail "the campaign's succeeded counter differs from the bench's $completed completions"
[[ $(sql "SELECT count(*) FROM metrics WHERE name = 'step/train_loss'") == "$points" ]] ||
  e2e_fail "metric rows differ from the $points points the coordinator acknowledged"
[[ $(sql "SELECT count(*) FROM candidates WHERE campaign_id = $id AND state = 2") == 0 ]] ||
  e2e_fail "candidates left LEASED"
bad=$(coverage_mismatches "$id")
[[ $bad == 0 ]] || e2e_fail "$bad coverage rows differ from a recount"
echo "coordinator load e2e: OK ($completed completions, $points metric points)"

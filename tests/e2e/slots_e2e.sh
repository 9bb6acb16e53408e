#!/usr/bin/env bash
# End to end: one worker process with two slots (quartet-worker --slots=2).
#   - both slots lease and train at once, each under its own worker id and lease;
#   - their metrics reach /metrics labelled by slot;
#   - SIGTERM hands both candidates back as preemptions (no attempt used) and the process exits 0;
#   - restarted, the worker finishes the campaign, every candidate completed once, the
#     coverage counters equal a recount;
#   - a bad --slots is refused with a message naming the flag.
#   slots_e2e.sh COORDINATOR WORKER QUARTETCTL
COORDINATOR=$1 WORKER=$2 CTL=$3
source "$(dirname "$0")/lib.sh"
e2e_init slots

readonly BUDGET=4
readonly STOP_LIMIT_S=15

if out=$("$WORKER" --coordinator=127.0.0.1:1 --slots=-1 2>&1); then
  e2e_fail "--slots=-1 was accepted"
fi
[[ $out == *"--slots=-1"* ]] || e2e_fail "the refusal does not name the flag: $out"

start_coordinator --lease=8s
metrics_port=$(( 20000 + RANDOM % 20000 ))
start_worker w --slots=2 --metrics_listen="127.0.0.1:$metrics_port"
out=$(ctl campaign submit --name=slots --dataset=synthetic --train-limit=1024 --test-limit=128 \
  --families=Diffuser,DPN68,ICNet,UNet2D -k 2 --budget=$BUDGET --batch-size=32 --seed=5)
id=$(echo "$out" | sed -n 's/^submitted campaign \([0-9]*\).*/\1/p')
[[ -n "$id" ]] || e2e_fail "no campaign id in: $out"

# Two candidates training at once, under two worker ids of this one process, each past its first
# per-step loss point.
wait_for 300 "SELECT count(DISTINCT worker_id) FROM candidates c WHERE campaign_id = $id AND state = 2
  AND worker_id LIKE 'w-slot_-%'
  AND EXISTS (SELECT 1 FROM metrics m WHERE m.candidate_id = c.id AND m.name = 'step/train_loss')" 2
[[ -s "$E2E_DIR/w.state/identity" && -s "$E2E_DIR/w.state/slot-1/identity" ]] ||
  e2e_fail "each slot should keep its identity (state dir and slot-1/)"
page=$(curl -sf "http://127.0.0.1:$metrics_port/metrics") || e2e_fail "no /metrics"
for k in 0 1; do
  [[ $page == *"quartet_worker_current_candidate{slot=\"$k\"}"* ]] ||
    e2e_fail "/metrics has no current candidate of slot $k"
done
held=$(sql "SELECT string_agg(id::text, ',' ORDER BY id) FROM candidates WHERE campaign_id = $id AND state = 2")
echo "slots hold candidates $held"

kill -TERM "$WORKER_PID_w"
timeout "$STOP_LIMIT_S" tail --pid="$WORKER_PID_w" -f /dev/null ||
  e2e_fail "the worker did not stop within ${STOP_LIMIT_S}s of SIGTERM"
wait "$WORKER_PID_w" || e2e_fail "the worker exited with status $? after SIGTERM"
for cand in ${held//,/ }; do
  # A stop that lands after the last step lets the finished result through instead.
  [[ $(sql "SELECT (preemptions > 0 AND attempt = 1 AND state = 1) OR state = 3 FROM candidates WHERE id = $cand") == t ]] ||
    e2e_fail "candidate $cand was neither handed back without using an attempt nor completed"
done

start_worker w --slots=2
wait_for 600 "SELECT count(*) FROM candidates WHERE campaign_id = $id AND state = 3" $BUDGET
for cand in $(sql "SELECT id FROM candidates WHERE campaign_id = $id"); do
  n=$(grep -c "candidate $cand of campaign $id .* SUCCEEDED" "$E2E_DIR/coordinator.log" || true)
  [[ $n == 1 ]] || e2e_fail "candidate $cand completed $n times"
done
[[ $(coverage_mismatches "$id") == 0 ]] || e2e_fail "coverage counters differ from a recount"
echo "E2E PASS: two slots trained at once, SIGTERM handed both back, the restarted worker finished the campaign"

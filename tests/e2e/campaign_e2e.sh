#!/usr/bin/env bash
# End to end: PostgreSQL, a coordinator and two worker processes; quartetctl submits a 6-candidate
# campaign on a Fashion-MNIST subset and watches it to the end; then the database must show every
# candidate SUCCEEDED with metric rows and test accuracy above chance, and coverage counters equal to
# a recount from the candidates table.
#   campaign_e2e.sh COORDINATOR WORKER QUARTETCTL
COORDINATOR=$1 WORKER=$2 CTL=$3
source "$(dirname "$0")/lib.sh"
e2e_init campaign

[[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]] ||
  e2e_fail "Fashion-MNIST missing: install dataset-fashion-mnist (deploy/install-deps.sh does)"

start_coordinator --lease=30s --issue_ahead=2
start_worker w1
start_worker w2

out=$(ctl campaign submit --name=e2e --dataset=fashion-mnist --train-limit="${E2E_TRAIN_LIMIT:-2048}" \
  --test-limit=500 --families=Diffuser,DPN68,ICNet,MobileNetV3,ShuffleNet,SqueezeNet -k 4 \
  --budget=6 --sampler=pair-covering --seed=11 --batch-size=32 --lr=0.003)
echo "$out"
id=$(echo "$out" | sed -n 's/^submitted campaign \([0-9]*\).*/\1/p')
[[ -n "$id" ]] || e2e_fail "no campaign id in: $out"

timeout 1200 "$CTL" --coordinator="$COORD_ADDR" campaign watch "$id" --interval-ms=2000 ||
  e2e_fail "watch did not end with DONE"
ctl report coverage "$id"
ctl results top "$id" -n 6

[[ $(sql "SELECT state FROM campaigns WHERE id = $id") == 4 ]] || e2e_fail "campaign not DONE"
[[ $(sql "SELECT count(*) FROM candidates WHERE campaign_id = $id AND state = 3") == 6 ]] ||
  e2e_fail "not all 6 candidates SUCCEEDED: $(sql "SELECT id, state, error_message FROM candidates WHERE campaign_id = $id")"
missing=$(sql "SELECT count(*) FROM candidates c WHERE campaign_id = $id AND NOT EXISTS
  (SELECT 1 FROM metrics m WHERE m.candidate_id = c.id AND m.name = 'test_accuracy')")
[[ $missing == 0 ]] || e2e_fail "$missing candidates have no test_accuracy metric rows"
low=$(sql "SELECT count(*) FROM candidates WHERE campaign_id = $id AND test_accuracy <= 0.1")
[[ $low == 0 ]] || e2e_fail "$low candidates at or below chance: $(sql "SELECT id, test_accuracy FROM candidates WHERE campaign_id = $id")"
both=$(sql "SELECT count(DISTINCT worker_id) FROM candidates WHERE campaign_id = $id")
[[ $both == 2 ]] || e2e_fail "expected both workers to train, saw $both"
bad=$(coverage_mismatches "$id")
[[ $bad == 0 ]] || e2e_fail "$bad coverage rows differ from a recount"
echo "campaign e2e: OK (accuracies: $(sql "SELECT string_agg(round(test_accuracy::numeric, 3)::text, ' ') FROM candidates WHERE campaign_id = $id"))"

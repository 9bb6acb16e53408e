#!/usr/bin/env bash
# A real multi-fidelity campaign against the same epoch budget at full fidelity, trained by two CPU
# workers (1 thread each, a shared artifact root) through a real coordinator and PostgreSQL:
#   asha  ASHA, rungs 1-3-9 epochs, eta 3, coverage guard on, budget ASHA_BUDGET_EPOCHS epochs
#   full  STRATIFIED at 9 epochs each, ASHA_BUDGET_EPOCHS / 9 candidates (the same epochs)
# Both draw 3 of the quickstart's 6 families (20 combinations x 2 repeats) on a Fashion-MNIST
# subset. Reports the epochs each spent, the candidates each tried, the best accuracy each found
# (and ASHA's best at the full 9 epochs), the wall time, and ASHA's rung table; appends them to
# bench/RESULTS.md. Sized for under 30 minutes per campaign on 2 cores.
#   QUARTET_TEST_PG_URL=... bench/asha_campaign.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/study_lib.sh
study_init "${1:-build}" asha
TRAIN=${ASHA_TRAIN_LIMIT:-2048}
BUDGET_EPOCHS=${ASHA_BUDGET_EPOCHS:-90}
FAMILIES=Diffuser,DPN68,ICNet,MobileNetV3,ShuffleNet,SqueezeNet
start_coordinator --lease=60s --issue_ahead=2
start_worker w1 --artifacts="$E2E_DIR/artifacts"
start_worker w2 --artifacts="$E2E_DIR/artifacts"

# run NAME FLAGS...: submits, watches to the end, prints "ID SECONDS".
run() {
  local name=$1 out id start
  shift
  start=$(date +%s)
  out=$(ctl campaign submit --name="$name" --dataset=fashion-mnist --families="$FAMILIES" -k 3 \
    --sampler=stratified --repeats=2 --seed=11 --train-limit="$TRAIN" --test-limit=1000 \
    --batch-size=64 --lr=0.003 "$@")
  id=$(echo "$out" | sed -n 's/^submitted campaign \([0-9]*\).*/\1/p')
  [[ -n "$id" ]] || e2e_fail "no campaign id in: $out"
  timeout 2400 "$CTL" --coordinator="$COORD_ADDR" campaign watch "$id" --interval-ms=10000 \
    >/dev/null || e2e_fail "campaign $id did not end"
  echo "$id $(($(date +%s) - start))"
}
read -r asha asha_s < <(run asha --budget=40 --rungs=1,3,9 --eta=3 --budget-epochs="$BUDGET_EPOCHS")
read -r full full_s < <(run full --budget=$((BUDGET_EPOCHS / 9)) --epochs=9)

q() { sql "$1"; }
asha_show=$(ctl campaign show "$asha")
echo "$asha_show"
asha_epochs=$(sed -n 's/^  epochs     \([0-9]*\) of.*/\1/p' <<<"$asha_show")
asha_tried=$(q "SELECT issued FROM campaigns WHERE id = $asha")
asha_best=$(q "SELECT round(best_accuracy::numeric, 4) FROM campaigns WHERE id = $asha")
asha_best9=$(q "SELECT coalesce(round(max(test_accuracy)::numeric, 4), 0) FROM candidates
  WHERE campaign_id = $asha AND state = 3")
asha_full=$(q "SELECT count(*) FROM candidates WHERE campaign_id = $asha AND state = 3")
asha_resumed=$(q "SELECT count(*) FROM candidates WHERE campaign_id = $asha
  AND (result->>'resumed_from_epoch')::int > 0")
full_tried=$(q "SELECT issued FROM campaigns WHERE id = $full")
full_best=$(q "SELECT round(best_accuracy::numeric, 4) FROM campaigns WHERE id = $full")
best_combo() {
  q "SELECT array_to_string(families, '+') FROM candidates WHERE id =
     (SELECT best_candidate_id FROM campaigns WHERE id = $1)"
}
cpu=$(study_cpu)
table=$(cat <<EOF
| campaign | epochs spent | candidates tried | trained to 9 epochs | best test accuracy | best combination | wall time |
|---|---|---|---|---|---|---|
| ASHA, rungs 1-3-9, eta 3, coverage guard | $asha_epochs of $BUDGET_EPOCHS | $asha_tried | $asha_full (best $asha_best9) | $asha_best | $(best_combo "$asha") | $((asha_s / 60)) min |
| STRATIFIED, 9 epochs each | $((full_tried * 9)) of $BUDGET_EPOCHS | $full_tried | $full_tried | $full_best | $(best_combo "$full") | $((full_s / 60)) min |
EOF
)
echo "$table"
{
  printf '\n## Multi-fidelity campaign: ASHA against full fidelity at the same epochs (Fashion-MNIST subset, CPU)\n\n'
  printf -- '- Machine: %s, %s cores, Debian 12\n- Date: %s\n' "$cpu" "$(nproc)" "$(date -u +%F)"
  printf -- '- Command: `QUARTET_TEST_PG_URL=... bench/asha_campaign.sh %s` (3 of {%s}, 2 repeats, %s training and 1000 test images, batch 64, lr 0.003, 2 workers of 1 thread sharing an artifact root; %s promoted runs resumed from their checkpoints)\n\n' \
    "$build" "${FAMILIES//,/, }" "$TRAIN" "$asha_resumed"
  echo "$table"
  printf '\nASHA rungs (`quartetctl campaign show %s`):\n\n```\n%s\n```\n' "$asha" \
    "$(sed -n '/^  rungs/,$p' <<<"$asha_show")"
} >> bench/RESULTS.md
echo "appended to bench/RESULTS.md"

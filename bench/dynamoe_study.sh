#!/usr/bin/env bash
# The DynaMoE study as two campaigns without families, trained by two CPU workers (1 thread each)
# through a real coordinator and PostgreSQL:
#   schedules  6 capacity-fair schedules x routers {DYNAMIC, TOP_K} x 3 seeds, no balance loss
#              (the paper's setting)
#   balanced   {UNIFORM, DESCENDING} x {DYNAMIC, TOP_K} x 3 seeds with the Switch balance loss
# Every candidate records per-epoch minibatch gradient variance (K = 10 at fixed weights) and
# per-step gradient norms by parameter group, at the same learning rate and batch for both routers.
# Sized for under 60 minutes on 2 cores: a Fashion-MNIST subset and few epochs (DYNAMOE_TRAIN_LIMIT,
# DYNAMOE_EPOCHS). Appends both campaigns' `report yield` (schedules ranked by mean accuracy with
# 95% intervals, gradient noise by router) to bench/RESULTS.md.
#   QUARTET_TEST_PG_URL=... bench/dynamoe_study.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/study_lib.sh
study_init "${1:-build}" dynamoe
TRAIN=${DYNAMOE_TRAIN_LIMIT:-8192}
EPOCHS=${DYNAMOE_EPOCHS:-3}
start_coordinator --lease=60s --issue_ahead=2
start_worker w1
start_worker w2

# campaign_yaml NAME BUDGET SCHEDULES BALANCE
campaign_yaml() {
  cat <<YAML
name: dynamoe-$1
without_families: true
sampler: SAMPLER_KIND_STRATIFIED
budget: $2
repeats: 3
seed: 1
data: {dataset: DATASET_FASHION_MNIST, train_limit: $TRAIN, test_limit: 2000}
recipe:
  architecture: ARCHITECTURE_DYNAMOE
  epochs: $EPOCHS
  batch_size: 64
  learning_rate: 0.002
  dynamoe_balance: $4
  analyses: {gradient_variance: true, gradient_variance_batches: 10}
axes: {recipe.dynamoe_schedule: [$3], recipe.router: [dynamic, top_k]}
YAML
}

submit() {
  local out id
  out=$(ctl campaign submit -f "$1")
  id=$(echo "$out" | sed -n 's/^submitted campaign \([0-9]*\).*/\1/p')
  [[ -n "$id" ]] || e2e_fail "no campaign id in: $out"
  echo "$id"
}

campaign_yaml schedules 36 "uniform, descending, ascending, pyramid, wave, hourglass" \
  BALANCE_LOSS_NONE > "$E2E_DIR/schedules.yaml"
campaign_yaml balanced 12 "uniform, descending" BALANCE_LOSS_SWITCH > "$E2E_DIR/balanced.yaml"
start=$(date +%s)
schedules=$(submit "$E2E_DIR/schedules.yaml")
balanced=$(submit "$E2E_DIR/balanced.yaml")
for id in "$schedules" "$balanced"; do
  timeout 3600 "$CTL" --coordinator="$COORD_ADDR" campaign watch "$id" --interval-ms=10000 \
    >/dev/null || e2e_fail "campaign $id did not end"
done
minutes=$(( ($(date +%s) - start) / 60 ))
report() { ctl report yield "$1" --min-samples=3 --top=6; }
yield_schedules=$(report "$schedules")
yield_balanced=$(report "$balanced")
echo "$yield_schedules"
echo "$yield_balanced"
# The schedule ranking and the gradient-noise table of a yield report.
excerpt() {
  grep -A8 'yield by recipe.dynamoe_schedule' <<<"$1"
  grep -A3 'yield by recipe.router' <<<"$1"
  sed -n '/^gradient noise by router/,$p' <<<"$1"
}
cpu=$(study_cpu)
{
  printf '\n## DynaMoE study (capacity-fair schedules x DYNAMIC / TOP_K x 3 seeds, Fashion-MNIST subset, CPU)\n\n'
  printf -- '- Machine: %s, %s cores, Debian 12\n- Date: %s\n- Command: `QUARTET_TEST_PG_URL=... bench/dynamoe_study.sh %s` (%s training images, %s epochs, batch 64, lr 0.002, %s min end to end for both campaigns, 2 workers of 1 thread)\n\n' \
    "$cpu" "$(nproc)" "$(date -u +%F)" "$build" "$TRAIN" "$EPOCHS" "$minutes"
  printf 'No balance loss (the paper'"'"'s setting):\n\n```\n%s\n```\n\n' "$(excerpt "$yield_schedules")"
  printf 'Switch balance loss (weight 0.01):\n\n```\n%s\n```\n' "$(excerpt "$yield_balanced")"
} >> bench/RESULTS.md

#!/usr/bin/env bash
# The head study as a campaign: one ResNet backbone (k = 1), a head axis {DENSE, SOFT_MOE,
# SPARSE_MOE, SLOTS_SOFT_MOE} x 3 repeats, trained by two CPU workers through a real coordinator
# and PostgreSQL, each candidate followed by the Hessian (top eigenvalue, Hutchinson trace; train
# and test subsets) and efficiency analyses. Sized for about 20 minutes on 2 cores: Fashion-MNIST
# subset, 1 epoch, the ImageNet stem at 28 px, small analysis subsets. Appends the campaign's
# `report analyses` and `report yield` to bench/RESULTS.md.
#   QUARTET_TEST_PG_URL=... bench/heads_study.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/study_lib.sh
study_init "${1:-build}" heads
TRAIN=${HEADS_TRAIN_LIMIT:-8192}
start_coordinator --lease=60s --issue_ahead=2
start_worker w1
start_worker w2
cat > "$E2E_DIR/heads.yaml" <<YAML
name: heads-study
pool: [ResNet]
k: 1
sampler: SAMPLER_KIND_STRATIFIED
budget: 12
repeats: 3
seed: 1
data: {dataset: DATASET_FASHION_MNIST, train_limit: $TRAIN, test_limit: 2000}
recipe:
  architecture: ARCHITECTURE_HEADS
  head_small_input_stem: false
  batch_size: 64
  analyses: {hessian: true, efficiency: true, train_samples: 256, test_samples: 256,
             batch_size: 128, hessian_top_k: 1, hessian_max_iterations: 20,
             hutchinson_samples: 20, latency_batches: 20, latency_warmup_batches: 5}
axes: {recipe.head: [dense, soft_moe, sparse_moe, slots_soft_moe]}
YAML
start=$(date +%s)
out=$(ctl campaign submit -f "$E2E_DIR/heads.yaml")
id=$(echo "$out" | sed -n 's/^submitted campaign \([0-9]*\).*/\1/p')
[[ -n "$id" ]] || e2e_fail "no campaign id in: $out"
timeout 3600 "$CTL" --coordinator="$COORD_ADDR" campaign watch "$id" --interval-ms=10000 >/dev/null ||
  e2e_fail "the study did not end"
minutes=$(( ($(date +%s) - start) / 60 ))
analyses=$(ctl report analyses "$id")
yield=$(ctl report yield "$id" --min-samples=3 --top=4)
echo "$analyses"
echo "$yield"
cpu=$(study_cpu)
{
  printf '\n## Head study (ResNet backbone, 4 heads x 3 seeds, Fashion-MNIST subset, CPU)\n\n'
  printf -- '- Machine: %s, %s cores, Debian 12\n- Date: %s\n- Command: `QUARTET_TEST_PG_URL=... bench/heads_study.sh %s` (%s training images, %s min end to end, 2 workers of 1 thread)\n\n' \
    "$cpu" "$(nproc)" "$(date -u +%F)" "$build" "$TRAIN" "$minutes"
  printf '```\n%s\n```\n\n```\n%s\n```\n' "$analyses" "$(grep -A7 'yield by recipe.head' <<<"$yield")"
} >> bench/RESULTS.md

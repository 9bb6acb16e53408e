#!/usr/bin/env bash
# End to end with a parameter axis: a campaign file (YAML, axes in the short form) crosses three
# families of four with a router axis {dense, top-k, top-p}; two workers train the 6 candidates on
# a Fashion-MNIST subset. Then: every router was trained (2 candidates each, STRATIFIED), each run
# used its router (3 experts active per sample under dense, at most 2 under top-k), `report yield`
# shows a row per router, the axis coverage counters equal a recount, and a bad axis is refused
# with the axis named and nothing stored. Then a DYNAMOE campaign without families (schedule x
# router axes): refused with a family pool, trained without one; its yield report ranks the
# schedules and shows gradient noise per router, and `results show` prints the per-layer routing.
#   axes_e2e.sh COORDINATOR WORKER QUARTETCTL
COORDINATOR=$1 WORKER=$2 CTL=$3
source "$(dirname "$0")/lib.sh"
e2e_init axes

[[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]] ||
  e2e_fail "Fashion-MNIST missing: install dataset-fashion-mnist (deploy/install-deps.sh does)"

start_coordinator --lease=30s --issue_ahead=2
start_worker w1
start_worker w2

cat > "$E2E_DIR/campaign.yaml" <<YAML
name: axes-e2e
pool: [ICNet, MobileNetV3, ShuffleNet, SqueezeNet]
k: 3
sampler: SAMPLER_KIND_STRATIFIED
budget: 6
seed: 5
data: {dataset: DATASET_FASHION_MNIST, train_limit: ${E2E_TRAIN_LIMIT:-1024}, test_limit: 500}
recipe: {batch_size: 32, learning_rate: 0.003}
axes: {recipe.router: [dense, top-k, top-p]}
YAML

# Bad axes are refused naming the axis; nothing is stored.
if bad=$(ctl campaign submit -f "$E2E_DIR/campaign.yaml" --axis recipe.router=dense,bogus 2>&1); then
  e2e_fail "a bogus router value was accepted: $bad"
fi
[[ $bad == *"axes[0] (recipe.router)"*"not a value of Router"* ]] || e2e_fail "unclear error: $bad"
if bad=$(ctl campaign submit -f "$E2E_DIR/campaign.yaml" --axis recipe.no_such=1 2>&1); then
  e2e_fail "an unknown field path was accepted: $bad"
fi
[[ $bad == *"recipe.no_such"* ]] || e2e_fail "unclear error: $bad"
[[ $(sql "SELECT count(*) FROM campaigns") == 0 ]] || e2e_fail "a refused campaign was stored"

out=$(ctl campaign submit -f "$E2E_DIR/campaign.yaml")
echo "$out"
id=$(echo "$out" | sed -n 's/^submitted campaign \([0-9]*\).*/\1/p')
[[ -n "$id" ]] || e2e_fail "no campaign id in: $out"

timeout 1200 "$CTL" --coordinator="$COORD_ADDR" campaign watch "$id" --interval-ms=2000 ||
  e2e_fail "watch did not end with DONE"
ctl report coverage "$id"
yield=$(ctl report yield "$id" --min-samples=1)
echo "$yield"
ctl results top "$id" -n 6

[[ $(sql "SELECT count(*) FROM candidates WHERE campaign_id = $id AND state = 3") == 6 ]] ||
  e2e_fail "not all 6 candidates SUCCEEDED: $(sql "SELECT id, state, error_message FROM candidates WHERE campaign_id = $id")"
per_router=$(sql "SELECT string_agg(n::text, ' ' ORDER BY r) FROM (SELECT axis_values[1] AS r,
  count(*) AS n FROM candidates WHERE campaign_id = $id GROUP BY 1) t")
[[ $per_router == "2 2 2" ]] || e2e_fail "routers not balanced 2/2/2: $per_router"
active() {
  sql "SELECT coalesce(max(m.value), -1) FROM metrics m JOIN candidates c ON c.id = m.candidate_id
       WHERE c.campaign_id = $id AND m.name = 'mean_active_experts' AND c.axis_values[1] = '$1'"
}
dense=$(active ROUTER_DENSE) topk=$(active ROUTER_TOP_K)
awk -v d="$dense" -v t="$topk" 'BEGIN { exit !(d > 2.99 && t > 0 && t <= 2.0001) }' ||
  e2e_fail "routers did not reach training: active experts dense $dense, top-k $topk"
for r in DENSE TOP_K TOP_P; do
  grep -A6 "yield by recipe.router" <<<"$yield" | grep -q "^$r " ||
    e2e_fail "report yield has no row for $r"
done
bad=$(coverage_mismatches "$id")
[[ $bad == 0 ]] || e2e_fail "$bad coverage rows (families, pairs, axis levels) differ from a recount"

cat > "$E2E_DIR/dynamoe.yaml" <<YAML
name: dynamoe-e2e
without_families: true
sampler: SAMPLER_KIND_STRATIFIED
budget: 4
seed: 3
data: {dataset: DATASET_FASHION_MNIST, train_limit: 512, test_limit: 256}
recipe:
  architecture: ARCHITECTURE_DYNAMOE
  dynamoe_layers: 3
  dynamoe_width: 8
  dynamoe_expert_hidden: 8
  batch_size: 64
  analyses: {gradient_variance: true, gradient_variance_batches: 3}
axes: {recipe.dynamoe_schedule: [uniform, descending], recipe.router: [dynamic, top_k]}
YAML
sed 's/^without_families: true$/pool: [ResNet, VGG]\nk: 1/' "$E2E_DIR/dynamoe.yaml" > "$E2E_DIR/dyn_bad.yaml"
if bad=$(ctl campaign submit -f "$E2E_DIR/dyn_bad.yaml" 2>&1); then
  e2e_fail "a DYNAMOE campaign with a family pool was accepted: $bad"
fi
[[ $bad == *"recipe.architecture"*"without_families"* ]] || e2e_fail "unclear error: $bad"
out=$(ctl campaign submit -f "$E2E_DIR/dynamoe.yaml")
dyn=$(echo "$out" | sed -n 's/^submitted campaign \([0-9]*\).*/\1/p')
[[ -n "$dyn" ]] || e2e_fail "no campaign id in: $out"
timeout 600 "$CTL" --coordinator="$COORD_ADDR" campaign watch "$dyn" --interval-ms=2000 ||
  e2e_fail "the DYNAMOE campaign did not end with DONE"
[[ $(sql "SELECT count(*) FROM candidates WHERE campaign_id = $dyn AND state = 3") == 4 ]] ||
  e2e_fail "not all 4 DYNAMOE candidates SUCCEEDED: $(sql "SELECT id, state, error_message FROM candidates WHERE campaign_id = $dyn")"
dyn_yield=$(ctl report yield "$dyn" --min-samples=1)
echo "$dyn_yield"
grep -q "yield by recipe.dynamoe_schedule (ranked by mean accuracy)" <<<"$dyn_yield" ||
  e2e_fail "no schedule ranking in the yield report"
for r in ROUTER_DYNAMIC ROUTER_TOP_K; do
  sed -n '/^gradient noise by router/,$p' <<<"$dyn_yield" | grep -Eq "^$r +2 " ||
    e2e_fail "no gradient-noise row with 2 candidates for $r"
done
# Dynamic routing ran between 1 and E_0 (5 uniform, 8 descending) experts per token at layer 0.
dyn_active=$(sql "SELECT max(m.value) FROM metrics m JOIN candidates c ON c.id = m.candidate_id
  WHERE c.campaign_id = $dyn AND m.name = 'layer/0/mean_active_experts'
  AND c.axis_values[2] = 'ROUTER_DYNAMIC'")
awk -v a="$dyn_active" 'BEGIN { exit !(a >= 1 && a <= 8) }' ||
  e2e_fail "dynamic routing's layer-0 active experts out of [1, 8]: $dyn_active"
cand=$(sql "SELECT min(id) FROM candidates WHERE campaign_id = $dyn")
shown=$(ctl results show "$cand")
grep -q "routing per layer" <<<"$shown" && grep -q "per-step gradient norms" <<<"$shown" ||
  e2e_fail "results show lacks the per-layer routing: $shown"
echo "axes e2e: OK (active experts: dense $dense, top-k $topk; DYNAMOE layer 0 $dyn_active)"

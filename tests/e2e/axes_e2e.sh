#!/usr/bin/env bash
# End to end with a parameter axis: a campaign file (YAML, axes in the short form) crosses three
# families of four with a router axis {dense, top-k, top-p}; two workers train the 6 candidates on
# a Fashion-MNIST subset. Then: every router was trained (2 candidates each, STRATIFIED), each run
# used its router (3 experts active per sample under dense, at most 2 under top-k), `report yield`
# shows a row per router, the axis coverage counters equal a recount, and a bad axis is refused
# with the axis named and nothing stored.
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
echo "axes e2e: OK (active experts: dense $dense, top-k $topk)"

#!/usr/bin/env bash
# Cost of the whole default post-training analysis (Hessian top-5 and trace on 2,000 train and
# 2,000 test images, the curvature sweep, the 1-D and 2-D loss surfaces, efficiency; every option at
# its default) as a multiple of one training epoch on the same data, in CPU seconds of one thread.
#   epoch     quartet-train: 1 epoch on Fashion-MNIST (test evaluation included), no analysis
#   analysis  the same run with --analyses=hessian,curvature,surface,efficiency, minus the epoch run
# CPU time (user + system of the process) rather than wall time, so that the figure holds on a busy
# machine; every run uses one thread. Also reports the epoch on the analysis's own 2,000-image train
# subset. Appends a section to bench/RESULTS.md.
#   bench/analysis_cost.sh [BUILD_DIR] [FAMILY] [HEAD]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
family=${2:-ICNet}
head=${3:-soft-moe}
readonly ANALYSES=hessian,curvature,surface,efficiency
readonly SUBSET=2000
out=$(mktemp -d /tmp/quartet-analysis-cost.XXXXXX)
common=(--architecture=heads --families="$family" --head="$head" --dataset=fashion-mnist
  --epochs=1 --batch_size=128 --seed=1 --threads=1)

# cpu_seconds NAME ARGS...: runs quartet-train with the common flags and ARGS; prints its CPU
# seconds (user + system).
cpu_seconds() {
  local name=$1
  shift
  /usr/bin/time -f '%U %S' -o "$out/$name.time" "$build/worker/quartet-train" "${common[@]}" \
    --output="$out/$name.json" "$@" >"$out/$name.log" 2>&1 ||
    { tail -20 "$out/$name.log" >&2; echo "quartet-train failed ($name)" >&2; exit 1; }
  awk '{ printf "%.1f", $1 + $2 }' "$out/$name.time"
}

epoch=$(cpu_seconds epoch)
echo "1 epoch, full train split: $epoch CPU s"
subset_epoch=$(cpu_seconds subset_epoch --train_limit=$SUBSET)
echo "1 epoch, $SUBSET-image subset: $subset_epoch CPU s"
whole=$(cpu_seconds analysis --analyses=$ANALYSES)
echo "1 epoch + analysis: $whole CPU s"
analysis=$(awk -v a="$whole" -v b="$epoch" 'BEGIN { printf "%.1f", a - b }')
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }
hvps=$(/usr/bin/python3 -c "
import json
a = json.load(open('$out/analysis.json')).get('analyses', {})
print(sum(int(h.get('hvp_count', 0)) for h in a.get('hessian', [])))")
params=$(/usr/bin/python3 -c "import json; print(json.load(open('$out/epoch.json'))['parameter_count'])")
table=$(cat <<EOF
| run (1 thread) | CPU seconds |
|---|---|
| 1 epoch on the 60,000 training images, test evaluation included | $epoch |
| 1 epoch on the analysis's $SUBSET-image train subset, test evaluation included | $subset_epoch |
| the whole default analysis ($ANALYSES; $hvps Hessian-vector products) | $analysis |
| analysis / full epoch | **$(ratio "$analysis" "$epoch")x** |
| analysis / epoch on the $SUBSET-image subset | $(ratio "$analysis" "$subset_epoch")x |
EOF
)
echo "$table"
{
  printf '\n## Cost of the whole default analysis against one training epoch (HEADS %s + %s, Fashion-MNIST, CPU)\n\n' "$family" "$head"
  printf -- '- Machine: %s, %s cores, Debian 12, LibTorch 1.13.1 CPU, one thread\n- Date: %s\n' \
    "$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)" "$(nproc)" "$(date -u +%F)"
  printf -- '- Command: `bench/analysis_cost.sh %s %s %s` (%s parameters; CPU seconds of each process, user + system, so other load on the machine does not count)\n\n' \
    "$build" "$family" "$head" "$params"
  echo "$table"
} >> bench/RESULTS.md
rm -rf "$out"
echo "appended to bench/RESULTS.md"

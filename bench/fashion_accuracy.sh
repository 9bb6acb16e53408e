#!/usr/bin/env bash
# The accuracy figure: a 1-epoch MoE4 of four light 32-px-native families on the full
# Fashion-MNIST training split (60,000 images), evaluated on the full test split (10,000), with the
# default recipe, trained by quartet-train on this machine. Appends the result to bench/RESULTS.md.
#   bench/fashion_accuracy.sh [BUILD_DIR] [FAMILIES] [extra quartet-train flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
families=${2:-ResNet,ShuffleNet,MobileNetV3,RegNet}
shift $(( $# > 2 ? 2 : $# ))
extra="$*"
out=$(mktemp /tmp/quartet-accuracy.XXXXXX.json)
cmd="$build/worker/quartet-train --families=$families --dataset=fashion-mnist --epochs=1 --seed=1 $extra --output=$out"
start=$(date +%s)
$cmd
seconds=$(( $(date +%s) - start ))
read -r acc wall sps params size < <(/usr/bin/python3 -c "
import json; r = json.load(open('$out')); e = r['epochs'][-1]
print(r['test_accuracy'], r['wall_seconds'], e['samples_per_second'], r['parameter_count'], r['input_size'])")
cpu=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)
{
  printf '\n## Accuracy: 1-epoch MoE4 on the full Fashion-MNIST (CPU)\n\n'
  printf -- '- Machine: %s, %s cores, Debian 12\n- Date: %s\n- Command: `bench/fashion_accuracy.sh %s %s %s`\n  (runs `%s`)\n\n' \
    "$cpu" "$(nproc)" "$(date -u +%F)" "$build" "$families" "$extra" "$cmd"
  printf '| experts | input | parameters | test accuracy | training samples/s | wall time |\n|---|---|---|---|---|---|\n'
  printf '| %s | %s px | %s | %.4f | %.1f | %.0f s (%.1f min) |\n' "${families//,/ + }" "$size" "$params" \
    "$acc" "$sps" "$wall" "$(/usr/bin/python3 -c "print($wall / 60)")"
  printf '\nRecipe: the defaults (AdamW lr 1e-3 with the gate at 2x, 5%% warm-up then cosine per step, batch 32, label smoothing 0.1, mixup 0.2, clip 1.0, DENSE router, training augmentation a random horizontal flip) with the flags above; 1,875 steps; %s LibTorch threads; wall time includes data loading, model build and the final evaluation on all 10,000 test images.\n' "$(nproc)"
} >> bench/RESULTS.md
echo "test accuracy $acc in $wall s ($seconds s end to end)"

#!/usr/bin/env bash
# Candidates per hour on this box for one fixed campaign, trained three ways through a real
# coordinator and PostgreSQL:
#   1 worker x T threads       one candidate at a time on every core (--slots=1 --threads=T)
#   T workers x 1 thread       T worker processes (--slots=1 --threads=1 each)
#   1 worker x T slots         one process training T candidates at once (--slots=T --threads=1)
# where T is the number of online CPUs. Each way trains the same campaign (SLOTS_BUDGET candidates
# of 4 of the quickstart's 6 families on a Fashion-MNIST subset, same seed, so the same
# candidates); the figure is candidates over the wall time from submission to DONE. Appends a
# section to bench/RESULTS.md.
#   QUARTET_TEST_PG_URL=... [SLOTS_ORDER="slots procs one"] bench/slots_throughput.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/study_lib.sh
study_init "${1:-build}" slots_bench
BUDGET=${SLOTS_BUDGET:-8}
TRAIN=${SLOTS_TRAIN_LIMIT:-4000}
FAMILIES=Diffuser,DPN68,ICNet,MobileNetV3,ShuffleNet,SqueezeNet
readonly WATCH_LIMIT_S=3600
cores=$(nproc)
start_coordinator --lease=60s

# run NAME WORKERS FLAGS...: starts WORKERS worker processes with FLAGS, trains the campaign to the
# end, stops the workers; sets RUN_S to the wall seconds. (Not in a subshell: the workers it starts
# stay in E2E_PIDS for the cleanup.)
run() {
  local name=$1 workers=$2 out id start end pids_before
  shift 2
  pids_before=${#E2E_PIDS[@]}
  for w in $(seq 1 "$workers"); do start_worker "$name$w" --slots=1 "$@"; done
  start=$(date +%s.%N)
  out=$(ctl campaign submit --name="$name" --dataset=fashion-mnist --families="$FAMILIES" -k 4 \
    --sampler=pair-covering --budget="$BUDGET" --train-limit="$TRAIN" --test-limit=1000 \
    --seed=1 --lr=0.003)
  id=$(echo "$out" | sed -n 's/^submitted campaign \([0-9]*\).*/\1/p')
  [[ -n "$id" ]] || e2e_fail "no campaign id in: $out"
  timeout "$WATCH_LIMIT_S" "$CTL" --coordinator="$COORD_ADDR" campaign watch "$id" \
    --interval-ms=500 >/dev/null || e2e_fail "campaign $id did not end"
  end=$(date +%s.%N)
  [[ $(sql "SELECT count(*) FROM candidates WHERE campaign_id = $id AND state = 3") == "$BUDGET" ]] ||
    e2e_fail "campaign $name did not succeed on every candidate"
  for pid in "${E2E_PIDS[@]:$pids_before}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${E2E_PIDS[@]:$pids_before}"; do timeout 30 tail --pid="$pid" -f /dev/null || true; done
  RUN_S=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
  echo "$name: $RUN_S s"
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
# SLOTS_ORDER: the order of the three ways (the machine drifts; run again in another order).
order=${SLOTS_ORDER:-one procs slots}
for way in $order; do
  case $way in
    one) run one 1 --threads="$cores"; one_s=$RUN_S ;;
    procs) run procs "$cores" --threads=1; procs_s=$RUN_S ;;
    slots) run slots 1 --slots="$cores" --threads=1; slots_s=$RUN_S ;;
    *) e2e_fail "SLOTS_ORDER: unknown way '$way' (one, procs, slots)" ;;
  esac
done

per_hour() { awk -v s="$1" -v n="$BUDGET" 'BEGIN { printf "%.0f", n * 3600 / s }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
table=$(cat <<EOF
| way | wall time | candidates per hour | against 1 worker x $cores threads |
|---|---|---|---|
| 1 worker x $cores threads (\`--slots=1 --threads=$cores\`) | ${one_s} s | $(per_hour "$one_s") | 1.00x |
| $cores workers x 1 thread (\`--slots=1 --threads=1\` each) | ${procs_s} s | $(per_hour "$procs_s") | $(ratio "$one_s" "$procs_s")x |
| 1 worker x $cores slots (\`--slots=$cores --threads=1\`) | ${slots_s} s | $(per_hour "$slots_s") | $(ratio "$one_s" "$slots_s")x |
EOF
)
echo "$table"
{
  printf '\n## Candidates per hour: slots against threads and processes (Fashion-MNIST, CPU)\n\n'
  printf -- '- Machine: %s, %s cores, Debian 12\n- Date: %s\n' "$(study_cpu)" "$cores" "$(date -u +%F)"
  printf -- '- Command: `QUARTET_TEST_PG_URL=... bench/slots_throughput.sh %s` (%s candidates of 4 of {%s}, pair-covering, seed 1, %s training and 1000 test images, 1 epoch, batch 32, lr 0.003; the same campaign each way, run in the order %s, wall time from submission to DONE; load average before: %s)\n\n' \
    "$build" "$BUDGET" "${FAMILIES//,/, }" "$TRAIN" "$order" "$load_before"
  echo "$table"
} >> bench/RESULTS.md
echo "appended to bench/RESULTS.md"

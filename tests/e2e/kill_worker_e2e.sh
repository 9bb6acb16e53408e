#!/usr/bin/env bash
# End to end: a worker is killed with SIGKILL mid-training. Its candidate must be leased again once
# the lease expires, completed exactly once by the other worker, and a late call with the old lease
# token must be refused.
#   kill_worker_e2e.sh COORDINATOR WORKER QUARTETCTL PROBE
COORDINATOR=$1 WORKER=$2 CTL=$3 PROBE=$4
source "$(dirname "$0")/lib.sh"
e2e_init kill

start_coordinator --lease=4s --issue_ahead=1
start_worker w1
out=$(ctl campaign submit --name=kill --dataset=synthetic --train-limit=4096 --test-limit=256 \
  --families=Diffuser,DPN68,ICNet,UNet2D -k 2 --budget=1 --batch-size=32 --seed=3)
id=$(echo "$out" | sed -n 's/^submitted campaign \([0-9]*\).*/\1/p')
[[ -n "$id" ]] || e2e_fail "no campaign id in: $out"

# Mid-training: leased by w1 and at least one per-step loss point stored.
wait_for 300 "SELECT count(*) FROM candidates c WHERE campaign_id = $id AND state = 2 AND worker_id LIKE 'w1-%'
  AND EXISTS (SELECT 1 FROM metrics m WHERE m.candidate_id = c.id AND m.name = 'step/train_loss')" 1
read -r cand token < <(sql "SELECT id || ' ' || lease_token FROM candidates WHERE campaign_id = $id" | tr -d '\r')
kill -KILL "$WORKER_PID_w1"
echo "killed w1 while it trained candidate $cand (token $token)"

start_worker w2
wait_for 600 "SELECT state FROM candidates WHERE id = $cand" 3

[[ $(sql "SELECT attempt FROM candidates WHERE id = $cand") == 2 ]] || e2e_fail "expected attempt 2"
[[ $(sql "SELECT worker_id FROM candidates WHERE id = $cand") == w2-* ]] || e2e_fail "not completed by w2"
[[ $(sql "SELECT lease_token <> $token FROM candidates WHERE id = $cand") == t ]] ||
  e2e_fail "the second lease did not get a new token"
n=$(grep -c "candidate $cand of campaign $id .* SUCCEEDED" "$E2E_DIR/coordinator.log" || true)
[[ $n == 1 ]] || e2e_fail "candidate completed $n times"
grep -q "candidate $cand of campaign $id: lease of worker w1-[0-9a-f]* expired" "$E2E_DIR/coordinator.log" ||
  e2e_fail "no lease expiry logged"

# The late call proves w1's identity (its id and secret from its state dir): only fencing refuses it.
{ read -r w1_id; read -r w1_secret; } <"$E2E_DIR/w1.state/identity"
late=$("$PROBE" "$COORD_ADDR" complete "$w1_id" "$cand" "$token" "$w1_secret")
[[ $late == FAILED_PRECONDITION* ]] || e2e_fail "late completion with the old token answered: $late"
[[ $(sql "SELECT worker_id FROM candidates WHERE id = $cand") == w2-* ]] || e2e_fail "late call changed the candidate"
forged=$("$PROBE" "$COORD_ADDR" complete "$w1_id" "$cand" "$(sql "SELECT lease_token FROM candidates WHERE id = $cand")")
[[ $forged == PERMISSION_DENIED* ]] || e2e_fail "a completion without the session secret answered: $forged"
[[ $(sql "SELECT state FROM campaigns WHERE id = $id") == 4 ]] || e2e_fail "campaign not DONE"
bad=$(coverage_mismatches "$id")
[[ $bad == 0 ]] || e2e_fail "$bad coverage rows differ from a recount"
echo "kill e2e: OK (late call: $late)"

#!/usr/bin/env bash
# End to end with multi-fidelity and artifacts: bad ASHA settings and a bad artifact root are
# refused naming the field or path, storing nothing; two workers sharing an artifact root run an
# ASHA campaign (rungs 1-2 epochs, eta 2) on a Fashion-MNIST subset. Then: nothing FAILED, every
# candidate is SUCCEEDED or STOPPED_EARLY, every promoted run resumed from its rung-0 checkpoint
# (resumed_from_epoch 1), the epochs granted stay within the budget, `campaign show` prints the
# rung table, the coverage counters equal a recount, only the kept checkpoints remain on disk and
# each matches its recorded size and sha256, and `quartetctl results export ID -o model.pt` writes
# a TorchScript module that Python's torch.jit.load runs.
#   fidelity_e2e.sh COORDINATOR WORKER QUARTETCTL [PYTHON]
COORDINATOR=$1 WORKER=$2 CTL=$3 PYTHON=${4:-/usr/bin/python3}
source "$(dirname "$0")/lib.sh"
e2e_init fidelity

[[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]] ||
  e2e_fail "Fashion-MNIST missing: install dataset-fashion-mnist (deploy/install-deps.sh does)"

# A bad artifact root stops the worker at start, naming the flag and the path.
if out=$("$WORKER" --coordinator=127.0.0.1:1 --artifacts=s3://bucket/x 2>&1); then
  e2e_fail "a worker started with an s3:// artifact root"
fi
[[ $out == *"--artifacts"*"s3://bucket/x"* ]] || e2e_fail "unclear artifact-root error: $out"
touch "$E2E_DIR/a-file"
if out=$("$WORKER" --coordinator=127.0.0.1:1 --artifacts="$E2E_DIR/a-file/sub" 2>&1); then
  e2e_fail "a worker started with an unwritable artifact root"
fi
[[ $out == *"$E2E_DIR/a-file/sub"* ]] || e2e_fail "unclear artifact-root error: $out"

start_coordinator --lease=30s --issue_ahead=2
ART="$E2E_DIR/artifacts"
start_worker w1 --artifacts="$ART"
start_worker w2 --artifacts="file://$ART"

readonly K=2
submit() {
  ctl campaign submit --name=asha-e2e --dataset=fashion-mnist \
    --families=ICNet,MobileNetV3,ShuffleNet,SqueezeNet -k $K --budget=6 --seed=3 \
    --train-limit="${E2E_TRAIN_LIMIT:-512}" --test-limit=300 --batch-size=32 --lr=0.003 \
    --keep-checkpoints=2 "$@"
}
# Bad ASHA settings: refused naming the field; nothing stored.
for bad in "--rungs=2,1" "--rungs=1,2 --eta=1" "--rungs=3,6 --budget-epochs=2" "--eta=3"; do
  # shellcheck disable=SC2086
  if out=$(submit $bad 2>&1); then e2e_fail "accepted: $bad"; fi
  [[ $out == *"fidelity."* ]] || e2e_fail "unclear error for $bad: $out"
done
[[ $(sql "SELECT count(*) FROM campaigns") == 0 ]] || e2e_fail "a refused campaign was stored"

out=$(submit --rungs=1,2 --eta=2 --budget-epochs=10)
echo "$out"
id=$(echo "$out" | sed -n 's/^submitted campaign \([0-9]*\).*/\1/p')
[[ -n "$id" ]] || e2e_fail "no campaign id in: $out"
timeout 1200 "$CTL" --coordinator="$COORD_ADDR" campaign watch "$id" --interval-ms=2000 ||
  e2e_fail "watch did not end with DONE"
show=$(ctl campaign show "$id")
echo "$show"
coverage=$(ctl report coverage "$id")
echo "$coverage"
# The family table's STOPPED EARLY column (before "vs UNIFORM") counts each stopped candidate once
# per family.
stopped=$(sql "SELECT count(*) FROM candidates WHERE campaign_id = $id AND state = 6")
in_table=$(awk '/^FAMILY/ { t = 1; next } t && NF == 0 { exit } t { s += $(NF - 1) } END { print s + 0 }' <<<"$coverage")
[[ $coverage == *"STOPPED EARLY"* && $in_table == $((stopped * K)) ]] ||
  e2e_fail "coverage table shows $in_table stopped-early family counts, expected $stopped x $K"

counts=$(sql "SELECT string_agg(state || ':' || n, ' ' ORDER BY state) FROM
  (SELECT state, count(*) AS n FROM candidates WHERE campaign_id = $id GROUP BY state) t")
echo "states: $counts"
[[ $(sql "SELECT count(*) FROM candidates WHERE campaign_id = $id AND state NOT IN (3, 6)") == 0 ]] ||
  e2e_fail "candidates neither SUCCEEDED nor STOPPED_EARLY: $counts"
promoted=$(sql "SELECT count(*) FROM candidates WHERE campaign_id = $id AND rung = 1")
[[ $promoted -ge 1 ]] || e2e_fail "ASHA promoted nothing"
[[ $(sql "SELECT count(*) FROM candidates WHERE campaign_id = $id AND state = 3") == "$promoted" ]] ||
  e2e_fail "SUCCEEDED candidates are not the promoted ones"
resumed=$(sql "SELECT count(*) FROM candidates WHERE campaign_id = $id AND state = 3
  AND (result->>'resumed_from_epoch')::int = 1 AND (result->>'epochs_trained')::int = 2")
[[ $resumed == "$promoted" ]] ||
  e2e_fail "$resumed of $promoted promoted runs resumed from their rung-0 checkpoint: $(sql "SELECT id, result->>'resumed_from_epoch', result->>'resume_error' FROM candidates WHERE campaign_id = $id AND state = 3")"
issued=$(sql "SELECT issued FROM campaigns WHERE id = $id")
(( issued + promoted <= 10 )) || e2e_fail "epochs over budget: $issued new + $promoted promotions"
[[ $show == *"rungs"* && $show == *"stopped-early"* ]] || e2e_fail "campaign show has no rung table"
[[ $show == *"epochs     $((issued + promoted)) of 10 granted"* ]] ||
  e2e_fail "campaign show does not say the epochs granted"
bad=$(coverage_mismatches "$id")
[[ $bad == 0 ]] || e2e_fail "$bad coverage rows differ from a recount"

# Checkpoints: the live ones exist and match their records; deleted ones are gone from disk.
live=$(sql "SELECT count(*) FROM artifacts WHERE campaign_id = $id AND deleted_at IS NULL AND kind = 1")
(( live >= 1 && live <= 2 )) || e2e_fail "$live checkpoints kept, want 1 or 2 (--keep-checkpoints=2)"
while IFS='|' read -r uri size sha; do
  path=${uri#file://}
  [[ -f $path ]] || e2e_fail "kept artifact missing on disk: $path"
  [[ $(stat -c %s "$path") == "$size" ]] || e2e_fail "size of $path differs from its record"
  [[ $(sha256sum "$path" | cut -d' ' -f1) == "$sha" ]] || e2e_fail "sha256 of $path differs"
done < <(sql "SELECT uri, size_bytes, sha256 FROM artifacts WHERE campaign_id = $id AND deleted_at IS NULL")
while read -r uri; do
  [[ ! -e ${uri#file://} ]] || e2e_fail "a deleted artifact is still on disk: $uri"
done < <(sql "SELECT uri FROM artifacts WHERE campaign_id = $id AND deleted_at IS NOT NULL")
grep -q "deleted checkpoint of candidate" "$E2E_DIR/coordinator.log" ||
  e2e_fail "the coordinator did not log the checkpoints it deleted"

# Export the best model and run it in PyTorch.
best=$(sql "SELECT best_candidate_id FROM campaigns WHERE id = $id")
ctl results export "$best" -o "$E2E_DIR/model.pt" || e2e_fail "export of candidate $best failed"
"$PYTHON" - "$E2E_DIR/model.pt" <<'PY' || e2e_fail "torch.jit.load could not run the export"
import json, sys, torch
extra = {"quartet.json": ""}
m = torch.jit.load(sys.argv[1], _extra_files=extra)
meta = json.loads(extra["quartet.json"])
size, channels = meta["input_size"], meta["channels"]
out = m(torch.zeros(3, channels, size, size))
assert tuple(out.shape) == (3, len(meta["classes"])), out.shape
print("export runs:", meta["architecture"], "input", size, "classes", len(meta["classes"]))
PY
# A candidate without a kept model: a clear NOT_FOUND, nothing written.
gone=$(sql "SELECT id FROM candidates WHERE campaign_id = $id AND exported_model IS NULL LIMIT 1")
if [[ -n $gone ]]; then
  if out=$(ctl results export "$gone" -o "$E2E_DIR/none.pt" 2>&1); then e2e_fail "exported $gone"; fi
  [[ $out == *NOT_FOUND*"no exported model"* && ! -e $E2E_DIR/none.pt ]] ||
    e2e_fail "unclear export error: $out"
fi
echo "fidelity e2e: OK ($issued candidates, $promoted promoted and resumed, $live checkpoints kept)"

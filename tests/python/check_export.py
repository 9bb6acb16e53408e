# Checks `quartetctl results export` output against what ops_client.py stored: the CSV loads with
# Python's csv module (RFC 4180), has the documented columns and one row per candidate with its
# state, accuracy and error message intact; the JSON export holds the same candidates; the coverage
# and yield CSVs load with their header.
#   check_export.py EXPECTED.json RESULTS.csv RESULTS.json COVERAGE.csv YIELD.csv
import csv, json, sys
expected = json.load(open(sys.argv[1]))
want = {r["candidate_id"]: r for r in expected["rows"]}
columns = ["candidate_id", "campaign_id", "families", "rank", "repeat", "recipe.router", "state",
           "test_accuracy", "test_loss", "wall_seconds", "created_at", "started_at", "finished_at",
           "error_class", "error_message", "attempts", "worker_id"]
with open(sys.argv[2], newline="") as f:
    reader = csv.DictReader(f)
    assert reader.fieldnames == columns, reader.fieldnames
    rows = list(reader)
assert len(rows) == len(want), (len(rows), len(want))
assert [int(r["candidate_id"]) for r in rows] == sorted(want), "rows not one per candidate in id order"
for r in rows:
    e = want[int(r["candidate_id"])]
    assert r["state"] == e["state"], (r, e)
    assert r["error_message"] == e["error_message"], (r["error_message"], e["error_message"])
    assert int(r["campaign_id"]) == expected["campaign_id"]
    assert len(r["families"].split("+")) == 2 and r["recipe.router"].startswith("ROUTER_"), r
    assert r["created_at"].endswith("Z"), r["created_at"]
    if e["state"] == "SUCCEEDED":
        assert abs(float(r["test_accuracy"]) - e["test_accuracy"]) < 1e-12, (r, e)
        assert float(r["wall_seconds"]) > 0 and r["finished_at"] and r["worker_id"] == expected["worker_id"], r
    elif e["state"] == "FAILED":
        assert r["error_class"] == "NUMERIC" and "\n" in r["error_message"] and r["test_accuracy"] == "", r
    else:
        assert r["test_accuracy"] == "" and r["finished_at"] == "", r
data = json.load(open(sys.argv[3]))
assert sorted(int(x.get("candidateId", x.get("candidate_id"))) for x in data) == sorted(want), "JSON export differs"
with open(sys.argv[4], newline="") as f:
    cov = list(csv.DictReader(f))
assert sorted(r["family_a"] for r in cov if r["kind"] == "family") == ["AirNet", "BagNet", "ResNet", "VGG"], cov
assert sum(int(r["total"]) for r in cov if r["kind"] == "level") == len(want), cov
with open(sys.argv[5], newline="") as f:
    y = list(csv.DictReader(f))
assert sum(int(r["succeeded"]) for r in y if r["kind"] == "level") == sum(
    e["state"] == "SUCCEEDED" for e in want.values()), y
print(f"export: OK ({len(rows)} rows, {len(cov)} coverage rows, {len(y)} yield rows)")

#!/usr/bin/env bash
# An outside client: stubs generated from proto/ with protoc and grpc_python_plugin, run by
# Debian's python3 (grpcio) against a real coordinator and PostgreSQL (tests/python/axes_client.py),
# then the operator's exports and controls through quartetctl (tests/python/ops_client.py fills a
# campaign, check_export.py reads the CSV back with Python's csv module).
# Skipped (77) when the generator or grpcio is missing.
#   python_client_e2e.sh COORDINATOR QUARTETCTL
COORDINATOR=$1 WORKER=/bin/true CTL=$2
source "$(dirname "$0")/lib.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
command -v protoc >/dev/null && [[ -x /usr/bin/grpc_python_plugin ]] &&
  /usr/bin/python3 -c 'import grpc' 2>/dev/null || { echo "SKIP: protoc, grpc_python_plugin or grpcio missing"; exit 77; }
e2e_init pyclient
mkdir -p "$E2E_DIR/stubs"
protoc -I"$root/proto" --python_out="$E2E_DIR/stubs" --grpc_out="$E2E_DIR/stubs" \
  --plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin "$root"/proto/quartet/v1/*.proto
touch "$E2E_DIR/stubs/quartet/__init__.py" "$E2E_DIR/stubs/quartet/v1/__init__.py"
start_coordinator --lease=30s
/usr/bin/python3 "$root/tests/python/axes_client.py" "$E2E_DIR/stubs" "$COORD_ADDR" ||
  e2e_fail "the Python client failed"

# The operator's exports: quartetctl pages through ListResults (3 per page here) and writes RFC 4180
# CSV and JSON; Python's csv module must read back one row per candidate, messages intact.
/usr/bin/python3 "$root/tests/python/ops_client.py" "$E2E_DIR/stubs" "$COORD_ADDR" > "$E2E_DIR/ops.json" ||
  e2e_fail "the Python operations client failed"
cid=$(/usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["campaign_id"])' "$E2E_DIR/ops.json")
wid=$(/usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["worker_id"])' "$E2E_DIR/ops.json")
ctl results export "$cid" --format=csv --page-size=3 -o "$E2E_DIR/results.csv" || e2e_fail "export csv"
ctl results export "$cid" --format json -o "$E2E_DIR/results.json" || e2e_fail "export json"
ctl report coverage "$cid" --format=csv -o "$E2E_DIR/coverage.csv" || e2e_fail "coverage csv"
ctl report yield "$cid" --format=csv > "$E2E_DIR/yield.csv" || e2e_fail "yield csv"
/usr/bin/python3 "$root/tests/python/check_export.py" "$E2E_DIR/ops.json" "$E2E_DIR/results.csv" \
  "$E2E_DIR/results.json" "$E2E_DIR/coverage.csv" "$E2E_DIR/yield.csv" || e2e_fail "the exports differ"

# Campaign control and the fleet from quartetctl: pause shows in `campaign show`, a budget below
# the issued count is refused with it, the worker is listed and can be drained.
ctl campaign pause "$cid" | grep -q "PAUSED" || e2e_fail "pause"
ctl campaign show "$cid" | grep -q "PAUSED" || e2e_fail "campaign show does not say PAUSED"
if err=$(ctl campaign update "$cid" --budget=1 2>&1); then e2e_fail "a budget below issued was accepted"; fi
grep -q "FAILED_PRECONDITION.*has issued" <<<"$err" || e2e_fail "unclear refusal: $err"
ctl campaign update "$cid" --priority=7 | grep -q "priority 7" || e2e_fail "update priority"
ctl campaign resume "$cid" | grep -q "RUNNING" || e2e_fail "resume"
ctl workers | grep -q "$wid" || e2e_fail "workers does not list $wid"
ctl workers drain "$wid" | grep -q "draining" || e2e_fail "drain"
ctl workers | grep "$wid" | grep -q DRAINING || e2e_fail "workers does not show DRAINING"
echo "operator e2e: OK"

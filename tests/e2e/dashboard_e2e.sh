#!/usr/bin/env bash
# The operator's view end to end: a coordinator with credentials and --http_listen, a campaign
# driven by a scripted worker (tests/e2e/fake_worker.cc), then
#   - the HTTP API refuses a missing, unknown or worker token and answers a viewer token; bad ids
#     and unknown campaigns get 400 and 404 with a message; a bad --http_listen stops the start;
#   - /metrics, scraped before and after, shows the lease and candidate counters moving (granted,
#     refused, expired, candidates by state, queue depth, live workers, RPCs by method and code);
#   - headless Chromium loads the campaign list, campaign and candidate pages with no script error,
#     non-empty charts and the seeded campaign's numbers in the DOM;
#   - `quartetctl report html` writes one self-contained file that renders the same numbers from
#     file:// with no server.
#   dashboard_e2e.sh COORDINATOR QUARTETCTL FAKE_WORKER
COORDINATOR=$1 WORKER=/bin/true CTL=$2 FAKE=$3
source "$(dirname "$0")/lib.sh"
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
[[ -x "$CHROMIUM" ]] || { echo "SKIP: $CHROMIUM missing (apt-get install chromium)"; exit 77; }
e2e_init dashboard

# ---- Start-up refuses a bad address ----
if out=$("$COORDINATOR" --memory_store --listen=127.0.0.1:0 --http_listen=127.0.0.1:http 2>&1); then
  e2e_fail "a bad --http_listen was accepted"
fi
[[ $out == *"--http_listen: '127.0.0.1:http'"*"port"* ]] || e2e_fail "unclear --http_listen error: $out"

VIEWER=viewer-$RANDOM$RANDOM ADMIN=admin-$RANDOM$RANDOM WORKER_TOKEN=worker-$RANDOM$RANDOM
printf 'viewer %s\nadmin %s\nworker %s\n' "$VIEWER" "$ADMIN" "$WORKER_TOKEN" > "$E2E_DIR/credentials"
echo "$ADMIN" > "$E2E_DIR/admin_token"
echo "$WORKER_TOKEN" > "$E2E_DIR/worker_token"
start_coordinator --credentials_file="$E2E_DIR/credentials" --lease=2s \
  --http_listen=127.0.0.1:0 --http_port_file="$E2E_DIR/http_port"
[[ -s "$E2E_DIR/http_port" ]] || e2e_fail "no --http_port_file"
HTTP="http://127.0.0.1:$(cat "$E2E_DIR/http_port")"

# status PATH [curl args]: the HTTP status of a GET.
status() { local p=$1; shift; curl -s -o "$E2E_DIR/body" -w '%{http_code}' "$@" "$HTTP$p"; }
get() { curl -sf -H "Authorization: Bearer $VIEWER" "$HTTP$1"; }
# metric NAME_AND_LABELS: its value in the last scrape (0 when absent).
metric() { awk -v k="$1" '$1 == k { v = $2 } END { print v + 0 }' "$E2E_DIR/metrics"; }
scrape() { get /metrics > "$E2E_DIR/metrics" || e2e_fail "/metrics failed"; }

# ---- Auth ----
[[ $(status /api/campaigns) == 401 ]] || e2e_fail "no token: $(cat "$E2E_DIR/body")"
grep -q "viewer token" "$E2E_DIR/body" || e2e_fail "unclear 401: $(cat "$E2E_DIR/body")"
[[ $(status /api/campaigns -H "Authorization: Bearer nope") == 401 ]] || e2e_fail "bad token accepted"
[[ $(status /metrics) == 401 ]] || e2e_fail "/metrics without a token"
[[ $(status /api/campaigns -H "Authorization: Bearer $WORKER_TOKEN") == 403 ]] ||
  e2e_fail "a worker token read the API: $(cat "$E2E_DIR/body")"
[[ $(status "/api/campaigns?token=$VIEWER") == 200 ]] || e2e_fail "?token= refused"
[[ $(status /api/campaigns -H "Cookie: quartet_token=$ADMIN") == 200 ]] || e2e_fail "cookie refused"
[[ $(status /api/campaigns/abc -H "Authorization: Bearer $VIEWER") == 400 ]] || e2e_fail "bad id"
[[ $(status /api/campaigns/999 -H "Authorization: Bearer $VIEWER") == 404 ]] || e2e_fail "unknown id"
grep -q "campaign 999 not found" "$E2E_DIR/body" || e2e_fail "unclear 404: $(cat "$E2E_DIR/body")"

# ---- A campaign: 12 finished (every 4th failed), 1 lease abandoned to expire ----
scrape
granted0=$(metric 'quartet_leases_granted_total{campaign="1"}')
[[ $granted0 == 0 ]] || e2e_fail "leases granted before any campaign: $granted0"
"$CTL" --coordinator="$COORD_ADDR" --token-file="$E2E_DIR/admin_token" campaign submit \
  --name=dash-e2e --dataset=synthetic --families=ResNet,VGG,AlexNet,DenseNet,ShuffleNet,MobileNetV3 \
  --sampler=pair-covering --budget=15 --seed=7 --max-attempts=2 > "$E2E_DIR/submit.txt" ||
  e2e_fail "submit failed: $(cat "$E2E_DIR/submit.txt")"
"$FAKE" "$COORD_ADDR" 12 4 1 "$E2E_DIR/worker_token" > "$E2E_DIR/fake.txt" ||
  e2e_fail "fake worker failed"
succeeded=$(awk '$1 == "succeeded" { print $2 }' "$E2E_DIR/fake.txt")
failed=$(awk '$1 == "failed" { print $2 }' "$E2E_DIR/fake.txt")
best=$(awk '$1 == "best" { print $2 }' "$E2E_DIR/fake.txt")
[[ $succeeded == 9 && $failed == 3 ]] || e2e_fail "fake worker: $(cat "$E2E_DIR/fake.txt")"

scrape
[[ $(metric quartet_live_workers) == 1 ]] || e2e_fail "live workers: $(metric quartet_live_workers)"

# The abandoned lease expires (lease 2 s, grace 2 s after start).
for _ in $(seq 1 40); do
  scrape
  [[ $(metric 'quartet_leases_expired_total{campaign="1"}') == 1 ]] && break
  sleep 0.25
done
[[ $(metric 'quartet_leases_expired_total{campaign="1"}') == 1 ]] || e2e_fail "no expired lease"
[[ $(metric 'quartet_leases_granted_total{campaign="1"}') == 13 ]] ||
  e2e_fail "leases granted: $(metric 'quartet_leases_granted_total{campaign="1"}'), want 13"
[[ $(metric 'quartet_candidates{campaign="1",state="succeeded"}') == 9 ]] || e2e_fail "succeeded"
[[ $(metric 'quartet_candidates{campaign="1",state="failed"}') == 3 ]] || e2e_fail "failed gauge"
[[ $(metric 'quartet_candidates{campaign="1",state="leased"}') == 0 ]] || e2e_fail "leased gauge"
pending=$(metric 'quartet_candidates{campaign="1",state="pending"}')
[[ $pending -ge 1 && $(metric quartet_queue_depth) == "$pending" ]] || e2e_fail "queue depth"
# The worker stopped calling more than a lease ago: no longer live.
[[ $(metric quartet_live_workers) == 0 ]] || e2e_fail "live workers: $(metric quartet_live_workers)"
[[ $(metric 'quartet_rpc_total{code="OK",method="/quartet.v1.WorkerService/CompleteCandidate"}') == 9 ]] ||
  e2e_fail "CompleteCandidate RPCs: $(grep CompleteCandidate "$E2E_DIR/metrics" | head -3)"
[[ $(metric 'quartet_rpc_total{code="OK",method="/quartet.v1.WorkerService/FailCandidate"}') == 3 ]] ||
  e2e_fail "FailCandidate RPCs"
grep -q '^quartet_rpc_duration_seconds_count{method="/quartet.v1.WorkerService/LeaseCandidate"} [1-9]' \
  "$E2E_DIR/metrics" || e2e_fail "no LeaseCandidate latency histogram"
awk '$1 == "quartet_pg_transaction_duration_seconds_count" && $2 > 0 { ok = 1 } END { exit !ok }' \
  "$E2E_DIR/metrics" || e2e_fail "no PostgreSQL transaction timings"

# ---- Pages in headless Chromium ----
# dom URL OUT: the DOM after the page's scripts ran; console errors go to OUT.console.
dom() {
  timeout 60 "$CHROMIUM" --headless --no-sandbox --disable-gpu --no-first-run \
    --user-data-dir="$E2E_DIR/chromium" --enable-logging=stderr --v=0 \
    --virtual-time-budget=6000 --dump-dom "$1" > "$2" 2> "$2.console" ||
    e2e_fail "chromium failed on $1: $(tail -5 "$2.console")"
  if grep -E 'Uncaught|Failed to load resource' "$2.console"; then e2e_fail "console errors on $1"; fi
  grep -q 'data-ready="1"' "$2" || e2e_fail "$1 never rendered: $(grep -o '<div id="errors"[^<]*<[^<]*' "$2")"
  grep -q '<div id="errors" role="alert"></div>' "$2" ||
    e2e_fail "$1 shows errors: $(grep -o '<div id="errors".\{0,300\}' "$2")"
}
# text FILE ID: the text of the element with that id.
text() { grep -o "id=\"$2\"[^>]*>[^<]*" "$1" | head -1 | sed 's/.*>//'; }

dom "$HTTP/?token=$VIEWER" "$E2E_DIR/list.html"
grep -q 'href="/campaigns/1?token=' "$E2E_DIR/list.html" || e2e_fail "campaign list has no link"

dom "$HTTP/campaigns/1?token=$VIEWER" "$E2E_DIR/campaign.html"
C="$E2E_DIR/campaign.html"
[[ $(text "$C" c-succeeded) == "$succeeded" ]] || e2e_fail "DOM succeeded: $(text "$C" c-succeeded)"
[[ $(text "$C" c-failed) == "$failed" ]] || e2e_fail "DOM failed: $(text "$C" c-failed)"
[[ $(text "$C" c-best) == "$best" ]] || e2e_fail "DOM best: $(text "$C" c-best), want $best"
[[ $(text "$C" c-budget) == 15 ]] || e2e_fail "DOM budget: $(text "$C" c-budget)"
[[ $(text "$C" c-state) == RUNNING ]] || e2e_fail "DOM state: $(text "$C" c-state)"
check_chart() { # FILE SVG_ID PATTERN MIN
  local n
  n=$(sed -n "/<svg id=\"$2\"/,/<\/svg>/p" "$1" | grep -o "$3" | wc -l)
  ((n >= $4)) || e2e_fail "chart $2 has $n of $3, want at least $4"
}
check_chart "$C" chart-progress 'class="series"' 2
check_chart "$C" chart-best 'class="series"' 1
check_chart "$C" chart-coverage 'class="bar"' 6
check_chart "$C" chart-pairs-count 'class="cell"' 12
check_chart "$C" chart-pairs-accuracy 'class="cell"' 2
check_chart "$C" chart-histogram 'class="cell"' 120
grep -q "NUMERIC" "$C" || e2e_fail "no failures by error class"
best_id=$(get /api/campaigns/1 | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["best"][0]["candidateId"])')
grep -q "href=\"/candidates/$best_id?token=" "$C" || e2e_fail "best candidate $best_id not linked"

dom "$HTTP/candidates/$best_id?token=$VIEWER" "$E2E_DIR/candidate.html"
K="$E2E_DIR/candidate.html"
[[ $(text "$K" k-title) == "Candidate $best_id: "* ]] || e2e_fail "candidate title: $(text "$K" k-title)"
grep -q ">$best<" "$K" || e2e_fail "candidate accuracy $best not shown"
check_chart "$K" chart-loss 'class="series"' 2
check_chart "$K" chart-accuracy 'class="series"' 2
[[ $(sed -n '/id="t-epochs"/,/<\/table>/p' "$K" | grep -o '<tr>' | wc -l) == 4 ]] ||
  e2e_fail "candidate epochs table"

# An unknown campaign in the URL: the page says so.
timeout 60 "$CHROMIUM" --headless --no-sandbox --disable-gpu --user-data-dir="$E2E_DIR/chromium" \
  --virtual-time-budget=3000 --dump-dom "$HTTP/campaigns/424242?token=$VIEWER" \
  > "$E2E_DIR/missing.html" 2>/dev/null
grep -q "campaign 424242 not found" "$E2E_DIR/missing.html" || e2e_fail "unknown campaign page"

# ---- The static report ----
"$CTL" --coordinator="$COORD_ADDR" --token-file="$E2E_DIR/admin_token" report html 1 \
  -o "$E2E_DIR/report.html" || e2e_fail "report html failed"
if grep -Eo '(src|href)="[^"#]+' "$E2E_DIR/report.html"; then e2e_fail "the report links out"; fi
if out=$("$CTL" --coordinator="$COORD_ADDR" --token-file="$E2E_DIR/admin_token" report html 999 \
  -o "$E2E_DIR/none.html" 2>&1); then e2e_fail "report html of an unknown campaign"; fi
[[ $out == *"NOT_FOUND"*"999"* && ! -e "$E2E_DIR/none.html" ]] || e2e_fail "unclear: $out"
dom "file://$E2E_DIR/report.html" "$E2E_DIR/report.dom.html"
R="$E2E_DIR/report.dom.html"
[[ $(text "$R" c-succeeded) == "$succeeded" && $(text "$R" c-best) == "$best" ]] ||
  e2e_fail "report numbers: $(text "$R" c-succeeded) $(text "$R" c-best)"
check_chart "$R" chart-pairs-count 'class="cell"' 12
echo "dashboard e2e: OK ($succeeded succeeded, $failed failed, best $best)"

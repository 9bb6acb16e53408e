# Helpers for the end-to-end tests: a fresh database in the test cluster, real coordinator and
# worker processes on loopback, and cleanup of everything a test started. Source it; then call
# e2e_init NAME with the binaries in COORDINATOR, WORKER, CTL.
set -euo pipefail

e2e_fail() { echo "E2E FAIL: $*" >&2; exit 1; }

e2e_init() {
  local name=$1
  [[ -n "${QUARTET_TEST_PG_URL:-}" ]] || {
    if [[ "${QUARTET_REQUIRE_PG:-0}" == "1" ]]; then e2e_fail "QUARTET_TEST_PG_URL not set"; fi
    echo "SKIP: QUARTET_TEST_PG_URL not set (run deploy/test.sh)"; exit 0
  }
  E2E_DIR=$(mktemp -d "/tmp/quartet-e2e-$name.XXXXXX")
  E2E_DB="e2e_${name}_$$"
  E2E_PIDS=()
  psql "$QUARTET_TEST_PG_URL" -qtAc "CREATE DATABASE $E2E_DB" >/dev/null
  E2E_URL="${QUARTET_TEST_PG_URL%/*}/$E2E_DB"
  echo "$E2E_URL" > "$E2E_DIR/database_url"
  trap e2e_cleanup EXIT
}

e2e_cleanup() {
  local status=$?
  for pid in "${E2E_PIDS[@]:-}"; do
    [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${E2E_PIDS[@]:-}"; do
    [[ -n "$pid" ]] && { timeout 20 tail --pid="$pid" -f /dev/null 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; }
  done
  if [[ $status -ne 0 ]]; then
    echo "---- logs of the failed e2e test ($E2E_DIR) ----" >&2
    for f in "$E2E_DIR"/*.log; do [[ -f "$f" ]] && { echo "== $f" >&2; tail -40 "$f" >&2; }; done
  else
    rm -rf "$E2E_DIR"
  fi
  psql "$QUARTET_TEST_PG_URL" -qtAc "DROP DATABASE IF EXISTS $E2E_DB WITH (FORCE)" >/dev/null 2>&1 || true
}

# sql QUERY: one unaligned result.
sql() { psql "$E2E_URL" -qtAc "$1"; }

# start_coordinator [flags...]: sets COORD_ADDR.
start_coordinator() {
  "$COORDINATOR" --listen=127.0.0.1:0 --port_file="$E2E_DIR/port" \
    --database_url_file="$E2E_DIR/database_url" --log_file="$E2E_DIR/coordinator.log" "$@" &
  E2E_PIDS+=($!)
  for _ in $(seq 1 100); do
    [[ -s "$E2E_DIR/port" ]] && break
    sleep 0.1
  done
  [[ -s "$E2E_DIR/port" ]] || e2e_fail "coordinator did not start"
  COORD_ADDR="127.0.0.1:$(cat "$E2E_DIR/port")"
}

# start_worker ID [flags...]: echoes nothing; the pid is in WORKER_PID_<ID>. One slot unless the
# flags say otherwise (the fault tests follow one candidate per worker).
start_worker() {
  local id=$1; shift
  "$WORKER" --coordinator="$COORD_ADDR" --worker_id="$id" --threads=1 --slots=1 \
    --log_file="$E2E_DIR/$id.log" --heartbeat_interval=1s --state_dir="$E2E_DIR/$id.state" "$@" &
  local pid=$!
  E2E_PIDS+=($pid)
  printf -v "WORKER_PID_$id" '%s' "$pid"
}

ctl() { "$CTL" --coordinator="$COORD_ADDR" "$@"; }

# wait_for SECONDS QUERY EXPECTED: polls the database until QUERY returns EXPECTED.
wait_for() {
  local limit=$1 query=$2 want=$3 got=""
  for _ in $(seq 1 $((limit * 2))); do
    got=$(sql "$query" || true)
    [[ "$got" == "$want" ]] && return 0
    sleep 0.5
  done
  e2e_fail "timed out after ${limit}s waiting for [$query] = $want (last: $got)"
}

# The coverage counters of campaign $1 equal counts recomputed from its candidates (families,
# pairs, and the campaign row). Prints the number of mismatching rows.
coverage_mismatches() {
  local id=$1
  sql "
    WITH fam AS (
      SELECT f AS family,
             count(*) FILTER (WHERE state = 1) AS p, count(*) FILTER (WHERE state = 2) AS l,
             count(*) FILTER (WHERE state = 3) AS s, count(*) FILTER (WHERE state = 4) AS x,
             count(*) FILTER (WHERE state = 5) AS c,
             count(*) FILTER (WHERE state = 6) AS e
      FROM candidates, unnest(families) AS f WHERE campaign_id = $id GROUP BY f),
    pr AS (
      SELECT a.f AS fa, b.f AS fb,
             count(*) FILTER (WHERE state = 1) AS p, count(*) FILTER (WHERE state = 2) AS l,
             count(*) FILTER (WHERE state = 3) AS s, count(*) FILTER (WHERE state = 4) AS x,
             count(*) FILTER (WHERE state = 5) AS c,
             count(*) FILTER (WHERE state = 6) AS e
      FROM candidates k,
           unnest(k.families) WITH ORDINALITY AS a(f, i),
           unnest(k.families) WITH ORDINALITY AS b(f, j)
      WHERE k.campaign_id = $id AND a.i < b.j GROUP BY a.f, b.f),
    lv AS (
      SELECT k.state, a.i - 1 AS axis, a.lv AS level, f.family
      FROM candidates k
           CROSS JOIN LATERAL unnest(k.levels) WITH ORDINALITY AS a(lv, i)
           CROSS JOIN LATERAL (SELECT '' AS family UNION ALL
                               SELECT unnest(k.families)) AS f
      WHERE k.campaign_id = $id),
    ax AS (
      SELECT axis, level, family,
             count(*) FILTER (WHERE state = 1) AS p, count(*) FILTER (WHERE state = 2) AS l,
             count(*) FILTER (WHERE state = 3) AS s, count(*) FILTER (WHERE state = 4) AS x,
             count(*) FILTER (WHERE state = 5) AS c,
             count(*) FILTER (WHERE state = 6) AS e
      FROM lv GROUP BY axis, level, family),
    cand AS (
      SELECT count(*) FILTER (WHERE state = 1) AS p, count(*) FILTER (WHERE state = 2) AS l,
             count(*) FILTER (WHERE state = 3) AS s, count(*) FILTER (WHERE state = 4) AS x,
             count(*) FILTER (WHERE state = 5) AS c,
             count(*) FILTER (WHERE state = 6) AS e, count(*) AS n
      FROM candidates WHERE campaign_id = $id)
    SELECT
      (SELECT count(*) FROM family_coverage f LEFT JOIN fam r ON r.family = f.family
       WHERE f.campaign_id = $id AND (f.pending, f.leased, f.succeeded, f.failed, f.cancelled, f.stopped_early)
         IS DISTINCT FROM (coalesce(r.p, 0), coalesce(r.l, 0), coalesce(r.s, 0),
                           coalesce(r.x, 0), coalesce(r.c, 0), coalesce(r.e, 0)))
    + (SELECT count(*) FROM pair_coverage q LEFT JOIN pr r ON r.fa = q.family_a AND r.fb = q.family_b
       WHERE q.campaign_id = $id AND (q.pending, q.leased, q.succeeded, q.failed, q.cancelled, q.stopped_early)
         IS DISTINCT FROM (coalesce(r.p, 0), coalesce(r.l, 0), coalesce(r.s, 0),
                           coalesce(r.x, 0), coalesce(r.c, 0), coalesce(r.e, 0)))
    + (SELECT count(*) FROM pr WHERE NOT EXISTS (SELECT 1 FROM pair_coverage q WHERE
         q.campaign_id = $id AND q.family_a = pr.fa AND q.family_b = pr.fb))
    + (SELECT count(*) FROM axis_coverage q LEFT JOIN ax r
         ON (r.axis, r.level, r.family) = (q.axis, q.level, q.family)
       WHERE q.campaign_id = $id AND (q.pending, q.leased, q.succeeded, q.failed, q.cancelled, q.stopped_early)
         IS DISTINCT FROM (coalesce(r.p, 0), coalesce(r.l, 0), coalesce(r.s, 0),
                           coalesce(r.x, 0), coalesce(r.c, 0), coalesce(r.e, 0)))
    + (SELECT count(*) FROM ax WHERE NOT EXISTS (SELECT 1 FROM axis_coverage q WHERE
         q.campaign_id = $id AND (q.axis, q.level, q.family) = (ax.axis, ax.level, ax.family)))
    + (SELECT count(*) FROM campaigns k, cand WHERE k.id = $id AND
         (k.pending, k.leased, k.succeeded, k.failed, k.cancelled, k.stopped_early, k.issued)
         IS DISTINCT FROM (cand.p, cand.l, cand.s, cand.x, cand.c, cand.e, cand.n))"
}

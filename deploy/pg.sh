#!/usr/bin/env bash
# A private PostgreSQL 15 cluster for tests, the quickstart and single-box deployments.
#
#   deploy/pg.sh start DIR [DB]   initialise DIR if needed, start on 127.0.0.1, create database DB
#                                 (default quartet); prints the connection URL. A cluster that ran
#                                 before comes back on its previous port (DIR/port) while that port
#                                 is free, so URLs handed to running coordinators stay valid.
#   deploy/pg.sh restart DIR      fast restart (pg_ctl restart -m fast) on the same port
#   deploy/pg.sh stop DIR         stop the cluster in DIR (no error when it is not running)
#   deploy/pg.sh url DIR [DB]     print the URL of the running cluster in DIR
#
# PostgreSQL refuses to run as root: as root the cluster runs as the `postgres` user (DIR is
# chowned to it). The cluster trusts connections from 127.0.0.1 only and keeps its socket in DIR.
# QUARTET_PG_FAST=1 turns fsync off: for throwaway test clusters only.
set -euo pipefail

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
cmd=${1:-}
dir=${2:-}
db=${3:-quartet}
if [[ -z "$cmd" || -z "$dir" ]]; then
  sed -n '2,10p' "$0" >&2
  exit 2
fi
if [[ ! -x "$PGBIN/pg_ctl" ]]; then
  echo "pg.sh: $PGBIN/pg_ctl not found; run deploy/install-deps.sh (package postgresql-15)" >&2
  exit 1
fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
data="$dir/data"

as_owner() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}
owner=$( [[ $(id -u) -eq 0 ]] && echo postgres || id -un )

port_of() { sed -n '4p' "$data/postmaster.pid" 2>/dev/null || true; }
url_of() { echo "postgresql://$owner@127.0.0.1:$(port_of)/$db"; }

running() { [[ -f "$data/postmaster.pid" ]] && as_owner "$PGBIN/pg_ctl" -D "$data" status >/dev/null 2>&1; }

port_free() { ! (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }

# Ports below the kernel's ephemeral range (net.ipv4.ip_local_port_range, 32768-60999 by default):
# a client retrying 127.0.0.1:PORT while PostgreSQL is down can otherwise be given PORT as its own
# local port, connect to itself and keep PostgreSQL from binding it again.
readonly PORT_FIRST=24330 PORT_LAST=24429

free_port() {
  local p
  if [[ -f "$dir/port" ]]; then
    p=$(cat "$dir/port")
    if port_free "$p"; then echo "$p"; return 0; fi
    echo "pg.sh: previous port $p is taken; choosing another (update --database_url_file)" >&2
  fi
  for p in $(seq "$PORT_FIRST" "$PORT_LAST"); do
    if port_free "$p"; then echo "$p"; return 0; fi
  done
  echo "pg.sh: no free port in $PORT_FIRST-$PORT_LAST" >&2
  return 1
}

case "$cmd" in
  start)
    if [[ $(id -u) -eq 0 ]]; then
      chown postgres:postgres "$dir"
      # postgres must be able to reach DIR through its parents.
      p="$dir"; while [[ "$p" != "/" ]]; do p=$(dirname "$p"); chmod o+x "$p" 2>/dev/null || true; done
    fi
    if [[ ! -f "$data/PG_VERSION" ]]; then
      as_owner "$PGBIN/initdb" -D "$data" --auth=trust --encoding=UTF8 --locale=C.UTF-8 \
        -U "$owner" >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    if ! running; then
      port=$(free_port)
      fast=""
      [[ "${QUARTET_PG_FAST:-0}" == "1" ]] && fast="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
      as_owner "$PGBIN/pg_ctl" -D "$data" -l "$dir/postgres.log" -w -t 60 start \
        -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir \
            -c max_connections=200 $fast" >/dev/null ||
        { tail -20 "$dir/postgres.log" >&2; exit 1; }
    fi
    port=$(port_of)
    echo "$port" >"$dir/port"
    if ! as_owner psql -h 127.0.0.1 -p "$port" -U "$owner" -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
      as_owner psql -h 127.0.0.1 -p "$port" -U "$owner" -d postgres -qc "CREATE DATABASE \"$db\"" >/dev/null
    fi
    url_of
    ;;
  stop)
    if running; then as_owner "$PGBIN/pg_ctl" -D "$data" -w -t 60 -m fast stop >/dev/null; fi
    ;;
  restart)
    running || { echo "pg.sh: no cluster running in $dir" >&2; exit 1; }
    as_owner "$PGBIN/pg_ctl" -D "$data" -w -t 60 -m fast restart >/dev/null
    ;;
  url)
    running || { echo "pg.sh: no cluster running in $dir" >&2; exit 1; }
    url_of
    ;;
  *)
    echo "pg.sh: unknown command '$cmd' (start, stop, restart, url)" >&2
    exit 2
    ;;
esac

#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests (make test starts and stops
# it), on loopback only: PG_PORT (default 5434), data under PG_BASE (a temp
# dir), trust authentication for the local superuser postgres. Debian's
# postgresql package provides the binaries; its own cluster is left alone.
#   scripts/postgres.sh start|stop|url
set -euo pipefail
: "${PG_BASE:?set PG_BASE to a directory of its own}"
port=${PG_PORT:-5434}
bindir=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -1)
if [ -z "$bindir" ]; then
  echo "postgres: no PostgreSQL binaries under /usr/lib/postgresql (scripts/install-deps.sh installs postgresql)" >&2
  exit 1
fi
case "${1:-}" in
start)
  mkdir -p "$PG_BASE"
  chown postgres: "$PG_BASE"
  if [ ! -f "$PG_BASE/data/PG_VERSION" ]; then
    runuser -u postgres -- "$bindir/initdb" -D "$PG_BASE/data" -A trust -U postgres --no-sync >"$PG_BASE/initdb.log" 2>&1 ||
      { cat "$PG_BASE/initdb.log" >&2; exit 1; }
  fi
  runuser -u postgres -- "$bindir/pg_ctl" -D "$PG_BASE/data" -l "$PG_BASE/postgres.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $PG_BASE -c fsync=off -c synchronous_commit=off -c max_connections=200" start >/dev/null ||
    { tail -20 "$PG_BASE/postgres.log" >&2; exit 1; }
  echo "postgres: ready on 127.0.0.1:$port (data $PG_BASE/data)"
  ;;
stop)
  if [ -f "$PG_BASE/data/postmaster.pid" ]; then
    runuser -u postgres -- "$bindir/pg_ctl" -D "$PG_BASE/data" -m fast -w stop >/dev/null || true
    echo "postgres: stopped"
  fi
  ;;
url)
  echo "postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
  ;;
*)
  echo "usage: $0 start|stop|url" >&2
  exit 2
  ;;
esac

# Sourced by the one-server load scripts (run.sh, cpu-per-request.sh, instructions.sh) after they
# set BACKEND, PG_URL and PASSWORD: a work directory removed on exit with the server the script
# started (SERVER_PID), and `seed` for a fresh database of either backend.
SEED=target/release/examples/bench-seed
WORK=$(mktemp -d)
SERVER_PID=
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

seed() { # seed NAME KEYS -> sets PROBE_KEY, PROBE_TOKEN, DB_URL and KEY (the probe key's headers)
  if [ "$BACKEND" = postgres ]; then
    psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS appkeys_bench_$1 WITH (FORCE)" -qc "CREATE DATABASE appkeys_bench_$1"
    DB_URL="$PG_URL/appkeys_bench_$1"
  else
    DB_URL="sqlite://$WORK/$1.db?mode=rwc"
  fi
  eval "$("$SEED" --database-url "$DB_URL" --keys "$2" --password "$PASSWORD")"
  # Fresh planner statistics after a bulk load, as any operator would have after autovacuum.
  [ "$BACKEND" = postgres ] && psql "$DB_URL" -qc "ANALYZE"
  KEY=(-H "X-API-AppKey: $PROBE_KEY" -H "X-API-AppToken: $PROBE_TOKEN")
}

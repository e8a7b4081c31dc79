#!/usr/bin/env bash
# CPU per request, two builds alternated: a measure the machine's drift moves less than throughput.
# Each round starts each build's server in turn on the same database, warms it for 3 s, then reads
# the CPU time (utime + stime from /proc) of the server — and, on PostgreSQL, of every `postgres`
# process — around `wrk -t2 -c32 -d10s`, and divides it by the requests served.
#
#   bash benches/cpu-per-request.sh OLD_BIN NEW_BIN                  # myKeys(first: 20) on SQLite
#   FIGURE=auth bash benches/cpu-per-request.sh OLD_BIN NEW_BIN      # /healthz, then /auth
#   BACKEND=postgres bash benches/cpu-per-request.sh OLD_BIN NEW_BIN # PG_URL, ANALYZE after seeding
#
# Build the two binaries first (e.g. `git worktree add /tmp/old REV`, build there, copy
# target/release/appkeys out). The seeding tool is built here (`--example bench-seed`).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n 2,12p "$0" >&2; exit 2; }
OLD=$1
NEW=$2
ROUNDS=${ROUNDS:-3}
FIGURE=${FIGURE:-mykeys}
BACKEND=${BACKEND:-sqlite}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
PORT=${PORT:-18085}
PASSWORD=bench-password-123
BASE="http://127.0.0.1:$PORT"
command -v wrk >/dev/null || { echo "needs wrk: apt-get install wrk" >&2; exit 1; }
cargo build --release --example bench-seed >&2
. benches/common.sh
seed cpu 1000

ticks() { # the server's CPU ticks, plus every postgres process's on PostgreSQL
  local total
  total=$(awk '{print $14 + $15}' "/proc/$SERVER_PID/stat")
  if [ "$BACKEND" = postgres ]; then
    for pid in $(pgrep -x postgres); do
      [ -r "/proc/$pid/stat" ] && total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
    done
  fi
  echo "$total"
}

measure() { # measure LABEL WRK_ARGS...: "LABEL rps R cpu_us_per_request C"
  local label=$1 before after out served
  shift
  wrk -t2 -c32 -d3s "$@" >/dev/null
  before=$(ticks)
  out=$(wrk -t2 -c32 -d10s "$@")
  after=$(ticks)
  served=$(echo "$out" | awk '/requests in/ {print $1}')
  echo "$label rps $(echo "$out" | awk '/Requests\/sec/ {print $2}') cpu_us_per_request $(awk -v t=$((after - before)) -v n="$served" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t * 1e6 / hz / n }')"
}

run() { # run LABEL BIN
  RUST_LOG=warn "$2" serve --bind "127.0.0.1:$PORT" --database-url "$DB_URL" >"$WORK/server.out" 2>"$WORK/server.err" &
  SERVER_PID=$!
  for _ in $(seq 1 100); do curl -fs "$BASE/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  if [ "$FIGURE" = auth ]; then
    measure "$1 healthz" "$BASE/healthz"
    measure "$1 auth" "${KEY[@]}" "$BASE/auth"
  else
    local session
    session=$(curl -fs "$BASE/graphql" -H 'content-type: application/json' \
      -d "{\"query\":\"mutation { login(input: {account: \\\"main\\\", email: \\\"admin@example.com\\\", password: \\\"$PASSWORD\\\"}) { token } }\"}" \
      | sed -E 's/.*"token":"([^"]+)".*/\1/')
    BODY='{"query":"{ myKeys(first: 20) { edges { node { key label status roles { name } } } } }"}' \
      measure "$1 mykeys" -s benches/post.lua -H "Authorization: Bearer $session" "$BASE/graphql"
  fi
  kill "$SERVER_PID"
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}

for round in $(seq 1 "$ROUNDS"); do
  run "round $round old" "$OLD"
  run "round $round new" "$NEW"
done

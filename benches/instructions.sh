#!/usr/bin/env bash
# Instructions per request of the real server over real HTTP, counted by valgrind's callgrind: a
# figure that other load on the machine does not move (the same binary and requests give the same
# count within a fraction of a percent), where the load runs' throughput moves by more than a change
# to the hot path. It counts the server's own code in each connection's task (hyper, the layers, the
# handler: `axum::serve::handle_connection`), not work on timers (flushes, the credential cache's
# refresh), which would land in one route's count or the other's, nor the kernel's socket work or the
# load generator's, which a load run's ratio also carries: the same for every route, they bring that
# ratio closer to 1 than this one.
#
#   bash benches/instructions.sh [BIN...]      # default target/release/appkeys; several builds in turn
#   BACKEND=postgres bash benches/instructions.sh
#   REQUESTS=10000 ...                          # per route and build (default 10 000)
#   KEEP=DIR ...                                # keeps callgrind's dumps there (callgrind_annotate)
#
# For each build: the server starts under callgrind on a database of 1 000 keys, both routes are
# warmed (2 000 requests each), then /healthz and /auth of a cached key are each sent REQUESTS times
# by `ab -k -c 1` (Debian: apache2-utils) between a zeroing and a dump of the counters. Prints
# "LABEL healthz_ir N auth_ir N ratio R" (per request; ratio = healthz / auth).
#
# Under valgrind the CPU reports no SHA extensions, so the token's SHA-256 runs in software there
# (about 3 500 instructions per request more than natively, where the CPU's SHA instructions do it).
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${REQUESTS:-10000}
BACKEND=${BACKEND:-sqlite}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
PORT=${PORT:-18086}
PASSWORD=bench-password-123
BASE="http://127.0.0.1:$PORT"
for tool in valgrind callgrind_control ab; do
  command -v "$tool" >/dev/null || { echo "needs $tool: apt-get install valgrind apache2-utils" >&2; exit 1; }
done
BINS=("$@")
[ ${#BINS[@]} -gt 0 ] || { cargo build --release --bins >&2; BINS=(target/release/appkeys); }
cargo build --release --example bench-seed >&2
. benches/common.sh
seed ir 1000

send() { # send N URL [ab args]: N requests on one kept-alive connection; fails on any non-2xx
  local n=$1 url=$2 out
  shift 2
  out=$(ab -q -k -c 1 -n "$n" "$@" "$url")
  if echo "$out" | grep -Eq 'Non-2xx|^Failed requests: +[1-9]'; then
    echo "$url: not every answer was 2xx" >&2; echo "$out" >&2; exit 1
  fi
}

counted() { # counted NAME N URL [ab args]: the instructions per request of N requests
  local name=$1 n=$2
  shift 2
  callgrind_control --zero "$SERVER_PID" >/dev/null 2>&1
  send "$n" "$@"
  callgrind_control --dump="$name" "$SERVER_PID" >/dev/null 2>&1
  local file
  file=$(grep -l "^desc: Trigger: dump $name\$" "$WORK"/callgrind.out.* | head -1)
  awk -v n="$n" '/^summary:/ { printf "%.0f", $2 / n }' "$file"
}

index=0
for bin in "${BINS[@]}"; do
  index=$((index + 1))
  RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out.$index" \
    --collect-atstart=no --toggle-collect='axum::serve::handle_connection*' \
    "$bin" serve --bind "127.0.0.1:$PORT" --database-url "$DB_URL" >"$WORK/server.out" 2>"$WORK/server.err" &
  SERVER_PID=$!
  for _ in $(seq 1 300); do curl -fs "$BASE/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
  curl -fs "$BASE/readyz" >/dev/null || { echo "the server did not start" >&2; cat "$WORK/server.err" >&2; exit 1; }
  send 2000 "$BASE/healthz"
  send 2000 "$BASE/auth" "${KEY[@]}"
  healthz=$(counted "healthz_$index" "$REQUESTS" "$BASE/healthz")
  auth=$(counted "auth_$index" "$REQUESTS" "$BASE/auth" "${KEY[@]}")
  [ -n "${KEEP:-}" ] && mkdir -p "$KEEP" && cp "$WORK"/callgrind.out.* "$KEEP"/
  echo "$bin healthz_ir $healthz auth_ir $auth ratio $(awk -v h="$healthz" -v a="$auth" 'BEGIN { printf "%.3f", h / a }')"
  kill "$SERVER_PID"
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
done

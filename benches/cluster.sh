#!/usr/bin/env bash
# The cluster benchmark: REPLICAS (default 4) appkeys processes on one PostgreSQL behind a real nginx
# on loopback (round-robin upstream). Every figure BENCHMARKS.md reports for the cluster comes from
# here; ratios are taken within one run.
#
#   bash benches/cluster.sh                               # every section
#   SECTIONS="aggregate revocation" bash benches/cluster.sh
#   REPLICAS=4 KEYS=10000 BIG_KEYS=10000000 DURATION=10s CONNS=64 REVOCATIONS=200 bash benches/cluster.sh
#
# Sections:
#   aggregate   /auth through nginx over every replica vs /healthz through the same nginx, and vs
#               /auth through an nginx over one replica
#   revocation  REVOCATIONS deactivations through the first replica while wrk drives /auth through
#               nginx; each polled on every other replica until refused (p50 / p99 / max)
#   fault       under load through nginx: PostgreSQL's backends killed, then PostgreSQL restarted
#               (fast shutdown); answers by status in each phase, time to the first success once
#               PostgreSQL is back, a revocation after recovery, and every key generated through
#               nginx meanwhile and acknowledged: there, whole
#   big         one replica on KEYS keys and one on BIG_KEYS keys (seeded with COPY), served at once
#               and measured alternately: /auth, viewer and myKeys(first: 20), small ÷ big per round.
#               The big database is kept (REUSE_BIG=1 measures it again without seeding; drop
#               appkeys_cluster_big by hand)
#
# PostgreSQL is the machine's own cluster (PG_CLUSTER, e.g. "15 main"); the fault section restarts
# it, and this script starts it again however it ends. Needs wrk and nginx (Debian packages).
set -euo pipefail
cd "$(dirname "$0")/.."

REPLICAS=${REPLICAS:-4}
KEYS=${KEYS:-10000}
BIG_KEYS=${BIG_KEYS:-10000000}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
REVOCATIONS=${REVOCATIONS:-200}
POOL=${POOL:-8}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
PG_CLUSTER=${PG_CLUSTER:-"$(ls /etc/postgresql | sort -V | tail -1) main"}
BASE_PORT=${BASE_PORT:-18200}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
SECTIONS=${SECTIONS:-"aggregate revocation fault big"}
PASSWORD=bench-password-123
want() { [[ " $SECTIONS " == *" $1 "* ]]; }

command -v wrk >/dev/null || { echo "benches/cluster.sh needs wrk: apt-get install wrk" >&2; exit 1; }
[ -x "$NGINX" ] || { echo "benches/cluster.sh needs nginx: apt-get install nginx" >&2; exit 1; }
cargo build --release --bins --example bench-seed --example bench-cluster >&2
BIN=target/release/appkeys
SEED=target/release/examples/bench-seed
CLUSTER=target/release/examples/bench-cluster
WORK=$(mktemp -d)
REPLICA_PIDS=()
LOAD_PID=

stop_nginx() {
  for pid in "$WORK"/nginx-*.pid; do [ -s "$pid" ] && kill "$(cat "$pid")" 2>/dev/null; rm -f "$pid"; done
  return 0
}
stop_replicas() {
  for pid in "${REPLICA_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${REPLICA_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  REPLICA_PIDS=()
}
cleanup() {
  [ -n "$LOAD_PID" ] && kill "$LOAD_PID" 2>/dev/null
  stop_replicas
  stop_nginx
  # However the run ended (the fault section restarts PostgreSQL), the machine's cluster runs again.
  # shellcheck disable=SC2086
  pg_isready -h 127.0.0.1 -q || pg_ctlcluster --skip-systemctl-redirect $PG_CLUSTER start || true
  rm -rf "$WORK"
}
trap cleanup EXIT

seed() { # seed NAME KEYS -> DB_URL, PROBE_KEY, PROBE_TOKEN, KEY
  psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS appkeys_cluster_$1 WITH (FORCE)" -qc "CREATE DATABASE appkeys_cluster_$1"
  DB_URL="$PG_URL/appkeys_cluster_$1"
  eval "$("$SEED" --database-url "$DB_URL" --keys "$2" --password "$PASSWORD" --copy)"
  psql "$DB_URL" -qc "VACUUM ANALYZE"
  KEY=(-H "X-API-AppKey: $PROBE_KEY" -H "X-API-AppToken: $PROBE_TOKEN")
}

start_replicas() { # start_replicas N -> REPLICA_URLS, REPLICA_PORTS
  REPLICA_URLS=; REPLICA_PORTS=()
  for i in $(seq 1 "$1"); do
    local port=$((BASE_PORT + i))
    env RUST_LOG=warn APPKEYS_BOOTSTRAP_PASSWORD="$PASSWORD" APPKEYS_FAILURES_PER_MINUTE=1000000 \
      APPKEYS_DB_MAX_CONNECTIONS="$POOL" \
      "$BIN" serve --bind "127.0.0.1:$port" --database-url "$DB_URL" >"$WORK/replica-$i.out" 2>"$WORK/replica-$i.err" &
    REPLICA_PIDS+=($!)
    REPLICA_PORTS+=("$port")
    REPLICA_URLS="${REPLICA_URLS:+$REPLICA_URLS,}http://127.0.0.1:$port"
  done
  for port in "${REPLICA_PORTS[@]}"; do
    for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null || { echo "replica on $port did not start" >&2; cat "$WORK"/replica-*.err >&2; exit 1; }
  done
}

start_nginx() { # start_nginx PORT UPSTREAM_PORT... : one worker (two cores are shared with the replicas)
  local port=$1; shift
  local conf="$WORK/nginx-$port.conf"
  mkdir -p "$WORK/nginx-$port"
  {
    echo "worker_processes 1; pid $WORK/nginx-$port.pid; error_log $WORK/nginx-$port/error.log warn;"
    echo "events { worker_connections 4096; }"
    echo "http { access_log off;"
    echo "  client_body_temp_path $WORK/nginx-$port; proxy_temp_path $WORK/nginx-$port;"
    echo "  fastcgi_temp_path $WORK/nginx-$port; uwsgi_temp_path $WORK/nginx-$port; scgi_temp_path $WORK/nginx-$port;"
    echo "  upstream appkeys {"
    for upstream in "$@"; do echo "    server 127.0.0.1:$upstream;"; done
    echo "    keepalive 64; }"
    echo "  server { listen 127.0.0.1:$port;"
    echo "    location / { proxy_pass http://appkeys; proxy_http_version 1.1; proxy_set_header Connection \"\"; } } }"
  } >"$conf"
  "$NGINX" -p "$WORK/nginx-$port" -c "$conf" -e "$WORK/nginx-$port/error.log"
  for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && return; sleep 0.1; done
  echo "nginx on $port did not start" >&2; cat "$WORK/nginx-$port/error.log" >&2; exit 1
}

login() { # login BASE -> a session token
  curl -fs "$1/graphql" -H 'content-type: application/json' \
    -d "{\"query\":\"mutation { login(input: {account: \\\"main\\\", email: \\\"admin@example.com\\\", password: \\\"$PASSWORD\\\"}) { token } }\"}" \
    | sed -E 's/.*"token":"([^"]+)".*/\1/'
}

# run NAME wrk-args... : prints "NAME rps non2xx"
run() {
  local name=$1; shift
  local out; out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" "$@")
  local rps errors
  rps=$(echo "$out" | awk '/Requests\/sec/ { print $2 }')
  errors=$(echo "$out" | awk '/Non-2xx/ { print $5 }')
  echo "$name $rps ${errors:-0}" | tee -a "$WORK/results"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
figure() { awk -v n="$1" '$1 == n { print $2 }' "$WORK/results" | tail -1; }

VIEWER='{"query":"{ viewer { account appKey resources { id } } }"}'
MYKEYS='{"query":"{ myKeys(first: 20) { edges { node { key label status roles { name } } } } }"}'
GATE=http://127.0.0.1:$BASE_PORT
ONE=http://127.0.0.1:$((BASE_PORT + 50))

if want aggregate || want revocation || want fault; then
  echo "== $REPLICAS replicas on $KEYS keys behind nginx" >&2
  seed cluster "$KEYS"
  start_replicas "$REPLICAS"
  start_nginx "$BASE_PORT" "${REPLICA_PORTS[@]}"
  start_nginx "$((BASE_PORT + 50))" "${REPLICA_PORTS[0]}"
fi

if want aggregate; then
  for round in 1 2 3; do
    run "healthz_gate_$round" "$GATE/healthz"
    run "auth_gate_$round" "${KEY[@]}" "$GATE/auth"
    run "auth_one_$round" "${KEY[@]}" "$ONE/auth"
  done
  for round in 1 2 3; do
    echo "ratio_auth_vs_healthz_$round $(ratio "$(figure "auth_gate_$round")" "$(figure "healthz_gate_$round")")" | tee -a "$WORK/results"
    echo "ratio_replicas_vs_one_$round $(ratio "$(figure "auth_gate_$round")" "$(figure "auth_one_$round")")" | tee -a "$WORK/results"
  done
fi

if want revocation; then
  echo "== revocation under /auth load through nginx" >&2
  wrk -t1 -c"$((CONNS / 2))" -d600s "${KEY[@]}" "$GATE/auth" >"$WORK/revocation-load.out" &
  LOAD_PID=$!
  sleep 2
  "$CLUSTER" revocation --replicas "$REPLICA_URLS" --count "$REVOCATIONS" --password "$PASSWORD" | tee -a "$WORK/results"
  kill -INT "$LOAD_PID"; wait "$LOAD_PID" 2>/dev/null || true; LOAD_PID=
  echo "revocation_load_rps $(awk '/Requests\/sec/ { print $2 }' "$WORK/revocation-load.out")" | tee -a "$WORK/results"
fi

if want fault; then
  echo "== fault round: backends killed, then PostgreSQL restarted ($PG_CLUSTER)" >&2
  "$CLUSTER" fault --through "$GATE" --replicas "$REPLICA_URLS" --database-url "$DB_URL" \
    --pg-cluster "$PG_CLUSTER" --password "$PASSWORD" | tee -a "$WORK/results"
  for port in "${REPLICA_PORTS[@]}"; do
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && echo "replica_ready_after_fault $port" | tee -a "$WORK/results"
  done
fi

if want aggregate || want revocation || want fault; then
  stop_nginx
  stop_replicas
fi

if want big; then
  # Both sizes served at once, one replica each, their figures alternated round by round: whatever
  # else the machine does (PostgreSQL writing out a fresh load) weighs on both alike.
  echo "== one replica on $KEYS keys and one on $BIG_KEYS keys" >&2
  started=$(date +%s)
  seed small "$KEYS"
  SMALL_URL=$DB_URL
  SMALL_KEY=("${KEY[@]}")
  echo "seed_small_seconds $(( $(date +%s) - started ))" | tee -a "$WORK/results"
  started=$(date +%s)
  BIG_ENV=${BIG_ENV:-/tmp/appkeys-cluster-big.env} # the probe of a kept big database (REUSE_BIG=1)
  if [ "${REUSE_BIG:-0}" = 1 ] && [ -s "$BIG_ENV" ]; then
    # shellcheck disable=SC1090
    . "$BIG_ENV"; DB_URL="$PG_URL/appkeys_cluster_big"
  else
    seed big "$BIG_KEYS"
    printf 'PROBE_KEY=%s\nPROBE_TOKEN=%s\n' "$PROBE_KEY" "$PROBE_TOKEN" >"$BIG_ENV"
  fi
  BIG_URL=$DB_URL
  BIG_KEY=(-H "X-API-AppKey: $PROBE_KEY" -H "X-API-AppToken: $PROBE_TOKEN")
  echo "seed_big_seconds $(( $(date +%s) - started ))" | tee -a "$WORK/results"
  psql "$BIG_URL" -qc "CHECKPOINT" # the load written out before anything is measured
  DB_URL=$SMALL_URL start_replicas 1
  BASE_PORT=$((BASE_PORT + 1)) DB_URL=$BIG_URL start_replicas 1 # the second replica's port is one up
  SMALL=http://127.0.0.1:$((BASE_PORT + 1))
  BIG=http://127.0.0.1:$((BASE_PORT + 2))
  SMALL_SESSION=$(login "$SMALL")
  BIG_SESSION=$(login "$BIG")
  for round in 1 2 3; do
    run "auth_small_$round" "${SMALL_KEY[@]}" "$SMALL/auth"
    run "auth_big_$round" "${BIG_KEY[@]}" "$BIG/auth"
    BODY=$VIEWER run "viewer_small_$round" -s benches/post.lua "${SMALL_KEY[@]}" "$SMALL/graphql"
    BODY=$VIEWER run "viewer_big_$round" -s benches/post.lua "${BIG_KEY[@]}" "$BIG/graphql"
    BODY=$MYKEYS run "mykeys_small_$round" -s benches/post.lua -H "Authorization: Bearer $SMALL_SESSION" "$SMALL/graphql"
    BODY=$MYKEYS run "mykeys_big_$round" -s benches/post.lua -H "Authorization: Bearer $BIG_SESSION" "$BIG/graphql"
  done
  stop_replicas
  for figure_name in auth viewer mykeys; do
    for round in 1 2 3; do
      # The small database's rate over the big one's: 1.5 or more would be a slowdown of a third.
      echo "ratio_${figure_name}_small_over_big_$round $(ratio "$(figure "${figure_name}_small_$round")" "$(figure "${figure_name}_big_$round")")" \
        | tee -a "$WORK/results"
    done
  done
  # Kept for a rerun with REUSE_BIG=1 (ten million keys take minutes to seed); drop it by hand.
fi

echo "== results (git $(git rev-parse --short HEAD), $(nproc) cores)"
cat "$WORK/results"

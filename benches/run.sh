#!/usr/bin/env bash
# Load runs for appkeys on loopback, with wrk (Debian: apt-get install wrk). Every figure that
# BENCHMARKS.md reports comes from this script; ratios are taken within one run.
#
#   bash benches/run.sh                         # DURATION=10s CONNS=32 by default, every section
#   SECTIONS="last_used" bash benches/run.sh    # only some sections: core big export last_used
#                                               #   writes policies usage pinned soak
#   BACKEND=postgres bash benches/run.sh        # the same against PostgreSQL (PG_URL, ANALYZE after seeding)
#   PAIRS=5 PAIR_DURATION=5s ...                # core: alternated healthz/figure pairs (default 3 of 5 s)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
PORT=${PORT:-18080}
EXPORT_KEYS=${EXPORT_KEYS:-100000}
BIG=${BIG:-1000000}
PASSWORD=bench-password-123
BASE="http://127.0.0.1:$PORT"
SECTIONS=${SECTIONS:-"core big export last_used writes policies usage pinned soak"}
BACKEND=${BACKEND:-sqlite}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
SOAK_SECS=${SOAK_SECS:-600}
PAIRS=${PAIRS:-3}
PAIR_DURATION=${PAIR_DURATION:-5s}
want() { [[ " $SECTIONS " == *" $1 "* ]]; }

command -v wrk >/dev/null || { echo "benches/run.sh needs wrk: apt-get install wrk" >&2; exit 1; }
cargo build --release --bins --example bench-seed >&2
BIN=target/release/appkeys
. benches/common.sh

start_server() { # start_server [NAME=VALUE ...]: extra environment for the server (PIN=core pins it)
  local pin=()
  [ -n "${PIN:-}" ] && pin=(taskset -c "$PIN")
  env RUST_LOG=warn "$@" "${pin[@]}" "$BIN" serve --bind "127.0.0.1:$PORT" --database-url "$DB_URL" >"$WORK/server.out" 2>"$WORK/server.err" &
  SERVER_PID=$!
  for _ in $(seq 1 100); do curl -fs "$BASE/readyz" >/dev/null 2>&1 && return; sleep 0.1; done
  echo "the server did not start" >&2; cat "$WORK/server.err" >&2; exit 1
}

stop_server() { kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=; }

login() {
  curl -fs "$BASE/graphql" -H 'content-type: application/json' \
    -d "{\"query\":\"mutation { login(input: {account: \\\"main\\\", email: \\\"admin@example.com\\\", password: \\\"$PASSWORD\\\"}) { token } }\"}" \
    | sed -E 's/.*"token":"([^"]+)".*/\1/'
}

to_us() { # wrk latency (e.g. 1.20ms, 250.00us, 1.01s) -> microseconds
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000; else if (v ~ /s$/) print n * 1000000; else print n }'
}

# run NAME wrk-args... : prints "NAME rps p50_us p99_us" (WRK_PIN=core pins wrk)
run() {
  local name=$1; shift
  local pin=()
  [ -n "${WRK_PIN:-}" ] && pin=(taskset -c "$WRK_PIN")
  local out; out=$("${pin[@]}" wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$@")
  local rps p50 p99
  rps=$(echo "$out" | awk '/Requests\/sec/ { print $2 }')
  p50=$(to_us "$(echo "$out" | awk '$1 == "50%" { print $2 }')")
  p99=$(to_us "$(echo "$out" | awk '$1 == "99%" { print $2 }')")
  local errors; errors=$(echo "$out" | awk '/Non-2xx/ { print $5 }')
  [ -n "$errors" ] && { echo "$name: non-2xx responses: $errors" >&2; echo "$out" >&2; }
  echo "$name $rps $p50 $p99" | tee -a "$WORK/results"
}

VIEWER='{"query":"{ viewer { account appKey resources { id } } }"}'
MYKEYS='{"query":"{ myKeys(first: 20) { edges { node { key label status roles { name } } } } }"}'
LOGIN="{\"query\":\"mutation { login(input: {account: \\\"main\\\", email: \\\"admin@example.com\\\", password: \\\"$PASSWORD\\\"}) { token } }\"}"

if want core; then
echo "== 1 000 keys" >&2
seed small 1000
start_server
SESSION=$(login)
run healthz "$BASE/healthz"
run auth "${KEY[@]}" "$BASE/auth"
BODY=$VIEWER run viewer -s benches/post.lua "${KEY[@]}" "$BASE/graphql"
BODY=$MYKEYS run mykeys_1k -s benches/post.lua -H "Authorization: Bearer $SESSION" "$BASE/graphql"
run auth_1k "${KEY[@]}" "$BASE/auth"
echo "== /auth during a storm of 50 concurrent logins" >&2
storm_secs=$(( ${DURATION%s} + 6 ))
BODY=$LOGIN wrk -t1 -c50 -d"${storm_secs}s" -s benches/post.lua "$BASE/graphql" >"$WORK/storm.out" &
STORM=$!
sleep 3
run auth_during_logins "${KEY[@]}" "$BASE/auth"
wait "$STORM"
echo "logins_per_sec $(awk '/Requests\/sec/ { print $2 }' "$WORK/storm.out")" | tee -a "$WORK/results"
# Alternated pairs: each figure right after a /healthz run on the same server, PAIRS rounds of
# PAIR_DURATION each; the summary gives every pair's ratio and their median. (This machine is shared:
# the same 10 s figure measured twice in one run has differed by more than 10 %.)
echo "== alternated pairs" >&2
for round in $(seq 1 "$PAIRS"); do
  DURATION=$PAIR_DURATION run "pair_auth_healthz_$round" "$BASE/healthz"
  DURATION=$PAIR_DURATION run "pair_auth_$round" "${KEY[@]}" "$BASE/auth"
  DURATION=$PAIR_DURATION run "pair_viewer_healthz_$round" "$BASE/healthz"
  BODY=$VIEWER DURATION=$PAIR_DURATION run "pair_viewer_$round" -s benches/post.lua "${KEY[@]}" "$BASE/graphql"
  DURATION=$PAIR_DURATION run "pair_mykeys_healthz_$round" "$BASE/healthz"
  BODY=$MYKEYS DURATION=$PAIR_DURATION run "pair_mykeys_$round" -s benches/post.lua -H "Authorization: Bearer $SESSION" "$BASE/graphql"
done
stop_server
fi

if want big; then
echo "== $BIG keys" >&2
seed big "$BIG"
start_server
SESSION=$(login)
run auth_1m "${KEY[@]}" "$BASE/auth"
BODY=$MYKEYS run mykeys_1m -s benches/post.lua -H "Authorization: Bearer $SESSION" "$BASE/graphql"
stop_server
fi

if want export; then
echo "== export of $EXPORT_KEYS keys" >&2
seed export "$EXPORT_KEYS"
start_server
SESSION=$(login)
rss_before=$(awk '/VmRSS/ { print $2 }' "/proc/$SERVER_PID/status")
anon_before=$(awk '/RssAnon/ { print $2 }' "/proc/$SERVER_PID/status")
started=$(date +%s.%N)
curl -fs -H "Authorization: Bearer $SESSION" "$BASE/export/app-keys.csv" -o "$WORK/export.csv"
finished=$(date +%s.%N)
hwm_after=$(awk '/VmHWM/ { print $2 }' "/proc/$SERVER_PID/status")
rows=$(( $(wc -l <"$WORK/export.csv") - 1 ))
secs=$(echo "$finished - $started" | bc -l)
echo "export_rows $rows" | tee -a "$WORK/results"
echo "export_seconds $secs" | tee -a "$WORK/results"
echo "export_rows_per_sec $(echo "$rows / $secs" | bc -l | cut -d. -f1)" | tee -a "$WORK/results"
echo "export_rss_before_kib $rss_before" | tee -a "$WORK/results"
echo "export_peak_growth_kib $(( hwm_after - rss_before ))" | tee -a "$WORK/results"
# With SQLite's memory map, resident size counts the database pages read as file pages (the
# kernel's shared page cache): the process's own memory is RssAnon.
echo "export_anon_growth_kib $(( $(awk '/RssAnon/ { print $2 }' "/proc/$SERVER_PID/status") - anon_before ))" | tee -a "$WORK/results"
# The same export again, the server's caches now warm: the steady rate.
started=$(date +%s.%N)
curl -fs -H "Authorization: Bearer $SESSION" "$BASE/export/app-keys.csv" -o "$WORK/export2.csv"
finished=$(date +%s.%N)
cmp -s "$WORK/export.csv" "$WORK/export2.csv" || echo "the second export differs from the first" >&2
echo "export_warm_rows_per_sec $(echo "$rows / ($finished - $started)" | bc -l | cut -d. -f1)" | tee -a "$WORK/results"
stop_server
fi

if want last_used; then
# Last-use tracking costs /auth a note in memory per request. Servers with tracking off (flush 0)
# and on (flush every second, so the flusher's writes are part of the run) alternate, three rounds
# each, every /auth figure normalised by /healthz measured just before it on the same server.
echo "== /auth with last-use tracking off and on" >&2
seed lastuse 1000
for round in 1 2 3; do
  for mode in off on; do
    if [ "$mode" = off ]; then flush=0; else flush=1; fi
    start_server APPKEYS_LAST_USED_FLUSH_SECS=$flush
    run "lu_healthz_${mode}_$round" "$BASE/healthz"
    run "lu_auth_${mode}_$round" "${KEY[@]}" "$BASE/auth"
    stop_server
  done
done
fi

gql() { # gql AUTH-HEADER JSON-BODY -> response
  curl -fs "$BASE/graphql" -H 'content-type: application/json' -H "$1" -d "$2"
}

busy_account() { # a second account with a session and a key with a role, for write traffic
  "$BIN" account create busy --owner-email owner@busy.example --owner-password "$PASSWORD" --database-url "$DB_URL" >/dev/null
  local token; token=$(curl -fs "$BASE/graphql" -H 'content-type: application/json' \
    -d "{\"query\":\"mutation { login(input: {account: \\\"busy\\\", email: \\\"owner@busy.example\\\", password: \\\"$PASSWORD\\\"}) { token } }\"}" \
    | sed -E 's/.*"token":"([^"]+)".*/\1/')
  BUSY="Authorization: Bearer $token"
  BUSY_ROLE=$(gql "$BUSY" '{"query":"{ roles { id } }"}' | sed -E 's/.*"roles":\[\{"id":"([^"]+)".*/\1/')
  BUSY_KEY=$(gql "$BUSY" '{"query":"mutation { generateAppKey(input: {}) { appKey { key } } }"}' | sed -E 's/.*"key":"([^"]+)".*/\1/')
}

if want writes; then
echo "== /auth of an untouched key while another account writes" >&2
seed writes 10000
start_server
busy_account
run healthz_w "$BASE/healthz"
run auth_quiet "${KEY[@]}" "$BASE/auth"
add="{\"query\":\"mutation { addAppKeyRoles(key: \\\"$BUSY_KEY\\\", roleIds: [\\\"$BUSY_ROLE\\\"]) { key } }\"}"
remove="{\"query\":\"mutation { removeAppKeyRoles(key: \\\"$BUSY_KEY\\\", roleIds: [\\\"$BUSY_ROLE\\\"]) { key } }\"}"
write_secs=$(( ${DURATION%s} + 4 ))
BODY_A=$add BODY_B=$remove wrk -t1 -c1 -d"${write_secs}s" -s benches/alternate.lua -H "$BUSY" "$BASE/graphql" >"$WORK/writes.out" &
WRITER=$!
sleep 2
run auth_writes "${KEY[@]}" "$BASE/auth"
wait "$WRITER"
echo "writes_per_sec $(awk '/Requests\/sec/ { print $2 }' "$WORK/writes.out")" | tee -a "$WORK/results"
grep -q "Non-2xx" "$WORK/writes.out" && { echo "the writer got errors" >&2; cat "$WORK/writes.out" >&2; }
# The same with the writer paced (a pause before each write, still over 100 changes/s): the
# unpaced writer takes as many changes as the server can make, and its CPU, on two cores, is
# taken from /auth whatever the cache does.
WRITE_DELAY_MS=${WRITE_DELAY_MS:-5} BODY_A=$add BODY_B=$remove wrk -t1 -c1 -d"${write_secs}s" -s benches/alternate.lua -H "$BUSY" "$BASE/graphql" >"$WORK/writes-paced.out" &
WRITER=$!
sleep 2
run auth_writes_paced "${KEY[@]}" "$BASE/auth"
wait "$WRITER"
echo "writes_paced_per_sec $(awk '/Requests\/sec/ { print $2 }' "$WORK/writes-paced.out")" | tee -a "$WORK/results"
grep -q "Non-2xx" "$WORK/writes-paced.out" && { echo "the paced writer got errors" >&2; cat "$WORK/writes-paced.out" >&2; }
stop_server
fi

if want policies; then
# /auth of the probe key under each policy, 10 000 keys: every variant alternated with /healthz on
# the same server, PAIRS rounds. Limits and credits are set so high that nothing is refused (a
# refusal would show as non-2xx). The shared limit runs on a second server with REDIS_URL (the
# machine's Redis by default).
echo "== /auth under policies" >&2
seed policies 10000
policy() { # policy NAME JSON: sets the probe key's policy
  local out; out=$(gql "Authorization: Bearer $SESSION" "{\"query\":\"mutation(\$k: String!, \$p: AppKeyPolicyInput!) { setAppKeyPolicy(key: \$k, input: \$p) { key } }\",\"variables\":{\"k\":\"$PROBE_KEY\",\"p\":$2}}")
  [[ "$out" == *'"errors"'* ]] && { echo "policy $1: $out" >&2; exit 1; }
  sleep 1 # past the credential cache's age: the next requests read the new policy
}
ranges=$(for i in $(seq 0 98); do printf '"10.%d.0.0/16",' "$i"; done)
CIDR100="{\"allowedIps\":[${ranges}\"127.0.0.0/8\"]}"
LIMITS3='{"rateLimits":[{"name":"second","limit":2000000000,"periodSeconds":1},{"name":"minute","limit":2000000000,"periodSeconds":60},{"name":"hour","limit":2000000000,"periodSeconds":3600}]}'
SHARED='{"rateLimits":[{"name":"shared","limit":2000000000,"periodSeconds":60}]}'
CREDITS='{"credits":{"remaining":2000000000}}'
pairs() { # pairs NAME: PAIRS alternated healthz / auth runs
  for round in $(seq 1 "$PAIRS"); do
    DURATION=$PAIR_DURATION run "pol_healthz_${1}_$round" "$BASE/healthz"
    DURATION=$PAIR_DURATION run "pol_auth_${1}_$round" "${KEY[@]}" "$BASE/auth"
  done
}
start_server
SESSION=$(login)
pairs none
policy cidr100 "$CIDR100"; pairs cidr100
policy limits3 "$LIMITS3"; pairs limits3
policy credits "$CREDITS"; pairs credits
policy none '{}'
stop_server
start_server APPKEYS_REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
SESSION=$(login)
policy shared "$SHARED"; pairs shared
curl -fs "$BASE/metrics" | grep -E '^appkeys_rate_limit_redis_fallbacks_total' >&2 || echo "no Redis fallbacks" >&2
stop_server
fi


if want usage; then
# Usage: the flush of 10 000 active keys' counters (database time, three rounds), and one key's
# usage over 400 days (daily points) with 10 000 keys x 30 days of hourly points seeded, alternated
# with /healthz.
echo "== usage" >&2
if [ "$BACKEND" = postgres ]; then
  psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS appkeys_bench_usage WITH (FORCE)" -qc "CREATE DATABASE appkeys_bench_usage"
  DB_URL="$PG_URL/appkeys_bench_usage"
else
  DB_URL="sqlite://$WORK/usage.db?mode=rwc"
fi
eval "$("$SEED" --database-url "$DB_URL" --keys 10000 --password "$PASSWORD" --usage-days 30 --time-usage-flush)"
echo "usage_rows $USAGE_ROWS" | tee -a "$WORK/results"
echo "usage_day_rows $USAGE_DAY_ROWS" | tee -a "$WORK/results"
for round in 1 2 3; do v="USAGE_FLUSH_${round}_SECS"; echo "usage_flush_${round}_secs ${!v}" | tee -a "$WORK/results"; done
KEY=(-H "X-API-AppKey: $PROBE_KEY" -H "X-API-AppToken: $PROBE_TOKEN")
start_server
SESSION=$(login)
from=$(date -u -d '-399 days' +%Y-%m-%dT00:00:00Z); to=$(date -u +%Y-%m-%dT%H:%M:%SZ)
# The usage chart's query (the key and its usage in one statement; asked again, PostgreSQL gives the
# kept answer), the same query about a random one of the 10 000 keys each time (nothing kept is
# asked again: every answer is read), and the usage read beside the key's own fields (the key's
# row, then its usage).
USAGE400="{\"query\":\"{ appKey(key: \\\"$PROBE_KEY\\\") { usage(from: \\\"$from\\\", to: \\\"$to\\\", granularity: DAY) { at valid forbidden invalidToken } } }\"}"
USAGE400ANY=${USAGE400//$PROBE_KEY/KEY}
USAGE400KEY="{\"query\":\"{ appKey(key: \\\"$PROBE_KEY\\\") { key status lastUsedAt usage(from: \\\"$from\\\", to: \\\"$to\\\", granularity: DAY) { at valid forbidden invalidToken } } }\"}"
# The start of each answer, shown (read whole first: `head` closing the pipe early would fail the run).
for body in "$USAGE400" "$USAGE400KEY"; do answer=$(gql "Authorization: Bearer $SESSION" "$body"); echo "${answer:0:300}" >&2; done
for round in $(seq 1 "$PAIRS"); do
  DURATION=$PAIR_DURATION run "use_healthz_$round" "$BASE/healthz"
  BODY=$USAGE400 DURATION=$PAIR_DURATION run "use_usage400_$round" -s benches/post.lua -H "Authorization: Bearer $SESSION" "$BASE/graphql"
  BODY=$USAGE400ANY KEYS=10000 DURATION=$PAIR_DURATION run "use_usage400any_$round" -s benches/keys.lua -H "Authorization: Bearer $SESSION" "$BASE/graphql"
  BODY=$USAGE400KEY DURATION=$PAIR_DURATION run "use_usage400key_$round" -s benches/post.lua -H "Authorization: Bearer $SESSION" "$BASE/graphql"
done
stop_server
# The flush again, three rounds, on the same database minutes after its bulk load (as a database
# that flushes arrive at every minute is): the rounds above ran right after 7.5 million rows were
# written. Each set of rounds starts after a CHECKPOINT (PostgreSQL), so its first round writes
# whole pages, as the first flush after every checkpoint does.
eval "$("$SEED" --database-url "$DB_URL" --flush-only | grep '^USAGE_FLUSH_')"
for round in 1 2 3; do v="USAGE_FLUSH_${round}_SECS"; echo "usage_flush_settled_${round}_secs ${!v}" | tee -a "$WORK/results"; done
fi

if want pinned; then
echo "== /auth latency, server on core 0, wrk on core 1" >&2
seed pinned 1000
PIN=0 start_server
WRK_PIN=1 run auth_pinned "${KEY[@]}" "$BASE/auth"
WRK_PIN=1 run healthz_pinned "$BASE/healthz"
stop_server
fi

if want soak; then
echo "== soak: $SOAK_SECS s of /auth, listings, mutations and logins" >&2
seed soak 10000
start_server
SESSION=$(login)
busy_account
add="{\"query\":\"mutation { addAppKeyRoles(key: \\\"$BUSY_KEY\\\", roleIds: [\\\"$BUSY_ROLE\\\"]) { key } }\"}"
remove="{\"query\":\"mutation { removeAppKeyRoles(key: \\\"$BUSY_KEY\\\", roleIds: [\\\"$BUSY_ROLE\\\"]) { key } }\"}"
LOADS=()
wrk -t1 -c8 -d"${SOAK_SECS}s" "${KEY[@]}" "$BASE/auth" >"$WORK/soak-auth.out" & LOADS+=($!)
BODY=$MYKEYS wrk -t1 -c2 -d"${SOAK_SECS}s" -s benches/post.lua -H "Authorization: Bearer $SESSION" "$BASE/graphql" >"$WORK/soak-list.out" & LOADS+=($!)
BODY_A=$add BODY_B=$remove wrk -t1 -c1 -d"${SOAK_SECS}s" -s benches/alternate.lua -H "$BUSY" "$BASE/graphql" >"$WORK/soak-write.out" & LOADS+=($!)
BODY=$LOGIN wrk -t1 -c1 -d"${SOAK_SECS}s" -s benches/post.lua "$BASE/graphql" >"$WORK/soak-login.out" & LOADS+=($!)
: >"$WORK/rss"
for _ in $(seq 1 $(( SOAK_SECS / 10 ))); do
  sleep 10
  awk '/VmRSS/ { rss = $2 } /RssAnon/ { anon = $2 } /RssFile/ { file = $2 } END { print rss, anon, file }' "/proc/$SERVER_PID/status" >>"$WORK/rss"
done
for load in "${LOADS[@]}"; do wait "$load" || true; done
# The trajectory, one line a minute: "seconds VmRSS RssAnon RssFile" (KiB; RssFile: mapped files,
# SQLite's database pages among them).
awk 'NR % 6 == 0 { printf "soak_at_%ds %s %s %s\n", NR * 10, $1, $2, $3 }' "$WORK/rss" | tee -a "$WORK/results"
for part in auth list write login; do
  f="$WORK/soak-$part.out"
  echo "soak_${part}_rps $(awk '/Requests\/sec/ { print $2 }' "$f")" | tee -a "$WORK/results"
  errors=$(awk '/Non-2xx/ { print $5 } /Socket errors/ { print $0 }' "$f")
  echo "soak_${part}_errors ${errors:-0}" | tee -a "$WORK/results"
done
# Resident memory after warm-up (the first minute) against the end.
# Three figures: VmRSS (all resident pages), RssAnon (the process's own memory: heap, stacks) and
# RssFile (mapped files, among them the database pages SQLite reads through its memory map).
warm=$(sed -n '6p' "$WORK/rss"); [ -n "$warm" ] || warm=$(head -1 "$WORK/rss"); last=$(tail -1 "$WORK/rss")
field() { echo "$1" | cut -d' ' -f"$2"; }
echo "soak_rss_warm_kib $(field "$warm" 1)" | tee -a "$WORK/results"
echo "soak_rss_end_kib $(field "$last" 1)" | tee -a "$WORK/results"
echo "soak_rss_max_kib $(cut -d' ' -f1 "$WORK/rss" | sort -n | tail -1)" | tee -a "$WORK/results"
echo "soak_anon_warm_kib $(field "$warm" 2)" | tee -a "$WORK/results"
echo "soak_anon_end_kib $(field "$last" 2)" | tee -a "$WORK/results"
echo "soak_file_warm_kib $(field "$warm" 3)" | tee -a "$WORK/results"
echo "soak_file_end_kib $(field "$last" 3)" | tee -a "$WORK/results"
echo "soak_file_max_kib $(cut -d' ' -f3 "$WORK/rss" | sort -n | tail -1)" | tee -a "$WORK/results"
# A login holds argon2's 19 MiB while it runs, so one sample lands in a login or not: the medians of
# the second minute's and the last minute's samples say more than two single samples.
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo "soak_anon_median_second_minute_kib $(sed -n '7,12p' "$WORK/rss" | cut -d' ' -f2 | median)" | tee -a "$WORK/results"
echo "soak_anon_median_last_minute_kib $(tail -6 "$WORK/rss" | cut -d' ' -f2 | median)" | tee -a "$WORK/results"
stop_server
fi

echo
echo "== ratios"
# Each section's summary when that section ran.
if want core; then
awk '
  { v[$1] = $2; p50[$1] = $3; p99[$1] = $4 }
  END {
    printf "auth / healthz throughput: %.2f  (auth %s rps, healthz %s rps)\n", v["auth"] / v["healthz"], v["auth"], v["healthz"]
    printf "auth p50 / p99: %s / %s us;  healthz p50 / p99: %s / %s us\n", p50["auth"], p99["auth"], p50["healthz"], p99["healthz"]
    printf "viewer / healthz throughput: %.2f  (viewer %s rps; p50 / p99 %s / %s us)\n", v["viewer"] / v["healthz"], v["viewer"], p50["viewer"], p99["viewer"]
    printf "myKeys(first: 20) / healthz throughput: %.3f  (%s rps; p50 / p99 %s / %s us)\n", v["mykeys_1k"] / v["healthz"], v["mykeys_1k"], p50["mykeys_1k"], p99["mykeys_1k"]
    printf "auth p99 during 50 concurrent logins: %s us (%s logins/s); without: %s us\n", p99["auth_during_logins"], v["logins_per_sec"], p99["auth_1k"]
  }' "$WORK/results"
awk '
  $1 ~ /^pair_/ { v[$1] = $2 }
  END {
    split("auth viewer mykeys", figures, " ")
    for (f = 1; f <= 3; f++) {
      name = figures[f]; n = 0; list = ""
      for (i = 1; ("pair_" name "_" i) in v; i++) {
        r[++n] = v["pair_" name "_" i] / v["pair_" name "_healthz_" i]
        list = list sprintf("%s%.3f", (n > 1 ? ", " : ""), r[n])
      }
      if (n == 0) continue
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (r[j] < r[i]) { t = r[i]; r[i] = r[j]; r[j] = t }
      median = (n % 2) ? r[(n + 1) / 2] : (r[n / 2] + r[n / 2 + 1]) / 2
      printf "%s / healthz, alternated pairs: median %.3f (%s)\n", name, median, list
    }
  }' "$WORK/results"
fi
if want core && want big; then
awk '
  { v[$1] = $2; p99[$1] = $4 }
  END {
    printf "auth 1M / 1k throughput: %.2f  (p99 %s vs %s us)\n", v["auth_1m"] / v["auth_1k"], p99["auth_1m"], p99["auth_1k"]
    printf "myKeys(first: 20) 1M / 1k throughput: %.2f  (%s vs %s rps; p99 %s vs %s us)\n", v["mykeys_1m"] / v["mykeys_1k"], v["mykeys_1m"], v["mykeys_1k"], p99["mykeys_1m"], p99["mykeys_1k"]
  }' "$WORK/results"
fi
if want export; then
awk '
  { v[$1] = $2 }
  END {
    printf "export: %s rows in %.2f s = %s rows/s (again, warm: %s rows/s); peak resident growth %s KiB, own memory (RssAnon) %+d KiB\n", v["export_rows"], v["export_seconds"], v["export_rows_per_sec"], v["export_warm_rows_per_sec"], v["export_peak_growth_kib"], v["export_anon_growth_kib"]
  }' "$WORK/results"
fi
if want last_used; then
awk '
  $1 ~ /^lu_/ { split($1, part, "_"); kind = part[2]; mode = part[3]; v[kind, mode] += $2; n[kind, mode]++ }
  END {
    off = v["auth", "off"] / v["healthz", "off"]; on = v["auth", "on"] / v["healthz", "on"]
    printf "last-use tracking: auth/healthz %.3f on vs %.3f off = %.3f (auth %.0f vs %.0f rps, mean of %d rounds)\n", on, off, on / off, v["auth", "on"] / n["auth", "on"], v["auth", "off"] / n["auth", "off"], n["auth", "on"]
  }' "$WORK/results"
fi
if want writes; then
awk '{ v[$1] = $2 } END { printf "auth while another account writes %s changes/s: %.2f of quiet (%s vs %s rps; quiet auth/healthz %.2f); paced writer %s changes/s: %.2f of quiet (%s rps)\n", v["writes_per_sec"], v["auth_writes"] / v["auth_quiet"], v["auth_writes"], v["auth_quiet"], v["auth_quiet"] / v["healthz_w"], v["writes_paced_per_sec"], v["auth_writes_paced"] / v["auth_quiet"], v["auth_writes_paced"] }' "$WORK/results"
fi
if want policies; then
awk '
  $1 ~ /^pol_/ { split($1, part, "_"); kind = part[2]; name = part[3]; round = part[4]; v[kind, name, round] = $2; names[name] = 1; if (round > rounds) rounds = round }
  END {
    for (name in names) {
      n = 0; list = ""
      for (i = 1; i <= rounds; i++) if (v["healthz", name, i] > 0) { n++; r[n] = v["auth", name, i] / v["healthz", name, i]; list = list sprintf("%s%.3f", n > 1 ? ", " : "", r[n]) }
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (r[j] < r[i]) { t = r[i]; r[i] = r[j]; r[j] = t }
      median = (n % 2) ? r[(n + 1) / 2] : (r[n / 2] + r[n / 2 + 1]) / 2
      printf "auth with policy %s / healthz, alternated pairs: median %.3f (%s)\n", name, median, list
    }
  }' "$WORK/results"
fi
if want usage; then
awk '
  { v[$1] = $2 }
  $1 ~ /^use_usage400(key|any)?_/ { split($1, p, "_"); f = p[2]; r = p[3]; n[f]++; ratio[f, n[f]] = $2 / v["use_healthz_" r]; list[f] = list[f] sprintf("%s%.3f", n[f] > 1 ? ", " : "", ratio[f, n[f]]) }
  function median(f,   i, j, t, k) {
    k = n[f]
    for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (ratio[f, j] < ratio[f, i]) { t = ratio[f, i]; ratio[f, i] = ratio[f, j]; ratio[f, j] = t }
    return (k % 2) ? ratio[f, (k + 1) / 2] : (ratio[f, k / 2] + ratio[f, k / 2 + 1]) / 2
  }
  END {
    printf "usage of one key over 400 days (%s hourly and %s daily rows seeded) / healthz: median %.3f (%s); a random key each time: median %.3f (%s); with the key'"'"'s fields: median %.3f (%s); flush of 10 000 active keys: %s / %s / %s s\n", v["usage_rows"], v["usage_day_rows"], median("usage400"), list["usage400"], median("usage400any"), list["usage400any"], median("usage400key"), list["usage400key"], v["usage_flush_1_secs"], v["usage_flush_2_secs"], v["usage_flush_3_secs"]
  }' "$WORK/results"
fi
if want pinned; then
awk '{ v[$1] = $2; p50[$1] = $3; p99[$1] = $4 } END { printf "pinned: auth p50 / p99 %s / %s us (%s rps); healthz p50 / p99 %s / %s us (%s rps)\n", p50["auth_pinned"], p99["auth_pinned"], v["auth_pinned"], p50["healthz_pinned"], p99["healthz_pinned"], v["healthz_pinned"] }' "$WORK/results"
fi
if want soak; then
awk '{ v[$1] = $2 } END { printf "soak: rss %s KiB after warm-up, %s KiB at the end (%+.1f %%), max %s KiB; own memory (RssAnon) %s -> %s KiB (%+.1f %%); its median, second minute -> last minute: %s -> %s KiB (%+.1f %%)\n", v["soak_rss_warm_kib"], v["soak_rss_end_kib"], (v["soak_rss_end_kib"] - v["soak_rss_warm_kib"]) * 100 / v["soak_rss_warm_kib"], v["soak_rss_max_kib"], v["soak_anon_warm_kib"], v["soak_anon_end_kib"], (v["soak_anon_end_kib"] - v["soak_anon_warm_kib"]) * 100 / v["soak_anon_warm_kib"], v["soak_anon_median_second_minute_kib"], v["soak_anon_median_last_minute_kib"], (v["soak_anon_median_last_minute_kib"] - v["soak_anon_median_second_minute_kib"]) * 100 / v["soak_anon_median_second_minute_kib"] }' "$WORK/results"
fi

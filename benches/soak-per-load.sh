#!/usr/bin/env bash
# One load per server (auth, listings, writes, logins), each on its own server with 10 000 keys, side by side:
# resident memory after 30 s and at the end, to find which load grows it. Needs a release build and wrk.
#   SECS=150 bash benches/soak-per-load.sh
set -u
cd "$(dirname "$0")/.."
BIN=target/release/appkeys; SEED=target/release/examples/bench-seed; W=$(mktemp -d); SECS=${SECS:-150}
login() { curl -fs "http://127.0.0.1:$1/graphql" -H 'content-type: application/json' -d '{"query":"mutation { login(input: {account: \"main\", email: \"admin@example.com\", password: \"bench-password-123\"}) { token } }"}' | sed -E 's/.*"token":"([^"]+)".*/\1/'; }
port=18100
for load in auth list write login; do
  port=$((port+1)); rm -f $W/$load.db*
  eval "$($SEED --database-url "sqlite://$W/$load.db?mode=rwc" --keys 10000 --password bench-password-123)"
  RUST_LOG=warn $BIN serve --bind 127.0.0.1:$port --database-url "sqlite://$W/$load.db?mode=rwc" > $W/$load.out 2>&1 &
  echo $! > $W/$load.pid
  sleep 1
  S=$(login $port)
  case $load in
    auth) wrk -t1 -c8 -d${SECS}s -H "X-API-AppKey: $PROBE_KEY" -H "X-API-AppToken: $PROBE_TOKEN" http://127.0.0.1:$port/auth > $W/$load.wrk & ;;
    list) BODY='{"query":"{ myKeys(first: 20) { edges { node { key label status roles { name } } } } }"}' wrk -t1 -c2 -d${SECS}s -s benches/post.lua -H "Authorization: Bearer $S" http://127.0.0.1:$port/graphql > $W/$load.wrk & ;;
    write)
      OWNER=$(curl -fs http://127.0.0.1:$port/graphql -H 'content-type: application/json' -H "Authorization: Bearer $S" -d '{"query":"{ roles { id name } }"}' | python3 -c 'import json,sys; print([r["id"] for r in json.load(sys.stdin)["data"]["roles"] if r["name"].startswith("Owner")][0])')
      A="{\"query\":\"mutation { addAppKeyRoles(key: \\\"$PROBE_KEY\\\", roleIds: [\\\"$OWNER\\\"]) { key } }\"}"
      R="{\"query\":\"mutation { removeAppKeyRoles(key: \\\"$PROBE_KEY\\\", roleIds: [\\\"$OWNER\\\"]) { key } }\"}"
      BODY_A=$A BODY_B=$R wrk -t1 -c1 -d${SECS}s -s benches/alternate.lua -H "Authorization: Bearer $S" http://127.0.0.1:$port/graphql > $W/$load.wrk & ;;
    login) BODY='{"query":"mutation { login(input: {account: \"main\", email: \"admin@example.com\", password: \"bench-password-123\"}) { token } }"}' wrk -t1 -c1 -d${SECS}s -s benches/post.lua http://127.0.0.1:$port/graphql > $W/$load.wrk & ;;
  esac
done
sleep 30
for load in auth list write login; do echo "$load warm $(awk '/VmRSS/ {print $2}' /proc/$(cat $W/$load.pid)/status)"; done
sleep $((SECS-35))
for load in auth list write login; do echo "$load end $(awk '/VmRSS/ {print $2}' /proc/$(cat $W/$load.pid)/status) rps $(awk '/Requests\/sec/ {print $2}' $W/$load.wrk 2>/dev/null)"; done
sleep 8
for load in auth list write login; do grep -E "Requests/sec|Non-2xx" $W/$load.wrk | tr '\n' ' '; echo " ($load)"; kill $(cat $W/$load.pid); done

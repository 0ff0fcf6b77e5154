#!/usr/bin/env bash
# Macro benchmark of the HTTP front: requests/s and p50/p99 latency of
#   1. nginx `return 200` (the floor: the fastest an HTTP server answers on this machine, measured in this run),
#   2. twinbridge GET /healthz,
#   3. twinbridge authenticated GET /v1/principals/{id} (API key check + store read + JSON),
#   4. twinbridge durable writes: POST /v1/principals (group-committed, fsync'd before the 201),
#   5. twinbridge durable registrations: POST /v1/third-party-systems (JSON Schema validation + write + audit).
# Every server runs on loopback on a port picked here; wrk drives the load. Usage:
#   bench/http.sh [--duration SECONDS] [--connections N] [--binary PATH]
set -euo pipefail
cd "$(dirname "$0")/.."

duration=10
connections=64
binary=build/release/twinbridge
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
command -v wrk >/dev/null && command -v nginx >/dev/null || bash scripts/install-deps.sh
[ -x "$binary" ] || { cmake --preset release >/dev/null && cmake --build --preset release --target twinbridge; }

source bench/lib.sh
start_nginx '{"status":"ok"}'

tb_port=$(free_port)
token="bench-admin-token-$(date +%s%N)"
TWINBRIDGE_ADMIN_TOKEN=$token "$binary" serve ${TWINBRIDGE_BENCH_ARGS:-} --listen "127.0.0.1:$tb_port" --data "$work/data" \
  2> "$work/twinbridge.log" > /dev/null &
pids+=($!)
wait_http "http://127.0.0.1:$tb_port/healthz"

created=$(curl -fs -X POST -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  -d '{"id":"bench-reader","kind":"metaverse-system","name":"bench reader","properties":{"region":"eu","tier":3}}' \
  "http://127.0.0.1:$tb_port/v1/principals")
key=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"]["token"])' <<< "$created")

cat > "$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"kind":"twin-system","name":"bench writer","api_key":false,"properties":{"site":"plant-7"}}'
LUA

cat > "$work/register.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"type":"payment","name":"bench pay","properties":{"region":"eu","tier":2},' ..
  '"service_charge":{"model":"per-call","amount":0.02,"currency":"EUR","unit":"call"},' ..
  '"service_level":{"availability":99.9,"latency_ms":200},' ..
  '"apis":[{"name":"charge","method":"POST","path":"/charges","scopes":["payments:write"]}],' ..
  '"endpoints":{"base_url":"https://pay.example/api","health_url":"https://pay.example/health"}}'
LUA

# run NAME URL [wrk args...]: prints "NAME req/s p50 p99"
run() {
  local name=$1 url=$2; shift 2
  local out
  out=$(wrk -t2 -c"$connections" -d"${duration}s" --latency "$@" "$url")
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<< "$out")
  p50=$(awk '$1=="50%" {print $2}' <<< "$out")
  p99=$(awk '$1=="99%" {print $2}' <<< "$out")
  local non2xx
  non2xx=$(awk '/Non-2xx/ {print $5}' <<< "$out")
  printf '%-44s %12s %10s %10s %s\n' "$name" "$rps" "$p50" "$p99" "${non2xx:+(non-2xx: $non2xx)}"
  echo "$rps" > "$work/$(tr -c 'a-zA-Z0-9\n' '_' <<< "$name").rps"
}

echo "wrk: 2 threads, $connections connections, ${duration}s each, loopback, $(nproc) cores"
printf '%-44s %12s %10s %10s\n' "target" "req/s" "p50" "p99"
run "nginx return 200 (floor)" "http://127.0.0.1:$nginx_port/"
run "twinbridge GET /healthz" "http://127.0.0.1:$tb_port/healthz"
run "twinbridge authenticated GET /v1/principals/{id}" "http://127.0.0.1:$tb_port/v1/principals/bench-reader" \
  -H "Authorization: Bearer $key"
run "twinbridge durable POST /v1/principals" "http://127.0.0.1:$tb_port/v1/principals" \
  -H "Authorization: Bearer $token" -s "$work/post.lua"

rps_of() { cat "$work/$(tr -c 'a-zA-Z0-9\n' '_' <<< "$1").rps"; }
run "twinbridge durable POST /v1/third-party-systems" "http://127.0.0.1:$tb_port/v1/third-party-systems" \
  -H "Authorization: Bearer $token" -s "$work/register.lua"

floor=$(rps_of "nginx return 200 (floor)")
auth=$(rps_of "twinbridge authenticated GET /v1/principals/{id}")
python3 -c "print(f'authenticated GET / nginx floor = {float($auth)/float($floor):.2f} (target >= 0.70)')"
stored=$(curl -fs -H "Authorization: Bearer $token" "http://127.0.0.1:$tb_port/metrics" |
  awk '/^twinbridge_store_commit_writes_sum/ {s=$2} /^twinbridge_store_commit_writes_count/ {c=$2} END {if (c>0) printf "%.1f writes per group commit on average (%d commits)", s/c, c}')
echo "$stored"

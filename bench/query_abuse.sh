#!/usr/bin/env bash
# One client sending the most expensive queries it may, beside well-behaved ones (issue #7, OWASP API4):
# registers SYSTEMS twin systems of TWINS_PER_SYSTEM TDs of ~1 KiB, then measures with wrk, next to nginx
# `return 200` (the floor):
#   1. a polite principal alone: indexed discovery (/v1/twins?system=...&limit=100) and a filtered discovery;
#   2. the same while an abusive principal (its own API key, CONNECTIONS connections) sends, round robin, the
#      findings' queries: a 2,000-way union of wildcards, $..*..*..*, a large regular expression over every
#      description, $[*] over the whole directory;
#   3. memory: RSS idle before the abuse, at its end, and idle again 5 s after it.
# Usage: bench/query_abuse.sh [--systems 10] [--twins-per-system 1000] [--duration 10] [--binary PATH]
set -euo pipefail
cd "$(dirname "$0")/.."

systems=10
per_system=1000
duration=10
binary=build/release/twinbridge
while [ $# -gt 0 ]; do
  case "$1" in
    --systems) systems=$2; shift 2 ;;
    --twins-per-system) per_system=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
source bench/lib.sh
ensure_built "$binary"
start_nginx '[]'
start_twinbridge "$binary" --access-log false --max-body-bytes 4194304

python3 - "$work" "$systems" "$per_system" <<'PY'
import json, sys
work, systems, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for s in range(systems):
    twins = []
    for t in range(per):
        n = s * per + t
        twins.append({
            "@context": "https://www.w3.org/2022/wot/td/v1.1",
            "id": f"urn:dev:abuse:{n:07d}", "title": f"Sensor {n}",
            "description": ("sensor " * 80)[:500],
            "securityDefinitions": {"nosec_sc": {"scheme": "nosec"}}, "security": "nosec_sc",
            "properties": {"temperature": {"type": "number", "readOnly": True,
                                           "forms": [{"href": f"https://plant-{s}.example/s/{n}/t"}]}}})
    with open(f"{work}/system-{s:03d}.json", "w") as f:
        json.dump({"id": f"plant-{s:03d}", "type": "factory", "name": f"Plant {s}",
                   "endpoints": {"base_url": f"https://plant-{s}.example"}, "twins": twins}, f)
PY
for f in "$work"/system-*.json; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' --data-binary "@$f" "http://127.0.0.1:$tb_port/v1/twin-systems")
  [ "$code" = 201 ] || { echo "registration of $f answered $code" >&2; exit 1; }
done
key_of() {
  curl -fs -X POST -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    --data "{\"id\":\"$1\",\"kind\":\"metaverse-system\",\"name\":\"$1\"}" "http://127.0.0.1:$tb_port/v1/principals" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"]["token"])'
}
polite=$(key_of polite-world)
abuser=$(key_of abusive-world)

# The abuser's queries, URL-encoded, in a wrk script that sends them round robin.
python3 - "$work/abuse.lua" <<'PY'
import sys, urllib.parse
q = lambda s: urllib.parse.quote(s, safe="*")
paths = [
    "/search/jsonpath?query=" + q("$[" + ",".join(["*"] * 2000) + "]"),
    "/search/jsonpath?query=" + q("$..*..*..*"),
    "/v1/twins?filter=" + q("$[?search(@.description, '[a-z]{0,4900}z')]"),
    "/search/jsonpath?query=" + q("$[*]"),
]
with open(sys.argv[1], "w") as f:
    f.write("local paths = {" + ",".join('"%s"' % p for p in paths) + "}\nlocal i = 0\n")
    f.write("request = function()\n  i = i % #paths + 1\n  return wrk.format('GET', paths[i])\nend\n")
PY

indexed="http://127.0.0.1:$tb_port/v1/twins?system=plant-003&limit=100"
filtered="http://127.0.0.1:$tb_port/v1/twins?system=plant-004&filter=%24%5B%3F%40.title%20%3D%3D%20%27Sensor%204321%27%5D"
total=$((systems * per_system))
echo "$total twins of ~1 KiB in $systems twin systems; wrk -t1 -c${CONNECTIONS:-4} -d${duration}s, $(nproc) cores"
printf '%-62s %10s %10s %10s\n' "target" "req/s" "p50" "p99"
run "nginx return 200 (floor)" "http://127.0.0.1:$nginx_port/"
run "polite alone: indexed discovery" "$indexed" -H "Authorization: Bearer $polite"
run "polite alone: filtered discovery (one system)" "$filtered" -H "Authorization: Bearer $polite"
rss_idle=$(rss_kib "$tb_pid")

# The abuser runs through both polite measurements.
abuse_out="$work/abuse.out"
wrk -t1 -c"${CONNECTIONS:-4}" -d"$((2 * duration + 2))s" --latency -s "$work/abuse.lua" \
  -H "Authorization: Bearer $abuser" "http://127.0.0.1:$tb_port" > "$abuse_out" &
abuse_pid=$!
sleep 1
run "polite with the abuser: indexed discovery" "$indexed" -H "Authorization: Bearer $polite"
run "polite with the abuser: filtered discovery (one system)" "$filtered" -H "Authorization: Bearer $polite"
rss_peak=$(rss_kib "$tb_pid")
wait "$abuse_pid" || true
abuse_rps=$(awk '/Requests\/sec/ {print $2}' "$abuse_out")
abuse_non2xx=$(awk '/Non-2xx/ {print $NF}' "$abuse_out")
echo "abuser: ${abuse_rps} req/s, non-2xx answers: ${abuse_non2xx:-0} (422 query-too-costly, 429 while its queries wait)"
curl -fs "http://127.0.0.1:$tb_port/metrics" | grep '^twinbridge_queries_stopped_total' || true
sleep 5
rss_after=$(rss_kib "$tb_pid")
echo "memory: RSS idle ${rss_idle} KiB -> ${rss_peak} KiB during the abuse -> ${rss_after} KiB idle 5 s after it"

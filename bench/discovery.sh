#!/usr/bin/env bash
# Discovery over many registered twins (FGMV-29 8.3.2 DTSD): registers SYSTEMS twin systems of TWINS_PER_SYSTEM
# twins each (W3C WoT TDs of ~0.5 KiB), then measures with wrk, next to nginx `return 200` (the floor):
#   - indexed equality:   GET /v1/twins?system=<id>&limit=100
#   - JSONPath filter:    GET /v1/twins?filter=$[?@.title == '<one title>']   (every TD is examined)
#   - memory per twin:    (RSS after loading - RSS before) / twins
# and the durable registration rate of the loading itself. Usage:
#   bench/discovery.sh [--systems 100] [--twins-per-system 1000] [--duration 10] [--binary PATH]
#                      [--description-bytes N]   (adds a description of N bytes to each TD: larger TDs)
set -euo pipefail
cd "$(dirname "$0")/.."

systems=100
per_system=1000
description=0
duration=10
binary=build/release/twinbridge
while [ $# -gt 0 ]; do
  case "$1" in
    --systems) systems=$2; shift 2 ;;
    --twins-per-system) per_system=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --description-bytes) description=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
source bench/lib.sh
ensure_built "$binary"
start_nginx '[]'
start_twinbridge "$binary" --access-log false --max-body-bytes 4194304
rss_before=$(rss_kib "$tb_pid")

# Registration documents, one file per system.
python3 - "$work" "$systems" "$per_system" "$description" <<'PY'
import json, sys
work, systems, per, description = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for s in range(systems):
    twins = []
    for t in range(per):
        n = s * per + t
        twins.append({
            "@context": "https://www.w3.org/2022/wot/td/v1.1",
            "id": f"urn:dev:bench:{n:07d}",
            "title": f"Sensor {n}",
            "securityDefinitions": {"nosec_sc": {"scheme": "nosec"}},
            "security": "nosec_sc",
            "properties": {
                "temperature": {"type": "number", "unit": "celsius", "readOnly": True,
                                "forms": [{"href": f"https://plant-{s}.example/sensors/{n}/temperature"}]},
                "status": {"type": "string", "enum": ["ok", "alarm"],
                           "forms": [{"href": f"https://plant-{s}.example/sensors/{n}/status"}]}},
            "twinbridge:pose": {"position": [n % 100, (n // 100) % 100, 0]}})
        if description:
            twins[-1]["description"] = ("sensor " * (description // 7 + 1))[:description]
    doc = {"id": f"plant-{s:03d}", "type": "factory", "name": f"Plant {s}",
           "endpoints": {"base_url": f"https://plant-{s}.example"}, "twins": twins}
    with open(f"{work}/system-{s:03d}.json", "w") as f:
        json.dump(doc, f)
    sizes = sum(len(json.dumps(t, separators=(",", ":"))) for t in twins)
    with open(f"{work}/td_bytes", "a") as f:
        f.write(f"{sizes / len(twins)}\n")
PY
total=$((systems * per_system))
start=$(date +%s.%N)
for f in "$work"/system-*.json; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' --data-binary "@$f" "http://127.0.0.1:$tb_port/v1/twin-systems")
  [ "$code" = 201 ] || { echo "registration of $f answered $code" >&2; exit 1; }
done
end=$(date +%s.%N)
rss_after=$(rss_kib "$tb_pid")

echo "$total twins in $systems twin systems; wrk -t1 -c${CONNECTIONS:-4} -d${duration}s, $(nproc) cores"
python3 -c "print(f'loading: {$total/($end-$start):,.0f} twins/s durable ({$systems} POSTs of {$per_system} TDs)')"
td_bytes=$(awk '{s += $1; n++} END {printf "%.0f", s / n}' "$work/td_bytes")
python3 -c "print(f'memory: RSS {$rss_before} KiB -> {$rss_after} KiB, {($rss_after-$rss_before)*1024/$total:,.0f} bytes per twin (TDs of {$td_bytes} bytes as registered)')"
printf '%-62s %10s %10s %10s\n' "target" "req/s" "p50" "p99"
run "nginx return 200 (floor)" "http://127.0.0.1:$nginx_port/"
run "indexed equality: /v1/twins?system=plant-042&limit=100" \
  "http://127.0.0.1:$tb_port/v1/twins?system=plant-042&limit=100" -H "Authorization: Bearer $token"
run "JSONPath filter over all twins (one match)" \
  "http://127.0.0.1:$tb_port/v1/twins?filter=%24%5B%3F%40.title%20%3D%3D%20%27Sensor%2054321%27%5D" \
  -H "Authorization: Bearer $token"

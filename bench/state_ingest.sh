#!/usr/bin/env bash
# Durable twin state updates per second through the batched HTTP push (POST /v1/twin-systems/{id}/state, issue
# #8; target >= 50,000 updates/s on 2 cores). Registers one twin system with TWINS twins (a number and an enum
# property each), then drives wrk with CONNECTIONS connections, each request a batch of BATCH changes of distinct
# twins (every change validated against its TD, ordered, stored with a change-feed sequence number, fsync before
# the answer). Printed beside: nginx `return 200` for the same requests (the HTTP floor) and the machine's
# fdatasync rate (the durability floor: one commit per group of batches).
# Usage: bench/state_ingest.sh [--twins 1000] [--batch 100] [--duration 10] [--binary PATH]
set -euo pipefail
cd "$(dirname "$0")/.."

twins=1000
batch=100
duration=10
binary=build/release/twinbridge
while [ $# -gt 0 ]; do
  case "$1" in
    --twins) twins=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
source bench/lib.sh
ensure_built "$binary"
start_nginx '{}'
start_twinbridge "$binary" --access-log false --max-body-bytes 4194304

python3 - "$work" "$twins" "$batch" <<'PY'
import json, sys
work, twins, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
tds = [{"@context": "https://www.w3.org/2022/wot/td/v1.1", "id": f"urn:bench:cell:{n:06d}", "title": f"Robot {n}",
        "securityDefinitions": {"nosec_sc": {"scheme": "nosec"}}, "security": "nosec_sc",
        "properties": {
            "temperature": {"type": "number", "minimum": -50, "maximum": 150,
                            "forms": [{"href": f"https://cell.example/r/{n}/t"}]},
            "mode": {"type": "string", "enum": ["idle", "running", "fault"],
                     "forms": [{"href": f"https://cell.example/r/{n}/m"}]}}} for n in range(twins)]
with open(f"{work}/system.json", "w") as f:
    json.dump({"id": "bench-cell", "type": "factory-cell", "name": "Bench cell",
               "endpoints": {"base_url": "https://cell.example"}, "twins": tds}, f)
# The wrk script: request i sends a batch of `batch` twins starting at (i * batch) % twins.
bodies = []
for start in range(0, twins, batch):
    changes = [{"twin": f"urn:bench:cell:{(start + k) % twins:06d}",
                "patch": {"properties": {"temperature": 20.5 + k % 10, "mode": "running"}}} for k in range(batch)]
    bodies.append(json.dumps({"changes": changes}))
with open(f"{work}/batch.lua", "w") as f:
    f.write("local bodies = {" + ",".join("[==[" + b + "]==]" for b in bodies) + "}\n")
    f.write("local i = 0\nrequest = function()\n  i = i + 1\n"
            "  return wrk.format('POST', nil, nil, bodies[(i % #bodies) + 1])\nend\n")
PY
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $token" \
  -H 'Content-Type: application/json' --data-binary "@$work/system.json" "http://127.0.0.1:$tb_port/v1/twin-systems")
[ "$code" = 201 ] || { echo "registration answered $code" >&2; exit 1; }

fsyncs=$(python3 - "$work" <<'PY'
import os, sys, time
path = os.path.join(sys.argv[1], "fsync.probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT)
n, end = 0, time.time() + 2
while time.time() < end:
    os.write(fd, b"x" * 4096)
    os.fdatasync(fd)
    n += 1
print(f"{n / 2:.0f}")
PY
)
export CONNECTIONS=${CONNECTIONS:-16}
printf '%-62s %10s %10s %10s\n' "target (batch of $batch changes)" "req/s" "p50" "p99"
run "nginx return 200 (the HTTP floor, same requests)" "http://127.0.0.1:$nginx_port/" -s "$work/batch.lua"
line=$(run "twinbridge POST /v1/twin-systems/{id}/state" \
  "http://127.0.0.1:$tb_port/v1/twin-systems/bench-cell/state" -s "$work/batch.lua" \
  -H "Authorization: Bearer $token" -H 'Content-Type: application/json')
echo "$line"
rps=$(awk '{print $(NF-2)}' <<< "$line")
python3 -c "print(f'durable twin state updates/s: {float(\"$rps\") * $batch:,.0f}  (fdatasync/s on this machine: $fsyncs)')"
curl -fs -H "Authorization: Bearer $token" "http://127.0.0.1:$tb_port/v1/twins/urn:bench:cell:000000/state" |
  python3 -c 'import json,sys; s=json.load(sys.stdin); print("state version of the first twin:", s["version"])'

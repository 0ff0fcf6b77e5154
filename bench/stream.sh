#!/usr/bin/env bash
# The live stream's and state ingestion's figures (issue #8 §7), each beside its peer measured in the same run:
#   ingest   durable twin state updates/s: batched POST /v1/twin-systems/{id}/state, and the same batches
#            published to the twin system's MQTT state topic (counted once stored);
#   latency  durable and ephemeral change -> WebSocket subscriber latency (100 subscribers of /v1/stream,
#            10,000 changes/s), beside the data directory's fdatasync latency;
#   fanout   deliveries/s to 1,000 WebSocket subscribers of the same twins, beside Mosquitto delivering
#            messages of the same size to 1,000 MQTT subscribers (QoS 0 and 1).
# Starts Mosquitto (one listener on 127.0.0.1, a free port) and `twinbridge serve` (loopback, a fresh data
# directory, the local set-up of ./scripts/serve, synced from that broker), creates with the admin token a
# twin-system principal (the publisher) and a metaverse-system principal (the subscribers) with API keys,
# registers one twin system with TWINS twins, then runs build/release/bench/bench_stream in each mode.
# Usage:
#   bench/stream.sh [--modes "ingest latency fanout"] [--duration 10] [--warmup 2] [--twins 1000]
#                   [--threads 1] [--latency-batch 10] [--binary PATH]
# --latency-batch: changes per POST in the latency mode (each waits for those before it in its batch; 10 at
# 10,000 changes/s is a source that sends what it has every millisecond).
set -euo pipefail
cd "$(dirname "$0")/.."

modes="ingest latency fanout"
duration=10
warmup=2
twins=1000
threads=1
latency_batch=10
binary=build/release/twinbridge
bench=build/release/bench/bench_stream
while [ $# -gt 0 ]; do
  case "$1" in
    --modes) modes=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --twins) twins=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --latency-batch) latency_batch=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x /usr/sbin/mosquitto ] || bash scripts/install-deps.sh
[ -x "$binary" ] && [ -x "$bench" ] || {
  cmake --preset release >/dev/null && cmake --build --preset release --target twinbridge bench_stream
}
# 1,000 WebSocket connections on each side, then 1,000 MQTT ones.
ulimit -n "$(ulimit -Hn)"

source bench/lib.sh

# Mosquitto: the peer of the fan-out and the broker twinbridge syncs from.
mq_port=$(free_port)
mkdir -p "$work/mosquitto"
cat > "$work/mosquitto/mosquitto.conf" <<CONF
listener $mq_port 127.0.0.1
allow_anonymous true
persistence false
set_tcp_nodelay true
log_dest file $work/mosquitto/mosquitto.log
user $(id -un)
CONF
/usr/sbin/mosquitto -c "$work/mosquitto/mosquitto.conf" 2> "$work/mosquitto/stderr.log" &
mq_pid=$!
pids+=($mq_pid)
for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$mq_port") 2>/dev/null && break; sleep 0.05; done

start_twinbridge "$binary" --access-log false --max-body-bytes 4194304 --outbound-allow loopback \
  --mqtt-url "mqtt://127.0.0.1:$mq_port"
api="http://127.0.0.1:$tb_port"

# new_key ID KIND: creates the principal and prints its API key.
new_key() {
  curl -fs -X POST -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -d "{\"id\":\"$1\",\"kind\":\"$2\",\"name\":\"$1\"}" "$api/v1/principals" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"]["token"])'
}
publisher=$(new_key bench-publisher twin-system)
viewer=$(new_key bench-viewer metaverse-system)

python3 - "$work" "$twins" <<'PY'
import json, sys
work, twins = sys.argv[1], int(sys.argv[2])
def prop(n, name, schema):
    return dict(schema, forms=[{"href": f"https://cell.example/r/{n}/{name}"}])
tds = [{"@context": "https://www.w3.org/2022/wot/td/v1.1", "id": f"urn:bench:stream:{n:06d}", "title": f"Robot {n}",
        "securityDefinitions": {"nosec_sc": {"scheme": "nosec"}}, "security": "nosec_sc",
        "properties": {
            "bench_t": prop(n, "t", {"type": "integer"}),
            "bench_e": prop(n, "e", {"type": "integer", "twinbridge:ephemeral": True}),
            "temperature": prop(n, "temperature", {"type": "number", "minimum": -50, "maximum": 150}),
            "mode": prop(n, "mode", {"type": "string", "enum": ["idle", "running", "fault"]})}}
       for n in range(twins)]
with open(f"{work}/system.json", "w") as f:
    json.dump({"id": "bench-stream", "type": "factory-cell", "name": "Bench stream cell",
               "endpoints": {"base_url": "https://cell.example"}, "twins": tds}, f)
PY
code=$(curl -s -o "$work/registration.json" -w '%{http_code}' -X POST -H "Authorization: Bearer $publisher" \
  -H 'Content-Type: application/json' --data-binary "@$work/system.json" "$api/v1/twin-systems")
[ "$code" = 201 ] || { echo "registration answered $code: $(head -c 500 "$work/registration.json")" >&2; exit 1; }

common=(--port "$tb_port" --viewer-key "$viewer" --publisher-key "$publisher" --system bench-stream
        --twins "$twins" --server-pid "$tb_pid" --threads "$threads")
echo "$(date -u +%FT%TZ), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), twinbridge $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo '+uncommitted src changes'), $(/usr/sbin/mosquitto -h | head -1)"
echo "busiest processes now (the machine is shared): $(ps -eo pcpu=,comm= --sort=-pcpu | head -6 | awk '{printf "%s %s%%; ", $2, $1}')"
echo
for mode in $modes; do
  case "$mode" in
    ingest) "$bench" ingest "${common[@]}" --duration "$duration" --mqtt-port "$mq_port" ;;
    latency) "$bench" latency "${common[@]}" --duration "$duration" --warmup "$warmup" --data-dir "$work/data" \
               --batch "$latency_batch" ;;
    fanout) "$bench" fanout "${common[@]}" --duration "$duration" --warmup "$warmup" --mqtt-port "$mq_port" \
              --broker-pid "$mq_pid" ;;
    *) echo "unknown mode $mode" >&2; exit 2 ;;
  esac
  echo
done
kill -0 "$tb_pid" 2>/dev/null || { echo "twinbridge exited; its log:" >&2; tail -20 "$work/twinbridge.log" >&2; exit 1; }

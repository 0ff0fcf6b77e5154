#!/usr/bin/env bash
# Memory of many twins with state, and a restart with them (issue #8 §7: 1,000,000 twins of ~1 KiB TDs in at most
# 3 GiB RSS; a restart with them in at most 15 s). Registers TWINS twins in twin systems of TWINS_PER_SYSTEM
# (the TDs of bench/discovery.sh with a description of DESCRIPTION_BYTES: ~1 KiB each), pushes one state change for
# every twin (POST /v1/twin-systems/{id}/state, a system's twins per request), and measures the RSS before, after
# the TDs and after the states. Then kill -9 and `twinbridge serve` again on the same data directory: the time from
# exec to /readyz answering 200 and to the first GET /v1/twins/{id}/state answering 200 (with the pushed value), the
# server's log lines against that clock, its RSS once ready and, unless --no-read-states, after every twin's state
# has been read again (GET /v1/twin-states, 500 ids a request: states are loaded into memory on first use).
# --save-data DIR copies the data directory, as the kill left it, to DIR (for restarts measured alone, e.g. under a
# profiler: `twinbridge serve --data DIR/data ...`).
# Usage: bench/restart.sh [--twins 1000000] [--twins-per-system 1000] [--description-bytes 500]
#                         [--no-read-states] [--save-data DIR] [--binary PATH]
set -euo pipefail
cd "$(dirname "$0")/.."

twins=1000000
per_system=1000
description=500
read_states=true
save_data=
binary=build/release/twinbridge
while [ $# -gt 0 ]; do
  case "$1" in
    --twins) twins=$2; shift 2 ;;
    --twins-per-system) per_system=$2; shift 2 ;;
    --description-bytes) description=$2; shift 2 ;;
    --no-read-states) read_states=false; shift ;;
    --save-data) save_data=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ $((twins % per_system)) = 0 ] || { echo "--twins must be a multiple of --twins-per-system" >&2; exit 2; }
systems=$((twins / per_system))
# One job: other builds may be running on the machine.
[ -x "$binary" ] || { cmake --preset release >/dev/null && cmake --build --preset release --target twinbridge -j1; }
source bench/lib.sh
# Both starts run this copy: a build elsewhere may replace the binary between them.
cp "$binary" "$work/twinbridge"
binary=$work/twinbridge
serve_args=(--access-log false --max-body-bytes 4194304)
start_twinbridge "$binary" "${serve_args[@]}"
base=http://127.0.0.1:$tb_port
rss_idle=$(rss_kib "$tb_pid")

# Registration documents and state batches, one file of each per twin system.
python3 - "$work" "$systems" "$per_system" "$description" <<'PY'
import json, sys
work, systems, per, description = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
td_bytes = change_bytes = 0
for s in range(systems):
    twins, changes = [], []
    for t in range(per):
        n = s * per + t
        twin = {
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
            "twinbridge:pose": {"position": [n % 100, (n // 100) % 100, 0]}}
        if description:
            twin["description"] = ("sensor " * (description // 7 + 1))[:description]
        twins.append(twin)
        change = {"twin": twin["id"], "sourceSeq": 1,
                  "patch": {"properties": {"temperature": 20 + n % 100 / 10, "status": "ok"}}}
        changes.append(change)
        td_bytes += len(json.dumps(twin, separators=(",", ":")))
        change_bytes += len(json.dumps(change, separators=(",", ":")))
    with open(f"{work}/system-{s:04d}.json", "w") as f:
        json.dump({"id": f"plant-{s:04d}", "type": "factory", "name": f"Plant {s}",
                   "endpoints": {"base_url": f"https://plant-{s}.example"}, "twins": twins}, f)
    with open(f"{work}/state-{s:04d}.json", "w") as f:
        json.dump({"changes": changes}, f)
with open(f"{work}/sizes", "w") as f:
    f.write(f"{td_bytes / (systems * per):.0f} {change_bytes / (systems * per):.0f}\n")
PY
read -r td_bytes change_bytes < "$work/sizes"

now() { date +%s%N; }
post() {  # post PATH FILE EXPECTED_STATUS
  local code
  code=$(curl -s -o "$work/answer" -w '%{http_code}' -X POST -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' --data-binary "@$2" "$base$1")
  [ "$code" = "$3" ] || { echo "POST $1 with $2 answered $code: $(head -c 500 "$work/answer")" >&2; exit 1; }
}
t_start=$(now)
for s in $(seq 0 $((systems - 1))); do post /v1/twin-systems "$(printf '%s/system-%04d.json' "$work" "$s")" 201; done
t_tds=$(now)
rss_tds=$(rss_kib "$tb_pid")
for s in $(seq 0 $((systems - 1))); do
  post "$(printf '/v1/twin-systems/plant-%04d/state' "$s")" "$(printf '%s/state-%04d.json' "$work" "$s")" 200
  grep -q '"failed":0' "$work/answer" || { echo "state batch $s: $(head -c 500 "$work/answer")" >&2; exit 1; }
done
t_states=$(now)
rss_states=$(rss_kib "$tb_pid")
smaps_loaded=$(awk '/^(Rss|Anonymous|Pss_File):/ {printf "%s %s MiB, ", $1, int($2 / 1024)}' \
  "/proc/$tb_pid/smaps_rollup")
db_sizes=$(for f in "$work"/data/twinbridge.db*; do
  printf '%s %s MiB, ' "${f##*/}" "$(( $(stat -c %s "$f") >> 20 ))"; done)

# kill -9, then the same binary on the same data directory.
kill -9 "$tb_pid"
wait "$tb_pid" 2>/dev/null || true
if [ -n "$save_data" ]; then
  mkdir -p "$save_data"
  cp -r "$work/data" "$save_data/"
fi
tb_port=$(free_port)
base=http://127.0.0.1:$tb_port
last=$(printf 'urn:dev:bench:%07d' $((twins - 1)))
t0=$(now)
TWINBRIDGE_ADMIN_TOKEN=$token "$binary" serve "${serve_args[@]}" --listen "127.0.0.1:$tb_port" --data "$work/data" \
  2> "$work/restart.log" > /dev/null &
tb_pid=$!
pids+=($tb_pid)
status() { curl -s -o "$work/answer" -w '%{http_code}' -H "Authorization: Bearer $token" "$base$1" || true; }
: > "$work/rss_timeline"
until [ "$(status /readyz)" = 200 ]; do
  kill -0 "$tb_pid" 2>/dev/null || { echo "the restarted server exited:" >&2; cat "$work/restart.log" >&2; exit 1; }
  [ $(( ($(now) - t0) / 1000000000 )) -lt 600 ] || { echo "not ready after 600 s" >&2; exit 1; }
  echo "$(( ($(now) - t0) / 1000000 )) $(rss_kib "$tb_pid")" >> "$work/rss_timeline"
  sleep 0.02
done
t_ready=$(now)
cpu_ready=$(awk '{printf "%.1f", ($14 + $15) / 100}' "/proc/$tb_pid/stat")
# The main thread loads the twins: its time on a CPU and its time waiting for one (a shared machine).
read -r main_cpu_ns main_wait_ns _ < "/proc/$tb_pid/schedstat"
rss_ready=$(rss_kib "$tb_pid")
until [ "$(status "/v1/twins/$last/state")" = 200 ]; do
  [ $(( ($(now) - t0) / 1000000000 )) -lt 600 ] || { echo "no state of $last after 600 s" >&2; exit 1; }
done
t_state=$(now)
python3 - "$work/answer" "$((twins - 1))" <<'PY'
import json, sys
state, n = json.load(open(sys.argv[1])), int(sys.argv[2])
got = state.get("properties", {}).get("temperature")
if got != 20 + n % 100 / 10:
    sys.exit(f"the state of the last twin after the restart holds temperature {got}: {state}")
PY
rss_state=$(rss_kib "$tb_pid")
smaps_restarted=$(awk '/^(Rss|Anonymous|Pss_File):/ {printf "%s %s MiB, ", $1, int($2 / 1024)}' \
  "/proc/$tb_pid/smaps_rollup")

if $read_states; then
  python3 - "$work" "$twins" "$base" <<'PY'
import sys
work, twins, base = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(f"{work}/read_states.curl", "w") as f:
    for start in range(0, twins, 500):
        ids = "&".join(f"id=urn:dev:bench:{n:07d}" for n in range(start, min(start + 500, twins)))
        f.write(f'url = "{base}/v1/twin-states?{ids}"\noutput = "/dev/null"\n')
PY
  t_read=$(now)
  curl -s -K "$work/read_states.curl" -H "Authorization: Bearer $token" -w '%{http_code}\n' > "$work/read_codes"
  t_read_end=$(now)
  bad=$(grep -vc '^200$' "$work/read_codes" || true)
  [ "$bad" = 0 ] || { echo "$bad reads of /v1/twin-states did not answer 200" >&2; exit 1; }
  rss_read=$(rss_kib "$tb_pid")
fi

mib() { python3 -c "print(f'{$1 / 1024:,.0f} MiB')"; }
secs() { python3 -c "print(f'{($2 - $1) / 1e9:.2f} s')"; }
per_twin() { python3 -c "print(f'{($2 - $1) * 1024 / $twins:,.0f} bytes/twin')"; }
row() { printf '%-64s %14s   %s\n' "$@"; }
echo "$twins twins in $systems twin systems, TDs of $td_bytes bytes, state changes of $change_bytes bytes;" \
  "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
row "figure" "value" "per twin / target"
row "RSS idle, before loading" "$(mib "$rss_idle")" ""
row "loading the TDs ($systems POSTs of $per_system)" "$(secs "$t_start" "$t_tds")" \
  "$(python3 -c "print(f'{$twins * 1e9 / ($t_tds - $t_start):,.0f} twins/s')")"
row "RSS after the TDs" "$(mib "$rss_tds")" "$(per_twin "$rss_idle" "$rss_tds")"
row "pushing one state change per twin ($systems POSTs of $per_system)" "$(secs "$t_tds" "$t_states")" \
  "$(python3 -c "print(f'{$twins * 1e9 / ($t_states - $t_tds):,.0f} updates/s')")"
row "RSS after the states" "$(mib "$rss_states")" \
  "$(per_twin "$rss_idle" "$rss_states") (states: $(per_twin "$rss_tds" "$rss_states"))"
row "  projected to 1,000,000 twins (idle + per twin x 1e6)" \
  "$(python3 -c "print(f'{($rss_idle + ($rss_states - $rss_idle) * 1e6 / $twins) / 1048576:.2f} GiB')")" \
  "<= 3 GiB"
row "restart: exec -> /readyz 200" "$(secs "$t0" "$t_ready")" "<= 15 s"
row "  server CPU time by then (all threads)" "$cpu_ready s" \
  "main thread: $(secs 0 "$main_cpu_ns") on a CPU, $(secs 0 "$main_wait_ns") waiting for one"
row "restart: exec -> first GET /v1/twins/{id}/state 200" "$(secs "$t0" "$t_state")" ""
row "RSS once ready" "$(mib "$rss_ready")" "$(per_twin "$rss_idle" "$rss_ready")"
row "RSS after the first state read" "$(mib "$rss_state")" ""
if $read_states; then
  row "reading every twin's state (GET /v1/twin-states, 500 ids)" "$(secs "$t_read" "$t_read_end")" ""
  row "RSS after reading every state" "$(mib "$rss_read")" "$(per_twin "$rss_idle" "$rss_read")"
fi
echo "loaded:    ${smaps_loaded%, }"
echo "restarted: ${smaps_restarted%, }"
echo "database at the kill: ${db_sizes%, }"
echo "restart, against the exec (server log lines, then RSS every second):"
python3 - "$work/restart.log" "$t0" <<'PY'
import datetime, json, sys
t0 = int(sys.argv[2]) / 1e9
for line in open(sys.argv[1]):
    try:
        entry = json.loads(line)
    except ValueError:
        continue
    at = datetime.datetime.fromisoformat(entry["ts"].replace("Z", "+00:00")).timestamp()
    print(f"  {at - t0:7.3f} s  {entry['msg'][:110]}")
PY
awk '$1 >= next_ms { printf "%s%.1f s %d MiB", sep, $1 / 1000, $2 / 1024; sep = ", "; next_ms = $1 + 1000 }
     END { print "" }' "$work/rss_timeline" | fold -s -w 118 | sed 's/^/  /'

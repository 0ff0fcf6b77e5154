# Shared by the benchmark scripts (sourced, not run): the dependencies and the binary, a scratch folder cleaned
# on exit, free loopback ports, readiness polling, the nginx `return 200` floor every benchmark measures beside
# twinbridge, twinbridge itself, and wrk runs printed as one line each.

# ensure_built BINARY: installs wrk and nginx when missing and builds BINARY when it is not there.
ensure_built() {
  command -v wrk >/dev/null && command -v nginx >/dev/null || bash scripts/install-deps.sh
  [ -x "$1" ] || { cmake --preset release >/dev/null && cmake --build --preset release --target twinbridge; }
}

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_http() { for _ in $(seq 1 200); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.05; done; echo "no answer from $1" >&2; exit 1; }

# start_nginx BODY: nginx with a worker per core and no access log answering 200 BODY; sets nginx_port.
start_nginx() {
  nginx_port=$(free_port)
  mkdir -p "$work/nginx"
  cat > "$work/nginx/nginx.conf" <<CONF
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
daemon off;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx; fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
  server { listen 127.0.0.1:$nginx_port; location / { return 200 '$1'; } }
}
CONF
  nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" &
  pids+=($!)
  wait_http "http://127.0.0.1:$nginx_port/"
}

# start_twinbridge BINARY [ARGS...]: `twinbridge serve` on a free port with a fresh data directory and an admin
# token; sets tb_port, token and tb_pid.
start_twinbridge() {
  local binary=$1
  shift
  tb_port=$(free_port)
  token="bench-admin-token-$(date +%s%N)"
  TWINBRIDGE_ADMIN_TOKEN=$token "$binary" serve "$@" --listen "127.0.0.1:$tb_port" --data "$work/data" \
    2> "$work/twinbridge.log" > /dev/null &
  tb_pid=$!
  pids+=($tb_pid)
  wait_http "http://127.0.0.1:$tb_port/healthz"
}

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# run NAME URL [WRK ARGS...]: one wrk run (CONNECTIONS connections, `duration` seconds), printed as
# NAME req/s p50 p99.
run() {
  local name=$1 url=$2
  shift 2
  local out rps p50 p99
  out=$(wrk -t1 -c"${CONNECTIONS:-4}" -d"${duration}s" --latency "$@" "$url")
  rps=$(awk '/Requests\/sec/ {print $2}' <<< "$out")
  p50=$(awk '$1=="50%" {print $2}' <<< "$out")
  p99=$(awk '$1=="99%" {print $2}' <<< "$out")
  printf '%-62s %10s %10s %10s\n' "$name" "$rps" "$p50" "$p99"
}

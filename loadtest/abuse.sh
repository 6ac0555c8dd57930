#!/usr/bin/env bash
# Hostile clients against the gateway and nginx, side by side: each attack
# of loadtest/abuse.py (slowloris, body_promise, big_head, slow_reader) runs
# for SECONDS against a fresh proxy — sluice-gateway (--threads 1) or nginx
# (one process) — pinned to PROXY_CORE, in front of two demo servers (JSON
# and SSE answers) on DEMO_CORE, while ordinary calls go through the same
# proxy. Prints one line per attack and proxy: RSS and descriptors before,
# at peak and after; the proxy's CPU; p50/p99 of ordinary calls when idle
# and during the attack.
#
# Usage:  loadtest/abuse.sh
# Env:    SECONDS_PER=10  CONNECTIONS=500  ATTACKS="slowloris body_promise big_head slow_reader"
#         SLOW_READERS=8  CONTENDERS="gateway nginx"  SKIP_BUILD=1  BIN_DIR=target/release
#         DEMO_CORE=0 PROXY_CORE=1  NGINX=/usr/sbin/nginx  OUT_DIR=dir
#         GATEWAY_LIMITS="max_inspected_response_bytes: 65536"  (the gateway's `limits:`)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN_DIR=${BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
SECONDS_PER=${SECONDS_PER:-10}
CONNECTIONS=${CONNECTIONS:-500}
SLOW_READERS=${SLOW_READERS:-8}
ATTACKS=${ATTACKS:-slowloris body_promise big_head slow_reader}
CONTENDERS=${CONTENDERS:-gateway nginx}
DEMO_CORE=${DEMO_CORE:-0}
PROXY_CORE=${PROXY_CORE:-1}
NGINX=${NGINX:-/usr/sbin/nginx}
OUT_DIR=${OUT_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/sluice-abuse.XXXXXX")}
mkdir -p "$OUT_DIR"

log() { printf '[abuse.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  (cd "$ROOT" && cargo build --release -p sluice-gateway -p sluice-demo --bin sluice-gateway --bin sluice-demo)
fi
GATEWAY=$BIN_DIR/sluice-gateway
DEMO=$BIN_DIR/sluice-demo
[[ -x $GATEWAY && -x $DEMO ]] || die "missing $GATEWAY or $DEMO"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 300); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; die "port $1 never opened"; }

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

PORT_JSON=$(free_port); PORT_SSE=$(free_port)
taskset -c "$DEMO_CORE" "$DEMO" --listen "127.0.0.1:$PORT_JSON" --json-response >"$OUT_DIR/demo-json.out" 2>&1 &
PIDS+=("$!")
taskset -c "$DEMO_CORE" "$DEMO" --listen "127.0.0.1:$PORT_SSE" >"$OUT_DIR/demo-sse.out" 2>&1 &
PIDS+=("$!")
wait_port "$PORT_JSON"; wait_port "$PORT_SSE"

start_proxy() { # contender -> sets PROXY_PID, PROXY_PORT
  PROXY_PORT=$(free_port)
  case $1 in
    gateway)
      local admin; admin=$(free_port)
      cat >"$OUT_DIR/gateway.yaml" <<EOF
listeners: [{ name: main, address: "127.0.0.1:$PROXY_PORT" }]
admin: { address: "127.0.0.1:$admin" }
shutdown: { grace_period_s: 0 }
limits: { ${GATEWAY_LIMITS:-} }
upstreams:
  - { name: json, url: "http://127.0.0.1:$PORT_JSON/mcp" }
  - { name: sse, url: "http://127.0.0.1:$PORT_SSE/mcp" }
routes:
  - { name: json, path: /json, upstream: json }
  - { name: sse, path: /sse, upstream: sse }
EOF
      taskset -c "$PROXY_CORE" "$GATEWAY" --config "$OUT_DIR/gateway.yaml" --threads 1 \
        >"$OUT_DIR/gateway.out" 2>&1 &
      PROXY_PID=$! ;;
    nginx)
      mkdir -p "$OUT_DIR/nginx"
      cat >"$OUT_DIR/nginx/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 65536;
error_log $OUT_DIR/nginx/error.log crit;
pid $OUT_DIR/nginx/nginx.pid;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path $OUT_DIR/nginx/client_body;
  proxy_temp_path $OUT_DIR/nginx/proxy;
  fastcgi_temp_path $OUT_DIR/nginx/fastcgi;
  uwsgi_temp_path $OUT_DIR/nginx/uwsgi;
  scgi_temp_path $OUT_DIR/nginx/scgi;
  upstream json { server 127.0.0.1:$PORT_JSON; keepalive 64; }
  upstream sse { server 127.0.0.1:$PORT_SSE; keepalive 64; }
  server {
    listen 127.0.0.1:$PROXY_PORT;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_buffering off;
    proxy_request_buffering off;
    location = /json { proxy_pass http://json/mcp; }
    location = /sse { proxy_pass http://sse/mcp; }
  }
}
EOF
      taskset -c "$PROXY_CORE" "$NGINX" -p "$OUT_DIR/nginx" -e "$OUT_DIR/nginx/error.log" \
        -c "$OUT_DIR/nginx/nginx.conf" >"$OUT_DIR/nginx.out" 2>&1 &
      PROXY_PID=$! ;;
    *) die "unknown contender $1" ;;
  esac
  wait_port "$PROXY_PORT"
}

printf '%-9s %-13s %5s %-20s %-17s %6s %-17s %-17s %s\n' proxy attack conns "rss MB (0/peak/end)" "fds (0/peak/end)" cpu% "idle p50/p99 ms" "during p50/p99" extra
for attack in $ATTACKS; do
  n=$CONNECTIONS
  [[ $attack == slow_reader ]] && n=$SLOW_READERS
  for c in $CONTENDERS; do
    if [[ $c == nginx && ! -x $NGINX ]]; then log "skipping nginx: $NGINX not found"; continue; fi
    start_proxy "$c"
    line=$(taskset -c "$DEMO_CORE" python3 "$HERE/abuse.py" "http://127.0.0.1:$PROXY_PORT" "$PROXY_PID" "$attack" "$SECONDS_PER" "$n")
    echo "$line" >>"$OUT_DIR/results.jsonl"
    kill "$PROXY_PID" 2>/dev/null || true; wait "$PROXY_PID" 2>/dev/null || true
    python3 - "$c" "$line" <<'PY'
import json, sys
c, r = sys.argv[1], json.loads(sys.argv[2])
rss = "/".join(str(x) for x in r["rss_mb"])
fds = "/".join(str(x) for x in r["fds"])
extra = f"calls {r['calls']} failed {r['calls_failed']} attackers closed {r['attackers_closed']}"
if "slow_stream_mb_per_s" in r:
    extra += f" slow streams: {r['slow_stream_mb_per_s']} MB/s each, {r['slow_stream_mb']} MB in all"
print(f"{c:<9} {r['attack']:<13} {r['connections']:>5} {rss:<20} {fds:<17} {r['cpu_pct']:>6} "
      f"{r['idle_p50_ms']}/{r['idle_p99_ms']:<10} {r['p50_ms']}/{r['p99_ms']:<10} {extra}")
PY
  done
done
log "raw results: $OUT_DIR/results.jsonl"

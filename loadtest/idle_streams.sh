#!/usr/bin/env bash
# Memory per idle SSE stream (issue 7, scenario 5): N streams held open
# through sluice-gateway and through nginx, each to the demo server, and the
# proxy's RSS before and with them. N defaults to 9000: with this machine's
# 20,000 open-files limit a proxy holds two descriptors per stream.
#
# Usage: loadtest/idle_streams.sh        (SKIP_BUILD=1 to reuse target/release)
# Env:   N=9000  CONTENDERS="gateway bare nginx"  OUT_DIR=dir  BIN_DIR=target/release
# (bare = benches/bare_pingora.rs, Pingora with only `upstream_peer`: what
# the framework itself keeps per stream)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN=${BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
N=${N:-9000}
CONTENDERS=${CONTENDERS:-gateway bare nginx}
NGINX=${NGINX:-/usr/sbin/nginx}
OUT_DIR=${OUT_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/sluice-idle.XXXXXX")}
mkdir -p "$OUT_DIR"
log() { printf '[idle] %s\n' "$*" >&2; }

if [[ -z ${SKIP_BUILD:-} ]]; then
  log "building release binaries"
  (cd "$ROOT" && cargo build --release -q -p sluice-gateway -p sluice-demo -p sluice-benches --bin sluice-gateway --bin sluice-demo --bin bare-pingora)
fi
ulimit -n "$(ulimit -Hn)"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { for _ in $(seq 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }

DEMO_PORT=$(port)
"$BIN/sluice-demo" --listen "127.0.0.1:$DEMO_PORT" --sse-interval-ms 3600000 >"$OUT_DIR/demo.out" 2>&1 &
PIDS+=("$!")
wait_for grep -q "listening on" "$OUT_DIR/demo.out"

for who in $CONTENDERS; do
  P=$(port)
  case $who in
    gateway)
      A=$(port)
      printf 'listeners:\n  - { name: main, address: "127.0.0.1:%s" }\nadmin: { address: "127.0.0.1:%s" }\nshutdown: { grace_period_s: 0 }\nupstreams:\n  - { name: demo, url: "http://127.0.0.1:%s/mcp" }\nroutes:\n  - { name: mcp, path: /mcp, upstream: demo }\n' \
        "$P" "$A" "$DEMO_PORT" >"$OUT_DIR/gateway.yaml"
      "$BIN/sluice-gateway" --config "$OUT_DIR/gateway.yaml" --threads 1 >"$OUT_DIR/gateway.out" 2>&1 &
      PID=$!
      wait_for curl -fsS "http://127.0.0.1:$A/readyz"
      ;;
    bare)
      "$BIN/bare-pingora" --threads 1 --pair "127.0.0.1:$P=127.0.0.1:$DEMO_PORT" >"$OUT_DIR/bare.out" 2>&1 &
      PID=$!
      wait_for curl -sS -o /dev/null "http://127.0.0.1:$P/"
      ;;
    nginx)
      [[ -x $NGINX ]] || { log "skipping nginx"; continue; }
      mkdir -p "$OUT_DIR/nginx"
      cat >"$OUT_DIR/nginx/nginx.conf" <<NGX
daemon off; master_process off; worker_processes 1; worker_rlimit_nofile 20000;
error_log $OUT_DIR/nginx/error.log warn; pid $OUT_DIR/nginx/nginx.pid;
events { worker_connections 19000; }
http { access_log off; client_body_temp_path $OUT_DIR/nginx/cb; proxy_temp_path $OUT_DIR/nginx/p;
  fastcgi_temp_path $OUT_DIR/nginx/f; uwsgi_temp_path $OUT_DIR/nginx/u; scgi_temp_path $OUT_DIR/nginx/s;
  upstream demo { server 127.0.0.1:$DEMO_PORT; keepalive 64; }
  server { listen 127.0.0.1:$P; proxy_http_version 1.1; proxy_set_header Connection "";
    proxy_buffering off; proxy_read_timeout 3600s; location = /mcp { proxy_pass http://demo/mcp; } } }
NGX
      "$NGINX" -p "$OUT_DIR/nginx" -c "$OUT_DIR/nginx/nginx.conf" >"$OUT_DIR/nginx.out" 2>&1 &
      PID=$!
      wait_for curl -sS -o /dev/null "http://127.0.0.1:$P/"
      ;;
    *) log "unknown contender $who"; exit 1 ;;
  esac
  PIDS+=("$PID")
  printf '%-8s ' "$who"
  python3 "$HERE/idle_streams.py" 127.0.0.1 "$P" /mcp "$N" "$PID" || true
  kill "$PID" 2>/dev/null || true
done
log "logs in $OUT_DIR"

#!/usr/bin/env bash
# Memory per idle MCP session (issue 21): N sessions opened (`initialize`,
# then nothing) through a plain route to the demo server, and through a
# virtual server whose three sources are that demo under three names (each
# client session opens three upstream sessions). One fresh gateway per kind;
# its RSS after a warm-up of 200 sessions and after N more. A virtual
# server's session state travels in the sealed session id, so what the
# gateway keeps per idle federated session is what its allocator keeps of
# the work; a plain route keeps each session's owner.
#
# Usage: loadtest/session_memory.sh   (SKIP_BUILD=1 to reuse target/release)
# Env:   N=5000  OUT_DIR=dir  BIN_DIR=target/release
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN=${BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
N=${N:-5000}
OUT_DIR=${OUT_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/sluice-sessions.XXXXXX")}
mkdir -p "$OUT_DIR"
log() { printf '[sessions] %s\n' "$*" >&2; }

if [[ -z ${SKIP_BUILD:-} ]]; then
  log "building release binaries"
  (cd "$ROOT" && cargo build --release -q -p sluice-gateway -p sluice-demo --bin sluice-gateway --bin sluice-demo)
fi
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { for _ in $(seq 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

DEMO_PORT=$(port)
"$BIN/sluice-demo" --listen "127.0.0.1:$DEMO_PORT" --json-response >"$OUT_DIR/demo.out" 2>&1 &
PIDS+=("$!")
wait_for grep -q "listening on" "$OUT_DIR/demo.out"

open_sessions() { # url count
  python3 - "$1" "$2" <<'PYEOF'
import http.client, json, sys, urllib.parse
url = urllib.parse.urlsplit(sys.argv[1])
n = int(sys.argv[2])
conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {},
    "clientInfo": {"name": "sessions", "version": "1"}}}).encode()
headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
for i in range(n):
    conn.request("POST", url.path, body, headers)
    r = conn.getresponse()
    data = r.read()
    sid = r.getheader("mcp-session-id")
    if r.status != 200 or not sid:
        sys.exit(f"initialize {i}: {r.status} {data[:200]!r}")
print(len(sid))
PYEOF
}

for kind in plain federated; do
  P=$(port)
  A=$(port)
  cat >"$OUT_DIR/$kind.yaml" <<EOF
listeners: [{ name: main, address: "127.0.0.1:$P" }]
admin: { address: "127.0.0.1:$A" }
upstreams:
  - { name: a, url: "http://127.0.0.1:$DEMO_PORT/mcp" }
  - { name: b, url: "http://127.0.0.1:$DEMO_PORT/mcp" }
  - { name: c, url: "http://127.0.0.1:$DEMO_PORT/mcp" }
routes:
  - { name: plain, path: /plain, upstream: a }
  - { name: federated, path: /federated, server: three }
servers:
  - { name: three, sources: [{ upstream: a }, { upstream: b }, { upstream: c }] }
EOF
  "$BIN/sluice-gateway" --config "$OUT_DIR/$kind.yaml" --threads 1 >"$OUT_DIR/$kind.out" 2>&1 &
  GW=$!
  PIDS+=("$GW")
  wait_for curl -sf "http://127.0.0.1:$A/readyz"
  open_sessions "http://127.0.0.1:$P/$kind" 200 >/dev/null
  before=$(rss_kib "$GW")
  id_len=$(open_sessions "http://127.0.0.1:$P/$kind" "$N")
  sleep 1
  after=$(rss_kib "$GW")
  python3 -c "print(f'| $kind | $N | {$before:,} | {$after:,} | {($after - $before) * 1024 / $N:,.0f} | $id_len |')" \
    | tee -a "$OUT_DIR/report.md"
  kill "$GW"
done
log "report: $OUT_DIR/report.md (| kind | sessions | RSS before KiB | RSS after KiB | bytes per session | session id bytes |)"

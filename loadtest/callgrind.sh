#!/usr/bin/env bash
# Instructions per proxied MCP request, counted by callgrind: a figure that,
# unlike req/s, does not move with machine load or CPU frequency.
#
# Runs the release sluice-gateway (--threads 1, pinned to PROXY_CORE) under
# `valgrind --tool=callgrind`, in front of the demo MCP server, and sends it
# REQUESTS (2000) sequential `tools/call` requests on one keep-alive
# connection (loadtest/mcp_client.py: the ~1 KB call of `payload` answering
# 2 KB, as in the k6 scripts), once per scenario:
#   json    the demo answers application/json (--json-response)
#   sse     the demo answers text/event-stream
#   policy  json, through the full policy as loadtest/run.sh's gateway-policy
#           contender: JWT (HS256) auth, RBAC, two rate limits and a
#           concurrency cap, an upstream key and a signed identity assertion
#           per request, audit sampled at 1 %
#   policy-reuse  the same with `assertion_reuse_s: 30` (one signature per
#           caller and upstream every 30 s instead of one per request)
#   policy-exchange  policy-reuse with the upstream key replaced by
#           `inject.token_exchange`: the caller's token exchanged for the
#           upstream's once (loadtest/token_endpoint.py answers), then the
#           cached exchanged token on every request
#   policy-trace0, policy-trace1, policy-trace100  policy-reuse with
#           `traces` on at sample ratio 0, 0.01 and 1: every request's
#           trace context read or made and sent upstream as traceparent,
#           the trace id in the audit event; the sampled ones' spans
#           exported over OTLP/HTTP to loadtest/otlp_sink.py
#   policy-access  policy-reuse with the access log writing every request
#   server  json through a virtual server whose one source is the json
#           upstream (no prefix): the gateway answers as the MCP server and
#           calls the source in a cached upstream session
#   json-session, server-session  json and server with a 2025 client: it
#           opens a session (initialize, not counted) and makes every call
#           in it (SESSION=2025 in loadtest/mcp_client.py); through the
#           virtual server the gateway keeps a 2025 session with the source
#           for it, sealed in the client's session id
#   http-tool  the same call through a virtual server whose source declares
#           `payload` as an HTTP tool: the gateway checks the arguments
#           against its input schema, POSTs a JSON body built from them to
#           the json upstream (the demo's stateless 2026-07-28 endpoint, so
#           the upstream's work is the same) and answers the upstream's JSON
#           as a tool result (text and structuredContent)
#   server-list  `tools/list` (METHOD=tools/list) of a virtual server over
#           three sources of 200 tools each (one demo with --extra-tools
#           200 named three times, prefixes a/b/c), filtered by policy for
#           an API-key caller who may use all of a, tool_0* of b, none of c:
#           each request lists the three sources and merges 300 tools; the
#           client log (client.server-list.log) has the answer's bytes
#   bare    json through benches/bare_pingora.rs instead of the gateway:
#           Pingora with only `upstream_peer`, the framework's own floor
#   llm     a streamed chat completion of 100 words (103 SSE chunks and
#           [DONE]) from the mock provider (`sluice-demo --llm`) through a
#           `transport: llm` route with usage accounting: the gateway adds
#           `include_usage`, reads the usage chunk and strips it
#           (loadtest/llm_client.py, as k6/chat_stream.js)
#   bare-llm  the same stream through bare Pingora
#   nginx, nginx-llm  json and the llm stream through nginx as a plain
#           reverse proxy (one process, `proxy_buffering off`): the
#           instructions of the proxy users compare against
# After each measured run, a baseline run serves 0 requests and idles as long
# as that run's request phase took, so startup, shutdown and timer work
# (config watch every 500 ms) cancel out:
#   Ir per request = (Ir(run) - Ir(baseline)) / REQUESTS
# The gateway is stopped with SIGTERM (config `shutdown: {grace_period_s: 0}`)
# so it exits normally and callgrind writes its profile.
#
# Usage:  loadtest/callgrind.sh
# Env:    REQUESTS=2000  SCENARIOS="json sse"  SKIP_BUILD=1  OUT_DIR=dir  BIN_DIR=target/release
#         DEMO_CORE=0 PROXY_CORE=1  NGINX=/usr/sbin/nginx
# Inspect a profile: callgrind_annotate OUT_DIR/callgrind.json.out | head -40
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN_DIR=${BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
REQUESTS=${REQUESTS:-2000}
SCENARIOS=${SCENARIOS:-json sse}
DEMO_CORE=${DEMO_CORE:-0}
PROXY_CORE=${PROXY_CORE:-1}
OUT_DIR=${OUT_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/sluice-callgrind.XXXXXX")}
mkdir -p "$OUT_DIR"

log() { printf '[callgrind.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in valgrind taskset curl python3; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  log "building release binaries"
  (cd "$ROOT" && cargo build --release -p sluice-gateway -p sluice-demo -p sluice-benches --bin sluice-gateway --bin sluice-demo --bin bare-pingora)
fi
GATEWAY=$BIN_DIR/sluice-gateway
DEMO=$BIN_DIR/sluice-demo
BARE=$BIN_DIR/bare-pingora
[[ -x $GATEWAY && -x $DEMO ]] || die "missing $GATEWAY or $DEMO (unset SKIP_BUILD to build)"
[[ " $SCENARIOS " != *" bare"* || -x $BARE ]] || die "missing $BARE (unset SKIP_BUILD to build)"
NGINX=${NGINX:-/usr/sbin/nginx}
[[ " $SCENARIOS " != *" nginx"* || -x $NGINX ]] || die "missing $NGINX (apt-get install nginx-light)"

PIDS=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_until() { # what pid secs cmd...
  local what=$1 pid=$2 secs=$3
  shift 3
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || die "$what exited during startup (see $OUT_DIR)"
    ((SECONDS < deadline)) || die "$what not ready after ${secs}s (see $OUT_DIR)"
    sleep 0.05
  done
}

read -r PORT_JSON PORT_SSE PORT_GW PORT_ADMIN PORT_LLM <<<"$(python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
)"

start_demo() { # name port [flags]
  local name=$1 port=$2
  shift 2
  taskset -c "$DEMO_CORE" "$DEMO" --listen "127.0.0.1:$port" "$@" \
    >"$OUT_DIR/$name.out" 2>"$OUT_DIR/$name.err" &
  PIDS+=("$!")
  wait_until "$name" "$!" 30 grep -q "sluice-demo listening on" "$OUT_DIR/$name.out"
}
start_demo demo-json "$PORT_JSON" --json-response
start_demo demo-sse "$PORT_SSE"
if [[ " $SCENARIOS " == *" server-list "* ]]; then
  PORT_MANY=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  start_demo demo-many "$PORT_MANY" --json-response --extra-tools 200
fi
if [[ " $SCENARIOS " == *llm* ]]; then
  taskset -c "$DEMO_CORE" "$DEMO" --llm --llm-chunks 100 --listen "127.0.0.1:$PORT_LLM" \
    >"$OUT_DIR/mock-llm.out" 2>"$OUT_DIR/mock-llm.err" &
  PIDS+=("$!")
  wait_until mock-llm "$!" 30 grep -q "sluice-demo llm listening on" "$OUT_DIR/mock-llm.out"
fi

# Every gateway config starts the same: one listener, admin, no drain wait
# (SIGTERM must end the run promptly so callgrind writes its profile).
GW_HEAD="listeners:
  - { name: main, address: \"127.0.0.1:$PORT_GW\" }
admin: { address: \"127.0.0.1:$PORT_ADMIN\" }
shutdown: { grace_period_s: 0 }"

cat >"$OUT_DIR/gateway.yaml" <<EOF
# Generated by loadtest/callgrind.sh
$GW_HEAD
upstreams:
  - { name: demo-json, url: "http://127.0.0.1:$PORT_JSON/mcp" }
  - { name: demo-sse, url: "http://127.0.0.1:$PORT_SSE/mcp" }
routes:
  - { name: json, path: /json, upstream: demo-json }
  - { name: sse, path: /sse, upstream: demo-sse }
EOF

cat >"$OUT_DIR/gateway-server.yaml" <<EOF
# Generated by loadtest/callgrind.sh: the json upstream behind a virtual server
$GW_HEAD
upstreams:
  - { name: demo-json, url: "http://127.0.0.1:$PORT_JSON/mcp" }
routes:
  - { name: server, path: /server, server: one }
servers:
  - { name: one, sources: [{ upstream: demo-json, prefix: "" }] }
EOF

cat >"$OUT_DIR/gateway-http-tool.yaml" <<EOF
# Generated by loadtest/callgrind.sh: payload as an HTTP tool of the json upstream
$GW_HEAD
upstreams:
  - { name: api, url: "http://127.0.0.1:$PORT_JSON" }
routes:
  - { name: http-tool, path: /http-tool, server: api }
servers:
  - name: api
    sources:
      - upstream: api
        prefix: ""
        http_tools:
          - name: payload
            input_schema: { type: object, required: [size], properties: { size: { type: integer, minimum: 1 } } }
            method: POST
            path: /mcp
            headers:
              accept: "application/json, text/event-stream"
              mcp-protocol-version: "2026-07-28"
              mcp-method: tools/call
              mcp-name: payload
            body:
              jsonrpc: "2.0"
              id: 1
              method: tools/call
              params:
                name: payload
                arguments: { size: "{size}" }
                _meta: { io.modelcontextprotocol/protocolVersion: "2026-07-28" }
EOF

export SLUICE_LOAD_KEY_SHA=$(printf '%s' load-list-key | sha256sum | cut -d' ' -f1)
cat >"$OUT_DIR/gateway-server-list.yaml" <<EOF
# Generated by loadtest/callgrind.sh: three sources of 200 tools, filtered
$GW_HEAD
upstreams:
  - { name: a, url: "http://127.0.0.1:${PORT_MANY:-1}/mcp" }
  - { name: b, url: "http://127.0.0.1:${PORT_MANY:-1}/mcp" }
  - { name: c, url: "http://127.0.0.1:${PORT_MANY:-1}/mcp" }
identity:
  audience: sluice-load
  api_keys: [{ id: lister, sha256: "$SLUICE_LOAD_KEY_SHA", subject: lister, roles: [lister] }]
roles:
  - name: lister
    allow: ["tools:a/*:call", "tools:b/tool_0*:call"]
routes:
  - { name: list, path: /server-list, server: many }
servers:
  - { name: many, sources: [{ upstream: a }, { upstream: b }, { upstream: c }] }
EOF

cat >"$OUT_DIR/gateway-llm.yaml" <<EOF
# Generated by loadtest/callgrind.sh: model traffic with usage accounting
$GW_HEAD
upstreams:
  - { name: mock-llm, url: "http://127.0.0.1:$PORT_LLM/v1" }
routes:
  - { name: llm, path: /v1, upstream: mock-llm, transport: llm }
llm:
  models:
    - { name: mock-gpt, targets: [{ upstream: mock-llm }] }
EOF

export SLUICE_LOAD_HS=load-test-hs256-secret-0123456789
export SLUICE_LOAD_UPSTREAM_KEY=upstream-key-for-load
cat >"$OUT_DIR/gateway-policy.yaml" <<EOF
# Generated by loadtest/callgrind.sh: the full policy
$GW_HEAD
upstreams:
  - name: demo-json
    url: "http://127.0.0.1:$PORT_JSON/mcp"
    inject: { credential: { secret: { env: SLUICE_LOAD_UPSTREAM_KEY } }, assertion_header: x-sluice-identity }
routes:
  - { name: policy, path: /policy, upstream: demo-json }
tenants: [acme]
identity:
  audience: sluice-load
  jwt:
    - { issuer: "https://idp.load", hs256_secret: { env: SLUICE_LOAD_HS }, algorithms: [HS256] }
roles:
  - name: agent
    allow: ["tools:demo-json/payload:call"]
rate_limits:
  rules:
    - { name: per-client, match: { methods: [tools/call] }, per: [subject], rate: 1000000/s, burst: 1000000 }
    - { name: per-tool, per: [upstream, tool], rate: 1000000/s, burst: 1000000 }
concurrency_limits:
  - { name: inflight, per: [subject], max: 10000 }
audit: { file: "$OUT_DIR/audit-policy.jsonl", sample_rate: 0.01 }
EOF
sed -e 's/assertion_header: x-sluice-identity }/assertion_header: x-sluice-identity, assertion_reuse_s: 30 }/' \
  -e 's|path: /policy,|path: /policy-reuse,|' "$OUT_DIR/gateway-policy.yaml" >"$OUT_DIR/gateway-policy-reuse.yaml"
# helper NAME SCRIPT READY_TEXT: start a Python helper of loadtest/ on a free
# port beside the demo (on its core); sets PORT_HELPER once it is listening.
helper() {
  local name=$1 script=$2 ready=$3
  PORT_HELPER=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  taskset -c "$DEMO_CORE" python3 "$HERE/$script" "$PORT_HELPER" \
    >"$OUT_DIR/$name.out" 2>"$OUT_DIR/$name.err" &
  PIDS+=("$!")
  wait_until "$name" "$!" 30 grep -q "$ready" "$OUT_DIR/$name.out"
}
if [[ " $SCENARIOS " == *" policy-exchange "* ]]; then
  helper token-endpoint token_endpoint.py "token endpoint listening"
  PORT_TOKEN=$PORT_HELPER
  sed -e "s|credential: { secret: { env: SLUICE_LOAD_UPSTREAM_KEY } }|token_exchange: { token_endpoint: \"http://127.0.0.1:$PORT_TOKEN/token\", client_id: load, client_secret: { env: SLUICE_LOAD_UPSTREAM_KEY }, audience: demo }|" \
    -e 's|path: /policy-reuse,|path: /policy-exchange,|' "$OUT_DIR/gateway-policy-reuse.yaml" >"$OUT_DIR/gateway-policy-exchange.yaml"
  grep -q token_exchange "$OUT_DIR/gateway-policy-exchange.yaml" || die "policy-exchange config not made"
fi
# Traces and the access log on top of policy-reuse: the context alone
# (ratio 0: parsed, propagated, logged), 1 % and 100 % of requests sampled
# and exported to a sink, and the access log writing every request.
if [[ " $SCENARIOS " == *" policy-trace"* ]]; then
  helper otlp-sink otlp_sink.py "otlp sink listening"
  PORT_OTLP=$PORT_HELPER
  for ratio in 0 1 100; do
    sed -e "s|path: /policy-reuse,|path: /policy-trace$ratio,|" "$OUT_DIR/gateway-policy-reuse.yaml" >"$OUT_DIR/gateway-policy-trace$ratio.yaml"
    printf 'traces: { endpoint: "http://127.0.0.1:%s/v1/traces", sample_ratio: %s }\n' \
      "$PORT_OTLP" "$(python3 -c "print($ratio / 100)")" >>"$OUT_DIR/gateway-policy-trace$ratio.yaml"
  done
fi
sed -e 's|path: /policy-reuse,|path: /policy-access,|' "$OUT_DIR/gateway-policy-reuse.yaml" >"$OUT_DIR/gateway-policy-access.yaml"
printf 'access_log: { file: "%s" }\n' "$OUT_DIR/access-policy.jsonl" >>"$OUT_DIR/gateway-policy-access.yaml"
JWT=$(python3 "$HERE/mint_jwt.py")

# Poll /readyz; count the probes the gateway answered (refused connections
# never reach it), since each answered probe is work in the profile.
PROBES=0
READY_URL=
ready() {
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' "$READY_URL" || true)
  [[ $code != 000 ]] && PROBES=$((PROBES + 1))
  # The bare proxy has no admin listener: any answer through it will do.
  [[ $code == 200 || ($READY_URL != */readyz && $code != 000) ]]
}

CG_CMD=(valgrind --tool=callgrind)
# cg_run NAME SCENARIO REQUESTS IDLE_SECONDS: one gateway lifetime under callgrind.
# Sets IR (total instructions) and PHASE (seconds the request phase took).
cg_run() {
  local name=$1 scen=$2 n=$3 idle=$4
  local out=$OUT_DIR/callgrind.$name.out
  local config=$OUT_DIR/gateway.yaml auth="" path=$scen client=$HERE/mcp_client.py upstream=$PORT_JSON
  if [[ $scen == policy* ]]; then
    config=$OUT_DIR/gateway-$scen.yaml
    auth=$JWT
  fi
  local session=""
  if [[ $scen == *-session ]]; then
    session=2025
    path=${scen%-session}
  fi
  if [[ $scen == server || $scen == server-session ]]; then
    config=$OUT_DIR/gateway-server.yaml
  fi
  if [[ $scen == http-tool ]]; then
    config=$OUT_DIR/gateway-http-tool.yaml
  fi
  local method=""
  if [[ $scen == server-list ]]; then
    config=$OUT_DIR/gateway-server-list.yaml
    auth=load-list-key
    method=tools/list
  fi
  if [[ $scen == *llm ]]; then
    config=$OUT_DIR/gateway-llm.yaml
    path=v1/chat/completions
    client=$HERE/llm_client.py
    upstream=$PORT_LLM
  fi
  PROBES=0
  if [[ $scen == nginx* ]]; then
    [[ $scen == nginx ]] && path=mcp
    READY_URL="http://127.0.0.1:$PORT_GW/"
    local ng=$OUT_DIR/nginx.$name
    mkdir -p "$ng"
    cat >"$ng/nginx.conf" <<EOF
# Generated by loadtest/callgrind.sh: a plain reverse proxy, one process.
daemon off;
master_process off;
worker_processes 1;
error_log $ng/error.log warn;
pid $ng/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $ng/client_body;
  proxy_temp_path $ng/proxy;
  fastcgi_temp_path $ng/fastcgi;
  uwsgi_temp_path $ng/uwsgi;
  scgi_temp_path $ng/scgi;
  upstream up { server 127.0.0.1:$upstream; keepalive 8; }
  server {
    listen 127.0.0.1:$PORT_GW;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_buffering off;
    location / { proxy_pass http://up; }
  }
}
EOF
    taskset -c "$PROXY_CORE" "${CG_CMD[@]}" --callgrind-out-file="$out" \
      "$NGINX" -p "$ng" -e "$ng/error.log" -c "$ng/nginx.conf" \
      >"$OUT_DIR/gateway.$name.out" 2>"$OUT_DIR/gateway.$name.err" &
  elif [[ $scen == bare* ]]; then
    [[ $scen == bare ]] && path=mcp
    READY_URL="http://127.0.0.1:$PORT_GW/"
    taskset -c "$PROXY_CORE" "${CG_CMD[@]}" --callgrind-out-file="$out" \
      "$BARE" --threads 1 --pair "127.0.0.1:$PORT_GW=127.0.0.1:$upstream" \
      >"$OUT_DIR/gateway.$name.out" 2>"$OUT_DIR/gateway.$name.err" &
  else
    READY_URL="http://127.0.0.1:$PORT_ADMIN/readyz"
    taskset -c "$PROXY_CORE" "${CG_CMD[@]}" --callgrind-out-file="$out" \
      "$GATEWAY" --config "$config" --threads 1 \
      >"$OUT_DIR/gateway.$name.out" 2>"$OUT_DIR/gateway.$name.err" &
  fi
  local pid=$!
  PIDS+=("$pid")
  local deadline=$((SECONDS + 300))
  until ready; do
    kill -0 "$pid" 2>/dev/null || die "gateway ($name) exited during startup: $OUT_DIR/gateway.$name.err"
    ((SECONDS < deadline)) || die "gateway ($name) not ready after 300s"
    sleep 0.05
  done
  local t0=$EPOCHREALTIME
  if ((n > 0)); then
    HTTP_TOOL=$([[ $scen == http-tool ]] && echo 1) METHOD=$method AUTH=$auth SESSION=$session \
      taskset -c "$DEMO_CORE" python3 "$client" "http://127.0.0.1:$PORT_GW/$path" "$n" \
      >"$OUT_DIR/client.$name.log" 2>&1 || die "client failed ($name): $(tail -1 "$OUT_DIR/client.$name.log")"
  else
    # The baseline stays up as long as a measured run did, so the gateway's
    # periodic work (config watch every 500 ms) is subtracted too.
    sleep "$idle"
  fi
  PHASE=$(python3 -c "print(f'{$EPOCHREALTIME - $t0:.2f}')")
  kill -TERM "$pid"
  local waited=0
  while kill -0 "$pid" 2>/dev/null; do
    if ((waited == 1200)); then
      log "gateway ($name) still running 120 s after SIGTERM: sending SIGINT"
      kill -INT "$pid" 2>/dev/null || true
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  wait "$pid" 2>/dev/null || true
  [[ -s $out ]] || die "callgrind wrote no profile for $name ($out)"
  IR=$(awk '/^(summary|totals):/ { if ($2 > m) m = $2 } END { printf "%.0f\n", m }' "$out")
  log "$name: $IR Ir, $PROBES readiness probes answered, phase ${PHASE}s"
}

declare -A IR_OF PROBES_OF BASE_OF BASE_PROBES_OF
for scen in $SCENARIOS; do
  log "$scen: $REQUESTS requests under callgrind"
  cg_run "$scen" "$scen" "$REQUESTS" 0
  IR_OF[$scen]=$IR
  PROBES_OF[$scen]=$PROBES
  log "$scen baseline: 0 requests, idle ${PHASE}s"
  cg_run "baseline-$scen" "$scen" 0 "$PHASE"
  BASE_OF[$scen]=$IR
  BASE_PROBES_OF[$scen]=$PROBES
done

{
  echo "Command: taskset -c $PROXY_CORE ${CG_CMD[*]} $GATEWAY --config <gateway.yaml> --threads 1 (bare: $BARE --threads 1 --pair ...; nginx: $NGINX -c <nginx.conf>)"
  echo "Client:  python3 loadtest/mcp_client.py http://127.0.0.1:PORT/<path> $REQUESTS (llm scenarios: loadtest/llm_client.py; sequential, keep-alive)"
  echo "valgrind: $(valgrind --version)"
  echo
  echo "| scenario | requests | total Ir | baseline Ir | Ir per request |"
  echo "|---|---:|---:|---:|---:|"
  for scen in $SCENARIOS; do
    python3 - "$scen" "$REQUESTS" "${IR_OF[$scen]}" "${BASE_OF[$scen]}" <<'EOF'
import sys
scen, n, total, base = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
print(f"| {scen} | {n} | {total:,} | {base:,} | {(total - base) / n:,.0f} |")
EOF
  done
  echo
  echo "Readiness probes answered (run/baseline):" \
    "$(for s in $SCENARIOS; do printf '%s %s/%s  ' "$s" "${PROBES_OF[$s]}" "${BASE_PROBES_OF[$s]}"; done)"
  echo "Profiles: $OUT_DIR/callgrind.<scenario>.out and callgrind.baseline-<scenario>.out"
} | tee "$OUT_DIR/report.md"

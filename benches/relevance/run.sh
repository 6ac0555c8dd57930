#!/usr/bin/env bash
# Relevance of the catalog's `search_tools`, measured through the gateway on
# the tool definitions of real public MCP servers: five from npm
# (filesystem, memory, github, playwright, notion) and three from PyPI
# (git, time, fetch), each a stdio server served over Streamable HTTP by
# stdio_bridge.py (the official Python SDK on both sides), all federated by
# one catalog-mode virtual server. measure.py then asks the labelled
# queries of queries.json and prints recall@5, MRR@10 and hit@1.
#
#   benches/relevance/run.sh
#
# Env: BIN_DIR (default target/release; SKIP_BUILD=1 to use it as is),
# PEERS (the suite's peers, default .peers: the Python SDK), DIR (where the
# servers are installed, default target/relevance-peers).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BIN_DIR=${BIN_DIR:-$ROOT/target/release}
PEERS=${PEERS:-$ROOT/.peers}
DIR=${DIR:-$ROOT/target/relevance-peers}
PY=$PEERS/venv/bin/python
[ -x "$PY" ] || { echo "no $PY: run bash .ci/setup first" >&2; exit 1; }
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release -q -p sluice-gateway --bin sluice-gateway
fi

NPM_PKGS=(@modelcontextprotocol/server-filesystem@2026.8.31 @modelcontextprotocol/server-memory@2026.8.31
  @modelcontextprotocol/server-github@2025.4.8 @playwright/mcp@0.0.83 @notionhq/notion-mcp-server@2.5.2)
PIP_PKGS=(mcp-server-git==2026.10.19 mcp-server-time==2026.10.19 mcp-server-fetch==2026.10.24)
mkdir -p "$DIR/fsroot"
if [ ! -f "$DIR/.installed" ]; then
  npm install --prefix "$DIR/npm" --no-audit --no-fund --loglevel=error "${NPM_PKGS[@]}" >/dev/null
  [ -x "$DIR/venv/bin/python" ] || python3 -m venv "$DIR/venv"
  "$DIR/venv/bin/pip" install -q --disable-pip-version-check "${PIP_PKGS[@]}"
  touch "$DIR/.installed"
fi

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

BIN=$DIR/npm/node_modules/.bin
SERVERS=(
  "fs|$BIN/mcp-server-filesystem $DIR/fsroot"
  "memory|$BIN/mcp-server-memory"
  "github|$BIN/mcp-server-github"
  "playwright|$BIN/playwright-mcp"
  "notion|$BIN/notion-mcp-server"
  "git|$DIR/venv/bin/mcp-server-git"
  "time|$DIR/venv/bin/mcp-server-time"
  "fetch|$DIR/venv/bin/mcp-server-fetch"
)
UPSTREAMS=""
SOURCES=""
for s in "${SERVERS[@]}"; do
  name=${s%%|*}; cmd=${s#*|}; port=$(free_port)
  # shellcheck disable=SC2086
  "$PY" benches/relevance/stdio_bridge.py "$port" $cmd >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  UPSTREAMS+="  - { name: $name, url: \"http://127.0.0.1:$port/mcp\" }"$'\n'
  SOURCES+="      - { upstream: $name }"$'\n'
  for _ in $(seq 1 300); do grep -q '^ready' "$WORK/$name.log" && break; sleep 0.1; done
  grep -q '^ready' "$WORK/$name.log" || { echo "$name did not start:" >&2; cat "$WORK/$name.log" >&2; exit 1; }
done

GW_PORT=$(free_port)
cat >"$WORK/gateway.yaml" <<EOF
listeners:
  - { name: main, address: "127.0.0.1:$GW_PORT" }
upstreams:
$UPSTREAMS
routes:
  - { name: catalog, path: /mcp, server: catalog }
servers:
  - name: catalog
    catalog: true
    sources:
$SOURCES
EOF
"$BIN_DIR/sluice-gateway" -c "$WORK/gateway.yaml" >"$WORK/gateway.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
  (echo >/dev/tcp/127.0.0.1/"$GW_PORT") 2>/dev/null && break
  sleep 0.1
done
"$PY" benches/relevance/measure.py "http://127.0.0.1:$GW_PORT/mcp" benches/relevance/queries.json

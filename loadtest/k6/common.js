// Shared pieces of Sluice's k6 load scripts: the load shape chosen by env,
// and one stateless (MCP 2026-07-28) `tools/call` of the demo's `payload`
// tool, which needs no session or initialize handshake.
//
// Env:
//   TARGET    MCP endpoint URL (required), e.g. http://127.0.0.1:18080/mcp
//   MODE      throughput (default): VUS virtual users in a closed loop
//             latency: constant-arrival-rate of RATE requests/s (open loop)
//   DURATION  run length, k6 syntax (default 10s)
//   VUS       concurrency for MODE=throughput (default 16)
//   RATE      requests/s for MODE=latency (default 200); keep it well
//             below the saturation throughput so the figures are latencies,
//             not queueing
//   PAYLOAD   size of the tool's text result, bytes (default 2048)

export const REVISION = '2026-07-28';

export const TARGET = __ENV.TARGET;
if (!TARGET) {
  throw new Error('set TARGET to the MCP endpoint URL, e.g. -e TARGET=http://127.0.0.1:18080/mcp');
}

const MODE = __ENV.MODE || 'throughput';
const DURATION = __ENV.DURATION || '10s';
const VUS = parseInt(__ENV.VUS || '16', 10);
const RATE = parseInt(__ENV.RATE || '200', 10);
export const PAYLOAD = parseInt(__ENV.PAYLOAD || '2048', 10);

function scenario() {
  if (MODE === 'throughput') {
    return { executor: 'constant-vus', vus: VUS, duration: DURATION };
  }
  if (MODE === 'latency') {
    return {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      // Enough VUs up front: k6 drops arrivals while it starts VUs mid-run.
      preAllocatedVUs: Math.max(32, Math.ceil(RATE / 20)),
      maxVUs: Math.max(128, Math.ceil(RATE / 5)),
    };
  }
  throw new Error(`MODE must be throughput or latency, not ${MODE}`);
}

export const options = {
  scenarios: { load: scenario() },
  // p(99) is not in k6's default summary; the runner reads it from
  // --summary-export.
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)'],
  // Every request must succeed; the runner reports failures, these
  // thresholds make k6 exit non-zero on them too.
  thresholds: {
    checks: ['rate==1'],
    http_req_failed: ['rate==0'],
  },
};

// About 900 bytes of client metadata: tools ignore `_meta`, so this brings
// the request to a realistic ~1 KB without changing what the tool does.
const PADDING = 'p'.repeat(900);

// AUTH: a bearer credential to send (the full-policy gateway wants a JWT).
export const AUTH_HEADER = __ENV.AUTH ? { Authorization: `Bearer ${__ENV.AUTH}` } : {};

const HEADERS = Object.assign(
  {
    'Content-Type': 'application/json',
    Accept: 'application/json, text/event-stream',
    'MCP-Protocol-Version': REVISION,
    'Mcp-Method': 'tools/call',
    'Mcp-Name': 'payload',
  },
  AUTH_HEADER,
);

// The request body for JSON-RPC id `id`.
export function body(id) {
  return JSON.stringify({
    jsonrpc: '2.0',
    id,
    method: 'tools/call',
    params: {
      name: 'payload',
      arguments: { size: PAYLOAD },
      _meta: {
        'io.modelcontextprotocol/protocolVersion': REVISION,
        'io.modelcontextprotocol/clientInfo': { name: 'sluice-k6', version: '1.1.0' },
        progressToken: `k6-${id}`,
        padding: PADDING,
      },
    },
  });
}

export const PARAMS = { headers: HEADERS, tags: { name: 'tools/call payload' } };

// A JSON-RPC id unique within the run.
export function nextId() {
  return __VU * 1000000 + __ITER;
}

// Load script: MCP `tools/call` of the demo's `payload` tool answered as
// `application/json` (demo started with --json-response).
//
// Each request is a stateless 2026-07-28 POST of ~1 KB; each answer a JSON-RPC
// result carrying a PAYLOAD-byte (default 2048) text content. Every response
// is checked (status 200, JSON content type, the result for this request's id
// with the full text), so errors and truncations show up in `checks`.
//
//   k6 run -e TARGET=http://127.0.0.1:18080/json -e MODE=throughput k6/tools_call_json.js
//   k6 run -e TARGET=... -e MODE=latency -e RATE=300 k6/tools_call_json.js
// See common.js for all env knobs.

import http from 'k6/http';
import { check } from 'k6';
import { TARGET, PAYLOAD, PARAMS, body, nextId } from './common.js';

export { options } from './common.js';

export default function () {
  const id = nextId();
  const r = http.post(TARGET, body(id), PARAMS);
  check(r, {
    'status 200': (res) => res.status === 200,
    'json content type': (res) =>
      (res.headers['Content-Type'] || '').startsWith('application/json'),
    'result with full payload': (res) => {
      try {
        const msg = JSON.parse(res.body);
        return (
          msg.id === id &&
          msg.result !== undefined &&
          msg.result.isError !== true &&
          msg.result.content[0].text.length === PAYLOAD
        );
      } catch (_) {
        return false;
      }
    },
  });
}

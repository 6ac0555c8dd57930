// Load script: MCP `tools/call` of the demo's `payload` tool answered as a
// `text/event-stream` (demo started WITHOUT --json-response: a priming event,
// then the event carrying the response, then the stream ends).
//
// Same ~1 KB stateless 2026-07-28 request as tools_call_json.js. Every
// response is checked: status 200, SSE content type, and an event whose data
// is the JSON-RPC result for this request's id with the full PAYLOAD-byte text.
//
//   k6 run -e TARGET=http://127.0.0.1:18080/sse -e MODE=throughput k6/tools_call_sse.js
// See common.js for all env knobs.

import http from 'k6/http';
import { check } from 'k6';
import { TARGET, PAYLOAD, PARAMS, body, nextId } from './common.js';

export { options } from './common.js';

// The JSON-RPC message answering `id` among the stream's `data:` lines.
function resultFor(text, id) {
  const lines = text.split(/\r?\n/);
  for (const line of lines) {
    if (!line.startsWith('data:')) continue;
    const data = line.slice(5).trim();
    if (!data) continue;
    let msg;
    try {
      msg = JSON.parse(data);
    } catch (_) {
      continue;
    }
    if (msg.id === id && msg.result !== undefined) return msg;
  }
  return null;
}

export default function () {
  const id = nextId();
  const r = http.post(TARGET, body(id), PARAMS);
  check(r, {
    'status 200': (res) => res.status === 200,
    'sse content type': (res) =>
      (res.headers['Content-Type'] || '').startsWith('text/event-stream'),
    'result with full payload': (res) => {
      const msg = resultFor(res.body || '', id);
      return (
        msg !== null &&
        msg.result.isError !== true &&
        msg.result.content[0].text.length === PAYLOAD
      );
    },
  });
}

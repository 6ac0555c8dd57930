// Load script: MCP `tools/list` of a server with 200 tools (scenario 3),
// demo started with `--json-response --extra-tools 200`. Through a gateway
// with policy the list comes back filtered, so the check is that a list
// came back for this id, not its length.
//
//   k6 run -e TARGET=http://127.0.0.1:18080/list k6/tools_list.js

import http from 'k6/http';
import { check } from 'k6';
import { TARGET, REVISION, AUTH_HEADER, nextId } from './common.js';

export { options } from './common.js';

const HEADERS = Object.assign(
  {
    'Content-Type': 'application/json',
    Accept: 'application/json, text/event-stream',
    'MCP-Protocol-Version': REVISION,
    'Mcp-Method': 'tools/list',
  },
  AUTH_HEADER,
);

export default function () {
  const id = nextId();
  const body = JSON.stringify({
    jsonrpc: '2.0',
    id,
    method: 'tools/list',
    params: { _meta: { 'io.modelcontextprotocol/protocolVersion': REVISION } },
  });
  const r = http.post(TARGET, body, { headers: HEADERS, tags: { name: 'tools/list' } });
  check(r, {
    'status 200': (res) => res.status === 200,
    'a tool list for this id': (res) => {
      try {
        const msg = JSON.parse(res.body);
        return msg.id === id && Array.isArray(msg.result.tools) && msg.result.tools.length > 0;
      } catch (_) {
        return false;
      }
    },
  });
}

// Load script: an OpenAI-style streaming chat completion (scenario 4). The
// mock provider (`sluice-demo --llm --llm-chunks 100`) answers with ~100 SSE
// chunks and `data: [DONE]`. Every response is checked: status 200, SSE
// content type, all 100 words, and the terminating [DONE].
//
//   k6 run -e TARGET=http://127.0.0.1:18080/v1/chat/completions k6/chat_stream.js
// AUTH (default sk-local-master) is sent as the bearer key: LiteLLM needs
// its master key, the full-policy gateway a JWT; the mock ignores it.

import http from 'k6/http';
import { check } from 'k6';

export { options } from './common.js';

const TARGET = __ENV.TARGET;
const WORDS = parseInt(__ENV.WORDS || '100', 10);
const PARAMS = {
  headers: {
    'Content-Type': 'application/json',
    Authorization: `Bearer ${__ENV.AUTH || 'sk-local-master'}`,
  },
};
const BODY = JSON.stringify({
  model: 'mock-gpt',
  stream: true,
  messages: [
    { role: 'system', content: 'You are a load test.' },
    { role: 'user', content: 'Write one hundred words about gateways, please.' },
  ],
});

export default function () {
  const r = http.post(TARGET, BODY, PARAMS);
  check(r, {
    'status 200': (res) => res.status === 200,
    'sse content type': (res) =>
      (res.headers['Content-Type'] || '').startsWith('text/event-stream'),
    'every word and [DONE]': (res) => {
      const text = res.body || '';
      return text.includes('data: [DONE]') && (text.match(/word/g) || []).length === WORDS;
    },
  });
}

#!/usr/bin/env python3
"""Send N streamed chat completions one after another on one keep-alive
connection, checking every answer; used by callgrind.sh for its `llm`
scenarios (the request k6/chat_stream.js sends).

  llm_client.py URL N [WORDS]

Each answer must be 200, text/event-stream, carry WORDS (100) words and end
with `data: [DONE]`, and hold no usage chunk (the client does not ask for
one; the gateway strips what it asked for itself). Prints the number of
requests and the elapsed seconds; exits non-zero on the first bad answer.
With AUTH set, every request carries `Authorization: Bearer $AUTH`.
"""

import http.client
import json
import os
import sys
import time
import urllib.parse

BODY = json.dumps(
    {
        "model": "mock-gpt",
        "stream": True,
        "messages": [
            {"role": "system", "content": "You are a load test."},
            {"role": "user", "content": "Write one hundred words about gateways, please."},
        ],
    }
).encode()


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    url = urllib.parse.urlsplit(sys.argv[1])
    n = int(sys.argv[2])
    words = int(sys.argv[3]) if len(sys.argv) == 4 else 100
    headers = {"Content-Type": "application/json"}
    if os.environ.get("AUTH"):
        headers["Authorization"] = "Bearer " + os.environ["AUTH"]
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
    started = time.monotonic()
    for i in range(1, n + 1):
        conn.request("POST", url.path or "/", BODY, headers)
        r = conn.getresponse()
        data = r.read()
        ok = (
            r.status == 200
            and r.getheader("Content-Type", "").startswith("text/event-stream")
            and data.count(b"word") == words
            and data.rstrip().endswith(b"data: [DONE]")
            and b'"usage"' not in data
        )
        if not ok:
            sys.exit(f"request {i}: bad answer {r.status}: {data[:300]!r}")
    print(f"{n} requests in {time.monotonic() - started:.2f}s")


if __name__ == "__main__":
    main()

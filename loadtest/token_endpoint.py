"""A token endpoint for loadtest/callgrind.sh's `policy-exchange` scenario:
answers every POST with an access token that lives an hour, and counts the
requests. The scenario measures the gateway's work on a *cached* exchanged
token (one exchange at the start, then none), so what issues that one token
does not matter; the real authorization server is exercised by
gateway/tests/token_exchange.rs.

Usage: python3 loadtest/token_endpoint.py PORT
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    count = 0

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        Handler.count += 1
        body = json.dumps(
            {
                "access_token": f"exchanged-load-token-{Handler.count}",
                "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                "token_type": "Bearer",
                "expires_in": 3600,
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_):
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    print("token endpoint listening", flush=True)
    server.serve_forever()

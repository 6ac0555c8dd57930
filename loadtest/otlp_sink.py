"""An OTLP/HTTP collector stand-in for loadtest/callgrind.sh's `policy-trace*`
scenarios: accepts every POST (the gateway's export batches), answers 200
with an empty ExportTraceServiceResponse, and appends "<batches> <bytes>"
to its stdout after each one. The measured process is the gateway; what the
collector does with the spans does not matter here (gateway/tests/traces.rs
decodes them with the official definitions).

Usage: python3 loadtest/otlp_sink.py PORT
"""

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    batches = 0
    bytes = 0

    def do_POST(self):
        n = int(self.headers.get("content-length") or 0)
        self.rfile.read(n)
        Handler.batches += 1
        Handler.bytes += n
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
        print(f"{Handler.batches} {Handler.bytes}", flush=True)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    print("otlp sink listening", flush=True)
    server.serve_forever()

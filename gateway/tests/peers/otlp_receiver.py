"""An OTLP trace receiver for the suite: decodes what the gateway exports
with the official OpenTelemetry protobuf definitions (`opentelemetry-proto`
from PyPI), over OTLP/HTTP (protobuf) and OTLP/gRPC (`grpcio`).

  otlp_receiver.py [--tls CERT KEY] [--refuse-first N]

Prints one line `ports HTTP GRPC` once listening on 127.0.0.1 (ports chosen
by the system); with --tls both serve TLS with that certificate (gRPC with
HTTP/2 by ALPN). --refuse-first N: the first N exports (either protocol) are
answered "unavailable" (HTTP 503, gRPC UNAVAILABLE) and not kept. HTTP:
  POST /v1/traces      an ExportTraceServiceRequest (application/x-protobuf)
  GET  /spans          every span received so far, as JSON: one object per
                       span with trace_id, span_id, parent_span_id (hex),
                       name, kind, status, flags, attributes (key -> value),
                       resource (key -> value) and via (http or grpc)
Anything that does not decode is answered 400 and counted in /spans' header
X-Bad-Requests.
"""
import json
import ssl
import sys
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

SPANS = []
BAD = [0]
# Exports still to refuse (--refuse-first), and how many were refused.
REFUSE = [0]
REFUSED = [0]
LOCK = threading.Lock()


def refuse():
    with LOCK:
        if REFUSE[0] > 0:
            REFUSE[0] -= 1
            REFUSED[0] += 1
            return True
        return False


def value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def take(req, via):
    out = []
    for rs in req.resource_spans:
        resource = {kv.key: value(kv.value) for kv in rs.resource.attributes}
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append({
                    "trace_id": s.trace_id.hex(),
                    "span_id": s.span_id.hex(),
                    "parent_span_id": s.parent_span_id.hex(),
                    "trace_state": s.trace_state,
                    "name": s.name,
                    "kind": s.kind,
                    "start": s.start_time_unix_nano,
                    "end": s.end_time_unix_nano,
                    "status": {"code": s.status.code, "message": s.status.message},
                    "flags": s.flags,
                    "attributes": {kv.key: value(kv.value) for kv in s.attributes},
                    "resource": resource,
                    "scope": ss.scope.name,
                    "via": via,
                })
    with LOCK:
        SPANS.extend(out)


class Http(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        req = trace_service_pb2.ExportTraceServiceRequest()
        try:
            if self.path != "/v1/traces" or self.headers.get("content-type") != "application/x-protobuf":
                raise ValueError("not an OTLP/HTTP protobuf export")
            req.ParseFromString(body)
        except Exception:
            BAD[0] += 1
            self.send_response(400)
            self.end_headers()
            return
        if refuse():
            self.send_response(503)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        take(req, "http")
        answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def do_GET(self):
        with LOCK:
            body = json.dumps(SPANS).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("x-bad-requests", str(BAD[0]))
        self.send_header("x-refused", str(REFUSED[0]))
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Grpc(trace_service_pb2_grpc.TraceServiceServicer):
    def Export(self, request, context):
        if refuse():
            context.abort(grpc.StatusCode.UNAVAILABLE, "refused for the test")
        take(request, "grpc")
        return trace_service_pb2.ExportTraceServiceResponse()


def main():
    args = sys.argv[1:]
    tls = None
    if "--tls" in args:
        i = args.index("--tls")
        tls = (args[i + 1], args[i + 2])
    if "--refuse-first" in args:
        REFUSE[0] = int(args[args.index("--refuse-first") + 1])
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Grpc(), server)
    if tls:
        with open(tls[0], "rb") as c, open(tls[1], "rb") as k:
            creds = grpc.ssl_server_credentials([(k.read(), c.read())])
        grpc_port = server.add_secure_port("127.0.0.1:0", creds)
    else:
        grpc_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    http = ThreadingHTTPServer(("127.0.0.1", 0), Http)
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls[0], tls[1])
        http.socket = ctx.wrap_socket(http.socket, server_side=True)
    print(f"ports {http.server_address[1]} {grpc_port}", flush=True)
    http.serve_forever()


if __name__ == "__main__":
    main()

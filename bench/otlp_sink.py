#!/usr/bin/env python3
"""A tiny OTLP/HTTP trace sink for the benchmarks (stdlib only).

    python3 bench/otlp_sink.py PORT

Accepts `POST /v1/traces` (protobuf `ExportTraceServiceRequest`, as the
gateway's exporter sends it), answers `200` with an empty
`ExportTraceServiceResponse`, and counts the export requests and the spans in
them (walking the protobuf just deep enough: resource_spans (1) ->
scope_spans (2) -> spans (2)). `GET /count` answers
`{"posts": P, "spans": S, "bytes": B}`, so that a benchmark can check that
spans really arrive. HTTP/1.1 with keep-alive, so the exporter can reuse its
connection as it would with a real collector. Binds 127.0.0.1.
"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
COUNTS = {"posts": 0, "spans": 0, "bytes": 0}


def varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def fields(buf):
    """(field number, value) of each length-delimited field of a message; skips the rest."""
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, i = varint(buf, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            n, i = varint(buf, i)
            yield number, buf[i:i + n]
            i += n
        else:
            raise ValueError(f"unsupported wire type {wire}")


def count_spans(body):
    spans = 0
    for n1, resource_spans in fields(body):
        if n1 != 1:
            continue
        for n2, scope_spans in fields(resource_spans):
            if n2 != 2:
                continue
            spans += sum(1 for n3, _ in fields(scope_spans) if n3 == 2)
    return spans


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def answer(self, status, body, ctype):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.read_body()
        if self.path != "/v1/traces":
            return self.answer(404, b"", "text/plain")
        try:
            spans = count_spans(body)
        except (ValueError, IndexError):
            return self.answer(400, b"", "text/plain")
        with LOCK:
            COUNTS["posts"] += 1
            COUNTS["spans"] += spans
            COUNTS["bytes"] += len(body)
        # An empty ExportTraceServiceResponse.
        self.answer(200, b"", "application/x-protobuf")

    def do_GET(self):
        if self.path != "/count":
            return self.answer(404, b"", "text/plain")
        with LOCK:
            body = json.dumps(COUNTS).encode()
        self.answer(200, body, "application/json")


def main():
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()

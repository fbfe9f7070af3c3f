#!/usr/bin/env python3
"""Memory per idle keep-alive connection, for bench/run.sh (stdlib only).

  idle_conns.py --port PORT [--tls 0|1] [--conns N] [--header 'Name: value'] PID...

PIDs are the processes that serve (the NGINX worker, or the Portcullis
process); their VmRSS is summed. The steps:

  1. read VmRSS (before);
  2. open N connections to 127.0.0.1:PORT one after another; on each send one
     `GET / HTTP/1.1` and read the whole response, then leave it open and idle;
     after every BATCH connections pause PAUSE seconds, as connections arrive
     over time in real life (a server that frees an idle connection's buffers
     after a moment, as NGINX and Portcullis do, is measured at its steady
     state; opened all at once, the figure would be the high-water mark of
     connections that have just been served);
  3. wait SETTLE seconds, read VmRSS (with);
  4. check that every connection is still open, by a second request on each
     (a server that closed idle connections would make the figure meaningless);
  5. close them all, wait, read VmRSS (closed).

--header adds a request header to every request (the JWT case's
Authorization). Prints one tab-separated line: rss_before_kb rss_with_kb rss_closed_kb
conns conns_alive. (with - before) / N is the memory one idle connection costs
the proxy in user space; the kernel's socket buffers are not in its RSS.
"""

import argparse
import socket
import ssl
import sys
import time

SETTLE = 1.0
BATCH = 100
PAUSE = 1.0
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def rss_kb(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
            else:
                raise SystemExit(f"idle_conns.py: no VmRSS for pid {pid}")
    return total


def read_response(sock):
    """Read one HTTP/1.1 response (Content-Length or chunked body). Returns
    False if the peer closed the connection first."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            return False
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    if not lines[0].startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"idle_conns.py: unexpected response: {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower()] = v.strip().lower()
    if b"content-length" in headers:
        need = int(headers[b"content-length"])
        while len(body) < need:
            chunk = sock.recv(4096)
            if not chunk:
                return False
            body += chunk
    elif headers.get(b"transfer-encoding") == b"chunked":
        while not body.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(4096)
            if not chunk:
                return False
            body += chunk
    if headers.get(b"connection") == b"close":
        raise SystemExit("idle_conns.py: the server does not keep the connection alive")
    return True


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tls", type=int, default=0, choices=(0, 1))
    p.add_argument("--conns", type=int, default=1000)
    p.add_argument("--header", action="append", default=[],
                   help="extra request header, 'Name: value' (repeatable)")
    p.add_argument("pids", type=int, nargs="+")
    a = p.parse_args()
    request = REQUEST
    if a.header:
        request = (b"GET / HTTP/1.1\r\nHost: x\r\n"
                   + b"".join(h.encode() + b"\r\n" for h in a.header) + b"\r\n")

    ctx = None
    if a.tls:
        # A throwaway self-signed certificate; no ALPN, so HTTP/1.1 like wrk.
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE

    before = rss_kb(a.pids)
    socks = []
    try:
        for i in range(a.conns):
            if i and i % BATCH == 0:
                time.sleep(PAUSE)
            s = socket.create_connection(("127.0.0.1", a.port), timeout=10)
            if ctx:
                s = ctx.wrap_socket(s, server_hostname="localhost")
            socks.append(s)
            s.sendall(request)
            if not read_response(s):
                raise SystemExit("idle_conns.py: the server closed a new connection")
        time.sleep(SETTLE)
        with_conns = rss_kb(a.pids)

        alive = 0
        for s in socks:
            try:
                s.sendall(request)
                alive += read_response(s)
            except (OSError, ssl.SSLError):
                pass
    finally:
        for s in socks:
            try:
                s.close()
            except OSError:
                pass
    time.sleep(SETTLE)
    closed = rss_kb(a.pids)
    print(f"{before}\t{with_conns}\t{closed}\t{a.conns}\t{alive}")
    if alive != a.conns:
        print(f"idle_conns.py: only {alive} of {a.conns} connections were still open", file=sys.stderr)


if __name__ == "__main__":
    main()

"""Drives one benchmark case under callgrind: WARMUP then N requests, one
at a time on one keep-alive connection; callgrind's counters are zeroed
after the warm-up and dumped after the N. Every answer must be `200 ok`.

Usage: drive_one.py PORT PID N WARMUP REQUEST_FILE [SETTLE SINK_PORT WINDOW_FILE]

REQUEST_FILE holds the request's exact bytes. SETTLE seconds are waited
before and after the counted window (access-log lines and spans of the
warm-up written before it, the counted ones inside it); with SINK_PORT,
the spans the OTLP sink got in the window are written to WINDOW_FILE.
"""
import json
import socket
import subprocess
import sys
import time
import urllib.request

port, pid, n, warmup = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
req = open(sys.argv[5], "rb").read()
settle = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
sink = sys.argv[7] if len(sys.argv) > 7 else ""
window_file = sys.argv[8] if len(sys.argv) > 8 else ""


def spans():
    return json.load(urllib.request.urlopen(f"http://127.0.0.1:{sink}/count"))["spans"] if sink else 0


for _ in range(150):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=60)
        break
    except OSError:
        time.sleep(0.3)
else:
    sys.exit("drive_one.py: the proxy did not start")


def request():
    s.sendall(req)
    buf = b""
    while not buf.endswith(b"\r\n\r\nok"):
        chunk = s.recv(4096)
        if not chunk:
            sys.exit("drive_one.py: the proxy closed the connection")
        buf += chunk
    if not buf.startswith(b"HTTP/1.1 200"):
        sys.exit("drive_one.py: unexpected answer: %r" % buf[:200])


for _ in range(warmup):
    request()
time.sleep(settle)
s0 = spans()
subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True)
for _ in range(n):
    request()
time.sleep(settle)
subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True)
if sink:
    open(window_file, "w").write(str(spans() - s0))

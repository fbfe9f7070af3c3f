#!/usr/bin/env bash
# User-space instructions per proxied request, under callgrind: a
# deterministic figure for A/B comparisons between builds (CPU time on this
# shared host moves by ±5% between runs; instruction counts do not).
#
#   bench/instructions.sh [PORTCULLIS_BIN...]      (default: target/release/portcullis)
#   CONNS=50 bench/instructions.sh [PORTCULLIS_BIN...]
#   ROUTES="plain jwt limit both" bench/instructions.sh [PORTCULLIS_BIN...]
#
# PROFILES=DIR keeps the callgrind dump of each figure there.
# ROUTES picks the route kinds the gateway is measured on (default: plain):
# `plain` proxies; `jwt` checks a cached HS256 bearer token and a scope;
# `limit` counts one per-IP rate limit that is never reached; `both` does
# the two on one route; `bearer` is the plain route sent the same
# `Authorization: Bearer` line as `jwt` (what reading and forwarding that
# line costs on any route, so `jwt` minus `bearer` is the policy's own
# cost). NGINX is measured once, as a plain proxy.
#
# Each binary, and NGINX as a reverse proxy with the same upstream, serves
# WARMUP requests on one keep-alive connection; the counters are then zeroed
# and N more requests are counted (N=2000 by default). The upstream is NGINX
# returning "ok". Needs valgrind, nginx and python3 (installed if missing).
#
# With CONNS > 1 the load is `wrk -t1 -c$CONNS` instead (installed if
# missing): 5 s of warm-up, then the counters run for COUNT_SECONDS (20) and the
# figure is instructions over the requests wrk completed in that window
# (the few in flight at its edges make it approximate, to about CONNS in
# tens of thousands). Under callgrind the proxy runs about 9x slower
# (3,400 requests/s at c50 here, against ~31,000 at full speed), so each
# wake-up serves more ready connections than at full speed: a figure for
# where the time goes with many connections, not a stand-in for CPU time.
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
N=${N:-2000}
WARMUP=${WARMUP:-200}
CONNS=${CONNS:-1}
COUNT_SECONDS=${COUNT_SECONDS:-20}
BINS=("$@")
((${#BINS[@]})) || BINS=("$BENCH_DIR/../target/release/portcullis")

missing=()
command -v valgrind >/dev/null || missing+=(valgrind)
command -v nginx >/dev/null || missing+=(nginx)
command -v python3 >/dev/null || missing+=(python3)
((CONNS <= 1)) || command -v wrk >/dev/null || missing+=(wrk)
if ((${#missing[@]})); then
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
fi

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

UP_PORT=$(free_port)
PROXY_PORT=$(free_port)
common="worker_processes 1; daemon off; master_process off; pid $WORK/PID; error_log $WORK/error.log; user root;
events { worker_connections 1024; }"
temps="client_body_temp_path $WORK; proxy_temp_path $WORK; fastcgi_temp_path $WORK; uwsgi_temp_path $WORK; scgi_temp_path $WORK;"
cat > "$WORK/up.conf" <<EOF
${common//PID/up.pid}
http { access_log off; keepalive_requests 1000000; $temps
  server { listen 127.0.0.1:$UP_PORT; location / { return 200 "ok"; } } }
EOF
cat > "$WORK/proxy.conf" <<EOF
${common//PID/proxy.pid}
http { access_log off; keepalive_requests 1000000; $temps
  upstream u { server 127.0.0.1:$UP_PORT; keepalive 64; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$PROXY_PORT; location / { proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
EOF
ROUTES=${ROUTES:-plain}
# One HS256 token for every request of the JWT routes (the gateway caches
# its verification, as it would a busy client's token).
SECRET=bench-secret-of-at-least-thirty-two-bytes
TOKEN=$(python3 - "$SECRET" <<'PY'
import base64, hashlib, hmac, json, sys, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b64(json.dumps({"iss": "bench", "sub": "bench", "scope": "read", "exp": int(time.time()) + 86400}).encode())
sig = b64(hmac.new(sys.argv[1].encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
print(f"{head}.{body}.{sig}")
PY
)
cat > "$WORK/gw.yaml" <<EOF
listeners: [ { name: bench, bind: "127.0.0.1:$PROXY_PORT" } ]
upstreams: { fast: { targets: [ "http://127.0.0.1:$UP_PORT" ] } }
auth: { hs: { jwt: { algorithms: [HS256], secret: "$SECRET", issuer: bench } } }
routes:
  - { name: jwt, match: { path_prefix: /j }, upstream: fast, authenticate: [hs], authorize: { scopes: [read] } }
  - { name: limit, match: { path_prefix: /l }, upstream: fast, rate_limit: [ { key: ip, rate: 100000000/s, burst: 100000000 } ] }
  - name: both
    match: { path_prefix: /b }
    upstream: fast
    authenticate: [hs]
    authorize: { scopes: [read] }
    rate_limit: [ { key: ip, rate: 100000000/s, burst: 100000000 } ]
  - { name: plain, match: { path_prefix: / }, upstream: fast }
EOF
# path_of ROUTE, auth_of ROUTE: what a request of that route kind sends.
# Paths of one more byte than plain's `/` (`/j`, `/l`, `/b`): each byte of
# a path costs ~25 instructions to parse and normalize, which is not the
# cost of a policy (with `/limit` it was ~220 of the limit's figure).
path_of() { case $1 in plain | bearer) echo / ;; *) echo "/${1:0:1}" ;; esac; }
auth_of() { case $1 in jwt | both | bearer) echo "Bearer $TOKEN" ;; *) echo "" ;; esac; }
ROUTE_PATH=/
ROUTE_AUTH=""

nginx -p "$WORK/" -c "$WORK/up.conf" -e "$WORK/error.log" >/dev/null 2>&1 &
PIDS+=($!)

# count NAME CMD...: runs CMD under callgrind, drives it, prints the figure.
count() {
    local name=$1
    shift
    # Names written in full in every dump, so that a kept one reads alone.
    local keep=()
    [[ -z ${PROFILES:-} ]] || keep=(--compress-strings=no --compress-pos=no)
    valgrind --tool=callgrind "${keep[@]}" --callgrind-out-file="$WORK/cg.out" "$@" >/dev/null 2>"$WORK/valgrind.log" &
    local vg=$!
    PIDS+=("$vg")
    local requests=$N
    if ((CONNS > 1)); then
        requests=$(drive_wrk "$vg")
    else
        drive_one "$vg"
    fi
    kill "$vg" 2>/dev/null || true
    wait "$vg" 2>/dev/null || true
    local dump total
    dump=$(ls -t "$WORK"/cg.out.* | head -1)
    total=$(grep -E '^(summary|totals):' "$dump" | head -1 | awk '{print $2}')
    printf '%-40s %8d instructions/request\n' "$name" $((total / requests))
    # PROFILES=DIR keeps each counted dump for callgrind_annotate.
    if [[ -n ${PROFILES:-} ]]; then
        mkdir -p "$PROFILES"
        cp "$dump" "$PROFILES/$(echo "$name" | tr -c 'A-Za-z0-9.-' '_').out"
    fi
    rm -f "$WORK"/cg.out*
}

# drive_wrk PID: CONNS connections from wrk; prints the requests counted.
drive_wrk() {
    local vg=$1 url="http://127.0.0.1:$PROXY_PORT$ROUTE_PATH" out header=()
    [[ -z $ROUTE_AUTH ]] || header=(-H "Authorization: $ROUTE_AUTH")
    for _ in $(seq 100); do
        python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $PROXY_PORT), timeout=1)" 2>/dev/null && break
        sleep 0.3
    done
    wrk -t1 -c"$CONNS" -d5s "${header[@]}" "$url" >/dev/null
    callgrind_control -z "$vg" >/dev/null 2>&1
    out=$(wrk -t1 -c"$CONNS" -d"${COUNT_SECONDS}s" "${header[@]}" "$url")
    callgrind_control -d "$vg" >/dev/null 2>&1
    echo "$out" | awk '/requests in/ {print $1}'
}

# drive_one PID: WARMUP then N requests, one at a time on one connection.
drive_one() {
    python3 - "$PROXY_PORT" "$1" "$N" "$WARMUP" "$ROUTE_PATH" "$ROUTE_AUTH" <<'PY'
import socket, subprocess, sys, time
port, pid, n, warmup = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
path, auth = sys.argv[5], sys.argv[6]
head = f"GET {path} HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\nAccept: */*\r\n"
if auth:
    head += f"Authorization: {auth}\r\n"
head = (head + "\r\n").encode()
for _ in range(100):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        break
    except OSError:
        time.sleep(0.3)
else:
    sys.exit("instructions.sh: the proxy did not start")
def request():
    s.sendall(head)
    buf = b""
    while not buf.endswith(b"\r\n\r\nok"):
        chunk = s.recv(4096)
        if not chunk:
            sys.exit("instructions.sh: the proxy closed the connection")
        buf += chunk
    if not buf.startswith(b"HTTP/1.1 200"):
        sys.exit("instructions.sh: unexpected answer: %r" % buf[:80])
for _ in range(warmup):
    request()
subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True)
for _ in range(n):
    request()
subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True)
PY
}

count "nginx $(nginx -v 2>&1 | sed 's/.*\///')" nginx -p "$WORK/" -c "$WORK/proxy.conf" -e "$WORK/error.log"
for route in $ROUTES; do
    ROUTE_PATH=$(path_of "$route")
    ROUTE_AUTH=$(auth_of "$route")
    for bin in "${BINS[@]}"; do
        PORTCULLIS_WORKER_THREADS=1 count "portcullis $route ($bin)" "$bin" run --config "$WORK/gw.yaml"
    done
done

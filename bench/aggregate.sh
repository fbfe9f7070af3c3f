#!/usr/bin/env bash
# What an aggregate route costs against the same calls made by a client
# through the plain proxy (issue 14): user-space instructions per request
# under callgrind (the method of bench/instructions.sh), and optionally CPU
# time per request under wrk.
#
#   bench/aggregate.sh [PORTCULLIS_BIN]          (default: target/dist/portcullis)
#   N=2000 WARMUP=200 CPU_SECONDS=10 ROUNDS=3 bench/aggregate.sh [PORTCULLIS_BIN]
#
# Three upstreams, all served by one NGINX (one worker, access log off),
# three `server` blocks on three ports, each answering one small JSON with
# `default_type application/json; return 200 '...'`:
#   users   /users/42        {"id":42,"name":"ann"}
#   orders  /orders?user=42  an array of two small orders
#   recs    /recs/42         {"user":42,"items":[101,102,103]}
# plus a fourth server block with `stub_status`, read between requests to
# count what the upstreams served and the connections they accepted.
#
# The gateway (PORTCULLIS_WORKER_THREADS=1, nothing observed) has the three
# upstreams, one plain `path_prefix` route to each (/users, /orders, /recs),
# and the aggregate route of issue 14:
#   /dashboard/{id}: user (required), then orders (after user, with
#   {user.id} from its answer), and recs beside them; grouped merge.
# The aggregate's calls go through the gateway's own HTTP/1.1 pool (the
# targets are plain http://).
#
# Cases, each WARMUP iterations on one keep-alive connection, then the
# counters zeroed and N iterations counted (one request at a time):
#   aggregate       GET /dashboard/42 through the gateway;
#   plain x3        GET /users/42, /orders?user=42, /recs/42 through the
#                   gateway's plain routes, one after the other: one
#                   iteration is the three, so the figure is their sum;
#   plain <path>    each of the three alone;
#   nginx x3        the same three through NGINX as a reverse proxy (three
#                   upstream blocks with keepalive), the reference.
# Before counting, the gateway runs once outside valgrind and the script
# checks with curl that each plain path answers its JSON and that the
# aggregate answers 200, `Portcullis-Aggregate: complete`, with the three
# answers under user, orders and recs. Every counted answer must be 200
# (and for the aggregate, `complete`). Each figure's line gives what the
# upstreams served in the counted window, per iteration, and the new
# upstream connections they accepted (a pool that is reused opens none).
# PROFILES=DIR keeps each callgrind dump there; COUNT=0 skips the counts.
#
# CPU_SECONDS=S (default 0: off) adds CPU time per request outside valgrind
# (user + system, kernel included), the method of ../shared/BENCHMARKING.md:
# the proxy pinned to core 0, the upstream NGINX and wrk on core 1,
# `wrk -t1 -c$CPU_CONNS` (50: saturation) for S seconds after 2 s of
# warm-up; cases `nginx x3`, `plain x3`, `aggregate` interleaved (rotated)
# over ROUNDS rounds (3), each a fresh process. wrk sends the three plain
# paths in turn (a Lua `request()`; the aggregate case goes through the
# same Lua path with one URL). CPU per request from /proc/PID/stat; `x3`
# cases are reported per three requests. Ratios are taken per round, then
# the median. The upstream's CPU in the same window normalises each
# figure per upstream request (the aggregate makes three). One line per
# run gives the raw figures, and how much of core 0 something other than
# the proxy used (from /proc/stat: a build beside the benchmark shows here).
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
N=${N:-2000}
WARMUP=${WARMUP:-200}
CPU_SECONDS=${CPU_SECONDS:-0}
CPU_CONNS=${CPU_CONNS:-50}
ROUNDS=${ROUNDS:-3}
COUNT=${COUNT:-1}
BIN=${1:-$BENCH_DIR/../target/dist/portcullis}

source "$BENCH_DIR/lib.sh"
need_counting_tools

bench_start
# Ports: UP_PORT (users), two more upstreams, the status page, NGINX as proxy.
ORDERS_PORT=$(free_port)
RECS_PORT=$(free_port)
STATUS_PORT=$(free_port)
NGX_PORT=$(free_port)
ports="$UP_PORT $ORDERS_PORT $RECS_PORT $STATUS_PORT $NGX_PORT $PROXY_PORT"
if [[ $(echo $ports | tr ' ' '\n' | sort -u | wc -l) != 6 ]]; then
    echo "aggregate.sh: free_port gave the same port twice ($ports); run again" >&2
    exit 1
fi

USER_JSON='{"id":42,"name":"ann"}'
ORDERS_JSON='[{"id":7,"total":12.5,"status":"paid"},{"id":9,"total":3,"status":"open"}]'
RECS_JSON='{"user":42,"items":[101,102,103]}'
cat > "$WORK/up.conf" <<EOF
${common//PID/up.pid}
http { access_log off; keepalive_requests 1000000; default_type application/json; $temps
  server { listen 127.0.0.1:$UP_PORT; location = /users/42 { return 200 '$USER_JSON'; } }
  server { listen 127.0.0.1:$ORDERS_PORT; location = /orders { return 200 '$ORDERS_JSON'; } }
  server { listen 127.0.0.1:$RECS_PORT; location = /recs/42 { return 200 '$RECS_JSON'; } }
  server { listen 127.0.0.1:$STATUS_PORT; location / { stub_status; } } }
EOF
cat > "$WORK/proxy.conf" <<EOF
${common//PID/proxy.pid}
http { access_log off; keepalive_requests 1000000; $temps
  upstream users { server 127.0.0.1:$UP_PORT; keepalive 64; keepalive_requests 1000000; }
  upstream orders { server 127.0.0.1:$ORDERS_PORT; keepalive 64; keepalive_requests 1000000; }
  upstream recs { server 127.0.0.1:$RECS_PORT; keepalive 64; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$NGX_PORT;
    proxy_http_version 1.1; proxy_set_header Connection "";
    location /users { proxy_pass http://users; }
    location /orders { proxy_pass http://orders; }
    location /recs { proxy_pass http://recs; } } }
EOF
cat > "$WORK/gw.yaml" <<EOF
listeners: [ { name: bench, bind: "127.0.0.1:$PROXY_PORT" } ]
upstreams:
  users:  { targets: [ "http://127.0.0.1:$UP_PORT" ] }
  orders: { targets: [ "http://127.0.0.1:$ORDERS_PORT" ] }
  recs:   { targets: [ "http://127.0.0.1:$RECS_PORT" ] }
routes:
  - { name: users, match: { path_prefix: /users }, upstream: users }
  - { name: orders, match: { path_prefix: /orders }, upstream: orders }
  - { name: recs, match: { path_prefix: /recs }, upstream: recs }
  - name: dashboard
    match: { path: "/dashboard/{id}", methods: [GET] }
    aggregate:
      timeout: 2s
      calls:
        user:   { upstream: users,  path: "/users/{id}", required: true }
        orders: { upstream: orders, path: "/orders?user={user.id}", after: [ user ] }
        recs:   { upstream: recs,   path: "/recs/{id}" }
EOF
"$BIN" check --config "$WORK/gw.yaml" >/dev/null

# The one-connection driver: WARMUP then N iterations of the PATHS, one
# request at a time; callgrind's counters zeroed after the warm-up and
# dumped after the N (PID "-" : no callgrind). Prints what the upstreams
# served in the counted window (from stub_status).
cat > "$WORK/drive.py" <<'PY'
import re, socket, subprocess, sys, time, urllib.request
port, pid, n, warmup, status_port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
paths = sys.argv[6:]
reqs = [("GET %s HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n" % p).encode() for p in paths]
aggregate = [p.startswith("/dashboard/") for p in paths]

def upstream_counts():
    text = urllib.request.urlopen("http://127.0.0.1:%s/" % status_port).read().decode()
    accepts, handled, requests = map(int, text.split("\n")[2].split())
    return accepts, requests

for _ in range(150):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=60)
        break
    except OSError:
        time.sleep(0.3)
else:
    sys.exit("drive.py: the proxy did not start")
buf = b""

def recv():
    global buf
    chunk = s.recv(65536)
    if not chunk:
        sys.exit("drive.py: the proxy closed the connection")
    buf += chunk

def response():
    """One response off the connection: (status line, headers, body)."""
    global buf
    while b"\r\n\r\n" not in buf:
        recv()
    head, buf = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, v = line.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        size = int(headers["content-length"])
        while len(buf) < size:
            recv()
        body, buf = buf[:size], buf[size:]
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            while b"\r\n" not in buf:
                recv()
            line, buf = buf.split(b"\r\n", 1)
            size = int(line.split(b";")[0], 16)
            while len(buf) < size + 2:
                recv()
            body, buf = body + buf[:size], buf[size + 2:]
            if size == 0:
                break
    else:
        sys.exit("drive.py: an answer without a length: %r" % head[:300])
    return lines[0], headers, body

def iteration():
    for req, agg in zip(reqs, aggregate):
        s.sendall(req)
        status, headers, body = response()
        if not status.startswith("HTTP/1.1 200") or (agg and headers.get("portcullis-aggregate") != "complete"):
            sys.exit("drive.py: unexpected answer: %s %r %r" % (status, headers, body[:300]))

for _ in range(warmup):
    iteration()
a0, r0 = upstream_counts()
if pid != "-":
    subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True)
for _ in range(n):
    iteration()
if pid != "-":
    subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True)
a1, r1 = upstream_counts()
# The status request itself counts as one request.
print("%.2f upstream requests/iteration, %d new upstream connections" % ((r1 - r0 - 1) / n, a1 - a0 - 1))
PY

nginx -p "$WORK/" -c "$WORK/up.conf" -e "$WORK/error.log" >/dev/null 2>&1 &
PIDS+=($!)
UP_PID=$!

wait_port() {
    for _ in $(seq 100); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), timeout=1)" 2>/dev/null && return 0
        sleep 0.2
    done
    echo "aggregate.sh: nothing listens on $1" >&2
    return 1
}

# The check, outside valgrind.
PORTCULLIS_WORKER_THREADS=1 "$BIN" run --config "$WORK/gw.yaml" >"$WORK/gw.log" 2>&1 &
gw=$!
PIDS+=("$gw")
for p in $UP_PORT $ORDERS_PORT $RECS_PORT $STATUS_PORT $PROXY_PORT; do wait_port "$p"; done
get() { curl -s -D "$WORK/head" -o "$WORK/answer" -w '%{http_code}' "http://127.0.0.1:$PROXY_PORT$1"; }
for pair in "/users/42|$USER_JSON" "/orders?user=42|$ORDERS_JSON" "/recs/42|$RECS_JSON"; do
    path=${pair%%|*}
    code=$(get "$path")
    if [[ $code != 200 || $(cat "$WORK/answer") != "${pair#*|}" ]]; then
        echo "aggregate.sh: $path through the plain route: $code $(head -c 300 "$WORK/answer")" >&2
        exit 1
    fi
done
code=$(get /dashboard/42)
mark=$(grep -i '^portcullis-aggregate:' "$WORK/head" | tr -d '\r' | cut -d' ' -f2-)
python3 - "$WORK/answer" "$USER_JSON" "$ORDERS_JSON" "$RECS_JSON" <<'PY' || { echo "aggregate.sh: /dashboard/42 answered $code ($mark): $(head -c 500 "$WORK/answer")" >&2; exit 1; }
import json, sys
got = json.load(open(sys.argv[1]))
want = {"user": json.loads(sys.argv[2]), "orders": json.loads(sys.argv[3]), "recs": json.loads(sys.argv[4])}
sys.exit(0 if got == want else 1)
PY
[[ $code == 200 && $mark == complete ]] || { echo "aggregate.sh: /dashboard/42 answered $code, Portcullis-Aggregate: $mark" >&2; exit 1; }
echo "check: the three plain paths answer their JSON; /dashboard/42 answers 200, complete: $(cat "$WORK/answer") ($(wc -c < "$WORK/answer") B)"
kill "$gw"
wait "$gw" 2>/dev/null || true

# count NAME PORT PATHS CMD...: runs CMD under callgrind, drives it, prints the figure.
count() {
    local name=$1 port=$2 paths=$3
    shift 3
    start_callgrind "$@"
    local vg=$VG
    # shellcheck disable=SC2086
    python3 "$WORK/drive.py" "$port" "$vg" "$N" "$WARMUP" "$STATUS_PORT" $paths > "$WORK/window"
    kill "$vg" 2>/dev/null || true
    wait "$vg" 2>/dev/null || true
    local dump total
    dump=$(ls -t "$WORK"/cg.out.* | head -1)
    total=$(grep -E '^(summary|totals):' "$dump" | head -1 | awk '{print $2}')
    printf '%-34s %10d instructions/iteration  (%s)\n' "$name" $((total / N)) "$(cat "$WORK/window")"
    echo "$name	$((total / N))" >> "$WORK/counts"
    if [[ -n ${PROFILES:-} ]]; then
        mkdir -p "$PROFILES"
        cp "$dump" "$PROFILES/$(echo "$name" | tr -c 'A-Za-z0-9.-' '_').out"
    fi
    rm -f "$WORK"/cg.out*
}

NGINX_V=$(nginx -v 2>&1 | sed 's/.*\///')
THREE="/users/42 /orders?user=42 /recs/42"
export PORTCULLIS_WORKER_THREADS=1
((COUNT == 0)) || {
count "nginx $NGINX_V x3" "$NGX_PORT" "$THREE" nginx -p "$WORK/" -c "$WORK/proxy.conf" -e "$WORK/error.log"
count "portcullis aggregate" "$PROXY_PORT" /dashboard/42 "$BIN" run --config "$WORK/gw.yaml"
count "portcullis plain x3" "$PROXY_PORT" "$THREE" "$BIN" run --config "$WORK/gw.yaml"
for path in $THREE; do
    count "portcullis plain $path" "$PROXY_PORT" "$path" "$BIN" run --config "$WORK/gw.yaml"
done
python3 - "$WORK/counts" <<'PY'
import sys
c = dict(line.rstrip("\n").split("\t") for line in open(sys.argv[1]))
c = {k: int(v) for k, v in c.items()}
agg, three = c["portcullis aggregate"], c["portcullis plain x3"]
ngx = next(v for k, v in c.items() if k.startswith("nginx"))
singles = sum(v for k, v in c.items() if k.startswith("portcullis plain /"))
print("aggregate / plain x3: %.2f  (aggregate %d, plain x3 %d, the three counted alone %d)" % (agg / three, agg, three, singles))
print("plain x3 / nginx x3: %.2f   aggregate / nginx x3: %.2f" % (three / ngx, agg / ngx))
PY
}

((CPU_SECONDS > 0)) || exit 0
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# The upstream moves to core 1 with the load.
taskset -cp 1 "$UP_PID" >/dev/null
cat > "$WORK/three.lua" <<'EOF'
local paths = {"/users/42", "/orders?user=42", "/recs/42"}
local i = 0
request = function() i = i % #paths + 1; return wrk.format("GET", paths[i]) end
EOF
cat > "$WORK/dash.lua" <<'EOF'
local paths = {"/dashboard/42"}
local i = 0
request = function() i = i % #paths + 1; return wrk.format("GET", paths[i]) end
EOF
# busy ticks of core $1 (user nice system irq softirq steal), from /proc/stat
core_busy() { awk -v c="cpu$1" '$1 == c {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
status_requests() { curl -s "http://127.0.0.1:$STATUS_PORT/" | awk 'NR == 3 {print $3}'; }
# cpu ROUND CASE PORT LUA PER CMD...: CMD natively on core 0, wrk from core 1;
# appends round, case, requests, proxy ticks, upstream ticks, upstream
# requests, wall seconds, ticks of other work on core 0 to $WORK/cpu.tsv.
cpu() {
    local round=$1 name=$2 port=$3 lua=$4
    shift 4
    taskset -c 0 "$@" >/dev/null 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait_port "$port"
    local url="http://127.0.0.1:$port" t0 t1 u0 u1 r0 r1 w0 w1 b0 b1 out reqs
    taskset -c 1 wrk -t1 -c"$CPU_CONNS" -d2s -s "$lua" "$url" >/dev/null
    r0=$(status_requests); u0=$(cpu_ticks "$UP_PID"); b0=$(core_busy 0); t0=$(cpu_ticks "$pid"); w0=$(date +%s.%N)
    out=$(taskset -c 1 wrk -t1 -c"$CPU_CONNS" -d"${CPU_SECONDS}s" -s "$lua" "$url")
    t1=$(cpu_ticks "$pid"); w1=$(date +%s.%N); b1=$(core_busy 0); u1=$(cpu_ticks "$UP_PID"); r1=$(status_requests)
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    if echo "$out" | grep -q -e 'Non-2xx' -e 'Socket errors'; then
        echo "aggregate.sh: $name: errors under wrk:" >&2
        echo "$out" >&2
        exit 1
    fi
    reqs=$(echo "$out" | awk '/requests in/ {print $1}')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$name" "$reqs" $((t1 - t0)) $((u1 - u0)) $((r1 - r0 - 1)) \
        "$(python3 -c "print($w1 - $w0)")" $((b1 - b0 - (t1 - t0))) >> "$WORK/cpu.tsv"
}
cases=("nginx-x3" "plain-x3" "aggregate")
for round in $(seq "$ROUNDS"); do
    for k in 0 1 2; do
        case ${cases[$(((k + round - 1) % 3))]} in
            nginx-x3) cpu "$round" nginx-x3 "$NGX_PORT" "$WORK/three.lua" nginx -p "$WORK/" -c "$WORK/proxy.conf" -e "$WORK/error.log" ;;
            plain-x3) cpu "$round" plain-x3 "$PROXY_PORT" "$WORK/three.lua" "$BIN" run --config "$WORK/gw.yaml" ;;
            aggregate) cpu "$round" aggregate "$PROXY_PORT" "$WORK/dash.lua" "$BIN" run --config "$WORK/gw.yaml" ;;
        esac
    done
done
python3 - "$WORK/cpu.tsv" "$CLK_TCK" "$CPU_CONNS" <<'PY'
import statistics, sys
hz, conns = int(sys.argv[2]), sys.argv[3]
rows = {}
for line in open(sys.argv[1]):
    rnd, name, reqs, t, u, ureqs, wall, other = line.split("\t")
    reqs, t, u, ureqs, wall, other = int(reqs), int(t), int(u), int(ureqs), float(wall), int(other)
    per = 3 if name.endswith("x3") else 1  # client requests per unit
    unit = reqs / per
    rows.setdefault(rnd, {})[name] = {
        "cpu_us": t / hz / unit * 1e6,           # proxy CPU per aggregate / per three requests
        "norm": t / u if u else float("nan"),      # proxy CPU / upstream CPU in the window
        "ureq": ureqs / unit,                    # upstream requests per unit
        "rate": reqs / wall, "core": t / hz / wall, "ticks": t,
        "lat": int(conns) * wall / unit * 1e6,   # wall time per unit per connection (Little's law)
    }
    print("round %s %-9s %6d req/s  proxy %5.1f CPU us/unit, core use %.2f, proxy/upstream CPU %.2f, %.2f upstream req/unit, %.0f us/unit/conn, other work on core 0: %.2f core"
          % (rnd, name, reqs / wall, t / hz / unit * 1e6, t / hz / wall, t / u if u else float("nan"), ureqs / unit, int(conns) * wall / unit * 1e6, max(other, 0) / hz / wall))
def fmt(vals, f="%.1f"):
    return (f + " (" + f + "-" + f + ")") % (statistics.median(vals), min(vals), max(vals))
print("\nCPU per unit (wrk -t1 -c%s, %d rounds; a unit is one aggregate or the three plain requests):" % (conns, len(rows)))
print("| case | proxy CPU us/unit | proxy / upstream CPU | upstream requests/unit | client req/s | proxy core use | wall us/unit/conn |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for name in ("nginx-x3", "plain-x3", "aggregate"):
    r = [rows[k][name] for k in rows]
    print("| %s | %s | %s | %s | %s | %s | %s |" % (name, fmt([x["cpu_us"] for x in r]), fmt([x["norm"] for x in r], "%.2f"),
          fmt([x["ureq"] for x in r], "%.2f"), fmt([x["rate"] for x in r], "%.0f"), fmt([x["core"] for x in r], "%.2f"),
          fmt([x["lat"] for x in r], "%.0f")))
    if conns != "1" and min(x["core"] for x in r) < 0.95:
        print("  warning: %s did not always use >= 0.95 of a core: not saturated" % name)
    if min(x["ticks"] for x in r) < 100:
        print("  warning: %s: fewer than 100 ticks in a run" % name)
ratio = lambda a, b, key: [rows[k][a][key] / rows[k][b][key] for k in rows]
print("\nper round, then the median:")
print("aggregate / plain x3, CPU per unit: %s" % fmt(ratio("aggregate", "plain-x3", "cpu_us"), "%.2f"))
print("aggregate / plain x3, proxy/upstream CPU: %s" % fmt(ratio("aggregate", "plain-x3", "norm"), "%.2f"))
print("plain x3 / nginx x3, CPU per unit: %s" % fmt(ratio("plain-x3", "nginx-x3", "cpu_us"), "%.2f"))
print("aggregate / nginx x3, CPU per unit: %s" % fmt(ratio("aggregate", "nginx-x3", "cpu_us"), "%.2f"))
PY

#!/usr/bin/env bash
# User-space instructions per POST with a JSON body, under callgrind (the
# method of bench/instructions.sh), plain proxy against request-body JSON
# Schema validation (issue 12):
#
#   bench/validate.sh [PORTCULLIS_BIN]            (default: target/dist/portcullis)
#   SIZES="1 10 100" N=2000 WARMUP=200 bench/validate.sh [PORTCULLIS_BIN]
#
# For each body size in SIZES (KiB, default "1 10 100"), one JSON body
# (bench/orders.py): a
# customer object (email, name) and as many items (sku matching
# ^[A-Z]{3}-[0-9]{4}$, qty, price, a date-time) as bring it to about that
# size, items varied (about 90 bytes each). The same body is POSTed
# (Content-Type: application/json, Content-Length) to three cases:
#   nginx      NGINX 1 worker as reverse proxy (the config of instructions.sh,
#              plus client_body_buffer_size 1m so no body goes to a temp file);
#   plain      the gateway, route `/p/orders` with no `validate`;
#   validated  the gateway, route `/v/orders` with `validate.body.schema_file`
#              bench/orders-schema.json (the schema of issue 12: nested object, arrays, `email` and
#              `date-time` formats, a pattern, maxLength, minimum).
# Both gateway routes match an exact path of the same length with
# `methods: [POST]` and set `max_body_size: 1MiB`, so the difference is the
# validation: reading the body whole, the JSON threat scan, parsing and the
# schema check (and sending the buffered body on with its length).
#
# Before counting, the gateway runs once outside valgrind and the script
# checks with curl that every body answers 200 ("ok" from the upstream) on
# both routes, and that a body with a bad email, a bad sku or a bad date
# answers 400 on the validated route (and 200 on the plain one): the schema
# and its formats really are on the path.
#
# Each case serves WARMUP requests on one keep-alive connection; the
# counters are then zeroed and N more are counted (PORTCULLIS_WORKER_THREADS=1,
# nothing observed: no admin API, access log or spans). The upstream is
# NGINX returning "ok". Deterministic to about 0.1% between runs. At 100 KiB
# a validated request costs ~17M instructions, so N=2000 there takes minutes
# (SIZES=100 N=200 WARMUP=50 gives the same figure).
# PROFILES=DIR keeps each callgrind dump there.
#
# CPU_SECONDS=S (default 0: off) adds, after the counts, CPU time per
# request outside valgrind (user + system, kernel included, which callgrind
# does not see): for each size, NGINX and a fresh gateway pinned to core 0,
# `wrk -t1 -c$CPU_CONNS` (default 10) POSTing the body for S seconds from
# core 1 after 2 s of warm-up, CPU from /proc/PID/stat over the requests
# wrk completed. One run per case, not interleaved rounds like run.sh: on a
# shared host a figure that moves by several per cent, for orders of
# magnitude only.
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
N=${N:-2000}
WARMUP=${WARMUP:-200}
SIZES=${SIZES:-"1 10 100"}
CPU_SECONDS=${CPU_SECONDS:-0}
CPU_CONNS=${CPU_CONNS:-10}
BIN=${1:-$BENCH_DIR/../target/dist/portcullis}

source "$BENCH_DIR/lib.sh"
need_counting_tools

bench_start
cat > "$WORK/up.conf" <<EOF
${common//PID/up.pid}
http { access_log off; keepalive_requests 1000000; client_max_body_size 2m; client_body_buffer_size 1m; $temps
  server { listen 127.0.0.1:$UP_PORT; location / { return 200 "ok"; } } }
EOF
cat > "$WORK/proxy.conf" <<EOF
${common//PID/proxy.pid}
http { access_log off; keepalive_requests 1000000; client_max_body_size 2m; client_body_buffer_size 1m; $temps
  upstream u { server 127.0.0.1:$UP_PORT; keepalive 64; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$PROXY_PORT; location / { proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
EOF
cat > "$WORK/gw.yaml" <<EOF
listeners: [ { name: bench, bind: "127.0.0.1:$PROXY_PORT" } ]
upstreams: { fast: { targets: [ "http://127.0.0.1:$UP_PORT" ] } }
routes:
  - name: orders
    match: { path: /v/orders, methods: [POST] }
    upstream: fast
    max_body_size: 1MiB
    validate:
      body: { schema_file: "$(cd "$(dirname "$0")" && pwd)/orders-schema.json" }
  - { name: plain, match: { path: /p/orders, methods: [POST] }, upstream: fast, max_body_size: 1MiB }
EOF

# The bodies: body-<KiB>.json, and three invalid variants of the smallest.
python3 "$(dirname "$0")/orders.py" "$WORK" $SIZES

nginx -p "$WORK/" -c "$WORK/up.conf" -e "$WORK/error.log" >/dev/null 2>&1 &
PIDS+=($!)

wait_port() {
    for _ in $(seq 100); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), timeout=1)" 2>/dev/null && return 0
        sleep 0.2
    done
    echo "validate.sh: nothing listens on $1" >&2
    return 1
}
post() { curl -s -o "$WORK/answer" -w '%{http_code}' -H 'Content-Type: application/json' --data-binary "@$2" "http://127.0.0.1:$PROXY_PORT$1"; }

# The check, outside valgrind.
PORTCULLIS_WORKER_THREADS=1 "$BIN" run --config "$WORK/gw.yaml" >"$WORK/gw.log" 2>&1 &
gw=$!
PIDS+=("$gw")
wait_port "$UP_PORT"
wait_port "$PROXY_PORT"
for kib in $SIZES; do
    for path in /p/orders /v/orders; do
        code=$(post $path "$WORK/body-$kib.json")
        if [[ $code != 200 || $(cat "$WORK/answer") != ok ]]; then
            echo "validate.sh: ${kib} KiB body on $path: $code $(head -c 300 "$WORK/answer")" >&2
            exit 1
        fi
    done
done
for bad in bad-email bad-sku bad-date; do
    code=$(post /v/orders "$WORK/$bad.json")
    [[ $code == 400 ]] || { echo "validate.sh: $bad on /v/orders answered $code, not 400" >&2; exit 1; }
    echo "check: $bad -> 400 $(python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["errors"]))' "$WORK/answer")"
    code=$(post /p/orders "$WORK/$bad.json")
    [[ $code == 200 ]] || { echo "validate.sh: $bad on /p/orders answered $code, not 200" >&2; exit 1; }
done
echo "check: every body answers 200 \"ok\" on /p/orders and /v/orders"
kill "$gw"
wait "$gw" 2>/dev/null || true

# count NAME PATH BODY CMD...: runs CMD under callgrind, drives it, prints the figure.
count() {
    local name=$1 path=$2 body=$3
    shift 3
    start_callgrind "$@"
    local vg=$VG
    drive_one "$vg" "$path" "$body"
    kill "$vg" 2>/dev/null || true
    wait "$vg" 2>/dev/null || true
    local dump total
    dump=$(ls -t "$WORK"/cg.out.* | head -1)
    total=$(grep -E '^(summary|totals):' "$dump" | head -1 | awk '{print $2}')
    printf '%-44s %10d instructions/request\n' "$name" $((total / N))
    if [[ -n ${PROFILES:-} ]]; then
        mkdir -p "$PROFILES"
        cp "$dump" "$PROFILES/$(echo "$name" | tr -c 'A-Za-z0-9.-' '_').out"
    fi
    rm -f "$WORK"/cg.out*
}

# drive_one PID PATH BODY: WARMUP then N POSTs, one at a time on one connection.
drive_one() {
    {
        printf 'POST %s HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\nAccept: */*\r\n' "$2"
        printf 'Content-Type: application/json\r\nContent-Length: %s\r\n\r\n' "$(wc -c < "$3")"
        cat "$3"
    } > "$WORK/request"
    python3 "$BENCH_DIR/drive_one.py" "$PROXY_PORT" "$1" "$N" "$WARMUP" "$WORK/request"
}

NGINX_V=$(nginx -v 2>&1 | sed 's/.*\///')
for kib in $SIZES; do
    bytes=$(wc -c < "$WORK/body-$kib.json")
    label="${kib}KiB (${bytes} B, $(cat "$WORK/items-$kib") items)"
    count "nginx $NGINX_V $label" / "$WORK/body-$kib.json" nginx -p "$WORK/" -c "$WORK/proxy.conf" -e "$WORK/error.log"
    PORTCULLIS_WORKER_THREADS=1 count "portcullis plain $label" /p/orders "$WORK/body-$kib.json" "$BIN" run --config "$WORK/gw.yaml"
    PORTCULLIS_WORKER_THREADS=1 count "portcullis validated $label" /v/orders "$WORK/body-$kib.json" "$BIN" run --config "$WORK/gw.yaml"
done

((CPU_SECONDS > 0)) || exit 0
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# cpu NAME PATH BODY CMD...: CMD natively on core 0, wrk from core 1.
cpu() {
    local name=$1 path=$2 body=$3
    shift 3
    taskset -c 0 "$@" >/dev/null 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait_port "$PROXY_PORT"
    cat > "$WORK/post.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$body", "rb"); wrk.body = f:read("*a"); f:close()
EOF
    local url="http://127.0.0.1:$PROXY_PORT$path" t0 t1 out reqs
    taskset -c 1 wrk -t1 -c"$CPU_CONNS" -d2s -s "$WORK/post.lua" "$url" >/dev/null
    t0=$(cpu_ticks "$pid")
    out=$(taskset -c 1 wrk -t1 -c"$CPU_CONNS" -d"${CPU_SECONDS}s" -s "$WORK/post.lua" "$url")
    t1=$(cpu_ticks "$pid")
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    if echo "$out" | grep -q 'Non-2xx'; then echo "validate.sh: $name: non-2xx answers under wrk" >&2; exit 1; fi
    reqs=$(echo "$out" | awk '/requests in/ {print $1}')
    python3 -c 'import sys; t, hz, r, name = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
print("%-44s %8.2f CPU us/request  (%d requests, %.2f CPU s)" % (name, t / hz / r * 1e6, r, t / hz))' $((t1 - t0)) "$CLK_TCK" "$reqs" "$name"
}
# The upstream moves to core 1 with the load.
taskset -cp 1 "${PIDS[0]}" >/dev/null
for kib in $SIZES; do
    cpu "cpu nginx ${kib}KiB" / "$WORK/body-$kib.json" nginx -p "$WORK/" -c "$WORK/proxy.conf" -e "$WORK/error.log"
    PORTCULLIS_WORKER_THREADS=1 cpu "cpu portcullis plain ${kib}KiB" /p/orders "$WORK/body-$kib.json" "$BIN" run --config "$WORK/gw.yaml"
    PORTCULLIS_WORKER_THREADS=1 cpu "cpu portcullis validated ${kib}KiB" /v/orders "$WORK/body-$kib.json" "$BIN" run --config "$WORK/gw.yaml"
done

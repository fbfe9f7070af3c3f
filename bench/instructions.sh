#!/usr/bin/env bash
# User-space instructions per proxied request, under callgrind: a
# deterministic figure for A/B comparisons between builds (CPU time on this
# shared host moves by ±5% between runs; instruction counts do not).
#
#   bench/instructions.sh [PORTCULLIS_BIN...]      (default: target/dist/portcullis)
#   CONNS=50 bench/instructions.sh [PORTCULLIS_BIN...]
#   ROUTES="plain jwt limit both" bench/instructions.sh [PORTCULLIS_BIN...]
#   OBSERVE="off logs trace" bench/instructions.sh [PORTCULLIS_BIN...]
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
# OBSERVE picks what the gateway records, for each route kind (default:
# off; e.g. OBSERVE="off logs trace"):
#   off    nothing configured: no admin API, access log or span export;
#   logs   an ECS access log to a file in the work dir (buffer 8192) and the
#          admin API on a free loopback port, so request metrics are
#          recorded ("logs + metrics");
#   trace  logs + metrics + `tracing.otlp` with `sample: $TRACE_SAMPLE`
#          (0.1 by default) to bench/otlp_sink.py on a free loopback port;
#   metrics, accesslog  one of the two parts of `logs` alone (the admin
#          API only; the access log only), to tell their costs apart.
# Callgrind counts every thread of the process (the access-log writer, the
# span exporter's task) in one dump. Before each count the script waits
# SETTLE seconds (default 1.5; the exporter batches spans for up to 1 s),
# then zeroes the counters, sends the N requests, waits SETTLE again and
# dumps: the window holds the writing of exactly the counted requests' log
# lines and spans. After the dump it checks that the log file has one line
# per request sent, that /metrics on the admin port counts them, and that
# the sink received spans (about TRACE_SAMPLE of the requests); the line
# printed for `trace` gives the spans exported inside the window. `off`
# and `metrics` are deterministic; with the access log the figure moves by
# about +-500 instructions between runs (where the writer's 20 ms
# collections fall among the requests; before 237199c each one made a
# thread's log buffer regrow), and `trace` also with the number of requests sampled (random).
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
OBSERVE=${OBSERVE:-off}
TRACE_SAMPLE=${TRACE_SAMPLE:-0.1}
SETTLE=${SETTLE:-1.5}
for mode in $OBSERVE; do
    case $mode in off | logs | trace | metrics | accesslog) ;; *) echo "instructions.sh: unknown OBSERVE mode '$mode' (want off, logs, trace, metrics, accesslog)" >&2; exit 1 ;; esac
done
BINS=("$@")
((${#BINS[@]})) || BINS=("$BENCH_DIR/../target/dist/portcullis")

source "$BENCH_DIR/lib.sh"
tools=(valgrind nginx python3 curl)
((CONNS <= 1)) || tools+=(wrk)
need_tools "${tools[@]}"

bench_start
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
# NGINX_LOG=1: NGINX is also counted with a JSON access log, a reference for
# what the gateway's ECS line costs (a log_format of about the same fields,
# `escape=json`, written through a 64 KiB buffer flushed each second).
if [[ ${NGINX_LOG:-} == 1 ]]; then
    cat > "$WORK/proxy-log.conf" <<EOF
${common//PID/proxy-log.pid}
http { keepalive_requests 1000000; $temps
  log_format ecs escape=json '{"@timestamp":"\$time_iso8601","event":{"duration":\$request_time},'
    '"http":{"version":"\$server_protocol","request":{"id":"\$request_id","method":"\$request_method","body":{"bytes":\$request_length},"referrer":"\$http_referer"},'
    '"response":{"status_code":\$status,"body":{"bytes":\$body_bytes_sent}}},"url":{"path":"\$uri","query":"\$args"},'
    '"client":{"ip":"\$remote_addr"},"source":{"ip":"\$realip_remote_addr"},"user_agent":{"original":"\$http_user_agent"},'
    '"upstream":{"target":"\$upstream_addr","duration":"\$upstream_response_time","status":"\$upstream_status"}}';
  access_log $WORK/nginx-access.log ecs buffer=64k flush=1s;
  upstream u { server 127.0.0.1:$UP_PORT; keepalive 64; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$PROXY_PORT; location / { proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
EOF
fi
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
cat > "$WORK/gw-base.yaml" <<EOF
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

# The OTLP sink, when a mode exports spans (not counted: its own process).
SINK_PORT=""
if [[ " $OBSERVE " == *" trace "* ]]; then
    SINK_PORT=$(free_port)
    python3 "$BENCH_DIR/otlp_sink.py" "$SINK_PORT" >/dev/null 2>"$WORK/sink.log" &
    PIDS+=($!)
    for _ in $(seq 50); do
        curl -sf "http://127.0.0.1:$SINK_PORT/count" >/dev/null 2>&1 && break
        sleep 0.1
    done
    curl -sf "http://127.0.0.1:$SINK_PORT/count" >/dev/null || { echo "instructions.sh: the OTLP sink did not start" >&2; exit 1; }
fi
sink_spans() { curl -sf "http://127.0.0.1:$SINK_PORT/count" | python3 -c 'import json,sys; print(json.load(sys.stdin)["spans"])'; }

# gw_config MODE: writes the gateway's config for an OBSERVE mode to
# $WORK/gw.yaml (a fresh admin port and an empty access log each time);
# sets OBS, ADMIN_PORT and ACCESS_LOG (empty when the mode has none).
OBS=off
ADMIN_PORT=""
ACCESS_LOG=""
SINK_BASE=0
gw_config() {
    OBS=$1
    ADMIN_PORT=""
    ACCESS_LOG=""
    cp "$WORK/gw-base.yaml" "$WORK/gw.yaml"
    if [[ $OBS == logs || $OBS == trace || $OBS == metrics ]]; then
        ADMIN_PORT=$(free_port)
        echo "admin: { bind: \"127.0.0.1:$ADMIN_PORT\" }" >> "$WORK/gw.yaml"
    fi
    if [[ $OBS == logs || $OBS == trace || $OBS == accesslog ]]; then
        ACCESS_LOG=$WORK/access-$OBS.log
        rm -f "$ACCESS_LOG"
        echo "access_log: { to: \"$ACCESS_LOG\", format: ecs, buffer: 8192 }" >> "$WORK/gw.yaml"
    fi
    if [[ $OBS == trace ]]; then
        SINK_BASE=$(sink_spans)
        echo "tracing: { otlp: { endpoint: \"http://127.0.0.1:$SINK_PORT\", sample: $TRACE_SAMPLE } }" >> "$WORK/gw.yaml"
    fi
}

# check_observe SENT COUNTED: after the dump, that the gateway really
# recorded what OBS says: one log line per request SENT (warm-up included;
# with CONNS > 1 at least the COUNTED ones), /metrics on the admin port
# counting the same, spans at the sink. Sets NOTE for the figure's line.
NOTE=""
WINDOW_SPANS=0
check_observe() {
    local sent=$1 counted=$2 lines="" metric="" spans want=$2
    ((CONNS > 1)) || want=$1
    NOTE="  ["
    if [[ -n $ACCESS_LOG ]]; then
        lines=$(wc -l < "$ACCESS_LOG")
        python3 -c '
import json, sys
line = open(sys.argv[1]).readline()
r = json.loads(line)
assert "@timestamp" in r and "200" in line, line' "$ACCESS_LOG" || return 1
        # One connection: exactly one line per request sent; with wrk, at
        # least one per counted request.
        if ((CONNS <= 1 && lines != sent)) || ((lines < want)); then
            echo "instructions.sh: $OBS: expected $want log lines, got $lines" >&2
            return 1
        fi
        NOTE+="log lines $lines"
    fi
    if [[ -n $ADMIN_PORT ]]; then
        metric=$(curl -sf "http://127.0.0.1:$ADMIN_PORT/metrics" |
            awk '/^http_server_request_duration_seconds_count/ {s += $NF} END {print s + 0}')
        if ((CONNS <= 1 && metric != sent)) || ((metric < want)) || [[ -n $lines && $lines != "$metric" ]]; then
            echo "instructions.sh: $OBS: expected $want requests in /metrics (and as many as log lines, ${lines:-none}), got $metric" >&2
            return 1
        fi
        NOTE+="${lines:+, }/metrics requests $metric"
    fi
    if [[ $OBS == trace ]]; then
        spans=$(($(sink_spans) - SINK_BASE))
        if ((spans == 0)); then
            echo "instructions.sh: trace: the OTLP sink received no spans" >&2
            return 1
        fi
        NOTE+=", spans at the sink $spans, $WINDOW_SPANS of them exported in the counted window"
    fi
    NOTE+="]"
}

nginx -p "$WORK/" -c "$WORK/up.conf" -e "$WORK/error.log" >/dev/null 2>&1 &
PIDS+=($!)

# count NAME CMD...: runs CMD under callgrind, drives it, prints the figure.
count() {
    local name=$1
    shift
    start_callgrind "$@"
    local vg=$VG
    local requests=$N
    WINDOW_SPANS=0
    NOTE=""
    if ((CONNS > 1)); then
        requests=$(drive_wrk "$vg")
    else
        drive_one "$vg"
    fi
    [[ ! -s $WORK/window_spans ]] || WINDOW_SPANS=$(cat "$WORK/window_spans")
    rm -f "$WORK/window_spans"
    if [[ $OBS != off ]] && ! check_observe $((WARMUP + N)) "$requests"; then
        kill "$vg" 2>/dev/null || true
        exit 1
    fi
    kill "$vg" 2>/dev/null || true
    wait "$vg" 2>/dev/null || true
    local dump total
    dump=$(ls -t "$WORK"/cg.out.* | head -1)
    total=$(grep -E '^(summary|totals):' "$dump" | head -1 | awk '{print $2}')
    printf '%-40s %8d instructions/request%s\n' "$name" $((total / requests)) "$NOTE"
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
    # With observers on, let the log writer and the span exporter catch up
    # on both sides of the window (see SETTLE above).
    local s0=0
    if [[ $OBS != off ]]; then sleep "$SETTLE"; fi
    if [[ $OBS == trace ]]; then s0=$(sink_spans); fi
    callgrind_control -z "$vg" >/dev/null 2>&1
    out=$(wrk -t1 -c"$CONNS" -d"${COUNT_SECONDS}s" "${header[@]}" "$url")
    if [[ $OBS != off ]]; then sleep "$SETTLE"; fi
    callgrind_control -d "$vg" >/dev/null 2>&1
    if [[ $OBS == trace ]]; then echo $(($(sink_spans) - s0)) > "$WORK/window_spans"; fi
    echo "$out" | awk '/requests in/ {print $1}'
}

# drive_one PID: WARMUP then N requests, one at a time on one connection.
drive_one() {
    local settle=0
    [[ $OBS == off ]] || settle=$SETTLE
    {
        printf 'GET %s HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\nAccept: */*\r\n' "$ROUTE_PATH"
        [[ -z $ROUTE_AUTH ]] || printf 'Authorization: %s\r\n' "$ROUTE_AUTH"
        printf '\r\n'
    } > "$WORK/request"
    python3 "$BENCH_DIR/drive_one.py" "$PROXY_PORT" "$1" "$N" "$WARMUP" "$WORK/request" "$settle" "$SINK_PORT" "$WORK/window_spans"
}

obs_name() { case $1 in off) echo "" ;; logs) echo "+logs+metrics" ;; trace) echo "+logs+metrics+trace$TRACE_SAMPLE" ;; metrics) echo "+metrics" ;; accesslog) echo "+accesslog" ;; esac; }
count "nginx $(nginx -v 2>&1 | sed 's/.*\///')" nginx -p "$WORK/" -c "$WORK/proxy.conf" -e "$WORK/error.log"
if [[ ${NGINX_LOG:-} == 1 ]]; then
    count "nginx $(nginx -v 2>&1 | sed 's/.*\///') +access log (JSON)" nginx -p "$WORK/" -c "$WORK/proxy-log.conf" -e "$WORK/error.log"
    echo "  (nginx wrote $(wc -l < "$WORK/nginx-access.log") log lines; the first: $(head -c 400 "$WORK/nginx-access.log"))"
fi
for route in $ROUTES; do
    ROUTE_PATH=$(path_of "$route")
    ROUTE_AUTH=$(auth_of "$route")
    for mode in $OBSERVE; do
        for bin in "${BINS[@]}"; do
            gw_config "$mode"
            PORTCULLIS_WORKER_THREADS=1 count "portcullis $route$(obs_name "$mode") ($bin)" "$bin" run --config "$WORK/gw.yaml"
        done
    done
done

#!/usr/bin/env bash
# Portcullis benchmark: CPU per request and hop latency of Portcullis against
# NGINX as reverse proxies in front of the same fast upstream, over plain HTTP
# and over TLS, plus their memory (idle RSS, bytes per idle keep-alive
# connection), measured the way shared/BENCHMARKING.md says is honest on a
# small shared 2-core host:
#   - proxy pinned to one core, wrk + upstream pinned to the other;
#   - CPU per request from /proc/PID/stat (utime+stime) over requests done,
#     also divided by the upstream's CPU per request in the same window (the
#     steadiest figure, as it cancels out the host's speed swings);
#   - cases interleaved within each round, medians with min-max over rounds,
#     ratios taken per round before the median.
# See bench/README.md for the knobs and how to read the output.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CASES=${CASES:-direct nginx portcullis portcullis-tls nginx-tls}
LOADS=${LOADS:-c50 c1}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
RESULTS_DIR=${RESULTS_DIR:-$BENCH_DIR/results}
KEEP_TMP=${KEEP_TMP:-0}
# Idle keep-alive connections opened per proxy for the memory figure (0: skip).
IDLE_CONNS=${IDLE_CONNS:-1000}

die() { echo "run.sh: $*" >&2; exit 1; }
log() { echo "==> $*" >&2; }

read -ra CASE_LIST <<< "$CASES"
read -ra LOAD_LIST <<< "$LOADS"
((${#CASE_LIST[@]})) || die "CASES is empty"
# The Portcullis route kinds, besides the plain proxy (`portcullis`): what a
# case's name puts on its one route. `-jwt`: authenticate (one RS256 token,
# cached) and authorize (a scope); `-limit`: one per-IP rate limit that the
# benchmark never reaches; `-tls`: a TLS listener.
# `-obs`: observability on (an ECS access log to a file, and the admin API,
# so request metrics are recorded); `-obs-trace`: that plus OTLP span export
# at TRACE_SAMPLE (10%) to bench/otlp_sink.py.
ALL_CASES="direct nginx portcullis portcullis-tls nginx-tls portcullis-jwt portcullis-limit portcullis-jwt-limit portcullis-jwt-limit-tls portcullis-obs portcullis-obs-trace"
for c in "${CASE_LIST[@]}"; do
    [[ " $ALL_CASES " == *" $c "* ]] || die "unknown case '$c' (want some of: $ALL_CASES)"
done
[[ -z $(printf '%s\n' "${CASE_LIST[@]}" | sort | uniq -d) ]] || die "CASES lists a case twice"
for l in "${LOAD_LIST[@]}"; do
    # The report knows how to read exactly these two loads (saturation and hop latency).
    [[ $l == c50 || $l == c1 ]] || die "unknown load '$l' (want c50, c1)"
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[[ $IDLE_CONNS =~ ^[0-9]+$ ]] || die "IDLE_CONNS must be a non-negative integer"
has_case() { [[ " ${CASE_LIST[*]} " == *" $1 "* ]]; }
is_tls() { [[ $1 == *-tls ]]; }
has_jwt() { [[ $1 == portcullis-jwt* ]]; }
has_limit() { [[ $1 == portcullis-*limit* ]]; }
has_obs() { [[ $1 == portcullis-obs* ]]; }
has_trace() { [[ $1 == portcullis-obs-trace ]]; }
TRACE_SAMPLE=${TRACE_SAMPLE:-0.1}
NEED_PORTCULLIS=0; NEED_TLS=0; NEED_JWT=0; NEED_SINK=0
for c in "${CASE_LIST[@]}"; do
    if [[ $c == portcullis* ]]; then NEED_PORTCULLIS=1; fi
    if has_trace "$c"; then NEED_SINK=1; fi
    if is_tls "$c"; then NEED_TLS=1; fi
    if has_jwt "$c"; then NEED_JWT=1; fi
done

# ---------------------------------------------------------------- tools

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || missing+=(nginx-light)
command -v taskset >/dev/null || missing+=(util-linux)
command -v curl >/dev/null || missing+=(curl)
command -v python3 >/dev/null || missing+=(python3)
((NEED_TLS || NEED_JWT)) && { command -v openssl >/dev/null || missing+=(openssl); }
if ((${#missing[@]})); then
    [[ $EUID -eq 0 ]] || die "missing ${missing[*]}: run as root so they can be installed"
    log "installing ${missing[*]}"
    apt-get update
    # nginx-light is the smallest NGINX that has everything used here; newer
    # Debian releases dropped it, so fall back to plain nginx.
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"; then
        missing=("${missing[@]/nginx-light/nginx}")
        DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
    fi
fi

# Read before the harness pins itself to one core, after which nproc says 1.
NPROC=$(nproc)
((NPROC >= 2)) || die "needs 2 cores (proxy on one, load generator + upstream on the other); nproc=$NPROC"
[[ $PROXY_CPU != "$LOAD_CPU" ]] || die "PROXY_CPU and LOAD_CPU must differ"

# The memory figure holds IDLE_CONNS connections open at once: the client and
# the proxy each need a descriptor per connection, and NGINX's
# worker_connections (4096) caps what one worker can hold.
((IDLE_CONNS <= 3500)) || die "IDLE_CONNS must be at most 3500 (NGINX worker_connections is 4096)"
want_fds=$((IDLE_CONNS + 1024)); ((want_fds >= 8192)) || want_fds=8192
if (($(ulimit -n) < want_fds)); then
    hard_fds=$(ulimit -Hn)
    [[ $hard_fds == unlimited ]] || ((hard_fds >= want_fds)) || want_fds=$hard_fds
    ulimit -n "$want_fds" || true
fi
(($(ulimit -n) >= IDLE_CONNS + 200)) || die "open files limit $(ulimit -n) is too low for IDLE_CONNS=$IDLE_CONNS (raise ulimit -n)"

if ((NEED_PORTCULLIS)); then
    if [[ -n ${PORTCULLIS_BIN:-} ]]; then
        [[ -x $PORTCULLIS_BIN ]] || die "PORTCULLIS_BIN=$PORTCULLIS_BIN is not an executable"
    else
        log "building portcullis (profile dist)"
        (cd "$ROOT" && cargo build --profile dist --bin portcullis)
        PORTCULLIS_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/dist/portcullis
    fi
fi

# From here on, everything the harness itself runs (curl, python, date, ...)
# stays off the proxy's core. Servers are re-pinned explicitly below.
taskset -cp "$LOAD_CPU" $$ >/dev/null

CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------- processes

TMP=$(mktemp -d -t portcullis-bench.XXXXXX)
SERVER_PIDS=()   # the processes we started (nginx masters, portcullis)
WORKER_PIDS=()   # nginx workers: grandchildren, killed by pid if their master is gone
WRK_PID=


cleanup() {
    local rc=$? pid i f
    set +e
    trap - EXIT INT TERM
    [[ -n $WRK_PID ]] && kill "$WRK_PID" 2>/dev/null
    for pid in "${SERVER_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${SERVER_PIDS[@]}"; do
        for i in {1..50}; do alive "$pid" || break; sleep 0.1; done
        alive "$pid" && kill -KILL "$pid" 2>/dev/null
    done
    for pid in "${WORKER_PIDS[@]}"; do
        # Only if the pid still belongs to an nginx: it may have been reused.
        [[ $(cat "/proc/$pid/comm" 2>/dev/null) == nginx ]] && kill -KILL "$pid" 2>/dev/null
    done
    wait 2>/dev/null
    if ((rc != 0)); then
        for f in "$TMP"/*/error.log "$TMP"/*/stdout.log "$TMP"/*/portcullis.log; do
            [[ -s $f ]] || continue
            echo "--- tail of ${f#"$TMP"/}" >&2
            tail -n 20 "$f" >&2
        done
    fi
    if [[ $KEEP_TMP == 1 ]]; then echo "run.sh: kept $TMP" >&2; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Run a private copy, described now: a build may replace the file during the
# run, and the report must say what was measured.
pc_desc="not measured"
if ((NEED_PORTCULLIS)); then
    private_copy "$PORTCULLIS_BIN" "$TMP"
    pc_desc=$PRIVATE_DESC
    PORTCULLIS_BIN=$PRIVATE_BIN
fi

# Sum of utime+stime (fields 14 and 15) in clock ticks into TICKS. Builtins
# only: no fork inside the measured window. The comm field (2) may hold
# spaces, so split after its closing parenthesis, where field 3 is index 0.
cpu_ticks() {
    local total=0 pid line f
    for pid in "$@"; do
        read -r line < "/proc/$pid/stat" || return 1
        read -ra f <<< "${line##*) }"
        total=$((total + f[11] + f[12]))
    done
    TICKS=$total
}

# The processes that serve, out of a tree_pids list: for NGINX the worker, not
# the master (which shares most pages with it and serves nothing).
serving_pids() {
    local pids=("$@")
    ((${#pids[@]} > 1)) && pids=("${pids[@]:1}")
    printf '%s\n' "${pids[@]}"
}

# status_kb FIELD PID...: a /proc/PID/status figure in KiB, summed over the
# serving processes of a tree_pids list. VmHWM: peak RSS; VmRSS: current RSS.
status_kb() {
    local field=$1 pid sum=0 v
    shift
    for pid in $(serving_pids "$@"); do
        v=$(awk -v f="$field:" '$1 == f {print $2}' "/proc/$pid/status")
        sum=$((sum + v))
    done
    echo "$sum"
}

# When run as root NGINX workers would switch to "nobody", which cannot enter
# our 0700 temp dir (where its temp files live); keep them as root instead.
USER_DIRECTIVE=""
[[ $EUID -eq 0 ]] && USER_DIRECTIVE="user root;"

# start_nginx NAME CPU TEMPLATE URL [PLACEHOLDER=value...] -> sets STARTED_PID
# (the master)
start_nginx() {
    local name=$1 cpu=$2 tpl=$3 url=$4 dir=$TMP/$1 w
    shift 4
    mkdir -p "$dir"
    render "$tpl" "$dir/nginx.conf" DIR="$dir" USER_DIRECTIVE="$USER_DIRECTIVE" "$@"
    # -p/-e keep NGINX off the system prefix and log, so this is a separate
    # instance that leaves any system NGINX alone.
    nginx -t -q -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log" || die "bad nginx config for $name"
    taskset -c "$cpu" nginx -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log" > "$dir/stdout.log" 2>&1 &
    STARTED_PID=$!
    SERVER_PIDS+=("$STARTED_PID")
    wait_ok "$url" "$STARTED_PID" "nginx ($name)"
    for w in $(children "$STARTED_PID"); do WORKER_PIDS+=("$w"); done
    [[ $(children "$STARTED_PID" | wc -w) == 1 ]] || die "nginx ($name) should have exactly one worker"
}

# start_portcullis NAME PORT TLS_YAML [AUTH_YAML ROUTE_YAML [curl args...]]
# -> sets STARTED_PID. One process per case, so that each case's CPU, peak
# RSS and memory are its own. ROUTE_YAML is the route's policy keys, one per
# line (it fills @ROUTE_AUTH@). The curl args are what the start-up check
# needs to get through (the JWT cases' Authorization header).
start_portcullis() {
    local name=$1 port=$2 tls=$3 auth=${4:-} route_auth=${5:-} dir=$TMP/$1 scheme=http
    shift 3; (($# < 2)) || shift 2
    [[ -z $tls ]] || scheme=https
    mkdir -p "$dir"
    render "$BENCH_DIR/portcullis.yaml" "$dir/portcullis.yaml" \
        NAME="$name" PORT="$port" UPSTREAM_PORT="$UPSTREAM_PORT" TLS="$tls" \
        AUTH="$auth" ROUTE_AUTH="$route_auth" OBSERVE="$OBSERVE_YAML"
    "$PORTCULLIS_BIN" check --config "$dir/portcullis.yaml" > "$dir/check.log" 2>&1 ||
        { cat "$dir/check.log" >&2; die "bad portcullis config for $name"; }
    # One worker thread, like NGINX's one worker process.
    PORTCULLIS_WORKER_THREADS=1 taskset -c "$PROXY_CPU" \
        "$PORTCULLIS_BIN" run --config "$dir/portcullis.yaml" > "$dir/portcullis.log" 2>&1 &
    STARTED_PID=$!
    SERVER_PIDS+=("$STARTED_PID")
    wait_ok "$scheme://127.0.0.1:$port/" "$STARTED_PID" "portcullis ($name)" "$@"
}

# What wrk's OpenSSL negotiates with a TLS case (s_client uses the same
# library defaults): protocol, cipher and key exchange group.
tls_params() {
    timeout 5 openssl s_client -connect "127.0.0.1:$1" < /dev/null 2> /dev/null |
        awk '/^New, / {sub(/^New, /, ""); sub(/, Cipher is /, " "); p = $0}
             /^(Server Temp Key|Negotiated TLS1.3 group):/ {sub(/^[^:]*: /, ""); k = $0}
             END {print p (k != "" ? ", key exchange " k : "")}'
}

# start_proxy CASE NAME PORT -> sets STARTED_PID: the proxy of a case (not
# direct), its files in $TMP/NAME.
start_proxy() {
    local c=$1 name=$2 port=$3 scheme=http listen_opts="" tls_certs="" tls_yaml=""
    if is_tls "$c"; then
        scheme=https
        # NGINX 1.22 enables only up to TLSv1.2 by default (1.23.4 added
        # TLSv1.3); ask for what newer NGINX and Portcullis do, so both run
        # TLSv1.3 with the same cipher. Nothing else about TLS is tuned.
        listen_opts="ssl"
        tls_certs="ssl_certificate $TMP/tls/cert.pem; ssl_certificate_key $TMP/tls/key.pem; ssl_protocols TLSv1.2 TLSv1.3;"
        tls_yaml="    tls: { certificates: [ { cert: $TMP/tls/cert.pem, key: $TMP/tls/key.pem } ], hsts: { enabled: false } }"
    fi
    case $c in
    nginx | nginx-tls)
        log "starting $name: nginx proxy on $scheme://127.0.0.1:$port/ (core $PROXY_CPU)"
        start_nginx "$name" "$PROXY_CPU" "$BENCH_DIR/nginx-proxy.conf" "$scheme://127.0.0.1:$port/" \
            PORT="$port" UPSTREAM_PORT="$UPSTREAM_PORT" LISTEN_OPTS="$listen_opts" TLS_CERTS="$tls_certs"
        ;;
    portcullis*)
        # The route's policies, from the case's name (see ALL_CASES).
        local auth="" route="" what="" creds=()
        if has_jwt "$c"; then
            auth="auth: { bench-jwt: { jwt: { algorithms: [RS256], issuer: bench, public_key_file: $TMP/jwt/pub.pem } } }"
            route+="    authenticate: [bench-jwt]"$'\n'"    authorize: { scopes: [ $JWT_SCOPE ] }"$'\n'
            what+=", route requires an RS256 JWT with scope $JWT_SCOPE"
            creds=(-H "Authorization: Bearer $JWT_TOKEN")
        fi
        if has_limit "$c"; then
            route+="    rate_limit: [ { key: ip, rate: $LIMIT_RATE, burst: $LIMIT_BURST } ]"$'\n'
            what+=", per-IP rate limit $LIMIT_RATE (burst $LIMIT_BURST)"
        fi
        # Observability (see ALL_CASES): the access log in the case's dir
        # (truncated after each measured run), the admin API on a port of its own.
        OBSERVE_YAML=""
        if has_obs "$c"; then
            ADMIN_PORT[$name]=$(free_port)
            OBSERVE_YAML="admin: { bind: \"127.0.0.1:${ADMIN_PORT[$name]}\" }"$'\n'"access_log: { to: \"$TMP/$name/access.log\", format: ecs, buffer: 8192 }"
            what+=", ECS access log to a file, admin API (metrics) on 127.0.0.1:${ADMIN_PORT[$name]}"
            if has_trace "$c"; then
                OBSERVE_YAML+=$'\n'"tracing: { otlp: { endpoint: \"http://127.0.0.1:$SINK_PORT\", sample: $TRACE_SAMPLE } }"
                what+=", OTLP span export at $TRACE_SAMPLE to 127.0.0.1:$SINK_PORT"
            fi
        fi
        log "starting $name: portcullis on $scheme://127.0.0.1:$port/ (core $PROXY_CPU, 1 worker thread)$what"
        start_portcullis "$name" "$port" "$tls_yaml" "$auth" "${route%$'\n'}" "${creds[@]}"
        check_policies "$c" "$name" "$scheme://127.0.0.1:$port/"
        check_observe "$c" "$name" "$scheme://127.0.0.1:$port/"
        ;;
    *) die "start_proxy: no proxy for case $c" ;;
    esac
}

# stop_server PID: a server started above (and its NGINX worker), TERM, then
# KILL after 5 s; then forget them, so that cleanup() never signals a pid
# that has since been reused.
stop_server() {
    local pid=$1 i w workers keep=()
    workers=$(echo $(children "$pid"))
    kill -TERM "$pid" 2>/dev/null || true
    for i in {1..50}; do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
    wait "$pid" 2>/dev/null || true
    for w in $workers; do
        for i in {1..50}; do alive "$w" || break; sleep 0.1; done
        if alive "$w"; then return 0; fi   # cleanup() will deal with it
    done
    for i in "${SERVER_PIDS[@]}"; do [[ $i == "$pid" ]] || keep+=("$i"); done
    SERVER_PIDS=("${keep[@]}")
    keep=()
    for i in "${WORKER_PIDS[@]}"; do [[ " $workers " == *" $i "* ]] || keep+=("$i"); done
    WORKER_PIDS=("${keep[@]}")
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Free loopback ports, one per case (direct's is the upstream's), held open
# together so they differ.
read -ra ALL_LIST <<< "$ALL_CASES"
read -ra FREE_PORTS < <(python3 -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in ss))' "${#ALL_LIST[@]}")
((${#FREE_PORTS[@]} == ${#ALL_LIST[@]})) || die "could not find free ports"

declare -A URL PORT PROXY_PID TLS_PARAMS ADMIN_PORT
for i in "${!ALL_LIST[@]}"; do PORT[${ALL_LIST[i]}]=${FREE_PORTS[i]}; done
UPSTREAM_PORT=${PORT[direct]}
for c in "${!PORT[@]}"; do
    if is_tls "$c"; then URL[$c]=https://127.0.0.1:${PORT[$c]}/; else URL[$c]=http://127.0.0.1:${PORT[$c]}/; fi
done

log "starting upstream nginx on 127.0.0.1:$UPSTREAM_PORT (core $LOAD_CPU)"
start_nginx upstream "$LOAD_CPU" "$BENCH_DIR/nginx-upstream.conf" "${URL[direct]}" PORT="$UPSTREAM_PORT"
UPSTREAM_PID=$STARTED_PID

# The OTLP/HTTP sink of the `-obs-trace` case (bench/otlp_sink.py: answers
# 200 to POST /v1/traces and counts the spans), beside the upstream on the
# load core; its CPU is not the proxy's.
SINK_PORT=""
if ((NEED_SINK)); then
    SINK_PORT=$(free_port)
    log "starting the OTLP sink on 127.0.0.1:$SINK_PORT (core $LOAD_CPU)"
    mkdir -p "$TMP/otlp-sink"
    taskset -c "$LOAD_CPU" python3 "$BENCH_DIR/otlp_sink.py" "$SINK_PORT" > "$TMP/otlp-sink/stdout.log" 2>&1 &
    SERVER_PIDS+=($!)
    for i in {1..50}; do curl -sf "http://127.0.0.1:$SINK_PORT/count" > /dev/null 2>&1 && break; sleep 0.1; done
    curl -sf "http://127.0.0.1:$SINK_PORT/count" > /dev/null || die "the OTLP sink did not start"
fi
sink_spans() { curl -sf --max-time 2 "http://127.0.0.1:$SINK_PORT/count" | python3 -c 'import json, sys; print(json.load(sys.stdin)["spans"])'; }

# A throwaway ECDSA P-256 certificate, the same for both TLS servers so that
# they do the same crypto.
if ((NEED_TLS)); then
    mkdir -p "$TMP/tls"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -days 1 \
        -keyout "$TMP/tls/key.pem" -out "$TMP/tls/cert.pem" > "$TMP/tls/openssl.log" 2>&1 ||
        { cat "$TMP/tls/openssl.log" >&2; die "could not make the TLS certificate"; }
fi

# The JWT cases: a throwaway RSA 2048 key pair and ONE RS256 token with the
# scope the route requires, signed with openssl, that every request of the
# case sends. The gateway caches a verified token (SHA-256 of the token ->
# identity, until exp, at most an hour), so one hot token measures the cached
# path; the scope check runs on every request. A second token, the same but
# for its scope, is only for the start-up check (403).
JWT_SCOPE=bench:read
JWT_TOKEN=""
JWT_TOKEN_OTHER_SCOPE=""
if ((NEED_JWT)); then
    mkdir -p "$TMP/jwt"
    { openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$TMP/jwt/key.pem" &&
      openssl pkey -in "$TMP/jwt/key.pem" -pubout -out "$TMP/jwt/pub.pem"; } > "$TMP/jwt/openssl.log" 2>&1 ||
        { cat "$TMP/jwt/openssl.log" >&2; die "could not make the JWT key pair"; }
    { read -r JWT_TOKEN && read -r JWT_TOKEN_OTHER_SCOPE; } < <(python3 - "$TMP/jwt/key.pem" "$JWT_SCOPE" bench:other <<'PY'
import base64, json, subprocess, sys, time
def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
def part(obj):
    return b64url(json.dumps(obj, separators=(",", ":")).encode())
for scope in sys.argv[2:]:
    signing_input = part({"alg": "RS256", "typ": "JWT"}) + "." + part(
        {"sub": "bench", "exp": int(time.time()) + 86400, "iss": "bench", "scope": scope})
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", sys.argv[1]],
                         input=signing_input.encode(), capture_output=True, check=True).stdout
    print(signing_input + "." + b64url(sig))
PY
) || die "could not mint the JWTs"
    for t in "$JWT_TOKEN" "$JWT_TOKEN_OTHER_SCOPE"; do
        [[ $t =~ ^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$ ]] || die "a minted JWT is malformed"
    done
fi

# The limited cases: one per-IP rate limit far above what wrk can send here
# (~100k req/s at most), so it is checked on every request and never refuses.
LIMIT_RATE=1000000/s
LIMIT_BURST=1000000

# check_policies CASE NAME URL: a Portcullis case really does what its name
# says, so that the measured runs go through its policies (wrk counts non-2xx
# answers, and the report shows them as errors, but a route that skipped a
# policy would answer 200 and just look cheap). A JWT case answers 200 with
# the token, 401 without it and 403 with a token that lacks the scope; a
# limited case's answers carry the RateLimit headers.
check_policies() {
    local c=$1 name=$2 url=$3 with without other head creds=()
    if has_jwt "$c"; then
        creds=(-H "Authorization: Bearer $JWT_TOKEN")
        with=$(curl -sk -o /dev/null -w '%{http_code}' --max-time 2 "${creds[@]}" "$url")
        without=$(curl -sk -o /dev/null -w '%{http_code}' --max-time 2 "$url")
        other=$(curl -sk -o /dev/null -w '%{http_code}' --max-time 2 -H "Authorization: Bearer $JWT_TOKEN_OTHER_SCOPE" "$url")
        [[ $with == 200 && $without == 401 && $other == 403 ]] ||
            die "$name: expected 200 with the token, 401 without, 403 with another scope; got $with, $without, $other"
        log "$name: 200 with the token, 401 without, 403 with a token lacking scope $JWT_SCOPE"
    fi
    if has_limit "$c"; then
        head=$(curl -sk -o /dev/null -D - --max-time 2 "${creds[@]}" "$url" | tr -d '\r')
        grep -qi '^ratelimit-policy: ' <<< "$head" && grep -qi '^ratelimit: ' <<< "$head" ||
            die "$name: no RateLimit / RateLimit-Policy headers in the answer:"$'\n'"$head"
        log "$name: $(grep -i '^ratelimit-policy: ' <<< "$head"), $(grep -i '^ratelimit: ' <<< "$head")"
    fi
}

# check_observe CASE NAME URL: an `-obs` case really records: 20 requests
# add 20 lines to its access log (ECS JSON) and are counted in /metrics on
# its admin port; for `-obs-trace`, 200 requests bring spans to the sink
# (about TRACE_SAMPLE of them: the exporter sends a batch within 1 s).
check_observe() {
    local c=$1 name=$2 url=$3 file=$TMP/$2/access.log l0 l1 m s0 s1 i urls=()
    has_obs "$c" || return 0
    sleep 0.2  # the access log is written every 20 ms: let earlier requests' lines land before counting
    l0=$(cat "$file" 2> /dev/null | wc -l)
    for i in {1..20}; do urls+=("$url"); done
    curl -sk --max-time 5 "${urls[@]}" > /dev/null
    for i in {1..30}; do
        l1=$(wc -l < "$file")
        ((l1 >= l0 + 20)) && break
        sleep 0.1
    done
    ((l1 == l0 + 20)) || die "$name: 20 requests added $((l1 - l0)) lines to its access log"
    tail -n 1 "$file" | python3 -c 'import json, sys; r = json.loads(sys.stdin.read()); assert "@timestamp" in r' ||
        die "$name: the access log's last line is not ECS JSON"
    m=$(curl -sf --max-time 2 "http://127.0.0.1:${ADMIN_PORT[$name]}/metrics" |
        awk '/^http_server_request_duration_seconds_count/ {s += $NF} END {print s + 0}')
    ((m >= l1)) || die "$name: /metrics counts $m requests, the access log has $l1 lines"
    log "$name: 20 requests -> 20 access log lines (ECS); /metrics counts $m requests"
    if has_trace "$c"; then
        s0=$(sink_spans)
        urls=()
        for i in {1..200}; do urls+=("$url"); done
        curl -sk --max-time 10 "${urls[@]}" > /dev/null
        for i in {1..30}; do
            s1=$(sink_spans)
            ((s1 > s0)) && break
            sleep 0.1
        done
        ((s1 > s0)) || die "$name: 200 requests brought no spans to the OTLP sink"
        sleep 1.2
        s1=$(sink_spans)
        log "$name: 200 requests -> $((s1 - s0)) spans at the OTLP sink (sample $TRACE_SAMPLE)"
    fi
}

for c in "${CASE_LIST[@]}"; do
    [[ $c != direct ]] || continue
    start_proxy "$c" "$c" "${PORT[$c]}"
    PROXY_PID[$c]=$STARTED_PID
    if is_tls "$c"; then TLS_PARAMS[$c]=$(tls_params "${PORT[$c]}"); fi
done

# ---------------------------------------------------------------- measuring

RAW=$TMP/raw.tsv

# run_wrk CONNS DURATION URL OUT [wrk args...]; in the background so that the
# EXIT trap runs at once on Ctrl-C instead of after wrk finishes.
run_wrk() {
    local conns=$1 dur=$2 url=$3 out=$4
    shift 4
    taskset -c "$LOAD_CPU" wrk -t1 -c"$conns" -d"$dur" "$@" "$url" > "$out" 2>&1 &
    WRK_PID=$!
    if ! wait "$WRK_PID"; then
        WRK_PID=
        cat "$out" >&2
        die "wrk failed against $url"
    fi
    WRK_PID=
}


# Connections the upstream has accepted so far (stub_status), read outside the
# measured window. Over a measured run it shows whether the proxy reuses its
# upstream connections (a handful at most) or opens new ones (thousands); the
# second read's own connection is subtracted.
upstream_accepts() {
    local v
    v=$(curl -s --max-time 2 "http://127.0.0.1:$UPSTREAM_PORT/bench-status" | awk 'NR == 3 {print $1}')
    [[ $v =~ ^[0-9]+$ ]] || die "no stub_status from the upstream"
    echo "$v"
}

# measure ROUND LOAD CASE: warm up, then one measured wrk run with the
# proxy's and the upstream's CPU ticks read right before and after it.
measure() {
    local round=$1 load=$2 case=$3 conns=${2#c} url=${URL[$3]}
    local out=$TMP/wrk-r$1-$2-$3.txt upids ppids=() u0 u1 p0='' p1='' t0 t1 hwm='' ptk='' a0 a1 k0 k1
    local hdr=()
    if has_jwt "$case"; then hdr=(-H "Authorization: Bearer $JWT_TOKEN"); fi
    run_wrk "$conns" "$WARMUP" "$url" "$out.warmup" "${hdr[@]}"
    a0=$(upstream_accepts)

    mapfile -t upids < <(tree_pids "$UPSTREAM_PID")
    if [[ $case != direct ]]; then
        alive "${PROXY_PID[$case]}" || die "$case is no longer running"
        mapfile -t ppids < <(tree_pids "${PROXY_PID[$case]}")
    fi

    t0=${EPOCHREALTIME/./}
    core_ticks; k0=$CORE_TICKS
    cpu_ticks "${upids[@]}"; u0=$TICKS
    if ((${#ppids[@]})); then cpu_ticks "${ppids[@]}"; p0=$TICKS; fi
    run_wrk "$conns" "$DURATION" "$url" "$out" --latency "${hdr[@]}"
    if ((${#ppids[@]})); then cpu_ticks "${ppids[@]}"; p1=$TICKS; fi
    cpu_ticks "${upids[@]}"; u1=$TICKS
    core_ticks; k1=$CORE_TICKS
    t1=${EPOCHREALTIME/./}
    a1=$(upstream_accepts)

    # A respawned worker would make the deltas meaningless.
    [[ $(tree_pids "$UPSTREAM_PID") == "$(printf '%s\n' "${upids[@]}")" ]] || die "upstream processes changed during a run"
    if ((${#ppids[@]})); then
        [[ $(tree_pids "${PROXY_PID[$case]}") == "$(printf '%s\n' "${ppids[@]}")" ]] || die "$case processes changed during a run"
        ptk=$((p1 - p0))
        hwm=$(status_kb VmHWM "${ppids[@]}")
    fi

    # The access log would grow by hundreds of MB per run: start it afresh
    # (the writer appends, so it carries on at the new end).
    if has_obs "$case"; then : > "$TMP/$case/access.log"; fi

    python3 "$BENCH_DIR/report.py" record --raw "$RAW" --wrk "$out" \
        --round "$round" --load "$load" --case "$case" --conns "$conns" \
        --proxy-ticks "$ptk" --upstream-ticks $((u1 - u0)) \
        --wall-ns $(((t1 - t0) * 1000)) --clk-tck "$CLK_TCK" --proxy-hwm-kb "$hwm" \
        --upstream-conns $((a1 - a0 - 1)) --other-core-ticks $((k1 - k0 - ${ptk:-0}))
}

BUSY_BEFORE=$(host_busy_pct)
((BUSY_BEFORE <= 10)) || log "warning: host was ${BUSY_BEFORE}% busy before starting; results will be noisy"

ncases=${#CASE_LIST[@]}
log "measuring: $ROUNDS round(s) x loads [${LOAD_LIST[*]}] x cases [${CASE_LIST[*]}], $WARMUP warm-up + $DURATION each"
for ((r = 1; r <= ROUNDS; r++)); do
    for load in "${LOAD_LIST[@]}"; do
        # Rotate which case goes first each round so none always runs right
        # after, say, the heaviest one.
        for ((i = 0; i < ncases; i++)); do
            measure "$r" "$load" "${CASE_LIST[(i + r - 1) % ncases]}"
        done
    done
done

BUSY_AFTER=$(host_busy_pct)

# ---------------------------------------------------------------- memory

# On a fresh instance of each proxy (same config, own port), started after the
# CPU runs and stopped right after: so that the figures are not flattered by
# heap the CPU runs left free, and the CPU runs' peak RSS is not inflated by
# them. The other proxies sit idle meanwhile.
MEM=$TMP/mem.tsv
if ((IDLE_CONNS > 0)); then
    printf 'case\ttls\tidle_rss_kb\trss_before_kb\trss_with_kb\trss_closed_kb\tconns\tconns_alive\n' > "$MEM"
    for c in "${CASE_LIST[@]}"; do
        [[ $c != direct ]] || continue
        port=$(free_port)
        start_proxy "$c" "$c-mem" "$port"
        mpid=$STARTED_PID
        mapfile -t spids < <(serving_pids $(tree_pids "$mpid"))
        # Idle RSS right after start-up (it has answered the one start-up check).
        idle_kb=$(status_kb VmRSS $(tree_pids "$mpid"))
        tls=0
        if is_tls "$c"; then tls=1; fi
        log "memory: $IDLE_CONNS idle keep-alive connections to $c-mem"
        hdr=()
        if has_jwt "$c"; then hdr=(--header "Authorization: Bearer $JWT_TOKEN"); fi
        line=$(python3 "$BENCH_DIR/idle_conns.py" --port "$port" --tls "$tls" --conns "$IDLE_CONNS" "${hdr[@]}" "${spids[@]}")
        printf '%s\t%s\t%s\t%s\n' "$c" "$tls" "$idle_kb" "$line" >> "$MEM"
        stop_server "$mpid"
    done
fi

# ---------------------------------------------------------------- report

nginx_version=$(nginx -v 2>&1 | sed 's/^nginx version: //')
wrk_version=$( (wrk -v 2>&1 || true) | awk 'NR == 1 {print $2}')
cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)

REPORT=$TMP/latest.md
{
    echo "# Portcullis benchmark"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), \`bench/run.sh\` with ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP CASES=\"$CASES\" LOADS=\"$LOADS\"."
    echo
    echo "## Machine"
    echo
    echo "- cores (nproc): $NPROC; CPU: $cpu_model"
    echo "- kernel: $(uname -r) ($(uname -m))"
    echo "- nginx: $nginx_version; wrk: $wrk_version"
    echo "- CLK_TCK: $CLK_TCK (CPU time is read in 1/$CLK_TCK s ticks)"
    echo "- portcullis: $pc_desc"
    echo "- pinning: proxy on core $PROXY_CPU (1 worker); wrk and upstream nginx on core $LOAD_CPU"
    echo "- host busy in the second before the run: ${BUSY_BEFORE}%, in the second after: ${BUSY_AFTER}%"
    for c in "${CASE_LIST[@]}"; do
        if is_tls "$c"; then echo "- $c: ${TLS_PARAMS[$c]:-(openssl s_client could not tell)}"; fi
    done
    echo
    mem_args=()
    ((IDLE_CONNS == 0)) || mem_args=(--mem "$MEM")
    python3 "$BENCH_DIR/report.py" table --raw "$RAW" "${mem_args[@]}"
} > "$REPORT"

mkdir -p "$RESULTS_DIR"
cp "$REPORT" "$RESULTS_DIR/latest.md"
cp "$RAW" "$RESULTS_DIR/latest-raw.tsv"
rm -f "$RESULTS_DIR/latest-mem.tsv"
((IDLE_CONNS == 0)) || cp "$MEM" "$RESULTS_DIR/latest-mem.tsv"
cat "$REPORT"
log "written to $RESULTS_DIR/latest.md (raw data: latest-raw.tsv, latest-mem.tsv)"

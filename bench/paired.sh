#!/usr/bin/env bash
# Paired Portcullis benchmark: the CPU cost per request of one gateway
# configuration (case B) against another (case A), both measured AT THE SAME
# TIME ON THE SAME CORE, so that the host's speed swings hit both alike.
#
#   PORTCULLIS_BIN=path/to/portcullis bench/paired.sh
#   PAIR="plain obs" ROUNDS=10 DURATION=10s WARMUP=2s CONNS=25 bench/paired.sh
#
# Why it exists: bench/run.sh measures its cases one after another
# (interleaved rounds). On this shared VM the CPU speed drifts by about ±10%
# between two 10-second runs, so run.sh's per-round ratios swing by ±10%
# too, and a 5% difference (say, what the access log and metrics add) is
# lost in them. Here both configurations run inside the same window, on the
# same core, so a drift moves both figures and cancels out of their ratio.
#
# Method, for each of ROUNDS rounds:
#   - start one Portcullis per case of PAIR (default "plain obs": A is the
#     plain proxy with nothing observed, B the same plus run.sh's
#     `portcullis-obs` observability: an ECS access log to a file in the
#     temp dir, buffer 8192, and the admin API on a free loopback port, so
#     request metrics are recorded), fresh processes each round, both from
#     bench/portcullis.yaml, both pinned to core PROXY_CPU with
#     PORTCULLIS_WORKER_THREADS=1, in front of the same upstream NGINX
#     (bench/nginx-upstream.conf, one worker, pinned to core LOAD_CPU, run
#     under its own -p prefix: a system NGINX is never touched). Which case
#     is started (and loaded) first alternates: A in odd rounds, B in even;
#   - load both at once for WARMUP, then run two `wrk -t1 -cCONNS` (one per
#     gateway, both on core LOAD_CPU) concurrently for DURATION, reading
#     each gateway's utime+stime (/proc/PID/stat) right before they start and
#     0.1 s after both have finished (so B's last access-log batch is in);
#   - CPU per request of each = its ticks / the requests its wrk completed;
#     the round's figure is the ratio B / A. The scheduler gives the two
#     about half the core each, so the ratio of requests completed, A / B,
#     is a second estimate of the same ratio (exact when the split is even);
#   - check that each case did what its name says, so that a broken B is
#     never reported as cheap: any non-2xx answer or socket error stops the
#     run; with an access log, it got one ECS line per request wrk completed
#     (within LOG_TOLERANCE_PCT, 3%); with the admin API, /metrics answers
#     and its request count grew by as much.
# The host's busy share is read in the second before and after the rounds,
# as run.sh does. Output: a markdown report on stdout and in
# RESULTS_DIR/paired-latest.md (per-round ratios, median and min-max, A's
# share of the core, warnings), the raw rows in
# RESULTS_DIR/paired-latest-raw.tsv.
#
# Caveats:
#   - the two processes share the core's caches, TLB and branch predictors
#     and take turns in time slices: the ratio is that of both under the
#     same contention, and each one's µs/req here is not a single-
#     configuration figure (those still come from bench/run.sh);
#   - the throughput ratio equals the CPU ratio only if the split of the
#     core is even: the report warns when a gateway's share strays from half
#     by more than SHARE_TOLERANCE (0.05); the CPU ratio from ticks does not
#     depend on the split;
#   - CPU time is read in ticks of 1/CLK_TCK s (10 ms): keep DURATION long
#     enough for several hundred ticks per gateway (10 s gives ~500);
#   - PAIR="plain plain" (an A/A run) shows the method's own noise.
#
# Two builds on one case: PORTCULLIS_BIN_B=other/portcullis runs B with that
# binary (A keeps PORTCULLIS_BIN), e.g. PAIR="obs obs" to measure what a
# change costs or saves with the A/A run's precision (a change's effect on
# "plain obs" is within that run's round-to-round spread of ~1%).
#
# Knobs (environment): PORTCULLIS_BIN (default target/dist/portcullis
# if present; nothing is built), PORTCULLIS_BIN_B (default: the same), PAIR ("plain obs"; cases: plain, obs,
# obs-metrics = admin API only, obs-log = access log only; and, paired
# only with each other, post = a POST of bench/orders.py's 1 KiB JSON body
# through the plain proxy, validated = the same with the body validated
# against bench/orders-schema.json, issue 12), ROUNDS (10),
# DURATION (10s), WARMUP (2s; 0 skips it), CONNS (25 per gateway), PROXY_CPU
# (0), LOAD_CPU (1), RESULTS_DIR (bench/results), LOG_TOLERANCE_PCT (3),
# SHARE_TOLERANCE (0.05), KEEP_TMP (0).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

PAIR=${PAIR:-plain obs}
ROUNDS=${ROUNDS:-10}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-25}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
RESULTS_DIR=${RESULTS_DIR:-$BENCH_DIR/results}
LOG_TOLERANCE_PCT=${LOG_TOLERANCE_PCT:-3}
SHARE_TOLERANCE=${SHARE_TOLERANCE:-0.05}
KEEP_TMP=${KEEP_TMP:-0}

die() { echo "paired.sh: $*" >&2; exit 1; }
log() { echo "==> $*" >&2; }

# ---------------------------------------------------------------- cases

# The cases a PAIR may name, and what each puts in @OBSERVE@ of
# bench/portcullis.yaml. To add one: a name here, in case_admin/case_log
# or observe_yaml, and a label.
ALL_CASES="plain obs obs-metrics obs-log post validated"
case_admin() { [[ $1 == obs || $1 == obs-metrics ]]; }
case_log() { [[ $1 == obs || $1 == obs-log ]]; }
# The body cases: wrk POSTs the 1 KiB JSON body of bench/orders.py.
case_post() { [[ $1 == post || $1 == validated ]]; }
case_label() {
    case $1 in
    plain) echo "plain proxy, nothing observed" ;;
    obs) echo "ECS access log to a file (buffer 8192) + admin API (metrics)" ;;
    obs-metrics) echo "admin API (metrics) only" ;;
    obs-log) echo "ECS access log to a file (buffer 8192) only" ;;
    post) echo "plain proxy, POST of a 1 KiB JSON body (max_body_size 1MiB)" ;;
    validated) echo "the same POST, its body validated against bench/orders-schema.json" ;;
    esac
}
# observe_yaml CASE ADMIN_PORT ACCESS_LOG: the @OBSERVE@ lines of a case
# (the same as run.sh's `portcullis-obs` for `obs`).
observe_yaml() {
    local c=$1 admin=$2 file=$3 y=""
    if case_admin "$c"; then y="admin: { bind: \"127.0.0.1:$admin\" }"; fi
    if case_log "$c"; then y+="${y:+$'\n'}access_log: { to: \"$file\", format: ecs, buffer: 8192 }"; fi
    printf '%s' "$y"
}

read -ra PAIR_LIST <<< "$PAIR"
((${#PAIR_LIST[@]} == 2)) || die "PAIR must name exactly two cases (A B), e.g. \"plain obs\""
for c in "${PAIR_LIST[@]}"; do
    [[ " $ALL_CASES " == *" $c "* ]] || die "unknown case '$c' (want two of: $ALL_CASES)"
done
CASE_A=${PAIR_LIST[0]}
CASE_B=${PAIR_LIST[1]}
if { case_post "$CASE_A" && ! case_post "$CASE_B"; } || { ! case_post "$CASE_A" && case_post "$CASE_B"; }; then
    die "post and validated pair only with each other (both cases must send the same requests)"
fi
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[[ $CONNS =~ ^[1-9][0-9]*$ ]] || die "CONNS must be a positive integer"
[[ $DURATION =~ ^[1-9][0-9]*[sm]?$ ]] || die "DURATION must be like 10s or 1m"
[[ $WARMUP =~ ^[0-9]+[sm]?$ ]] || die "WARMUP must be like 2s (0: none)"
[[ $LOG_TOLERANCE_PCT =~ ^[0-9]+([.][0-9]+)?$ ]] || die "LOG_TOLERANCE_PCT must be a number"
[[ $SHARE_TOLERANCE =~ ^0?[.][0-9]+$ ]] || die "SHARE_TOLERANCE must be a fraction like 0.05"

# ---------------------------------------------------------------- tools

need_tools wrk nginx taskset:util-linux curl python3
# Read before the harness pins itself to one core, after which nproc says 1.
NPROC=$(nproc)
((NPROC >= 2)) || die "needs 2 cores (gateways on one, wrk + upstream on the other); nproc=$NPROC"
[[ $PROXY_CPU != "$LOAD_CPU" ]] || die "PROXY_CPU and LOAD_CPU must differ"

if [[ -z ${PORTCULLIS_BIN:-} ]]; then
    PORTCULLIS_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/dist/portcullis
    [[ -x $PORTCULLIS_BIN ]] || die "set PORTCULLIS_BIN to a dist binary (`cargo build --profile dist`) (no $PORTCULLIS_BIN; this script builds nothing)"
fi
[[ -x $PORTCULLIS_BIN ]] || die "PORTCULLIS_BIN=$PORTCULLIS_BIN is not an executable"

# From here on, everything the harness itself runs (curl, python, ...) stays
# off the gateways' core. Servers are pinned explicitly below.
taskset -cp "$LOAD_CPU" $$ > /dev/null
CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------- processes

TMP=$(mktemp -d -t portcullis-paired.XXXXXX)
SERVER_PIDS=()   # the processes we started and have not stopped yet
WORKER_PIDS=()   # the upstream's nginx worker (a grandchild)
WRK_PIDS=()


cleanup() {
    local rc=$? pid i f
    set +e
    trap - EXIT INT TERM
    for pid in "${WRK_PIDS[@]}"; do kill "$pid" 2> /dev/null; done
    for pid in "${SERVER_PIDS[@]}"; do kill -TERM "$pid" 2> /dev/null; done
    for pid in "${SERVER_PIDS[@]}"; do
        for i in {1..50}; do alive "$pid" || break; sleep 0.1; done
        alive "$pid" && kill -KILL "$pid" 2> /dev/null
    done
    for pid in "${WORKER_PIDS[@]}"; do
        # Only if the pid still belongs to an nginx: it may have been reused.
        [[ $(cat "/proc/$pid/comm" 2> /dev/null) == nginx ]] && kill -KILL "$pid" 2> /dev/null
    done
    wait 2> /dev/null
    if ((rc != 0)); then
        for f in "$TMP"/*/error.log "$TMP"/*/portcullis.log; do
            [[ -s $f ]] || continue
            echo "--- tail of ${f#"$TMP"/}" >&2
            tail -n 20 "$f" >&2
        done
    fi
    if [[ $KEEP_TMP == 1 ]]; then echo "paired.sh: kept $TMP" >&2; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Run a private copy, described now: a build may replace the file during the
# run, and the report must say what was measured.
private_copy "$PORTCULLIS_BIN" "$TMP"
PC_DESC=$PRIVATE_DESC
PORTCULLIS_BIN=$PRIVATE_BIN
SLOT_BIN=("$PORTCULLIS_BIN" "$PORTCULLIS_BIN")
if [[ -n ${PORTCULLIS_BIN_B:-} ]]; then
    [[ -x $PORTCULLIS_BIN_B ]] || die "PORTCULLIS_BIN_B=$PORTCULLIS_BIN_B is not an executable"
    private_copy "$PORTCULLIS_BIN_B" "$TMP/b"
    PC_DESC="A: $PC_DESC; B: $PRIVATE_DESC"
    SLOT_BIN[1]=$PRIVATE_BIN
fi

# free_ports N: N distinct free loopback ports, held open together.
free_ports() {
    python3 -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in ss))' "$1"
}

# utime+stime (fields 14 and 15) of one process, all its threads, in ticks,
# into TICKS. Builtins only: no fork inside the measured window.
cpu_ticks() {
    local line f
    read -r line < "/proc/$1/stat" || return 1
    read -ra f <<< "${line##*) }"
    TICKS=$((f[11] + f[12]))
}



# stop_server PID: TERM, KILL after 5 s, then forget it.
stop_server() {
    local pid=$1 i keep=()
    kill -TERM "$pid" 2> /dev/null || true
    for i in {1..50}; do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then kill -KILL "$pid" 2> /dev/null || true; fi
    wait "$pid" 2> /dev/null || true
    for i in "${SERVER_PIDS[@]}"; do [[ $i == "$pid" ]] || keep+=("$i"); done
    SERVER_PIDS=("${keep[@]}")
}

# ---------------------------------------------------------------- upstream

USER_DIRECTIVE=""
[[ $EUID -eq 0 ]] && USER_DIRECTIVE="user root;"
read -r UPSTREAM_PORT < <(free_ports 1)
UP_DIR=$TMP/upstream
mkdir -p "$UP_DIR"
render "$BENCH_DIR/nginx-upstream.conf" "$UP_DIR/nginx.conf" DIR="$UP_DIR" USER_DIRECTIVE="$USER_DIRECTIVE" PORT="$UPSTREAM_PORT"
# -p/-e keep NGINX off the system prefix and log.
nginx -t -q -p "$UP_DIR/" -c "$UP_DIR/nginx.conf" -e "$UP_DIR/error.log" || die "bad nginx config for the upstream"
log "starting upstream nginx on 127.0.0.1:$UPSTREAM_PORT (core $LOAD_CPU)"
taskset -c "$LOAD_CPU" nginx -p "$UP_DIR/" -c "$UP_DIR/nginx.conf" -e "$UP_DIR/error.log" > "$UP_DIR/stdout.log" 2>&1 &
UPSTREAM_PID=$!
SERVER_PIDS+=("$UPSTREAM_PID")
wait_ok "http://127.0.0.1:$UPSTREAM_PORT/" "$UPSTREAM_PID" "upstream nginx"
for w in $(children "$UPSTREAM_PID"); do WORKER_PIDS+=("$w"); done
[[ $(children "$UPSTREAM_PID" | wc -w) == 1 ]] || die "upstream nginx should have exactly one worker"

# ---------------------------------------------------------------- gateways

# The body cases' requests: the 1 KiB body of bench/orders.py, POSTed.
if case_post "$CASE_A"; then
    mkdir -p "$TMP/bodies"
    python3 "$BENCH_DIR/orders.py" "$TMP/bodies" 1
    cat > "$TMP/post.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open("$TMP/bodies/body-1.json", "rb"))
wrk.body = f:read("*a")
f:close()
EOF
fi

# Per slot (0 = A, 1 = B): case, name (its dir under TMP), and for the
# running process: pid, port, admin port, access log.
SLOT_CASE=("$CASE_A" "$CASE_B")
SLOT_NAME=("a-$CASE_A" "b-$CASE_B")
SLOT_LETTER=(A B)
GW_PID=("" "")
GW_PORT=("" "")
GW_ADMIN=("" "")
GW_LOG=("" "")

# metrics_count SLOT: requests counted in /metrics on the slot's admin port.
metrics_count() {
    local body
    body=$(curl -sf --max-time 2 "http://127.0.0.1:${GW_ADMIN[$1]}/metrics") || return 1
    awk '/^http_server_request_duration_seconds_count/ {s += $NF} END {print s + 0}' <<< "$body"
}

# log_lines SLOT: lines in the slot's access log.
log_lines() { wc -l < "${GW_LOG[$1]}"; }

# check_started SLOT: the case records what its name says: 20 requests add
# 20 ECS lines to its access log and are counted in /metrics (as run.sh's
# check_observe).
check_started() {
    local s=$1 name=${SLOT_NAME[$1]} c=${SLOT_CASE[$1]} url="http://127.0.0.1:${GW_PORT[$1]}/"
    local l0=0 l1=0 m0=0 m1=0 i urls=()
    case_log "$c" || case_admin "$c" || return 0
    sleep 0.2  # the access log is written every 20 ms: let earlier lines land
    if case_log "$c"; then l0=$(log_lines "$s"); fi
    if case_admin "$c"; then m0=$(metrics_count "$s") || die "$name: /metrics does not answer"; fi
    for i in {1..20}; do urls+=("$url"); done
    curl -s --max-time 5 "${urls[@]}" > /dev/null
    if case_log "$c"; then
        for i in {1..30}; do
            l1=$(log_lines "$s")
            ((l1 >= l0 + 20)) && break
            sleep 0.1
        done
        ((l1 == l0 + 20)) || die "$name: 20 requests added $((l1 - l0)) lines to its access log"
        tail -n 1 "${GW_LOG[$s]}" | python3 -c 'import json, sys; r = json.loads(sys.stdin.read()); assert "@timestamp" in r' ||
            die "$name: the access log's last line is not ECS JSON"
    fi
    if case_admin "$c"; then
        m1=$(metrics_count "$s") || die "$name: /metrics does not answer"
        ((m1 - m0 >= 20)) || die "$name: 20 requests added $((m1 - m0)) to /metrics' request count"
    fi
    log "$name: 20 requests ->$(case_log "$c" && echo " 20 access log lines (ECS)")$(case_admin "$c" && echo " /metrics +$((m1 - m0))")"
}

# route_yaml CASE: the @ROUTE_AUTH@ lines (route keys) of a case.
route_yaml() {
    case $1 in
    post) printf '    max_body_size: 1MiB' ;;
    # `required: false`: the start-up checks' GETs carry no body.
    validated) printf '    max_body_size: 1MiB\n    validate: { body: { schema_file: "%s", required: false } }' "$BENCH_DIR/orders-schema.json" ;;
    esac
}

# check_validates SLOT: a body the schema refuses gets 400 from the
# validated case (and passes the post case): the check is on the path.
check_validates() {
    local s=$1 name=${SLOT_NAME[$1]} c=${SLOT_CASE[$1]} code want
    case_post "$c" || return 0
    want=200
    [[ $c == validated ]] && want=400
    code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
        --data-binary "@$TMP/bodies/bad-sku.json" "http://127.0.0.1:${GW_PORT[$s]}/orders")
    [[ $code == "$want" ]] || die "$name: a body with a bad sku got $code, not $want"
    code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
        --data-binary "@$TMP/bodies/body-1.json" "http://127.0.0.1:${GW_PORT[$s]}/orders")
    [[ $code == 200 ]] || die "$name: the benchmark's body got $code, not 200"
    log "$name: the benchmark's body -> 200, a bad sku -> $want"
}

# start_gateway SLOT PORT ADMIN_PORT: a fresh Portcullis for the slot's case.
start_gateway() {
    local s=$1 port=$2 admin=$3 name=${SLOT_NAME[$1]} c=${SLOT_CASE[$1]} dir=$TMP/${SLOT_NAME[$1]}
    mkdir -p "$dir"
    rm -f "$dir/access.log"
    GW_PORT[s]=$port
    GW_ADMIN[s]=""
    GW_LOG[s]=""
    if case_admin "$c"; then GW_ADMIN[s]=$admin; fi
    if case_log "$c"; then GW_LOG[s]=$dir/access.log; fi
    render "$BENCH_DIR/portcullis.yaml" "$dir/portcullis.yaml" \
        NAME="$name" PORT="$port" UPSTREAM_PORT="$UPSTREAM_PORT" TLS="" AUTH="" ROUTE_AUTH="$(route_yaml "$c")" \
        OBSERVE="$(observe_yaml "$c" "$admin" "$dir/access.log")"
    "${SLOT_BIN[s]}" check --config "$dir/portcullis.yaml" > "$dir/check.log" 2>&1 ||
        { cat "$dir/check.log" >&2; die "bad portcullis config for $name"; }
    PORTCULLIS_WORKER_THREADS=1 taskset -c "$PROXY_CPU" \
        "${SLOT_BIN[s]}" run --config "$dir/portcullis.yaml" > "$dir/portcullis.log" 2>&1 &
    GW_PID[s]=$!
    SERVER_PIDS+=("${GW_PID[s]}")
    wait_ok "http://127.0.0.1:$port/" "${GW_PID[s]}" "portcullis ($name)"
    check_started "$s"
    check_validates "$s"
}

# ---------------------------------------------------------------- measuring

# start_wrk SLOT DURATION OUT: wrk against the slot's gateway, in the
# background (its pid appended to WRK_PIDS).
start_wrk() {
    local script=() path=/
    if case_post "${SLOT_CASE[$1]}"; then script=(-s "$TMP/post.lua") path=/orders; fi
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$2" "${script[@]}" "http://127.0.0.1:${GW_PORT[$1]}$path" > "$3" 2>&1 &
    WRK_PIDS+=($!)
}

# wait_wrks: wait for every wrk started; any failure stops the run.
wait_wrks() {
    local pid failed=0
    for pid in "${WRK_PIDS[@]}"; do wait "$pid" || failed=1; done
    WRK_PIDS=()
    ((failed == 0)) || die "a wrk run failed"
}

# wrk_requests FILE: requests completed; dies on non-2xx answers or socket
# errors (a gateway that fails fast would look cheap).
wrk_requests() {
    local f=$1 reqs bad errs
    reqs=$(awk '/ requests in / {print $1}' "$f")
    [[ $reqs =~ ^[0-9]+$ && $reqs -gt 0 ]] || { cat "$f" >&2; die "no requests completed in $f"; }
    bad=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$f")
    errs=$(awk '/Socket errors:/ {gsub(/,/, ""); print $4 + $6 + $8 + $10}' "$f")
    ((${bad:-0} == 0)) || { cat "$f" >&2; die "${bad} non-2xx answers in $f"; }
    ((${errs:-0} == 0)) || { cat "$f" >&2; die "${errs} socket errors in $f"; }
    echo "$reqs"
}

# within_tol GOT WANT: GOT is WANT within LOG_TOLERANCE_PCT, allowing up to
# CONNS more (requests in flight when wrk stopped are served, not counted).
within_tol() {
    awk -v g="$1" -v w="$2" -v t="$LOG_TOLERANCE_PCT" -v c="$CONNS" \
        'BEGIN { exit !(g >= w * (1 - t / 100) && g <= w * (1 + t / 100) + c) }'
}

RAW=$TMP/raw.tsv
printf 'round\tfirst_started\ta_ticks\ta_requests\tb_ticks\tb_requests\tcpu_ratio\tthroughput_ratio\twall_s\ta_share\tgw_core\tother_core\tb_log_lines\tb_metrics\n' > "$RAW"

BUSY_BEFORE=$(host_busy_pct)
((BUSY_BEFORE <= 10)) || log "warning: host was ${BUSY_BEFORE}% busy before starting; results will be noisy"

log "pair: A = $CASE_A ($(case_label "$CASE_A")), B = $CASE_B ($(case_label "$CASE_B"))"
log "measuring: $ROUNDS round(s), $WARMUP warm-up + $DURATION, wrk -t1 -c$CONNS per gateway, both gateways on core $PROXY_CPU"
for ((r = 1; r <= ROUNDS; r++)); do
    # Odd rounds start (and load) A first, even rounds B.
    if ((r % 2)); then order=(0 1); else order=(1 0); fi
    first=${SLOT_LETTER[order[0]]}
    read -ra ports < <(free_ports 4)
    for s in "${order[@]}"; do start_gateway "$s" "${ports[s * 2]}" "${ports[s * 2 + 1]}"; done

    if [[ $WARMUP != 0 && $WARMUP != 0[sm] ]]; then
        for s in "${order[@]}"; do start_wrk "$s" "$WARMUP" "$TMP/wrk-r$r-${SLOT_LETTER[s]}.warmup"; done
        wait_wrks
        for s in "${order[@]}"; do wrk_requests "$TMP/wrk-r$r-${SLOT_LETTER[s]}.warmup" > /dev/null; done
    fi
    # Start the access logs afresh (the writer appends, so it carries on at
    # the new end), after their last warm-up lines have landed.
    sleep 0.3
    m0=("" "")
    for s in 0 1; do
        if [[ -n ${GW_LOG[s]} ]]; then : > "${GW_LOG[s]}"; fi
        if [[ -n ${GW_ADMIN[s]} ]]; then m0[s]=$(metrics_count "$s") || die "${SLOT_NAME[s]}: /metrics does not answer"; fi
    done

    # The measured window: both gateways idle at both readings. Its wall
    # time (for the core-use figures) ends when the last wrk does, before
    # the 0.1 s in which B's last access-log lines are written.
    if ! alive "${GW_PID[0]}" || ! alive "${GW_PID[1]}"; then die "a gateway is no longer running"; fi
    t0=${EPOCHREALTIME/./}
    core_ticks; k0=$CORE_TICKS
    cpu_ticks "${GW_PID[0]}"; a0=$TICKS
    cpu_ticks "${GW_PID[1]}"; b0=$TICKS
    for s in "${order[@]}"; do start_wrk "$s" "$DURATION" "$TMP/wrk-r$r-${SLOT_LETTER[s]}.txt"; done
    wait_wrks
    t1=${EPOCHREALTIME/./}
    sleep 0.1
    cpu_ticks "${GW_PID[0]}"; a1=$TICKS
    cpu_ticks "${GW_PID[1]}"; b1=$TICKS
    core_ticks; k1=$CORE_TICKS
    if ! alive "${GW_PID[0]}" || ! alive "${GW_PID[1]}"; then die "a gateway died during round $r"; fi

    a_req=$(wrk_requests "$TMP/wrk-r$r-A.txt")
    b_req=$(wrk_requests "$TMP/wrk-r$r-B.txt")
    req=("$a_req" "$b_req")

    # Each case really recorded every request of the window.
    sleep 0.3
    lines=("" "")
    mets=("" "")
    for s in 0 1; do
        if [[ -n ${GW_LOG[s]} ]]; then
            lines[s]=$(log_lines "$s")
            within_tol "${lines[s]}" "${req[s]}" ||
                die "round $r: ${SLOT_NAME[s]}'s access log got ${lines[s]} lines for ${req[s]} requests (tolerance ${LOG_TOLERANCE_PCT}%)"
            : > "${GW_LOG[s]}"
        fi
        if [[ -n ${GW_ADMIN[s]} ]]; then
            m1=$(metrics_count "$s") || die "round $r: ${SLOT_NAME[s]}: /metrics does not answer"
            mets[s]=$((m1 - m0[s]))
            within_tol "${mets[s]}" "${req[s]}" ||
                die "round $r: ${SLOT_NAME[s]}'s /metrics counted ${mets[s]} requests for ${req[s]} (tolerance ${LOG_TOLERANCE_PCT}%)"
        fi
    done

    for s in "${order[@]}"; do stop_server "${GW_PID[s]}"; done

    row=$(awk -v r="$r" -v f="$first" -v at=$((a1 - a0)) -v ar="$a_req" -v bt=$((b1 - b0)) -v br="$b_req" \
        -v wall=$((t1 - t0)) -v k=$((k1 - k0)) -v hz="$CLK_TCK" -v bl="${lines[1]:--}" -v bm="${mets[1]:--}" 'BEGIN {
        if (at <= 0 || bt <= 0) { print "no ticks" > "/dev/stderr"; exit 1 }
        w = wall / 1e6
        printf "%d\t%s\t%d\t%d\t%d\t%d\t%.4f\t%.4f\t%.3f\t%.3f\t%.3f\t%.3f\t%s\t%s\n",
            r, f, at, ar, bt, br, (bt / br) / (at / ar), ar / br, w, at / (at + bt),
            (at + bt) / hz / w, (k - at - bt) / hz / w, bl, bm
    }') || die "round $r: a gateway used no CPU in the window"
    printf '%s\n' "$row" >> "$RAW"
    IFS=$'\t' read -ra v <<< "$row"
    log "round $r/$ROUNDS ($first first): A $(awk -v t="${v[2]}" -v n="${v[3]}" -v hz="$CLK_TCK" 'BEGIN {printf "%.2f", t / hz / n * 1e6}') µs/req," \
        "B $(awk -v t="${v[4]}" -v n="${v[5]}" -v hz="$CLK_TCK" 'BEGIN {printf "%.2f", t / hz / n * 1e6}') µs/req;" \
        "B/A CPU/req ${v[6]}, A/B requests ${v[7]}; A's share ${v[9]}, gateways' core use ${v[10]}"
done

BUSY_AFTER=$(host_busy_pct)

# ---------------------------------------------------------------- report

nginx_version=$(nginx -v 2>&1 | sed 's/^nginx version: //')
wrk_version=$( (wrk -v 2>&1 || true) | awk 'NR == 1 {print $2}')
cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)

REPORT=$TMP/paired-latest.md
{
    echo "# Portcullis paired benchmark: $CASE_B ÷ $CASE_A"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), \`bench/paired.sh\` with PAIR=\"$PAIR\" ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP CONNS=$CONNS."
    echo
    echo "- A = \`$CASE_A\`: $(case_label "$CASE_A"); B = \`$CASE_B\`: $(case_label "$CASE_B")"
    echo "- both on core $PROXY_CPU at once (1 worker thread each, fresh processes each round, the first started alternating); upstream nginx and the two \`wrk -t1 -c$CONNS\` on core $LOAD_CPU"
    echo "- cores (nproc): $NPROC; CPU: $cpu_model; kernel $(uname -r)"
    echo "- nginx: $nginx_version; wrk: $wrk_version; CLK_TCK: $CLK_TCK"
    echo "- portcullis: $PC_DESC"
    echo "- host busy in the second before the rounds: ${BUSY_BEFORE}%, in the second after: ${BUSY_AFTER}%"
    echo
    python3 - "$RAW" "$CLK_TCK" "$SHARE_TOLERANCE" "$BUSY_BEFORE" "$BUSY_AFTER" <<'PY'
import csv, statistics, sys

raw, hz, share_tol, busy_before, busy_after = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rows = list(csv.DictReader(open(raw), delimiter="\t"))

def us(t, n):
    return int(t) / hz / int(n) * 1e6

def mm(xs, fmt):
    return f"{fmt.format(statistics.median(xs))} ({fmt.format(min(xs))}–{fmt.format(max(xs))})"

print("| round | first | A ticks | A requests | A µs/req | B ticks | B requests | B µs/req "
      "| **B ÷ A CPU/req** | A ÷ B requests | A's share | gateways' core use | other on core |")
print("| ---: | :---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for r in rows:
    print(f"| {r['round']} | {r['first_started']} | {r['a_ticks']} | {int(r['a_requests']):,} "
          f"| {us(r['a_ticks'], r['a_requests']):.2f} | {r['b_ticks']} | {int(r['b_requests']):,} "
          f"| {us(r['b_ticks'], r['b_requests']):.2f} | **{float(r['cpu_ratio']):.3f}** "
          f"| {float(r['throughput_ratio']):.3f} | {float(r['a_share']):.3f} "
          f"| {float(r['gw_core']):.2f} | {float(r['other_core']):.1%} |")
print()

cpu = [float(r["cpu_ratio"]) for r in rows]
thr = [float(r["throughput_ratio"]) for r in rows]
print(f"## Summary over {len(rows)} round(s): median (min–max)\n")
print("| figure | value |")
print("| --- | ---: |")
print(f"| **B ÷ A CPU per request** (ticks / requests) | **{mm(cpu, '{:.3f}')}** |")
print(f"| A ÷ B requests completed (second estimate) | {mm(thr, '{:.3f}')} |")
print(f"| A µs/req under the pairing | {mm([us(r['a_ticks'], r['a_requests']) for r in rows], '{:.2f}')} |")
print(f"| B µs/req under the pairing | {mm([us(r['b_ticks'], r['b_requests']) for r in rows], '{:.2f}')} |")
print(f"| A's share of the gateways' CPU | {mm([float(r['a_share']) for r in rows], '{:.3f}')} |")
if len(cpu) > 1:
    sd = statistics.stdev(cpu)
    print(f"| spread of B ÷ A over rounds (sd; sd/√n) | {sd:.3f}; {sd / len(cpu) ** 0.5:.3f} |")
for first in ("A", "B"):
    sub = [float(r["cpu_ratio"]) for r in rows if r["first_started"] == first]
    if sub and len(sub) < len(rows):
        print(f"| B ÷ A CPU/req, rounds with {first} started first | {mm(sub, '{:.3f}')} |")
print()
print("Ratios are taken per round, then the median. Above 1.00 means B costs more CPU per request "
      "than A. The µs/req figures are of both gateways sharing one core (caches, time slices): "
      "for a single configuration's cost use `bench/run.sh`. `gateways' core use` is the two "
      "gateways' utime+stime over the window's wall time; `other on core` is what else the core "
      "was busy with (its user+nice+system+irq+softirq ticks less the gateways').")

warn = []
if busy_before > 10 or busy_after > 10:
    warn.append(f"the host was {busy_before}% busy before the rounds and {busy_after}% after: "
                "something else was running; the pairing cancels speed swings, not contention on "
                "the load core.")
far = [r["round"] for r in rows if abs(float(r["a_share"]) - 0.5) > share_tol]
if far:
    warn.append(f"a gateway's share of the core was more than {share_tol} from half in round(s) "
                f"{', '.join(far)}: the requests ratio is then not an estimate of the CPU ratio "
                "(the ticks ratio still is).")
low = [r["round"] for r in rows if float(r["gw_core"]) < 0.95]
if low:
    warn.append(f"the two gateways used less than 0.95 of their core in round(s) {', '.join(low)}: "
                "the load may not have saturated the core (CPU per request depends on load; run.sh asks "
                "for 0.95 of a core from one proxy).")
busy = [r["round"] for r in rows if float(r["other_core"]) > 0.05]
if busy:
    warn.append(f"something other than the gateways used more than 5% of their core in round(s) "
                f"{', '.join(busy)}.")
few = [r["round"] for r in rows if min(int(r["a_ticks"]), int(r["b_ticks"])) < 100]
if few:
    warn.append(f"fewer than 100 CPU ticks for a gateway in round(s) {', '.join(few)}: at one tick "
                "of resolution, raise DURATION.")
if warn:
    print()
    for w in warn:
        print(f"- **warning**: {w}")
PY
} > "$REPORT"

mkdir -p "$RESULTS_DIR"
cp "$REPORT" "$RESULTS_DIR/paired-latest.md"
cp "$RAW" "$RESULTS_DIR/paired-latest-raw.tsv"
cat "$REPORT"
log "written to $RESULTS_DIR/paired-latest.md (raw data: paired-latest-raw.tsv)"

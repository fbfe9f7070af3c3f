#!/usr/bin/env bash
# What active health checking of many targets costs an idle gateway
# (issue 14: "health checking of 1,000 targets costs under 1% of one core"):
#
#   bench/health.sh [PORTCULLIS_BIN]            (default: target/dist/portcullis)
#   TARGETS=1000 INTERVAL=5s WARMUP=10 DURATION=60 ROUNDS=3 bench/health.sh [PORTCULLIS_BIN]
#
# One NGINX (one worker, access log off, keepalive_requests 1000000,
# worker_connections 4096) listens on 0.0.0.0:PORT and answers
# `/healthz` with 200 "ok", plus a `stub_status` page. The gateway gets one
# upstream of TARGETS targets, http://127.0.X.Y:PORT with TARGETS distinct
# loopback addresses (127.0.1.1 ... 127.0.4.250 for 1,000: every
# 127.0.0.0/8 address reaches `lo` on Linux, so each is a target of its
# own, with its own pool, while one NGINX serves them all; the script
# checks that NGINX answers on the first and the last), one route to it,
# and no client traffic at all. Two cases, each a fresh gateway process:
#   off     the upstream without `health`: what an idle gateway with
#           1,000 targets costs by itself (the baseline);
#   health  the same with
#           `health: { active: { path: /healthz, interval: INTERVAL, timeout: 1s } }`.
# Cases alternate over ROUNDS rounds (rotated). For each: the gateway
# starts pinned to core 0 (PORTCULLIS_WORKER_THREADS=$THREADS, default 1;
# empty for the runtime's default of one worker per core), NGINX on core 1;
# one request through the route checks that it answers; after WARMUP
# seconds (the first probes open the connections), the gateway's and
# NGINX's CPU time (utime+stime of /proc/PID/stat, whole thread group, in
# ticks of 1/CLK_TCK s) and NGINX's stub_status counters are read, again
# DURATION seconds later. Reported per run: the gateway's CPU as a share of
# one core (CPU seconds / wall seconds), the same from the threads'
# schedstat (ns, finer than ticks; threads alive at both readings), NGINX's
# share, the probes NGINX served in the window (expected TARGETS x
# DURATION / INTERVAL), the connections it accepted in the window (0 when
# the probes reuse their keep-alive connections), and the gateway's RSS,
# threads and open file descriptors at the end. The gateway's log is
# scanned for warnings (e.g. targets marked unhealthy). Each run also
# shows how much CPU the rest of the host used in the window (/proc/stat,
# all cores, minus the gateway and NGINX): the figures are CPU time, so a
# busy host changes them little, but a build beside them can still shift
# them through shared caches.
#
# LATENCY_SECONDS=S (default 0: off) adds, after each run's CPU window (so
# it does not disturb it), `wrk -t1 -c1` for S seconds from core UP_CORE
# through the gateway's route (GET /healthz, spread by the balancer over
# the targets) after 5 s of warm-up: p50, p99, p99.9 and max latency, to
# see what the probes' rounds (all targets at once, every INTERVAL) do to a
# client's requests. Needs wrk.
#
# CPU_CORE=N (0) and UP_CORE=N (1) choose the cores.
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
TARGETS=${TARGETS:-1000}
INTERVAL=${INTERVAL:-5s}
WARMUP=${WARMUP:-10}
DURATION=${DURATION:-60}
ROUNDS=${ROUNDS:-3}
CASES=${CASES:-"off health"}
THREADS=${THREADS-1}
LATENCY_SECONDS=${LATENCY_SECONDS:-0}
CPU_CORE=${CPU_CORE:-0}
UP_CORE=${UP_CORE:-1}
BIN=${1:-$BENCH_DIR/../target/dist/portcullis}

source "$BENCH_DIR/lib.sh"
need_tools nginx python3 curl taskset:util-linux
((LATENCY_SECONDS == 0)) || need_tools wrk
((TARGETS >= 1 && TARGETS <= 62500)) || { echo "health.sh: TARGETS must be 1..62500" >&2; exit 1; }

bench_start
ulimit -n 16384
STATUS_PORT=$(free_port)
# The NGINX worker holds one connection per target (plus a few).
cat > "$WORK/up.conf" <<EOF
worker_processes 1; daemon off; master_process off; pid $WORK/up.pid; error_log $WORK/error.log; user root;
worker_rlimit_nofile 16384;
events { worker_connections $((TARGETS + 4096)); }
http { access_log off; keepalive_requests 1000000; $temps
  server { listen $UP_PORT; location = /healthz { return 200 "ok"; } }
  server { listen 127.0.0.1:$STATUS_PORT; location / { stub_status; } } }
EOF

# target I (0-based) -> 127.0.(1 + I / 250).(1 + I % 250)
addr() { echo "127.0.$((1 + $1 / 250)).$((1 + $1 % 250))"; }
FIRST=$(addr 0)
LAST=$(addr $((TARGETS - 1)))
# gw-<case>.yaml
for case in off health; do
    {
        echo "listeners: [ { name: bench, bind: \"127.0.0.1:$PROXY_PORT\" } ]"
        echo "upstreams:"
        echo "  many:"
        echo "    targets:"
        for ((i = 0; i < TARGETS; i++)); do echo "      - \"http://$(addr $i):$UP_PORT\""; done
        [[ $case == off ]] || echo "    health: { active: { path: /healthz, interval: $INTERVAL, timeout: 1s } }"
        echo "routes:"
        echo "  - { name: all, match: { path_prefix: / }, upstream: many }"
    } > "$WORK/gw-$case.yaml"
    "$BIN" check --config "$WORK/gw-$case.yaml" >/dev/null
done

taskset -c "$UP_CORE" nginx -p "$WORK/" -c "$WORK/up.conf" -e "$WORK/error.log" >/dev/null 2>&1 &
UP_PID=$!
PIDS+=("$UP_PID")

wait_port() {
    for _ in $(seq 100); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), timeout=1)" 2>/dev/null && return 0
        sleep 0.2
    done
    echo "health.sh: nothing listens on $1" >&2
    return 1
}
wait_port "$UP_PORT"
wait_port "$STATUS_PORT"
for a in "$FIRST" "$LAST"; do
    got=$(curl -s "http://$a:$UP_PORT/healthz")
    [[ $got == ok ]] || { echo "health.sh: NGINX does not answer on $a:$UP_PORT ($got)" >&2; exit 1; }
done
echo "check: NGINX answers /healthz on $FIRST and $LAST (port $UP_PORT); $TARGETS targets"

cat > "$WORK/latency.lua" <<'EOF'
done = function(summary, latency, requests)
  io.write(string.format("p50 %d us, p99 %d us, p99.9 %d us, max %d us, %d requests, %d errors",
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max, summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout))
end
EOF
CLK_TCK=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# The gateway's threads' on-CPU time in ns, as "tid ns" lines.
sched() { for t in /proc/"$1"/task/*; do echo "${t##*/} $(cut -d' ' -f1 "$t/schedstat")"; done; }
# busy ticks of all cores (user nice system irq softirq steal), from /proc/stat
busy() { awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
# accepts and requests, from stub_status
counters() { curl -s "http://127.0.0.1:$STATUS_PORT/" | awk 'NR == 3 {print $1, $3}'; }

# run ROUND CASE: one measured gateway; appends a line to $WORK/runs.tsv.
run() {
    local round=$1 case=$2
    local env=()
    [[ -z $THREADS ]] || env=(PORTCULLIS_WORKER_THREADS="$THREADS")
    env "${env[@]}" taskset -c "$CPU_CORE" "$BIN" run --config "$WORK/gw-$case.yaml" >"$WORK/gw-$round-$case.log" 2>&1 &
    local gw=$!
    PIDS+=("$gw")
    wait_port "$PROXY_PORT"
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PROXY_PORT/healthz")
    [[ $code == 200 ]] || { echo "health.sh: $case: GET /healthz through the gateway answered $code" >&2; exit 1; }
    sleep "$WARMUP"
    local g0 u0 c0 w0 b0 g1 u1 c1 w1 b1
    sched "$gw" | sort > "$WORK/sched0"
    c0=$(counters); u0=$(ticks "$UP_PID"); b0=$(busy); g0=$(ticks "$gw"); w0=$(date +%s.%N)
    sleep "$DURATION"
    g1=$(ticks "$gw"); w1=$(date +%s.%N); b1=$(busy); u1=$(ticks "$UP_PID"); c1=$(counters)
    sched "$gw" | sort > "$WORK/sched1"
    local rss threads fds
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$gw/status")
    threads=$(ls "/proc/$gw/task" | wc -l)
    fds=$(ls "/proc/$gw/fd" | wc -l)
    if ((LATENCY_SECONDS > 0)); then
        taskset -c "$UP_CORE" wrk -t1 -c1 -d5s "http://127.0.0.1:$PROXY_PORT/healthz" >/dev/null
        echo "round $round $case one client connection, ${LATENCY_SECONDS}s: $(taskset -c "$UP_CORE" wrk -t1 -c1 -d"${LATENCY_SECONDS}s" \
            -s "$WORK/latency.lua" "http://127.0.0.1:$PROXY_PORT/healthz" | tail -1)"
    fi
    kill "$gw"
    wait "$gw" 2>/dev/null || true
    local sched_ns warnings
    sched_ns=$(join "$WORK/sched0" "$WORK/sched1" | awk '{s += $3 - $2} END {print s + 0}')
    warnings=$(grep -ciE 'warn|error' "$WORK/gw-$round-$case.log" || true)
    # round case wall gw_ticks up_ticks accepts requests sched_ns rss_kb threads fds warnings other_ticks
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$case" \
        "$(python3 -c "print($w1 - $w0)")" $((g1 - g0)) $((u1 - u0)) \
        $(( ${c1% *} - ${c0% *} - 1 )) $(( ${c1#* } - ${c0#* } - 1 )) "$sched_ns" "$rss" "$threads" "$fds" "$warnings" \
        $((b1 - b0 - (g1 - g0) - (u1 - u0))) \
        | tee -a "$WORK/runs.tsv" | awk -F'\t' -v hz="$CLK_TCK" '{printf "round %s %-6s gateway %.3f%% of a core (schedstat %.3f%%), nginx %.3f%%, %d probes served, %d new connections, RSS %d KB, %d threads, %d fds, %d warnings in its log; the rest of the host used %.1f%% of a core\n", $1, $2, $4 / hz / $3 * 100, $8 / 1e9 / $3 * 100, $5 / hz / $3 * 100, $7, $6, $9, $10, $11, $12, $13 / hz / $3 * 100}'
    if ((warnings > 0)); then
        echo "  gateway log ($case, round $round), first warnings:"
        grep -iE 'warn|error' "$WORK/gw-$round-$case.log" | head -5 | sed 's/^/    /'
    fi
}

read -r -a cases <<< "$CASES"
for round in $(seq "$ROUNDS"); do
    for k in $(seq 0 $((${#cases[@]} - 1))); do
        run "$round" "${cases[$(((k + round - 1) % ${#cases[@]}))]}"
    done
done

python3 - "$WORK/runs.tsv" "$CLK_TCK" "$TARGETS" "$INTERVAL" <<'PY'
import statistics, sys
hz, targets, interval = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
by = {}
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("\t")
    rnd, case, wall, g, u, acc, req, ns = f[0], f[1], float(f[2]), int(f[3]), int(f[4]), int(f[5]), int(f[6]), int(f[7])
    by.setdefault(case, []).append({"round": rnd, "gw": g / hz / wall * 100, "sched": ns / 1e9 / wall * 100,
                                    "up": u / hz / wall * 100, "probes": req, "acc": acc, "wall": wall,
                                    "rest": int(f[12]) / hz / wall * 100})
def fmt(v, f="%.3f"):
    return (f + " (" + f + "-" + f + ")") % (statistics.median(v), min(v), max(v))
print("\n%d targets, interval %s; median (min-max) over %d rounds, %% of one core:" % (targets, interval, len(next(iter(by.values())))))
print("| case | gateway (ticks) | gateway (schedstat) | NGINX | probes served per s | new upstream conns | rest of the host |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for case, rs in by.items():
    print("| %s | %s | %s | %s | %s | %s | %s |" % (case, fmt([r["gw"] for r in rs]), fmt([r["sched"] for r in rs]),
          fmt([r["up"] for r in rs]), fmt([r["probes"] / r["wall"] for r in rs], "%.1f"), fmt([r["acc"] for r in rs], "%d"),
          fmt([r["rest"] for r in rs], "%.1f")))
if "off" in by and "health" in by:
    rounds = {r["round"] for r in by["health"]} & {r["round"] for r in by["off"]}
    get = lambda case, rnd, k: next(r[k] for r in by[case] if r["round"] == rnd)
    added = [get("health", r, "sched") - get("off", r, "sched") for r in rounds]
    per_probe = [(get("health", r, "sched") - get("off", r, "sched")) / 100 * get("health", r, "wall") /
                 max(get("health", r, "probes"), 1) * 1e6 for r in rounds]
    print("\nhealth - off (schedstat, per round then the median): %s %% of one core; %s CPU us per probe" %
          (fmt(added), fmt(per_probe, "%.1f")))
PY

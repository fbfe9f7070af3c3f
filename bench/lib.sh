# Set-up shared by the benchmark scripts (sourced, not run): the tools they
# need, a scratch folder cleaned up on exit, two free loopback ports, and
# the NGINX config fragments every case uses.

# need_tools CMD[:PACKAGE]...: installs the Debian packages of missing commands.
need_tools() {
    local missing=() tool
    for tool in "$@"; do
        command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
    done
    if ((${#missing[@]})); then
        apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# need_counting_tools: what a callgrind count needs, plus wrk and taskset
# when CPU_SECONDS asks for CPU figures too.
need_counting_tools() {
    local tools=(valgrind nginx python3 curl)
    ((${CPU_SECONDS:-0} == 0)) || tools+=(wrk taskset:util-linux)
    need_tools "${tools[@]}"
}

# bench_start: WORK (removed on exit with the PIDS killed), UP_PORT,
# PROXY_PORT, and NGINX's `common` and `temps` lines.
bench_start() {
    WORK=$(mktemp -d)
    PIDS=()
    trap bench_cleanup EXIT
    UP_PORT=$(free_port)
    PROXY_PORT=$(free_port)
    common="worker_processes 1; daemon off; master_process off; pid $WORK/PID; error_log $WORK/error.log; user root;
events { worker_connections 1024; }"
    temps="client_body_temp_path $WORK; proxy_temp_path $WORK; fastcgi_temp_path $WORK; uwsgi_temp_path $WORK; scgi_temp_path $WORK;"
}

# start_callgrind CMD...: CMD under callgrind, its dump in $WORK/cg.out,
# its pid in VG (killed on exit). With PROFILES set, names are written in
# full in the dump, so that a kept one reads alone.
start_callgrind() {
    local keep=()
    [[ -z ${PROFILES:-} ]] || keep=(--compress-strings=no --compress-pos=no)
    valgrind --tool=callgrind "${keep[@]}" --callgrind-out-file="$WORK/cg.out" "$@" >/dev/null 2>"$WORK/valgrind.log" &
    VG=$!
    PIDS+=("$VG")
}

bench_cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}

# Shared by run.sh and paired.sh (which each define `die`, used by render).

# A zombie still answers kill -0, so look at the state instead.
alive() {
    local line
    read -r line 2>/dev/null < "/proc/$1/stat" || return 1
    line=${line##*) }
    [[ ${line:0:1} != Z ]]
}

# Fill @NAME@ placeholders of a template: render TEMPLATE OUT NAME=value...
# A value may span lines (a route's policies). Comment lines (# in the first
# column) are left as they are: they name the placeholders, and a value of
# several lines filled into one would turn its later lines into config.
render() {
    local tpl=$1 out=$2 kv v args=()
    shift 2
    for kv in "$@"; do
        v=${kv#*=}
        args+=(-e "/^#/!s|@${kv%%=*}@|${v//$'\n'/\\n}|g")
    done
    sed "${args[@]}" "$tpl" > "$out"
    ! grep -v '^#' "$out" | grep -q '@[A-Z_]*@' || die "unfilled placeholder in $out"
}

children() { cat /proc/"$1"/task/*/children 2>/dev/null || true; }

# The pid and all its descendants: a process's utime/stime covers all its
# threads, but not its live children (nginx master -> worker).
tree_pids() {
    local c
    echo "$1"
    for c in $(children "$1"); do tree_pids "$c"; done
}

# Busy ticks of core $PROXY_CPU so far (user nice system irq softirq) into
# CORE_TICKS (builtins only). Less the proxy's own utime+stime over a run, this
# is CPU that something else - another process on a shared host - took on the
# proxy's core. The irq and softirq columns count: part of the proxy's stime
# (its own network work) is booked there, ~0.3 of a core here, so without them
# the difference comes out negative.
core_ticks() {
    local line f
    while read -r line; do
        if [[ $line == "cpu$PROXY_CPU "* ]]; then
            read -ra f <<< "$line"
            CORE_TICKS=$((f[1] + f[2] + f[3] + f[6] + f[7]))
            return 0
        fi
    done < /proc/stat
    return 1
}

# Whole-host CPU busy share over one second, to flag a host that is not idle
# (a build running beside the benchmark skews everything).
host_busy_pct() {
    local a b
    read -ra a < /proc/stat
    sleep 1
    read -ra b < /proc/stat
    # cpu user nice system idle iowait irq softirq steal ...
    local total=0 i
    for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
    local idle=$((b[4] - a[4] + b[5] - a[5]))
    ((total > 0)) && echo $(((total - idle) * 100 / total)) || echo 0
}

# private_copy BIN DIR: a private copy of the gateway binary in DIR/bin (a
# build may replace the file during a run, and the report must say what was
# measured). Sets PRIVATE_BIN (the copy) and PRIVATE_DESC (the checkout at
# the start of the run, the binary's path, build time and sha256).
private_copy() {
    local rev
    rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "no commit")
    [[ -z $(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]] || rev+=" + uncommitted changes"
    mkdir -p "$2/bin"
    cp -p "$1" "$2/bin/portcullis"
    PRIVATE_BIN=$2/bin/portcullis
    PRIVATE_DESC="$rev (at the start of the run); binary $1 built $(date -d "@$(stat -c %Y "$PRIVATE_BIN")" '+%Y-%m-%d %H:%M'), sha256 $(sha256sum < "$PRIVATE_BIN" | cut -c1-12)"
}

# wait_ok URL PID NAME [curl args...]: until URL answers "ok" (the
# upstream's body, so for a proxy this checks the whole path), failing
# early (with the caller's `die`) if the server died. -k: the TLS cases use
# a throwaway self-signed certificate; the JWT cases pass their
# Authorization header as curl args.
wait_ok() {
    local url=$1 pid=$2 name=$3 i
    shift 3
    for i in {1..150}; do
        alive "$pid" || die "$name exited during start-up"
        [[ $(curl -sk --max-time 1 "$@" "$url" 2>/dev/null) == ok ]] && return 0
        sleep 0.1
    done
    die "$name did not answer 'ok' on $url within 15 s"
}

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

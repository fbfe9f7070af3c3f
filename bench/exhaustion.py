#!/usr/bin/env python3
"""How a normal client's latency holds up while Portcullis is under
resource-exhaustion attacks. Measures; asserts nothing. Python 3 stdlib only.

  python3 bench/exhaustion.py
  PORTCULLIS=/path/to/portcullis WINDOW=10 BODY_SECONDS=75 SHARED_UPSTREAM=0 KEEP_TMP=0 \
    python3 bench/exhaustion.py

Everything is on 127.0.0.1, on free ports, and stops by itself (~2 minutes):
  - two upstreams: trivial HTTP/1.1 servers (own processes) that read each
    request and its body (Content-Length or chunked) and answer `200 ok`,
    keep-alive. The normal clients' `GET /x` goes to one, the attack's paths
    to the other, so that a slow Python upstream does not blur what the
    gateway does (SHARED_UPSTREAM=1: one upstream for everything);
  - gateway: `portcullis run` with one plain listener proxying every path;
    the listener's limits are ALL defaults (docs/edge.md: max_connections 10000
    already fits the attack; header_read_timeout 10s, body_read_timeout 30s,
    max_header_size 32KiB, max_headers 100, max_body_size 10MiB; the
    upstream's timeouts.request is 60s);
  - the attack runs in its own process (so it does not share an event loop
    with the measuring clients); once its connections are up, three clients
    run for WINDOW seconds side by side:
      keep-alive: one connection to the gateway, sequential `GET /x`;
      new-conn:   a new connection per `GET /x` (connect + first byte + body);
      control:    keep-alive straight to the upstream, no gateway: what the
                  host's own load (2 cores here, shared with the attacker)
                  does to latency, as opposed to the gateway.
Scenarios, one after the other: baseline, slowloris (1,000 connections, one
header byte a second, reconnecting when cut), header flood (50 connections
sending 30 KB heads as fast as they can, 2 in 5 over the size / field-count
limits), endless body (200 POSTs: 100 chunked, one chunk a second; 50 with
Content-Length 5 MiB and 50 with 1 GiB, one byte a second), then `after`: no
attack, to see recovery. Per scenario it prints a markdown report: latency
count / p50 / p99 / max and errors; the gateway's RSS (VmRSS: start, peak,
end), fds, upstream connections and CPU time, the CPU of everything else on
the host; what happened to the attack connections; the gateway's
panic/error/warn log lines. Stdlib only; every loop is bounded in count and time.
"""
import asyncio, json, os, re, resource, shutil, socket, subprocess, sys, tempfile, time

HERE = os.path.abspath(__file__)
WINDOW = float(os.environ.get("WINDOW", "10"))
# name -> (attack duration in seconds, description)
SCENARIOS = {
    "baseline": (0, "no attack"),
    "slowloris": (8 + WINDOW, "1000 conns, partial head, 1 byte/s, reconnect when cut"),
    "header-flood": (2 + WINDOW, "50 conns, 30 KB heads (2 in 5 over 32 KiB or 100 fields, 431)"),
    "endless-body": (float(os.environ.get("BODY_SECONDS", "75")), "200 POSTs: 100 chunked 1 chunk/s, 50 CL=5MiB + 50 CL=1GiB 1 byte/s"),
    "after": (0, "no attack, after the others"),
}


# ---------------------------------------------------------------- HTTP helpers
async def read_message(reader):
    """Read one HTTP/1.1 message (head + Content-Length or chunked body).
    Returns (first line, headers dict). Raises on EOF."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    hdrs = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            hdrs[k.strip().lower()] = v.strip()
    if "chunked" in hdrs.get("transfer-encoding", "").lower():
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)  # data + CRLF (trailers: none expected)
            if size == 0:
                break
    elif int(hdrs.get("content-length", "0")):
        await reader.readexactly(int(hdrs["content-length"]))
    return lines[0], hdrs


def status_of(first_line):
    return int(first_line.split()[1])


async def upstream_main(port):
    async def handle(reader, writer):
        try:
            while True:
                await read_message(reader)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()
    server = await asyncio.start_server(handle, "127.0.0.1", port, limit=1 << 20, backlog=4096)
    await server.serve_forever()


# ---------------------------------------------------------------- attacks
def summary(xs):
    if not xs:
        return "-"
    xs = sorted(xs)
    return f"min {xs[0]:.1f} / med {xs[len(xs) // 2]:.1f} / max {xs[-1]:.1f} s"


async def slowloris(port, deadline, out):
    out.update(opened=0, connect_failed=0, cut_by_gateway=0, responses=0, open_at_end=0, cut_after=[])
    ready, sem = asyncio.Event(), asyncio.Semaphore(200)

    async def one():
        while time.monotonic() < deadline - 1:
            try:
                async with sem:
                    r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
            except (OSError, asyncio.TimeoutError):
                out["connect_failed"] += 1
                await asyncio.sleep(1)
                continue
            out["opened"] += 1
            w.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-a: ")
            start = time.monotonic()
            if out["opened"] >= 1000:
                ready.set()
            cut = False
            for _ in range(120):  # bounded: at most 120 s per connection
                if time.monotonic() >= deadline:
                    break
                try:
                    w.write(b"a")
                    await w.drain()
                    data = await asyncio.wait_for(r.read(4096), 1.0)
                    if data:
                        out["responses"] += 1  # the gateway answered something
                    else:
                        cut = True
                except asyncio.TimeoutError:
                    continue
                except ConnectionError:
                    cut = True
                if cut:
                    break
            w.close()
            if cut:  # then reconnect, as a real slowloris does
                out["cut_by_gateway"] += 1
                out["cut_after"].append(time.monotonic() - start)
            else:
                out["open_at_end"] += 1
                return

    tasks = [asyncio.create_task(one()) for _ in range(1000)]
    try:
        await asyncio.wait_for(ready.wait(), 30)
    except asyncio.TimeoutError:
        pass  # go on with what connected; `opened` tells how many
    print("READY", flush=True)
    await asyncio.gather(*tasks)
    out["cut_after"] = summary(out["cut_after"]) + " after the first byte"


async def header_flood(port, deadline, out):
    fill = "a" * 320
    valid = "".join(f"X-Fill-{i}: {fill}\r\n" for i in range(90))                # ~30 KB, 90 fields
    too_big = "".join(f"X-Fill-{i}: {fill}{fill}\r\n" for i in range(60))        # ~39 KB > 32 KiB
    too_many = "".join(f"X-F{i}: a\r\n" for i in range(150))                      # 150 fields > 100
    heads = [f"GET /a HTTP/1.1\r\nHost: x\r\n{h}\r\n".encode() for h in (valid, valid, too_big, valid, too_many)]
    out.update(requests=0, statuses={}, closed_without_response=0, conns=0)

    async def one(k):
        i = k
        while time.monotonic() < deadline and out["requests"] < 2_000_000:
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, limit=1 << 20), 5)
            except (OSError, asyncio.TimeoutError):
                out["connect_failed"] = out.get("connect_failed", 0) + 1
                await asyncio.sleep(0.1)
                continue
            out["conns"] += 1
            try:
                while time.monotonic() < deadline:
                    w.write(heads[i % len(heads)])
                    i += 1
                    out["requests"] += 1
                    first, hdrs = await asyncio.wait_for(read_message(r), 10)
                    st = str(status_of(first))
                    out["statuses"][st] = out["statuses"].get(st, 0) + 1
                    if hdrs.get("connection", "").lower() == "close" or st != "200":
                        break
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError, ValueError, asyncio.TimeoutError):
                out["closed_without_response"] += 1
            w.close()

    tasks = [asyncio.create_task(one(k)) for k in range(50)]
    await asyncio.sleep(1)
    print("READY", flush=True)
    await asyncio.gather(*tasks)


async def endless_body(port, deadline, out):
    kinds = [("chunked", 100), ("CL=5MiB", 50), ("CL=1GiB", 50)]
    outcomes = {k: [] for k, _ in kinds}  # kind -> [(what happened, after how many seconds)]
    started = [0]

    async def one(kind):
        cl = {"CL=5MiB": 5 << 20, "CL=1GiB": 1 << 30}.get(kind)
        framing = f"Content-Length: {cl}" if cl else "Transfer-Encoding: chunked"
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
        except (OSError, asyncio.TimeoutError):
            started[0] += 1
            outcomes[kind].append(("connect failed", None))
            return
        w.write(f"POST /a HTTP/1.1\r\nHost: x\r\n{framing}\r\n\r\n".encode())
        start, what, after = time.monotonic(), "still open at the end", None
        started[0] += 1
        reading = asyncio.create_task(read_message(r))
        for _ in range(200):  # bounded: one piece a second until the deadline
            if time.monotonic() >= deadline:
                break
            try:
                w.write(b"1\r\na\r\n" if cl is None else b"a")
                await w.drain()
            except ConnectionError:
                pass
            done, _ = await asyncio.wait({reading}, timeout=1.0)
            if done:
                try:
                    what = str(status_of(reading.result()[0]))
                except Exception:  # EOF or reset before a whole response
                    what = "closed, no response"
                after = time.monotonic() - start
                break
        reading.cancel()
        w.close()
        outcomes[kind].append((what, after))

    tasks = [asyncio.create_task(one(k)) for k, n in kinds for _ in range(n)]
    while started[0] < 200 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    print("READY", flush=True)
    await asyncio.gather(*tasks, return_exceptions=True)
    for kind, results in outcomes.items():  # e.g. "100 x 504 (after min 60.0 / med 60.0 / max 60.1 s)"
        parts = []
        for what in sorted({w for w, _ in results}):
            afters = [a for w, a in results if w == what and a is not None]
            parts.append(f"{sum(1 for w, _ in results if w == what)} x {what}" + (f" ({summary(afters)})" if afters else ""))
        out[kind] = "; ".join(parts)


def attack_main(name, port, duration):
    out = {}
    fn = {"slowloris": slowloris, "header-flood": header_flood, "endless-body": endless_body}[name]
    asyncio.run(fn(port, time.monotonic() + duration, out))
    ru = resource.getrusage(resource.RUSAGE_SELF)
    out["cpu"] = ru.ru_utime + ru.ru_stime  # the attacker's own CPU seconds
    print(json.dumps(out), flush=True)


# ---------------------------------------------------------------- measuring side
async def normal_client(port, deadline, new_conn):
    lat, errors, rw = [], 0, None
    while time.monotonic() < deadline and len(lat) < 1_000_000:
        t0 = time.perf_counter()
        try:
            if rw is None:
                rw = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
            rw[1].write(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
            first, _ = await asyncio.wait_for(read_message(rw[0]), 5)
            if status_of(first) != 200:
                raise ConnectionError(first)
            lat.append((time.perf_counter() - t0) * 1000)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError):
            errors += 1
            rw[1].close() if rw else None
            rw = None
            await asyncio.sleep(0.1)
        if new_conn and rw:
            rw[1].close()
            rw = None
    if rw:
        rw[1].close()
    return lat, errors


def proc_stats(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    return cpu, rss / 1024, len(os.listdir(f"/proc/{pid}/fd"))


def established_to(ports):
    """Established TCP connections whose local port is each of `ports` (the upstreams' side)."""
    counts = dict.fromkeys(ports, 0)
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            port = int(local.split(":")[1], 16)
            if state == "01" and port in counts:
                counts[port] += 1
    return [counts[p] for p in ports]


def host_busy():
    with open("/proc/stat") as f:
        t = [int(x) for x in f.readline().split()[1:9]]
    return (sum(t) - t[3] - t[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def own_cpu():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def run_scenario(name, port, gw_pid, up_pids, up_ports):
    direct_port = up_ports[0]  # control: the normal upstream without the gateway
    duration, _ = SCENARIOS[name]
    cpu0, rss0, _ = proc_stats(gw_pid)
    up0, me0, host0 = sum(proc_stats(p)[0] for p in up_pids), own_cpu(), host_busy()
    t0, peak, fds, up_conns = time.monotonic(), [rss0], [0], [0, 0]
    attack = None
    if duration:
        attack = await asyncio.create_subprocess_exec(
            sys.executable, HERE, "--attack", name, str(port), str(duration), stdout=subprocess.PIPE)
        line = await asyncio.wait_for(attack.stdout.readline(), 60)
        assert line.strip() == b"READY", line

    async def sample():
        while True:
            _, rss, n = proc_stats(gw_pid)
            peak[0], fds[0] = max(peak[0], rss), max(fds[0], n)
            up_conns[:] = map(max, up_conns, established_to(up_ports))
            await asyncio.sleep(0.25)
    sampler = asyncio.create_task(sample())
    end = time.monotonic() + WINDOW
    (ka, ka_err), (nc, nc_err), (dc, dc_err) = await asyncio.gather(
        normal_client(port, end, False), normal_client(port, end, True), normal_client(direct_port, end, False))
    result = {}
    if attack:
        out, _ = await asyncio.wait_for(attack.communicate(), duration + 60)
        result = json.loads(out.decode().strip().splitlines()[-1])
    await asyncio.sleep(0.5)
    sampler.cancel()
    cpu1, rss1, _ = proc_stats(gw_pid)
    others = [sum(proc_stats(p)[0] for p in up_pids) - up0, result.pop("cpu", 0), own_cpu() - me0]
    others.append(host_busy() - host0 - (cpu1 - cpu0) - sum(others))  # anything else on the host
    return dict(ka=ka, ka_err=ka_err, nc=nc, nc_err=nc_err, dc=dc, dc_err=dc_err, wall=time.monotonic() - t0, cpu=cpu1 - cpu0,
                rss0=rss0, peak=peak[0], rss1=rss1, fds=fds[0], attack=result, others=others,
                up_conns=up_conns)


def pct(xs, p):
    return sorted(xs)[min(len(xs) - 1, int(len(xs) * p))] if xs else float("nan")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))  # inherited by the children
    binary = os.environ.get("PORTCULLIS", "/work/target-bench/release/portcullis")
    up_ports, gw_port = (free_port(), free_port()), free_port()
    shared = os.environ.get("SHARED_UPSTREAM") == "1"  # 1: attack traffic goes to the normal clients' upstream
    tmp = tempfile.mkdtemp(prefix="exhaustion-")
    cfg = os.path.join(tmp, "gateway.yaml")
    with open(cfg, "w") as f:
        f.write(f"""listeners:
  - name: bench
    bind: 127.0.0.1:{gw_port}
upstreams:
  normal:
    targets: [ "http://127.0.0.1:{up_ports[0]}" ]
  attack:
    targets: [ "http://127.0.0.1:{up_ports[1]}" ]
routes:
  - name: normal
    match: {{ path_prefix: /x }}
    upstream: normal
  - name: everything-else
    match: {{ path_prefix: / }}
    upstream: {"normal" if shared else "attack"}
""")
    log = open(os.path.join(tmp, "gateway.stderr"), "w+")
    procs = [subprocess.Popen([sys.executable, HERE, "--upstream", str(p)]) for p in up_ports]
    try:
        for _ in range(100):  # the upstreams first, so that the gateway never sees them down
            try:
                for p in up_ports:
                    socket.create_connection(("127.0.0.1", p), 1).close()
                break
            except OSError:
                time.sleep(0.1)
        procs.append(subprocess.Popen([binary, "run", "--config", cfg], stdout=log, stderr=subprocess.STDOUT))
        gw = procs[2]
        for _ in range(100):  # wait until the gateway answers through the upstream
            lat, _ = await normal_client(gw_port, time.monotonic() + 0.2, False)
            if lat:
                break
            await asyncio.sleep(0.1)
        await asyncio.gather(*(normal_client(gw_port, time.monotonic() + 3, k) for k in (False, True)))  # warm-up
        print(f"# Portcullis exhaustion run, {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        threads = next(l.split()[1] for l in open(f"/proc/{gw.pid}/status") if l.startswith("Threads:"))
        print(f"binary `{binary}` ({threads} threads); config: one plain listener, all limits at their "
              f"defaults (max_connections default 10000 fits the 1000 attack connections, so not changed); "
              f"`GET /x` (normal clients) goes to one upstream process, the attack's paths to "
              f"{'the SAME one (SHARED_UPSTREAM=1)' if shared else 'a second one'}; RLIMIT_NOFILE "
              f"{min(hard, 65536)}; three clients measured for {WINDOW:g} s per scenario, side by side, "
              f"while the attack runs (after 3 s of unmeasured warm-up before the baseline).\n")
        rows = []
        for name in SCENARIOS:
            if gw.poll() is not None:
                print(f"**gateway exited with status {gw.returncode} before `{name}`**")
                break
            r = await run_scenario(name, gw_port, gw.pid, [p.pid for p in procs[:2]], up_ports)
            rows.append((name, r))
            print(f"... {name} done", file=sys.stderr, flush=True)
            await asyncio.sleep(2)
        print("Normal clients' latency (requests / p50 / p99 / max in ms, errors):\n")
        print("| scenario | attack | keep-alive via gateway | new conn per request via gateway "
              "| control: keep-alive straight to the upstream |")
        print("| --- | --- | --- | --- | --- |")
        for name, r in rows:
            cells = [f"{len(xs)} / {pct(xs, .5):.2f} / {pct(xs, .99):.2f} / {max(xs or [0]):.1f} ({e})"
                     for xs, e in ((r["ka"], r["ka_err"]), (r["nc"], r["nc_err"]), (r["dc"], r["dc_err"]))]
            print(f"| {name} | {SCENARIOS[name][1]} | " + " | ".join(cells) + " |")
        print("\nThe gateway during each scenario (from the attack's start to its end), and the CPU of the rest:\n")
        print("| scenario | seconds | gateway RSS MiB start→peak→end | peak fds | peak upstream conns (normal / attack) "
              "| gateway CPU s (÷ wall) | upstreams / attacker / clients / rest of host CPU s |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for name, r in rows:
            print(f"| {name} | {r['wall']:.0f} | {r['rss0']:.1f}→{r['peak']:.1f}→{r['rss1']:.1f} | {r['fds']} | "
                  f"{r['up_conns'][0]} / {r['up_conns'][1]} | {r['cpu']:.2f} ({r['cpu'] / r['wall']:.2f}) | "
                  + " / ".join(f"{c:.1f}" for c in r["others"]) + " |")
        print("\nWhat happened to the attack connections:\n")
        for name, r in rows:
            if r["attack"]:
                print(f"- **{name}**: " + ", ".join(f"{k}: {v}" for k, v in r["attack"].items()))
        log.seek(0)
        lines = log.read().splitlines()
        bad = {}  # distinct panic/error/warn lines, without time stamp and request id -> count
        for l in lines:
            if any(w in l.lower() for w in ("panic", "error", "warn")):
                key = re.sub(r'request_id="\w+"', 'request_id=..', l.split(" ", 1)[-1])[:300]
                bad[key] = bad.get(key, 0) + 1
        print(f"\ngateway log: {len(lines)} lines, {sum(bad.values())} with panic/error/warn"
              f"{', still running' if gw.poll() is None else f', EXITED with {gw.returncode}'}")
        for l, n in list(bad.items())[:15]:
            print(f"    {n} x {l}")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        if os.environ.get("KEEP_TMP") == "1":
            print(f"\nconfig and gateway log kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--upstream"]:
        asyncio.run(upstream_main(int(sys.argv[2])))
    elif sys.argv[1:2] == ["--attack"]:
        attack_main(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    else:
        asyncio.run(main())

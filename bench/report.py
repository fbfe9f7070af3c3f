#!/usr/bin/env python3
"""Helper for bench/run.sh (stdlib only).

  report.py record --raw FILE --wrk WRK_OUTPUT ...   append one measured run
  report.py table  --raw FILE [--mem FILE]           print the markdown tables

run.sh reads the /proc counters itself (in bash, so no interpreter start-up
lands inside the measured window) and hands the raw numbers here. Everything
derived - per-request CPU, ratios, medians - is computed in one place, from
the raw TSV that is also kept in results/ so a table can be re-derived or
audited later.
"""

import argparse
import csv
import re
import statistics
import sys

FIELDS = [
    "round", "load", "case", "conns", "requests", "wrk_seconds", "rps",
    "p50_us", "p75_us", "p90_us", "p99_us", "socket_errors", "non_2xx",
    "proxy_ticks", "upstream_ticks", "wall_seconds", "clk_tck", "proxy_hwm_kb",
    "upstream_conns", "other_core_ticks",
]

# wrk prints durations with these suffixes (see its format_time / units_time).
TIME_UNITS_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}
TIME_RE = r"([\d.]+)(us|ms|s|m|h)"

CASE_LABEL = {
    "direct": "direct (no proxy)",
    "nginx": "nginx",
    "portcullis": "portcullis",
    "portcullis-jwt": "portcullis JWT (RS256, cached) + scope",
    "portcullis-limit": "portcullis per-IP rate limit",
    "portcullis-jwt-limit": "portcullis JWT + scope + rate limit",
    "nginx-tls": "nginx TLS",
    "portcullis-tls": "portcullis TLS",
    "portcullis-jwt-limit-tls": "portcullis TLS + JWT + scope + rate limit",
    "portcullis-obs": "portcullis + access log + metrics",
    "portcullis-obs-trace": "portcullis + access log + metrics + tracing 10%",
}
# (label, Portcullis case, NGINX case) for the Portcullis ÷ NGINX ratios.
PAIRS = [("plain", "portcullis", "nginx"), ("TLS", "portcullis-tls", "nginx-tls")]


def to_us(value, unit):
    return float(value) * TIME_UNITS_US[unit]


def parse_wrk(text):
    """Pull the numbers we need out of `wrk --latency` output, or fail loudly:
    a silently missing field would turn into a bogus table."""
    out = {}
    m = re.search(r"(\d+) requests in " + TIME_RE, text)
    if not m:
        raise SystemExit("report.py: no 'N requests in T' line in wrk output:\n" + text)
    out["requests"] = int(m.group(1))
    out["wrk_seconds"] = to_us(m.group(2), m.group(3)) / 1e6
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    out["rps"] = float(m.group(1)) if m else 0.0
    for pct in ("50", "75", "90", "99"):
        m = re.search(r"^\s+" + pct + r"%\s+" + TIME_RE, text, re.M)
        if not m:
            raise SystemExit(f"report.py: no {pct}% latency line (was --latency passed?):\n" + text)
        out[f"p{pct}_us"] = to_us(m.group(1), m.group(2))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    out["socket_errors"] = sum(int(g) for g in m.groups()) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    out["non_2xx"] = int(m.group(1)) if m else 0
    return out


def cmd_record(a):
    with open(a.wrk) as f:
        row = parse_wrk(f.read())
    row.update({
        "round": a.round, "load": a.load, "case": a.case, "conns": a.conns,
        "proxy_ticks": a.proxy_ticks, "upstream_ticks": a.upstream_ticks,
        "wall_seconds": f"{a.wall_ns / 1e9:.6f}", "clk_tck": a.clk_tck,
        "proxy_hwm_kb": a.proxy_hwm_kb, "upstream_conns": a.upstream_conns,
        "other_core_ticks": a.other_core_ticks,
    })
    try:
        new = open(a.raw).read() == ""
    except FileNotFoundError:
        new = True
    with open(a.raw, "a", newline="") as f:
        w = csv.DictWriter(f, FIELDS, delimiter="\t", lineterminator="\n")
        if new:
            w.writeheader()
        w.writerow(row)
    # One line per run on stderr so a long run shows progress.
    ptxt = ""
    if a.proxy_ticks != "":
        us = int(a.proxy_ticks) * 1e6 / a.clk_tck / max(row["requests"], 1)
        ptxt = f"  proxy {us:.1f} us/req"
    print(f"  round {a.round} {a.load:<4} {a.case:<24} {row['rps']:>9.0f} req/s  "
          f"p50 {row['p50_us']:.0f} us  p99 {row['p99_us']:.0f} us{ptxt}", file=sys.stderr)


# ---------------------------------------------------------------- table


def derive(r):
    """Per-run figures from the raw counters. A tick is 1/CLK_TCK s of CPU."""
    clk = float(r["clk_tck"])
    req = int(r["requests"])
    d = {
        "rps": float(r["rps"]),
        "p50": float(r["p50_us"]),
        "p99": float(r["p99_us"]),
        "errors": int(r["socket_errors"]) + int(r["non_2xx"]),
    }
    d["up_conns"] = int(r["upstream_conns"])
    d["other_core"] = int(r["other_core_ticks"]) / clk / float(r["wall_seconds"])
    ut = int(r["upstream_ticks"])
    d["up_us"] = ut * 1e6 / clk / req if req else None
    if r["proxy_ticks"] != "":
        pt = int(r["proxy_ticks"])
        d["px_us"] = pt * 1e6 / clk / req if req else None
        # Requests cancel out: this is proxy CPU/req over upstream CPU/req.
        d["px_over_up"] = pt / ut if ut else None
        d["px_core"] = pt / clk / float(r["wall_seconds"])
        d["px_ticks"] = pt
        d["hwm_mib"] = int(r["proxy_hwm_kb"]) / 1024 if r["proxy_hwm_kb"] else None
    return d


def fmt_num(x):
    if x is None:
        return "n/a"
    ax = abs(x)
    if ax >= 1000:
        return f"{x:,.0f}"
    if ax >= 100:
        return f"{x:.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def fmt_int(x):
    return f"{x:,.0f}"


def summary(values, fmt=fmt_num):
    """'median (min-max)' over rounds; a single round prints just the value."""
    vals = [v for v in values if v is not None]
    if not vals:
        return "—"
    med = statistics.median(vals)
    if len(vals) == 1:
        return fmt(med)
    return f"{fmt(med)} ({fmt(min(vals))}–{fmt(max(vals))})"


def cmd_table(a):
    with open(a.raw) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows:
        raise SystemExit("report.py: no measurements recorded")

    # runs[load][case][round] = derived figures
    runs = {}
    for r in rows:
        runs.setdefault(r["load"], {}).setdefault(r["case"], {})[int(r["round"])] = derive(r)
    seen = {r["case"] for r in rows}
    # Plain then TLS, each NGINX first, whatever order CASES ran them in.
    case_order = [c for c in CASE_LABEL if c in seen] + sorted(seen - set(CASE_LABEL))
    rounds = sorted({int(r["round"]) for r in rows})
    out = []
    warnings = []

    def col(load, case, key):
        return [runs[load][case][rnd].get(key) for rnd in rounds if rnd in runs[load].get(case, {})]

    def per_round(load, fn):
        """fn(round) -> value or None; for ratios taken per round before the median."""
        vals = []
        for rnd in rounds:
            try:
                vals.append(fn(runs[load], rnd))
            except (KeyError, TypeError, ZeroDivisionError):
                pass
        return vals

    def check_foreign(load, case):
        busy = [c for c in col(load, case, "other_core") if c is not None and c > 0.05]
        if busy:
            warnings.append(
                f"{case} ({load}): something other than the proxy used {max(busy):.0%} of the "
                f"proxy's core in {len(busy)} run(s); the host was not quiet, so treat those "
                "runs with suspicion (see other_core_ticks in the raw TSV).")

    n = len(rounds)
    if "c50" in runs:
        out.append(f"## Saturated: `wrk -t1 -c50`, median (min–max) over {n} round(s)\n")
        out.append("| case | req/s | p50 µs | p99 µs | proxy CPU µs/req | proxy ÷ upstream CPU/req "
                   "| proxy core use | upstream CPU µs/req | proxy peak RSS MiB | new upstream conns "
                   "| errors |")
        out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for case in case_order:
            if case not in runs["c50"]:
                continue
            has_px = case != "direct"
            out.append("| " + " | ".join([
                CASE_LABEL.get(case, case),
                summary(col("c50", case, "rps")),
                summary(col("c50", case, "p50")),
                summary(col("c50", case, "p99")),
                summary(col("c50", case, "px_us")) if has_px else "—",
                summary(col("c50", case, "px_over_up")) if has_px else "—",
                summary(col("c50", case, "px_core")) if has_px else "—",
                summary(col("c50", case, "up_us")),
                summary(col("c50", case, "hwm_mib")) if has_px else "—",
                summary(col("c50", case, "up_conns"), fmt_int) if has_px else "—",
                str(sum(col("c50", case, "errors"))),
            ]) + " |")
            check_foreign("c50", case)
            if has_px:
                low = [c for c in col("c50", case, "px_core") if c is not None and c < 0.95]
                if low:
                    warnings.append(
                        f"{case}: proxy used < 0.95 of a core in {len(low)} saturated run(s) "
                        f"(min {min(low):.2f}); the load did not saturate it, so its CPU/req "
                        "is not comparable to a saturated figure.")
                few = [t for t in col("c50", case, "px_ticks") if t is not None and t < 100]
                if few:
                    warnings.append(
                        f"{case}: only {min(few)} CPU ticks in a saturated run; at 1 tick "
                        "resolution use a longer DURATION for tighter figures.")
                many = [c for c in col("c50", case, "up_conns") if c > 100]
                if many:
                    warnings.append(
                        f"{case}: opened up to {max(many):,} upstream connections in a saturated "
                        "run: it does not reuse its upstream connections, which costs both it and "
                        "the upstream.")
        out.append("")
        out.append("`new upstream conns`: connections the upstream accepted during the run (for "
                   "`direct`, wrk's own); a proxy that reuses its upstream connections opens "
                   "next to none. `proxy peak RSS` is the process's high-water mark so far "
                   "(VmHWM), not just this run's.\n")

    if "c1" in runs:
        out.append(f"## One connection: `wrk -t1 -c1`, median (min–max) over {n} round(s)\n")
        out.append("Added latency is the proxy's p50/p99 minus direct's in the same round, "
                   "then the median over rounds (for the TLS cases it includes the TLS work).\n")
        out.append("| case | req/s | p50 µs | p99 µs | added p50 µs | added p99 µs "
                   "| proxy CPU µs/req | proxy ÷ upstream CPU/req | errors |")
        out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        have_direct = "direct" in runs["c1"]
        for case in case_order:
            if case not in runs["c1"]:
                continue
            has_px = case != "direct"

            def added(key, case=case):
                return per_round("c1", lambda L, r: L[case][r][key] - L["direct"][r][key])

            out.append("| " + " | ".join([
                CASE_LABEL.get(case, case),
                summary(col("c1", case, "rps")),
                summary(col("c1", case, "p50")),
                summary(col("c1", case, "p99")),
                summary(added("p50")) if has_px and have_direct else "—",
                summary(added("p99")) if has_px and have_direct else "—",
                summary(col("c1", case, "px_us")) if has_px else "—",
                summary(col("c1", case, "px_over_up")) if has_px else "—",
                str(sum(col("c1", case, "errors"))),
            ]) + " |")
            check_foreign("c1", case)
        out.append("")

    # The comparison that matters: Portcullis against NGINX, ratio per round
    # first (both measured minutes apart on the same host), then the median.
    pairs = [(lbl, p, q) for lbl, p, q in PAIRS if any(p in runs[l] and q in runs[l] for l in runs)]
    if pairs:
        out.append("## Portcullis ÷ NGINX (ratio per round, then median (min–max))\n")
        out.append("Below 1.00 means Portcullis is cheaper / faster. Plain: `portcullis` ÷ `nginx`; "
                   "TLS: `portcullis-tls` ÷ `nginx-tls`.\n")
        out.append("| figure | " + " | ".join(lbl for lbl, _, _ in pairs) + " |")
        out.append("| --- |" + " ---: |" * len(pairs))

        def ratio(load, key, label):
            if load not in runs:
                return
            cells = []
            for _, p, q in pairs:
                if p in runs[load] and q in runs[load]:
                    cells.append(summary(per_round(load, lambda L, r: L[p][r][key] / L[q][r][key])))
                else:
                    cells.append("—")
            out.append(f"| {label} | " + " | ".join(cells) + " |")

        ratio("c50", "px_us", "saturated: CPU µs/req")
        ratio("c50", "px_over_up", "saturated: CPU/req normalised by upstream CPU/req")
        ratio("c50", "rps", "saturated: req/s")
        ratio("c50", "hwm_mib", "saturated: peak RSS")
        ratio("c1", "px_us", "one connection: CPU µs/req")
        ratio("c1", "p50", "one connection: p50 latency")
        ratio("c1", "p99", "one connection: p99 latency")
        out.append("")

    # Every Portcullis route kind against NGINX: CPU per request ÷ NGINX plain,
    # and for the TLS cases also ÷ NGINX TLS, per round, then the median.
    kinds = [c for c in case_order if c.startswith("portcullis")]
    refs = [q for q in ("nginx", "nginx-tls") if any(q in runs[l] for l in runs)]
    if kinds and refs:
        out.append("## Each Portcullis case ÷ NGINX, CPU per request (ratio per round, then "
                   "median (min–max))\n")
        out.append("Every Portcullis case against `nginx` (plain), and the TLS ones also against "
                   "`nginx-tls`; below 1.00 means that Portcullis case costs less CPU per request "
                   "than that NGINX. `normalised` divides each by its upstream's CPU per request "
                   "in the same run first (see the saturated table).\n")
        heads, cols = [], []
        for load, key, what in (("c50", "px_us", "saturated: CPU µs/req"),
                                ("c50", "px_over_up", "saturated: normalised"),
                                ("c1", "px_us", "one connection: CPU µs/req")):
            if load not in runs:
                continue
            for q in refs:
                heads.append(f"{what} ÷ {CASE_LABEL[q]}")
                cols.append((load, key, q))
        out.append("| case | " + " | ".join(heads) + " |")
        out.append("| --- |" + " ---: |" * len(heads))
        for case in kinds:
            cells = []
            for load, key, q in cols:
                if (q == "nginx-tls" and not case.endswith("-tls")) or case not in runs[load] \
                        or q not in runs[load]:
                    cells.append("—")
                else:
                    cells.append(summary(per_round(
                        load, lambda L, r, case=case, key=key, q=q: L[case][r][key] / L[q][r][key])))
            out.append(f"| {CASE_LABEL.get(case, case)} | " + " | ".join(cells) + " |")
        out.append("")

    # What TLS adds to each proxy, per round, then the median.
    tls_pairs = [(p, p + "-tls") for p in ("nginx", "portcullis", "portcullis-jwt-limit")
                 if any(p in runs[l] and p + "-tls" in runs[l] for l in runs)]
    if tls_pairs:
        out.append("## What TLS adds (TLS case minus plain case per round, then median (min–max))\n")
        out.append("With keep-alive the handshake is paid once per connection and amortised over "
                   "the run: this is the cost of encrypting and decrypting the requests, not of "
                   "handshakes.\n")
        out.append("| proxy | saturated: added CPU µs/req | saturated: TLS ÷ plain CPU/req "
                   "| one connection: added CPU µs/req | one connection: added p50 µs |")
        out.append("| --- | ---: | ---: | ---: | ---: |")
        for p, t in tls_pairs:
            def diff(load, key, p=p, t=t):
                return summary(per_round(load, lambda L, r: L[t][r][key] - L[p][r][key])) if load in runs else "—"

            def quot(load, key, p=p, t=t):
                return summary(per_round(load, lambda L, r: L[t][r][key] / L[p][r][key])) if load in runs else "—"

            out.append(f"| {p} | {diff('c50', 'px_us')} | {quot('c50', 'px_us')} "
                       f"| {diff('c1', 'px_us')} | {diff('c1', 'p50')} |")
        out.append("")

    # What an RS256 JWT and a scope check on every request add to the plain
    # proxy, per round, then the median.
    if any("portcullis" in runs[l] and "portcullis-jwt" in runs[l] for l in runs):
        p, j = "portcullis", "portcullis-jwt"

        def jwt_cells(load):
            if load not in runs or p not in runs[load] or j not in runs[load]:
                return ["—"] * 3
            return [summary(per_round(load, lambda L, r: L[j][r]["px_us"] / L[p][r]["px_us"])),
                    summary(per_round(load, lambda L, r: L[j][r]["px_us"] - L[p][r]["px_us"])),
                    summary(per_round(load, lambda L, r: L[j][r]["p50"] - L[p][r]["p50"]))]

        out.append("## What JWT (RS256) and a scope check on every request add (per round, then "
                   "median (min–max))\n")
        out.append("`portcullis-jwt` is the plain Portcullis proxy with a route that requires an "
                   "RS256 JWT and a scope (`authorize: { scopes: [...] }`); wrk sends one valid "
                   "token (`Authorization: Bearer ...`) on every request. The gateway caches "
                   "verified tokens (the token itself, found by a seeded hash and compared in full, → "
                   "identity, until `exp`, at most an hour), so with one hot token this is the "
                   "**cached path**: what a busy client with a long-lived token costs (a hash, a "
                   "lookup, a comparison, the scope check, the header "
                   "handling). The uncached cost, one RS256 signature check per new token, comes "
                   "from `cargo bench --bench jwt` (~15.7 µs on this machine, see BENCHMARKS.md), "
                   "not from this run.\n")
        out.append("| load | JWT (RS256, cached) + scope ÷ plain Portcullis CPU µs/req "
                   "| added CPU µs/req | added p50 µs |")
        out.append("| --- | ---: | ---: | ---: |")
        out.append("| saturated (c50) | " + " | ".join(jwt_cells("c50")) + " |")
        out.append("| one connection (c1) | " + " | ".join(jwt_cells("c1")) + " |")
        out.append("")
        if "c50" in runs and p in runs["c50"] and j in runs["c50"]:
            rs = per_round("c50", lambda L, r: L[j][r]["px_us"] / L[p][r]["px_us"])
            if rs:
                out.append("JWT (RS256, cached) + scope ÷ plain Portcullis, saturated CPU µs/req per round: "
                           + ", ".join(f"{x:.3f}" for x in rs)
                           + f"; median {statistics.median(rs):.3f}.\n")

    # What observability adds to the plain proxy: each `-obs` case against
    # `portcullis` (the same build with nothing recorded), per round, then the median.
    obs = [c for c in ("portcullis-obs", "portcullis-obs-trace") if any(c in runs[l] for l in runs)]
    if obs and any("portcullis" in runs[l] for l in runs):
        p = "portcullis"
        out.append("## What logs, metrics and traces add (per round, then median (min–max))\n")
        out.append("`portcullis-obs` is the plain Portcullis proxy with an ECS access log written to "
                   "a file (by its own thread) and the admin API configured, so request metrics are "
                   "recorded; `portcullis-obs-trace` adds OTLP/HTTP span export at a 10% sample to a "
                   "local sink (bench/otlp_sink.py). Both against `portcullis`, the same build with "
                   "none of them configured. The CPU is the gateway process's (all its threads); the "
                   "kernel's page-cache writeback of the log file is not in it.\n")
        out.append("| case | load | CPU µs/req ÷ plain | normalised ÷ plain | added CPU µs/req "
                   "| added p50 µs |")
        out.append("| --- | --- | ---: | ---: | ---: | ---: |")
        for c in obs:
            for load, what in (("c50", "saturated (c50)"), ("c1", "one connection (c1)")):
                if load not in runs or p not in runs[load] or c not in runs[load]:
                    continue
                cells = [
                    summary(per_round(load, lambda L, r, c=c: L[c][r]["px_us"] / L[p][r]["px_us"])),
                    summary(per_round(load, lambda L, r, c=c: L[c][r]["px_over_up"] / L[p][r]["px_over_up"])),
                    summary(per_round(load, lambda L, r, c=c: L[c][r]["px_us"] - L[p][r]["px_us"])),
                    summary(per_round(load, lambda L, r, c=c: L[c][r]["p50"] - L[p][r]["p50"])),
                ]
                out.append(f"| {CASE_LABEL.get(c, c)} | {what} | " + " | ".join(cells) + " |")
        out.append("")
        for c in obs:
            if "c50" in runs and p in runs["c50"] and c in runs["c50"]:
                rs = per_round("c50", lambda L, r, c=c: L[c][r]["px_us"] / L[p][r]["px_us"])
                if rs:
                    out.append(f"{CASE_LABEL.get(c, c)} ÷ plain Portcullis, saturated CPU µs/req per "
                               "round: " + ", ".join(f"{x:.3f}" for x in rs)
                               + f"; median {statistics.median(rs):.3f}.\n")

    if a.mem:
        out.extend(memory_table(a.mem, warnings))

    errs = sum(d["errors"] for L in runs.values() for C in L.values() for d in C.values())
    if errs:
        warnings.append(f"{errs} wrk socket errors / non-2xx responses in total: see the raw TSV.")
    if warnings:
        out.append("## Warnings\n")
        out.extend(f"- {w}" for w in warnings)
        out.append("")
    print("\n".join(out))


def memory_table(path, warnings):
    with open(path) as f:
        rows = {r["case"]: r for r in csv.DictReader(f, delimiter="\t")}
    if not rows:
        return []
    n = {int(r["conns"]) for r in rows.values()}
    out = [f"## Memory (one measurement per proxy, {'/'.join(map(str, sorted(n)))} idle connections)\n",
           "On a fresh instance of each proxy (same config), started after the CPU runs: idle "
           "RSS is read right after start-up, then N HTTP/1.1 connections are opened one after "
           "another, each with one `GET /` answered and then left idle. Per idle connection = "
           "(RSS with them open − RSS just before) ÷ N: user-space memory only (the kernel's "
           "socket buffers are not in RSS). RSS is the NGINX worker's or the Portcullis "
           "process's.\n",
           "| proxy | idle RSS after start MiB | RSS before MiB | RSS with N idle conns MiB "
           "| per idle conn bytes | RSS after closing them MiB | still open |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    per = {}
    for case in [c for c in CASE_LABEL if c in rows] + sorted(set(rows) - set(CASE_LABEL)):
        r = rows[case]
        conns, alive = int(r["conns"]), int(r["conns_alive"])
        b, w, c = int(r["rss_before_kb"]), int(r["rss_with_kb"]), int(r["rss_closed_kb"])
        per[case] = (w - b) * 1024 / conns
        idle = int(r["idle_rss_kb"])
        out.append(f"| {CASE_LABEL.get(case, case)} | {idle / 1024:.1f} | {b / 1024:.1f} | {w / 1024:.1f} "
                   f"| {per[case]:,.0f} | {c / 1024:.1f} | {alive}/{conns} |")
        if alive != conns:
            warnings.append(f"{case}: only {alive} of {conns} idle connections were still open "
                            "when checked, so its per-connection figure is too low.")
    out.append("")
    ratios = []
    for lbl, p, q in PAIRS:
        if p in rows and q in rows:
            ip, iq = int(rows[p]["idle_rss_kb"]), int(rows[q]["idle_rss_kb"])
            cp, cq = per[p], per[q]
            ratios.append(f"{lbl}: idle RSS {ip / iq:.2f}, per idle connection "
                          + (f"{cp / cq:.2f}" if cq > 0 else "n/a"))
    if ratios:
        out.append("Portcullis ÷ NGINX: " + "; ".join(ratios) + ".\n")
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("--raw", required=True)
    r.add_argument("--wrk", required=True)
    r.add_argument("--round", type=int, required=True)
    r.add_argument("--load", required=True)
    r.add_argument("--case", required=True)
    r.add_argument("--conns", type=int, required=True)
    r.add_argument("--proxy-ticks", default="", help="empty for the direct case")
    r.add_argument("--upstream-ticks", type=int, required=True)
    r.add_argument("--wall-ns", type=int, required=True)
    r.add_argument("--clk-tck", type=int, required=True)
    r.add_argument("--proxy-hwm-kb", default="")
    r.add_argument("--upstream-conns", type=int, required=True,
                   help="connections the upstream accepted during the run")
    r.add_argument("--other-core-ticks", type=int, required=True,
                   help="CPU ticks on the proxy's core not used by the proxy")
    t = sub.add_parser("table")
    t.add_argument("--raw", required=True)
    t.add_argument("--mem", help="memory TSV from run.sh (idle_conns.py)")
    a = p.parse_args()
    {"record": cmd_record, "table": cmd_table}[a.cmd](a)


if __name__ == "__main__":
    main()

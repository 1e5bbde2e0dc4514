#!/usr/bin/env python3
"""Helpers for h2-bench.sh (Python 3 standard library; /proc readers, the noise monitor and
the results file come from benchlib.py, the certificates from tls_bench.py).

Subcommands:
  h2load RESULTS KEY CPU_BEFORE CPU_AFTER OUT...
                                record one load: the h2load outputs OUT... (one per h2load
                                run; their requests and times are added up) and the proxy's
                                CPU before and after ("USER SYSTEM" seconds)
  report RESULTS                print the Markdown report
"""
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib  # noqa: E402

ALL_MODES = [("sluice", "Sluice"), ("haproxy", "HAProxy"),
             ("haproxy-always", "HAProxy (http-reuse always)"), ("nginx", "nginx")]
MODES = ALL_MODES
ALL_LOADS = [
    # key, label, unit
    ("h2-ka", "keep-alive over TLS h2: h2load -c{ka_c} -m{ka_m}, 64 B responses", "req"),
    ("h2c-ka", "keep-alive over h2c (prior knowledge): h2load -c{ka_c} -m{ka_m}, 64 B responses",
     "req"),
    ("h2-conn", "new connection per request: full TLS 1.3 handshake + one h2 stream "
                "(h2load -n{hs_c} -c{hs_c} -m1, in rounds)", "conn"),
]
LOADS = ALL_LOADS
QUIET = 10.0

REQ_RX = re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                    r"(\d+) failed, (\d+) errored, (\d+) timeout")
STATUS_RX = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
TIME_RX = re.compile(r"finished in ([\d.]+)(ms|s|us)")


def parse_h2load(text):
    m, s, t = REQ_RX.search(text), STATUS_RX.search(text), TIME_RX.search(text)
    if not (m and s and t):
        return None
    secs = float(t.group(1)) * {"s": 1.0, "ms": 1e-3, "us": 1e-6}[t.group(2)]
    proto = re.search(r"Application protocol: (\S+)", text)
    tls = re.search(r"TLS Protocol: (\S+)", text)
    return {"total": int(m.group(1)), "succeeded": int(m.group(4)), "failed": int(m.group(5)),
            "errored": int(m.group(6)), "timeout": int(m.group(7)), "2xx": int(s.group(1)),
            "secs": secs, "proto": proto.group(1) if proto else None,
            "tls": tls.group(1) if tls else None}


def record(results, key, before, after, outs):
    put = benchlib.put
    runs = []
    for path in outs:
        with open(path) as f:
            text = f.read()
        r = parse_h2load(text)
        if r is None:
            put(results, f"{key}.error", f"cannot parse h2load output ({path}): "
                + " ".join(text.split())[-200:])
            print(f"cannot parse {path}: {text[-300:]}")
            return
        runs.append(r)
    protos = {r["proto"] for r in runs}
    if len(protos) != 1 or not protos <= {"h2", "h2c"}:
        put(results, f"{key}.error", f"h2load negotiated {sorted(map(str, protos))}, not h2")
        print(f"not h2: {protos}")
        return
    n = sum(r["succeeded"] for r in runs)
    secs = sum(r["secs"] for r in runs)
    errors = sum(r["failed"] + r["errored"] + r["timeout"] + (r["succeeded"] - r["2xx"])
                 for r in runs)
    u0, s0 = benchlib.parse_cpu(before)
    u1, s1 = benchlib.parse_cpu(after)
    put(results, f"{key}.units", n)
    put(results, f"{key}.rate", f"{n / secs:.1f}" if secs else "0")
    put(results, f"{key}.errors", errors)
    put(results, f"{key}.runs", len(runs))
    put(results, f"{key}.tls", runs[0]["tls"])
    put(results, f"{key}.cpu_user", f"{u1 - u0:.2f}")
    put(results, f"{key}.cpu_sys", f"{s1 - s0:.2f}")
    put(results, f"{key}.secs", f"{secs:.3f}")
    print(f"{n / secs if secs else 0:.0f}/s over {len(runs)} h2load run(s), CPU "
          f"{u1 - u0:.2f}+{s1 - s0:.2f} s for {n}, errors {errors}")


def derived(r, key):
    num = benchlib.num
    n, u, s = num(r, f"{key}.units"), num(r, f"{key}.cpu_user"), num(r, f"{key}.cpu_sys")
    if not n or u is None or s is None or u < 0 or s < 0 or r.get(f"{key}.error"):
        return {}
    return {"rate": num(r, f"{key}.rate"), "errors": num(r, f"{key}.errors"),
            "cpu": (u + s) / n * 1e6, "cpu_user": u / n * 1e6, "cpu_sys": s / n * 1e6,
            "up_max": num(r, f"{key}.up_conns_max"), "up_seen": num(r, f"{key}.up_conns_seen"),
            "up_opened": num(r, f"{key}.up_opened")}


def rounds(r, mode):
    return benchlib.rounds_of(r, mode)


noise_pct = benchlib.noise_pct


def table(L, mid, meta):
    names = [name for _, name in MODES]
    L.append("| load | CPU µs per unit (user + sys): " + " | ".join(names) +
             " | Sluice / HAProxy | Sluice / best peer | rate: " + " / ".join(names) +
             " | errors |")
    L.append("|" + " --- |" * (len(MODES) + 5))
    for ld, label, unit in LOADS:
        def cell(m):
            d = mid[(m, ld)]
            if d.get("cpu") is None:
                return "—"
            return f"{d['cpu']:.1f} µs/{unit} ({d['cpu_user']:.1f} + {d['cpu_sys']:.1f})"
        s = mid.get(("sluice", ld), {}).get("cpu")
        peers = [mid[(m, ld)].get("cpu") for m, _ in MODES if m != "sluice"]
        peers = [p for p in peers if p]
        best = min(peers) if peers else None
        ratio = f"**{s / best:.2f}**" if s and best else "—"
        hap = mid.get(("haproxy", ld), {}).get("cpu")
        ratio = (f"**{s / hap:.2f}**" if s and hap else "—") + " | " + ratio
        rates = " / ".join("—" if mid[(m, ld)].get("rate") is None else
                           f"{mid[(m, ld)]['rate']:.0f}/s" for m, _ in MODES)
        errs = " / ".join("—" if mid[(m, ld)].get("errors") is None else
                          f"{mid[(m, ld)]['errors']:.0f}" for m, _ in MODES)
        L.append(f"| {label.format(**meta)} | " + " | ".join(cell(m) for m, _ in MODES) +
                 f" | {ratio} | {rates} | {errs} |")


def conn_table(L, mid):
    """The proxies' connections to the origin during the keep-alive loads."""
    L.append("| load | " + " | ".join(name for _, name in MODES) + " |")
    L.append("|" + " --- |" * (len(MODES) + 1))
    for ld, _, _ in LOADS:
        if not any(mid[(m, ld)].get("up_max") is not None for m, _ in MODES):
            continue
        cells = []
        for m, _ in MODES:
            d = mid[(m, ld)]
            if d.get("up_max") is None:
                cells.append("—")
                continue
            c = f"{d['up_max']:.0f} at once, {d['up_seen']:.0f} seen"
            if d.get("up_opened") is not None:
                c += f" ({d['up_opened']:.0f} opened, metrics)"
            cells.append(c)
        L.append(f"| {ld} | " + " | ".join(cells) + " |")


def report(results):
    global MODES, LOADS
    r = benchlib.load(results)
    med = benchlib.median
    meta = {k[5:]: v for k, v in r.items() if k.startswith("meta.")}
    if meta.get("modes"):
        MODES = [(m, n) for m, n in ALL_MODES if m in meta["modes"].split()]
    if meta.get("loads"):
        LOADS = [x for x in ALL_LOADS if x[0] in meta["loads"].split()]
    upstream = meta.get("upstream", "http1")
    fields = ("cpu", "cpu_user", "cpu_sys", "rate", "errors", "up_max", "up_seen", "up_opened")
    per = {(m, ld): [derived(r, f"{m}@{n}.{ld}") for n in rounds(r, m)]
           for m, _ in MODES for ld, _, _ in LOADS}
    mid = {k: {f: med([d.get(f) for d in v]) for f in fields} for k, v in per.items()}
    g = lambda k: meta.get(k, "?")  # noqa: E731
    L = [f"# Sluice HTTP/2 benchmark — {g('date')}", ""]
    if upstream == "h2c":
        up = ("HTTP/2 with prior knowledge (h2c) to one nghttpd origin (64 B file): Sluice "
              "`protocol: h2c`, HAProxy `server ... proto h2` (http-reuse safe, and always), "
              "nginx `grpc_pass` (one stream per upstream connection, keepalive pool)")
    elif upstream == "h2":
        up = ("HTTP/2 over TLS (ALPN h2, certificate verified with SNI) to one nghttpd origin "
              "(64 B file): Sluice `protocol: h2` with `tls.serverName` and `tls.ca`, HAProxy "
              "`server ... ssl verify required ca-file sni verifyhost alpn h2 proto h2` (http-reuse "
              "safe, and always), nginx `grpc_pass grpcs://` with `grpc_ssl_verify on`")
    else:
        up = "HTTP/1.1 keep-alive to one nginx origin (64 B file)"
    L.append(
        f"Loopback, TLS with ALPN h2 (and an h2c listener) on every proxy, {up}. "
        f"Each proxy pinned to CPU {g('proxy_cpu')}, one worker/thread; h2load "
        f"and the origin on CPU {g('load_cpu')}. Certificate: ECDSA P-256 (CN localhost). "
        f"Keep-alive: h2load -n {g('ka_n')} -c {g('ka_c')} -m {g('ka_m')} (after a warm-up "
        f"run). "
        + (f"New connections: h2load -n {g('hs_c')} -c {g('hs_c')} -m 1 run "
           f"{g('hs_runs')} times (every client one connection and one request; h2load "
           f"offers no TLS session, so each is a full handshake). "
           if any(ld == "h2-conn" for ld, _, _ in LOADS) else "")
        + f"{g('rounds')} interleaved round(s), "
        f"medians. CPU = utime + stime of the proxy's processes (/proc/PID/stat before and "
        f"after the load), per request or per connection.")
    L.append("")
    table(L, mid, meta)
    if any(v.get("up_max") is not None for v in mid.values()):
        L += ["", "Connections from the proxy to the origin during the keep-alive load (ss "
              "every 0.2 s: the most at once, distinct ones seen; medians):", ""]
        conn_table(L, mid)
    quiet = {}
    for (m, ld), v in per.items():
        ok = [d for n, d in zip(rounds(r, m), v)
              if (noise_pct(r, f"{m}@{n}") or 100) <= QUIET]
        quiet[(m, ld)] = {f: med([d.get(f) for d in ok]) for f in fields}
    L.append("")
    L.append(f"Quiet rounds only (other processes ≤ {QUIET:.0f} % of a CPU during that "
             "proxy's turn):")
    L.append("")
    table(L, quiet, meta)
    L.append("")
    L.append("Per round (CPU per unit @ rate):")
    L.append("")
    for ld, _, unit in LOADS:
        parts = []
        for m, name in MODES:
            vals = ["—" if d.get("cpu") is None else f"{d['cpu']:.1f} µs @ {d['rate']:.0f}/s"
                    for d in per[(m, ld)]]
            parts.append(f"{name}: " + (", ".join(vals) or "—"))
        L.append(f"- {ld}: " + "; ".join(parts))
    notes = []
    for m, _ in MODES:
        for n in rounds(r, m):
            notes += benchlib.round_notes(r, m, n, [ld for ld, _, _ in LOADS], ("check",), 200)
    if notes:
        L += ["", "Notes:"] + notes
    L += ["", "Versions: " + "; ".join(f"{k}: {g(k)}" for k in
                                       ("sluice", "haproxy", "nginx", "h2load", "nghttpd",
                                        "openssl", "kernel") if k in meta),
          f"Load average at the end: {g('load_avg')}"]
    return "\n".join(L)


def main():
    a = sys.argv[1:]
    if not a:
        sys.exit(__doc__)
    if a[0] == "h2load" and len(a) >= 6:
        record(a[1], a[2], a[3], a[4], a[5:])
    elif a[0] == "report" and len(a) == 2:
        print(report(a[1]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()

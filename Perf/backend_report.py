"""I/O backend report for one Perf/http-bench.sh, Perf/tls-bench.sh or Perf/l4-bench.sh run with
MODES="sluice-epoll sluice-uring <peers...>" (REPORT_KIND=backend): per load and mode, the
proxy's CPU per unit (user and system apart), system calls per unit (the SYSCALLS=1 round,
`perf stat -e 'syscalls:sys_enter_*'`, not in the CPU figures), context switches per unit
(voluntary + nonvoluntary, all threads), the rate and errors; then io_uring / epoll and
io_uring / the better peer (the peer with the least CPU per unit on that load).

Units: a request (http, tls keep-alive: µs), a connection (tls handshakes, l4 short: µs),
a GB moved (bulk: CPU seconds per GB), an idle connection (l4 idle: RSS bytes per connection).
Figures are medians over the interleaved numbered rounds (per-round totals in brackets).

Usage: python3 Perf/backend_report.py Perf/out/{http,tls,l4}-STAMP/results.txt
"""

import statistics
import sys

from benchlib import result_figures

EPOLL, URING = "sluice-epoll", "sluice-uring"


def num(fig, key):
    try:
        return float(fig[key])
    except (KeyError, ValueError):
        return None


def unit_of(load, fig):
    """(unit name, units in this run, rate, rate name) or None when the load has no unit."""
    if "rss_after" in fig:
        n = num(fig, "connections")
        return ("idle conn", n, None, "") if n else None
    if "requests" in fig:
        return "req", num(fig, "requests"), num(fig, "rps"), "req/s"
    if "units" in fig:
        if load.endswith("bulk"):
            b = num(fig, "bytes")
            return "GB", b / 1e9 if b else None, num(fig, "rate"), "req/s"
        return ("conn" if load.endswith("hs") else "req"), num(fig, "units"), num(fig, "rate"), (
            "conn/s" if load.endswith("hs") else "req/s")
    if "gbps" in fig:
        b = num(fig, "bytes")
        return "GB", b / 1e9 if b else None, num(fig, "gbps"), "GB/s"
    if "cps" in fig:
        return "conn", num(fig, "connections"), num(fig, "cps"), "conn/s"
    return None


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def main(path):
    values = {}
    figures, meta = result_figures(path)
    for mode, round_, load, figure, value in figures:
        values.setdefault(mode, {}).setdefault(round_, {}).setdefault(load, {})[figure] = value

    modes = [m for m in meta.get("modes", "").split() if m in values] or sorted(values)
    loads = []
    for m in modes:
        for r, per_load in values[m].items():
            for ld, fig in per_load.items():
                if ld not in loads and unit_of(ld, fig):
                    loads.append(ld)

    def figures(mode, load):
        """Per numbered round: dict of per-unit figures; plus the syscall round's figures."""
        out = []
        sysfig = None
        for r in sorted(values.get(mode, {}), key=lambda r: int(r) if r.isdigit() else 1 << 30):
            fig = values[mode][r].get(load)
            if not fig:
                continue
            u = unit_of(load, fig)
            if not u or not u[1]:
                continue
            unit, n, rate, rate_name = u
            scale = 1.0 if unit == "GB" else 1e6
            f = {"unit": unit, "rate": rate, "rate_name": rate_name}
            if unit == "idle conn":
                f["rss"] = (num(fig, "rss_after") - num(fig, "rss_before")) / n
            else:
                cu, cs = num(fig, "cpu_user"), num(fig, "cpu_sys")
                if cu is None or cs is None:
                    continue
                f["user"], f["sys"], f["cpu"] = cu * scale / n, cs * scale / n, (cu + cs) * scale / n
                ctx = num(fig, "ctx")
                f["ctx"] = ctx / n if ctx is not None else None
                f["errors"] = sum(num(fig, k) or 0 for k in ("sock_errors", "non2xx", "errors"))
            if r == "sys":
                tot = num(fig, "sys.total")
                if tot is not None:
                    top = sorted(((k[4:], float(v)) for k, v in fig.items()
                                  if k.startswith("sys.") and k != "sys.total" and k != "sys.error"),
                                 key=lambda kv: -kv[1])[:3]
                    sysfig = {"total": tot / n, "top": [(k, c / n) for k, c in top]}
                continue
            out.append(f)
        return out, sysfig

    def g(x, digits=3):
        if x is None:
            return "–"
        return f"{x:.{digits}g}" if abs(x) < 10 ** digits else f"{x:.0f}"

    kind = "tls" if any(ld.startswith(("term-", "pass-")) for ld in loads) else (
        "l4" if any(ld.startswith("bulk_") or ld in ("short", "idle") for ld in loads) else "http")
    print(f"# Sluice io_uring vs epoll vs peers ({kind}) — {meta.get('date', '')}\n")
    print("CPU: the proxy's utime+stime from /proc (10 ms ticks), µs per request/connection, "
          "s per GB for bulk. syscalls: a separate round under `perf stat` (not in CPU). "
          "ctx: voluntary+nonvoluntary context switches of all the proxy's threads. "
          "Medians of interleaved rounds; the total CPU of each round in brackets.\n")
    for ld in loads:
        rows = {}
        for m in modes:
            rs, sysfig = figures(m, ld)
            if rs:
                rows[m] = (rs, sysfig)
        if not rows:
            continue
        unit = next(iter(rows.values()))[0][0]["unit"]
        rate_name = next(iter(rows.values()))[0][0]["rate_name"]
        print(f"## {ld} (per {unit})\n")
        if unit == "idle conn":
            print("| mode | RSS bytes per idle connection (rounds) |")
            print("|---|---|")
            for m, (rs, _) in rows.items():
                print(f"| {m} | {g(med(r['rss'] for r in rs), 4)} ({' / '.join(g(r['rss'], 4) for r in rs)}) |")
            print()
            continue
        cu = "s" if unit == "GB" else "µs"
        print(f"| mode | {rate_name} | CPU user {cu} | CPU sys {cu} | CPU total {cu} (rounds) | syscalls | "
              "top syscalls | ctx switches | errors |")
        print("|---|---|---|---|---|---|---|---|---|")
        summary = {}
        for m, (rs, sysfig) in rows.items():
            s = {k: med(r.get(k) for r in rs) for k in ("rate", "user", "sys", "cpu", "ctx")}
            s["sys_calls"] = sysfig["total"] if sysfig else None
            summary[m] = s
            top = ", ".join(f"{k} {v:.2g}" for k, v in sysfig["top"]) if sysfig else ""
            errs = sum(r.get("errors", 0) for r in rs)
            print(f"| {m} | {g(s['rate'], 4)} | {g(s['user'])} | {g(s['sys'])} | {g(s['cpu'])} "
                  f"({' / '.join(g(r['cpu']) for r in rs)}) | {g(s['sys_calls'])} | {top} | "
                  f"{g(s['ctx'])} | {int(errs)} |")
        peers = [m for m in summary if not m.startswith("sluice") and summary[m]["cpu"]]
        best = min(peers, key=lambda m: summary[m]["cpu"]) if peers else None
        lines = []

        def ratio(a, b, k):
            x, y = summary[a].get(k), summary[b].get(k)
            return f"{x / y:.3f}" if x is not None and y else "–"

        if URING in summary and EPOLL in summary:
            lines.append(f"io_uring / epoll: CPU {ratio(URING, EPOLL, 'cpu')} (user {ratio(URING, EPOLL, 'user')}, "
                         f"sys {ratio(URING, EPOLL, 'sys')}), syscalls {ratio(URING, EPOLL, 'sys_calls')}, "
                         f"ctx {ratio(URING, EPOLL, 'ctx')}, rate {ratio(URING, EPOLL, 'rate')}")
        for m in (URING, EPOLL):
            if m in summary and best:
                lines.append(f"{m} / {best} (the better peer): CPU {ratio(m, best, 'cpu')}, "
                             f"syscalls {ratio(m, best, 'sys_calls')}, ctx {ratio(m, best, 'ctx')}, "
                             f"rate {ratio(m, best, 'rate')}")
        print()
        for line in lines:
            print(f"- {line}")
        print()

    # the machine's other load during each mode's rounds (benchlib monitor)
    noise = []
    for m in modes:
        per = []
        for r, per_load in values[m].items():
            n = per_load.get("noise", {})
            c, w = num(n, "cpu"), num(n, "wall")
            if c is not None and w:
                per.append(c / w)
        if per:
            noise.append(f"{m} {' / '.join(f'{x:.2f}' for x in per)}")
    if noise:
        print("Other processes' CPU (cores) during each mode's rounds: " + "; ".join(noise) + "\n")
    for key in ("sluice", "haproxy", "nginx", "kernel", "load_avg", "noise_top"):
        if key in meta:
            print(f"- {key}: {meta[key]}")


if __name__ == "__main__":
    main(sys.argv[1])

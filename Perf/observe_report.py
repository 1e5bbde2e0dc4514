"""Report of Perf/observe-bench.sh: what metrics and access logs cost, per request, against
Sluice without them and against HAProxy and nginx with and without their logs, from one run.

    python3 Perf/observe_report.py RESULTS
"""

import sys

sys.path.insert(0, __import__("os").path.dirname(__file__))
from benchlib import http_derived, http_load_label, http_noise, load, median, num, rounds_of  # noqa: E402

MODES = [
    ("sluice-base", "Sluice before (no metrics)"),
    ("sluice", "Sluice (metrics kept, not scraped)"),
    ("sluice-metrics", "Sluice, /metrics scraped 1/s"),
    ("sluice-log", "Sluice, scraped + JSON access log"),
    ("haproxy", "HAProxy, no log"),
    ("haproxy-log", "HAProxy, httplog"),
    ("nginx", "nginx, access_log off"),
    ("nginx-log", "nginx, combined log"),
]

RATIOS = [
    ("sluice-metrics", "sluice-base", "metrics: scraped Sluice / Sluice before"),
    ("sluice", "sluice-base", "metrics kept, no scrape / Sluice before"),
    ("sluice-log", "sluice-metrics", "access log: with / without"),
    ("haproxy-log", "haproxy", "HAProxy: log / no log"),
    ("nginx-log", "nginx", "nginx: log / no log"),
    ("sluice-log", "haproxy-log", "Sluice / HAProxy, both logging"),
    ("sluice-log", "nginx-log", "Sluice / nginx, both logging"),
]


def main(results):
    r = load(results)
    loads = r.get("meta.loads", "").split()
    modes = [(m, label) for m, label in MODES if rounds_of(r, m)]
    med = {}
    per = {}
    for m, _ in modes:
        for ld in loads:
            drs = [http_derived(r, f"{m}@{n}.{ld}") for n in rounds_of(r, m)]
            per[(m, ld)] = [d.get("cpu") for d in drs]
            med[(m, ld)] = {k: median([d.get(k) for d in drs]) for k in ("cpu", "rps", "p99_ms", "non2xx")}
    meta = lambda k: r.get(f"meta.{k}", "?")
    L = [f"# Observability cost — {meta('date')}", ""]
    L.append(
        f"Loopback; proxy on CPU {meta('proxy_cpu')}, wrk -t{meta('wrk_threads')} -c{meta('wrk_conns')} "
        f"-d{meta('secs')}s and the nginx origin on CPU {meta('load_cpu')}; {meta('rounds')} interleaved "
        "round(s), medians. CPU is the proxy process's utime+stime per request (µs), "
        "including its admin and access-log threads."
    )
    L.append("")
    L.append("| mode | " + " | ".join(http_load_label(ld) for ld in loads) + " |")
    L.append("|---|" + "---|" * len(loads))
    for m, label in modes:
        cells = []
        for ld in loads:
            v = med[(m, ld)]["cpu"]
            rounds = " / ".join(f"{x * 10:.1f}" for x in per[(m, ld)] if x is not None)
            cells.append(f"{v * 10:.2f} ({rounds})" if v is not None else "—")
        L.append(f"| {label} | " + " | ".join(cells) + " |")
    L.append("")
    L.append("| ratio of CPU per request | " + " | ".join(http_load_label(ld) for ld in loads) + " |")
    L.append("|---|" + "---|" * len(loads))
    for a, b, label in RATIOS:
        cells = []
        for ld in loads:
            x = med.get((a, ld), {}).get("cpu")
            y = med.get((b, ld), {}).get("cpu")
            cells.append(f"{x / y:.3f}" if x and y else "—")
        L.append(f"| {label} | " + " | ".join(cells) + " |")
    L.append("")
    checks = []
    for m, _ in modes:
        for n in rounds_of(r, m):
            lines = num(r, f"{m}@{n}.access_lines")
            scrapes = num(r, f"{m}@{n}.scrapes")
            noise = http_noise(r, f"{m}@{n}")
            bad = sum(num(r, f"{m}@{n}.{ld}.non2xx") or 0 for ld in loads)
            part = f"{m}@{n}:"
            if lines is not None:
                part += f" {lines:.0f} log lines"
            if scrapes is not None:
                part += f", {scrapes:.0f} scrapes"
            part += f", non-2xx {bad:.0f}"
            if noise is not None:
                part += f", other CPU {noise:.0f} %"
            checks.append(part)
    L.append("Checks: " + "; ".join(checks))
    L.append("")
    L.append("Versions:")
    for k in ("haproxy", "nginx", "wrk", "swift", "kernel", "sluice", "sluice_base"):
        L.append(f"- {k}: {meta(k)}")
    print("\n".join(L))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    main(sys.argv[1])

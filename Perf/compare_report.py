"""Before/after report for two Sluice binaries measured in one Perf/http-bench.sh or
Perf/l4-bench.sh or Perf/tls-bench.sh run (MODES="sluice-base sluice", SLUICE_BASE_BIN=<before>):
the proxy's CPU per request (http, tls), per handshake (tls), per short connection and per GB
of bulk (l4, tls), and idle memory per connection, median over the interleaved rounds (per-round values in brackets), and
after / before.

Usage: python3 Perf/compare_report.py Perf/out/{http,l4,tls}-STAMP/results.txt
"""

import statistics
import sys

from benchlib import result_figures

LOAD_NAMES = {
    "ka": "keep-alive",
    "close": "Connection: close",
}


def load_title(load):
    if "-" not in load:
        return load.replace("_", " ")
    kind, size, *rest = load.split("-")
    return f"{LOAD_NAMES.get(kind, kind)}, {size}" + (" (Host a/b)" if rest else "")


def main(path):
    values = {}
    figures, meta = result_figures(path)
    for mode, round_, load, figure, value in figures:
        values.setdefault((mode, load), {}).setdefault(round_, {})[figure] = value

    def per_unit(mode, load):
        """(unit, values per round) for one load of one mode."""
        rounds = values.get((mode, load), {})
        unit, per = "", []
        for round_ in sorted(rounds, key=lambda r: int(r) if r.isdigit() else 0):
            fig = rounds[round_]
            try:
                if "rss_after" in fig:
                    unit = "RSS bytes per idle connection"
                    per.append((float(fig["rss_after"]) - float(fig["rss_before"])) / float(fig["connections"]))
                    continue
                cpu = float(fig["cpu_user"]) + float(fig["cpu_sys"])
                if "units" in fig and not load.endswith("bulk"):
                    # tls-bench: requests (keep-alive) or handshakes (a connection each)
                    unit = "CPU µs per handshake" if load.endswith("hs") else "CPU µs per request"
                    per.append(cpu * 1e6 / float(fig["units"]))
                elif "requests" in fig:
                    unit = "CPU µs per request"
                    per.append(cpu * 1e6 / float(fig["requests"]))
                elif "connections" in fig:
                    unit = "CPU µs per connection"
                    per.append(cpu * 1e6 / float(fig["connections"]))
                elif "bytes" in fig:
                    unit = "CPU s per GB"
                    per.append(cpu * 1e9 / float(fig["bytes"]))
            except (KeyError, ValueError, ZeroDivisionError):
                continue
        return unit, per

    loads = sorted({load for (mode, load) in values if mode == "sluice" and load and per_unit("sluice", load)[1]})
    print(f"# Sluice before / after — {meta.get('date', '')}\n")
    print("The proxy process's utime+stime (10 ms ticks), median of interleaved rounds.\n")
    print("| load | figure | before | after | after / before |")
    print("|---|---|---|---|---|")
    fmt = lambda xs: " / ".join(f"{x:.3g}" if x < 1000 else f"{x:.0f}" for x in xs)
    for load in loads:
        unit, before = per_unit("sluice-base", load)
        _, after = per_unit("sluice", load)
        if not before or not after:
            continue
        b, a = statistics.median(before), statistics.median(after)
        print(f"| {load_title(load)} | {unit} | {b:.3g} ({fmt(before)}) | {a:.3g} ({fmt(after)}) | {a / b:.3f} |")
    print()
    for key in ("sluice_base", "sluice", "load_avg"):
        if key in meta:
            print(f"- {key}: {meta[key]}")


if __name__ == "__main__":
    main(sys.argv[1])

"""Before/after report for two Sluice binaries measured in one Perf/http-bench.sh run
(MODES="sluice-base sluice", SLUICE_BASE_BIN=<before>): CPU µs per request of each, per
load, median over the interleaved rounds (per-round values in brackets), and after / before.

Usage: python3 Perf/compare_report.py Perf/out/http-STAMP/results.txt
"""

import statistics
import sys

LOAD_NAMES = {
    "ka": "keep-alive",
    "close": "Connection: close",
}


def load_title(load):
    kind, size, *rest = load.split("-")
    return f"{LOAD_NAMES.get(kind, kind)}, {size}" + (" (Host a/b)" if rest else "")


def main(path):
    values = {}
    meta = {}
    for line in open(path):
        key, _, value = line.rstrip("\n").partition("=")
        if key.startswith("meta."):
            meta[key[5:]] = value
            continue
        head, _, field = key.partition(".")
        mode, _, round_ = head.partition("@")
        load, _, figure = field.partition(".")
        values.setdefault((mode, load), {}).setdefault(round_, {})[figure] = value

    def cpu(mode, load):
        rounds = values.get((mode, load), {})
        per = []
        for round_ in sorted(rounds, key=lambda r: int(r) if r.isdigit() else 0):
            fig = rounds[round_]
            try:
                n = float(fig["requests"])
                per.append((float(fig["cpu_user"]) + float(fig["cpu_sys"])) * 1e6 / n)
            except (KeyError, ValueError, ZeroDivisionError):
                continue
        return per

    loads = sorted({load for (_, load) in values if "." not in load and load and cpu("sluice", load)})
    print(f"# Sluice before / after — {meta.get('date', '')}\n")
    print("CPU µs per request of the proxy process (utime+stime), median of interleaved rounds.\n")
    print("| load | before | after | after / before |")
    print("|---|---|---|---|")
    for load in loads:
        before, after = cpu("sluice-base", load), cpu("sluice", load)
        if not before or not after:
            continue
        b, a = statistics.median(before), statistics.median(after)
        fmt = lambda xs: " / ".join(f"{x:.1f}" for x in xs)
        print(f"| {load_title(load)} | {b:.2f} ({fmt(before)}) | {a:.2f} ({fmt(after)}) | {a / b:.3f} |")
    print()
    for key in ("sluice_base", "sluice", "load_avg"):
        if key in meta:
            print(f"- {key}: {meta[key]}")


if __name__ == "__main__":
    main(sys.argv[1])

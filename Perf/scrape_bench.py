#!/usr/bin/env python3
"""Scrape cost of GET /metrics at a given table size (Python 3 standard library only).

Starts `sluice run` (release build: $SLUICE_BIN or .build/release/sluice) with one HTTP
listener and SERVICES services of ENDPOINTS endpoints each, an admin listener on a free port,
then scrapes /metrics ROUNDS times one after the other and reports, per format (Prometheus
text and OpenMetrics):

- render: the time to write the exposition into its buffer, as the admin listener reports it
  in `Server-Timing: render;dur=MS` (measured on the admin worker thread);
- collect: every loop's tables taken through its mailbox and summed (`collect;dur=MS`);
- total: the request's wall time as this client sees it (transfer of the body included);
- the series count and the body size.

    python3 Perf/scrape_bench.py                         # 1,000 services x 10 endpoints, 30 rounds
    SERVICES=100 ENDPOINTS=100 ROUNDS=10 python3 Perf/scrape_bench.py

Medians, p90 and maxima go to stdout as a Markdown table; the run's config and log are in
Perf/out/scrape-<time>/.
"""
import http.client
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(listen, services, endpoints):
    lines = ["workers: 2", "listeners:", "  - name: web", f"    address: {listen}", "    protocol: http",
             "    routes:"]
    for i in range(services):
        lines += [f"      - host: s{i}.example.com", f"        service: svc-{i}"]
    lines.append("services:")
    for i in range(services):
        lines += [f"  - name: svc-{i}", "    endpoints:"]
        lines += [f"      - 127.0.0.1:{20000 + k}" for k in range(endpoints)]
    return "\n".join(lines) + "\n"


def scrape(port, accept):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.perf_counter()
    c.request("GET", "/metrics", headers={"Accept": accept})
    r = c.getresponse()
    body = r.read()
    total = time.perf_counter() - started
    c.close()
    if r.status != 200:
        raise SystemExit(f"/metrics answered {r.status}: {body[:200]!r}")
    timing = dict(re.findall(r"(\w+);dur=([0-9.]+)", r.getheader("Server-Timing", "")))
    return total * 1000, float(timing["collect"]), float(timing["render"]), body


def summary(values):
    values = sorted(values)
    return statistics.median(values), values[int(0.9 * (len(values) - 1))], values[-1]


def main():
    services = int(os.environ.get("SERVICES", "1000"))
    endpoints = int(os.environ.get("ENDPOINTS", "10"))
    rounds = int(os.environ.get("ROUNDS", "30"))
    binary = Path(os.environ.get("SLUICE_BIN", ROOT / ".build" / "release" / "sluice"))
    if not binary.exists():
        raise SystemExit(f"{binary}: not found (swift build -c release, or set SLUICE_BIN)")
    out = ROOT / "Perf" / "out" / time.strftime("scrape-%Y%m%d-%H%M%S")
    out.mkdir(parents=True)
    listen = f"127.0.0.1:{free_port()}"
    admin = free_port()
    (out / "sluice.yaml").write_text(config(listen, services, endpoints))
    log = open(out / "sluice.log", "wb")
    proc = subprocess.Popen([str(binary), "run", "--config", str(out / "sluice.yaml"), "--admin-address",
                             f"127.0.0.1:{admin}"], stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while b"ready generation=1" not in (out / "sluice.log").read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("sluice did not start:\n" + (out / "sluice.log").read_text()[-2000:])
            time.sleep(0.1)
        rows = []
        for name, accept in (("Prometheus text 0.0.4", "text/plain"),
                             ("OpenMetrics 1.0.0", "application/openmetrics-text; version=1.0.0")):
            scrape(admin, accept)  # warm-up
            totals, collects, renders = [], [], []
            body = b""
            for _ in range(rounds):
                total, collect, render, body = scrape(admin, accept)
                totals.append(total)
                collects.append(collect)
                renders.append(render)
            series = sum(1 for line in body.split(b"\n") if line and not line.startswith(b"#"))
            rows.append((name, summary(renders), summary(collects), summary(totals), series, len(body)))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()

    print(f"## /metrics at {services} services x {endpoints} endpoints ({services * endpoints} endpoints), "
          f"{rounds} scrapes each, {binary}\n")
    print("| format | render ms (median / p90 / max) | collect ms | total ms (client) | series | body |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, render, collect, total, series, size in rows:
        fmt = lambda t: " / ".join(f"{v:.1f}" for v in t)  # noqa: E731
        print(f"| {name} | {fmt(render)} | {fmt(collect)} | {fmt(total)} | {series:,} | {size / 1e6:.1f} MB |")
    print(f"\nrun directory: {out}")


if __name__ == "__main__":
    sys.exit(main())

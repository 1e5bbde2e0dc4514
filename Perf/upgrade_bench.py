#!/usr/bin/env python3
"""Request latency during binary upgrades (`sluice run --takeover`) against steady state.

An nginx origin answers 64 B; Sluice (SLUICE_BIN, default .build/release/sluice) proxies it
over HTTP/1.1 keep-alive. Each round runs `wrk -c CONNS -d SECS --latency` twice, interleaved:
once with nothing else going on ("steady"), once while a new Sluice takes the listeners over
every UPGRADE_EVERY seconds ("upgrading"). Prints each round's p50/p99, requests, non-2xx
and socket errors, then the medians and the p99 ratio.

    SLUICE_BIN=.build/release/sluice ROUNDS=5 SECS=4 python3 Perf/upgrade_bench.py
"""

from __future__ import annotations

import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SLUICE = os.environ.get("SLUICE_BIN", str(ROOT / ".build" / "release" / "sluice"))
ROUNDS = int(os.environ.get("ROUNDS", "5"))
SECS = int(os.environ.get("SECS", "4"))
CONNS = int(os.environ.get("CONNS", "50"))
WORKERS = int(os.environ.get("WORKERS", "2"))
UPGRADE_EVERY = float(os.environ.get("UPGRADE_EVERY", "1.0"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def parse_wrk(out: str) -> dict:
    r = {"requests": 0, "non2xx": 0, "errors": 0, "p50": float("nan"), "p99": float("nan")}
    if m := re.search(r"(\d+) requests in", out):
        r["requests"] = int(m.group(1))
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        r["non2xx"] = int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        r["errors"] = sum(map(int, m.groups()))
    for pct in ("50", "99"):
        if m := re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
            r["p" + pct] = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    return r


def wrk(url: str) -> dict:
    out = subprocess.run(["wrk", "-t", "2", "-c", str(CONNS), "-d", f"{SECS}s", "--latency", url],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout
    return parse_wrk(out)


class Sluice:
    def __init__(self, config: Path, sock: Path, log: Path):
        self.log = open(log, "ab")
        self.proc = subprocess.Popen(
            [SLUICE, "run", "--config", str(config), "--workers", str(WORKERS), "--takeover", str(sock),
             "--log-level", "notice"], stdout=subprocess.DEVNULL, stderr=self.log)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="upgrade-bench-"))
    origin, front = free_port(), free_port()
    (work / "nginx.conf").write_text(f"""
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx.err;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{origin};
    keepalive_requests 1000000;
    location / {{ return 200 "{'x' * 63}\\n"; }}
  }}
}}
""")
    nginx = subprocess.Popen(["nginx", "-p", str(work), "-c", str(work / "nginx.conf"), "-g", "daemon off;"])
    config = work / "sluice.yaml"
    config.write_text(f"""
timeouts:
  drain: 5s
listeners:
  - name: web
    address: 127.0.0.1:{front}
    protocol: http
    routes: []
    default:
      service: origin
services:
  - name: origin
    endpoints: [127.0.0.1:{origin}]
""")
    sock = work / "takeover.sock"
    log = work / "sluice.log"
    wait_port(origin)
    current = Sluice(config, sock, log)
    wait_port(front)
    time.sleep(0.5)
    url = f"http://127.0.0.1:{front}/"
    wrk(url)  # warm-up
    rows = {"steady": [], "upgrading": []}
    upgrades = 0
    old: list = []
    try:
        for round_ in range(ROUNDS):
            for kind in ("steady", "upgrading") if round_ % 2 == 0 else ("upgrading", "steady"):
                stop = threading.Event()

                def upgrade_loop():
                    nonlocal current, upgrades
                    while not stop.wait(UPGRADE_EVERY):
                        previous = current
                        current = Sluice(config, sock, log)
                        old.append(previous)
                        upgrades += 1

                upgrader = threading.Thread(target=upgrade_loop) if kind == "upgrading" else None
                if upgrader:
                    upgrader.start()
                result = wrk(url)
                stop.set()
                if upgrader:
                    upgrader.join()
                rows[kind].append(result)
                print(f"round {round_ + 1} {kind:9} p50 {result['p50']:.3f} ms  p99 {result['p99']:.3f} ms  "
                      f"requests {result['requests']}  non-2xx {result['non2xx']}  socket errors {result['errors']}",
                      flush=True)
                for p in old:
                    p.proc.wait(15)
                old.clear()
    finally:
        current.proc.send_signal(signal.SIGTERM)
        current.proc.wait(15)
        nginx.send_signal(signal.SIGQUIT)
        nginx.wait(10)
    med = {k: {f: statistics.median(r[f] for r in v) for f in ("p50", "p99", "requests")} for k, v in rows.items()}
    print(f"\n{upgrades} upgrades; medians over {ROUNDS} rounds of wrk -t2 -c{CONNS} -d{SECS}s:")
    for k in ("steady", "upgrading"):
        print(f"  {k:9} p50 {med[k]['p50']:.3f} ms  p99 {med[k]['p99']:.3f} ms  requests {med[k]['requests']:.0f}")
    print(f"  p99 upgrading / steady: {med['upgrading']['p99'] / med['steady']['p99']:.2f}")
    bad = sum(r["non2xx"] + r["errors"] for v in rows.values() for r in v)
    print(f"  non-2xx + socket errors, all runs: {bad}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()

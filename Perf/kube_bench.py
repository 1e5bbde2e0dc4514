"""Kubernetes benchmark for `sluice kube` (driven by Perf/kube-bench.sh; see there for the knobs).

The fake API server (Tests/Integration/fake_kube.py) runs in this process and holds
SERVICES annotated Services with EPS endpoints each (unique 127.x.y.z addresses: never
contacted, they only fill the table). Measured:

(a) event -> serving latency over EVENTS events, alternating
    - a new Service with a slice of EPS live endpoints (its host answers 404 until routed),
    - a slice change of an existing Service from no endpoints to EPS live ones;
    "external": from the moment the fake finished writing the (last) watch event to the
    socket, to the first request that the new route answers with 200 (polled on new
    connections, about every POLL_MS ms); "internal": the `latency_ms` Sluice logs on the
    `applied` line that made the change.
(b) resident memory of the table: VmRSS of a Sluice synced to an empty cluster, of one synced
    to the full one (fresh process) and of the first after the full table arrived by watch.
(c) BURST slice updates (ready flips of endpoints 6..EPS of one Service, 1..5 stay ready)
    while wrk drives keep-alive load at that Service's host: wrk's requests, non-2xx and
    socket errors; afterwards the table is checked against the API state.

Results: KEY=VALUE lines in RESULTS (benchlib put format) and a Markdown summary on stdout.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "Tests" / "Integration"))
sys.path.insert(0, str(HERE))

from fake_kube import FakeKube, endpoint, write_kubeconfig  # noqa: E402
import benchlib  # noqa: E402

ENV = os.environ
SLUICE = ENV.get("SLUICE_BIN", str(HERE.parent / ".build-kperf" / "release" / "sluice"))
SERVICES = int(ENV.get("SERVICES", "1000"))
EPS = int(ENV.get("EPS", "10"))
EVENTS = int(ENV.get("EVENTS", "50"))
BURST = int(ENV.get("BURST", "1000"))
BURST_GAP_MS = float(ENV.get("BURST_GAP_MS", "2"))
WRK_CONNS = int(ENV.get("WRK_CONNS", "50"))
WRK_SECS = int(ENV.get("WRK_SECS", "0"))          # 0: long enough for the burst
POLL_MS = float(ENV.get("POLL_MS", "1"))
PROXY_CPU = ENV.get("PROXY_CPU", "1")
LOAD_CPU = ENV.get("LOAD_CPU", "0")
ORIGIN_PORT = int(ENV.get("ORIGIN_PORT", "17290"))
HTTP_PORT = int(ENV.get("HTTP_PORT", "17280"))
ADMIN_PORT = int(ENV.get("ADMIN_PORT", "17281"))
RUN_DIR = Path(ENV.get("RUN_DIR", "/tmp/kube-bench"))
RESULTS = str(RUN_DIR / "results.txt")
LIVE_EPS = int(ENV.get("LIVE_EPS", str(max(EPS, 10))))
LIVE = [f"127.0.0.{i}" for i in range(1, LIVE_EPS + 1)]   # the origin listens on these (at least 10: the burst flips 6..)
APPLIED = re.compile(r"applied generation=(\d+) services=(\d+) endpoints=(\d+) latency_ms=([0-9.]+)")


def log(msg: str) -> None:
    print(f"[kube-bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def put(k, v):
    benchlib.put(RESULTS, k, v)


def filler_ip(i: int, j: int) -> str:
    n = i * EPS + j
    return f"127.{100 + n // 62500}.{(n // 250) % 250}.{n % 250 + 1}"


def seed(fake: FakeKube, n: int) -> None:
    with fake.batch():
        for i in range(n):
            fake.add_service("bench", f"svc-{i:04d}", host=f"svc-{i:04d}.example.com")
            fake.set_endpoints("bench", f"svc-{i:04d}", [filler_ip(i, j) for j in range(EPS)], 8080)


# ---------------------------------------------------------------- the sluice process

class Sluice:
    def __init__(self, fake: FakeKube, name: str):
        kc = write_kubeconfig(RUN_DIR / f"kubeconfig-{name}", fake)
        self.logf = RUN_DIR / f"sluice-{name}.log"
        cmd = ["taskset", "-c", PROXY_CPU, SLUICE, "kube", "--kubeconfig", str(kc),
               "--http-address", f"127.0.0.1:{HTTP_PORT}", "--admin-address", f"127.0.0.1:{ADMIN_PORT}",
               "--watch-idle-timeout", "10s", "--default-return-code", "404",
               "--balance-algorithm", "roundrobin"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        self.lines = []
        self.cond = threading.Condition()
        self.out = open(self.logf, "w")
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            self.out.write(line + "\n")
            self.out.flush()
            with self.cond:
                self.lines.append((time.monotonic(), line))
                self.cond.notify_all()
        with self.cond:
            self.lines.append((time.monotonic(), "<<EOF>>"))
            self.cond.notify_all()

    def mark(self) -> int:
        with self.cond:
            return len(self.lines)

    def wait(self, pattern: str, timeout: float, since: int = 0, pred=None):
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            i = since
            while True:
                while i < len(self.lines):
                    t, line = self.lines[i]
                    i += 1
                    m = rx.search(line)
                    if m and (pred is None or pred(m)):
                        return t, m
                    if line == "<<EOF>>":
                        raise SystemExit(f"sluice exited (see {self.logf})")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SystemExit(f"timed out waiting for /{pattern}/ (see {self.logf})")
                self.cond.wait(left)

    def applied_since(self, since: int):
        with self.cond:
            return [(t, APPLIED.search(l)) for t, l in self.lines[since:] if APPLIED.search(l)]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss(self) -> int:
        return benchlib.proc_rss(self.pid)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.out.close()


def status_of(host: str, timeout: float = 2.0) -> int:
    with socket.create_connection(("127.0.0.1", HTTP_PORT), timeout=timeout) as s:
        s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while b"\r\n" not in data:
            d = s.recv(4096)
            if not d:
                break
            data += d
    try:
        return int(data.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


def addr_of(host: str) -> str:
    """The origin address that answered (X-Addr)."""
    with socket.create_connection(("127.0.0.1", HTTP_PORT), timeout=2) as s:
        s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    m = re.search(rb"(?i)\r\nX-Addr: ([0-9.]+)", data)
    if not data.startswith(b"HTTP/1.1 200") or not m:
        raise AssertionError(f"{host}: {data[:200]!r}")
    return m.group(1).decode()


def wait_settled(s: Sluice, secs: float = 1.0):
    """Until no `applied` line for `secs`."""
    while True:
        m = s.mark()
        time.sleep(secs)
        if s.mark() == m:
            return


def pct(vals, p):
    v = sorted(vals)
    if not v:
        return None
    k = (len(v) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


# ---------------------------------------------------------------- (b) memory

def memory():
    log(f"memory: empty cluster, then {SERVICES} Services × {EPS} endpoints")
    empty = FakeKube(token="bench", bookmark_interval=5).start()
    s = Sluice(empty, "empty")
    try:
        s.wait(r"\bsynced\b", 60)
        wait_settled(s, 1.5)
        rss_empty = s.rss()
        m = s.mark()
        t0 = time.monotonic()
        seed(empty, SERVICES)
        s.wait(r"applied generation=\d+ services=(\d+)", 120, m,
               pred=lambda mm: int(mm.group(1)) >= SERVICES)
        grow_s = time.monotonic() - t0
        wait_settled(s, 2.0)
        rss_grown = s.rss()
    finally:
        s.stop()
        empty.stop()
    full = FakeKube(token="bench", bookmark_interval=5).start()
    seed(full, SERVICES)
    s = Sluice(full, "full")
    try:
        t0 = time.monotonic()
        s.wait(r"\bsynced\b", 120)
        sync_s = time.monotonic() - t0
        wait_settled(s, 2.0)
        rss_full = s.rss()
        applied = s.applied_since(0)
        last = applied[-1][1] if applied else None
    finally:
        s.stop()
        full.stop()
    put("mem.rss_empty", rss_empty)
    put("mem.rss_full", rss_full)
    put("mem.rss_grown", rss_grown)
    put("mem.table_bytes", rss_full - rss_empty)
    put("mem.grown_bytes", rss_grown - rss_empty)
    put("mem.per_endpoint", f"{(rss_full - rss_empty) / (SERVICES * EPS):.0f}")
    put("mem.sync_s", f"{sync_s:.2f}")
    put("mem.grow_s", f"{grow_s:.2f}")
    if last:
        put("mem.applied", last.group(0))
    log(f"memory: empty {rss_empty >> 10} KiB, full {rss_full >> 10} KiB (fresh), grown "
        f"{rss_grown >> 10} KiB; first sync of the full cluster {sync_s:.2f}s")


# ---------------------------------------------------------------- (a) latency and (c) burst

def latency_and_burst():
    fake = FakeKube(token="bench", bookmark_interval=1).start()
    seed(fake, SERVICES)
    # Services whose endpoints arrive later (type 2 events), and the burst target
    for k in range(EVENTS):
        if k % 2 == 1:
            fake.add_service("lat", f"ep-{k}", host=f"ep-{k}.example.com")
            fake.set_endpoints("lat", f"ep-{k}", [], 80)
    fake.add_service("lat", "burst", host="burst.example.com")
    fake.set_endpoints("lat", "burst", LIVE, ORIGIN_PORT)
    s = Sluice(fake, "latency")
    ext, internal, kinds = [], [], []
    try:
        s.wait(r"\bsynced\b", 120)
        wait_settled(s, 1.5)
        assert status_of("burst.example.com") == 200, "the burst host does not answer"
        log(f"latency: {EVENTS} events on a table of {SERVICES} Services")
        for k in range(EVENTS):
            time.sleep(0.2)
            m = s.mark()
            if k % 2 == 0:
                host = f"new-{k}.example.com"
                assert status_of(host) == 404
                with fake.batch():
                    a = fake.add_service("lat", f"new-{k}", host=host)
                    b = fake.set_endpoints("lat", f"new-{k}", LIVE, ORIGIN_PORT)
                rvs = [int(a["metadata"]["resourceVersion"]), int(b["metadata"]["resourceVersion"])]
                kinds.append("service")
            else:
                host = f"ep-{k}.example.com"
                assert status_of(host) != 200
                b = fake.set_endpoints("lat", f"ep-{k}", LIVE, ORIGIN_PORT)
                rvs = [int(b["metadata"]["resourceVersion"])]
                kinds.append("endpoints")
            deadline = time.monotonic() + 10
            while True:
                t_req = time.monotonic()
                if status_of(host) == 200:
                    break
                if t_req > deadline:
                    raise SystemExit(f"{host} not routed within 10 s (see {s.logf})")
                time.sleep(POLL_MS / 1000)
            t_ev = max(fake.wait_written(rv, 5) for rv in rvs)
            ext.append((t_req - t_ev) * 1000)
            time.sleep(0.05)
            ap = s.applied_since(m)
            if ap:
                internal.append(max(float(x[1].group(4)) for x in ap))
        for i, v in enumerate(ext):
            put(f"lat.ext.{i}", f"{v:.2f}")
        put("lat.events", len(ext))
        put("lat.ext_p50_ms", f"{pct(ext, 50):.2f}")
        put("lat.ext_p95_ms", f"{pct(ext, 95):.2f}")
        put("lat.ext_max_ms", f"{max(ext):.2f}")
        svc = [v for v, k in zip(ext, kinds) if k == "service"]
        epc = [v for v, k in zip(ext, kinds) if k == "endpoints"]
        put("lat.ext_service_p50_ms", f"{pct(svc, 50):.2f}")
        put("lat.ext_endpoints_p50_ms", f"{pct(epc, 50):.2f}")
        put("lat.ext_service_p95_ms", f"{pct(svc, 95):.2f}")
        put("lat.ext_endpoints_p95_ms", f"{pct(epc, 95):.2f}")
        if internal:
            put("lat.int_n", len(internal))
            put("lat.int_p50_ms", f"{pct(internal, 50):.2f}")
            put("lat.int_p95_ms", f"{pct(internal, 95):.2f}")
        log(f"latency: external p50 {pct(ext, 50):.1f} ms p95 {pct(ext, 95):.1f} ms; "
            f"logged p50 {pct(internal, 50) if internal else float('nan'):.1f} ms")

        # (c) the burst under wrk load
        wait_settled(s, 1.0)
        rng = random.Random(42)
        secs = WRK_SECS or int(BURST * BURST_GAP_MS / 1000 * 1.5 + 6)
        out = RUN_DIR / "wrk-burst.txt"
        log(f"burst: {BURST} slice updates ~{BURST_GAP_MS} ms apart under wrk -c{WRK_CONNS} -d{secs}s")
        wrk = subprocess.Popen(["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{WRK_CONNS}",
                                f"-d{secs}s", "--latency", "-H", "Host: burst.example.com",
                                f"http://127.0.0.1:{HTTP_PORT}/"],
                               stdout=open(out, "w"), stderr=subprocess.STDOUT)
        time.sleep(2)
        m = s.mark()
        ready = {ip: True for ip in LIVE}
        t0 = time.monotonic()
        last_rv = 0
        for n in range(BURST):
            ip = LIVE[5 + rng.randrange(len(LIVE) - 5)]
            ready[ip] = not ready[ip]
            o = fake.set_conditions("lat", "burst-abcde", ip, ready=ready[ip],
                                    serving=ready[ip], terminating=False)
            last_rv = int(o["metadata"]["resourceVersion"])
            if BURST_GAP_MS:
                time.sleep(BURST_GAP_MS / 1000)
        burst_s = time.monotonic() - t0
        t_last = fake.wait_written(last_rv, 10)
        wrk.wait(secs + 30)
        applied = s.applied_since(m)
        w = benchlib.parse_wrk(out.read_text()) or {}
        for k in ("requests", "rps", "p50_ms", "p99_ms", "sock_errors", "non2xx"):
            if k in w:
                put(f"burst.{k}", w[k])
        put("burst.sock_detail", w.get("sock_detail", ""))
        put("burst.updates", BURST)
        put("burst.secs", f"{burst_s:.2f}")
        put("burst.applied_lines", len(applied))
        if applied:
            put("burst.applied_after_last_ms", f"{(applied[-1][0] - t_last) * 1000:.1f}")
        # the table follows the API state: only the ready addresses answer
        want = {ip for ip, r in ready.items() if r}
        time.sleep(0.5)
        seen = {addr_of("burst.example.com") for _ in range(len(LIVE) * 4)}
        put("burst.final_ok", "yes" if seen == want else f"no: saw {sorted(seen)}, API {sorted(want)}")
        log(f"burst: wrk {w.get('requests')} requests, non-2xx {w.get('non2xx')}, "
            f"socket errors {w.get('sock_errors')} ({w.get('sock_detail')}); "
            f"{len(applied)} applied lines; final table matches the API: {seen == want}")
    finally:
        s.stop()
        fake.stop()


def report():
    r = benchlib.load(RESULTS)
    g = lambda k: r.get(k, "?")
    kib = lambda k: f"{int(r[k]) / 1024:,.0f} KiB" if k in r else "?"
    L = []
    L.append(f"Run of {g('meta.date')} ({g('meta.services')} Services × {g('meta.eps')} endpoints; "
             f"sluice on CPU {PROXY_CPU}, wrk and the nginx origin on CPU {LOAD_CPU}; the fake "
             f"API server and the pollers are one Python process):")
    L.append("")
    L.append("| figure | value | goal |")
    L.append("| --- | --- | --- |")
    L.append(f"| event → serving, external (fake wrote the event → first 200), median / p95 / max "
             f"over {g('lat.events')} events | {g('lat.ext_p50_ms')} / {g('lat.ext_p95_ms')} / "
             f"{g('lat.ext_max_ms')} ms | < 100 ms |")
    L.append(f"| … new Service + slice, median / p95 | {g('lat.ext_service_p50_ms')} / "
             f"{g('lat.ext_service_p95_ms')} ms | < 50 ms p95 |")
    L.append(f"| … slice change of an existing Service, median / p95 | {g('lat.ext_endpoints_p50_ms')} / "
             f"{g('lat.ext_endpoints_p95_ms')} ms | < 20 ms p95 |")
    L.append(f"| event → applied, Sluice's own `latency_ms`, median / p95 | {g('lat.int_p50_ms')} / "
             f"{g('lat.int_p95_ms')} ms | < 100 ms |")
    L.append(f"| RSS synced to an empty cluster | {kib('mem.rss_empty')} | |")
    L.append(f"| RSS synced to the full cluster (fresh process) | {kib('mem.rss_full')} | |")
    L.append(f"| table + cache at {g('meta.services')} × {g('meta.eps')} (full − empty) | "
             f"{kib('mem.table_bytes')} ({g('mem.per_endpoint')} B per endpoint) | |")
    L.append(f"| same, when the table arrived by watch after an empty start | {kib('mem.grown_bytes')} | |")
    L.append(f"| first list + sync of the full cluster | {g('mem.sync_s')} s | |")
    L.append(f"| burst: {g('burst.updates')} slice updates in {g('burst.secs')} s under wrk "
             f"-c{WRK_CONNS} keep-alive: requests / non-2xx / socket errors | {g('burst.requests')} / "
             f"{g('burst.non2xx')} / {g('burst.sock_errors')} | 0 errors |")
    L.append(f"| burst: `applied` lines; last one after the last event | {g('burst.applied_lines')}; "
             f"{g('burst.applied_after_last_ms')} ms | |")
    L.append(f"| burst: final table = API state (ready addresses only) | {g('burst.final_ok')} | |")
    L.append("")
    L.append(f"Versions: sluice {g('meta.sluice')}; {g('meta.wrk')}; {g('meta.nginx')}; "
             f"{g('meta.python')}; kernel {g('meta.kernel')}; load average at the start "
             f"{g('meta.loadavg')}.")
    print("\n".join(L))


def main():
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    benchlib.raise_nofile()
    put("meta.services", SERVICES)
    put("meta.eps", EPS)
    if what in ("all", "memory"):
        memory()
    if what in ("all", "latency"):
        latency_and_burst()
    if what in ("all", "report"):
        report()


if __name__ == "__main__":
    main()

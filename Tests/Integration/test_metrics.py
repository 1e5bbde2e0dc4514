"""``GET /metrics`` on real output: ``promtool check metrics``, a real Prometheus server
scraping Sluice under known traffic (its ``rate``/``increase`` and ``histogram_quantile``
must agree with what was sent), and cardinality (1,000 services × 10 endpoints; their series
go when they do)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import free_port, make_config, new_listener
from http_backends import get, http_listener
from test_admin import (admin_get, admin_sluice, metrics_text, samples, status_backends,  # noqa: F401
                        web_config)

pytestmark = pytest.mark.sluice_only

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")


def promtool_check(text: str):
    return subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=60)


@pytest.mark.skipif(PROMTOOL is None, reason="needs promtool (Debian package prometheus)")
def test_promtool_accepts_the_exposition(admin_sluice, http_backends, status_backends):
    dead = f"127.0.0.1:{free_port()}"
    cfg = web_config(http_backends, ("a", "b"), extra_services={"we\"ird\\name": [dead],
                                                               "err": [status_backends("err").addr]},
                     limits={"connectTries": 1})
    cfg["listeners"][0]["routes"].append({"host": "err.example.com", "service": "err"})
    cfg["listeners"][0]["routes"].append({"host": "weird.example.com", "service": "we\"ird\\name"})
    p = admin_sluice(cfg, workers=2)
    web = p.addr("web")
    for _ in range(5):
        assert get(web, "a.example.com").status == 200
        assert get(web, "err.example.com", "/?status=500").status == 500
    assert get(web, "weird.example.com").status in (502, 503)
    assert get(web, "nobody.example.com").status == 404
    text = metrics_text(p)
    r = promtool_check(text)
    assert r.returncode == 0 and r.stdout.decode().strip() == "", r.stdout.decode()
    assert 'proxy="we\\"ird\\\\name"' in text, "label values are escaped"
    # every family has HELP and TYPE
    helps = {l.split()[2] for l in text.splitlines() if l.startswith("# HELP ")}
    types = {l.split()[2] for l in text.splitlines() if l.startswith("# TYPE ")}
    assert helps == types and len(helps) > 40
    # OpenMetrics on Accept
    status, headers, body = admin_get(p, "/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"})
    assert status == 200
    assert headers["content-type"] == "application/openmetrics-text; version=1.0.0; charset=utf-8"
    om = body.decode()
    assert om.endswith("# EOF\n")
    assert "# UNIT sluice_backend_http_request_duration_seconds seconds" in om
    assert "# TYPE sluice_backend_http_requests counter" in om


class Prometheus:
    """A Prometheus server of its own: temp dir, free port, 1 s scrape interval."""

    def __init__(self, workdir: Path, target: str):
        self.port = free_port()
        self.dir = workdir / "prometheus"
        self.dir.mkdir()
        (self.dir / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: sluice\n    static_configs:\n"
            f"      - targets: ['{target}']\n")
        self.log = open(self.dir / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={self.dir / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.dir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
             "--storage.tsdb.retention.time=1h"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=self.dir)
        self.wait(lambda: self.http("/-/ready").startswith(b"Prometheus"), 60, "Prometheus ready")

    def http(self, path: str) -> bytes:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as r:
                return r.read()
        except OSError:
            if self.proc.poll() is not None:
                raise AssertionError("prometheus exited:\n" + self.logs())
            return b""

    def logs(self) -> str:
        self.log.flush()
        return (self.dir / "prometheus.log").read_text(errors="replace")[-4000:]

    def wait(self, check, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n{self.logs()}")
            time.sleep(0.2)

    def query(self, expr: str, at: float = None):
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        body = self.http("/api/v1/query?" + urllib.parse.urlencode(params))
        data = json.loads(body)
        assert data["status"] == "success", data
        return data["data"]["result"]

    def scalar(self, expr: str, at: float = None):
        result = self.query(expr, at)
        return float(result[0]["value"][1]) if result else None

    def target(self) -> dict:
        targets = json.loads(self.http("/api/v1/targets"))["data"]["activeTargets"]
        return targets[0] if targets else {}

    def scrapes_after(self, t: float) -> bool:
        """A scrape that began after wall-clock time ``t`` has been stored."""
        target = self.target()
        last = target.get("lastScrape", "")
        if not last or target.get("health") != "up":
            return False
        # RFC 3339 with nanoseconds: compare as a timestamp
        from datetime import datetime
        stamp = datetime.fromisoformat(last[:26].rstrip("Z") + "+00:00" if "." in last[:26] else last.replace("Z", "+00:00"))
        return stamp.timestamp() > t

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()


@pytest.fixture
def prometheus(tmp_path):
    started = []

    def start(target: str) -> Prometheus:
        p = Prometheus(tmp_path, target)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


@pytest.mark.skipif(PROMETHEUS is None, reason="needs prometheus (Debian package prometheus)")
def test_prometheus_scrapes_known_traffic(admin_sluice, status_backends, prometheus, capsys):
    """N requests answered 200 after ~15 ms, M answered 500 at once; Prometheus's increase()
    and histogram_quantile() over its own scrapes must say the same."""
    n_ok, n_err = 60, 24
    ok, bad = status_backends("ok"), status_backends("bad")
    addr = new_listener()
    cfg = make_config({"web": http_listener(addr, [
        {"host": "ok.example.com", "service": "ok"}, {"host": "bad.example.com", "service": "bad"}])},
        {"ok": [ok.addr], "bad": [bad.addr]})
    p = admin_sluice(cfg, workers=2)
    prom = prometheus(p.admin_addr)
    # scraped, and the exposition (OpenMetrics, as Prometheus asks for it) parsed without error
    prom.wait(lambda: prom.target().get("health") == "up", 30, "the target up")
    target = prom.target()
    assert target["lastError"] == "", target
    assert prom.scalar('up{job="sluice"}') == 1
    prom.wait(lambda: prom.scalar('sluice_backend_http_requests_total{proxy="ok"}') is not None, 30,
              "the first samples")
    time.sleep(2)  # a few scrapes with the counters at 0 before the traffic

    latencies = []
    for _ in range(n_ok):
        started = time.perf_counter()
        r = get(addr, "ok.example.com", "/?delay=0.015")
        latencies.append(time.perf_counter() - started)
        assert r.status == 200
    for _ in range(n_err):
        assert get(addr, "bad.example.com", "/?status=500").status == 500
    done = time.time()
    prom.wait(lambda: prom.scrapes_after(done + 1.0), 30, "a scrape after the traffic")
    time.sleep(1.5)

    # Evaluated at the time of the last stored sample: increase() then extrapolates neither end
    # (the series starts at 0 inside the window, and the window ends on a sample), so it
    # must be exactly what was sent.
    at = prom.scalar('timestamp(sluice_backend_http_responses_total{proxy="ok",code="2xx"})')
    window = "[5m]"

    def q(expr):
        return prom.scalar(expr, at)

    ok_2xx = q(f'increase(sluice_backend_http_responses_total{{proxy="ok",code="2xx"}}{window})')
    bad_5xx = q(f'increase(sluice_backend_http_responses_total{{proxy="bad",code="5xx"}}{window})')
    ok_5xx = q(f'increase(sluice_backend_http_responses_total{{proxy="ok",code="5xx"}}{window})')
    rate_2xx = q(f'rate(sluice_backend_http_responses_total{{proxy="ok",code="2xx"}}{window})')
    requests = q(f'increase(sluice_backend_http_requests_total{{proxy="ok"}}{window})')
    raw_2xx = q('sluice_backend_http_responses_total{proxy="ok",code="2xx"}')
    observed = q(f'increase(sluice_backend_http_request_duration_seconds_count{{proxy="ok"}}{window})')
    p50 = q('histogram_quantile(0.5, sum by (le) (increase('
            f'sluice_backend_http_request_duration_seconds_bucket{{proxy="ok"}}{window})))')
    p99_bad = q('histogram_quantile(0.99, sum by (le) (increase('
                f'sluice_backend_http_request_duration_seconds_bucket{{proxy="bad"}}{window})))')
    report = (f"prometheus at {at}: raw 2xx={raw_2xx} increase 2xx={ok_2xx} (sent {n_ok}), "
              f"observed={observed}, 5xx={bad_5xx} "
              f"(sent {n_err}), rate 2xx={rate_2xx}/s, p50 ok={p50} s (client median "
              f"{sorted(latencies)[len(latencies) // 2]:.4f} s), p99 bad={p99_bad} s")
    with capsys.disabled():
        print("\n" + report)
    assert raw_2xx == n_ok, report
    assert ok_2xx == pytest.approx(n_ok, rel=1e-9), report
    assert requests == pytest.approx(n_ok, rel=1e-9), report
    assert bad_5xx == pytest.approx(n_err, rel=1e-9), report
    assert ok_5xx == 0, report
    assert rate_2xx == pytest.approx(n_ok / 300, rel=1e-9), report
    assert observed == pytest.approx(n_ok, rel=1e-9), report
    # The estimate lies in the bucket of the median the client measured (15 ms of backend
    # delay), or the one below it: Sluice's clock starts after the client's connect and
    # stops before the client has read the answer.
    bounds = [0, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]
    client = sorted(latencies)[len(latencies) // 2]
    k = next(i for i in range(1, len(bounds)) if client <= bounds[i])
    assert bounds[max(k - 2, 0)] < p50 <= bounds[k], report
    assert p99_bad is not None and p99_bad <= 0.1, report


def big_config(listen: str, services: int, endpoints: int) -> dict:
    routes = [{"host": f"s{i}.example.com", "service": f"svc-{i}"} for i in range(services)]
    return make_config(
        {"web": http_listener(listen, routes)},
        {f"svc-{i}": [f"127.0.0.1:{20000 + k}" for k in range(endpoints)] for i in range(services)})


def series(text: str) -> int:
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def test_cardinality_1000_services_by_10_endpoints(admin_sluice, capsys):
    listen = new_listener()
    cfg = big_config(listen, 1000, 10)
    p = admin_sluice(cfg, workers=2)
    started = time.perf_counter()
    text = metrics_text(p)
    took = time.perf_counter() - started
    total = series(text)
    per_service = sum(1 for line in text.splitlines() if 'proxy="svc-7"' in line and not line.startswith("#"))
    by_level = {level: sum(1 for l in text.splitlines() if l.startswith(f"sluice_{level}_"))
                for level in ("frontend", "backend", "server")}
    with capsys.disabled():
        print(f"\ncardinality: 1000 services x 10 endpoints -> {total} series "
              f"({by_level}, {per_service} per service with its endpoints), "
              f"{len(text) / 1e6:.1f} MB, scraped in {took * 1000:.0f} ms (debug build, over HTTP)")
    # per endpoint: 14 counters and gauges + up; per service: 20 + active servers + two
    # histograms of 15 buckets, sum and count
    assert by_level["server"] == 10_000 * 15
    assert by_level["backend"] == 1000 * (21 + 2 * 17)
    assert per_service == 21 + 2 * 17 + 10 * 15
    assert 'proxy="svc-999"' in text
    # HAProxy's exporter scopes: without per-endpoint series, a large table stays small
    status, _, body = admin_get(p, "/metrics?scope=process&scope=frontend&scope=backend", None, timeout=30)
    assert status == 200
    scoped = body.decode()
    assert by_level["backend"] == sum(1 for l in scoped.splitlines() if l.startswith("sluice_backend_"))
    assert not any(l.startswith("sluice_server_") for l in scoped.splitlines())
    assert series(scoped) == total - by_level["server"]
    with capsys.disabled():
        print(f"cardinality without scope=server: {series(scoped)} series")
    # delete all but the first ten: their series go
    cfg2 = big_config(listen, 10, 10)
    p.reload(cfg2, timeout=30)
    text2 = metrics_text(p)
    assert 'proxy="svc-10"' not in text2 and 'proxy="svc-999"' not in text2
    assert 'proxy="svc-9"' in text2
    assert series(text2) == total - 990 * per_service, "exactly the removed services' series went"


def test_counters_follow_their_service_across_reloads(admin_sluice, status_backends):
    """Reloads that renumber the services (others added in front, removed, reordered) while
    requests flow and scrapes run: the service's counters never go back, and in the end
    they hold every request sent."""
    import threading

    ok = status_backends("ok")
    other = status_backends("other")
    listen = new_listener()

    def config(step: int) -> dict:
        names = [f"extra-{step}-{k}" for k in range(step % 4)] + ["ok"]
        if step % 2:
            names.reverse()
        routes = [{"host": "ok.example.com", "service": "ok"}]
        routes += [{"host": f"{n}.example.com", "service": n} for n in names if n != "ok"]
        return make_config({"web": http_listener(listen, routes)},
                           {n: [ok.addr if n == "ok" else other.addr] for n in names})

    p = admin_sluice(config(0), workers=2)
    sent = [0]
    stop = threading.Event()
    errors = []

    def load():
        while not stop.is_set():
            try:
                assert get(listen, "ok.example.com", "/").status == 200
                sent[0] += 1
            except Exception as exc:  # noqa: BLE001 (reported below)
                errors.append(repr(exc))
                return

    def requests_now() -> float:
        (_, v), = [s for s in samples(metrics_text(p), "sluice_backend_http_requests_total")
                   if s[0]["proxy"] == "ok"]
        return v

    t = threading.Thread(target=load, daemon=True)
    t.start()
    seen = []
    try:
        for step in range(1, 9):
            seen.append(requests_now())
            p.reload(config(step))
            seen.append(requests_now())
    finally:
        stop.set()
        t.join(10)
    assert not errors, errors
    assert seen == sorted(seen), f"ok's requests went back: {seen}"
    assert seen[-1] > seen[0], seen
    assert requests_now() == sent[0]


def test_access_log_records_counted(admin_sluice, status_backends, tmp_path):
    """With an access log, every request's record is counted as taken by the writer and none
    as dropped; the file holds as many lines."""
    ok = status_backends("ok")
    listen = new_listener()
    log = tmp_path / "access.log"
    cfg = make_config({"web": http_listener(listen, [{"host": "ok.example.com", "service": "ok"}])},
                      {"ok": [ok.addr]}, extra={"accessLog": {"path": str(log)}})
    p = admin_sluice(cfg, workers=2)
    text = metrics_text(p)
    assert samples(text, "sluice_access_log_records_total") == [({}, 0.0)]
    for _ in range(25):
        assert get(listen, "ok.example.com", "/").status == 200
    deadline = time.monotonic() + 10
    while True:
        text = metrics_text(p)
        taken = samples(text, "sluice_access_log_records_total")[0][1]
        if taken == 25 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert taken == 25, text
    assert samples(text, "sluice_access_log_dropped_total") == [({}, 0.0)]
    deadline = time.monotonic() + 10
    while len(log.read_text().splitlines()) < 25 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(log.read_text().splitlines()) == 25


def test_tls_handshakes_and_their_histogram(admin_sluice, status_backends, tmp_path):
    """A terminating TLS listener counts its handshakes and times them; a plain HTTP
    listener has no handshake histogram series at all."""
    import ssl

    from tls_certs import make_term_certs

    certs = make_term_certs(tmp_path / "certs")
    web = status_backends("web")
    https, plain = new_listener(), new_listener()
    cfg = make_config(
        {"tls": {"address": https, "protocol": "tls",
                 "certificates": [{"cert": str(certs.cert("a")), "key": str(certs.key("a"))}],
                 "routes": [{"host": "a.example.com", "terminate": True, "service": "web"}]},
         "web": http_listener(plain, [{"host": "a.example.com", "service": "web"}])},
        {"web": [web.addr]})
    p = admin_sluice(cfg)
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    host, port = https.rsplit(":", 1)
    n = 5
    for _ in range(n):
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="a.example.com") as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
                assert data.startswith(b"HTTP/1.1 200 "), data[:100]
    text = metrics_text(p)
    count = {d["proxy"]: v for d, v in samples(text, "sluice_frontend_tls_handshake_duration_seconds_count")}
    assert count == {"tls": n}, count
    handshakes = {d["proxy"]: v for d, v in samples(text, "sluice_frontend_tls_handshakes_total")}
    assert handshakes == {"tls": n, "web": 0}, handshakes
    inf = [v for d, v in samples(text, "sluice_frontend_tls_handshake_duration_seconds_bucket")
           if d["proxy"] == "tls" and d["le"] == "+Inf"]
    assert inf == [n]

"""`sluice kube` end to end: the real binary against the fake API server (fake_kube.py)
and loopback backends.

Endpoints of one Service share the slice's port, so its backends listen on the same port
at 127.0.0.1, 127.0.0.2, 127.0.0.3 (all of 127.0.0.0/8 is loopback on Linux).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import random
import re
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pytest

from backends import pattern_bytes
from conftest import ProxyProcess, free_port, recv_line, sluice_bin
from fake_kube import (SERVICES, SLICES, FakeKube, make_kube_certs, rotate_token_file,
                       write_kubeconfig, write_service_account)
from http_backends import BufReader, HTTPBackend, curl, exchange, request_bytes

pytestmark = pytest.mark.sluice_only

TOKEN = "e2e-token-1"
READY_LINE = r"ready generation=1\b"
APPLIED = re.compile(r"applied generation=(\d+) services=(\d+) endpoints=(\d+) latency_ms=([0-9.]+)")


# ------------------------------------------------------------------ the binary

_HELP: Dict[str, str] = {}


def kube_help() -> str:
    if "kube" not in _HELP:
        try:
            top = subprocess.run([str(sluice_bin()), "--help"], capture_output=True, text=True,
                                 timeout=30)
            text = top.stdout + top.stderr
            if not re.search(r"^\s+kube\b", text, re.M):
                _HELP["kube"] = ""
            else:
                r = subprocess.run([str(sluice_bin()), "kube", "--help"], capture_output=True,
                                   text=True, timeout=30)
                _HELP["kube"] = r.stdout + r.stderr
        except (OSError, subprocess.TimeoutExpired):
            _HELP["kube"] = ""
    return _HELP["kube"]


@pytest.fixture(autouse=True)
def _needs_kube():
    if not kube_help():
        pytest.skip(f"{sluice_bin()} has no `kube` subcommand")


class KubeSluice(ProxyProcess):
    kind = "sluice-kube"

    def __init__(self, workdir: Path, args: List[str], env: Optional[dict] = None):
        super().__init__(workdir, {"listeners": []}, 1)
        self.args = args
        self.env = env

    def command(self) -> List[str]:
        return [str(sluice_bin()), "kube", *self.args]

    def write_config(self, config) -> None:
        pass

    def wait_ready(self) -> None:
        self.wait_line(READY_LINE, 30)


# ------------------------------------------------------------------ backends on one port

class PortBackend(HTTPBackend):
    """An HTTPBackend on a chosen (host, port)."""

    def __init__(self, name: str, host: str, port: int, mode: str = "echo"):
        self.name = name
        self.mode = mode
        self.host = host
        self.cond = threading.Condition()
        self.conns = []
        self.requests = []
        self.errors = []
        self.responded = 0
        self.stopping = threading.Event()
        self._socks = []
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.lsock.bind((host, port))
        except OSError:
            self.lsock.close()
            raise
        self.lsock.listen(1024)
        self.port = self.lsock.getsockname()[1]
        self.thread = threading.Thread(target=self._accept_loop, daemon=True,
                                       name=f"http-backend-{name}")
        self.thread.start()


def ip_of(n: int) -> str:
    return f"127.0.0.{n}"


class Pool:
    """Groups of backends: each group listens on one port at 127.0.0.1..N."""

    def __init__(self):
        self.all: List[HTTPBackend] = []

    def group(self, names: List[str]) -> Dict[str, HTTPBackend]:
        for _ in range(20):
            out: Dict[str, HTTPBackend] = {}
            try:
                first = PortBackend(names[0], ip_of(1), 0)
                out[names[0]] = first
                for i, n in enumerate(names[1:], start=2):
                    out[n] = PortBackend(n, ip_of(i), first.port)
            except OSError:
                for be in out.values():
                    be.shutdown()
                continue
            self.all.extend(out.values())
            return out
        raise RuntimeError("no port free on all of 127.0.0.1..N")

    def shutdown(self):
        for be in self.all:
            be.shutdown()


def ips(group: Dict[str, HTTPBackend], names) -> List[str]:
    return [group[n].host for n in names]


def port(group: Dict[str, HTTPBackend]) -> int:
    return next(iter(group.values())).port


# ------------------------------------------------------------------ harness

def eventually(fn: Callable[[], object], timeout: float, what: str, interval: float = 0.02):
    """Calls fn until it returns a true value (or stops raising AssertionError)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            v = fn()
            if v:
                return v
            last = v
        except (AssertionError, OSError, EOFError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what} (last: {last!r})")
        time.sleep(interval)


class Kube:
    def __init__(self, tmp_path: Path, request):
        self.tmp = tmp_path
        self.request = request
        self.fake: Optional[FakeKube] = None
        self.procs: List[KubeSluice] = []
        self.pool = Pool()
        self.http_port = free_port()
        self.admin_port = free_port()
        self.loaders: List["Loader"] = []

    def server(self, **kw) -> FakeKube:
        kw.setdefault("token", TOKEN)
        kw.setdefault("bookmark_interval", 0.5)
        self.fake = FakeKube(**kw).start()
        return self.fake

    @property
    def http(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    def base_args(self, namespace: Optional[str] = None) -> List[str]:
        a = ["--http-address", self.http, "--admin-address", f"127.0.0.1:{self.admin_port}",
             "--watch-idle-timeout", "2s", "--default-return-code", "404",
             "--balance-algorithm", "roundrobin", "--workers", "1"]
        if namespace:
            a += ["--namespace", namespace]
        return a

    def start(self, *extra: str, namespace: Optional[str] = None, kubeconfig: Optional[Path] = None,
              sa_dir: Optional[Path] = None, env: Optional[dict] = None,
              synced: bool = True) -> KubeSluice:
        args = self.base_args(namespace)
        if sa_dir is not None:
            args += ["--service-account-dir", str(sa_dir)]
            env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1",
                   "KUBERNETES_SERVICE_PORT": str(self.fake.port), **(env or {})}
        else:
            if kubeconfig is None:
                kubeconfig = write_kubeconfig(self.tmp / "kubeconfig", self.fake)
            args += ["--kubeconfig", str(kubeconfig)]
        args += list(extra)
        p = KubeSluice(self.tmp, args, env)
        self.procs.append(p)
        p.start()
        if synced:
            p.wait_line(r"\bsynced\b", 30)
        return p

    def get(self, host: str, target: str = "/", timeout: float = 5.0):
        return exchange(self.http, request_bytes(host, target, headers=["Connection: close"]),
                        timeout=timeout)

    def backend_of(self, host: str, target: str = "/") -> str:
        r = self.get(host, target)
        assert r.status == 200, f"Host {host}: {r!r}"
        return r.json()["backend"]

    def admin(self, path: str):
        c = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=5)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def routes_to(self, host: str, expect: set, rounds: int = 3) -> bool:
        """True when ``rounds * len(expect)`` requests hit exactly the backends ``expect``."""
        seen = [self.backend_of(host) for _ in range(rounds * max(1, len(expect)))]
        assert set(seen) == expect, f"Host {host} reached {seen}, wanted {sorted(expect)}"
        return True

    def close(self):
        for l in self.loaders:
            l.stop()
        for p in self.procs:
            p.stop()
            self.request.node.add_report_section("teardown", "sluice kube stderr", p.stderr_text())
        if self.fake:
            self.fake.stop()
        self.pool.shutdown()


@pytest.fixture
def kube(tmp_path, request):
    k = Kube(tmp_path, request)
    yield k
    k.close()


@pytest.fixture(scope="module")
def kcerts(tmp_path_factory):
    return make_kube_certs(tmp_path_factory.mktemp("kube-certs"))


class Loader:
    """Requests in a loop (a new connection each, Connection: close) while faults happen."""

    def __init__(self, kube: Kube, host: str, pause: float = 0.005):
        self.kube = kube
        self.host = host
        self.pause = pause
        self.results: List[tuple] = []   # (t, backend or None, error or None)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"loader-{host}")
        kube.loaders.append(self)
        self.thread.start()

    def _run(self):
        while not self._stop.is_set():
            t = time.monotonic()
            try:
                r = self.kube.get(self.host, "/load", timeout=5)
                if r.status == 200:
                    self.results.append((t, r.json()["backend"], None))
                else:
                    self.results.append((t, None, f"status {r.status}: {r.body[:100]!r}"))
            except (OSError, EOFError, ValueError) as exc:
                self.results.append((t, None, f"{type(exc).__name__}: {exc}"))
            self._stop.wait(self.pause)

    def stop(self):
        self._stop.set()
        self.thread.join(10)

    def failures(self):
        return [r for r in self.results if r[2] is not None]


def web_service(fake: FakeKube, ns: str, name: str, host: Optional[str], group, names,
                **kw):
    fake.add_service(ns, name, host=host, **kw)
    fake.set_endpoints(ns, name, ips(group, names), port(group))


# ------------------------------------------------------------------ routing

def test_annotated_service_round_robin_unannotated_not_exposed(kube):
    fake = kube.server()
    g = kube.pool.group(["a", "b", "c"])
    host = f"grafana.example.com:{kube.http_port}"
    web_service(fake, "monitoring", "grafana", host, g, ["a", "b", "c"])
    web_service(fake, "monitoring", "plain", None, g, ["a"])          # no annotation
    fake.add_service("default", "kubernetes", ports=[{"name": "https", "port": 443,
                                                      "targetPort": 6443}])
    p = kube.start()
    assert kube.admin("/readyz")[0] == 200
    m = [APPLIED.search(l) for l in p.lines]
    m = [x for x in m if x]
    assert m, f"no `applied generation=N services=S endpoints=E latency_ms=X` line:\n{p.stderr_text()}"
    seq = []
    for _ in range(9):
        r = curl("-H", f"Host: {host}", f"http://{kube.http}/dash")
        assert r.returncode == 0, r.stderr
        seq.append(json.loads(r.stdout)["backend"])
    assert set(seq[:3]) == {"a", "b", "c"}, seq
    assert seq[3:6] == seq[:3] and seq[6:9] == seq[:3], f"not round robin: {seq}"
    for h in ("plain.example.com", f"plain.example.com:{kube.http_port}", "kubernetes",
              f"grafana.example.com:{kube.http_port + 1}", "nobody.example.org"):
        r = kube.get(h)
        assert r.status == 404, f"Host {h}: {r!r}"
    assert g["a"].request_count() == 3, "only grafana's requests reached a backend"


def test_not_ready_endpoint_avoided_while_download_completes(kube):
    fake = kube.server()
    g = kube.pool.group(["a", "b"])
    web_service(fake, "shop", "web", "web.example.com", g, ["a", "b"])
    kube.start()
    assert kube.routes_to("web.example.com", {"a", "b"})
    size = 32 << 20
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    s.settimeout(10)
    s.connect(("127.0.0.1", kube.http_port))
    s.sendall(request_bytes("web.example.com", f"/dl?mode=download&size={size}",
                            headers=["Connection: close"]))
    reader = BufReader(s)
    head = reader.read_until(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    owner = re.search(rb"X-Backend: (\w+)", head).group(1).decode()
    other = "b" if owner == "a" else "a"
    got = {"n": len(reader.buf), "sha": hashlib.sha256(bytes(reader.buf)), "err": None}
    reader.buf.clear()

    def slow_read():
        try:
            while got["n"] < size:
                d = s.recv(64 * 1024)
                if not d:
                    break
                got["sha"].update(d)
                got["n"] += len(d)
                time.sleep(0.008)
        except OSError as exc:
            got["err"] = repr(exc)

    t = threading.Thread(target=slow_read, daemon=True)
    t.start()
    time.sleep(0.3)
    assert 0 < got["n"] < size // 2, f"the download is not slow enough ({got['n']} bytes)"
    t0 = time.monotonic()
    fake.set_conditions("shop", "web-abcde", g[owner].host, ready=False, serving=True,
                        terminating=True)
    hits = []
    while time.monotonic() < t0 + 2.0:
        ts = time.monotonic()
        hits.append((ts - t0, kube.backend_of("web.example.com")))
        time.sleep(0.01)
    late = [(round(dt, 3), b) for dt, b in hits if dt >= 1.0 and b == owner]
    assert not late, f"requests still reached the not-ready {owner} after 1 s: {late}"
    assert any(b == other for _, b in hits)
    t.join(60)
    s.close()
    assert got["err"] is None, got["err"]
    assert got["n"] == size, f"download cut at {got['n']} of {size} bytes"
    assert got["sha"].hexdigest() == hashlib.sha256(pattern_bytes(size)).hexdigest()
    # ready again: back in the rotation
    fake.set_conditions("shop", "web-abcde", g[owner].host, ready=True, serving=True,
                        terminating=False)
    eventually(lambda: kube.routes_to("web.example.com", {"a", "b"}), 5, "endpoint back")


def test_service_deleted_gives_404_and_comes_back(kube):
    fake = kube.server()
    g = kube.pool.group(["a"])
    web_service(fake, "shop", "web", "web.example.com", g, ["a"])
    kube.start()
    assert kube.backend_of("web.example.com") == "a"
    fake.delete_service("shop", "web")
    eventually(lambda: kube.get("web.example.com").status == 404, 5, "404 after delete")
    web_service(fake, "shop", "web", "web.example.com", g, ["a"])
    eventually(lambda: kube.backend_of("web.example.com") == "a", 5, "routed after re-create")
    fake.annotate("shop", "web", {"serviceloadbalancer/lb.host": "other.example.com"})
    eventually(lambda: kube.get("web.example.com").status == 404, 5, "old host gone")
    assert kube.backend_of("other.example.com") == "a"


# ------------------------------------------------------------------ watch faults

FAULTS = ["split-only", "gone-midstream", "gone-http", "gone-in-stream", "drop-eof",
          "drop-fin", "drop-rst", "stall", "refuse-500", "error-500-in-stream"]


@pytest.mark.parametrize("fault", FAULTS)
def test_watch_faults_converge_without_failed_requests(kube, fault):
    fake = kube.server(chunk_mode="split", split_pause=0.002, seed=FAULTS.index(fault) + 1,
                       gone_mode="stream" if fault == "gone-in-stream" else "http")
    g = kube.pool.group(["a", "b", "c"])
    web_service(fake, "shop", "web", "web.example.com", g, ["a", "b"])
    # bulk: many services at once, so initial lists and watch chunks are big
    with fake.batch():
        for i in range(40):
            web_service(fake, "bulk", f"s{i}", f"s{i}.example.com", g, ["a", "b", "c"])
    kube.start()
    assert kube.routes_to("web.example.com", {"a", "b"})
    load = Loader(kube, "web.example.com")
    time.sleep(0.3)
    mark = fake.request_count()
    last_watch = fake.last_watch_id()
    fault_t = time.monotonic()
    if fault == "gone-midstream":
        assert fake.gone_midstream() >= 2
    elif fault in ("gone-http", "gone-in-stream"):
        fake.expire_history()
        fake.drop_watches("eof")
    elif fault.startswith("drop-"):
        assert fake.drop_watches(fault[5:]) >= 2
    elif fault == "stall":
        assert fake.stall_watches() >= 2
    elif fault == "error-500-in-stream":
        assert fake.stream_error(500) >= 2
    elif fault == "refuse-500":
        fake.refuse(500, count=4)
        fake.drop_watches("rst")
    # changes while (or right after) the fault
    with fake.batch():
        fake.set_endpoints("shop", "web", ips(g, ["a", "b", "c"]), port(g))
        web_service(fake, "shop", "late", "late.example.com", g, ["c"])
        fake.delete_service("bulk", "s0")
    eventually(lambda: kube.backend_of("late.example.com") == "c", 15, "new Service routed")
    eventually(lambda: kube.routes_to("web.example.com", {"a", "b", "c"}), 10, "c added")
    eventually(lambda: kube.get("s0.example.com").status == 404, 10, "s0 deleted")
    # a second round of changes, on the recovered watch
    fake.set_endpoints("shop", "web", ips(g, ["b", "c"]), port(g))
    fake.annotate("bulk", "s1", {"serviceloadbalancer/lb.host": "s1-new.example.com"})
    eventually(lambda: kube.routes_to("web.example.com", {"b", "c"}, rounds=4), 10, "a removed")
    eventually(lambda: kube.backend_of("s1-new.example.com") in "abc", 10, "s1 renamed")
    assert kube.get("s1.example.com").status == 404
    while time.monotonic() < fault_t + 2.0:   # keep the load on for a while in any case
        time.sleep(0.1)
    load.stop()
    fails = load.failures()
    assert len(load.results) > 30, f"the loader made only {len(load.results)} requests"
    assert not fails, f"{len(fails)} of {len(load.results)} requests failed: {fails[:5]}"
    new = fake.requests[mark:]
    watches = [r for r in new if r["watch"]]
    lists = [r for r in new if not r["watch"] and r["kind"]]
    if fault != "split-only":
        assert fake.last_watch_id() > last_watch, "no new watch after the fault"
    if fault in ("gone-midstream", "gone-http", "gone-in-stream"):
        assert {r["kind"] for r in lists} >= {SERVICES, SLICES}, \
            f"410 must lead to a re-list of both collections; requests: {new[:8]}"
        if fault == "gone-http":
            assert any(r["status"] == 410 for r in watches)
    if fault.startswith("drop-") or fault == "split-only":
        rewatch = [r for r in watches if r["status"] == 200]
        for r in rewatch:
            rv = r["query"].get("resourceVersion", "")
            assert rv not in ("", "0"), f"re-watch must resume from the last RV: {r['target']}"
    if fault == "stall":
        first = min(r["t"] for r in watches)
        assert first - fault_t < 6, f"re-watch {first - fault_t:.1f}s after the stall (idle 2s)"
    for r in new:
        assert r["headers"].get("authorization") == f"Bearer {TOKEN}"


def test_paged_list_with_expired_continue_restarts(kube):
    """1,200 Services: the client lists in pages; the first continue token it sends has
    expired (410), so it lists again from the start and still gets everything."""
    fake = kube.server()
    g = kube.pool.group(["a"])
    with fake.batch():
        for i in range(1200):
            web_service(fake, "bulk", f"s{i:04d}", f"s{i:04d}.example.com", g, ["a"])
    expired = []

    def expire_first_continue(rec):
        if rec["query"].get("continue") and not expired:
            expired.append(rec["query"]["continue"])
            fake.expire_continue_tokens()

    fake.hooks.append(expire_first_continue)
    kube.start()
    lists = [r for r in fake.requests if r["kind"] and not r["watch"]]
    assert any(r["query"].get("limit") for r in lists), "lists are not paged"
    assert expired, "no continue token was ever sent (1,200 items in one page?)"
    assert any(r["status"] == 410 for r in lists)
    for name in ("s0000", "s0599", "s1199"):
        assert kube.backend_of(f"{name}.example.com") == "a"
    gz = [r for r in lists if "gzip" in r["headers"].get("accept-encoding", "")]
    if gz:  # big pages then came gzipped
        assert kube.backend_of("s0700.example.com") == "a"


def test_rewatch_resumes_from_the_bookmark_rv(kube):
    """Changes in another namespace move the RV without events for this one; bookmarks
    carry it, and a re-watch resumes from there, not from the last event's RV."""
    fake = kube.server(bookmark_interval=0.3)
    g = kube.pool.group(["a"])
    web_service(fake, "team-a", "web", "a.example.com", g, ["a"])
    kube.start(namespace="team-a")
    for i in range(5):
        fake.add_service("team-b", f"x{i}")
    moved = fake.rv
    time.sleep(1.2)                      # a few bookmarks with the moved RV
    mark = fake.request_count()
    fake.drop_watches("eof")
    r = fake.wait_request(lambda r: r["watch"] and r["kind"] == SERVICES, since=mark,
                          what="a services re-watch")
    assert int(r["query"].get("resourceVersion") or 0) >= moved, \
        f"re-watch from {r['query'].get('resourceVersion')!r}, bookmarks said {moved}"
    lists = [x for x in fake.requests[mark:] if x["kind"] and not x["watch"]]
    assert not lists, "a clean end of a watch needs no re-list"


def test_429_retry_after_is_honoured(kube):
    fake = kube.server()
    g = kube.pool.group(["a"])
    web_service(fake, "shop", "web", "web.example.com", g, ["a"])
    fake.refuse(429, count=1, retry_after=2,
                match=lambda r: r["kind"] is not None and not r["watch"])
    kube.start(synced=False)
    first = fake.wait_request(lambda r: r["status"] == 429, timeout=10, what="the 429")
    nxt = fake.wait_request(lambda r: r["kind"] == first["kind"] and not r["watch"]
                            and r["t"] > first["t"], timeout=15, what="a retried list")
    assert nxt["t"] - first["t"] >= 1.8, \
        f"retried {nxt['t'] - first['t']:.2f}s after a 429 with Retry-After: 2"
    kube.procs[0].wait_line(r"\bsynced\b", 20)
    assert kube.backend_of("web.example.com") == "a"


# ------------------------------------------------------------------ in-cluster, TLS, tokens

def test_token_rotation_401_recovers_in_cluster_https(kube, kcerts):
    fake = kube.server(certs=kcerts, token="tok-1")
    g = kube.pool.group(["a", "b"])
    web_service(fake, "shop", "web", "web.example.com", g, ["a"])
    sa = write_service_account(kube.tmp / "sa", "tok-1", kcerts.ca, "shop")
    kube.start(sa_dir=sa)
    assert kube.backend_of("web.example.com") == "a"
    assert fake.requests[0]["headers"]["authorization"] == "Bearer tok-1"
    load = Loader(kube, "web.example.com")
    mark = fake.request_count()
    fake.set_token("tok-2")             # the old token expires at the server first
    fake.drop_watches("eof")
    fake.wait_request(lambda r: r["status"] == 401, since=mark, timeout=15, what="a 401")
    rotate_token_file(sa, "tok-2")      # then the kubelet rotates the file
    fake.set_endpoints("shop", "web", ips(g, ["a", "b"]), port(g))
    eventually(lambda: kube.routes_to("web.example.com", {"a", "b"}), 20,
               "the change after the rotation")
    ok = [r for r in fake.requests[mark:] if r["status"] == 200]
    assert ok and all(r["headers"]["authorization"] == "Bearer tok-2" for r in ok)
    load.stop()
    assert not load.failures(), load.failures()[:5]
    assert kube.admin("/readyz")[0] == 200


def test_kubeconfig_https_with_ca(kube, kcerts):
    fake = kube.server(certs=kcerts)
    g = kube.pool.group(["a"])
    web_service(fake, "shop", "web", "web.example.com", g, ["a"])
    kc = write_kubeconfig(kube.tmp / "kubeconfig", fake, ca=kcerts.ca)
    kube.start(kubeconfig=kc)
    assert kube.backend_of("web.example.com") == "a"


def test_bad_ca_never_connects(kube, kcerts):
    fake = kube.server(certs=kcerts)
    g = kube.pool.group(["a"])
    web_service(fake, "shop", "web", "web.example.com", g, ["a"])
    sa = write_service_account(kube.tmp / "sa", TOKEN, kcerts.other_ca, "shop")
    p = kube.start(sa_dir=sa, synced=False)
    eventually(lambda: fake.tls_failures, 10, "a TLS handshake attempt")
    time.sleep(2.5)
    assert kube.admin("/readyz")[0] == 503
    assert kube.get("web.example.com").status == 404
    assert fake.requests == [], "no request may pass an unverified connection"
    # the reason may come only when the client gives up its first connection attempt
    # (AsyncHTTPClient retries handshakes until its connect timeout, 10 s)
    p.wait_line(r"(?i)certif|verif|trust|x509|tls|ssl|handshake", 15)
    assert not re.search(r"\bsynced\b", p.stderr_text())
    assert kube.admin("/readyz")[0] == 503
    assert kube.get("web.example.com").status == 404
    assert fake.requests == []


# ------------------------------------------------------------------ admin, flags

def test_healthz_and_readyz_until_synced(kube):
    fake = kube.server()
    g = kube.pool.group(["a"])
    web_service(fake, "shop", "web", "web.example.com", g, ["a"])
    fake.refuse(500, count=10 ** 6, match=lambda r: r["kind"] is not None)
    p = kube.start(synced=False)
    fake.wait_request(lambda r: r["status"] == 500, timeout=10, what="a refused list")
    time.sleep(1.0)
    assert kube.admin("/healthz")[0] == 200
    assert kube.admin("/readyz")[0] == 503
    assert kube.get("web.example.com").status == 404
    assert not re.search(r"\bsynced\b", p.stderr_text())
    with fake.cond:
        fake.refusals.clear()
    p.wait_line(r"\bsynced\b", 30)
    eventually(lambda: kube.admin("/readyz")[0] == 200, 5, "readyz 200 after the sync")
    assert kube.admin("/healthz")[0] == 200
    assert kube.backend_of("web.example.com") == "a"
    # API trouble later does not make it unready nor clear the routes
    fake.refuse(500, count=10 ** 6, match=lambda r: r["kind"] is not None)
    fake.drop_watches("rst")
    time.sleep(2)
    assert kube.backend_of("web.example.com") == "a", "routes kept while the API fails"
    assert kube.admin("/healthz")[0] == 200
    assert len(re.findall(r"\bsynced\b", p.stderr_text())) == 1, "`synced` is logged once"


def test_namespace_flag_limits_what_is_seen(kube):
    fake = kube.server()
    g = kube.pool.group(["a", "b"])
    web_service(fake, "team-a", "web", "a.example.com", g, ["a"])
    web_service(fake, "team-b", "web", "b.example.com", g, ["b"])
    kube.start(namespace="team-a")
    assert kube.backend_of("a.example.com") == "a"
    assert kube.get("b.example.com").status == 404
    web_service(fake, "team-b", "web2", "b2.example.com", g, ["b"])
    web_service(fake, "team-a", "web3", "a3.example.com", g, ["b"])
    eventually(lambda: kube.backend_of("a3.example.com") == "b", 5, "team-a change seen")
    assert kube.get("b2.example.com").status == 404
    api = [r for r in fake.requests if r["kind"]]
    assert api and all(r["path"].startswith(("/api/v1/namespaces/team-a/",
                                             "/apis/discovery.k8s.io/v1/namespaces/team-a/"))
                       for r in api), [r["path"] for r in api]


def test_tcp_services_flag_exposes_raw_tcp(kube, backends):
    fake = kube.server()
    be = backends.add("m")
    listen = free_port()
    fake.add_service("default", "mysql", ports=[{"protocol": "TCP", "port": listen,
                                                 "targetPort": be.port}])
    fake.set_endpoints("default", "mysql", ["127.0.0.1"], be.port, port_name="")
    kube.start("--tcp-services", f"default/mysql:{listen}")
    s = eventually(lambda: socket.create_connection(("127.0.0.1", listen), timeout=5), 5,
                   "the TCP listener")
    try:
        assert recv_line(s) == b"m"
        s.sendall(b"ping\n")
        assert recv_line(s) == b"ping"
    finally:
        s.close()
    assert kube.get("mysql").status == 404, "a tcp service is not an HTTP host"


# ------------------------------------------------------------------ contract details

def test_host_list_case_and_wildcard(kube):
    fake = kube.server()
    g = kube.pool.group(["a"])
    web_service(fake, "shop", "web", f"Web.Example.com, *.wild.example.com, p.example.com:{kube.http_port}",
                g, ["a"])
    kube.start()
    for h in ("web.example.com", "WEB.example.COM", f"web.example.com:{kube.http_port}",
              "x.wild.example.com", f"p.example.com:{kube.http_port}"):
        assert kube.backend_of(h) == "a", h
    for h in ("a.b.wild.example.com", "wild.example.com", "p.example.com:1"):
        assert kube.get(h).status == 404, h


def test_same_endpoint_in_two_slices_counts_once(kube):
    fake = kube.server()
    g = kube.pool.group(["a", "b"])
    fake.add_service("shop", "web", host="web.example.com")
    fake.set_endpoints("shop", "web", ips(g, ["a", "b"]), port(g), slice_name="web-one")
    fake.set_endpoints("shop", "web", ips(g, ["a"]), port(g), slice_name="web-two")
    kube.start()
    seq = [kube.backend_of("web.example.com") for _ in range(8)]
    assert seq.count("a") == seq.count("b") == 4, f"a duplicated endpoint weighs double: {seq}"


def test_fixture_cluster_syncs_and_hides_kubernetes(kube):
    fake = kube.server()
    fake.load_fixtures()
    p = kube.start()
    assert kube.admin("/readyz")[0] == 200
    for h in ("kubernetes", "kubernetes.default.svc", "nobody.example.org"):
        assert kube.get(h).status == 404, h
    # the fixture watch streams' objects, applied as events
    for fname, kind in (("watch-services.jsonl", SERVICES), ("watch-endpointslices.jsonl", SLICES)):
        from fake_kube import FIXTURES
        for line in (FIXTURES / fname).read_text().splitlines():
            ev = json.loads(line)
            obj = {k: v for k, v in ev["object"].items() if k not in ("kind", "apiVersion")}
            if ev["type"] in ("ADDED", "MODIFIED"):
                fake._put(kind, obj)
            elif ev["type"] == "DELETED":
                fake._delete(kind, obj["metadata"]["namespace"], obj["metadata"]["name"])
    mark = p.mark()
    fake.add_service("zz", "probe", host="probe.example.com")
    p.wait_line(r"applied generation=", 10, mark)
    assert p.proc.poll() is None
    assert kube.admin("/healthz")[0] == 200


def test_slice_details_nil_conditions_port_names_null_arrays(kube):
    fake = kube.server()
    g = kube.pool.group(["a", "b"])
    # nil conditions mean ready
    fake.add_service("shop", "nil", host="nil.example.com")
    fake.set_endpoints("shop", "nil", [{"ip": g["a"].host, "ready": None}], port(g))
    # the slice port is taken by the Service port's name: "metrics" is not "http"
    fake.add_service("shop", "named", host="named.example.com")
    fake.set_endpoints("shop", "named", ips(g, ["a"]), port(g), port_name="metrics",
                       slice_name="named-wrong")
    fake.set_endpoints("shop", "named", ips(g, ["b"]), port(g), port_name="http",
                       slice_name="named-right")
    # a placeholder slice (endpoints and ports null) next to a real one
    fake.add_service("shop", "holder", host="holder.example.com")
    fake.set_endpoints("shop", "holder", None, None, slice_name="holder-empty")
    fake.set_endpoints("shop", "holder", ips(g, ["b"]), port(g), slice_name="holder-real")
    kube.start()
    assert kube.routes_to("nil.example.com", {"a"})
    assert kube.routes_to("named.example.com", {"b"})
    assert kube.routes_to("holder.example.com", {"b"})
    # not ready but serving+terminating only: no new requests go there
    fake.set_endpoints("shop", "nil", [{"ip": g["a"].host, "ready": False, "serving": True,
                                        "terminating": True},
                                       {"ip": g["b"].host, "ready": True}], port(g))
    eventually(lambda: kube.routes_to("nil.example.com", {"b"}), 5, "only the ready one")


def test_api_server_down_at_start_then_up(kube):
    api_port = free_port()
    fake = FakeKube(token=TOKEN, port=api_port, bookmark_interval=0.5)
    kc = kube.tmp / "kubeconfig-late"
    kc.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{api_port}"}}],
        "users": [{"name": "u", "user": {"token": TOKEN}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    p = kube.start(kubeconfig=kc, synced=False)
    time.sleep(1.5)
    assert kube.admin("/readyz")[0] == 503
    assert kube.admin("/healthz")[0] == 200
    assert p.proc.poll() is None
    kube.fake = fake.start()
    g = kube.pool.group(["a"])
    web_service(fake, "shop", "web", "web.example.com", g, ["a"])
    p.wait_line(r"\bsynced\b", 30)
    assert kube.backend_of("web.example.com") == "a"


def test_api_server_outage_both_kinds_back_within_two_seconds(kube):
    """The API server is down for 5 s and comes back without the history of the old
    resourceVersions (410), holding a new Service and its EndpointSlice. Both kinds list
    again within 2 s of its return, whatever step each watcher's back-off had reached, and
    the new Service is served within 3 s; the old one is served from the last good table all
    along."""
    fake = kube.server()
    g = kube.pool.group(["a", "b"])
    web_service(fake, "shop", "old", "old.example.com", g, ["a"])
    p = kube.start()
    assert kube.backend_of("old.example.com") == "a"
    fake.stop()
    down = time.monotonic()
    while time.monotonic() < down + 5.0:
        assert kube.backend_of("old.example.com") == "a"
        time.sleep(0.5)
    fake.expire_history()
    web_service(fake, "shop", "fresh", "fresh.example.com", g, ["b"])
    mark = fake.request_count()
    since = p.mark()
    fake.start()
    up = time.monotonic()
    eventually(lambda: kube.backend_of("fresh.example.com") == "b", 3.0, "the new Service served")
    served = time.monotonic() - up
    for kind in (SERVICES, SLICES):
        fake.wait_request(lambda r: r["kind"] == kind and not r["watch"] and r["status"] == 200,
                          since=mark, timeout=5, what=f"a {kind} list answered")
    lists = {}
    for r in fake.requests[mark:]:
        if r["kind"] and not r["watch"] and r["status"] == 200:
            lists.setdefault(r["kind"], r["t"] - up)
    assert set(lists) == {SERVICES, SLICES}, f"both kinds must list again: {fake.requests[mark:][:8]}"
    late = {k: round(t, 2) for k, t in lists.items() if t > 2.0}
    assert not late, f"listed again more than 2 s after the API server came back: {lists}"
    assert served <= 3.0
    assert kube.backend_of("old.example.com") == "a"
    p.wait_line(r"listed EndpointSlices", 5, since=since)


def test_list_page_over_64_mib_is_refused_and_asked_again_smaller(kube):
    """70 Services with a 1 MiB annotation of no use to Sluice: one page of them is 70 MiB
    (about 53 MiB gzipped, so the bound is hit while inflating, not by Content-Length). It
    is refused (an error in the log) and asked for again with fewer items per page, and
    every Service is served."""
    fake = kube.server()
    g = kube.pool.group(["a"])
    blob = base64.b64encode(random.Random(7).randbytes(768 << 10)).decode()
    with fake.batch():
        for i in range(70):
            fake.add_service("bulk", f"s{i:02d}", host=f"s{i:02d}.example.com",
                             annotations={"example.com/blob": blob})
            fake.set_endpoints("bulk", f"s{i:02d}", ips(g, ["a"]), port(g))
    p = kube.start()
    p.wait_line(r"Services list page 1 of up to 500 items is larger than 64 MiB: refused; "
                r"asking for 125 items per page", 5)
    limits = [r["query"].get("limit") for r in fake.requests
              if r["kind"] == SERVICES and not r["watch"]]
    assert limits[:3] == ["500", "125", "31"], limits
    for name in ("s00", "s35", "s69"):
        assert kube.backend_of(f"{name}.example.com") == "a"


def test_annotations_algorithm_affinity_acl(kube):
    fake = kube.server()
    g = kube.pool.group(["a", "b", "c"])
    web_service(fake, "shop", "bogus", "bogus.example.com", g, ["a", "b"],
                annotations={"serviceloadbalancer/lb.algorithm": "fastest-please"})
    web_service(fake, "shop", "sticky", "sticky.example.com", g, ["a", "b", "c"],
                spec={"sessionAffinity": "ClientIP",
                      "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}}})
    web_service(fake, "shop", "api", "p.example.com", g, ["c"],
                annotations={"serviceloadbalancer/lb.aclMatch": "/api"})
    web_service(fake, "shop", "site", "p.example.com", g, ["a"])
    p = kube.start()
    assert kube.routes_to("bogus.example.com", {"a", "b"}), "an unknown algorithm breaks nothing"
    assert re.search(r"(?i)fastest-please", p.stderr_text()), "the unknown algorithm is reported"
    seq = {kube.backend_of("sticky.example.com") for _ in range(9)}
    assert len(seq) == 1, f"ClientIP affinity: one client went to {seq}"
    assert kube.backend_of("p.example.com", "/api/x") == "c"
    assert kube.backend_of("p.example.com", "/other") == "a"

"""Fixtures for the loopback integration tests.

The proxy under test is the real ``sluice`` binary: ``$SLUICE_BIN`` or
``<repo>/.build/debug/sluice``.  ``SLUICE_TEST_PROXY=haproxy`` runs the same
tests against HAProxy (tcp mode) instead, to check the tests themselves; tests
marked ``sluice_only`` are skipped then.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from backends import BackendSet, format_addr

REPO_ROOT = Path(__file__).resolve().parents[2]
PROXY_KIND = os.environ.get("SLUICE_TEST_PROXY", "sluice").strip().lower() or "sluice"
READY_TIMEOUT = 15.0


def sluice_bin() -> Path:
    env = os.environ.get("SLUICE_BIN")
    path = Path(env) if env else REPO_ROOT / ".build" / "debug" / "sluice"
    if not path.is_absolute():
        path = REPO_ROOT / path
    return path


def pytest_configure(config):
    config.addinivalue_line("markers", "sluice_only: needs sluice-specific behaviour "
                            "(skipped with SLUICE_TEST_PROXY=haproxy)")


def pytest_collection_modifyitems(config, items):
    if PROXY_KIND == "sluice":
        return
    skip = pytest.mark.skip(reason=f"sluice-specific; proxy under test is {PROXY_KIND}")
    for item in items:
        if "sluice_only" in item.keywords:
            item.add_marker(skip)


def pytest_report_header(config):
    if PROXY_KIND == "sluice":
        return f"proxy under test: sluice ({sluice_bin()})"
    return f"proxy under test: {PROXY_KIND}"


# --------------------------------------------------------------------------
# small helpers

def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def parse_addr(addr: str):
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


def connect(addr: str, timeout: float = 5.0) -> socket.socket:
    host, port = parse_addr(addr)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
    except BaseException:
        s.close()
        raise
    return s


def recv_line(sock: socket.socket, limit: int = 4096) -> bytes:
    """Read one '\\n'-terminated line byte by byte (so nothing after it is consumed)."""
    buf = bytearray()
    while len(buf) < limit:
        b = sock.recv(1)
        if not b:
            raise EOFError(f"EOF after {bytes(buf)!r} while reading a line")
        if b == b"\n":
            return bytes(buf)
        buf += b
    raise AssertionError(f"line longer than {limit}: {bytes(buf[:80])!r}")


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise EOFError(f"EOF after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def recv_until_eof(sock: socket.socket, limit: int = 1 << 30) -> bytes:
    buf = bytearray()
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return bytes(buf)
        buf += chunk
        if len(buf) > limit:
            raise AssertionError(f"more than {limit} bytes before EOF")


def yaml_scalar(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    s = str(v)
    if re.fullmatch(r"[A-Za-z0-9_.\-/]+(:[0-9]+)?", s) and s.lower() not in (
            "true", "false", "yes", "no", "null", "on", "off", "~"):
        return s
    s = s.replace("\\", "\\\\").replace('"', '\\"')
    s = s.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return '"' + s + '"'


def to_yaml(obj, indent: int = 0) -> str:
    pad = " " * indent
    lines: List[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)):
                if not v:
                    lines.append(f"{pad}{k}: {'{}' if isinstance(v, dict) else '[]'}")
                else:
                    lines.append(f"{pad}{k}:")
                    lines.append(to_yaml(v, indent + 2))
            else:
                lines.append(f"{pad}{k}: {yaml_scalar(v)}")
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, dict):
                sub = to_yaml(item, indent + 2).split("\n")
                sub[0] = pad + "- " + sub[0][indent + 2:]
                lines.extend(sub)
            else:
                lines.append(f"{pad}- {yaml_scalar(item)}")
    else:
        lines.append(pad + yaml_scalar(obj))
    return "\n".join(lines)


def make_config(listeners: Dict[str, str], services: Dict[str, List[str]],
                algorithm: str = "roundrobin", timeouts: Optional[dict] = None,
                limits: Optional[dict] = None, routes: Optional[Dict[str, str]] = None,
                extra: Optional[dict] = None) -> dict:
    """listeners: name -> address, or name -> dict of listener fields (e.g.
    ``{"address": ..., "protocol": "http", "routes": [...], "default": {...}}``);
    services: name -> endpoints, or name -> dict of service fields (e.g.
    ``{"endpoints": [...], "proxyProtocol": "v2"}``); routes: listener name -> service name (default: the
    listener's own name, else the only service)."""
    routes = routes or {}
    only = next(iter(services)) if len(services) == 1 else None
    cfg: dict = {}
    if timeouts:
        cfg["timeouts"] = dict(timeouts)
    if limits:
        cfg["limits"] = dict(limits)
    if extra:
        cfg.update(extra)
    cfg["listeners"] = [
        {"name": n, **a} if isinstance(a, dict) else
        {"name": n, "address": a, "protocol": "tcp",
         "service": routes.get(n) or (n if n in services else only)}
        for n, a in listeners.items()
    ]
    cfg["services"] = [
        {"name": n, "algorithm": algorithm, **eps} if isinstance(eps, dict) else
        {"name": n, "algorithm": algorithm, "endpoints": list(eps)}
        for n, eps in services.items()
    ]
    return cfg


def listening_ports(count: bool = False):
    """Ports in LISTEN state on this host (a set), or port -> number of sockets."""
    counts: Dict[int, int] = {}
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(f) as fh:
                next(fh)
                for line in fh:
                    parts = line.split()
                    if parts[3] == "0A":
                        port = int(parts[1].rsplit(":", 1)[1], 16)
                        counts[port] = counts.get(port, 0) + 1
        except FileNotFoundError:
            pass
    return counts if count else set(counts)


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# --------------------------------------------------------------------------
# the proxy process

class ProxyProcess:
    """A running proxy with its stderr read line by line by a thread."""

    kind = "?"

    def __init__(self, workdir: Path, config: dict, workers: int = 1):
        self.workdir = workdir
        self.config = config
        self.workers = workers
        self.config_path = workdir / f"{self.kind}.conf"
        self.lines: List[str] = []
        self.cond = threading.Condition()
        self.proc: Optional[subprocess.Popen] = None
        self.reader: Optional[threading.Thread] = None
        self.generation = 1

    # --- addresses
    def addr(self, listener: Optional[str] = None) -> str:
        ls = self.config["listeners"]
        if listener is None:
            return ls[0]["address"]
        for l in ls:
            if l["name"] == listener:
                return l["address"]
        raise KeyError(listener)

    @property
    def pid(self) -> int:
        return self.proc.pid

    # --- stderr
    def _read(self):
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.lines.append("<<EOF>>")
            self.cond.notify_all()

    def stderr_text(self) -> str:
        with self.cond:
            return "\n".join(self.lines)

    def mark(self) -> int:
        with self.cond:
            return len(self.lines)

    def wait_line(self, pattern: str, timeout: float, since: int = 0,
                  also: Optional[str] = None) -> str:
        """Wait for a stderr line matching ``pattern`` (or ``also``) at index >= since."""
        rx = re.compile(pattern)
        rx2 = re.compile(also) if also else None
        deadline = time.monotonic() + timeout
        with self.cond:
            i = since
            while True:
                while i < len(self.lines):
                    line = self.lines[i]
                    i += 1
                    if rx.search(line) or (rx2 and rx2.search(line)):
                        return line
                    if line == "<<EOF>>":
                        raise AssertionError(
                            f"{self.kind} exited (rc={self.proc.poll()}) before logging "
                            f"/{pattern}/; stderr:\n{self.stderr_text_nolock()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"timed out after {timeout}s waiting for /{pattern}/ on {self.kind} "
                        f"stderr; stderr:\n{self.stderr_text_nolock()}")
                self.cond.wait(left)

    def stderr_text_nolock(self) -> str:
        return "\n".join(self.lines[-60:])

    # --- lifecycle
    def command(self) -> List[str]:
        raise NotImplementedError

    def write_config(self, config: dict) -> None:
        raise NotImplementedError

    def start(self) -> "ProxyProcess":
        self.write_config(self.config)
        env = {**os.environ, **(getattr(self, "env", None) or {})}
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     cwd=self.workdir, env=env)
        self.reader = threading.Thread(target=self._read, daemon=True, name=f"{self.kind}-stderr")
        self.reader.start()
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        raise NotImplementedError

    def graceful_signal(self) -> int:
        return signal.SIGTERM

    def graceful_stop(self) -> None:
        self.proc.send_signal(self.graceful_signal())

    def wait_exit(self, timeout: float) -> Optional[int]:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        if self.wait_exit(3.0) is None:
            self.proc.kill()
            self.proc.wait(5)

    def reload(self, config, timeout: float = 10.0) -> str:
        raise NotImplementedError


class SluiceProcess(ProxyProcess):
    kind = "sluice"

    def command(self) -> List[str]:
        return [str(sluice_bin()), "run", "--config", str(self.config_path),
                "--workers", str(self.workers)]

    def write_config(self, config) -> None:
        text = config if isinstance(config, str) else to_yaml(config) + "\n"
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.config_path)

    def wait_ready(self) -> None:
        self.wait_line(r"ready generation=1\b", READY_TIMEOUT)

    def reload(self, config, timeout: float = 10.0, expect_ok: bool = True) -> str:
        """Rewrite the file, SIGHUP, and wait for the outcome line."""
        since = self.mark()
        self.write_config(config)
        if not isinstance(config, str):
            self.config = config
        self.proc.send_signal(signal.SIGHUP)
        if expect_ok:
            self.generation += 1
            return self.wait_line(rf"reloaded generation={self.generation}\b", timeout, since)
        return self.wait_line(r"reload failed", timeout, since)


class HAProxyProcess(ProxyProcess):
    kind = "haproxy"

    def command(self) -> List[str]:
        return ["haproxy", "-f", str(self.config_path), "-db"]

    @staticmethod
    def _bind(addr: str) -> str:
        host, port = parse_addr(addr)
        return f"{host}:{port}"

    def write_config(self, config: dict) -> None:
        t = config.get("timeouts", {})
        lim = config.get("limits", {})
        tries = int(lim.get("connectTries", 3))
        g = ["global", f"  nbthread {self.workers}", "  maxconn 8000"]
        if "drain" in t:
            g.append(f"  hard-stop-after {t['drain']}")
        d = ["defaults", "  mode tcp",
             f"  timeout connect {t.get('connect', '5s')}",
             f"  timeout client {t.get('client', '50s')}",
             f"  timeout server {t.get('server', '50s')}",
             f"  timeout tunnel {t.get('tunnel', '1h')}",
             f"  retries {max(tries - 1, 0)}",
             "  option redispatch 1"]
        services = {s["name"]: s for s in config["services"]}
        body = []
        for l in config["listeners"]:
            s = services[l["service"]]
            body.append(f"listen {l['name']}")
            body.append(f"  bind {self._bind(l['address'])}")
            body.append(f"  balance {s.get('algorithm', 'roundrobin')}")
            for i, ep in enumerate(s["endpoints"]):
                body.append(f"  server s{i} {self._bind(ep)}")
        self.config_path.write_text("\n".join(g + d + body) + "\n")

    def wait_ready(self) -> None:
        want = {parse_addr(l["address"])[1] for l in self.config["listeners"]}
        deadline = time.monotonic() + READY_TIMEOUT
        while not want <= listening_ports():
            if self.proc.poll() is not None:
                raise AssertionError(f"haproxy exited rc={self.proc.returncode}:\n"
                                     f"{self.stderr_text()}")
            if time.monotonic() > deadline:
                raise AssertionError("haproxy did not listen in time:\n" + self.stderr_text())
            time.sleep(0.02)  # bounded poll of /proc/net/tcp; haproxy logs no ready line

    def graceful_signal(self) -> int:
        return signal.SIGUSR1

    def reload(self, config, timeout: float = 10.0, expect_ok: bool = True) -> str:
        pytest.skip("reload is sluice-specific")


PROXIES = {"sluice": SluiceProcess, "haproxy": HAProxyProcess}


# --------------------------------------------------------------------------
# fixtures

@pytest.fixture(scope="session", autouse=True)
def _raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else 65536
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    yield


@pytest.fixture
def backends():
    bs = BackendSet()
    yield bs
    bs.shutdown()


@pytest.fixture
def http_backends():
    """HTTP/1.1 backends (see http_backends.py), shut down after the test."""
    from http_backends import HTTPBackends
    hb = HTTPBackends()
    yield hb
    hb.shutdown()


@pytest.fixture
def clients(proxy_factory):
    """Tracks client sockets; closes whatever the test left open (before the proxy stops)."""
    socks: List[socket.socket] = []

    class Clients:
        def connect(self, addr: str, timeout: float = 5.0) -> socket.socket:
            s = connect(addr, timeout)
            socks.append(s)
            return s

    yield Clients()
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


@pytest.fixture
def proxy_factory(tmp_path, request):
    if PROXY_KIND not in PROXIES:
        pytest.fail(f"SLUICE_TEST_PROXY={PROXY_KIND!r}: expected one of {sorted(PROXIES)}")
    if PROXY_KIND == "sluice" and not os.access(sluice_bin(), os.X_OK):
        pytest.fail(f"sluice binary not found or not executable: {sluice_bin()} "
                    f"(set SLUICE_BIN or build first)")
    started: List[ProxyProcess] = []

    def start(config: dict, workers: int = 1, env: Optional[dict] = None) -> ProxyProcess:
        p = PROXIES[PROXY_KIND](tmp_path, config, workers)
        p.env = env
        started.append(p)
        return p.start()

    yield start
    for p in started:
        p.stop()
        request.node.add_report_section("teardown", f"{p.kind} stderr",
                                        p.stderr_text())


@pytest.fixture
def three(backends):
    """Three echo backends a, b, c on 127.0.0.1."""
    for n in "abc":
        backends.add(n)
    return backends


def new_listener(host: str = "127.0.0.1") -> str:
    return format_addr(host, free_port(host))


@pytest.fixture(scope="session")
def tls_certs(tmp_path_factory):
    """A CA and leaf certificates (see tls_backends.LEAF_NAMES), made once a session."""
    from tls_backends import make_certs
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def tls_backends(tls_certs):
    """TLS and raw recording backends (see tls_backends.py), shut down after the test."""
    from tls_backends import BackendGroup
    group = BackendGroup(tls_certs)
    yield group
    group.shutdown()

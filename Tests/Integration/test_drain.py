"""Readiness-first drain on SIGTERM: /readyz turns 503 at once, the listeners keep accepting
for timeouts.drainDelay while every HTTP/1 response closes its connection, then accepting
stops, idle keep-alive clients are closed, and tunnels and requests in flight have
timeouts.drain to finish."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import make_config, new_listener, sluice_bin
from http_backends import BufReader, http_listener, read_response, request_bytes
from rollout_support import Connector, SlowDownload, WebSocket, connect_refused, socket_errors, wrk

pytestmark = pytest.mark.sluice_only


def http_get(addr: str, path: str = "/"):
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        return read_response(BufReader(s))


def config(addr: str, backend: str, admin_timeouts: dict) -> dict:
    return make_config({"web": http_listener(addr, [], {"service": "web"})}, {"web": [backend]},
                       timeouts=admin_timeouts, limits={"upstreamIdle": "1s"})


def test_drain_delay_under_load(proxy_factory, http_backends, tmp_path):
    backend = http_backends.add("app")
    addr = new_listener()
    admin = new_listener()
    cfg = config(addr, backend.addr, {"drainDelay": "2s", "drain": "8s"})
    p = proxy_factory(cfg, workers=2)
    # The admin listener: restart with it (the fixture's command has no --admin-address).
    p.stop()
    proc = subprocess.Popen([str(sluice_bin()), "run", "--config", str(p.config_path), "--workers", "2",
                             "--admin-address", admin], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    p.proc = proc
    p.lines.clear()
    p.reader = threading.Thread(target=p._read, daemon=True)
    p.reader.start()
    p.wait_line(r"ready generation=1\b", 15)

    sockets = [WebSocket(addr) for _ in range(20)]
    download = SlowDownload(addr, size=12 << 20, rate=3 << 20)
    download.start()
    assert download.started_body.wait(5) and download.error is None, download.error

    # wrk runs 2 s; SIGTERM 0.3 s after it started: the whole run is inside the delay.
    result = {}
    runner = threading.Thread(target=lambda: result.update(wrk(f"http://{addr}/", 2)))
    connector = Connector(addr, interval=0.001, request_every=25)
    runner.start()
    connector.start()
    time.sleep(0.3)
    since = p.mark()
    term_at = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    p.wait_line(r"stopping: /readyz answers 503; listeners accept for 2000 ms", 2, since)
    assert http_get(admin, "/readyz").status == 503
    # Still accepting: a new connection is served, and told to close.
    response = http_get(addr)
    assert response.status == 200 and (response.header("connection") or "").lower() == "close"
    for ws in sockets:
        ws.echo(b"during the delay")
    runner.join(30)
    assert result["requests"] > 100, result["text"]
    assert result["non2xx"] == 0 and socket_errors(result) == 0, result["text"]

    p.wait_line(r"draining: listeners closed", 3, since)
    p.wait_line(r"loop 0: draining: not accepting", 1, since)
    p.wait_line(r"loop 1: draining: not accepting", 1, since)
    assert time.monotonic() - term_at >= 1.9
    # Accepting goes on for 2 s from the signal at the least.
    drained_at = term_at + 1.95
    time.sleep(0.2)
    connector.stop()
    with connector.lock:
        before = [t for t in connector.refused_at if t < drained_at]
        after = [t for t in connector.refused_at if t >= drained_at]
        assert not before, f"{len(before)} connects refused during the delay"
        assert after, "no connect refused once accepting stopped"
        assert connector.requests_ok > 20 and not connector.failed[:1], connector.failed[:3]
    assert connect_refused(addr)

    # Tunnels run on after accepting stopped; the download finishes; then they close.
    for ws in sockets:
        ws.echo(b"after accepting stopped")
    download.join(10)
    assert download.error is None and download.received == 12 << 20, download.error
    for ws in sockets:
        ws.close()
    assert proc.wait(8) == 0
    p.wait_line(r"drained: every connection closed", 2, since)
    p.wait_line(r"^.*stopped$", 2, since)


def test_idle_keepalive_closed_when_accepting_stops(proxy_factory, http_backends):
    backend = http_backends.add("app")
    addr = new_listener()
    p = proxy_factory(config(addr, backend.addr, {"drainDelay": "1s", "drain": "5s"}))
    host, port = addr.rsplit(":", 1)
    idle = socket.create_connection((host, int(port)), timeout=5)
    idle.sendall(request_bytes("app", "/"))
    first = read_response(BufReader(idle))
    assert first.status == 200 and first.header("connection") is None
    busy = socket.create_connection((host, int(port)), timeout=5)
    busy.sendall(request_bytes("app", "/"))
    read_response(BufReader(busy))
    since = p.mark()
    p.proc.send_signal(signal.SIGTERM)
    p.wait_line(r"stopping: /readyz answers 503", 2, since)
    # During the delay: the next response closes its connection.
    busy.sendall(request_bytes("app", "/"))
    reader = BufReader(busy)
    second = read_response(reader)
    assert second.status == 200 and second.header("connection").lower() == "close"
    assert reader.read_to_eof() == b""
    # The idle one is closed when accepting stops, without a response.
    idle.settimeout(3)
    assert idle.recv(100) == b""
    p.wait_line(r"loop 0: draining: not accepting; closed \d+ idle keep-alive connections", 1, since)
    assert p.proc.wait(5) == 0


def test_drain_deadline_closes_tunnels_and_exits_zero(proxy_factory, http_backends):
    backend = http_backends.add("app")
    addr = new_listener()
    p = proxy_factory(config(addr, backend.addr, {"drain": "1s"}))
    ws = WebSocket(addr)
    since = p.mark()
    start = time.monotonic()
    p.proc.send_signal(signal.SIGTERM)
    # sluice run's default delay is 0: accepting stops at once.
    p.wait_line(r"stopping: /readyz answers 503$", 2, since)
    p.wait_line(r"loop 0: draining: not accepting; closed 0 idle keep-alive connections .*, 1 still open", 1, since)
    assert connect_refused(addr)
    ws.echo(b"still open")
    assert p.proc.wait(5) == 0
    assert 0.9 <= time.monotonic() - start < 4
    p.wait_line(r"drain deadline: closing 1 connections", 1, since)
    ws.sock.settimeout(2)
    try:
        assert ws.sock.recv(10) == b""
    except ConnectionResetError:
        pass


@pytest.mark.parametrize("value, message", [
    ("-1s", "timeouts.drainDelay: expected a duration such as 0, 500ms, 5s or 1m, found '-1s'"),
    ("11m", "timeouts.drainDelay: must be from 0 to 10m, found '11m'"),
    ("soon", "timeouts.drainDelay: expected a duration such as 0, 500ms, 5s or 1m, found 'soon'"),
])
def test_bad_drain_delay_named(tmp_path, value, message):
    from conftest import to_yaml
    cfg = make_config({"web": "127.0.0.1:1"}, {"web": ["127.0.0.1:2"]}, timeouts={"drainDelay": value})
    path = tmp_path / "bad.yaml"
    path.write_text(to_yaml(cfg) + "\n")
    out = subprocess.run([str(sluice_bin()), "check", "--config", str(path)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    assert out.returncode == 1
    assert message in out.stderr, out.stderr


def test_zero_drain_delay_accepted(tmp_path):
    from conftest import to_yaml
    cfg = make_config({"web": "127.0.0.1:1"}, {"web": ["127.0.0.1:2"]}, timeouts={"drainDelay": "0"})
    path = tmp_path / "ok.yaml"
    path.write_text(to_yaml(cfg) + "\n")
    out = subprocess.run([str(sluice_bin()), "check", "--config", str(path)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    assert out.returncode == 0, out.stderr


def test_second_sigterm_ends_the_delay(proxy_factory, http_backends):
    backend = http_backends.add("app")
    addr = new_listener()
    p = proxy_factory(config(addr, backend.addr, {"drainDelay": "30s", "drain": "2s"}))
    since = p.mark()
    start = time.monotonic()
    p.proc.send_signal(signal.SIGTERM)
    p.wait_line(r"listeners accept for 30000 ms more", 2, since)
    p.proc.send_signal(signal.SIGHUP)
    p.wait_line(r"stopping: reload ignored during the drain delay", 2, since)
    assert http_get(addr).status == 200
    p.proc.send_signal(signal.SIGTERM)
    p.wait_line(r"a second stop signal ends the drain delay", 2, since)
    assert p.proc.wait(5) == 0
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("flags, delay_ms, drain_ms", [((), 5000, 30000), (("--drain-delay=1s", "--drain=2s"), 1000, 2000)])
def test_kube_mode_drain_delay(tmp_path, request, flags, delay_ms, drain_ms):
    from test_kube_e2e import Kube
    kube = Kube(tmp_path, request)
    try:
        kube.server()
        p = kube.start(*flags)
        since = p.mark()
        start = time.monotonic()
        p.proc.send_signal(signal.SIGTERM)
        p.wait_line(rf"listeners accept for {delay_ms} ms more", 2, since)
        assert kube.admin("/readyz")[0] == 503
        response = kube.get("nothing.example")
        assert response.status == 404 and response.header("connection").lower() == "close"
        if delay_ms > 2000:
            p.proc.send_signal(signal.SIGTERM)
        p.wait_line(rf"open ones have {drain_ms} ms to finish", delay_ms / 1000 + 2, since)
        assert p.proc.wait(5) == 0
        if delay_ms <= 2000:
            assert time.monotonic() - start >= delay_ms / 1000 - 0.05
    finally:
        kube.close()

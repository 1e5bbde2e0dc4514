"""HTTP listener: upstream failures (dying, ambiguous length, no endpoint, refused,
too slow), a slowloris client, and a WebSocket upgrade."""

import base64
import json
import os
import socket
import time

import pytest

from conftest import make_config, new_listener
from http_backends import (BufReader, closed_within, curl, get, http_listener, port_of,
                           read_response, request_bytes, ws_accept, ws_frame)

pytestmark = pytest.mark.sluice_only


def start(proxy_factory, services, timeouts=None, limits=None):
    routes = [{"host": f"{n}.example.com", "service": n} for n in services]
    cfg = make_config({"web": http_listener(new_listener(), routes)}, services,
                      timeouts=timeouts, limits=limits)
    return proxy_factory(cfg)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_backend_dies_mid_response(http_backends, proxy_factory, framing):
    a = http_backends.add("a")
    p = start(proxy_factory, {"a": [a.addr]})
    url = f"http://127.0.0.1:{port_of(p.addr())}"
    chunked = "1" if framing == "chunked" else "0"
    t0 = time.monotonic()
    r = curl("-H", "Host: a.example.com", "-m", "10", "-o", os.devnull,
             "-w", "%{http_code} %{size_download}",
             f"{url}/die?mode=die&size=100000&part=1000&chunked={chunked}")
    elapsed = time.monotonic() - t0
    assert r.returncode != 28, f"curl timed out: the proxy hung ({elapsed:.1f}s)"
    assert r.returncode in (18, 56, 52), \
        f"an incomplete response must look incomplete: curl rc={r.returncode} {r.stdout!r} " \
        f"{r.stderr}"
    assert elapsed < 5
    ok = curl("-H", "Host: a.example.com", "-m", "10", url + "/after")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["target"] == "/after"


def test_backend_dies_mid_response_raw(http_backends, proxy_factory, clients):
    """The client's connection is closed (no hang waiting for the rest)."""
    a = http_backends.add("a")
    p = start(proxy_factory, {"a": [a.addr]})
    s = clients.connect(p.addr())
    s.sendall(request_bytes("a.example.com", "/die?mode=die&size=100000&part=1000"))
    reader = BufReader(s)
    head = reader.read_until(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    outcome = closed_within(s, 5.0)
    assert outcome in ("reset",) or outcome.startswith("eof"), f"client connection {outcome}"


@pytest.mark.parametrize("variant", ["dup", "clte", "nonnum"])
def test_backend_ambiguous_length_is_502(http_backends, proxy_factory, variant):
    """dup: two different Content-Lengths; clte: Content-Length + chunked; nonnum: '6x'."""
    a = http_backends.add("a")
    p = start(proxy_factory, {"a": [a.addr]})
    r = get(p.addr(), "a.example.com", f"/x?mode=dupcl&v={variant}")
    assert r.status == 502, r
    assert b"hello" not in r.body, f"the ambiguous body was forwarded: {r!r}"
    assert a.request_count() == 1


def test_service_without_endpoints_is_503(http_backends, proxy_factory):
    a = http_backends.add("a")
    p = start(proxy_factory, {"a": [a.addr], "e": []})
    r = get(p.addr(), "e.example.com")
    assert r.status == 503, r
    assert get(p.addr(), "a.example.com").status == 200


def test_all_endpoints_refused_is_502(proxy_factory):
    dead = [new_listener(), new_listener()]
    p = start(proxy_factory, {"d": dead}, timeouts={"connect": "2s"},
              limits={"connectTries": 3, "endpointBackoff": "2s"})
    t0 = time.monotonic()
    r = get(p.addr(), "d.example.com")
    assert r.status == 502, r
    assert time.monotonic() - t0 < 2.0


def test_slow_backend_is_504(http_backends, proxy_factory):
    a = http_backends.add("a")
    p = start(proxy_factory, {"a": [a.addr]}, timeouts={"server": "1s"})
    t0 = time.monotonic()
    try:
        r = get(p.addr(), "a.example.com", "/slow?mode=slow&delay=4")
    except socket.timeout:
        pytest.fail(f"no answer within 5s although timeouts.server is 1s")
    elapsed = time.monotonic() - t0
    assert r.status == 504, r
    assert 0.8 <= elapsed <= 2.5, f"504 after {elapsed:.2f}s with timeouts.server 1s"
    assert a.request_count() == 1


def test_slowloris_gets_408(http_backends, proxy_factory, clients):
    a = http_backends.add("a")
    p = start(proxy_factory, {"a": [a.addr]}, timeouts={"requestHead": "1s"})
    s = clients.connect(p.addr())
    s.setblocking(True)
    head = b"GET / HTTP/1.1\r\nHost: a.example.com\r\nX-Slow: " + b"x" * 100
    t0 = time.monotonic()
    answered = b""
    for byte in head:
        try:
            s.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            break
        s.settimeout(0.3)  # the pace of the slow client
        try:
            answered = s.recv(65536)
            break
        except socket.timeout:
            pass
        if time.monotonic() - t0 > 4:
            break
    elapsed = time.monotonic() - t0
    assert answered, f"no response after {elapsed:.1f}s of a head trickling in"
    assert answered.startswith(b"HTTP/1.1 408"), answered[:200]
    assert elapsed < 2.0, f"408 after {elapsed:.2f}s with requestHead 1s"
    s.settimeout(3)
    outcome = closed_within(s, 2.0)
    assert outcome in ("reset",) or outcome.startswith("eof"), f"not closed after 408: {outcome}"
    assert a.request_count() == 0


def test_websocket_upgrade_and_echo(http_backends, proxy_factory, clients):
    a = http_backends.add("a")
    p = start(proxy_factory, {"a": [a.addr]}, timeouts={"server": "2s", "client": "2s"})
    key = base64.b64encode(os.urandom(16)).decode()
    s = clients.connect(p.addr())
    s.sendall(request_bytes("a.example.com", "/chat", headers=[
        "Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13"]))
    reader = BufReader(s)
    r = read_response(reader)
    assert r.status == 101, r
    assert r.header("sec-websocket-accept") == ws_accept(key)
    assert (r.header("upgrade") or "").lower() == "websocket"
    assert "upgrade" in (r.header("connection") or "").lower()
    # server -> client first: the backend's greeting frame
    assert reader.read_exact(2 + 4) == b"\x81\x04ws:a"
    # client -> server -> client, several sizes, including one over 64 KiB
    for payload in (b"hello", b"x" * 300, os.urandom(70000)):
        frame = ws_frame(payload, opcode=0x2)
        s.sendall(frame)
        assert reader.read_exact(len(frame)) == frame
    req = a.requests[0]
    assert req["target"] == "/chat"
    assert "upgrade" in req["headers"] and "sec-websocket-key" in req["headers"]
    s.sendall(ws_frame(b"bye"))
    assert reader.read_exact(len(ws_frame(b"bye"))) == ws_frame(b"bye")
    s.shutdown(socket.SHUT_WR)
    outcome = closed_within(s, 3.0)
    assert outcome == "eof", f"tunnel not closed after the client's EOF: {outcome}"


def test_backend_stalls_mid_body_client_is_closed(http_backends, proxy_factory, clients):
    a = http_backends.add("a")
    p = start(proxy_factory, {"a": [a.addr]}, timeouts={"server": "1s"})
    s = clients.connect(p.addr(), timeout=8)
    t0 = time.monotonic()
    s.sendall(request_bytes("a.example.com", "/stall?mode=stall&size=100000&part=1000&delay=8"))
    reader = BufReader(s)
    head = reader.read_until(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    outcome = closed_within(s, 4.0)
    elapsed = time.monotonic() - t0
    assert outcome == "reset" or outcome.startswith("eof"), \
        f"client left {outcome} after {elapsed:.1f}s while the backend stalled (server 1s)"
    assert elapsed < 3.0


def test_websocket_data_sent_with_the_handshake(http_backends, proxy_factory, clients):
    """Bytes the client sends right behind the upgrade request are delivered after the
    switch, not lost or parsed as HTTP."""
    a = http_backends.add("a")
    p = start(proxy_factory, {"a": [a.addr]})
    key = base64.b64encode(os.urandom(16)).decode()
    frame = ws_frame(b"early data")
    s = clients.connect(p.addr())
    s.sendall(request_bytes("a.example.com", "/chat", headers=[
        "Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13"]) + frame)
    reader = BufReader(s)
    r = read_response(reader)
    assert r.status == 101, r
    assert reader.read_exact(6) == b"\x81\x04ws:a"
    assert reader.read_exact(len(frame)) == frame

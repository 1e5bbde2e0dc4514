"""Snapshot swaps under connections in flight: a connection only ever uses indices into the
routing snapshot it was routed with.

One focused scenario per place a connection carries an index across a SIGHUP reload, then
a randomized reload storm under every kind of client.  What is asserted:

- a request in flight finishes on the endpoint it has (and a Set-Cookie names that endpoint
  in its service);
- the next request on a keep-alive connection is routed with the newest table;
- a connection whose listener was removed or changed protocol finishes its exchange and
  closes, and nothing of it reaches another listener's services;
- a reload that changes nothing never cuts a connection;
- the process never stops answering, and exits 0 on SIGTERM.
"""

from __future__ import annotations

import copy
import hashlib
import os
import random
import signal
import socket
import threading
import time
from typing import Dict, List, Optional

import pytest

from conftest import connect, fd_count, make_config, new_listener, recv_exact, recv_line
from http_backends import (BufReader, HTTPBackend, closed_within, http_listener, port_of,
                           read_response, request_bytes)
from swap_backends import GatedHTTPBackend, GatedRawBackend, HeldHTTPBackend, cookie_value
from tls_backends import BIOClient, client_context, parse_proxy, proxy_v1, proxy_v2

pytestmark = pytest.mark.sluice_only

SPOOF = "203.0.113.7"


# --------------------------------------------------------------------------
# helpers

def crash_report(p) -> str:
    """The proxy's state for a failure message: exit status and the end of its stderr."""
    if p.proc.poll() is None:
        try:
            p.proc.wait(0.5)
        except Exception:  # noqa: BLE001 - still running is an answer too
            pass
    rc = p.proc.poll()
    state = "still running" if rc is None else f"exited rc={rc}"
    if rc is not None and p.reader is not None:
        p.reader.join(2)
    tail = "\n".join(p.stderr_text().splitlines()[-25:])
    return f"sluice {state}; stderr tail:\n{tail}"


def expect(p, what: str, fn):
    """Runs fn(); a socket error or EOF becomes an assertion naming `what` and the proxy's
    state (a crash shows as EOF on every client)."""
    try:
        return fn()
    except (OSError, EOFError, ValueError) as exc:
        raise AssertionError(f"{what}: {type(exc).__name__}: {exc}\n{crash_report(p)}") from None


def assert_alive(p) -> None:
    assert p.proc.poll() is None, f"sluice is gone\n{crash_report(p)}"
    assert "Fatal error" not in p.stderr_text(), crash_report(p)


class HTTPClient:
    def __init__(self, addr: str, timeout: float = 5.0):
        self.sock = connect(addr, timeout)
        self.reader = BufReader(self.sock)

    def send(self, host: str, target: str = "/", headers=(), method: str = "GET",
             body: bytes = b"") -> None:
        self.sock.sendall(request_bytes(host, target, method, list(headers), body))

    def response(self, method: str = "GET"):
        return read_response(self.reader, method)

    def close(self) -> None:
        self.sock.close()


def set_cookie(resp) -> Optional[tuple]:
    value = resp.header("set-cookie")
    if value is None:
        return None
    pair = value.split(";", 1)[0].strip()
    name, _, val = pair.partition("=")
    return name, val


def http_cfg(listeners: Dict[str, dict], services: Dict[str, object], **kw) -> dict:
    kw.setdefault("timeouts", {"connect": "10s"})
    return make_config(listeners, services, **kw)


# --------------------------------------------------------------------------
# (a) cookie-sticky responses in flight when the service shrinks

def test_cookie_responses_in_flight_when_service_shrinks(proxy_factory):
    bes = {n: HeldHTTPBackend(n) for n in "abc"}
    try:
        listen = new_listener()
        route = [{"host": "s.test", "service": "s"}]

        def cfg(names):
            return http_cfg({"web": http_listener(listen, route)},
                            {"s": {"algorithm": "cookie", "cookie": "STICKY",
                                   "endpoints": [bes[n].addr for n in names]}})

        p = proxy_factory(cfg("abc"))
        clients = [HTTPClient(listen) for _ in range(3)]
        for i, c in enumerate(clients):
            c.send("s.test", f"/first{i}?mode=hold")
        # round robin over three endpoints: one request held at each
        for be in bes.values():
            be.wait_held(1)
        p.reload(cfg("a"))
        for be in bes.values():
            be.release()

        served = {}
        for i, c in enumerate(clients):
            r = expect(p, f"in-flight cookie request {i} after the reload to one endpoint",
                       c.response)
            assert r.status == 200, r
            name = r.header("x-backend")
            served[name] = r
            want = ("STICKY", cookie_value(bes[name].addr, "s"))
            assert set_cookie(r) == want, (
                f"request {i} was served by {name} but its Set-Cookie is {set_cookie(r)}; "
                f"the cookie naming {name} in service s is {want}")
        assert sorted(served) == ["a", "b", "c"], \
            f"the three in-flight requests should finish on a, b and c: {sorted(served)}"

        # The next request on each keep-alive connection uses the new table: only a.
        b_cookie = cookie_value(bes["b"].addr, "s")
        for i, c in enumerate(clients):
            headers = [f"Cookie: STICKY={b_cookie}"] if i == 0 else []
            c.send("s.test", f"/second{i}", headers=headers)
            r = expect(p, f"second request on keep-alive connection {i}", c.response)
            assert r.status == 200 and r.header("x-backend") == "a", \
                f"request after the reload went to {r.header('x-backend')} (only a is left): {r}"
            assert set_cookie(r) == ("STICKY", cookie_value(bes["a"].addr, "s")), \
                f"a request without a valid cookie must get a's cookie: {set_cookie(r)}"
            c.close()
        assert_alive(p)
    finally:
        for be in bes.values():
            be.shutdown()


# --------------------------------------------------------------------------
# (b) an upstream connect still pending when the endpoints shrink

def test_pending_connect_completes_after_endpoints_shrink(proxy_factory, http_backends):
    p1, p2, n = http_backends.add("p1"), http_backends.add("p2"), http_backends.add("n")
    gate = GatedHTTPBackend("gate")
    try:
        listen = new_listener()
        old = http_cfg({"web": http_listener(listen, [{"host": "pad.test", "service": "pad"},
                                                      {"host": "s.test", "service": "s"}])},
                       {"pad": [p1.addr, p2.addr], "s": [gate.addr]})
        new = http_cfg({"web": http_listener(listen, [{"host": "s.test", "service": "s"}])},
                       {"s": [n.addr]})
        p = proxy_factory(old)
        c = HTTPClient(listen)
        c.send("s.test", "/pending")
        gate.wait_pending()          # sluice's connect to gate (endpoint #2) is in SYN-SENT
        p.reload(new)                # now one endpoint in all
        gate.open()                  # the connect completes on the SYN retransmission
        r = expect(p, "request whose connect was pending across the reload", c.response)
        assert r.status == 200, r
        assert r.header("x-backend") == "gate", \
            f"the in-flight request must finish on the endpoint it had (gate): {r}"
        c.send("s.test", "/next")
        r = expect(p, "next request on the keep-alive connection", c.response)
        assert r.header("x-backend") == "n", f"the next request must use the new table (n): {r}"
        assert p1.request_count() + p2.request_count() == 0
        c.close()
        assert_alive(p)
    finally:
        gate.shutdown()


# --------------------------------------------------------------------------
# (c) retry on a new connection after a reused keep-alive upstream closed

@pytest.mark.parametrize("change", ["shrink", "renumber"])
def test_retry_after_reused_upstream_closed_across_reload(proxy_factory, http_backends, change):
    p1, p2 = http_backends.add("p1"), http_backends.add("p2")
    n, z1, z2 = http_backends.add("n"), http_backends.add("z1"), http_backends.add("z2")
    h = HeldHTTPBackend("h")
    try:
        listen = new_listener()
        old = http_cfg({"web": http_listener(listen, [{"host": "pad.test", "service": "pad"},
                                                      {"host": "s.test", "service": "s"}])},
                       {"pad": [p1.addr, p2.addr], "s": [h.addr]})
        if change == "shrink":   # h was endpoint #2; the new table has one endpoint
            new = http_cfg({"web": http_listener(listen, [{"host": "s.test", "service": "s"}])},
                           {"s": [n.addr]})
        else:                    # endpoint #2 is now z2, of another service
            new = http_cfg({"web": http_listener(listen, [{"host": "s.test", "service": "s"},
                                                          {"host": "z.test", "service": "z"}])},
                           {"s": [n.addr], "z": [z1.addr, z2.addr]})
        p = proxy_factory(old)
        c = HTTPClient(listen)
        c.send("s.test", "/one")
        r = expect(p, "first request", c.response)
        assert r.header("x-backend") == "h", r
        c.send("s.test", "/two?mode=hangup")   # goes out on the kept upstream
        h.wait_held(1)
        assert h.conn_count() == 1, "the second request should reuse the first's upstream"
        p.reload(new)
        h.release()                            # h closes it without answering
        r = expect(p, "request retried after its reused upstream closed", c.response)
        strays = {b.name: b.request_count() for b in (z1, z2) if b.request_count()}
        assert not strays, (f"the retry reached {strays}, never in service s (s was [h], "
                            f"then [n]); the client got {r.status}")
        assert r.status == 200, f"the retried request failed: {r}"
        assert r.header("x-backend") in ("h", "n"), (
            f"the retry reached {r.header('x-backend')}, which was never in service s "
            f"(s was [h], then [n])")
        c.send("s.test", "/three")
        r = expect(p, "next request on the keep-alive connection", c.response)
        assert r.header("x-backend") == "n", f"the next request must use the new table (n): {r}"
        c.close()
        assert_alive(p)
    finally:
        h.shutdown()


# --------------------------------------------------------------------------
# (d) the listener of a keep-alive connection removed or changed protocol mid-exchange

@pytest.mark.parametrize("change", ["removed", "renumbered", "protocol"])
def test_keepalive_connection_whose_listener_changed(proxy_factory, change):
    b1, b2 = HeldHTTPBackend("b1"), HeldHTTPBackend("b2")
    try:
        l1, l2 = new_listener(), new_listener()
        one = http_listener(l1, [{"host": "x.test", "service": "s1"}])
        two = http_listener(l2, [{"host": "x.test", "service": "s2"}])
        services = {"s1": [b1.addr], "s2": [b2.addr]}
        old = http_cfg({"one": one, "two": two}, services)
        if change == "removed":       # the client's listener was the last: route table #1
            client_addr, held, other = l2, b2, b1
            new = http_cfg({"one": one}, services)
        elif change == "renumbered":  # the client's table #0 is now listener two's
            client_addr, held, other = l1, b1, b2
            new = http_cfg({"two": two}, services)
        else:                         # listener two is a tcp listener now
            client_addr, held, other = l2, b2, b1
            new = http_cfg({"one": one, "two": {"address": l2, "protocol": "tcp",
                                                "service": "s2"}}, services)
        p = proxy_factory(old)
        c = HTTPClient(client_addr)
        c.send("x.test", "/first?mode=hold")
        held.wait_held(1)
        p.reload(new)
        held.release()
        r = expect(p, "the exchange in flight when its listener changed", c.response)
        assert r.status == 200 and r.header("x-backend") == held.name, \
            f"the request in flight must finish on {held.name}: {r}"
        try:
            c.send("x.test", "/second")
        except (BrokenPipeError, ConnectionResetError):
            pass
        state = closed_within(c.sock, 5.0)
        assert held.request_count() == 1 and other.request_count() == 0, (
            f"the second request on a connection whose listener was {change} reached a "
            f"backend: {held.name}={held.request_count()}, {other.name}="
            f"{other.request_count()} requests (the connection is {state})")
        assert state in ("eof", "reset"), (
            f"after its exchange, a connection whose listener is gone must close; it is "
            f"{state}\n{crash_report(p)}")
        c.close()
        assert_alive(p)
        # the process still answers on what is left
        keep = l1 if change != "renumbered" else l2
        c2 = HTTPClient(keep)
        c2.send("x.test", "/after", headers=["Connection: close"])
        assert expect(p, "a new request after the reload", c2.response).status == 200
        c2.close()
    finally:
        b1.shutdown()
        b2.shutdown()


# --------------------------------------------------------------------------
# (e) tunnels replaying peeked bytes after a reload renumbered the services

def header_then(data: bytes, n: int) -> bool:
    try:
        info = parse_proxy(data)
    except ValueError:
        return True
    if info is None:
        return len(data) >= n + 232  # no header coming: enough bytes to show what came
    return len(data) - info.length >= n


@pytest.mark.parametrize("change", ["shrink", "renumber"])
@pytest.mark.parametrize("kind", ["tls-passthrough", "tcp"])
def test_tunnel_replay_after_services_renumbered(proxy_factory, tls_backends, tls_certs,
                                                 kind, change):
    x, y = tls_backends.raw("x"), tls_backends.raw("y")
    gate = GatedRawBackend("gate")
    try:
        listen = new_listener()
        r_svc = {"endpoints": [gate.addr], "proxyProtocol": "v2"}
        if kind == "tcp":
            def lst(with_xy):
                return {"address": listen, "protocol": "tcp", "service": "r"}
        else:
            def lst(with_xy):
                routes = [{"host": "raw.example.com", "service": "r"}]
                if with_xy:
                    routes += [{"host": "x.example.com", "service": "x"},
                               {"host": "y.example.com", "service": "y"}]
                return {"address": listen, "protocol": "tls", "routes": routes}
        old = http_cfg({"t": lst(True)}, {"x": [x.addr], "y": [y.addr], "r": r_svc})
        if change == "shrink":   # r was service #2; now there is one service
            new = http_cfg({"t": lst(False)}, {"r": r_svc})
        else:                    # service #2 is now y, which sends no PROXY header
            new = http_cfg({"t": lst(True)}, {"r": r_svc, "x": [x.addr], "y": [y.addr]})
        p = proxy_factory(old)
        c = socket.create_connection(("127.0.0.1", port_of(listen)), timeout=10)
        sport = c.getsockname()[1]
        if kind == "tcp":
            first = b"tcp bytes before the reload\n"
        else:
            first = BIOClient(c, client_context(tls_certs), "raw.example.com").client_hello()
        c.sendall(first)
        gate.wait_pending()       # routed to r, connecting to gate
        p.reload(new)
        gate.open()
        rec = gate.wait_real_conn(timeout=10)
        later = b"\x17\x03\x03\x00\x05later" if kind != "tcp" else b"after the reload\n"
        try:
            gate.wait_data(rec, lambda d: header_then(d, len(first)), timeout=5,
                           what="PROXY header and the first bytes")
            c.sendall(later)
            gate.wait_data(rec, lambda d: header_then(d, len(first) + len(later)), timeout=5,
                           what="the later bytes")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{crash_report(p)}") from None
        c.close()
        assert rec.eof.wait(5), "gate saw no EOF after the client closed"
        data = bytes(rec.data)
        try:
            info = parse_proxy(data)
        except ValueError:
            info = None
        assert info is not None and info.version == 2, (
            f"service r sends a v2 PROXY header; its endpoint received {data[:60]!r} "
            f"(the tunnel used another service's settings)")
        assert (info.src, info.sport, info.dport) == ("127.0.0.1", sport, port_of(listen)), info
        assert data[info.length:] == first + later, "bytes after the header differ"
        assert x.conn_count() == 0 and y.conn_count() == 0
        assert_alive(p)
    finally:
        gate.shutdown()


# --------------------------------------------------------------------------
# (f) a reload that changes nothing cuts no connection

def wait_fds(pid: int, at_least: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while fd_count(pid) < at_least:
        assert time.monotonic() < deadline, \
            f"sluice holds {fd_count(pid)} descriptors, waited {timeout}s for {at_least}"
        time.sleep(0.005)  # bounded poll of /proc/PID/fd: no event says "accepted"


def test_unchanged_reload_cuts_no_connection(proxy_factory, backends, http_backends):
    a = backends.add("a")
    hb = http_backends.add("h")
    tcp_pp, tcp_plain, web_pp, web = (new_listener() for _ in range(4))
    cfg = make_config(
        {"tp": {"address": tcp_pp, "protocol": "tcp", "service": "a",
                "acceptProxy": ["127.0.0.0/8"]},
         "tcp": {"address": tcp_plain, "protocol": "tcp", "service": "a"},
         "wp": {"address": web_pp, "protocol": "http", "acceptProxy": ["127.0.0.0/8"],
                "routes": [{"host": "h.test", "service": "h"}]},
         "web": http_listener(web, [{"host": "h.test", "service": "h"}])},
        {"a": [a.addr], "h": [hb.addr]})
    p = proxy_factory(cfg)

    # established before: a tcp tunnel and an idle keep-alive HTTP client
    tunnel = connect(tcp_plain)
    assert recv_line(tunnel) == b"a"
    keep = HTTPClient(web)
    keep.send("h.test", "/before")
    assert keep.response().status == 200

    # PROXY headers still arriving (and one that has not started)
    port = port_of(tcp_pp)
    headers = [proxy_v1(SPOOF, "127.0.0.1", 40001, port), proxy_v2(SPOOF, "127.0.0.1", 40002, port),
               proxy_v1(SPOOF, "127.0.0.1", 40003, port)]
    cut = [12, 7, 0]
    base = fd_count(p.pid)
    partial = []
    for hdr, at in zip(headers, cut):
        s = connect(tcp_pp)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if at:
            s.sendall(hdr[:at])
        partial.append(s)
    http_pp = connect(web_pp)
    http_hdr = proxy_v1(SPOOF, "127.0.0.1", 40004, port_of(web_pp))
    http_pp.sendall(http_hdr[:15])
    wait_fds(p.pid, base + 4)   # all four accepted by sluice

    line = p.reload(cfg)        # the same file again
    assert "generation=2" in line

    for i, (s, hdr, at) in enumerate(zip(partial, headers, cut)):
        token = f"payload {i} after an unchanged reload\n".encode()
        s.sendall(hdr[at:] + token)
        name = expect(p, f"tcp acceptProxy connection {i} (header cut at byte {at}) after a "
                         f"reload that changed nothing", lambda: recv_line(s))
        assert name == b"a", name
        assert expect(p, f"echo on connection {i}", lambda: recv_exact(s, len(token))) == token
        s.close()
    http_pp.sendall(http_hdr[15:] + request_bytes("h.test", "/pp", headers=["Connection: close"]))
    r = expect(p, "http acceptProxy request after an unchanged reload",
               lambda: read_response(BufReader(http_pp)))
    assert r.status == 200 and r.json()["xff"] == SPOOF, r
    http_pp.close()

    tunnel.sendall(b"still here\n")
    assert expect(p, "tcp tunnel after an unchanged reload",
                  lambda: recv_exact(tunnel, 11)) == b"still here\n"
    tunnel.close()
    keep.send("h.test", "/after")
    assert expect(p, "idle keep-alive client after an unchanged reload", keep.response).status == 200
    keep.close()
    assert_alive(p)

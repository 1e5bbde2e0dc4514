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
import re
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
    """The proxy's state for a failure message: exit status, the fatal error and the
    crashed thread's first frames if any, and its last log lines."""
    if p.proc.poll() is None:
        try:
            p.proc.wait(0.5)
        except Exception:  # noqa: BLE001 - still running is an answer too
            pass
    rc = p.proc.poll()
    state = "still running" if rc is None else f"exited rc={rc}"
    if rc is not None and p.reader is not None:
        p.reader.join(2)
    lines = p.stderr_text().splitlines()
    out = [f"sluice {state}"]
    out += [l for l in lines if "Fatal error" in l][:3]
    for i, line in enumerate(lines):
        if re.match(r"\s*Thread \d+.* crashed:", line):
            out += [l for l in lines[i:i + 12] if l.strip()][:8]
            break
    logged = [l for l in lines if " sluice: " in l]
    out.append("last log lines:")
    out += logged[-8:]
    return "\n".join(out)


def expect(p, what: str, fn):
    """Runs fn(); a socket error or EOF becomes an assertion naming `what` and the proxy's
    state (a crash shows as EOF on every client)."""
    try:
        return fn()
    except (OSError, EOFError, ValueError) as exc:
        raise AssertionError(f"{what}: {type(exc).__name__}: {exc}\n{crash_report(p)}") from None


TCP_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1",
              "05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT",
              "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING"}


def describe_fds(pid: int, names: Dict[int, str]) -> List[str]:
    """The process's descriptors; sockets as local -> remote port (named when known) and
    TCP state."""
    sockets = {}
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(f) as fh:
            next(fh)
            for line in fh:
                parts = line.split()
                lport = int(parts[1].rsplit(":", 1)[1], 16)
                rport = int(parts[2].rsplit(":", 1)[1], 16)
                sockets[parts[9]] = (f":{lport}({names.get(lport, '?')}) -> :{rport}"
                                     f"({names.get(rport, '?')}) {TCP_STATES.get(parts[3], parts[3])}")
    out = []
    for fd in sorted(os.listdir(f"/proc/{pid}/fd"), key=int):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            link = sockets.get(link[8:-1], link)
        out.append(f"{fd}: {link}")
    return out


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


# --------------------------------------------------------------------------
# randomized reloads under mixed clients

CHURN_SECONDS = float(os.environ.get("SLUICE_SWAP_SECONDS", "35"))
HTTP_POOL = [f"h{i}" for i in range(8)]
TCP_POOL = [f"t{i}" for i in range(6)]
TLS_A = ["ta0", "ta1", "ta2"]   # certificate a.example.com, no PROXY header
TLS_B = ["tb0", "tb1", "tb2"]   # certificate b.example.com, expect a PROXY v2 header
HTTP_SERVICES = {"svc-a": ("roundrobin", None), "svc-b": ("leastconn", None),
                 "svc-c": ("cookie", "SC"), "svc-d": ("cookie", None), "svc-e": ("source", None)}
HOSTS = ["a.test", "b.test", "c.test", "d.test", "e.test", "m.test", "zz.test"]
STABLE = ("H0", "T0", "P0", "S0")   # in every generation; H1, H2 and T1 come and go,
                                    # X1 comes and goes as http or tcp
MARGIN = 0.05                       # seconds around each generation's live interval
MISSING = object()                  # the listener is not in that generation
NO_ROUTE_BODY = b"no route\n"


def random_model(rng: random.Random, prev: Optional[dict], full: bool = False) -> dict:
    """One generation: services with random endpoint subsets, routes, listeners, orders."""
    if prev is not None and rng.random() < 0.15:
        return copy.deepcopy(prev)  # a reload that changes nothing
    services: Dict[str, dict] = {}
    for name, (algo, cookie) in HTTP_SERVICES.items():
        if full or name in ("svc-a", "svc-c") or rng.random() < 0.8:
            services[name] = {"algorithm": algo, "cookie": cookie,
                              "endpoints": rng.sample(HTTP_POOL, rng.randint(1, 4))}
    services["probe"] = {"algorithm": "roundrobin", "endpoints": ["hp"]}
    services["tcp-main"] = {"algorithm": "roundrobin", "endpoints": rng.sample(TCP_POOL, rng.randint(1, 3))}
    services["tcp-pp"] = {"algorithm": "leastconn", "pp": "v1",
                          "endpoints": rng.sample(TCP_POOL, rng.randint(1, 3))}
    if full or rng.random() < 0.7:
        services["tcp-alt"] = {"algorithm": "roundrobin",
                               "endpoints": rng.sample(TCP_POOL, rng.randint(1, 3))}
    services["tls-a"] = {"algorithm": "roundrobin", "endpoints": rng.sample(TLS_A, rng.randint(1, 3))}
    services["tls-b"] = {"algorithm": "roundrobin", "pp": "v2",
                         "endpoints": rng.sample(TLS_B, rng.randint(1, 3))}
    for i in range(rng.randint(0, 3)):  # never routed: they only shift everyone's indices
        services[f"pad{i}"] = {"algorithm": "roundrobin",
                               "endpoints": rng.sample(HTTP_POOL + TCP_POOL, rng.randint(1, 3))}
    http_svcs = [n for n in services if n.startswith("svc-")]

    def routes() -> dict:
        r = {"probe.test": "probe", "c.test": "svc-c"}
        for host, svc in (("a.test", "svc-a"), ("b.test", "svc-b"), ("d.test", "svc-d"),
                          ("e.test", "svc-e")):
            if svc in services and rng.random() < 0.9:
                r[host] = svc
        if rng.random() < 0.8:
            r["m.test"] = rng.choice(http_svcs)
        items = list(r.items())
        rng.shuffle(items)
        return dict(items)

    listeners = {"H0": {"kind": "http", "routes": routes()},
                 "T0": {"kind": "tcp", "service": "tcp-main"},
                 "P0": {"kind": "tcp", "service": "tcp-pp", "acceptProxy": True},
                 "S0": {"kind": "tls", "routes": {"a.example.com": "tls-a",
                                                  "b.example.com": "tls-b"}}}
    if full or rng.random() < 0.6:
        listeners["H1"] = {"kind": "http", "routes": routes()}
    if full or rng.random() < 0.5:
        listeners["H2"] = {"kind": "http", "routes": routes()}
    if full or rng.random() < 0.6:
        listeners["T1"] = {"kind": "tcp", "service": rng.choice(
            ["tcp-main"] + (["tcp-alt"] if "tcp-alt" in services else []))}
    if full or rng.random() < 0.7:  # one address that changes protocol
        if full or rng.random() < 0.5:
            listeners["X1"] = {"kind": "http", "routes": routes()}
        else:
            listeners["X1"] = {"kind": "tcp", "service": rng.choice(
                ["tcp-main"] + (["tcp-alt"] if "tcp-alt" in services else []))}
    order_l = list(listeners.items())
    rng.shuffle(order_l)
    order_s = list(services.items())
    rng.shuffle(order_s)
    return {"listeners": dict(order_l), "services": dict(order_s)}


class Gen:
    def __init__(self, n: int, model: dict, t_hup: float, t_ok: Optional[float]):
        self.n, self.model, self.t_hup, self.t_ok = n, model, t_hup, t_ok

    def endpoints(self, service) -> List[str]:
        if not isinstance(service, str) or service not in self.model["services"]:
            return []
        return self.model["services"][service]["endpoints"]

    def http_target(self, listener: str, host: str):
        spec = self.model["listeners"].get(listener)
        if spec is None or spec["kind"] != "http":
            return MISSING
        return spec["routes"].get(host)

    def tcp_target(self, listener: str):
        spec = self.model["listeners"].get(listener)
        if spec is None or spec["kind"] != "tcp":
            return MISSING
        return spec["service"]

    def tls_target(self, sni: str):
        return self.model["listeners"]["S0"]["routes"].get(sni)


class Storm:
    """Backends, listeners, the generation log, the clients and their observations."""

    def __init__(self, seed: int, addrs: Dict[str, str], listen: Dict[str, str], certs):
        self.seed = seed
        self.addrs = addrs      # backend name -> address
        self.listen = listen    # listener name -> address
        self.certs = certs
        self.gens: List[Gen] = []
        self.lock = threading.Lock()
        self.obs: List[dict] = []
        self.fatal: List[str] = []
        self.probes: List[float] = []
        self.probe_errors: List[str] = []
        self.stop = threading.Event()
        self.t_start = time.monotonic()
        self.by_cookie = {cookie_value(addrs[b], s): (b, s) for s in HTTP_SERVICES
                          for b in HTTP_POOL}

    # ---- configuration
    def to_config(self, model: dict) -> dict:
        listeners = {}
        for name, spec in model["listeners"].items():
            addr = self.listen[name]
            if spec["kind"] == "http":
                listeners[name] = {"address": addr, "protocol": "http",
                                   "routes": [{"host": h, "service": s}
                                              for h, s in spec["routes"].items()],
                                   "default": {"status": 404, "body": NO_ROUTE_BODY.decode()}}
            elif spec["kind"] == "tls":
                listeners[name] = {"address": addr, "protocol": "tls",
                                   "routes": [{"host": h, "service": s}
                                              for h, s in spec["routes"].items()]}
            else:
                listeners[name] = {"address": addr, "protocol": "tcp", "service": spec["service"]}
                if spec.get("acceptProxy"):
                    listeners[name]["acceptProxy"] = ["127.0.0.0/8"]
        services = {}
        for name, spec in model["services"].items():
            svc = {"algorithm": spec["algorithm"],
                   "endpoints": [self.addrs[e] for e in spec["endpoints"]]}
            if spec.get("cookie"):
                svc["cookie"] = spec["cookie"]
            if spec.get("pp"):
                svc["proxyProtocol"] = spec["pp"]
            services[name] = svc
        # No idle pipes kept: every descriptor sluice holds belongs to a listener or a
        # connection, so the count must come back to the baseline.
        return make_config(listeners, services, timeouts={"connect": "3s"},
                           limits={"upstreamIdle": "1s"}, extra={"tuning": {"pipePool": 0}})

    # ---- generations
    def rel(self, t: float) -> str:
        return f"{t - self.t_start:.3f}"

    def window(self, t0: float, t1: float) -> List[Gen]:
        """The generations that may have been in force at some moment of [t0, t1]: from
        its SIGHUP to the 'reloaded' line of the next one, widened by MARGIN."""
        out = []
        for i, g in enumerate(self.gens):
            end = float("inf")
            if i + 1 < len(self.gens) and self.gens[i + 1].t_ok is not None:
                end = self.gens[i + 1].t_ok
            if g.t_hup - MARGIN <= t1 and end + MARGIN >= t0:
                out.append(g)
        return out

    @staticmethod
    def explain(pairs) -> str:
        parts = []
        for g, s in pairs:
            if s is MISSING:
                parts.append(f"g{g.n}: listener absent")
            elif s is None:
                parts.append(f"g{g.n}: no route")
            else:
                parts.append(f"g{g.n}: {s}={g.endpoints(s)}")
        return "; ".join(parts)

    def reloader(self, p, rng: random.Random, until: float) -> None:
        model = self.gens[0].model
        try:
            while time.monotonic() < until and not self.stop.is_set():
                time.sleep(rng.uniform(0.05, 0.3))  # the churn period, not a synchronisation
                model = random_model(rng, model)
                n = len(self.gens) + 1
                since = p.mark()
                p.write_config(self.to_config(model))
                g = Gen(n, model, time.monotonic(), None)
                with self.lock:
                    self.gens.append(g)
                p.proc.send_signal(signal.SIGHUP)
                line = p.wait_line(rf"reloaded generation={n}\b", 10, since, also=r"reload failed")
                if "reload failed" in line:
                    self.fatal.append(f"generation {n} was refused: {line}\n{p.stderr_text()[-2000:]}")
                    return
                g.t_ok = time.monotonic()
        except Exception as exc:  # noqa: BLE001 - reported by the test
            first = str(exc).splitlines()[0] if str(exc) else ""
            self.fatal.append(f"reloading to generation {len(self.gens)}: "
                              f"{type(exc).__name__}: {first}")
        finally:
            p.generation = len(self.gens)

    def record(self, **kw) -> None:
        with self.lock:
            self.obs.append(kw)

    # ---- clients
    def guarded(self, fn, *args):
        def run():
            try:
                fn(*args)
            except Exception as exc:  # noqa: BLE001 - a bug in the client itself
                import traceback
                self.record(kind="client-crash", cid=args[0] if args else "?",
                            error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
        return threading.Thread(target=run, daemon=True, name=f"storm-{fn.__name__}-{args[:1]}")

    def http_client(self, cid: str, listener: str, split: float, bodies: float,
                    fixed_host: Optional[str], sticky: bool) -> None:
        rng = random.Random(f"{self.seed}-{cid}")
        addr = self.listen[listener]
        sock = reader = None
        conn_t0 = 0.0
        jar = None
        seq = 0
        while not self.stop.is_set():
            if sock is None:
                conn_t0 = time.monotonic()
                try:
                    sock = connect(addr, timeout=10)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    reader = BufReader(sock)
                except OSError as exc:
                    self.record(kind="http", cid=cid, seq=seq, listener=listener, host=None,
                                t0=conn_t0, t1=time.monotonic(), conn_t0=conn_t0,
                                error=f"connect: {type(exc).__name__}: {exc}")
                    time.sleep(rng.uniform(0.02, 0.1))
                    continue
            seq += 1
            host = fixed_host or rng.choice(HOSTS)
            target = f"/{cid}/{seq}"
            if rng.random() < 0.3:
                target += f"?mode=slow&delay={rng.uniform(0.01, 0.3):.3f}"
            headers = []
            if jar:
                headers.append(f"Cookie: {jar[0]}={jar[1]}")
            closing = rng.random() < 0.1
            if closing:
                headers.append("Connection: close")
            method, body, sha = "GET", b"", None
            if rng.random() < bodies:
                method = "POST"
                body = rng.randbytes(rng.randint(1, 40000))
                sha = hashlib.sha256(body).hexdigest()
                chunked = rng.random() < 0.5
                headers.append("Transfer-Encoding: chunked" if chunked
                               else f"Content-Length: {len(body)}")
            head = request_bytes(host, target, method, headers)
            t0 = time.monotonic()
            try:
                if rng.random() < split:
                    cuts = sorted(rng.sample(range(1, len(head)), rng.randint(1, 3)))
                    for a, b in zip([0] + cuts, cuts + [len(head)]):
                        sock.sendall(head[a:b])
                        time.sleep(rng.uniform(0.005, 0.04))  # split the head on the wire
                else:
                    sock.sendall(head)
                if body:
                    n = rng.randint(2, 5)
                    step = max(1, len(body) // n + 1)
                    for off in range(0, len(body), step):
                        part = body[off:off + step]
                        sock.sendall(b"%x\r\n" % len(part) + part + b"\r\n" if chunked else part)
                        time.sleep(rng.uniform(0.005, 0.05))  # a slow body
                    if chunked:
                        sock.sendall(b"0\r\n\r\n")
                resp = read_response(reader, method)
            except (OSError, EOFError, ValueError) as exc:
                self.record(kind="http", cid=cid, seq=seq, listener=listener, host=host,
                            t0=t0, t1=time.monotonic(), conn_t0=conn_t0, target=target,
                            error=f"{type(exc).__name__}: {exc}")
                sock.close()
                sock = None
                continue
            t1 = time.monotonic()
            facts = None
            if resp.status == 200:
                try:
                    facts = resp.json()
                except ValueError:
                    facts = {"unparsable": resp.body[:200]}
            self.record(kind="http", cid=cid, seq=seq, listener=listener, host=host, t0=t0,
                        t1=t1, conn_t0=conn_t0, target=target, error=None, status=resp.status,
                        backend=resp.header("x-backend"), facts=facts, body=resp.body[:100],
                        sent_cookie=jar, set_cookie=set_cookie(resp), sha=sha, sticky=sticky)
            if sticky and set_cookie(resp):
                jar = set_cookie(resp)
            if closing or (resp.header("connection") or "").lower() == "close":
                sock.close()
                sock = None
            time.sleep(rng.uniform(0, 0.03))
        if sock is not None:
            sock.close()

    def tcp_client(self, cid: str, listener: str) -> None:
        rng = random.Random(f"{self.seed}-{cid}")
        seq = 0
        while not self.stop.is_set():
            seq += 1
            t0 = time.monotonic()
            name, phase = None, "connect"
            t1 = None
            try:
                s = connect(self.listen[listener], timeout=10)
                try:
                    phase = "name"
                    name = recv_line(s).decode()
                    t1 = time.monotonic()
                    phase = "echo"
                    for k in range(1 + (rng.random() < 0.5)):
                        token = f"{cid} {seq} {k} {rng.random()}\n".encode()
                        s.sendall(token)
                        got = recv_exact(s, len(token))
                        if got != token:
                            raise ValueError(f"echo {got!r} for {token!r}")
                        time.sleep(rng.uniform(0.05, 0.3))  # hold the tunnel across reloads
                finally:
                    s.close()
                err = None
            except (OSError, EOFError, ValueError) as exc:
                err = f"{phase}: {type(exc).__name__}: {exc}"
            self.record(kind="tcp", cid=cid, seq=seq, listener=listener, t0=t0,
                        t1=t1 or time.monotonic(), backend=name, error=err, phase=phase)
            time.sleep(rng.uniform(0, 0.03))

    def pp_client(self, cid: str) -> None:
        rng = random.Random(f"{self.seed}-{cid}")
        port = port_of(self.listen["P0"])
        seq = 0
        while not self.stop.is_set():
            seq += 1
            sport = rng.randint(1024, 65000)
            hdr = (proxy_v1 if rng.random() < 0.5 else proxy_v2)(SPOOF, "127.0.0.1", sport, port)
            token = f"pp {cid} {seq}\n".encode()
            t0 = time.monotonic()
            name, phase, t1, echoed = None, "connect", None, b""
            try:
                s = connect(self.listen["P0"], timeout=10)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                try:
                    phase = "header"
                    cuts = sorted(rng.sample(range(1, len(hdr)), rng.randint(1, 3)))
                    for a, b in zip([0] + cuts, cuts + [len(hdr)]):
                        s.sendall(hdr[a:b])
                        time.sleep(rng.uniform(0.005, 0.05))  # split the header on the wire
                    s.sendall(token)
                    phase = "name"
                    name = recv_line(s).decode()
                    t1 = time.monotonic()
                    phase = "echo"
                    buf = bytearray()
                    while not bytes(buf).endswith(token) and len(buf) < 400:
                        chunk = s.recv(4096)
                        if not chunk:
                            raise EOFError(f"EOF after echo {bytes(buf)!r}")
                        buf += chunk
                    echoed = bytes(buf)
                finally:
                    s.close()
                err = None
            except (OSError, EOFError, ValueError) as exc:
                err = f"{phase}: {type(exc).__name__}: {exc}"
            want = f"PROXY TCP4 {SPOOF} 127.0.0.1 {sport} {port}\r\n".encode() + token
            self.record(kind="pp", cid=cid, seq=seq, listener="P0", t0=t0,
                        t1=t1 or time.monotonic(), backend=name, error=err, phase=phase,
                        echoed=echoed, want=want)
            time.sleep(rng.uniform(0, 0.03))

    def tls_client(self, cid: str) -> None:
        import ssl
        rng = random.Random(f"{self.seed}-{cid}")
        ctx = client_context(self.certs)
        host, port = "127.0.0.1", port_of(self.listen["S0"])
        seq = 0
        while not self.stop.is_set():
            seq += 1
            sni = rng.choice(["a.example.com", "b.example.com"])
            t0 = time.monotonic()
            name, phase, t1 = None, "connect", None
            try:
                s = socket.create_connection((host, port), timeout=10)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                try:
                    cli = BIOClient(s, ctx, sni)
                    hello = cli.client_hello()
                    phase = "hello"
                    cuts = sorted(rng.sample(range(1, len(hello)), rng.randint(0, 2)))
                    for a, b in zip([0] + cuts, cuts + [len(hello)]):
                        s.sendall(hello[a:b])
                        if b < len(hello):
                            time.sleep(rng.uniform(0.005, 0.05))  # split the ClientHello
                    phase = "handshake"
                    cli.handshake(timeout=10)
                    token = f"tls {cid} {seq}\n".encode()
                    cli.send(token)
                    phase = "name"
                    name = cli.recv_line(timeout=10).decode()
                    t1 = time.monotonic()
                    phase = "echo"
                    got = cli.recv_line(timeout=10) + b"\n"
                    if got != token:
                        raise ValueError(f"echo {got!r} for {token!r}")
                    cli.send(b"BYE\n")
                finally:
                    s.close()
                err = None
            except (OSError, EOFError, ValueError, ssl.SSLError) as exc:
                err = f"{phase}: {type(exc).__name__}: {exc}"
            self.record(kind="tls", cid=cid, seq=seq, listener="S0", sni=sni, t0=t0,
                        t1=t1 or time.monotonic(), backend=name, error=err, phase=phase)
            time.sleep(rng.uniform(0, 0.03))

    def prober(self, _cid: str) -> None:
        addr = self.listen["H0"]
        while not self.stop.is_set():
            t = time.monotonic()
            try:
                host, _, port = addr.rpartition(":")
                with socket.create_connection((host, int(port)), timeout=2) as s:
                    s.settimeout(2)
                    s.sendall(request_bytes("probe.test", "/probe", headers=["Connection: close"]))
                    r = read_response(BufReader(s))
                with self.lock:
                    self.probes.append(time.monotonic())
                if r.status != 200 or r.header("x-backend") != "hp":
                    self.probe_errors.append(f"t={self.rel(t)}: {r.status} {r.header('x-backend')}")
            except (OSError, EOFError, ValueError) as exc:
                self.probe_errors.append(f"t={self.rel(t)}: {type(exc).__name__}: {exc}")
            self.stop.wait(0.1)  # the probe period

    # ---- verification
    def check(self, o: dict) -> Optional[str]:
        kind = o["kind"]
        if kind == "client-crash":
            return f"client {o['cid']} crashed: {o['error']}"
        gens = self.window(o["t0"], o["t1"])
        gn = f"g{gens[0].n}..g{gens[-1].n}"
        where = (f"{kind} client {o['cid']} #{o['seq']} on {o['listener']} "
                 f"[t={self.rel(o['t0'])}..{self.rel(o['t1'])}, generations {gn}]")
        listener = o["listener"]
        if kind == "http":
            return self.check_http(o, gens, where)
        if kind == "tls":
            pairs = [(g, g.tls_target(o["sni"])) for g in gens]
            where += f" SNI {o['sni']}"
        else:
            pairs = [(g, g.tcp_target(listener)) for g in gens]
        if o["error"]:
            routed = o["phase"] in ("echo",)
            if listener in STABLE or routed:
                return f"{where}: {o['error']} ({self.explain(pairs)})"
            if all(s is not MISSING for _, s in pairs):
                return (f"{where}: {o['error']}, though its listener was in every generation "
                        f"of the window ({self.explain(pairs)})")
            return None
        present = [(g, s) for g, s in pairs if s is not MISSING]
        if not any(o["backend"] in g.endpoints(s) for g, s in present):
            return (f"{where}: reached {o['backend']}, which is in its service in none of these "
                    f"generations: {self.explain(pairs)}")
        if kind == "pp" and o["echoed"] != o["want"]:
            return (f"{where}: service tcp-pp sends a v1 PROXY header; endpoint {o['backend']} "
                    f"echoed {o['echoed']!r}, expected {o['want']!r}")
        return None

    def check_http(self, o: dict, gens: List[Gen], where: str) -> Optional[str]:
        listener, host = o["listener"], o["host"]
        if o["error"]:
            if listener in STABLE:
                return f"{where} Host {host} {o.get('target')}: {o['error']}"
            conn_gens = self.window(o["conn_t0"], o["t1"])
            if all(g.http_target(listener, "probe.test") is not MISSING for g in conn_gens):
                return (f"{where} Host {host}: {o['error']}, though {listener} was in every "
                        f"generation since the connection opened (g{conn_gens[0].n}.."
                        f"g{conn_gens[-1].n})")
            return None
        where += f" Host {host} {o['target']}"
        pairs = [(g, g.http_target(listener, host)) for g in gens]
        present = [(g, s) for g, s in pairs if s is not MISSING]
        backend, status = o["backend"], o["status"]
        if status == 404 and backend is None and o["body"] == NO_ROUTE_BODY:
            if not any(s is None for _, s in present):
                return f"{where}: default 404, but the host had a route in every generation: " \
                       f"{self.explain(pairs)}"
            return None
        if status != 200 or backend is None:
            return f"{where}: unexpected answer {status} (X-Backend {backend}) {o['body']!r}"
        ok = [(g, s) for g, s in present if s is not None and backend in g.endpoints(s)]
        if not ok:
            return (f"{where}: reached {backend}, which is in the routed service in none of "
                    f"these generations: {self.explain(pairs)}")
        facts = o["facts"] or {}
        if facts.get("host") != host or facts.get("backend") != backend:
            return f"{where}: the answer belongs to another request: {facts}"
        if o["sha"] and facts.get("body_sha256") != o["sha"]:
            return f"{where}: {backend} received a different body ({facts.get('body_len')} bytes)"
        # stickiness cookies
        cookie_ok = [(g, s) for g, s in ok
                     if g.model["services"][s]["algorithm"] == "cookie"]
        sc = o["set_cookie"]
        if sc is not None:
            want = {(g.model["services"][s].get("cookie") or "SLUICE",
                     cookie_value(self.addrs[backend], s)) for g, s in cookie_ok}
            if sc not in want:
                named = self.by_cookie.get(sc[1])
                return (f"{where}: served by {backend} with Set-Cookie {sc[0]}={sc[1]} (naming "
                        f"{named[0] + ' in ' + named[1] if named else 'no known endpoint'}); "
                        f"the cookie of {backend} in its service is one of {sorted(want)}; "
                        f"{self.explain(pairs)}")
        sent = o["sent_cookie"]
        all_cookie = present and all(
            s is not None and g.model["services"][s]["algorithm"] == "cookie" for g, s in present)
        if sc is None and sent is None and all_cookie:
            return f"{where}: no Set-Cookie from cookie service ({self.explain(pairs)})"
        if sent is not None and sent[1] in self.by_cookie:
            # Sticky while the named endpoint stays in its service: in every generation of
            # the window (also those without this listener: an endpoint that left the
            # newest table may be passed over by a request finishing on an older one).
            y, svc = self.by_cookie[sent[1]]
            stays = present and all(
                s == svc and (g.model["services"][s].get("cookie") or "SLUICE") == sent[0]
                for g, s in present) and all(y in g.endpoints(svc) for g in gens)
            if stays and (backend != y or sc is not None):
                return (f"{where}: the cookie names {y}, in {svc} throughout, but {backend} "
                        f"answered (Set-Cookie {sc}); {self.explain(pairs)}; "
                        f"{self.explain([(g, svc) for g in gens])}")
        return None


def test_randomized_reloads_under_mixed_clients(proxy_factory, backends, tls_backends, tls_certs):
    seed = int(os.environ.get("SLUICE_SWAP_SEED") or random.SystemRandom().randrange(1 << 32))
    print(f"SLUICE_SWAP_SEED={seed}")
    rng = random.Random(seed)
    http = {n: HTTPBackend(n) for n in HTTP_POOL + ["hp"]}
    try:
        addrs = {n: be.addr for n, be in http.items()}
        for n in TCP_POOL:
            addrs[n] = backends.add(n).addr
        for n in TLS_A:
            addrs[n] = tls_backends.tls(n, cert_key="a").addr
        for n in TLS_B:
            addrs[n] = tls_backends.tls(n, cert_key="b", expect_proxy=True).addr
        listen = {n: new_listener() for n in ("H0", "H1", "H2", "X1", "T0", "T1", "P0", "S0")}
        storm = Storm(seed, addrs, listen, tls_certs)
        initial = random_model(rng, None, full=True)
        storm.gens.append(Gen(1, initial, float("-inf"), float("-inf")))
        p = proxy_factory(storm.to_config(initial), workers=2)
        names = {port_of(a): n for n, a in {**addrs, **listen}.items()}
        baseline = fd_count(p.pid)
        start_fds = describe_fds(p.pid, names)

        threads = [storm.guarded(storm.prober, "probe")]
        plan = ([("H0", 0.3, 0.15, None, False)] * 10 + [("H1", 0.3, 0.1, None, False)] * 3 +
                [("H2", 0.3, 0.1, None, False)] * 3 + [("X1", 0.3, 0.1, None, False)] * 2 +
                [("H0", 0.5, 1.0, None, False)] * 4 +
                [("H0", 0.2, 0.0, "c.test", True)] * 3 + [("H0", 0.2, 0.0, "d.test", True)] * 2 +
                [("H1", 0.2, 0.0, "c.test", True)])
        for i, args in enumerate(plan):
            threads.append(storm.guarded(storm.http_client, f"http{i}", *args))
        threads += [storm.guarded(storm.tls_client, f"tls{i}") for i in range(6)]
        threads += [storm.guarded(storm.pp_client, f"pp{i}") for i in range(4)]
        threads += [storm.guarded(storm.tcp_client, f"tcp{i}", "T0" if i < 5 else "T1")
                    for i in range(8)]
        storm.t_start = time.monotonic()
        for t in threads:
            t.start()
        until = time.monotonic() + CHURN_SECONDS
        reloader = threading.Thread(target=storm.reloader, args=(p, rng, until), daemon=True)
        reloader.start()
        reloader.join(CHURN_SECONDS + 15)
        t_end = time.monotonic()
        storm.stop.set()
        for t in threads:
            t.join(max(0.1, t_end + 20 - time.monotonic()))
        hung = [t.name for t in threads if t.is_alive()]

        assert not storm.fatal, f"seed {seed}: {storm.fatal[0]}\n{crash_report(p)}"
        assert not reloader.is_alive(), f"seed {seed}: the reloader hung\n{crash_report(p)}"
        assert p.proc.poll() is None, f"seed {seed}: sluice died\n{crash_report(p)}"

        # the process never stops answering
        times = [storm.t_start] + storm.probes + [t_end]
        gaps = sorted(((b - a, a, b) for a, b in zip(times, times[1:])), reverse=True)
        if gaps[0][0] > 2.0:
            gap, a, b = gaps[0]
            live = storm.window(a, b)
            raise AssertionError(
                f"seed {seed}: no answer on stable listener H0 for {gap:.2f}s (t={storm.rel(a)}.."
                f"{storm.rel(b)}, generations g{live[0].n}..g{live[-1].n}); probe errors: "
                f"{storm.probe_errors[:5]}\n{crash_report(p)}")

        # no request reaches an endpoint outside its service in its generations
        failures = [(o["kind"], f) for o, f in ((o, storm.check(o)) for o in storm.obs) if f]
        kinds: Dict[str, int] = {}
        for kind, _ in failures:
            kinds[kind] = kinds.get(kind, 0) + 1
        assert not failures, (f"seed {seed}: {len(failures)} of {len(storm.obs)} observations "
                              f"failed over {len(storm.gens)} generations (by client kind: "
                              f"{kinds}); first ones:\n" +
                              "\n".join(f for _, f in failures[:12]))
        assert not hung, f"seed {seed}: client threads hung: {hung}"

        # the run was not vacuous
        ok = {}
        for o in storm.obs:
            if not o.get("error"):
                key = o["kind"] + ("-cookie" if o.get("sticky") else "") + \
                    ("-body" if o.get("sha") else "")
                ok[key] = ok.get(key, 0) + 1
        print(f"generations={len(storm.gens)} observations={len(storm.obs)} ok={ok}")
        assert len(storm.gens) >= 40, f"seed {seed}: only {len(storm.gens)} generations"
        for key, least in (("http", 200), ("http-cookie", 40), ("http-body", 20), ("tls", 30),
                           ("pp", 30), ("tcp", 40)):
            assert ok.get(key, 0) >= least, f"seed {seed}: too few {key} successes: {ok}"

        # descriptors return to the baseline once clients are gone (pooled upstreams are
        # dropped by the reload back to the first table and by the 1 s idle sweep)
        p.reload(storm.to_config(initial))
        deadline = time.monotonic() + 10
        while fd_count(p.pid) > baseline and time.monotonic() < deadline:
            time.sleep(0.05)  # bounded poll of /proc/PID/fd
        if fd_count(p.pid) > baseline:
            now_fds = describe_fds(p.pid, names)
            extra = [f for f in now_fds if f not in start_fds]
            raise AssertionError(
                f"seed {seed}: sluice holds {len(now_fds)} descriptors 10s after the clients "
                f"closed; {baseline} at the start. Not there at the start:\n" + "\n".join(extra))

        assert_alive(p)
        p.proc.send_signal(signal.SIGTERM)
        rc = p.wait_exit(15)
        assert rc == 0, f"seed {seed}: exit status {rc} after SIGTERM\n{crash_report(p)}"
    finally:
        for be in http.values():
            be.shutdown()

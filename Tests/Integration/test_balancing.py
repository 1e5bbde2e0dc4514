"""Endpoint selection: round-robin order, refused endpoints, workers, IPv6."""

import socket
import threading
import time
from collections import Counter

import pytest

from conftest import (PROXY_KIND, connect, fd_count, listening_ports, make_config, new_listener,
                      parse_addr, recv_exact, recv_line)


def roundtrip(sock, payload: bytes) -> None:
    sock.sendall(payload)
    echo = recv_exact(sock, len(payload))
    assert echo == payload, "echo through the proxy differs from what was sent"


def test_roundrobin_exact_rotation(three, proxy_factory, clients):
    cfg = make_config({"web": new_listener()}, {"web": [three[n].addr for n in "abc"]})
    p = proxy_factory(cfg, workers=1)
    names = []
    for _ in range(30):
        s = clients.connect(p.addr())
        names.append(recv_line(s).decode())
        s.close()
    order = list("abc")
    rotations = [order[k:] + order[:k] for k in range(3)]
    assert names[:3] in rotations, f"first three picks {names[:3]} are not a rotation of {order}"
    assert names == names[:3] * 10, f"picks do not follow a strict rotation: {names}"
    # every pick really reached that backend, one connection per pick
    assert [len(three[n].conns) for n in "abc"] == [10, 10, 10]


def test_refused_endpoint_is_skipped(backends, proxy_factory, clients):
    a = backends.add("a")
    b = backends.add("b")
    dead = new_listener()  # bound once then released: nothing listens there
    cfg = make_config({"web": new_listener()}, {"web": [dead, a.addr, b.addr]},
                      timeouts={"connect": "5s"},
                      limits={"connectTries": 3, "endpointBackoff": "2s"})
    p = proxy_factory(cfg)
    names, failures = [], []
    for i in range(30):
        s = clients.connect(p.addr())
        try:
            names.append(recv_line(s).decode())
            roundtrip(s, f"conn {i}\n".encode())
        except (EOFError, ConnectionError, socket.timeout) as exc:
            failures.append((i, repr(exc)))
        finally:
            s.close()
    assert not failures, f"connections failed although two endpoints were live: {failures}"
    assert set(names) == {"a", "b"}, f"live endpoints not both used: {Counter(names)}"


def test_all_endpoints_down_closes_client_promptly(proxy_factory, clients):
    dead1, dead2 = new_listener(), new_listener()
    cfg = make_config({"web": new_listener()}, {"web": [dead1, dead2]},
                      timeouts={"connect": "5s"},
                      limits={"connectTries": 3, "endpointBackoff": "2s"})
    p = proxy_factory(cfg)
    for i in range(3):
        s = clients.connect(p.addr(), timeout=4.5)
        t0 = time.monotonic()
        try:
            data = s.recv(100)
            outcome = "eof" if data == b"" else f"data {data!r}"
        except ConnectionResetError:
            outcome = "reset"
        except socket.timeout:
            outcome = "still open"
        elapsed = time.monotonic() - t0
        s.close()
        assert outcome in ("eof", "reset"), f"connection {i}: {outcome} after {elapsed:.2f}s"
        assert elapsed < 2.0, f"connection {i}: closed only after {elapsed:.2f}s (want < 2s)"


def _hammer(addr, count, results, idx):
    ok = 0
    for i in range(count):
        try:
            s = connect(addr, timeout=5)
            try:
                name = recv_line(s).decode()
                roundtrip(s, f"t{idx} c{i} ".encode() * 20)
                results.append(name)
                ok += 1
            finally:
                s.close()
        except Exception as exc:  # noqa: BLE001 - reported by the test
            results.append(f"ERROR {exc!r}")


def test_two_workers_all_connections_succeed(three, proxy_factory):
    cfg = make_config({"web": new_listener()}, {"web": [three[n].addr for n in "abc"]})
    p = proxy_factory(cfg, workers=2)
    results = []
    threads = [threading.Thread(target=_hammer, args=(p.addr(), 60, results, t)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "client threads did not finish in 60s"
    errors = [r for r in results if r.startswith("ERROR")]
    assert not errors, f"{len(errors)} of {len(results)} connections failed: {errors[:5]}"
    assert len(results) == 480
    assert set(Counter(results)) == {"a", "b", "c"}, Counter(results)


@pytest.mark.sluice_only
def test_two_workers_have_one_listening_socket_each(three, proxy_factory):
    cfg = make_config({"web": new_listener()}, {"web": [three["a"].addr]})
    p = proxy_factory(cfg, workers=2)
    port = parse_addr(p.addr())[1]
    n = listening_ports(count=True).get(port, 0)
    assert n == 2, f"expected 2 SO_REUSEPORT listening sockets on port {port}, found {n}"


def test_ipv6_loopback(backends, proxy_factory, clients):
    try:
        socket.socket(socket.AF_INET6).close()
        a = backends.add("a6", host="::1")
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback: {exc}")
    cfg = make_config({"web6": new_listener("::1")}, {"web6": [a.addr]})
    p = proxy_factory(cfg)
    s = clients.connect(p.addr())
    assert recv_line(s) == b"a6"
    roundtrip(s, b"over ipv6\n" * 1000)


def test_leastconn_picks_least_loaded(three, proxy_factory, clients):
    cfg = make_config({"web": new_listener()}, {"web": [three[n].addr for n in "abc"]},
                      algorithm="leastconn")
    p = proxy_factory(cfg, workers=1)
    held = {}
    for _ in range(3):
        s = clients.connect(p.addr())
        held.setdefault(recv_line(s).decode(), []).append(s)
    assert sorted(held) == ["a", "b", "c"], f"3 held connections spread as {held.keys()}"
    for victim in ("b", "a", "c"):
        before = fd_count(p.pid)
        s = held[victim].pop()
        s.shutdown(socket.SHUT_WR)
        assert s.recv(1) == b""
        s.close()
        # the proxy counts the connection until it closes both of its sockets
        deadline = time.monotonic() + 5
        while fd_count(p.pid) > before - 2:
            assert time.monotonic() < deadline, "proxy kept the closed connection's sockets"
            time.sleep(0.01)  # bounded poll: no other outside sign of the close
        s = clients.connect(p.addr())
        got = recv_line(s).decode()
        assert got == victim, f"leastconn chose {got}, but only {victim} had no connection"
        held[got].append(s)


def test_source_hash_is_sticky(three, proxy_factory, clients):
    cfg = make_config({"web": new_listener()}, {"web": [three[n].addr for n in "abc"]},
                      algorithm="source")
    p = proxy_factory(cfg, workers=1)
    names = []
    for _ in range(12):
        s = clients.connect(p.addr())
        names.append(recv_line(s).decode())
        s.close()
    assert len(set(names)) == 1, f"one client address went to several endpoints: {names}"


def blackhole():
    """A listening socket whose accept queue is full: SYNs to it go unanswered."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(0)
    port = lst.getsockname()[1]
    fillers = []
    for _ in range(3):
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex(("127.0.0.1", port))
        fillers.append(f)
    return f"127.0.0.1:{port}", [lst] + fillers


def test_unanswered_endpoint_times_out_and_next_is_tried(backends, proxy_factory, clients):
    a = backends.add("a")
    hole, keep = blackhole()
    try:
        cfg = make_config({"web": new_listener()}, {"web": [hole, a.addr]},
                          timeouts={"connect": "500ms"}, limits={"connectTries": 3})
        p = proxy_factory(cfg, workers=1)
        took = []
        for i in range(4):
            s = clients.connect(p.addr(), timeout=4)
            t0 = time.monotonic()
            try:
                name = recv_line(s).decode()
            except (EOFError, ConnectionError, socket.timeout) as exc:
                raise AssertionError(f"connection {i} failed after "
                                     f"{time.monotonic() - t0:.2f}s: {exc!r}") from None
            took.append(round(time.monotonic() - t0, 3))
            assert name == "a"
            roundtrip(s, b"after a connect timeout\n")
            s.close()
        assert max(took) >= 0.4, f"the unanswered endpoint was never tried: {took}"
        assert max(took) < 2.5, f"connect timeout 500ms, but a connection waited: {took}"
    finally:
        for k in keep:
            k.close()

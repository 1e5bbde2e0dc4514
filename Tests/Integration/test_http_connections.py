"""HTTP listener: client keep-alive, HTTP/1.0, X-Forwarded-*, hop-by-hop fields,
pipelining, upstream connection reuse, and a wrk smoke run."""

import json
import re
import shutil
import subprocess
import time

import pytest

from conftest import free_port, make_config, new_listener
from http_backends import (BufReader, closed_within, curl, get, http_listener, port_of,
                           read_response, request_bytes)

pytestmark = pytest.mark.sluice_only


@pytest.fixture
def ab(http_backends, proxy_factory):
    a = http_backends.add("a")
    b = http_backends.add("b")
    addr = new_listener()
    routes = [{"host": "a.example.com", "service": "a"},
              {"host": "b.example.com", "service": "b"}]
    cfg = make_config({"web": http_listener(addr, routes)}, {"a": [a.addr], "b": [b.addr]})
    return proxy_factory(cfg), http_backends


def test_keepalive_two_hosts_one_client_connection(ab):
    p, hb = ab
    url = f"http://127.0.0.1:{port_of(p.addr())}"
    r = curl("-v", "-H", "Host: a.example.com", "-w", "NC=%{num_connects}\n", url + "/one",
             "--next", "-H", "Host: b.example.com", "-w", "NC=%{num_connects}\n", url + "/two")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert len(lines) == 4, r.stdout
    first, second = json.loads(lines[0]), json.loads(lines[2])
    assert (first["backend"], first["target"]) == ("a", "/one")
    assert (second["backend"], second["target"]) == ("b", "/two")
    assert lines[1] == "NC=1" and lines[3] == "NC=0", \
        f"second request did not reuse the connection: {lines[1]}, {lines[3]}\n{r.stderr}"
    assert "Re-using existing connection" in r.stderr


def _http10(sock_addr, host, keep_alive):
    import socket
    h, _, port = sock_addr.rpartition(":")
    s = socket.create_connection((h, int(port)), timeout=5)
    headers = ["Connection: keep-alive"] if keep_alive else []
    s.sendall(request_bytes(host, "/ten", headers=headers, version="HTTP/1.0"))
    reader = BufReader(s)
    return s, reader, read_response(reader)


def test_http10_without_keepalive_is_closed(ab):
    p, hb = ab
    s, reader, r = _http10(p.addr(), "a.example.com", keep_alive=False)
    with s:
        assert r.status == 200 and r.json()["backend"] == "a", r
        assert (r.header("connection") or "").lower() != "keep-alive", r
        assert reader.buf == b"", f"extra bytes after the response: {bytes(reader.buf)!r}"
        assert closed_within(s, 3.0) == "eof", "HTTP/1.0 connection without keep-alive " \
                                               "must be closed after the response"


def test_http10_keepalive(ab):
    p, hb = ab
    s, reader, r = _http10(p.addr(), "a.example.com", keep_alive=True)
    with s:
        assert r.status == 200 and r.json()["backend"] == "a", r
        assert (r.header("connection") or "").lower() == "keep-alive", \
            f"HTTP/1.0 keep-alive response lacks Connection: keep-alive: {r!r}"
        s.sendall(request_bytes("b.example.com", "/again", headers=["Connection: keep-alive"],
                                version="HTTP/1.0"))
        r2 = read_response(reader)
        assert r2.status == 200 and r2.json()["backend"] == "b", r2
        assert r2.json()["target"] == "/again"


def test_http10_curl(ab):
    p, hb = ab
    url = f"http://127.0.0.1:{port_of(p.addr())}"
    plain = curl("--http1.0", "-H", "Host: a.example.com", "-w", "NC=%{num_connects}\n",
                 url + "/1", "--next", "--http1.0", "-H", "Host: a.example.com",
                 "-w", "NC=%{num_connects}\n", url + "/2")
    assert plain.returncode == 0, plain.stderr
    lines = plain.stdout.decode().splitlines()
    assert json.loads(lines[0])["backend"] == "a" and json.loads(lines[2])["backend"] == "a"
    assert (lines[1], lines[3]) == ("NC=1", "NC=1"), \
        f"HTTP/1.0 without keep-alive was reused: {plain.stderr}"
    keep = curl("--http1.0", "-H", "Host: a.example.com", "-H", "Connection: keep-alive",
                "-w", "NC=%{num_connects}\n", url + "/1", "--next", "--http1.0",
                "-H", "Host: b.example.com", "-H", "Connection: keep-alive",
                "-w", "NC=%{num_connects}\n", url + "/2")
    assert keep.returncode == 0, keep.stderr
    lines = keep.stdout.decode().splitlines()
    assert json.loads(lines[2])["backend"] == "b"
    assert (lines[1], lines[3]) == ("NC=1", "NC=0"), \
        f"HTTP/1.0 keep-alive connection not reused by curl:\n{keep.stderr}"


def test_x_forwarded_headers(ab):
    p, hb = ab
    port = port_of(p.addr())
    f = get(p.addr(), "a.example.com", "/xf").json()
    assert f["xff"] == "127.0.0.1"
    assert f["xfproto"] == "http"
    assert f["xfhost"] == "a.example.com"
    assert f["xfport"] == str(port)
    f = get(p.addr(), f"b.example.com:{port}", "/xf",
            headers=["X-Forwarded-For: 10.1.2.3", "X-Forwarded-Proto: https",
                     "X-Forwarded-Port: 1"]).json()
    assert f["backend"] == "b"
    assert f["xff"] in ("10.1.2.3, 127.0.0.1", "10.1.2.3,127.0.0.1"), f["xff"]
    assert f["xfproto"] == "http", "X-Forwarded-Proto must be set, not passed through"
    assert f["xfhost"] == f"b.example.com:{port}"
    assert f["xfport"] == str(port)
    for name in ("x-forwarded-proto", "x-forwarded-port", "x-forwarded-host",
                 "x-forwarded-for"):
        assert f["headers"].count(name) == 1, f"{name} appears {f['headers'].count(name)} times"


def test_hop_by_hop_fields_do_not_reach_backend(ab):
    p, hb = ab
    headers = ["Connection: foo, keep-alive", "foo: bar", "Keep-Alive: timeout=5",
               "TE: trailers", "Trailer: X-T", "Proxy-Connection: keep-alive",
               "X-Kept: yes"]
    r = get(p.addr(), "a.example.com", "/hop?mode=hop", headers=headers)
    assert r.status == 200, r
    f = r.json()
    seen = set(f["headers"])
    assert "x-kept" in seen, "an end-to-end field was dropped"
    leaked = seen & {"foo", "keep-alive", "te", "trailer", "proxy-connection"}
    assert not leaked, f"hop-by-hop fields reached the backend: {sorted(leaked)}; {f['fields']}"
    conn = [v for n, v in f["fields"] if n.lower() == "connection"]
    assert not any("foo" in v.lower() for v in conn), f"client Connection value forwarded: {conn}"
    # and the backend's hop-by-hop response fields do not reach the client
    names = {n.lower() for n, _ in r.fields}
    assert "x-resp-kept" in names
    assert not names & {"x-resp-hop", "keep-alive"}, f"hop-by-hop response fields: {r.fields}"
    assert not any("x-resp-hop" in v.lower() for n, v in r.fields if n.lower() == "connection")


def test_pipelined_requests_answered_in_order(ab, clients):
    p, hb = ab
    s = clients.connect(p.addr())
    reqs = (request_bytes("a.example.com", "/one?mode=slow&delay=0.3")
            + request_bytes("b.example.com", "/two", method="POST", body=b"second body")
            + request_bytes("a.example.com", "/three", headers=["Connection: close"]))
    s.sendall(reqs)
    reader = BufReader(s)
    got = []
    for _ in range(3):
        r = read_response(reader)
        assert r.status == 200, r
        f = r.json()
        got.append((f["backend"], f["method"], f["target"], f["body_len"]))
    assert got == [("a", "GET", "/one?mode=slow&delay=0.3", 0), ("b", "POST", "/two", 11),
                   ("a", "GET", "/three", 0)]
    assert closed_within(s, 3.0) == "eof", "Connection: close on the last request"


def test_upstream_connections_are_reused(http_backends, proxy_factory, clients):
    a = http_backends.add("a")
    cfg = make_config({"web": http_listener(new_listener(), [{"host": "a.example.com",
                                                              "service": "a"}])},
                      {"a": [a.addr]})
    p = proxy_factory(cfg)
    s = clients.connect(p.addr())
    reader = BufReader(s)
    conns = []
    for i in range(20):
        s.sendall(request_bytes("a.example.com", f"/r{i}"))
        r = read_response(reader)
        assert r.status == 200, r
        assert r.json()["target"] == f"/r{i}"
        conns.append(r.json()["conn"])
    assert a.request_count() == 20
    assert a.conn_count() < 20, \
        f"20 sequential requests used {a.conn_count()} upstream connections (no reuse)"


def test_wrk_smoke(ab):
    p, hb = ab
    wrk = shutil.which("wrk")
    if wrk is None:
        pytest.fail("wrk not installed (apt-get install wrk)")
    out = subprocess.run([wrk, "-t1", "-c10", "-d2s", "-H", "Host: a.example.com",
                          f"http://127.0.0.1:{port_of(p.addr())}/"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30,
                         text=True).stdout
    m = re.search(r"(\d+) requests in", out)
    assert m and int(m.group(1)) > 100, out
    assert "Non-2xx" not in out, out
    assert "Socket errors" not in out, out
    assert hb["a"].request_count() >= int(m.group(1)), out
    assert hb["b"].request_count() == 0


def test_pooled_connection_closed_by_backend_is_not_used(ab, clients):
    """A backend closes its kept-alive connection after a response (its idle timeout);
    the next request must go over a new upstream connection, not fail."""
    p, hb = ab
    a = hb["a"]
    for same_client in (True, False):
        s = clients.connect(p.addr())
        reader = BufReader(s)
        s.sendall(request_bytes("a.example.com", "/q?mode=quietclose"))
        assert read_response(reader).status == 200
        assert a.conns[-1].closed.wait(5), "backend did not close"
        if not same_client:
            s.close()
            s = clients.connect(p.addr())
            reader = BufReader(s)
        before = a.conn_count()
        s.sendall(request_bytes("a.example.com", "/next"))
        r = read_response(reader)
        assert r.status == 200, f"request after the backend closed its idle connection: {r!r}"
        assert r.json()["target"] == "/next" and a.conn_count() == before + 1


def test_http10_without_host_goes_to_default(http_backends, proxy_factory):
    a = http_backends.add("a")
    d = http_backends.add("d")
    cfg = make_config({"web": http_listener(new_listener(), [{"host": "a.example.com",
                                                              "service": "a"}],
                                            {"service": "d"})},
                      {"a": [a.addr], "d": [d.addr]})
    p = proxy_factory(cfg)
    r = get(p.addr(), None, "/nohost", version="HTTP/1.0")
    assert r.status == 200 and r.json()["backend"] == "d", r
    assert r.json()["target"] == "/nohost"


def test_absolute_form_target_routes_by_its_authority(ab):
    p, hb = ab
    r = get(p.addr(), "b.example.com", "http://a.example.com/abs?x=1")
    assert r.status == 200, r
    f = r.json()
    assert f["backend"] == "a", "the absolute-form authority must win over Host"
    assert f["target"] == "/abs?x=1", "origin-form must be sent upstream"
    assert f["host"] == "a.example.com", "Host must be replaced by the target's authority"


def test_refused_upgrade_keeps_http_connection(ab, clients):
    """An Upgrade the backend does not accept (it answers 200) leaves a normal HTTP/1.1
    connection: the next request is proxied as HTTP."""
    p, hb = ab
    s = clients.connect(p.addr())
    reader = BufReader(s)
    s.sendall(request_bytes("a.example.com", "/up", headers=["Upgrade: foo",
                                                             "Connection: Upgrade"]))
    r = read_response(reader)
    assert r.status == 200 and r.json()["target"] == "/up", r
    s.sendall(request_bytes("b.example.com", "/after"))
    r2 = read_response(reader)
    assert r2.status == 200 and r2.json()["backend"] == "b" and r2.json()["target"] == "/after"


def test_deep_pipeline_in_one_write(ab, clients):
    p, hb = ab
    s = clients.connect(p.addr())
    s.sendall(b"".join(request_bytes(("a", "b")[i % 2] + ".example.com", f"/p{i}")
                       for i in range(100)))
    reader = BufReader(s)
    got = [(r.json()["backend"], r.json()["target"])
           for r in (read_response(reader) for _ in range(100))]
    assert got == [(("a", "b")[i % 2], f"/p{i}") for i in range(100)]


def test_ipv6_listener_forwarded_for(http_backends, proxy_factory):
    a = http_backends.add("a")
    addr = f"[::1]:{free_port('::1')}"
    cfg = make_config({"web": http_listener(addr, [{"host": "a.example.com", "service": "a"}])},
                      {"a": [a.addr]})
    p = proxy_factory(cfg)
    r = get(p.addr(), "a.example.com", "/v6")
    f = r.json()
    assert f["xfport"] == str(port_of(addr))
    assert f["xff"] == "::1", f"X-Forwarded-For for a ::1 client is {f['xff']!r} " \
                              f"(RFC 5952 text form is '::1')"


def test_aborted_upload_does_not_poison_the_pool(ab, clients):
    """A client closes in the middle of a request body: the upstream connection that
    carried the partial body is closed (never reused), later requests are clean."""
    p, hb = ab
    a = hb["a"]
    s = clients.connect(p.addr())
    s.sendall(b"POST /up HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 1000000\r\n\r\n"
              + b"x" * 1000)
    with a.cond:
        ok = a.cond.wait_for(lambda: a.conns, timeout=5)
    assert ok, "the request head never reached the backend"
    s.close()
    assert a.conns[0].closed.wait(5), "upstream connection with a partial body left open"
    for i in range(5):
        r = get(p.addr(), "a.example.com", f"/clean{i}")
        assert r.status == 200 and r.json()["target"] == f"/clean{i}", r
        assert r.json()["body_len"] == 0
    assert a.request_count() == 5


def test_client_gone_before_response_does_not_desync(ab, clients):
    """A client closes while its response is pending: that response must never be given
    to a later request (the upstream connection is not pooled mid-response)."""
    p, hb = ab
    a = hb["a"]
    s = clients.connect(p.addr())
    s.sendall(request_bytes("a.example.com", "/gone?mode=slow&delay=0.3"))
    a.wait_requests(1)
    s.close()
    for i in range(5):
        r = get(p.addr(), "a.example.com", f"/now{i}")
        assert r.json()["target"] == f"/now{i}", f"got someone else's response: {r!r}"
    a.wait_responded(6)  # the gone client's response has been written to the proxy
    for i in range(5):
        r = get(p.addr(), "a.example.com", f"/later{i}")
        assert r.json()["target"] == f"/later{i}", f"got someone else's response: {r!r}"


def test_idle_keepalive_client_closed_after_client_timeout(http_backends, proxy_factory,
                                                           clients):
    a = http_backends.add("a")
    cfg = make_config({"web": http_listener(new_listener(), [{"host": "a.example.com",
                                                              "service": "a"}])},
                      {"a": [a.addr]}, timeouts={"client": "1s"})
    p = proxy_factory(cfg)
    s = clients.connect(p.addr())
    reader = BufReader(s)
    s.sendall(request_bytes("a.example.com", "/idle"))
    assert read_response(reader).status == 200
    t0 = time.monotonic()
    outcome = closed_within(s, 4.0)
    elapsed = time.monotonic() - t0
    assert outcome in ("eof", "reset"), f"idle keep-alive connection {outcome} after {elapsed:.1f}s"
    assert 0.7 <= elapsed <= 2.5, f"closed after {elapsed:.2f}s with timeouts.client 1s"

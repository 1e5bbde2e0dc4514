"""`tls` listeners: SNI passthrough (the ClientHello is read, not decrypted; the client
talks TLS with the backend it was routed to)."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import subprocess
import time

import pytest

from backends import pattern_bytes
from conftest import make_config, new_listener
from http_backends import closed_within, curl, port_of
from tls_backends import BIOClient, client_context, subject_cn

pytestmark = pytest.mark.sluice_only

ROUTES = [
    {"host": "a.example.com", "service": "a"},
    {"host": "b.example.com", "service": "b"},
    {"host": "*.wild.example.com", "service": "w"},
]


def tls_listener(address: str, routes=None, default=None, **extra) -> dict:
    lst = {"address": address, "protocol": "tls", "routes": list(routes or ROUTES)}
    if default is not None:
        lst["default"] = default
    lst.update(extra)
    return lst


@pytest.fixture
def tls_proxy(tls_backends, proxy_factory):
    """Three tls listeners with the same routes: `dflt` (default service d), `noflt` (no
    default) and `closing` (default: {close: true}); backends a, b, w, d."""
    for n in ("a", "b", "w", "d"):
        tls_backends.tls(n)
    cfg = make_config(
        {"dflt": tls_listener(new_listener(), default={"service": "d"}),
         "nodflt": tls_listener(new_listener()),
         "closing": tls_listener(new_listener(), default={"close": True})},
        {n: [tls_backends[n].addr] for n in ("a", "b", "w", "d")},
        timeouts={"tlsHello": "5s"})
    return proxy_factory(cfg), tls_backends


def s_client(addr: str, cafile, servername=None, stdin: bytes = b"hello\nBYE\n",
             verify_name=None, timeout: float = 15.0):
    host, port = addr.rsplit(":", 1)
    cmd = ["openssl", "s_client", "-connect", f"{host}:{port}", "-CAfile", str(cafile),
           "-ign_eof"]
    if servername is None:
        cmd.append("-noservername")
    else:
        cmd += ["-servername", servername]
    if verify_name:
        cmd += ["-verify_hostname", verify_name, "-verify_return_error"]
    p = subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def assert_reached(out: str, err: str, backend: str, cn: str) -> None:
    assert re.search(r"^subject=.*CN\s*=\s*" + re.escape(cn) + r"\s*$", out, re.M), \
        f"expected the certificate of {cn}; s_client stdout:\n{out}\nstderr:\n{err}"
    assert "Verify return code: 0 (ok)" in out, out
    # the backend greets with its name after the first bytes, and echoes them
    assert re.search(r"^" + re.escape(backend) + r"\nhello\nBYE$", out, re.M), \
        f"no greeting/echo from backend {backend}:\n{out}"


# --------------------------------------------------------------------------
# 1. routing by SNI

@pytest.mark.parametrize("sni,backend,cn", [
    ("a.example.com", "a", "a.example.com"),
    ("b.example.com", "b", "b.example.com"),
    ("x.wild.example.com", "w", "*.wild.example.com"),
    ("zz-9.wild.example.com", "w", "*.wild.example.com"),
])
def test_sni_routes_openssl(tls_proxy, tls_certs, sni, backend, cn):
    p, be = tls_proxy
    rc, out, err = s_client(p.addr("dflt"), tls_certs.ca, sni, verify_name=sni)
    assert_reached(out, err, backend, cn)
    assert be[backend].wait_conn().sni == sni, "the backend must see the client's SNI"
    others = [n for n in ("a", "b", "w", "d") if n != backend]
    assert [be[n].conn_count() for n in others] == [0, 0, 0], "routed to another backend too"


@pytest.mark.parametrize("host,backend", [
    ("a.example.com", "a"), ("b.example.com", "b"), ("x.wild.example.com", "w")])
def test_sni_routes_curl(tls_proxy, tls_certs, host, backend):
    p, be = tls_proxy
    port = port_of(p.addr("dflt"))
    r = curl("--resolve", f"{host}:{port}:127.0.0.1", "--cacert", str(tls_certs.ca),
             "-w", "\n%{ssl_verify_result}", f"https://{host}:{port}/path?q=1", timeout=20)
    assert r.returncode == 0, f"curl rc={r.returncode}: {r.stderr}"
    body, verify = r.stdout.decode().rsplit("\n", 1)
    facts = json.loads(body)
    assert facts == {"backend": backend, "sni": host, "request": "GET /path?q=1 HTTP/1.1"}
    assert verify == "0"


def test_sni_case_insensitive_and_wildcard_one_label(tls_proxy, tls_certs):
    p, be = tls_proxy
    rc, out, err = s_client(p.addr("dflt"), tls_certs.ca, "A.Example.COM")
    assert_reached(out, err, "a", "a.example.com")
    # a wildcard matches exactly one label: deeper names and the bare domain fall through
    for sni in ("y.x.wild.example.com", "wild.example.com"):
        rc, out, err = s_client(p.addr("dflt"), tls_certs.ca, sni)
        assert_reached(out, err, "d", "default.example.com")
    assert be["w"].conn_count() == 0


# --------------------------------------------------------------------------
# 2. no SNI / unknown SNI

@pytest.mark.parametrize("sni", [None, "unknown.example.net"])
def test_default_service_gets_no_or_unknown_sni(tls_proxy, tls_certs, sni):
    p, be = tls_proxy
    rc, out, err = s_client(p.addr("dflt"), tls_certs.ca, sni)
    assert_reached(out, err, "d", "default.example.com")
    assert be["d"].wait_conn().sni == sni
    assert sum(be[n].conn_count() for n in "abw") == 0


@pytest.mark.parametrize("listener", ["nodflt", "closing"])
@pytest.mark.parametrize("sni", [None, "unknown.example.net"])
def test_no_default_closes(tls_proxy, tls_certs, listener, sni):
    p, be = tls_proxy
    t0 = time.monotonic()
    rc, out, err = s_client(p.addr(listener), tls_certs.ca, sni)
    elapsed = time.monotonic() - t0
    assert rc != 0, f"handshake should fail, s_client said:\n{out}\n{err}"
    assert "subject=" not in out, out
    assert elapsed < 4.0, f"closing took {elapsed:.2f}s (tlsHello is 5s: not a timeout close)"
    # the same with a raw socket: the whole ClientHello sent, then EOF promptly
    with socket.create_connection(("127.0.0.1", port_of(p.addr(listener))), timeout=5) as s:
        cli = BIOClient(s, client_context(tls_certs, check_hostname=False), sni)
        s.sendall(cli.client_hello())
        t0 = time.monotonic()
        state = closed_within(s, 4.0)
        assert state in ("eof", "reset"), f"connection not closed: {state}"
        assert time.monotonic() - t0 < 2.0
    assert be.total_conns() == 0, "no backend may be contacted"


# --------------------------------------------------------------------------
# 3. not TLS at all

GARBAGE = {
    "http": b"GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n",
    "ssh": b"SSH-2.0-OpenSSH_9.2p1\r\n",
    "bad-record-version": b"\x16\x09\x09\x00\x10" + b"\x01" * 16,
    "server-hello-type": b"\x16\x03\x01\x00\x08\x02\x00\x00\x04\x03\x03\x00\x00",
    "too-large": b"\x16\x03\x01\x40\x00\x01\x00\x4e\x20\x03\x03" + b"\x00" * 200,
}


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_not_tls_closed_promptly(tls_proxy, kind):
    p, be = tls_proxy
    with socket.create_connection(("127.0.0.1", port_of(p.addr("dflt"))), timeout=5) as s:
        t0 = time.monotonic()
        s.sendall(GARBAGE[kind])
        state = closed_within(s, 4.0)
        elapsed = time.monotonic() - t0
    assert state in ("eof", "reset"), f"{kind}: connection still {state} after 4s"
    assert elapsed < 1.5, f"{kind}: closed only after {elapsed:.2f}s (tlsHello is 5s)"
    assert be.total_conns() == 0, f"{kind}: bytes reached a backend"


# --------------------------------------------------------------------------
# 4. ClientHello dribbled one byte per send

def test_client_hello_one_byte_at_a_time(tls_proxy, tls_certs):
    p, be = tls_proxy
    s = socket.create_connection(("127.0.0.1", port_of(p.addr("dflt"))), timeout=5)
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cli = BIOClient(s, client_context(tls_certs), "a.example.com")
        hello = cli.client_hello()
        assert hello[0] == 22 and len(hello) > 100
        for i in range(len(hello)):
            s.sendall(hello[i:i + 1])
            time.sleep(0.001)
        cli.handshake(timeout=5)
        assert subject_cn(cli.obj.getpeercert()) == "a.example.com"
        cli.send(b"ping 1\n")
        assert cli.recv_line() == b"a"
        assert cli.recv_line() == b"ping 1"
        cli.send(b"ping 2\n")
        assert cli.recv_line() == b"ping 2"
    finally:
        s.close()
    assert be["a"].conn_count() == 1 and be["a"].conns[0].sni == "a.example.com"


# --------------------------------------------------------------------------
# 5. a ClientHello that never completes

@pytest.mark.parametrize("part", ["half", "nothing", "record-header"])
def test_incomplete_hello_times_out(tls_backends, proxy_factory, tls_certs, part):
    tls_backends.tls("a")
    cfg = make_config({"t": tls_listener(new_listener(), routes=ROUTES[:1],
                                         default={"service": "a"})},
                      {"a": [tls_backends["a"].addr]}, timeouts={"tlsHello": "1s"})
    p = proxy_factory(cfg)
    with socket.create_connection(("127.0.0.1", port_of(p.addr())), timeout=5) as s:
        cli = BIOClient(s, client_context(tls_certs), "a.example.com")
        hello = cli.client_hello()
        sent = {"half": hello[: len(hello) // 2], "nothing": b"", "record-header": hello[:5]}[part]
        t0 = time.monotonic()
        if sent:
            s.sendall(sent)
        state = closed_within(s, 4.0)
        elapsed = time.monotonic() - t0
    assert state in ("eof", "reset"), f"still {state} 4s after {len(sent)} bytes of ClientHello"
    assert 0.7 <= elapsed <= 3.0, f"closed after {elapsed:.2f}s; tlsHello is 1s"
    assert tls_backends.total_conns() == 0


# --------------------------------------------------------------------------
# 6. bulk data both ways

def test_50mib_each_way(tls_proxy, tls_certs):
    p, be = tls_proxy
    size = 50 << 20
    payload = pattern_bytes(size)
    with socket.create_connection(("127.0.0.1", port_of(p.addr("dflt"))), timeout=10) as s:
        cli = BIOClient(s, client_context(tls_certs), "b.example.com")
        cli.handshake(timeout=5)
        assert subject_cn(cli.obj.getpeercert()) == "b.example.com"
        first, digest, count = cli.stream(payload, size, timeout=60)
    assert first == b"b"
    assert count == size
    assert digest == hashlib.sha256(payload).hexdigest(), "echoed bytes differ"
    rec = be["b"].wait_conn()
    assert rec.received >= size

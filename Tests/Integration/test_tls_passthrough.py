"""`tls` listeners: SNI passthrough (the ClientHello is read, not decrypted; the client
talks TLS with the backend it was routed to)."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import struct
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


# --------------------------------------------------------------------------
# more ClientHello shapes, timers, retries, reload, resources

def fragmented(hello: bytes, size: int) -> bytes:
    """The ClientHello handshake message re-cut into TLS records of ``size`` bytes."""
    assert hello[0] == 22
    body = hello[5:]
    out = bytearray()
    for i in range(0, len(body), size):
        piece = body[i:i + size]
        out += b"\x16\x03\x01" + len(piece).to_bytes(2, "big") + piece
    return bytes(out)


@pytest.mark.parametrize("size", [100, 7])
def test_client_hello_split_across_records(tls_proxy, tls_certs, size):
    p, be = tls_proxy
    with socket.create_connection(("127.0.0.1", port_of(p.addr("dflt"))), timeout=5) as s:
        cli = BIOClient(s, client_context(tls_certs), "b.example.com")
        s.sendall(fragmented(cli.client_hello(), size))
        cli.handshake(timeout=5)
        assert subject_cn(cli.obj.getpeercert()) == "b.example.com"
        cli.send(b"frag\n")
        assert (cli.recv_line(), cli.recv_line()) == (b"b", b"frag")
    assert be["b"].wait_conn().sni == "b.example.com"
    assert be["d"].conn_count() == 0


def alpn_context(tls_certs, total: int):
    ctx = client_context(tls_certs)
    ctx.set_alpn_protocols([f"p{i:03d}" + "x" * 196 for i in range(total // 200)])
    return ctx


def test_large_client_hello_8k(tls_proxy, tls_certs):
    p, be = tls_proxy
    with socket.create_connection(("127.0.0.1", port_of(p.addr("dflt"))), timeout=5) as s:
        cli = BIOClient(s, alpn_context(tls_certs, 8000), "a.example.com")
        hello = cli.client_hello()
        assert 8000 < len(hello) < 16000
        s.sendall(hello)
        cli.handshake(timeout=5)
        assert subject_cn(cli.obj.getpeercert()) == "a.example.com"
        cli.send(b"big\n")
        assert (cli.recv_line(), cli.recv_line()) == (b"a", b"big")


def test_client_hello_over_16k_is_closed(tls_proxy, tls_certs):
    p, be = tls_proxy
    with socket.create_connection(("127.0.0.1", port_of(p.addr("dflt"))), timeout=5) as s:
        cli = BIOClient(s, alpn_context(tls_certs, 20000), "a.example.com")
        hello = cli.client_hello()
        assert len(hello) > 17000
        t0 = time.monotonic()
        try:
            s.sendall(hello)
        except (BrokenPipeError, ConnectionResetError):
            pass
        state = closed_within(s, 4.0)
        elapsed = time.monotonic() - t0
    assert state in ("eof", "reset"), f"a {len(hello)}-byte ClientHello was not refused: {state}"
    assert elapsed < 1.5, f"closed after {elapsed:.2f}s"
    assert be.total_conns() == 0


def test_hello_timer_is_disarmed_once_routed(tls_backends, proxy_factory, tls_certs):
    tls_backends.tls("a")
    cfg = make_config({"t": tls_listener(new_listener(), routes=ROUTES[:1])},
                      {"a": [tls_backends["a"].addr]}, timeouts={"tlsHello": "1s"})
    p = proxy_factory(cfg)
    with socket.create_connection(("127.0.0.1", port_of(p.addr())), timeout=5) as s:
        cli = BIOClient(s, client_context(tls_certs), "a.example.com")
        cli.handshake(timeout=5)
        cli.send(b"one\n")
        assert (cli.recv_line(), cli.recv_line()) == (b"a", b"one")
        # idle well past tlsHello: the tunnel must stay up
        state = closed_within(s, 2.0)
        assert state == "open", f"tunnel closed while idle after the hello: {state}"
        cli.send(b"two\n")
        assert cli.recv_line() == b"two"


def test_connect_retry_replays_hello(tls_backends, proxy_factory, tls_certs):
    from conftest import free_port
    tls_backends.tls("a")
    dead = f"127.0.0.1:{free_port()}"
    cfg = make_config({"t": tls_listener(new_listener(), routes=ROUTES[:1])},
                      {"a": [dead, tls_backends["a"].addr]},
                      limits={"connectTries": 3, "endpointBackoff": "100ms"})
    p = proxy_factory(cfg)
    for i in range(4):
        with socket.create_connection(("127.0.0.1", port_of(p.addr())), timeout=5) as s:
            cli = BIOClient(s, client_context(tls_certs), "a.example.com")
            cli.handshake(timeout=5)
            assert subject_cn(cli.obj.getpeercert()) == "a.example.com"
            cli.send(f"try {i}\n".encode())
            assert (cli.recv_line(), cli.recv_line()) == (b"a", f"try {i}".encode())
    assert tls_backends["a"].conn_count() == 4


def test_concurrent_handshakes_two_workers(tls_backends, proxy_factory, tls_certs):
    import threading
    for n in ("a", "b", "w"):
        tls_backends.tls(n)
    cfg = make_config({"t": tls_listener(new_listener())},
                      {n: [tls_backends[n].addr] for n in ("a", "b", "w")})
    p = proxy_factory(cfg, workers=2)
    port = port_of(p.addr())
    names = [("a.example.com", "a"), ("b.example.com", "b"), ("c.wild.example.com", "w")]
    errors = []
    start = threading.Barrier(48)

    def one(i):
        sni, want = names[i % 3]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                cli = BIOClient(s, client_context(tls_certs), sni)
                hello = cli.client_hello()
                start.wait(10)
                s.sendall(hello[:40])
                s.sendall(hello[40:])
                cli.handshake(timeout=10)
                cli.send(f"conn {i}\n".encode())
                got = (cli.recv_line(10), cli.recv_line(10))
                if got != (want.encode(), f"conn {i}".encode()):
                    errors.append(f"{i} ({sni}): {got}")
        except Exception as exc:  # noqa: BLE001 - collected and reported below
            errors.append(f"{i} ({sni}): {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(48)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert [tls_backends[n].conn_count() for n in ("a", "b", "w")] == [16, 16, 16]


def test_reload_changes_tls_routes(tls_proxy, tls_certs):
    p, be = tls_proxy
    rc, out, err = s_client(p.addr("dflt"), tls_certs.ca, "a.example.com")
    assert_reached(out, err, "a", "a.example.com")
    cfg = dict(p.config)
    cfg["listeners"] = [dict(l) for l in p.config["listeners"]]
    cfg["listeners"][0]["routes"] = [{"host": "a.example.com", "service": "b"}]
    p.reload(cfg)
    rc, out, err = s_client(p.addr("dflt"), tls_certs.ca, "a.example.com")
    assert_reached(out, err, "b", "b.example.com")
    rc, out, err = s_client(p.addr("dflt"), tls_certs.ca, "b.example.com")
    assert_reached(out, err, "d", "default.example.com")


def settled_fd_count(pid: int, timeout: float = 3.0) -> int:
    """The proxy's descriptor count once it stops changing (bounded poll)."""
    from conftest import fd_count
    deadline = time.monotonic() + timeout
    last, same = fd_count(pid), 0
    while same < 4 and time.monotonic() < deadline:
        time.sleep(0.05)  # bounded poll of /proc/PID/fd
        now = fd_count(pid)
        same = same + 1 if now == last else 0
        last = now
    return last


def test_aborted_hellos_do_not_leak(tls_proxy, tls_certs):
    from conftest import fd_count
    p, be = tls_proxy
    port = port_of(p.addr("dflt"))
    ctx = client_context(tls_certs)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        cli = BIOClient(s, ctx, "a.example.com")
        cli.handshake(timeout=5)
        cli.send(b"x\n")
        assert cli.recv_line() == b"a"
    assert be["a"].conns[0].closed.wait(5)
    baseline = settled_fd_count(p.pid)
    with socket.socket() as unused:
        hello = BIOClient(unused, ctx, "a.example.com").client_hello()
    for i in range(60):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            kind = i % 3
            if kind == 0:
                s.sendall(hello[:100])              # half a hello, then gone
            elif kind == 1:
                s.sendall(b"\x16\x03\x01\x00")       # part of a record header
            else:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.sendall(hello[:300])              # then a reset
    deadline = time.monotonic() + 5
    now = fd_count(p.pid)
    while now > baseline and time.monotonic() < deadline:
        time.sleep(0.05)  # bounded poll of /proc/PID/fd
        now = fd_count(p.pid)
    assert now <= baseline, f"{now} descriptors open in the proxy, {baseline} before"
    assert be["a"].conn_count() == 1, "an aborted hello reached backend a"
    rc, out, err = s_client(p.addr("dflt"), tls_certs.ca, "a.example.com")
    assert_reached(out, err, "a", "a.example.com")


def test_hello_then_half_close_is_replayed(tls_backends, proxy_factory, tls_certs):
    """A client that sends its ClientHello and at once shuts its write side: the hello
    still reaches the endpoint, followed by the EOF."""
    raw = tls_backends.raw("r")
    cfg = make_config({"t": tls_listener(new_listener(),
                                         routes=[{"host": "raw.example.com", "service": "r"}])},
                      {"r": [raw.addr]})
    p = proxy_factory(cfg)
    with socket.create_connection(("127.0.0.1", port_of(p.addr())), timeout=5) as s:
        hello = BIOClient(s, client_context(tls_certs), "raw.example.com").client_hello()
        s.sendall(hello)
        s.shutdown(socket.SHUT_WR)
        rec = raw.wait_conn()
        assert rec.eof.wait(5), f"no EOF at the endpoint: {rec!r}"
        assert bytes(rec.data) == hello
        assert closed_within(s, 5.0) in ("eof", "reset")


def minimal_client_hello(extensions: bytes = None) -> bytes:
    """A TLS 1.0-style ClientHello: one cipher suite, no compression, and no extensions
    block at all unless ``extensions`` is given (then with its 2-byte length)."""
    body = (b"\x03\x03" + bytes(range(32)) + b"\x00" + b"\x00\x02\x00\x2f" + b"\x01\x00")
    if extensions is not None:
        body += len(extensions).to_bytes(2, "big") + extensions
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + len(hs).to_bytes(2, "big") + hs


def sni_extension(name: bytes) -> bytes:
    entry = b"\x00" + len(name).to_bytes(2, "big") + name
    lst = len(entry).to_bytes(2, "big") + entry
    return b"\x00\x00" + len(lst).to_bytes(2, "big") + lst


@pytest.mark.parametrize("shape,service", [
    ("no-extensions", "d"),
    ("empty-extensions", "d"),
    ("only-sni-raw", "r"),
    ("padding-then-sni-raw", "r"),
])
def test_handmade_client_hellos_route(tls_backends, proxy_factory, shape, service):
    """ClientHellos the parser must read by the letter of the format, routed to raw
    recording endpoints that check the replay is byte-exact."""
    for n in ("r", "d"):
        tls_backends.raw(n)
    cfg = make_config({"t": tls_listener(new_listener(),
                                         routes=[{"host": "raw.example.com", "service": "r"}],
                                         default={"service": "d"})},
                      {n: [tls_backends[n].addr] for n in ("r", "d")})
    p = proxy_factory(cfg)
    ext = {"no-extensions": None, "empty-extensions": b"",
           "only-sni-raw": sni_extension(b"raw.example.com"),
           "padding-then-sni-raw": b"\x00\x15\x00\x10" + b"\x00" * 16 +
                                   sni_extension(b"raw.example.com")}[shape]
    hello = minimal_client_hello(ext)
    with socket.create_connection(("127.0.0.1", port_of(p.addr())), timeout=5) as s:
        s.sendall(hello)
        be = tls_backends[service]
        rec = be.wait_conn()
        got = be.wait_data(rec, lambda d: len(d) >= len(hello), what="the replayed hello")
        assert got == hello
    other = "d" if service == "r" else "r"
    assert tls_backends[other].conn_count() == 0


def _mid_hello(port: int, tls_certs, sni: str = "a.example.com"):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    cli = BIOClient(s, client_context(tls_certs, check_hostname=False), sni)
    hello = cli.client_hello()
    s.sendall(hello[:50])
    return s, cli, hello


def _assert_serving(p, port: int, tls_certs, backend: str, cn: str) -> None:
    assert p.proc.poll() is None, f"sluice exited rc={p.proc.returncode}"
    rc, out, err = s_client(f"127.0.0.1:{port}", tls_certs.ca, "a.example.com", timeout=10)
    assert_reached(out, err, backend, cn)


def _finish_after_reload(p, s, cli, hello) -> str:
    """Sends the rest of the hello; 'routed:CN', 'closed' or 'hung'. Fails on a crash."""
    with s:
        try:
            # A connection closed by the reload may answer this with a reset.
            s.sendall(hello[50:])
            cli.handshake(timeout=3)
            state = "routed:" + str(subject_cn(cli.obj.getpeercert()))
        except (EOFError, ConnectionError):
            state = "closed"
        except TimeoutError:
            state = "hung"
    assert "Fatal error" not in p.stderr_text() and p.proc.poll() is None, \
        f"sluice crashed after the reload (client: {state}):\n" + p.stderr_text()[-1500:]
    assert state != "hung", "the half-read connection hung after the reload"
    return state


@pytest.mark.parametrize("listeners", [2, 3])
def test_reload_mid_hello_uses_a_valid_table(tls_backends, proxy_factory, tls_certs, listeners):
    """A connection in the middle of its ClientHello during a reload that removes the first
    tls listener (so the route tables are renumbered): it is routed by its own listener's
    routes (or closed), and sluice keeps serving.  Listener `two` sends a.example.com to
    a; the others send it to b."""
    for n in ("a", "b"):
        tls_backends.tls(n)
    addrs = [new_listener() for _ in range(listeners)]
    names = ["one", "two", "three"][:listeners]
    cfg = make_config({n: tls_listener(addr, routes=[{"host": "a.example.com",
                                                      "service": "a" if n == "two" else "b"}])
                       for n, addr in zip(names, addrs)},
                      {"a": [tls_backends["a"].addr], "b": [tls_backends["b"].addr]},
                      timeouts={"tlsHello": "5s"})
    p = proxy_factory(cfg)
    s, cli, hello = _mid_hello(port_of(addrs[1]), tls_certs)
    new = dict(cfg)
    new["listeners"] = cfg["listeners"][1:]
    p.reload(new)
    state = _finish_after_reload(p, s, cli, hello)
    assert state in ("routed:a.example.com", "closed"), \
        f"{state}: routed by another listener's table after the reload"
    _assert_serving(p, port_of(addrs[1]), tls_certs, "a", "a.example.com")


def test_reload_tls_listener_to_tcp_mid_hello(tls_backends, proxy_factory, tls_certs):
    """The listener's protocol changes from tls to tcp while a ClientHello is half read."""
    tls_backends.tls("a")
    addr = new_listener()
    cfg = make_config({"t": tls_listener(addr, routes=ROUTES[:1])},
                      {"a": [tls_backends["a"].addr]}, timeouts={"tlsHello": "5s"})
    p = proxy_factory(cfg)
    s, cli, hello = _mid_hello(port_of(addr), tls_certs)
    new = dict(cfg)
    new["listeners"] = [{"name": "t", "address": addr, "protocol": "tcp", "service": "a"}]
    p.reload(new)
    state = _finish_after_reload(p, s, cli, hello)
    assert state in ("routed:a.example.com", "closed"), state
    # the listener is a plain tcp one now: a TLS client goes straight to the endpoint
    _assert_serving(p, port_of(addr), tls_certs, "a", "a.example.com")

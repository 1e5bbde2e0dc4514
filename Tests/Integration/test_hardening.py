"""Hardening: a TLS replay larger than the copy buffer, request body deadlines, a loop at
its connection share, retries of requests that reached a dying upstream, long stripped
targets, cookie name bounds, 1xx to HTTP/1.0 clients, and descriptor exhaustion on
connect."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import select
import socket
import subprocess
import threading
import time
from typing import Callable, List

import pytest

from conftest import (SluiceProcess, fd_count, make_config, new_listener, recv_line,
                      sluice_bin, to_yaml)
from http_backends import (BufReader, closed_within, get, http_listener, parse_head,
                           read_response, request_bytes, field)
from tls_backends import BIOClient, client_context, subject_cn

pytestmark = pytest.mark.sluice_only


# --------------------------------------------------------------------------
# helpers

def start_proxy(start: Callable, make_cfg: Callable[[], dict]):
    """``start(make_cfg())``, again with new listener ports when a port picked free was
    taken meanwhile (a loopback client's ephemeral port can land on it)."""
    for attempt in range(3):
        try:
            return start(make_cfg())
        except AssertionError as exc:
            if "Address already in use" not in str(exc) or attempt == 2:
                raise


def http_proxy(proxy_factory, services, routes=None, **kw):
    """An http listener routing NAME.example.com to service NAME (or ``routes``)."""
    routes = routes or [{"host": f"{n}.example.com", "service": n} for n in services]
    return start_proxy(proxy_factory, lambda: make_config(
        {"web": http_listener(new_listener(), routes)}, services, **kw))


def sluice_check(tmp_path, cfg: dict, name: str = "check.yaml"):
    path = tmp_path / name
    path.write_text(to_yaml(cfg) + "\n")
    p = subprocess.run([str(sluice_bin()), "check", "--config", str(path)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
    return p.returncode, p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")


class ScriptedBackend:
    """A loopback HTTP backend whose every connection runs ``handler(sock, reader, conn,
    backend)`` on its own thread (``conn`` counts from 1). ``record(facts)`` keeps what
    the handler saw, for the test to inspect."""

    def __init__(self, handler: Callable):
        self.handler = handler
        self.cond = threading.Condition()
        self.records: List[dict] = []
        self.conns = 0
        self.socks: List[socket.socket] = []
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(128)
        self.addr = f"127.0.0.1:{self.lsock.getsockname()[1]}"
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                sock, _ = self.lsock.accept()
            except OSError:
                return
            with self.cond:
                if self.stopping:
                    sock.close()
                    return
                self.conns += 1
                conn = self.conns
                self.socks.append(sock)
                self.cond.notify_all()
            threading.Thread(target=self._run, args=(sock, conn), daemon=True).start()

    def _run(self, sock, conn):
        sock.settimeout(20)
        try:
            self.handler(sock, BufReader(sock), conn, self)
        except (OSError, EOFError, ValueError):
            pass
        finally:
            sock.close()

    def record(self, facts: dict) -> None:
        with self.cond:
            self.records.append(facts)
            self.cond.notify_all()

    def snapshot(self) -> List[dict]:
        with self.cond:
            return list(self.records)

    def shutdown(self):
        with self.cond:
            self.stopping = True
            socks = list(self.socks)
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.lsock.close()
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.fixture
def scripted():
    made: List[ScriptedBackend] = []

    def make(handler):
        b = ScriptedBackend(handler)
        made.append(b)
        return b

    yield make
    for b in made:
        b.shutdown()


def answer(sock, body: bytes, extra: str = "") -> None:
    sock.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{extra}"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body)


def read_request(reader: BufReader):
    """(method, target, version, fields) of the next request head, or None at EOF."""
    head = reader.read_until(b"\r\n\r\n")
    if head is None:
        return None
    first, fields = parse_head(head[:-4])
    method, target, version = (first.split(" ", 2) + ["", ""])[:3]
    return method, target, version, fields


# --------------------------------------------------------------------------
# 1. a ClientHello in 1-byte records: a replay larger than the copy buffer

def one_byte_records(hello: bytes) -> bytes:
    """The ClientHello handshake message re-cut into TLS records of one byte each."""
    assert hello[0] == 22
    return b"".join(b"\x16\x03\x01\x00\x01" + bytes([b]) for b in hello[5:])


def test_tls_hello_in_one_byte_records_over_the_copy_buffer(tls_backends, proxy_factory,
                                                            tls_certs):
    """The peeked bytes (~6x the hello, > 16 KiB) exceed tuning.copyBuffer: they must
    still reach the backend whole, and the handshake and the echo complete."""
    a = tls_backends.tls("a")
    routes = [{"host": "a.example.com", "service": "a"}]
    p = start_proxy(proxy_factory, lambda: make_config(
        {"tls": {"address": new_listener(), "protocol": "tls", "routes": routes}},
        {"a": [a.addr]}, extra={"tuning": {"copyBuffer": "16k"}}))
    ctx = client_context(tls_certs)
    # ALPN names fatten the hello to ~4.5 KB: ~27 KB in one-byte records (the peek
    # buffer holds 32 KiB).
    ctx.set_alpn_protocols([f"p{i:03d}" + "x" * 196 for i in range(20)])
    for round_ in range(3):
        with socket.create_connection(("127.0.0.1", int(p.addr().rpartition(":")[2])),
                                      timeout=5) as s:
            cli = BIOClient(s, ctx, "a.example.com")
            wire = one_byte_records(cli.client_hello())
            assert 16 * 1024 < len(wire) < 32 * 1024, len(wire)
            s.sendall(wire)
            try:
                cli.handshake(timeout=5)
            except (EOFError, OSError, TimeoutError) as exc:
                pytest.fail(f"round {round_}: handshake through a {len(wire)}-byte replay "
                            f"failed: {type(exc).__name__}: {exc}; proxy rc="
                            f"{p.proc.poll()}\n{p.stderr_text()[-3000:]}")
            assert subject_cn(cli.obj.getpeercert()) == "a.example.com"
            cli.send(b"replayed\n")
            assert (cli.recv_line(), cli.recv_line()) == (b"a", b"replayed")
        assert a.wait_conn(round_).sni == "a.example.com"
    assert p.proc.poll() is None, f"proxy exited:\n{p.stderr_text()[-3000:]}"
    assert not a.errors, a.errors


# --------------------------------------------------------------------------
# 2. request body deadline: a grace, then a minimum rate

BODY_LIMITS = {"timeouts": {"requestBody": "2s"}, "limits": {"requestBodyMinRate": 1000}}


def test_trickled_request_body_gets_408(http_backends, proxy_factory, clients):
    a = http_backends.add("a")
    p = http_proxy(proxy_factory, {"a": [a.addr]}, **BODY_LIMITS)
    s = clients.connect(p.addr())
    s.sendall(b"POST /up HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 100000\r\n\r\n")
    t0 = time.monotonic()
    sent = 0
    answered = b""
    while time.monotonic() - t0 < 8:
        try:
            s.sendall(b"x")
            sent += 1
        except (BrokenPipeError, ConnectionResetError):
            break
        r, _, _ = select.select([s], [], [], 0.5)  # the trickle's pace
        if r:
            try:
                answered = s.recv(65536)
            except ConnectionResetError:
                answered = b"<reset>"
            break
    elapsed = time.monotonic() - t0
    assert answered, f"no answer after {elapsed:.1f}s of a body trickled 1 byte/0.5s"
    assert answered.startswith(b"HTTP/1.1 408"), answered[:200]
    due = 2.0 + sent / 1000
    assert 1.5 <= elapsed <= due + 1.5, \
        f"408 after {elapsed:.2f}s ({sent} body bytes); the deadline was {due:.3f}s"
    outcome = closed_within(s, 2.0)
    assert outcome == "reset" or outcome.startswith("eof"), f"not closed after 408: {outcome}"
    assert a.request_count() == 0, "the backend saw the whole trickled body"
    with a.cond:
        assert a.cond.wait_for(lambda: a.conns, 1), "the head never reached the backend"
    assert a.conns[0].closed.wait(3), "the upstream of a timed-out body stayed open"


def test_steady_request_body_is_delivered_whole(http_backends, proxy_factory, clients):
    """12.5 KB/s for ~4.8 s: far above requestBodyMinRate, past the 2 s grace."""
    a = http_backends.add("a")
    p = http_proxy(proxy_factory, {"a": [a.addr]}, **BODY_LIMITS)
    body = os.urandom(60_000)
    s = clients.connect(p.addr(), timeout=10)
    s.sendall(f"POST /steady HTTP/1.1\r\nHost: a.example.com\r\n"
              f"Content-Length: {len(body)}\r\n\r\n".encode())
    t0 = time.monotonic()
    for i, off in enumerate(range(0, len(body), 1000)):
        pause = t0 + i * 0.08 - time.monotonic()
        if pause > 0:
            time.sleep(pause)  # the steady sender's pace
        s.sendall(body[off:off + 1000])
    assert time.monotonic() - t0 > 4.0
    r = read_response(BufReader(s))
    assert r.status == 200, r
    f = r.json()
    assert f["body_len"] == len(body)
    assert f["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_check_request_body_fields(tmp_path):
    base = make_config({"web": http_listener("127.0.0.1:18080",
                                             [{"host": "a.example.com", "service": "a"}])},
                       {"a": ["127.0.0.1:9001"]})
    ok = {**base, "timeouts": {"requestBody": "2s"}, "limits": {"requestBodyMinRate": 1000}}
    rc, out = sluice_check(tmp_path, ok)
    assert rc == 0, out
    zero = {**base, "timeouts": {"requestBody": "2s"}, "limits": {"requestBodyMinRate": 0}}
    rc, out = sluice_check(tmp_path, zero)
    assert rc == 0, out
    bad = {**base, "limits": {"requestBodyMinRate": -1}}
    rc, out = sluice_check(tmp_path, bad)
    assert rc == 1, out
    assert "limits.requestBodyMinRate" in out, out


# --------------------------------------------------------------------------
# 3. a loop at its connection share refuses at once

def refused_within(addr: str, timeout: float, send: bytes = b"") -> str:
    """Connects and reads: 'reset' (also when the reset beats the connect's completion),
    'eof', or 'open' (nothing within ``timeout``)."""
    host, _, port = addr.rpartition(":")
    try:
        s = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
    except ConnectionResetError:
        return "reset"
    with s:
        try:
            if send:
                s.sendall(send)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return closed_within(s, timeout)


def test_loop_at_its_share_refuses_promptly(http_backends, proxy_factory, clients):
    a = http_backends.add("a")
    p = http_proxy(proxy_factory, {"a": [a.addr]}, limits={"maxConnections": 20})
    held = []
    for i in range(20):
        s = clients.connect(p.addr())
        reader = BufReader(s)
        s.sendall(request_bytes("a.example.com", f"/held{i}"))
        r = read_response(reader)
        assert r.status == 200, (i, r)
        held.append(s)
    t0 = time.monotonic()
    outcome = refused_within(p.addr(), 1.0, request_bytes("a.example.com", "/over"))
    elapsed = time.monotonic() - t0
    assert outcome in ("eof", "reset"), \
        f"a 21st client with maxConnections 20 was left {outcome} for {elapsed:.2f}s"
    assert elapsed < 1.5
    assert a.request_count() == 20, "the refused client's request reached the backend"
    before = fd_count(p.pid)
    for s in held[:5]:
        s.close()
    deadline = time.monotonic() + 5
    while fd_count(p.pid) > before - 5:  # bounded poll of the proxy's descriptors
        assert time.monotonic() < deadline, "the proxy did not close 5 departed clients"
        time.sleep(0.02)
    for i in range(3):
        r = get(p.addr(), "a.example.com", f"/again{i}")
        assert r.status == 200 and r.json()["target"] == f"/again{i}", r


# --------------------------------------------------------------------------
# 4. retries: only what was never sent, or is idempotent

def answer_first_then_hang_up(sock, reader, conn, backend):
    """Answers the first request of a connection; for the next one, reads its head and
    closes without answering."""
    seq = 0
    while True:
        req = read_request(reader)
        if req is None:
            return
        method, target, _, fields = req
        seq += 1
        backend.record({"conn": conn, "seq": seq, "method": method, "target": target})
        if seq > 1:
            return
        cl = int(field(fields, "content-length") or 0)
        if cl:
            reader.read_exact(cl)
        answer(sock, json.dumps({"conn": conn, "seq": seq, "method": method,
                                 "target": target}).encode())


@pytest.mark.parametrize("body", [b"", b"small body"], ids=["content-length-0", "small-body"])
def test_reused_upstream_dies_get_retried_post_not(scripted, proxy_factory, clients, body):
    be = scripted(answer_first_then_hang_up)
    p = http_proxy(proxy_factory, {"a": [be.addr]})
    s = clients.connect(p.addr())
    reader = BufReader(s)
    s.sendall(request_bytes("a.example.com", "/first"))
    r = read_response(reader)
    assert r.status == 200 and r.json()["conn"] == 1, r
    # A GET on the reused connection, which the server closes: retried on a new one.
    s.sendall(request_bytes("a.example.com", "/again"))
    r = read_response(reader)
    assert r.status == 200, f"a GET on a reused upstream the server closed: {r!r}"
    assert (r.json()["conn"], r.json()["target"]) == (2, "/again"), r
    # A POST on the reused connection (2), which the server closes: never sent twice.
    s.sendall(request_bytes("a.example.com", "/post", method="POST",
                            headers=[f"Content-Length: {len(body)}"], body=body))
    r = read_response(reader)
    posts = [f for f in be.snapshot() if f["method"] == "POST"]
    assert r.status == 502, f"POST after the server closed the reused connection: {r!r}; " \
                            f"the backend saw {posts}"
    assert posts == [{"conn": 2, "seq": 2, "method": "POST", "target": "/post"}], posts
    assert be.conns == 2, f"{be.conns} upstream connections: the POST was re-sent"


# --------------------------------------------------------------------------
# 5. stripPath with a long target

def test_strip_path_keeps_a_long_target_whole(http_backends, proxy_factory):
    a = http_backends.add("a")
    routes = [{"host": "a.example.com", "path": "/api", "stripPath": True, "service": "a"}]
    p = http_proxy(proxy_factory, {"a": [a.addr]}, routes=routes)
    # The request-target limit is 8 KiB (414 beyond): ~8 KB, path and query each past
    # any 4 KiB cut.
    path = "/api/" + "/".join(f"seg{i:04d}" + "p" * 40 for i in range(110))
    target = path + "?q=" + "x" * (8100 - len(path) - 3)
    assert 4096 < len(path) < 8192 - 100 and len(target) < 8192
    r = get(p.addr(), "a.example.com", target)
    assert r.status == 200, r
    got = r.json()["target"]
    want = target[len("/api"):]
    assert got == want, f"the backend got {len(got)} bytes of target, not {len(want)}: " \
                        f"...{got[-60:]!r}"


# --------------------------------------------------------------------------
# 6. cookie names: at most 256 bytes

def cookie_config(name: str, endpoints=("127.0.0.1:9001", "127.0.0.1:9002")) -> dict:
    return make_config({"web": http_listener(new_listener(),
                                             [{"host": "a.example.com", "service": "a"}])},
                       {"a": {"endpoints": list(endpoints), "cookie": name}},
                       algorithm="cookie")


def test_check_cookie_name_length(tmp_path):
    rc, out = sluice_check(tmp_path, cookie_config("C" * 257))
    assert rc == 1, f"a 257-byte cookie name was accepted:\n{out}"
    assert "services[0].cookie" in out, out
    rc, out = sluice_check(tmp_path, cookie_config("C" * 256))
    assert rc == 0, f"a 256-byte cookie name was refused:\n{out}"


def test_long_cookie_name_is_set_and_honoured(http_backends, proxy_factory):
    a = http_backends.add("a")
    b = http_backends.add("b")
    name = "K" * 200
    p = start_proxy(proxy_factory, lambda: cookie_config(name, (a.addr, b.addr)))
    r = get(p.addr(), "a.example.com", "/c")
    assert r.status == 200, r
    sc = r.header("set-cookie")
    assert sc is not None, f"no Set-Cookie: {r.fields}"
    pair = sc.split(";", 1)[0].strip()
    assert pair.startswith(name + "=") and len(pair) > len(name) + 1, sc
    assert "Path=/" in sc, sc
    first = r.json()["backend"]
    for i in range(4):
        r = get(p.addr(), "a.example.com", f"/c{i}", headers=[f"Cookie: {pair}"])
        assert r.status == 200 and r.json()["backend"] == first, \
            f"request {i} with the cookie went to {r.json()['backend']}, not {first}"


# --------------------------------------------------------------------------
# 7. 1xx: never to HTTP/1.0 clients; hop-by-hop fields dropped

def early_hints(sock, reader, conn, backend):
    while True:
        req = read_request(reader)
        if req is None:
            return
        method, target, version, fields = req
        backend.record({"target": target, "version": version})
        sock.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n"
                     b"Connection: foo\r\nFoo: bar\r\n\r\n")
        answer(sock, json.dumps({"target": target}).encode())


def test_103_not_sent_to_http10_client(scripted, proxy_factory):
    be = scripted(early_hints)
    p = http_proxy(proxy_factory, {"a": [be.addr]})
    host, _, port = p.addr().rpartition(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"GET /ten HTTP/1.0\r\nHost: a.example.com\r\n\r\n")
        reader = BufReader(s)
        first = read_response(reader, allow_1xx=True)
    assert first.status == 200, f"an HTTP/1.0 client got a {first.status} first: {first!r}"
    assert json.loads(first.body)["target"] == "/ten"


def test_103_to_http11_client_without_hop_by_hop_fields(scripted, proxy_factory, clients):
    be = scripted(early_hints)
    p = http_proxy(proxy_factory, {"a": [be.addr]})
    s = clients.connect(p.addr())
    reader = BufReader(s)
    s.sendall(request_bytes("a.example.com", "/eleven"))
    hint = read_response(reader, allow_1xx=True)
    assert hint.status == 103, hint
    assert hint.header("link") == "</style.css>; rel=preload", hint
    names = {n.lower() for n, _ in hint.fields}
    assert "foo" not in names, f"a field nominated by Connection crossed in a 1xx: {hint.fields}"
    conn = hint.header("connection") or ""
    assert "foo" not in conn.lower(), f"the 1xx kept Connection: {conn}"
    final = read_response(reader)
    assert final.status == 200 and final.json()["target"] == "/eleven", final


# --------------------------------------------------------------------------
# 8. EMFILE on connect is not held against the endpoint

NOFILE = 64


class LimitedSluice(SluiceProcess):
    """sluice run with RLIMIT_NOFILE at NOFILE, soft and hard."""

    def start(self):
        self.write_config(self.config)

        def limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))

        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     cwd=self.workdir, preexec_fn=limit)
        self.reader = threading.Thread(target=self._read, daemon=True, name="sluice-stderr")
        self.reader.start()
        self.wait_ready()
        return self


def wait_fds(pid: int, want: int, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while fd_count(pid) != want:  # bounded poll of the proxy's descriptors
        assert time.monotonic() < deadline, f"proxy holds {fd_count(pid)} descriptors, " \
                                            f"waited {timeout}s for {want}"
        time.sleep(0.02)


def test_emfile_on_connect_does_not_mark_endpoints_down(backends, tmp_path, request):
    a = backends.add("a")
    b = backends.add("b")
    started: List[LimitedSluice] = []

    def start(cfg):
        started.append(LimitedSluice(tmp_path, cfg, workers=1))
        return started[-1].start()

    def config():
        return make_config(
            {"l4": new_listener(),
             "web": http_listener(new_listener(), [{"host": "a.example.com", "service": "s"}])},
            {"s": [a.addr, b.addr]},
            limits={"endpointBackoff": "30s"}, extra={"tuning": {"splice": False}})

    socks: List[socket.socket] = []

    def client(addr):
        s = socket.create_connection(tuple([addr.rpartition(":")[0],
                                            int(addr.rpartition(":")[2])]), timeout=3)
        socks.append(s)
        return s

    try:
        p = start_proxy(start, config)
        l4, web = p.addr("l4"), p.addr("web")
        pid = p.pid
        # Fill the descriptors with tunnels (two each) until one or two are left; an idle
        # HTTP client (one) makes it exactly one.
        while NOFILE - fd_count(pid) > 2:
            s = client(l4)
            assert recv_line(s) in (b"a", b"b")  # both of its descriptors are open
        if NOFILE - fd_count(pid) == 2:
            want = fd_count(pid) + 1
            client(web)
            wait_fds(pid, want)
        assert NOFILE - fd_count(pid) == 1, fd_count(pid)
        accepted = backends.total_accepted()
        # Each client over the limit is accepted into the last descriptor, its connect
        # fails with EMFILE, and it is closed.
        for i in range(4):
            outcome = refused_within(l4, 2.0)
            assert outcome in ("eof", "reset"), f"over-the-limit client {i}: {outcome}"
        assert backends.total_accepted() == accepted
        # Release everything: both endpoints must still be in rotation.
        for s in socks:
            s.close()
        socks.clear()
        backends.wait_until(lambda: backends._count_active_nolock() == 0, 5,
                            "the tunnels to close")
        names = []
        for i in range(4):
            s = client(l4)
            names.append(recv_line(s).decode())
            s.close()
            socks.remove(s)
        assert set(names) == {"a", "b"}, \
            f"after EMFILE on connect only {sorted(set(names))} served: {names} " \
            f"(an endpoint was marked down)"
        lines = [l for l in p.stderr_text().splitlines() if "EMFILE" in l]
        assert len(lines) == 1, f"expected one EMFILE warning, got {len(lines)}:\n" + \
                                "\n".join(lines)
    finally:
        for s in socks:
            s.close()
        for q in started:
            q.stop()
            request.node.add_report_section("teardown", "sluice stderr", q.stderr_text())

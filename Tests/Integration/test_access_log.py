"""The access log against the real binary: every record checked field by field against the
request or connection that made it (plain HTTP, a backend's 500, a 504, a backend reset,
TCP, TLS passthrough, terminated TLS), X-Request-ID passed through and generated, the
errors-only mode and sampling, rotation by ``mv`` + SIGUSR2, the text form, and a reload
that changes a listener's mode.

Records are read once the proxy has stopped (SIGTERM: the loops drain, then the writer
writes what is left), or, where a test must know a record is in the file before it goes
on, by reading the file until it is there (bounded). ``DEBUG_RECORDS=1`` prints the lines
each test read (with ``-s``)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import ssl
import stat
import struct
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pytest

from conftest import make_config, new_listener
from http_backends import BufReader, field, http_listener, read_response, request_bytes
from tls_backends import client_context

pytestmark = pytest.mark.sluice_only

FIELDS = ["time", "kind", "client", "listener", "host", "method", "target", "target_truncated",
          "status", "bytes_in", "bytes_out", "service", "endpoint", "request_ms", "connect_ms",
          "response_ms", "total_ms", "close_reason", "close_side", "tls_version", "sni",
          "request_id", "protocol", "upstream_protocol"]
TIME_RX = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


# --------------------------------------------------------------------------
# backends of our own: a fixed answer, and one that resets

class FixedServer:
    """Answers every request with ``response`` (bytes) after reading its head; with
    ``reset=True`` it resets the connection (SO_LINGER 0) instead of answering."""

    def __init__(self, response: bytes = b"", reset: bool = False):
        self.response = response
        self.reset = reset
        self.requests: List[bytes] = []
        self.cond = threading.Condition()
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.addr = f"127.0.0.1:{self.lsock.getsockname()[1]}"
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s: socket.socket):
        reader = BufReader(s)
        try:
            while True:
                head = reader.read_until(b"\r\n\r\n")
                if head is None:
                    return
                with self.cond:
                    self.requests.append(head)
                    self.cond.notify_all()
                if self.reset:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                s.sendall(self.response)
        except OSError:
            pass
        finally:
            s.close()

    def shutdown(self):
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.lsock.close()


@pytest.fixture
def fixed():
    servers: List[FixedServer] = []

    def make(**kw) -> FixedServer:
        server = FixedServer(**kw)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.shutdown()


SERVER_ERROR = (b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n"
                b"Content-Length: 5\r\n\r\noops\n")


# --------------------------------------------------------------------------
# the proxy and its log

class Logged:
    """A running proxy writing its access log to ``path``."""

    def __init__(self, proxy, path: Path):
        self.p = proxy
        self.path = path

    def addr(self, listener: str) -> str:
        return self.p.addr(listener)

    def lines(self) -> List[str]:
        if not self.path.exists():
            return []
        text = self.path.read_text()
        assert text == "" or text.endswith("\n"), f"a partial line at the end: {text[-200:]!r}"
        return text.splitlines()

    def records(self) -> List[dict]:
        out = []
        for line in self.lines():
            record = json.loads(line)
            assert list(record) == FIELDS, f"fields out of order or missing: {line}"
            out.append(record)
        return out

    def wait_records(self, predicate: Callable[[List[dict]], bool], timeout: float = 15.0,
                     what: str = "records") -> List[dict]:
        """Reads the file until ``predicate`` holds for its records (the writer drains every
        50 ms; the bound is for a loaded machine)."""
        deadline = time.monotonic() + timeout
        while True:
            records = self.records()
            if predicate(records):
                return records
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; the log has:\n" +
                                     "\n".join(self.lines()[-20:]))
            time.sleep(0.02)

    def stop(self) -> List[dict]:
        """SIGTERM, wait for a clean exit, then every record written."""
        self.p.proc.send_signal(signal.SIGTERM)
        rc = self.p.wait_exit(30.0)
        assert rc == 0, f"sluice exited rc={rc}:\n{self.p.stderr_text()}"
        if os.environ.get("DEBUG_RECORDS"):
            print("\n" + "\n".join(self.lines()))
        return self.records()


def start(proxy_factory, tmp_path: Path, listeners: Dict[str, dict], services: Dict[str, list],
          access_log: Optional[dict] = None, timeouts: Optional[dict] = None,
          workers: int = 1) -> Logged:
    path = tmp_path / "logs" / "access.log"
    path.parent.mkdir(exist_ok=True)
    section = {"path": "logs/access.log", "format": "json"}
    section.update(access_log or {})
    cfg = make_config(listeners, services, timeouts={"drain": "5s", **(timeouts or {})},
                      extra={"accessLog": section})
    return Logged(proxy_factory(cfg, workers=workers), path)


def web(routes: Dict[str, str], **fields) -> dict:
    """An http listener routing ``HOST.example.com`` to each service."""
    listener = http_listener(new_listener(),
                             [{"host": f"{host}.example.com", "service": service}
                              for host, service in routes.items()])
    listener.update(fields)
    return listener


def request(addr: str, host: str, target: str = "/", headers: Optional[List[str]] = None,
            close: bool = True):
    """One request on a new connection. Returns (response, the client's own address, bytes
    sent, bytes received)."""
    h, _, port = addr.rpartition(":")
    with socket.create_connection((h, int(port)), timeout=15) as s:
        raw = request_bytes(host, target, headers=(headers or []) +
                            (["Connection: close"] if close else []))
        s.sendall(raw)
        counted = Counting(s)
        response = read_response(BufReader(counted))
        if close:
            while counted.recv(65536):
                pass
        me = "%s:%d" % s.getsockname()[:2]
    return response, me, len(raw), counted.received


class Counting:
    """A socket wrapper that counts the bytes received through it."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.received = 0

    def recv(self, n: int) -> bytes:
        data = self.sock.recv(n)
        self.received += len(data)
        return data

    def __getattr__(self, name):
        return getattr(self.sock, name)


def only(records: List[dict], **match) -> dict:
    found = [r for r in records if all(r.get(k) == v for k, v in match.items())]
    assert len(found) == 1, f"expected one record with {match}, found {len(found)}:\n" + \
        "\n".join(json.dumps(r) for r in records)
    return found[0]


def check_time(record: dict, before: float, after: float) -> None:
    assert TIME_RX.fullmatch(record["time"]), record["time"]
    stamp = datetime.strptime(record["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=timezone.utc).timestamp()
    # The record's time is its start, taken once per loop batch.
    assert before - 1.0 <= stamp <= after + 1.0, (record["time"], before, after)


def check_durations(record: dict, *present: str, absent=()) -> None:
    for name in present:
        value = record[name]
        assert isinstance(value, (int, float)) and value >= 0, (name, record)
    for name in absent:
        assert record[name] is None, (name, record)
    if record["total_ms"] is not None and record["response_ms"] is not None:
        assert record["total_ms"] >= record["response_ms"], record


def seen_request_id(facts: dict) -> Optional[str]:
    return field(facts["fields"], "x-request-id")


# --------------------------------------------------------------------------
# HTTP

def test_a_200_is_recorded_field_by_field(http_backends, proxy_factory, tmp_path):
    ok = http_backends.add("ok")
    log = start(proxy_factory, tmp_path, {"web": web({"ok": "ok"})}, {"ok": [ok.addr]})
    before = time.time()
    response, me, sent, received = request(log.addr("web"), "ok.example.com", "/hello?x=1")
    after = time.time()
    assert response.status == 200
    record = only(log.stop(), target="/hello?x=1")
    check_time(record, before, after)
    assert record["kind"] == "http"
    assert record["client"] == me
    assert record["listener"] == "web"
    assert record["host"] == "ok.example.com"
    assert record["method"] == "GET"
    assert record["target_truncated"] is False
    assert record["status"] == 200
    assert record["bytes_in"] == sent
    assert record["bytes_out"] == received
    assert record["service"] == "ok"
    assert record["endpoint"] == ok.addr
    check_durations(record, "request_ms", "connect_ms", "response_ms", "total_ms")
    assert record["close_reason"] == "done" and record["close_side"] == "proxy"
    assert record["tls_version"] is None and record["sni"] is None
    # Generated here, forwarded, and the same in the log.
    facts = ok.requests[0]
    assert record["request_id"] and seen_request_id(facts) == record["request_id"]


def test_keep_alive_requests_get_a_record_each(http_backends, proxy_factory, tmp_path):
    ok = http_backends.add("ok")
    log = start(proxy_factory, tmp_path, {"web": web({"ok": "ok"})}, {"ok": [ok.addr]})
    h, _, port = log.addr("web").rpartition(":")
    with socket.create_connection((h, int(port)), timeout=15) as s:
        reader = BufReader(s)
        for i in range(3):
            s.sendall(request_bytes("ok.example.com", f"/k{i}", method="HEAD" if i == 1 else "GET"))
            assert read_response(reader, "HEAD" if i == 1 else "GET").status == 200
        me = "%s:%d" % s.getsockname()[:2]
    records = log.stop()
    ids = set()
    for i in range(3):
        record = only(records, target=f"/k{i}")
        assert record["client"] == me
        assert record["method"] == ("HEAD" if i == 1 else "GET")
        assert record["close_reason"] in (None, "client_closed")
        ids.add(record["request_id"])
    # The first request connected; the others reused the connection.
    assert only(records, target="/k0")["connect_ms"] is not None
    assert only(records, target="/k2")["connect_ms"] is None
    assert len(ids) == 3


def test_a_request_id_from_the_client_is_passed_through(http_backends, proxy_factory, tmp_path):
    ok = http_backends.add("ok")
    log = start(proxy_factory, tmp_path, {"web": web({"ok": "ok"})}, {"ok": [ok.addr]})
    request(log.addr("web"), "ok.example.com", "/mine", headers=["X-Request-ID: trace-42.a"])
    request(log.addr("web"), "ok.example.com", "/generated")
    request(log.addr("web"), "ok.example.com", "/invalid", headers=["X-Request-ID: has space"])
    records = log.stop()
    assert only(records, target="/mine")["request_id"] == "trace-42.a"
    by_target = {facts["target"]: facts for facts in ok.requests}
    assert seen_request_id(by_target["/mine"]) == "trace-42.a"
    generated = only(records, target="/generated")["request_id"]
    assert generated and generated != "trace-42.a"
    assert seen_request_id(by_target["/generated"]) == generated
    # One that cannot be passed on (a space in it) is replaced by a new one.
    replaced = only(records, target="/invalid")["request_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", replaced) and re.fullmatch(r"[0-9a-f]{32}", generated)
    assert seen_request_id(by_target["/invalid"]) == replaced
    # Exactly one X-Request-ID reaches the backend, in both cases.
    for facts in by_target.values():
        assert [n.lower() for n, _ in facts["fields"]].count("x-request-id") == 1, facts


def test_a_500_from_the_backend(fixed, proxy_factory, tmp_path):
    fail = fixed(response=SERVER_ERROR)
    log = start(proxy_factory, tmp_path, {"web": web({"fail": "fail"})}, {"fail": [fail.addr]})
    response, me, sent, received = request(log.addr("web"), "fail.example.com", "/boom")
    assert response.status == 500
    record = only(log.stop(), target="/boom")
    assert record["status"] == 500 and record["service"] == "fail"
    assert record["endpoint"] == fail.addr and record["client"] == me
    assert record["bytes_in"] == sent and record["bytes_out"] == received
    check_durations(record, "request_ms", "connect_ms", "response_ms", "total_ms")
    assert b"x-request-id: " + record["request_id"].encode() in fail.requests[0].lower()


def test_a_504_when_the_backend_is_too_slow(http_backends, proxy_factory, tmp_path):
    slow = http_backends.add("slow", mode="slow")
    log = start(proxy_factory, tmp_path, {"web": web({"slow": "slow"})}, {"slow": [slow.addr]},
                timeouts={"server": "400ms"})
    t0 = time.monotonic()
    response, me, sent, received = request(log.addr("web"), "slow.example.com", "/wait?delay=30")
    assert response.status == 504
    assert time.monotonic() - t0 < 20
    record = only(log.stop(), target="/wait?delay=30")
    assert record["status"] == 504 and record["service"] == "slow"
    assert record["endpoint"] == slow.addr
    assert record["bytes_out"] == received
    check_durations(record, "request_ms", "connect_ms", "total_ms", absent=["response_ms"])
    assert record["total_ms"] >= 400
    assert record["close_reason"] == "server_timeout" and record["close_side"] == "upstream"


def test_a_backend_reset(fixed, proxy_factory, tmp_path):
    reset = fixed(reset=True)
    log = start(proxy_factory, tmp_path, {"web": web({"reset": "reset"})}, {"reset": [reset.addr]})
    response, me, sent, received = request(log.addr("web"), "reset.example.com", "/rst")
    assert response.status == 502
    record = only(log.stop(), target="/rst")
    assert record["status"] == 502 and record["service"] == "reset"
    assert record["endpoint"] == reset.addr
    check_durations(record, "request_ms", "connect_ms", "total_ms", absent=["response_ms"])
    assert record["close_reason"] == "upstream_reset" and record["close_side"] == "upstream"


def test_a_cut_target_is_marked(http_backends, proxy_factory, tmp_path):
    ok = http_backends.add("ok")
    log = start(proxy_factory, tmp_path, {"web": web({"ok": "ok"})}, {"ok": [ok.addr]})
    target = "/long/" + "x" * 400 + "?q=\"quoted\""
    exact = "/" + "y" * 255  # exactly the 256 bytes kept: not cut
    assert request(log.addr("web"), "ok.example.com", target)[0].status == 200
    assert request(log.addr("web"), "ok.example.com", exact)[0].status == 200
    records = log.stop()
    cut = only(records, service="ok", target=target[:256])
    assert cut["target_truncated"] is True
    whole = only(records, service="ok", target=exact)
    assert whole["target_truncated"] is False


# --------------------------------------------------------------------------
# tunnels and TLS

def test_a_tcp_connection(backends, proxy_factory, tmp_path):
    echo = backends.add("echo")
    log = start(proxy_factory, tmp_path, {"db": new_listener()}, {"db": [echo.addr]})
    h, _, port = log.addr("db").rpartition(":")
    before = time.time()
    with socket.create_connection((h, int(port)), timeout=15) as s:
        hello = BufReader(s).read_until(b"\n")
        assert hello == b"echo\n"
        s.sendall(b"ping\n")
        got = b""
        while len(got) < 5:
            got += s.recv(5 - len(got))
        assert got == b"ping\n"
        me = "%s:%d" % s.getsockname()[:2]
    backends.wait_until(lambda: backends.total_active() == 0, 15, "the tunnel to close")
    after = time.time()
    record = only(log.stop(), kind="tcp")
    check_time(record, before, after)
    assert record["client"] == me and record["listener"] == "db"
    assert record["service"] == "db" and record["endpoint"] == echo.addr
    assert record["bytes_in"] == 5 and record["bytes_out"] == 10
    for name in ("host", "method", "target", "status", "tls_version", "sni", "request_id"):
        assert record[name] is None, (name, record)
    check_durations(record, "request_ms", "connect_ms", "total_ms")
    assert record["close_reason"] == "client_closed" and record["close_side"] == "downstream"


def tls_proxy(proxy_factory, tmp_path, tls_backends, tls_certs, http_backends, **listener):
    pass_backend = tls_backends.tls("b")
    ok = http_backends.add("ok")
    tls = {
        "address": new_listener(), "protocol": "tls",
        "certificates": [{"cert": str(tls_certs.cert("a")), "key": str(tls_certs.key("a"))}],
        "routes": [{"host": "a.example.com", "terminate": True, "service": "ok"},
                   {"host": "b.example.com", "service": "pass"}],
        **listener,
    }
    log = start(proxy_factory, tmp_path, {"tls": tls}, {"ok": [ok.addr], "pass": [pass_backend.addr]})
    return log, pass_backend, ok


def test_a_tls_passthrough_connection(tls_backends, tls_certs, http_backends, proxy_factory,
                                      tmp_path):
    log, pass_backend, _ = tls_proxy(proxy_factory, tmp_path, tls_backends, tls_certs,
                                     http_backends)
    h, _, port = log.addr("tls").rpartition(":")
    raw = socket.create_connection((h, int(port)), timeout=15)
    me = "%s:%d" % raw.getsockname()[:2]
    with client_context(tls_certs).wrap_socket(raw, server_hostname="b.example.com") as s:
        s.sendall(b"hello\nBYE\n")
        got = b""
        while True:
            try:
                data = s.recv(4096)
            except ssl.SSLError:
                break
            if not data:
                break
            got += data
    assert got == b"b\nhello\nBYE\n"
    record = only(log.stop(), kind="tls_passthrough")
    assert record["client"] == me and record["listener"] == "tls"
    assert record["sni"] == "b.example.com" and record["tls_version"] is None
    assert record["service"] == "pass" and record["endpoint"] == pass_backend.addr
    assert record["bytes_in"] > 200 and record["bytes_out"] > 200  # handshakes included
    assert record["status"] is None and record["method"] is None and record["host"] is None
    check_durations(record, "request_ms", "connect_ms", "response_ms", "total_ms")
    # The client closes first: the backend waits for its close_notify.
    assert record["close_reason"] == "client_closed" and record["close_side"] == "downstream"


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_a_terminated_tls_request(tls_backends, tls_certs, http_backends, proxy_factory, tmp_path,
                                  version):
    log, _, ok = tls_proxy(proxy_factory, tmp_path, tls_backends, tls_certs, http_backends)
    h, _, port = log.addr("tls").rpartition(":")
    ctx = client_context(tls_certs)
    ctx.minimum_version = ctx.maximum_version = getattr(ssl.TLSVersion, version.replace(".", "_"))
    raw = socket.create_connection((h, int(port)), timeout=15)
    me = "%s:%d" % raw.getsockname()[:2]
    with ctx.wrap_socket(raw, server_hostname="a.example.com") as s:
        sent = request_bytes("a.example.com", "/secure", headers=["Connection: close"])
        s.sendall(sent)
        counted = Counting(s)
        response = read_response(BufReader(counted))
        assert response.status == 200
        assert s.version() == version
        while counted.recv(65536):
            pass
    record = only(log.stop(), kind="http")
    assert record["client"] == me and record["listener"] == "tls"
    assert record["host"] == "a.example.com" and record["target"] == "/secure"
    assert record["status"] == 200 and record["service"] == "ok" and record["endpoint"] == ok.addr
    assert record["tls_version"] == version and record["sni"] == "a.example.com"
    # Bytes of the decrypted request and response.
    assert record["bytes_in"] == len(sent) and record["bytes_out"] == counted.received
    check_durations(record, "request_ms", "connect_ms", "response_ms", "total_ms")
    assert record["close_reason"] == "done" and record["close_side"] == "proxy"
    assert seen_request_id(ok.requests[0]) == record["request_id"]


# --------------------------------------------------------------------------
# modes, sampling, reload

def test_errors_only_keeps_the_failures(http_backends, fixed, proxy_factory, tmp_path):
    ok = http_backends.add("ok")
    fail = fixed(response=SERVER_ERROR)
    log = start(proxy_factory, tmp_path,
                {"web": web({"ok": "ok", "fail": "fail"}, accessLog="errors")},
                {"ok": [ok.addr], "fail": [fail.addr]})
    for i in range(5):
        assert request(log.addr("web"), "ok.example.com", f"/fine{i}")[0].status == 200
    assert request(log.addr("web"), "fail.example.com", "/bad")[0].status == 500
    assert request(log.addr("web"), "nobody.example.com", "/none")[0].status == 404
    records = log.stop()
    assert [r["target"] for r in records] == ["/bad"], records


def test_sampling_zero_keeps_only_failures(http_backends, fixed, proxy_factory, tmp_path):
    ok = http_backends.add("ok")
    fail = fixed(response=SERVER_ERROR)
    log = start(proxy_factory, tmp_path,
                {"web": web({"ok": "ok", "fail": "fail"}, accessLogSample=0)},
                {"ok": [ok.addr], "fail": [fail.addr]})
    for i in range(5):
        assert request(log.addr("web"), "ok.example.com", f"/fine{i}")[0].status == 200
    assert request(log.addr("web"), "fail.example.com", "/bad")[0].status == 500
    records = log.stop()
    assert [r["target"] for r in records] == ["/bad"], records


def test_a_listener_with_its_log_off_writes_nothing(http_backends, backends, proxy_factory,
                                                    tmp_path):
    ok = http_backends.add("ok")
    echo = backends.add("echo")
    log = start(proxy_factory, tmp_path,
                {"web": web({"ok": "ok"}, accessLog="off"), "db": new_listener()},
                {"ok": [ok.addr], "db": [echo.addr]})
    assert request(log.addr("web"), "ok.example.com", "/quiet")[0].status == 200
    h, _, port = log.addr("db").rpartition(":")
    with socket.create_connection((h, int(port)), timeout=15) as s:
        assert BufReader(s).read_until(b"\n") == b"echo\n"
    backends.wait_until(lambda: backends.total_active() == 0, 15, "the tunnel to close")
    records = log.stop()
    assert [r["kind"] for r in records] == ["tcp"]


def test_a_reload_changes_a_listeners_mode(http_backends, fixed, proxy_factory, tmp_path):
    ok = http_backends.add("ok")
    fail = fixed(response=SERVER_ERROR)
    listener = web({"ok": "ok", "fail": "fail"})
    log = start(proxy_factory, tmp_path, {"web": listener}, {"ok": [ok.addr], "fail": [fail.addr]})
    assert request(log.addr("web"), "ok.example.com", "/before")[0].status == 200
    config = json.loads(json.dumps(log.p.config))
    config["listeners"][0]["accessLog"] = "errors"
    log.p.reload(config)
    assert request(log.addr("web"), "ok.example.com", "/after")[0].status == 200
    assert request(log.addr("web"), "fail.example.com", "/after-bad")[0].status == 500
    # A change to the section itself waits for a restart, and says so.
    config["accessLog"]["format"] = "text"
    since = log.p.mark()
    log.p.reload(config)
    log.p.wait_line(r"accessLog section is now .*format=text.* stays until a restart", 10, since)
    assert request(log.addr("web"), "fail.example.com", "/still-json")[0].status == 500
    records = log.stop()
    assert [r["target"] for r in records] == ["/before", "/after-bad", "/still-json"], records


# --------------------------------------------------------------------------
# the file: rotation, permissions, text form

def test_rotation_by_mv_and_sigusr2(http_backends, proxy_factory, tmp_path):
    ok = http_backends.add("ok")
    log = start(proxy_factory, tmp_path, {"web": web({"ok": "ok"})}, {"ok": [ok.addr]})
    for i in range(3):
        request(log.addr("web"), "ok.example.com", f"/old{i}")
    log.wait_records(lambda rs: len(rs) == 3, what="the first three records")
    rotated = log.path.with_name("access.log.1")
    os.rename(log.path, rotated)
    since = log.p.mark()
    log.p.proc.send_signal(signal.SIGUSR2)
    log.p.wait_line(r"access log: reopened ", 10, since)
    assert log.path.exists()
    for i in range(2):
        request(log.addr("web"), "ok.example.com", f"/new{i}")
    records = log.stop()
    assert [r["target"] for r in records] == ["/new0", "/new1"]
    old = [json.loads(line)["target"] for line in rotated.read_text().splitlines()]
    assert old == ["/old0", "/old1", "/old2"]
    mode = stat.S_IMODE(os.stat(log.path).st_mode)
    assert mode & 0o137 == 0, oct(mode)  # at most 0640


def test_the_text_form(http_backends, proxy_factory, tmp_path):
    ok = http_backends.add("ok")
    log = start(proxy_factory, tmp_path, {"web": web({"ok": "ok"})}, {"ok": [ok.addr]},
                access_log={"format": "text"})
    response, me, sent, received = request(log.addr("web"), "ok.example.com", "/t?a=\"b\"",
                                           headers=["X-Request-ID: id-1"])
    assert response.status == 200
    log.p.proc.send_signal(signal.SIGTERM)
    assert log.p.wait_exit(30.0) == 0
    lines = log.lines()
    assert len(lines) == 1, lines
    stamp, rest = lines[0].split(" ", 1)
    assert TIME_RX.fullmatch(stamp)
    durations = r"\d+\.\d{3} \d+\.\d{3} \d+\.\d{3} \d+\.\d{3}"
    expected = (rf'http {re.escape(me)} "web" "ok.example.com" GET "/t\?a=\\"b\\"" 200 {sent} '
                rf'{received} "ok" {re.escape(ok.addr)} {durations} done proxy - - "id-1" HTTP/1.1 HTTP/1.1')
    assert re.fullmatch(expected, rest), rest


def test_sigusr2_with_standard_output_is_harmless(http_backends, proxy_factory, tmp_path):
    ok = http_backends.add("ok")
    log = start(proxy_factory, tmp_path, {"web": web({"ok": "ok"})}, {"ok": [ok.addr]},
                access_log={"path": "stdout"})
    since = log.p.mark()
    log.p.proc.send_signal(signal.SIGUSR2)
    log.p.wait_line(r"access log: reopen asked; stdout is not a file", 10, since)
    assert request(log.addr("web"), "ok.example.com", "/x")[0].status == 200
    log.p.proc.send_signal(signal.SIGTERM)
    assert log.p.wait_exit(30.0) == 0


def test_an_unopenable_file_stops_the_start(proxy_factory, tmp_path, http_backends):
    ok = http_backends.add("ok")
    cfg = make_config({"web": web({"ok": "ok"})}, {"ok": [ok.addr]},
                      extra={"accessLog": {"path": str(tmp_path / "missing" / "access.log")}})
    with pytest.raises(AssertionError, match=r"access log: cannot open .*/missing/access\.log: No such"):
        proxy_factory(cfg)


def test_a_blocked_destination_never_holds_up_the_loops(http_backends, proxy_factory, tmp_path):
    """The log is a FIFO nobody reads: the writer blocks in write(2), the rings fill, and the
    loops drop records (counted) but answer every request. Once the FIFO is read again,
    every record is either in it or counted as dropped."""
    ok = http_backends.add("ok")
    (tmp_path / "logs").mkdir()
    fifo = tmp_path / "logs" / "access.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # open, but nothing is read yet
    try:
        log = start(proxy_factory, tmp_path, {"web": web({"ok": "ok"})}, {"ok": [ok.addr]},
                    access_log={"path": "logs/access.fifo", "buffer": 16})
        count = 400
        h, _, port = log.addr("web").rpartition(":")
        with socket.create_connection((h, int(port)), timeout=15) as s:
            buffered = BufReader(s)
            for i in range(count):
                s.sendall(request_bytes("ok.example.com", f"/r{i}"))
                assert read_response(buffered).status == 200
        since = log.p.mark()
        log.p.proc.send_signal(signal.SIGUSR1)
        report = log.p.wait_line(r"access log: written=\d+ dropped=\d+", 10, since)
        assert int(re.search(r"dropped=(\d+)", report).group(1)) > 0, report

        chunks: List[bytes] = []

        def drain():
            os.set_blocking(reader, True)
            while True:
                data = os.read(reader, 1 << 16)
                if not data:
                    return
                chunks.append(data)

        thread = threading.Thread(target=drain, daemon=True)
        thread.start()
        since = log.p.mark()
        log.p.proc.send_signal(signal.SIGTERM)
        assert log.p.wait_exit(30.0) == 0
        thread.join(15)
        closed = log.p.wait_line(r"access log: closed .*: written=\d+ dropped=\d+ failed=0", 5, since)
        written = int(re.search(r"written=(\d+)", closed).group(1))
        dropped = int(re.search(r"dropped=(\d+)", closed).group(1))
        lines = b"".join(chunks).decode().splitlines()
        assert len(lines) == written
        assert written + dropped == count, closed
        targets = [json.loads(line)["target"] for line in lines]
        assert targets == sorted(targets, key=lambda t: int(t[2:]))  # in order, none twice
    finally:
        os.close(reader)


def test_sluice_kube_takes_the_access_log_flags(tmp_path, request):
    from test_kube_e2e import Kube, kube_help
    if not kube_help():
        pytest.skip("this sluice has no `kube` subcommand")
    k = Kube(tmp_path, request)
    try:
        k.server()
        text_log = tmp_path / "kube-text.log"
        p = k.start("--access-log", str(text_log), "--access-log-format", "text")
        assert k.get("nobody.example.com", "/x?y=1").status == 404
        p.proc.send_signal(signal.SIGTERM)
        assert p.wait_exit(30.0) == 0
        lines = text_log.read_text().splitlines()
        assert len(lines) == 1, lines
        # The default backend answered: no service, no endpoint, no connect, no response wait.
        assert re.fullmatch(r'\S+Z http 127\.0\.0\.1:\d+ "http" "nobody\.example\.com" GET "/x\?y=1" 404 \d+ '
                            r'\d+ - - \d+\.\d{3} - - \d+\.\d{3} done proxy - - "[0-9a-f]{32}" HTTP/1\.1 -',
                            lines[0]), lines[0]

        errors_log = tmp_path / "kube-errors.log"
        p = k.start("--access-log", str(errors_log), "--access-log-mode", "errors")
        assert k.get("nobody.example.com", "/ignored").status == 404
        p.proc.send_signal(signal.SIGTERM)
        assert p.wait_exit(30.0) == 0
        assert errors_log.read_text() == ""  # a 404 from the default backend is no failure
    finally:
        k.close()

"""Loopback HTTP/1.1 backends and small HTTP client helpers for the integration tests.

An ``HTTPBackend`` listens on 127.0.0.1 port 0 and serves every connection on its own
thread with a hand-written HTTP/1.1 server (so odd responses can be produced on
purpose).  It counts accepted connections and requests, and answers with its own name
and the facts of the request it saw.

The behaviour of one request is chosen by the ``mode`` query parameter (the query
survives a path strip), else by the backend's default mode:

``echo``       200, ``X-Backend: NAME``, JSON body with the request facts (method,
               target, Host, X-Forwarded-*, body length and SHA-256, header names seen,
               the backend connection id and the request's sequence number on it).
``download``   200 with ``size`` bytes of ``pattern_bytes(size)``; ``chunked=1`` sends
               it chunked, else with Content-Length.
``die``        headers announcing ``size`` bytes (Content-Length, or chunked with
               ``chunked=1``), then only ``part`` bytes of it, then close.
``slow``       sleep ``delay`` seconds, then answer as ``echo``.
``dupcl``      a response with an ambiguous length: two different Content-Length fields
               (``v=dup``), Content-Length with Transfer-Encoding (``v=clte``), or a
               bad Content-Length value (``v=nonnum``).
``status``     status ``status`` (e.g. 204, 304) with no body; a 304 carries
               ``Content-Length: 50`` as a GET's length would be.
``close``      answer as ``echo`` with ``Connection: close`` and close.
``quietclose`` answer as ``echo`` (keep-alive framing, no ``Connection: close``), then
               close the connection, as a server whose idle timeout fired.
``stall``      headers announcing ``size`` bytes, ``part`` of them, then nothing for
               ``delay`` seconds (the connection stays open), then close.
``eofbody``    200 without Content-Length or chunked: ``size`` pattern bytes, then close.
``early``      a ``103 Early Hints`` interim response, then answer as ``echo``.
``hop``        answer as ``echo`` plus hop-by-hop response fields (``Connection:
               x-resp-hop``, ``X-Resp-Hop``, ``Keep-Alive``) and ``X-Resp-Kept``.

Independently of the mode: a HEAD request gets the headers of ``echo`` with
``Content-Length: 12345`` (``Transfer-Encoding: chunked`` with
``chunked=1``) and no body; a request with ``Expect: 100-continue`` gets
``HTTP/1.1 100 Continue`` before its body is read; a request with ``Upgrade:
websocket`` and a ``Sec-WebSocket-Key`` gets a 101 with the RFC 6455 accept key, a
server text frame ``ws:NAME``, and from then on every byte read is echoed back.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import socket
import struct
import threading
import time
from typing import Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

from backends import pattern_bytes

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
HOP_FIELDS = ("connection", "keep-alive", "te", "trailer", "proxy-connection", "upgrade",
              "transfer-encoding")


def ws_accept(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()


class BufReader:
    """A socket reader with its own buffer (nothing read past what is asked is lost)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = bytearray()

    def _fill(self) -> bool:
        data = self.sock.recv(256 * 1024)
        if not data:
            return False
        self.buf += data
        return True

    def read_until(self, sep: bytes, limit: int = 1 << 20) -> Optional[bytes]:
        """Bytes up to and including ``sep``; None on EOF before any byte; EOFError on EOF
        in the middle."""
        start = 0
        while True:
            i = self.buf.find(sep, start)
            if i >= 0:
                out = bytes(self.buf[: i + len(sep)])
                del self.buf[: i + len(sep)]
                return out
            start = max(0, len(self.buf) - len(sep) + 1)
            if len(self.buf) > limit:
                raise ValueError(f"no {sep!r} within {limit} bytes")
            if not self._fill():
                if not self.buf:
                    return None
                raise EOFError(f"EOF inside a line: {bytes(self.buf[:200])!r}")

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError(f"EOF after {len(self.buf)} of {n} bytes")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_some(self, n: int = 256 * 1024) -> bytes:
        if not self.buf and not self._fill():
            return b""
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_to_eof(self, limit: int = 1 << 28) -> bytes:
        while self._fill():
            if len(self.buf) > limit:
                raise AssertionError("too much data before EOF")
        out = bytes(self.buf)
        self.buf.clear()
        return out


def parse_head(head: bytes) -> Tuple[str, List[Tuple[str, str]]]:
    lines = head.split(b"\r\n")
    first = lines[0].decode("latin-1")
    fields = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(b":")
        fields.append((name.decode("latin-1").strip(), value.decode("latin-1").strip()))
    return first, fields


def field(fields, name: str) -> Optional[str]:
    vals = [v for n, v in fields if n.lower() == name.lower()]
    return ", ".join(vals) if vals else None


def read_body(reader: BufReader, fields, sink) -> None:
    """Reads a message body framed by Content-Length or chunked; ``sink(bytes)``."""
    te = field(fields, "transfer-encoding")
    if te and te.lower().split(",")[-1].strip() == "chunked":
        while True:
            line = reader.read_until(b"\r\n")
            if line is None:
                raise EOFError("EOF before a chunk size")
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                while True:  # trailers
                    t = reader.read_until(b"\r\n")
                    if t is None or t == b"\r\n":
                        return
            left = size
            while left:
                data = reader.read_some(min(left, 256 * 1024))
                if not data:
                    raise EOFError("EOF inside a chunk")
                sink(data)
                left -= len(data)
            if reader.read_exact(2) != b"\r\n":
                raise ValueError("chunk not followed by CRLF")
    cl = field(fields, "content-length")
    if cl is not None:
        left = int(cl)
        while left:
            data = reader.read_some(min(left, 256 * 1024))
            if not data:
                raise EOFError("EOF inside a body")
            sink(data)
            left -= len(data)


class ConnInfo:
    def __init__(self, cid: int, peer):
        self.id = cid
        self.peer = peer
        self.requests = 0
        self.closed = threading.Event()


class HTTPBackend:
    _ids = itertools.count(1)

    def __init__(self, name: str, mode: str = "echo", host: str = "127.0.0.1"):
        self.name = name
        self.mode = mode
        self.host = host
        self.cond = threading.Condition()
        self.conns: List[ConnInfo] = []
        self.requests: List[dict] = []
        self.errors: List[str] = []
        self.responded = 0  # requests whose handling ended (answered, or failed writing)
        self.stopping = threading.Event()
        self._socks: List[socket.socket] = []
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.lsock = socket.socket(family, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((host, 0))
        self.lsock.listen(1024)
        self.port = self.lsock.getsockname()[1]
        self.thread = threading.Thread(target=self._accept_loop, daemon=True,
                                       name=f"http-backend-{name}")
        self.thread.start()

    @property
    def addr(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    # ---- counters
    def request_count(self) -> int:
        with self.cond:
            return len(self.requests)

    def conn_count(self) -> int:
        with self.cond:
            return len(self.conns)

    def wait_requests(self, n: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"backend {self.name}: {len(self.requests)} requests, "
                                         f"waited {timeout}s for {n}")
                self.cond.wait(left)

    def wait_responded(self, n: int, timeout: float = 5.0) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: self.responded >= n, timeout):
                raise AssertionError(f"backend {self.name}: {self.responded} responses written, "
                                     f"waited {timeout}s for {n}")

    # ---- serving
    def _accept_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, peer = self.lsock.accept()
            except OSError:
                return
            if self.stopping.is_set():
                sock.close()
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.cond:
                info = ConnInfo(len(self.conns) + 1, peer)
                self.conns.append(info)
                self._socks.append(sock)
                self.cond.notify_all()
            threading.Thread(target=self._serve, args=(sock, info), daemon=True).start()

    def _serve(self, sock: socket.socket, info: ConnInfo) -> None:
        reader = BufReader(sock)
        try:
            while not self.stopping.is_set():
                head = reader.read_until(b"\r\n\r\n", limit=1 << 20)
                if head is None:
                    break
                try:
                    keep = self._handle(sock, reader, info, head)
                finally:
                    with self.cond:
                        self.responded += 1
                        self.cond.notify_all()
                if not keep:
                    break
        except (OSError, EOFError, ValueError) as exc:
            if not self.stopping.is_set():
                with self.cond:
                    self.errors.append(f"conn {info.id}: {type(exc).__name__}: {exc}")
        finally:
            try:
                sock.close()
            except OSError:
                pass
            info.closed.set()
            with self.cond:
                self.cond.notify_all()

    def _handle(self, sock, reader, info: ConnInfo, head: bytes) -> bool:
        first, fields = parse_head(head[:-4])
        method, target, version = (first.split(" ", 2) + ["", ""])[:3]
        query = parse_qs(urlsplit(target).query)

        def q(name, default=None):
            return query.get(name, [default])[0]

        mode = q("mode", self.mode)
        conn_hdr = (field(fields, "connection") or "").lower()
        tokens = {t.strip() for t in conn_hdr.split(",") if t.strip()}
        keep = "close" not in tokens and (version == "HTTP/1.1" or "keep-alive" in tokens)

        expect = field(fields, "expect")
        if expect and expect.lower() == "100-continue":
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        sha = hashlib.sha256()
        length = [0]

        def sink(data):
            sha.update(data)
            length[0] += len(data)

        read_body(reader, fields, sink)
        info.requests += 1
        facts = {
            "backend": self.name, "conn": info.id, "seq": info.requests,
            "method": method, "target": target, "version": version,
            "host": field(fields, "host"),
            "xff": field(fields, "x-forwarded-for"),
            "xfproto": field(fields, "x-forwarded-proto"),
            "xfhost": field(fields, "x-forwarded-host"),
            "xfport": field(fields, "x-forwarded-port"),
            "body_len": length[0], "body_sha256": sha.hexdigest(),
            "headers": [n.lower() for n, _ in fields],
            "fields": fields,
            "expect": expect,
        }
        with self.cond:
            self.requests.append(facts)
            self.cond.notify_all()

        upgrade = (field(fields, "upgrade") or "").lower()
        key = field(fields, "sec-websocket-key")
        if upgrade == "websocket" and key:
            sock.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Accept: " + ws_accept(key) +
                          "\r\n\r\n").encode())
            hello = f"ws:{self.name}".encode()
            sock.sendall(bytes([0x81, len(hello)]) + hello)
            while True:
                data = reader.read_some()
                if not data:
                    return False
                sock.sendall(data)

        base = [f"X-Backend: {self.name}"]
        if not keep:
            base.append("Connection: close")

        def send(status: str, headers: List[str], body: bytes = b"") -> None:
            sock.sendall((f"HTTP/1.1 {status}\r\n" + "".join(h + "\r\n" for h in base + headers)
                          + "\r\n").encode() + body)

        body = (json.dumps(facts) + "\n").encode()
        if method == "HEAD":
            send("200 OK", ["Content-Type: application/json",
                            "Transfer-Encoding: chunked" if q("chunked") == "1"
                            else "Content-Length: 12345"])
            return keep
        if mode == "slow":
            if self.stopping.wait(float(q("delay", "3"))):
                return False
            mode = "echo"
        if mode == "echo":
            send("200 OK", ["Content-Type: application/json", f"Content-Length: {len(body)}"],
                 body)
            return keep
        if mode == "quietclose":
            send("200 OK", ["Content-Type: application/json", f"Content-Length: {len(body)}"],
                 body)
            return False
        if mode == "stall":
            send("200 OK", [f"Content-Length: {int(q('size', '100000'))}"],
                 pattern_bytes(int(q("size", "100000")))[:int(q("part", "1000"))])
            self.stopping.wait(float(q("delay", "10")))
            return False
        if mode == "eofbody":
            size = int(q("size", "100000"))
            send("200 OK", ["Content-Type: application/octet-stream"])
            sock.sendall(pattern_bytes(size))
            return False
        if mode == "early":
            sock.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
            send("200 OK", ["Content-Type: application/json", f"Content-Length: {len(body)}"],
                 body)
            return keep
        if mode == "close":
            base.append("Connection: close")
            send("200 OK", ["Content-Type: application/json", f"Content-Length: {len(body)}"],
                 body)
            return False
        if mode == "download":
            size = int(q("size", "1048576"))
            data = memoryview(pattern_bytes(size))
            if q("chunked") == "1":
                send("200 OK", ["Content-Type: application/octet-stream",
                                "Transfer-Encoding: chunked"])
                step = 64 * 1024 + 17
                for off in range(0, size, step):
                    part = data[off:off + step]
                    sock.sendall(b"%x\r\n" % len(part) + part + b"\r\n")
                sock.sendall(b"0\r\n\r\n")
            else:
                send("200 OK", ["Content-Type: application/octet-stream",
                                f"Content-Length: {size}"])
                for off in range(0, size, 1 << 20):
                    sock.sendall(data[off:off + (1 << 20)])
            return keep
        if mode == "die":
            size = int(q("size", "100000"))
            part = int(q("part", "1000"))
            data = pattern_bytes(size)
            if q("chunked") == "1":
                send("200 OK", ["Transfer-Encoding: chunked"])
                sock.sendall(b"%x\r\n" % size + data[:part])
            else:
                send("200 OK", [f"Content-Length: {size}"])
                sock.sendall(data[:part])
            return False
        if mode == "hop":
            send("200 OK", ["Connection: x-resp-hop", "X-Resp-Hop: 1", "Keep-Alive: timeout=9",
                            "X-Resp-Kept: 1", f"Content-Length: {len(body)}"], body)
            return keep
        if mode == "dupcl":
            framing = {"dup": ["Content-Length: 5", "Content-Length: 6"],
                       "clte": ["Content-Length: 6", "Transfer-Encoding: chunked"],
                       "nonnum": ["Content-Length: 6x"]}[q("v", "dup")]
            send("200 OK", framing, b"hello!")
            return False
        if mode == "status":
            status = int(q("status", "204"))
            reason = {204: "No Content", 304: "Not Modified"}.get(status, "X")
            extra = ["Content-Length: 50"] if status == 304 else []
            send(f"{status} {reason}", extra)
            return keep
        raise ValueError(f"unknown mode {mode!r}")

    def shutdown(self) -> None:
        self.stopping.set()
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        except OSError:
            pass
        self.thread.join(5)
        try:
            self.lsock.close()
        except OSError:
            pass
        with self.cond:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class HTTPBackends:
    """Named HTTP backends, shut down together."""

    def __init__(self):
        self.by_name: Dict[str, HTTPBackend] = {}

    def add(self, name: str, mode: str = "echo") -> HTTPBackend:
        be = HTTPBackend(name, mode)
        self.by_name[name] = be
        return be

    def __getitem__(self, name: str) -> HTTPBackend:
        return self.by_name[name]

    def shutdown(self) -> None:
        for be in self.by_name.values():
            be.shutdown()


# --------------------------------------------------------------------------
# client side

class SocketClient:
    """A client over ``self.sock``: ``close()`` closes it (an error is ignored); a context
    manager that closes on exit."""

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Response:
    def __init__(self, version: str, status: int, reason: str, fields, body: bytes):
        self.version = version
        self.status = status
        self.reason = reason
        self.fields = fields
        self.body = body

    def header(self, name: str) -> Optional[str]:
        return field(self.fields, name)

    def json(self) -> dict:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<{self.version} {self.status} {self.reason} {self.fields} {self.body[:200]!r}>"


def read_response(reader: BufReader, method: str = "GET", allow_1xx: bool = False) -> Response:
    """One response (skipping 1xx interim responses unless ``allow_1xx``)."""
    while True:
        head = reader.read_until(b"\r\n\r\n")
        if head is None:
            raise EOFError("EOF before a response")
        first, fields = parse_head(head[:-4])
        version, status, reason = (first.split(" ", 2) + ["", ""])[:3]
        status = int(status)
        if 100 <= status < 200 and status != 101 and not allow_1xx:
            continue
        break
    body = bytearray()
    if method == "HEAD" or status in (101, 204, 304) or 100 <= status < 200:
        return Response(version, status, reason, fields, b"")
    te = field(fields, "transfer-encoding")
    if te or field(fields, "content-length") is not None:
        read_body(reader, fields, body.extend)
    else:
        body += reader.read_to_eof()
    return Response(version, status, reason, fields, bytes(body))


def request_bytes(host: Optional[str], target: str = "/", method: str = "GET",
                  headers: Optional[List[str]] = None, body: bytes = b"",
                  version: str = "HTTP/1.1") -> bytes:
    lines = [f"{method} {target} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += headers or []
    if body and not any(h.lower().startswith(("content-length", "transfer-encoding"))
                        for h in headers or []):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def closed_within(sock: socket.socket, timeout: float) -> str:
    """Reads until EOF/reset; returns 'eof', 'reset', or 'open' (with extra data shown)."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    extra = b""
    try:
        while True:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            data = sock.recv(65536)
            if not data:
                return "eof" if not extra else f"eof after extra {extra[:100]!r}"
            extra += data
    except (ConnectionResetError, BrokenPipeError):
        return "reset"
    except socket.timeout:
        return f"open (extra {extra[:100]!r})" if extra else "open"


def ws_frame(payload: bytes, opcode: int = 0x1, mask: bytes = b"\x11\x22\x33\x44") -> bytes:
    """A masked client frame."""
    n = len(payload)
    if n < 126:
        hdr = bytes([0x80 | opcode, 0x80 | n])
    elif n < 65536:
        hdr = bytes([0x80 | opcode, 0x80 | 126]) + struct.pack("!H", n)
    else:
        hdr = bytes([0x80 | opcode, 0x80 | 127]) + struct.pack("!Q", n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return hdr + mask + masked


# --------------------------------------------------------------------------
# proxy configuration and clients

def http_listener(address: str, routes: List[dict], default: Optional[dict] = None) -> dict:
    lst = {"address": address, "protocol": "http", "routes": routes}
    if default is not None:
        lst["default"] = default
    return lst


def port_of(addr: str) -> int:
    return int(addr.rpartition(":")[2])


def curl(*args: str, timeout: float = 60.0):
    """Runs curl; returns CompletedProcess (stdout bytes, stderr text)."""
    import subprocess
    cmd = ["curl", "-sS", "--noproxy", "*", *args]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    p.stderr = p.stderr.decode(errors="replace")
    return p


def exchange(addr: str, raw: bytes, method: str = "GET", timeout: float = 5.0) -> Response:
    """One request on a new connection; returns the response."""
    host, _, port = addr.rpartition(":")
    with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as s:
        s.sendall(raw)
        return read_response(BufReader(s), method)


def get(addr: str, host: Optional[str], target: str = "/", **kw) -> Response:
    headers = kw.pop("headers", [])
    return exchange(addr, request_bytes(host, target, headers=headers + ["Connection: close"],
                                        **kw))

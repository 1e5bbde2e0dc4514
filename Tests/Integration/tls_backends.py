"""TLS and PROXY-protocol helpers for the integration tests.

``make_certs(dir)`` writes a throw-away CA and leaf certificates (made with the
``openssl`` command line) for the names in ``LEAF_NAMES``.

``TLSBackend`` listens on 127.0.0.1 port 0 and serves every connection on its own
thread with its own certificate.  After the handshake it records the SNI it saw and
reads the first bytes: an HTTP request (``GET``/``HEAD``/``POST``/``PUT``) gets a
``200`` with a JSON body ``{"backend", "sni", "request"}`` and ``Connection: close``;
anything else gets ``NAME\\n`` followed by an echo of everything read, until EOF or
until a received chunk ends with ``BYE\\n`` (then a close_notify and close).  With
``expect_proxy=True`` it first reads a PROXY v1/v2 header from the plain socket
(exactly its bytes) and records it.

``RawBackend`` records every byte of each accepted connection until EOF (it writes
nothing); the PROXY header tests parse what arrived with ``parse_proxy``.

``BIOClient`` is a TLS client over ``ssl.MemoryBIO``: the test decides how the
ClientHello and every later byte travel on the socket.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import select
import socket
import ssl
import struct
import subprocess
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

LEAF_NAMES = {
    "a": "a.example.com",
    "b": "b.example.com",
    "w": "*.wild.example.com",
    "d": "default.example.com",
    "raw": "raw.example.com",
}

PROXY_V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


# --------------------------------------------------------------------------
# certificates

class Certs:
    def __init__(self, directory: Path):
        self.dir = directory
        self.ca = directory / "ca.pem"

    def cert(self, key: str) -> Path:
        return self.dir / f"{key}.pem"

    def key(self, key: str) -> Path:
        return self.dir / f"{key}.key"


def _openssl(*args: str, cwd: Path) -> None:
    p = subprocess.run(["openssl", *args], cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    if p.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{p.stderr.decode(errors='replace')}")


def make_certs(directory: Path) -> Certs:
    directory.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "3",
             "-subj", "/CN=Sluice Test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-addext", "subjectKeyIdentifier=hash", cwd=directory)
    for key, name in LEAF_NAMES.items():
        ext = directory / f"{key}.ext"
        ext.write_text(f"subjectAltName=DNS:{name}\n"
                       "basicConstraints=CA:FALSE\n"
                       "keyUsage=critical,digitalSignature\n"
                       "extendedKeyUsage=serverAuth\n"
                       "subjectKeyIdentifier=hash\n"
                       "authorityKeyIdentifier=keyid:always\n")
        _openssl("req", "-new", *ec, "-keyout", f"{key}.key", "-out", f"{key}.csr",
                 "-subj", f"/CN={name}", cwd=directory)
        _openssl("x509", "-req", "-in", f"{key}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{key}.pem", "-days", "3",
                 "-extfile", ext.name, cwd=directory)
    return Certs(directory)


def client_context(certs: Certs, check_hostname: bool = True) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    ctx.check_hostname = check_hostname
    return ctx


def subject_cn(peercert: dict) -> Optional[str]:
    for rdn in peercert.get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                return v
    return None


# --------------------------------------------------------------------------
# PROXY protocol

def proxy_v1(src: str, dst: str, sport: int, dport: int) -> bytes:
    fam = "TCP6" if ":" in src else "TCP4"
    return f"PROXY {fam} {src} {dst} {sport} {dport}\r\n".encode()


def proxy_v2(src: str, dst: str, sport: int, dport: int, local: bool = False) -> bytes:
    if local:
        return PROXY_V2_SIG + bytes([0x20, 0x00]) + struct.pack("!H", 0)
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    fam = 0x21 if s.version == 6 else 0x11
    body = s.packed + d.packed + struct.pack("!HH", sport, dport)
    return PROXY_V2_SIG + bytes([0x21, fam]) + struct.pack("!H", len(body)) + body


class ProxyInfo:
    def __init__(self, version: int, length: int, command: str, family: str,
                 src: Optional[str], dst: Optional[str], sport: Optional[int],
                 dport: Optional[int], raw: bytes):
        self.version = version
        self.length = length
        self.command = command
        self.family = family
        self.src, self.dst, self.sport, self.dport = src, dst, sport, dport
        self.raw = raw

    def __repr__(self) -> str:
        return (f"<PROXY v{self.version} {self.command} {self.family} "
                f"{self.src}:{self.sport} -> {self.dst}:{self.dport} raw={self.raw!r}>")


class ProxyParseError(ValueError):
    pass


def parse_proxy(data: bytes) -> Optional[ProxyInfo]:
    """Parses a PROXY v1 or v2 header at the start of ``data``; None: need more bytes.
    Raises ProxyParseError when the bytes are not a valid header."""
    if data[:1] == b"P":
        n = min(len(data), 6)
        if data[:n] != b"PROXY "[:n]:
            raise ProxyParseError(f"not a PROXY header: {data[:40]!r}")
        end = data.find(b"\r\n")
        if end < 0:
            if len(data) > 107:
                raise ProxyParseError(f"v1 line longer than 107 bytes: {data[:120]!r}")
            return None
        line = data[:end].decode("ascii", errors="replace")
        if end + 2 > 107:
            raise ProxyParseError(f"v1 line longer than 107 bytes: {line!r}")
        parts = line.split(" ")
        if len(parts) >= 2 and parts[0] == "PROXY" and parts[1] == "UNKNOWN":
            return ProxyInfo(1, end + 2, "PROXY", "UNKNOWN", None, None, None, None, data[:end + 2])
        if len(parts) != 6 or parts[0] != "PROXY" or parts[1] not in ("TCP4", "TCP6"):
            raise ProxyParseError(f"bad v1 line: {line!r}")
        _, fam, src, dst, sport, dport = parts
        try:
            sa, da = ipaddress.ip_address(src), ipaddress.ip_address(dst)
        except ValueError as exc:
            raise ProxyParseError(f"bad v1 address in {line!r}: {exc}")
        want = 4 if fam == "TCP4" else 6
        if sa.version != want or da.version != want:
            raise ProxyParseError(f"v1 family {fam} does not match addresses: {line!r}")
        for p in (sport, dport):
            if not re.fullmatch(r"[1-9][0-9]{0,4}|0", p) or int(p) > 65535:
                raise ProxyParseError(f"bad v1 port {p!r} in {line!r}")
        return ProxyInfo(1, end + 2, "PROXY", fam, src, dst, int(sport), int(dport),
                         data[:end + 2])
    if data[:1] == b"\r":
        if data[:12] != PROXY_V2_SIG[:min(len(data), 12)]:
            raise ProxyParseError(f"bad v2 signature: {data[:16]!r}")
        if len(data) < 16:
            return None
        ver_cmd, fam = data[12], data[13]
        length = struct.unpack("!H", data[14:16])[0]
        if ver_cmd >> 4 != 2:
            raise ProxyParseError(f"v2 version nibble {ver_cmd >> 4}")
        if len(data) < 16 + length:
            return None
        cmd = {0: "LOCAL", 1: "PROXY"}.get(ver_cmd & 0xF)
        if cmd is None:
            raise ProxyParseError(f"v2 command {ver_cmd & 0xF}")
        body = data[16:16 + length]
        raw = data[:16 + length]
        if fam == 0x11:
            if length < 12:
                raise ProxyParseError(f"v2 TCP4 with length {length}")
            src, dst = str(ipaddress.IPv4Address(body[0:4])), str(ipaddress.IPv4Address(body[4:8]))
            sport, dport = struct.unpack("!HH", body[8:12])
            return ProxyInfo(2, 16 + length, cmd, "TCP4", src, dst, sport, dport, raw)
        if fam == 0x21:
            if length < 36:
                raise ProxyParseError(f"v2 TCP6 with length {length}")
            src = str(ipaddress.IPv6Address(body[0:16]))
            dst = str(ipaddress.IPv6Address(body[16:32]))
            sport, dport = struct.unpack("!HH", body[32:36])
            return ProxyInfo(2, 16 + length, cmd, "TCP6", src, dst, sport, dport, raw)
        if fam == 0x00:
            return ProxyInfo(2, 16 + length, cmd, "UNSPEC", None, None, None, None, raw)
        raise ProxyParseError(f"v2 family/transport byte {fam:#x}")
    if not data:
        return None
    raise ProxyParseError(f"not a PROXY header: {data[:40]!r}")


def read_proxy_header(sock: socket.socket) -> ProxyInfo:
    """Reads exactly one PROXY header from a socket (nothing after it)."""
    buf = bytearray()
    while True:
        info = parse_proxy(bytes(buf))
        if info is not None:
            return info
        if buf[:1] == b"\r" and len(buf) >= 16:
            need = 16 + struct.unpack("!H", bytes(buf[14:16]))[0] - len(buf)
        elif buf[:1] == b"\r":
            need = 16 - len(buf)
        else:
            need = 1
        chunk = sock.recv(need)
        if not chunk:
            raise EOFError(f"EOF inside a PROXY header after {bytes(buf)!r}")
        buf += chunk


# --------------------------------------------------------------------------
# backends

class _Served:
    """Common accept loop: one thread per connection."""

    kind = "backend"

    def __init__(self, name: str, host: str = "127.0.0.1"):
        self.name = name
        self.host = host
        self.cond = threading.Condition()
        self.conns: List = []
        self.errors: List[str] = []
        self.stopping = threading.Event()
        self._socks: List[socket.socket] = []
        self.lsock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((host, 0))
        self.lsock.listen(256)
        self.port = self.lsock.getsockname()[1]
        self.thread = threading.Thread(target=self._accept_loop, daemon=True,
                                       name=f"{self.kind}-{name}")
        self.thread.start()

    @property
    def addr(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def conn_count(self) -> int:
        with self.cond:
            return len(self.conns)

    def wait_conn(self, index: int = 0, timeout: float = 5.0):
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.conns) > index, timeout):
                raise AssertionError(f"{self.kind} {self.name}: {len(self.conns)} connections, "
                                     f"waited {timeout}s for #{index + 1}")
            return self.conns[index]

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
            rec = self._record(peer)
            with self.cond:
                self.conns.append(rec)
                self._socks.append(sock)
                self.cond.notify_all()
            threading.Thread(target=self._run, args=(sock, rec), daemon=True).start()

    def _run(self, sock: socket.socket, rec) -> None:
        try:
            self._serve(sock, rec)
        except (OSError, EOFError, ValueError, ssl.SSLError) as exc:
            if not self.stopping.is_set():
                rec.error = f"{type(exc).__name__}: {exc}"
                with self.cond:
                    self.errors.append(f"{self.name}: {rec.error}")
        finally:
            try:
                sock.close()
            except OSError:
                pass
            rec.closed.set()
            with self.cond:
                self.cond.notify_all()

    def shutdown(self) -> None:
        self.stopping.set()
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


class RawConn:
    def __init__(self, peer):
        self.peer = peer
        self.data = bytearray()
        self.eof = threading.Event()
        self.closed = threading.Event()
        self.error: Optional[str] = None

    def __repr__(self) -> str:
        return f"<raw conn from {self.peer} rx={len(self.data)} eof={self.eof.is_set()}>"


class RawBackend(_Served):
    """Records every byte of each connection until EOF; writes nothing."""

    kind = "raw-backend"

    def _record(self, peer):
        return RawConn(peer)

    def _serve(self, sock: socket.socket, rec: RawConn) -> None:
        sock.settimeout(60)
        while True:
            data = sock.recv(65536)
            if not data:
                break
            with self.cond:
                rec.data += data
                self.cond.notify_all()
        rec.eof.set()

    def wait_data(self, rec: RawConn, predicate, timeout: float = 5.0, what: str = "") -> bytes:
        with self.cond:
            if not self.cond.wait_for(lambda: predicate(bytes(rec.data)) or rec.closed.is_set(),
                                      timeout) or not predicate(bytes(rec.data)):
                raise AssertionError(f"{self.name}: waited {timeout}s for {what or 'data'}; "
                                     f"have {bytes(rec.data[:300])!r} (closed="
                                     f"{rec.closed.is_set()})")
            return bytes(rec.data)


class TLSConn:
    def __init__(self, peer):
        self.peer = peer
        self.sni: Optional[str] = None
        self.proxy: Optional[ProxyInfo] = None
        self.handshaken = threading.Event()
        self.received = 0
        self.sha = hashlib.sha256()
        self.closed = threading.Event()
        self.error: Optional[str] = None

    def __repr__(self) -> str:
        return (f"<tls conn from {self.peer} sni={self.sni} rx={self.received} "
                f"proxy={self.proxy} err={self.error}>")


_tls_local = threading.local()


class TLSBackend(_Served):
    kind = "tls-backend"

    def __init__(self, name: str, certs: Certs, cert_key: str, expect_proxy: bool = False):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(certs.cert(cert_key)), str(certs.key(cert_key)))
        self.ctx.sni_callback = self._sni
        self.expect_proxy = expect_proxy
        super().__init__(name)

    @staticmethod
    def _sni(sslobj, name, ctx):
        _tls_local.sni = name
        return None

    def _record(self, peer):
        return TLSConn(peer)

    def _serve(self, raw: socket.socket, rec: TLSConn) -> None:
        raw.settimeout(30)
        if self.expect_proxy:
            rec.proxy = read_proxy_header(raw)
        _tls_local.sni = None
        s = self.ctx.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
        s.do_handshake()
        rec.sni = _tls_local.sni
        rec.handshaken.set()
        first = s.recv(65536)
        if not first:
            return
        if re.match(rb"(GET|HEAD|POST|PUT) ", first):
            while b"\r\n\r\n" not in first:
                more = s.recv(65536)
                if not more:
                    break
                first += more
            body = json.dumps({"backend": self.name, "sni": rec.sni,
                               "request": first.split(b"\r\n", 1)[0].decode(errors="replace")
                               }).encode() + b"\n"
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                      b"X-Backend: " + self.name.encode() + b"\r\n"
                      b"Content-Length: " + str(len(body)).encode() +
                      b"\r\nConnection: close\r\n\r\n" + body)
            self._goodbye(s)
            return
        s.sendall(self.name.encode() + b"\n")
        data = first
        while data:
            rec.received += len(data)
            rec.sha.update(data)
            s.sendall(data)
            if data.endswith(b"BYE\n"):
                self._goodbye(s)
                return
            data = s.recv(256 * 1024)

    @staticmethod
    def _goodbye(s) -> None:
        try:
            s.settimeout(2)
            s.unwrap()
        except (OSError, ssl.SSLError, ValueError):
            pass


class BackendGroup:
    """Named TLS and raw backends, shut down together."""

    def __init__(self, certs: Certs):
        self.certs = certs
        self.by_name: Dict[str, _Served] = {}

    def tls(self, name: str, cert_key: Optional[str] = None, expect_proxy: bool = False) -> TLSBackend:
        be = TLSBackend(name, self.certs, cert_key or name, expect_proxy)
        self.by_name[name] = be
        return be

    def raw(self, name: str) -> RawBackend:
        be = RawBackend(name)
        self.by_name[name] = be
        return be

    def __getitem__(self, name: str):
        return self.by_name[name]

    def total_conns(self) -> int:
        return sum(be.conn_count() for be in self.by_name.values())

    def shutdown(self) -> None:
        for be in self.by_name.values():
            be.shutdown()


# --------------------------------------------------------------------------
# client side

class BIOClient:
    """A TLS client whose bytes the test moves between the socket and the SSLObject."""

    def __init__(self, sock: socket.socket, ctx: ssl.SSLContext, server_hostname: Optional[str]):
        self.sock = sock
        self.inc = ssl.MemoryBIO()
        self.out = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_side=False,
                                server_hostname=server_hostname)
        self.buf = bytearray()  # decrypted, not yet returned

    def client_hello(self) -> bytes:
        """The ClientHello bytes (not sent)."""
        try:
            self.obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        return self.out.read()

    def _flush(self) -> None:
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def _pull(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("TLS client timed out waiting for bytes")
        self.sock.settimeout(left)
        data = self.sock.recv(65536)
        if not data:
            self.inc.write_eof()
            raise EOFError("EOF from the proxy during TLS")
        self.inc.write(data)

    def handshake(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.obj.do_handshake()
                self._flush()
                return
            except ssl.SSLWantReadError:
                self._flush()
                self._pull(deadline)

    def send(self, data: bytes) -> None:
        self.obj.write(data)
        self._flush()

    def recv_exact(self, n: int, timeout: float = 5.0) -> bytes:
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            try:
                chunk = self.obj.read(65536)
                if not chunk:
                    raise EOFError(f"TLS EOF after {len(self.buf)} of {n} bytes")
                self.buf += chunk
                continue
            except ssl.SSLWantReadError:
                self._flush()
                self._pull(deadline)
        out, self.buf = bytes(self.buf[:n]), self.buf[n:]
        return out

    def recv_line(self, timeout: float = 5.0) -> bytes:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            try:
                chunk = self.obj.read(65536)
                if not chunk:
                    raise EOFError(f"TLS EOF before a line: {bytes(self.buf)!r}")
                self.buf += chunk
            except ssl.SSLWantReadError:
                self._flush()
                self._pull(deadline)
        i = self.buf.index(b"\n")
        out, self.buf = bytes(self.buf[:i]), self.buf[i + 1:]
        return out

    def stream(self, payload: bytes, want: int, timeout: float = 60.0) -> Tuple[bytes, str, int]:
        """Sends ``payload`` while reading ``want`` bytes; single thread, select loop.
        Returns (first line, sha256 hex of the bytes after it, their count)."""
        sock = self.sock
        sock.setblocking(False)
        deadline = time.monotonic() + timeout
        view = memoryview(payload)
        sent = 0
        pending = bytearray(self.out.read())
        got = bytearray(self.buf)
        self.buf = bytearray()
        first: Optional[bytes] = None
        sha = hashlib.sha256()
        count = 0
        try:
            while True:
                if first is None and b"\n" in got:
                    i = got.index(b"\n")
                    first = bytes(got[:i])
                    del got[:i + 1]
                if first is not None and got:
                    sha.update(got)
                    count += len(got)
                    got = bytearray()
                if first is not None and count >= want:
                    return first, sha.hexdigest(), count
                while sent < len(view) and len(pending) < (1 << 20):
                    sent += self.obj.write(view[sent:sent + 65536])
                    pending += self.out.read()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"stream: sent {sent}/{len(payload)} plaintext, "
                                       f"received {count}/{want} after the first line")
                r, w, _ = select.select([sock], [sock] if pending else [], [], min(left, 1.0))
                if w:
                    try:
                        n = sock.send(pending)
                        del pending[:n]
                    except BlockingIOError:
                        pass
                if r:
                    try:
                        data = sock.recv(1 << 20)
                    except BlockingIOError:
                        continue
                    if not data:
                        raise EOFError(f"stream: EOF after {count}/{want} bytes received "
                                       f"(sent {sent}/{len(payload)})")
                    self.inc.write(data)
                    while True:
                        try:
                            chunk = self.obj.read(1 << 20)
                        except ssl.SSLWantReadError:
                            break
                        if not chunk:
                            raise EOFError("stream: TLS close_notify before all bytes")
                        got += chunk
                    pending += self.out.read()
        finally:
            sock.setblocking(True)

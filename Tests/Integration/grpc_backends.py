"""Backends that speak HTTP/2 to the proxy: a gRPC server and a plain h2c server.

``GrpcBackend``  a ``grpcio`` server (its own thread pool) with generic handlers and raw
                 bytes in and out (no protoc), service ``test.Test``:

                 ``Echo``      unary: returns the request bytes; initial metadata
                               ``x-backend: NAME`` plus every ``x-echo-*`` field the client
                               sent; trailing metadata ``x-trailer: done-NAME`` and
                               ``x-echo-count``. ``x-delay-ms`` metadata delays the answer.
                 ``Fail``      unary: aborts with ``INTERNAL`` (13) and ``FAIL_DETAILS``,
                               trailing metadata ``x-fail-reason: deliberate``.
                 ``Slow``      unary: the request is a number of milliseconds (ASCII); sleeps
                               that long (ends early when the call is cancelled or its
                               deadline passes), then echoes the request.
                 ``BidiEcho``  stream-stream: echoes each message as it arrives.
                 ``Count``     unary-stream: the request is N (ASCII); sends N messages, the
                               4-byte big-endian numbers 0..N-1.

                 It records every call (method, metadata, peer, the deadline the server saw)
                 and counts the distinct peers (= TCP connections from the proxy) and the most
                 calls active at once. ``insecure`` (h2c) port always; a TLS port too when a
                 certificate is given (to check the clients without a proxy).

``H2Backend``    a hand-driven ``h2.connection.H2Connection`` server, one thread per TCP
                 connection, h2c with prior knowledge. Every request gets, by its path and
                 query:

                 default           200 ``application/json``: the request it saw (method, path,
                                   authority, scheme, header fields in order, body length and
                                   SHA-256, connection number, stream id, backend name).
                 ``size=N``        200 with N bytes of ``backends.pattern_bytes(N)`` (and
                                   ``content-length`` unless ``nolength=1``).
                 ``/trailers``     the JSON account, then trailers ``x-trailer-a: alpha``,
                                   ``x-trailer-b: beta`` and ``x-body-sha256`` of the body sent.
                 ``delay=MS``      answers after MS milliseconds (other streams go on).
                 ``die=1``         with ``size``/``part``: headers announcing ``size`` bytes,
                                   ``part`` of them, then the TCP connection is closed.
                 ``status=N``      that status with the JSON account.
                 ``reset=CODE``    RST_STREAM with that error code instead of a response.
                 ``early=1``       a 103 (``link``) before the final response.
                 HEAD, 204, 304    the head only (HEAD and 304 with the JSON's length).

                 ``max_streams``: the SETTINGS_MAX_CONCURRENT_STREAMS it announces (1000).
                 ``resets_received`` / ``goaways_received``: the client's RST_STREAMs
                 (connection, stream, code) and GOAWAYs (connection, code, last stream).

                 ``goaway_after=N``: after N streams on a connection, a graceful GOAWAY (last
                 stream 2^31-1, so what is in flight is taken), and once the connection is
                 idle 0.3 s later the final GOAWAY and the close; ``streams_after_goaway``
                 counts streams opened more than 0.2 s after the first one.
                 ``close_connections()`` sends GOAWAY and closes every open connection.

                 ``tls``: an ``ssl.SSLContext`` (``h2_tls_context``): connections are TLS
                 with ALPN h2; ``tls_seen`` lists per handshake the SNI, ALPN and the client
                 certificate's subject CN, ``tls_failures`` the handshakes that failed.

                 ``conn_count()`` TCP connections accepted, ``max_concurrent`` the most streams
                 open at once on one connection (``max_concurrent_settled``: counted when a
                 stream opens after the client acknowledged our SETTINGS),
                 ``max_total_concurrent`` over all of them, ``requests`` the accounts
                 (without bodies), ``errors`` what went wrong on a connection.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import select
import socket
import ssl
import struct
import threading
import time
from concurrent import futures
from typing import Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

from backends import pattern_bytes

try:
    import grpc
except ImportError:  # the gRPC tests skip; the h2 backend works without it
    grpc = None

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hyperframe.frame as hf

SERVICE = "test.Test"
FAIL_DETAILS = "backend failed on purpose"
MAX_MESSAGE = 16 << 20


def method_path(name: str) -> str:
    return f"/{SERVICE}/{name}"


# --------------------------------------------------------------------------
# gRPC


class GrpcCall:
    def __init__(self, method: str, metadata: List[Tuple[str, object]], peer: str,
                 time_remaining: Optional[float]):
        self.method = method
        self.metadata = metadata
        self.peer = peer
        self.time_remaining = time_remaining
        self.cancelled = False
        self.done = threading.Event()

    def meta(self, name: str):
        vals = [v for k, v in self.metadata if k == name]
        return vals[0] if vals else None

    def __repr__(self) -> str:
        return (f"<call {self.method} peer={self.peer} remaining={self.time_remaining} "
                f"metadata={self.metadata}>")


class GrpcBackend:
    def __init__(self, name: str, tls: Optional[Tuple[bytes, bytes]] = None,
                 workers: int = 128):
        if grpc is None:
            raise RuntimeError("grpcio is not installed")
        self.name = name
        self.cond = threading.Condition()
        self.calls: List[GrpcCall] = []
        self.active = 0
        self.max_active = 0
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"grpc-{name}"),
            options=[("grpc.max_receive_message_length", MAX_MESSAGE),
                     ("grpc.max_send_message_length", MAX_MESSAGE),
                     ("grpc.so_reuseport", 0)],
            maximum_concurrent_rpcs=None)
        handlers = {
            "Echo": grpc.unary_unary_rpc_method_handler(self._echo),
            "Fail": grpc.unary_unary_rpc_method_handler(self._fail),
            "Slow": grpc.unary_unary_rpc_method_handler(self._slow),
            "BidiEcho": grpc.stream_stream_rpc_method_handler(self._bidi),
            "Count": grpc.unary_stream_rpc_method_handler(self._count),
        }
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, handlers),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.tls_port: Optional[int] = None
        if tls is not None:
            creds = grpc.ssl_server_credentials([(tls[1], tls[0])])  # (key, chain)
            self.tls_port = self.server.add_secure_port("127.0.0.1:0", creds)
        self.server.start()

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def tls_addr(self) -> str:
        return f"127.0.0.1:{self.tls_port}"

    # ---- bookkeeping
    def _begin(self, method: str, context) -> GrpcCall:
        md = [(k, v) for k, v in (context.invocation_metadata() or ())]
        call = GrpcCall(method, md, context.peer(), context.time_remaining())
        with self.cond:
            self.calls.append(call)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.cond.notify_all()
        return call

    def _end(self, call: GrpcCall) -> None:
        with self.cond:
            self.active -= 1
            call.done.set()
            self.cond.notify_all()

    def call_count(self, method: Optional[str] = None) -> int:
        with self.cond:
            return sum(1 for c in self.calls if method is None or c.method == method)

    def peers(self) -> set:
        with self.cond:
            return {c.peer for c in self.calls}

    def wait_calls(self, n: int, timeout: float = 5.0, method: Optional[str] = None) -> None:
        with self.cond:
            ok = self.cond.wait_for(lambda: sum(
                1 for c in self.calls if method is None or c.method == method) >= n, timeout)
        if not ok:
            raise AssertionError(f"{self.name}: {self.call_count(method)} calls of "
                                 f"{method or 'any'} after {timeout}s, want {n}")

    # ---- handlers
    def _echo(self, request: bytes, context) -> bytes:
        call = self._begin("Echo", context)
        try:
            echoed = [(k, v) for k, v in call.metadata if k.startswith("x-echo-")]
            context.send_initial_metadata([("x-backend", self.name), *echoed])
            delay = call.meta("x-delay-ms")
            if delay:
                wake = threading.Event()
                context.add_callback(wake.set)
                wake.wait(int(delay) / 1000)
            context.set_trailing_metadata([("x-trailer", f"done-{self.name}"),
                                           ("x-echo-count", str(len(echoed)))])
            return request
        finally:
            self._end(call)

    def _fail(self, request: bytes, context) -> bytes:
        call = self._begin("Fail", context)
        try:
            context.set_trailing_metadata([("x-fail-reason", "deliberate")])
            context.abort(grpc.StatusCode.INTERNAL, FAIL_DETAILS)
        finally:
            self._end(call)

    def _slow(self, request: bytes, context) -> bytes:
        call = self._begin("Slow", context)
        try:
            wake = threading.Event()
            context.add_callback(wake.set)   # runs when the call ends: cancel or deadline
            if wake.wait(int(request.decode()) / 1000):
                call.cancelled = True
            return request
        finally:
            self._end(call)

    def _bidi(self, request_iterator, context):
        call = self._begin("BidiEcho", context)
        try:
            context.send_initial_metadata([("x-backend", self.name)])
            for msg in request_iterator:
                yield msg
        finally:
            self._end(call)

    def _count(self, request: bytes, context):
        call = self._begin("Count", context)
        try:
            context.send_initial_metadata([("x-backend", self.name)])
            for i in range(int(request.decode())):
                yield struct.pack(">I", i)
        finally:
            self._end(call)

    def shutdown(self) -> None:
        self.server.stop(grace=None).wait(5)


def grpc_options(authority: Optional[str] = None, extra=()) -> list:
    opts = [("grpc.enable_http_proxy", 0),
            ("grpc.enable_retries", 0),
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE)]
    if authority:
        opts.append(("grpc.default_authority", authority))
    return opts + list(extra)


# --------------------------------------------------------------------------
# plain h2c


class H2Request:
    def __init__(self, conn_id: int, stream_id: int, headers: List[Tuple[str, str]]):
        self.conn = conn_id
        self.stream = stream_id
        self.headers = headers
        self.sha = hashlib.sha256()
        self.body_len = 0
        self.ended = False

    def pseudo(self, name: str) -> Optional[str]:
        for n, v in self.headers:
            if n == name:
                return v
        return None

    def account(self, backend: str) -> dict:
        return {"backend": backend, "method": self.pseudo(":method"),
                "path": self.pseudo(":path"), "authority": self.pseudo(":authority"),
                "scheme": self.pseudo(":scheme"),
                "headers": [[n, v] for n, v in self.headers if not n.startswith(":")],
                "pseudo": [n for n, _ in self.headers if n.startswith(":")],
                "body_len": self.body_len, "body_sha256": self.sha.hexdigest(),
                "conn": self.conn, "stream": self.stream}


class _Pending:
    """A response being written: headers, then body as the windows allow, then trailers."""

    def __init__(self, stream_id: int, headers, body: bytes, trailers=None,
                 at: float = 0.0, die_after: Optional[int] = None, reset: Optional[int] = None,
                 interim=()):
        self.stream_id = stream_id
        self.interim = list(interim)
        self.reset = reset
        self.headers = headers
        self.body = memoryview(body)
        self.off = 0
        self.trailers = trailers
        self.at = at
        self.die_after = die_after
        self.headers_sent = False


class _ConnState:
    def __init__(self, cid: int):
        self.id = cid
        self.streams = 0
        self.highest = 0
        self.goaway_at: Optional[float] = None
        self.close_requested = False
        self.settings_acked = False
        self.wake_r, self.wake_w = os.pipe()


def h2_tls_context(cert: str, key: str, client_ca: Optional[str] = None,
                   alpn: Tuple[str, ...] = ("h2",)) -> ssl.SSLContext:
    """A server context for ``H2Backend(tls=...)``: the certificate, ALPN ``alpn``, and with
    ``client_ca`` a client certificate signed by it is required."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(client_ca)

    def on_sni(sslobj, name, _ctx):
        seen = getattr(sslobj, "_sni_seen", None)
        if seen is not None:
            seen[0] = name
        return None

    ctx.sni_callback = on_sni
    return ctx


class H2Backend:
    _conn_ids = itertools.count(1)

    def __init__(self, name: str, host: str = "127.0.0.1", window: int = 16 << 20,
                 goaway_after: Optional[int] = None, max_streams: int = 1000,
                 tls: Optional[ssl.SSLContext] = None):
        self.name = name
        self.tls = tls
        self.tls_seen: List[dict] = []
        self.tls_failures: List[str] = []
        self.max_streams = max_streams
        self.resets_received: List[Tuple[int, int, int]] = []   # (conn, stream, code)
        self.goaways_received: List[Tuple[int, int, int]] = []  # (conn, code, last stream)
        self.window = window
        self.goaway_after = goaway_after
        self.goaways = 0
        self.streams_after_goaway = 0
        self._live: Dict[int, "_ConnState"] = {}
        self.cond = threading.Condition()
        self.conns = 0
        self.open_conns = 0
        self.requests: List[dict] = []
        self.errors: List[str] = []
        self.max_concurrent = 0
        self.max_concurrent_settled = 0
        self.total_open = 0
        self.max_total_concurrent = 0
        self.stopping = threading.Event()
        self._socks: List[socket.socket] = []
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.lsock = socket.socket(family, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((host, 0))
        self.lsock.listen(1024)
        self.host = host
        self.port = self.lsock.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True,
                                          name=f"h2-{name}-accept")
        self._acceptor.start()

    @property
    def addr(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def conn_count(self) -> int:
        with self.cond:
            return self.conns

    def request_count(self) -> int:
        with self.cond:
            return len(self.requests)

    def wait_requests(self, n: int, timeout: float = 5.0) -> None:
        with self.cond:
            ok = self.cond.wait_for(lambda: len(self.requests) >= n, timeout)
        if not ok:
            raise AssertionError(f"{self.name}: {self.request_count()} requests after "
                                 f"{timeout}s, want {n}")

    def close_connections(self) -> int:
        """Ends every open connection: GOAWAY (NO_ERROR, the last stream it saw), then close.
        Returns how many there were."""
        with self.cond:
            live = list(self._live.values())
        for st in live:
            st.close_requested = True
            try:
                os.write(st.wake_w, b"x")
            except OSError:
                pass
        return len(live)

    def wait_for(self, pred, timeout: float, what: str) -> None:
        with self.cond:
            ok = self.cond.wait_for(pred, timeout)
        if not ok:
            raise AssertionError(f"{self.name}: timed out after {timeout}s waiting for {what}")

    def wait_closed(self, timeout: float = 5.0) -> None:
        """Until no connection is open (the serving threads have closed their sockets)."""
        with self.cond:
            ok = self.cond.wait_for(lambda: self.open_conns == 0, timeout)
        if not ok:
            raise AssertionError(f"{self.name}: {self.open_conns} connections still open")

    def _accept_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self.lsock.accept()
            except OSError:
                return
            with self.cond:
                self.conns += 1
                self.open_conns += 1
                self._socks.append(sock)
                cid = next(self._conn_ids)
            threading.Thread(target=self._serve, args=(sock, cid), daemon=True,
                             name=f"h2-{self.name}-{cid}").start()

    # ---- one connection
    def _serve(self, sock: socket.socket, cid: int) -> None:
        cfg = h2.config.H2Configuration(client_side=False, header_encoding="utf-8",
                                        validate_inbound_headers=False,
                                        normalize_inbound_headers=False)
        conn = h2.connection.H2Connection(config=cfg)
        open_streams: Dict[int, H2Request] = {}
        pending: Dict[int, _Pending] = {}
        st = _ConnState(cid)
        with self.cond:
            self._live[cid] = st
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                sni: List[Optional[str]] = [None]
                sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                sock._sni_seen = sni  # read by h2_tls_context's callback
                try:
                    sock.settimeout(10)
                    sock.do_handshake()
                    sock.settimeout(None)
                except (ssl.SSLError, OSError) as exc:
                    with self.cond:
                        self.tls_failures.append(repr(exc))
                    return
                peer = sock.getpeercert()
                subject = dict(x[0] for x in peer.get("subject", ())) if peer else {}
                with self.cond:
                    self.tls_seen.append({"sni": sni[0], "alpn": sock.selected_alpn_protocol(),
                                          "client_cn": subject.get("commonName"),
                                          "version": sock.version()})
            conn.initiate_connection()
            # pending until the client's ACK, then in force (h2 applies them on the ACK)
            conn.update_settings({
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.max_streams,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: min(self.window, (1 << 31) - 1),
                h2.settings.SettingCodes.MAX_FRAME_SIZE: 1 << 16})
            conn.increment_flow_control_window(self.window)
            sock.sendall(conn.data_to_send())
            while not self.stopping.is_set():
                if self._write(conn, sock, pending, open_streams) == "die":
                    return
                if (self.goaway_after is not None and st.goaway_at is None
                        and st.streams >= self.goaway_after):
                    # graceful shutdown as servers do it: first "no new streams" with the
                    # highest id (everything in flight is still taken), later the real one
                    sock.sendall(hf.GoAwayFrame(0, last_stream_id=(1 << 31) - 1,
                                                error_code=0).serialize())
                    st.goaway_at = time.monotonic()
                    with self.cond:
                        self.goaways += 1
                now = time.monotonic()
                if st.close_requested or (st.goaway_at is not None and not pending
                                          and not open_streams and now - st.goaway_at >= 0.3):
                    # the final GOAWAY names the last stream taken, then the close
                    conn.close_connection(error_code=0, last_stream_id=st.highest)
                    sock.sendall(conn.data_to_send())
                    sock.shutdown(socket.SHUT_WR)
                    return
                timeout = 1.0 if st.goaway_at is None else 0.05
                waiting = [p.at - now for p in pending.values() if not p.headers_sent]
                if waiting:
                    timeout = max(0.0, min(min(waiting), timeout))
                if isinstance(sock, ssl.SSLSocket) and sock.pending():
                    r = [sock]   # decrypted bytes wait in the TLS layer, not the socket
                else:
                    r, _, _ = select.select([sock, st.wake_r], [], [], timeout)
                if st.wake_r in r:
                    os.read(st.wake_r, 64)
                if sock not in r:
                    continue
                data = sock.recv(1 << 20)
                if not data:
                    return
                try:
                    events = conn.receive_data(data)
                except h2.exceptions.ProtocolError as exc:
                    self._error(f"conn {cid}: protocol error from the client: {exc!r}")
                    sock.sendall(conn.data_to_send())
                    return
                self._events(conn, st, events, open_streams, pending)
                out = conn.data_to_send()
                if out:
                    sock.sendall(out)
        except (ConnectionResetError, BrokenPipeError, OSError) as exc:
            if not self.stopping.is_set():
                self._error(f"conn {cid}: {exc!r}")
        finally:
            try:
                sock.close()
            except OSError:
                pass
            os.close(st.wake_r)
            os.close(st.wake_w)
            with self.cond:
                self._live.pop(cid, None)
                self.open_conns -= 1
                self.total_open -= len(open_streams)
                self.cond.notify_all()

    def _error(self, text: str) -> None:
        with self.cond:
            self.errors.append(text)

    def _events(self, conn, st: "_ConnState", events, open_streams, pending) -> None:
        for ev in events:
            if isinstance(ev, h2.events.RequestReceived):
                open_streams[ev.stream_id] = H2Request(st.id, ev.stream_id, list(ev.headers))
                st.streams += 1
                st.highest = max(st.highest, ev.stream_id)
                if st.settings_acked:   # opened knowing our SETTINGS
                    with self.cond:
                        self.max_concurrent_settled = max(self.max_concurrent_settled,
                                                          len(open_streams))
                late = st.goaway_at is not None and time.monotonic() - st.goaway_at > 0.2
                with self.cond:
                    if late:
                        self.streams_after_goaway += 1
                    self.total_open += 1
                    self.max_total_concurrent = max(self.max_total_concurrent, self.total_open)
            elif isinstance(ev, h2.events.DataReceived):
                req = open_streams.get(ev.stream_id)
                if req is not None:
                    req.sha.update(ev.data)
                    req.body_len += len(ev.data)
                if ev.flow_controlled_length:
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.TrailersReceived):
                req = open_streams.get(ev.stream_id)
                if req is not None:
                    req.headers += [(n, v) for n, v in ev.headers]
            elif isinstance(ev, h2.events.StreamEnded):
                req = open_streams.get(ev.stream_id)
                if req is not None and not req.ended:
                    req.ended = True
                    pending[ev.stream_id] = self._respond(req)
            elif isinstance(ev, h2.events.StreamReset):
                with self.cond:
                    self.resets_received.append((st.id, ev.stream_id, int(ev.error_code)))
                    self.cond.notify_all()
                pending.pop(ev.stream_id, None)
                if open_streams.pop(ev.stream_id, None) is not None:
                    with self.cond:
                        self.total_open -= 1
            elif isinstance(ev, h2.events.SettingsAcknowledged):
                st.settings_acked = True
            elif isinstance(ev, h2.events.ConnectionTerminated):
                with self.cond:
                    self.goaways_received.append((st.id, int(ev.error_code),
                                                  ev.last_stream_id))
                    self.cond.notify_all()
                # keep serving the streams in flight (the client's GOAWAY ends new ones only)
                conn.state_machine.state = h2.connection.ConnectionState.SERVER_OPEN
        # streams open at once on this connection: counted after a read's events
        with self.cond:
            self.max_concurrent = max(self.max_concurrent, len(open_streams))

    def _respond(self, req: H2Request) -> _Pending:
        account = req.account(self.name)
        with self.cond:
            self.requests.append(account)
            self.cond.notify_all()
        target = urlsplit(account["path"] or "/")
        q = {k: v[-1] for k, v in parse_qs(target.query).items()}
        if "reset" in q:   # RST_STREAM with that code, no response
            return _Pending(req.stream, None, b"", reset=int(q["reset"]))
        status = int(q.get("status", "200"))
        at = time.monotonic() + int(q.get("delay", "0")) / 1000
        headers = [(":status", str(status)), ("x-backend", self.name)]
        if "size" in q:
            size = int(q["size"])
            body = pattern_bytes(size)
            headers.append(("content-type", "application/octet-stream"))
            if q.get("nolength") != "1":
                headers.append(("content-length", str(size)))
            die_after = int(q.get("part", "0")) if q.get("die") == "1" else None
            return _Pending(req.stream, headers, body, at=at, die_after=die_after)
        body = json.dumps(account).encode()
        headers += [("content-type", "application/json"), ("content-length", str(len(body)))]
        interim = [[(":status", "103"), ("link", "</style.css>; rel=preload")]] \
            if q.get("early") == "1" else []
        if account["method"] == "HEAD" or status in (204, 304):
            if status == 204:
                headers = [h for h in headers if h[0] != "content-length"]
            return _Pending(req.stream, headers, b"", at=at, interim=interim)
        trailers = None
        if target.path == "/trailers":
            headers = [h for h in headers if h[0] != "content-length"]
            trailers = [("x-trailer-a", "alpha"), ("x-trailer-b", "beta"),
                        ("x-body-sha256", hashlib.sha256(body).hexdigest())]
        return _Pending(req.stream, headers, body, trailers, at=at, interim=interim)

    def _write(self, conn, sock, pending, open_streams) -> Optional[str]:
        """Writes what the windows allow of every pending response; 'die' after a die=1
        response's part went out."""
        now = time.monotonic()
        for sid in list(pending):
            p = pending[sid]
            if p.at > now:
                continue
            if p.reset is not None:
                conn.reset_stream(sid, p.reset)
                self._finished(sid, pending, open_streams)
                continue
            if not p.headers_sent:
                for head in p.interim:
                    conn.send_headers(sid, head)
                end = not p.body and p.trailers is None
                conn.send_headers(sid, p.headers, end_stream=end)
                p.headers_sent = True
                if end:
                    self._finished(sid, pending, open_streams)
                    continue
            limit = len(p.body) if p.die_after is None else p.die_after
            while p.off < limit:
                window = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
                if window <= 0:
                    break
                n = min(window, limit - p.off)
                last = p.off + n == len(p.body) and p.trailers is None
                conn.send_data(sid, p.body[p.off:p.off + n].tobytes(), end_stream=last)
                p.off += n
                out = conn.data_to_send()
                if out:
                    sock.sendall(out)
            if p.die_after is not None and p.off >= p.die_after:
                out = conn.data_to_send()
                if out:
                    sock.sendall(out)
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return "die"
            if p.off >= len(p.body):
                if p.trailers is not None:
                    conn.send_headers(sid, p.trailers, end_stream=True)
                self._finished(sid, pending, open_streams)
        out = conn.data_to_send()
        if out:
            sock.sendall(out)
        return None

    def _finished(self, sid, pending, open_streams) -> None:
        pending.pop(sid, None)
        if open_streams.pop(sid, None) is not None:
            with self.cond:
                self.total_open -= 1

    def shutdown(self) -> None:
        self.stopping.set()
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        except OSError:
            pass
        self._acceptor.join(2)
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
            try:
                s.close()
            except OSError:
                pass

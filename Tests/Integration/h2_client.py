"""HTTP/2 clients for the integration tests, on the ``h2`` package (hpack, hyperframe).

``H2Client``  a well-behaved client (``h2.connection.H2Connection``) over TLS (ALPN ``h2``,
              the chain verified against the test CA) or h2c (prior knowledge): requests
              on as many streams as asked, one connection, responses collected per stream;
              the receive window is handed back by the caller (``auto_ack=False``) or as
              data arrives.
``RawH2``     frames written by hand (hyperframe, an own HPACK encoder), for the attack
              tests: nothing checks what is sent; a reader thread parses what the server
              sends (frames, with the time each arrived) until EOF or a reset, so a GOAWAY
              is seen even when the server resets the connection right after it.

Both record the server's SETTINGS. Error codes are ``h2.errors.ErrorCodes`` values.
"""

from __future__ import annotations

import errno
import select
import socket
import ssl
import threading
import time
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from http_backends import SocketClient

try:
    import h2.config
    import h2.connection
    import h2.events
    import h2.exceptions
    import h2.settings
    import hpack
    import hyperframe.frame as hf
    from h2.errors import ErrorCodes
except ImportError as exc:  # pragma: no cover - a clear message instead of a bare ImportError
    raise ImportError("the HTTP/2 tests need the 'h2' package: "
                      "python3 -m pip install -r Tests/Integration/requirements.txt") from exc

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
ENHANCE_YOUR_CALM = int(ErrorCodes.ENHANCE_YOUR_CALM)
REFUSED_STREAM = int(ErrorCodes.REFUSED_STREAM)
Headers = Sequence[Tuple[str, str]]


def _parse_addr(addr: str) -> Tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


def open_socket(addr: str, tls_ctx: Optional[ssl.SSLContext] = None,
                sni: Optional[str] = None, timeout: float = 10.0,
                rcvbuf: Optional[int] = None) -> socket.socket:
    """A connected socket; TLS-wrapped (handshake done) when ``tls_ctx`` is given."""
    host, port = _parse_addr(addr)
    raw = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    raw.settimeout(timeout)
    try:
        raw.connect((host, port))
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls_ctx is None:
            return raw
        return tls_ctx.wrap_socket(raw, server_hostname=sni)
    except BaseException:
        raw.close()
        raise


def h2_context(cafile, alpn: Iterable[str] = ("h2",)) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.set_alpn_protocols(list(alpn))
    return ctx


class StreamResult:
    def __init__(self, stream_id: int):
        self.id = stream_id
        self.headers: List[Tuple[str, str]] = []
        self.informational: List[List[Tuple[str, str]]] = []
        self.trailers: List[Tuple[str, str]] = []
        self.body = bytearray()
        self.ended = False
        self.reset: Optional[int] = None       # RST_STREAM error code from the server

    @property
    def status(self) -> Optional[int]:
        for n, v in self.headers:
            if n == ":status":
                return int(v)
        return None

    def header(self, name: str) -> Optional[str]:
        vals = [v for n, v in self.headers if n == name.lower()]
        return ", ".join(vals) if vals else None

    def json(self) -> dict:
        import json
        return json.loads(bytes(self.body))

    @property
    def done(self) -> bool:
        return self.ended or self.reset is not None

    def __repr__(self) -> str:
        return (f"<stream {self.id} status={self.status} reset={self.reset} ended={self.ended} "
                f"headers={self.headers} body={bytes(self.body[:200])!r}>")


class ConnectionClosed(AssertionError):
    pass


class H2Client(SocketClient):
    """One HTTP/2 connection driven synchronously from the test's thread."""

    def __init__(self, addr: str, tls_ctx: Optional[ssl.SSLContext] = None,
                 sni: Optional[str] = None, timeout: float = 20.0,
                 local_settings: Optional[Dict[int, int]] = None,
                 connection_window: Optional[int] = None, auto_ack: bool = True,
                 rcvbuf: Optional[int] = None):
        self.sock = open_socket(addr, tls_ctx, sni, timeout, rcvbuf)
        if tls_ctx is not None:
            alpn = self.sock.selected_alpn_protocol()
            if alpn != "h2":
                self.sock.close()
                raise AssertionError(f"ALPN selected {alpn!r}, not 'h2'")
        self.timeout = timeout
        self.auto_ack = auto_ack
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                        validate_inbound_headers=False,
                                        normalize_inbound_headers=False)
        self.conn = h2.connection.H2Connection(config=cfg)
        if local_settings:
            self.conn.local_settings = h2.settings.Settings(
                client=True, initial_values={**self.conn.local_settings, **local_settings})
        self.conn.initiate_connection()
        if connection_window:
            self.conn.increment_flow_control_window(connection_window)
        self.streams: Dict[int, StreamResult] = {}
        self.server_settings: Dict[int, int] = {}
        self.settings_received = False
        self.goaway: Optional[h2.events.ConnectionTerminated] = None
        self.goaway_at: Optional[float] = None
        self.eof = False
        self.flush()

    # ---- I/O
    def flush(self) -> None:
        """Sends what the connection has queued. Raises ConnectionClosed when the server has
        already closed (a reset while sending is the same end as a reset while reading)."""
        data = self.conn.data_to_send()
        if data:
            try:
                self.sock.sendall(data)
            except (ConnectionResetError, BrokenPipeError) as exc:
                self.eof = True
                raise ConnectionClosed(f"connection reset while sending: {exc}"
                                       + (f" after GOAWAY {self.goaway}" if self.goaway else ""))

    def _recv(self, timeout: float) -> bool:
        """Reads once (up to ``timeout``); False on timeout. Raises ConnectionClosed at EOF."""
        if self.eof:
            raise ConnectionClosed("connection closed by the server"
                                   + (f" after GOAWAY {self.goaway}" if self.goaway else ""))
        if not (isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()):
            r, _, _ = select.select([self.sock], [], [], max(timeout, 0))
            if not r:
                return False
        try:
            data = self.sock.recv(1 << 20)
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError) as exc:
            self.eof = True
            raise ConnectionClosed(f"connection reset: {exc}"
                                   + (f" after GOAWAY {self.goaway}" if self.goaway else ""))
        if not data:
            self.eof = True
            if self.goaway is None:
                raise ConnectionClosed("EOF without GOAWAY")
            return True
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self.eof = True
            raise AssertionError(f"the server broke HTTP/2: {type(exc).__name__}: {exc}") from exc
        self.handle(events)
        self.flush()
        return True

    def handle(self, events) -> None:
        for ev in events:
            if isinstance(ev, h2.events.ResponseReceived):
                self._stream(ev.stream_id).headers = list(ev.headers)
            elif isinstance(ev, h2.events.InformationalResponseReceived):
                self._stream(ev.stream_id).informational.append(list(ev.headers))
            elif isinstance(ev, h2.events.TrailersReceived):
                self._stream(ev.stream_id).trailers = list(ev.headers)
            elif isinstance(ev, h2.events.DataReceived):
                st = self._stream(ev.stream_id)
                st.body += ev.data
                if self.auto_ack and ev.flow_controlled_length:
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                else:
                    st.unacked = getattr(st, "unacked", 0) + ev.flow_controlled_length
            elif isinstance(ev, h2.events.StreamEnded):
                self._stream(ev.stream_id).ended = True
            elif isinstance(ev, h2.events.StreamReset):
                self._stream(ev.stream_id).reset = int(ev.error_code)
            elif isinstance(ev, h2.events.RemoteSettingsChanged):
                self.settings_received = True
                for k, v in ev.changed_settings.items():
                    self.server_settings[int(k)] = v.new_value
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.goaway = ev
                self.goaway_at = time.monotonic()
                if int(ev.error_code) == 0:
                    # h2 treats every GOAWAY as the end; a graceful one lets the streams up
                    # to last_stream_id finish (RFC 9113 6.8): keep reading them
                    self.conn.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN

    def _stream(self, sid: int) -> StreamResult:
        st = self.streams.get(sid)
        if st is None:
            st = self.streams[sid] = StreamResult(sid)
        return st

    def ack(self, stream_id: int, n: Optional[int] = None) -> None:
        """Hands back ``n`` (default: everything not yet handed back) bytes of window."""
        st = self._stream(stream_id)
        n = getattr(st, "unacked", 0) if n is None else n
        if n:
            st.unacked = getattr(st, "unacked", 0) - n
            self.conn.acknowledge_received_data(n, stream_id)
            self.flush()

    def pump(self, timeout: float = 0.05) -> None:
        self._recv(timeout)

    def wait(self, cond, timeout: Optional[float] = None, what: str = "condition") -> None:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not cond():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}; streams: "
                                     f"{list(self.streams.values())[:5]}")
            self._recv(min(left, 0.5))

    def wait_settings(self, timeout: float = 5.0) -> Dict[int, int]:
        self.wait(lambda: self.settings_received, timeout, "the server's SETTINGS")
        return self.server_settings

    # ---- requests
    def send_request(self, authority: Optional[str], path: str = "/", method: str = "GET",
                     headers: Headers = (), body: Optional[bytes] = None,
                     scheme: Optional[str] = None, content_length: bool = True,
                     end_stream: bool = True) -> int:
        sid = self.conn.get_next_available_stream_id()
        scheme = scheme or ("https" if isinstance(self.sock, ssl.SSLSocket) else "http")
        hs = [(":method", method), (":scheme", scheme), (":path", path)]
        if authority is not None:
            hs.append((":authority", authority))
        if body is not None and content_length:
            hs.append(("content-length", str(len(body))))
        hs += list(headers)
        if not body:
            self.conn.send_headers(sid, hs, end_stream=end_stream)
            self._stream(sid)
            self.flush()
        else:
            self.conn.send_headers(sid, hs, end_stream=False)
            self._stream(sid)
            self.flush()
            self.send_body(sid, body, end_stream=end_stream)
        return sid

    def send_body(self, sid: int, body: bytes, end_stream: bool = True) -> None:
        view = memoryview(body)
        off = 0
        while off < len(body):
            window = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if window <= 0:
                self.wait(lambda: self.conn.local_flow_control_window(sid) > 0
                          or self._stream(sid).reset is not None, what=f"send window of {sid}")
                if self._stream(sid).reset is not None:
                    return
                continue
            n = min(window, len(body) - off)
            self.conn.send_data(sid, view[off:off + n].tobytes(),
                                end_stream=end_stream and off + n == len(body))
            off += n
            self.flush()

    def response(self, sid: int, timeout: Optional[float] = None) -> StreamResult:
        self.wait(lambda: self._stream(sid).done, timeout, f"stream {sid} to end")
        return self.streams[sid]

    def get(self, authority: Optional[str], path: str = "/", **kw) -> StreamResult:
        timeout = kw.pop("timeout", None)
        return self.response(self.send_request(authority, path, **kw), timeout)

    def reset(self, sid: int, code: int = int(ErrorCodes.CANCEL)) -> None:
        self.conn.reset_stream(sid, code)
        self.flush()

    def close(self) -> None:
        try:
            self.conn.close_connection()
            self.flush()
        except (OSError, ConnectionClosed, h2.exceptions.ProtocolError):
            pass
        super().close()


# --------------------------------------------------------------------------
# raw frames


class RawH2(SocketClient):
    """A connection that writes frames as given. ``start()`` sends the preface, SETTINGS
    (``settings``) and a WINDOW_UPDATE of ``window`` for the connection, then a thread reads
    and parses the server's frames (and ACKs its SETTINGS). Use it over h2c: a TLS socket
    is not safe to read and write from two threads."""

    def __init__(self, addr: str, tls_ctx: Optional[ssl.SSLContext] = None,
                 sni: Optional[str] = None, timeout: float = 10.0, read: bool = True,
                 settings: Optional[Dict[int, int]] = None, rcvbuf: Optional[int] = None,
                 sndbuf: Optional[int] = None, window: int = 1 << 24,
                 ack_settings: bool = True):
        self.sock = open_socket(addr, tls_ctx, sni, timeout, rcvbuf)
        if sndbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        if tls_ctx is not None and self.sock.selected_alpn_protocol() != "h2":
            alpn = self.sock.selected_alpn_protocol()
            self.sock.close()
            raise AssertionError(f"ALPN selected {alpn!r}, not 'h2'")
        self.encoder = hpack.Encoder()
        self.frames: List[Tuple[float, hf.Frame]] = []
        self.cond = threading.Condition()
        self.closed_at: Optional[float] = None
        self.close_how: Optional[str] = None
        self.sent = 0
        self.next_stream = 1
        self._read = read
        self._reader: Optional[threading.Thread] = None
        self._settings = settings or {}
        self._window = window
        self._ack_settings = ack_settings
        self._lock = threading.Lock()   # one writer at a time (TLS objects are not thread safe)

    def start(self) -> "RawH2":
        sf = hf.SettingsFrame(0)
        for k, v in self._settings.items():
            sf.settings[int(k)] = v
        out = PREFACE + sf.serialize()
        if self._window:
            out += hf.WindowUpdateFrame(0, window_increment=self._window).serialize()
        self.send(out)
        if self._read:
            self._reader = threading.Thread(target=self._read_loop, daemon=True, name="raw-h2")
            self._reader.start()
        return self

    # ---- writing
    def send(self, data: bytes) -> None:
        with self._lock:
            self.sock.sendall(data)
        self.sent += len(data)

    def try_send(self, data: bytes, deadline: float) -> bool:
        """Sends without blocking past ``deadline``: False if the server stopped taking bytes
        (window full) until then. Raises ConnectionClosed if the connection is gone."""
        view = memoryview(data)
        while view:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                _, w, _ = select.select([], [self.sock], [], min(left, 0.2))
                if not w:
                    continue
                with self._lock:
                    if isinstance(self.sock, ssl.SSLSocket):
                        n = self.sock.send(view[:16384])   # writable: a record fits
                    else:
                        n = self.sock.send(view, socket.MSG_DONTWAIT)
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                continue
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError) as exc:
                if isinstance(exc, OSError) and exc.errno not in (
                        errno.EPIPE, errno.ECONNRESET, None, errno.EBADF, errno.ENOTCONN):
                    raise
                self._mark_closed(f"send failed: {exc}")
                raise ConnectionClosed(f"send failed: {exc}")
            self.sent += n
            view = view[n:]
        return True

    def headers_frame(self, sid: int, headers: Headers, end_stream: bool = True,
                      end_headers: bool = True) -> bytes:
        f = hf.HeadersFrame(sid)
        f.data = self.encoder.encode(list(headers))
        if end_stream:
            f.flags.add("END_STREAM")
        if end_headers:
            f.flags.add("END_HEADERS")
        return f.serialize()

    def request(self, authority: str, path: str = "/", method: str = "GET",
                scheme: str = "http", extra: Headers = (), end_stream: bool = True) -> int:
        sid = self.next_stream
        self.next_stream += 2
        self.send(self.headers_frame(sid, request_headers(authority, path, method, scheme, extra),
                                     end_stream=end_stream))
        return sid

    @staticmethod
    def rst_frame(sid: int, code: int = int(ErrorCodes.CANCEL)) -> bytes:
        return hf.RstStreamFrame(sid, error_code=code).serialize()

    @staticmethod
    def frame(kind: str, sid: int = 0, **fields) -> bytes:
        f = getattr(hf, kind)(sid)
        for k, v in fields.items():
            if k == "flags":
                for fl in v:
                    f.flags.add(fl)
            else:
                setattr(f, k, v)
        return f.serialize()

    # ---- reading
    def _read_loop(self) -> None:
        buf = bytearray()
        try:
            while True:
                try:
                    data = self.sock.recv(1 << 20)
                except socket.timeout:
                    continue
                if not data:
                    self._mark_closed("eof")
                    return
                buf += data
                while len(buf) >= 9:
                    f, length = hf.Frame.parse_frame_header(memoryview(buf[:9]))
                    if len(buf) < 9 + length:
                        break
                    f.parse_body(memoryview(bytes(buf[9:9 + length])))
                    del buf[:9 + length]
                    with self.cond:
                        self.frames.append((time.monotonic(), f))
                        self.cond.notify_all()
                    if (self._ack_settings and isinstance(f, hf.SettingsFrame)
                            and "ACK" not in f.flags):
                        ack = hf.SettingsFrame(0)
                        ack.flags.add("ACK")
                        try:
                            self.send(ack.serialize())
                        except OSError:
                            pass
        except (ConnectionResetError, BrokenPipeError) as exc:
            self._mark_closed(f"reset ({exc})")
        except (OSError, ssl.SSLError, ValueError) as exc:
            self._mark_closed(f"error ({type(exc).__name__}: {exc})")

    def _mark_closed(self, how: str) -> None:
        with self.cond:
            if self.closed_at is None:
                self.closed_at = time.monotonic()
                self.close_how = how
            self.cond.notify_all()

    def wait_for(self, pred, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(pred, timeout)

    def wait_closed(self, timeout: float) -> bool:
        return self.wait_for(lambda: self.closed_at is not None, timeout)

    def of_type(self, cls) -> List[hf.Frame]:
        with self.cond:
            return [f for _, f in self.frames if isinstance(f, cls)]

    def goaway(self) -> Optional[hf.GoAwayFrame]:
        g = self.of_type(hf.GoAwayFrame)
        return g[0] if g else None

    def resets(self) -> Dict[int, int]:
        return {f.stream_id: f.error_code for f in self.of_type(hf.RstStreamFrame)}

    def server_settings(self, timeout: float = 5.0) -> Dict[int, int]:
        self.wait_for(lambda: any(isinstance(f, hf.SettingsFrame) and "ACK" not in f.flags
                                  for _, f in self.frames), timeout)
        for f in self.of_type(hf.SettingsFrame):
            if "ACK" not in f.flags:
                return dict(f.settings)
        return {}

    def response_status(self, sid: int) -> Optional[int]:
        """:status of the first HEADERS on ``sid`` (decoded in order with a decoder of our
        own, so call it only after every HEADERS before it has arrived)."""
        dec = hpack.Decoder()
        dec.max_allowed_table_size = 1 << 16
        for f in self.of_type(hf.HeadersFrame):
            block = f.data
            try:
                hs = dec.decode(block)
            except hpack.HPACKError:
                return None
            if f.stream_id == sid:
                for n, v in hs:
                    n = n.decode() if isinstance(n, bytes) else n
                    v = v.decode() if isinstance(v, bytes) else v
                    if n == ":status":
                        return int(v)
        return None

    def ended_streams(self) -> List[int]:
        out = []
        for f in self.of_type((hf.DataFrame, hf.HeadersFrame)):
            if "END_STREAM" in f.flags:
                out.append(f.stream_id)
        return out

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        super().close()
        if self._reader is not None:
            self._reader.join(2)


def request_headers(authority: str, path: str = "/", method: str = "GET", scheme: str = "http",
                    extra: Headers = ()) -> List[Tuple[str, str]]:
    return [(":method", method), (":scheme", scheme), (":path", path),
            (":authority", authority), *extra]


def error_name(code: Optional[int]) -> str:
    if code is None:
        return "none"
    try:
        return f"{ErrorCodes(code).name} ({code})"
    except ValueError:
        return str(code)

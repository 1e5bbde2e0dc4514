"""WebSocket through TLS terminated in the proxy: after the 101 the decrypted bytes are
relayed both ways through the TLS session (not the plain byte tunnel), and each side's end
reaches the other."""

from __future__ import annotations

import base64
import os

import pytest

from http_backends import BufReader, read_response, request_bytes, ws_accept, ws_frame
# The termination suite's fixtures: a tls listener terminating a.example.com → web-a.
from test_tls_termination import (HTTPSConn, term, term_certs, term_group,  # noqa: F401
                                  term_config)

pytestmark = pytest.mark.sluice_only


def _upgrade(conn: HTTPSConn, key: str):
    conn.sock.sendall(request_bytes("a.example.com", "/chat", headers=[
        "Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13"]))
    return read_response(conn.reader)


def test_websocket_through_termination(term):
    key = base64.b64encode(os.urandom(16)).decode()
    with HTTPSConn(term.https_port, term.certs, "a.example.com") as conn:
        r = _upgrade(conn, key)
        assert r.status == 101, r
        assert r.header("sec-websocket-accept") == ws_accept(key)
        # the backend's greeting, then echoes of several sizes (one over a TLS record and
        # over the proxy's 32 KiB buffer)
        assert conn.reader.read_exact(2 + 8) == b"\x81\x08ws:web-a"
        for payload in (b"hello", b"x" * 300, os.urandom(70000), os.urandom(200000)):
            frame = ws_frame(payload, opcode=0x2)
            conn.sock.sendall(frame)
            assert conn.reader.read_exact(len(frame)) == frame
        req = term.http["web-a"].requests[-1]
        assert req["target"] == "/chat" and req["xfproto"] == "https", req
        # The client ends its side with close_notify: the backend sees EOF and closes, the
        # proxy answers with its own close_notify (unwrap returns) and then closes the socket.
        raw = conn.sock.unwrap()
        raw.settimeout(5)
        assert raw.recv(65536) == b"", "no end of stream after both close_notify alerts"
        raw.close()


def test_websocket_client_drops_connection(term):
    key = base64.b64encode(os.urandom(16)).decode()
    with HTTPSConn(term.https_port, term.certs, "a.example.com", timeout=5) as conn:
        r = _upgrade(conn, key)
        assert r.status == 101, r
        assert conn.reader.read_exact(10) == b"\x81\x08ws:web-a"
        conn.sock.sendall(ws_frame(b"bye"))
        assert conn.reader.read_exact(len(ws_frame(b"bye"))) == ws_frame(b"bye")
    # the client dropped the upgraded connection without close_notify; a new one works
    with HTTPSConn(term.https_port, term.certs, "a.example.com") as conn:
        r = conn.request("a.example.com", "/")
        assert r.status == 200, r

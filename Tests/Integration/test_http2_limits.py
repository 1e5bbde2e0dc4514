"""HTTP/2 limits and abuse: concurrent streams (SETTINGS_MAX_CONCURRENT_STREAMS 100, more
refused with REFUSED_STREAM), an over-large header list, rapid reset, CONTINUATION flood,
HPACK bomb, SETTINGS and PING floods from a client that does not read, a receive window held
at zero, a client that never reads.

Every test has a time bound and ends by checking that the proxy's descriptors are back to
their count before the attack (upstream connections still open at the backends, the idle
pool, are allowed for), and that a new connection is still served. Frames are written by
hand (h2_client.RawH2) over h2c; the listeners are those of test_http2.h2_config.

``SLUICE_H2_PEER=haproxy`` runs the tests not marked ``sluice_only`` against HAProxy 2.6.
"""

from __future__ import annotations

import socket
import time
from typing import Tuple

import hpack
import hyperframe.frame as hf
import pytest

from conftest import fd_count
from h2_client import (ENHANCE_YOUR_CALM, REFUSED_STREAM, ConnectionClosed, RawH2, error_name,
                       request_headers)
from test_http2 import H2_PEER, H2Env, h2_config, sluice_only  # noqa: F401
from test_http2 import term_certs, term_group, h2_proxy  # noqa: F401  (fixtures)

CLIENT_TIMEOUT = "2s"   # timeouts.client: the stall timeout of a stream or connection


@pytest.fixture
def lim(http_backends, term_group, h2_proxy, term_certs):  # noqa: F811
    cfg = h2_config(http_backends, term_group, term_certs, timeouts={"client": CLIENT_TIMEOUT})
    return H2Env(h2_proxy(cfg), http_backends, term_group, term_certs)


# --------------------------------------------------------------------------
# descriptors and memory

def upstream_open(env: H2Env) -> int:
    """Proxy-to-backend connections the backends still hold open."""
    return sum(1 for b in env.http.by_name.values() for ci in b.conns if not ci.closed.is_set())


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def baseline(env: H2Env) -> Tuple[int, int]:
    """(descriptors other than upstream connections, RSS) after a warm-up request."""
    with env.h2c_client() as c:
        assert c.get("a.example.com", "/warm").status == 200
    time.sleep(0.3)
    return fd_count(env.p.pid) - upstream_open(env), rss(env.p.pid)


def assert_back_to_baseline(env: H2Env, base: Tuple[int, int], what: str,
                            timeout: float = 10.0) -> None:
    fds0 = base[0]
    deadline = time.monotonic() + timeout
    while True:
        now = fd_count(env.p.pid) - upstream_open(env)
        if now <= fds0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert now <= fds0, (f"{what}: {now} descriptors (upstream connections left out) "
                         f"{timeout:.0f}s after, {fds0} before: something leaked or stayed open")
    assert env.p.proc.poll() is None, f"{what}: the proxy exited"
    with env.h2c_client(timeout=5) as c:   # still serving
        assert c.get("b.example.com", "/after").status == 200, what


def assert_rss_bounded(env: H2Env, base: Tuple[int, int], what: str,
                       limit: int = 64 << 20) -> None:
    grown = rss(env.p.pid) - base[1]
    assert grown < limit, f"{what}: RSS grew by {grown >> 20} MiB"


def raw(env: H2Env, **kw) -> RawH2:
    return RawH2(env.plain_addr, **kw).start()


# --------------------------------------------------------------------------
# concurrent streams

def test_max_concurrent_streams_100_and_refused_beyond(lim):
    """SETTINGS_MAX_CONCURRENT_STREAMS is 100 and 100 slow streams run together. Streams past
    the limit never reach a backend: libnghttp2 refuses them (REFUSED_STREAM) while the client
    has not acknowledged the SETTINGS, and ends the connection (GOAWAY PROTOCOL_ERROR,
    "max concurrent streams exceeded") once it has; either way nothing leaks and the proxy
    serves on."""
    base = baseline(lim)
    c = raw(lim)
    try:
        settings = c.server_settings()
        assert settings.get(3) == 100, \
            f"SETTINGS_MAX_CONCURRENT_STREAMS {settings.get(3)} (want 100); settings {settings}"
        time.sleep(0.2)   # our ACK of the server's SETTINGS is on its way
        seen = len(lim.http["web-a"].requests)
        for i in range(100):
            c.request("a.example.com", f"/s{i}?mode=slow&delay=1.5")
        # The 100 streams are served concurrently before anything goes past the limit.
        lim.http["web-a"].wait_requests(seen + 100, 10)
        extra = []
        for i in range(5):
            try:
                extra.append(c.request("a.example.com", f"/x{i}"))
            except (BrokenPipeError, ConnectionResetError, ConnectionClosed):
                break  # the connection already ended (the GOAWAY below says why)
        assert extra, "not even one stream past the limit could be sent"
        refused = lambda: all(s in c.resets() for s in extra)
        assert c.wait_for(lambda: refused() or c.goaway() is not None, 5), \
            f"streams above 100 neither refused nor the connection ended: resets {c.resets()}"
        if c.goaway() is not None:
            assert c.goaway().error_code == 1, c.goaway()  # PROTOCOL_ERROR
        else:
            codes = {s: c.resets()[s] for s in extra}
            assert all(v == REFUSED_STREAM for v in codes.values()), \
                {s: error_name(v) for s, v in codes.items()}
        # a stream past the limit never reached a backend
        targets = [r["target"] for r in lim.http["web-a"].requests]
        assert not any(t.startswith("/x") for t in targets), targets
    finally:
        c.close()
    with lim.h2c_client(timeout=10) as fresh:
        assert fresh.get("a.example.com", "/after-limit").status == 200
    assert_back_to_baseline(lim, base, "max concurrent streams")


# --------------------------------------------------------------------------
# header list size

def request_with_big_headers(c, target: str, fields: int):
    """Sends a request for TARGET with FIELDS header fields of 1 KiB each and waits up to 10 s
    for its stream to end or a GOAWAY. -> (the stream, the ConnectionClosed or None)"""
    big = [(f"x-big-{i}", "v" * 1024) for i in range(fields)]
    sid = c.conn.get_next_available_stream_id()
    try:
        assert c.send_request("a.example.com", target, headers=big) == sid
        c.wait(lambda: c._stream(sid).done or c.goaway is not None, 10, "an answer")
    except ConnectionClosed as exc:
        return c._stream(sid), exc
    return c._stream(sid), None


def test_header_list_too_large(lim):
    """A 24 KiB header list (24 fields of 1 KiB), above the 16 KiB Sluice announces in
    SETTINGS_MAX_HEADER_LIST_SIZE: 431, or the stream reset; the connection stays usable."""
    base = baseline(lim)
    with lim.h2c_client(timeout=10) as c:
        st, closed = request_with_big_headers(c, "/big-headers", 24)
        if closed is not None:
            pytest.fail(f"the connection was closed ({closed}) instead of a stream reset or 431")
        # (HAProxy 2.6 ends the connection: GOAWAY INTERNAL_ERROR; Sluice resets the stream)
        assert c.goaway is None or H2_PEER == "haproxy", \
            f"the connection was ended (GOAWAY {error_name(int(c.goaway.error_code))}); " \
            "a stream error is enough"
        assert st.reset is not None or st.status == 431 or c.goaway is not None, st
        if c.goaway is None:
            assert c.get("a.example.com", "/small-after").status == 200
    assert not any(r["target"] == "/big-headers" for r in lim.http["web-a"].requests)
    assert_back_to_baseline(lim, base, "header list too large")


def test_header_list_beyond_hpack_limits(lim):
    """A 256 KiB header list (256 fields of 1 KiB) is past what the HPACK decoder takes in one
    block: the connection may end (a compression error is a connection error, RFC 9113
    §4.3), but nothing reaches a backend, nothing leaks, and new connections are served."""
    base = baseline(lim)
    with lim.h2c_client(timeout=10) as c:
        st, _ = request_with_big_headers(c, "/huge-headers", 256)
        assert st.reset is not None or st.status == 431 or c.goaway is not None or c.eof, st
    assert not any(r["target"] == "/huge-headers" for r in lim.http["web-a"].requests)
    with lim.h2c_client(timeout=10) as c:
        assert c.get("a.example.com", "/after-huge").status == 200
    assert_back_to_baseline(lim, base, "header list beyond HPACK limits")


# --------------------------------------------------------------------------
# rapid reset (CVE-2023-44487)

@sluice_only
def test_rapid_reset_goaway_enhance_your_calm(lim):
    base = baseline(lim)
    c = raw(lim)
    t0 = time.monotonic()
    pairs = 0
    try:
        c.server_settings()
        deadline = t0 + 10
        try:
            while c.goaway() is None and c.closed_at is None and time.monotonic() < deadline:
                batch = bytearray()
                for _ in range(100):
                    sid = c.next_stream
                    c.next_stream += 2
                    batch += c.headers_frame(sid, request_headers("a.example.com", f"/rr{sid}"))
                    batch += c.rst_frame(sid)
                if not c.try_send(bytes(batch), deadline):
                    break
                pairs += 100
        except ConnectionClosed:
            pass
        assert c.wait_for(lambda: c.goaway() is not None, 3), \
            f"no GOAWAY after {pairs} HEADERS+RST_STREAM pairs in {time.monotonic() - t0:.1f}s " \
            f"(closed: {c.close_how})"
        g = c.goaway()
        assert g.error_code == ENHANCE_YOUR_CALM, f"GOAWAY {error_name(g.error_code)}"
        assert c.wait_closed(3), "the connection stayed open after GOAWAY"
        assert c.closed_at - t0 < 10
    finally:
        c.close()
    # far fewer than the pairs sent got as far as a backend
    seen = lim.http["web-a"].request_count()
    assert seen < max(pairs // 2, 1000), f"{seen} of {pairs} reset streams reached the backend"
    assert_back_to_baseline(lim, base, "rapid reset")


# --------------------------------------------------------------------------
# CONTINUATION flood

def test_continuation_flood_closed_promptly(lim):
    base = baseline(lim)
    c = raw(lim)
    t0 = time.monotonic()
    try:
        c.server_settings()
        c.send(c.headers_frame(1, request_headers("a.example.com", "/cont"),
                               end_stream=True, end_headers=False))
        # literal fields without indexing: each frame decodes to more header list
        field = b"\x00\x07x-flood" + bytes(_int7(1000)) + b"a" * 1000
        payload = field * 16   # ~16 KiB, the default SETTINGS_MAX_FRAME_SIZE
        frame = hf.ContinuationFrame(1)
        frame.data = payload[:16384]
        wire = frame.serialize()
        deadline = t0 + 10
        try:
            while c.closed_at is None and c.goaway() is None and time.monotonic() < deadline:
                if not c.try_send(wire * 8, deadline):
                    break
        except ConnectionClosed:
            pass
        closed = c.wait_closed(max(0.1, t0 + 10 - time.monotonic()))
        elapsed = (c.closed_at or time.monotonic()) - t0
        assert closed, f"still open after {elapsed:.1f}s and {c.sent >> 20} MiB of CONTINUATION"
        assert elapsed < 5, f"closed after {elapsed:.1f}s ({c.sent >> 20} MiB sent)"
    finally:
        c.close()
    assert lim.http["web-a"].request_count() == 1, "the flooded request reached a backend"
    assert_rss_bounded(lim, base, "CONTINUATION flood")
    assert_back_to_baseline(lim, base, "CONTINUATION flood")


def _int7(n: int) -> bytes:
    """HPACK integer with a 7-bit prefix, H bit clear (RFC 7541 5.1)."""
    if n < 127:
        return bytes([n])
    out = bytearray([127])
    n -= 127
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# --------------------------------------------------------------------------
# HPACK bomb

def test_hpack_bomb(lim):
    """One 4 KiB field put in the dynamic table, then referenced 16,000 times (one byte
    each): a 16 KiB block that decodes to 64 MiB. The stream is reset (or answered 431), or
    the connection closed; memory stays bounded."""
    base = baseline(lim)
    c = raw(lim)
    try:
        c.server_settings()
        head = hpack.Encoder()
        head.header_table_size = 4096
        block = head.encode(request_headers("a.example.com", "/bomb"), huffman=False)
        # literal with incremental indexing, new name: 0x40, name, value
        block += b"\x40\x05x-big" + _int7(4000) + b"A" * 4000
        block += b"\xbe" * 16000          # indexed field 62: the newest dynamic entry
        frames = bytearray()
        first, rest = block[:16384], block[16384:]
        f = hf.HeadersFrame(1)
        f.data = first
        f.flags.add("END_STREAM")
        if not rest:
            f.flags.add("END_HEADERS")
        frames += f.serialize()
        while rest:
            cf = hf.ContinuationFrame(1)
            cf.data, rest = rest[:16384], rest[16384:]
            if not rest:
                cf.flags.add("END_HEADERS")
            frames += cf.serialize()
        t0 = time.monotonic()
        c.send(bytes(frames))
        ok = c.wait_for(lambda: 1 in c.resets() or c.goaway() is not None
                        or c.closed_at is not None or c.response_status(1) is not None, 5)
        assert ok, f"no answer to the HPACK bomb after {time.monotonic() - t0:.1f}s"
        status = c.response_status(1)
        assert status in (None, 431, 400), f"the bomb was answered {status}"
        if status is None and 1 not in c.resets():
            assert c.wait_closed(3), "GOAWAY without a close"
    finally:
        c.close()
    assert lim.http["web-a"].request_count() == 1, "the bomb reached a backend"
    assert_rss_bounded(lim, base, "HPACK bomb", 32 << 20)
    assert_back_to_baseline(lim, base, "HPACK bomb")


# --------------------------------------------------------------------------
# floods from a client that does not read

def _flood_unread(env: H2Env, frame: bytes, what: str) -> None:
    base = baseline(env)
    c = RawH2(env.plain_addr, read=False, rcvbuf=4096).start()
    t0 = time.monotonic()
    closed_how = None
    try:
        deadline = t0 + 12
        batch = frame * 1000
        try:
            while time.monotonic() < deadline:
                if not c.try_send(batch, min(deadline, time.monotonic() + 0.5)):
                    # the proxy stopped reading: wait for it to close (we still do not read)
                    if fd_count(env.p.pid) - upstream_open(env) <= base[0]:
                        closed_how = "closed (descriptor released) while we held the socket"
                        break
        except ConnectionClosed as exc:
            closed_how = str(exc)
        elapsed = time.monotonic() - t0
        assert closed_how, (f"{what}: the connection is still open after {elapsed:.1f}s "
                            f"({c.sent >> 10} KiB sent, nothing read)")
        assert elapsed < 10, f"{what}: closed only after {elapsed:.1f}s"
    finally:
        c.close()
    assert_rss_bounded(env, base, what)
    assert_back_to_baseline(env, base, what)


@sluice_only
def test_settings_flood_without_reading(lim):
    _flood_unread(lim, hf.SettingsFrame(0).serialize(), "SETTINGS flood")


@sluice_only
def test_ping_flood_without_reading(lim):
    _flood_unread(lim, hf.PingFrame(0, opaque_data=b"12345678").serialize(), "PING flood")


# --------------------------------------------------------------------------
# flow control held shut

@sluice_only
def test_zero_window_stream_reset_after_stall_timeout(lim):
    """SETTINGS_INITIAL_WINDOW_SIZE 0 and no WINDOW_UPDATE: the response's DATA cannot move;
    after timeouts.client (2 s) the stream is reset (or the connection closed)."""
    base = baseline(lim)
    with lim.h2c_client(auto_ack=False, local_settings={4: 0}, timeout=15) as c:
        t0 = time.monotonic()
        sid = c.send_request("a.example.com", f"/zw?mode=download&size={4 << 20}")
        try:
            c.wait(lambda: c._stream(sid).done or c.goaway is not None, 12, "the stall to end")
        except ConnectionClosed:
            pass
        elapsed = time.monotonic() - t0
        st = c._stream(sid)
        assert st.reset is not None or c.goaway is not None or c.eof, \
            f"nothing after {elapsed:.1f}s: {st}"
        assert not st.ended, "the body could not have been sent whole through a zero window"
        assert 1.5 <= elapsed <= 8, f"reset after {elapsed:.1f}s; timeouts.client is 2s"
        assert len(st.body) == 0, f"{len(st.body)} bytes of DATA through a zero window"
    assert_back_to_baseline(lim, base, "zero window")


@sluice_only
def test_client_never_reads(lim):
    """Four 50 MiB downloads, a large window, a 4 KiB receive buffer, nothing read: the
    proxy's writes stall; it closes the connection after timeouts.client, and the upstream
    connections carrying the bodies go too."""
    base = baseline(lim)
    c = RawH2(lim.plain_addr, read=False, rcvbuf=4096,
              settings={4: (1 << 31) - 1}, window=(1 << 31) - 1 - 65535).start()
    t0 = time.monotonic()
    try:
        for i in range(4):
            c.request("a.example.com", f"/never{i}?mode=download&size={50 << 20}")
        lim.http["web-a"].wait_requests(1 + 4, 5)
        deadline = t0 + 12
        while fd_count(lim.p.pid) - upstream_open(lim) > base[0] and time.monotonic() < deadline:
            time.sleep(0.1)
        elapsed = time.monotonic() - t0
        assert fd_count(lim.p.pid) - upstream_open(lim) <= base[0], \
            f"the connection of a client that never reads is still open after {elapsed:.1f}s"
        assert elapsed >= 1.5, f"closed after {elapsed:.1f}s, before timeouts.client (2s)"
        # what was sent to us ends at EOF or a reset
        c.sock.settimeout(5)
        try:
            while c.sock.recv(1 << 20):
                pass
        except (ConnectionResetError, socket.timeout) as exc:
            assert not isinstance(exc, socket.timeout), "no EOF after the proxy let go"
    finally:
        c.close()
    assert_rss_bounded(lim, base, "client never reads", 128 << 20)
    assert_back_to_baseline(lim, base, "client never reads")


def test_tls_connections_and_streams_leave_nothing_behind(lim):
    """Many h2 connections over TLS, some closed mid-stream: descriptors back to baseline."""
    base = baseline(lim)
    for i in range(20):
        c = lim.tls_client("a.example.com", timeout=10)
        sid = c.send_request("a.example.com", f"/t{i}?mode=slow&delay=0.5")
        if i % 2:
            assert c.response(sid).status == 200
            c.close()
        else:
            c.sock.close()       # gone with the stream open, no GOAWAY
    assert_back_to_baseline(lim, base, "TLS connections closed mid-stream", timeout=15)


def test_client_preface_garbage_closed(lim):
    """A connection that starts like a preface and then is not one: closed, nothing routed."""
    base = baseline(lim)
    with socket.create_connection(("127.0.0.1", lim.plain_port), timeout=5) as s:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\xff" * 64)
        s.settimeout(5)
        t0 = time.monotonic()
        try:
            while s.recv(65536):
                pass
        except ConnectionResetError:
            pass
        except socket.timeout:
            pytest.fail("still open 5 s after a broken first frame")
        assert time.monotonic() - t0 < 3
    assert_back_to_baseline(lim, base, "broken preface")


def test_h2client_smoke_is_not_refused(lim):
    """The limits do not hit a normal client: 300 requests, 30 at a time, one connection."""
    with lim.h2c_client() as c:
        for _ in range(10):
            sids = [c.send_request("b.example.com", f"/n{i}") for i in range(30)]
            assert all(c.response(s).status == 200 for s in sids)
        assert c.goaway is None


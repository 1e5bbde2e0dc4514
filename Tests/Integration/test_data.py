"""Byte-exact forwarding: bulk transfer both ways and half-close in both directions."""

import hashlib
import random
import signal
import socket
import threading

import pytest

from backends import pattern_bytes
from conftest import PROXY_KIND, make_config, new_listener, recv_line, recv_until_eof

BULK = 64 << 20
CHUNK = 1 << 20


@pytest.mark.parametrize("mode", ["splice", "copy", "splice-refused"])
def test_64mib_each_way_sha256(backends, proxy_factory, clients, mode):
    """64 MiB each way, byte-exact: spliced, copied (splice off), and with every splice
    refused with EINVAL (debug builds inject it), which must fall back to copying."""
    a = backends.add("a")
    extra = {"tuning": {"splice": False}} if mode == "copy" else None
    env = {"SLUICE_FAULT_SPLICE": "EINVAL"} if mode == "splice-refused" else None
    if env and PROXY_KIND != "sluice":
        pytest.skip("fault injection is sluice's")
    p = proxy_factory(make_config({"web": new_listener()}, {"web": [a.addr]}, extra=extra), env=env)
    if env:
        if not any("fault injection" in line for line in p.lines):
            pytest.skip("this build has no fault injection (release build)")
    data = random.Random(0x51CE).randbytes(BULK)
    sent_sha = hashlib.sha256(data).hexdigest()
    s = clients.connect(p.addr(), timeout=30)
    send_errors = []

    def sender():
        try:
            view = memoryview(data)
            for off in range(0, BULK, CHUNK):
                s.sendall(view[off:off + CHUNK])
            s.shutdown(socket.SHUT_WR)
        except Exception as exc:  # noqa: BLE001 - reported below
            send_errors.append(exc)

    t = threading.Thread(target=sender, name="bulk-sender")
    t.start()
    try:
        assert recv_line(s) == b"a"
        h = hashlib.sha256()
        got = 0
        while True:
            chunk = s.recv(CHUNK)
            if not chunk:
                break
            h.update(chunk)
            got += len(chunk)
    finally:
        t.join(60)
    assert not t.is_alive(), "sender thread did not finish"
    assert not send_errors, f"sending failed: {send_errors}"
    assert got == BULK, f"echo: received {got} bytes, sent {BULK}"
    assert h.hexdigest() == sent_sha, "echoed data differs from sent data (SHA-256)"
    rec = backends.wait_conn()
    assert rec.eof.wait(10), "backend never saw EOF"
    assert rec.received == BULK, f"backend received {rec.received} bytes, client sent {BULK}"
    assert rec.hexdigest() == sent_sha, "backend received data differs from sent data (SHA-256)"
    if mode == "splice-refused":
        mark = p.mark()
        p.proc.send_signal(signal.SIGUSR1)
        line = p.wait_line(r"splice_fallbacks=\d+", timeout=5, since=mark)
        assert "splice_fallbacks=0 " not in line, f"no fallback was counted: {line}"


COPY = {"tuning": {"splice": False}}


@pytest.mark.parametrize("size,extra", [(1 << 20, None), (1 << 20, COPY), (100_000, COPY), (10, COPY), (10, None)],
                         ids=["1MiB-splice", "1MiB-copy", "100k-copy", "10B-copy", "10B-splice"])
def test_half_close_client_first(backends, proxy_factory, clients, size, extra):
    """Client sends then SHUT_WR at once (data and FIN may arrive together, before the
    upstream is connected); backend replies only after seeing EOF."""
    if extra and PROXY_KIND != "sluice":
        pytest.skip("tuning.splice is sluice's")
    reply_size = 4 << 20
    a = backends.add("a", mode="reply_after_eof", reply_size=reply_size)
    p = proxy_factory(make_config({"web": new_listener()}, {"web": [a.addr]}, extra=extra))
    payload = random.Random(7).randbytes(size)
    s = clients.connect(p.addr(), timeout=10)
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
    rec = backends.wait_conn(timeout=5)
    assert rec.eof.wait(5), "backend did not see the client's EOF through the proxy"
    assert rec.received == len(payload)
    reply = recv_until_eof(s)
    name, digest, body = reply.split(b"\n", 2)
    assert name == b"a"
    assert digest.decode() == hashlib.sha256(payload).hexdigest(), \
        "backend got different bytes than the client sent"
    assert len(body) == reply_size, f"reply after EOF truncated: {len(body)} of {reply_size}"
    assert body == pattern_bytes(reply_size), "reply after EOF corrupted"
    assert rec.closed.wait(5)


def test_half_close_server_first(backends, proxy_factory, clients):
    """Backend shuts its write side first; the client can still send everything."""
    a = backends.add("a", mode="close_write_first")
    p = proxy_factory(make_config({"web": new_listener()}, {"web": [a.addr]}))
    s = clients.connect(p.addr(), timeout=10)
    assert recv_line(s) == b"a"
    assert s.recv(1) == b"", "client should see the backend's EOF"
    payload = random.Random(8).randbytes(2 << 20)
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
    rec = backends.wait_conn(timeout=5)
    assert rec.eof.wait(5), "backend did not see the client's EOF"
    assert rec.received == len(payload), \
        f"backend received {rec.received} of {len(payload)} bytes after its own SHUT_WR"
    assert rec.hexdigest() == hashlib.sha256(payload).hexdigest()

"""Graceful stop (drain) and the idle tunnel timeout."""

import signal
import socket
import time

import pytest

from conftest import connect, make_config, new_listener, recv_exact, recv_line


def roundtrip(sock, payload: bytes) -> None:
    sock.sendall(payload)
    assert recv_exact(sock, len(payload)) == payload


def wait_refused(addr: str, within: float) -> float:
    """Poll connects until one is refused; return the time it took."""
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < within:
        try:
            c = connect(addr, timeout=1)
        except ConnectionRefusedError:
            return time.monotonic() - t0
        except OSError as exc:
            last = exc
        else:
            c.close()
            last = "accepted"
        time.sleep(0.01)  # bounded poll: the listener closes asynchronously to the signal
    raise AssertionError(f"new connections still not refused {within}s after the stop "
                         f"signal (last attempt: {last})")


def test_graceful_stop_drains_open_connection(backends, proxy_factory, clients):
    a = backends.add("a")
    cfg = make_config({"web": new_listener()}, {"web": [a.addr]}, timeouts={"drain": "8s"})
    p = proxy_factory(cfg)
    s = clients.connect(p.addr(), timeout=5)
    assert recv_line(s) == b"a"
    roundtrip(s, b"before stop\n")

    p.graceful_stop()
    took = wait_refused(p.addr(), within=1.0)
    assert p.proc.poll() is None, f"exited (rc={p.proc.returncode}) with a connection open"

    # the open connection still works, both ways
    roundtrip(s, b"during drain\n" * 1000)
    assert p.proc.poll() is None

    s.shutdown(socket.SHUT_WR)
    assert s.recv(1) == b"", "expected EOF after our SHUT_WR (backend closes)"
    s.close()
    t_close = time.monotonic()
    rc = p.wait_exit(6.0)
    waited = time.monotonic() - t_close
    assert rc is not None, "did not exit within 6s after the last connection closed"
    assert rc == 0, f"exit status {rc} after graceful stop"
    assert waited < 2.5, f"exited {waited:.2f}s after the last connection closed " \
                         f"(refused new connects after {took:.3f}s)"


def test_graceful_stop_drain_deadline(backends, proxy_factory, clients):
    a = backends.add("a")
    cfg = make_config({"web": new_listener()}, {"web": [a.addr]}, timeouts={"drain": "1s"})
    p = proxy_factory(cfg)
    s = clients.connect(p.addr(), timeout=6)
    assert recv_line(s) == b"a"
    t0 = time.monotonic()
    p.graceful_stop()
    rc = p.wait_exit(5.0)
    elapsed = time.monotonic() - t0
    assert rc is not None, "did not exit within 5s although drain is 1s and a client stays idle"
    assert rc == 0, f"exit status {rc}"
    assert elapsed < 3.5, f"exit took {elapsed:.2f}s with drain 1s"
    try:
        assert s.recv(1) == b""
    except ConnectionResetError:
        pass


def test_idle_tunnel_is_closed(backends, proxy_factory, clients):
    a = backends.add("a")
    cfg = make_config({"web": new_listener()}, {"web": [a.addr]}, timeouts={"tunnel": "1s"})
    p = proxy_factory(cfg)
    s = clients.connect(p.addr(), timeout=6)
    assert recv_line(s) == b"a"
    t0 = time.monotonic()
    try:
        data = s.recv(1)
    except ConnectionResetError:
        data = b""
    except socket.timeout:
        data = None
    elapsed = time.monotonic() - t0
    assert data == b"", f"idle tunnel not closed after {elapsed:.2f}s (got {data!r})"
    assert 0.5 <= elapsed < 4.0, f"idle tunnel closed after {elapsed:.2f}s, expected about 1s"
    rec = backends.wait_conn()
    assert rec.closed.wait(4), "backend side of the idle tunnel was not closed"


def test_active_tunnel_is_not_closed(backends, proxy_factory, clients):
    """The tunnel timeout counts inactivity: traffic every 0.25s keeps it open past 1s."""
    a = backends.add("a")
    cfg = make_config({"web": new_listener()}, {"web": [a.addr]}, timeouts={"tunnel": "1s"})
    p = proxy_factory(cfg)
    s = clients.connect(p.addr(), timeout=3)
    assert recv_line(s) == b"a"
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < 2.5:
        roundtrip(s, f"tick {i}\n".encode())
        i += 1
        time.sleep(0.25)  # traffic pattern, not synchronisation
    roundtrip(s, b"still alive\n")


@pytest.mark.sluice_only
def test_sigint_stops_like_sigterm(backends, proxy_factory):
    a = backends.add("a")
    cfg = make_config({"web": new_listener()}, {"web": [a.addr]}, timeouts={"drain": "5s"})
    p = proxy_factory(cfg)
    t0 = time.monotonic()
    p.proc.send_signal(signal.SIGINT)
    rc = p.wait_exit(4.0)
    assert rc == 0, f"exit status {rc} ({time.monotonic() - t0:.2f}s after SIGINT, idle)"
    with pytest.raises(ConnectionRefusedError):
        connect(p.addr(), timeout=2).close()

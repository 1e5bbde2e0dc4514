"""Backends for the snapshot-swap tests (``test_swap_safety.py``).

``HeldHTTPBackend`` is an ``HTTPBackend`` whose requests with ``mode=hold`` wait until the
test calls ``release()`` and are then answered as ``echo``; a request with ``mode=hangup``
waits the same way and then closes the connection without an answer (once per backend;
later ones are answered as ``echo``).  ``held`` counts requests that arrived in either mode,
so a test can wait until a request is in flight at the backend.

``GatedHTTPBackend`` and ``GatedRawBackend`` keep a connect to them pending: they listen
with a backlog of 1 and fill the accept queue with two connections of their own, so the
kernel drops further SYNs and the proxy's connect stays in SYN-SENT.  ``wait_pending()``
waits for such a connect (seen in ``/proc/net/tcp``); ``open()`` empties the queue, after
which the connect completes on the next SYN retransmission (about a second after the first
SYN) and the backend serves it as its base class does.  Loopback only, no routing tricks.

``cookie_value(addr, service)`` is the sticky-session cookie value sluice gives an endpoint
of a ``cookie`` service (``EndpointCookies.id``): 16 hex digits of a hash of the endpoint's
address and port and the service's name.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from typing import List

from http_backends import HTTPBackend
from tls_backends import RawBackend

MASK = (1 << 64) - 1


def _mix(x: int) -> int:
    z = (x + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def cookie_value(addr: str, service: str) -> str:
    host, _, port = addr.rpartition(":")
    ip = ipaddress.ip_address(host.strip("[]"))
    if ip.version == 4:
        address_hash = _mix(int(ip))
    else:
        n = int(ip)
        address_hash = _mix((n >> 64) ^ _mix(n & MASK))
    h = _mix(address_hash ^ int(port))
    for byte in service.encode():
        h = ((h ^ byte) * 0x00000100000001B3) & MASK
    return f"{_mix(h):016x}"


# --------------------------------------------------------------------------
# held requests

class HeldHTTPBackend(HTTPBackend):
    def __init__(self, name: str, mode: str = "echo", host: str = "127.0.0.1"):
        self.released = threading.Event()
        self.held = 0
        self.hangups_left = 1
        super().__init__(name, mode, host)

    def release(self) -> None:
        self.released.set()

    def wait_held(self, n: int, timeout: float = 5.0) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: self.held >= n, timeout):
                raise AssertionError(f"backend {self.name}: {self.held} held requests, "
                                     f"waited {timeout}s for {n}")

    def _handle(self, sock, reader, info, head: bytes) -> bool:
        first = head.split(b"\r\n", 1)[0]
        hangup = b"mode=hangup" in first
        if hangup or b"mode=hold" in first:
            with self.cond:
                self.held += 1
                self.cond.notify_all()
                if hangup:
                    hangup = self.hangups_left > 0
                    self.hangups_left -= 1
            if not self.released.wait(15):
                return False
            if hangup:
                return False  # close without an answer
            head = head.replace(b"mode=hold", b"mode=echo", 1).replace(b"mode=hangup",
                                                                      b"mode=echo", 1)
        return super()._handle(sock, reader, info, head)


# --------------------------------------------------------------------------
# pending connects

def syn_sent_to(port: int) -> int:
    """Sockets on this host in SYN-SENT towards 127.0.0.1:port or [::1]:port."""
    n = 0
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(f) as fh:
                next(fh)
                for line in fh:
                    parts = line.split()
                    if parts[3] == "02" and int(parts[2].rsplit(":", 1)[1], 16) == port:
                        n += 1
        except FileNotFoundError:
            pass
    return n


class _Gated:
    """Mixin: the accept loop starts only at ``open()``; until then SYNs are dropped."""

    FILLERS = 2  # backlog 1: the queue holds two, the third SYN is dropped

    def _gate_init(self) -> None:
        self.gate_open = threading.Event()

    def _gate_fill(self) -> None:
        self.lsock.listen(1)
        self.fillers: List[socket.socket] = [
            socket.create_connection((self.host, self.port), timeout=2)
            for _ in range(self.FILLERS)]

    def _accept_loop(self) -> None:
        self.gate_open.wait()
        super()._accept_loop()

    def wait_pending(self, n: int = 1, timeout: float = 5.0) -> None:
        """Waits until n connects to this backend are pending (SYN-SENT). No event tells
        this, so /proc/net/tcp is polled (bounded)."""
        deadline = time.monotonic() + timeout
        while syn_sent_to(self.port) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"gated backend {self.name}: {syn_sent_to(self.port)} "
                                     f"pending connects after {timeout}s, expected {n}")
            time.sleep(0.005)

    def open(self) -> None:
        self.gate_open.set()
        for s in self.fillers:
            s.close()

    def real_conns(self) -> list:
        with self.cond:
            return list(self.conns[self.FILLERS:])

    def shutdown(self) -> None:
        self.gate_open.set()
        for s in getattr(self, "fillers", []):
            s.close()
        super().shutdown()


class GatedHTTPBackend(_Gated, HTTPBackend):
    def __init__(self, name: str, mode: str = "echo", host: str = "127.0.0.1"):
        self._gate_init()
        super().__init__(name, mode, host)
        self._gate_fill()


class GatedRawBackend(_Gated, RawBackend):
    def __init__(self, name: str, host: str = "127.0.0.1"):
        self._gate_init()
        super().__init__(name, host)
        self._gate_fill()

    def wait_real_conn(self, timeout: float = 5.0):
        return self.wait_conn(self.FILLERS, timeout)

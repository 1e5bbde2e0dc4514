"""Clients for the rollout tests: wrk runs, WebSockets kept open, a slow download, and a
client that opens a new connection every millisecond."""

from __future__ import annotations

import base64
import errno
import os
import re
import socket
import subprocess
import threading
import time
from typing import List, Optional

from conftest import parse_addr
from http_backends import BufReader, read_response


def wrk(url: str, seconds: float, connections: int = 50, threads: int = 2) -> dict:
    """Runs wrk (keep-alive) and returns its counts and latency percentiles (ms)."""
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{int(round(seconds))}s", "--latency",
           "--timeout", "5s", url]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         timeout=seconds + 30).stdout
    result = {"text": out, "requests": 0, "non2xx": 0, "connect": 0, "read": 0, "write": 0,
              "timeout": 0, "p50": None, "p99": None}
    m = re.search(r"(\d+) requests in", out)
    if m:
        result["requests"] = int(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        result["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        for key, value in zip(("connect", "read", "write", "timeout"), m.groups()):
            result[key] = int(value)
    for pct, key in (("50", "p50"), ("99", "p99")):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if m:
            scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
            result[key] = float(m.group(1)) * scale
    return result


def socket_errors(result: dict) -> int:
    return result["connect"] + result["read"] + result["write"] + result["timeout"]


class WebSocket:
    """A WebSocket through the proxy to an echoing backend (http_backends' upgrade path)."""

    def __init__(self, addr: str, timeout: float = 5.0):
        host, port = parse_addr(addr)
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /ws HTTP/1.1\r\nHost: app\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
        self.reader = BufReader(self.sock)
        response = read_response(self.reader, allow_1xx=True)
        assert response.status == 101, response
        hello = self.reader.read_exact(2)
        self.reader.read_exact(hello[1])

    def echo(self, payload: bytes) -> None:
        """Sends a masked text frame; the backend sends the same bytes back."""
        mask = os.urandom(4)
        frame = bytes([0x81, 0x80 | len(payload)]) + mask + bytes(
            b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(frame)
        got = self.reader.read_exact(len(frame))
        assert got == frame

    def close(self) -> None:
        try:
            self.sock.sendall(bytes([0x88, 0x80]) + os.urandom(4))
        except OSError:
            pass
        self.sock.close()


class SlowDownload(threading.Thread):
    """GET of `size` bytes read at about `rate` bytes a second; `error` or `received`."""

    def __init__(self, addr: str, size: int, rate: int):
        super().__init__(daemon=True, name="slow-download")
        self.addr, self.size, self.rate = addr, size, rate
        self.received = 0
        self.status: Optional[int] = None
        self.error: Optional[str] = None
        self.started_body = threading.Event()

    def run(self) -> None:
        try:
            host, port = parse_addr(self.addr)
            s = socket.create_connection((host, port), timeout=10)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            s.sendall(f"GET /?mode=download&size={self.size} HTTP/1.1\r\nHost: app\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(4096)
                if not chunk:
                    raise EOFError(f"EOF in the head: {head!r}")
                head += chunk
            head, _, rest = head.partition(b"\r\n\r\n")
            self.status = int(head.split(b" ")[1])
            self.received = len(rest)
            self.started_body.set()
            start = time.monotonic()
            while self.received < self.size:
                chunk = s.recv(min(32 * 1024, self.size - self.received))
                if not chunk:
                    raise EOFError(f"EOF after {self.received} of {self.size} bytes")
                self.received += len(chunk)
                ahead = self.received / self.rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)
            s.close()
        except Exception as error:  # noqa: BLE001 - reported by the test
            self.error = repr(error)
            self.started_body.set()


class Connector(threading.Thread):
    """Opens a new connection every `interval` seconds and counts how each went; every
    `request_every`-th one also sends a request and reads its response."""

    def __init__(self, addr: str, interval: float = 0.001, request_every: int = 0):
        super().__init__(daemon=True, name="connector")
        self.addr = parse_addr(addr)
        self.interval = interval
        self.request_every = request_every
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.refused = 0
        self.failed: List[str] = []
        self.requests_ok = 0
        self.refused_at: List[float] = []

    def run(self) -> None:
        n = 0
        next_at = time.monotonic()
        while not self.stopping.is_set():
            n += 1
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(3)
            try:
                s.connect(self.addr)
                if self.request_every and n % self.request_every == 0:
                    s.sendall(b"GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
                    response = read_response(BufReader(s))
                    if response.status != 200:
                        raise AssertionError(f"status {response.status}")
                    with self.lock:
                        self.requests_ok += 1
                with self.lock:
                    self.ok += 1
            except ConnectionRefusedError:
                with self.lock:
                    self.refused += 1
                    self.refused_at.append(time.monotonic())
            except Exception as error:  # noqa: BLE001 - counted
                with self.lock:
                    self.failed.append(repr(error))
            finally:
                s.close()
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.monotonic()

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


def connect_refused(addr: str) -> bool:
    host, port = parse_addr(addr)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect((host, port))
        return False
    except ConnectionRefusedError:
        return True
    except OSError as error:
        return error.errno == errno.ECONNREFUSED
    finally:
        s.close()

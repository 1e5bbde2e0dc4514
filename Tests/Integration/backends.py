"""Loopback TCP backends for the integration tests.

A ``BackendSet`` runs one asyncio loop in a background thread and serves any
number of named TCP backends on it, each bound to port 0 of 127.0.0.1 or ::1.
Every accepted connection gets a ``ConnRecord`` that the tests can inspect
(bytes received, SHA-256 of what was received, EOF seen, closed).

Modes (per backend):

``echo``            write ``NAME\\n`` on accept, then echo everything read until
                    EOF, then close.
``reply_after_eof`` write nothing until the peer's EOF, then write
                    ``NAME\\n<sha256 of received>\\n`` followed by ``reply_size``
                    bytes of ``pattern_bytes()`` and close.
``close_write_first`` write ``NAME\\n`` then shut the write side at once; keep
                    reading (and hashing) until EOF, then close.
``source``          write ``NAME\\n`` then ``reply_size`` bytes of
                    ``pattern_bytes()``, then close (ignores input).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import itertools
import random
import socket
import threading
import time
from typing import Callable, Dict, List, Optional

READ_SIZE = 256 * 1024
TAIL_KEEP = 64 * 1024

MODES = ("echo", "reply_after_eof", "close_write_first", "source")


@functools.lru_cache(maxsize=8)
def pattern_bytes(size: int) -> bytes:
    """Deterministic pseudo-random payload of ``size`` bytes (cached)."""
    return random.Random(size).randbytes(size)


def format_addr(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ConnRecord:
    _ids = itertools.count(1)

    def __init__(self, backend: "Backend", peer):
        self.id = next(self._ids)
        self.backend = backend
        self.name = backend.name
        self.peer = peer
        self.accepted_at = time.monotonic()
        self.received = 0
        self.sha = hashlib.sha256()
        self.tail = bytearray()
        self.eof = threading.Event()
        self.closed = threading.Event()
        self.error: Optional[str] = None

    def feed(self, data: bytes) -> None:
        self.received += len(data)
        self.sha.update(data)
        self.tail += data
        if len(self.tail) > TAIL_KEEP:
            del self.tail[: len(self.tail) - TAIL_KEEP]

    def hexdigest(self) -> str:
        return self.sha.hexdigest()

    def __repr__(self) -> str:
        return (f"<conn #{self.id} {self.name} rx={self.received} "
                f"eof={self.eof.is_set()} closed={self.closed.is_set()} err={self.error}>")


class Backend:
    def __init__(self, owner: "BackendSet", name: str, mode: str, host: str, reply_size: int):
        if mode not in MODES:
            raise ValueError(f"unknown backend mode {mode!r}")
        self.owner = owner
        self.name = name
        self.mode = mode
        self.host = host
        self.reply_size = reply_size
        self.port = 0
        self.server: Optional[asyncio.base_events.Server] = None
        self.conns: List[ConnRecord] = []
        self.active = 0

    @property
    def addr(self) -> str:
        return format_addr(self.host, self.port)

    # Runs on the loop thread.
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        rec = ConnRecord(self, writer.get_extra_info("peername"))
        self.owner._changed(lambda: (self.conns.append(rec), self._inc(1)))
        try:
            await getattr(self, "_mode_" + self.mode)(rec, reader, writer)
        except (ConnectionError, OSError) as exc:
            rec.error = f"{type(exc).__name__}: {exc}"
        finally:
            try:
                writer.close()
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass
            rec.closed.set()
            self.owner._changed(lambda: self._inc(-1))

    def _inc(self, delta: int) -> None:
        self.active += delta

    def _hello(self) -> bytes:
        return self.name.encode() + b"\n"

    async def _mode_echo(self, rec, reader, writer):
        writer.write(self._hello())
        await writer.drain()
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                break
            rec.feed(data)
            writer.write(data)
            await writer.drain()
        rec.eof.set()

    async def _mode_reply_after_eof(self, rec, reader, writer):
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                break
            rec.feed(data)
        rec.eof.set()
        writer.write(self._hello() + rec.hexdigest().encode() + b"\n")
        await self._write_chunked(writer, pattern_bytes(self.reply_size))

    async def _mode_close_write_first(self, rec, reader, writer):
        writer.write(self._hello())
        await writer.drain()
        writer.write_eof()
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                break
            rec.feed(data)
        rec.eof.set()

    async def _mode_source(self, rec, reader, writer):
        writer.write(self._hello())
        await self._write_chunked(writer, pattern_bytes(self.reply_size))

    @staticmethod
    async def _write_chunked(writer, data: bytes) -> None:
        view = memoryview(data)
        for off in range(0, len(view), READ_SIZE):
            writer.write(view[off:off + READ_SIZE])
            await writer.drain()


class BackendSet:
    """N named backends served from one asyncio loop thread."""

    def __init__(self):
        self.backends: Dict[str, Backend] = {}
        self._cond = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="backends", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def _call(self, coro, timeout: float = 10.0):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _changed(self, fn: Callable[[], object]) -> None:
        with self._cond:
            fn()
            self._cond.notify_all()

    def add(self, name: str, mode: str = "echo", host: str = "127.0.0.1",
            reply_size: int = 1 << 20) -> Backend:
        if name in self.backends:
            raise ValueError(f"duplicate backend {name}")
        be = Backend(self, name, mode, host, reply_size)

        async def start():
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            server = await asyncio.start_server(be.handle, host=host, port=0, family=family,
                                                backlog=4096, reuse_address=True)
            return server

        be.server = self._call(start())
        be.port = be.server.sockets[0].getsockname()[1]
        self.backends[name] = be
        return be

    def __getitem__(self, name: str) -> Backend:
        return self.backends[name]

    def all_conns(self) -> List[ConnRecord]:
        with self._cond:
            return [c for be in self.backends.values() for c in be.conns]

    def total_active(self) -> int:
        with self._cond:
            return sum(be.active for be in self.backends.values())

    def _count_active_nolock(self) -> int:
        return sum(be.active for be in self.backends.values())

    def total_accepted(self) -> int:
        with self._cond:
            return sum(len(be.conns) for be in self.backends.values())

    def wait_until(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait (on accept/close notifications) until predicate() is true."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
                self._cond.wait(left)

    def wait_conn(self, timeout: float = 5.0, after: int = 0) -> ConnRecord:
        """Wait for the (after+1)-th accepted connection over all backends."""
        self.wait_until(lambda: self._count_nolock() > after, timeout,
                        f"backend accept #{after + 1}")
        conns = sorted(self.all_conns(), key=lambda c: c.id)
        return conns[after]

    def _count_nolock(self) -> int:
        return sum(len(be.conns) for be in self.backends.values())

    def close(self, name: Optional[str] = None) -> None:
        """Stop listening (one backend or all). Open connections are left alone."""
        targets = [self.backends[name]] if name else list(self.backends.values())

        async def stop(be):
            be.server.close()

        for be in targets:
            if be.server is not None:
                self._call(stop(be))

    def shutdown(self) -> None:
        self.close()

        async def cancel_all():
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self._call(cancel_all(), timeout=5)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

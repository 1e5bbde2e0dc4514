"""Many concurrent connections and no descriptor leak."""

import os
import socket
import struct
import time
from collections import Counter

from conftest import connect, fd_count, make_config, new_listener, recv_exact, recv_line

N = 2000


def fd_kinds(pid: int) -> Counter:
    kinds = Counter()
    d = f"/proc/{pid}/fd"
    for fd in os.listdir(d):
        try:
            target = os.readlink(f"{d}/{fd}")
        except OSError:
            continue
        kinds[target.split(":")[0] if ":" in target else "file"] += 1
    return kinds


def settle_fds(pid: int, timeout: float = 5.0, stable_for: float = 0.3) -> int:
    """Bounded poll until the descriptor count stops changing."""
    deadline = time.monotonic() + timeout
    last, since = fd_count(pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = fd_count(pid)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= stable_for:
            return now
    return last


def open_and_echo(addr: str, n: int, backends, tag: str):
    socks = []
    try:
        for i in range(n):
            socks.append(connect(addr, timeout=15))
        backends.wait_until(lambda: backends._count_active_nolock() >= n, 30,
                            f"{n} connections open at the backends at once")
        payloads = [f"{tag} {i:05d} {os.urandom(12).hex()}\n".encode() for i in range(n)]
        for s, pl in zip(socks, payloads):
            s.sendall(pl)
        names = []
        for i, (s, pl) in enumerate(zip(socks, payloads)):
            names.append(recv_line(s).decode())
            echo = recv_exact(s, len(pl))
            assert echo == pl, f"connection {i}: echo mismatch"
        return names
    finally:
        for s in socks:
            s.close()


def test_2000_concurrent_connections_no_fd_leak(three, proxy_factory):
    addr = new_listener()
    cfg = make_config({"web": addr}, {"web": [three[n].addr for n in "abc"]},
                      limits={"maxConnections": 10000})
    p = proxy_factory(cfg, workers=1)

    # warm-up so that pools and caches are at their steady size before the baseline
    open_and_echo(addr, 200, three, "warm")
    three.wait_until(lambda: three._count_active_nolock() == 0, 20, "warm-up connections closed")
    baseline = settle_fds(p.pid)
    kinds_before = fd_kinds(p.pid)

    names = open_and_echo(addr, N, three, "main")
    counts = Counter(names)
    assert sum(counts.values()) == N
    assert set(counts) == {"a", "b", "c"}
    assert max(counts.values()) - min(counts.values()) <= 1, f"round robin uneven: {counts}"

    three.wait_until(lambda: three._count_active_nolock() == 0, 30,
                     "all backend connections closed after the clients closed")
    deadline = time.monotonic() + 10
    now = fd_count(p.pid)
    while now > baseline and time.monotonic() < deadline:
        time.sleep(0.05)  # bounded poll: closes in the proxy are asynchronous
        now = fd_count(p.pid)
    assert now <= baseline, (f"fd count {now} did not return to {baseline} within 10s; "
                             f"before {dict(kinds_before)}, after {dict(fd_kinds(p.pid))}")


def test_aborted_transfers_release_everything(backends, proxy_factory):
    """Clients reset connections while the backend is still sending: the proxy closes the
    backend side and keeps no descriptors (beyond its small bounded pipe pool)."""
    src = backends.add("src", mode="source", reply_size=4 << 20)
    addr = new_listener()
    pool = 4
    cfg = make_config({"web": addr}, {"web": [src.addr]},
                      extra={"tuning": {"pipePool": pool}})
    p = proxy_factory(cfg, workers=1)

    def abort_many(n: int) -> None:
        socks = [connect(addr, timeout=10) for _ in range(n)]
        try:
            for s in socks:
                assert recv_line(s) == b"src"
                recv_exact(s, 64 << 10)
        finally:
            for s in socks:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()  # RST with data still in flight both in the proxy and the backend
        backends.wait_until(lambda: backends._count_active_nolock() == 0, 15,
                            "backend connections closed after the clients reset theirs")

    abort_many(50)
    baseline = settle_fds(p.pid)
    kinds_before = fd_kinds(p.pid)
    abort_many(300)
    deadline = time.monotonic() + 10
    now = fd_count(p.pid)
    while now > baseline + 2 * pool and time.monotonic() < deadline:
        time.sleep(0.05)  # bounded poll: closes in the proxy are asynchronous
        now = fd_count(p.pid)
    assert now <= baseline + 2 * pool, (
        f"fd count {now} vs {baseline} before (pool of {pool} pipes allowed); "
        f"before {dict(kinds_before)}, after {dict(fd_kinds(p.pid))}")
    assert p.proc.poll() is None

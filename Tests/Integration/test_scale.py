"""Many concurrent connections and no descriptor leak."""

import os
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

"""SIGHUP reload: under traffic, bad files, listeners added and removed."""

import os
import socket
import threading
import time
from collections import Counter

import pytest

from conftest import connect, make_config, new_listener, recv_exact, recv_line

pytestmark = pytest.mark.sluice_only


def roundtrip(sock, payload: bytes) -> None:
    sock.sendall(payload)
    assert recv_exact(sock, len(payload)) == payload


class Traffic:
    """Client threads that connect, read the backend name, echo once, close; in a loop."""

    def __init__(self, addr: str, threads: int = 4):
        self.addr = addr
        self.stop = threading.Event()
        self.cond = threading.Condition()
        # (t_connect_start, name or None, error or None, t_name_received): a connection was
        # routed between the two times (the backend sends its name once the proxy connected).
        self.results = []
        self.threads = [threading.Thread(target=self._loop, args=(i,), daemon=True)
                        for i in range(threads)]

    def _loop(self, idx: int) -> None:
        n = 0
        while not self.stop.is_set():
            t0 = time.monotonic()
            name = err = None
            t_named = float("inf")
            try:
                s = connect(self.addr, timeout=5)
                try:
                    name = recv_line(s).decode()
                    t_named = time.monotonic()
                    roundtrip(s, f"{idx}:{n}:{os.urandom(8).hex()}\n".encode())
                finally:
                    s.close()
            except Exception as exc:  # noqa: BLE001 - reported by the test
                err = f"{type(exc).__name__}: {exc}"
            n += 1
            with self.cond:
                self.results.append((t0, name, err, t_named))
                self.cond.notify_all()

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def wait_count(self, n: int, since: float, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while sum(1 for r in self.results if r[0] > since) < n:
                left = deadline - time.monotonic()
                assert left > 0, f"fewer than {n} connections completed in {timeout}s"
                self.cond.wait(left)

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(10)
        assert not any(t.is_alive() for t in self.threads), "traffic threads hung"
        return list(self.results)


@pytest.mark.parametrize("workers", [1, 2])
def test_reload_under_traffic(three, proxy_factory, clients, workers):
    listen = new_listener()
    p = proxy_factory(make_config({"web": listen}, {"web": [three["a"].addr, three["b"].addr]}),
                      workers=workers)

    long = clients.connect(listen, timeout=5)
    long_name = recv_line(long).decode()
    assert long_name in ("a", "b")
    roundtrip(long, b"long-lived before reload\n")

    traffic = Traffic(listen).start()
    try:
        traffic.wait_count(200, since=0, timeout=30)
        t_hup = time.monotonic()
        p.reload(make_config({"web": listen}, {"web": [three["c"].addr]}))
        t_reloaded = time.monotonic()
        traffic.wait_count(200, since=t_reloaded, timeout=30)
    finally:
        results = traffic.finish()

    errors = [r for r in results if r[2]]
    assert not errors, (f"{len(errors)} of {len(results)} connections failed around the reload; "
                        f"first: {errors[:5]}")
    # Routed before the SIGHUP (its name came back before it): the old table's.
    before = Counter(r[1] for r in results if r[3] < t_hup)
    after = Counter(r[1] for r in results if r[0] > t_reloaded)
    assert set(before) <= {"a", "b"}, f"before the reload: {before}"
    assert set(after) == {"c"}, f"connections opened after 'reloaded generation=2': {after}"

    token = f"long-lived after reload {os.urandom(8).hex()}\n".encode()
    roundtrip(long, token)
    old = three[long_name]
    assert any(token in bytes(c.tail) for c in old.conns), \
        f"the long-lived connection's data did not reach its old backend {long_name}"
    long.shutdown(socket.SHUT_WR)
    assert long.recv(1) == b""


@pytest.mark.parametrize("bad", [
    "listeners: [ {address: \n  - : : :\n",
    None,  # valid YAML, invalid value
], ids=["syntax", "semantic"])
def test_bad_reload_keeps_old_table(three, proxy_factory, clients, bad):
    listen = new_listener()
    good = make_config({"web": listen}, {"web": [three["a"].addr, three["b"].addr]})
    p = proxy_factory(good)
    if bad is None:
        bad = make_config({"web": listen}, {"web": [three["c"].addr]})
        bad["services"][0]["algorithm"] = "bogus"
    line = p.reload(bad, expect_ok=False)
    assert "reload failed" in line
    names = []
    for i in range(10):
        s = clients.connect(listen)
        names.append(recv_line(s).decode())
        roundtrip(s, f"after bad reload {i}\n".encode())
        s.close()
    assert set(names) == {"a", "b"}, f"old table not serving after a failed reload: {names}"
    assert p.proc.poll() is None


@pytest.mark.parametrize("workers", [1, 2])
def test_reload_adds_and_removes_listeners(three, proxy_factory, clients, workers):
    l1, l2 = new_listener(), new_listener()
    p = proxy_factory(make_config({"one": l1}, {"one": [three["a"].addr]}), workers=workers)
    with pytest.raises(ConnectionRefusedError):
        connect(l2, timeout=2).close()

    p.reload(make_config({"one": l1, "two": l2},
                         {"one": [three["a"].addr], "two": [three["b"].addr]}))
    s = clients.connect(l2)
    assert recv_line(s) == b"b", "added listener does not route to its service"
    roundtrip(s, b"new listener\n")
    s.close()
    s = clients.connect(l1)
    assert recv_line(s) == b"a"
    s.close()

    p.reload(make_config({"two": l2}, {"two": [three["b"].addr]}))
    # right after the 'reloaded' line the removed listener must refuse
    outcome = probe(l1)
    if outcome != "refused":
        later = wait_refused(l1, within=2.0)
        raise AssertionError(f"removed listener {l1} still {outcome} right after "
                             f"'reloaded generation=3' ({later})")
    s = clients.connect(l2)
    assert recv_line(s) == b"b"
    s.close()


def probe(addr: str) -> str:
    """'refused', or what an accepted connection saw."""
    try:
        c = connect(addr, timeout=2)
    except ConnectionRefusedError:
        return "refused"
    try:
        try:
            data = c.recv(16)
        except ConnectionResetError:
            return "accepted then reset"
        except socket.timeout:
            return "accepted, no data"
        return f"accepted and served (read {data!r})"
    finally:
        c.close()


def wait_refused(addr: str, within: float) -> str:
    t0 = time.monotonic()
    served = 0
    while time.monotonic() - t0 < within:
        if probe(addr) == "refused":
            return f"refused {time.monotonic() - t0:.3f}s later, after {served} more accepts"
        served += 1
        time.sleep(0.005)  # bounded poll, only to describe the failure
    return f"still accepting {within}s later"


def test_repeated_reloads_under_traffic(three, proxy_factory):
    """Six reloads in a row with two workers; after each 'reloaded' line every new
    connection reaches only the new endpoint, and no connection ever fails."""
    listen = new_listener()
    p = proxy_factory(make_config({"web": listen}, {"web": [three["a"].addr]}), workers=2)
    traffic = Traffic(listen, threads=6).start()
    windows = []  # [t_reloaded, t_next_sighup, target]
    try:
        traffic.wait_count(50, since=0, timeout=20)
        for target in "bcabca":
            t_hup = time.monotonic()
            if windows:
                windows[-1][1] = t_hup
            p.reload(make_config({"web": listen}, {"web": [three[target].addr]}))
            t = time.monotonic()
            windows.append([t, float("inf"), target])
            traffic.wait_count(50, since=t, timeout=20)
    finally:
        results = traffic.finish()
    errors = [r for r in results if r[2]]
    assert not errors, f"{len(errors)} of {len(results)} connections failed: {errors[:5]}"
    for i, (start, end, target) in enumerate(windows):
        # Started after this reload and routed before the next SIGHUP: this table's only.
        seen = Counter(r[1] for r in results if start < r[0] and r[3] < end)
        assert set(seen) == {target}, \
            f"after reload #{i + 1} (to {target}) new connections reached {dict(seen)}"

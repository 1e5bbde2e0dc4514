"""`sluice kube` at 10,000 Services: random changes (endpoints, new and deleted Services, host
annotations, ready flips of live endpoints) are applied incrementally; the table they converge
to must equal, exactly, the one a fresh process builds from the same API state (the content
hash and the `/routes` rendering), and live hosts must reach exactly their ready backends.

KUBE_SCALE_SERVICES sets the size (default 10000).
"""

from __future__ import annotations

import difflib
import http.client
import os
import random
import re
import time

import pytest

from conftest import free_port
from fake_kube import write_kubeconfig
from test_kube_e2e import KubeSluice, eventually, ips, kube, port  # noqa: F401 (fixture)

pytestmark = pytest.mark.sluice_only

SERVICES = int(os.environ.get("KUBE_SCALE_SERVICES", "10000"))
EPS = 10
HASH = re.compile(r"applied generation=(\d+) .* hash=([0-9a-f]{16})")
SYNC_TIMEOUT = 600


def filler_ip(i: int, j: int) -> str:
    n = i * EPS + j
    return f"127.{100 + n // 62500}.{(n // 250) % 250}.{n % 250 + 1}"


def last_hash(proc) -> tuple:
    found = HASH.findall(proc.stderr_text())
    assert found, proc.stderr_text()[-2000:]
    return int(found[-1][0]), found[-1][1]


def settle(proc, quiet: float = 2.0, timeout: float = 120.0):
    """Until no new `applied` line for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    seen = len(HASH.findall(proc.stderr_text()))
    still = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = len(HASH.findall(proc.stderr_text()))
        if now != seen:
            seen, still = now, time.monotonic()
        elif time.monotonic() - still >= quiet:
            return
    raise AssertionError("the table did not settle")


def routes_text(admin_port: int) -> str:
    """`/routes` without what differs between two processes serving the same table: the
    generation number and the endpoints' up/down state (passive health of this process)."""
    c = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=30)
    try:
        c.request("GET", "/routes")
        r = c.getresponse()
        body = r.read().decode()
        assert r.status == 200, body[:500]
    finally:
        c.close()
    body = re.sub(r'^\{"generation":\d+,', "{", body)
    return re.sub(r',"state":"(up|down)"', "", body)


def test_random_changes_at_10000_services_converge_exactly(kube):
    fake = kube.server(bookmark_interval=1)
    group = kube.pool.group(["a", "b", "c", "d"])
    live = ["a", "b", "c", "d"]
    with fake.batch():
        for i in range(SERVICES):
            fake.add_service("scale", f"svc-{i:05d}", host=f"svc-{i:05d}.example.com")
            fake.set_endpoints("scale", f"svc-{i:05d}", [filler_ip(i, j) for j in range(EPS)], 8080)
        fake.add_service("live", "web", host="web.example.com")
        fake.set_endpoints("live", "web", ips(group, live), port(group))
    p = kube.start(synced=False)
    p.wait_line(r"\bsynced\b", SYNC_TIMEOUT)
    eventually(lambda: kube.routes_to("web.example.com", set(live)), 10, "web reaches every backend")

    rng = random.Random(15)
    ready = {n: True for n in live}
    added = []
    for step in range(80):
        kind = rng.randrange(7)
        i = rng.randrange(SERVICES)
        name = f"svc-{i:05d}"
        if kind == 0:
            # Fewer or more endpoints, some not ready.
            eps = [(filler_ip(i, j), rng.random() < 0.8, None, None) for j in range(rng.randrange(1, EPS + 4))]
            fake.set_endpoints("scale", name, eps, 8080)
        elif kind == 1:
            new = f"new-{step}"
            with fake.batch():
                fake.add_service("scale", new, host=f"{new}.example.com")
                fake.set_endpoints("scale", new, [filler_ip(SERVICES + step, j) for j in range(3)], 8080)
            added.append(new)
        elif kind == 2:
            fake.delete_service("scale", name)
        elif kind == 3:
            # Another host, now and then one an earlier Service already has (a conflict).
            other = f"svc-{rng.randrange(SERVICES):05d}.example.com"
            hosts = f"{name}.example.com,{other}" if rng.random() < 0.5 else f"alias-{step}.example.com"
            fake.annotate("scale", name, {"serviceloadbalancer/lb.host": hosts})
        elif kind == 4:
            fake.annotate("scale", name, {"serviceloadbalancer/lb.algorithm": rng.choice(["leastconn", "source"])})
        elif kind == 5:
            n = rng.choice(live[1:])
            ready[n] = not ready[n]
            fake.set_conditions("live", "web-abcde", group[n].host, ready=ready[n], serving=ready[n],
                                terminating=False)
        else:
            fake.set_endpoints("scale", name, [], 8080)
        if rng.random() < 0.3:
            time.sleep(0.05)
    settle(p)
    want = {n for n, r in ready.items() if r}
    eventually(lambda: kube.routes_to("web.example.com", want), 10, "web reaches only its ready backends")
    for new in added[-3:]:
        assert kube.get(f"{new}.example.com").status in (200, 502, 503)
    generation, incremental_hash = last_hash(p)
    incremental_routes = routes_text(kube.admin_port)

    # A fresh process, on the same listener, from the same API state builds the same table.
    p.stop()
    admin = free_port()
    args = ["--http-address", kube.http, "--admin-address", f"127.0.0.1:{admin}",
            "--watch-idle-timeout", "2s", "--default-return-code", "404", "--balance-algorithm", "roundrobin",
            "--workers", "1", "--kubeconfig", str(write_kubeconfig(kube.tmp / "kubeconfig-fresh", fake))]
    fresh = KubeSluice(kube.tmp, args)
    kube.procs.append(fresh)
    fresh.start()
    fresh.wait_line(r"\bsynced\b", SYNC_TIMEOUT)
    settle(fresh)
    _, fresh_hash = last_hash(fresh)
    fresh_routes = routes_text(admin)
    (kube.tmp / "routes-incremental.txt").write_text(incremental_routes)
    (kube.tmp / "routes-fresh.txt").write_text(fresh_routes)
    diff = list(difflib.unified_diff(fresh_routes.splitlines(), incremental_routes.splitlines(), "fresh",
                                     "incremental", lineterm="", n=1))
    assert not diff, "\n".join(diff[:60])
    assert incremental_hash == fresh_hash, f"generation {generation}: incremental {incremental_hash}, fresh {fresh_hash}"

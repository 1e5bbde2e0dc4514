"""An idle keep-alive client holds no upstream connection: after its response the upstream
goes to the loop's pool, which keeps at most `limits.upstreamIdlePerEndpoint` per endpoint
once they have idled a second; the next request takes one from there."""

import json
import socket
import time

import pytest

from conftest import fd_count, make_config, new_listener
from http_backends import BufReader, http_listener, port_of, read_response

pytestmark = pytest.mark.sluice_only

CLIENTS = 60
CAP = 4


def test_idle_clients_hold_no_upstream_and_come_back_through_the_pool(http_backends, proxy_factory):
    a = http_backends.add("a")
    cfg = make_config({"web": http_listener(new_listener(), [{"host": "a.example.com", "service": "a"}])},
                      {"a": [a.addr]}, extra={"limits": {"upstreamIdlePerEndpoint": CAP}})
    p = proxy_factory(cfg)
    pid = p.proc.pid
    baseline = fd_count(pid)
    port = port_of(p.addr())
    clients = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(CLIENTS)]
    # Slow answers keep every request in flight at once: one upstream connection each.
    for s in clients:
        s.sendall(b"GET /?mode=slow&delay=0.5 HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
    readers = [BufReader(s) for s in clients]
    for r in readers:
        assert read_response(r).status == 200
    assert a.conn_count() == CLIENTS
    # Idle now: the pool is trimmed to CAP after a second; the clients' own sockets remain.
    deadline = time.monotonic() + 5
    while fd_count(pid) > baseline + CLIENTS + CAP and time.monotonic() < deadline:
        time.sleep(0.1)  # bounded poll of /proc: the proxy logs nothing for a trim
    held = fd_count(pid) - baseline
    assert held <= CLIENTS + CAP, f"{CLIENTS} idle clients hold {held} descriptors (upstreams not released)"
    # Every client's next request is served, through the CAP pooled connections or new ones,
    # and the backend sees no more connections than it had plus what the pool had closed.
    for s, r in zip(clients, readers):
        s.sendall(b"GET /again HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
        response = read_response(r)
        assert response.status == 200
        assert json.loads(response.body)["target"] == "/again"
    # Sequential requests after the first one reuse a pooled connection: at most one new one.
    assert a.conn_count() <= CLIENTS + 1
    for s in clients:
        s.close()

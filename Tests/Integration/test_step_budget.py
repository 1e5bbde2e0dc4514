"""The per-wake step budget: a connection with more work than one wake allows is cut short
and resumed after the batch. Debug builds take SLUICE_STEP_BUDGET; with a budget of one or
two steps every data path runs through resumption, and every byte must still arrive."""

import hashlib
import json
import random
import signal
import socket
import threading

import pytest

from backends import pattern_bytes
from conftest import make_config, new_listener, recv_line, sluice_bin
from http_backends import BufReader, curl, http_listener, port_of, read_response

pytestmark = [
    pytest.mark.sluice_only,
    pytest.mark.skipif("debug" not in str(sluice_bin()), reason="SLUICE_STEP_BUDGET is read by debug builds"),
]

SIZE = 8 << 20


def resumes(p) -> int:
    """The loops' summed `resumes=` counters (SIGUSR1 report)."""
    mark = p.mark()
    p.proc.send_signal(signal.SIGUSR1)
    line = p.wait_line(r"resumes=\d+", timeout=5, since=mark)
    return int(line.rsplit("resumes=", 1)[1].split()[0])


@pytest.mark.parametrize("budget", ["1", "2"])
def test_tunnel_bytes_survive_resumption(backends, proxy_factory, clients, budget):
    a = backends.add("a")
    p = proxy_factory(make_config({"web": new_listener()}, {"web": [a.addr]}), env={"SLUICE_STEP_BUDGET": budget})
    data = random.Random(7).randbytes(SIZE)
    s = clients.connect(p.addr(), timeout=30)
    errors = []

    def sender():
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    t = threading.Thread(target=sender)
    t.start()
    assert recv_line(s) == b"a"
    h = hashlib.sha256()
    got = 0
    while chunk := s.recv(1 << 20):
        h.update(chunk)
        got += len(chunk)
    t.join(30)
    assert not errors, errors
    assert got == SIZE and h.hexdigest() == hashlib.sha256(data).hexdigest(), "echoed bytes differ"
    assert resumes(p) > 0, "the budget never cut a tunnel short"


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_http_bodies_and_pipelining_survive_resumption(http_backends, proxy_factory, tmp_path, framing):
    a = http_backends.add("a")
    cfg = make_config({"web": http_listener(new_listener(), [{"host": "a.example.com", "service": "a"}])},
                      {"a": [a.addr]})
    p = proxy_factory(cfg, env={"SLUICE_STEP_BUDGET": "1"})
    url = f"http://127.0.0.1:{port_of(p.addr())}"
    body = pattern_bytes(SIZE)
    up = tmp_path / "up.bin"
    up.write_bytes(body)
    extra = ["-H", "Transfer-Encoding: chunked"] if framing == "chunked" else []
    r = curl("-H", "Host: a.example.com", "-H", "Expect:", "-T", str(up), *extra, "-m", "60", url + "/u")
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    assert seen["body_len"] == SIZE and seen["body_sha256"] == hashlib.sha256(body).hexdigest()
    out = tmp_path / "down.bin"
    chunked = 1 if framing == "chunked" else 0
    r = curl("-H", "Host: a.example.com", "-o", str(out), "-m", "60",
             f"{url}/d?mode=download&size={SIZE}&chunked={chunked}")
    assert r.returncode == 0, r.stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() == hashlib.sha256(pattern_bytes(SIZE)).hexdigest()
    # Twenty pipelined requests in one write, answered in order.
    s = socket.create_connection(("127.0.0.1", port_of(p.addr())), timeout=10)
    s.sendall(b"".join(f"GET /p{i} HTTP/1.1\r\nHost: a.example.com\r\n\r\n".encode() for i in range(20)))
    reader = BufReader(s)
    for i in range(20):
        response = read_response(reader)
        assert response.status == 200
        assert response.json()["target"] == f"/p{i}", response
    s.close()
    assert resumes(p) > 0, "the budget never cut an exchange short"

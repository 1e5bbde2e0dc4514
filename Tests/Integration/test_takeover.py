"""Binary upgrades outside Kubernetes: `sluice run --takeover PATH` takes the listening
sockets from the process serving at PATH (SCM_RIGHTS), serves, then tells the old one to
drain. No connection is refused: the sockets and their accept queues never close."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import List

import pytest

from conftest import (READY_TIMEOUT, SluiceProcess, fd_count, make_config, new_listener, sluice_bin,
                      to_yaml)
from http_backends import BufReader, http_listener, read_response
from rollout_support import Connector, SlowDownload, WebSocket, socket_errors, wrk

pytestmark = pytest.mark.sluice_only


class TakeoverProcess(SluiceProcess):
    def __init__(self, workdir: Path, config: dict, socket_path: Path, workers: int = 2,
                 name: str = "sluice", admin: str = ""):
        super().__init__(workdir, config, workers)
        self.config_path = workdir / f"{name}.yaml"
        self.socket_path = socket_path
        self.admin = admin

    def command(self) -> List[str]:
        cmd = super().command() + ["--takeover", str(self.socket_path)]
        if self.admin:
            cmd += ["--admin-address", self.admin]
        return cmd


def config(addr: str, backend: str, **timeouts) -> dict:
    return make_config({"web": http_listener(addr, [], {"service": "web"})}, {"web": [backend]},
                       timeouts={"drain": "2s", **timeouts}, limits={"upstreamIdle": "1s"})


def get(addr: str, path: str = "/") -> int:
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n".encode())
        return read_response(BufReader(s)).status


@pytest.fixture
def started(tmp_path):
    procs: List[TakeoverProcess] = []

    def start(cfg, sock, name, **kw) -> TakeoverProcess:
        p = TakeoverProcess(tmp_path, cfg, sock, name=name, **kw)
        procs.append(p)
        return p.start()

    yield start
    for p in procs:
        p.stop()


def test_takeover_hands_over_and_old_drains(started, http_backends, tmp_path):
    backend = http_backends.add("app")
    addr = new_listener()
    admin = new_listener()
    sock = tmp_path / "takeover.sock"
    old = started(config(addr, backend.addr), sock, "old", admin=admin)
    old.wait_line(r"nothing serves at .*binding the listeners", 1)
    old.wait_line(r"takeover: the next process takes the listeners over at", 2)
    ws = WebSocket(addr)
    since = old.mark()
    new = started(config(addr, backend.addr), sock, "new", admin=admin)
    new.wait_line(r"takeover: serving on 2 listening sockets of pid %d; it drains now" % old.pid, 5)
    old.wait_line(r"takeover: passed 2 listening sockets to pid %d" % new.pid, 1, since)
    old.wait_line(r"stopping: pid %d took over the listeners" % new.pid, 2, since)
    # The old one keeps its WebSocket until the drain deadline; new requests reach the new one.
    ws.echo(b"old process draining")
    assert get(addr) == 200
    host, port = admin.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"GET /readyz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert read_response(BufReader(s)).status == 200
    assert old.proc.wait(5) == 0
    assert get(addr) == 200
    new.wait_line(r"takeover: the next process takes the listeners over at", 1)


def test_takeover_with_bad_config_leaves_old_serving(started, http_backends, tmp_path):
    backend = http_backends.add("app")
    addr = new_listener()
    sock = tmp_path / "takeover.sock"
    old = started(config(addr, backend.addr), sock, "old")
    old.wait_line(r"takeover: the next process takes the listeners over at", 2)
    bad = config(addr, backend.addr)
    bad["timeouts"]["drainDelay"] = "later"
    path = tmp_path / "bad.yaml"
    path.write_text(to_yaml(bad) + "\n")
    since = old.mark()
    out = subprocess.run([str(sluice_bin()), "run", "--config", str(path), "--takeover", str(sock)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=20)
    assert out.returncode == 1
    assert "timeouts.drainDelay" in out.stderr, out.stderr
    assert get(addr) == 200
    time.sleep(0.3)
    assert old.proc.poll() is None
    assert "takeover" not in "\n".join(old.lines[since:]), old.lines[since:]

    # A new process that passed its check but cannot start (a listener it cannot bind): the old
    # one logs the abandoned takeover and keeps serving; the next good takeover still works.
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    broken = config(addr, backend.addr)
    broken["listeners"].append({"name": "other", "address": "127.0.0.1:%d" % taken.getsockname()[1],
                                "protocol": "tcp", "service": "web"})
    path.write_text(to_yaml(broken) + "\n")
    out = subprocess.run([str(sluice_bin()), "run", "--config", str(path), "--takeover", str(sock)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=20)
    assert out.returncode == 1, out.stderr
    assert "listener 'other'" in out.stderr and "keeps serving" in out.stderr, out.stderr
    old.wait_line(r"takeover by pid \d+ abandoned .*still serving", 5, since)
    assert get(addr) == 200 and old.proc.poll() is None
    taken.close()
    new = started(config(addr, backend.addr), sock, "new")
    new.wait_line(r"takeover: serving on 2 listening sockets", 5)
    assert old.proc.wait(5) == 0
    assert get(addr) == 200


def test_systemd_notify_names_the_new_main_pid(started, http_backends, tmp_path):
    backend = http_backends.add("app")
    addr = new_listener()
    sock = tmp_path / "takeover.sock"
    notify_path = str(tmp_path / "notify.sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.settimeout(10)
    env = {"NOTIFY_SOCKET": notify_path}
    old = TakeoverProcess(tmp_path, config(addr, backend.addr), sock, name="old")
    old.env = env
    try:
        old.start()
        assert notify.recv(200).decode() == f"READY=1\nMAINPID={old.pid}"
        new = TakeoverProcess(tmp_path, config(addr, backend.addr), sock, name="new")
        new.env = env
        new.start()
        assert notify.recv(200).decode() == f"READY=1\nMAINPID={new.pid}"
        assert old.proc.wait(5) == 0
        new.stop()
    finally:
        old.stop()
        notify.close()


def test_twenty_upgrades_under_load(started, http_backends, tmp_path):
    backend = http_backends.add("app")
    addr = new_listener()
    sock = tmp_path / "takeover.sock"
    first = started(config(addr, backend.addr), sock, "p0")
    time.sleep(0.3)
    baseline = fd_count(first.pid)

    sockets = [WebSocket(addr) for _ in range(20)]
    download = SlowDownload(addr, size=8 << 20, rate=4 << 20)
    download.start()
    result = {}
    runner = threading.Thread(target=lambda: result.update(wrk(f"http://{addr}/", 14)))
    connector = Connector(addr, interval=0.001, request_every=25)
    runner.start()
    connector.start()
    time.sleep(0.5)
    procs = [first]
    for i in range(1, 21):
        p = started(config(addr, backend.addr), sock, f"p{i % 3}")
        p.wait_line(r"takeover: serving on 2 listening sockets of pid %d" % procs[-1].pid, 5)
        procs.append(p)
        time.sleep(0.4)
    runner.join(40)
    connector.stop()
    download.join(10)
    assert download.error is None and download.received == 8 << 20, download.error
    assert result["requests"] > 1000, result["text"]
    assert result["non2xx"] == 0 and socket_errors(result) == 0, result["text"]
    assert connector.refused == 0 and not connector.failed, (connector.refused, connector.failed[:5])
    # One connect a millisecond is the aim; on a loaded 2-core machine it gets fewer.
    assert connector.ok > 1000 and connector.requests_ok > 40, (connector.ok, connector.requests_ok)
    print(f"connects: {connector.ok} ok, {connector.refused} refused; wrk: {result['requests']} requests, p99 {result['p99']} ms")
    for p in procs[:-1]:
        assert p.proc.wait(5) == 0, p.stderr_text()
    for ws in sockets:
        ws.sock.close()
    last = procs[-1]
    deadline = time.monotonic() + 5
    while fd_count(last.pid) != baseline and time.monotonic() < deadline:
        time.sleep(0.1)
    assert fd_count(last.pid) == baseline, os.listdir(f"/proc/{last.pid}/fd")


def test_takeover_socket_from_the_config(proxy_factory, http_backends, tmp_path):
    backend = http_backends.add("app")
    addr = new_listener()
    cfg = config(addr, backend.addr)
    cfg["takeoverSocket"] = str(tmp_path / "from-config.sock")
    old = proxy_factory(cfg, workers=2)
    old.wait_line(r"takeover: the next process takes the listeners over at .*from-config.sock", 2)
    new = TakeoverProcess(tmp_path, cfg, tmp_path / "from-config.sock", name="new")
    new.command = lambda: [str(sluice_bin()), "run", "--config", str(new.config_path), "--workers", "2"]
    try:
        new.start()
        new.wait_line(r"takeover: serving on 2 listening sockets of pid %d" % old.pid, 5)
        assert old.proc.wait(5) == 0
        assert get(addr) == 200
    finally:
        new.stop()


@pytest.mark.parametrize("value, message", [
    ("''", "takeoverSocket: must be a socket path of 1 to 107 bytes"),
    ("/" + "x" * 120, "takeoverSocket: must be a socket path of 1 to 107 bytes"),
])
def test_bad_takeover_socket_named(tmp_path, value, message):
    cfg = to_yaml(make_config({"web": "127.0.0.1:1"}, {"web": ["127.0.0.1:2"]}))
    path = tmp_path / "bad.yaml"
    path.write_text(f"takeoverSocket: {value}\n" + cfg + "\n")
    out = subprocess.run([str(sluice_bin()), "check", "--config", str(path)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    assert out.returncode == 1 and message in out.stderr, out.stderr


def test_takeover_from_a_stopping_process_binds(started, http_backends, tmp_path):
    backend = http_backends.add("app")
    addr = new_listener()
    sock = tmp_path / "takeover.sock"
    old = started(config(addr, backend.addr, drainDelay="3s"), sock, "old")
    old.wait_line(r"takeover: the next process takes the listeners over at", 2)
    old.proc.send_signal(signal.SIGTERM)
    old.wait_line(r"listeners accept for 3000 ms more", 2)
    new = started(config(addr, backend.addr), sock, "new")
    new.wait_line(r"the process at .* is stopping: binding the listeners", 1)
    assert old.proc.wait(8) == 0
    assert get(addr) == 200


def test_systemd_unit_example_upgrades_by_takeover():
    """examples/sluice.service: Type=notify with NotifyAccess=all (the new process names itself
    MAINPID), ExecReload checks the file first, then starts a takeover on ExecStart's socket."""
    import shlex
    unit = (Path(__file__).resolve().parents[2] / "examples" / "sluice.service").read_text()
    lines = [l for l in unit.splitlines() if l and not l.startswith("#")]
    values = {}
    for line in lines:
        if "=" in line:
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    assert values["Type"] == ["notify"] and values["NotifyAccess"] == ["all"]
    start = shlex.split(values["ExecStart"][0])
    assert start[1] == "run" and "--takeover" in start
    path = start[start.index("--takeover") + 1]
    check, launch = values["ExecReload"]
    assert shlex.split(check)[1:] == ["check", "--config", start[start.index("--config") + 1]]
    inner = shlex.split(shlex.split(launch)[2])
    assert inner[:len(start)] == start and path.startswith("/run/sluice/")
    help_text = subprocess.run([str(sluice_bin()), "run", "--help"], stdout=subprocess.PIPE, text=True).stdout
    assert "--takeover" in help_text


def test_takeover_by_fewer_or_more_workers(started, http_backends, tmp_path):
    """More loops than sockets passed: the rest are bound. Fewer: the sockets left over are
    closed, with a warning naming the address."""
    backend = http_backends.add("app")
    addr = new_listener()
    sock = tmp_path / "takeover.sock"
    first = started(config(addr, backend.addr), sock, "a", workers=1)
    more = started(config(addr, backend.addr), sock, "b", workers=3)
    more.wait_line(r"takeover: serving on 1 listening sockets of pid %d" % first.pid, 5)
    assert first.proc.wait(5) == 0
    assert get(addr) == 200
    fewer = started(config(addr, backend.addr), sock, "c", workers=2)
    fewer.wait_line(r"takeover: 1 inherited socket\(s\) on %s closed" % re.escape(addr), 5)
    fewer.wait_line(r"takeover: serving on 3 listening sockets of pid %d" % more.pid, 5)
    assert more.proc.wait(5) == 0
    for _ in range(20):
        assert get(addr) == 200

"""The process around the loops: a trap ends it at once with a backtrace, the open-files
limit is raised, the default worker count follows the cgroup CPU quota, a refused pipe
resize still forwards, and the demo's output reaches a pipe line by line."""

from __future__ import annotations

import hashlib
import os
import random
import re
import resource
import select
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import free_port, make_config, new_listener, recv_line, sluice_bin, to_yaml

pytestmark = pytest.mark.sluice_only


def start(args, tmp_path, env=None, soft_nofile=None, stdout=subprocess.DEVNULL):
    """The binary with ``args``; stderr (and stdout when piped) read by the caller. The
    core size is 0 so that a deliberate crash writes no core; ``soft_nofile`` lowers the
    open-files soft limit the process starts with."""
    if not os.access(sluice_bin(), os.X_OK):
        pytest.fail(f"sluice binary not found: {sluice_bin()}")

    def limits():
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if soft_nofile is not None:
            _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft_nofile, hard))

    full_env = {k: v for k, v in os.environ.items() if k != "SWIFT_BACKTRACE"}
    full_env.update(env or {})
    return subprocess.Popen([str(sluice_bin()), *args], stdin=subprocess.DEVNULL, stdout=stdout,
                            stderr=subprocess.PIPE, cwd=tmp_path, env=full_env, preexec_fn=limits)


class Lines:
    """stderr of a process, read by a thread, each line with its arrival time."""

    def __init__(self, stream):
        self.lines = []  # (monotonic time, text)
        self.cond = threading.Condition()
        self.done = False
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream):
        for raw in stream:
            with self.cond:
                self.lines.append((time.monotonic(), raw.decode(errors="replace").rstrip("\n")))
                self.cond.notify_all()
        with self.cond:
            self.done = True
            self.cond.notify_all()

    def wait(self, pattern, timeout):
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for _, text in self.lines:
                    if rx.search(text):
                        return text
                left = deadline - time.monotonic()
                if self.done or left <= 0:
                    raise AssertionError(f"no line /{pattern}/ within {timeout}s:\n{self.text()}")
                self.cond.wait(left)

    def text(self):
        return "\n".join(text for _, text in self.lines)


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def write_config(tmp_path, config):
    path = tmp_path / "sluice.yaml"
    path.write_text(to_yaml(config) + "\n")
    return path


def tcp_config(tmp_path):
    listen = new_listener()
    return listen, write_config(tmp_path, make_config({"web": listen}, {"web": ["127.0.0.1:9"]}))


def test_trap_on_a_thread_ends_the_process_at_once_with_a_backtrace(tmp_path):
    """A Swift trap (index out of range) on a thread of the process, N ms after start: the
    process dies of the signal within 1.5 s of it, having printed the frames, instead of
    sitting in the runtime's backtracer with its ports bound."""
    listen, path = tcp_config(tmp_path)
    delay_ms = 800
    started = time.monotonic()
    proc = start(["run", "--config", str(path), "--workers", "1"], tmp_path,
                 env={"SLUICE_FAULT_CRASH_AFTER_MS": str(delay_ms)})
    err = Lines(proc.stderr)
    try:
        try:
            err.wait(r"fault injection: a thread traps", 10)
        except AssertionError:
            pytest.skip("this build has no fault injection (release build)")
        err.wait(r"ready generation=1\b", 10)
        host, port = listen.rsplit(":", 1)
        socket.create_connection((host, int(port)), timeout=2).close()  # serving before the trap
        rc = proc.wait(delay_ms / 1000 + 10)
        exited = time.monotonic()
    finally:
        stop(proc)
    err.thread.join(5)
    text = err.text()
    # The trap comes no earlier than `delay_ms` after the start, so this bounds the delay
    # between trap and exit from above.
    assert exited - (started + delay_ms / 1000) < 1.5, f"exited {exited - started:.2f}s after start:\n{text}"
    assert rc in (-signal.SIGILL, -signal.SIGTRAP), f"exit status {rc}, expected death by SIGILL/SIGTRAP:\n{text}"
    assert "Index out of range" in text, text
    assert re.search(r"sluice: fatal signal SIG(ILL|TRAP) \(\d+\) on thread \d+; backtrace:", text), text
    frames = [line for line in text.splitlines() if re.search(r"\[0x[0-9a-f]+\]$", line)]
    assert len(frames) >= 3, f"no backtrace frames:\n{text}"
    assert any("sluice" in line for line in frames), f"no frame of the binary:\n{text}"


def test_open_files_soft_limit_is_raised_to_the_hard_limit(tmp_path):
    _, path = tcp_config(tmp_path)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard <= 256:
        pytest.skip(f"hard limit {hard}: nothing to raise")
    proc = start(["run", "--config", str(path), "--workers", "1"], tmp_path, soft_nofile=256)
    err = Lines(proc.stderr)
    try:
        line = err.wait(r"open files: soft limit", 10)
        assert f"open files: soft limit 256 -> {hard} (the hard limit)" in line, line
        err.wait(r"ready generation=1\b", 10)
        with open(f"/proc/{proc.pid}/limits") as fh:
            row = next(l for l in fh if l.startswith("Max open files"))
        soft_now, hard_now = row.split()[3:5]
        assert (int(soft_now), int(hard_now)) == (hard, hard), row
    finally:
        stop(proc)


@pytest.mark.parametrize("cpu_max,expected", [("100000 100000\n", 1), ("max 100000\n", None)],
                         ids=["one-cpu-quota", "no-quota"])
def test_default_workers_follow_the_cgroup_quota(tmp_path, cpu_max, expected):
    """Without --workers or a file setting, the loops are the affinity CPUs capped by the
    quota (debug builds read the cgroup files under SLUICE_CGROUP_ROOT)."""
    affinity = len(os.sched_getaffinity(0))
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cpu.max").write_text(cpu_max)
    _, path = tcp_config(tmp_path)
    proc = start(["run", "--config", str(path)], tmp_path, env={"SLUICE_CGROUP_ROOT": str(root)})
    err = Lines(proc.stderr)
    try:
        line = err.wait(r"workers=\d+ \(", 10)
        cpus = "1 CPU" if affinity == 1 else f"{affinity} CPUs"
        if expected is None:
            assert f"workers={affinity} (affinity {cpus}; no cgroup CPU limit)" in line, line
        else:
            if "cgroup cpu.max" not in line:
                pytest.skip(f"this build reads the real cgroup (release build): {line}")
            assert f"workers={expected} (cgroup cpu.max 100000/100000; affinity {cpus})" in line, line
            assert re.search(rf"ready generation=1 workers={expected}\b", err.wait(r"ready generation=1\b", 10))
    finally:
        stop(proc)


def test_refused_pipe_resize_still_forwards_byte_exact(tmp_path, backends):
    """Every F_SETPIPE_SZ refused with EPERM (as over the per-user pipe budget): splicing
    goes on with the pipes' own size."""
    a = backends.add("a")
    listen = new_listener()
    path = write_config(tmp_path, make_config({"web": listen}, {"web": [a.addr]}))
    proc = start(["run", "--config", str(path), "--workers", "1"], tmp_path,
                 env={"SLUICE_FAULT_PIPE_SIZE": "EPERM"})
    err = Lines(proc.stderr)
    try:
        try:
            err.wait(r"fault injection: every F_SETPIPE_SZ fails", 10)
        except AssertionError:
            pytest.skip("this build has no fault injection (release build)")
        err.wait(r"ready generation=1\b", 10)
        size = 8 << 20
        data = random.Random(7).randbytes(size)
        host, port = listen.rsplit(":", 1)
        s = socket.create_connection((host, int(port)), timeout=20)
        sender = threading.Thread(target=lambda: (s.sendall(data), s.shutdown(socket.SHUT_WR)))
        sender.start()
        assert recv_line(s) == b"a"
        h, got = hashlib.sha256(), 0
        while chunk := s.recv(1 << 20):
            h.update(chunk)
            got += len(chunk)
        sender.join(20)
        s.close()
        assert got == size and h.hexdigest() == hashlib.sha256(data).hexdigest()
    finally:
        stop(proc)


def test_demo_output_reaches_a_pipe_line_by_line(tmp_path):
    """`sluice demo | cat`: the first lines arrive while it runs, not at exit."""
    port = free_port()
    proc = start(["demo", "--port", str(port)], tmp_path, stdout=subprocess.PIPE)
    Lines(proc.stderr)
    try:
        deadline = time.monotonic() + 10
        seen = b""
        while b"serving; try:" not in seen:
            left = deadline - time.monotonic()
            assert left > 0 and proc.poll() is None, f"demo printed only {seen!r} (rc={proc.poll()})"
            ready, _, _ = select.select([proc.stdout], [], [], left)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 65536)
                assert chunk, f"stdout closed after {seen!r}"
                seen += chunk
        assert b"Host: grafana.example.com" in seen, seen
        assert proc.poll() is None, "the demo exited: its output may have come from the exit flush"
    finally:
        stop(proc)

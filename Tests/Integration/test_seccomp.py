"""Sluice under seccomp filters, as a container runtime would run it.

``tools/seccomp_exec.c`` (compiled here with gcc and libseccomp; the tests are skipped when
either is missing) loads a filter and execs the binary:

* the io_uring calls denied with EPERM, everything else allowed: what the default profiles of
  containerd 2.0+ and Docker 25+ (Kubernetes ``seccompProfile: RuntimeDefault``) do to
  io_uring. ``auto`` must fall back to epoll with one warning line and serve; a forced
  ``io_uring`` must refuse to start, saying why;
* ``deploy/seccomp/sluice-io-uring.json``: every call denied with EPERM except its
  allowlist. Sluice must run on io_uring (and on epoll when asked) through HTTP keep-alive and
  ``Connection: close``, a spliced TCP tunnel, TLS termination, the admin listener, a SIGHUP
  reload, a SIGTERM drain, and ``sluice kube`` against the fake API server: the profile is
  complete for those paths.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path
from typing import List, Optional

import pytest

from backends import pattern_bytes
from conftest import (REPO_ROOT, SluiceProcess, free_port, listening_ports, make_config,
                      new_listener, sluice_bin, to_yaml)
from fake_kube import FakeKube, make_kube_certs, write_service_account
from http_backends import BufReader, HTTPBackend, curl, get, port_of, read_response, request_bytes
from tls_certs import make_term_certs

pytestmark = pytest.mark.sluice_only

TOOL = Path(__file__).resolve().parent / "tools" / "seccomp_exec.c"
PROFILE = REPO_ROOT / "deploy" / "seccomp" / "sluice-io-uring.json"
IO_URING_CALLS = ("io_uring_setup", "io_uring_enter", "io_uring_register")
EPERM = 1
MiB = 1 << 20
FALLBACK = re.compile(r"io_uring unavailable \(io_uring_setup: EPERM\b.*seccomp.*\): using epoll")


# --------------------------------------------------------------------------
# the loader and the filters

@pytest.fixture(scope="session")
def loader(tmp_path_factory) -> Path:
    gcc = shutil.which("gcc") or shutil.which("cc") or shutil.which("clang")
    if gcc is None:
        pytest.skip("no C compiler (gcc) found to build the seccomp loader")
    out = tmp_path_factory.mktemp("seccomp") / "seccomp_exec"
    probe = subprocess.run([gcc, "-E", "-x", "c", "-"], input=b"#include <seccomp.h>\n",
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
    if probe.returncode != 0:
        pytest.skip("libseccomp headers not found (apt-get install libseccomp-dev)")
    r = subprocess.run([gcc, "-O2", "-Wall", "-Werror", "-o", str(out), str(TOOL), "-lseccomp"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    if r.returncode != 0:
        pytest.skip(f"could not build the seccomp loader:\n{r.stdout.decode(errors='replace')}")
    return out


def profile_doc() -> dict:
    return json.loads(PROFILE.read_text())


def profile_rules() -> List[str]:
    """The profile's rules as the loader reads them: NAME, or NAME INDEX VALUE."""
    out: List[str] = []
    for rule in profile_doc()["syscalls"]:
        assert rule["action"] == "SCMP_ACT_ALLOW", rule
        args = rule.get("args") or []
        assert len(args) <= 1, f"the loader takes one argument condition a rule: {rule}"
        for a in args:
            assert a["op"] == "SCMP_CMP_EQ" and not a.get("valueTwo"), rule
        cond = f" {args[0]['index']} {args[0]['value']}" if args else ""
        out += [name + cond for name in rule["names"]]
    return out


def profile_allowlist() -> List[str]:
    """The names allowed with no condition."""
    return [r for r in profile_rules() if " " not in r]


@pytest.fixture(scope="session")
def runtime_default_filter(tmp_path_factory) -> List[str]:
    """Every call allowed except io_uring's three, denied with EPERM."""
    path = tmp_path_factory.mktemp("filters") / "io_uring.txt"
    path.write_text("\n".join(IO_URING_CALLS) + "\n")
    return ["allow", str(EPERM), str(path)]


@pytest.fixture(scope="session")
def profile_filter(tmp_path_factory) -> List[str]:
    """deploy/seccomp/sluice-io-uring.json: every call denied with EPERM except its list."""
    doc = profile_doc()
    assert doc["defaultAction"] == "SCMP_ACT_ERRNO" and doc["defaultErrnoRet"] == EPERM, doc
    path = tmp_path_factory.mktemp("filters") / "profile.txt"
    path.write_text("\n".join(profile_rules()) + "\n")
    return ["deny", str(EPERM), str(path)]


@pytest.fixture(scope="session")
def io_uring_here(tmp_path_factory) -> bool:
    """Whether io_uring runs here with no filter of ours (the kernel may lack or refuse it)."""
    path = tmp_path_factory.mktemp("probe") / "c.yaml"
    path.write_text(to_yaml(make_config({"web": new_listener()}, {"web": ["127.0.0.1:9"]})) + "\n")
    r = subprocess.run([str(sluice_bin()), "check", "--config", str(path)], capture_output=True,
                       text=True, timeout=30,
                       env={k: v for k, v in os.environ.items() if k != "SLUICE_IO_BACKEND"})
    return "io backend: io_uring" in r.stdout


def needs_io_uring(io_uring_here: bool, expect: str) -> None:
    if expect == "io_uring" and not io_uring_here:
        pytest.skip("io_uring does not run here even without a filter (`sluice check` says epoll)")


class FilteredSluice(SluiceProcess):
    """``sluice run`` started through the loader. The backend comes from the test alone: the
    command is built here and ``$SLUICE_IO_BACKEND`` is not passed on unless given."""

    def __init__(self, workdir: Path, config: dict, workers: int, prefix: List[str],
                 extra: Optional[List[str]] = None, env: Optional[dict] = None):
        super().__init__(workdir, config, workers)
        self.prefix = prefix
        self.extra = extra or []
        self.env = env

    def command(self) -> List[str]:
        return [*self.prefix, str(sluice_bin()), "run", "--config", str(self.config_path),
                "--workers", str(self.workers), *self.extra]

    def launch(self) -> None:
        self.write_config(self.config)
        env = {k: v for k, v in os.environ.items() if k != "SLUICE_IO_BACKEND"}
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     cwd=self.workdir, env={**env, **(self.env or {})})
        self.reader = threading.Thread(target=self._read, daemon=True, name="sluice-stderr")
        self.reader.start()

    def start(self) -> "FilteredSluice":
        self.launch()
        self.wait_ready()
        return self


class FilteredKube(FilteredSluice):
    """``sluice kube`` started through the loader."""

    kind = "sluice-kube"

    def __init__(self, workdir: Path, prefix: List[str], args: List[str],
                 env: Optional[dict] = None):
        super().__init__(workdir, {"listeners": []}, 1, prefix, env=env)
        self.args = args

    def command(self) -> List[str]:
        return [*self.prefix, str(sluice_bin()), "kube", *self.args]

    def write_config(self, config) -> None:
        pass

    def wait_ready(self) -> None:
        self.wait_line(r"ready generation=1\b", 30)


@pytest.fixture
def filtered(tmp_path, request, loader):
    """filtered(filter_args, config, ...) starts ``sluice run`` under that filter."""
    if not os.access(sluice_bin(), os.X_OK):
        pytest.fail(f"sluice binary not found or not executable: {sluice_bin()}")
    started: List[SluiceProcess] = []

    def start(filter_args: List[str], config: dict, workers: int = 2,
              extra: Optional[List[str]] = None, env: Optional[dict] = None,
              wait: bool = True) -> FilteredSluice:
        p = FilteredSluice(tmp_path, config, workers, [str(loader), *filter_args, "--"],
                           extra, env)
        started.append(p)
        if wait:
            return p.start()
        p.launch()
        return p

    yield start
    for p in started:
        p.stop()
        request.node.add_report_section("teardown", f"{p.kind} stderr", p.stderr_text())


def ready_line(p: SluiceProcess) -> str:
    return next(l for l in p.lines if re.search(r"ready generation=1\b", l))


def denied_lines(p: SluiceProcess) -> List[str]:
    return [l for l in p.lines if re.search(r"EPERM|Operation not permitted", l)
            and not FALLBACK.search(l)]


# --------------------------------------------------------------------------
# clients

def keepalive_requests(addr: str, host: str, n: int) -> List[dict]:
    """n requests on one connection; the backend's accounts of them."""
    out = []
    with socket.create_connection(("127.0.0.1", port_of(addr)), timeout=5) as s:
        reader = BufReader(s)
        for i in range(n):
            s.sendall(request_bytes(host, f"/ka/{i}"))
            r = read_response(reader)
            assert r.status == 200, r
            assert (r.header("connection") or "").lower() != "close", r
            out.append(r.json())
    return out


def tunnel_roundtrip(addr: str, size: int) -> None:
    """Sends size bytes through a TCP listener to an echo backend; checks what comes back."""
    data = pattern_bytes(size)
    with socket.create_connection(("127.0.0.1", port_of(addr)), timeout=10) as s:
        sender = threading.Thread(target=lambda: (s.sendall(data), s.shutdown(socket.SHUT_WR)),
                                  daemon=True)
        sender.start()
        got = bytearray()
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            got += chunk
        sender.join(10)
    hello, _, echoed = bytes(got).partition(b"\n")
    assert hello == b"echo", got[:40]
    assert len(echoed) == size, f"{len(echoed)} of {size} bytes came back"
    assert hashlib.sha256(echoed).hexdigest() == hashlib.sha256(data).hexdigest()


def tls_get(port: int, ca: Path, sni: str, target: str) -> tuple:
    ctx = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as s:
            s.sendall(request_bytes(sni, target, headers=["Connection: close"]))
            r = read_response(BufReader(s))
            return r, s.version()


def admin_get(port: int, path: str) -> tuple:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


# --------------------------------------------------------------------------
# io_uring blocked as RuntimeDefault blocks it

def web_config(http_backends, backend: Optional[str] = None) -> dict:
    be = http_backends.add("web")
    cfg = make_config({"web": {"address": new_listener(), "protocol": "http",
                               "routes": [{"host": "web.example.com", "service": "web"}],
                               "default": {"status": 404}}},
                      {"web": [be.addr]})
    if backend is not None:
        cfg["tuning"] = {"ioBackend": backend}
    return cfg


def test_blocked_io_uring_auto_falls_back_to_epoll_and_serves(filtered, runtime_default_filter,
                                                              http_backends):
    cfg = web_config(http_backends, "auto")
    p = filtered(runtime_default_filter, cfg, workers=2)
    fallback = [l for l in p.lines if "io_uring unavailable" in l]
    assert len(fallback) == 1, f"one fallback line wanted, not per worker:\n{p.stderr_text()}"
    assert FALLBACK.search(fallback[0]), fallback[0]
    assert "warning" in fallback[0], fallback[0]
    assert re.search(r"\bio=epoll\b", ready_line(p)), ready_line(p)
    seen = keepalive_requests(p.addr(), "web.example.com", 3)
    assert [s["target"] for s in seen] == ["/ka/0", "/ka/1", "/ka/2"], seen
    r = curl("-H", "Host: web.example.com", f"http://{p.addr()}/curl")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["target"] == "/curl"
    assert get(p.addr(), "nobody.example.com").status == 404
    assert http_backends["web"].request_count() == 4
    p.proc.send_signal(signal.SIGTERM)
    assert p.wait_exit(10) == 0, p.stderr_text()


def test_blocked_io_uring_check_names_the_fallback(loader, runtime_default_filter, tmp_path,
                                                   http_backends):
    path = tmp_path / "c.yaml"
    path.write_text(to_yaml(web_config(http_backends, "auto")) + "\n")
    r = subprocess.run([str(loader), *runtime_default_filter, "--", str(sluice_bin()), "check",
                        "--config", str(path)], capture_output=True, text=True, timeout=30,
                       env={k: v for k, v in os.environ.items() if k != "SLUICE_IO_BACKEND"})
    assert r.returncode == 0, r.stdout + r.stderr
    line = next((l for l in r.stdout.splitlines() if l.startswith("io backend:")), None)
    assert line is not None, r.stdout
    assert line.startswith("io backend: epoll") and "EPERM" in line, line


@pytest.mark.parametrize("how", ["flag", "env", "file"])
def test_blocked_io_uring_forced_refuses_to_start(filtered, runtime_default_filter,
                                                  http_backends, how):
    cfg = web_config(http_backends, "io_uring" if how == "file" else None)
    extra = ["--io-backend", "io_uring"] if how == "flag" else None
    env = {"SLUICE_IO_BACKEND": "io_uring"} if how == "env" else None
    p = filtered(runtime_default_filter, cfg, extra=extra, env=env, wait=False)
    rc = p.wait_exit(15)
    assert rc is not None, f"still running with io_uring blocked:\n{p.stderr_text()}"
    p.reader.join(5)
    text = p.stderr_text()
    assert rc != 0, text
    assert not any(re.search(r"\bready generation=", l) for l in p.lines), text
    assert re.search(r"io_uring.*EPERM", text), text
    assert "using epoll" not in text, text
    assert port_of(p.addr()) not in listening_ports()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port_of(p.addr())), timeout=2).close()
    assert http_backends["web"].request_count() == 0


# --------------------------------------------------------------------------
# the Localhost profile

def test_profile_is_an_allowlist_with_io_uring():
    doc = profile_doc()
    names = profile_allowlist()
    assert len(names) == len(set(names)), "a call listed twice"
    for call in (*IO_URING_CALLS, "execve", "exit_group", "rt_sigreturn", "splice",
                 "epoll_wait"):
        assert call in names, call
    for call in ("ptrace", "mount", "bpf", "kexec_load", "init_module", "unshare", "setns",
                 "keyctl", "perf_event_open", "userfaultfd", "process_vm_writev"):
        assert call not in names, f"{call} is not something Sluice needs"
    assert "SCMP_ARCH_X86_64" in doc["architectures"], doc["architectures"]
    assert "ioctl" not in names and "ioctl 1 21505" in profile_rules(), "ioctl only as TCGETS"


@pytest.fixture(scope="module")
def term_certs(tmp_path_factory):
    return make_term_certs(tmp_path_factory.mktemp("seccomp-certs"))


def full_config(http_backends, backends, certs, backend: str) -> dict:
    web = http_backends.add("web")
    backends.add("echo")
    return make_config(
        {"web": {"address": new_listener(), "protocol": "http",
                 "routes": [{"host": "web.example.com", "service": "web"}],
                 "default": {"status": 404}},
         "tunnel": {"address": new_listener(), "protocol": "tcp", "service": "echo"},
         "https": {"address": new_listener(), "protocol": "tls",
                   "certificates": [{"cert": str(certs.cert("a")), "key": str(certs.key("a"))}],
                   "routes": [{"host": "a.example.com", "terminate": True, "service": "web"}],
                   "default": {"terminate": True, "status": 404}}},
        {"web": [web.addr], "echo": [backends["echo"].addr]},
        timeouts={"drain": "10s"},
        extra={"tuning": {"ioBackend": backend}})


@pytest.mark.parametrize("backend,expect", [("auto", "io_uring"), ("epoll", "epoll")])
def test_profile_serves_http_tunnel_tls_reload_and_drains(filtered, profile_filter, http_backends,
                                                          backends, term_certs, io_uring_here,
                                                          backend, expect):
    needs_io_uring(io_uring_here, expect)
    cfg = full_config(http_backends, backends, term_certs, backend)
    admin = free_port()
    p = filtered(profile_filter, cfg, workers=2, extra=["--admin-address", f"127.0.0.1:{admin}"])
    assert re.search(rf"\bio={expect}\b", ready_line(p)), ready_line(p)
    assert not any("io_uring unavailable" in l for l in p.lines), p.stderr_text()

    # HTTP: keep-alive, Connection: close, curl
    seen = keepalive_requests(p.addr("web"), "web.example.com", 5)
    assert len({s["conn"] for s in seen}) == 1, f"one upstream connection reused: {seen}"
    r = get(p.addr("web"), "web.example.com", "/close")
    assert r.status == 200 and (r.header("connection") or "").lower() == "close", r
    r = curl("-H", "Host: web.example.com", f"http://{p.addr('web')}/curl?mode=download&size=300000")
    assert r.returncode == 0 and r.stdout == pattern_bytes(300000), r.stderr

    # TCP tunnel (spliced), a few MiB each way, twice at once
    errors: List[BaseException] = []
    threads = [threading.Thread(target=_record, args=(errors, tunnel_roundtrip, p.addr("tunnel"),
                                                      4 * MiB), daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors

    # TLS termination
    r, version = tls_get(port_of(p.addr("https")), term_certs.ca, "a.example.com", "/tls")
    assert r.status == 200 and r.json()["target"] == "/tls", r
    assert version in ("TLSv1.2", "TLSv1.3"), version

    # the admin listener
    assert admin_get(admin, "/healthz")[0] == 200
    status, body = admin_get(admin, "/metrics")
    assert status == 200 and b"sluice_" in body, body[:200]

    # SIGHUP: a new table (the default answer changes)
    cfg["listeners"][0]["default"] = {"status": 410}
    p.reload(cfg)
    assert get(p.addr("web"), "nobody.example.com").status == 410
    assert get(p.addr("web"), "web.example.com", "/after").status == 200

    # SIGTERM while a slow request is in flight: it completes, then exit 0
    before = http_backends["web"].request_count()
    slow = socket.create_connection(("127.0.0.1", port_of(p.addr("web"))), timeout=10)
    slow.sendall(request_bytes("web.example.com", "/slow?mode=slow&delay=0.5"))
    http_backends["web"].wait_requests(before + 1, timeout=5)  # at the backend, sleeping
    since = p.mark()
    p.proc.send_signal(signal.SIGTERM)
    p.wait_line(r"stopping", 10, since)
    r = read_response(BufReader(slow))
    slow.close()
    assert r.status == 200 and r.json()["target"].startswith("/slow"), r
    assert p.wait_exit(15) == 0, p.stderr_text()
    assert not denied_lines(p), "\n".join(denied_lines(p))


def test_profile_lets_a_shell_in_the_pod_signal_a_reload(filtered, loader, profile_filter,
                                                          http_backends):
    """`kubectl exec POD -- sh -c 'kill -HUP 1'` runs under the pod's profile too."""
    sh = shutil.which("sh")
    cfg = web_config(http_backends)
    p = filtered(profile_filter, cfg, workers=1)
    cfg["listeners"][0]["default"] = {"status": 410}
    since = p.mark()
    p.write_config(cfg)
    r = subprocess.run([str(loader), *profile_filter, "--", sh, "-c", f"kill -HUP {p.pid}"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    p.wait_line(r"reloaded generation=2\b", 10, since)
    assert get(p.addr(), "nobody.example.com").status == 410


def _record(errors: List[BaseException], fn, *args) -> None:
    try:
        fn(*args)
    except BaseException as exc:  # reported by the test thread
        errors.append(exc)


@pytest.mark.parametrize("backend,expect", [("io_uring", "io_uring"), ("epoll", "epoll")])
def test_profile_kube_in_cluster_with_tls_against_the_fake_api_server(
        loader, profile_filter, tmp_path, request, term_certs, io_uring_here, backend, expect):
    """As deployed: the service account's token and CA, HTTPS to the API server, an http and
    a TLS listener, a SIGHUP that reads the certificates again, SIGTERM."""
    needs_io_uring(io_uring_here, expect)
    kcerts = make_kube_certs(tmp_path / "kube-certs")
    fake = FakeKube(token="seccomp-token", certs=kcerts, bookmark_interval=0.5).start()
    web, secure = HTTPBackend("kweb"), HTTPBackend("ksecure")
    p: Optional[FilteredKube] = None
    try:
        fake.add_service("shop", "web", host="web.example.com")
        fake.set_endpoints("shop", "web", ["127.0.0.1"], web.port)
        fake.add_service("shop", "secure", host="a.example.com",
                         annotations={"serviceloadbalancer/lb.sslTerm": "true"})
        fake.set_endpoints("shop", "secure", ["127.0.0.1"], secure.port)
        sa = write_service_account(tmp_path / "sa", "seccomp-token", kcerts.ca, "kube-system")
        http_port, tls_port, admin = free_port(), free_port(), free_port()
        p = FilteredKube(tmp_path, [str(loader), *profile_filter, "--"],
                         ["--service-account-dir", str(sa),
                          "--http-address", f"127.0.0.1:{http_port}",
                          "--tls-address", f"127.0.0.1:{tls_port}",
                          "--tls-certificate", str(term_certs.cert("a")),
                          "--tls-key", str(term_certs.key("a")),
                          "--admin-address", f"127.0.0.1:{admin}",
                          "--default-return-code", "404", "--workers", "2",
                          "--io-backend", backend],
                         env={"KUBERNETES_SERVICE_HOST": "127.0.0.1",
                              "KUBERNETES_SERVICE_PORT": str(fake.port)})
        p.start()
        p.wait_line(r"\bsynced\b", 30)
        assert re.search(rf"\bio={expect}\b", ready_line(p)), ready_line(p)
        addr = f"127.0.0.1:{http_port}"
        r = get(addr, "web.example.com", "/k")
        assert r.status == 200 and r.json()["backend"] == "kweb", r
        assert get(addr, "nobody.example.com").status == 404
        r, _ = tls_get(tls_port, term_certs.ca, "a.example.com", "/s")
        assert r.status == 200 and r.json()["backend"] == "ksecure", r
        assert admin_get(admin, "/readyz")[0] == 200
        status, body = admin_get(admin, "/metrics")
        assert status == 200 and b"sluice_" in body
        # a change while watching: the endpoint goes away, the route answers without it
        since = p.mark()
        fake.set_endpoints("shop", "web", [], web.port)
        p.wait_line(r"applied generation=", 15, since)
        assert get(addr, "web.example.com", "/gone").status != 200
        since = p.mark()
        p.proc.send_signal(signal.SIGHUP)
        p.wait_line(r"TLS certificates read again", 10, since)
        r, _ = tls_get(tls_port, term_certs.ca, "a.example.com", "/again")
        assert r.status == 200, r
        p.proc.send_signal(signal.SIGTERM)
        assert p.wait_exit(15) == 0, p.stderr_text()
        assert not denied_lines(p), "\n".join(denied_lines(p))
    finally:
        if p is not None:
            p.stop()
            request.node.add_report_section("teardown", "sluice kube stderr", p.stderr_text())
        web.shutdown()
        secure.shutdown()
        fake.stop()


# --------------------------------------------------------------------------
# the manifests that put the profile to use

DEPLOY = REPO_ROOT / "deploy"
KUBERNETES_VERSION = "1.34.0"


def strategic_merge(base, patch):
    """Kubernetes' strategic merge for what the patch uses: maps merge, `containers` merge
    by name, scalars replace."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            if k == "containers":
                by_name = {c["name"]: c for c in base.get(k, [])}
                assert {c["name"] for c in v} <= set(by_name), "a container the base lacks"
                out[k] = [strategic_merge(c, next((x for x in v if x["name"] == c["name"]), {}))
                          for c in base.get(k, [])]
            else:
                out[k] = strategic_merge(base.get(k), v) if k in base else v
        return out
    return patch


def seccomp_profiles(daemonset: dict) -> List[dict]:
    pod = daemonset["spec"]["template"]["spec"]
    return [pod["securityContext"]["seccompProfile"],
            *[c["securityContext"]["seccompProfile"] for c in pod["containers"]]]


def test_patch_puts_both_seccomp_entries_on_the_localhost_profile():
    yaml = pytest.importorskip("yaml")
    base = yaml.safe_load((DEPLOY / "daemonset.yaml").read_text())
    patch = yaml.safe_load((DEPLOY / "seccomp" / "daemonset-io-uring-patch.yaml").read_text())
    assert (patch["kind"], patch["metadata"]["name"], patch["metadata"]["namespace"]) == \
        (base["kind"], base["metadata"]["name"], base["metadata"]["namespace"])
    merged = strategic_merge(base, patch)
    profiles = seccomp_profiles(merged)
    assert len(profiles) == 2
    for prof in profiles:
        assert prof == {"type": "Localhost", "localhostProfile": PROFILE.name}, prof
    # nothing else moved
    undo = json.loads(json.dumps(merged))
    pod, base_pod = undo["spec"]["template"]["spec"], base["spec"]["template"]["spec"]
    pod["securityContext"]["seccompProfile"] = base_pod["securityContext"]["seccompProfile"]
    for c, b in zip(pod["containers"], base_pod["containers"]):
        c["securityContext"]["seccompProfile"] = b["securityContext"]["seccompProfile"]
    assert undo == base
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")
    kv.validate(merged, KUBERNETES_VERSION, True)


def test_patch_applies_with_kubectl():
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not found")
    r = subprocess.run([kubectl, "patch", "--local", "-f", str(DEPLOY / "daemonset.yaml"),
                        "--type", "strategic", "--patch-file",
                        str(DEPLOY / "seccomp" / "daemonset-io-uring-patch.yaml"), "-o", "json"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for prof in seccomp_profiles(json.loads(r.stdout)):
        assert prof == {"type": "Localhost", "localhostProfile": PROFILE.name}, prof


def test_installer_writes_the_profile_where_the_kubelet_reads_it():
    yaml = pytest.importorskip("yaml")
    ds = yaml.safe_load((DEPLOY / "seccomp" / "profile-installer.yaml").read_text())
    pod = ds["spec"]["template"]["spec"]
    vols = {v["name"]: v for v in pod["volumes"]}
    host = next(v for v in vols.values() if "hostPath" in v)
    assert host["hostPath"]["path"] == "/var/lib/kubelet/seccomp"
    config = next(v for v in vols.values() if "configMap" in v)
    assert config["configMap"]["name"] == "sluice-seccomp-profile"
    (init,) = pod["initContainers"]
    mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    script = init["command"][-1]
    assert f"{mounts[config['name']]}/{PROFILE.name}" in script, script
    assert f"mv {mounts[host['name']]}/" in script and script.endswith(f"/{PROFILE.name}"), script
    sluice = yaml.safe_load((DEPLOY / "daemonset.yaml").read_text())
    assert pod["nodeSelector"] == sluice["spec"]["template"]["spec"]["nodeSelector"]
    assert ds["metadata"]["namespace"] == sluice["metadata"]["namespace"]
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")
    kv.validate(ds, KUBERNETES_VERSION, True)


def test_profile_is_what_make_profile_writes_from_the_trace(tmp_path):
    """The committed profile is reproducible from the committed trace."""
    spec = importlib.util.spec_from_file_location("make_profile",
                                                  DEPLOY / "seccomp" / "make-profile.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.OUT = tmp_path / PROFILE.name
    argv = sys.argv
    sys.argv = ["make-profile.py", str(DEPLOY / "seccomp" / "traced-x86_64.txt")]
    try:
        assert mod.main() == 0
    finally:
        sys.argv = argv
    assert json.loads(mod.OUT.read_text()) == profile_doc()
    assert mod.loader_rules(profile_doc()) == profile_rules()

"""`sluice kube --tls-address` end to end: Services annotated `lb.sslTerm: "true"` are
served on the TLS listener, terminated with the `--tls-certificate`/`--tls-key` pairs, and
routed by Host and `lb.aclMatch` path; the others stay on the http listener.

The real binary against the fake API server (fake_kube.py), certificates from
tls_certs.make_term_certs, clients with verification on (curl --cacert, Python's ssl)."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import List

import pytest

from conftest import free_port, sluice_bin
from test_kube_e2e import Kube, eventually, kube_help, web_service
from tls_certs import make_leaf, make_term_certs, mismatched_key

pytestmark = pytest.mark.sluice_only

SSL_TERM = "serviceloadbalancer/lb.sslTerm"
ACL_MATCH = "serviceloadbalancer/lb.aclMatch"


@pytest.fixture(autouse=True)
def _needs_tls_flags():
    if "--tls-certificate" not in kube_help():
        pytest.skip(f"{sluice_bin()} kube has no --tls-certificate")


@pytest.fixture(scope="module")
def term_certs(tmp_path_factory):
    return make_term_certs(tmp_path_factory.mktemp("kube-term-certs"))


@pytest.fixture
def kube(tmp_path, request):
    k = Kube(tmp_path, request)
    yield k
    k.close()


class Secret:
    """A kubernetes.io/tls Secret as mounted: tls.crt and tls.key in a directory."""

    def __init__(self, directory: Path, certs, key: str):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.crt = directory / "tls.crt"
        self.key = directory / "tls.key"
        self.put(certs.cert(key), certs.key(key))

    def put(self, cert: Path, key: Path) -> None:
        shutil.copyfile(cert, self.crt)
        shutil.copyfile(key, self.key)


def tls_args(port: int, *pairs) -> List[str]:
    args = ["--tls-address", f"127.0.0.1:{port}"]
    for cert, key in pairs:
        args += ["--tls-certificate", str(cert), "--tls-key", str(key)]
    return args


def https(host: str, port: int, ca: Path, target: str = "/", *extra: str):
    """curl with verification on; returns (status, body)."""
    r = subprocess.run(["curl", "-sS", "--noproxy", "*", "--resolve", f"{host}:{port}:127.0.0.1",
                        "--cacert", str(ca), "-o", "-", "-w", "\n%{http_code}", *extra,
                        f"https://{host}:{port}{target}"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert r.returncode == 0, f"curl https://{host}:{port}{target}: {r.stderr.decode()}"
    body, _, code = r.stdout.rpartition(b"\n")
    return int(code), body


def presented_org(host: str, port: int, ca: Path) -> str:
    """The O= of the certificate presented for `host`, verified against `ca`."""
    ctx = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as s:
            subject = dict(x[0] for x in s.getpeercert()["subject"])
            return subject["organizationName"]


def test_ssl_term_service_is_terminated_on_the_tls_listener(kube, term_certs, tmp_path):
    fake = kube.server()
    g = kube.pool.group(["secure", "web"])
    # a.example.com with a NodePort-style port: the TLS listener matches the name on any port.
    web_service(fake, "shop", "secure", "a.example.com:30800", {"secure": g["secure"]}, ["secure"],
                annotations={SSL_TERM: "true", ACL_MATCH: "/app"})
    web_service(fake, "shop", "web", "web.example.com", {"web": g["web"]}, ["web"])
    # The default certificate from a Secret volume, a second one for a.example.com.
    secret = Secret(tmp_path / "secret", term_certs, "default")
    tls_port = free_port()
    p = kube.start(*tls_args(tls_port, (secret.crt, secret.key),
                             (term_certs.cert("a"), term_certs.key("a"))))
    assert not any("lb.sslTerm" in l for l in p.lines), p.stderr_text()

    # Over TLS, verified against the CA: the backend, told the request came over https.
    status, body = https("a.example.com", tls_port, term_certs.ca, "/app/x")
    assert status == 200, body
    facts = json.loads(body)
    assert facts["backend"] == "secure"
    assert facts["xfproto"] == "https"
    assert facts["target"] == "/app/x"
    assert facts["host"] == f"a.example.com:{tls_port}"
    # Outside lb.aclMatch, and names no route has (default certificate): the default code.
    assert https("a.example.com", tls_port, term_certs.ca, "/other")[0] == 404
    assert https("default.example.com", tls_port, term_certs.ca, "/app")[0] == 404
    # The same host over plain HTTP is not routed; the other Service is, and only there.
    for h in ("a.example.com", "a.example.com:30800", f"a.example.com:{kube.http_port}"):
        r = kube.get(h, "/app/x")
        assert r.status == 404, f"Host {h}: {r!r}"
    assert kube.backend_of("web.example.com") == "web"
    assert https("web.example.com", tls_port, term_certs.ca, "/", "-k")[0] == 404
    assert g["secure"].request_count() == 1

    # sslTerm off: a new table, the host moves to the http listener.
    fake.annotate("shop", "secure", {SSL_TERM: None})
    eventually(lambda: kube.get("a.example.com:30800", "/app").status == 200, 5, "served over http")
    assert https("a.example.com", tls_port, term_certs.ca, "/app")[0] == 404
    # And back.
    fake.annotate("shop", "secure", {SSL_TERM: "true"})
    eventually(lambda: https("a.example.com", tls_port, term_certs.ca, "/app")[0] == 200, 5,
               "served over TLS again")
    assert kube.get("a.example.com:30800", "/app").status == 404


def test_sighup_reads_rotated_certificates_and_keeps_them_when_bad(kube, term_certs, tmp_path):
    fake = kube.server()
    g = kube.pool.group(["secure"])
    web_service(fake, "shop", "secure", "a.example.com", g, ["secure"],
                annotations={SSL_TERM: "true"})
    secret = Secret(tmp_path / "secret", term_certs, "a")
    tls_port = free_port()
    p = kube.start(*tls_args(tls_port, (secret.crt, secret.key)))
    assert presented_org("a.example.com", tls_port, term_certs.ca) == "Sluice Test"

    # Rotated in place (as the kubelet updates a Secret volume), then SIGHUP.
    make_leaf(term_certs.dir, "a-rotated", "a.example.com", org="Sluice Rotated")
    secret.put(term_certs.cert("a-rotated"), term_certs.key("a-rotated"))
    since = p.mark()
    p.proc.send_signal(signal.SIGHUP)
    p.wait_line(r"TLS certificates read again", 10, since)
    eventually(lambda: presented_org("a.example.com", tls_port, term_certs.ca) == "Sluice Rotated",
               10, "the rotated certificate")
    assert https("a.example.com", tls_port, term_certs.ca)[0] == 200

    # A key that does not match: logged, the rotated certificate stays in force.
    shutil.copyfile(mismatched_key(tmp_path, "wrong"), secret.key)
    since = p.mark()
    p.proc.send_signal(signal.SIGHUP)
    line = p.wait_line(r"TLS certificates not reloaded", 10, since)
    assert "--tls-key" in line, line
    time.sleep(1.0)  # the re-list that follows changes nothing
    assert presented_org("a.example.com", tls_port, term_certs.ca) == "Sluice Rotated"
    assert https("a.example.com", tls_port, term_certs.ca)[0] == 200
    assert p.proc.poll() is None


def run_kube(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(sluice_bin()), "kube", "--kubeconfig", "/nonexistent",
                           "--http-address", f"127.0.0.1:{free_port()}",
                           "--admin-address", "off", *args],
                          capture_output=True, text=True, timeout=30)


def test_flag_errors(term_certs, tmp_path):
    port = free_port()
    r = run_kube("--tls-address", f"127.0.0.1:{port}")
    assert r.returncode != 0
    assert "--tls-address needs a certificate" in r.stderr, r.stderr

    r = run_kube(*tls_args(port, (term_certs.cert("a"), term_certs.key("a"))),
                 "--tls-certificate", str(term_certs.cert("b")))
    assert r.returncode != 0
    assert "come in pairs" in r.stderr and "2 certificate(s) but 1 key(s)" in r.stderr, r.stderr

    r = run_kube("--tls-certificate", str(term_certs.cert("a")), "--tls-key",
                 str(term_certs.key("a")))
    assert r.returncode != 0
    assert "need --tls-address" in r.stderr, r.stderr

    # Unreadable and mismatched files: the flag, the file, and the reason. Checked before the
    # API server is looked for (the kubeconfig here does not exist).
    missing = tmp_path / "missing.crt"
    r = run_kube(*tls_args(port, (missing, term_certs.key("a"))))
    assert r.returncode != 0
    assert f"--tls-certificate {missing}:" in r.stderr, r.stderr
    wrong = mismatched_key(tmp_path, "wrong")
    r = run_kube(*tls_args(port, (term_certs.cert("a"), term_certs.key("a")),
                           (term_certs.cert("b"), wrong)))
    assert r.returncode != 0
    assert f"--tls-key {wrong}:" in r.stderr, r.stderr

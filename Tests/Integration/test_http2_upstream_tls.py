"""HTTP/2 over TLS to endpoints: services with ``protocol: h2`` and a ``tls`` section.

The endpoints are ``H2Backend`` servers (Python ``h2``) behind Python's ``ssl`` with ALPN
h2, presenting the test CA's ``a.example.com`` leaf, and a ``grpcio`` server's TLS port.
Clients: curl (HTTP/1.1 and h2c), h2load, grpcio, against a plain http listener with
``http2: true``. Checked: the request reaches the endpoint over TLS 1.3 with SNI, ALPN h2
and ``:scheme https``; streams share a connection; the certificate is verified (trust
bundle, server name, IP SANs) and a failure answers 502 and is counted by reason and
logged; ``verify: false``; client certificates; 50 MiB both ways; TLS failures during the
handshake (no ALPN h2, a plain endpoint, a silent one → 504); reloads that change the TLS
settings under load; idle close; ``sluice check`` diagnostics naming the field.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Optional

import pytest

from backends import pattern_bytes
from conftest import make_config, new_listener, sluice_bin, to_yaml
from grpc_backends import GrpcBackend, H2Backend, grpc, h2_tls_context, method_path
from http_backends import curl, port_of
from test_admin import admin_sluice  # noqa: F401  (a fixture)
from test_admin import metrics_text, samples
from test_http2 import h2load
from tls_backends import _openssl
from tls_certs import make_term_certs

pytestmark = pytest.mark.sluice_only

UP = "up.example.com"
NAME = "a.example.com"
MiB = 1 << 20
HANDSHAKES = "sluice_http2_upstream_tls_handshakes_total"
FAILURES = "sluice_http2_upstream_tls_failures_total"
CONNECTIONS = "sluice_http2_upstream_connections_total"

needs_h2load = pytest.mark.skipif(shutil.which("h2load") is None,
                                  reason="h2load is missing: apt-get install nghttp2-client")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """The test CA's leaves, plus a client certificate (clientAuth) ``client`` and a leaf
    for the address 127.0.0.1 (``ip``), both signed by the same root."""
    d = tmp_path_factory.mktemp("up-tls")
    c = make_term_certs(d)
    for key, ext in (("client", "subjectAltName=DNS:client.example.com\n"
                                "extendedKeyUsage=clientAuth\n"),
                     ("ip", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")):
        (d / f"{key}.ext").write_text("basicConstraints=CA:FALSE\n"
                                      "keyUsage=critical,digitalSignature\n" + ext)
        cn = "client.example.com" if key == "client" else "127.0.0.1"
        _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", f"{key}.key", "-out", f"{key}.csr",
                 "-subj", f"/O=Sluice Test/CN={cn}", cwd=d)
        _openssl("x509", "-req", "-in", f"{key}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{key}.pem", "-days", "3", "-extfile",
                 f"{key}.ext", cwd=d)
    return c


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory):
    """A second, unrelated CA (its bundle trusts nothing the backends present)."""
    return make_term_certs(tmp_path_factory.mktemp("other-ca"))


@pytest.fixture
def tls_backends(certs):
    made = []

    def add(name: str, leaf: str = "a", **kw) -> H2Backend:
        ctx = kw.pop("tls", None) or h2_tls_context(str(certs.cert(leaf)), str(certs.key(leaf)))
        b = H2Backend(name, tls=ctx, **kw)
        made.append(b)
        return b

    yield add
    for b in made:
        b.shutdown()


def tls_service(endpoints, **tls) -> dict:
    svc = {"protocol": "h2", "endpoints": list(endpoints)}
    if tls:
        svc["tls"] = tls
    return svc


def config(services: dict, routes=None, timeouts: Optional[dict] = None,
           limits: Optional[dict] = None, address: Optional[str] = None) -> dict:
    plain = {
        "address": address or new_listener(), "protocol": "http", "http2": True,
        "routes": routes or [{"host": UP, "service": "up"}],
        "default": {"status": 404},
    }
    return make_config({"plain": plain}, services,
                       timeouts={"connect": "2s", "drain": "5s", **(timeouts or {})},
                       limits={"connectTries": 1, **(limits or {})})


def get(p, target: str, *extra: str, host: str = UP, http: str = "--http1.1", timeout=30):
    r = curl(*extra, http, "-sS", "-o", "-", "-w", "\n%{http_code}", "-H", f"Host: {host}",
             f"http://{p.addr('plain')}{target}", timeout=timeout)
    body, _, code = r.stdout.rpartition(b"\n")
    return int(code or 0), body, r


def total(p, name: str, **labels) -> float:
    return sum(v for l, v in samples(metrics_text(p), name)
               if all(l.get(k) == w for k, w in labels.items()))


def wait_total(p, name: str, at_least: float, timeout: float = 5.0, **labels) -> float:
    deadline = time.monotonic() + timeout
    while True:
        value = total(p, name, **labels)
        if value >= at_least or time.monotonic() > deadline:
            return value
        time.sleep(0.1)   # counters are gathered from the loops; bounded


# --------------------------------------------------------------------------
# the request over TLS

@pytest.mark.parametrize("client", ["http1", "h2c"])
def test_request_reaches_the_endpoint_over_tls(certs, tls_backends, admin_sluice, client):
    b = tls_backends("up")
    p = admin_sluice(config({"up": tls_service([b.addr], serverName=NAME, ca=str(certs.ca))}))
    http = "--http1.1" if client == "http1" else "--http2-prior-knowledge"
    code, body, r = get(p, "/hello?x=1", "-H", "X-Custom: yes", http=http)
    assert code == 200, (code, body, r.stderr)
    account = __import__("json").loads(body)
    assert account["scheme"] == "https", account
    assert account["authority"] == UP and account["path"] == "/hello?x=1", account
    assert ["x-custom", "yes"] in [list(h) for h in account["headers"]], account["headers"]
    assert b.tls_seen and b.tls_seen[0]["sni"] == NAME, b.tls_seen
    assert b.tls_seen[0]["alpn"] == "h2" and b.tls_seen[0]["version"] == "TLSv1.3", b.tls_seen
    assert wait_total(p, HANDSHAKES, 1) == 1
    assert not b.errors, b.errors


@needs_h2load
def test_streams_share_a_few_tls_connections(certs, tls_backends, admin_sluice):
    b = tls_backends("up")
    p = admin_sluice(config({"up": tls_service([b.addr], serverName=NAME, ca=str(certs.ca))}))
    res = h2load("-n", "3000", "-c", "10", "-m", "10", "-H", f":authority: {UP}",
                 f"http://{p.addr('plain')}/h2load")
    assert res["succeeded"] == 3000 and res["2xx"] == 3000, res["text"]
    assert 1 <= b.conn_count() <= 4, f"{b.conn_count()} TLS connections for 10 clients"
    assert wait_total(p, HANDSHAKES, b.conn_count()) == b.conn_count()
    assert total(p, CONNECTIONS) == b.conn_count()
    assert not b.errors and not b.tls_failures, (b.errors, b.tls_failures)


def test_50mib_each_way_over_tls(certs, tls_backends, admin_sluice, tmp_path):
    b = tls_backends("up")
    p = admin_sluice(config({"up": tls_service([b.addr], serverName=NAME, ca=str(certs.ca))}))
    n = 50 * MiB
    out = tmp_path / "down.bin"
    code, _, r = get(p, f"/big?size={n}", "-o", str(out), timeout=120)
    assert r.returncode == 0, r.stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() == \
        hashlib.sha256(pattern_bytes(n)).hexdigest()
    up = tmp_path / "up.bin"
    up.write_bytes(pattern_bytes(n))
    code, body, r = get(p, "/upload", "--data-binary", f"@{up}", "-H",
                        "Content-Type: application/octet-stream", timeout=120)
    assert code == 200, (code, r.stderr)
    account = __import__("json").loads(body)
    assert account["body_len"] == n, account
    assert account["body_sha256"] == hashlib.sha256(pattern_bytes(n)).hexdigest()


def test_client_certificate_is_sent(certs, tls_backends, admin_sluice):
    ctx = h2_tls_context(str(certs.cert("a")), str(certs.key("a")), client_ca=str(certs.ca))
    b = tls_backends("up", tls=ctx)
    with_cert = tls_service([b.addr], serverName=NAME, ca=str(certs.ca),
                            certificate={"cert": str(certs.cert("client")),
                                         "key": str(certs.key("client"))})
    without = tls_service([b.addr], serverName=NAME, ca=str(certs.ca))
    p = admin_sluice(config({"up": with_cert, "bare": without},
                            routes=[{"host": UP, "service": "up"},
                                    {"host": "bare.example.com", "service": "bare"}]))
    code, body, r = get(p, "/mtls")
    assert code == 200, (code, body, r.stderr)
    assert b.tls_seen[0]["client_cn"] == "client.example.com", b.tls_seen
    # without one, the endpoint refuses the connection: 502, nothing served
    code, body, r = get(p, "/bare", host="bare.example.com")
    assert code == 502, (code, body)
    assert b.request_count() == 1


# --------------------------------------------------------------------------
# verification

def test_an_untrusted_certificate_is_refused_counted_and_logged(certs, other_ca, tls_backends,
                                                               admin_sluice):
    b = tls_backends("up")
    p = admin_sluice(config({"up": tls_service([b.addr], serverName=NAME, ca=str(other_ca.ca))}))
    for i in range(3):
        code, body, _ = get(p, f"/x{i}")
        assert code == 502, (code, body)
    assert b.request_count() == 0
    assert wait_total(p, FAILURES, 3, reason="certificate") == 3
    assert total(p, HANDSHAKES) == 0
    text = p.stderr_text()
    lines = [l for l in text.splitlines() if "TLS handshake with endpoint" in l]
    assert lines and b.addr in lines[0] and "certificate verify failed" in lines[0], text
    assert len(lines) == 1, f"not rate-limited: {lines}"


def test_a_certificate_for_another_name_is_refused(certs, tls_backends, admin_sluice):
    b = tls_backends("up")   # presents a.example.com
    svc = tls_service([b.addr], serverName="b.example.com", ca=str(certs.ca))
    p = admin_sluice(config({"up": svc}))
    code, _, _ = get(p, "/wrong-name")
    assert code == 502
    assert wait_total(p, FAILURES, 1, reason="certificate") == 1
    assert b.request_count() == 0


def test_without_a_server_name_the_chain_is_checked_and_no_sni_sent(certs, other_ca,
                                                                     tls_backends, admin_sluice):
    b = tls_backends("up")
    good = tls_service([b.addr], ca=str(certs.ca))
    bad = tls_service([b.addr], ca=str(other_ca.ca))
    p = admin_sluice(config({"up": good, "bad": bad},
                            routes=[{"host": UP, "service": "up"},
                                    {"host": "bad.example.com", "service": "bad"}]))
    assert get(p, "/chain")[0] == 200
    assert b.tls_seen[0]["sni"] is None, b.tls_seen
    assert get(p, "/chain", host="bad.example.com")[0] == 502


def test_an_ip_server_name_checks_the_ip_san(certs, tls_backends, admin_sluice):
    ip = tls_backends("ip", leaf="ip")      # IP:127.0.0.1
    dns = tls_backends("dns", leaf="a")     # DNS:a.example.com only
    p = admin_sluice(config(
        {"up": tls_service([ip.addr], serverName="127.0.0.1", ca=str(certs.ca)),
         "dns": tls_service([dns.addr], serverName="127.0.0.1", ca=str(certs.ca))},
        routes=[{"host": UP, "service": "up"}, {"host": "dns.example.com", "service": "dns"}]))
    assert get(p, "/ip")[0] == 200
    assert ip.tls_seen[0]["sni"] is None, ip.tls_seen   # no SNI for an address
    assert get(p, "/ip", host="dns.example.com")[0] == 502


def test_verify_false_takes_any_certificate(other_ca, tls_backends, admin_sluice):
    b = tls_backends("up")
    p = admin_sluice(config({"up": tls_service([b.addr], serverName="wrong.example.com",
                                               verify=False)}))
    assert get(p, "/any")[0] == 200
    assert b.tls_seen[0]["sni"] == "wrong.example.com"


def test_system_trust_store_by_default(tls_backends, admin_sluice):
    """No ``ca``: the system's trust store, which does not hold the test CA: 502."""
    b = tls_backends("up")
    p = admin_sluice(config({"up": tls_service([b.addr])}))
    assert get(p, "/system")[0] == 502
    assert wait_total(p, FAILURES, 1, reason="certificate") == 1


# --------------------------------------------------------------------------
# handshake failures

def test_an_endpoint_without_alpn_h2_is_refused(certs, tls_backends, admin_sluice):
    ctx = h2_tls_context(str(certs.cert("a")), str(certs.key("a")), alpn=("http/1.1",))
    b = tls_backends("up", tls=ctx)
    p = admin_sluice(config({"up": tls_service([b.addr], serverName=NAME, ca=str(certs.ca))}))
    assert get(p, "/alpn")[0] == 502
    assert wait_total(p, FAILURES, 1, reason="alpn") == 1
    assert "did not select ALPN h2" in p.stderr_text()


def test_a_plain_endpoint_fails_the_handshake(certs, admin_sluice):
    plain = H2Backend("plain")
    try:
        p = admin_sluice(config({"up": tls_service([plain.addr], serverName=NAME,
                                                   ca=str(certs.ca))}))
        assert get(p, "/plain")[0] == 502
        assert wait_total(p, FAILURES, 1, reason="handshake") == 1
    finally:
        plain.shutdown()


def test_a_silent_endpoint_times_out_in_the_handshake(certs, admin_sluice):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)   # the kernel completes the TCP handshake; nothing ever answers
    try:
        addr = f"127.0.0.1:{silent.getsockname()[1]}"
        p = admin_sluice(config({"up": tls_service([addr], serverName=NAME, ca=str(certs.ca))},
                                timeouts={"connect": "1s"}))
        started = time.monotonic()
        code, _, _ = get(p, "/silent")
        took = time.monotonic() - started
        assert code == 504, code
        assert 0.8 <= took < 5, f"answered after {took:.2f}s, connect timeout 1s"
    finally:
        silent.close()


def test_a_second_endpoint_serves_when_the_first_fails_tls(certs, other_ca, tls_backends,
                                                           admin_sluice):
    """A failed handshake is a failed connect: with connectTries 2 the next endpoint."""
    good = tls_backends("good")
    plain = H2Backend("plain")
    try:
        p = admin_sluice(config({"up": tls_service([plain.addr, good.addr], serverName=NAME,
                                                   ca=str(certs.ca))},
                                limits={"connectTries": 2}))
        for i in range(4):
            assert get(p, f"/retry{i}")[0] == 200
        assert good.request_count() == 4
    finally:
        plain.shutdown()


# --------------------------------------------------------------------------
# connections over time

def test_idle_tls_connection_closes_after_upstream_idle(certs, tls_backends, admin_sluice):
    b = tls_backends("up")
    p = admin_sluice(config({"up": tls_service([b.addr], serverName=NAME, ca=str(certs.ca))},
                            limits={"upstreamIdle": "1s"}))
    assert get(p, "/once")[0] == 200
    assert b.conn_count() == 1
    b.wait_closed(timeout=6)
    assert not b.errors, b.errors
    assert get(p, "/again")[0] == 200
    assert b.conn_count() == 2


@needs_h2load
def test_reloads_changing_tls_settings_under_load(certs, tls_backends, admin_sluice):
    """h2load runs while six reloads alternate the service's TLS settings: no request fails,
    and a change of settings opens a new connection (old ones finish their streams)."""
    b = tls_backends("up")
    address = new_listener()

    def variant(i: int) -> dict:
        tls = {"serverName": NAME, "ca": str(certs.ca)} if i % 2 == 0 else {
            "serverName": NAME, "verify": False}
        return config({"up": tls_service([b.addr], **tls)}, address=address)

    p = admin_sluice(variant(0))
    result = {}
    load = threading.Thread(target=lambda: result.update(h2load(
        "-n", "20000", "-c", "8", "-m", "10", "-H", f":authority: {UP}",
        f"http://{p.addr('plain')}/reload", timeout=180)))
    load.start()
    for i in range(1, 7):
        time.sleep(0.3)
        p.reload(variant(i))
    load.join(200)
    assert result.get("succeeded") == 20000 and result.get("2xx") == 20000, result.get("text")
    assert b.conn_count() >= 2, "a change of TLS settings did not open a new connection"
    assert not b.errors, b.errors[:3]


# --------------------------------------------------------------------------
# gRPC over TLS to the endpoint

@pytest.mark.skipif(grpc is None, reason="grpcio is not installed")
def test_grpc_unary_and_status_over_tls_to_the_endpoint(certs, admin_sluice):
    g = GrpcBackend("g", tls=(certs.cert("a").read_bytes(), certs.key("a").read_bytes()))
    try:
        p = admin_sluice(config({"up": tls_service([g.tls_addr], serverName=NAME,
                                                   ca=str(certs.ca))}))
        ch = grpc.insecure_channel(p.addr("plain"), options=[("grpc.default_authority", UP)])
        echo = ch.unary_unary(method_path("Echo"))
        reply, call = echo.with_call(b"over tls", metadata=[("x-echo-a", "1")], timeout=10)
        assert reply == b"over tls"
        trailing = {m.key: m.value for m in call.trailing_metadata()}
        assert trailing.get("x-trailer") == "done-g", trailing
        fail = ch.unary_unary(method_path("Fail"))
        with pytest.raises(grpc.RpcError) as err:
            fail(b"", timeout=10)
        assert err.value.code() == grpc.StatusCode.INTERNAL
        ch.close()
    finally:
        g.shutdown()


# --------------------------------------------------------------------------
# configuration

def check(tmp_path, service: dict, name: str = "cfg"):
    cfg = make_config({"web": {"address": new_listener(), "protocol": "http",
                               "routes": [{"host": UP, "service": "up"}]}},
                      {"up": {"endpoints": ["127.0.0.1:9102"], **service}})
    path = tmp_path / f"{name}.yaml"
    path.write_text(to_yaml(cfg) + "\n")
    return subprocess.run([str(sluice_bin()), "check", "--config", str(path)],
                          capture_output=True, text=True, timeout=20)


def test_check_prints_the_tls_settings(tmp_path, certs):
    r = check(tmp_path, {"protocol": "h2", "tls": {"serverName": NAME, "ca": str(certs.ca)}})
    assert r.returncode == 0, r.stderr
    assert re.search(r"protocol h2\s+tls server-name a\.example\.com, verified against \S*ca\.pem",
                     r.stdout), r.stdout


@pytest.mark.parametrize("service,field,words", [
    ({"protocol": "h2c", "tls": {"serverName": NAME}}, "services[0].tls", "protocol: h2"),
    ({"tls": {"verify": False}}, "services[0].tls", "protocol: h2"),
    ({"protocol": "h2", "tls": {"ca": "/nonexistent/ca.pem"}}, "services[0].tls.ca",
     "cannot read"),
    ({"protocol": "h2", "tls": {"ca": "@KEY"}}, "services[0].tls.ca", "no PEM certificate"),
    ({"protocol": "h2", "tls": {"serverName": "bad name!"}}, "services[0].tls.serverName",
     "not a host name"),
    ({"protocol": "h2", "tls": {"verify": "maybe"}}, "services[0].tls.verify", ""),
    ({"protocol": "h2", "tls": {"verify": False, "ca": "@CA"}}, "services[0].tls.ca",
     "verify: false"),
    ({"protocol": "h2", "tls": {"sni": NAME}}, "services[0].tls.sni", "unknown field 'sni'"),
    ({"protocol": "h2", "tls": {"certificate": {"cert": "@CLIENT"}}},
     "services[0].tls.certificate.key", "missing"),
    ({"protocol": "h2", "tls": {"certificate": {"cert": "@CLIENT", "key": "@WRONGKEY"}}},
     "services[0].tls.certificate.key", "does not match"),
], ids=["h2c", "http1", "ca-missing", "ca-not-pem", "server-name", "verify", "verify-and-ca",
        "unknown", "cert-without-key", "wrong-key"])
def test_check_names_the_bad_tls_field(tmp_path, certs, service, field, words):
    subst = {"@KEY": str(certs.key("a")), "@CA": str(certs.ca),
             "@CLIENT": str(certs.cert("client")), "@WRONGKEY": str(certs.key("a"))}

    def fill(v):
        if isinstance(v, dict):
            return {k: fill(x) for k, x in v.items()}
        return subst.get(v, v) if isinstance(v, str) else v

    r = check(tmp_path, fill(service))
    assert r.returncode == 1, f"accepted:\n{r.stdout}"
    lines = [l for l in r.stderr.splitlines() if f"{field}:" in l]
    assert lines, f"no diagnostic naming {field}:\n{r.stderr}"
    assert words in lines[0], lines[0]

"""`tls` listeners with `certificates`: TLS terminated in the proxy for `terminate: true`
routes (HTTP then routed by Host/path as on an http listener), SNI passthrough for the
others, on the same port; `redirectHTTPS` on http listeners; certificates in `sluice check`
and on reload.

Clients are real: `openssl s_client`, curl (verification on), Python's ssl module, wrk.
Certificates come from tls_certs.make_term_certs (root CA, intermediate CA, leaves for
default.example.com, a.example.com, b.example.com via the intermediate,
*.apps.example.com, and pass.example.com presented by the passthrough backend)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import List, Optional

import pytest

from backends import pattern_bytes
from conftest import fd_count, free_port, make_config, new_listener, sluice_bin, to_yaml
from http_backends import (BufReader, Response, SocketClient, closed_within, curl, get, port_of,
                           read_response, request_bytes, ws_accept, ws_frame)
from tls_backends import BackendGroup, BIOClient, client_context
from tls_certs import (all_pems, first_pem, make_leaf, make_term_certs, mismatched_key,
                       pem_sans, pem_subject)

pytestmark = pytest.mark.sluice_only

HSTS = 31536000
MiB = 1 << 20


# --------------------------------------------------------------------------
# fixtures

@pytest.fixture(scope="session")
def term_certs(tmp_path_factory):
    return make_term_certs(tmp_path_factory.mktemp("term-certs"))


def cert_list(certs, keys=("default", "a", "b", "apps")) -> List[dict]:
    """`certificates` entries; the first is the default certificate."""
    return [{"cert": str(certs.cert(k)), "key": str(certs.key(k))} for k in keys]


def https_listener(address: str, certs, http_port: int = 0, keys=("default", "a", "b", "apps"),
                   default: Optional[dict] = None) -> dict:
    return {
        "address": address,
        "protocol": "tls",
        "certificates": cert_list(certs, keys),
        "routes": [
            {"host": "pass.example.com", "service": "tls-pass"},
            {"host": "a.example.com", "terminate": True, "service": "web-a", "hsts": HSTS},
            {"host": "b.example.com", "terminate": True, "service": "web-b"},
            {"host": "down.apps.example.com", "terminate": True, "service": "web-down"},
            {"host": "*.apps.example.com", "terminate": True, "path": "/api",
             "stripPath": True, "service": "web-api"},
        ],
        "default": default if default is not None else {"terminate": True, "status": 404},
    }


class Term:
    """A running proxy with an https (tls) and an http listener, and the backends."""

    def __init__(self, proxy, http, tls, certs):
        self.p = proxy
        self.http = http          # HTTPBackends: web-a, web-b, web-api
        self.tls = tls            # BackendGroup: tls-pass
        self.certs = certs
        self.https_addr = proxy.addr("https")
        self.https_port = port_of(self.https_addr)
        self.http_addr = proxy.addr("plain")
        self.http_port = port_of(self.http_addr)

    def conn(self, sni: Optional[str], **kw) -> "HTTPSConn":
        return HTTPSConn(self.https_port, self.certs, sni, **kw)

    def backend_requests(self) -> int:
        return sum(self.http[n].request_count() for n in ("web-a", "web-b", "web-api"))


def term_config(http_backends, tls_group, certs, https_addr=None, tls_hello="5s",
                https=None) -> dict:
    https_addr = https_addr or new_listener()
    plain_addr = new_listener()
    for n in ("web-a", "web-b", "web-api"):
        if n not in http_backends.by_name:
            http_backends.add(n)
    if "tls-pass" not in tls_group.by_name:
        tls_group.tls("tls-pass", "pass")
    return make_config(
        {"https": https or https_listener(https_addr, certs),
         "plain": {"address": plain_addr, "protocol": "http", "routes": [
             {"host": "a.example.com", "redirectHTTPS": True,
              "httpsPort": port_of(https_addr)},
             {"host": "b.example.com", "service": "web-b"}]}},
        {"tls-pass": [tls_group["tls-pass"].addr],
         "web-a": [http_backends["web-a"].addr],
         "web-b": [http_backends["web-b"].addr],
         "web-api": [http_backends["web-api"].addr],
         "web-down": [f"127.0.0.1:{free_port()}"]},
        timeouts={"tlsHello": tls_hello, "connect": "2s"},
        limits={"connectTries": 1})


@pytest.fixture
def term_group(term_certs):
    g = BackendGroup(term_certs)
    yield g
    g.shutdown()


@pytest.fixture
def term(http_backends, term_group, proxy_factory, term_certs):
    cfg = term_config(http_backends, term_group, term_certs)
    return Term(proxy_factory(cfg), http_backends, term_group, term_certs)


# --------------------------------------------------------------------------
# clients

def client_ctx(certs, alpn: Optional[List[str]] = None, check_hostname: bool = True,
               version: Optional[ssl.TLSVersion] = None, tickets: bool = True) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    ctx.check_hostname = check_hostname
    if alpn is not None:
        ctx.set_alpn_protocols(alpn)
    if version is not None:
        ctx.minimum_version = version
        ctx.maximum_version = version
    if not tickets:
        ctx.options |= ssl.OP_NO_TICKET
    return ctx


class HTTPSConn(SocketClient):
    """One TLS connection (Python ssl, chain verified against the test CA; the host name
    too when an SNI is given and ``verify_name``), HTTP/1.1 requests on it."""

    def __init__(self, port: int, certs, sni: Optional[str], alpn=None, version=None,
                 verify_name: bool = True, timeout: float = 30.0):
        ctx = client_ctx(certs, alpn, check_hostname=verify_name and sni is not None,
                         version=version)
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        try:
            self.sock = ctx.wrap_socket(raw, server_hostname=sni)
        except BaseException:
            raw.close()
            raise
        self.reader = BufReader(self.sock)

    def request(self, host: Optional[str], target: str = "/", method: str = "GET",
                headers: Optional[List[str]] = None, body: bytes = b"") -> Response:
        self.sock.sendall(request_bytes(host, target, method, headers=headers, body=body))
        return read_response(self.reader, method)

    def cert_pem(self) -> str:
        return ssl.DER_cert_to_PEM_cert(self.sock.getpeercert(binary_form=True))


def s_client(port: int, cafile, servername: Optional[str], stdin: bytes = b"",
             extra: Optional[List[str]] = None, timeout: float = 20.0):
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(cafile),
           "-ign_eof"]
    cmd += ["-noservername"] if servername is None else ["-servername", servername]
    cmd += extra or []
    p = subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def http_get_bytes(host: str, target: str = "/") -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()


def presented(out: str):
    """(subject, SANs, number of certificates sent) from s_client -showcerts output."""
    pem = first_pem(out)
    assert pem, f"no certificate in s_client output:\n{out}"
    return pem_subject(pem), pem_sans(pem), len(all_pems(out))


def read_bio_response(cli: BIOClient, timeout: float = 10.0):
    """status, fields (lower-case name -> value), body: a Content-Length response."""
    status_line = cli.recv_line(timeout).rstrip(b"\r")
    fields = {}
    while True:
        line = cli.recv_line(timeout).rstrip(b"\r")
        if not line:
            break
        k, _, v = line.partition(b":")
        fields[k.decode().strip().lower()] = v.decode().strip()
    body = cli.recv_exact(int(fields.get("content-length", "0")), timeout)
    return int(status_line.split()[1]), fields, body


# --------------------------------------------------------------------------
# 1. the certificate chosen by SNI

@pytest.mark.parametrize("sni,cn,chain,verify", [
    ("a.example.com", "a.example.com", 1, True),
    ("A.EXAMPLE.com", "a.example.com", 1, False),          # case-insensitive selection
    ("b.example.com", "b.example.com", 2, True),           # leaf + intermediate sent
    ("x.apps.example.com", "*.apps.example.com", 1, True),
    ("down.apps.example.com", "*.apps.example.com", 1, True),
    (None, "default.example.com", 1, False),
    ("unknown.example.net", "default.example.com", 1, False),
    ("deep.x.apps.example.com", "default.example.com", 1, False),  # a wildcard is one label
])
def test_certificate_per_sni(term, sni, cn, chain, verify):
    extra = ["-showcerts"]
    if verify:
        extra += ["-verify_hostname", sni, "-verify_return_error"]
    rc, out, err = s_client(term.https_port, term.certs.ca, sni,
                            stdin=http_get_bytes(sni or "a.example.com"), extra=extra)
    subject, sans, count = presented(out)
    assert f"CN={cn}" in subject, f"SNI {sni}: got {subject}\n{out}\n{err}"
    assert sans == [cn], f"SNI {sni}: SANs {sans}"
    assert count == chain, f"SNI {sni}: {count} certificates sent, expected {chain}"
    # the chain verifies against the root (hostname too when asked)
    assert "Verify return code: 0 (ok)" in out, out
    assert "HTTP/1.1 " in out, f"no HTTP response after the handshake:\n{out}\n{err}"


def test_wildcard_and_exact_verified_by_python(term):
    for sni in ("a.example.com", "b.example.com", "q.apps.example.com"):
        with term.conn(sni) as c:           # check_hostname on: raises if the name is wrong
            assert pem_sans(c.cert_pem()) == [sni if not sni.endswith("apps.example.com")
                                              else "*.apps.example.com"]


# --------------------------------------------------------------------------
# 2. routing, forwarded fields, keep-alive

def test_curl_routes_and_forwarded_fields(term):
    port = term.https_port
    cases = [
        ("a.example.com", "/p/q?x=1", "web-a", "/p/q?x=1"),
        ("b.example.com", "/", "web-b", "/"),
        ("zz.apps.example.com", "/api/v1/items?id=7", "web-api", "/v1/items?id=7"),
    ]
    for host, target, backend, seen_target in cases:
        r = curl("--resolve", f"{host}:{port}:127.0.0.1", "--cacert", str(term.certs.ca),
                 "-H", "X-Forwarded-For: 203.0.113.9",
                 "-w", "\n%{ssl_verify_result} %{http_code}", f"https://{host}:{port}{target}",
                 timeout=20)
        assert r.returncode == 0, f"{host}: curl rc={r.returncode}: {r.stderr}"
        body, tail = r.stdout.decode().rsplit("\n", 1)
        assert tail == "0 200", f"{host}: verify/status {tail}; body {body[:300]}"
        facts = json.loads(body)
        assert facts["backend"] == backend, facts
        assert facts["target"] == seen_target, facts
        assert facts["xfproto"] == "https", f"{host}: X-Forwarded-Proto {facts['xfproto']!r}"
        assert facts["xff"] == "203.0.113.9, 127.0.0.1", f"{host}: X-Forwarded-For {facts['xff']!r}"
        assert facts["host"] in (host, f"{host}:{port}"), facts


def test_forwarded_fields_python(term):
    with term.conn("a.example.com") as c:
        r = c.request("a.example.com", "/x")
        assert r.status == 200, r
        f = r.json()
        assert (f["backend"], f["xfproto"], f["xff"]) == ("web-a", "https", "127.0.0.1"), f
        # a client's own X-Forwarded-Proto must not survive: the proxy sets it
        r = c.request("a.example.com", "/y", headers=["X-Forwarded-Proto: http"])
        assert r.json()["xfproto"] == "https", r.json()


def test_api_prefix_only_and_unknown_host_default_status(term):
    with term.conn("x.apps.example.com") as c:
        r = c.request("x.apps.example.com", "/api")
        assert r.status == 200 and r.json()["backend"] == "web-api", r
        assert r.json()["target"] == "/", r.json()
        r = c.request("x.apps.example.com", "/apix")
        assert r.status == 404, f"/apix is not under /api: {r}"
        r = c.request("x.apps.example.com", "/other")
        assert r.status == 404, r
    with term.conn(None) as c:
        r = c.request("nobody.example.net", "/")
        assert r.status == 404, r
    assert term.http["web-a"].request_count() == 0


def test_keep_alive_alternating_hosts_no_sni(term):
    """No SNI: the default certificate; each request routed by its Host among the
    terminated routes; all on one TLS connection."""
    seq = ["a.example.com", "b.example.com", "q.apps.example.com", "a.example.com",
           "b.example.com", "unknown.example.net", "a.example.com"]
    with term.conn(None) as c:
        assert "CN=default.example.com" in pem_subject(c.cert_pem())
        for i, host in enumerate(seq):
            target = "/api/n%d" % i if "apps" in host else "/n%d" % i
            r = c.request(host, target)
            if host == "unknown.example.net":
                assert r.status == 404, r
                continue
            assert r.status == 200, f"request {i} ({host}): {r}"
            want = {"a.example.com": "web-a", "b.example.com": "web-b"}.get(host, "web-api")
            assert r.json()["backend"] == want, f"request {i} ({host}): {r.json()}"
            assert r.json()["xfproto"] == "https"
    assert term.http["web-a"].request_count() == 3
    assert term.http["web-b"].request_count() == 2
    assert term.http["web-api"].request_count() == 1


def test_keep_alive_many_requests_with_sni(term):
    with term.conn("a.example.com") as c:
        for i in range(20):
            r = c.request("a.example.com", f"/k{i}", method="POST", body=b"x" * (i * 100))
            assert r.status == 200, r
            f = r.json()
            assert (f["target"], f["body_len"]) == (f"/k{i}", i * 100), f
        # Host b on a connection whose SNI was a: routed by Host like an http listener
        r = c.request("b.example.com", "/other-host")
        assert r.status == 200 and r.json()["backend"] == "web-b", r
    assert term.http["web-a"].conn_count() >= 1


def test_wrk_keep_alive(term):
    out = subprocess.run(["wrk", "-t1", "-c4", "-d1s", "-H", "Host: a.example.com",
                          f"https://127.0.0.1:{term.https_port}/wrk"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30).stdout.decode()
    m = re.search(r"(\d+) requests in", out)
    assert m and int(m.group(1)) > 0, out
    assert "Socket errors" not in out and "Non-2xx" not in out, out
    assert term.http["web-a"].request_count() >= int(m.group(1))


# --------------------------------------------------------------------------
# 3. ALPN and protocol versions

def test_alpn_http11(term):
    with term.conn("a.example.com", alpn=["http/1.1"]) as c:
        assert c.sock.selected_alpn_protocol() == "http/1.1"
        assert c.request("a.example.com").status == 200
    port = term.https_port
    r = curl("-v", "--http1.1", "--resolve", f"a.example.com:{port}:127.0.0.1", "--cacert",
             str(term.certs.ca), "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
             f"https://a.example.com:{port}/")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == "1.1 200"
    assert re.search(r"ALPN.*accepted.*http/1\.1", r.stderr), r.stderr


def test_alpn_h2_only_client_gets_http11_without_alpn(term):
    with term.conn("a.example.com", alpn=["h2"]) as c:
        assert c.sock.selected_alpn_protocol() is None, "h2 must not be selected"
        r = c.request("a.example.com", "/h2-client")
        assert r.status == 200 and r.json()["backend"] == "web-a", r
    # curl offering h2 and http/1.1 ends up on HTTP/1.1
    port = term.https_port
    r = curl("--http2", "--resolve", f"a.example.com:{port}:127.0.0.1", "--cacert",
             str(term.certs.ca), "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
             f"https://a.example.com:{port}/")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == "1.1 200"


@pytest.mark.parametrize("version,name", [(ssl.TLSVersion.TLSv1_2, "TLSv1.2"),
                                          (ssl.TLSVersion.TLSv1_3, "TLSv1.3")])
def test_tls12_and_tls13(term, version, name):
    for sni in ("a.example.com", "b.example.com", "x.apps.example.com"):
        with term.conn(sni, version=version) as c:
            assert c.sock.version() == name
            target = "/api/v" if "apps" in sni else "/v"
            assert c.request(sni, target).status == 200


def test_tls11_refused(term):
    rc, out, err = s_client(term.https_port, term.certs.ca, "a.example.com",
                            stdin=http_get_bytes("a.example.com"),
                            extra=["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"])
    assert "no protocols available" not in err, "the client itself did not offer TLS 1.1"
    assert rc != 0, f"TLS 1.1 handshake succeeded:\n{out}"
    # (the SSL-Session block names the attempted protocol even when the handshake failed)
    assert re.search(r"^New, \(NONE\), Cipher is \(NONE\)", out, re.M), out
    assert term.backend_requests() == 0


# --------------------------------------------------------------------------
# 4. session resumption

@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("proto", ["-tls1_2", "-tls1_3"])
def test_session_resumption(http_backends, term_group, proxy_factory, term_certs, tmp_path,
                            proto, workers):
    t = Term(proxy_factory(term_config(http_backends, term_group, term_certs), workers=workers),
             http_backends, term_group, term_certs)
    sess = tmp_path / "sess.pem"
    rc, out, err = s_client(t.https_port, t.certs.ca, "a.example.com",
                            stdin=http_get_bytes("a.example.com", "/first"),
                            extra=[proto, "-sess_out", str(sess)])
    assert re.search(r"^New, TLSv1\.[23]", out, re.M), out
    assert "HTTP/1.1 200" in out, out
    assert sess.exists() and sess.stat().st_size > 0, f"no session saved:\n{out}\n{err}"
    # several times: with 2 workers the connections land on either loop
    for i in range(4 if workers > 1 else 1):
        rc, out, err = s_client(t.https_port, t.certs.ca, "a.example.com",
                                stdin=http_get_bytes("a.example.com", f"/again{i}"),
                                extra=[proto, "-sess_in", str(sess)])
        assert re.search(r"^Reused, TLSv1\.[23]", out, re.M), \
            f"try {i}: session not resumed:\n{out}\n{err}"
        assert "HTTP/1.1 200" in out, out
    assert t.http["web-a"].request_count() == 1 + (4 if workers > 1 else 1)


# --------------------------------------------------------------------------
# 5. HSTS and redirects

def test_hsts_only_on_its_route(term):
    with term.conn("a.example.com") as c:
        r = c.request("a.example.com", "/")
        assert r.status == 200
        assert r.header("Strict-Transport-Security") == f"max-age={HSTS}", r.fields
        # a second request on the connection too
        r = c.request("a.example.com", "/again")
        assert r.header("Strict-Transport-Security") == f"max-age={HSTS}", r.fields
        # another route on the same connection: none
        r = c.request("b.example.com", "/")
        assert r.status == 200 and r.header("Strict-Transport-Security") is None, r.fields
    with term.conn("b.example.com") as c:
        r = c.request("b.example.com", "/")
        assert r.header("Strict-Transport-Security") is None, r.fields
    with term.conn("x.apps.example.com") as c:
        r = c.request("x.apps.example.com", "/api/x")
        assert r.header("Strict-Transport-Security") is None, r.fields
    with term.conn(None) as c:
        r = c.request("unknown.example.net", "/")
        assert r.status == 404 and r.header("Strict-Transport-Security") is None, r.fields
    # never over plain HTTP (RFC 6797 §7.2)
    r = get(term.http_addr, "b.example.com", "/")
    assert r.status == 200 and r.header("Strict-Transport-Security") is None, r.fields


@pytest.mark.parametrize("host_field", ["a.example.com", "a.example.com:{http}", "A.Example.COM"])
def test_redirect_https_308(term, host_field):
    host = host_field.format(http=term.http_port)
    for method in ("GET", "POST"):
        r = get(term.http_addr, host, "/some/path?q=1&r=%20x", method=method,
                body=b"abc" if method == "POST" else b"")
        assert r.status == 308, f"{method} {host}: {r}"
        assert r.header("Location") == \
            f"https://a.example.com:{term.https_port}/some/path?q=1&r=%20x", r.fields
    assert term.http["web-a"].request_count() == 0, "a redirect must not reach the service"
    # the other host on the http listener is served plainly
    r = get(term.http_addr, "b.example.com", "/plain")
    assert r.status == 200 and r.json()["xfproto"] == "http", r


def test_redirect_followed_by_curl(term):
    r = curl("-L", "--resolve", f"a.example.com:{term.http_port}:127.0.0.1",
             "--resolve", f"a.example.com:{term.https_port}:127.0.0.1",
             "--cacert", str(term.certs.ca), "-w", "\n%{num_redirects} %{url_effective}",
             f"http://a.example.com:{term.http_port}/follow?me=1")
    assert r.returncode == 0, r.stderr
    body, tail = r.stdout.decode().rsplit("\n", 1)
    assert tail == f"1 https://a.example.com:{term.https_port}/follow?me=1", tail
    f = json.loads(body)
    assert (f["backend"], f["target"], f["xfproto"]) == ("web-a", "/follow?me=1", "https"), f


# --------------------------------------------------------------------------
# 6. passthrough and termination on one port

def test_passthrough_and_termination_same_port(term):
    be = term.tls["tls-pass"]
    rc, out, err = s_client(term.https_port, term.certs.ca, "pass.example.com",
                            stdin=b"hello\nBYE\n",
                            extra=["-verify_hostname", "pass.example.com", "-verify_return_error"])
    subject, sans, _ = presented(out)
    assert "CN=pass.example.com" in subject, f"passthrough must show the backend's certificate:\n{out}"
    assert "Verify return code: 0 (ok)" in out
    assert re.search(r"^tls-pass\nhello\nBYE$", out, re.M), f"no echo from the backend:\n{out}\n{err}"
    assert be.wait_conn().sni == "pass.example.com"
    # HTTP through passthrough is answered by the TLS backend itself, untouched
    port = term.https_port
    r = curl("--resolve", f"pass.example.com:{port}:127.0.0.1", "--cacert", str(term.certs.ca),
             f"https://pass.example.com:{port}/pt")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"backend": "tls-pass", "sni": "pass.example.com",
                                    "request": "GET /pt HTTP/1.1"}
    # and terminated routes on the same port, interleaved with passthrough connections
    for i in range(3):
        with term.conn("a.example.com") as c:
            assert c.request("a.example.com", f"/t{i}").json()["backend"] == "web-a"
        with term.conn("pass.example.com") as c:
            assert "CN=pass.example.com" in pem_subject(c.cert_pem())
            c.sock.sendall(b"ping\nBYE\n")
            assert c.reader.read_until(b"BYE\n") == b"tls-pass\nping\nBYE\n"
    assert be.conn_count() == 5
    assert term.http["web-a"].request_count() == 3


# --------------------------------------------------------------------------
# 7. odd clients

def test_client_hello_one_byte_at_a_time(term):
    s = socket.create_connection(("127.0.0.1", term.https_port), timeout=10)
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cli = BIOClient(s, client_context(term.certs), "a.example.com")
        hello = cli.client_hello()
        assert hello[0] == 22 and len(hello) > 100
        for i in range(len(hello)):
            s.sendall(hello[i:i + 1])
            time.sleep(0.001)
        cli.handshake(timeout=10)
        assert "CN=a.example.com" in pem_subject(
            ssl.DER_cert_to_PEM_cert(cli.obj.getpeercert(binary_form=True)))
        for i in range(2):
            cli.send(request_bytes("a.example.com", f"/dribble{i}"))
            status, fields, body = read_bio_response(cli)
            assert status == 200, (status, fields, body)
            assert b'"backend": "web-a"' in body and f"/dribble{i}".encode() in body, body
    finally:
        s.close()


GARBAGE = {
    "http": b"GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n",
    "ssh": b"SSH-2.0-OpenSSH_9.2p1\r\n",
    "bad-record-version": b"\x16\x09\x09\x00\x10" + b"\x01" * 16,
    "server-hello-type": b"\x16\x03\x01\x00\x08\x02\x00\x00\x04\x03\x03\x00\x00",
    "zeros": b"\x00" * 64,
}


@pytest.mark.parametrize("kind", sorted(GARBAGE) + ["hello-then-garbage"])
def test_garbage_closed_promptly(term, kind):
    with socket.create_connection(("127.0.0.1", term.https_port), timeout=5) as s:
        if kind == "hello-then-garbage":
            # a valid ClientHello for a terminated route, then a bogus record
            cli = BIOClient(s, client_context(term.certs), "a.example.com")
            payload = cli.client_hello()
            s.sendall(payload)
            time.sleep(0.2)
            payload = b"\x17\x03\x03\x00\x20" + b"\xee" * 32
        else:
            payload = GARBAGE[kind]
        t0 = time.monotonic()
        s.sendall(payload)
        state = closed_within(s, 4.0)
        elapsed = time.monotonic() - t0
    assert state.startswith(("eof", "reset")), f"{kind}: connection still {state} after 4s"
    assert elapsed < 1.5, f"{kind}: closed only after {elapsed:.2f}s (tlsHello is 5s)"
    assert term.backend_requests() == 0 and term.tls.total_conns() == 0


@pytest.mark.parametrize("part", ["nothing", "half-hello", "hello-no-finished"])
def test_handshake_never_completes(http_backends, term_group, proxy_factory, term_certs, part):
    t = Term(proxy_factory(term_config(http_backends, term_group, term_certs, tls_hello="1s")),
             http_backends, term_group, term_certs)
    with socket.create_connection(("127.0.0.1", t.https_port), timeout=5) as s:
        t0 = time.monotonic()
        cli = BIOClient(s, client_context(t.certs), "a.example.com")
        hello = cli.client_hello()
        if part == "half-hello":
            s.sendall(hello[: len(hello) // 2])
        elif part == "hello-no-finished":
            s.sendall(hello)   # the server answers; the client never sends its Finished
        state = closed_within(s, 4.0)
        elapsed = time.monotonic() - t0
    assert state.startswith(("eof", "reset")), f"{part}: still {state} after 4s"
    assert 0.7 <= elapsed <= 3.0, f"{part}: closed after {elapsed:.2f}s; tlsHello is 1s"
    if part == "hello-no-finished":
        assert "extra" in state, "the server's first flight was expected before the close"
    assert t.backend_requests() == 0


# --------------------------------------------------------------------------
# 8. large bodies

def chunked(data: bytes, step: int = MiB + 7) -> bytes:
    out = bytearray()
    for off in range(0, len(data), step):
        part = data[off:off + step]
        out += b"%x\r\n" % len(part) + part + b"\r\n"
    return bytes(out + b"0\r\n\r\n")


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_50mib_request_body(term, framing):
    size = 50 * MiB
    payload = pattern_bytes(size)
    with term.conn("a.example.com", timeout=120) as c:
        if framing == "chunked":
            r = c.request("a.example.com", "/upload", method="POST",
                          headers=["Transfer-Encoding: chunked"], body=chunked(payload))
        else:
            r = c.request("a.example.com", "/upload", method="POST", body=payload)
        assert r.status == 200, r
        f = r.json()
        assert f["body_len"] == size, f
        assert f["body_sha256"] == hashlib.sha256(payload).hexdigest()
        # the connection is still good
        assert c.request("a.example.com", "/after").status == 200


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_50mib_response_body(term, framing):
    size = 50 * MiB
    q = f"/download?mode=download&size={size}" + ("&chunked=1" if framing == "chunked" else "")
    with term.conn("a.example.com", timeout=120) as c:
        r = c.request("a.example.com", q)
        assert r.status == 200, r
        assert len(r.body) == size
        assert hashlib.sha256(r.body).hexdigest() == hashlib.sha256(pattern_bytes(size)).hexdigest()
        if framing == "chunked":
            assert (r.header("Transfer-Encoding") or "").lower() == "chunked"
        else:
            assert r.header("Content-Length") == str(size)
        assert c.request("a.example.com", "/after").status == 200


# --------------------------------------------------------------------------
# 9. a backend down

def test_backend_down_over_tls(term):
    with term.conn("down.apps.example.com") as c:
        t0 = time.monotonic()
        r = c.request("down.apps.example.com", "/api/x")
        assert r.status in (502, 503), r
        assert time.monotonic() - t0 < 4.0
    # the rest still works
    with term.conn("a.example.com") as c:
        assert c.request("a.example.com").status == 200


# --------------------------------------------------------------------------
# 10. reload with a replaced certificate

def live_copy(certs, tmp_path: Path):
    d = tmp_path / "live-certs"
    shutil.copytree(certs.dir, d)
    return type(certs)(d)


def test_reload_replaced_certificate(http_backends, term_group, proxy_factory, term_certs,
                                     tmp_path):
    live = live_copy(term_certs, tmp_path)
    cfg = term_config(http_backends, term_group, term_certs,
                      https=https_listener(new_listener(), live))
    t = Term(proxy_factory(cfg), http_backends, term_group, live)
    old = t.conn("a.example.com")
    try:
        r = old.request("a.example.com", "/before")
        assert r.status == 200
        assert "O=Sluice Test" in pem_subject(old.cert_pem())
        # replace a.example.com's certificate and key in place, then SIGHUP
        make_leaf(live.dir, "a", "a.example.com", org="Sluice Rotated")
        t.p.reload(cfg)
        with t.conn("a.example.com") as new:
            subject = pem_subject(new.cert_pem())
            assert "O=Sluice Rotated" in subject, f"new connection got {subject}"
            assert new.request("a.example.com", "/new").status == 200
        # the TLS connection made before the reload keeps working
        r = old.request("a.example.com", "/after-reload")
        assert r.status == 200 and r.json()["target"] == "/after-reload", r
        r = old.request("b.example.com", "/after-reload-b")
        assert r.status == 200 and r.json()["backend"] == "web-b", r
    finally:
        old.close()


def test_reload_with_bad_key_keeps_old_certificates(http_backends, term_group, proxy_factory,
                                                    term_certs, tmp_path):
    live = live_copy(term_certs, tmp_path)
    cfg = term_config(http_backends, term_group, term_certs,
                      https=https_listener(new_listener(), live))
    t = Term(proxy_factory(cfg), http_backends, term_group, live)
    mismatched_key(live.dir, "a")
    since = t.p.mark()
    t.p.reload(cfg, expect_ok=False)
    t.p.wait_line(r"listeners\[0\]\.certificates\[1\]\.key", 5.0, since)
    with t.conn("a.example.com") as c:
        assert "CN=a.example.com" in pem_subject(c.cert_pem())
        assert c.request("a.example.com").status == 200


# --------------------------------------------------------------------------
# 11. certificates in `sluice check`

def check(config_path: Path, cwd: str = "/"):
    p = subprocess.run([str(sluice_bin()), "check", "--config", str(config_path)], cwd=cwd,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def check_config(certificates: List[dict]) -> dict:
    return make_config(
        {"https": {"address": "127.0.0.1:1", "protocol": "tls", "certificates": certificates,
                   "routes": [{"host": "a.example.com", "terminate": True, "service": "web"}],
                   "default": {"terminate": True, "status": 404}}},
        {"web": ["127.0.0.1:2"]})


def test_check_accepts_relative_paths(term_certs, tmp_path):
    conf = tmp_path / "conf"
    (conf / "certs").mkdir(parents=True)
    for k in ("a", "default"):
        shutil.copy(term_certs.cert(k), conf / "certs" / f"{k}.pem")
        shutil.copy(term_certs.key(k), conf / "certs" / f"{k}.key")
    path = conf / "sluice.yaml"
    path.write_text(to_yaml(check_config([{"cert": "certs/default.pem", "key": "certs/default.key"},
                                          {"cert": "certs/a.pem", "key": "certs/a.key"}])) + "\n")
    rc, out, err = check(path, cwd="/")
    assert rc == 0, f"relative certificate paths must be taken from {conf}:\n{err}"


@pytest.mark.parametrize("fault,field", [
    ("key-mismatch", "listeners[0].certificates[0].key"),
    ("missing-cert", "listeners[0].certificates[0].cert"),
    ("missing-key", "listeners[0].certificates[0].key"),
    ("not-pem-cert", "listeners[0].certificates[0].cert"),
    ("second-key-mismatch", "listeners[0].certificates[1].key"),
])
def test_check_rejects_bad_certificates(term_certs, tmp_path, fault, field):
    d = tmp_path / "c"
    d.mkdir()
    for k in ("a", "b"):
        shutil.copy(term_certs.cert(k), d / f"{k}.pem")
        shutil.copy(term_certs.key(k), d / f"{k}.key")
    entries = [{"cert": str(d / "a.pem"), "key": str(d / "a.key")},
               {"cert": str(d / "b.pem"), "key": str(d / "b.key")}]
    if fault == "key-mismatch":
        entries[0]["key"] = str(mismatched_key(d, "other"))
    elif fault == "missing-cert":
        entries[0]["cert"] = str(d / "nope.pem")
    elif fault == "missing-key":
        entries[0]["key"] = str(d / "nope.key")
    elif fault == "not-pem-cert":
        (d / "junk.pem").write_text("this is not a certificate\n")
        entries[0]["cert"] = str(d / "junk.pem")
    elif fault == "second-key-mismatch":
        entries[1]["key"] = str(d / "a.key")
    path = tmp_path / "bad.yaml"
    path.write_text(to_yaml(check_config(entries)) + "\n")
    rc, out, err = check(path)
    assert rc == 1, f"{fault}: sluice check exited {rc}\nstdout:\n{out}\nstderr:\n{err}"
    lines = [l for l in err.splitlines() if field in l]
    assert lines, f"{fault}: no diagnostic naming {field}:\n{err}"
    assert re.match(r"^.+:\d+:\d+: " + re.escape(field) + r": \S", lines[0]), lines[0]


# --------------------------------------------------------------------------
# 12. upgrades, closing, resources

def test_websocket_over_termination(term):
    key = base64.b64encode(os.urandom(16)).decode()
    with term.conn("a.example.com") as c:
        c.sock.sendall(request_bytes("a.example.com", "/chat", headers=[
            "Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13"]))
        r = read_response(c.reader)
        assert r.status == 101, r
        assert r.header("sec-websocket-accept") == ws_accept(key)
        assert c.reader.read_exact(2 + 8) == b"\x81\x08ws:web-a"
        for payload in (b"hello", os.urandom(70000), os.urandom(300000)):
            frame = ws_frame(payload, opcode=0x2)
            c.sock.sendall(frame)
            assert c.reader.read_exact(len(frame)) == frame
    req = term.http["web-a"].requests[0]
    assert req["xfproto"] == "https" and req["target"] == "/chat", req


def test_client_close_notify_and_eof_close_backend_side(term):
    """A client that ends with close_notify, and one that just closes the socket: the proxy
    closes its side and the upstream connection is not left busy."""
    for how in ("close_notify", "eof"):
        c = term.conn("b.example.com")
        assert c.request("b.example.com", f"/{how}").status == 200
        if how == "close_notify":
            raw = c.sock.unwrap()
            state = closed_within(raw, 3.0)
            raw.close()
            assert state.startswith(("eof", "reset")), f"{how}: {state}"
        else:
            c.close()
    # the proxy still serves, on the same upstream or a new one
    with term.conn("b.example.com") as c:
        assert c.request("b.example.com", "/after").status == 200


def test_descriptors_return_after_many_tls_connections(term):
    p = term.p
    with term.conn("a.example.com") as warm:
        assert warm.request("a.example.com", "/warm").status == 200
    time.sleep(0.3)
    before = fd_count(p.pid)
    conns = []
    try:
        for i in range(60):
            sni = ("a.example.com", "b.example.com", None, "pass.example.com")[i % 4]
            c = term.conn(sni)
            conns.append(c)
            if sni == "pass.example.com":
                c.sock.sendall(b"x\nBYE\n")
                assert c.reader.read_until(b"BYE\n") == b"tls-pass\nx\nBYE\n"
            else:
                host = sni or "a.example.com"
                assert c.request(host, f"/many{i}").status == 200
        # half-finished handshakes too
        for i in range(20):
            s = socket.create_connection(("127.0.0.1", term.https_port), timeout=5)
            cli = BIOClient(s, client_context(term.certs), "a.example.com")
            s.sendall(cli.client_hello())
            conns.append(s)
        assert fd_count(p.pid) > before
    finally:
        for c in conns:
            c.close()
    def pooled():  # upstream connections still open at the HTTP backends (idle pool)
        return sum(1 for n in ("web-a", "web-b", "web-api") for ci in term.http[n].conns
                   if not ci.closed.is_set())

    deadline = time.monotonic() + 10
    while fd_count(p.pid) > before + pooled() + 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert fd_count(p.pid) <= before + pooled() + 1, \
        (f"descriptors: {before} before, {fd_count(p.pid)} 10 s after closing 80 connections, "
         f"{pooled()} upstream connections open")


def test_handshake_and_keep_alive_across_a_reload_that_renumbers_the_tables(
        http_backends, term_group, proxy_factory, term_certs):
    """A handshake half done and a keep-alive TLS client, across a reload that puts another
    terminating listener (its own context and tables) first: every index the connections
    hold moves. The handshake completes with the certificates it started on, the requests are
    routed by the newest table (HSTS on a.example.com's route included), nothing crashes."""
    cfg = term_config(http_backends, term_group, term_certs)
    t = Term(proxy_factory(cfg), http_backends, term_group, term_certs)
    extra = http_backends.add("web-extra")
    renumbered = dict(cfg)
    renumbered["listeners"] = [{
        "name": "first", "address": new_listener(), "protocol": "tls",
        "certificates": cert_list(term_certs, ("apps", "default")),
        "routes": [{"host": "x.apps.example.com", "terminate": True, "service": "web-extra"}],
    }] + list(cfg["listeners"])
    renumbered["services"] = [{"name": "web-extra", "endpoints": [extra.addr]}] + list(cfg["services"])
    kept = t.conn("b.example.com")
    s = socket.create_connection(("127.0.0.1", t.https_port), timeout=10)
    try:
        assert kept.request("b.example.com", "/before").json()["backend"] == "web-b"
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cli = BIOClient(s, client_context(term_certs), "a.example.com")
        hello = cli.client_hello()
        s.sendall(hello[: len(hello) // 2])
        t.p.reload(renumbered)
        s.sendall(hello[len(hello) // 2:])
        cli.handshake(timeout=10)
        assert "CN=a.example.com" in pem_subject(ssl.DER_cert_to_PEM_cert(cli.obj.getpeercert(binary_form=True)))
        for i in range(2):
            cli.send(request_bytes("a.example.com", f"/after{i}"))
            status, fields, body = read_bio_response(cli)
            assert status == 200 and json.loads(body)["backend"] == "web-a", (status, body)
            assert "strict-transport-security" in fields, fields
        r = kept.request("b.example.com", "/after")
        assert r.status == 200 and r.json()["backend"] == "web-b", r
        assert r.header("strict-transport-security") is None
    finally:
        s.close()
        kept.close()
    assert t.p.proc.poll() is None, "the proxy exited"

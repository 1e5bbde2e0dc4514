"""HTTP listener: large bodies both ways (Content-Length and chunked), bodiless
responses (HEAD, 204, 304) on a kept connection, and Expect: 100-continue."""

import hashlib
import json
import subprocess
import time

import pytest

from backends import pattern_bytes
from conftest import make_config, new_listener
from http_backends import BufReader, curl, http_listener, port_of, read_response, request_bytes

pytestmark = pytest.mark.sluice_only

BIG = 50 << 20


@pytest.fixture
def one(http_backends, proxy_factory):
    a = http_backends.add("a")
    cfg = make_config({"web": http_listener(new_listener(), [{"host": "a.example.com",
                                                              "service": "a"}])},
                      {"a": [a.addr]})
    p = proxy_factory(cfg)
    return p, a, f"http://127.0.0.1:{port_of(p.addr())}"


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("bodies") / "upload.bin"
    data = pattern_bytes(BIG)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_upload_50mib(one, big_file, framing):
    p, a, url = one
    path, sha = big_file
    extra = ["-H", "Transfer-Encoding: chunked"] if framing == "chunked" else []
    r = curl("-H", "Host: a.example.com", "-H", "Expect:", "-T", str(path), *extra,
             "-m", "60", url + "/upload")
    assert r.returncode == 0, r.stderr
    f = json.loads(r.stdout)
    assert f["method"] == "PUT"
    assert f["body_len"] == BIG
    assert f["body_sha256"] == sha, "uploaded body differs"
    if framing == "chunked":
        assert "transfer-encoding" in f["headers"]
    else:
        assert "content-length" in f["headers"]


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_download_50mib(one, tmp_path, framing):
    p, a, url = one
    out = tmp_path / "down.bin"
    hdrs = tmp_path / "headers.txt"
    chunked = "1" if framing == "chunked" else "0"
    r = curl("-H", "Host: a.example.com", "-o", str(out), "-D", str(hdrs), "-m", "60",
             "-w", "%{http_code} %{size_download}",
             f"{url}/dl?mode=download&size={BIG}&chunked={chunked}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == f"200 {BIG}"
    sha = hashlib.sha256(out.read_bytes()).hexdigest()
    assert sha == hashlib.sha256(pattern_bytes(BIG)).hexdigest(), "downloaded body differs"
    head = hdrs.read_text().lower()
    if framing == "chunked":
        assert "transfer-encoding: chunked" in head, head
    else:
        assert f"content-length: {BIG}" in head, head


def test_head_with_content_length_then_next_request(one, clients):
    p, a, url = one
    s = clients.connect(p.addr())
    reader = BufReader(s)
    s.sendall(request_bytes("a.example.com", "/h", method="HEAD"))
    r = read_response(reader, method="HEAD")
    assert r.status == 200 and r.header("content-length") == "12345", r
    s.sendall(request_bytes("a.example.com", "/after-head"))
    s.settimeout(5)
    r2 = read_response(reader)
    assert r2.status == 200 and r2.json()["target"] == "/after-head", \
        f"response after HEAD misframed: {r2!r}"
    s.sendall(request_bytes("a.example.com", "/h?chunked=1", method="HEAD"))
    r = read_response(reader, method="HEAD")
    assert r.status == 200 and r.header("transfer-encoding") == "chunked", r
    s.sendall(request_bytes("a.example.com", "/after-chunked-head"))
    r2 = read_response(reader)
    assert r2.status == 200 and r2.json()["target"] == "/after-chunked-head", \
        f"response after a chunked HEAD misframed: {r2!r}"
    r3 = curl("-I", "-H", "Host: a.example.com", "-m", "5", url + "/curl-head")
    assert r3.returncode == 0, r3.stderr
    assert b"content-length: 12345" in r3.stdout.lower()


@pytest.mark.parametrize("status", [204, 304])
def test_bodiless_status_then_next_request(one, clients, status):
    p, a, url = one
    s = clients.connect(p.addr())
    reader = BufReader(s)
    s.sendall(request_bytes("a.example.com", f"/s?mode=status&status={status}"))
    r = read_response(reader)
    assert r.status == status, r
    s.sendall(request_bytes("a.example.com", "/next"))
    r2 = read_response(reader)
    assert r2.status == 200 and r2.json()["target"] == "/next", \
        f"response after {status} misframed: {r2!r}"
    assert a.request_count() == 2


def test_expect_100_continue_curl(one, tmp_path):
    p, a, url = one
    data = pattern_bytes(1 << 20)
    path = tmp_path / "up.bin"
    path.write_bytes(data)
    t0 = time.monotonic()
    r = curl("-v", "-H", "Host: a.example.com", "-H", "Expect: 100-continue",
             "--expect100-timeout", "10", "--data-binary", f"@{path}", "-m", "20",
             url + "/expect")
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    f = json.loads(r.stdout)
    assert f["method"] == "POST"
    assert f["body_len"] == len(data) and f["body_sha256"] == hashlib.sha256(data).hexdigest()
    assert "< HTTP/1.1 100 Continue" in r.stderr, f"no 100 Continue reached the client:\n{r.stderr}"
    assert elapsed < 5, f"upload waited {elapsed:.1f}s for 100 Continue"


@pytest.mark.parametrize("keep_alive", [False, True], ids=["close", "keep-alive"])
def test_chunked_response_to_http10_client(one, clients, keep_alive):
    """An HTTP/1.0 client cannot decode chunked: the proxy must send the body without
    chunk framing (delimited by the close, or by a Content-Length)."""
    p, a, url = one
    size = 100000
    s = clients.connect(p.addr())
    headers = ["Connection: keep-alive"] if keep_alive else []
    s.sendall(request_bytes("a.example.com", f"/c?mode=download&size={size}&chunked=1",
                            headers=headers, version="HTTP/1.0"))
    reader = BufReader(s)
    head = reader.read_until(b"\r\n\r\n")
    assert head is not None and head.startswith(b"HTTP/1.") and b" 200 " in head[:13], head
    lower = head.lower()
    assert b"transfer-encoding" not in lower, \
        f"chunked response forwarded to an HTTP/1.0 client: {head!r}"
    cl = [l for l in lower.split(b"\r\n") if l.startswith(b"content-length:")]
    if cl:
        body = reader.read_exact(int(cl[0].split(b":")[1]))
    else:
        assert b"connection: keep-alive" not in lower, \
            f"no length yet keep-alive promised: {head!r}"
        s.settimeout(5)
        body = reader.read_to_eof()
    assert body == pattern_bytes(size), \
        f"body differs: {len(body)} bytes, starts {body[:12]!r}"


def test_close_delimited_response_is_forwarded(one, clients):
    """A backend response without Content-Length or chunked ends at the backend's close:
    the client gets every byte and then a close (it cannot be kept alive)."""
    p, a, url = one
    size = 300000
    s = clients.connect(p.addr())
    s.sendall(request_bytes("a.example.com", f"/e?mode=eofbody&size={size}"))
    reader = BufReader(s)
    head = reader.read_until(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    lower = head.lower()
    s.settimeout(5)
    if b"transfer-encoding: chunked" in lower:
        from http_backends import read_body, parse_head
        body = bytearray()
        read_body(reader, parse_head(head[:-4])[1], body.extend)
        body = bytes(body)
    else:
        assert b"connection: close" in lower, f"close-delimited body on a kept connection: {head!r}"
        body = reader.read_to_eof()
    assert body == pattern_bytes(size), f"{len(body)} bytes"


def test_interim_103_then_final_response(one, clients):
    p, a, url = one
    s = clients.connect(p.addr())
    reader = BufReader(s)
    s.sendall(request_bytes("a.example.com", "/hints?mode=early"))
    r = read_response(reader, allow_1xx=True)
    assert r.status == 103 and r.header("link") == "</style.css>; rel=preload", r
    r2 = read_response(reader)
    assert r2.status == 200 and r2.json()["target"] == "/hints?mode=early", r2
    s.sendall(request_bytes("a.example.com", "/next"))
    assert read_response(reader).json()["target"] == "/next"


def test_parallel_bodies_two_workers(http_backends, proxy_factory, tmp_path):
    """16 concurrent 5 MiB transfers (downloads and uploads, both framings) over two
    workers and two endpoints, every byte checked."""
    a = http_backends.add("a")
    b = http_backends.add("b")
    cfg = make_config({"web": http_listener(new_listener(), [{"host": "a.example.com",
                                                              "service": "ab"}])},
                      {"ab": [a.addr, b.addr]})
    p = proxy_factory(cfg, workers=2)
    url = f"http://127.0.0.1:{port_of(p.addr())}"
    n = 5 << 20
    want = hashlib.sha256(pattern_bytes(n)).hexdigest()
    up = tmp_path / "up.bin"
    up.write_bytes(pattern_bytes(n))
    procs = []
    for i in range(16):
        kind = i % 4
        if kind < 2:
            args = ["-o", str(tmp_path / f"o{i}"),
                    f"{url}/d?mode=download&size={n}&chunked={kind}"]
        else:
            args = ["-T", str(up), "-H", "Expect:", f"{url}/u"]
            if kind == 3:
                args[0:0] = ["-H", "Transfer-Encoding: chunked"]
        procs.append((i, kind, subprocess.Popen(
            ["curl", "-sS", "--noproxy", "*", "-m", "30", "-H", "Host: a.example.com", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)))
    bad = []
    for i, kind, pr in procs:
        out, err = pr.communicate(timeout=60)
        if pr.returncode != 0:
            bad.append((i, kind, pr.returncode, err[:200]))
        elif kind < 2:
            got = (tmp_path / f"o{i}").read_bytes()
            if hashlib.sha256(got).hexdigest() != want:
                bad.append((i, kind, "download differs", len(got), got[:40]))
        else:
            try:
                ok = json.loads(out)["body_sha256"] == want
            except ValueError:
                ok = False
            if not ok:
                bad.append((i, kind, "upload answered", out[:200]))
    assert not bad, f"{bad}; backend errors: {a.errors + b.errors}"
    assert a.request_count() > 0 and b.request_count() > 0

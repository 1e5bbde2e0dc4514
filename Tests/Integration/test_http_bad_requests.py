"""HTTP listener: malformed or unsupported requests get the exact error status, the
connection is closed, and nothing reaches the backend."""

import pytest

from conftest import make_config, new_listener
from http_backends import BufReader, closed_within, get, http_listener, read_response

pytestmark = pytest.mark.sluice_only

H = "Host: a.example.com\r\n"
BIG_FIELDS = "".join(f"X-Filler-{i}: {'v' * 1000}\r\n" for i in range(20))

CASES = {
    "missing-host-1.1": (b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 400),
    "two-hosts": (f"GET / HTTP/1.1\r\n{H}Host: b.example.com\r\n\r\n".encode(), 400),
    "same-host-twice": (f"GET / HTTP/1.1\r\n{H}{H}\r\n".encode(), 400),
    "cl-and-te": (f"POST / HTTP/1.1\r\n{H}Content-Length: 5\r\nTransfer-Encoding: chunked"
                  "\r\n\r\n5\r\nhello\r\n0\r\n\r\n".encode(), 400),
    "two-content-lengths": (f"POST / HTTP/1.1\r\n{H}Content-Length: 5\r\nContent-Length: 6"
                            "\r\n\r\nhello!".encode(), 400),
    "content-length-list": (f"POST / HTTP/1.1\r\n{H}Content-Length: 5, 6\r\n\r\nhello!".encode(),
                            400),
    "obs-fold": (f"GET / HTTP/1.1\r\n{H}X-Folded: one\r\n two\r\n\r\n".encode(), 400),
    "bare-lf": (f"GET / HTTP/1.1\r\n{H}X-A: 1\nX-B: 2\r\n\r\n".encode(), 400),
    "nul-in-field": (f"GET / HTTP/1.1\r\n{H}X-Nul: a\x00b\r\n\r\n".encode(), 400),
    "nul-in-target": (f"GET /a\x00b HTTP/1.1\r\n{H}\r\n".encode(), 400),
    "uri-9000": (f"GET /{'u' * 9000} HTTP/1.1\r\n{H}\r\n".encode(), 414),
    "head-over-16k": (f"GET / HTTP/1.1\r\n{H}{BIG_FIELDS}\r\n".encode(), 431),
    "http-2.0": (f"GET / HTTP/2.0\r\n{H}\r\n".encode(), 505),
    # beyond the list: more framing and syntax errors
    "te-not-chunked": (f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: gzip\r\n\r\n".encode(), 400),
    "te-chunked-not-last": (f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked, gzip"
                            "\r\n\r\n".encode(), 400),
    "content-length-plus": (f"POST / HTTP/1.1\r\n{H}Content-Length: +5\r\n\r\nhello".encode(),
                            400),
    "content-length-text": (f"POST / HTTP/1.1\r\n{H}Content-Length: abc\r\n\r\n".encode(), 400),
    "space-before-colon": (b"GET / HTTP/1.1\r\nHost : a.example.com\r\n\r\n", 400),
    "all-bare-lf": (b"GET / HTTP/1.1\nHost: a.example.com\n\n", 400),
    "lowercase-version": (f"GET / http/1.1\r\n{H}\r\n".encode(), 400),
    "101-fields": (f"GET / HTTP/1.1\r\n{H}".encode()
                   + b"".join(b"X-F%d: v\r\n" % i for i in range(100)) + b"\r\n", 431),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_request_status_and_close(http_backends, proxy_factory, clients, case):
    raw, status = CASES[case]
    a = http_backends.add("a")
    cfg = make_config({"web": http_listener(new_listener(), [{"host": "a.example.com",
                                                              "service": "a"},
                                                             {"host": "b.example.com",
                                                              "service": "a"}])},
                      {"a": [a.addr]})
    p = proxy_factory(cfg)
    s = clients.connect(p.addr(), timeout=5)
    s.sendall(raw)
    reader = BufReader(s)
    try:
        r = read_response(reader)
    except (ConnectionResetError, EOFError) as exc:
        pytest.fail(f"no response, {type(exc).__name__}: {exc}")
    assert r.status == status, f"{case}: expected {status}, got {r!r}"
    assert not reader.buf, f"bytes after the error response: {bytes(reader.buf[:200])!r}"
    outcome = closed_within(s, 3.0)
    assert outcome in ("eof", "reset"), f"{case}: connection not closed after {status}: {outcome}"
    assert a.request_count() == 0 and a.conn_count() == 0, \
        f"{case}: the bad request reached the backend: {a.requests}"
    # the backend does count: a good request afterwards reaches it
    ok = get(p.addr(), "a.example.com")
    assert ok.status == 200 and a.request_count() == 1


def test_bad_chunk_size_in_request_body(http_backends, proxy_factory, clients):
    """The head is valid, the chunked body is not: 400 (the head may have been sent
    upstream already, but no complete request reaches the backend) and a close."""
    a = http_backends.add("a")
    cfg = make_config({"web": http_listener(new_listener(), [{"host": "a.example.com",
                                                              "service": "a"}])},
                      {"a": [a.addr]})
    p = proxy_factory(cfg)
    s = clients.connect(p.addr(), timeout=5)
    s.sendall(f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n"
              "zz\r\nhello\r\n0\r\n\r\n".encode())
    r = read_response(BufReader(s))
    assert r.status == 400, r
    assert closed_within(s, 3.0) in ("eof", "reset")
    assert a.request_count() == 0

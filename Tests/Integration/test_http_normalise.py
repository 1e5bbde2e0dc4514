"""Routing on the normalised path (RFC 3986 §5.2.4 and §6.2.2) and one normalised
Content-Length (RFC 9112 §6.3): dot segments, repeated slashes and escaped unreserved
characters cannot carry a request past a path route, and the path that was matched is the
one forwarded."""

import socket

import pytest

from conftest import make_config, new_listener
from http_backends import BufReader, http_listener, port_of, read_response, request_bytes

pytestmark = pytest.mark.sluice_only


@pytest.fixture
def routed(http_backends, proxy_factory):
    public = http_backends.add("public")
    admin = http_backends.add("admin")
    api = http_backends.add("api")
    routes = [
        {"host": "a.example.com", "path": "/admin", "service": "admin"},
        {"host": "a.example.com", "path": "/api", "stripPath": True, "service": "api"},
        {"host": "a.example.com", "service": "public"},
    ]
    cfg = make_config({"web": http_listener(new_listener(), routes)},
                      {"public": [public.addr], "admin": [admin.addr], "api": [api.addr]})
    return proxy_factory(cfg)


def ask(p, target: str):
    s = socket.create_connection(("127.0.0.1", port_of(p.addr())), timeout=5)
    try:
        s.sendall(request_bytes("a.example.com", target, headers=["Connection: close"]))
        return read_response(BufReader(s))
    finally:
        s.close()


@pytest.mark.parametrize("target,backend,forwarded", [
    ("/pub/../admin", "admin", "/admin"),
    ("/pub/%2e%2e/admin", "admin", "/admin"),
    ("/pub/%2E%2E/admin/x", "admin", "/admin/x"),
    ("//admin", "admin", "/admin"),
    ("/./admin?x=/../y", "admin", "/admin?x=/../y"),
    ("/%61dmin", "admin", "/admin"),
    ("/admin/../pub", "public", "/pub"),
    ("/../../etc/passwd", "public", "/etc/passwd"),
    ("/x/..%2Fadmin", "public", "/x/..%2Fadmin"),
    ("/api/../api/v1//items", "api", "/v1/items"),
    ("/api", "api", "/"),
])
def test_routes_and_forwards_the_normalised_path(routed, target, backend, forwarded):
    r = ask(routed, target)
    assert r.status == 200, r
    seen = r.json()
    assert seen["backend"] == backend, f"{target} reached {seen['backend']}"
    assert seen["target"] == forwarded


def test_a_malformed_escape_is_a_bad_request(routed):
    assert ask(routed, "/pub/%zz").status == 400
    assert ask(routed, "/pub/%2").status == 400


@pytest.mark.parametrize("lines,status", [
    (["Content-Length: 5, 5"], 200),
    (["Content-Length: 5", "Content-Length: 5"], 200),
    (["Content-Length: 005"], 200),
    (["Content-Length: ,5"], 400),
    (["Content-Length: 5, 6"], 400),
    (["Content-Length: 5", "Content-Length: 6"], 400),
])
def test_content_length_lists_are_normalised_or_refused(routed, lines, status):
    """RFC 9112 §6.3: identical values are one length, forwarded as one field; anything
    else is 400 and never reaches an endpoint."""
    s = socket.create_connection(("127.0.0.1", port_of(routed.addr())), timeout=5)
    try:
        head = "POST /pub HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n" + "".join(
            line + "\r\n" for line in lines) + "\r\n"
        s.sendall(head.encode() + b"hello")
        r = read_response(BufReader(s))
    finally:
        s.close()
    assert r.status == status, r
    if status == 200:
        seen = r.json()
        lengths = [value for name, value in seen["fields"] if name.lower() == "content-length"]
        assert lengths == ["5"], f"forwarded {lengths}"
        assert seen["body_len"] == 5

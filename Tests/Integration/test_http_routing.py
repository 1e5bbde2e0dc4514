"""HTTP listener: name-based virtual hosting, path prefixes, strip, default backend."""

import json

import pytest

from conftest import make_config, new_listener
from http_backends import curl, get, http_listener, port_of

pytestmark = pytest.mark.sluice_only

NO_ROUTE = "no route here\n"


@pytest.fixture
def routed(http_backends, proxy_factory):
    for n in ("a", "b", "c", "w", "p1", "p2", "p3", "s"):
        http_backends.add(n)
    addr = new_listener()
    port = port_of(addr)
    routes = [
        {"host": "a.example.com", "service": "a"},
        {"host": "b.example.com", "service": "b"},
        {"host": f"d.example.org:{port}", "service": "c"},
        {"host": "*.example.com", "service": "w"},
        {"host": "p.example.com", "service": "p1"},
        {"host": "p.example.com", "path": "/api", "service": "p2"},
        {"host": "p.example.com", "path": "/api/v2", "service": "p3"},
        {"host": "s.example.com", "path": "/strip", "stripPath": True, "service": "s"},
    ]
    cfg = make_config({"web": http_listener(addr, routes, {"status": 404, "body": NO_ROUTE})},
                      {n: [be.addr] for n, be in http_backends.by_name.items()})
    p = proxy_factory(cfg)
    return p, http_backends


def backend_of(resp):
    assert resp.status == 200, f"expected 200 from a backend, got {resp!r}"
    return resp.json()["backend"]


def test_two_hosts_one_port_curl(routed):
    p, hb = routed
    port = port_of(p.addr())
    for host in ("a", "b"):
        r = curl("-H", f"Host: {host}.example.com", f"http://127.0.0.1:{port}/hello")
        assert r.returncode == 0, r.stderr
        facts = json.loads(r.stdout)
        assert facts["backend"] == host
        assert facts["host"] == f"{host}.example.com"
        assert facts["target"] == "/hello"
        # the --resolve form sends "Host: name:port"
        r = curl("--resolve", f"{host}.example.com:{port}:127.0.0.1",
                 f"http://{host}.example.com:{port}/x?y=1")
        assert r.returncode == 0, r.stderr
        facts = json.loads(r.stdout)
        assert facts["backend"] == host
        assert facts["host"] == f"{host}.example.com:{port}"
        assert facts["target"] == "/x?y=1"


def test_host_with_port_and_case(routed):
    p, hb = routed
    port = port_of(p.addr())
    assert backend_of(get(p.addr(), f"a.example.com:{port}")) == "a"
    assert backend_of(get(p.addr(), "A.Example.COM")) == "a"
    assert backend_of(get(p.addr(), "b.example.com.")) == "b", "trailing dot must be ignored"


def test_host_port_route_matches_only_that_port(routed):
    p, hb = routed
    port = port_of(p.addr())
    assert backend_of(get(p.addr(), f"d.example.org:{port}")) == "c"
    for host in (f"d.example.org:{port + 1}", "d.example.org"):
        r = get(p.addr(), host)
        assert (r.status, r.body) == (404, NO_ROUTE.encode()), f"Host: {host} -> {r!r}"
    assert hb["c"].request_count() == 1


def test_wildcard_matches_one_label(routed):
    p, hb = routed
    port = port_of(p.addr())
    assert backend_of(get(p.addr(), "x.example.com")) == "w"
    assert backend_of(get(p.addr(), f"zz-9.example.com:{port}")) == "w"
    assert backend_of(get(p.addr(), "a.example.com")) == "a", "exact must beat the wildcard"
    for host in ("y.x.example.com", "example.com", ".example.com"):
        r = get(p.addr(), host)
        assert (r.status, r.body) == (404, NO_ROUTE.encode()), f"Host: {host} -> {r!r}"
    assert hb["w"].request_count() == 2


@pytest.mark.parametrize("target,service", [
    ("/", "p1"), ("/other", "p1"), ("/apix", "p1"),
    ("/api", "p2"), ("/api/", "p2"), ("/api/v1/x", "p2"), ("/api?q=1", "p2"),
    ("/api/v2", "p3"), ("/api/v2/deep/er?x=y", "p3"), ("/api/v20", "p2"),
])
def test_longest_path_prefix_wins(routed, target, service):
    p, hb = routed
    r = get(p.addr(), "p.example.com", target)
    assert backend_of(r) == service, f"{target} went to {r.json()['backend']}"
    assert r.json()["target"] == target, "path must not be altered without stripPath"


@pytest.mark.parametrize("target,seen", [
    ("/strip/foo", "/foo"), ("/strip/foo/bar?q=1", "/foo/bar?q=1"), ("/strip/", "/"),
    ("/strip", "/"), ("/strip?x=1", "/?x=1"),
])
def test_strip_path(routed, target, seen):
    p, hb = routed
    r = get(p.addr(), "s.example.com", target)
    assert backend_of(r) == "s"
    assert r.json()["target"] == seen, f"{target} reached the backend as {r.json()['target']!r}"


def test_unknown_host_gets_configured_default(routed):
    p, hb = routed
    port = port_of(p.addr())
    r = curl("-H", "Host: nobody.example.net", "-w", "\n%{http_code}",
             f"http://127.0.0.1:{port}/anything")
    assert r.returncode == 0, r.stderr
    body, _, code = r.stdout.rpartition(b"\n")
    assert code == b"404"
    assert body == NO_ROUTE.encode(), r.stdout
    raw = get(p.addr(), "nobody.example.net", "/x")
    assert raw.status == 404 and raw.body == NO_ROUTE.encode(), raw
    assert sum(be.request_count() for be in hb.by_name.values()) == 0


def test_default_service(http_backends, proxy_factory):
    a = http_backends.add("a")
    d = http_backends.add("d")
    addr = new_listener()
    cfg = make_config({"web": http_listener(addr, [{"host": "a.example.com", "service": "a"}],
                                            {"service": "d"})},
                      {"a": [a.addr], "d": [d.addr]})
    p = proxy_factory(cfg)
    assert backend_of(get(p.addr(), "a.example.com")) == "a"
    r = get(p.addr(), "elsewhere.example.net", "/path?q")
    assert backend_of(r) == "d"
    assert r.json()["target"] == "/path?q"
    assert r.json()["host"] == "elsewhere.example.net"


def test_reload_changes_routes(http_backends, proxy_factory, clients):
    from http_backends import BufReader, read_response, request_bytes
    a = http_backends.add("a")
    b = http_backends.add("b")
    addr = new_listener()
    services = {"a": [a.addr], "b": [b.addr]}
    p = proxy_factory(make_config(
        {"web": http_listener(addr, [{"host": "x.example.com", "service": "a"}])}, services))
    s = clients.connect(p.addr())
    reader = BufReader(s)
    s.sendall(request_bytes("x.example.com", "/before"))
    assert read_response(reader).json()["backend"] == "a"
    p.reload(make_config({"web": http_listener(addr, [{"host": "x.example.com",
                                                        "service": "b"}])}, services))
    assert backend_of(get(p.addr(), "x.example.com")) == "b"
    s.sendall(request_bytes("x.example.com", "/kept"))
    r = read_response(reader)
    assert r.status == 200 and r.json()["target"] == "/kept", r


def test_default_port_wildcard_port_and_case_sensitive_paths(http_backends, proxy_factory,
                                                             clients):
    from http_backends import BufReader, read_response, request_bytes
    for n in ("a", "b", "w"):
        http_backends.add(n)
    addr = new_listener()
    port = port_of(addr)
    routes = [{"host": "a.example.com:80", "service": "a"},
              {"host": "b.example.com", "path": "/api", "service": "b"},
              {"host": f"*.example.net:{port}", "service": "w"}]
    cfg = make_config({"web": http_listener(addr, routes, {"status": 404, "body": NO_ROUTE})},
                      {n: [be.addr] for n, be in http_backends.by_name.items()})
    p = proxy_factory(cfg)
    expect = [("a.example.com", "/", "a"), ("a.example.com:80", "/", "a"),
              (f"a.example.com:{port}", "/", None),
              ("b.example.com", "/api/x", "b"), ("b.example.com", "/API", None),
              ("b.example.com", "/", None),
              (f"x.example.net:{port}", "/", "w"), ("x.example.net", "/", None),
              (f"[::1]:{port}", "/", None), ("127.0.0.1", "/", None)]
    for host, path, want in expect:
        r = get(p.addr(), host, path)
        got = r.json()["backend"] if r.status == 200 else (r.status, r.body)
        assert got == (want or (404, NO_ROUTE.encode())), f"Host {host} {path}: {got}"
    # the default 404 is an ordinary response: the connection stays usable
    s = clients.connect(p.addr())
    reader = BufReader(s)
    s.sendall(request_bytes("nobody.example.org", "/"))
    r = read_response(reader)
    assert r.status == 404
    if (r.header("connection") or "").lower() != "close":
        s.sendall(request_bytes("a.example.com", "/again"))
        assert read_response(reader).json()["target"] == "/again"

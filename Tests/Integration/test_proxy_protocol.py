"""PROXY protocol: v1/v2 headers sent to a service's endpoints (`proxyProtocol`), and
headers accepted from trusted sources on a listener (`acceptProxy`)."""

from __future__ import annotations

import json
import socket
import time

import pytest

from conftest import make_config, new_listener
from http_backends import BufReader, closed_within, curl, port_of, read_response, request_bytes
from tls_backends import (BIOClient, ProxyParseError, client_context, parse_proxy, proxy_v1,
                          proxy_v2, subject_cn)

pytestmark = pytest.mark.sluice_only

SPOOF = "203.0.113.7"


def header_and_rest(data: bytes, rest_len: int) -> bool:
    """Predicate: a whole PROXY header followed by at least rest_len bytes arrived."""
    try:
        info = parse_proxy(data)
    except ProxyParseError:
        return True  # let the caller's parse fail with the bytes shown
    return info is not None and len(data) - info.length >= rest_len


def received_after_close(raw, rec, client: socket.socket, first_len: int) -> tuple:
    """Waits for header + first_len bytes, closes the client, waits for the backend's EOF,
    and returns (header info, bytes after the header)."""
    raw.wait_data(rec, lambda d: header_and_rest(d, first_len), what="PROXY header and data")
    client.close()
    assert rec.eof.wait(5), "backend saw no EOF after the client closed"
    data = bytes(rec.data)
    info = parse_proxy(data)
    assert info is not None, f"incomplete PROXY header: {data[:120]!r}"
    return info, data[info.length:]


def check_header(info, version: int, src: str, sport: int, dst: str, dport: int) -> None:
    assert info.version == version, f"expected a v{version} header, got {info!r}"
    assert info.command == "PROXY", info
    fam = "TCP6" if ":" in src else "TCP4"
    assert info.family == fam, info
    assert (info.src, info.sport) == (src, sport), f"source: {info!r}"
    assert (info.dst, info.dport) == (dst, dport), f"destination: {info!r}"


# --------------------------------------------------------------------------
# 7. sending PROXY headers to the endpoints

@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_tcp_listener_sends_proxy_header(tls_backends, proxy_factory, version, host):
    raw = tls_backends.raw("r")
    cfg = make_config({"t": {"address": new_listener(host), "protocol": "tcp", "service": "r"}},
                      {"r": {"endpoints": [raw.addr], "proxyProtocol": version}})
    p = proxy_factory(cfg)
    lhost, lport = host, port_of(p.addr())
    c = socket.create_connection((lhost, lport), timeout=5)
    sport = c.getsockname()[1]
    first, second = b"hello over tcp\n", b"\x00\x01binary\r\nPROXY not a header\n"
    c.sendall(first)
    rec = raw.wait_conn()
    raw.wait_data(rec, lambda d: header_and_rest(d, len(first)), what="first bytes")
    c.sendall(second)
    info, rest = received_after_close(raw, rec, c, len(first) + len(second))
    check_header(info, int(version[1]), host, sport, host, lport)
    assert rest == first + second, f"bytes after the header differ: {rest!r}"
    assert raw.conn_count() == 1


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_tls_route_sends_proxy_header_then_client_hello(tls_backends, proxy_factory, tls_certs,
                                                        version, host):
    raw = tls_backends.raw("r")
    addr = new_listener(host)
    cfg = make_config({"t": {"address": addr, "protocol": "tls",
                             "routes": [{"host": "raw.example.com", "service": "r"}]}},
                      {"r": {"endpoints": [raw.addr], "proxyProtocol": version}})
    p = proxy_factory(cfg)
    c = socket.create_connection((host, port_of(addr)), timeout=5)
    sport = c.getsockname()[1]
    hello = BIOClient(c, client_context(tls_certs), "raw.example.com").client_hello()
    first = hello + b"EXTRA-AFTER-HELLO"  # same segment as the ClientHello: must not be lost
    second = b"\x17\x03\x03\x00\x05later"
    c.sendall(first)
    rec = raw.wait_conn()
    raw.wait_data(rec, lambda d: header_and_rest(d, len(first)), what="header + ClientHello")
    c.sendall(second)
    info, rest = received_after_close(raw, rec, c, len(first) + len(second))
    check_header(info, int(version[1]), host, sport, host, port_of(addr))
    assert rest == first + second, (f"bytes after the header differ from what the client sent "
                                    f"({len(rest)} vs {len(first + second)})")


def test_tls_passthrough_with_proxy_v2_end_to_end(tls_backends, proxy_factory, tls_certs):
    be = tls_backends.tls("a", expect_proxy=True)
    addr = new_listener()
    port = port_of(addr)
    cfg = make_config({"t": {"address": addr, "protocol": "tls",
                             "routes": [{"host": "a.example.com", "service": "a"}]}},
                      {"a": {"endpoints": [be.addr], "proxyProtocol": "v2"}})
    proxy_factory(cfg)
    r = curl("--resolve", f"a.example.com:{port}:127.0.0.1", "--cacert", str(tls_certs.ca),
             f"https://a.example.com:{port}/", timeout=20)
    assert r.returncode == 0, f"curl rc={r.returncode}: {r.stderr}"
    assert json.loads(r.stdout)["backend"] == "a"
    rec = be.wait_conn()
    assert rec.proxy is not None and rec.proxy.version == 2, rec
    assert (rec.proxy.src, rec.proxy.dst, rec.proxy.dport) == ("127.0.0.1", "127.0.0.1", port)
    assert rec.sni == "a.example.com"


# --------------------------------------------------------------------------
# 8. accepting PROXY headers from trusted sources

def accept_proxy_tcp(tls_backends, proxy_factory, out_version="v1", trusted="127.0.0.0/8"):
    raw = tls_backends.raw("r")
    addr = new_listener()
    cfg = make_config({"t": {"address": addr, "protocol": "tcp", "service": "r",
                             "acceptProxy": [trusted]}},
                      {"r": {"endpoints": [raw.addr], "proxyProtocol": out_version}})
    proxy_factory(cfg)
    return raw, addr, port_of(addr)


@pytest.mark.parametrize("out_version", ["v1", "v2"])
@pytest.mark.parametrize("in_version", ["v1", "v2", "v1-dribbled", "v2-dribbled"])
def test_accept_proxy_tcp(tls_backends, proxy_factory, in_version, out_version):
    raw, addr, port = accept_proxy_tcp(tls_backends, proxy_factory, out_version)
    make = proxy_v1 if in_version.startswith("v1") else proxy_v2
    hdr = make(SPOOF, "127.0.0.1", 40000, port)
    data = b"payload after the header\n"
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if in_version.endswith("dribbled"):
        for piece in (hdr[:3], hdr[3:9], hdr[9:-1], hdr[-1:] + data):
            c.sendall(piece)
            time.sleep(0.05)
    else:
        c.sendall(hdr + data)
    rec = raw.wait_conn()
    info, rest = received_after_close(raw, rec, c, len(data))
    check_header(info, int(out_version[1]), SPOOF, 40000, "127.0.0.1", port)
    assert rest == data, f"the incoming header must be consumed, got {rest!r}"


def test_accept_proxy_v2_local_keeps_real_peer(tls_backends, proxy_factory):
    raw, addr, port = accept_proxy_tcp(tls_backends, proxy_factory, "v1")
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    sport = c.getsockname()[1]
    c.sendall(proxy_v2(SPOOF, "127.0.0.1", 40000, port, local=True) + b"health\n")
    rec = raw.wait_conn()
    info, rest = received_after_close(raw, rec, c, len(b"health\n"))
    check_header(info, 1, "127.0.0.1", sport, "127.0.0.1", port)
    assert rest == b"health\n"


@pytest.mark.parametrize("sent", [
    b"hello, no header here\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"PROXY TCP4 999.0.113.7 127.0.0.1 40000 80\r\ndata",
    b"PROXY TCP9 203.0.113.7 127.0.0.1 40000 80\r\ndata",
    b"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c" + b"\x00" * 12 + b"data",  # version 3
])
def test_accept_proxy_without_valid_header_closes(tls_backends, proxy_factory, sent):
    raw, addr, port = accept_proxy_tcp(tls_backends, proxy_factory, "v1")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        t0 = time.monotonic()
        c.sendall(sent)
        state = closed_within(c, 4.0)
        elapsed = time.monotonic() - t0
    assert state in ("eof", "reset"), f"{sent[:30]!r}: connection still {state}"
    assert elapsed < 2.0, f"{sent[:30]!r}: closed only after {elapsed:.2f}s"
    assert raw.conn_count() == 0, "nothing may reach the backend"


def test_untrusted_source_header_is_plain_data(tls_backends, proxy_factory):
    raw, addr, port = accept_proxy_tcp(tls_backends, proxy_factory, "v1", trusted="10.0.0.0/8")
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    sport = c.getsockname()[1]
    sent = proxy_v1(SPOOF, "127.0.0.1", 40000, port) + b"data\n"
    c.sendall(sent)
    rec = raw.wait_conn()
    info, rest = received_after_close(raw, rec, c, len(sent))
    check_header(info, 1, "127.0.0.1", sport, "127.0.0.1", port)
    assert rest == sent, "an untrusted client's PROXY line must not be honoured"


@pytest.mark.parametrize("in_version", ["v1", "v2"])
def test_accept_proxy_http_sets_forwarded_for(http_backends, proxy_factory, in_version):
    hb = http_backends.add("h")
    addr = new_listener()
    port = port_of(addr)
    cfg = make_config({"web": {"address": addr, "protocol": "http",
                               "routes": [{"host": "a.example.com", "service": "h"}],
                               "acceptProxy": ["127.0.0.0/8"]}},
                      {"h": [hb.addr]})
    proxy_factory(cfg)
    make = proxy_v1 if in_version == "v1" else proxy_v2
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(make(SPOOF, "127.0.0.1", 40000, port) + request_bytes("a.example.com", "/one"))
        reader = BufReader(c)
        r1 = read_response(reader)
        c.sendall(request_bytes("a.example.com", "/two", headers=["Connection: close"]))
        r2 = read_response(reader)
    for r, target in ((r1, "/one"), (r2, "/two")):
        assert r.status == 200, r
        facts = r.json()
        assert facts["target"] == target
        assert facts["xff"] == SPOOF, f"X-Forwarded-For at the backend: {facts['xff']!r}"
    # a client's own X-Forwarded-For is kept, the header's address appended
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(make(SPOOF, "127.0.0.1", 40000, port) +
                  request_bytes("a.example.com", "/three",
                                headers=["X-Forwarded-For: 10.1.2.3", "Connection: close"]))
        r3 = read_response(BufReader(c))
    assert r3.status == 200, r3
    assert r3.json()["xff"] in (f"10.1.2.3, {SPOOF}", f"10.1.2.3,{SPOOF}"), r3.json()["xff"]
    # no header from a trusted source: closed, nothing forwarded
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(request_bytes("a.example.com", "/four", headers=["Connection: close"]))
        state = closed_within(c, 4.0)
    assert state in ("eof", "reset"), f"request without a PROXY header: {state}"
    assert hb.request_count() == 3


def test_accept_proxy_on_tls_listener(tls_backends, proxy_factory, tls_certs):
    be = tls_backends.tls("a", expect_proxy=True)
    addr = new_listener()
    port = port_of(addr)
    cfg = make_config({"t": {"address": addr, "protocol": "tls",
                             "routes": [{"host": "a.example.com", "service": "a"}],
                             "acceptProxy": ["127.0.0.0/8"]}},
                      {"a": {"endpoints": [be.addr], "proxyProtocol": "v2"}})
    proxy_factory(cfg)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(proxy_v1(SPOOF, "127.0.0.1", 40000, port))
        cli = BIOClient(c, client_context(tls_certs), "a.example.com")
        cli.handshake(timeout=5)
        assert subject_cn(cli.obj.getpeercert()) == "a.example.com"
        cli.send(b"ping\n")
        assert cli.recv_line() == b"a"
        assert cli.recv_line() == b"ping"
    rec = be.wait_conn()
    check_header(rec.proxy, 2, SPOOF, 40000, "127.0.0.1", port)
    assert rec.sni == "a.example.com"


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_proxy_header_sent_once_after_connect_retry(tls_backends, proxy_factory, version):
    from conftest import free_port
    raw = tls_backends.raw("r")
    dead = f"127.0.0.1:{free_port()}"
    addr = new_listener()
    cfg = make_config({"t": {"address": addr, "protocol": "tcp", "service": "r"}},
                      {"r": {"endpoints": [dead, raw.addr], "proxyProtocol": version}},
                      limits={"connectTries": 3, "endpointBackoff": "100ms"})
    proxy_factory(cfg)
    for i in range(3):
        c = socket.create_connection(("127.0.0.1", port_of(addr)), timeout=5)
        sport = c.getsockname()[1]
        data = f"attempt {i}\n".encode()
        c.sendall(data)
        rec = raw.wait_conn(i)
        info, rest = received_after_close(raw, rec, c, len(data))
        check_header(info, int(version[1]), "127.0.0.1", sport, "127.0.0.1", port_of(addr))
        assert rest == data, f"after the header: {rest!r}"


def v2_with_tlvs(src: str, dst: str, sport: int, dport: int) -> bytes:
    """A v2 PROXY header carrying TLVs after the addresses (ALPN, authority, NOOP), as
    load balancers in front of sluice commonly send."""
    import ipaddress
    import struct
    tlvs = (b"\x01" + struct.pack("!H", 2) + b"h2" +
            b"\x02" + struct.pack("!H", 13) + b"a.example.com" +
            b"\x04" + struct.pack("!H", 5) + b"\x00" * 5)
    body = (ipaddress.ip_address(src).packed + ipaddress.ip_address(dst).packed +
            struct.pack("!HH", sport, dport) + tlvs)
    return b"\r\n\r\n\x00\r\nQUIT\n\x21\x11" + struct.pack("!H", len(body)) + body


def test_accept_proxy_v2_with_tlvs(tls_backends, proxy_factory):
    raw, addr, port = accept_proxy_tcp(tls_backends, proxy_factory, "v2")
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    data = b"after TLVs\n"
    c.sendall(v2_with_tlvs(SPOOF, "127.0.0.1", 40000, port) + data)
    rec = raw.wait_conn()
    info, rest = received_after_close(raw, rec, c, len(data))
    check_header(info, 2, SPOOF, 40000, "127.0.0.1", port)
    assert rest == data, f"the TLVs must be consumed with the header, got {rest[:80]!r}"


@pytest.mark.parametrize("in_version,out_version,src,dst", [
    ("v1", "v2", SPOOF, "198.51.100.1"),
    ("v2", "v1", "2001:db8::7", "2001:db8::1"),
])
def test_accept_proxy_relays_original_addresses(tls_backends, proxy_factory, in_version,
                                                out_version, src, dst):
    """The accepted header describes the original connection: both its source and its
    destination are what the header sent upstream must carry (as a chain of proxies)."""
    raw, addr, port = accept_proxy_tcp(tls_backends, proxy_factory, out_version)
    make = proxy_v1 if in_version == "v1" else proxy_v2
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    c.sendall(make(src, dst, 40000, 443) + b"orig\n")
    rec = raw.wait_conn()
    info, rest = received_after_close(raw, rec, c, 5)
    check_header(info, int(out_version[1]), src, 40000, dst, 443)
    assert rest == b"orig\n"


@pytest.mark.parametrize("header", [b"PROXY UNKNOWN\r\n",
                                    b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n",
                                    b"\r\n\r\n\x00\r\nQUIT\n\x21\x00\x00\x00"])
def test_accept_proxy_unknown_family_keeps_real_peer(tls_backends, proxy_factory, header):
    raw, addr, port = accept_proxy_tcp(tls_backends, proxy_factory, "v1")
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    sport = c.getsockname()[1]
    c.sendall(header + b"data\n")
    rec = raw.wait_conn()
    info, rest = received_after_close(raw, rec, c, 5)
    check_header(info, 1, "127.0.0.1", sport, "127.0.0.1", port)
    assert rest == b"data\n"


def test_accept_proxy_tls_header_and_hello_in_one_segment(tls_backends, proxy_factory, tls_certs):
    be = tls_backends.tls("a", expect_proxy=True)
    addr = new_listener()
    port = port_of(addr)
    cfg = make_config({"t": {"address": addr, "protocol": "tls",
                             "routes": [{"host": "a.example.com", "service": "a"}],
                             "acceptProxy": ["127.0.0.0/8"]}},
                      {"a": {"endpoints": [be.addr], "proxyProtocol": "v1"}})
    proxy_factory(cfg)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        cli = BIOClient(c, client_context(tls_certs), "a.example.com")
        c.sendall(proxy_v2(SPOOF, "127.0.0.1", 40000, port) + cli.client_hello())
        cli.handshake(timeout=5)
        cli.send(b"one segment\n")
        assert (cli.recv_line(), cli.recv_line()) == (b"a", b"one segment")
    check_header(be.wait_conn().proxy, 1, SPOOF, 40000, "127.0.0.1", port)


@pytest.mark.parametrize("sent", [b"", b"PROXY TCP4 203.0.113.7", b"\r\n\r\n\x00\r\nQUIT\n\x21"])
def test_accept_proxy_header_wait_is_bounded(tls_backends, proxy_factory, sent):
    """A trusted client that never completes its header is closed by the hello timer."""
    raw = tls_backends.raw("r")
    addr = new_listener()
    cfg = make_config({"t": {"address": addr, "protocol": "tcp", "service": "r",
                             "acceptProxy": ["127.0.0.0/8"]}},
                      {"r": [raw.addr]}, timeouts={"tlsHello": "1s", "client": "50s"})
    proxy_factory(cfg)
    with socket.create_connection(("127.0.0.1", port_of(addr)), timeout=5) as c:
        t0 = time.monotonic()
        if sent:
            c.sendall(sent)
        state = closed_within(c, 4.0)
        elapsed = time.monotonic() - t0
    assert state in ("eof", "reset"), f"still {state} after 4s with {sent!r}"
    assert 0.7 <= elapsed <= 3.0, f"closed after {elapsed:.2f}s (tlsHello 1s)"
    assert raw.conn_count() == 0


@pytest.mark.parametrize("kind", ["tls-route", "accept-proxy-tcp"])
def test_burst_after_header_is_forwarded_whole(tls_backends, proxy_factory, tls_certs, kind):
    """1 MiB sent in the same burst as the ClientHello / PROXY header: nothing of what
    follows the peeked bytes may be lost or reordered."""
    import threading
    from backends import pattern_bytes
    raw = tls_backends.raw("r")
    addr = new_listener()
    port = port_of(addr)
    if kind == "tls-route":
        lst = {"address": addr, "protocol": "tls",
               "routes": [{"host": "raw.example.com", "service": "r"}]}
    else:
        lst = {"address": addr, "protocol": "tcp", "service": "r", "acceptProxy": ["127.0.0.0/8"]}
    proxy_factory(make_config({"t": lst}, {"r": {"endpoints": [raw.addr], "proxyProtocol": "v2"}}))
    extra = pattern_bytes(1 << 20)
    c = socket.create_connection(("127.0.0.1", port), timeout=10)
    sport = c.getsockname()[1]
    if kind == "tls-route":
        first = BIOClient(c, client_context(tls_certs), "raw.example.com").client_hello()
        want_src, want_port, forwarded = "127.0.0.1", sport, first + extra
    else:
        first = proxy_v1(SPOOF, "127.0.0.1", 40000, port)
        want_src, want_port, forwarded = SPOOF, 40000, extra
    sender = threading.Thread(target=c.sendall, args=(first + extra,), daemon=True)
    sender.start()
    rec = raw.wait_conn()
    raw.wait_data(rec, lambda d: header_and_rest(d, len(forwarded)), timeout=10,
                  what=f"{len(forwarded)} bytes after the header")
    sender.join(5)
    info, rest = received_after_close(raw, rec, c, len(forwarded))
    check_header(info, 2, want_src, want_port, "127.0.0.1", port)
    assert len(rest) == len(forwarded) and rest == forwarded, "bytes lost or reordered"


def test_reload_mid_proxy_header_keeps_listener_routes(http_backends, proxy_factory):
    """A PROXY header half read on http listener `two` while a reload removes listener
    `one` (the route tables are renumbered): the request is routed by `two`'s routes."""
    ha, hb = http_backends.add("a"), http_backends.add("b")
    addrs = [new_listener() for _ in range(3)]
    cfg = make_config({n: {"address": addr, "protocol": "http", "acceptProxy": ["127.0.0.0/8"],
                           "routes": [{"host": "x.example.com", "service": "a" if n == "two" else "b"}]}
                       for n, addr in zip(("one", "two", "three"), addrs)},
                      {"a": [ha.addr], "b": [hb.addr]})
    p = proxy_factory(cfg)
    port = port_of(addrs[1])
    hdr = proxy_v1(SPOOF, "127.0.0.1", 40000, port)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(hdr[:10])
        new = dict(cfg)
        new["listeners"] = cfg["listeners"][1:]
        p.reload(new)
        c.sendall(hdr[10:] + request_bytes("x.example.com", "/", headers=["Connection: close"]))
        r = read_response(BufReader(c))
    assert "Fatal error" not in p.stderr_text()
    assert r.status == 200, r
    assert r.header("x-backend") == "a", \
        f"listener two's request went to {r.header('x-backend')} after the reload"
    assert r.json()["xff"] == SPOOF

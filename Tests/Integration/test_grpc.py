"""gRPC end to end through Sluice: grpcio clients, the grpcio server of grpc_backends.py behind
services with ``protocol: h2c``.

Clients reach Sluice on an ``http`` listener with ``http2: true`` (grpcio's insecure channel
speaks h2c with prior knowledge) and on a ``tls`` listener with ``http2: true`` and a
``terminate: true`` route (a secure channel that trusts the test CA). Streams are routed by
``:authority`` (``grpc.default_authority``) and go to the endpoints as HTTP/2 streams; the
server's trailers (``grpc-status``, ``grpc-message``, trailing metadata) come back as trailers.

``SLUICE_GRPC_DIRECT=1`` points the same clients at the backends themselves, without a proxy,
to check the harness; what needs the proxy (unknown authority) is skipped then.
``SLUICE_H2UP_PEER=haproxy`` runs them through HAProxy 2.6 (see test_http2_upstream.py).
"""

from __future__ import annotations

import hashlib
import os
import queue
import struct
import threading
import time
from typing import Dict, List, Optional

import pytest

from conftest import make_config, new_listener
from grpc_backends import FAIL_DETAILS, GrpcBackend, grpc, grpc_options, method_path
from test_http2_upstream import up_proxy  # noqa: F401  (a fixture)
from test_tls_termination import term_certs  # noqa: F401  (a fixture)

pytestmark = [
    pytest.mark.skipif(grpc is None, reason="grpcio is missing: "
                       "python3 -m pip install -r Tests/Integration/requirements.txt"),
]

DIRECT = os.environ.get("SLUICE_GRPC_DIRECT") == "1"
A, B = "grpc-a.example.com", "grpc-b.example.com"
TLS_NAME = "a.example.com"
MiB = 1 << 20
CALL_TIMEOUT = 10.0


def grpc_config(backends: Dict[str, GrpcBackend], certs) -> dict:
    """An http listener (h2c) routing A and B by host, a tls listener terminating
    a.example.com to ``ga``; both with http2, both services ``protocol: h2c``."""
    plain = {
        "address": new_listener(), "protocol": "http", "http2": True,
        "routes": [{"host": A, "service": "ga"}, {"host": B, "service": "gb"}],
        "default": {"status": 404},
    }
    https = {
        "address": new_listener(), "protocol": "tls", "http2": True,
        "certificates": [{"cert": str(certs.cert(k)), "key": str(certs.key(k))}
                         for k in ("default", "a")],
        "routes": [{"host": TLS_NAME, "terminate": True, "service": "ga"}],
        "default": {"terminate": True, "status": 404},
    }
    return make_config(
        {"plain": plain, "https": https},
        {"ga": {"protocol": "h2c", "endpoints": [backends["ga"].addr]},
         "gb": {"protocol": "h2c", "endpoints": [backends["gb"].addr]}},
        timeouts={"connect": "2s"}, limits={"connectTries": 1})


class GrpcEnv:
    def __init__(self, proxy, backends: Dict[str, GrpcBackend], certs):
        self.p = proxy
        self.backends = backends
        self.certs = certs
        self.channels: List[grpc.Channel] = []

    def backend(self, authority: str) -> GrpcBackend:
        return self.backends["gb" if authority == B else "ga"]

    def channel(self, authority: str = A, extra=()) -> "grpc.Channel":
        """An insecure (h2c) channel whose calls carry ``:authority`` ``authority``."""
        target = self.backend(authority).addr if DIRECT else self.p.addr("plain")
        ch = grpc.insecure_channel(target, options=grpc_options(authority, extra))
        self.channels.append(ch)
        return ch

    def tls_channel(self) -> "grpc.Channel":
        target = self.backends["ga"].tls_addr if DIRECT else self.p.addr("https")
        creds = grpc.ssl_channel_credentials(root_certificates=self.certs.ca.read_bytes())
        ch = grpc.secure_channel(target, creds, options=grpc_options(
            TLS_NAME, [("grpc.ssl_target_name_override", TLS_NAME)]))
        self.channels.append(ch)
        return ch

    def close(self) -> None:
        for ch in self.channels:
            ch.close()


@pytest.fixture
def genv(term_certs, request):
    """The backends ga and gb, and the proxy in front of them (none with SLUICE_GRPC_DIRECT=1;
    HAProxy with SLUICE_H2UP_PEER=haproxy)."""
    chain = term_certs.cert("a").read_bytes()
    key = term_certs.key("a").read_bytes()
    backends = {"ga": GrpcBackend("ga", tls=(chain, key)), "gb": GrpcBackend("gb")}
    env = None
    try:
        proxy = None
        if not DIRECT:
            proxy = request.getfixturevalue("up_proxy")(grpc_config(backends, term_certs))
        env = GrpcEnv(proxy, backends, term_certs)
        yield env
    finally:
        if env is not None:
            env.close()
        for b in backends.values():
            b.shutdown()


def open_channel(genv: GrpcEnv, tls: bool):
    return genv.tls_channel() if tls else genv.channel(A)


def md(metadata) -> Dict[str, object]:
    return {m.key: m.value for m in metadata or ()}


def rpc_error_text(exc: "grpc.RpcError") -> str:
    return f"{exc.code()}: {exc.details()!r} (debug: {exc.debug_error_string()})"


# --------------------------------------------------------------------------
# unary calls

@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
def test_unary_echo_with_metadata_and_trailers(genv, tls):
    ch = open_channel(genv, tls)
    echo = ch.unary_unary(method_path("Echo"))
    payload = os.urandom(1000)
    sent = [("x-echo-plain", "value one"), ("x-echo-bin", b"\x00\x01\xfe\xff")]
    try:
        resp, call = echo.with_call(payload, metadata=sent, timeout=CALL_TIMEOUT)
    except grpc.RpcError as exc:
        pytest.fail(f"Echo failed: {rpc_error_text(exc)}")
    assert resp == payload
    assert call.code() == grpc.StatusCode.OK
    initial = md(call.initial_metadata())
    assert initial.get("x-backend") == "ga", initial
    assert initial.get("x-echo-plain") == "value one", initial
    assert initial.get("x-echo-bin") == b"\x00\x01\xfe\xff", f"binary metadata: {initial}"
    trailing = md(call.trailing_metadata())
    assert trailing.get("x-trailer") == "done-ga", f"trailing metadata: {trailing}"
    assert trailing.get("x-echo-count") == "2", trailing
    seen = genv.backends["ga"].calls[-1]
    assert seen.method == "Echo"
    assert seen.meta("x-echo-plain") == "value one", seen
    assert seen.meta("x-echo-bin") == b"\x00\x01\xfe\xff", seen
    assert (seen.meta("user-agent") or "").startswith("grpc-python"), seen
    # a second call on the same channel
    resp, call = echo.with_call(b"again", timeout=CALL_TIMEOUT)
    assert resp == b"again" and md(call.trailing_metadata()).get("x-trailer") == "done-ga"


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
def test_status_internal_with_details(genv, tls):
    ch = open_channel(genv, tls)
    with pytest.raises(grpc.RpcError) as ei:
        ch.unary_unary(method_path("Fail"))(b"x", timeout=CALL_TIMEOUT)
    exc = ei.value
    assert exc.code() == grpc.StatusCode.INTERNAL, rpc_error_text(exc)
    assert exc.details() == FAIL_DETAILS, rpc_error_text(exc)
    assert md(exc.trailing_metadata()).get("x-fail-reason") == "deliberate", \
        f"trailing metadata of the failed call: {exc.trailing_metadata()}"
    # the channel and the proxy go on
    assert ch.unary_unary(method_path("Echo"))(b"after", timeout=CALL_TIMEOUT) == b"after"


def test_deadline_exceeded_then_next_call_succeeds(genv):
    ch = genv.channel(A)
    slow = ch.unary_unary(method_path("Slow"))
    backend = genv.backends["ga"]
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as ei:
        slow(b"2000", timeout=0.2)
    elapsed = time.monotonic() - t0
    assert ei.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, rpc_error_text(ei.value)
    assert elapsed < 1.5, f"DEADLINE_EXCEEDED after {elapsed:.2f}s (deadline 0.2 s)"
    backend.wait_calls(1, 5, "Slow")
    call = backend.calls[-1]
    # grpc-timeout reaches the server, so its call ends with the deadline (or with the
    # client's RST_STREAM passed on), not after the full 2 s
    assert call.time_remaining is not None and call.time_remaining <= 1.0, \
        f"the server saw no deadline (grpc-timeout dropped?): {call}"
    assert call.done.wait(1.5), "the server's Slow call still runs 1.5 s after the deadline"
    # the proxy keeps serving: the same channel, then a new one
    assert ch.unary_unary(method_path("Echo"))(b"next", timeout=CALL_TIMEOUT) == b"next"
    assert slow(b"50", timeout=CALL_TIMEOUT) == b"50"
    assert genv.channel(A).unary_unary(method_path("Echo"))(b"new", timeout=CALL_TIMEOUT) == b"new"


def test_cancelled_call_ends_on_the_server(genv):
    """A client's cancel (RST_STREAM CANCEL) reaches the server: its handler sees the call
    end long before its 3 s sleep; the channel goes on."""
    ch = genv.channel(A)
    backend = genv.backends["ga"]
    fut = ch.unary_unary(method_path("Slow")).future(b"3000", timeout=30)
    backend.wait_calls(1, 5, "Slow")
    call = backend.calls[-1]
    t0 = time.monotonic()
    assert fut.cancel(), "the call could not be cancelled"
    assert call.done.wait(1.5), "the server's call still runs 1.5 s after the client cancelled"
    assert call.cancelled, "the server's call ran to its end"
    assert time.monotonic() - t0 < 1.5
    assert ch.unary_unary(method_path("Echo"))(b"after", timeout=CALL_TIMEOUT) == b"after"


# --------------------------------------------------------------------------
# streaming

@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
def test_bidi_stream_100_messages_in_order(genv, tls):
    """Ping-pong: message i+1 is sent only after echo i came back, so a proxy that held the
    request body (or the response) until the end of the stream would time out."""
    ch = open_channel(genv, tls)
    outbox: "queue.Queue[Optional[bytes]]" = queue.Queue()

    def requests():
        while True:
            m = outbox.get(timeout=CALL_TIMEOUT)
            if m is None:
                return
            yield m

    call = ch.stream_stream(method_path("BidiEcho"))(requests(), timeout=CALL_TIMEOUT)
    try:
        for i in range(100):
            msg = f"message {i:03d} ".encode() + os.urandom(i * 10)
            outbox.put(msg)
            got = next(call)
            assert got == msg, f"echo {i}: {got[:40]!r}, want {msg[:40]!r}"
        outbox.put(None)
        rest = list(call)
    except grpc.RpcError as exc:
        pytest.fail(f"BidiEcho failed: {rpc_error_text(exc)}")
    assert rest == [], f"{len(rest)} messages after the client's end of stream"
    assert call.code() == grpc.StatusCode.OK
    assert md(call.initial_metadata()).get("x-backend") == "ga"


def test_bidi_stream_full_duplex_32_mib(genv):
    """32 messages of 1 MiB sent as fast as flow control allows while the echoes stream back:
    both directions busy at once, nothing lost or reordered."""
    ch = genv.channel(A)
    msgs = [bytes([i]) * 16 + os.urandom(MiB - 16) for i in range(32)]
    call = ch.stream_stream(method_path("BidiEcho"))(iter(msgs), timeout=30)
    try:
        got = list(call)
    except grpc.RpcError as exc:
        pytest.fail(f"BidiEcho failed: {rpc_error_text(exc)}")
    assert len(got) == 32, f"{len(got)} of 32 echoes"
    for i, (g, m) in enumerate(zip(got, msgs)):
        assert hashlib.sha256(g).digest() == hashlib.sha256(m).digest(), f"echo {i} differs"


def test_server_streaming_count_1000(genv):
    ch = genv.channel(A)
    call = ch.unary_stream(method_path("Count"))(b"1000", timeout=CALL_TIMEOUT)
    try:
        got = [struct.unpack(">I", m)[0] for m in call]
    except grpc.RpcError as exc:
        pytest.fail(f"Count failed: {rpc_error_text(exc)}")
    assert got == list(range(1000)), f"{len(got)} messages; first wrong at " \
        f"{next((i for i, v in enumerate(got) if v != i), None)}"
    assert call.code() == grpc.StatusCode.OK


# --------------------------------------------------------------------------
# concurrency and size

def test_50_concurrent_unary_calls_on_one_channel(genv):
    """50 calls in flight at once on one client connection, each held 300 ms by the server:
    all succeed with their own payload, concurrently (one after another would take 15 s),
    over a few upstream connections."""
    ch = genv.channel(A)
    echo = ch.unary_unary(method_path("Echo"))
    assert echo(b"warm", timeout=CALL_TIMEOUT) == b"warm"
    payloads = [f"call {i}".encode() + os.urandom(64) for i in range(50)]
    t0 = time.monotonic()
    futs = [echo.future(p, metadata=[("x-delay-ms", "300")], timeout=CALL_TIMEOUT)
            for p in payloads]
    errors = []
    for i, (f, p) in enumerate(zip(futs, payloads)):
        try:
            if f.result() != p:
                errors.append(f"call {i}: wrong payload")
        except grpc.RpcError as exc:
            errors.append(f"call {i}: {rpc_error_text(exc)}")
    elapsed = time.monotonic() - t0
    assert not errors, f"{len(errors)} of 50 failed: {errors[:5]}"
    backend = genv.backends["ga"]
    assert backend.call_count("Echo") == 51
    assert elapsed < 6, f"50 calls of 300 ms took {elapsed:.1f}s: not concurrent upstream"
    assert backend.max_active > 1, "the server never had two calls at once"
    peers = backend.peers()
    assert len(peers) <= 16, f"{len(peers)} upstream connections for 51 calls: {sorted(peers)}"


def test_300_concurrent_calls_over_three_channels(genv):
    """More calls in flight than one upstream connection takes (100 streams): 3 channels of
    100 calls each held 200 ms; all succeed, concurrently."""
    chans = [genv.channel(A, [("grpc.use_local_subchannel_pool", 1)]) for _ in range(3)]
    t0 = time.monotonic()
    futs = [(p, ch.unary_unary(method_path("Echo")).future(
        p, metadata=[("x-delay-ms", "200")], timeout=CALL_TIMEOUT))
        for ch in chans for p in (os.urandom(32) for _ in range(100))]
    errors = []
    for p, f in futs:
        try:
            if f.result() != p:
                errors.append("wrong payload")
        except grpc.RpcError as exc:
            errors.append(rpc_error_text(exc))
    elapsed = time.monotonic() - t0
    assert not errors, f"{len(errors)} of 300 failed: {errors[:5]}"
    assert elapsed < 8, f"300 calls of 200 ms took {elapsed:.1f}s"
    assert genv.backends["ga"].max_active > 1


def test_4mib_message_round_trip(genv):
    ch = genv.channel(A)
    payload = os.urandom(4 * MiB)
    try:
        resp = ch.unary_unary(method_path("Echo"))(payload, timeout=20)
    except grpc.RpcError as exc:
        pytest.fail(f"4 MiB Echo failed: {rpc_error_text(exc)}")
    assert len(resp) == len(payload)
    assert hashlib.sha256(resp).hexdigest() == hashlib.sha256(payload).hexdigest()


# --------------------------------------------------------------------------
# routing

def test_routing_by_authority(genv):
    cha, chb = genv.channel(A), genv.channel(B)
    for i in range(5):
        for ch, name in ((cha, "ga"), (chb, "gb")):
            resp, call = ch.unary_unary(method_path("Echo")).with_call(
                f"{name}-{i}".encode(), timeout=CALL_TIMEOUT)
            assert resp == f"{name}-{i}".encode()
            assert md(call.initial_metadata()).get("x-backend") == name, \
                f"call {i} for {name} answered by {md(call.initial_metadata())}"
    assert genv.backends["ga"].call_count() == 5
    assert genv.backends["gb"].call_count() == 5
    if DIRECT:
        return
    # an authority no route matches: the listener's 404, which gRPC maps to UNIMPLEMENTED
    ch = genv.channel("nobody.example.net")
    with pytest.raises(grpc.RpcError) as ei:
        ch.unary_unary(method_path("Echo"))(b"lost", timeout=CALL_TIMEOUT)
    assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED, rpc_error_text(ei.value)
    assert genv.backends["ga"].call_count() + genv.backends["gb"].call_count() == 10


def test_calls_from_threads_on_two_listeners(genv):
    """h2c and TLS clients at once, from threads, streaming and unary mixed."""
    errors: List[str] = []

    def worker(tls: bool, n: int):
        ch = open_channel(genv, tls)
        try:
            for i in range(n):
                p = f"{tls}-{i}".encode()
                if ch.unary_unary(method_path("Echo"))(p, timeout=CALL_TIMEOUT) != p:
                    errors.append(f"{tls}/{i}: wrong payload")
                got = list(ch.unary_stream(method_path("Count"))(b"20", timeout=CALL_TIMEOUT))
                if len(got) != 20:
                    errors.append(f"{tls}/{i}: {len(got)} of 20 messages")
        except grpc.RpcError as exc:
            errors.append(f"{tls}: {rpc_error_text(exc)}")

    threads = [threading.Thread(target=worker, args=(tls, 20)) for tls in (False, True, False)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a worker still runs after 60 s"
    assert not errors, errors[:5]
    assert genv.backends["ga"].call_count() == 120


def test_two_workers_eight_client_connections(term_certs, up_proxy):
    """Sluice with 2 event loops: 8 client connections (own subchannels), 20 concurrent calls
    and a server stream on each, all answered."""
    if DIRECT:
        pytest.skip("needs the proxy")
    backends = {"ga": GrpcBackend("ga"), "gb": GrpcBackend("gb")}
    channels = []
    try:
        p = up_proxy(grpc_config(backends, term_certs), workers=2)
        errors: List[str] = []
        for i in range(8):
            authority = A if i % 2 else B
            channels.append((authority, grpc.insecure_channel(
                p.addr("plain"), options=grpc_options(
                    authority, [("grpc.use_local_subchannel_pool", 1)]))))
        futs = []
        for authority, ch in channels:
            echo = ch.unary_unary(method_path("Echo"))
            for j in range(20):
                payload = f"{authority}-{j}".encode()
                futs.append((payload, echo.future(payload, metadata=[("x-delay-ms", "50")],
                                                  timeout=CALL_TIMEOUT)))
        streams = [ch.unary_stream(method_path("Count"))(b"200", timeout=CALL_TIMEOUT)
                   for _, ch in channels]
        for payload, f in futs:
            try:
                if f.result() != payload:
                    errors.append(f"{payload!r}: wrong payload")
            except grpc.RpcError as exc:
                errors.append(f"{payload!r}: {rpc_error_text(exc)}")
        for s in streams:
            try:
                n = sum(1 for _ in s)
                if n != 200:
                    errors.append(f"Count: {n} of 200")
            except grpc.RpcError as exc:
                errors.append(f"Count: {rpc_error_text(exc)}")
        assert not errors, f"{len(errors)} failed: {errors[:5]}"
        assert backends["ga"].call_count("Echo") == 80 and backends["gb"].call_count("Echo") == 80
    finally:
        for _, ch in channels:
            ch.close()
        for b in backends.values():
            b.shutdown()

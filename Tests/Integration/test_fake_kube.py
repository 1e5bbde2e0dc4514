"""The fake Kubernetes API server's own protocol tests (no Sluice involved)."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import ssl
import time

import pytest

from fake_kube import (FIXTURES, SERVICES, SLICES, FakeKube, endpoint, make_kube_certs,
                       service_obj)

TOKEN = "t0k3n"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"}
SVC = "/api/v1/services"
EPS = "/apis/discovery.k8s.io/v1/endpointslices"


@pytest.fixture
def fake():
    fk = FakeKube(token=TOKEN, bookmark_interval=0.2)
    fk.start()
    yield fk
    fk.stop()


@pytest.fixture
def seeded(fake):
    fake.load_fixtures()
    return fake


def get(fk: FakeKube, target: str, headers=None, timeout=5.0):
    c = http.client.HTTPConnection("127.0.0.1", fk.port, timeout=timeout)
    c.request("GET", target, headers=headers if headers is not None else AUTH)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r, body


class RawWatch:
    """A watch read chunk by chunk from the socket, to see the chunk boundaries."""

    def __init__(self, fk: FakeKube, target: str, headers=None, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", fk.port), timeout=timeout)
        hs = headers if headers is not None else AUTH
        req = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in hs.items()) + "\r\n"
        self.sock.sendall(req.encode())
        self.buf = bytearray()
        head = self._until(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip()
                        for l in lines[1:] if ":" in l}
        self.chunks = []
        self.ended = False

    def _fill(self):
        d = self.sock.recv(65536)
        if not d:
            raise EOFError("EOF")
        self.buf += d

    def _until(self, sep: bytes) -> bytes:
        while sep not in self.buf:
            self._fill()
        i = self.buf.index(sep)
        out = bytes(self.buf[:i])
        del self.buf[:i + len(sep)]
        return out

    def chunk(self) -> bytes:
        size = int(self._until(b"\r\n"), 16)
        while len(self.buf) < size + 2:
            self._fill()
        data = bytes(self.buf[:size])
        assert self.buf[size:size + 2] == b"\r\n"
        del self.buf[:size + 2]
        if size == 0:
            self.ended = True
        else:
            self.chunks.append(data)
        return data

    def events(self, n: int, timeout: float = 5.0, skip_bookmarks: bool = True):
        """The next n events (lines may span chunks)."""
        out = []
        pending = bytearray()
        deadline = time.monotonic() + timeout
        while len(out) < n:
            assert time.monotonic() < deadline, f"got {len(out)} of {n} events: {out}"
            c = self.chunk()
            if not c:
                break
            pending += c
            while b"\n" in pending:
                line, _, rest = bytes(pending).partition(b"\n")
                pending = bytearray(rest)
                ev = json.loads(line)
                if skip_bookmarks and ev["type"] == "BOOKMARK":
                    continue
                out.append(ev)
        assert not pending, f"partial event left after {n} events: {bytes(pending)[:100]!r}"
        return out

    def close(self):
        self.sock.close()


# ------------------------------------------------------------------ lists

def test_list_all_and_namespaced(seeded):
    r, body = get(seeded, SVC)
    assert r.status == 200 and r.getheader("Content-Type") == "application/json"
    d = json.loads(body)
    fix = json.loads((FIXTURES / "services-list.json").read_text())
    assert d["kind"] == "ServiceList" and d["apiVersion"] == "v1"
    assert d["metadata"]["resourceVersion"] == str(seeded.rv)
    assert sorted(i["metadata"]["name"] for i in d["items"]) == sorted(
        i["metadata"]["name"] for i in fix["items"])
    assert all("kind" not in i for i in d["items"]), "list items carry no kind"
    r, body = get(seeded, "/api/v1/namespaces/monitoring/services")
    names = [i["metadata"]["name"] for i in json.loads(body)["items"]]
    assert names == ["grafana"]
    r, body = get(seeded, "/apis/discovery.k8s.io/v1/namespaces/monitoring/endpointslices"
                          "?labelSelector=kubernetes.io%2Fservice-name%3Dgrafana")
    d = json.loads(body)
    assert d["kind"] == "EndpointSliceList"
    assert len(d["items"]) == 2
    r, body = get(seeded, SVC + "?fieldSelector=metadata.namespace%21%3Dkube-system")
    assert all(i["metadata"]["namespace"] != "kube-system" for i in json.loads(body)["items"])
    r, body = get(seeded, "/api/v1/namespaces/monitoring/services/grafana")
    assert json.loads(body)["kind"] == "Service"
    r, _ = get(seeded, "/api/v1/nodes")
    assert r.status == 404


def test_paging_keeps_list_rv_and_expires(fake):
    for i in range(7):
        fake.add_service("default", f"s{i}", host=f"s{i}.example.com")
    r, body = get(fake, SVC + "?limit=3")
    d = json.loads(body)
    rv = d["metadata"]["resourceVersion"]
    names = [i["metadata"]["name"] for i in d["items"]]
    assert len(names) == 3 and d["metadata"]["continue"]
    assert d["metadata"]["remainingItemCount"] == 4
    fake.add_service("default", "s9-late")           # a change between pages
    while d["metadata"].get("continue"):
        r, body = get(fake, SVC + "?limit=3&continue=" + d["metadata"]["continue"])
        assert r.status == 200
        d = json.loads(body)
        assert d["metadata"]["resourceVersion"] == rv, "list RV constant across pages"
        names += [i["metadata"]["name"] for i in d["items"]]
    assert names == [f"s{i}" for i in range(7)], "the late Service is not in the old list"
    # an expired token: 410 with a bare Status
    r, body = get(fake, SVC + "?limit=2")
    tok = json.loads(body)["metadata"]["continue"]
    fake.expire_continue_tokens()
    r, body = get(fake, SVC + "?limit=2&continue=" + tok)
    assert r.status == 410
    st = json.loads(body)
    assert st["kind"] == "Status" and st["code"] == 410 and st["reason"] == "Expired"


def test_big_list_is_gzipped_when_accepted(fake):
    with fake.batch():
        for i in range(400):
            fake.add_service("default", f"svc-{i:04d}", host=f"h{i}.example.com")
    r, body = get(fake, SVC, {**AUTH, "Accept-Encoding": "gzip"})
    assert r.getheader("Content-Encoding") == "gzip"
    assert len(json.loads(gzip.decompress(body))["items"]) == 400
    r, body = get(fake, SVC)
    assert r.getheader("Content-Encoding") is None
    assert len(json.loads(body)["items"]) == 400


# ------------------------------------------------------------------ auth and refusals

def test_wrong_or_missing_token_gets_401_status(fake):
    for hs in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}):
        r, body = get(fake, SVC, hs)
        assert r.status == 401
        st = json.loads(body)
        assert st["kind"] == "Status" and st["code"] == 401 and st["reason"] == "Unauthorized"
    fake.set_token("rotated")
    r, _ = get(fake, SVC)
    assert r.status == 401
    r, _ = get(fake, SVC, {"Authorization": "Bearer rotated"})
    assert r.status == 200
    assert fake.requests[-1]["headers"]["authorization"] == "Bearer rotated"


def test_refusals_500_and_429_retry_after(fake):
    fake.refuse(500, count=1)
    fake.refuse(429, count=2, retry_after=3)
    r, body = get(fake, SVC)
    assert r.status == 500 and json.loads(body)["code"] == 500
    for _ in range(2):
        r, body = get(fake, SVC)
        assert r.status == 429 and r.getheader("Retry-After") == "3"
        assert json.loads(body)["reason"] == "TooManyRequests"
    r, _ = get(fake, SVC)
    assert r.status == 200


# ------------------------------------------------------------------ watches

def test_watch_from_list_rv_events_and_bookmarks(fake):
    fake.add_service("default", "a", host="a.example.com")
    _, body = get(fake, SVC)
    rv = json.loads(body)["metadata"]["resourceVersion"]
    w = RawWatch(fake, f"{SVC}?watch=1&resourceVersion={rv}&allowWatchBookmarks=true")
    assert w.status == 200 and w.headers["transfer-encoding"] == "chunked"
    fake.add_service("default", "b", host="b.example.com")
    fake.annotate("default", "a", {"serviceloadbalancer/lb.host": "a2.example.com"})
    fake.delete_service("default", "b")
    evs = w.events(3)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in evs] == [
        ("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
    assert all(e["object"]["kind"] == "Service" and e["object"]["apiVersion"] == "v1" for e in evs)
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in evs]
    assert rvs == sorted(rvs) and rvs[0] > int(rv)
    # line mode: one event per chunk
    assert all(c.count(b"\n") == 1 and c.endswith(b"\n") for c in w.chunks)
    # a bookmark within a few intervals, with the current RV and nothing else meaningful
    deadline = time.monotonic() + 3
    while True:
        c = json.loads(w.chunk())
        if c["type"] == "BOOKMARK":
            break
        assert time.monotonic() < deadline
    assert c["object"]["kind"] == "Service"
    assert c["object"]["metadata"]["resourceVersion"] == str(fake.rv)
    w.close()
    # slices: bookmark carries the non-omitempty zero fields
    w = RawWatch(fake, f"{EPS}?watch=1&resourceVersion={fake.rv}&allowWatchBookmarks=true")
    c = json.loads(w.chunk())
    assert c["type"] == "BOOKMARK"
    assert c["object"]["addressType"] == "" and c["object"]["endpoints"] is None
    w.close()


def test_watch_without_rv_starts_with_added(seeded):
    w = RawWatch(seeded, f"{EPS}?watch=1")
    n = len(seeded.snapshot(SLICES))
    evs = w.events(n)
    assert {e["type"] for e in evs} == {"ADDED"}
    assert all(e["object"]["kind"] == "EndpointSlice" for e in evs)
    w.close()
    w = RawWatch(seeded, f"{SVC}?watch=1&sendInitialEvents=true&allowWatchBookmarks=true"
                         "&resourceVersionMatch=NotOlderThan")
    evs = w.events(len(seeded.snapshot(SERVICES)) + 1, skip_bookmarks=False)
    assert evs[-1]["type"] == "BOOKMARK"
    assert evs[-1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    w.close()


def test_namespaced_watch_filters(fake):
    rv = fake.rv
    w = RawWatch(fake, f"/api/v1/namespaces/team-a/services?watch=1&resourceVersion={rv}")
    fake.add_service("team-b", "x")
    fake.add_service("team-a", "y")
    evs = w.events(1)
    assert evs[0]["object"]["metadata"]["namespace"] == "team-a"
    w.close()


def test_split_chunks_cut_inside_events_and_group_them():
    fk = FakeKube(token=TOKEN, chunk_mode="split", split_pause=0.001, seed=7,
                  bookmark_interval=60).start()
    try:
        fk.add_service("default", "web", host="web.example.com")
        rv = fk.rv
        w = RawWatch(fk, f"{EPS}?watch=1&resourceVersion={rv}&allowWatchBookmarks=true")
        fk.set_endpoints("default", "web", ["127.0.0.1"], 8080)
        evs = w.events(1)
        with fk.batch():                    # several events reach the watch at once
            for i in range(2, 12):
                fk.set_endpoints("default", "web", [f"127.0.0.{j}" for j in range(1, i + 1)], 8080)
        evs += w.events(10)
        assert [len(e["object"]["endpoints"]) for e in evs] == list(range(1, 12))
        inside = [c for c in w.chunks if not c.endswith(b"\n")]
        several = [c for c in w.chunks if c.count(b"\n") >= 2]
        assert inside, "no chunk ended inside an event"
        assert several, "no chunk held several events"
        assert fk.wait_written(fk.rv, 5) > 0, "write time of the last event recorded"
        w.close()
    finally:
        fk.stop()


def test_watch_too_old_gets_410_http_and_in_stream(fake):
    fake.add_service("default", "a")
    old = fake.rv
    fake.add_service("default", "b")
    compacted = fake.expire_history()
    r, body = get(fake, f"{SVC}?watch=1&resourceVersion={old}")
    assert r.status == 410
    st = json.loads(body)
    assert st["kind"] == "Status" and st["code"] == 410 and "too old resource version" in st["message"]
    # the list RV after compaction is fine
    _, body = get(fake, SVC)
    assert int(json.loads(body)["metadata"]["resourceVersion"]) >= compacted
    w = RawWatch(fake, f"{SVC}?watch=1&resourceVersion={json.loads(body)['metadata']['resourceVersion']}")
    assert w.status == 200
    w.close()
    fake.gone_mode = "stream"
    w = RawWatch(fake, f"{SVC}?watch=1&resourceVersion={old}")
    assert w.status == 200
    ev = w.events(1)[0]
    assert ev["type"] == "ERROR" and ev["object"]["code"] == 410
    assert ev["object"]["reason"] == "Expired"
    assert w.chunk() == b"" and w.ended
    w.close()


def test_gone_midstream(fake):
    w = RawWatch(fake, f"{SVC}?watch=1&resourceVersion={fake.rv}")
    fake.add_service("default", "a")
    assert w.events(1)[0]["type"] == "ADDED"
    assert fake.gone_midstream() == 1
    ev = w.events(1)[0]
    assert ev["type"] == "ERROR" and ev["object"]["code"] == 410
    assert w.chunk() == b""
    w.close()


@pytest.mark.parametrize("how", ["eof", "fin", "rst"])
def test_drop_watches(fake, how):
    w = RawWatch(fake, f"{SVC}?watch=1&resourceVersion={fake.rv}")
    fake.wait_watches(1)
    assert fake.drop_watches(how) == 1
    if how == "eof":
        assert w.chunk() == b"" and w.ended
    elif how == "fin":
        with pytest.raises(EOFError):
            w.chunk()
    else:
        with pytest.raises((ConnectionResetError, EOFError)) as ei:
            w.chunk()
        assert ei.type is ConnectionResetError, "a reset, not a FIN"
    w.close()
    assert fake.open_watches() == []


def test_stalled_watch_stays_open_and_silent(fake):
    w = RawWatch(fake, f"{SVC}?watch=1&resourceVersion={fake.rv}&allowWatchBookmarks=true",
                 timeout=1.2)
    json.loads(w.chunk())                       # a bookmark: alive
    fake.stall_watches()
    w.buf.clear()
    fake.add_service("default", "hidden")
    with pytest.raises(socket.timeout):
        w.chunk()
    assert fake.open_watches()[0].stalled
    # a new watch is served normally and sees the change
    w2 = RawWatch(fake, f"{SVC}?watch=1&resourceVersion={fake.rv - 1}")
    assert w2.events(1)[0]["object"]["metadata"]["name"] == "hidden"
    w.close()
    w2.close()


def test_watch_timeout_seconds_ends_cleanly(fake):
    w = RawWatch(fake, f"{SVC}?watch=1&resourceVersion={fake.rv}&timeoutSeconds=1")
    t0 = time.monotonic()
    assert w.chunk() == b""
    assert 0.8 < time.monotonic() - t0 < 3


def test_tls_with_ca_and_wrong_ca(tmp_path):
    certs = make_kube_certs(tmp_path / "certs")
    fk = FakeKube(token=TOKEN, certs=certs).start()
    try:
        fk.add_service("default", "a")
        ctx = ssl.create_default_context(cafile=str(certs.ca))
        c = http.client.HTTPSConnection("127.0.0.1", fk.port, context=ctx, timeout=5)
        c.request("GET", SVC, headers=AUTH)
        r = c.getresponse()
        assert r.status == 200 and len(json.loads(r.read())["items"]) == 1
        c.close()
        bad = ssl.create_default_context(cafile=str(certs.other_ca))
        c = http.client.HTTPSConnection("127.0.0.1", fk.port, context=bad, timeout=5)
        with pytest.raises(ssl.SSLCertVerificationError):
            c.request("GET", SVC, headers=AUTH)
        c.close()
        deadline = time.monotonic() + 5
        while not fk.tls_failures and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fk.tls_failures, "the failed handshake is recorded"
        assert fk.url.startswith("https://127.0.0.1:")
    finally:
        fk.stop()


def test_set_endpoints_conditions_roundtrip(fake):
    fake.add_service("default", "web", host="web.example.com")
    fake.set_endpoints("default", "web", ["127.0.0.1", endpoint("127.0.0.2", ready=False),
                                          {"ip": "127.0.0.3", "ready": None}], 9000)
    s = fake.get(SLICES, "default", "web-abcde")
    eps = s["endpoints"]
    assert eps[0]["conditions"] == {"ready": True, "serving": True, "terminating": False}
    assert eps[1]["conditions"]["ready"] is False
    assert eps[2]["conditions"] == {}, "nil conditions are omitted"
    assert s["ports"] == [{"name": "http", "protocol": "TCP", "port": 9000}]
    assert s["metadata"]["ownerReferences"][0]["uid"] == fake.get(SERVICES, "default", "web")["metadata"]["uid"]
    fake.set_conditions("default", "web-abcde", "127.0.0.1", ready=False, terminating=True)
    s2 = fake.get(SLICES, "default", "web-abcde")
    assert s2["endpoints"][0]["conditions"] == {"ready": False, "serving": True, "terminating": True}
    assert s2["metadata"]["generation"] == s["metadata"]["generation"] + 1
    assert int(s2["metadata"]["resourceVersion"]) > int(s["metadata"]["resourceVersion"])
    svc = service_obj("x", "y", ports=[{"name": "", "port": 3306, "targetPort": 3306}])
    assert svc["spec"]["ports"][0]["targetPort"] == 3306


def test_stream_error_other_than_410(fake):
    w = RawWatch(fake, f"{SVC}?watch=1&resourceVersion={fake.rv}")
    fake.wait_watches(1)
    assert fake.stream_error(500) == 1
    ev = w.events(1)[0]
    assert ev["type"] == "ERROR" and ev["object"]["code"] == 500
    assert w.chunk() == b"" and w.ended
    w.close()

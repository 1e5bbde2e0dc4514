"""A fake Kubernetes API server speaking the real wire protocol, for the `sluice kube` tests.

Standard library only (``openssl`` CLI for the throwaway certificates).  One threaded
HTTP/1.1 server, plain or TLS, with an in-memory store of Services (core/v1) and
EndpointSlices (discovery.k8s.io/v1) sharing one monotonically increasing resourceVersion.

Served:

- ``GET /api/v1/services``, ``/api/v1/namespaces/NS/services`` and the EndpointSlice
  equivalents under ``/apis/discovery.k8s.io/v1``: lists with ``limit``/``continue``
  paging (the list RV is constant across pages; an expired token gets 410 Expired),
  ``labelSelector`` (``k=v``, ``k!=v``, ``k``, ``!k``) and ``fieldSelector``
  (``metadata.namespace``/``metadata.name`` with ``=``/``==``/``!=``); lists bigger than
  128 KiB are gzipped when the client accepts it, as the real server does.
- the same paths with ``watch=1``: a ``Transfer-Encoding: chunked`` stream of JSON lines.
  ``resourceVersion`` unset or ``0`` starts with synthetic ADDED events; a specific RV
  replays what came after it; one older than the compaction point gets 410 (an HTTP 410
  Status, or ``gone_mode="stream"``: a 200 with an in-stream ERROR event).
  ``allowWatchBookmarks=true`` gets a BOOKMARK every ``bookmark_interval`` seconds;
  ``sendInitialEvents=true`` ends the synthetic ADDED events with the
  ``k8s.io/initial-events-end`` bookmark; ``timeoutSeconds`` ends the stream cleanly.
- ``GET /version``, ``/api``, ``/apis``, ``/apis/discovery.k8s.io/v1``, and single objects.

``chunk_mode="split"`` cuts the byte stream of a watch at random (seeded) positions, so
chunks end inside events and one chunk can hold several events; every chunk is flushed on
its own (TCP_NODELAY, ``split_pause`` seconds apart).

Every request is checked for ``Authorization: Bearer <token>`` (``token=None``: no check;
``accepted_tokens`` widens it); a wrong one gets a 401 Status.

Fault hooks for the tests: ``drop_watches(how)`` (``"eof"`` clean end of the chunked
stream, ``"fin"`` close in the middle of it, ``"rst"`` reset), ``stall_watches()``
(connections stay open, nothing more is sent), ``expire_history()`` (compaction: watches
from older RVs get 410), ``gone_midstream()`` (in-stream ERROR 410 to every open watch),
``stream_error(code)`` (an in-stream ERROR other than 410), ``refuse(status, count,
retry_after)`` (500/429/... at request start), ``expire_continue_tokens()``.

Control API: ``add_service``/``update_service``/``delete_service``, ``set_endpoints``
(per-endpoint ready/serving/terminating), ``batch()`` (several changes at once: they reach
a watch together), ``requests`` (method, path, query, headers, status), ``hooks``
(callables run with each request record before it is answered), waits.

Run on its own for manual poking: ``python3 fake_kube.py [--port N] [--fixtures]``.
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import copy
import gzip
import itertools
import json
import os
import random
import socket
import ssl
import struct
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from urllib.parse import parse_qs, urlsplit

from tls_backends import _openssl

FIXTURES = Path(os.environ.get("SLUICE_K8S_FIXTURES", "/work/shared/k8s-fixtures"))

SERVICES = "services"
SLICES = "endpointslices"
KINDS = {
    SERVICES: ("Service", "v1", "ServiceList"),
    SLICES: ("EndpointSlice", "discovery.k8s.io/v1", "EndpointSliceList"),
}
GZIP_MIN = 128 * 1024
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def status_body(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def _dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


# --------------------------------------------------------------------------
# certificates

class KubeCerts:
    """A CA, a server certificate for 127.0.0.1/localhost signed by it, and an unrelated CA."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.ca = directory / "ca.crt"
        self.cert = directory / "server.crt"
        self.key = directory / "server.key"
        self.other_ca = directory / "other-ca.crt"


def make_kube_certs(directory: Path) -> KubeCerts:
    directory.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for name, cn in (("ca", "Fake Kube CA"), ("other-ca", "Unrelated CA")):
        _openssl("req", "-x509", *ec, "-keyout", f"{name}.key", "-out", f"{name}.crt",
                 "-days", "3", "-subj", f"/CN={cn}",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                 "-addext", "subjectKeyIdentifier=hash", cwd=directory)
    ext = directory / "server.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n"
                   "basicConstraints=CA:FALSE\n"
                   "keyUsage=critical,digitalSignature\n"
                   "extendedKeyUsage=serverAuth\n"
                   "subjectKeyIdentifier=hash\n"
                   "authorityKeyIdentifier=keyid:always\n")
    _openssl("req", "-new", *ec, "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=kube-apiserver", cwd=directory)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.crt", "-days", "3", "-extfile", ext.name,
             cwd=directory)
    return KubeCerts(directory)


# --------------------------------------------------------------------------
# object builders

def service_obj(namespace: str, name: str, ports: Optional[List[dict]] = None,
                annotations: Optional[Dict[str, str]] = None, host: Optional[str] = None,
                labels: Optional[Dict[str, str]] = None, spec: Optional[dict] = None) -> dict:
    """A Service as the API server stores it (no kind/apiVersion: list items omit them).
    ``host``: shorthand for the ``serviceloadbalancer/lb.host`` annotation."""
    ann = dict(annotations or {})
    if host is not None:
        ann["serviceloadbalancer/lb.host"] = host
    ports = ports if ports is not None else [
        {"name": "http", "protocol": "TCP", "port": 80, "targetPort": "http"}]
    meta = {"name": name, "namespace": namespace, "labels": dict(labels or {"app": name})}
    if ann:
        meta["annotations"] = ann
    sp = {"ports": ports, "selector": {"app": name}, "clusterIP": "10.96.0.10",
          "clusterIPs": ["10.96.0.10"], "type": "ClusterIP", "sessionAffinity": "None",
          "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
          "internalTrafficPolicy": "Cluster"}
    sp.update(spec or {})
    return {"metadata": meta, "spec": sp, "status": {"loadBalancer": {}}}


def endpoint(ip: str, ready: Optional[bool] = True, serving: Optional[bool] = None,
             terminating: Optional[bool] = None, **extra) -> dict:
    """An EndpointSlice endpoint; a condition left as None is omitted (nil on the wire)."""
    cond = {}
    if ready is not None:
        cond["ready"] = ready
    if serving is not None:
        cond["serving"] = serving
    elif ready is not None:
        cond["serving"] = ready
    if terminating is not None:
        cond["terminating"] = terminating
    elif ready is not None:
        cond["terminating"] = False
    ep = {"addresses": [ip], "conditions": cond}
    ep.update(extra)
    return ep


def slice_obj(namespace: str, service: str, name: str, endpoints: Optional[List[dict]],
              port: Optional[int], port_name: str = "http", address_type: str = "IPv4") -> dict:
    meta = {"name": name, "generateName": f"{service}-", "namespace": namespace,
            "labels": {SERVICE_NAME_LABEL: service,
                       "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": service,
                                 "uid": "", "controller": True, "blockOwnerDeletion": True}]}
    ports = None if port is None else [{"name": port_name, "protocol": "TCP", "port": port}]
    return {"metadata": meta, "addressType": address_type, "endpoints": endpoints,
            "ports": ports}


def _norm_endpoints(endpoints: Optional[Iterable]) -> Optional[List[dict]]:
    if endpoints is None:
        return None
    out = []
    for e in endpoints:
        if isinstance(e, str):
            out.append(endpoint(e))
        elif isinstance(e, tuple):
            out.append(endpoint(*e))
        elif "addresses" in e:
            out.append(copy.deepcopy(e))
        else:
            kw = dict(e)
            out.append(endpoint(kw.pop("ip"), **kw))
    return out


# --------------------------------------------------------------------------
# selectors

def _label_match(labels: Dict[str, str], selector: Optional[str]) -> bool:
    if not selector:
        return True
    for term in selector.split(","):
        term = term.strip()
        if not term:
            continue
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "==" in term or "=" in term:
            k, v = term.split("==", 1) if "==" in term else term.split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def _field_match(obj: dict, selector: Optional[str]) -> bool:
    if not selector:
        return True
    meta = obj.get("metadata", {})
    for term in selector.split(","):
        term = term.strip()
        if not term:
            continue
        neg = "!=" in term
        k, v = (term.split("!=", 1) if neg else
                term.split("==", 1) if "==" in term else term.split("=", 1))
        k = k.strip()
        if k.startswith("metadata."):
            actual = meta.get(k[len("metadata."):], "")
        else:
            actual = ""
        if (actual == v.strip()) == neg:
            return False
    return True


# --------------------------------------------------------------------------
# the store

class Entry:
    """One change in the history: kind, event type, RV, namespace, the encoded event line."""
    __slots__ = ("rv", "kind", "type", "ns", "obj", "line")

    def __init__(self, rv: int, kind: str, etype: str, obj: dict):
        self.rv = rv
        self.kind = kind
        self.type = etype
        self.ns = obj["metadata"].get("namespace", "")
        self.obj = obj
        k, av, _ = KINDS[kind]
        full = {"kind": k, "apiVersion": av, **obj}
        self.line = _dumps({"type": etype, "object": full}) + b"\n"


class Watch:
    """One open watch connection (state the control side can poke)."""
    _ids = itertools.count(1)

    def __init__(self, kind: str, ns: Optional[str], query: dict, peer):
        self.id = next(Watch._ids)
        self.kind = kind
        self.ns = ns
        self.query = query
        self.peer = peer
        self.kill: Optional[str] = None      # "eof" | "fin" | "rst" | "gone"
        self.stalled = False
        self.started = time.monotonic()
        self.bytes_sent = 0
        self.events_sent = 0
        self.ended: Optional[str] = None

    def __repr__(self) -> str:
        return f"<watch {self.id} {self.kind} ns={self.ns} {self.ended or 'open'}>"


class FakeKube:
    def __init__(self, token: Optional[str] = "fake-token", certs: Optional[KubeCerts] = None,
                 host: str = "127.0.0.1", port: int = 0, seed: int = 1,
                 chunk_mode: str = "line", split_pause: float = 0.002,
                 bookmark_interval: float = 0.5, gone_mode: str = "http",
                 initial_rv: int = 1000, watch_timeout_default: Optional[float] = None):
        self.token = token
        self.accepted_tokens: set = set()
        self.certs = certs
        self.host = host
        self.seed = seed
        self.chunk_mode = chunk_mode
        self.split_pause = split_pause
        self.bookmark_interval = bookmark_interval
        self.gone_mode = gone_mode
        self.watch_timeout_default = watch_timeout_default
        self.gzip_lists = True
        self.cond = threading.Condition()
        self.rv = initial_rv
        self.compacted_rv = 0            # a watch from an RV below this gets 410
        self.objects: Dict[str, Dict[Tuple[str, str], dict]] = {SERVICES: {}, SLICES: {}}
        self.history: List[Entry] = []
        self.history_rvs: List[int] = []
        self.watches: List[Watch] = []
        self.requests: List[dict] = []
        self.refusals: List[dict] = []   # [{"status", "count", "retry_after", "match"}]
        self.continues: Dict[str, Tuple[float, int, List[dict]]] = {}
        self.tls_failures: List[str] = []
        self.stall_new = False
        self.hooks: List[Callable[[dict], None]] = []   # called with each request record first
        self.event_written: Dict[int, float] = {}   # RV -> monotonic time the event left
        self._rng_counter = itertools.count()
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._ssl_ctx: Optional[ssl.SSLContext] = None
        self._bind = (host, port)

    # ---------------------------------------------------------------- lifecycle
    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"{'https' if self.certs else 'http'}://{self.host}:{self.port}"

    def start(self) -> "FakeKube":
        fake = self
        if self.certs:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(self.certs.cert), str(self.certs.key))
            ctx.set_alpn_protocols(["http/1.1"])
            self._ssl_ctx = ctx

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 128

            def finish_request(self, request, client_address):
                request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if fake._ssl_ctx is not None:
                    try:
                        request.settimeout(10)
                        request = fake._ssl_ctx.wrap_socket(request, server_side=True)
                        request.settimeout(None)
                    except (ssl.SSLError, OSError) as exc:
                        with fake.cond:
                            fake.tls_failures.append(f"{type(exc).__name__}: {exc}")
                            fake.cond.notify_all()
                        try:
                            request.close()
                        except OSError:
                            pass
                        return
                self.RequestHandlerClass(request, client_address, self)

            def handle_error(self, request, client_address):
                pass  # clients going away mid-response are expected here

        self._server = Server(self._bind, _Handler)
        self._server.fake = self
        # A restart after stop() comes back on the same port, as an API server does.
        self._bind = (self.host, self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="fake-kube")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self.drop_watches("rst")
        self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---------------------------------------------------------------- store
    def _bump(self) -> int:
        self.rv += 1
        return self.rv

    def _record(self, kind: str, etype: str, obj: dict) -> None:
        e = Entry(self.rv, kind, etype, obj)
        self.history.append(e)
        self.history_rvs.append(e.rv)
        self.cond.notify_all()

    def _put(self, kind: str, obj: dict) -> dict:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", "default")
        key = (meta["namespace"], meta["name"])
        with self.cond:
            old = self.objects[kind].get(key)
            rv = self._bump()
            meta["resourceVersion"] = str(rv)
            if old is not None:
                meta["uid"] = old["metadata"]["uid"]
                meta["creationTimestamp"] = old["metadata"].get("creationTimestamp")
                if kind == SLICES:
                    meta["generation"] = old["metadata"].get("generation", 1) + 1
            else:
                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault("creationTimestamp",
                                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
                if kind == SLICES:
                    meta.setdefault("generation", 1)
            if kind == SLICES:
                svc = self.objects[SERVICES].get((meta["namespace"],
                                                  meta.get("labels", {}).get(SERVICE_NAME_LABEL, "")))
                for ref in meta.get("ownerReferences", []):
                    if svc is not None and not ref.get("uid"):
                        ref["uid"] = svc["metadata"]["uid"]
            self.objects[kind][key] = obj
            self._record(kind, "MODIFIED" if old is not None else "ADDED", obj)
            return copy.deepcopy(obj)

    def _delete(self, kind: str, namespace: str, name: str) -> Optional[dict]:
        with self.cond:
            old = self.objects[kind].pop((namespace, name), None)
            if old is None:
                return None
            old = copy.deepcopy(old)
            old["metadata"]["resourceVersion"] = str(self._bump())
            self._record(kind, "DELETED", old)
            return old

    def add_service(self, obj_or_ns, name: Optional[str] = None, **kw) -> dict:
        """``add_service(obj)`` or ``add_service(ns, name, host=..., ports=..., ...)``."""
        obj = obj_or_ns if isinstance(obj_or_ns, dict) else service_obj(obj_or_ns, name, **kw)
        return self._put(SERVICES, obj)

    update_service = add_service

    def get(self, kind: str, namespace: str, name: str) -> Optional[dict]:
        with self.cond:
            o = self.objects[kind].get((namespace, name))
            return copy.deepcopy(o) if o is not None else None

    def annotate(self, namespace: str, name: str, annotations: Dict[str, Optional[str]]) -> dict:
        """Sets (or with None removes) annotations of a Service."""
        with self.cond:
            obj = copy.deepcopy(self.objects[SERVICES][(namespace, name)])
            ann = obj["metadata"].setdefault("annotations", {})
            for k, v in annotations.items():
                if v is None:
                    ann.pop(k, None)
                else:
                    ann[k] = v
            return self._put(SERVICES, obj)

    def delete_service(self, namespace: str, name: str, with_slices: bool = True) -> None:
        with self.cond:
            self._delete(SERVICES, namespace, name)
            if with_slices:
                for (ns, n), o in list(self.objects[SLICES].items()):
                    if ns == namespace and o["metadata"].get("labels", {}).get(SERVICE_NAME_LABEL) == name:
                        self._delete(SLICES, ns, n)

    def add_slice(self, obj: dict) -> dict:
        return self._put(SLICES, obj)

    def delete_slice(self, namespace: str, name: str) -> None:
        self._delete(SLICES, namespace, name)

    def set_endpoints(self, namespace: str, service: str, endpoints: Optional[Iterable],
                      port: Optional[int], port_name: str = "http",
                      slice_name: Optional[str] = None, address_type: str = "IPv4") -> dict:
        """Creates or replaces the slice ``slice_name`` (default ``SERVICE-abcde``) of a
        Service. ``endpoints``: IP strings (ready), ``endpoint(...)`` dicts, dicts with
        ``ip`` and conditions, or tuples ``(ip, ready, serving, terminating)``."""
        name = slice_name or f"{service}-abcde"
        return self._put(SLICES, slice_obj(namespace, service, name, _norm_endpoints(endpoints),
                                           port, port_name, address_type))

    def set_conditions(self, namespace: str, slice_name: str, ip: str, **conditions) -> dict:
        """Changes the conditions (ready/serving/terminating) of one endpoint of a slice."""
        with self.cond:
            obj = copy.deepcopy(self.objects[SLICES][(namespace, slice_name)])
            for ep in obj.get("endpoints") or []:
                if ip in ep.get("addresses", []):
                    c = ep.setdefault("conditions", {})
                    for k, v in conditions.items():
                        if v is None:
                            c.pop(k, None)
                        else:
                            c[k] = v
                    break
            else:
                raise KeyError(f"{ip} not in slice {namespace}/{slice_name}")
            return self._put(SLICES, obj)

    @contextlib.contextmanager
    def batch(self):
        """Changes made inside reach every watch together (the lock is held)."""
        with self.cond:
            yield self

    def load_fixtures(self, directory: Path = FIXTURES) -> None:
        """Seeds the store from a ServiceList and an EndpointSliceList (their RVs kept,
        the global RV set to the larger list RV)."""
        with self.cond:
            top = self.rv
            for fname, kind in (("services-list.json", SERVICES),
                                ("endpointslices-list.json", SLICES)):
                data = json.loads((directory / fname).read_text())
                for item in data["items"]:
                    m = item["metadata"]
                    self.objects[kind][(m.get("namespace", "default"), m["name"])] = item
                top = max(top, int(data["metadata"]["resourceVersion"]))
            self.rv = top
            self.compacted_rv = top  # nothing older is known
            self.cond.notify_all()

    def clear(self) -> None:
        """Deletes every object (DELETED events for each)."""
        with self.cond:
            for kind in (SLICES, SERVICES):
                for ns, n in list(self.objects[kind]):
                    self._delete(kind, ns, n)

    def snapshot(self, kind: str, ns: Optional[str] = None) -> List[dict]:
        with self.cond:
            return [copy.deepcopy(o) for (n, _), o in sorted(self.objects[kind].items())
                    if ns is None or n == ns]

    # ---------------------------------------------------------------- faults
    def drop_watches(self, how: str = "eof", kind: Optional[str] = None) -> int:
        """Ends every open watch: ``eof`` (terminating chunk, keep-alive),
        ``fin`` (close inside the chunked stream), ``rst`` (reset)."""
        assert how in ("eof", "fin", "rst")
        n = 0
        with self.cond:
            for w in self.watches:
                if w.ended is None and (kind is None or w.kind == kind):
                    w.kill = how
                    n += 1
            self.cond.notify_all()
        return n

    def stall_watches(self, kind: Optional[str] = None, new_too: bool = False) -> int:
        """Open watches send nothing more (no events, no bookmarks) but stay open."""
        n = 0
        with self.cond:
            for w in self.watches:
                if w.ended is None and (kind is None or w.kind == kind):
                    w.stalled = True
                    n += 1
            self.stall_new = new_too
            self.cond.notify_all()
        return n

    def unstall(self) -> None:
        with self.cond:
            self.stall_new = False
            for w in self.watches:
                w.stalled = False
            self.cond.notify_all()

    def expire_history(self) -> int:
        """Compaction: a watch from any RV seen so far gets 410 (open watches go on);
        continue tokens expire too. Returns the new compaction RV."""
        with self.cond:
            self.compacted_rv = self._bump()   # as if an unrelated object changed
            self.history.clear()
            self.history_rvs.clear()
            self.continues.clear()
            self.cond.notify_all()
            return self.compacted_rv

    def gone_midstream(self) -> int:
        """Every open watch gets an in-stream ERROR 410 and ends; history is compacted."""
        with self.cond:
            rv = self.expire_history()
            n = 0
            for w in self.watches:
                if w.ended is None:
                    w.kill = "gone"
                    n += 1
            self.cond.notify_all()
            return n

    def stream_error(self, code: int = 500, reason: str = "InternalError") -> int:
        """Every open watch gets an in-stream ERROR with this code and ends cleanly."""
        n = 0
        with self.cond:
            for w in self.watches:
                if w.ended is None:
                    w.kill = f"error:{code}:{reason}"
                    n += 1
            self.cond.notify_all()
        return n

    def refuse(self, status: int = 500, count: int = 1, retry_after: Optional[int] = None,
               match: Optional[Callable[[dict], bool]] = None) -> None:
        """The next ``count`` API requests (matching ``match(request_record)``) get ``status``
        with a Status body (and ``Retry-After`` when given)."""
        with self.cond:
            self.refusals.append({"status": status, "count": count,
                                  "retry_after": retry_after, "match": match})

    def expire_continue_tokens(self) -> None:
        with self.cond:
            self.continues.clear()

    def set_token(self, token: Optional[str], *also: str) -> None:
        with self.cond:
            self.token = token
            self.accepted_tokens = set(also)

    # ---------------------------------------------------------------- observing
    def open_watches(self, kind: Optional[str] = None) -> List[Watch]:
        with self.cond:
            return [w for w in self.watches if w.ended is None and (kind is None or w.kind == kind)]

    def wait_watches(self, n: int = 2, timeout: float = 10.0, since_id: int = 0,
                     kind: Optional[str] = None) -> List[Watch]:
        """Waits until at least ``n`` watches with id > ``since_id`` are open."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                ws = [w for w in self.watches if w.ended is None and w.id > since_id
                      and not w.stalled and (kind is None or w.kind == kind)]
                if len(ws) >= n:
                    return ws
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"fake kube: {len(ws)} fresh watches open after {timeout}s, wanted {n}; "
                        f"watches: {self.watches[-6:]}; last requests: {self.requests[-6:]}")
                self.cond.wait(min(left, 0.2))

    def last_watch_id(self) -> int:
        with self.cond:
            return self.watches[-1].id if self.watches else 0

    def request_count(self) -> int:
        with self.cond:
            return len(self.requests)

    def wait_request(self, pred: Callable[[dict], bool], since: int = 0,
                     timeout: float = 10.0, what: str = "a request") -> dict:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for r in self.requests[since:]:
                    if pred(r):
                        return r
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"fake kube: no {what} within {timeout}s; "
                                         f"requests: {self.requests[since:][-10:]}")
                self.cond.wait(min(left, 0.2))

    def wait_written(self, rv: int, timeout: float = 10.0) -> float:
        """The monotonic time the event with this RV was written to a watch."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while rv not in self.event_written:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"event rv={rv} not written to any watch in {timeout}s")
                self.cond.wait(min(left, 0.2))
            return self.event_written[rv]

    # ---------------------------------------------------------------- serving helpers
    def _authorized(self, headers) -> bool:
        if self.token is None:
            return True
        auth = headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return False
        tok = auth[len("Bearer "):].strip()
        return tok == self.token or tok in self.accepted_tokens

    def _take_refusal(self, rec: dict) -> Optional[dict]:
        for r in self.refusals:
            if r["count"] > 0 and (r["match"] is None or r["match"](rec)):
                r["count"] -= 1
                return r
        return None

    def _list(self, kind: str, ns: Optional[str], q: dict) -> Tuple[int, dict]:
        limit = int(q.get("limit", "0") or 0)
        cont = q.get("continue")
        with self.cond:
            if cont:
                try:
                    tok = json.loads(base64.urlsafe_b64decode(cont.encode()))
                    key, offset = tok["k"], int(tok["o"])
                except (ValueError, KeyError, TypeError):
                    return 400, status_body(400, "BadRequest", "invalid continue token")
                if key not in self.continues:
                    return 410, status_body(
                        410, "Expired",
                        "The provided continue parameter is too old to display a consistent "
                        "list result. You can start a new list without the continue parameter.")
                _, list_rv, items = self.continues[key]
            else:
                items = [o for (n, _), o in sorted(self.objects[kind].items())
                         if (ns is None or n == ns)
                         and _label_match(o["metadata"].get("labels", {}), q.get("labelSelector"))
                         and _field_match(o, q.get("fieldSelector"))]
                items = [copy.deepcopy(o) for o in items]
                list_rv, offset, key = self.rv, 0, None
            page = items[offset:offset + limit] if limit > 0 else items[offset:]
            nxt = offset + len(page)
            meta = {"resourceVersion": str(list_rv)}
            if limit > 0 and nxt < len(items):
                if key is None:
                    key = uuid.uuid4().hex
                    self.continues[key] = (time.monotonic(), list_rv, items)
                meta["continue"] = base64.urlsafe_b64encode(
                    _dumps({"k": key, "o": nxt})).decode()
                meta["remainingItemCount"] = len(items) - nxt
            _, av, list_kind = KINDS[kind]
            return 200, {"kind": list_kind, "apiVersion": av, "metadata": meta, "items": page}

    def _bookmark_line(self, kind: str, rv: int, initial_end: bool = False) -> bytes:
        k, av, _ = KINDS[kind]
        meta: dict = {"resourceVersion": str(rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        obj = {"kind": k, "apiVersion": av, "metadata": meta}
        if kind == SLICES:
            obj.update({"addressType": "", "endpoints": None, "ports": None})
        elif kind == SERVICES:
            obj.update({"spec": {}, "status": {"loadBalancer": {}}})
        return _dumps({"type": "BOOKMARK", "object": obj}) + b"\n"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-kube-apiserver"
    sys_version = ""

    def log_message(self, fmt, *args):
        pass

    @property
    def fake(self) -> FakeKube:
        return self.server.fake

    # -------------------------------------------------------------- plumbing
    def _send_json(self, status: int, body: dict, extra: Optional[Dict[str, str]] = None,
                   allow_gzip: bool = False) -> None:
        data = _dumps(body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-cache, private")
        ae = self.headers.get("Accept-Encoding", "")
        if allow_gzip and self.fake.gzip_lists and len(data) >= GZIP_MIN and "gzip" in ae.lower():
            data = gzip.compress(data, 1)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Vary", "Accept-Encoding")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, reason: str, message: str, extra=None) -> None:
        self._send_json(code, status_body(code, reason, message), extra)

    def do_GET(self):
        fake = self.fake
        parts = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        path = parts.path.rstrip("/") or "/"
        kind, ns, name = self._route(path)
        watch = q.get("watch", "") in ("1", "true", "True")
        rec = {"method": "GET", "path": path, "target": self.path, "query": q,
               "headers": {k.lower(): v for k, v in self.headers.items()},
               "kind": kind, "namespace": ns, "watch": watch, "t": time.monotonic(),
               "status": None, "peer": self.client_address}
        for hook in list(fake.hooks):
            hook(rec)
        with fake.cond:
            fake.requests.append(rec)
            fake.cond.notify_all()
            authorized = fake._authorized(self.headers)
            refusal = fake._take_refusal(rec) if authorized and kind else None

        if not authorized:
            rec["status"] = 401
            self._status(401, "Unauthorized", "Unauthorized")
            return
        if refusal is not None:
            st = refusal["status"]
            rec["status"] = st
            extra = {"Retry-After": str(refusal["retry_after"])} if refusal["retry_after"] is not None else None
            reason = {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable",
                      403: "Forbidden"}.get(st, "InternalError")
            self._status(st, reason, f"injected failure {st}", extra)
            return
        if kind is None:
            body = self._discovery(path)
            if body is None:
                rec["status"] = 404
                self._status(404, "NotFound", f"the server could not find the requested resource")
            else:
                rec["status"] = 200
                self._send_json(200, body)
            return
        if name is not None:
            obj = fake.get(kind, ns, name)
            if obj is None:
                rec["status"] = 404
                self._status(404, "NotFound", f'{kind} "{name}" not found')
            else:
                k, av, _ = KINDS[kind]
                rec["status"] = 200
                self._send_json(200, {"kind": k, "apiVersion": av, **obj})
            return
        if watch:
            self._watch(rec, kind, ns, q)
            return
        st, body = fake._list(kind, ns, q)
        rec["status"] = st
        self._send_json(st, body, allow_gzip=(st == 200))

    @staticmethod
    def _route(path: str):
        segs = [s for s in path.split("/") if s]
        if segs[:2] == ["api", "v1"]:
            rest = segs[2:]
            kindname = SERVICES
            plural = "services"
        elif segs[:3] == ["apis", "discovery.k8s.io", "v1"]:
            rest = segs[3:]
            kindname = SLICES
            plural = "endpointslices"
        else:
            return None, None, None
        if rest == [plural]:
            return kindname, None, None
        if len(rest) in (3, 4) and rest[0] == "namespaces" and rest[2] == plural:
            return kindname, rest[1], (rest[3] if len(rest) == 4 else None)
        return None, None, None

    @staticmethod
    def _discovery(path: str) -> Optional[dict]:
        if path == "/version":
            return {"major": "1", "minor": "33", "gitVersion": "v1.33.0-fake",
                    "platform": "linux/amd64"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if path == "/apis":
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": "discovery.k8s.io", "versions": [{"groupVersion": "discovery.k8s.io/v1",
                                                           "version": "v1"}],
                 "preferredVersion": {"groupVersion": "discovery.k8s.io/v1", "version": "v1"}}]}
        if path == "/apis/discovery.k8s.io/v1":
            return {"kind": "APIResourceList", "apiVersion": "v1",
                    "groupVersion": "discovery.k8s.io/v1", "resources": [
                        {"name": "endpointslices", "singularName": "endpointslice",
                         "namespaced": True, "kind": "EndpointSlice",
                         "verbs": ["get", "list", "watch"]}]}
        if path == "/api/v1":
            return {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                {"name": "services", "singularName": "service", "namespaced": True,
                 "kind": "Service", "verbs": ["get", "list", "watch"]}]}
        return None

    # -------------------------------------------------------------- watch
    def _watch(self, rec: dict, kind: str, ns: Optional[str], q: dict) -> None:
        fake = self.fake
        rv_param = q.get("resourceVersion", "")
        bookmarks = q.get("allowWatchBookmarks", "") in ("1", "true", "True")
        initial_events = q.get("sendInitialEvents", "") in ("1", "true", "True")
        timeout = q.get("timeoutSeconds")
        timeout_s = float(timeout) if timeout else fake.watch_timeout_default
        lsel, fsel = q.get("labelSelector"), q.get("fieldSelector")

        def wanted(obj_ns, obj):
            return ((ns is None or obj_ns == ns)
                    and _label_match(obj["metadata"].get("labels", {}), lsel)
                    and _field_match(obj, fsel))

        gone_msg = None
        initial: List[bytes] = []
        with fake.cond:
            if rv_param not in ("", "0") and not initial_events:
                try:
                    start_rv = int(rv_param)
                except ValueError:
                    rec["status"] = 400
                    self._status(400, "BadRequest", f"invalid resourceVersion {rv_param!r}")
                    return
                if start_rv < fake.compacted_rv:
                    gone_msg = f"too old resource version: {start_rv} ({fake.compacted_rv})"
            else:
                start_rv = fake.rv
                k, av, _ = KINDS[kind]
                for (n, _), o in sorted(fake.objects[kind].items()):
                    if wanted(n, o):
                        initial.append(_dumps({"type": "ADDED",
                                               "object": {"kind": k, "apiVersion": av, **o}}) + b"\n")
                if initial_events:
                    initial.append(fake._bookmark_line(kind, start_rv, initial_end=True))
            if gone_msg and fake.gone_mode == "http":
                rec["status"] = 410
                self._status(410, "Expired", gone_msg)
                return
            w = Watch(kind, ns, q, self.client_address)
            w.stalled = fake.stall_new
            fake.watches.append(w)
            fake.cond.notify_all()
        rec["status"] = 200
        rec["watch_id"] = w.id
        rng = random.Random(fake.seed * 1000003 + w.id)
        sock = self.connection
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "no-cache, private")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            if gone_msg:
                line = _dumps({"type": "ERROR", "object": status_body(410, "Expired", gone_msg)}) + b"\n"
                self._emit(w, [line], rng, [])
                self._end(w, "gone")
                return
            if initial:
                self._emit(w, initial, rng, [])
            last_rv = start_rv
            deadline = time.monotonic() + timeout_s if timeout_s else None
            next_bm = time.monotonic() + fake.bookmark_interval
            while True:
                lines: List[bytes] = []
                rvs: List[int] = []
                with fake.cond:
                    while True:
                        now = time.monotonic()
                        if w.kill:
                            break
                        if deadline is not None and now >= deadline:
                            break
                        if not w.stalled:
                            if fake.history_rvs and fake.history_rvs[-1] > last_rv:
                                break
                            if bookmarks and now >= next_bm:
                                break
                        waits = [0.25]
                        if deadline is not None:
                            waits.append(deadline - now)
                        if bookmarks and not w.stalled:
                            waits.append(next_bm - now)
                        fake.cond.wait(max(0.001, min(waits)))
                    kill = w.kill
                    if kill is None and not (deadline is not None and time.monotonic() >= deadline):
                        i = bisect.bisect_right(fake.history_rvs, last_rv)
                        for e in fake.history[i:]:
                            if e.kind == kind and wanted(e.ns, e.obj):
                                lines.append(e.line)
                                rvs.append(e.rv)
                        last_rv = fake.rv
                        if bookmarks and time.monotonic() >= next_bm:
                            lines.append(fake._bookmark_line(kind, last_rv))
                            next_bm = time.monotonic() + fake.bookmark_interval
                            rvs.append(-1)
                if kill == "gone":
                    line = _dumps({"type": "ERROR", "object": status_body(
                        410, "Expired", f"too old resource version: {last_rv} ({fake.compacted_rv})")}) + b"\n"
                    self._emit(w, [line], rng, [])
                    self._end(w, "gone")
                    return
                if kill and kill.startswith("error:"):
                    _, code, reason = kill.split(":", 2)
                    line = _dumps({"type": "ERROR", "object": status_body(
                        int(code), reason, f"injected watch error {code}")}) + b"\n"
                    self._emit(w, [line], rng, [])
                    self._end(w, "eof")
                    return
                if kill:
                    self._end(w, kill)
                    return
                if not lines:
                    if deadline is not None and time.monotonic() >= deadline:
                        self._end(w, "timeout")
                        return
                    continue
                if fake.chunk_mode == "split" and fake.split_pause > 0:
                    time.sleep(0.01)  # gather: more events may follow and share chunks
                    with fake.cond:
                        i = bisect.bisect_right(fake.history_rvs, last_rv)
                        for e in fake.history[i:]:
                            if e.kind == kind and wanted(e.ns, e.obj):
                                lines.append(e.line)
                                rvs.append(e.rv)
                        last_rv = max(last_rv, fake.rv)
                self._emit(w, lines, rng, rvs)
        except (OSError, ssl.SSLError) as exc:
            with fake.cond:
                w.ended = w.ended or f"client gone: {type(exc).__name__}"
                fake.cond.notify_all()
            self.close_connection = True

    def _emit(self, w: Watch, lines: List[bytes], rng: random.Random, rvs: List[int]) -> None:
        fake = self.fake
        data = b"".join(lines)
        if fake.chunk_mode == "split":
            avg = max(1, len(data) // max(1, len(lines)))
            pos = 0
            pieces = []
            while pos < len(data):
                r = rng.random()        # tiny pieces, cuts inside an event, multi-event
                if r < 0.25:
                    n = rng.randint(1, 8)
                elif r < 0.7:
                    n = rng.randint(1, max(2, avg))
                else:
                    n = rng.randint(avg, max(avg + 1, 3 * avg))
                pieces.append(data[pos:pos + n])
                pos += n
        else:
            pieces = lines
        for i, p in enumerate(pieces):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(p), p))
            if fake.chunk_mode == "split" and fake.split_pause > 0 and i + 1 < len(pieces):
                time.sleep(fake.split_pause * rng.random() * 2)
        now = time.monotonic()
        with fake.cond:
            w.bytes_sent += len(data)
            w.events_sent += len(lines)
            for rv in rvs:
                if rv > 0 and rv not in fake.event_written:
                    fake.event_written[rv] = now
            fake.cond.notify_all()

    def _end(self, w: Watch, how: str) -> None:
        fake = self.fake
        with fake.cond:
            w.ended = how
            fake.cond.notify_all()
        if how in ("eof", "gone", "timeout"):
            self.wfile.write(b"0\r\n\r\n")
        elif how == "fin":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        elif how == "rst":
            self.close_connection = True
            raw = self.connection
            try:
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            try:
                # close the descriptor now (the handler's file objects still hold the socket
                # object, and its later shutdown() would send a FIN first)
                os.close(raw.detach())
            except OSError:
                pass


# --------------------------------------------------------------------------
# client configuration files

def write_kubeconfig(path: Path, fake: FakeKube, token: Optional[str] = None,
                     ca: Optional[Path] = None, namespace: Optional[str] = None,
                     ca_inline: bool = False, server: Optional[str] = None) -> Path:
    """A kubeconfig naming the fake server (``ca``: a CA file for https; ``ca_inline``:
    as certificate-authority-data)."""
    cluster = {"server": server or fake.url}
    if ca is not None:
        if ca_inline:
            cluster["certificate-authority-data"] = base64.b64encode(Path(ca).read_bytes()).decode()
        else:
            cluster["certificate-authority"] = str(ca)
    tok = token if token is not None else fake.token
    user = {"token": tok} if tok else {}
    ctx = {"cluster": "fake", "user": "sluice"}
    if namespace:
        ctx["namespace"] = namespace
    doc = {"apiVersion": "v1", "kind": "Config", "current-context": "fake",
           "clusters": [{"name": "fake", "cluster": cluster}],
           "users": [{"name": "sluice", "user": user}],
           "contexts": [{"name": "fake", "context": ctx}], "preferences": {}}
    # JSON is YAML: any kubeconfig parser reads it
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def write_service_account(directory: Path, token: str, ca: Path, namespace: str = "default") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "token").write_text(token)
    (directory / "ca.crt").write_bytes(Path(ca).read_bytes())
    (directory / "namespace").write_text(namespace)
    return directory


def rotate_token_file(directory: Path, token: str) -> None:
    """Replaces ``token`` atomically (the kubelet swaps a symlinked directory; a rename is
    the same for a reader)."""
    tmp = directory / ".token.tmp"
    tmp.write_text(token)
    os.replace(tmp, directory / "token")


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description="fake Kubernetes API server")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--token", default="fake-token")
    ap.add_argument("--fixtures", action="store_true", help="seed from the shared fixtures")
    ap.add_argument("--split", action="store_true", help="random chunk boundaries in watches")
    a = ap.parse_args()
    fk = FakeKube(token=a.token, port=a.port, chunk_mode="split" if a.split else "line")
    if a.fixtures:
        fk.load_fixtures()
    fk.start()
    print(f"fake kube API at {fk.url} (token {a.token!r})", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fk.stop()

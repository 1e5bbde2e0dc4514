#!/usr/bin/env python3
"""The Python side of idle-bench.sh (Python 3 standard library; /proc readers, wrk parsing and the
results file come from benchlib.py).

Subcommands:
  fds PID                       open file descriptors of PID and its descendants
  rss PID                       VmRSS (bytes) of PID and its descendants
  wait-fds PID N TIMEOUT        wait until fds(PID) >= N; exit 1 (printing the count) on timeout
  established PORT[,PORT...]    ESTABLISHED TCP sockets whose local port is one of PORTs
                                (the server side of the connections to those ports)
  unread PORT                   bytes queued unread in the kernel (rx_queue) on the
                                ESTABLISHED sockets whose local port is PORT
  accepts PORT                  nginx stub_status "accepts" of http://127.0.0.1:PORT/status
  sluice-counters LOG           the last SIGUSR1 counter line(s) of a sluice log, summed:
                                "http_requests pooled_reuses accepted"
  http-idle PORT HOST PATH N BATCH READY
                                open N keep-alive clients, BATCH at a time: each sends one GET,
                                reads the whole response and stays open, idle; then writes
                                READY ("ok BAD SECONDS"). SIGUSR1: count the clients the
                                proxy has not closed, into READY.alive. SIGTERM: close (RST)
  hello FILE SNI                write a real ClientHello (this Python's ssl, SNI SNI) to FILE
  tls-hold PORT N PREFIX_BYTES HELLO READY [BATCH]
                                open N connections that send the first PREFIX_BYTES of the
                                ClientHello in HELLO (0: nothing) and hold them; READY, SIGUSR1
                                and SIGTERM as for http-idle
  wrk RESULTS KEY WRK_OUT       record a wrk run: KEY.wrk_requests, KEY.wrk_errors
  smaps PID OUT                 copy /proc/PID/smaps (and of its descendants) to OUT
  smaps-diff BEFORE AFTER N     where the RSS growth is, by mapping, per connection
  report RESULTS                print the Markdown report
"""
import os
import re
import resource
import signal
import socket
import ssl
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib  # noqa: E402  (put, load, num, median, ratio, fmt, parse_wrk, proc_children)


# ---------------------------------------------------------------- /proc readers
def tree(pid):
    out, todo = [], [int(pid)]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(benchlib.proc_children(p))
    return out


def fds(pid):
    n = 0
    for p in tree(pid):
        try:
            n += len(os.listdir(f"/proc/{p}/fd"))
        except OSError:
            pass
    return n


def rss(pid):
    total = 0
    for p in tree(pid):
        try:
            total += benchlib.proc_rss(p)
        except (OSError, SystemExit):
            pass
    return total


def tcp_sockets():
    """(local_port, state, rx_queue) of every IPv4/IPv6 TCP socket."""
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    lport = int(parts[1].rsplit(":", 1)[1], 16)
                    rxq = int(parts[4].split(":")[1], 16)
                    yield lport, parts[3], rxq
        except OSError:
            pass


def established(ports):
    want = {int(p) for p in ports.split(",")}
    return sum(1 for lp, st, _ in tcp_sockets() if st == "01" and lp in want)


def unread(port):
    port = int(port)
    return sum(rx for lp, st, rx in tcp_sockets() if st == "01" and lp == port)


def accepts(port):
    with socket.create_connection(("127.0.0.1", int(port)), timeout=5) as s:
        s.sendall(b"GET /status HTTP/1.1\r\nHost: status\r\nConnection: close\r\n\r\n")
        data = bytearray()
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
    # "server accepts handled requests\n 12 12 34"
    m = re.search(rb"accepts handled requests\s+(\d+)\s+(\d+)\s+(\d+)", bytes(data))
    if not m:
        sys.exit(f"no stub_status in {bytes(data)[:200]!r}")
    return int(m.group(1))


def sluice_counters(log):
    """Sum over loops of the last SIGUSR1 report in LOG (one line per loop)."""
    with open(log, errors="replace") as f:
        lines = [ln for ln in f if "pooled_reuses=" in ln]
    if not lines:
        return None
    # the last report: the trailing lines up to one per distinct loop name
    last, seen = [], set()
    for ln in reversed(lines):
        m = re.search(r"loop[= ]?(\d+)", ln)
        tag = m.group(1) if m else ln
        if tag in seen:
            break
        seen.add(tag)
        last.append(ln)
    tot = {"http_requests": 0, "pooled_reuses": 0, "accepted": 0}
    for ln in last:
        for k in tot:
            m = re.search(rf"\b{k}=(\d+)", ln)
            if m:
                tot[k] += int(m.group(1))
    return tot


# ---------------------------------------------------------------- clients
def _hold(socks, ready, stop):
    """Holds SOCKS until SIGTERM; on SIGUSR1 writes READY.alive = sockets not closed by the peer."""
    check = []
    signal.signal(signal.SIGUSR1, lambda *_: check.append(1))
    for s in socks:
        s.setblocking(False)  # a socket with a timeout would wait in recv() below
    while not stop:
        if check:
            check.clear()
            alive = 0
            for s in socks:
                try:
                    alive += 0 if s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"" else 1
                except BlockingIOError:
                    alive += 1
                except OSError:
                    pass
            benchlib.write_count(ready + ".alive", alive)
        time.sleep(0.1)
    linger = struct.pack("ii", 1, 0)  # close with RST: no TIME_WAIT left behind
    for s in socks:
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        except OSError:
            pass
        s.close()


def _read_response(s, buf):
    """Reads one HTTP/1.1 response (Content-Length framed) from blocking socket S;
    returns (status, keep_alive)."""
    while b"\r\n\r\n" not in buf:
        b = s.recv(65536)
        if not b:
            raise ConnectionError("EOF before the response head")
        buf += b
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length, close = 0, False
    for ln in lines[1:]:
        k, _, v = ln.partition(b":")
        k = k.strip().lower()
        if k == b"content-length":
            length = int(v.strip())
        elif k == b"connection" and v.strip().lower() == b"close":
            close = True
    while len(rest) < length:
        b = s.recv(65536)
        if not b:
            raise ConnectionError("EOF in the response body")
        rest += b
    return status, not close


def http_idle(port, host, path, n, batch, ready):
    benchlib.raise_nofile()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    req = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: idle-bench\r\n\r\n".encode()
    socks, bad = [], 0
    t0 = time.monotonic()
    while len(socks) + bad < n and not stop:
        group = []
        for _ in range(min(batch, n - len(socks) - bad)):
            s = socket.socket()
            s.settimeout(30)
            s.connect(("127.0.0.1", port))
            s.sendall(req)
            group.append(s)
        for s in group:
            try:
                st, ka = _read_response(s, bytearray())
                if st == 200 and ka:
                    socks.append(s)
                    continue
            except (OSError, ValueError, ConnectionError, IndexError):
                pass
            bad += 1
            s.close()
    with open(ready, "w") as f:
        f.write(f"{len(socks)} {bad} {time.monotonic() - t0:.2f}\n")
    _hold(socks, ready, stop)


def hello(path, sni):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_side=False, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    data = out.read()
    if len(data) < 200 or data[0] != 0x16 or data[5] != 0x01:
        sys.exit(f"unexpected ClientHello ({len(data)} bytes, {data[:6].hex()})")
    with open(path, "wb") as f:
        f.write(data)
    print(len(data))


def tls_hold(port, n, prefix, hello_file, ready, batch):
    benchlib.raise_nofile()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    first = b""
    if prefix:
        with open(hello_file, "rb") as f:
            first = f.read()[:prefix]
    socks, bad = [], 0
    t0 = time.monotonic()
    while len(socks) + bad < n and not stop:
        for _ in range(min(batch, n - len(socks) - bad)):
            s = socket.socket()
            s.settimeout(30)
            try:
                s.connect(("127.0.0.1", port))
                if first:
                    s.sendall(first)
                socks.append(s)
            except OSError:
                bad += 1
                s.close()
        time.sleep(0.001)  # let the proxy accept; its backlog is what it is
    with open(ready, "w") as f:
        f.write(f"{len(socks)} {bad} {time.monotonic() - t0:.2f}\n")
    _hold(socks, ready, stop)


# ---------------------------------------------------------------- smaps
def smaps_copy(pid, out):
    with open(out, "w") as o:
        for p in tree(pid):
            try:
                with open(f"/proc/{p}/smaps") as f:
                    o.write(f"# pid {p}\n")
                    o.write(f.read())
            except OSError:
                pass


def smaps_parse(path):
    """{mapping name: Rss KiB}, anonymous mappings named "[anon]"."""
    out, name = {}, None
    hdr = re.compile(r"^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$")
    with open(path) as f:
        for ln in f:
            m = hdr.match(ln)
            if m:
                name = m.group(1).strip() or "[anon]"
                continue
            if ln.startswith("Rss:") and name is not None:
                out[name] = out.get(name, 0) + int(ln.split()[1])
    return out


def smaps_diff(before, after, n):
    a, b = smaps_parse(before), smaps_parse(after)
    rows = sorted(((b.get(k, 0) - a.get(k, 0), k) for k in set(a) | set(b)), reverse=True)
    parts = [f"{os.path.basename(k) if k.startswith('/') else k} +{d} KiB ({d * 1024 / n:.0f} B/conn)"
             for d, k in rows if d > 0][:4]
    print("; ".join(parts) or "no mapping grew")


# ---------------------------------------------------------------- report
MODES = [("sluice", "Sluice"), ("haproxy", "HAProxy"), ("nginx", "nginx")]
TLS_LOADS = [("tls-none", "nothing sent"), ("tls-hello", "first 100 B of a ClientHello")]


def rounds(r, mode):
    return benchlib.rounds_of(r, mode)


def derived(r, k):
    num = benchlib.num
    out = {}
    n = num(r, f"{k}.http.clients")
    b, a = num(r, f"{k}.http.fds_before"), num(r, f"{k}.http.fds_after")
    if n and b is not None and a is not None:
        out["fds_per_client"] = (a - b) / n
        out["fds_extra"] = a - b - n
        out["upstream_idle"] = num(r, f"{k}.http.upstream_idle")
        out["clients_alive"] = num(r, f"{k}.http.clients_alive")
    req, acc = num(r, f"{k}.http.wrk_requests"), num(r, f"{k}.http.wrk_accepts")
    if req is not None and acc is not None:
        out["wrk_requests"] = req
        out["wrk_accepts"] = acc
        out["reuse"] = req / acc if acc else None
        out["reuse_all"] = 1.0 if not acc else None  # marker: every request on a pooled upstream
        out["upstream_after_wrk"] = num(r, f"{k}.http.upstream_after_wrk")
        out["wrk_errors"] = num(r, f"{k}.http.wrk_errors")
    sr, sp = num(r, f"{k}.http.sluice_requests"), num(r, f"{k}.http.sluice_reuses")
    if sr:
        out["sluice_reuse_pct"] = 100.0 * sp / sr
    for ld, _ in TLS_LOADS:
        c = num(r, f"{k}.{ld}.conns")
        b, a = num(r, f"{k}.{ld}.rss_before"), num(r, f"{k}.{ld}.rss_after")
        if c and b is not None and a is not None:
            out[f"{ld}_per_conn"] = (a - b) / c
            out[f"{ld}_before"] = b / 1024
            out[f"{ld}_after"] = a / 1024
            out[f"{ld}_upstream"] = num(r, f"{k}.{ld}.upstream")
            out[f"{ld}_unread"] = num(r, f"{k}.{ld}.unread")
            out[f"{ld}_alive"] = num(r, f"{k}.{ld}.alive")
            out[f"{ld}_conns"] = c
    return out


def report(results):
    r = benchlib.load(results)
    med = benchlib.median
    meta = lambda k: r.get(f"meta.{k}", "?")  # noqa: E731
    per = {m: [derived(r, f"{m}@{n}") for n in rounds(r, m)] for m, _ in MODES}
    mid = {}
    for m, v in per.items():
        keys = {k for d in v for k in d}
        mid[m] = {k: med([d.get(k) for d in v]) for k in keys}
    n_idle = meta("idle_clients")
    n_tls = meta("tls_conns")
    # key, label, format, better, goal text, goal test
    rows = [
        ("fds_per_client", f"fds per idle keep-alive client ({n_idle} clients, after {meta('idle_wait')} s)",
         "{:.3f}", "down", "≈ 1.0", lambda v: v <= 1.05),
        ("fds_extra", "  fds beyond one per client", "{:.0f}", "down", "", None),
        ("upstream_idle", "upstream connections held by the idle clients (ESTABLISHED at the origins)",
         "{:.0f}", "", "", None),
        ("clients_alive", "  idle clients still open when counted", "{:.0f}", "up", "", None),
        ("wrk_requests", f"wrk keep-alive load: requests ({meta('wrk')})", "{:.0f}", "up", "", None),
        ("wrk_accepts", "  upstream connections opened during the load (origin accepts)", "{:.0f}",
         "down", "", None),
        ("reuse", "  upstream reuse: requests per upstream connection opened", "{:.0f}", "up", "", None),
        ("upstream_after_wrk", "  upstream connections at the end of the load", "{:.0f}", "", "", None),
        ("wrk_errors", "  wrk socket errors + non-2xx", "{:.0f}", "down", "", None),
        ("sluice_reuse_pct", "  Sluice's own counters: pooled_reuses / http_requests (%)", "{:.1f}", "up",
         "", None),
    ]
    for ld, lab in TLS_LOADS:
        rows += [
            (f"{ld}_per_conn", f"RSS bytes per half-open TLS connection, {lab} ({n_tls} conns)", "{:.0f}",
             "down", "≤ 2048", lambda v: v <= 2048),
            (f"{ld}_before", "  RSS before (KiB)", "{:.0f}", "down", "", None),
            (f"{ld}_after", "  RSS with the connections (KiB)", "{:.0f}", "down", "", None),
            (f"{ld}_alive", "  connections held (still open when measured)", "{:.0f}", "up", "", None),
            (f"{ld}_unread", "  bytes left unread in the proxy's socket buffers (all conns)", "{:.0f}", "down",
             "", None),
            (f"{ld}_upstream", "  upstream connections opened (must be 0)", "{:.0f}", "down", "", None),
        ]
    L = [f"# Sluice idle benchmark — {meta('date')}", ""]
    L.append(
        f"Loopback. Each proxy alone, one worker/thread, pinned to CPU {meta('proxy_cpu')}; clients, "
        f"wrk and the nginx origin on CPU {meta('load_cpu')}. HTTP: one listener routing "
        f"Host {meta('host')} to two origin ports (round robin); Sluice upstreamIdlePerEndpoint "
        f"{meta('keepalive')} (per endpoint), HAProxy `http-reuse safe` (its default), nginx "
        f"`keepalive {meta('nginx_keepalive')}` (per upstream block). TLS: SNI passthrough to the "
        f"origin's TLS port; Sluice `tlsHello: {meta('tls_hello')}`, HAProxy `tcp-request "
        f"inspect-delay {meta('tls_hello')}`, nginx `preread_timeout {meta('tls_hello')}`. "
        f"{meta('rounds')} interleaved round(s), medians; each figure from a fresh proxy process.")
    L.append("")
    L.append("| figure | Sluice | HAProxy | nginx | Sluice / HAProxy | Sluice / nginx | goal (Sluice) | better |")
    L.append("|" + " --- |" * 8)
    for key, label, f, better, goal, test in rows:
        vals = [mid[m].get(key) for m, _ in MODES]
        if key == "reuse":
            cells = []
            for m, _ in MODES:
                d = mid[m]
                if d.get("wrk_accepts") == 0:
                    cells.append("all pooled (0 opened)")
                else:
                    cells.append(benchlib.fmt(d.get("reuse"), f))
        else:
            cells = [benchlib.fmt(v, f) for v in vals]
        if all(v is None for v in vals) and key != "reuse":
            continue
        s, h, n = vals
        noratio = key in ("clients_alive", "wrk_errors", "sluice_reuse_pct", "wrk_requests", "reuse") or key.endswith(
            ("_alive", "_upstream", "_unread"))
        rs = ["—", "—"] if noratio else [benchlib.ratio(s, h), benchlib.ratio(s, n)]
        g = ""
        if goal:
            g = f"{goal} — " + ("not measured" if s is None else ("met" if test(s) else "missed"))
        L.append(f"| {label} | " + " | ".join(cells) + f" | {rs[0]} | {rs[1]} | {g} | "
                 f"{ {'down': 'lower', 'up': 'higher'}.get(better, '') } |")
    L.append("")
    notes = []
    for m, name in MODES:
        for n in rounds(r, m):
            k = f"{m}@{n}"
            for kk, v in sorted(r.items()):
                if kk.startswith(k + ".") and (kk.endswith(".status") or kk.endswith(".error")) and v != "ok":
                    notes.append(f"- {name} round {n}: {kk[len(k) + 1:]}: {v}")
                if kk.startswith(k + ".") and kk.endswith(".smaps"):
                    notes.append(f"- {name} round {n}, {kk[len(k) + 1:-6]}: RSS growth by mapping: {v}")
                if kk.startswith(k + ".") and kk.endswith(".check") and not v.startswith("ok"):
                    notes.append(f"- {name} round {n}: {kk[len(k) + 1:]}: {v}")
            nc, nw = benchlib.num(r, f"{k}.noise.cpu"), benchlib.num(r, f"{k}.noise.wall")
            if nc is not None and nw and 100 * nc / nw >= benchlib.NOISE_WARN_PCT:
                notes.append(f"- NOISY: {name} round {n}: other processes used {100 * nc / nw:.0f} % of a CPU")
    if any(n.startswith("- NOISY") for n in notes):
        notes.append(f"- busiest other processes over the run (CPU s): {meta('noise_top')}; the counts "
                     "(fds, connections, RSS) do not depend on CPU, wrk's request count does")
    if meta("haproxy_tls_conns") not in ("?", n_tls) and any(
            k.startswith("haproxy@") and ".tls-" in k and k.endswith(".conns") for k in r):
        notes.append(
            f"- HAProxy holds {meta('haproxy_tls_conns')} half-open connections, not {n_tls}: it reserves two "
            f"file descriptors per connection (maxsock = 2 × maxconn + a few) and will not start when that "
            f"exceeds the open-files limit ({meta('nofile')}); its figures are per connection all the same")
    if meta("haproxy_global") not in ("?", ""):
        notes.append(f"- HAProxy global section extras: `{meta('haproxy_global')}`")
    if notes:
        L.append("Notes:")
        L.extend(notes)
        L.append("")
    if any(len(rounds(r, m)) > 1 for m, _ in MODES):
        L.append("Per round (round 1 / round 2 / …):")
        L.append("")
        L.append("| figure | Sluice | HAProxy | nginx |")
        L.append("| --- | --- | --- | --- |")
        for key, label, f, _, _, _ in rows:
            cs = []
            for m, _ in MODES:
                vals = [d.get(key) for d in per[m]]
                if key == "reuse":
                    vals = ["all pooled" if d.get("wrk_accepts") == 0 else d.get(key) for d in per[m]]
                cs.append(" / ".join(v if isinstance(v, str) else benchlib.fmt(v, f) for v in vals)
                          if any(v is not None for v in vals) else "—")
            if all(c == "—" for c in cs):
                continue
            L.append(f"| {label.strip()} | " + " | ".join(cs) + " |")
        L.append("")
    L.append("Versions: " + "; ".join(f"{k}: {meta(k)}" for k in
                                         ("sluice", "haproxy", "nginx", "wrk", "python", "kernel")))
    L.append("")
    L.append(
        "fds: entries of /proc/PID/fd of the proxy and its children (nginx: master + worker) with the "
        "idle clients, minus the same before them. RSS: VmRSS of the same processes; it is user-space "
        "memory only (the kernel's socket buffers are not in it). Upstream connections: ESTABLISHED "
        "sockets on the origin ports (/proc/net/tcp); opened during the load: the origin nginx's "
        "stub_status `accepts` before and after, less the status request itself.")
    return "\n".join(L)


def main():
    a = sys.argv[1:]
    if not a:
        sys.exit(__doc__)
    cmd = a[0]
    if cmd == "fds":
        print(fds(a[1]))
    elif cmd == "rss":
        print(rss(a[1]))
    elif cmd == "wait-fds":
        deadline = time.monotonic() + float(a[3])
        while fds(a[1]) < int(a[2]):
            if time.monotonic() > deadline:
                print(fds(a[1]))
                sys.exit(1)
            time.sleep(0.1)
        print(fds(a[1]))
    elif cmd == "established":
        print(established(a[1]))
    elif cmd == "unread":
        print(unread(a[1]))
    elif cmd == "accepts":
        print(accepts(a[1]))
    elif cmd == "sluice-counters":
        c = sluice_counters(a[1])
        print("" if c is None else f"{c['http_requests']} {c['pooled_reuses']} {c['accepted']}")
    elif cmd == "http-idle":
        http_idle(int(a[1]), a[2], a[3], int(a[4]), int(a[5]), a[6])
    elif cmd == "hello":
        hello(a[1], a[2])
    elif cmd == "tls-hold":
        tls_hold(int(a[1]), int(a[2]), int(a[3]), a[4], a[5], int(a[6]) if len(a) > 6 else 200)
    elif cmd == "wrk":
        with open(a[3]) as f:
            w = benchlib.parse_wrk(f.read())
        if w is None:
            sys.exit(1)
        benchlib.put(a[1], f"{a[2]}.wrk_requests", w["requests"])
        benchlib.put(a[1], f"{a[2]}.wrk_errors", w["sock_errors"] + w["non2xx"])
    elif cmd == "smaps":
        smaps_copy(a[1], a[2])
    elif cmd == "smaps-diff":
        smaps_diff(a[1], a[2], int(a[3]))
    elif cmd == "report":
        print(report(a[1]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Helpers for tls-bench.sh (Python 3 standard library; CPU readings and the noise monitor
come from benchlib.py).

Subcommands:
  certs DIR KIND                write ca.pem, bench.pem/bench.key (CN and SAN localhost,
                                KIND ec = ECDSA P-256, rsa = RSA 2048) and haproxy.pem
  check PORT SNI PATH SIZE CA FINGERPRINT_FILE [http]
                                one request through the proxy on PORT (TLS verified against
                                CA, name SNI): prints "ok ..." or the problem; FINGERPRINT_FILE
                                gets the SHA-256 of the certificate presented ("http": the
                                request is HTTP over TLS; otherwise too, TLS is end to end)
  wrk RESULTS KEY WRK_OUT CPU_BEFORE CPU_AFTER SIZE
                                record a wrk run (requests, rate, bytes, errors, proxy CPU)
  hs RESULTS KEY CLIENT_OUT CPU_BEFORE CPU_AFTER
                                record a run of the handshake client
  tls-probe PORT CERT KEY       accept one TLS connection (ALPN http/1.1 offered), print
                                its protocol version and ALPN, answer 200, exit
  pids PID                      PID and its descendants, comma-separated (for perf -p)
  sys RESULTS KEY PERF_OUT      record `perf stat -x,` system call counts (the total from
                                raw_syscalls:sys_enter if counted, else the sum of
                                syscalls:sys_enter_*; the eight most frequent by name)
  report RESULTS                print the Markdown report
"""
import hashlib
import os
import re
import socket
import ssl
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib  # noqa: E402  (put, load, num, median, parse_cpu, parse_wrk, rounds_of)

MODES = [("sluice", "Sluice"), ("haproxy", "HAProxy"), ("nginx", "nginx")]
LOADS = [
    # key, label, unit, goal ratio (Sluice CPU / better peer), goal text
    ("term-ka", "termination: keep-alive requests", "req", 0.8),
    ("term-hs", "termination: full handshakes (new connection per request, no resumption)", "conn", 0.9),
    ("term-bulk", "termination: bulk (1 MiB responses, keep-alive)", "GB", None),
    ("pass-ka", "passthrough: keep-alive requests", "req", 0.8),
    ("pass-hs", "passthrough: new connection per request (handshake with the backend)", "conn", 0.8),
    ("pass-bulk", "passthrough: bulk (1 MiB responses, keep-alive)", "GB", None),
]


# ---------------------------------------------------------------- certificates
def openssl(*args, cwd):
    p = subprocess.run(["openssl", *args], cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    if p.returncode:
        sys.exit(f"openssl {' '.join(args)}: {p.stderr.decode(errors='replace')}")


def make_certs(d, kind):
    os.makedirs(d, exist_ok=True)
    newkey = (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"] if kind == "ec"
              else ["-newkey", "rsa:2048"])
    openssl("req", "-x509", *newkey, "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "7", "-subj", "/CN=Sluice Bench CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign", cwd=d)
    with open(os.path.join(d, "bench.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n"
                "extendedKeyUsage=serverAuth\n")
    openssl("req", "-new", *newkey, "-nodes", "-keyout", "bench.key", "-out", "bench.csr",
            "-subj", "/CN=localhost", cwd=d)
    openssl("x509", "-req", "-in", "bench.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "bench.pem", "-days", "7", "-extfile", "bench.ext", cwd=d)
    with open(os.path.join(d, "haproxy.pem"), "w") as f:
        for n in ("bench.pem", "bench.key"):
            with open(os.path.join(d, n)) as g:
                f.write(g.read())


# ---------------------------------------------------------------- routing check
def check(port, sni, path, size, ca, fp_file, http):
    ctx = ssl.create_default_context(cafile=ca)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=sni) as s:
                der = s.getpeercert(binary_form=True)
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n"
                          .encode())
                data = bytearray()
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                version = s.version()
    except (OSError, ssl.SSLError) as e:
        print(f"FAIL: {type(e).__name__}: {e}")
        return
    fp = hashlib.sha256(der).hexdigest()
    with open(fp_file, "w") as f:
        f.write(fp + "\n")
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].decode(errors="replace")
    if not status.startswith("HTTP/1.1 200") or len(body) != size:
        print(f"FAIL: {status!r}, body {len(body)} bytes (want {size})")
        return
    print(f"ok {version} cert sha256 {fp[:16]} {status}")


# ---------------------------------------------------------------- recorders
def record_wrk(results, key, wrk_out, before, after, size):
    put = benchlib.put
    with open(wrk_out) as f:
        w = benchlib.parse_wrk(f.read())
    if w is None:
        put(results, f"{key}.error", f"cannot parse wrk output ({wrk_out})")
        print(f"cannot parse {wrk_out}")
        return
    u0, s0 = benchlib.parse_cpu(before)
    u1, s1 = benchlib.parse_cpu(after)
    put(results, f"{key}.units", w["requests"])
    put(results, f"{key}.rate", w["rps"])
    put(results, f"{key}.bytes", w["requests"] * int(size))
    put(results, f"{key}.errors", w["sock_errors"] + w["non2xx"])
    put(results, f"{key}.cpu_user", f"{u1 - u0:.2f}")
    put(results, f"{key}.cpu_sys", f"{s1 - s0:.2f}")
    print(f"{w['rps']:.0f} req/s, CPU {u1 - u0:.2f}+{s1 - s0:.2f} s for {w['requests']} req, "
          f"errors {w['sock_errors']} non-2xx {w['non2xx']}")


def record_hs(results, key, out_file, before, after):
    put = benchlib.put
    with open(out_file) as f:
        text = f.read()
    m = re.search(r"connections=(\d+) errors=(\d+) resumed=(\d+) bytes=(\d+) seconds=([\d.]+)"
                  r" version=(\S+)", text)
    if not m:
        put(results, f"{key}.error", f"cannot parse the client's output ({out_file})")
        print(f"cannot parse {out_file}: {text[-300:]}")
        return
    n, errs, resumed, nbytes, secs, version = m.groups()
    u0, s0 = benchlib.parse_cpu(before)
    u1, s1 = benchlib.parse_cpu(after)
    put(results, f"{key}.units", n)
    put(results, f"{key}.rate", f"{int(n) / float(secs):.1f}")
    put(results, f"{key}.bytes", nbytes)
    put(results, f"{key}.errors", errs)
    put(results, f"{key}.resumed", resumed)
    put(results, f"{key}.tls", version)
    put(results, f"{key}.cpu_user", f"{u1 - u0:.2f}")
    put(results, f"{key}.cpu_sys", f"{s1 - s0:.2f}")
    print(f"{int(n) / float(secs):.0f} conn/s ({version}), CPU {u1 - u0:.2f}+{s1 - s0:.2f} s for "
          f"{n} connections, errors {errs}, resumed {resumed}")


# ---------------------------------------------------------------- report
def derived(r, key, unit):
    num = benchlib.num
    n, u, s = num(r, f"{key}.units"), num(r, f"{key}.cpu_user"), num(r, f"{key}.cpu_sys")
    if not n or u is None or s is None or u < 0 or s < 0 or r.get(f"{key}.error"):
        return {}
    out = {"rate": num(r, f"{key}.rate"), "errors": num(r, f"{key}.errors")}
    if unit == "GB":
        gb = num(r, f"{key}.bytes") / 1e9
        secs = n / out["rate"] if out["rate"] else None
        out["gbps"] = gb / secs if secs else None
        out["cpu"], out["cpu_user"], out["cpu_sys"] = (u + s) / gb, u / gb, s / gb
    else:
        out["cpu"], out["cpu_user"], out["cpu_sys"] = ((u + s) / n * 1e6, u / n * 1e6,
                                                       s / n * 1e6)
    return out


def rounds(r, mode):
    return sorted({int(k.split("@", 1)[1].split(".", 1)[0]) for k in r
                   if k.startswith(mode + "@") and k.split("@", 1)[1].split(".", 1)[0].isdigit()})


QUIET = 10.0


noise_pct = benchlib.noise_pct


def table(L, mid):
    """Appends the summary table for medians ``mid``; returns the goal verdict lines."""
    L.append("| load | CPU per unit: Sluice | HAProxy | nginx | Sluice / better peer | goal "
             "| rate: Sluice / HAProxy / nginx | errors S / H / N |")
    L.append("|" + " --- |" * 8)

    def cell(m, ld, unit):
        d = mid[(m, ld)]
        if d.get("cpu") is None:
            return "—"
        if unit == "GB":
            return f"{d['cpu']:.3f} s/GB ({d['cpu_user']:.3f} + {d['cpu_sys']:.3f})"
        return f"{d['cpu']:.1f} µs/{unit} ({d['cpu_user']:.1f} + {d['cpu_sys']:.1f})"

    def rate(m, ld, unit):
        d = mid[(m, ld)]
        if unit == "GB":
            return "—" if d.get("gbps") is None else f"{d['gbps']:.2f} GB/s"
        return "—" if d.get("rate") is None else f"{d['rate']:.0f}/s"

    verdicts = []
    for ld, label, unit, goal in LOADS:
        s = mid[("sluice", ld)].get("cpu")
        peers = [mid[(m, ld)].get("cpu") for m in ("haproxy", "nginx")]
        peers = [p for p in peers if p]
        best = min(peers) if peers else None
        ratio = s / best if s and best else None
        rtxt = "—" if ratio is None else f"**{ratio:.2f}**"
        if goal is None:
            gtxt = ""
        elif ratio is None:
            gtxt = f"≤ {goal} — not measured"
        else:
            gtxt = f"≤ {goal} — {'met' if ratio <= goal else 'missed'}"
        if goal is not None:
            verdicts.append(f"- {label}: " + (gtxt if ratio is not None else "not measured"))
        errs = " / ".join("—" if mid[(m, ld)].get("errors") is None else
                          f"{mid[(m, ld)]['errors']:.0f}" for m, _ in MODES)
        L.append(f"| {label} | " + " | ".join(cell(m, ld, unit) for m, _ in MODES) +
                 f" | {rtxt} | {gtxt} | " + " / ".join(rate(m, ld, unit) for m, _ in MODES) +
                 f" | {errs} |")
    return verdicts


def report(results):
    r = benchlib.load(results)
    med = benchlib.median
    meta = lambda k: r.get(f"meta.{k}", "?")  # noqa: E731
    per = {}
    for m, _ in MODES:
        for ld, _, unit, _ in LOADS:
            per[(m, ld)] = [derived(r, f"{m}@{n}.{ld}", unit) for n in rounds(r, m)]
    mid = {k: {f: med([d.get(f) for d in v]) for f in ("cpu", "cpu_user", "cpu_sys", "rate",
                                                         "gbps", "errors")}
           for k, v in per.items()}
    L = [f"# Sluice TLS benchmark — {meta('date')}", ""]
    L.append(
        f"Loopback. Each proxy pinned to CPU {meta('proxy_cpu')}, one worker/thread; wrk, the "
        f"handshake client and the nginx origin on CPU {meta('load_cpu')}. Certificate: "
        f"{meta('cert')}. Keep-alive: wrk -t1 -c{meta('ka_conns')} on a {meta('small')} B file "
        f"({meta('wrk_tls')}); handshakes: the script's C client (OpenSSL, a new SSL object and "
        f"no session offered on every connection, {meta('hs_conns')} concurrent, "
        f"`Connection: close`); bulk: wrk -t1 -c{meta('bulk_conns')} on a 1 MiB file. "
        f"{meta('secs')} s per load after {meta('warmup')} s warm-up; {meta('rounds')} "
        f"interleaved round(s), medians. CPU = utime+stime of the proxy's processes "
        f"(/proc/PID/stat deltas).")
    L.append("")
    verdicts = table(L, mid)
    quiet = {}
    for (m, ld), v in per.items():
        ok = [d for n, d in zip(rounds(r, m), v) if noise_pct(r, f"{m}@{n}") is not None
              and noise_pct(r, f"{m}@{n}") <= QUIET]
        quiet[(m, ld)] = {f: med([d.get(f) for d in ok]) for f in
                          ("cpu", "cpu_user", "cpu_sys", "rate", "gbps", "errors")}
    nq = {m: sum(1 for n in rounds(r, m) if (noise_pct(r, f"{m}@{n}") or 100) <= QUIET)
          for m, _ in MODES}
    L.append("")
    L.append(f"Quiet rounds only (other processes ≤ {QUIET:.0f} % of a CPU during that proxy's "
             f"turn; rounds: " + ", ".join(f"{name} {nq[m]}" for m, name in MODES) + "):")
    L.append("")
    table(L, quiet)
    L.append("")
    L.append("Goals (Sluice CPU / better peer, medians over all rounds):")
    L.extend(verdicts)
    L.append("")
    L.append("Per round (CPU per unit; rate):")
    L.append("")
    for ld, label, unit, _ in LOADS:
        parts = []
        for m, name in MODES:
            vals = []
            for d in per[(m, ld)]:
                if d.get("cpu") is None:
                    vals.append("—")
                elif unit == "GB":
                    vals.append(f"{d['cpu']:.3f} s/GB @ {d.get('gbps') or 0:.2f} GB/s")
                else:
                    vals.append(f"{d['cpu']:.1f} µs @ {d['rate']:.0f}/s")
            parts.append(f"{name}: " + ", ".join(vals))
        L.append(f"- {ld}: " + "; ".join(parts))
    L.append("")
    notes = []
    for m, _ in MODES:
        for n in rounds(r, m):
            notes += benchlib.round_notes(r, m, n, [ld for ld, _, _, _ in LOADS],
                                          ("check_term", "check_pass", "term"))
        for ld in ("term-hs", "pass-hs"):
            res = [r.get(f"{m}@{n}.{ld}.resumed") for n in rounds(r, m)]
            if any(x not in (None, "0") for x in res):
                notes.append(f"- {m} {ld}: resumed handshakes {res} (expected 0)")
    if any(k.endswith(".sys.total") for k in r):
        L.append("System calls per unit (one more round per proxy under `perf stat -e "
                 "raw_syscalls:sys_enter,syscalls:sys_enter_<name>...`, not used for the CPU figures): total, then the most "
                 "frequent")
        L.append("")
        L.append("| load | Sluice | HAProxy | nginx |")
        L.append("| --- | --- | --- | --- |")
        for ld, label, unit, _ in LOADS:
            cells = []
            for m, _ in MODES:
                k = f"{m}@sys.{ld}"
                tot, n = benchlib.num(r, f"{k}.sys.total"), benchlib.num(r, f"{k}.units")
                if not tot or not n:
                    cells.append("—")
                    continue
                per = 1 if unit != "GB" else 1  # GB loads: per 1 MiB response
                names = sorted(((kk.rsplit(".", 1)[1], float(v)) for kk, v in r.items()
                                if kk.startswith(f"{k}.sys.") and not kk.endswith((".total", ".error"))),
                               key=lambda kv: -kv[1])[:4]
                cells.append(f"{tot / n * per:.1f}: " + ", ".join(f"{nm} {v / n:.1f}" for nm, v in names))
            L.append(f"| {ld} (per {'response' if unit == 'GB' else unit}) | " + " | ".join(cells) + " |")
        L.append("")
    if notes:
        L.append("Notes:")
        L.extend(notes)
        L.append("")
    L.append("Versions: " + "; ".join(f"{k}: {meta(k)}" for k in
                                         ("sluice", "haproxy", "nginx", "openssl", "wrk", "kernel")))
    return "\n".join(L)


def pids(pid):
    out, todo = [], [int(pid)]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(benchlib.proc_children(p))
    print(",".join(str(p) for p in out))


def record_sys(results, key, perf_out):
    counts = {}
    total = None
    with open(perf_out) as f:
        for line in f:
            parts = line.strip().split(",")
            if len(parts) >= 3 and parts[2] == "raw_syscalls:sys_enter":
                try:
                    total = int(parts[0])
                except ValueError:
                    pass
            elif len(parts) >= 3 and parts[2].startswith("syscalls:sys_enter_"):
                try:
                    n = int(parts[0])
                except ValueError:
                    continue
                if n:
                    counts[parts[2][len("syscalls:sys_enter_"):]] = n
    if not counts and total is None:
        benchlib.put(results, f"{key}.sys.error", f"no counts in {perf_out}")
        return
    benchlib.put(results, f"{key}.sys.total", total if total is not None else sum(counts.values()))
    for name, n in sorted(counts.items(), key=lambda kv: -kv[1])[:8]:
        benchlib.put(results, f"{key}.sys.{name}", n)


def tls_probe(port, cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(8)
    ls.settimeout(15)
    raw, _ = ls.accept()  # the wait_port probe is not TLS: skip it
    while True:
        try:
            with ctx.wrap_socket(raw, server_side=True) as s:
                print(f"{s.version()} (ALPN {s.selected_alpn_protocol()})")
                s.settimeout(2)
                try:
                    s.recv(4096)
                    s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                except (OSError, ssl.SSLError):
                    pass
                return
        except (OSError, ssl.SSLError):
            raw, _ = ls.accept()


def main():
    a = sys.argv[1:]
    if not a:
        sys.exit(__doc__)
    cmd = a[0]
    if cmd == "certs":
        make_certs(a[1], a[2])
    elif cmd == "check":
        check(int(a[1]), a[2], a[3], int(a[4]), a[5], a[6], len(a) > 7 and a[7] == "http")
    elif cmd == "wrk":
        record_wrk(*a[1:7])
    elif cmd == "hs":
        record_hs(*a[1:6])
    elif cmd == "pids":
        pids(a[1])
    elif cmd == "sys":
        record_sys(a[1], a[2], a[3])
    elif cmd == "tls-probe":
        tls_probe(int(a[1]), a[2], a[3])
    elif cmd == "report":
        print(report(a[1]))
    else:
        sys.exit(f"unknown subcommand {cmd!r}\n{__doc__}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Helpers for l4-bench.sh and http-bench.sh (Python 3 standard library only).

Subcommands:
  cpu PID                       print "USER_SECONDS SYSTEM_SECONDS" of the whole process
  rss PID                       print VmRSS in bytes
  put RESULTS KEY VALUE         append KEY=VALUE to the results file
  bulk RESULTS MODE DIR JSON CPU_BEFORE CPU_AFTER
                                record an iperf3 run (DIR is fwd or rev)
  short RESULTS MODE WRK_OUT CPU_BEFORE CPU_AFTER
                                record a wrk run
  idle-backend PORT COUNT_FILE  accept and hold connections, keep COUNT_FILE = open count
  idle-client PORT N COUNT_FILE READY_FILE [BATCH]
                                open N idle connections (in batches, waiting until the
                                backend has counted them), write READY_FILE, then hold
  wait-count COUNT_FILE OP N TIMEOUT
                                wait until count OP N (OP: ge or le); exit 1 on timeout
  report RESULTS                print the Markdown report
HTTP (http-bench.sh):
  cpu-tree PID                  like cpu, for PID and all its descendants
  ctx-tree PID                  context switches (voluntary + nonvoluntary) of PID's threads and descendants
  http-wrk RESULTS KEY WRK_OUT CPU_BEFORE CPU_AFTER
                                record a wrk --latency run under KEY (MODE@ROUND.LOAD)
  http-check PORT PATH SIZE HOST=PORT,PORT ...
                                routing check through a proxy; prints "ok" or the problems
  http-probe PORT HOST PATH N [close]
                                N requests, print a tally of statuses and the first non-2xx
  http-report RESULTS           print the HTTP Markdown report
CPU_BEFORE/CPU_AFTER are "USER SYSTEM" strings as printed by `cpu`.
"""
import errno
import json
import os
import re
import resource
import select
import signal
import socket
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- /proc readers
def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    # comm may contain spaces and parentheses: split after the last ')'
    fields = data[data.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of stat(5)
    return utime / CLK_TCK, stime / CLK_TCK


def proc_rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise SystemExit(f"no VmRSS for pid {pid}")


def parse_cpu(s):
    u, st = s.split()
    return float(u), float(st)


def put(results, key, value):
    with open(results, "a") as f:
        f.write(f"{key}={value}\n")


# ---------------------------------------------------------------- recorders
def record_bulk(results, mode, direction, json_path, before, after):
    with open(json_path) as f:
        text = f.read()
    try:
        doc = json.loads(text)
    except ValueError:
        put(results, f"{mode}.bulk_{direction}.error", "iperf3 output is not JSON")
        return
    if "error" in doc:
        put(results, f"{mode}.bulk_{direction}.error", doc["error"].replace("\n", " "))
        return
    end = doc["end"]
    recv = end["sum_received"]
    nbytes = float(recv["bytes"])
    secs = float(recv["seconds"])
    u0, s0 = parse_cpu(before)
    u1, s1 = parse_cpu(after)
    k = f"{mode}.bulk_{direction}"
    put(results, f"{k}.bytes", int(nbytes))
    put(results, f"{k}.seconds", f"{secs:.3f}")
    put(results, f"{k}.gbps", f"{nbytes / secs / 1e9:.4f}")
    put(results, f"{k}.retransmits", end.get("sum_sent", {}).get("retransmits", ""))
    put(results, f"{k}.cpu_user", f"{u1 - u0:.2f}")
    put(results, f"{k}.cpu_sys", f"{s1 - s0:.2f}")


def record_short(results, mode, wrk_out, before, after):
    with open(wrk_out) as f:
        text = f.read()
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    rps = re.search(r"Requests/sec:\s*([\d.]+)", text)
    if not m or not rps:
        put(results, f"{mode}.short.error", "cannot parse wrk output")
        return
    n = int(m.group(1))
    errors = 0
    se = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if se:
        errors += sum(int(x) for x in se.groups())
    nx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if nx:
        errors += int(nx.group(1))
    u0, s0 = parse_cpu(before)
    u1, s1 = parse_cpu(after)
    k = f"{mode}.short"
    put(results, f"{k}.connections", n)
    put(results, f"{k}.cps", rps.group(1))
    put(results, f"{k}.errors", errors)
    put(results, f"{k}.cpu_user", f"{u1 - u0:.2f}")
    put(results, f"{k}.cpu_sys", f"{s1 - s0:.2f}")


# ---------------------------------------------------------------- idle connections
def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def write_count(path, n):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{n}\n")
    os.replace(tmp, path)


def read_count(path):
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (FileNotFoundError, ValueError):
        return -1


def idle_backend(port, count_file):
    raise_nofile()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(4096)
    ls.setblocking(False)
    ep = select.epoll()
    ep.register(ls.fileno(), select.EPOLLIN)
    conns = {}
    write_count(count_file, 0)
    buf = bytearray(65536)
    while True:
        changed = False
        for fd, ev in ep.poll(1.0):
            if fd == ls.fileno():
                while True:
                    try:
                        c, _ = ls.accept()
                    except BlockingIOError:
                        break
                    except OSError as e:
                        if e.errno in (errno.EMFILE, errno.ENFILE):
                            sys.stderr.write("idle-backend: out of file descriptors\n")
                            break
                        raise
                    c.setblocking(False)
                    conns[c.fileno()] = c
                    ep.register(c.fileno(), select.EPOLLIN | select.EPOLLRDHUP)
                    changed = True
            else:
                c = conns.get(fd)
                if c is None:
                    continue
                closed = bool(ev & (select.EPOLLHUP | select.EPOLLERR))
                if not closed:
                    try:
                        n = c.recv_into(buf)
                        closed = n == 0
                    except BlockingIOError:
                        pass
                    except OSError:
                        closed = True
                if closed:
                    ep.unregister(fd)
                    del conns[fd]
                    c.close()
                    changed = True
        if changed:
            write_count(count_file, len(conns))


def wait_count(count_file, op, n, timeout):
    deadline = time.monotonic() + timeout
    while True:
        c = read_count(count_file)
        if (op == "ge" and c >= n) or (op == "le" and 0 <= c <= n):
            return c
        if time.monotonic() > deadline:
            return None
        time.sleep(0.02)


def idle_client(port, n, count_file, ready_file, batch):
    raise_nofile()
    base = max(read_count(count_file), 0)
    socks = []
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    t0 = time.monotonic()
    while len(socks) < n:
        for _ in range(min(batch, n - len(socks))):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(10)
            s.connect(("127.0.0.1", port))
            socks.append(s)
        if wait_count(count_file, "ge", base + len(socks), 30) is None:
            sys.stderr.write(
                f"idle-client: backend counts {read_count(count_file) - base} of {len(socks)}\n"
            )
            sys.exit(1)
    # all upstream connections are established; check none of ours was closed
    dead = 0
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                dead += 1
        except BlockingIOError:
            pass
        except OSError:
            dead += 1
    with open(ready_file, "w") as f:
        f.write(f"{len(socks) - dead} {time.monotonic() - t0:.2f}\n")
    while not stop:
        time.sleep(0.2)
    for s in socks:
        s.close()


# ---------------------------------------------------------------- noise monitor
def scan_procs():
    """{pid: (ppid, comm, cpu_seconds)} for every process."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                data = f.read()
        except OSError:
            continue
        i = data.rindex(")")
        comm = data[data.index("(") + 1 : i]
        fields = data[i + 2 :].split()
        out[int(d)] = (int(fields[1]), comm, (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return out


def monitor(root_pid, out_file, interval):
    """Every INTERVAL s, add up the CPU time used by user processes that are not descendants
    of ROOT_PID (nor this monitor). Writes "TOTAL_SECONDS comm:secs,..." to OUT_FILE.
    Processes that live less than one interval are missed, so this is a lower bound."""
    me = os.getpid()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    seen = {}  # pid -> last cpu seconds (foreign processes only)
    total = 0.0
    by_comm = {}
    first = True
    while True:
        procs = scan_procs()
        for pid, (ppid, comm, cpu) in procs.items():
            if pid == 2 or ppid == 2:
                continue  # kernel threads: ksoftirqd & co. mostly carry our own loopback traffic
            p, ours, hops = pid, False, 0
            while p > 1 and hops < 64:
                if p in (root_pid, me):
                    ours = True
                    break
                p = procs.get(p, (0,))[0]
                hops += 1
            if ours:
                continue
            prev = seen.get(pid)
            # a process born after the first scan counts from 0
            delta = cpu - (prev if prev is not None else (cpu if first else 0.0))
            seen[pid] = cpu
            if delta > 0:
                total += delta
                by_comm[comm] = by_comm.get(comm, 0.0) + delta
        for pid in list(seen):
            if pid not in procs:
                del seen[pid]
        first = False
        tops = sorted(by_comm.items(), key=lambda kv: -kv[1])[:4]
        tmp = out_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{total:.2f} " + ",".join(f"{c.replace(' ', '_')}:{v:.1f}" for c, v in tops) + "\n")
        os.replace(tmp, out_file)
        time.sleep(interval)


def noise_read(path):
    try:
        with open(path) as f:
            parts = f.read().split()
        return float(parts[0]), (parts[1] if len(parts) > 1 else "")
    except (OSError, ValueError, IndexError):
        return 0.0, ""


# ---------------------------------------------------------------- report
MODES = [
    ("direct", "direct"),
    ("haproxy-default", "HAProxy default pipes"),
    ("haproxy-tuned", "HAProxy pipesize 1 MiB"),
    ("sluice", "sluice pipeSize 1 MiB"),
]


def load(results):
    r = {}
    with open(results) as f:
        for line in f:
            line = line.rstrip("\n")
            if "=" in line:
                k, v = line.split("=", 1)
                r[k] = v
    return r


def result_figures(results):
    """The figures of a results file as (mode, round, load, figure, value), and its meta.*
    values by name (keys are MODE@ROUND.LOAD.FIGURE)."""
    figures, meta = [], {}
    for key, value in load(results).items():
        if key.startswith("meta."):
            meta[key[5:]] = value
            continue
        head, _, field = key.partition(".")
        mode, _, round_ = head.partition("@")
        load_, _, figure = field.partition(".")
        figures.append((mode, round_, load_, figure, value))
    return figures, meta


def num(r, k):
    v = r.get(k)
    if v in (None, ""):
        return None
    try:
        return float(v)
    except ValueError:
        return None


def derived(r, mode):
    """Return {row_key: value} for one mode (one round); nothing if it did not run."""
    out = {}
    if r.get(f"{mode}.status") not in ("ok", None):
        return out
    for d in ("fwd", "rev"):
        k = f"{mode}.bulk_{d}"
        gbps = num(r, f"{k}.gbps")
        nbytes = num(r, f"{k}.bytes")
        out[f"bulk_{d}_gbps"] = gbps
        u, s = num(r, f"{k}.cpu_user"), num(r, f"{k}.cpu_sys")
        if not mode.startswith("direct") and nbytes and u is not None:
            gb = nbytes / 1e9
            out[f"bulk_{d}_user"] = u / gb
            out[f"bulk_{d}_sys"] = s / gb
            out[f"bulk_{d}_cpu"] = (u + s) / gb
    n = num(r, f"{mode}.short.connections")
    out["short_cps"] = num(r, f"{mode}.short.cps")
    out["short_errors"] = num(r, f"{mode}.short.errors")
    u, s = num(r, f"{mode}.short.cpu_user"), num(r, f"{mode}.short.cpu_sys")
    if not mode.startswith("direct") and n and u is not None:
        out["short_user"] = u / n * 1e5
        out["short_sys"] = s / n * 1e5
        out["short_cpu"] = (u + s) / n * 1e5
        out["short_us_per_conn"] = (u + s) / n * 1e6
    nc, nw = num(r, f"{mode}.noise.cpu"), num(r, f"{mode}.noise.wall")
    if nc is not None and nw:
        out["noise_pct"] = 100.0 * nc / nw
    b, a = num(r, f"{mode}.idle.rss_before"), num(r, f"{mode}.idle.rss_after")
    cnt = num(r, f"{mode}.idle.connections")
    if b is not None and a is not None and cnt:
        out["idle_before"] = b / 1024
        out["idle_after"] = a / 1024
        out["idle_per_conn"] = (a - b) / cnt
    return out


ROWS = [
    # key, label, format, better ("up" = higher is better)
    ("bulk_fwd_gbps", "bulk client→server: throughput (GB/s)", "{:.2f}", "up"),
    ("bulk_fwd_cpu", "bulk client→server: proxy CPU s/GB", "{:.3f}", "down"),
    ("bulk_fwd_user", "  user s/GB", "{:.3f}", "down"),
    ("bulk_fwd_sys", "  system s/GB", "{:.3f}", "down"),
    ("bulk_rev_gbps", "bulk server→client (-R): throughput (GB/s)", "{:.2f}", "up"),
    ("bulk_rev_cpu", "bulk server→client (-R): proxy CPU s/GB", "{:.3f}", "down"),
    ("bulk_rev_user", "  user s/GB", "{:.3f}", "down"),
    ("bulk_rev_sys", "  system s/GB", "{:.3f}", "down"),
    ("short_cps", "short connections: connections/s", "{:.0f}", "up"),
    ("short_cpu", "short connections: proxy CPU s per 100k conns", "{:.2f}", "down"),
    ("short_user", "  user s per 100k", "{:.2f}", "down"),
    ("short_sys", "  system s per 100k", "{:.2f}", "down"),
    ("short_us_per_conn", "  (= proxy CPU µs per connection)", "{:.1f}", "down"),
    ("short_errors", "short connections: wrk errors", "{:.0f}", "down"),
    ("idle_before", "idle: proxy RSS before (KiB)", "{:.0f}", "down"),
    ("idle_after", "idle: proxy RSS with idle conns (KiB)", "{:.0f}", "down"),
    ("idle_per_conn", "idle: RSS bytes per idle connection", "{:.0f}", "down"),
    ("noise_pct", "other processes' CPU during the column (% of one CPU)", "{:.0f}", "down"),
]


NOISE_WARN_PCT = 10.0


def fmt(v, f):
    return "—" if v is None else f.format(v)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "—"
    return f"{a / b:.2f}"


def rounds_of(r, mode):
    """Round numbers present for MODE (keys "MODE@N.…"); old single-run keys count as round 0."""
    out = set()
    for k in r:
        if k.startswith(mode + "@"):
            n = k[len(mode) + 1 :].split(".", 1)[0]
            if n.isdigit():
                out.add(int(n))
    return sorted(out)


def noise_pct(r, key):
    """The share of a CPU (%) other processes used during KEY's turn, or None."""
    nc, nw = num(r, f"{key}.noise.cpu"), num(r, f"{key}.noise.wall")
    return 100.0 * nc / nw if nc is not None and nw else None


def round_notes(r, mode, n, loads, checks=(), width=160):
    """Report notes on round N of MODE: a status other than ok, each load's error, each check
    (key MODE@N.CHECK) that is not ok (cut to WIDTH), and the noise of the round."""
    key = f"{mode}@{n}"
    notes = []
    st = r.get(f"{key}.status")
    if st and st != "ok":
        notes.append(f"- {mode} round {n}: {st}")
    for ld in loads:
        e = r.get(f"{key}.{ld}.error")
        if e:
            notes.append(f"- {mode} round {n} {ld}: {e} (not counted)")
    for k in checks:
        v = r.get(f"{key}.{k}")
        if v and not v.startswith("ok"):
            notes.append(f"- {mode} round {n} {k}: {v[:width]}")
    p = noise_pct(r, key)
    if p is not None:
        notes.append(f"- {mode} round {n}: other processes used {p:.0f} % of a CPU")
    return notes


def median(vals):
    v = sorted(x for x in vals if x is not None)
    if not v:
        return None
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def report(results):
    r = load(results)
    per_round = {m: [derived(r, f"{m}@{n}") for n in rounds_of(r, m)] for m, _ in MODES}
    d = {}
    for m, _ in MODES:
        keys = {k for dr in per_round[m] for k in dr}
        d[m] = {k: median([dr.get(k) for dr in per_round[m]]) for k in keys}
    lines = []
    meta = lambda k: r.get(f"meta.{k}", "?")
    lines.append(f"# Sluice L4 benchmark — {meta('date')}")
    lines.append("")
    lines.append(
        f"Loopback only. Proxy on CPU {meta('proxy_cpu')}, load generators and origins on CPU "
        f"{meta('load_cpu')}. bulk: iperf3 {meta('bulk_secs')} s per direction, "
        f"{meta('bulk_parallel')} stream(s); short: wrk -t{meta('wrk_threads')} "
        f"-c{meta('wrk_conns')} -d{meta('short_secs')}s `Connection: close`; idle: "
        f"{meta('idle_conns')} connections. Modes interleaved over {meta('rounds')} round(s); "
        f"each cell is the median over rounds (per-round values below)."
    )
    lines.append("")
    hdr = "| figure | " + " | ".join(label for _, label in MODES)
    hdr += " | sluice / HAProxy tuned | sluice / HAProxy default | HAProxy tuned / default | better |"
    lines.append(hdr)
    lines.append("|" + " --- |" * (len(MODES) + 5))
    for key, label, f, better in ROWS:
        vals = [d[m].get(key) for m, _ in MODES]
        if all(v is None for v in vals):
            continue
        s, ht, hd = d["sluice"].get(key), d["haproxy-tuned"].get(key), d["haproxy-default"].get(key)
        row = f"| {label} | " + " | ".join(fmt(v, f) for v in vals)
        arrow = "higher" if better == "up" else "lower"
        row += f" | {ratio(s, ht)} | {ratio(s, hd)} | {ratio(ht, hd)} | {arrow} |"
        lines.append(row)
    lines.append("")
    notes = []
    for m, label in MODES:
        statuses = {}
        for n in rounds_of(r, m):
            st = r.get(f"{m}@{n}.status")
            if st and st != "ok":
                statuses.setdefault(st, []).append(str(n))
        for st, ns in statuses.items():
            notes.append(f"- {label}, round(s) {', '.join(ns)}: {st}")
        for n in rounds_of(r, m):
            km = f"{m}@{n}"
            for k, v in sorted(r.items()):
                if k.startswith(km + ".") and k.endswith(".error"):
                    notes.append(f"- {label}, round {n}: {k[len(km) + 1:]}: {v}")
            if r.get(f"{km}.idle.connections") and r.get(f"{km}.idle.requested"):
                if r[f"{km}.idle.connections"] != r[f"{km}.idle.requested"]:
                    notes.append(
                        f"- {label}, round {n}: only {r[km + '.idle.connections']} of "
                        f"{r[km + '.idle.requested']} idle connections stayed open"
                    )
    noisy = [
        f"{label} {d[m]['noise_pct']:.0f}%"
        for m, label in MODES
        if d[m].get("noise_pct") is not None and d[m]["noise_pct"] >= NOISE_WARN_PCT
    ]
    for m, label in MODES:
        if d[m].get("noise_pct") is not None and d[m]["noise_pct"] >= NOISE_WARN_PCT:
            continue  # already named as a whole column
        for n, dr in enumerate(per_round[m], 1):
            if dr.get("noise_pct") is not None and dr["noise_pct"] >= NOISE_WARN_PCT:
                noisy.append(f"{label} round {n} {dr['noise_pct']:.0f}%")
    if noisy:
        notes.append(
            "- NOISY: other processes used CPU during: " + ", ".join(noisy)
            + f" (top over the run: {r.get('meta.noise_top', '?')}); the medians damp a single"
            " noisy round, but compare those columns with care, or rerun"
        )
    if notes:
        lines.append("Notes:")
        lines.extend(notes)
        lines.append("")
    if any(len(per_round[m]) > 1 for m, _ in MODES):
        lines.append("Per-round values (round 1 / round 2 / …):")
        lines.append("")
        lines.append("| figure | " + " | ".join(label for _, label in MODES) + " |")
        lines.append("|" + " --- |" * (len(MODES) + 1))
        for key, label, f, _ in ROWS:
            cells = []
            for m, _ in MODES:
                vals = [dr.get(key) for dr in per_round[m]]
                cells.append(" / ".join(fmt(v, f) for v in vals) if any(v is not None for v in vals) else "—")
            if any(c != "—" for c in cells):
                lines.append(f"| {label.strip()} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append("Versions:")
    for k in ("haproxy", "nginx", "iperf3", "wrk", "swift", "kernel", "sluice"):
        lines.append(f"- {k}: {meta(k)}")
    lines.append("")
    lines.append(
        "Ratios are column / column from the same run; whether a ratio above 1 is good "
        "depends on the `better` column (throughput and connections/s: higher; CPU and memory: "
        "lower). CPU is the proxy process only (utime+stime from /proc/PID/stat, 10 ms ticks)."
    )
    print("\n".join(lines))


# ---------------------------------------------------------------- HTTP benchmark (http-bench.sh)
def proc_cpu_tree(pid):
    """utime+stime of PID and all its descendants (nginx: master + worker)."""
    u, s = proc_cpu(pid)
    for kid in proc_children(pid):
        try:
            ku, ks = proc_cpu_tree(kid)
        except OSError:
            continue
        u, s = u + ku, s + ks
    return u, s


def proc_children(pid):
    kids = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    kids.extend(int(x) for x in f.read().split())
            except OSError:
                pass
    except OSError:
        pass
    return kids


def proc_ctx_tree(pid):
    """Context switches (voluntary + nonvoluntary) of every thread of PID and its descendants."""
    n = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        tids = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                        n += int(line.split()[1])
        except OSError:
            pass
    for kid in proc_children(pid):
        n += proc_ctx_tree(kid)
    return n


_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def parse_wrk(text):
    """wrk (--latency) output -> dict; None if it has no summary."""
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    rps = re.search(r"Requests/sec:\s*([\d.]+)", text)
    if not m or not rps:
        return None
    out = {"requests": int(m.group(1)), "rps": float(rps.group(1))}
    for pct in ("50", "99"):
        p = re.search(rf"^\s*{pct}(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.M)
        if p:
            out[f"p{pct}_ms"] = float(p.group(1)) * _UNIT_MS[p.group(2)]
    se = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    out["sock_errors"] = sum(int(x) for x in se.groups()) if se else 0
    out["sock_detail"] = (
        f"connect {se.group(1)}, read {se.group(2)}, write {se.group(3)}, timeout {se.group(4)}"
        if se else ""
    )
    nx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    out["non2xx"] = int(nx.group(1)) if nx else 0
    return out


def record_http(results, key, wrk_out, before, after):
    """Record one wrk run of http-bench.sh under KEY (MODE@ROUND.LOAD)."""
    with open(wrk_out) as f:
        w = parse_wrk(f.read())
    if w is None:
        put(results, f"{key}.error", f"cannot parse wrk output ({wrk_out})")
        return
    u0, s0 = parse_cpu(before)
    u1, s1 = parse_cpu(after)
    for k in ("requests", "rps", "p50_ms", "p99_ms", "sock_errors", "non2xx"):
        if k in w:
            put(results, f"{key}.{k}", w[k])
    if w["sock_errors"]:
        put(results, f"{key}.sock_detail", w["sock_detail"])
    put(results, f"{key}.cpu_user", f"{u1 - u0:.2f}")
    put(results, f"{key}.cpu_sys", f"{s1 - s0:.2f}")
    # a one-word summary for the log line
    print(
        f"{w['rps']:.0f} req/s, p50 {w.get('p50_ms', 0):.3f} ms, p99 {w.get('p99_ms', 0):.3f} ms, "
        f"CPU {u1 - u0:.2f}+{s1 - s0:.2f} s for {w['requests']} req, "
        f"errors {w['sock_errors']}, non-2xx {w['non2xx']}"
    )


def _http_exchange(sock, rfile, host, path, close=False):
    """One request on a keep-alive socket; returns (status, headers dict, body bytes)."""
    req = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n"
    if close:
        req += "Connection: close\r\n"
    sock.sendall((req + "\r\n").encode())
    line = rfile.readline()
    if not line:
        raise ConnectionError("connection closed before a response")
    parts = line.decode("latin-1").split(" ", 2)
    status = int(parts[1])
    headers = {}
    while True:
        h = rfile.readline()
        if h in (b"\r\n", b"\n", b""):
            break
        k, _, v = h.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        body = rfile.read(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower().endswith("chunked"):
        body = b""
        while True:
            n = int(rfile.readline().split(b";")[0].strip(), 16)
            if n == 0:
                while rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                break
            body += rfile.read(n)
            rfile.readline()
    else:
        body = rfile.read()
    return status, headers, body


def http_check(port, path, size, hosts_origins):
    """Routing check through a proxy: on one keep-alive connection, alternate the hosts
    (4 requests each); every answer must be 200 with SIZE bytes, and each host's requests
    must reach both of its origins (X-Origin) and no other. Prints "ok" or what is wrong."""
    spec = {}
    for item in hosts_origins:  # "a.example.com=17201,17202"
        h, ports = item.split("=")
        spec[h] = set(ports.split(","))
    seen = {h: [] for h in spec}
    problems = []
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        rfile = s.makefile("rb")
        for i in range(4):
            for h in spec:
                st, hd, body = _http_exchange(s, rfile, h, path)
                origin = hd.get("x-origin", "?")
                seen[h].append(origin)
                if st != 200 or len(body) != size:
                    problems.append(f"{h}{path}: status {st}, {len(body)} bytes")
                if hd.get("connection", "").lower() == "close":
                    problems.append(f"{h}: proxy closed the keep-alive connection")
                    raise ConnectionError("closed")
        s.close()
    except (OSError, ValueError, ConnectionError) as e:
        if not problems or "closed" not in str(e):
            problems.append(f"{type(e).__name__}: {e}")
    for h, want in spec.items():
        got = set(seen[h])
        if seen[h] and got != want:
            problems.append(f"{h} reached origins {'/'.join(seen[h])} (expected {'+'.join(sorted(want))})")
    print("ok" if not problems else "; ".join(dict.fromkeys(problems)))


def http_probe(port, host, path, n, close):
    """N sequential requests (new connection each time if CLOSE): tally of statuses and the
    first non-2xx answer (head fields and the start of the body), on one line."""
    tally = {}
    first_bad = None
    s = rfile = None
    for _ in range(n):
        try:
            if s is None:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                rfile = s.makefile("rb")
            st, hd, body = _http_exchange(s, rfile, host, path, close)
            tally[st] = tally.get(st, 0) + 1
            if not 200 <= st < 300 and first_bad is None:
                first_bad = f"{st} {hd} body={body[:120]!r}"
            if close or hd.get("connection", "").lower() == "close":
                s.close()
                s = None
        except (OSError, ValueError, ConnectionError) as e:
            name = f"{type(e).__name__}: {e}"
            tally[name] = tally.get(name, 0) + 1
            if s is not None:
                s.close()
            s = None
    if s is not None:
        s.close()
    out = "statuses " + ", ".join(f"{k}×{v}" for k, v in tally.items())
    if first_bad:
        out += f"; first non-2xx: {first_bad}"
    print(out.replace("\n", " "))


HTTP_MODES = [
    ("sluice", "Sluice"),
    ("haproxy", "HAProxy"),
    ("nginx", "nginx"),
]

HTTP_ROWS = [
    ("rps", "req/s", "{:.0f}", "up"),
    ("p50_ms", "p50 latency (ms)", "{:.3f}", "down"),
    ("p99_ms", "p99 latency (ms)", "{:.3f}", "down"),
    ("cpu", "proxy CPU s per 100k req", "{:.2f}", "down"),
    ("cpu_user", "  user s per 100k", "{:.2f}", "down"),
    ("cpu_sys", "  system s per 100k", "{:.2f}", "down"),
    ("sock_errors", "wrk socket errors", "{:.0f}", "down"),
    ("non2xx", "non-2xx/3xx responses", "{:.0f}", "down"),
]


def http_load_label(load):
    """ka-64 -> "keep-alive, 64 B"; close-1m-ab -> "Connection: close, 1 MiB, Host a/b"."""
    parts = load.split("-")
    conn = {"ka": "keep-alive", "close": "Connection: close"}.get(parts[0], parts[0])
    size = {"64": "64 B", "16k": "16 KiB", "1m": "1 MiB"}.get(parts[1], parts[1]) if len(parts) > 1 else "?"
    host = "Host a/b alternating" if len(parts) > 2 and parts[2] == "ab" else "Host a"
    return f"{conn}, {size}, {host}"


def http_loads_of(r):
    loads = r.get("meta.loads", "").split()
    return loads


def http_derived(r, key):
    """{row: value} for MODE@ROUND.LOAD, nothing if it did not run."""
    out = {}
    n = num(r, f"{key}.requests")
    if n is None:
        return out
    for k in ("rps", "p50_ms", "p99_ms", "sock_errors", "non2xx"):
        out[k] = num(r, f"{key}.{k}")
    u, s = num(r, f"{key}.cpu_user"), num(r, f"{key}.cpu_sys")
    if n and u is not None and s is not None:
        out["cpu_user"] = u / n * 1e5
        out["cpu_sys"] = s / n * 1e5
        out["cpu"] = (u + s) / n * 1e5
    return out


def http_noise(r, key):
    nc, nw = num(r, f"{key}.noise.cpu"), num(r, f"{key}.noise.wall")
    return 100.0 * nc / nw if nc is not None and nw else None


def http_report(results):
    r = load(results)
    loads = http_loads_of(r)
    rounds = {m: rounds_of(r, m) for m, _ in HTTP_MODES}
    per_round = {
        (m, ld): [http_derived(r, f"{m}@{n}.{ld}") for n in rounds[m]] for m, _ in HTTP_MODES for ld in loads
    }
    med = {}
    for (m, ld), drs in per_round.items():
        keys = {k for dr in drs for k in dr}
        med[(m, ld)] = {k: median([dr.get(k) for dr in drs]) for k in keys}
    noise = {m: [http_noise(r, f"{m}@{n}") for n in rounds[m]] for m, _ in HTTP_MODES}
    meta = lambda k: r.get(f"meta.{k}", "?")
    L = []
    L.append(f"# Sluice HTTP benchmark — {meta('date')}")
    L.append("")
    L.append(
        f"Loopback only. Proxy on CPU {meta('proxy_cpu')}; wrk and the nginx origin (4 ports, "
        f"static files, `access_log off`) on CPU {meta('load_cpu')}. Each load: "
        f"wrk -t{meta('wrk_threads')} -c{meta('wrk_conns')} -d{meta('secs')}s --latency after a "
        f"{meta('warmup')} s warm-up; routing by Host (a.example.com, b.example.com → two origins "
        f"each, round robin). Proxies interleaved over {meta('rounds')} round(s); each cell is the "
        f"median over rounds (per-round values below). \"Sluice / better peer\" divides by the "
        f"better of HAProxy and nginx on that row."
    )
    L.append("")
    # summary: CPU per request and the ratios that matter, one line per load
    L.append(
        "| load | CPU µs/req (user + sys): Sluice | HAProxy | nginx | Sluice CPU / better peer "
        "| Sluice req/s / better peer | Sluice p99 / better peer | errors + non-2xx (S / H / N) |"
    )
    L.append("|" + " --- |" * 8)

    def us(m, ld):
        d = med[(m, ld)]
        if d.get("cpu") is None:
            return "—"
        return f"{d['cpu'] * 10:.1f} ({d['cpu_user'] * 10:.1f} + {d['cpu_sys'] * 10:.1f})"

    def vs_best(ld, key, up):
        sv = med[("sluice", ld)].get(key)
        peers = [med[(m, ld)].get(key) for m in ("haproxy", "nginx")]
        peers = [v for v in peers if v is not None]
        if not peers:
            return "—"
        return ratio(sv, max(peers) if up else min(peers))

    for ld in loads:
        errs = []
        for m, _ in HTTP_MODES:
            d = med[(m, ld)]
            e = [d.get("sock_errors"), d.get("non2xx")]
            errs.append("—" if all(x is None for x in e) else f"{sum(x or 0 for x in e):.0f}")
        L.append(
            f"| {http_load_label(ld)} | {us('sluice', ld)} | {us('haproxy', ld)} | {us('nginx', ld)} "
            f"| {vs_best(ld, 'cpu', False)} | {vs_best(ld, 'rps', True)} | {vs_best(ld, 'p99_ms', False)} "
            f"| {' / '.join(errs)} |"
        )
    L.append("")
    L.append("All figures (medians):")
    L.append("")
    labels = [lab for _, lab in HTTP_MODES]
    L.append(
        "| load | figure | " + " | ".join(labels)
        + " | Sluice / HAProxy | Sluice / nginx | Sluice / better peer | better |"
    )
    L.append("|" + " --- |" * (len(HTTP_MODES) + 6))
    for ld in loads:
        first = True
        for key, label, f, better in HTTP_ROWS:
            vals = [med[(m, ld)].get(key) for m, _ in HTTP_MODES]
            if all(v is None for v in vals):
                continue
            s, h, n = vals
            peers = [v for v in (h, n) if v is not None]
            best = (max(peers) if better == "up" else min(peers)) if peers else None
            arrow = "higher" if better == "up" else "lower"
            if key in ("sock_errors", "non2xx"):
                rs = ["—", "—", "—"]
            else:
                rs = [ratio(s, h), ratio(s, n), ratio(s, best)]
            lc = f"**{http_load_label(ld)}**" if first else ""
            first = False
            L.append(
                f"| {lc} | {label} | " + " | ".join(fmt(v, f) for v in vals)
                + f" | {' | '.join(rs)} | {arrow} |"
            )
    cells = []
    for m, _ in HTTP_MODES:
        v = median(noise[m])
        cells.append(fmt(v, "{:.0f}"))
    L.append(f"| all | other processes' CPU (% of one CPU) | " + " | ".join(cells) + " | | | | lower |")
    L.append("")

    # notes
    notes = []
    for m, label in HTTP_MODES:
        for n in rounds[m]:
            km = f"{m}@{n}"
            st = r.get(f"{km}.status")
            if st and st != "ok":
                notes.append(f"- {label}, round {n}: {st}")
            chk = r.get(f"{km}.check")
            if chk and chk != "ok":
                notes.append(f"- {label}, round {n}: routing check: {chk}")
            for k, v in sorted(r.items()):
                if not k.startswith(km + "."):
                    continue
                sub = k[len(km) + 1 :]
                if sub.endswith(".error"):
                    notes.append(f"- {label}, round {n}: {sub}: {v}")
                elif sub.endswith(".sock_detail"):
                    ld = sub[: -len(".sock_detail")]
                    notes.append(f"- {label}, round {n}, {http_load_label(ld)}: wrk socket errors: {v}")
                elif sub.endswith(".diag"):
                    ld = sub[: -len(".diag")]
                    nx = r.get(f"{km}.{ld}.non2xx", "?")
                    notes.append(
                        f"- {label}, round {n}, {http_load_label(ld)}: {nx} non-2xx; "
                        f"rerun of the load with a status tally: {v}"
                    )
    checks = {m: [r.get(f"{m}@{n}.check") for n in rounds[m]] for m, _ in HTTP_MODES}
    ok_modes = [lab for m, lab in HTTP_MODES if checks[m] and all(c == "ok" for c in checks[m])]
    if ok_modes:
        notes.append(
            "- routing check passed (Host a and b alternating on one keep-alive connection, "
            "each host reaching both of its origins, 200 and the right length): " + ", ".join(ok_modes)
        )
    noisy = []
    for m, label in HTTP_MODES:
        for n, v in zip(rounds[m], noise[m]):
            if v is not None and v >= NOISE_WARN_PCT:
                noisy.append(f"{label} round {n} {v:.0f}%")
    if noisy:
        notes.append(
            "- NOISY: other processes used CPU during: " + ", ".join(noisy)
            + f" (top over the run: {r.get('meta.noise_top', '?')}); the medians damp a single"
            " noisy round, but compare with care, or rerun"
        )
    if notes:
        L.append("Notes:")
        L.extend(notes)
        L.append("")

    if any(len(rounds[m]) > 1 for m, _ in HTTP_MODES):
        L.append("Per-round values (round 1 / round 2 / …):")
        L.append("")
        L.append("| load | figure | " + " | ".join(labels) + " |")
        L.append("|" + " --- |" * (len(HTTP_MODES) + 2))
        for ld in loads:
            first = True
            for key, label, f, _ in HTTP_ROWS:
                cs = []
                for m, _ in HTTP_MODES:
                    vals = [dr.get(key) for dr in per_round[(m, ld)]]
                    cs.append(" / ".join(fmt(v, f) for v in vals) if any(v is not None for v in vals) else "—")
                if all(c == "—" for c in cs):
                    continue
                lc = f"**{http_load_label(ld)}**" if first else ""
                first = False
                L.append(f"| {lc} | {label.strip()} | " + " | ".join(cs) + " |")
        cs = [" / ".join(fmt(v, "{:.0f}") for v in noise[m]) or "—" for m, _ in HTTP_MODES]
        L.append("| all | other processes' CPU % | " + " | ".join(cs) + " |")
        L.append("")
    L.append("Versions:")
    for k in ("haproxy", "nginx", "wrk", "swift", "kernel", "sluice"):
        L.append(f"- {k}: {meta(k)}")
    L.append("")
    L.append(
        "CPU is the proxy only (utime+stime of the process and its children from /proc/PID/stat, "
        "10 ms ticks; nginx: master + worker); 1 s per 100k requests = 10 µs per request. "
        "Ratios are column / column from the same run: for req/s above 1 is better, for latency "
        "and CPU below 1 is better. With wrk and the origin saturating CPU "
        f"{meta('load_cpu')}, req/s is capped by that core: judge the proxies by CPU per request."
    )
    print("\n".join(L))


def main():
    a = sys.argv[1:]
    if not a:
        print(__doc__)
        sys.exit(2)
    cmd = a[0]
    if cmd == "cpu":
        u, s = proc_cpu(int(a[1]))
        print(f"{u:.2f} {s:.2f}")
    elif cmd == "rss":
        print(proc_rss(int(a[1])))
    elif cmd == "put":
        put(a[1], a[2], a[3])
    elif cmd == "bulk":
        record_bulk(a[1], a[2], a[3], a[4], a[5], a[6])
    elif cmd == "short":
        record_short(a[1], a[2], a[3], a[4], a[5])
    elif cmd == "idle-backend":
        idle_backend(int(a[1]), a[2])
    elif cmd == "idle-client":
        idle_client(int(a[1]), int(a[2]), a[3], a[4], int(a[5]) if len(a) > 5 else 100)
    elif cmd == "wait-count":
        c = wait_count(a[1], a[2], int(a[3]), float(a[4]))
        if c is None:
            print(read_count(a[1]))
            sys.exit(1)
        print(c)
    elif cmd == "monitor":
        monitor(int(a[1]), a[2], float(a[3]) if len(a) > 3 else 0.5)
    elif cmd == "noise-begin":  # noise-begin MONITOR_FILE -> prints the current total
        print(f"{noise_read(a[1])[0]:.2f} {time.monotonic():.2f}")
    elif cmd == "noise-end":  # noise-end RESULTS MODE MONITOR_FILE "BEGIN"
        t0, w0 = (float(x) for x in a[4].split())
        t1, _ = noise_read(a[3])
        put(a[1], f"{a[2]}.noise.cpu", f"{max(t1 - t0, 0):.2f}")
        put(a[1], f"{a[2]}.noise.wall", f"{time.monotonic() - w0:.2f}")
    elif cmd == "report":
        report(a[1])
    elif cmd == "cpu-tree":
        u, s = proc_cpu_tree(int(a[1]))
        print(f"{u:.2f} {s:.2f}")
    elif cmd == "ctx-tree":
        print(proc_ctx_tree(int(a[1])))
    elif cmd == "http-wrk":
        record_http(a[1], a[2], a[3], a[4], a[5])
    elif cmd == "http-check":
        http_check(int(a[1]), a[2], int(a[3]), a[4:])
    elif cmd == "http-probe":
        http_probe(int(a[1]), a[2], a[3], int(a[4]), len(a) > 5 and a[5] == "close")
    elif cmd == "http-report":
        http_report(a[1])
    else:
        print(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()

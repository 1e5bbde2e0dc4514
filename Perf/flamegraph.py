#!/usr/bin/env python3
"""Self-contained flame graphs from `perf script` output (Python 3 standard library only).

  flamegraph.py collapse [--no-comm] [--keep-offsets] < perf.script > stacks.folded
      One line per distinct stack: "root;caller;...;leaf COUNT". Kernel frames get the
      suffix "_[k]"; frames perf could not name become "[dso]" or "[unknown]".
  flamegraph.py svg [--title T] [--subtitle S] [--width PX] [--min-width PX] < stacks.folded > out.svg
      One <rect> per frame, width proportional to samples, root at the bottom; hover
      shows "name (N samples, P%)". Click a frame to zoom into it, click the bottom bar
      (or press Escape) to zoom out.
  flamegraph.py top [--n N] < stacks.folded
      Text summary: frames with the most self samples and most total (inclusive) samples.

Folded stacks can be piped through a demangler between the two steps, e.g.
  flamegraph.py collapse < perf.script | swift demangle --simplified | flamegraph.py svg > out.svg
"""
import argparse
import hashlib
import html
import os
import re
import sys

# ------------------------------------------------------------------ collapse
HEADER = re.compile(r"^(\S.*?)\s+(\d+)(?:/(\d+))?\s+(?:\[\d+\]\s+)?[\d.]+:")
FRAME = re.compile(r"^\s+([0-9a-fA-F]+)\s+(.*?)(?:\s+\((.*)\))?\s*$")
OFFSET = re.compile(r"\+0x[0-9a-fA-F]+$")


def frame_name(sym, dso, keep_offsets):
    if not keep_offsets:
        sym = OFFSET.sub("", sym)
    if sym in ("", "[unknown]"):
        if dso and dso not in ("[unknown]",):
            return "[" + os.path.basename(dso) + "]"
        return "[unknown]"
    if dso.startswith("[kernel") or dso.startswith("[guest.kernel"):
        return sym + "_[k]"
    return sym


def collapse(lines, with_comm=True, keep_offsets=False):
    counts = {}
    comm = None
    frames = []

    def flush():
        if comm is None:
            return
        stack = list(reversed(frames))
        if with_comm:
            stack.insert(0, comm)
        if not stack:
            return
        key = ";".join(f.replace(";", ":") for f in stack)
        counts[key] = counts.get(key, 0) + 1

    for raw in lines:
        line = raw.rstrip("\n")
        if not line.strip():
            flush()
            comm, frames = None, []
            continue
        if line[0] not in " \t":
            flush()
            m = HEADER.match(line)
            comm = (m.group(1) if m else line.split()[0]).strip().replace(" ", "_")
            frames = []
            continue
        m = FRAME.match(line)
        if not m or comm is None:
            continue
        sym, dso = m.group(2), m.group(3) or ""
        name = frame_name(sym, dso, keep_offsets)
        # a run of unnamed frames is one frame: broken unwinds otherwise make towers
        if frames and name.startswith("[") and frames[-1] == name:
            continue
        frames.append(name)
    flush()
    return counts


# ------------------------------------------------------------------ svg
class Node:
    __slots__ = ("name", "total", "self_", "children")

    def __init__(self, name):
        self.name = name
        self.total = 0
        self.self_ = 0
        self.children = {}


def read_folded(lines):
    root = Node("all")
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            continue
        stack, _, n = line.rpartition(" ")
        try:
            count = int(float(n))
        except ValueError:
            continue
        node = root
        root.total += count
        for name in stack.split(";") if stack else []:
            child = node.children.get(name)
            if child is None:
                child = node.children[name] = Node(name)
            child.total += count
            node = child
        node.self_ += count
    return root


def color(name):
    h = int(hashlib.md5(name.encode("utf-8", "replace")).hexdigest()[:8], 16)
    v1, v2 = (h & 0xFF) / 255.0, ((h >> 8) & 0xFF) / 255.0
    if name.endswith("_[k]"):  # kernel: orange
        r, g, b = 230, 120 + int(60 * v1), int(40 * v2)
    elif name.startswith("[") or name == "[unknown]":  # unnamed: grey
        c = 170 + int(40 * v1)
        r, g, b = c, c, c
    elif ".so" in name or name.startswith(("__", "_IO", "epoll", "splice", "read", "write")):
        r, g, b = 200 + int(40 * v1), 200 + int(40 * v2), 60  # libraries: yellow
    else:  # program code: red/orange ("hot")
        r, g, b = 205 + int(50 * v1), int(150 * v2), int(55 * v1 * v2)
    return f"rgb({r},{g},{b})"


def render_svg(root, title, subtitle, width, min_width, out):
    frame_h, font, pad_top, pad_bottom, side = 16, 12, 56, 24, 10
    total = root.total or 1
    scale = (width - 2 * side) / total

    # depth of the graph (only frames wide enough to draw)
    def depth(n, d):
        best = d
        for c in n.children.values():
            if c.total * scale >= min_width:
                best = max(best, depth(c, d + 1))
        return best

    max_depth = depth(root, 0)
    height = pad_top + (max_depth + 1) * frame_h + pad_bottom
    rects = []

    def emit(n, x, d):
        w = n.total * scale
        if w < min_width:
            return
        y = height - pad_bottom - (d + 1) * frame_h
        pct = 100.0 * n.total / total
        label = f"{n.name} ({n.total:,} samples, {pct:.2f}%)"
        if n.self_:
            label += f", self {n.self_:,}"
        chars = int((w - 6) / (font * 0.59))
        text = ""
        if chars >= 3:
            text = n.name if len(n.name) <= chars else n.name[: chars - 2] + ".."
        rects.append(
            f'<g class="f"><title>{html.escape(label)}</title>'
            f'<rect x="{x:.2f}" y="{y}" width="{w:.2f}" height="{frame_h - 1}" '
            f'fill="{color(n.name) if d else "rgb(200,200,210)"}" rx="2"/>'
            f'<text x="{x + 3:.2f}" y="{y + frame_h - 4}">{html.escape(text)}</text></g>'
        )
        cx = x
        for c in sorted(n.children.values(), key=lambda c: c.name):
            emit(c, cx, d + 1)
            cx += c.total * scale

    emit(root, float(side), 0)
    out.write(
        f'<?xml version="1.0" standalone="no"?>\n'
        f'<svg version="1.1" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'xmlns="http://www.w3.org/2000/svg" onload="init(evt)">\n'
        f"<style>text{{font-family:Verdana,sans-serif;font-size:{font}px;fill:#000;pointer-events:none}}"
        f" .f:hover rect{{stroke:#000;stroke-width:0.7}} #t{{font-size:17px;text-anchor:middle}}"
        f" #s{{font-size:12px;text-anchor:middle;fill:#555}} #d{{font-size:12px;fill:#333}}</style>\n"
        f'<rect width="100%" height="100%" fill="#f8f8f0"/>\n'
        f'<text id="t" x="{width / 2}" y="24">{html.escape(title)}</text>\n'
        f'<text id="s" x="{width / 2}" y="42">{html.escape(subtitle)} — {total:,} samples</text>\n'
        f'<text id="d" x="{side}" y="{height - 6}"> </text>\n'
        f'<g id="frames">\n' + "\n".join(rects) + "\n</g>\n" + ZOOM_JS.replace("@SIDE@", str(side))
        .replace("@WIDTH@", str(width)) + "</svg>\n"
    )


# Small optional script: zoom on click, details line on hover. The SVG is complete without it.
ZOOM_JS = """<script type="text/ecmascript"><![CDATA[
var side=@SIDE@, W=@WIDTH@, det, orig=[];
function init(evt){ det=document.getElementById("d");
  var gs=document.getElementById("frames").children;
  for(var i=0;i<gs.length;i++){ var r=gs[i].querySelector("rect"), t=gs[i].querySelector("text");
    orig.push([+r.getAttribute("x"),+r.getAttribute("width"),t.textContent,gs[i].querySelector("title").textContent]);
    (function(g,i){ g.onclick=function(){zoom(i)}; g.onmouseover=function(){det.textContent=orig[i][3]};
      g.onmouseout=function(){det.textContent=" "}; })(gs[i],i); }
  document.onkeydown=function(e){ if(e.key=="Escape") zoom(-1); }; }
function name(s){ return s.replace(/ \\([\\d,]+ samples.*$/,""); }
function zoom(k){ var gs=document.getElementById("frames").children;
  var x0=k<0?side:orig[k][0], w0=k<0?W-2*side:orig[k][1], y0=k<0?1e9:+gs[k].querySelector("rect").getAttribute("y");
  var s=(W-2*side)/w0;
  for(var i=0;i<gs.length;i++){ var r=gs[i].querySelector("rect"), t=gs[i].querySelector("text"), o=orig[i];
    var y=+r.getAttribute("y"), inside=o[0]>=x0-1e-6 && o[0]+o[1]<=x0+w0+1e-6;
    if(k>=0 && y>y0) inside=inside||(o[0]<=x0+1e-6&&o[0]+o[1]>=x0+w0-1e-6);
    if(!inside){ gs[i].style.display="none"; continue; }
    gs[i].style.display="";
    var nx=k>=0&&y>y0?side:side+(o[0]-x0)*s, nw=k>=0&&y>y0?W-2*side:o[1]*s;
    r.setAttribute("x",nx); r.setAttribute("width",nw); t.setAttribute("x",nx+3);
    var full=name(o[3]), c=Math.floor((nw-6)/7); t.textContent=c<3?"":(full.length<=c?full:full.slice(0,c-2)+".."); } }
]]></script>
"""


def top(root, n, out):
    selfc, totalc = {}, {}

    def walk(node, path):
        if node is not root:
            selfc[node.name] = selfc.get(node.name, 0) + node.self_
            if node.name not in path:  # count recursion once
                totalc[node.name] = totalc.get(node.name, 0) + node.total
        p = path | {node.name}
        for c in node.children.values():
            walk(c, p)

    walk(root, frozenset())
    t = root.total or 1
    out.write(f"total samples: {root.total}\n\nself samples:\n")
    for name, c in sorted(selfc.items(), key=lambda kv: -kv[1])[:n]:
        out.write(f"  {100.0 * c / t:6.2f}%  {c:8d}  {name}\n")
    out.write("\ninclusive samples:\n")
    for name, c in sorted(totalc.items(), key=lambda kv: -kv[1])[:n]:
        out.write(f"  {100.0 * c / t:6.2f}%  {c:8d}  {name}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collapse")
    c.add_argument("--no-comm", action="store_true", help="do not put the thread name at the root")
    c.add_argument("--keep-offsets", action="store_true", help="keep +0x offsets in symbol names")
    s = sub.add_parser("svg")
    s.add_argument("--title", default="Flame graph")
    s.add_argument("--subtitle", default="perf cpu-clock")
    s.add_argument("--width", type=int, default=1200)
    s.add_argument("--min-width", type=float, default=0.1, help="skip frames narrower than this (px)")
    t = sub.add_parser("top")
    t.add_argument("--n", type=int, default=25)
    a = ap.parse_args()
    inp = sys.stdin
    if a.cmd == "collapse":
        counts = collapse(inp, with_comm=not a.no_comm, keep_offsets=a.keep_offsets)
        for k in sorted(counts):
            sys.stdout.write(f"{k} {counts[k]}\n")
    elif a.cmd == "svg":
        render_svg(read_folded(inp), a.title, a.subtitle, a.width, a.min_width, sys.stdout)
    else:
        top(read_folded(inp), a.n, sys.stdout)


if __name__ == "__main__":
    main()

"""``GET /stats`` in headless Chromium: a screenshot is taken (a PNG, not empty) and the
tables are checked in the DOM after the page's script has polled ``stats.json``."""

from __future__ import annotations

import html.parser
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import free_port
from http_backends import get
from test_admin import admin_get, admin_sluice, status_backends, web_config  # noqa: F401

pytestmark = pytest.mark.sluice_only

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Tables(html.parser.HTMLParser):
    """The rows of every <table id=...>: {id: [[cell text, ...], ...]}, and each row's
    class and data-name."""

    def __init__(self):
        super().__init__()
        self.tables = {}
        self.rows = {}
        self.table = None
        self.in_body = False
        self.cell = None
        self.row = None
        self.texts = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self.table = a.get("id")
            self.tables[self.table] = []
        elif tag == "tbody":
            self.in_body = True
        elif tag == "tr" and self.table and self.in_body:
            self.row = {"class": a.get("class", ""), "name": a.get("data-name"), "cells": []}
            self.tables[self.table].append(self.row)
        elif tag == "td" and self.row is not None:
            self.cell = ""
        elif "id" in a:
            self.texts[a["id"]] = ""
            self._text_id = a["id"]

    def handle_endtag(self, tag):
        if tag == "td" and self.row is not None and self.cell is not None:
            self.row["cells"].append(self.cell.strip())
            self.cell = None
        elif tag == "tbody":
            self.in_body = False
        elif tag == "table":
            self.table = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data
        elif getattr(self, "_text_id", None):
            self.texts[self._text_id] += data


def chromium(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--no-first-run", "--hide-scrollbars", *args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (Debian package chromium)")
def test_stats_page_in_headless_chromium(admin_sluice, http_backends, status_backends, tmp_path):
    dead = f"127.0.0.1:{free_port()}"
    cfg = web_config(http_backends, ("a",), extra_services={"half": [dead], "b": [status_backends("b").addr]},
                     limits={"endpointBackoff": "120s", "connectTries": 1})
    cfg["listeners"][0]["routes"] += [{"host": "half.example.com", "service": "half"},
                                      {"host": "b.example.com", "service": "b"}]
    next(s for s in cfg["services"] if s["name"] == "half")["endpoints"].append(http_backends["a"].addr)
    p = admin_sluice(cfg, workers=1)
    web = p.addr("web")
    for _ in range(6):
        assert get(web, "a.example.com").status == 200
    assert get(web, "b.example.com", "/?status=500").status == 500
    for _ in range(4):
        get(web, "half.example.com")  # the dead endpoint is tried and marked down
    url = f"http://{p.admin_addr}/stats"

    # the page needs nothing but itself
    status, headers, body = admin_get(p, "/stats")
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    page = body.decode()
    assert "src=" not in page and "http://" not in page and "https://" not in page

    shot = tmp_path / "stats.png"
    r = chromium(f"--screenshot={shot}", "--window-size=1400,900", "--virtual-time-budget=5000", url)
    assert shot.exists(), r.stderr.decode(errors="replace")[-2000:]
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000, len(png)

    r = chromium("--dump-dom", "--virtual-time-budget=5000", url)
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-2000:]
    dom = r.stdout.decode()
    parser = Tables()
    parser.feed(dom)
    tables = parser.tables
    assert set(tables) == {"listeners", "services", "endpoints"}, list(tables)
    assert parser.texts.get("status", "").startswith("updated "), \
        f"the script polled stats.json: {parser.texts.get('status')!r}"
    listeners = {row["name"]: row["cells"] for row in tables["listeners"]}
    assert listeners["web"][:3] == ["web", "http", web]
    services = {row["name"]: row["cells"] for row in tables["services"]}
    assert set(services) == {"a", "b", "half"}
    a, b, half = services["a"], services["b"], services["half"]
    assert a[1] == "roundrobin" and a[2] == "1/1"
    assert half[2] == "1/2", half
    endpoints = {row["name"]: row for row in tables["endpoints"]}
    assert endpoints[f"half {dead}"]["cells"][2] == "DOWN"
    assert "down" in endpoints[f"half {dead}"]["class"]
    assert endpoints[f"a {http_backends['a'].addr}"]["cells"][2] == "UP"
    # the counts: requests, 2xx of a, 5xx of b, a p50 for a
    stats = json.loads(admin_get(p, "/stats.json")[2])
    by_name = {s["name"]: s for s in stats["services"]}
    assert by_name["a"]["requests"] == 6
    assert int(a[7]) == 6, a        # requests
    assert int(a[9]) == 6, a        # 2xx
    assert int(b[12]) == 1, b       # 5xx
    assert a[16].endswith(" ms"), a  # p50

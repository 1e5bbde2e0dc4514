"""`sluice check`."""

import subprocess

import pytest

from conftest import make_config, new_listener, sluice_bin, to_yaml

pytestmark = pytest.mark.sluice_only


def run_check(path):
    if not sluice_bin().exists():
        pytest.fail(f"sluice binary not found: {sluice_bin()}")
    return subprocess.run([str(sluice_bin()), "check", "--config", str(path)],
                          capture_output=True, text=True, timeout=20)


def test_check_valid_prints_table(tmp_path):
    listen = new_listener()
    eps = ["127.0.0.1:9101", "127.0.0.1:9102", "[::1]:9103"]
    cfg = make_config({"web": listen}, {"web": eps})
    path = tmp_path / "good.yaml"
    path.write_text(to_yaml(cfg) + "\n")
    r = run_check(path)
    assert r.returncode == 0, f"rc={r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    out = r.stdout
    port = listen.rsplit(":", 1)[1]
    assert port in out, f"listener port {port} missing from the table:\n{out}"
    assert "web" in out
    for ep in ["9101", "9102", "9103"]:
        assert ep in out, f"endpoint port {ep} missing from the table:\n{out}"
    assert "roundrobin" in out.lower() or "round" in out.lower(), f"algorithm not shown:\n{out}"


BAD = """\
listeners:
  - name: web
    address: 127.0.0.1:{port}
    service: web
services:
  - name: web
    algorithm: bogus
    endpoints:
      - 127.0.0.1:9101
"""


def test_check_bad_names_file_line_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(BAD.format(port=new_listener().rsplit(":", 1)[1]))
    r = run_check(path)
    assert r.returncode == 1, f"rc={r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    lines = [l for l in r.stderr.splitlines() if f"{path}:7:" in l]
    assert lines, f"no diagnostic naming {path}:7:\n{r.stderr}"
    assert any("algorithm" in l for l in lines), f"diagnostic does not name the field:\n{r.stderr}"


BAD2 = """\
timeouts:
  connect: fast
listeners:
  - name: web
    address: 127.0.0.1:{port}
    service: web
services:
  - name: web
    algorithm: roundrobin
    endpoints:
      - 127.0.0.1:notaport
"""


def test_check_reports_every_diagnostic(tmp_path):
    path = tmp_path / "bad2.yaml"
    path.write_text(BAD2.format(port=new_listener().rsplit(":", 1)[1]))
    r = run_check(path)
    assert r.returncode == 1, f"rc={r.returncode}\nstderr:\n{r.stderr}"
    err = r.stderr
    l2 = [l for l in err.splitlines() if f"{path}:2:" in l]
    l11 = [l for l in err.splitlines() if f"{path}:11:" in l]
    assert l2 and "connect" in l2[0], f"no diagnostic for timeouts.connect at line 2:\n{err}"
    assert l11 and "endpoint" in l11[0], f"no diagnostic for the endpoint at line 11:\n{err}"


def test_check_missing_file_fails(tmp_path):
    r = run_check(tmp_path / "nope.yaml")
    assert r.returncode == 1, f"rc={r.returncode}\nstderr:\n{r.stderr}"
    assert "nope.yaml" in r.stderr

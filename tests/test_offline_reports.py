"""What a person opens renders with no network: `dvc plots show`'s page and the data-quality gate's reports, opened in
a real headless Chromium whose every request goes to a local proxy that refuses it and records it.

Chromium comes from the OS packages (`.ci/run` installs it); without a browser binary these tests skip and say so.
"""
import http.server
import json
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import ROOT, copy_pipeline, run_ok

BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


def needs_browser(test):
    """Mark ``test`` as a browser test (deselect with ``-m 'not browser'``), skipped with a reason without one."""
    skip = pytest.mark.skipif(BROWSER is None, reason="no chromium binary on PATH (apt-get install chromium)")
    return pytest.mark.browser(skip(test))


# Chromium's own traffic (clock check, component updates, sign-in), not the page's: reported, never counted
BROWSER_OWN = {"clients2.google.com", "accounts.google.com", "update.googleapis.com", "safebrowsing.googleapis.com",
               "optimizationguide-pa.googleapis.com", "clientservices.googleapis.com", "redirector.gvt1.com",
               "edgedl.me.gvt1.com", "content-autofill.googleapis.com"}


def _host(requestline: str) -> str:
    """The host a proxied request line names: ``CONNECT host:443 ...`` or ``GET http://host/... ...``."""
    target = requestline.split()[1]
    return re.sub(r"^[a-z]+://", "", target).split("/")[0].split(":")[0]


class _Refuse(http.server.BaseHTTPRequestHandler):
    """A proxy that answers every request 403 and records its request line: the page got nothing from outside."""

    seen: list[str]

    def _refuse(self) -> None:
        self.seen.append(self.requestline)
        self.send_error(403)

    do_GET = do_POST = do_HEAD = do_CONNECT = _refuse

    def log_message(self, *args) -> None:
        pass


def render(page: Path, tmp: Path) -> tuple[str, list[str]]:
    """(the DOM after scripts ran, the requests the page tried) for ``page`` opened in headless Chromium."""
    handler = type("Refuse", (_Refuse,), {"seen": []})
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        r = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                            "--disable-background-networking", "--disable-component-update", "--disable-sync",
                            f"--user-data-dir={tmp / 'chromium-profile'}",
                            f"--proxy-server=http://127.0.0.1:{proxy.server_address[1]}",
                            "--proxy-bypass-list=<-loopback>", "--virtual-time-budget=10000", "--dump-dom",
                            page.resolve().as_uri()], capture_output=True, text=True, timeout=120)
    finally:
        proxy.shutdown()
    assert r.returncode == 0 and "<body" in r.stdout, r.stderr[-2000:]
    return r.stdout, [s for s in handler.seen if _host(s) not in BROWSER_OWN]


@needs_browser
def test_dvc_plots_show_draws_every_chart_offline(tmp_path):
    # the project's own dvc.yaml, .dvc/config and committed curves; the page template as `make install` writes it
    d = copy_pipeline(tmp_path / "repo")
    for rel in ("plots/train/teacher.csv", "plots/train/baseline.csv", "plots/train/student.csv",
                "plots/confusion_student.csv"):
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, d / rel)
    run_ok(["git", "init", "-q"], d)
    run_ok([sys.executable, "-m", "dvc", "init", "-q"], d)
    shutil.copy(ROOT / ".dvc/config", d / ".dvc/config")  # plots.html_template, as committed
    run_ok([sys.executable, "-m", "dlkdd.vega_page", str(d / ".dvc/plots.html")], d)
    run_ok([sys.executable, "-m", "dvc", "plots", "show", "-o", "shown"], d)
    page = d / "shown/index.html"
    charts = page.read_text().count("vegaEmbed(")
    assert charts == 6  # val top-1, train loss, 3 learning rates, the confusion matrix
    dom, requests = render(page, tmp_path)
    assert requests == []  # DVC's default page loads vega, vega-lite and vega-embed from a CDN
    drawn = re.findall(r'<div[^>]*class="[^"]*vega-embed[^"]*"[^>]*>.*?(<canvas|<svg)', dom, re.S)
    assert len(drawn) == charts, dom[:3000]


def gate_run(where: Path) -> Path:
    """The data-quality gate's report folder (index.html, drift.html, details.json) for a failing batch, written in
    ``where`` to the relative folder ``reports`` (as the validate stage passes ``reports/validate``)."""
    import os

    import numpy as np
    import pandas as pd

    from dlkdd.config import ValidateConfig
    from dlkdd.quality import check_footage

    rng = np.random.default_rng(0)
    n = 60
    lit = np.r_[rng.uniform(8, 20, 30), rng.uniform(60, 80, 30)]  # val/test far brighter than train: drift
    stats = pd.DataFrame({
        "clip_id": [f"c{i:02d}" for i in range(n)], "split": ["train"] * 30 + ["val"] * 15 + ["test"] * 15,
        "label": [i % 3 for i in range(n)], "frames": 8, "fps": 25.0, "height": 48, "width": 64,
        "luma_mean": lit, "luma_p05": rng.uniform(1, 3, n), "luma_p50": lit, "luma_p95": rng.uniform(20, 40, n),
        "dark_fraction": rng.uniform(.3, .6, n), "noise": rng.uniform(1, 2, n)})
    where.mkdir(parents=True, exist_ok=True)
    cwd = os.getcwd()
    os.chdir(where)
    try:
        res = check_footage(stats, ValidateConfig(), 4, reference=stats[stats.split == "train"], report_dir="reports",
                            classes=["a", "b", "c"], current=stats[stats.split != "train"])
    finally:
        os.chdir(cwd)
    assert not res.passed
    return where / "reports"


def test_plots_page_inlines_vega_and_is_dvcs_template():
    # what `make install` writes for .dvc/config's plots.html_template: DVC fills {plot_divs} (and {refresh_tag}); no
    # {scripts}, the placeholder DVC fills with its CDN <script> tags
    import configparser

    from dlkdd.vega_page import vega_template

    page = vega_template()
    assert page.count("{plot_divs}") == 1 and "{scripts}" not in page and "<script src" not in page
    assert "window.vegaEmbed=" in page and "cdn.jsdelivr" not in page
    config = configparser.ConfigParser()
    config.read(ROOT / ".dvc/config")
    assert config['plots']["html_template"] == "plots.html"  # relative to .dvc/, as DVC resolves it
    assert "/.dvc/plots.html" in (ROOT / ".gitignore").read_text().splitlines()


@pytest.fixture(scope="module")
def gate_reports(tmp_path_factory) -> Path:
    return gate_run(tmp_path_factory.mktemp("gate"))


@needs_browser
def test_gate_reports_render_offline(gate_reports, tmp_path):
    index, requests = render(gate_reports / "index.html", tmp_path)
    assert requests == [] and "Data-quality gate FAILED" in index and "luma_mean" in index
    links = re.findall(r"href=\"([^\"]+\.html)\"", index)
    assert "drift.html" in links
    for link in links:  # every page the overview links to opens with nothing from outside
        page, requests = render(gate_reports / link, tmp_path)
        assert requests == [], link  # GX Data Docs' index loads jQuery, bootstrap-table and Font Awesome from CDNs
        if link == "drift.html":  # Evidently's own JS drew its page: a reference and a current histogram per column
            assert "Drifted Columns" in page and page.count("<canvas") >= 2 * 5, page[-3000:]


def test_gate_reports_are_byte_identical_for_the_same_footage(gate_reports, tmp_path):
    # a tracked output (reports/validate) must not carry run ids or times: the same input gives the same bytes
    again = gate_run(tmp_path)
    names = sorted(p.name for p in again.iterdir())
    assert names == ["details.json", "drift.html", "drift.json", "index.html"]  # no GX Data Docs by default
    for name in names:
        assert (again / name).read_bytes() == (gate_reports / name).read_bytes(), name
    details = json.loads((again / "details.json").read_text())
    assert details["failed_checks"] == ["luma_mean"] and details["checks"]["drift"]["unexpected"] >= 1

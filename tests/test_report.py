"""The HTML report: content from the run, self-contained, and checked in a real headless Chromium."""

import http.server
import json
import os
import re
import shutil
import threading
from functools import partial
from pathlib import Path

import pytest

from convlens.errors import ConvlensError
from convlens.report import build_report

SECTION_IDS = [
    "arithmetic",
    "crosscorr",
    "classical",
    "learned",
    "evolution",
    "featuremaps",
    "distribution",
    "receptive",
    "limits",
    "reproduce",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    from click.testing import CliRunner

    from convlens.cli import cli

    out = tmp_path_factory.mktemp("demo") / "run"
    r = CliRunner().invoke(
        cli, ["demo", "--out", str(out), "-q", "--null-size", "500", "--seeds", "2"]
    )
    assert r.exit_code == 0, r.output
    assert r.output.strip().endswith("report.html")
    return out


def test_report_has_every_section_filled_with_measured_values(demo_run):
    html = (demo_run / "report.html").read_text()
    a = json.loads((demo_run / "analysis.json").read_text())
    for sid in SECTION_IDS:
        assert f'<section id="{sid}">' in html
    assert "cell (0, 0): expected 146, actual 154" in html
    acc = a["headline"]["test_accuracy"]
    assert f"{100 * acc:.0f}%" in html
    m0 = a["matching"][0]
    assert f"{m0['null']['p95']:.3f}" in html
    for layer, e in a["distribution"]["layers"].items():
        for name, v in e["ood"].items():
            assert f"{v['auroc']:.2f}" in html, (layer, name)
    assert html.count("<img ") >= 10
    seeds = json.loads((demo_run / "seeds.json").read_text())
    assert seeds["n"] == 2 and '<section id="seeds">' in html
    assert f"{seeds['rows'][0]['mean']:.3f}" in html
    assert a["verdicts"]["classical_kernels_spectrum_null"]["verdict"] in html
    assert html.count("data:image/png;base64,") == html.count("<img ")


def test_report_is_self_contained(demo_run):
    html = (demo_run / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "url(http" not in html and "@import" not in html
    assert "<script" not in html


def test_report_escapes_text(tmp_path, demo_run):
    run = tmp_path / "run"
    shutil.copytree(demo_run, run)
    rec = json.loads((run / "run.json").read_text())
    rec["dataset"]["source"] = "<script>alert(1)</script>"
    (run / "run.json").write_text(json.dumps(rec))
    html = build_report(run).read_text()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_report_needs_analysis(tmp_path, demo_run):
    run = tmp_path / "run"
    shutil.copytree(demo_run, run)
    (run / "analysis.json").unlink()
    with pytest.raises(ConvlensError, match="convlens analyze"):
        build_report(run)
    with pytest.raises(ConvlensError, match="not a run directory"):
        build_report(tmp_path)


def _browser():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} not installed")
    sync = pytest.importorskip("playwright.sync_api")
    return sync.sync_playwright


def _check_page(url: str, shot: Path) -> None:
    sync_playwright = _browser()
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(url, wait_until="load")
            ids = page.eval_on_selector_all("section", "els => els.map(e => e.id)")
            for sid in SECTION_IDS:
                assert sid in ids
            imgs = page.eval_on_selector_all(
                "img", "els => els.map(e => [e.complete, e.naturalWidth])"
            )
            assert len(imgs) >= 10
            assert all(complete and width > 0 for complete, width in imgs), imgs
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert not errors, errors
    for r in requests:
        assert r.startswith(("file://", "data:", "http://127.0.0.1")), r


def test_report_in_chromium_from_file(demo_run):
    _check_page((demo_run / "report.html").as_uri(), ARTIFACTS / "report-file.png")


def test_report_in_chromium_over_loopback_http(demo_run):
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(demo_run))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _check_page(
            f"http://127.0.0.1:{server.server_address[1]}/report.html",
            ARTIFACTS / "report-http.png",
        )
    finally:
        server.shutdown()
        server.server_close()

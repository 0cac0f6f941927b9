"""The HTML report: content from the run, self-contained, and checked in a real headless Chromium."""

import http.server
import json
import re
import shutil
import threading
from functools import partial
from pathlib import Path

import pytest

from convlens.analysis.result import AnalysisResult, SeedsSummary
from convlens.errors import ConvlensError
from convlens.report import build_report
from tests.browser import ARTIFACTS, CHROMIUM, FLAGS, sync_playwright

SECTION_IDS = [
    "answer",
    "arithmetic",
    "glossary",
    "playground",
    "layers",
    "training",
    "controls",
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


def test_report_has_every_section_filled_with_measured_values(demo_run):
    html = (demo_run / "report.html").read_text()
    a = AnalysisResult.read(demo_run / "analysis.json")
    for sid in SECTION_IDS:
        assert f'<section id="{sid}">' in html
    assert "cell (0, 0): expected 146, actual 154" in html
    acc = a.headline.test_accuracy
    assert f"{100 * acc:.0f}%" in html
    m0 = a.first_layer.matching
    assert f"{m0.null.p95:.3f}" in html
    for layer in a.layers:
        for name, v in layer.distribution.ood.items():
            assert f"{v.auroc:.2f}" in html, (layer.name, name)
    assert html.count("<img ") >= 10
    seeds = SeedsSummary.read(demo_run / "seeds.json")
    assert seeds.n == 2 and '<section id="seeds">' in html
    assert f"{seeds.rows[0].mean:.3f}" in html
    assert a.verdicts.classical_kernels.verdict in html and "Differs from initialisation" in html
    assert html.count("data:image/png;base64,") == html.count("<img ")


def test_report_is_self_contained(demo_run):
    html = (demo_run / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "url(http" not in html and "@import" not in html
    # issue 15: the page has inline scripts now (worked example, playground, slider), none loaded
    scripts = re.findall(r"<script[^>]*>", html)
    assert scripts == ['<script type="application/json" id="convlens-data">', "<script>"]


def test_report_escapes_text(tmp_path, demo_run, no_figures):
    run = tmp_path / "run"
    shutil.copytree(demo_run, run)
    a = json.loads((run / "analysis.json").read_text())
    a["run"]["dataset"]["source"] = "<script>alert(1)</script>"
    (run / "analysis.json").write_text(json.dumps(a))
    html = build_report(run).read_text()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_report_needs_analysis(tmp_path, demo_run):
    run = tmp_path / "run"
    shutil.copytree(demo_run, run)
    (run / "analysis.json").unlink()
    with pytest.raises(ConvlensError, match=r"no analysis\.json") as info:
        build_report(run)
    assert info.value.hint_key == "no_analysis"
    from click.testing import CliRunner

    from convlens.cli import cli

    r = CliRunner().invoke(cli, ["report", str(run)])
    assert r.exit_code == 2 and "convlens analyze RUN" in r.output
    with pytest.raises(ConvlensError, match=r"no analysis\.json"):
        build_report(tmp_path)


def test_report_template_is_strict(demo_run, no_figures):
    """A field the template names but a section does not provide fails, never renders blank."""
    from jinja2 import UndefinedError

    from convlens.report.build import build_context, load_inputs, render_html

    ctx = build_context(load_inputs(demo_run))
    assert render_html(ctx)
    del ctx["header"]["device"]
    with pytest.raises(UndefinedError):
        render_html(ctx)


def test_report_refuses_an_old_or_foreign_analysis(tmp_path, demo_run):
    run = tmp_path / "run"
    shutil.copytree(demo_run, run)
    (run / "analysis.json").write_text(json.dumps({"format": "convlens-analysis/1"}))
    with pytest.raises(ConvlensError, match="older convlens"):
        build_report(run)
    a = json.loads((demo_run / "analysis.json").read_text())
    a["layers"][0]["identity"]["index"] = "first"
    (run / "analysis.json").write_text(json.dumps(a))
    with pytest.raises(ConvlensError, match=r"layers\[0\]\.identity\.index: expected integer"):
        build_report(run)


def _browser():
    return sync_playwright()


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


@pytest.mark.slow  # a real headless Chromium per test
def test_report_in_chromium_from_file(demo_run):
    _check_page((demo_run / "report.html").as_uri(), ARTIFACTS / "report-file.png")


@pytest.mark.slow  # a real headless Chromium per test
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

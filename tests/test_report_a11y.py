"""The report's first screen and accessibility in a real headless Chromium (issue 23): axe-core
(4.12, bundled by the pinned ``axe-playwright-python``) finds no serious or critical violation at
1280 and 400 px, light and dark, on the demo's report and on a weights-only model-file report; the
answer section fits in 1200 px at 1280 x 800 and answers the seed's questions there; a weights-only
model-file report shows only the sections it has data for (at most two "No data" lines) and draws
every layer's kernels. Slow: a browser."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from convlens.cli import cli

pytestmark = pytest.mark.slow

REAL = Path(__file__).resolve().parent / "data" / "real"
WIDTHS = (1280, 400)
SCHEMES = ("light", "dark")
SERIOUS = {"serious", "critical"}


@pytest.fixture(scope="module")
def model_report(tmp_path_factory) -> Path:
    """MTCNN's P-Net state dict (a real .pt from facenet-pytorch, tests/data/real), analysed
    weights-only and reported through the CLI."""
    d = tmp_path_factory.mktemp("pnet")
    shutil.copy(REAL / "pnet.pt", d / "pnet.pt")
    runner = CliRunner()
    r = runner.invoke(cli, ["analyze", str(d / "pnet.pt"), "--null-size", "200"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["report", str(d / "pnet.pt.analysis.json")])
    assert r.exit_code == 0, r.output
    return d / "pnet.pt.report.html"


@pytest.fixture(scope="module")
def model_report_with_data(tmp_path_factory) -> Path:
    """MTCNN's R-Net state dict run on the bundled faces through its factory (tests/data/real)."""
    d = tmp_path_factory.mktemp("rnet")
    shutil.copy(REAL / "rnet.pt", d / "rnet.pt")
    runner = CliRunner()
    args = ["analyze", str(d / "rnet.pt"), "--factory", "tests.data.real.mtcnn:rnet"]
    r = runner.invoke(cli, [*args, "--data", "faces", "--null-size", "200"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["report", str(d / "rnet.pt.analysis.json")])
    assert r.exit_code == 0, r.output
    return d / "rnet.pt.report.html"


@pytest.mark.parametrize("width", WIDTHS)
def test_axe_finds_no_serious_violation_in_a_model_report_with_data(
    browser, model_report_with_data, width
):
    bad = _serious(browser, model_report_with_data.as_uri(), width, "light")
    assert not bad, bad
    html = model_report_with_data.read_text(encoding="utf-8")
    assert '<section id="distribution">' in html and '<section id="crosscorr">' in html
    assert '<section id="training">' not in html  # no training history in a model file
    # issue 24: a torch model file run on data gets its channels' exemplars and maximising inputs
    assert '<section id="channels">' in html and "maximising input of conv3 channel 0" in html
    assert (model_report_with_data.parent / "rnet.pt.channels.safetensors").is_file()


def _serious(browser, url: str, width: int, scheme: str, context: str | None = None) -> list[str]:
    """Serious and critical axe violations of the page (or of the element ``context`` selects)."""
    from axe_playwright_python.sync_playwright import Axe

    page = browser.new_page(viewport={"width": width, "height": 800}, color_scheme=scheme)
    page.goto(url, wait_until="load")
    found = Axe().run(page, context=context).response["violations"]
    page.close()
    return [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes'][:3]]}"
        for v in found
        if v["impact"] in SERIOUS
    ]


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_axe_finds_no_serious_violation_in_the_demo_report(browser, demo_run, width, scheme):
    bad = _serious(browser, (demo_run / "report.html").as_uri(), width, scheme)
    assert not bad, bad


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_axe_finds_no_serious_violation_in_a_model_file_report(
    browser, model_report, width, scheme
):
    bad = _serious(browser, model_report.as_uri(), width, scheme)
    assert not bad, bad


def test_the_answer_fits_the_first_screen_and_answers_the_seeds_questions(browser, demo_run):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto((demo_run / "report.html").as_uri(), wait_until="load")
    height = page.evaluate("document.getElementById('answer').getBoundingClientRect().height")
    assert height <= 1200, f"the answer section is {height:.0f} px tall at 1280 x 800"
    text = page.inner_text("#answer")
    for question in (
        "cross-correlation of each patch",  # what a conv layer computes
        "classical (Sobel/Prewitt-like) kernels",  # what the first layer learns
        "come from: the task, the images, or init",  # ... and from what
        "feature maps change over training",  # deeper layers over training
        "images unlike its training data",  # the face net and the bicycle
    ):
        assert question in text, question
    assert "cannot show" in text
    # each line opens on its full sentence (the CLI's and the README's words)
    first = page.locator("#answer ul.one-answer details").first
    assert first.evaluate("d => d.open") is False
    first.locator("summary").click()
    assert first.evaluate("d => d.open") is True
    assert "float64" in first.inner_text()
    page.close()


def test_a_weights_only_model_report_is_about_the_model(browser, model_report):
    html = model_report.read_text(encoding="utf-8")
    assert html.lower().count("no data") <= 2
    # its kernels were kept beside the analysis (the report never imports torch) and are drawn
    assert (model_report.parent / "pnet.pt.kernels.safetensors").is_file()
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(model_report.as_uri(), wait_until="load")
    nav = page.inner_text("nav")
    for absent in ("Over training", "Loss and accuracy", "Across seeds", "Feature maps"):
        assert absent not in nav, absent  # a model file has no training history, no data given
    assert "Every layer" in nav and "First layer" in nav
    assert page.locator("#layers svg.kern").count() >= 4 * 2  # cards for every 2-D layer
    assert "Not in this report" in page.inner_text("#answer")
    assert not errors, errors
    page.close()


def _page_text(html: str) -> str:
    import html as html_lib
    import re

    body = re.sub(r"<script.*?</script>|<style.*?</style>", "", html, flags=re.S)
    return html_lib.unescape(re.sub(r"<[^>]+>", " ", body))


def test_every_statistical_term_used_is_in_the_glossary_and_no_record_leaks(demo_run):
    from convlens.report.answer import GLOSSARY, GLOSSARY_WORDS

    html = (demo_run / "report.html").read_text(encoding="utf-8")
    start, end = (
        html.index('<section id="glossary">'),
        html.index("</section>", html.index('<section id="glossary">')),
    )
    glossary, rest = html[start:end], _page_text(html[:start] + html[end:])
    used = {word: key for word, key in GLOSSARY_WORDS.items() if word in rest}
    assert {"binomial", "Wilson", "CKA", "AUROC"} <= set(used)  # the demo uses these at least
    for word, key in used.items():
        assert f'id="g-{key}"' in glossary, f"{word!r} is used but the glossary lacks {key!r}"
        assert GLOSSARY[key][0] in _page_text(glossary)
    # no Python record or dict printed as text (a control's further fields are flattened)
    assert "{'" not in rest and "WhiteningTest(" not in rest
    assert "kind: random_labels" not in rest and "(random_labels" not in rest


@pytest.mark.parametrize("width", WIDTHS)
def test_figures_show_at_natural_size_so_their_text_is_at_least_11_px(browser, demo_run, width):
    """Issue 23: matplotlib text is FONT_PT points at DPI dots per inch (>= 11 px); figures are shown
    at their natural size (scrolling sideways in their own focusable region), never shrunk."""
    from convlens.report.figures import DPI, FONT_PT

    assert FONT_PT * DPI / 72 >= 11
    page = browser.new_page(viewport={"width": width, "height": 800})
    page.goto((demo_run / "report.html").as_uri(), wait_until="load")
    shown = page.evaluate(
        "[...document.querySelectorAll('figure:not(.ex) img')].filter(i => i.getClientRects().length)"
        ".map(i => [i.alt, i.naturalWidth, i.getBoundingClientRect().width,"
        " i.closest('figure').tabIndex])"
    )
    page.close()
    assert len(shown) >= 5
    for alt, natural, drawn, tab in shown:
        assert abs(drawn - natural) < 1, (alt, natural, drawn)
        assert tab == 0, alt  # keyboard users can scroll it


def test_axe_finds_no_serious_violation_in_a_report_with_a_run_beside(
    browser, demo_run, tiny_run, tiny_run_analysis, tmp_path
):
    """Issue 27: the demo's report with another run's first layer beside its answer (axe on that
    part; the rest of the page is the demo's report, checked above)."""
    from convlens.pipelines import write_result
    from convlens.report import build_report
    from convlens.runs.layout import RunLayout

    other = Path(shutil.copytree(tiny_run, tmp_path / "other"))
    write_result(tiny_run_analysis, RunLayout(other).analysis)
    dest = build_report(demo_run, tmp_path / "report.html", beside=other)
    assert 'id="beside"' in dest.read_text(encoding="utf-8")
    # both widths and both schemes, two runs of axe (the demo report's tests cover all four)
    for width, scheme in zip(WIDTHS, SCHEMES, strict=True):
        bad = _serious(browser, dest.as_uri(), width, scheme, "#beside")
        assert not bad, (width, scheme, bad)

"""The report builder (``report/build.py``, ``inputs.py``, ``run_sections.py``, ``figures.py``,
``interactive.py``) and ``build_report``: every section filled from the run, self-contained and
escaped, a strict template, what the report reads and where it may write, the layer cards, the
epoch slider, the figures and the reproduce commands (checked by parsing them with the real CLI);
the whole page loaded in Chromium from file and over loopback HTTP (slow). The answer and OOD
sections are test_report_answer.py; the page's styles and scripts in Chromium test_report_browser.py."""

from __future__ import annotations

import http.server
import itertools
import json
import re
import shlex
import shutil
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.torch import save_file

from convlens.analysis.result import AnalysisResult, SeedsSummary
from convlens.cli import cli
from convlens.errors import ConvlensError
from convlens.pipelines import analyze_target
from convlens.report import build_report
from convlens.report.build import build_context, load_inputs, render_html
from tests import model_zoo
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


# ----------------------------------------------------------------------------- the page


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


def test_demo_report_stays_small(demo_run):
    """Issue 15 (the report's content)."""
    assert (demo_run / "report.html").stat().st_size < 3 * 2**20


@pytest.mark.slow
def test_report_command_does_not_import_torch(tiny_run_copy):
    import subprocess
    import sys

    analyze_target(tiny_run_copy, n_null=200)
    code = (
        "import sys\n"
        "from convlens.cli import cli\n"
        f"cli.main(['report', {str(tiny_run_copy)!r}], standalone_mode=False)\n"
        "assert 'torch' not in sys.modules, 'convlens report imported torch'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tiny_run_copy / "report.html").is_file()


# ----------------------------------------------------------------------------- the page in Chromium
# (its own Playwright per test: not in test_report_browser.py, whose module-wide browser holds
# the sync API's event loop while its tests run)


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


# ----------------------------------------------------------------------------- errors in the analysis


@pytest.mark.slow
def test_report_shows_errors_and_the_verdict_names_unchecked_layers(tiny_run_copy):
    """Regression: outside review of issues 11-12 (errors shown, verdict names unchecked layers)."""
    from safetensors.numpy import load_file, save_file

    from convlens.pipelines import analyze_target
    from convlens.report import build_report

    weights = load_file(str(tiny_run_copy / "model.safetensors"))
    weights["conv2.weight"][0, 0, 0, 0] = np.nan
    save_file(weights, str(tiny_run_copy / "model.safetensors"))
    result, _ = analyze_target(tiny_run_copy, n_null=200)
    assert result.errors and result.layer("conv2").check is None
    assert "not checked: conv2 (see errors)" in result.verdicts.cross_correlation.rule
    html = build_report(tiny_run_copy).read_text()
    assert "Not analysed" in html and "conv2" in html and "NaN or Inf" in html


@pytest.mark.slow
def test_report_on_an_inconsistent_analysis_is_a_one_line_error(tiny_run_copy):
    """Regression: outside review of issues 11-12 (an inconsistent analysis is one line)."""
    import json

    from convlens.pipelines import analyze_target
    from convlens.report import build_report

    analyze_target(tiny_run_copy, n_null=200)
    path = tiny_run_copy / "analysis.json"
    doc = json.loads(path.read_text())
    # the probe sets name far more probes than the run holds: typed right, values that do not fit
    doc["feature_maps"]["probe_sets"] = ["train"] * 1000
    path.write_text(json.dumps(doc))
    with pytest.raises(ConvlensError, match="values do not fit this run"):
        build_report(tiny_run_copy)
    assert not (tiny_run_copy / "report.html").exists()
    # an empty run config was such a case while the config was a free-form object; it is typed
    # now (convlens.runs.records.RunConfig), so the schema refuses it, naming the field
    doc["run"]["config"] = {}
    path.write_text(json.dumps(doc))
    with pytest.raises(ConvlensError, match=r"not a valid convlens analysis: .*run\.config\.data"):
        build_report(tiny_run_copy)
    assert not (tiny_run_copy / "report.html").exists()


# ----------------------------------------------------------------------------- targets and destinations


def _one_line(r) -> str:
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    lines = [ln for ln in r.output.splitlines() if ln.startswith("convlens: error")]
    assert len(lines) == 1, r.output
    return lines[0]


@pytest.fixture(scope="module")
def model_analysis(tmp_path_factory) -> Path:
    """``chain`` (conv, pool, conv, conv) analysed with digits: traced receptive fields, no
    effective ones (those are measured on training runs only)."""
    d = tmp_path_factory.mktemp("model")
    w = d / "chain.safetensors"
    save_file({k: v.contiguous() for k, v in model_zoo.chain().state_dict().items()}, str(w))
    args = ["analyze", str(w), "--factory", "tests.model_zoo:chain", "--data", "digits"]
    r = CliRunner().invoke(cli, [*args, "--ood", "noise", "--null-size", "200"])
    assert r.exit_code == 0, r.output
    return d / "chain.safetensors.analysis.json"


@pytest.mark.slow
def test_model_file_analysed_with_data_renders(model_analysis: Path) -> None:
    """Regression: found testing the merged tree as an outsider (what `report` reads and writes)."""
    from convlens.analysis.result import AnalysisResult

    a = AnalysisResult.read(model_analysis)
    assert a.receptive_fields is not None and a.receptive_fields.theoretical
    assert a.receptive_fields.effective == []
    r = CliRunner().invoke(cli, ["report", str(model_analysis)])
    assert r.exit_code == 0, r.output
    html = (model_analysis.parent / "chain.safetensors.report.html").read_text()
    sec = html[html.index('<section id="receptive">') :]
    sec = sec[: sec.index("</section>")]
    assert "Theoretical receptive fields only" in sec and "effective receptive fields" not in sec
    assert "<table>" in sec  # the traced (theoretical) fields are listed


@pytest.mark.slow
def test_report_refuses_to_overwrite_the_model_or_a_non_html_file(
    model_analysis: Path, tmp_path: Path
) -> None:
    """Regression: found testing the merged tree as an outsider (what `report` reads and writes)."""
    weights = model_analysis.parent / "chain.safetensors"
    before = weights.read_bytes()
    line = _one_line(
        CliRunner().invoke(cli, ["report", str(model_analysis), "--out", str(weights)])
    )
    assert "analysed model file" in line
    assert weights.read_bytes() == before
    other = tmp_path / "notes.txt"
    other.write_text("mine")
    line = _one_line(CliRunner().invoke(cli, ["report", str(model_analysis), "--out", str(other)]))
    assert "not an HTML file" in line and other.read_text() == "mine"
    fresh = tmp_path / "new.html"
    r = CliRunner().invoke(cli, ["report", str(model_analysis), "--out", str(fresh)])
    assert r.exit_code == 0 and fresh.read_text().startswith("<!DOCTYPE html>")


def test_report_refuses_files_inside_the_run(tiny_run_analysis, tiny_run: Path, tmp_path) -> None:
    """Regression: found testing the merged tree as an outsider (what `report` reads and writes)."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "analysis.json").write_text(tiny_run_analysis.to_json())
    weights = run / "model.safetensors"
    before = weights.read_bytes()
    line = _one_line(CliRunner().invoke(cli, ["report", str(run), "--out", str(weights)]))
    assert "inside the run directory" in line and weights.read_bytes() == before
    line = _one_line(CliRunner().invoke(cli, ["report", str(run), "--out", str(run / "x.html")]))
    assert "inside the run directory" in line and not (run / "x.html").exists()


@pytest.mark.slow
def test_report_of_a_model_file_itself_says_to_analyse_it_first(model_analysis: Path) -> None:
    """Regression: found testing the merged tree as an outsider (what `report` reads and writes)."""
    weights = model_analysis.parent / "chain.safetensors"
    line = _one_line(CliRunner().invoke(cli, ["report", str(weights)]))
    assert "is not an analysis" in line and "convlens analyze chain.safetensors" in line


# ----------------------------------------------------------------------------- layers, slider, figures


def test_every_layer_matching_and_kernel_cards(demo_run):
    """Issue 15 (the report's content)."""
    html = (demo_run / "report.html").read_text()
    a = AnalysisResult.read(demo_run / "analysis.json")
    sec = html[html.index('<section id="layers">') : html.index('<section id="evolution">')]
    for layer in a.layers:
        m = layer.matching
        assert f"<h3>{layer.name} " in sec
        assert f"{100 * m.fraction_above_null95:.0f}% ({m.null.p95:.3f})" in sec
        shown = min(len(m.kernels), 32)
        assert f"Showing {shown} of {m.n_kernels} kernels" in sec
        assert f"null percentile {m.kernels[0].percentile:.2f}" in sec
    assert sec.count('<svg class="kern"') >= 2 * 8


def test_slider_takes_every_snapshot_epoch_even_non_contiguous(tmp_path, demo_run, no_figures):
    """Issue 15 (the report's content)."""
    run = tmp_path / "run"
    shutil.copytree(demo_run, run)
    have = sorted(int(f.name[6:9]) for f in (run / "snapshots").glob("epoch-*.safetensors"))
    keep = sorted(set(have[::2]) | {have[-1]})  # every other snapshot epoch and the last
    assert any(b - a > 1 for a, b in itertools.pairwise(keep))  # not contiguous
    for f in (run / "snapshots").glob("epoch-*.safetensors"):
        if int(f.name[6:9]) not in keep:
            f.unlink()
    ctx = build_context(load_inputs(run))
    slider = ctx["payload"]["slider"]
    assert slider["epochs"] == keep and len(slider["weights"]) == len(keep)
    from safetensors.numpy import load_file

    mid = keep[len(keep) // 2]
    w = load_file(str(run / "snapshots" / f"epoch-{mid:03d}.safetensors"))["conv1.weight"]
    assert np.array(slider["weights"][keep.index(mid)]).tolist() == w.astype(np.float64).tolist()
    html = render_html(ctx)
    assert f'max="{len(keep) - 1}"' in html


def _drawn_texts(fig):
    """The text a figure really draws: tick labels inside the view, axis labels, titles, legends."""
    out = []
    for ax in fig.axes:
        if not ax.get_visible() or not ax.axison:
            continue
        for axis, lim in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            lo, hi = min(lim), max(lim)
            for tick in axis.get_major_ticks():
                if lo - 1e-9 <= tick.get_loc() <= hi + 1e-9:
                    out += [t for t in (tick.label1, tick.label2) if t.get_visible()]
            out.append(axis.label)
        out.append(ax.title)
        if ax.get_legend() is not None:
            out += list(ax.get_legend().get_texts())
    out += list(fig.texts)
    return [t for t in out if t.get_visible() and t.get_text().strip()]


@pytest.mark.slow  # draws every figure of the demo report (about 10 s)
def test_no_figure_has_overlapping_labels(demo_run, monkeypatch):
    """Issue 15 (the report's content)."""
    import itertools

    from convlens.report import figures

    original = figures.to_data_uri
    overlaps: list[tuple[str, str]] = []

    def checked(fig):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in _drawn_texts(fig)]
        for (a, ba), (b, bb) in itertools.combinations(boxes, 2):
            both = ba.intersection(ba, bb)
            if both is not None and both.width > 1 and both.height > 1:
                overlaps.append((a, b))
        return original(fig)

    monkeypatch.setattr(figures, "to_data_uri", checked)
    ctx = build_context(load_inputs(demo_run))
    assert ctx["training"] and ctx["evolution"]["curves"] and ctx["learned"]["null_figure"]
    assert not overlaps, overlaps


def test_kernel_svg_scale_escaping_and_non_finite_values():
    """Issue 15 (the report's content)."""
    from convlens.report.interactive import NEG_RGB, POS_RGB, kernel_svg

    svg = kernel_svg(np.array([[2.0, -2.0], [0.0, np.nan]]), "<b>&")
    fills = [f.split('"')[0] for f in svg.split('fill="')[1:]]
    pos, neg = ("#{:02x}{:02x}{:02x}".format(*c) for c in (POS_RGB, NEG_RGB))
    assert fills == [pos, neg, "#ffffff", "#808080"]  # +-max|w| at the ends, NaN grey
    assert "<title>&lt;b&gt;&amp;</title>" in svg


# ----------------------------------------------------------------------------- reproduce commands


def _parse(cmd: str):
    """Parse one command with the real click command (no execution)."""
    from convlens.cli import cli

    argv = shlex.split(cmd)
    assert argv[0] == "convlens"
    command = cli.commands[argv[1]]
    return argv[1], command.make_context(argv[1], argv[2:]).params


def test_reproduce_commands_parse_and_write_elsewhere(demo_run, no_figures):
    """Issue 15 (the report's content)."""
    inp = load_inputs(demo_run)
    cmds = build_context(inp)["reproduce"]["commands"]
    cfg = inp.a.run.config
    parsed = [_parse(c["cmd"]) for c in cmds]
    # the demo's analysis has a random-label control and a reference run (no weight decay): their
    # training runs are reproduced too
    assert [name for name, _ in parsed] == ["train", "train", "train", "analyze", "report", "demo"]
    train, control = parsed[0][1], parsed[1][1]
    for opt in ("data", "model", "epochs", "batch_size", "lr", "weight_decay", "optimizer", "seed"):
        assert train[opt] == getattr(cfg, opt) and control[opt] == getattr(cfg, opt), opt
    assert control["shuffle_labels"] and not train["shuffle_labels"]
    # every field, the ones the lines used to drop too (first_kernel, ood, ood_size, probes)
    from dataclasses import replace

    from convlens.runs.records import RunConfig

    assert RunConfig.from_cli(train) == cfg
    assert RunConfig.from_cli(control) == replace(cfg, shuffle_labels=True)
    reference = parsed[2][1]
    assert RunConfig.from_cli(reference) == replace(
        cfg, weight_decay=0.0, snapshots=False, probes=False
    )
    new, new_control = Path(train["out_dir"]), Path(control["out_dir"])
    new_reference = Path(reference["out_dir"])
    assert new != demo_run and not new.exists() and not new_control.exists()
    assert not new_reference.exists() and new_reference not in (new, new_control)
    analyze = parsed[3][1]
    assert Path(analyze["target"]) == new and analyze["null_size"] == inp.a.settings.n_null
    assert [Path(c) for c in analyze["control_runs"]] == [new_control]
    assert [Path(c) for c in analyze["reference_runs"]] == [new_reference]
    assert Path(parsed[4][1]["run_dir"]) == new
    demo = parsed[5][1]
    assert demo["n_seeds"] == 2 and Path(demo["out_dir"]) != demo_run
    html = render_html(build_context(inp))
    assert "convlens demo --seeds 2" in html


def test_model_file_analysis_renders(tmp_path, demo_run):
    """Issue 15 (the report's content)."""
    from convlens.pipelines import analyze_target, write_result

    model = tmp_path / "net.safetensors"
    shutil.copy(demo_run / "model.safetensors", model)
    result, dest = analyze_target(str(model), n_null=200, seed=0)
    write_result(result, dest)
    assert dest == tmp_path / "net.safetensors.analysis.json"
    from click.testing import CliRunner

    from convlens.cli import cli

    r = CliRunner().invoke(cli, ["report", str(dest)])
    assert r.exit_code == 0, r.output
    out = tmp_path / "net.safetensors.report.html"
    assert r.output.strip() == f"wrote {out}"
    html = out.read_text()
    assert "net.safetensors" in html and '<section id="layers">' in html
    assert html.count('<svg class="kern"') >= 16  # weights read back from the safetensors file
    # issue 23: a model file's report has only the sections it has data for, and names the rest
    for sid in ("training", "evolution", "distribution", "seeds"):
        assert f'<section id="{sid}">' not in html and f'href="#{sid}"' not in html, sid
    assert "Not in this report, for want of data in the analysis: " in html
    assert "No data" not in html
    cmds = build_context(load_inputs(dest))["reproduce"]["commands"]
    name, params = _parse(cmds[0]["cmd"])
    assert name == "analyze" and params["target"] == str(model)
    assert Path(params["out_file"]) != dest and params["null_size"] == 200
    assert _parse(cmds[1]["cmd"])[1]["run_dir"] == params["out_file"]


def test_reproduce_train_command_rebuilds_the_same_weights(demo_run, tmp_path, no_figures):
    """Issue 15 (the report's content)."""
    from click.testing import CliRunner
    from safetensors.numpy import load_file

    from convlens.cli import cli

    cmds = build_context(load_inputs(demo_run))["reproduce"]["commands"]
    argv = shlex.split(cmds[0]["cmd"])[1:]
    argv[argv.index("--out") + 1] = str(tmp_path / "again")  # the same command, another new folder
    r = CliRunner().invoke(cli, [*argv, "-q"])
    assert r.exit_code == 0, r.output
    before = load_file(str(demo_run / "model.safetensors"))
    after = load_file(str(tmp_path / "again" / "model.safetensors"))
    assert before.keys() == after.keys()
    for k in before:
        assert np.array_equal(before[k], after[k]), k


def test_reproduce_commands_keep_the_cadence_and_the_ranks(tiny_run_analysis, tmp_path) -> None:
    """A run trained with ``--snapshot-every`` by 2 ranks is rerun the same way: torchrun with the
    per-rank batch size and the same snapshot option.

    Regression: found testing the merged tree as an outsider (what `report` reads and writes)."""
    import copy
    import shlex

    from convlens.report.answer import run_commands

    a = copy.deepcopy(tiny_run_analysis)
    assert a.run is not None
    a.run.config.snapshot_every = 2
    a.run.world_size = 2
    cmds = run_commands(a, tmp_path / "run", None)
    train = shlex.split(cmds[0]["cmd"])
    assert train[:6] == ["torchrun", "--nproc_per_node", "2", "-m", "convlens", "train"]
    assert train[train.index("--snapshot-every") + 1] == "2"
    assert train[train.index("--batch-size") + 1] == str(a.run.config.batch_size)

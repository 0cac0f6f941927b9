"""`report/beside.py`: `convlens report RUN --beside OTHER` and `convlens demo --beside OTHER`
(issue 27): the other run's first-layer answer lines beside this run's, both layers' kernels as
images, the link to its report, the commands behind it; bad values refused in one line before
anything is written (for the demo, before anything is trained)."""

from __future__ import annotations

import base64
import copy
import html
import io
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from convlens.analysis.evidence.answer import answer
from convlens.cli import cli
from convlens.report import build_report
from convlens.report.beside import KEYS, MAX_UNITS, _kernel_set, tiles
from convlens.runs.layout import RunLayout


def _analysed_copy(tiny_run, analysis, to: Path, dataset: str | None = None, seeds=False) -> Path:
    """A copy of the tiny faces run with its analysis written (``dataset``: renamed in the
    analysis, so that two columns can be told apart; ``seeds``: with a one-seed seeds.json, as a
    demo folder has)."""
    from convlens.analysis.evidence.seeds import aggregate
    from convlens.pipelines import write_result

    d = Path(shutil.copytree(tiny_run, to))
    a = copy.deepcopy(analysis)
    if dataset is not None:
        a.run.dataset.name = dataset
    write_result(a, RunLayout(d).analysis)
    if seeds:
        RunLayout(d).seeds_json.write_text(aggregate([a], [a.run.config.seed]).to_json())
    return d


@pytest.fixture
def two_runs(tiny_run, tiny_run_analysis, tmp_path):
    """Two analysed copies of the tiny faces run: "mine", and "other" shown as dataset
    "other-data" with a seeds.json (a demo folder)."""
    mine = _analysed_copy(tiny_run, tiny_run_analysis, tmp_path / "mine")
    other = _analysed_copy(tiny_run, tiny_run_analysis, tmp_path / "other", "other-data", True)
    return [(mine, read_analysis(mine)), (other, read_analysis(other))]


def _beside_html(report: Path) -> str:
    """The comparison's part of a report page."""
    page = report.read_text(encoding="utf-8")
    found = re.search(r'<div class="beside" id="beside">(.*?)</details>\n</div>', page, re.S)
    assert found is not None
    return found.group(1)


def read_analysis(run: Path):
    from convlens.analysis.result import AnalysisResult, SeedsSummary

    layout = RunLayout(run)
    seeds = SeedsSummary.read(layout.seeds_json) if layout.seeds_json.is_file() else None
    return AnalysisResult.read(layout.analysis), seeds


def test_the_other_runs_answer_lines_sit_beside_this_runs(two_runs, tmp_path, no_figures):
    (mine, (a, _)), (other, (b, b_seeds)) = two_runs
    build_report(other)  # its own report, which the comparison links to
    text = _beside_html(build_report(mine, beside=other))
    assert "the first layer on other-data" in text and "this run (faces)" in text
    assert '<a href="../other/report.html">' in text
    assert "report.html</a>. The two columns are not compared" in text  # the words stay apart
    mine_lines = {x.key: x for x in answer(a).lines}
    their_lines = {x.key: x for x in answer(b, b_seeds).lines}
    rows = re.findall(r"<tr><th scope=\"row\">(.*?)</tr>", text, flags=re.S)
    keys = [k for k in KEYS if k in mine_lines or k in their_lines]
    assert len(rows) == len(keys) >= 2
    for key, row in zip(keys, rows, strict=True):
        cells = re.findall(r"<td>(.*?)</td>", row, flags=re.S)
        for cell, line in zip(cells, (mine_lines.get(key), their_lines.get(key)), strict=True):
            assert html.escape(line.figure or line.text, quote=False) in cell.replace("&#39;", "'")
            assert line.verdict in cell
    units = a.first_layer.matching.units.n_units
    assert text.count('<img src="data:image/png;base64,') == 2 * min(units, MAX_UNITS)
    # the commands rebuild the other run and this report with it beside, into new places
    cmds = re.findall(r"<code>(convlens [^<]*)</code>", text)
    demo, report = (shlex.split(html.unescape(c)) for c in cmds[-2:])
    assert demo[:2] == ["convlens", "demo"] and demo[demo.index("--out") + 1] != str(other)
    assert report[:3] == ["convlens", "report", str(mine)] and "--beside" in report


def test_without_beside_the_report_has_no_comparison(two_runs, no_figures):
    (mine, _), _ = two_runs
    assert 'id="beside"' not in build_report(mine).read_text(encoding="utf-8")


def test_a_run_that_is_not_a_demo_is_rebuilt_by_its_own_commands(
    tiny_run, tiny_run_analysis, tmp_path, no_figures
):
    """A plain run beside (no seeds.json) is rebuilt by its train and analyse lines, not by a demo
    line that would train another recipe; two runs on one dataset are told apart by folder; the
    link to the other report is percent-encoded and relative."""
    mine = _analysed_copy(tiny_run, tiny_run_analysis, tmp_path / "mine")
    other = _analysed_copy(tiny_run, tiny_run_analysis, tmp_path / "other #1")
    build_report(other)
    text = _beside_html(build_report(mine, beside=other))
    assert f"this run (faces, {mine})" in text and f"faces, {other}" in text
    assert '<a href="../other%20%231/report.html">' in text
    cmds = [
        shlex.split(html.unescape(c)) for c in re.findall(r"<code>(convlens [^<]*)</code>", text)
    ]
    assert [c[1] for c in cmds] == ["train", "analyze", "report"]
    assert cmds[0][cmds[0].index("--out") + 1] == cmds[-1][-1]  # the new run is the one beside


def test_an_analysis_from_an_older_convlens_is_refused_with_the_fix(two_runs, tmp_path):
    import json

    (mine, _), (other, _) = two_runs
    path = RunLayout(other).analysis
    doc = json.loads(path.read_text())
    doc["schema_version"] = 3
    path.write_text(json.dumps(doc))
    r = CliRunner().invoke(cli, ["report", str(mine), "--beside", str(other)])
    assert r.exit_code == 2 and len(r.stderr.splitlines()) == 1
    assert "--beside" in r.stderr and "rebuild it with this convlens" in r.stderr


@pytest.mark.parametrize(
    ("which", "message"),
    [
        ("missing", "is not a run directory"),
        ("same", "is the run being reported"),
        ("empty", "has no analysis.json"),
        ("model", "is not the analysis of a training run"),
    ],
)
def test_a_bad_beside_is_one_line_and_writes_nothing(two_runs, tmp_path, which, message):
    (mine, (a, _)), _ = two_runs
    target = {"missing": tmp_path / "nope", "same": mine, "empty": tmp_path / "empty"}.get(which)
    if which == "empty":
        target.mkdir()
    if which == "model":
        target = tmp_path / "model"
        target.mkdir()
        b = copy.deepcopy(a)
        b.run, b.source.kind, b.source.path = None, "model_file", "m.safetensors"
        (target / "analysis.json").write_text(b.to_json())
    r = CliRunner().invoke(cli, ["report", str(mine), "--beside", str(target)])
    assert r.exit_code == 2 and len(r.stderr.splitlines()) == 1, r.output
    assert message in r.stderr and "--beside" in r.stderr
    assert not (mine / "report.html").exists()


def test_the_demo_checks_beside_before_training(tmp_path):
    out = tmp_path / "demo"
    r = CliRunner().invoke(cli, ["demo", "--out", str(out), "--beside", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "is not a run directory" in r.stderr
    assert not out.exists()


def test_tiles_draw_each_unit_on_its_own_scale_in_colour():
    from PIL import Image

    w = np.zeros((2, 3, 5, 5))
    w[0, 0] = 2.0  # red only: red at full, green and blue at mid grey
    w[1] = -0.1  # grey and negative everywhere: dark, the same in every channel
    out = tiles(w, None, "natural")
    assert _kernel_set("n", w, None)["colour"].startswith("; colour: the unit's red")
    assert _kernel_set("n", w[:, :1], None)["colour"] == ""
    assert _kernel_set("n", np.zeros((2, 4, 5, 5)), None)["colour"] == "; input channel 0 of 4"
    assert [t["alt"] for t in out] == [
        "natural unit 0: not categorised",
        "natural unit 1: not categorised",
    ]
    pixels = []
    for t in out:
        raw = base64.b64decode(t["src"].split(",", 1)[1])
        pixels.append(np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))[0, 0].tolist())
    assert pixels == [[255, 128, 128], [0, 0, 0]]
    assert tiles(None, None, "x") == [] and tiles(np.zeros((3, 5)), None, "x") == []

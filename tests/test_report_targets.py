"""What `convlens report` reads and where it may write (found by testing the merged tree as an
outsider): a model file analysed with data renders (theoretical receptive fields only, no
effective ones), and the report never overwrites a file that is not a report."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from safetensors.torch import save_file

from convlens.cli import cli
from tests import model_zoo


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
    weights = model_analysis.parent / "chain.safetensors"
    line = _one_line(CliRunner().invoke(cli, ["report", str(weights)]))
    assert "is not an analysis" in line and "convlens analyze chain.safetensors" in line


def test_reproduce_commands_keep_the_cadence_and_the_ranks(tiny_run_analysis, tmp_path) -> None:
    """A run trained with ``--snapshot-every`` by 2 ranks is rerun the same way: torchrun with the
    per-rank batch size and the same snapshot option."""
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


@pytest.mark.slow
def test_a_run_records_its_data_path_absolute(tmp_path, monkeypatch) -> None:
    """`train --data npz:d.npz` from one folder; analysing or resuming from another finds it."""
    import json

    import numpy as np

    from convlens.data.loaders import absolute_data_spec

    work = tmp_path / "work"
    work.mkdir()
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(60, 1, 8, 8), dtype=np.uint8)
    np.savez(work / "d.npz", x=x, y=np.arange(60) % 2)
    monkeypatch.chdir(work)
    args = ["train", "--data", "npz:d.npz", "--epochs", "1", "--out", "r", "-q"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    recorded = json.loads((work / "r" / "run.json").read_text())["config"]["data"]
    assert recorded == f"npz:{work / 'd.npz'}"
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli, ["analyze", str(work / "r"), "--null-size", "100"])
    assert r.exit_code == 0, r.output
    # the same data given relatively on resume is not a contradiction
    monkeypatch.chdir(work)
    r = CliRunner().invoke(cli, ["train", "--resume", "--out", "r", "--data", "npz:d.npz", "-q"])
    assert r.exit_code == 0, r.output
    assert absolute_data_spec("faces") == "faces" and absolute_data_spec("npz:") == "npz:"

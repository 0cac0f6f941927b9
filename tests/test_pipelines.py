"""``convlens.pipelines``: the library functions behind the ``train`` and ``analyze`` commands
(default run folder, resume config, train_run, analyze_target), tested without click."""

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from convlens.analysis.result import SCHEMA_VERSION, AnalysisResult
from convlens.errors import ConvlensError
from convlens.pipelines import analyze_target, default_run_dir, resume_config, train_run
from convlens.summary import analysis_summary
from convlens.train import TrainConfig


def test_default_run_dir_is_a_safe_name():
    assert default_run_dir("faces", 3) == "runs/faces-seed3"
    assert default_run_dir("npz:/a b/c.npz", 0) == "runs/npz_a_b_c.npz-seed0"


def test_resume_config_reads_the_run_and_extends_epochs(tiny_run, tmp_path):
    cfg = resume_config(tiny_run)
    assert cfg.epochs == 3 and cfg.data == "faces"
    assert resume_config(tiny_run, 10).epochs == 10
    assert resume_config(tiny_run, 2).epochs == 3  # never shortens a run
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"config": "nope"}))
    with pytest.raises(ConvlensError, match="no config to resume"):
        resume_config(run)
    (run / "run.json").write_text(json.dumps({"config": {"data": "faces", "colour": 1}}))
    with pytest.raises(ConvlensError, match="unknown field 'colour'"):
        resume_config(run)


@pytest.mark.slow
def test_train_run_new_then_resume_extends(tmp_path):
    out = tmp_path / "run"
    cfg = TrainConfig(epochs=1, ood=["noise"], ood_size=8, snapshots=False, probes=False)
    first = train_run(cfg, out, progress=False)
    assert first.result.epochs == 1 and first.out == str(out)
    assert first.summary()[1] == f"run directory: {out}"
    again = train_run(None, out, resume=True, extend_epochs=2, progress=False)
    assert again.result.epochs == 2
    assert json.loads((out / "run.json").read_text())["config"]["epochs"] == 2
    with pytest.raises(ConvlensError, match="needs a training config"):
        train_run(None, tmp_path / "other")


@pytest.mark.slow
def test_analyze_target_writes_a_typed_result(tiny_run_copy, tmp_path):
    result, dest = analyze_target(tiny_run_copy, n_null=200)
    assert dest == tiny_run_copy / "analysis.json"
    assert AnalysisResult.read(dest) == result
    lines = analysis_summary(result)
    assert lines[0].startswith("conv1: 16 kernels 5x5") and "above the random null" in lines[0]
    assert any(line.startswith("layer == cross-correlation") for line in lines)
    assert any("ID-vs-OOD AUROC" in line for line in lines)

    rng = np.random.default_rng(0)
    save_file({"stem.weight": rng.standard_normal((4, 1, 3, 3))}, str(tmp_path / "m.safetensors"))
    result, dest = analyze_target(tmp_path / "m.safetensors", n_null=200)
    assert dest == tmp_path / "m.safetensors.analysis.json"
    assert json.loads(dest.read_text())["schema_version"] == SCHEMA_VERSION
    assert analysis_summary(result)[0].startswith("stem: 4 kernels 3x3")
    with pytest.raises(ConvlensError, match="neither a run directory nor a model file"):
        analyze_target(tmp_path / "missing")


def test_analyze_out_never_overwrites_what_it_analyses(signal_runs: Path, tmp_path: Path) -> None:
    """``analyze MODEL --out MODEL`` replaced the model file with its own analysis (and
    ``analyze RUN --out RUN/model.safetensors`` the run's weights).

    Regression: integration QA of the merged branches (--out never overwrites the input)."""
    from safetensors.torch import save_file

    from convlens.pipelines import analyze_target
    from tests.model_zoo import chain

    model = tmp_path / "m.safetensors"
    save_file(chain().state_dict(), str(model))
    before = model.read_bytes()
    run = signal_runs / "run"
    weights = (run / "model.safetensors").read_bytes()
    for target, out in ((model, model), (run, run / "model.safetensors")):
        with pytest.raises(ConvlensError, match="part of what is analysed"):
            analyze_target(target, out=out, n_null=100)
    assert model.read_bytes() == before and (run / "model.safetensors").read_bytes() == weights

"""The library functions behind the CLI commands, tested without click."""

import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import save_file

from convlens.analysis.result import SCHEMA_VERSION, AnalysisResult, SeedsSummary
from convlens.commands import ExplainArgs, explain_text, kernel_details, parse_ints, parse_padding
from convlens.demo import demo_recipe, run_demo
from convlens.errors import ConvlensError
from convlens.pipelines import analyze_target, default_run_dir, resume_config, train_run
from convlens.summary import analysis_summary
from convlens.train import TrainConfig
from convlens.train.recipes import DEMO_RECIPE


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


def test_analyze_target_writes_a_typed_result(tiny_run_copy, tmp_path):
    result, dest = analyze_target(tiny_run_copy, n_null=200)
    assert dest == tiny_run_copy / "analysis.json"
    assert AnalysisResult.read(dest) == result
    lines = analysis_summary(result)
    assert lines[0].startswith("conv1: 8 kernels 5x5") and "above the random null" in lines[0]
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


def test_demo_recipe():
    assert demo_recipe(None, None) == DEMO_RECIPE
    assert demo_recipe("faces", 5)["epochs"] == 5
    assert demo_recipe("faces", 5)["weight_decay"] == DEMO_RECIPE["weight_decay"]
    # another dataset keeps the recipe but not the faces model, and says so (issue 15)
    digits = demo_recipe("digits", None)
    assert digits == {k: v for k, v in DEMO_RECIPE.items() if k != "model"} | {"data": "digits"}
    from convlens.demo import recipe_notes

    assert recipe_notes(demo_recipe(None, None)) == []
    (note,) = recipe_notes(digits)
    assert "faces-cnn is built for faces" in note and "weight_decay 4.0" in note


@pytest.mark.slow
def test_run_demo_two_seeds(tmp_path):
    lines: list[str] = []
    path = run_demo(
        tmp_path / "demo", epochs=2, n_seeds=2, n_null=200, progress=False, log=lines.append
    )
    assert path == tmp_path / "demo" / "report.html" and path.is_file()
    seeds = SeedsSummary.read(tmp_path / "demo" / "seeds.json")
    assert seeds.n == 2 and seeds.seeds == [10, 11]  # disjoint from the recipe sweep's 0-2
    second = AnalysisResult.read(tmp_path / "demo" / "seeds" / "seed-11" / "analysis.json")
    assert second.run and any(c.kind == "random_labels" for c in second.controls)
    assert (tmp_path / "demo" / "seeds" / "random-labels-seed-10" / "model.safetensors").is_file()
    main = AnalysisResult.read(tmp_path / "demo" / "analysis.json")
    assert main.verdicts.kernel_learning is not None
    assert "random_labels" in main.verdicts.kernel_learning.controls
    assert any("disjoint from" in n and "[0, 1, 2]" in n for n in main.notes)
    assert lines[0].startswith("[train 1/2] faces, seed 10, 2 epochs") and "[report]" in lines[-1]
    shutil.rmtree(tmp_path / "demo")


def test_explain_text_and_check():
    text, ok = explain_text(
        ExplainArgs(
            "1 2 3; 4 5 6; 7 8 9", "9 8 7 6; 5 4 3 2; 1 2 3 4; 5 6 7 8", expect="146 157; 200 233"
        )
    )
    assert not ok and "cell (0, 0): expected 146, actual 154" in text
    text, ok = explain_text(ExplainArgs("1 0; 0 1", "1 2; 3 4", fmt="json"))
    assert ok and json.loads(text)["output"] == [[5]]


def test_argument_parsers():
    assert parse_ints("2", "stride") == 2 and parse_ints("2x1", "stride") == (2, 1)
    assert parse_padding("SAME") == "same" and parse_padding("1,2") == (1, 2)
    with pytest.raises(ConvlensError, match="padding must be valid, same, full"):
        parse_padding("lots")
    with pytest.raises(ConvlensError, match="stride is empty"):
        parse_ints(" ", "stride")
    assert kernel_details("sobel_x").startswith("sobel_x (3x3")

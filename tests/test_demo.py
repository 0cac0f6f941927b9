"""``convlens.demo``: its options, the recipe, a two-seed demo end to end and the demo folder's
rules (refuses foreign folders and training runs, rewrites a previous demo, ``--force``)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from convlens.analysis.result import AnalysisResult, SeedsSummary
from convlens.demo import DemoOptions, demo_recipe, run_demo
from convlens.errors import ConvlensError
from convlens.train import RunDir
from convlens.train.recipes import DEMO_RECIPE


def test_demo_options_defaults_frozen_and_one_way_to_give_them(tmp_path):
    o = DemoOptions()
    assert (o.data, o.epochs, o.seed, o.n_seeds, o.n_null, o.force) == (
        None, None, 10, 5, 2000, False,
    )  # fmt: skip
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.seed = 1  # type: ignore[misc]
    assert DemoOptions.of(None, {"seed": 3}) == DemoOptions(seed=3)
    with pytest.raises(TypeError, match="not both"):
        run_demo(tmp_path / "d", DemoOptions(), n_null=100)
    assert not (tmp_path / "d").exists()


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


def test_demo_refuses_foreign_folders_and_train_runs(tmp_path, tiny_run_copy):
    from convlens.demo import run_demo

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    (mine / "seeds").mkdir()
    (mine / "seeds" / "paper.tex").write_text("keep")
    for out, message in ((mine, "files that are not a demo run"), (tiny_run_copy, "not a demo")):
        before = sorted(p for p in out.rglob("*"))
        with pytest.raises(ConvlensError, match=message) as info:
            run_demo(out, epochs=1, n_seeds=1, n_null=100, progress=False)
        assert info.value.hint_key == "folder_not_empty"
        assert sorted(p for p in out.rglob("*")) == before
    with pytest.raises(ConvlensError, match="seed must be"):
        run_demo(tmp_path / "neg", seed=-1, progress=False)
    assert not (tmp_path / "neg").exists()
    assert RunDir(tmp_path / "x").is_demo() is False


@pytest.mark.slow  # two 1-epoch demos
def test_demo_is_marked_rewrites_itself_and_force_keeps_foreign_files(tmp_path):
    from convlens.demo import run_demo

    out = tmp_path / "demo"
    run_demo(out, epochs=1, n_seeds=2, n_null=100, progress=False)
    assert json.loads((out / "demo.json").read_text())["seeds"] == [10, 11]  # not the sweep's
    assert RunDir(out).is_demo()
    run_demo(out, epochs=1, n_seeds=1, n_null=100, progress=False)  # a previous demo: rewritten
    # the old seed-11 run and its random-label control are gone with it; seed 10's control is new
    assert sorted(p.name for p in (out / "seeds").iterdir()) == [
        "no-weight-decay-seed-10",  # the reference run, not selected on the kernel metric
        "random-labels-seed-10",
    ]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    run_demo(mine, epochs=1, n_seeds=1, n_null=100, progress=False, force=True)
    assert (mine / "notes.txt").read_text() == "keep" and (mine / "report.html").is_file()
    assert not list(tmp_path.rglob(".lock")) and not list(tmp_path.rglob(".*.tmp"))

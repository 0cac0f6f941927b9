"""`convlens export RUN --tensorboard DIR`, read back with TensorBoard's own EventAccumulator."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("tensorboard")

from convlens.cli import cli
from convlens.errors import ConvlensError
from convlens.export.tensorboard import (
    PIXELS_PER_TAP,
    export_tensorboard,
    kernel_grid,
    read_events,
)
from convlens.pipelines import write_result
from convlens.train import RunDir


def test_kernel_grid_layout_and_scale():
    w = np.zeros((2, 3, 3, 3))
    w[1, 2, 0, 0] = -4.0
    w[1, 2, 2, 2] = 2.0
    g = kernel_grid(w)
    t = 3 * PIXELS_PER_TAP
    assert g.shape == (2 * (t + 1) + 1, 3 * (t + 1) + 1)
    # row 1, column 2: top-left tap is the most negative (0.0), bottom-right 2/4 -> 0.75
    y, x = 1 + (t + 1), 1 + 2 * (t + 1)
    assert g[y, x] == 0.0 and g[y + t - 1, x + t - 1] == 0.75
    assert g[1, 1] == 0.5  # an all-zero kernel is mid-grey


def test_export_reads_back_with_event_accumulator(tiny_run_copy, tiny_run_analysis, tmp_path):
    write_result(tiny_run_analysis, tiny_run_copy / "analysis.json")
    out = tmp_path / "tb"
    s = export_tensorboard(tiny_run_copy, out)
    ev = read_events(out / "run")
    metrics = RunDir(tiny_run_copy).read_metrics()
    assert [st for st, _ in ev["scalars"]["val/accuracy"]] == [1, 2, 3]
    for (step, v), row in zip(ev["scalars"]["train/loss"], metrics, strict=True):
        assert step == row["epoch"] and v == pytest.approx(row["train_loss"], rel=1e-6)
    evo = tiny_run_analysis.evolution
    got = dict(ev["scalars"]["evolution/fraction_above_null95"])
    assert got == pytest.approx(
        {r.epoch: r.first_layer_fraction_above_null95 for r in evo.epochs}, rel=1e-6
    )
    snaps = sorted(int(p.stem[6:]) for p in (tiny_run_copy / "snapshots").glob("*.safetensors"))
    # 16 kernels of 1x5x5: a 16 x 1 grid of 40-pixel tiles with 1-pixel gaps, one per snapshot
    t = 5 * PIXELS_PER_TAP
    assert ev["images"]["kernels/conv1"] == [(e, t + 2, 16 * (t + 1) + 1) for e in snaps]
    assert {"weights/conv1.weight", "weights/conv2.bias"} <= set(ev["histograms"])
    assert [(st, n) for st, n in ev["histograms"]["weights/conv1.weight"]] == [
        (e, 400.0) for e in snaps
    ]
    assert [st for st, *_ in ev["images"]["feature_maps/conv2"]] == snaps
    assert s.images["kernels/conv1"] == len(snaps)
    assert "--samples_per_plugin images=" in "\n".join(s.lines())


def test_export_refuses_and_leaves_nothing(tiny_run, tmp_path):
    with pytest.raises(ConvlensError, match="not a convlens run"):
        export_tensorboard(tmp_path, tmp_path / "tb")
    target = tmp_path / "tb" / "run"
    target.mkdir(parents=True)
    (target / "mine.txt").write_text("keep")
    with pytest.raises(ConvlensError, match="already exists and is not empty"):
        export_tensorboard(tiny_run, tmp_path / "tb")
    assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == ["run"]


def test_cli_export(tiny_run, tmp_path):
    r = CliRunner().invoke(cli, ["export", str(tiny_run), "--tensorboard", str(tmp_path / "tb")])
    assert r.exit_code == 0, r.output
    assert "tensorboard --logdir" in r.output
    ev = read_events(tmp_path / "tb" / "run")
    assert "train/accuracy" in ev["scalars"] and "evolution/median_score" not in ev["scalars"]
    assert json.loads((tiny_run / "run.json").read_text())["status"] == "complete"


def test_export_draws_the_final_weights_no_snapshot_holds(tiny_run_copy, tmp_path):
    """The final weights (model.safetensors) are read like every run file: their dense layers at
    the last epoch beside the snapshots; in a run without snapshots, all of them and the first
    layer's kernel grid. A corrupt file is refused before anything is written."""
    import shutil

    ev = read_events(export_tensorboard(tiny_run_copy, tmp_path / "a").out)
    assert ev["histograms"]["weights/fc1.weight"] == [(3, 32.0 * 16 * 6 * 6)]
    assert len(ev["histograms"]["weights/conv1.weight"]) == len(
        list((tiny_run_copy / "snapshots").iterdir())
    )
    shutil.rmtree(tiny_run_copy / "snapshots")
    ev = read_events(export_tensorboard(tiny_run_copy, tmp_path / "b").out)
    assert [st for st, *_ in ev["images"]["kernels/conv1"]] == [3]
    assert ev["histograms"]["weights/conv1.weight"] == [(3, 400.0)]
    (tiny_run_copy / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    with pytest.raises(ConvlensError, match=r"model\.safetensors' is not a valid safetensors"):
        export_tensorboard(tiny_run_copy, tmp_path / "c")
    assert not (tmp_path / "c").exists()


@pytest.mark.slow  # about 1-2 s; the inner loop keeps the faster tests of this module
def test_export_writes_each_layers_channels(tiny_run_copy, tmp_path):
    """Issue 24: the exemplar crops and maximising inputs of every conv layer as images."""
    from convlens.analysis import analyze_run
    from convlens.export.tensorboard import channel_grids
    from convlens.runs import read

    a = analyze_run(tiny_run_copy, n_null=100)
    write_result(a, tiny_run_copy / "analysis.json")  # with channels.safetensors beside it
    out = tmp_path / "tb"
    s = export_tensorboard(tiny_run_copy, out)
    ev = read_events(out / "run")
    arrays = read.read_tensors(tiny_run_copy / "channels.safetensors")
    for rec in a.channels or []:
        grids = channel_grids(arrays, rec.layer)
        for name in ("top_exemplars", "bottom_exemplars", "maximising_inputs"):
            tag = f"channels/{rec.layer}/{name}"
            assert s.images[tag] == 1
            (_step, width, height) = ev["images"][tag][0]  # read_events gives (step, width, height)
            assert (height, width) == grids[name].shape
            assert 0 <= grids[name].min() <= grids[name].max() <= 1
        # one row of k crops per channel
        top = arrays[f"{rec.layer}/0/top"]
        assert grids["top_exemplars"].shape[0] == len(rec.channels) * (4 * top.shape[2] + 1) + 1

"""Memory of a model-file analysis with data (issue 25): what used to grow with the model's maps and
the data's size is now bounded, and the bounded paths give the same figures as the unbounded ones.

Measured on real files (docs/your-own-model.md, "Memory"): a 416 px YOLOX detector took 9.8 GB and a
224 px orientation classifier ran out of 24 GB; both now peak under 1.5 GiB. These tests check each
bound on small stand-ins with the budgets shrunk."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from convlens.analysis.measure import featuremaps
from tests.onnx_tools import needs_onnx, torchscript_export


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    offset=st.sampled_from([0.0, 1.0, 1e3]),
    cuts=st.lists(st.integers(1, 5), min_size=1, max_size=4),
)
def test_streamed_channel_correlation_equals_the_two_pass_one(seed, offset, cuts):
    """Chunks of probes added one at a time give the correlation of all probes at once (to 1e-9),
    with a large common offset and a constant channel (which reads 0, as before)."""
    rng = np.random.default_rng(seed)
    maps = rng.normal(size=(sum(cuts), 4, 3, 5)) + offset
    maps[:, 2] = 7.0  # a constant channel
    acc = featuremaps.CorrelationSum()
    start = 0
    for n in cuts:
        acc.add(maps[start : start + n].astype(np.float32))
        start += n
    want = featuremaps.channel_correlation(maps.astype(np.float32))  # centred, then normalised
    np.testing.assert_allclose(acc.correlation(), want, atol=1e-9)
    assert np.all(acc.correlation()[2] == 0.0)


def test_ood_sets_shrink_for_large_items_and_the_analysis_says_so():
    from convlens.analysis.orchestration.model_data import (
        OOD_MIN_PER_SET,
        OOD_PER_SET,
        ood_count,
    )

    assert ood_count((3, 25, 25)) == OOD_PER_SET  # the bundled data: unchanged
    assert ood_count((3, 224, 224)) == 100
    assert ood_count((3, 416, 416)) == 32
    assert ood_count((3, 2048, 2048)) == OOD_MIN_PER_SET


def _onnx_file(tmp_path):
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3), nn.ReLU(), nn.Conv2d(6, 5, 3, stride=2), nn.ReLU(),
        nn.Flatten(), nn.LazyLinear(4),
    )  # fmt: skip
    model(torch.zeros(1, 3, 16, 16))
    path = tmp_path / "m.onnx"
    torch.onnx.export(model.eval(), (torch.zeros(2, 3, 16, 16),), str(path), dynamo=False,
                      input_names=["x"], dynamic_axes={"x": {0: "N"}})  # fmt: skip
    return path


@needs_onnx
@torchscript_export
def test_a_symbolic_batch_is_cut_to_the_map_budget_with_the_same_activations(tmp_path, monkeypatch):
    """With the budget below one image's maps, one image runs at a time; the per-image scores and
    outputs equal those of one 256-image batch exactly (the maps are reduced per batch now, not
    held for a chunk of batches)."""
    from convlens.analysis.model import onnxrun

    path = _onnx_file(tmp_path)
    x = np.random.default_rng(0).normal(size=(9, 3, 16, 16)).astype(np.float32)
    big = onnxrun.OnnxModel(path)
    assert big.symbolic_batch(x) == onnxrun.DEFAULT_BATCH
    want = big.collect(big.batches(x)[0], "a")
    monkeypatch.setattr(onnxrun, "MAP_BUDGET", 1)
    small = onnxrun.OnnxModel(path)
    assert small.symbolic_batch(x) == 1
    got = small.collect(small.batches(x)[0], "a")
    assert got.n == want.n == 9
    np.testing.assert_array_equal(got.msp.values, want.msp.values)
    for layer in want.layer_scores:
        np.testing.assert_allclose(got.scores(layer), want.scores(layer), rtol=1e-6)
        np.testing.assert_allclose(got.maxes(layer), want.maxes(layer), rtol=1e-6)


@pytest.mark.slow  # two analyses with data
@needs_onnx
@torchscript_export
def test_layers_past_the_array_budget_keep_exemplars_but_no_crops(tmp_path, monkeypatch):
    """The channel stage keeps crops while they fit :data:`ARRAY_BUDGET`, layer by layer in network
    order; a layer past it keeps its exemplars, positions and boxes, and its rule says why it has
    no crops. Nothing of the layer before it changes."""
    from convlens.analysis.orchestration import channels
    from convlens.runs import read
    from convlens.runs.layout import channels_path
    from tests.onnx_tools import analyze

    path = _onnx_file(tmp_path)
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(30, 3, 16, 16)).astype(np.float32),
             y=np.arange(30) % 2)  # fmt: skip
    args = ("--data", f"npz:{tmp_path / 'd.npz'}", "--ood", "noise")
    r, full = analyze(path, tmp_path / "full.json", *args)
    assert r.exit_code == 0, r.output
    first_bytes = 6 * 2 * 6 * 3 * 3 * 3 * 4  # 6 channels x 2k crops of 3x3x3 float32
    monkeypatch.setattr(channels, "ARRAY_BUDGET", first_bytes)
    r, cut = analyze(path, tmp_path / "cut.json", *args)
    assert r.exit_code == 0, r.output
    assert full is not None and cut is not None
    (a_full, b_full), (a_cut, b_cut) = full["channels"], cut["channels"]
    assert a_cut == a_full
    assert "past the 0 MiB budget" in b_cut["rule"] and "kept" in b_cut["rule"]
    for ch_full, ch_cut in zip(b_full["channels"], b_cut["channels"], strict=True):
        assert ch_cut["top"] == ch_full["top"] and ch_cut["bottom"] == ch_full["bottom"]
        assert ch_cut["top"][0]["box"] and ch_cut["arrays"] == {}
    arrays = read.read_tensors(channels_path(tmp_path / "cut.json"))
    assert all(key.startswith(a_cut["layer"] + "/") for key in arrays)


def _shrunk_ood_analysis(path, tmp_path, monkeypatch, n_images: int) -> dict:
    """``convlens analyze PATH`` on ``n_images`` 3x16x16 images with a noise OOD set, the OOD budget
    shrunk to 20 such images."""
    from convlens.analysis.orchestration import model_data
    from tests.onnx_tools import analyze

    rng = np.random.default_rng(n_images)
    np.savez(tmp_path / "d.npz", x=rng.uniform(size=(n_images, 3, 16, 16)).astype(np.float32),
             y=np.arange(n_images) % 2)  # fmt: skip
    monkeypatch.setattr(model_data, "OOD_SET_BYTES", 20 * 3 * 16 * 16 * 4)
    r, data = analyze(path, tmp_path / "m.json", "--data", f"npz:{tmp_path / 'd.npz'}",
                      "--ood", "noise", "--no-channels")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert data is not None
    return data


@needs_onnx
@torchscript_export
def test_large_items_get_smaller_ood_sets_with_a_note(tmp_path, monkeypatch):
    data = _shrunk_ood_analysis(_onnx_file(tmp_path), tmp_path, monkeypatch, 30)
    assert any(n.startswith("OOD sets of 20 items each, not 100") for n in data["notes"])
    assert [(o["name"], o["n"]) for o in data["distribution"]["ood"]] == [("noise", 20)]


@pytest.mark.parametrize("n", [1, 3])
def test_streamed_correlation_of_a_single_chunk_is_the_two_pass_function(n):
    rng = np.random.default_rng(n)
    maps = rng.normal(size=(n, 3, 4, 4)).astype(np.float32)
    acc = featuremaps.CorrelationSum()
    acc.add(maps)
    np.testing.assert_allclose(acc.correlation(), featuremaps.channel_correlation(maps), atol=1e-12)
    assert featuremaps.CorrelationSum().correlation().shape == (0, 0)  # nothing added


@needs_onnx
@torchscript_export
def test_a_fixed_batch_model_gets_whole_batches_of_ood_items(tmp_path, monkeypatch):
    """Shrunk OOD sets hold whole batches of a model with a fixed batch size (24 here, where the
    budget alone would give 20): the data stage runs instead of refusing a short set."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    model(torch.zeros(1, 3, 16, 16))
    path = tmp_path / "fixed.onnx"
    torch.onnx.export(model.eval(), (torch.zeros(24, 3, 16, 16),), str(path), dynamo=False,
                      input_names=["x"])  # fmt: skip
    data = _shrunk_ood_analysis(path, tmp_path, monkeypatch, 120)
    assert [(o["name"], o["n"]) for o in data["distribution"]["ood"]] == [("noise", 24)]

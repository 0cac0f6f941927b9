"""Probe feature maps derived from weight snapshots (convlens.analysis.measure.probemaps).

Training writes each snapshot epoch's conv weights and the probe images once; the per-epoch maps
are computed when a run is read. Checked against torch's float64 convolution chain (an
independent oracle: im2col + GEMM), against the maps the trainer itself writes when it has no
snapshots to derive them from, and on bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from convlens.analysis.measure import probemaps
from convlens.analysis.measure.featuremaps import load_probes
from convlens.data.datasets import load_bundled
from convlens.errors import ConvlensError
from convlens.train import RunDir, TrainConfig, Trainer

F = torch.nn.functional


def _train(out, data="faces", epochs=3, **kw):
    cfg = TrainConfig(data=data, epochs=epochs, seed=3, ood=["noise"], ood_size=4, **kw)
    Trainer(cfg, load_bundled(data, 3), out, progress=False).train()
    return RunDir(out)


def _torch_chain(x, snap, kernels, pools, dims):
    """Every conv output of the reference CNN in float64 torch (conv -> ReLU -> max-pool)."""
    h = torch.from_numpy(x).double()
    if dims == 1:
        h = h.squeeze(2)
    out = {}
    for i, (k, p) in enumerate(zip(kernels, pools, strict=True)):
        w = torch.from_numpy(snap[f"conv{i + 1}.weight"]).double()
        b = torch.from_numpy(snap[f"conv{i + 1}.bias"]).double()
        conv, pool = (F.conv1d, F.max_pool1d) if dims == 1 else (F.conv2d, F.max_pool2d)
        z = conv(h, w, b, padding=k // 2)
        out[f"conv{i + 1}"] = (z.unsqueeze(2) if dims == 1 else z).numpy()
        h = torch.relu(z)
        if p > 1:
            h = pool(h, p)
    return out


@pytest.mark.parametrize(
    "data",
    [
        "faces",
        pytest.param("digits", marks=pytest.mark.slow),
        pytest.param("signals", marks=pytest.mark.slow),
    ],
)
def test_derived_maps_equal_torch_float64_chain(tmp_path, data):
    run = _train(tmp_path / "r", data=data)
    rec = run.read_run()
    kernels, pools, dims = probemaps.chain_spec(rec["model"])
    assert dims == (1 if data == "signals" else 2)
    x, maps = load_probes(run.root / "probes")
    assert x is not None and sorted(maps) == rec["snapshot_epochs"]
    assert not list((run.root / "probes").glob("epoch-*"))  # nothing per epoch on disk
    for epoch, held in maps.items():
        want = _torch_chain(x, load_file(str(run.snapshot(epoch))), kernels, pools, dims)
        assert sorted(held) == sorted(want)
        for name, m in held.items():
            assert m.dtype == np.float32 and m.shape == want[name].shape
            # float64 result stored as float32: within float32 rounding of the exact chain
            np.testing.assert_allclose(m, want[name], rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_derived_maps_match_what_the_trainer_writes_without_snapshots(tmp_path):
    """The same run (seed, data, config) trained twice: with snapshots (maps derived on read) and
    with probes but no snapshots (the trainer's float32 network writes them). The schedules are
    the same, so are the weights, so the maps agree to float32 rounding."""
    derived = _train(tmp_path / "derived")
    written = _train(tmp_path / "written", snapshots=False)
    assert sorted(p.name for p in (written.root / "probes").glob("epoch-*")) == [
        "epoch-000.safetensors",
        "epoch-001.safetensors",
        "epoch-002.safetensors",
        "epoch-003.safetensors",
    ]
    assert "probes/epoch-NNN.safetensors hold" in written.read_run()["feature_maps"]
    _, a = load_probes(derived.root / "probes")
    _, b = load_probes(written.root / "probes")
    assert sorted(a) == sorted(b) == [0, 1, 2, 3]
    for e in a:
        for name in a[e]:
            scale = float(np.abs(b[e][name]).max())
            np.testing.assert_allclose(a[e][name], b[e][name], rtol=0, atol=1e-5 * scale)


@pytest.mark.slow
def test_a_probe_file_wins_over_the_derivation(tmp_path):
    run = _train(tmp_path / "r")
    _, derived = load_probes(run.root / "probes")
    planted = {k: np.full_like(v, 7.0) for k, v in derived[2].items()}
    save_file(planted, str(run.probe(2)))
    _, maps = load_probes(run.root / "probes")
    assert list(maps) == [0, 1, 2, 3]  # in epoch order
    assert all((maps[2][k] == 7.0).all() for k in planted)
    assert all(np.array_equal(maps[1][k], derived[1][k]) for k in planted)


def test_a_corrupt_snapshot_is_named(tmp_path):
    run = _train(tmp_path / "r")
    snap = run.snapshot(1)
    snap.write_bytes(snap.read_bytes()[:40])
    with pytest.raises(ConvlensError, match=r"epoch-001.safetensors'? is not a valid safetensors"):
        load_probes(run.root / "probes")


@pytest.mark.slow
def test_a_snapshot_that_does_not_fit_the_model_is_named(tmp_path):
    run = _train(tmp_path / "r")
    snap = load_file(str(run.snapshot(2)))
    snap["conv2.weight"] = snap["conv2.weight"][:, :3]
    save_file(snap, str(run.snapshot(2)))
    with pytest.raises(
        ConvlensError, match=r"epoch-002.safetensors'?: cannot derive.*conv2.weight"
    ):
        load_probes(run.root / "probes")


@pytest.mark.parametrize(
    "model",
    [
        {"kernels": [3], "pool": [2, 2]},
        {"kernels": [], "pool": []},
        {"kernels": "x"},
        {"kernels": [3], "pool": [2], "extra": {"dims": 3}},
    ],
)
def test_chain_spec_refuses_what_is_not_a_reference_cnn(model):
    with pytest.raises(ConvlensError, match=r"run\.json: the model entry"):
        probemaps.chain_spec(model)


@pytest.mark.slow
def test_unreadable_run_json_is_named(tmp_path):
    run = _train(tmp_path / "r")
    (run.root / "run.json").write_text("{not json")
    with pytest.raises(ConvlensError, match=r"run\.json'? is not valid JSON"):
        load_probes(run.root / "probes")
    (run.root / "run.json").write_text("[" * 100_000 + "]" * 100_000)  # read as the trainer does
    with pytest.raises(ConvlensError, match="nested too deeply"):
        load_probes(run.root / "probes")


def test_max_pool_drops_the_remainder_like_torch():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 7, 9))
    want = F.max_pool2d(torch.from_numpy(x), 2).numpy()
    assert np.array_equal(probemaps._max_pool(x, 2, 2), want)
    x1 = rng.normal(size=(2, 3, 1, 11))
    want1 = F.max_pool1d(torch.from_numpy(x1[:, :, 0]), 4).numpy()[:, :, None]
    assert np.array_equal(probemaps._max_pool(x1, 4, 1), want1)


@pytest.mark.slow
def test_run_json_states_the_rule(tmp_path):
    rec = json.loads((_train(tmp_path / "r", epochs=1).root / "run.json").read_text())
    assert rec["feature_maps"] == probemaps.RULE


@pytest.mark.slow
def test_ood_probes_are_rebuilt_from_their_recipes(tmp_path):
    """With snapshots the file keeps the training probes; the OOD probes are rebuilt from their
    recipes when read: the same images a run without snapshots builds and writes itself."""
    derived = _train(tmp_path / "d")
    written = _train(tmp_path / "w", snapshots=False)
    rec = derived.read_run()
    xd = load_file(str(derived.probe_inputs))["x"]
    xw = load_file(str(written.probe_inputs))["x"]
    assert (
        len(xd) == sum(p["set"] == "train" for p in rec["probes"]) < len(xw) == len(rec["probes"])
    )
    assert np.array_equal(load_probes(derived.root / "probes")[0], xw)


@pytest.mark.slow
def test_probe_inputs_that_do_not_fit_the_record_are_named(tmp_path):
    run = _train(tmp_path / "r")
    x = load_file(str(run.probe_inputs))["x"]
    save_file({"x": x[:1]}, str(run.probe_inputs))
    with pytest.raises(ConvlensError, match="training probes first"):
        load_probes(run.root / "probes")
    save_file({"x": x}, str(run.probe_inputs))
    rec = run.read_run()
    del rec["dataset"]["normalisation"]
    (run.root / "run.json").write_text(json.dumps(rec))
    with pytest.raises(ConvlensError, match="cannot rebuild the rest"):
        load_probes(run.root / "probes")

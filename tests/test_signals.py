"""The bundled 1-D task (signals) and the 1-D model preset: train, analyse against the 1-D bank."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from convlens.data import signals
from convlens.data.datasets import load_bundled
from convlens.errors import ConvlensError
from convlens.models import build_model, make_spec


def test_signals_are_deterministic_and_labelled():
    a, ya = signals.generate()
    b, yb = signals.generate()
    assert np.array_equal(a, b) and np.array_equal(ya, yb)
    assert a.shape == (3 * signals.PER_CLASS, signals.LENGTH)
    assert np.bincount(ya).tolist() == [signals.PER_CLASS] * 3
    # a tone's power sits at one frequency; white noise spreads it: compare peak-to-mean power
    tone, noise = a[0], a[-1]
    peak = [np.abs(np.fft.rfft(s)).max() / np.abs(np.fft.rfft(s)).mean() for s in (tone, noise)]
    assert peak[0] > 2 * peak[1]
    digest = hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()
    assert digest == hashlib.sha256(signals.generate()[0].tobytes()).hexdigest()


def test_dataset_and_model_shapes():
    ds = load_bundled("signals", 0)
    assert ds.shape == (1, 1, signals.LENGTH) and ds.classes == ["tone", "chirp", "noise"]
    spec = make_spec("signals-cnn", 1, (1, signals.LENGTH), 3)
    model = build_model(spec)
    convs = dict(model.named_convs())
    assert isinstance(convs["conv1"], torch.nn.Conv1d) and convs["conv1"].kernel_size == (9,)
    x = torch.from_numpy(ds.x[:5])
    logits, maps = model.forward_with_convs(x)
    assert logits.shape == (5, 3)
    assert maps["conv1"].shape == (5, 8, 1, 128) and maps["conv2"].shape == (5, 16, 1, 32)
    # the map is exactly conv1d of the signal (float64 oracle)
    w = convs["conv1"].weight.detach().double()
    ref = torch.nn.functional.conv1d(
        x[:, :, 0].double(), w, convs["conv1"].bias.double(), padding=4
    )
    assert torch.allclose(maps["conv1"][:, :, 0].double(), ref, atol=1e-5)
    with pytest.raises(ConvlensError, match="needs inputs of height 1"):
        build_model(make_spec("signals-cnn", 1, (8, 8), 3))


@pytest.mark.slow
def test_signals_train_and_analyse_against_the_1d_bank(tmp_path):
    from convlens.analysis import analyze_run
    from convlens.train import TrainConfig, Trainer

    cfg = TrainConfig(data="signals", epochs=3, ood=["noise"], ood_size=16)
    Trainer(cfg, load_bundled("signals", 0), tmp_path / "run", progress=False).train()
    a = analyze_run(tmp_path / "run", n_null=200)
    first = a.first_layer
    assert first is not None and first.identity.dims == 1 and first.identity.kernel_size == [9]
    m = first.matching
    assert m is not None and m.spectral is not None and m.skipped is None
    assert len(m.spectral.peaks) == 8 and m.spectral.peak_median is not None
    assert first.check is not None and first.check.is_cross_correlation
    assert a.evolution is not None and [r.epoch for r in a.evolution.epochs] == [0, 1, 2, 3]
    assert a.receptive_fields is not None

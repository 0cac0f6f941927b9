"""The in-memory Python API (issue 25): ``convlens.analyze`` takes an ``nn.Module`` with arrays, a
tensor or a DataLoader (and named OOD arrays), analyses it like a model file run through a factory,
writes nothing, and refuses bad input in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import convlens
from convlens.errors import ConvlensError
from convlens.models import build_model
from convlens.models.cnn import make_spec


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return build_model(make_spec("faces-cnn", 1, (25, 25), 2))


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).normal(size=(48, 1, 25, 25)).astype(np.float32)


def test_an_in_memory_module_with_arrays(net, x, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = convlens.analyze(net, x, n_null=200)
    assert [layer.name for layer in r.layers] == ["conv1", "conv2"]
    assert r.source.path == "<in-memory SmallCNN>" and r.source.data == "arrays"
    assert r.verdicts.cross_correlation is not None
    assert r.verdicts.cross_correlation.verdict == "exact"
    assert set(r.headline.auroc["conv1"]) == {"noise"}  # Gaussian noise matched to the data
    assert r.channels is not None and {c.layer for c in r.channels} == {"conv1", "conv2"}
    assert any("nothing was fitted" in n for n in r.notes)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_a_dataloader_and_named_ood_arrays_give_the_same_figures_as_the_arrays(net, x):
    ood = {"flat": np.zeros((10, 1, 25, 25), np.float32)}
    a = convlens.analyze(net, x, ood=ood, n_null=200, channels=False)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(x), torch.zeros(len(x))), batch_size=16
    )
    b = convlens.analyze(net, loader, ood=ood, n_null=200, channels=False)
    assert a.headline.auroc == b.headline.auroc and set(a.headline.auroc["conv1"]) == {"flat"}
    assert a.channels is None


def test_the_kernel_figures_equal_the_model_files(net, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "net.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    from_file = convlens.analyze(path, n_null=200)
    in_memory = convlens.analyze(net, n_null=200)
    for a, b in zip(from_file.layers, in_memory.layers, strict=True):
        assert a.matching is not None and b.matching is not None
        assert a.matching.fraction_above_null95 == b.matching.fraction_above_null95


@pytest.mark.parametrize(
    ("data", "kw", "match"),
    [
        (np.zeros((4, 25)), {}, "expected a non-empty numeric array"),
        (np.full((4, 1, 25, 25), np.nan), {}, "NaN or Inf"),
        ("not data", {}, "dataset 'not data'"),
        (np.zeros((4, 1, 25, 25)), {"factory": "a:b"}, "in-memory model takes its data"),
        (object(), {}, "expected an array, a tensor or an iterable"),
    ],
)
def test_bad_input_is_one_clear_error(net, data, kw, match):
    with pytest.raises(ConvlensError, match=match):
        convlens.analyze(net, data, n_null=100, **kw)
    with pytest.raises(ConvlensError, match=r"expected a torch\.nn\.Module"):
        convlens.analyze(42)

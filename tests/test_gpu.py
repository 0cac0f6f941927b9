"""Checks that need a CUDA device (skipped without one; CI has none): training, resume and analysis
on the GPU, and the GPU's Conv2d being the same cross-correlation as the NumPy engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convlens.analysis.model import forward
from convlens.analysis.orchestration.run_path import analyze_run
from convlens.data.datasets import load_bundled
from convlens.models import build_model, make_spec
from convlens.ops import convolve, correlate
from convlens.train import TrainConfig, Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture
def no_tf32():
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@pytest.mark.parametrize(
    ("stride", "padding", "dilation", "groups"),
    [(1, 1, 1, 1), (2, 3, 1, 1), (1, 2, 2, 2), (2, 0, 1, 4)],
)
def test_cuda_conv2d_is_cross_correlation(no_tf32, stride, padding, dilation, groups):
    rng = np.random.default_rng(stride * 10 + groups)
    x = rng.standard_normal((3, 4, 17, 15))
    w = rng.standard_normal((8, 4 // groups, 3, 5))
    b = rng.standard_normal(8)
    dev = torch.device("cuda")
    got = torch.nn.functional.conv2d(
        torch.from_numpy(x).to(dev),
        torch.from_numpy(w).to(dev),
        torch.from_numpy(b).to(dev),
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
    ).cpu()
    kw = {"bias": b, "stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    ours = correlate(x, w, **kw)
    np.testing.assert_allclose(got.numpy(), ours, rtol=1e-11, atol=1e-11)
    assert np.max(np.abs(convolve(x, w, **kw) - got.numpy())) > 1e-3  # and not convolution


def test_train_resume_and_analyze_on_cuda(tmp_path):
    ds = load_bundled("faces", 0)
    cfg = TrainConfig(data="faces", epochs=2, device="cuda", ood=["motorcycle"], ood_size=8)
    tr = Trainer(cfg, ds, tmp_path / "run", progress=False)
    assert tr.device.type == "cuda"
    res = tr.train()
    assert 0.0 <= res.test_accuracy <= 1.0 and len(res.metrics) == 2
    cfg3 = TrainConfig(data="faces", epochs=3, device="cuda", ood=["motorcycle"], ood_size=8)
    res3 = Trainer(cfg3, ds, tmp_path / "run", progress=False).resume()
    assert [m["epoch"] for m in res3.metrics] == [1, 2, 3]
    a = analyze_run(tmp_path / "run", n_null=200)
    checks = [r.check for r in a.layers]
    assert checks and all(c is not None and c.is_cross_correlation for c in checks)


def test_streaming_stats_match_between_cuda_and_cpu(no_tf32):
    torch.manual_seed(0)
    model = build_model(make_spec("faces-cnn", 1, (25, 25), 2)).eval()
    x = torch.randn(300, 1, 25, 25, generator=torch.Generator().manual_seed(1))
    cpu = forward.collect(model, forward.batches_of(x, 128), "cpu")
    gpu_model = build_model(make_spec("faces-cnn", 1, (25, 25), 2))
    gpu_model.load_state_dict(model.state_dict())
    gpu_model = gpu_model.cuda().eval()
    gpu = forward.collect(gpu_model, forward.batches_of(x, 128, device="cuda"), "gpu")
    for layer in cpu.layer_scores:
        np.testing.assert_allclose(gpu.scores(layer), cpu.scores(layer), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(gpu.maxes(layer), cpu.maxes(layer), rtol=1e-4, atol=1e-5)

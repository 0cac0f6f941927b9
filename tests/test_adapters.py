"""Model adapters (issue 13 item 1): one interface over torch modules, ONNX graphs and bare weights.
The receptive-field chain they feed (item 7) is test_receptive.py."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from convlens.analysis.model.adapters import OnnxModel, TorchModel, pick_output
from convlens.analysis.model.weights_only import WeightsOnly
from convlens.errors import ConvlensError


class _Geo(nn.Module):
    """Convs of every kind of geometry, run in an order unlike their definition order."""

    def __init__(self) -> None:
        super().__init__()
        self.late = nn.Conv2d(8, 8, (1, 3), stride=(1, 2), padding=(0, 1), groups=8)
        self.stem = nn.Conv2d(3, 8, 3, padding=2, dilation=2)
        self.fc = nn.Linear(8 * 8 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.late(torch.relu(self.stem(x))).flatten(1))


def _geo() -> nn.Module:
    torch.manual_seed(0)
    return _Geo().eval()


def test_torch_adapter_layers_weights_and_execution_order():
    model = _geo()
    a = TorchModel(model)
    assert a.runnable and a.kind == "torch"
    assert [i.name for i in a.layers()] == ["late", "stem"]  # definition order before running
    assert all(i.order == "definition" for i in a.layers())
    e = a.expectation()
    assert (e.dims, e.channels, e.layout) == (2, 3, "NCHW")  # not the first defined: depthwise
    assert "stem-like conv layer 'stem' reads 3" in e.source
    a.trace(np.zeros((3, 3, 8, 8), np.float32))
    late, stem = a.layers()[1], a.layers()[0]
    assert (stem.name, stem.index, stem.order) == ("stem", 0, "execution")
    assert (stem.kernel_size, stem.padding, stem.dilation, stem.groups) == (
        [3, 3],
        [2, 2],
        [2, 2],
        1,
    )
    assert (late.kernel_size, late.stride, late.groups, late.weight_shape) == (
        [1, 3],
        [1, 2],
        8,
        [8, 1, 1, 3],
    )
    assert a.shapes == {"stem": ([2, 3, 8, 8], [2, 8, 8, 8]), "late": ([2, 8, 8, 8], [2, 8, 8, 4])}
    w = a.weights()
    assert set(w) >= {"stem.weight", "late.weight"} and w["late.weight"].shape == (8, 1, 1, 3)
    acts = a.activations(np.zeros((5, 3, 8, 8), np.float32), "zeros")
    assert acts.n == 5 and set(acts.layer_scores) == {"stem", "late"}
    maps = a.feature_maps(np.zeros((2, 3, 8, 8), np.float32))
    assert maps["late"].shape == (2, 8, 8, 4)
    checks, skipped = a.verify(None, 0, {"late"})
    assert [c.layer for c in checks] == ["stem"] and checks[0].is_cross_correlation and not skipped


def test_torch_adapter_runs_a_pipeline_callable():
    model = _geo()
    seen = []

    def pipeline(x: torch.Tensor) -> torch.Tensor:  # preprocessing in the user's own code
        seen.append(len(x))
        return model(x * 0.0)

    a = TorchModel(model, call=pipeline)
    a.trace(np.ones((2, 3, 8, 8), np.float32))
    maps = a.feature_maps(np.ones((2, 3, 8, 8), np.float32))
    bias = model.stem.bias.detach().numpy()
    np.testing.assert_allclose(maps["stem"][0, :, 4, 4], bias, rtol=1e-6)  # zero input: bias only
    a.activations(np.ones((3, 3, 8, 8), np.float32), "ones")
    assert seen[-2:] == [2, 3]


def test_weights_only_adapter():
    convs = {
        "blocks.0.conv_dw": np.zeros((8, 1, 3, 3)),
        "conv_stem": np.zeros((8, 3, 3, 3)),
        "head": np.zeros((4, 8, 1, 1)),
    }
    a = WeightsOnly(convs)
    assert not a.runnable and a.kind == "weights"
    assert [i.name for i in a.layers() if i.index == 0] == ["conv_stem"]
    assert all(i.order == "file" and i.stride is None for i in a.layers())
    assert any("first layer chosen by heuristic" in n for n in a.notes)
    assert a.weights() is convs
    with pytest.raises(ConvlensError, match="weights only"):
        a.activations(np.zeros((1, 3, 8, 8)), "x")
    with pytest.raises(ConvlensError, match="weights only"):
        a.expectation()


def test_onnx_adapter_matches_the_torch_geometry(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    model = _geo()
    p = tmp_path / "geo.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros(2, 3, 8, 8),),
            str(p),
            dynamo=False,
            input_names=["x"],
            output_names=["logits"],
            dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}},
        )
    a = OnnxModel(p)
    assert a.runnable and a.kind == "onnx"
    layers = a.layers()
    assert [i.order for i in layers] == ["execution", "execution"]
    t = TorchModel(model)
    t.trace(np.zeros((2, 3, 8, 8), np.float32))
    for o, tt in zip(layers, t.layers(), strict=True):
        assert (o.index, o.dims, o.kernel_size, o.stride, o.dilation, o.groups) == (
            tt.index,
            tt.dims,
            tt.kernel_size,
            tt.stride,
            tt.dilation,
            tt.groups,
        )
    e = a.expectation()
    assert (e.channels, e.spatial, e.layout, e.fixed_shape) == (3, (8, 8), "NCHW", (None, 3, 8, 8))
    a.trace(np.zeros((2, 3, 8, 8), np.float32))
    assert sorted(s for s, _ in a.shapes.values()) == sorted(s for s, _ in t.shapes.values())
    with pytest.raises(ConvlensError, match=r"has outputs \['logits'\]; no output 'boxes'"):
        OnnxModel(p, output="boxes")
    assert OnnxModel(p, output="0").runner.logits_name == "logits"


def test_pick_output():
    t = torch.zeros(2, 3)
    assert pick_output(t, None, "m")[0] is t
    assert pick_output((t, 1), "0", "m")[0] is t
    assert pick_output({"a": 1, "b": t}, "b", "m")[0] is t
    assert pick_output({"a": 1, "b": t}, "1", "m")[0] is t
    with pytest.raises(ConvlensError, match="returns one tensor; it has no output 'x'"):
        pick_output(t, "x", "the model")
    with pytest.raises(ConvlensError, match=r"must be an index 0\.\.1"):
        pick_output((t, t), "2", "the model")


class _Branchy(nn.Module):
    """Runs ``late`` only on inputs with a positive mean: input-dependent control flow."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 2, 3)
        self.late = nn.Conv2d(2, 2, 3)
        self.fc = nn.Linear(2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.relu(self.stem(x))
        if float(x.mean()) > 0:
            z = self.late(z)
        return self.fc(z.mean(dim=(2, 3)))


def test_a_conv_that_runs_on_some_sets_only_is_compared_where_it_ran():
    from convlens.analysis.orchestration.stages import attach_distribution, new_result
    from convlens.analysis.result import Settings, Source

    torch.manual_seed(0)
    a = TorchModel(_Branchy().eval())
    a.trace(np.ones((2, 1, 8, 8), np.float32))
    result = new_result(Source("model_file", "m"), Settings(100, 0), a.layers())
    x = np.random.default_rng(0).uniform(0.5, 1.5, (6, 1, 8, 8)).astype(np.float32)
    id_set = a.activations(x, "id")
    ood = a.activations(-x, "negative")
    attach_distribution(result, id_set, [ood])
    assert set(result.layer("stem").distribution.ood) == {"negative"}
    assert result.layer("late").distribution.ood == {}


def test_a_one_column_output_has_no_softmax_baselines():
    """A head with one column (a sigmoid score) is not read as logits of one class (whose softmax
    is always 1): the note says so and no output-level scores are collected."""
    import numpy as np
    import torch
    from torch import nn

    from convlens.analysis.model.adapters import TorchModel

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 6 * 6, 1), nn.Sigmoid())
    adapter = TorchModel(net)
    x = np.random.default_rng(0).normal(size=(5, 1, 8, 8)).astype(np.float32)
    adapter.trace(x)
    assert any("has one column" in n for n in adapter.notes)
    acts = adapter.activations(x, "x")
    assert len(acts.msp.values) == 0 and acts.output_kind is None

"""Model adapters (issue 13 item 1): one interface over torch modules, ONNX graphs and bare weights,
and the traced receptive-field chain they feed (item 7)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from convlens.analysis.measure.receptive import traced_chain
from convlens.analysis.model.adapters import OnnxModel, TorchModel, WeightsOnly, pick_output
from convlens.analysis.result import LayerIdentity
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


def _ident(name, index, k, stride=1, padding=None, dims=2) -> LayerIdentity:
    return LayerIdentity(
        name=name,
        index=index,
        order="execution",
        dims=dims,
        weight_shape=[4, 4, *([k] * dims)],
        in_channels=4,
        out_channels=4,
        kernel_size=[k] * dims,
        stride=[stride] * dims,
        padding=padding if padding is not None else [0] * dims,
        dilation=[1] * dims,
        groups=1,
    )


def test_traced_chain_onnx_pads_and_a_break():
    # ONNX pads [lo..., hi...] and auto_pad SAME_UPPER: the start uses the padding before
    layers = [
        _ident("a", 0, 3, padding=[0, 0, 1, 1]),
        _ident("b", 1, 3, stride=2, padding="SAME_UPPER"),
        _ident("c", 2, 1),
    ]
    shapes = {
        "a": ([1, 1, 9, 9], [1, 4, 8, 8]),
        "b": ([1, 4, 8, 8], [1, 4, 4, 4]),
        "c": ([1, 8, 4, 4], [1, 4, 4, 4]),  # reads 8 channels: a concatenation, not a chain
    }
    fields, note = traced_chain(layers, shapes, (9, 9))
    assert [f.size for f in fields] == [(3, 3), (5, 5), (5, 5)]
    assert [f.start for f in fields] == [(1.0, 1.0), (2.0, 2.0), (2.0, 2.0)]  # SAME_UPPER: lo 0
    assert "assuming a chain" in note
    assert "NOT a chain at c reads 8 channels, the previous conv gave 4" in note
    assert "upper bounds" in note


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


def test_traced_pooling_layers_enter_with_their_geometry():
    # MTCNN RNet's layout: ceil-mode 3x3/2 max pools between the convs, 24x24 input. By hand:
    # conv1 3 -> pool (3, /2) 5, jump 2 -> conv2 5 + 2*2 = 9 -> pool 9 + 2*2 = 13, jump 4 ->
    # conv3 (2x2) 13 + 1*4 = 17
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.Conv2d(4, 4, 3),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.Conv2d(4, 4, 2),
    ).eval()
    a = TorchModel(model)
    a.trace(np.zeros((2, 3, 24, 24), np.float32))
    assert [p.name for p in a.pools["2"]] == ["1"] and a.pools["2"][0].output == (11, 11)
    fields, note = traced_chain(a.layers(), a.shapes, (24, 24), a.pools)
    assert [f.size for f in fields] == [(3, 3), (9, 9), (17, 17)]
    assert [f.jump for f in fields] == [(1, 1), (2, 2), (4, 4)]
    assert "pooling layers traced: 1, 3" in note and "inferred" not in note
    # without the traced pools, the size drops 22 -> 11 and 9 -> 4 are inferred as valid windows:
    # 2 (stride 2) and 3 (stride 2): the ceil-mode window hides in 22 -> 11, and the note says so
    fields, note = traced_chain(a.layers(), a.shapes, (24, 24))
    assert [f.size for f in fields] == [(3, 3), (8, 8), (16, 16)]
    assert (
        "pooling inferred before 2 (window 2x2 stride 2x2), before 4 (window 3x3 stride 2x2)"
        in note
    )


def test_onnx_pooling_nodes_enter_with_their_geometry(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.Conv2d(4, 4, 3),
        nn.AvgPool2d(2),
        nn.Conv2d(4, 4, 2),
    ).eval()
    p = tmp_path / "pools.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(2, 3, 24, 24),), str(p), dynamo=False,
                          input_names=["x"], dynamic_axes={"x": {0: "N"}})  # fmt: skip
    t = TorchModel(model)
    t.trace(np.zeros((2, 3, 24, 24), np.float32))
    torch_fields, _ = traced_chain(t.layers(), t.shapes, (24, 24), t.pools)
    o = OnnxModel(p)
    o.trace(np.zeros((2, 3, 24, 24), np.float32))
    fields, note = traced_chain(o.layers(), o.shapes, (24, 24), o.pools)
    # by hand: conv 3; pool 3/2 -> 5, jump 2; conv 3 -> 9; avg 2/2 -> 11, jump 4; conv 2 -> 15
    assert [f.size for f in fields] == [(3, 3), (9, 9), (15, 15)]
    assert [f.size for f in fields] == [f.size for f in torch_fields]
    assert [f.start for f in fields] == [f.start for f in torch_fields]
    assert "pooling layers traced" in note and "inferred" not in note

"""Receptive fields traced through a model (``analysis/measure/receptive.py``): ``traced_chain``
over the layers and shapes an adapter recorded, ONNX pads, pooling layers entering with their
geometry, and where the chain breaks or resumes. The arithmetic itself (``ops.geometry``) is
test_geometry_ncc.py."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from convlens.analysis.measure.receptive import traced_chain
from convlens.analysis.model.adapters import OnnxModel, TorchModel
from convlens.analysis.result import LayerIdentity


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
    """Issue 13 item 7 (the traced receptive-field chain)."""
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


def test_traced_pooling_layers_enter_with_their_geometry():
    """Issue 13 item 7 (the traced receptive-field chain)."""
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
    """Issue 13 item 7 (the traced receptive-field chain)."""
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


@pytest.mark.slow
def test_squeeze_excitation_gate_does_not_carry_into_the_main_path() -> None:
    """A squeeze-and-excitation block (global pool, two 1x1 convs, a gate on the main path): the
    gate convs see the whole input ('global', size clipped to the input), the next main conv
    resumes from the gated conv's output instead of the pool's stride (the bug: jump [48, 192]).

    Regression: real-model fix 1 (receptive fields past a break)."""
    from convlens.analysis.measure.receptive import traced_chain

    layers = [_ident("a", 0, 3, 2), _ident("se1", 1, 1), _ident("se2", 2, 1), _ident("b", 3, 3)]
    shapes = {
        "a": ([1, 3, 15, 31], [1, 8, 7, 15]),
        "se1": ([1, 8, 1, 1], [1, 2, 1, 1]),  # after a global average pool
        "se2": ([1, 2, 1, 1], [1, 8, 1, 1]),
        "b": ([1, 8, 7, 15], [1, 8, 5, 13]),  # reads a's output times the gate
    }
    fields, note = traced_chain(layers, shapes, (15, 31))
    by = {f.name: f for f in fields}
    assert by["a"].size == (3, 3) and by["a"].jump == (2, 2)
    assert by["se1"].is_global and by["se1"].size == (15, 31)
    assert by["b"].size == (7, 7) and by["b"].jump == (2, 2) and not by["b"].is_global
    assert "b reads [7, 15]: resumed from a's output" in note
    assert "clipped at the input extent 15x31" in note
    for f in fields:  # never a size past the input
        assert all(s <= n for s, n in zip(f.size, (15, 31), strict=True))


@pytest.mark.slow
def test_unexplained_spatial_break_stops_the_figures() -> None:
    """A conv reading a size no pooling and no earlier output explains: no figures from there.

    Regression: real-model fix 1 (receptive fields past a break)."""
    from convlens.analysis.measure.receptive import traced_chain

    layers = [_ident("a", 0, 3), _ident("b", 1, 3), _ident("c", 2, 3)]
    shapes = {
        "a": ([1, 4, 9, 9], [1, 4, 7, 7]),
        "b": ([1, 4, 14, 14], [1, 4, 12, 12]),  # upsampled: no earlier output of this shape
        "c": ([1, 4, 12, 12], [1, 4, 10, 10]),
    }
    fields, note = traced_chain(layers, shapes, (9, 9))
    assert [f.name for f in fields] == ["a"]
    assert "NOT a chain at b reads [14, 14] after [7, 7]" in note
    assert "no figures from there on" in note


@pytest.mark.slow
def test_padding_before_a_conv_keeps_the_chain() -> None:
    """An input grown by less than double (a Pad node, e.g. the VAD's reflection pad before its
    STFT) is taken as padding: the figures go on, and the note says so.

    Regression: a real-model fix (the silero VAD, tests/data/real)."""
    from convlens.analysis.measure.receptive import traced_chain

    layers = [_ident("a", 0, 3), _ident("b", 1, 3)]
    shapes = {"a": ([1, 4, 12, 12], [1, 4, 10, 10]), "b": ([1, 4, 10, 10], [1, 4, 8, 8])}
    fields, note = traced_chain(layers, shapes, (9, 9))
    assert [f.size for f in fields] == [(3, 3), (5, 5)]
    assert "taken as padding before a ([9, 9] -> [12, 12]; start not shifted)" in note

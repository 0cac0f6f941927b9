"""Space-to-depth stems (issue 25): a first conv reading the image in pixel phases (YOLOv5/YOLOX's
Focus, ONNX ``SpaceToDepth``) is found in the graph and analysed on its de-interleaved kernels,
which compute exactly what the stem computes (checked against the engine and onnxruntime)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from convlens.analysis.model.spacetodepth import SpaceToDepth, deinterleave
from convlens.ops import correlate
from tests.onnx_tools import analyze, needs_onnx, torchscript_export

FOCUS = ((0, 0), (1, 0), (0, 1), (1, 1))
"""YOLOv5's Focus order of the (dy, dx) phases: x[::2, ::2], x[1::2, ::2], x[::2, 1::2], x[1::2, 1::2]."""


def focus(x: np.ndarray) -> np.ndarray:
    return np.concatenate([x[:, :, dy::2, dx::2] for dy, dx in FOCUS], axis=1)


class Focus(nn.Module):
    def __init__(self, out: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(12, out, 3, padding=1, bias=False)
        self.head = nn.Sequential(
            nn.ReLU(), nn.Conv2d(out, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x[..., dy::2, dx::2] for dy, dx in FOCUS], 1)
        return self.head(self.conv(x))


FOCUS_PHASES = SpaceToDepth(2, tuple((c, dy, dx) for dy, dx in FOCUS for c in range(3)))


@pytest.mark.parametrize("k", [1, 3])
def test_the_deinterleaved_kernel_computes_what_the_stem_computes(k):
    """A k x k conv (padding p) over the Focus channels equals a 2k x 2k conv with stride 2 and
    padding 2p over the image, exactly up to float64 rounding (the engine on both sides)."""
    rng = np.random.default_rng(k)
    x = rng.normal(size=(2, 3, 12, 16))
    w = rng.normal(size=(5, 12, k, k))
    p = k // 2
    stem = correlate(focus(x), w, padding=p)
    image = correlate(x, deinterleave(w, FOCUS_PHASES), stride=2, padding=2 * p)
    assert deinterleave(w, FOCUS_PHASES).shape == (5, 3, 2 * k, 2 * k)
    np.testing.assert_allclose(image, stem, rtol=0, atol=1e-12)


def _export(tmp_path, model: nn.Module, name: str = "focus.onnx"):
    path = tmp_path / name
    torch.onnx.export(model.eval(), (torch.zeros(1, 3, 16, 16),), str(path), dynamo=False,
                      opset_version=17, input_names=["images"],
                      dynamic_axes={"images": {0: "N"}})  # fmt: skip
    return path


@needs_onnx
@torchscript_export
def test_a_focus_stem_in_an_onnx_graph_is_found_with_its_phases(tmp_path):
    from convlens.analysis.model.onnxgraph import read_graph

    torch.manual_seed(0)
    graph = read_graph(_export(tmp_path, Focus()))
    stem, other = graph.convs
    assert stem.space_to_depth == FOCUS_PHASES
    assert other.space_to_depth is None  # reads the stem's output, not the image
    assert stem.analysed_weight.shape == (8, 3, 6, 6)
    np.testing.assert_array_equal(other.analysed_weight, other.weight)


@needs_onnx
def test_an_onnx_space_to_depth_node_follows_onnxs_channel_order(tmp_path):
    """A graph ``SpaceToDepth(blocksize 2) -> Conv`` built by hand: the de-interleaved kernels,
    applied by the engine with stride 2 to the image, give onnxruntime's output (float32)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from convlens.analysis.model.onnxgraph import read_graph

    rng = np.random.default_rng(3)
    w = rng.normal(size=(4, 12, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("SpaceToDepth", ["x"], ["s"], blocksize=2),
         helper.make_node("Conv", ["s", "w"], ["y"], pads=[1, 1, 1, 1])],
        "s2d", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path / "s2d.onnx"
    onnx.save(model, str(path))
    (conv,) = read_graph(path).convs
    assert conv.space_to_depth is not None and conv.space_to_depth.block == 2
    x = rng.normal(size=(1, 3, 8, 10)).astype(np.float32)
    (y,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    mine = correlate(x.astype(np.float64), conv.analysed_weight, stride=2, padding=2)
    np.testing.assert_allclose(mine, y, rtol=1e-4, atol=1e-4)


@needs_onnx
@torchscript_export
def test_a_planted_rgb_edge_kernel_is_matched_de_interleaved_with_colour(tmp_path):
    """The stem's units hold 6x6 kernels planted on the image grid, interleaved into the 12
    phase channels as a Focus layer stores them: analysed, they are 6x6 kernels on 3 colours, the
    colour rule applies (a red-minus-green unit is colour-opponent), a note says why, and the
    table shows the de-interleaved shape."""
    from convlens.analysis.model.spacetodepth import RULE

    torch.manual_seed(1)
    model = Focus(out=4)
    y, x = np.mgrid[0:6, 0:6] - 2.5
    edge = np.sign(x) * np.exp(-(x**2 + y**2) / 8)
    planted = np.zeros((4, 3, 6, 6))
    planted[0] = edge  # the same vertical edge on every colour
    planted[1] = edge.T
    planted[2, 0] = np.exp(-(x**2 + y**2) / 4)
    planted[2, 1] = -np.exp(-(x**2 + y**2) / 4)  # red minus green
    planted[3] = np.random.default_rng(0).normal(size=(3, 6, 6))
    stored = np.zeros((4, 12, 3, 3))
    for k, (c, dy, dx) in enumerate(FOCUS_PHASES.phases):
        stored[:, k] = planted[:, c, dy::2, dx::2]
    np.testing.assert_array_equal(deinterleave(stored, FOCUS_PHASES), planted)
    with torch.no_grad():
        model.conv.weight.copy_(torch.from_numpy(stored))
    path = _export(tmp_path, model)
    r, data = analyze(path, tmp_path / "a.json")
    assert r.exit_code == 0, r.output
    assert data is not None
    stem = data["layers"][0]["matching"]
    assert stem["weight_shape"] == [4, 3, 6, 6]
    got = {(k["out_channel"], k["in_channel"]): k for k in stem["kernels"]}
    for unit in (0, 1):  # an odd-symmetric edge on the image grid: matched closely, oriented
        assert got[(unit, 0)]["score"] > 0.9, got[(unit, 0)]
        assert got[(unit, 0)]["category"] in ("edge/gradient", "Gabor-like")
    assert got[(0, 0)]["best_match"] != got[(1, 0)]["best_match"]  # vertical vs horizontal
    assert got[(2, 0)]["category"] == "colour-opponent"
    assert any(RULE in n for n in data["notes"])
    assert "12 x 6x6*" in r.output and "* kernels matched as the layer applies them" in r.output


@pytest.mark.slow
@needs_onnx
@torchscript_export
def test_a_focus_model_runs_on_data_and_verifies_its_stored_conv(tmp_path):
    """With data, the stem is still verified as onnxruntime runs it (12 channels, 3x3) and the
    analysis completes; only the matching reads the de-interleaved kernels."""
    torch.manual_seed(2)
    path = _export(tmp_path, Focus())
    rng = np.random.default_rng(4)
    np.savez(tmp_path / "d.npz", x=rng.uniform(size=(24, 3, 16, 16)).astype(np.float32),
             y=np.arange(24) % 2)  # fmt: skip
    r, data = analyze(path, tmp_path / "a.json", "--data", f"npz:{tmp_path / 'd.npz'}",
                      "--ood", "noise", "--no-channels")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert data is not None
    stem = data["layers"][0]
    assert stem["check"]["status"] == "checked" and stem["check"]["is_cross_correlation"]
    assert stem["identity"]["weight_shape"] == [8, 12, 3, 3]
    assert stem["matching"]["weight_shape"] == [8, 3, 6, 6]


def test_a_concat_that_is_not_a_phase_split_is_no_stem(tmp_path):
    """Slices that do not tile the s x s phases exactly (a phase twice, one missing) are refused."""
    from convlens.analysis.model.spacetodepth import find

    onnx = pytest.importorskip("onnx")
    from onnx import helper

    def slice_node(out: str, axis: int, start: int, src: str) -> object:
        return helper.make_node("Slice", [src, f"s{start}", "big", f"a{axis}", "two"], [out])

    def concat(phases: list[tuple[int, int]]) -> dict[str, object]:
        nodes = []
        for i, (dy, dx) in enumerate(phases):
            nodes += [slice_node(f"h{i}", 2, dy, "x"), slice_node(f"v{i}", 3, dx, f"h{i}")]
        nodes.append(helper.make_node("Concat", [f"v{i}" for i in range(4)], ["cat"], axis=1))
        return {out: n for n in nodes for out in n.output}

    consts = {"s0": [0], "s1": [1], "big": [2**31], "a2": [2], "a3": [3], "two": [2]}

    def const(name: str) -> np.ndarray:
        return np.array(consts[name])

    whole = find(concat(list(FOCUS)), "cat", 12, {"x"}, const)  # the same graph, done right
    assert whole == FOCUS_PHASES
    twice = concat([(0, 0), (1, 0), (0, 1), (0, 1)])  # (1, 1) missing
    assert find(twice, "cat", 12, {"x"}, const) is None
    assert find(concat(list(FOCUS)), "cat", 12, {"other"}, const) is None  # not the data input
    assert onnx is not None


@needs_onnx
def test_a_dilated_conv_after_space_to_depth_is_left_as_stored(tmp_path):
    """Dilation d puts a phase conv's taps s*d apart on the image, which the de-interleaved kernel
    does not express: such a conv is analysed as stored."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from convlens.analysis.model.onnxgraph import read_graph

    w = np.random.default_rng(5).normal(size=(4, 12, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("SpaceToDepth", ["x"], ["s"], blocksize=2),
         helper.make_node("Conv", ["s", "w"], ["y"], pads=[2, 2, 2, 2], dilations=[2, 2])],
        "s2d", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w")],
    )  # fmt: skip
    path = tmp_path / "d.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    (conv,) = read_graph(path).convs
    assert conv.space_to_depth is None
    np.testing.assert_array_equal(conv.analysed_weight, w)

"""Regression tests for the bugs a practitioner found running convlens on real pretrained CNNs
(``tests/data/real``). Each test builds a small model here (``torch.onnx.export`` and onnxruntime's
``quantize_dynamic``) or calls the analysis function directly, so the file runs in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

REAL = Path(__file__).parent / "data" / "real"
SILERO_16K = REAL / "silero_vad_16k_op15.onnx"
PPOCR_CLS = REAL / "ch_ppocr_mobile_v2.0_cls_infer.onnx"
MAGIKA = REAL / "magika_standard_v3_3.onnx"


def export(model: torch.nn.Module, x: torch.Tensor, path: Path) -> Path:
    """``model`` as an ONNX file (TorchScript exporter, opset 17, weights as initializers)."""
    model.eval()
    torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"])
    return path


def quantise(src: Path, dst: Path) -> Path:
    """onnxruntime's dynamic quantisation of every Conv (uint8 weights), as a user would run it."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(src), str(dst), weight_type=QuantType.QUInt8, op_types_to_quantize=["Conv"]
    )
    return dst


def conv1d_stack() -> torch.nn.Module:
    """A 1-D stack whose first conv is wide (16 taps) and whose last is 1 tap."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv1d(1, 8, 16, stride=4),
        torch.nn.ReLU(),
        torch.nn.Conv1d(8, 4, 3),
        torch.nn.ReLU(),
        torch.nn.Conv1d(4, 1, 1),
    )


# ---------------------------------------------------------------- 2: topological order


def test_quantised_graph_convs_in_execution_order(tmp_path: Path) -> None:
    """onnxruntime's quantiser stores the real VAD's nodes out of order (the 1-tap decoder conv
    first); the convs are numbered by execution, so the STFT is the first layer."""
    from convlens.analysis.onnxgraph import read_graph

    q = quantise(SILERO_16K, tmp_path / "q.onnx")
    stored = [n.name for n in onnx.load(str(q)).graph.node if n.op_type == "ConvInteger"]
    assert stored[0] == "/model/decoder/decoder/2/Conv_quant"  # the bug's precondition
    shapes = [list(c.weight.shape) for c in read_graph(q).convs]
    assert shapes == [
        [258, 1, 256],
        [128, 129, 3],
        [64, 128, 3],
        [64, 64, 3],
        [128, 64, 3],
        [1, 128, 1],
    ]


def test_topological_order_is_stable_and_follows_subgraph_inputs() -> None:
    """Reversed nodes come back in dependency order; a node whose subgraph reads an outer name
    waits for that name's producer; independent nodes keep their stored order."""
    from onnx import TensorProto, helper

    from convlens.analysis.onnxgraph import topological_order

    body = helper.make_graph(
        [helper.make_node("Identity", ["b"], ["s"])],
        "then",
        [],
        [helper.make_tensor_value_info("s", TensorProto.FLOAT, None)],
    )
    nodes = [
        helper.make_node("If", ["c"], ["d"], name="if", then_branch=body, else_branch=body),
        helper.make_node("Relu", ["a"], ["b"], name="relu"),
        helper.make_node("Neg", ["x"], ["a"], name="neg"),
        helper.make_node("Abs", ["x"], ["e"], name="abs"),
    ]
    g = helper.make_graph(nodes, "g", [], [])
    assert [n.name for _, n in topological_order(g)] == ["neg", "relu", "if", "abs"]
    assert [k for k, _ in topological_order(g)] == [2, 1, 0, 3]

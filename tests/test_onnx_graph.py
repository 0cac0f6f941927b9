"""ONNX models as found in the wild (issue 13 item 2): weights in ``Constant`` nodes (paddle2onnx),
convs inside ``If``/``Loop`` subgraphs, quantised models (``ConvInteger``, ``DequantizeLinear`` ->
``Conv``, ``QLinearConv``), fixed batch sizes, NHWC inputs and weights that are not constant;
and, at the end, the ONNX regressions found on real pretrained CNNs (``tests/data/real``): convs in
execution order, run-time-quantised constant weights, quantised-layer notes, ConvTranspose nodes, a
graph input that is not data."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from convlens.analysis import analyze_model_file  # noqa: E402
from convlens.analysis.model.loading import load_weights  # noqa: E402
from convlens.analysis.model.onnxgraph import MAX_SUBGRAPH_DEPTH, read_graph  # noqa: E402
from convlens.analysis.model.onnxrun import OnnxModel  # noqa: E402
from convlens.analysis.model.weights_only import onnx_layers  # noqa: E402
from convlens.analysis.result import AnalysisResult  # noqa: E402
from convlens.errors import ConvlensError  # noqa: E402
from tests.onnx_tools import analyze, export, torchscript_export  # noqa: E402

RNG = np.random.default_rng(0)
W1 = RNG.standard_normal((4, 1, 3, 3)).astype(np.float32)
B1 = RNG.standard_normal(4).astype(np.float32)
W2 = RNG.standard_normal((4, 4, 3, 3)).astype(np.float32)
FC = (RNG.standard_normal((4 * 6 * 6, 10)) * 0.1).astype(np.float32)


def _save(path, nodes, inputs, outputs, inits=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _x(shape=("N", 1, 8, 8), name="X"):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def _logits():
    return helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)


def _const(name, arr):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(arr, name + "_v"))


def _head(inp):
    """Flatten -> MatMul(FC) -> logits, with FC in a Constant node."""
    return [
        helper.make_node("Flatten", [inp], ["flat"]),
        _const("FC", FC),
        helper.make_node("MatMul", ["flat", "FC"], ["logits"]),
    ]


def _paddle_style(path, x_shape=("N", 1, 8, 8)):
    """Every weight in a Constant node (as paddle2onnx writes them), reached through Identity, Cast
    (from float16) and Reshape; no initializers at all."""
    nodes = [
        _const("w1_c", W1),
        helper.make_node("Identity", ["w1_c"], ["w1"]),
        _const("b1_c", B1.reshape(1, 4)),
        _const("b1_shape", np.array([4], dtype=np.int64)),
        helper.make_node("Reshape", ["b1_c", "b1_shape"], ["b1"]),
        helper.make_node("Conv", ["X", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        _const("w2_h", W2.astype(np.float16)),
        helper.make_node("Cast", ["w2_h"], ["w2"], to=TensorProto.FLOAT),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2"),
        helper.make_node("Relu", ["c2"], ["r2"]),
        *_head("r2"),
    ]
    return _save(path, nodes, [_x(x_shape)], [_logits()])


def _tiny_cnn():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(4, 4, 3),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 6 * 6, 10),
    ).eval()


def _export(path, model=None):
    model = model or _tiny_cnn()
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated, and works offline
        warnings.simplefilter("ignore", DeprecationWarning)
        _torch_export(model, path)
    return model


def _torch_export(model, path):
    torch.onnx.export(
        model,
        (torch.zeros(2, 1, 8, 8),),
        str(path),
        dynamo=False,
        do_constant_folding=False,
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}},
    )


def _digits(n=16):
    from convlens.data.loaders import load_dataset

    return load_dataset("digits", 0).split("train")[0][:n]


# ----------------------------------------------------------------------------- weights
def test_torch_export_without_constant_folding(tmp_path):
    model = _export(tmp_path / "t.onnx")
    weights = load_weights(tmp_path / "t.onnx")
    assert list(weights) == ["/0/Conv.weight", "/2/Conv.weight"]
    assert np.array_equal(weights["/0/Conv.weight"], model[0].weight.detach().numpy())
    assert np.array_equal(weights["/2/Conv.weight"], model[2].weight.detach().numpy())
    spec = OnnxModel(tmp_path / "t.onnx").input_spec
    assert (spec.name, spec.shape, spec.dtype, spec.layout) == (
        "x",
        [None, 1, 8, 8],
        "float32",
        "NCHW",
    )


def test_weights_in_constant_nodes(tmp_path):
    p = _paddle_style(tmp_path / "p.onnx")
    weights = load_weights(p)
    assert list(weights) == ["conv1.weight", "conv2.weight"]
    assert np.array_equal(weights["conv1.weight"], W1)
    assert np.array_equal(weights["conv2.weight"], W2.astype(np.float16).astype(np.float32))
    convs = read_graph(p).convs
    assert np.array_equal(convs[0].bias, B1.astype(np.float64))
    assert [c.quantised for c in convs] == [None, None]


def test_sparse_constant_weight(tmp_path):
    dense = np.zeros((2, 1, 3, 3), dtype=np.float32)
    dense[0, 0, 1, 1], dense[1, 0, 0, 2] = 2.0, -1.0
    flat = np.flatnonzero(dense)
    sparse = helper.make_sparse_tensor(
        numpy_helper.from_array(dense.reshape(-1)[flat], "w_values"),
        numpy_helper.from_array(flat.astype(np.int64), "w_indices"),
        list(dense.shape),
    )
    nodes = [
        helper.make_node("Constant", [], ["w"], sparse_value=sparse),
        helper.make_node("Conv", ["X", "w"], ["logits"], name="conv"),
    ]
    p = _save(tmp_path / "s.onnx", nodes, [_x()], [_logits()])
    assert np.array_equal(load_weights(p)["conv.weight"], dense)


# ----------------------------------------------------------------------------- subgraphs
def _if_model(path):
    """conv0 (main) -> If(then: conv with a Constant weight, else: conv with an outer-scope
    initializer) -> head."""
    then_g = helper.make_graph(
        [_const("wt", W2), helper.make_node("Conv", ["r0", "wt"], ["yt"], name="conv_a")],
        "then",
        [],
        [helper.make_tensor_value_info("yt", TensorProto.FLOAT, None)],
    )
    else_g = helper.make_graph(
        [helper.make_node("Conv", ["r0", "W2"], ["ye"], name="conv_b")],
        "else",
        [],
        [helper.make_tensor_value_info("ye", TensorProto.FLOAT, None)],
    )
    nodes = [
        helper.make_node("Conv", ["X", "W1", "B1"], ["c0"], name="conv0", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c0"], ["r0"]),
        helper.make_node("ReduceMean", ["X"], ["m"], keepdims=0),
        _const("lo", np.array(-1e9, dtype=np.float32)),
        helper.make_node("Greater", ["m", "lo"], ["cond"]),
        helper.make_node("If", ["cond"], ["y"], then_branch=then_g, else_branch=else_g),
        helper.make_node("Relu", ["y"], ["r2"]),
        *_head("r2"),
    ]
    inits = [numpy_helper.from_array(W1, "W1"), numpy_helper.from_array(B1, "B1")]
    inits.append(numpy_helper.from_array(W2 * 2, "W2"))
    return _save(path, nodes, [_x()], [_logits()], inits)


def test_if_subgraph_convs_are_found_in_place(tmp_path):
    p = _if_model(tmp_path / "if.onnx")
    weights = load_weights(p)
    assert list(weights) == ["conv0.weight", "If_5/then/conv_a.weight", "If_5/else/conv_b.weight"]
    assert np.array_equal(weights["If_5/then/conv_a.weight"], W2)
    assert np.array_equal(weights["If_5/else/conv_b.weight"], W2 * 2)  # outer-scope initializer


def test_if_subgraph_runnable_analysis(tmp_path):
    p = _if_model(tmp_path / "if.onnx")
    a = analyze_model_file(p, data="digits", ood=["noise"], n_null=50)
    assert [r.name for r in a.layers] == ["conv0", "If_5/then/conv_a", "If_5/else/conv_b"]
    conv0, inner = a.layers[0], a.layers[1:]
    assert conv0.check is not None and conv0.check.is_cross_correlation
    assert conv0.distribution is not None
    assert all(r.matching is not None and r.check is None and r.distribution is None for r in inner)
    assert any("2 conv layer(s) inside If/Loop/Scan subgraphs" in n for n in a.notes)
    assert AnalysisResult.from_json(a.to_json()) == a


def test_loop_body_and_nesting_limit(tmp_path):
    def loop(body_nodes, depth):
        body = helper.make_graph(
            body_nodes,
            f"body{depth}",
            [
                helper.make_tensor_value_info("i", TensorProto.INT64, []),
                helper.make_tensor_value_info("c", TensorProto.BOOL, []),
            ],
            [helper.make_tensor_value_info("c_out", TensorProto.BOOL, [])],
        )
        return helper.make_node("Loop", ["", "cond"], [], body=body, name=f"loop{depth}")

    inner = [
        _const("w", W1),
        helper.make_node("Conv", ["X", "w"], ["y"], name="conv"),
        helper.make_node("Identity", ["c"], ["c_out"]),
    ]
    node = loop(inner, 0)
    head = [_const("cond", np.array(True)), node, helper.make_node("Identity", ["X"], ["logits"])]
    p = tmp_path / "loop.onnx"
    onnx.save(helper.make_model(helper.make_graph(head, "g", [_x()], [_logits()])), str(p))
    assert list(load_weights(p)) == ["loop0/body/conv.weight"]
    for depth in range(1, MAX_SUBGRAPH_DEPTH + 1):
        node = loop([node, helper.make_node("Identity", ["c"], ["c_out"])], depth)
    head[1] = node
    onnx.save(helper.make_model(helper.make_graph(head, "g", [_x()], [_logits()])), str(p))
    with pytest.raises(ConvlensError, match=r"nested more than 16 deep .*MAX_SUBGRAPH_DEPTH"):
        load_weights(p)


# ----------------------------------------------------------------------------- quantised
def _max_err(a, b):
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - b)))


def test_quantize_dynamic_conv_integer(tmp_path):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = _export(tmp_path / "f.onnx")
    quantize_dynamic(
        str(tmp_path / "f.onnx"), str(tmp_path / "q.onnx"), weight_type=QuantType.QInt8
    )
    ops = {n.op_type for n in onnx.load(str(tmp_path / "q.onnx")).graph.node}
    assert "ConvInteger" in ops and "Conv" not in ops
    g = read_graph(tmp_path / "q.onnx")
    assert [c.op_type for c in g.convs] == ["ConvInteger", "ConvInteger"]
    for c, m in zip(g.convs, (model[0], model[2]), strict=True):
        w = m.weight.detach().numpy().astype(np.float64)
        step = np.max(np.abs(w)) / 127  # symmetric int8, one scale per tensor
        assert _max_err(c.weight, w) <= step / 2 + 1e-7
        assert np.allclose(c.bias, m.bias.detach().numpy())
        assert c.module_type == "onnx ConvInteger (dequantised)"
    idents, weights, notes = onnx_layers(tmp_path / "q.onnx")  # weights only, no onnxruntime
    assert [(i.name, i.order, i.padding) for i in idents] == [
        ("/0/Conv_quant", "execution", [1, 1, 1, 1]),
        ("/2/Conv_quant", "execution", [0, 0, 0, 0]),
    ]
    assert np.array_equal(weights["/0/Conv_quant"], g.convs[0].weight)
    assert notes[0].startswith("model is quantised: 2 conv layer(s) dequantised (int8 weights")
    a = analyze_model_file(tmp_path / "q.onnx", data="digits", ood=["noise"], n_null=50)
    assert [r.identity.module_type for r in a.layers] == ["onnx ConvInteger (dequantised)"] * 2
    assert any(n.startswith("model is quantised: 2 conv layer(s) dequantised") for n in a.notes)
    for r in a.layers:  # the integer convolution checked exactly
        assert r.check.is_cross_correlation and r.check.max_abs_diff_correlate == 0.0
        assert r.check.max_abs_diff_convolve > 0 and r.distribution is not None


class _Reader:
    def __init__(self, x):
        self.items = iter([{"x": x[i : i + 4]} for i in range(0, len(x), 4)])

    def get_next(self):
        return next(self.items, None)


@pytest.mark.parametrize("fmt", ["QOperator", "QDQ"])
def test_quantize_static_qlinearconv_and_qdq(tmp_path, fmt):
    from onnxruntime.quantization import QuantFormat, quantize_static

    model = _export(tmp_path / "f.onnx")
    quantize_static(
        str(tmp_path / "f.onnx"),
        str(tmp_path / "q.onnx"),
        _Reader(_digits()),
        quant_format=getattr(QuantFormat, fmt),
        per_channel=True,
    )
    ops = [n.op_type for n in onnx.load(str(tmp_path / "q.onnx")).graph.node]
    g = read_graph(tmp_path / "q.onnx")
    want = "QLinearConv" if fmt == "QOperator" else "Conv"
    assert want in ops and [c.op_type for c in g.convs] == [want, want]
    for c, m in zip(g.convs, (model[0], model[2]), strict=True):
        w = m.weight.detach().numpy().astype(np.float64)
        step = np.max(np.abs(w), axis=(1, 2, 3)) / 127  # per output channel
        assert np.all(np.max(np.abs(c.weight - w), axis=(1, 2, 3)) <= step / 2 + 1e-7)
        assert "per axis 0" in c.quantised
    a = analyze_model_file(tmp_path / "q.onnx", data="digits", ood=["noise"], n_null=50)
    assert all(r.matching is not None and r.distribution is not None for r in a.layers)
    if fmt == "QDQ":  # a float Conv on dequantised weights and inputs: checked as usual
        assert all(r.check.is_cross_correlation for r in a.layers)
    else:
        assert all(r.check is None for r in a.layers)
        assert any("QLinearConv output is requantised" in n for n in a.notes)


def test_dequantize_linear_per_axis_from_helper(tmp_path):
    q = RNG.integers(-127, 128, size=(4, 1, 3, 3)).astype(np.int8)
    scale = np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32)
    zp = np.array([0, 1, -1, 2], dtype=np.int8)
    nodes = [
        _const("q", q),
        _const("s", scale),
        _const("z", zp),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["w"], axis=0),
        helper.make_node("Conv", ["X", "w"], ["logits"], name="conv"),
    ]
    p = _save(tmp_path / "dq.onnx", nodes, [_x()], [_logits()])
    want = (q.astype(np.float64) - zp.reshape(4, 1, 1, 1)) * scale.reshape(4, 1, 1, 1)
    assert np.allclose(load_weights(p)["conv.weight"], want)
    assert read_graph(p).convs[0].module_type == "onnx Conv (dequantised)"


# ----------------------------------------------------------------------------- inputs and data
def test_fixed_batch_of_one_end_to_end(tmp_path):
    p = _paddle_style(tmp_path / "b1.onnx", x_shape=(1, 1, 8, 8))
    om = OnnxModel(p)
    assert om.batch == 1 and om.input_spec.shape == [1, 1, 8, 8]
    a = analyze_model_file(p, data="digits", ood=["noise"], n_null=50)
    assert all(r.check.is_cross_correlation and r.distribution is not None for r in a.layers)
    assert any("fixed batch of 1" in n for n in a.notes)
    from convlens.data.loaders import load_dataset

    n_test = len(load_dataset("digits", 0).split("test")[0])
    assert a.distribution.id.n == n_test and [d.n for d in a.distribution.ood] == [100]


def test_nhwc_input_detected_and_fed_channels_last(tmp_path):
    # issue 13 item 3 changed this on purpose: an NHWC input is no longer refused for NCHW data,
    # the data are transposed to fit (stated in the notes); an explicit NCHW that contradicts the
    # model's fixed dims is refused (more in tests/test_model_data.py)
    from convlens.data.fit import FitOptions

    nodes = [
        helper.make_node("Transpose", ["X"], ["xt"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["xt", "W1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["logits"]),
    ]
    p = _save(
        tmp_path / "nhwc.onnx",
        nodes,
        [_x(("N", 8, 8, 1))],
        [_logits()],
        [numpy_helper.from_array(W1, "W1")],
    )
    spec = OnnxModel(p).input_spec
    assert spec.layout == "NHWC" and "last dim is 1 (channels)" in spec.layout_reason
    a = analyze_model_file(p, data="digits", ood=["noise"], n_null=50)
    assert any("layout NHWC from the model" in n for n in a.notes)
    assert a.layer("conv1").check.is_cross_correlation and a.layer("conv1").distribution
    with pytest.raises(ConvlensError, match=r"input is \[N, 8, 8, 1\].* fitted as NCHW"):
        analyze_model_file(p, data="digits", n_null=50, fit=FitOptions(layout="NCHW"))
    assert list(load_weights(p)) == ["conv1.weight"]  # weights-only analysis is unaffected


def test_fixed_dims_that_do_not_fit_the_data(tmp_path):
    # issue 13 item 3 changed this on purpose: data of another size are resized to the model's
    # fixed size (stated); channels that cannot be converted are still refused
    nodes = [helper.make_node("Conv", ["X", "W1"], ["logits"], name="conv1")]
    inits = [numpy_helper.from_array(W1, "W1")]
    p = _save(tmp_path / "m.onnx", nodes, [_x(("N", 1, 16, 16))], [_logits()], inits)
    a = analyze_model_file(p, data="digits", ood=["noise"], n_null=50)
    assert any("resized from 8x8 to 16x16" in n for n in a.notes)
    q = _save(tmp_path / "m2.onnx", nodes, [_x(("N", 2, 16, 16))], [_logits()], inits)
    with pytest.raises(
        ConvlensError, match=r"data 'digits' have 1 channel\(s\); the model reads 2"
    ):
        analyze_model_file(q, data="digits", ood=["noise"], n_null=50)


def test_weights_not_constant_message(tmp_path):
    nodes = [
        helper.make_node("MatMul", ["A", "B"], ["wflat"]),
        _const("shape", np.array([4, 1, 3, 3], dtype=np.int64)),
        helper.make_node("Reshape", ["wflat", "shape"], ["w"]),
        helper.make_node("Conv", ["X", "w"], ["c1"], name="conv1"),
        helper.make_node("Conv", ["c1", "X2"], ["logits"]),
    ]
    inits = [
        numpy_helper.from_array(np.ones((4, 9), np.float32), "A"),
        numpy_helper.from_array(np.ones((9, 9), np.float32), "B"),
    ]
    x2 = helper.make_tensor_value_info("X2", TensorProto.FLOAT, [4, 4, 3, 3])
    p = _save(tmp_path / "nc.onnx", nodes, [_x(), x2], [_logits()], inits)
    msg = (
        r"2 Conv nodes, weights not constant: conv1 \(input 'wflat' produced by MatMul\), "
        r"conv4 \(input 'X2' is a graph input\)"
    )
    with pytest.raises(ConvlensError, match=msg):
        load_weights(p)
    with pytest.raises(ConvlensError, match=msg):
        OnnxModel(p)
    with pytest.raises(ConvlensError, match=msg):
        analyze_model_file(p, data="digits")


def test_hostile_producer_chains_are_refused_clearly(tmp_path):
    """A cycle of Identity nodes, a dequantisation scale that does not fit, and a Reshape that does
    not fit are each one 'not constant' reason; the good conv is still analysed, with a note."""
    q = np.ones((4, 1, 3, 3), dtype=np.int8)
    nodes = [
        helper.make_node("Identity", ["loop_b"], ["loop_a"]),
        helper.make_node("Identity", ["loop_a"], ["loop_b"]),
        helper.make_node("Conv", ["X", "loop_a"], ["c1"], name="cyclic"),
        _const("q", q),
        _const("s3", np.ones(3, np.float32)),
        helper.make_node("DequantizeLinear", ["q", "s3"], ["wq"], axis=0),
        helper.make_node("Conv", ["X", "wq"], ["c2"], name="badscale"),
        _const("shape", np.array([5, 5], np.int64)),
        helper.make_node("Reshape", ["W1", "shape"], ["wr"]),
        helper.make_node("Conv", ["X", "wr"], ["c3"], name="badreshape"),
        helper.make_node("Conv", ["X", "W1"], ["logits"], name="good"),
    ]
    graph = helper.make_graph(nodes, "g", [_x()], [_logits()], [numpy_helper.from_array(W1, "W1")])
    p = tmp_path / "h.onnx"
    onnx.save(helper.make_model(graph), str(p))  # not a valid graph (cycle): never run
    g = read_graph(p)
    assert [c.name for c in g.convs] == ["good"]
    reasons = {u.name: u.reason for u in g.unresolved}
    assert reasons["cyclic"] == "more than 32 nodes before a constant"
    assert (
        "scale of 3 values does not fit weight shape [4, 1, 3, 3] on axis 0" in reasons["badscale"]
    )
    assert "Reshape to [5, 5] that does not fit" in reasons["badreshape"]
    assert list(load_weights(p)) == ["good.weight"]


def test_external_data_in_a_constant_node_is_refused(tmp_path):
    t = numpy_helper.from_array(W1, "w")
    t.data_location = TensorProto.EXTERNAL
    t.ClearField("raw_data")
    entry = t.external_data.add()
    entry.key, entry.value = "location", "/etc/passwd"
    nodes = [
        helper.make_node("Constant", [], ["w"], value=t),
        helper.make_node("Conv", ["X", "w"], ["logits"], name="conv"),
    ]
    p = tmp_path / "ext.onnx"
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [_x()], [_logits()])), str(p))
    with pytest.raises(ConvlensError, match="keeps tensor 'w' in an external data file"):
        load_weights(p)


def test_partly_constant_model_runs_with_a_note(tmp_path):
    nodes = [
        helper.make_node("Conv", ["X", "W1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("MatMul", ["A", "B"], ["wflat"]),
        _const("shape", np.array([4, 4, 3, 3], dtype=np.int64)),
        helper.make_node("Reshape", ["wflat", "shape"], ["w2"]),
        helper.make_node("Conv", ["c1", "w2"], ["c2"], name="conv2"),
        *_head("c2"),
    ]
    inits = [
        numpy_helper.from_array(W1, "W1"),
        numpy_helper.from_array(np.ones((4, 36), np.float32), "A"),
        numpy_helper.from_array(np.eye(36, dtype=np.float32), "B"),
    ]
    p = _save(tmp_path / "part.onnx", nodes, [_x()], [_logits()], inits)
    a = analyze_model_file(p, data="digits", ood=["noise"], n_null=50)
    assert [r.name for r in a.layers] == ["conv1"] and a.layers[0].check.is_cross_correlation
    assert (
        "1 conv node(s) not analysed, weights not constant: conv2 (input 'wflat' produced by MatMul)"
        in a.notes
    )


# ----------------------------------------------------------------------------- real-model fixes


REAL = Path(__file__).parent / "data" / "real"
SILERO_16K = REAL / "silero_vad_16k_op15.onnx"
MAGIKA = REAL / "magika_standard_v3_3.onnx"


def quantise(src: Path, dst: Path) -> Path:
    """onnxruntime's dynamic quantisation of every Conv (uint8 weights), as a user would run it."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(src), str(dst), weight_type=QuantType.QUInt8, op_types_to_quantize=["Conv"]
    )
    return dst


def constant_weights(src: Path, dst: Path) -> Path:
    """``src`` with every initializer moved into a ``Constant`` node (as paddle2onnx writes them)."""
    from onnx import helper

    m = onnx.load(str(src))
    g = m.graph
    consts = [helper.make_node("Constant", [], [t.name], value=t) for t in g.initializer]
    inits = {t.name for t in g.initializer}
    keep = [i for i in g.input if i.name not in inits]
    del g.initializer[:]
    del g.input[:]
    g.input.extend(keep)
    nodes = consts + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    onnx.save(m, str(dst))
    return dst


@pytest.mark.slow
@torchscript_export
def test_quantised_graph_convs_in_execution_order(tmp_path: Path) -> None:
    """onnxruntime's quantiser stores the real VAD's nodes out of order (the 1-tap decoder conv
    first); the convs are numbered by execution, so the STFT is the first layer.

    Regression: real-model fix 2 (topological order)."""
    from convlens.analysis.model.onnxgraph import read_graph

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


@pytest.mark.slow
@torchscript_export
def test_topological_order_is_stable_and_follows_subgraph_inputs() -> None:
    """Reversed nodes come back in dependency order; a node whose subgraph reads an outer name
    waits for that name's producer; independent nodes keep their stored order.

    Regression: real-model fix 2 (topological order)."""
    from onnx import TensorProto, helper

    from convlens.analysis.model.onnxgraph import topological_order

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


@pytest.mark.slow
@torchscript_export
def test_dynamic_quantize_linear_matches_onnxruntime() -> None:
    """The constant-folded ``DynamicQuantizeLinear`` equals onnxruntime's, bit for bit.

    Regression: real-model fix 4 (DynamicQuantizeLinear weights)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from convlens.analysis.model.onnxdecode import dynamic_quantize_linear

    node = helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"])
    g = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info(n, t, None) for n, t in (("y", 2), ("s", 1), ("z", 2))],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for x in [rng.standard_normal((8, 3, 3, 3)), rng.uniform(0.1, 2, (5, 7)), np.zeros((4, 2))]:
        x = x.astype(np.float32)
        want = sess.run(None, {"x": x})
        got = dynamic_quantize_linear(x)
        for a, b in zip(got, want, strict=True):
            assert a.dtype == b.dtype and np.array_equal(a, b)


@pytest.mark.slow
@torchscript_export
def test_constant_weights_quantised_at_run_time_are_followed(tmp_path: Path) -> None:
    """``quantize_dynamic`` of a model whose weights are ``Constant`` nodes quantises them with
    ``DynamicQuantizeLinear`` at run time: the weights are still constant and are read (the bug:
    exit 2, "weights not constant"); the dequantised weight is within half a step of the float.

    Regression: real-model fix 4 (DynamicQuantizeLinear weights)."""
    from convlens.analysis.model.onnxgraph import read_graph

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, bias=False), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 3, bias=False)
    )
    f = constant_weights(
        export(model, torch.zeros(1, 1, 12, 12), tmp_path / "m.onnx"), tmp_path / "c.onnx"
    )
    q = quantise(f, tmp_path / "q.onnx")
    assert any(n.op_type == "DynamicQuantizeLinear" for n in onnx.load(str(q)).graph.node)
    g = read_graph(q)
    assert not g.unresolved and len(g.convs) == 2
    for conv, ref in zip(g.convs, (model[0], model[2]), strict=True):
        w = ref.weight.detach().double().numpy()
        step = (max(0.0, w.max()) - min(0.0, w.min())) / 255
        assert np.abs(conv.weight - w).max() <= step / 2 + 1e-6
    r, data = analyze(q, tmp_path / "a.json")
    assert r.exit_code == 0, r.output
    assert data is not None and len(data["layers"]) == 2


@pytest.mark.slow
@torchscript_export
def test_quantised_layers_carry_a_note(tmp_path: Path) -> None:
    """A layer on an 8-bit grid says its fractions are not comparable with the float null (per
    layer, in the JSON and in the printed line); a float layer does not.

    Regression: real-model fix 3 (quantised layers)."""
    from convlens.analysis.measure.caveats import quantised_levels

    rng = np.random.default_rng(0)
    assert quantised_levels(rng.standard_normal((8, 4, 3, 3))) is None
    assert quantised_levels(np.round(rng.standard_normal((8, 4, 3, 3)) * 20) / 20) is not None
    assert quantised_levels(np.round(rng.standard_normal((2, 1, 3, 3)) * 20) / 20) is None  # small
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 5), torch.nn.ReLU(), torch.nn.Conv2d(16, 8, 3)
    )
    q = quantise(export(model, torch.zeros(1, 1, 16, 16), tmp_path / "m.onnx"), tmp_path / "q.onnx")
    r, data = analyze(q, tmp_path / "a.json")
    assert r.exit_code == 0, r.output
    assert data is not None
    for lay in data["layers"]:
        assert any(n.startswith("quantised weights (") for n in lay["matching"]["notes"])
    assert "quantised weights: fractions not comparable with the float null" in r.output
    _, fdata = analyze(tmp_path / "m.onnx", tmp_path / "f.json")
    assert fdata is not None and not any(lay["matching"]["notes"] for lay in fdata["layers"])


@pytest.mark.slow
@torchscript_export
def test_conv_transpose_nodes_are_named_in_a_note(tmp_path: Path) -> None:
    """ConvTranspose nodes are not analysed; a note (or the error, when nothing else is left)
    says how many there are instead of dropping them silently.

    Regression: real-model fix 10 (ConvTranspose)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.ConvTranspose2d(4, 1, 3, stride=2)
    )
    f = export(model, torch.zeros(1, 1, 12, 12), tmp_path / "m.onnx")
    r, data = analyze(f, tmp_path / "a.json")
    assert r.exit_code == 0, r.output
    assert data is not None and len(data["layers"]) == 1
    want = (
        "conv-like nodes not analysed (only Conv, ConvInteger and QLinearConv are): 1 ConvTranspose"
    )
    assert any(n.startswith(want) for n in data["notes"]), data["notes"]
    only = export(torch.nn.ConvTranspose2d(1, 2, 3), torch.zeros(1, 1, 8, 8), tmp_path / "t.onnx")
    r, _ = analyze(only, tmp_path / "b.json")
    assert r.exit_code == 2 and "1 ConvTranspose" in r.output, r.output


@pytest.mark.slow
@torchscript_export
def test_magika_error_names_the_graph_input(tmp_path: Path) -> None:
    """Magika reads int32 byte ids ``[N, 2048]``: the error names that graph input (dtype and
    shape) as what does not fit, not the first conv's 256 channels.

    Regression: real-model fix 11 (a graph input that is not data)."""
    r, _ = analyze(MAGIKA, tmp_path / "a.json", "--data", "digits", "--ood", "noise")
    assert r.exit_code == 2, r.output
    line = next(ln for ln in r.output.splitlines() if ln.startswith("convlens: error"))
    assert "the graph input 'bytes' (int32 [N, 2048]) does not fit 2-D data (N, C, H, W)" in line
    assert "reads 256" not in line

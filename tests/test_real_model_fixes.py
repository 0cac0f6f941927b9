"""Regression tests for the bugs a practitioner found running convlens on real pretrained CNNs
(``tests/data/real``). Each test builds a small model here (``torch.onnx.export`` and onnxruntime's
``quantize_dynamic``) or calls the analysis function directly, so the file runs in seconds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

pytestmark = [
    # real models and exported ONNX graphs: minutes of the inner loop in total, so `make test` only
    pytest.mark.slow,
    # the TorchScript exporter (dynamo=False) is what builds the small models here
    pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export"),
    pytest.mark.filterwarnings("ignore:The feature will be removed"),
]

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


def test_topological_order_is_stable_and_follows_subgraph_inputs() -> None:
    """Reversed nodes come back in dependency order; a node whose subgraph reads an outer name
    waits for that name's producer; independent nodes keep their stored order."""
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


# ---------------------------------------------------------------- 1: receptive fields past a break


def _ident(name: str, index: int, k: int, stride: int = 1) -> Any:
    from convlens.analysis.result import LayerIdentity

    return LayerIdentity(
        name=name,
        index=index,
        order="execution",
        dims=2,
        weight_shape=[4, 4, k, k],
        in_channels=4,
        out_channels=4,
        kernel_size=[k, k],
        stride=[stride, stride],
        padding=[0, 0],
        dilation=[1, 1],
        groups=1,
    )


def test_squeeze_excitation_gate_does_not_carry_into_the_main_path() -> None:
    """A squeeze-and-excitation block (global pool, two 1x1 convs, a gate on the main path): the
    gate convs see the whole input ('global', size clipped to the input), the next main conv
    resumes from the gated conv's output instead of the pool's stride (the bug: jump [48, 192])."""
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


def test_unexplained_spatial_break_stops_the_figures() -> None:
    """A conv reading a size no pooling and no earlier output explains: no figures from there."""
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


# ---------------------------------------------------------------- 7-9: 1-D matching


def test_one_tap_kernels_only_mix_channels() -> None:
    """A DC-removed 1-tap kernel is 0: the skip reason says what 1-tap kernels do instead."""
    from convlens.analysis.measure.dims import match_other

    m = match_other("c", np.ones((4, 2, 1)), n_null=200)
    assert (
        m.skipped == "1-tap kernels (1): no spatial structure to compare (they only mix channels)"
    )
    assert "[-1, 1]" in str(match_other("c", np.ones((4, 2, 2)), n_null=200).skipped)


def test_three_tap_layers_report_no_test_power() -> None:
    """With 3 taps the random null's 95th percentile is ~0.9999: no fraction is reported as a
    test, the layer says why, and the first-layer verdict is not measured."""
    from convlens.analysis.evidence.verdicts import kernel_verdict
    from convlens.analysis.measure.dims import match_other
    from convlens.summary import _one_d_line

    w = np.random.default_rng(0).standard_normal((8, 4, 3))
    m = match_other("enc", w, n_null=2000)
    assert m.null is not None and m.null.p95 is not None and m.null.p95 > 0.999
    assert m.fraction_above_null95 is None and m.fraction_above_spectrum_null95 is None
    assert any("no test power" in n for n in m.notes)
    assert "no test power" in _one_d_line(m) and "above the random" not in _one_d_line(m)
    assert kernel_verdict(m.fraction_above_null95, m.n_kernels).verdict == "not measured"
    five = match_other("c5", np.random.default_rng(0).standard_normal((8, 4, 5)), n_null=2000)
    assert five.fraction_above_null95 is not None and not five.notes


def analyze(target: Path, out: Path, *args: str) -> tuple[Any, dict[str, Any] | None]:
    """``convlens analyze TARGET --out OUT ARGS`` in process; the written JSON if any."""
    from click.testing import CliRunner

    from convlens.cli import cli

    r = CliRunner().invoke(cli, ["analyze", str(target), "--out", str(out), *args])
    data = json.loads(out.read_text()) if out.exists() else None
    return r, data


# ---------------------------------------------------------------- 5: 1-D first-layer verdict


def test_one_d_first_layer_line_has_the_verdict(tmp_path: Path) -> None:
    """The 1-D summary line of the first layer carries the classical-kernels verdict, like 2-D."""
    f = export(conv1d_stack(), torch.zeros(1, 1, 64), tmp_path / "m.onnx")
    r, data = analyze(f, tmp_path / "a.json")
    assert r.exit_code == 0, r.output
    assert data is not None
    verdict = data["verdicts"]["classical_kernels"]["verdict"]
    first = next(ln for ln in r.output.splitlines() if ln.startswith("/0/Conv: "))
    assert f"; first layer, classical kernels: {verdict}" in first
    second = next(ln for ln in r.output.splitlines() if ln.startswith("/2/Conv: "))
    assert "first layer" not in second


def test_all_zero_one_d_kernels_are_left_out_of_the_spectrum() -> None:
    """An all-zero kernel has no peak: it is counted apart, not a peak at 0 in the summary."""
    from convlens.analysis.measure.dims import kernel_spectra, match_other, spectral_summary
    from convlens.summary import _one_d_line

    t = np.arange(16)
    live = np.stack([np.cos(2 * np.pi * f * t / 16) for f in (2, 3, 4)])
    vecs = np.concatenate([live, np.zeros((2, 16))])
    s = spectral_summary(vecs, keep=True)
    want = kernel_spectra(live)[0]
    assert s.n_zero_kernels == 2
    assert s.peak_min == want.min() and s.peak_max == want.max() and s.peak_min > 0
    assert sum(s.histogram_counts) == 3 and len(s.peak_frequencies_sorted) == 3
    assert s.peaks[3:] == [0.0, 0.0] and len(s.peaks) == 5  # per-kernel order kept
    m = match_other("c", vecs.reshape(5, 1, 16), n_null=200)
    assert "2 all-zero kernel(s) left out of the spectrum" in _one_d_line(m)


# ---------------------------------------------------------------- 6: ID mean 0


def test_ratio_interval_of_a_silent_layer_is_null_without_a_warning() -> None:
    """``mean(b) == 0`` in every resample: a null interval, no numpy 'All-NaN slice' warning."""
    import warnings

    from convlens.analysis.evidence.stats import bootstrap_ratio_ci

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lo, hi = bootstrap_ratio_ci(np.ones(10), np.zeros(12), n_boot=200)
    assert np.isnan(lo) and np.isnan(hi)
    lo, hi = bootstrap_ratio_ci(np.full(10, 2.0), np.ones(12), n_boot=200)
    assert lo == hi == 2.0


def test_silent_layer_is_named_in_a_note(tmp_path: Path) -> None:
    """A layer whose ID activations are all 0 (zero weights and bias): no ratio, a note names it."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3), torch.nn.ReLU()
    )
    with torch.no_grad():
        model[2].weight.zero_()
        model[2].bias.zero_()
    f = export(model, torch.zeros(1, 1, 28, 28), tmp_path / "m.onnx")
    r, data = analyze(f, tmp_path / "a.json", "--data", "digits", "--ood", "noise")
    assert r.exit_code == 0, r.output
    assert data is not None
    assert "All-NaN" not in r.output
    silent = [n for n in data["notes"] if n.startswith("mean ID activation 0 at ")]
    assert len(silent) == 1 and "/2/Conv" in silent[0], data["notes"]
    dist = next(x for x in data["layers"] if x["identity"]["name"] == "/2/Conv")["distribution"]
    assert dist["ood"]["noise"]["ratio"] is None and dist["ood"]["noise"]["ratio_ci"] == [
        None,
        None,
    ]


# ---------------------------------------------------------------- 4: DynamicQuantizeLinear weights


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


def test_dynamic_quantize_linear_matches_onnxruntime() -> None:
    """The constant-folded ``DynamicQuantizeLinear`` equals onnxruntime's, bit for bit."""
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


def test_constant_weights_quantised_at_run_time_are_followed(tmp_path: Path) -> None:
    """``quantize_dynamic`` of a model whose weights are ``Constant`` nodes quantises them with
    ``DynamicQuantizeLinear`` at run time: the weights are still constant and are read (the bug:
    exit 2, "weights not constant"); the dequantised weight is within half a step of the float."""
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


# ---------------------------------------------------------------- 3: quantised layers


def test_all_zero_kernels_are_out_of_the_fractions_and_the_verdict_n() -> None:
    """Zero kernels (what 8-bit quantisation makes of small kernels) are counted apart: the
    fraction is over the live kernels, and the first-layer verdict's n is the live count."""
    from convlens.analysis.measure.matching import match_layer

    rng = np.random.default_rng(0)
    w = rng.uniform(-1, 1, (6, 2, 3, 3))
    full = match_layer("c", w, n_null=500, gabor=False)
    w0 = np.concatenate([w, np.zeros((4, 2, 3, 3))])
    m = match_layer("c", w0, n_null=500, gabor=False)
    assert m.n_kernels == 20 and m.n_zero_kernels == 8
    assert m.fraction_above_null95 == full.fraction_above_null95
    assert m.fraction_above_spectrum_null95 is not None
    assert any(n.startswith("8 of 20 kernels are all zero") for n in m.notes)


def test_quantised_layers_carry_a_note(tmp_path: Path) -> None:
    """A layer on an 8-bit grid says its fractions are not comparable with the float null (per
    layer, in the JSON and in the printed line); a float layer does not."""
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


# ---------------------------------------------------------------- 10: ConvTranspose


def test_conv_transpose_nodes_are_named_in_a_note(tmp_path: Path) -> None:
    """ConvTranspose nodes are not analysed; a note (or the error, when nothing else is left)
    says how many there are instead of dropping them silently."""
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


# ---------------------------------------------------------------- 11: a graph input that is not data


def test_magika_error_names_the_graph_input(tmp_path: Path) -> None:
    """Magika reads int32 byte ids ``[N, 2048]``: the error names that graph input (dtype and
    shape) as what does not fit, not the first conv's 256 channels."""
    r, _ = analyze(MAGIKA, tmp_path / "a.json", "--data", "digits", "--ood", "noise")
    assert r.exit_code == 2, r.output
    line = next(ln for ln in r.output.splitlines() if ln.startswith("convlens: error"))
    assert "the graph input 'bytes' (int32 [N, 2048]) does not fit 2-D data (N, C, H, W)" in line
    assert "reads 256" not in line


# ---------------------------------------------------------------- 12: notes by data kind


def test_not_normalised_note_is_worded_by_data_kind() -> None:
    """1-D data (audio) are samples as loaded, not 'pixel values in 0-1'; images keep the wording."""
    from convlens.data.fit import FitOptions, InputExpectation, plan_fit

    norm = {"mean": 0.0, "std": 1.0}
    one = plan_fit(
        [1, 576], InputExpectation(dims=1, channels=1), FitOptions(normalize="none"), norm, "a"
    )
    assert "not normalised: the model reads the samples as loaded" in one.notes
    assert not any("pixel" in n for n in one.notes)
    two = plan_fit(
        [1, 8, 8], InputExpectation(dims=2, channels=1), FitOptions(normalize="none"), norm, "b"
    )
    assert "not normalised: the model reads pixel values in 0-1" in two.notes


# ---------------------------------------------------------------- 13: JSON size of feature maps


def test_wide_layers_keep_a_correlation_summary_not_the_matrix(tmp_path: Path) -> None:
    """Over FEATURE_MAP_CHANNEL_LIMIT (64) channels only the mean |r| between channels is stored
    (checked against numpy's corrcoef), and the note says so; narrow layers keep the matrix."""
    from convlens.analysis.measure.featuremaps import mean_abs_offdiagonal
    from convlens.analysis.orchestration.model_file import FEATURE_MAP_CHANNEL_LIMIT

    assert FEATURE_MAP_CHANNEL_LIMIT == 64
    x = np.random.default_rng(0).standard_normal((5, 40))
    r = np.corrcoef(x)
    want = np.abs(r[np.triu_indices(5, 1)]).mean()
    assert mean_abs_offdiagonal(r) == pytest.approx(want, rel=1e-12)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 80, 3)
    )
    f = export(model, torch.zeros(1, 1, 8, 8), tmp_path / "m.onnx")
    res, data = analyze(f, tmp_path / "a.json", "--data", "digits", "--ood", "noise")
    assert res.exit_code == 0, res.output
    assert data is not None
    narrow, wide = (lay["feature_maps"] for lay in data["layers"])
    assert len(narrow["channel_correlation_final"]) == 8
    assert wide["channel_correlation_final"] == [] and 0 < wide["mean_abs_channel_correlation"] <= 1
    assert any("only the mean |r| between channels is stored" in n for n in data["notes"])


def test_first_layer_verdict_never_prints_p_zero() -> None:
    """A binomial tail that underflows (the VAD's 256 of 256 STFT atoms) reads '< 1e-300', not 0."""
    from convlens.analysis.evidence.verdicts import kernel_verdict

    v = kernel_verdict(1.0, 256)
    assert v.p_value == 0.0
    from convlens.analysis.evidence.stats import format_p

    assert format_p(v.p_value) == "< 1e-300"


def test_padding_before_a_conv_keeps_the_chain() -> None:
    """An input grown by less than double (a Pad node, e.g. the VAD's reflection pad before its
    STFT) is taken as padding: the figures go on, and the note says so."""
    from convlens.analysis.measure.receptive import traced_chain

    layers = [_ident("a", 0, 3), _ident("b", 1, 3)]
    shapes = {"a": ([1, 4, 12, 12], [1, 4, 10, 10]), "b": ([1, 4, 10, 10], [1, 4, 8, 8])}
    fields, note = traced_chain(layers, shapes, (9, 9))
    assert [f.size for f in fields] == [(3, 3), (5, 5)]
    assert "taken as padding before a ([9, 9] -> [12, 12]; start not shifted)" in note

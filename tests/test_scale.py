"""Scale and honesty of the kernel analysis (issue 13, items 1 and 6): binomial tail for huge layers,
the first layer of a weights-only file, per-kernel detail caps and the JSON size, summary lines."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from convlens.analysis import analyze_model_file, analyze_weights
from convlens.analysis.evidence.verdicts import binomial_tail, kernel_verdict
from convlens.analysis.measure.matching import DETAIL_LIMIT, DETAIL_TOTAL
from convlens.analysis.model.layers import STEM_RULE, identify_weights, stem_index
from convlens.analysis.result import AnalysisResult
from convlens.errors import ConvlensError
from convlens.summary import analysis_summary


@pytest.mark.parametrize("n", [10**6, 1030, 5000])
def test_binomial_tail_large_n_matches_scipy(n: int):
    for x in (0, 1, n // 20, n // 20 + 3 * int(np.sqrt(n)), n // 5, n):
        expected = 1.0 if x <= 0 else stats.binom.sf(x - 1, n, 0.05)
        assert binomial_tail(x, n) == float(expected)  # the same ufunc, without scipy.stats
    v = kernel_verdict(0.3, 10**6)
    assert v.verdict == "yes" and v.p_value == 0.0 and v.above == 300_000
    assert kernel_verdict(0.05, 10**6).verdict == "no evidence"


def _timm_weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    shapes = {
        "conv_stem.weight": (32, 3, 3, 3),
        "blocks.0.0.conv_dw.weight": (32, 1, 3, 3),
        "blocks.0.0.conv_pw.weight": (16, 32, 1, 1),
        "blocks.1.0.conv_pw.weight": (96, 16, 1, 1),
        "blocks.1.0.conv_dw.weight": (96, 1, 3, 3),
        "blocks.1.0.conv_pwl.weight": (24, 96, 1, 1),
        "conv_head.weight": (1280, 24, 1, 1),
    }
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in sorted(shapes.items())}


def test_timm_style_first_layer_is_the_stem(tmp_path):
    w = _timm_weights()
    assert next(iter(w)) == "blocks.0.0.conv_dw.weight"  # what sorted safetensors keys give
    idents = identify_weights(w)
    first = min(idents, key=lambda i: i.index)
    assert first.name == "conv_stem.weight" and first.order == "file"
    rest = [i.name for i in sorted(idents, key=lambda i: i.index)][1:]
    assert rest == [n for n in w if n != "conv_stem.weight"]  # file order otherwise
    assert sorted(i.index for i in idents) == list(range(len(w)))

    from safetensors.numpy import save_file

    path = tmp_path / "effnet.safetensors"
    save_file(w, str(path))
    a = analyze_model_file(path, n_null=200)
    assert a.first_layer is not None and a.first_layer.name == "conv_stem"
    assert a.headline.first_layer == "conv_stem"
    assert a.verdicts.classical_kernels is not None
    assert a.verdicts.classical_kernels.layer == "conv_stem"
    note = next(n for n in a.notes if n.startswith("first layer chosen by heuristic"))
    assert "conv_stem with 3 input channel(s)" in note and STEM_RULE in note
    assert a.first_layer.matching is not None and len(a.first_layer.matching.kernels) == 96


@pytest.mark.parametrize(
    ("shapes", "expected"),
    [
        # plain grey CNN: the 1-channel stem is not mistaken for a depthwise conv
        ({"a.weight": (16, 16, 3, 3), "conv1.weight": (16, 1, 5, 5)}, 1),
        # RGB net: fewest input channels
        ({"layer1.weight": (64, 64, 3, 3), "conv1.weight": (64, 3, 7, 7)}, 1),
        # grey depthwise net: a tie at 1 channel is broken by the name, then file order
        ({"blocks.dw.weight": (8, 1, 3, 3), "stem.weight": (8, 1, 3, 3)}, 1),
        ({"x.weight": (8, 1, 3, 3), "y.weight": (8, 1, 3, 3)}, 0),
        # grey stem followed by a 4-channel layer: shapes alone cannot say depthwise, keep the stem
        ({"conv1.weight": (4, 1, 3, 3), "conv2.weight": (4, 4, 3, 3)}, 0),
        # a 1-D layer in a 2-D net is not a stem candidate
        ({"b.weight": (8, 8, 3, 3), "s.weight": (8, 3, 5, 5), "c1d.weight": (4, 2, 7)}, 1),
    ],
)
def test_stem_rule(shapes: dict[str, tuple[int, ...]], expected: int):
    assert stem_index([(k, list(s)) for k, s in shapes.items()]) == expected


def _many_kernels() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {
        "conv1.weight": rng.standard_normal((8, 3, 5, 5)),
        "b.weight": rng.standard_normal((16, 8, 3, 3)),
        "c.weight": rng.standard_normal((32, 16, 3, 3)),
        "d.weight": rng.standard_normal((16, 32, 3, 3)),
    }


def test_detail_caps_per_layer_and_total(tmp_path):
    assert (DETAIL_LIMIT, DETAIL_TOTAL) == (4096, 20_000)
    layers = analyze_weights(_many_kernels(), n_null=100, detail_limit=200, detail_total=300)
    kept = {r.name: len(r.matching.kernels) for r in layers if r.matching is not None}
    # conv1 24 + b 128 fit; c (512) is over the per-layer cap; d (512) too
    assert kept == {"conv1": 24, "b": 128, "c": 0, "d": 0}
    layers = analyze_weights(_many_kernels(), n_null=100, detail_limit=4096, detail_total=600)
    kept = {r.name: len(r.matching.kernels) for r in layers if r.matching is not None}
    assert kept == {"conv1": 24, "b": 128, "c": 0, "d": 0}
    for r in layers:  # summaries always
        m = r.matching
        assert m is not None and m.fraction_above_null95 is not None and sum(m.categories.values())
        assert (m.channel_summed == []) == (m.kernels == [])
    from safetensors.numpy import save_file

    path = tmp_path / "m.safetensors"
    save_file({k: v.astype(np.float32) for k, v in _many_kernels().items()}, str(path))
    a = analyze_model_file(path, n_null=100, detail_limit=200, detail_total=300)
    note = next(n for n in a.notes if n.startswith("per-kernel records kept only"))
    assert "200 kernels and 300 kernels in all" in note and "2 layer(s): c, d" in note
    with pytest.raises(ConvlensError, match="detail_total must be a non-negative integer"):
        analyze_weights(_many_kernels(), n_null=100, detail_total=-1)


def resnet50_shapes() -> dict[str, tuple[int, ...]]:
    """The conv weight shapes of a ResNet-50 (as ``bench/kernel_analysis.py``)."""
    shapes: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7)}
    in_c = 64
    for stage, (blocks, width) in enumerate([(3, 64), (4, 128), (6, 256), (3, 512)], start=1):
        for b in range(blocks):
            p = f"layer{stage}.{b}"
            shapes[f"{p}.conv1.weight"] = (width, in_c, 1, 1)
            shapes[f"{p}.conv2.weight"] = (width, width, 3, 3)
            shapes[f"{p}.conv3.weight"] = (width * 4, width, 1, 1)
            if b == 0:
                shapes[f"{p}.downsample.0.weight"] = (width * 4, in_c, 1, 1)
            in_c = width * 4
    return shapes


@pytest.mark.slow
def test_resnet50_json_stays_small(tmp_path):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    sd = {k: rng.standard_normal(s).astype(np.float32) for k, s in resnet50_shapes().items()}
    assert sum(v.size for v in sd.values()) == 23_454_912
    path = tmp_path / "r50.safetensors"
    save_file(sd, str(path))
    a = analyze_model_file(path)
    text = a.to_json()
    assert len(text.encode()) < 5_000_000
    records = sum(len(r.matching.kernels) for r in a.layers if r.matching is not None)
    assert 0 < records <= DETAIL_TOTAL
    assert a.first_layer is not None and a.first_layer.name == "conv1"
    assert AnalysisResult.from_json(text).headline == a.headline
    assert json.loads(text)["layers"][0]["matching"]["kernels"]


def test_summary_lines_give_verdict_and_categories(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "effnet.safetensors"
    save_file(_timm_weights(), str(path))
    a = analyze_model_file(path, n_null=200)
    lines = analysis_summary(a)
    stem = next(line for line in lines if line.startswith("conv_stem:"))
    m = a.layer("conv_stem").matching
    assert m is not None and stem.startswith("conv_stem: 96 kernels 3x3, ")
    assert "first layer, classical kernels: " in stem and "; categories " in stem
    for cat, n in m.categories.items():
        assert f"{cat} {n}" in stem
    dw = next(line for line in lines if line.startswith("blocks.0.0.conv_dw:"))
    assert "categories " in dw and "first layer" not in dw
    assert any("1x1 kernels have no spatial structure" in line for line in lines)


def test_summary_lines_for_verification(tiny_run_analysis):
    lines = analysis_summary(tiny_run_analysis)
    line = next(x for x in lines if x.startswith("layer == cross-correlation"))
    assert "(exact)" in line and "torch float64: tolerance 1e-09" in line
    assert "min relative |diff|" in line and "flip-invariant layer(s)" in line

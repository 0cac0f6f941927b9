"""Per-unit statistics (issue 14): units not slices, dead units, the colour rule, even kernel sizes,
Wilson intervals and p-values at their resolution."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest

from convlens.analysis.evidence import stats
from convlens.analysis.evidence.verdicts import unit_kernel_verdict, verdicts
from convlens.analysis.measure import matching, units
from convlens.analysis.orchestration.stages import analyze_weights
from convlens.kernels import get_kernel
from convlens.kernels.bank import matching_bank


def _gauss(k: int = 5, s: float = 1.2) -> np.ndarray:
    y, x = np.mgrid[0:k, 0:k] - (k - 1) / 2
    return np.exp(-(x**2 + y**2) / (2 * s * s))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 200), st.integers(1, 200))
def test_wilson_interval_inside_unit_interval(x, n):
    x = min(x, n)
    lo, hi = stats.wilson(x, n)
    assert 0.0 <= lo <= x / n <= hi <= 1.0
    ref = binomtest(x, n).proportion_ci(0.95, method="wilson")
    # the closed form is scipy's formula with its z: equal to the last bit
    assert (lo, hi) == (max(0.0, float(ref.low)), min(1.0, float(ref.high)))


def test_wilson_edges_and_empty():
    assert stats.wilson(0, 8)[0] == 0.0 and stats.wilson(8, 8)[1] == 1.0
    assert stats.wilson(0, 0) == (None, None)


def test_p_values_are_floored_at_their_resolution():
    null = np.sort(np.random.default_rng(0).uniform(size=2000))
    p = units.slice_p_values(np.array([2.0, -1.0]), null)
    assert p[0] == 1 / 2001 and p[1] == 1.0  # never 0
    assert stats.format_p(float(p[0]), 2000) == "< 1/2001"
    assert stats.format_p(0.0) == "< 1e-300"
    assert stats.format_p(0.0123) == "0.012"
    assert stats.format_p(None) == "n/a"


def test_sidak_matches_formula():
    p = np.array([0.001, 0.01, 0.5, 1.0])
    assert np.allclose(units.sidak(p, 1), p)
    assert np.allclose(units.sidak(p, 3), 1 - (1 - p) ** 3)


def test_units_not_slices_three_identical_slices_count_once():
    sob = get_kernel("sobel_x", size=5).weights
    w = np.stack([np.stack([sob, sob, sob])] * 8) * np.arange(1, 9)[:, None, None, None]
    m = matching.match_layer("c", w, n_null=500)
    assert m.n_kernels == 24  # slices are still reported ...
    u = m.units
    assert u.n_units == 8 and u.n_live == 8 and u.above_null95 == 8  # ... but counted per unit
    v = unit_kernel_verdict(u.above_null95, u.n_live, "c", u.unit_score, u.n_dead)
    assert v.n == 8 and v.above == 8 and v.verdict == "yes"
    assert v.ci[0] is not None and 0 <= v.ci[0] <= 1 and v.ci[1] == 1.0
    assert "Sidak" in u.unit_score


def test_dead_units_excluded_and_counted():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((10, 1, 5, 5))
    w[[2, 7]] *= 1e-6  # norm ~1e-6 of the layer's largest unit
    m = matching.match_layer("c", w, n_null=300)
    u = m.units
    assert u.n_dead == 2 and u.dead_units == [2, 7] and u.n_live == 8
    assert u.categories["dead"] == 2 and u.unit_categories[2] == "dead"
    assert "1e-03" in u.dead_rule or "0.001" in u.dead_rule
    v = unit_kernel_verdict(u.above_null95, u.n_live, "c", u.unit_score, u.n_dead)
    assert v.n == 8 and v.n_dead == 2


def _opponent_layer() -> np.ndarray:
    g = _gauss()
    w = np.random.default_rng(2).standard_normal((4, 3, 5, 5)) * 0.3
    w[0] = np.stack([g, -g, np.zeros_like(g)])  # red-minus-green blob
    return w


def test_rgb_opponent_unit_is_colour_not_dc():
    w = _opponent_layer()
    m = matching.match_layer("stem", w, n_null=300, colour=True)
    assert m.units.unit_categories[0] == "colour-opponent"
    assert m.units.colour_rule is not None and "before the DC rule" in m.units.colour_rule
    slice_cats = {k.category for k in m.kernels if k.out_channel == 0 and k.in_channel < 2}
    assert slice_cats == {"colour-opponent"}  # the zero B slice stays "unclear"
    # without the colour rule the same blob is smoothing/DC (the old, wrong label)
    plain = matching.match_layer("hidden", w, n_null=300)
    assert plain.units.unit_categories[0] == "smoothing/DC" and plain.units.colour_rule is None


def test_colour_rule_only_where_the_layer_reads_rgb():
    assert units.sees_colour(0, 3, 1)
    assert not units.sees_colour(1, 3, 1)  # hidden layer with 3 inputs
    assert not units.sees_colour(0, 12, 1)  # space-to-depth stem
    assert not units.sees_colour(0, 3, 3)  # depthwise
    w = _opponent_layer()
    layers = analyze_weights({"stem.weight": w, "layer2.weight": w.copy()}, n_null=200)
    stem, other = layers[0].matching, layers[1].matching
    assert stem.layer == "stem.weight" or stem.layer == "stem"
    assert stem.units.colour_rule is not None and stem.units.categories["colour-opponent"] >= 1
    assert other.units.colour_rule is None and "colour-opponent" not in other.units.categories


@pytest.mark.parametrize("k", [2, 4, 6])
def test_even_kernel_sizes_are_matched(k):
    bank = matching_bank(k)
    assert bank and matching.has_bank(k)
    planted = np.stack([e.weights for e in bank[:6]])[:, None]
    m = matching.match_layer("even", planted, n_null=300)
    assert m.skipped is None and m.kernel_size == k
    assert all(km.score == pytest.approx(1.0, abs=1e-5) for km in m.kernels)


def test_dcgan_like_4x4_layer_does_not_crash():
    w = np.random.default_rng(3).standard_normal((64, 3, 4, 4)).astype(np.float32)
    m = matching.match_layer("dcgan", w, n_null=300)
    assert m.skipped is None and m.units is not None and m.units.n_units == 64
    assert m.fraction_above_null95 is not None and m.fraction_above_null95 < 0.3


def test_resolution_note_when_no_unit_can_beat_the_null():
    w = np.random.default_rng(4).standard_normal((4, 64, 3, 3))
    m = matching.match_layer("deep", w, n_null=100)
    assert m.units.min_unit_p >= 0.05 and m.units.resolution_note is not None
    assert m.units.above_null95 == 0


def test_analysis_verdict_counts_units(tiny_run_analysis):
    v = verdicts(tiny_run_analysis).classical_kernels
    u = tiny_run_analysis.first_layer.matching.units
    assert v.n == u.n_live and v.unit == u.unit_score and v.p_text is not None
    assert "0.000" not in v.p_text


def test_seed_rows_of_proportions_stay_inside_unit_interval(tiny_run_analysis):
    import copy

    from convlens.analysis.evidence.seeds import aggregate

    runs = []
    for frac in (1.0, 0.5, 1.0):
        a = copy.deepcopy(tiny_run_analysis)
        a.first_layer.matching.fraction_above_null95 = frac
        runs.append(a)
    s = aggregate(runs, [10, 11, 12])
    row = next(r for r in s.rows if r.name == "first layer: fraction above random null p95")
    assert row.ci[1] == 1.0 and 0.0 <= row.ci[0] <= row.mean
    lo, hi = s.classical_kernels_pooled.ci
    assert 0.0 <= lo <= hi <= 1.0 and "Wilson" in s.interval


@pytest.mark.slow
def test_all_zero_kernels_are_out_of_the_fractions_and_the_verdict_n() -> None:
    """Zero kernels (what 8-bit quantisation makes of small kernels) are counted apart: the
    fraction is over the live kernels, and the first-layer verdict's n is the live count.

    Regression: real-model fix 3 (quantised layers)."""
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

"""Verdict thresholds, binomial tails, seed aggregation and the spectrum-matched null."""

import math

import numpy as np
import pytest
from scipy import stats

from convlens.analysis.evidence.seeds import aggregate, t_interval
from convlens.analysis.evidence.verdicts import binomial_tail, kernel_verdict, verdicts
from convlens.analysis.measure.matching import (
    dc_cosine_scores,
    match_layer,
    random_null,
    spectrum_null,
)
from convlens.analysis.result import (
    SCHEMA_VERSION,
    AnalysisResult,
    ChannelStats,
    DataSet,
    DistributionInfo,
    Headline,
    LayerCheck,
    LayerDistribution,
    LayerIdentity,
    LayerMatch,
    LayerResult,
    OodComparison,
    SeedsSummary,
    Settings,
    Source,
    Verdicts,
)
from convlens.kernels import get_kernel


def test_binomial_tail_matches_scipy():
    for x, n in [(0, 8), (1, 8), (3, 8), (7, 8), (12, 24), (40, 40)]:
        assert binomial_tail(x, n) == pytest.approx(stats.binom.sf(x - 1, n, 0.05), rel=1e-12)


def test_kernel_verdict_rule():
    assert kernel_verdict(7 / 8, 8).verdict == "yes"
    assert kernel_verdict(1 / 8, 8).verdict == "no evidence"  # 1 of 8 is chance level
    assert kernel_verdict(2 / 8, 8).verdict == "no evidence"  # P(X >= 2 | 8, 0.05) = 0.057
    assert kernel_verdict(0.12, 100).verdict == "weak"
    assert kernel_verdict(None, 0).verdict == "not measured"


def test_t_interval_matches_formula():
    v = [0.9, 0.95, 1.0]
    lo, hi = t_interval(v)
    half = stats.t.ppf(0.975, 2) * np.std(v, ddof=1) / math.sqrt(3)
    assert lo == pytest.approx(np.mean(v) - half) and hi == pytest.approx(np.mean(v) + half)
    assert t_interval([1.0]) == (None, None)


def _stats():
    return ChannelStats(1, [0.0], [0.0], [0.0], [0.0])


def _fake_analysis(acc, frac, sfrac, auroc, verdict):
    ood = OodComparison(
        n=10,
        mean=0.1,
        mean_ci=(0.0, 0.2),
        max=0.2,
        max_ci=(0.1, 0.3),
        ratio=0.5,
        ratio_ci=(0.4, 0.6),
        diff_ci=(0.1, 0.2),
        auroc=auroc,
        verdict=verdict,
        channel_stats=_stats(),
    )
    dist = LayerDistribution(0.2, (0.1, 0.3), 0.3, (0.2, 0.4), _stats(), {"noise": ood})
    match = LayerMatch(
        "conv1",
        [8, 1, 5, 5],
        5,
        n_kernels=8,
        fraction_above_null95=frac,
        fraction_above_spectrum_null95=sfrac,
    )
    ident = LayerIdentity("conv1", 0, "execution", 2, [8, 1, 5, 5], 1, 8, [5, 5])
    layer = LayerResult(ident, 8, matching=match, distribution=dist)
    return AnalysisResult(
        schema_version=SCHEMA_VERSION,
        source=Source("run", "x"),
        settings=Settings(100, 0),
        layers=[layer],
        headline=Headline(test_accuracy=acc),
        verdicts=Verdicts(),
        distribution=DistributionInfo(DataSet("id", 10), [DataSet("noise", 10)], {}, "r"),
    )


def test_aggregate_pools_counts_and_counts_holding_seeds():
    agg = aggregate(
        [
            _fake_analysis(0.95, 0.875, 0.25, 0.9, "holds"),
            _fake_analysis(1.0, 1.0, 0.0, 0.6, "not supported"),
        ],
        [0, 1],
    )
    names = [r.name for r in agg.rows]
    assert "test accuracy" in names and "conv1 vs noise: AUROC" in names
    # the headline (classical kernels) pools the units above the spectrum-matched null; the random
    # (initialisation) null's count is "differs from initialisation"
    assert agg.differs_from_init_pooled.above == 15 and agg.differs_from_init_pooled.n == 16
    assert agg.classical_kernels_pooled.above == 2 and agg.classical_kernels_pooled.n == 16
    assert agg.ood_holds_in_seeds == {"conv1": {"noise": 1}}
    # where the OOD difference comes from, on both seeds at once: it holds in 1 of 2 (not more
    # than half), and these fake seeds have no untrained arm
    across = agg.verdicts.ood_learned["conv1"]["noise"]
    assert across.verdict == "not supported" and across.n_seeds == 2 and across.holds == 1
    assert across.trained == [0.9, 0.6] and agg.verdicts.ood_learned_rule
    assert SeedsSummary.from_json(agg.to_json()) == agg


def test_verdicts_from_typed_result():
    a = _fake_analysis(0.9, 0.875, 0.0, 0.9, "holds")
    a.layers[0].check = LayerCheck(
        "conv1", "Conv2d", [8, 1, 5, 5], [2, 1, 12, 12], 1e-15, 1.0, 1.0, True
    )
    v = verdicts(a)
    assert v.cross_correlation.verdict == "exact"
    # smoothness alone beats the random null: the headline is decided against the spectrum null
    assert v.differs_from_init.verdict == "yes" and v.differs_from_init.layer == "conv1"
    assert v.classical_kernels.verdict == "no evidence" and v.classical_kernels.layer == "conv1"
    assert "spectrum-matched" in v.classical_kernels.rule and "random" in v.differs_from_init.rule
    assert v.ood_activation == {"conv1": {"noise": "holds"}}
    assert v.ood_rule == "r"


def test_first_layer_is_first_in_execution_order_not_by_name():
    a = _fake_analysis(0.9, 0.875, 0.0, 0.9, "holds")
    stem = LayerIdentity("conv_stem", 0, "execution", 2, [8, 3, 3, 3], 3, 8, [3, 3])
    later = a.layers[0]
    later.identity.index = 1
    a.layers = [later, LayerResult(stem, 24)]
    assert a.first_layer.name == "conv_stem"


def test_spectrum_null_is_stricter_for_smooth_kernels():
    rng = np.random.default_rng(0)
    from scipy.ndimage import gaussian_filter

    smooth = np.stack(
        [gaussian_filter(rng.standard_normal((9, 9)), 1.0)[2:7, 2:7] for _ in range(64)]
    )
    white = random_null(5, 1000)
    matched = spectrum_null(smooth, 1000)
    assert np.percentile(matched, 95) > np.percentile(white, 95) + 0.1
    res = match_layer("s", smooth[:, None])
    assert res.fraction_above_null95 > 0.3  # smooth random kernels often beat the white-noise null


def test_spectrum_null_is_calibrated_on_kernels_from_its_own_distribution():
    # kernels drawn the way the null draws them (noise shaped by one fixed spectrum) beat its p95 ~5%
    rng = np.random.default_rng(1)
    k = 5
    fx = np.fft.fftfreq(k)
    power = np.exp(-((fx[:, None] ** 2 + fx[None, :] ** 2) / 0.05))
    power[0, 0] = 0.0
    kernels = np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal((400, k, k))) * np.sqrt(power)))
    res = match_layer("c", kernels[:, None], n_null=2000)
    assert res.fraction_above_null95 > 0.2
    assert 0.0 < res.fraction_above_spectrum_null95 < 0.1


def test_bank_kernel_beats_both_nulls():
    k = get_kernel("gabor", angle=45, frequency=0.3, size=5, sigma=1.25).weights
    res = match_layer("g", np.stack([k, k * 2])[:, None])
    assert res.fraction_above_null95 == 1.0 and res.fraction_above_spectrum_null95 == 1.0


def test_spectrum_null_matches_an_fft2_oracle():
    """The DFT-matrix power spectrum equals np.fft.fft2's (the straightforward formulation)."""
    from convlens.kernels.bank import bank_matrix

    rng = np.random.default_rng(4)
    for k in (3, 5):
        kernels = rng.standard_normal((40, k, k))
        w = kernels - kernels.mean(axis=(-2, -1), keepdims=True)
        power = (np.abs(np.fft.fft2(w)) ** 2).mean(axis=0)
        noise = np.random.default_rng(11 + 7919).standard_normal((300, k, k))
        shaped = np.real(np.fft.ifft2(np.fft.fft2(noise) * np.sqrt(power)))
        bank, _ = bank_matrix(k)
        want = np.sort(dc_cosine_scores(shaped.reshape(300, k * k), bank)[1])
        np.testing.assert_allclose(spectrum_null(kernels, 300, seed=11), want, atol=1e-12)


@pytest.mark.slow
def test_first_layer_verdict_never_prints_p_zero() -> None:
    """A binomial tail that underflows (the VAD's 256 of 256 STFT atoms) reads '< 1e-300', not 0.

    Regression: a real-model fix (the silero VAD, tests/data/real)."""
    from convlens.analysis.evidence.verdicts import kernel_verdict

    v = kernel_verdict(1.0, 256)
    assert v.p_value == 0.0
    from convlens.analysis.evidence.stats import format_p

    assert format_p(v.p_value) == "< 1e-300"

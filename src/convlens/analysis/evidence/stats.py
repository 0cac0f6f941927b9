"""Bootstrap intervals, cluster weights, weighted AUROC and proportions.

The streaming accumulators (:class:`~convlens.parallel.running.RunningStats`,
:class:`~convlens.parallel.running.GrowingArray`) live in :mod:`convlens.parallel.running`, so the
scale-out helpers can merge them without importing the analysis.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens.analysis.result import CI, UntrainedDistribution


def bootstrap_ci(
    values: NDArray[Any], *, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values``."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(v), size=(n_boot, len(v)))
    means = v[idx].mean(axis=1)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def _resampled_means(
    a: NDArray[Any], b: NDArray[Any], n_boot: int, seed: int
) -> tuple[NDArray[Any], NDArray[Any]]:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    rng = np.random.default_rng(seed)
    ma = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    mb = y[rng.integers(0, len(y), size=(n_boot, len(y)))].mean(axis=1)
    return ma, mb


def bootstrap_ratio_ci(
    a: NDArray[Any], b: NDArray[Any], *, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``mean(a) / mean(b)``; ``(nan, nan)`` (no warning) when
    every resampled ``mean(b)`` is 0 (a layer silent on its ID set: the ratio is undefined)."""
    ma, mb = _resampled_means(a, b, n_boot, seed + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = ma / np.where(mb == 0, np.nan, mb)
    return percentile_ci(r, level)


# ----------------------------------------------------------------------------- cluster bootstrap
ONE_SOURCE_LABEL = "1 source image: the interval describes crops of one photo, not the category"


def resampling_text(n_sources: int, n: int, n_boot: int) -> str:
    """How :func:`cluster_weights` resamples a set of ``n`` members from ``n_sources`` sources."""
    if n_sources <= 1:
        return f"{ONE_SOURCE_LABEL} ({n} crops resampled, {n_boot} resamples)"
    if n_sources == n:
        return f"{n} source images, each its own member; {n_boot} resamples of the images"
    return f"cluster bootstrap over {n_sources} source images ({n} members), {n_boot} resamples"


def cluster_weights(
    sources: NDArray[Any], n_boot: int, rng: np.random.Generator
) -> NDArray[np.float64]:
    """Bootstrap weights ``(n_boot, n)``: each resample draws the *source images* with replacement
    and takes every member of each drawn source (a member's weight is how often its source was
    drawn), so crops of one photo move together. With a single source the members themselves are
    resampled (then the interval describes that one photo, see :data:`ONE_SOURCE_LABEL`)."""
    src = np.asarray(sources)
    n = len(src)
    if n == 0:
        return np.zeros((n_boot, 0))
    _, inv = np.unique(src, return_inverse=True)
    k = int(inv.max()) + 1
    if k == 1:
        return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)
    counts = rng.multinomial(k, np.full(k, 1.0 / k), size=n_boot).astype(np.float64)
    return counts[:, inv]


def weighted_means(values: NDArray[Any], weights: NDArray[Any]) -> NDArray[np.float64]:
    """Mean of ``values`` under every row of ``weights`` (``nan`` for an all-zero row)."""
    w = np.asarray(weights, dtype=np.float64)
    tot = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(w @ np.asarray(values, dtype=np.float64) / tot, dtype=np.float64)


def weighted_auroc(
    pos: NDArray[Any],
    neg: NDArray[Any],
    w_pos: NDArray[Any],
    w_neg: NDArray[Any],
    chunk: int = 256,
) -> NDArray[np.float64]:
    """AUROC ``P(pos > neg) + P(pos == neg) / 2`` under every row of the weights ``(B, n_pos)``,
    ``(B, n_neg)`` (unit weights give ``sklearn.metrics.roc_auc_score``; integer weights equal
    repeating each score that often). Sorted once, then one cumulative sum per resample: memory
    ``O(chunk * (n_pos + n_neg))``."""
    p = np.asarray(pos, dtype=np.float64)
    q = np.asarray(neg, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    ps = p[order]
    lo = np.searchsorted(ps, q, side="left")
    hi = np.searchsorted(ps, q, side="right")
    wp_all = np.asarray(w_pos, dtype=np.float64)[:, order]
    wn_all = np.asarray(w_neg, dtype=np.float64)
    out = np.empty(len(wp_all))
    for s in range(0, len(wp_all), chunk):
        wp, wn = wp_all[s : s + chunk], wn_all[s : s + chunk]
        cum = np.concatenate([np.zeros((len(wp), 1)), np.cumsum(wp, axis=1)], axis=1)
        total = cum[:, -1:]
        greater = total - cum[:, hi]
        equal = cum[:, hi] - cum[:, lo]
        num = (wn * (greater + 0.5 * equal)).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[s : s + chunk] = num / (total[:, 0] * wn.sum(axis=1))
    return out


def percentile_ci(values: NDArray[Any], level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates (``nan`` replicates ignored)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return (float("nan"), float("nan"))
    a = (1 - level) / 2
    return float(np.quantile(v, a)), float(np.quantile(v, 1 - a))


def bootstrap_p_positive(diffs: NDArray[Any]) -> float:
    """One-sided bootstrap p-value of "difference > 0": ``(1 + #{d <= 0}) / (B + 1)``, so it is never
    below its resolution ``1 / (B + 1)`` (never printed as 0)."""
    d = np.asarray(diffs, dtype=np.float64)
    d = d[np.isfinite(d)]
    return float((1 + np.count_nonzero(d <= 0)) / (len(d) + 1))


def empirical_p_above(value: float | None, null: NDArray[Any]) -> tuple[int, float | None]:
    """``(k, (1 + k) / (1 + N))`` for "``value`` is above the ``N`` draws of ``null``": ``k`` counts
    the draws at or above ``value`` (ties and non-finite draws count against it); ``p`` is ``None``
    when ``value`` is not finite."""
    v = np.asarray(null, dtype=np.float64)
    if value is None or not np.isfinite(value):
        return len(v), None
    k = int(np.count_nonzero(~np.isfinite(v) | (v >= value)))
    return k, float((1 + k) / (1 + len(v)))


def untrained_distribution(
    trained: float | None, aurocs: list[float | None] | NDArray[Any]
) -> UntrainedDistribution:
    """The untrained initialisations' AUROCs ``aurocs``: median, 2.5/97.5 percentiles and the
    trained AUROC's empirical p among them (:func:`empirical_p_above`)."""
    a = np.array([np.nan if x is None else x for x in aurocs], dtype=np.float64)
    ok = a[np.isfinite(a)]
    k, p = empirical_p_above(trained, a)
    if len(ok):
        lo, med, hi = (float(q) for q in np.percentile(ok, [2.5, 50, 97.5]))
    else:
        lo = med = hi = None  # type: ignore[assignment]
    return UntrainedDistribution(
        n=len(a),
        aurocs=[float(x) if np.isfinite(x) else None for x in a],
        median=med,
        interval=(lo, hi),
        n_at_or_above=k,
        p_value=p,
    )


def proportion_ci(k: int, n: int, level: float = 0.95) -> tuple[float | None, float | None]:
    """Clopper-Pearson (exact) interval of ``k / n`` (``scipy.stats.binomtest``): inside [0, 1]."""
    if n <= 0:
        return (None, None)
    from scipy.stats import binomtest

    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def binom_sf(k: int, n: int, p: float) -> float:
    """``P(X > k)``, ``X ~ Binomial(n, p)``: the ufunc ``scipy.stats.binom.sf`` calls (Boost's),
    without importing scipy.stats (0.35 s of a weights-only analysis)."""
    if k < 0:
        return 1.0
    if k >= n:
        return 0.0
    try:
        from scipy.special._ufuncs import _binom_sf
    except ImportError:  # another scipy: the public route
        from scipy.stats import binom

        return float(binom.sf(k, n, p))
    return float(_binom_sf(float(k), float(n), float(p)))


def wilson(x: int, n: int) -> CI:
    """Wilson score 95% interval of ``x`` successes in ``n`` (``(None, None)`` when ``n == 0``)."""
    if n <= 0:
        return (None, None)
    # Newcombe (1998) as scipy.stats.binomtest(...).proportion_ci(method="wilson") computes it,
    # written out: scipy.stats costs 0.4 s to import, a third of a weights-only analysis
    # (equality with scipy: tests/test_units.py)
    x, n = int(x), int(n)
    p = x / n
    z = _Z975
    denom = 2 * (n + z**2)
    center = (2 * n * p + z**2) / denom
    delta = z / denom * math.sqrt(4 * n * p * (1 - p) + z**2)
    lo = 0.0 if x == 0 else center - delta
    hi = 1.0 if x == n else center + delta
    return (max(0.0, float(lo)), min(1.0, float(hi)))


_Z975 = 1.959963984540054
"""The two-sided 95% normal quantile, ``scipy.special.ndtri(0.975)`` to the last bit (the standard
library's ``NormalDist().inv_cdf(0.975)`` is one ulp above it)."""


def format_p(p: float | None, n_null: int | None = None) -> str:
    """A p-value as text: ``"< 1/2001"`` at an empirical null's floor, ``"< 1e-300"`` for a tail
    that underflows, else two significant digits; never ``"0.000"``."""
    if p is None:
        return "n/a"
    if n_null is not None and p <= 1.0 / (n_null + 1) * (1 + 1e-9):
        return f"< 1/{n_null + 1}"
    if p <= 0.0:
        return "< 1e-300"
    return f"{p:.2g}"

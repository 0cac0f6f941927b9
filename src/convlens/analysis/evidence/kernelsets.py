"""Comparing two *sets* of kernels by what they contain, across training seeds.

A best-match score says how "classical" a kernel looks; it does not say *which* kernel was learned.
Two layers can score the same while one holds vertical edge detectors and the other horizontal ones.
This module describes each output unit by its **normalised power spectrum** (the DC-removed kernel,
zero-padded to ``GRID x GRID``, its power summed over input channels, normalised to sum 1: phase-
and sign-free, so it sees orientation and frequency tuning) and compares sets of units with

- a two-sample **energy distance** (Szekely & Rizzo 2004) between the units' Hellinger embeddings
  (``sqrt`` of the normalised spectrum, so the Euclidean distance is the Hellinger distance), with a
  **permutation null stratified by seed**: labels are exchanged only between the two sets of the same
  seed, so seeds are combined without treating units of different networks as exchangeable;
- **effect sizes with hierarchical-bootstrap intervals** (seeds resampled, then units within each):
  the difference of mean unit score and of mean orientation selectivity;
- **equivalence** by two one-sided tests (TOST, Lakens 2017): two sets are called the same only when
  the 90% interval of each difference lies inside its stated margin; a non-significant test alone
  is "no detectable difference", never sameness.

>>> import numpy as np
>>> sobel = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], float)
>>> pref, sel, freq = orientation_tuning(np.stack([sobel, sobel.T])[:, None])
>>> [round(float(p)) % 180 for p in pref], bool(sel.min() > 0.5)
([0, 90], True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

GRID = 16
"""Kernels are zero-padded to ``GRID x GRID`` before their power spectrum is taken."""
N_PERM = 1999
N_BOOT = 2000
SCORE_MARGIN = 0.1
"""Equivalence margin for the difference of mean unit scores (cosine units, scale 0..1)."""
SELECTIVITY_MARGIN = 0.1
"""Equivalence margin for the difference of mean orientation selectivity (scale 0..1)."""


def _as_units(w: NDArray[np.floating]) -> NDArray[np.float64]:
    a = np.asarray(w, dtype=np.float64)
    if a.ndim == 3:  # (O, k, k): one input channel
        a = a[:, None]
    if a.ndim != 4:
        raise ValueError(f"expected kernels (O, C, k, k), got shape {a.shape}")
    return a - a.mean(axis=(2, 3), keepdims=True)


def power_spectra(w: NDArray[np.floating], grid: int = GRID) -> NDArray[np.float64]:
    """Per output unit, the power spectrum of its DC-removed kernel summed over input channels,
    normalised to sum 1 (``(O, grid, grid)``, ``fftfreq`` order; all-zero units are ``NaN``)."""
    a = _as_units(w)
    power = (np.abs(np.fft.fft2(a, s=(grid, grid))) ** 2).sum(axis=1)
    total = power.sum(axis=(1, 2), keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, power / np.where(total > 0, total, 1.0), np.nan)


def descriptors(w: NDArray[np.floating], grid: int = GRID) -> NDArray[np.float64]:
    """Hellinger embedding of :func:`power_spectra` on the half plane ``fy >= 0`` (a real kernel's
    spectrum is symmetric): ``(O, D)``; Euclidean distances are Hellinger distances."""
    p = power_spectra(w, grid)
    half = p[:, : grid // 2 + 1, :] * 2.0
    half[:, 0, :] /= 2.0  # the fy = 0 row is its own mirror
    if grid % 2 == 0:
        half[:, grid // 2, :] /= 2.0
    return np.sqrt(half.reshape(len(p), -1))


def orientation_tuning(
    w: NDArray[np.floating], grid: int = GRID
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Per unit: preferred orientation of the kernel's *gradient* in degrees ``[0, 180)`` (0 = the
    kernel varies along x, like Sobel-x), orientation selectivity ``|sum P e^{2i phi}| / sum P`` in
    ``[0, 1]`` (0 = isotropic) and the power-weighted mean radial frequency (cycles/pixel)."""
    p = power_spectra(w, grid)
    fy = np.fft.fftfreq(grid)[:, None]
    fx = np.fft.fftfreq(grid)[None, :]
    phi = np.arctan2(fy, fx)
    vec = (p * np.exp(2j * phi)).sum(axis=(1, 2))
    pref = (np.degrees(np.angle(vec)) / 2.0) % 180.0
    return pref, np.abs(vec), (p * np.hypot(fx, fy)).sum(axis=(1, 2))


def energy_distance(x: NDArray[np.floating], y: NDArray[np.floating]) -> float:
    """Szekely's energy distance ``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` (V-statistic) between the
    rows of ``x`` and ``y``."""
    from scipy.spatial.distance import cdist

    return float(2 * cdist(x, y).mean() - cdist(x, x).mean() - cdist(y, y).mean())


@dataclass
class SetTest:
    """A stratified permutation test of two kernel sets (see the module docstring)."""

    statistic: float
    p_value: float
    n_perm: int
    n_a: int
    n_b: int
    strata: int


def _finite_rows(d: NDArray[np.float64]) -> NDArray[np.float64]:
    return d[np.isfinite(d).all(axis=1)]


def _energy_of_masks(dist: NDArray[np.float64], masks: NDArray[np.float64]) -> NDArray[np.float64]:
    """The energy distance for each row of ``masks`` (1 = set A, 0 = set B) from the pairwise
    distances: ``2 mean(D_AB) - mean(D_AA) - mean(D_BB)``."""
    other = 1.0 - masks
    md = masks @ dist
    od = other @ dist
    n_a, n_b = masks.sum(axis=1), other.sum(axis=1)
    ab = (md * other).sum(axis=1) / (n_a * n_b)
    aa = (md * masks).sum(axis=1) / n_a**2
    bb = (od * other).sum(axis=1) / n_b**2
    return np.asarray(2 * ab - aa - bb, dtype=np.float64)


def set_test(
    a_sets: list[NDArray[np.floating]],
    b_sets: list[NDArray[np.floating]],
    n_perm: int = N_PERM,
    seed: int = 0,
) -> SetTest:
    """Energy distance between the descriptors of the units of ``a_sets`` and ``b_sets`` (one array
    of descriptors per seed, paired by position), with a permutation null that exchanges units only
    within a seed. ``p = (1 + #{null >= observed}) / (1 + n_perm)``."""
    if len(a_sets) != len(b_sets) or not a_sets:
        raise ValueError("set_test needs the same number (>= 1) of A and B sets, one per seed")
    pairs = [
        (_finite_rows(np.asarray(a)), _finite_rows(np.asarray(b)))
        for a, b in zip(a_sets, b_sets, strict=True)
    ]
    pooled = np.concatenate([np.concatenate([a, b]) for a, b in pairs])
    from scipy.spatial.distance import cdist

    dist = cdist(pooled, pooled)
    is_a = np.concatenate([np.r_[np.ones(len(a)), np.zeros(len(b))] for a, b in pairs])
    rng = np.random.default_rng([seed, 4111])
    masks = np.empty((n_perm + 1, len(is_a)))
    masks[0] = is_a
    lo = 0
    for a, b in pairs:  # labels exchanged within each seed only
        hi = lo + len(a) + len(b)
        order = rng.random((n_perm, hi - lo)).argsort(axis=1)
        masks[1:, lo:hi] = is_a[lo:hi][order]
        lo = hi
    stats = _energy_of_masks(dist, masks)
    observed = float(stats[0])
    count = int((stats[1:] >= observed - 1e-12).sum())
    return SetTest(
        statistic=observed,
        p_value=(1 + count) / (1 + n_perm),
        n_perm=n_perm,
        n_a=int(is_a.sum()),
        n_b=int(len(is_a) - is_a.sum()),
        strata=len(pairs),
    )


TASK_ALPHA = 0.01
"""The level of "trained differs from random labels" (stricter than the family's 0.05): the
network-level test is exact only if a network trained on the task's labels is exchangeable with
one trained on a random relabelling, and the trained networks share one label vector while each
control has its own. At 0.05 planted random labels gave a false "learned from the task" in 3/30
draws (docs/validation.md); the stricter level was then checked on fresh draws."""

MIN_NETWORKS = 5
"""Networks per arm the trained-vs-random-label test needs to reach its level (0.01, see
:data:`TASK_ALPHA`): with ``S`` per arm its smallest p-value is
``2 / C(2S, S)`` (the energy distance is symmetric in the arms): 0.1 at 3, 0.029 at 4, 0.0079 at 5."""


def smallest_network_p(n_a: int, n_b: int) -> float:
    """The smallest p-value :func:`network_test` can give with ``n_a`` and ``n_b`` networks."""
    from math import comb

    total = comb(n_a + n_b, n_a)
    return (2 if n_a == n_b else 1) / total if total else 1.0


def network_test(
    a_sets: list[NDArray[np.floating]],
    b_sets: list[NDArray[np.floating]],
    n_perm: int = N_PERM,
    seed: int = 0,
) -> SetTest:
    """Energy distance between the pooled unit descriptors of the networks in ``a_sets`` and in
    ``b_sets`` (one array of unit descriptors per network), with a permutation null that exchanges
    **whole networks** between the arms: units of one network share its training and are not
    exchangeable, networks trained independently are. Every assignment of ``len(a_sets)`` of the
    networks to A is enumerated when there are at most ``n_perm + 1`` of them (an exact test,
    ``p = #{assignments with a statistic >= observed} / #assignments``), else ``n_perm`` are drawn
    (``p = (1 + #{null >= observed}) / (1 + n_perm)``). Networks paired by a shared seed (trained
    and control from one initialisation) are alike under the null, which makes the observed
    assignment, that splits every pair, the conservative one."""
    from itertools import combinations
    from math import comb

    from scipy.spatial.distance import cdist

    if not a_sets or not b_sets:
        raise ValueError("network_test needs at least one network in each arm")
    nets = [_finite_rows(np.asarray(x, np.float64)) for x in [*a_sets, *b_sets]]
    owner = np.concatenate([np.full(len(x), i) for i, x in enumerate(nets)])
    pooled = np.concatenate(nets)
    dist = cdist(pooled, pooled)
    n_a, n = len(a_sets), len(nets)
    total = comb(n, n_a)
    if total <= n_perm + 1:
        chosen = [np.array(c) for c in combinations(range(n), n_a)]
        observed_first = [np.arange(n_a)] + [
            c for c in chosen if not np.array_equal(c, np.arange(n_a))
        ]
        exact = True
    else:
        rng = np.random.default_rng([seed, 5113])
        observed_first = [np.arange(n_a)] + [rng.permutation(n)[:n_a] for _ in range(n_perm)]
        exact = False
    masks = np.stack([np.isin(owner, c).astype(np.float64) for c in observed_first])
    stats = _energy_of_masks(dist, masks)
    observed = float(stats[0])
    if exact:
        p = int((stats >= observed - 1e-12).sum()) / len(stats)
    else:
        p = (1 + int((stats[1:] >= observed - 1e-12).sum())) / (1 + n_perm)
    return SetTest(
        statistic=observed,
        p_value=p,
        n_perm=len(stats) if exact else n_perm,
        n_a=int(sum(len(x) for x in nets[:n_a])),
        n_b=int(sum(len(x) for x in nets[n_a:])),
        strata=min(n_a, n - n_a),
    )


def hierarchical_diff(
    a_sets: Sequence[NDArray[np.floating] | Sequence[float]],
    b_sets: Sequence[NDArray[np.floating] | Sequence[float]],
    n_boot: int = N_BOOT,
    level: float = 0.90,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``(mean(A) - mean(B), low, high)``: a percentile interval from a hierarchical bootstrap that
    resamples seeds (pairs of sets) with replacement, then the values within each set."""
    a = [x[np.isfinite(x)] for x in (np.asarray(v, np.float64) for v in a_sets)]
    b = [x[np.isfinite(x)] for x in (np.asarray(v, np.float64) for v in b_sets)]
    diff = float(np.concatenate(a).mean() - np.concatenate(b).mean())
    rng = np.random.default_rng([seed, 7451])
    k = len(a)
    pick = rng.integers(0, k, (n_boot, k))
    sums = {"a": np.zeros(n_boot), "b": np.zeros(n_boot)}
    counts = {"a": np.zeros(n_boot), "b": np.zeros(n_boot)}
    for slot in range(k):
        for j in range(k):
            rows = np.flatnonzero(pick[:, slot] == j)
            for key, sets in (("a", a), ("b", b)):
                v = sets[j]
                if len(rows) and len(v):
                    draws = v[rng.integers(0, len(v), (len(rows), len(v)))]
                    sums[key][rows] += draws.sum(axis=1)
                    counts[key][rows] += len(v)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = sums["a"] / counts["a"] - sums["b"] / counts["b"]
    out = out[np.isfinite(out)]
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(out, [tail, 100 - tail])
    return diff, float(lo), float(hi)


def equivalent(low: float, high: float, margin: float) -> bool:
    """TOST at 5% per side: the 90% interval ``[low, high]`` lies inside ``(-margin, margin)``."""
    return -margin < low and high < margin


SAME_ANSWER_BC = 0.85
"""Two bank kernels are the same answer when the Bhattacharyya coefficient of their normalised power
spectra is at least this: at 5 x 5 it joins Sobel-x, Prewitt-x, Farid-x and Gaussian x-derivatives
and orientations 22.5 degrees apart, and keeps orthogonal edges apart (0.56)."""


def bank_descriptors(size: int) -> tuple[list[str], NDArray[np.float64]]:
    """The labels and :func:`descriptors` of the classical bank at ``size``."""
    from convlens.kernels import matching_bank

    bank = matching_bank(size)
    return [e.label for e in bank], descriptors(np.stack([e.weights for e in bank])[:, None])


def name_learned(
    trained: Sequence[Sequence[Sequence[float | None]]],
    controls: Sequence[Sequence[Sequence[float | None]]],
    size: int,
) -> str | None:
    """The bank kernel most enriched in the trained units relative to the control units: the largest
    difference of mean Bhattacharyya coefficient between a unit's normalised power spectrum and the
    bank kernel's (phase- and sign-free). Each argument: per seed, the units' :func:`descriptors`."""
    if size < 2:
        return None
    labels, bank = bank_descriptors(size)
    if bank.shape[1] != len(next((r for s in trained for r in s), [])):
        return None

    def mean_bc(sets: Sequence[Sequence[Sequence[float | None]]]) -> NDArray[np.float64] | None:
        rows = [r for s in sets for r in s if all(v is not None for v in r)]
        return (np.asarray(rows, np.float64) @ bank.T).mean(axis=0) if rows else None

    a, b = mean_bc(trained), mean_bc(controls)
    if a is None or b is None:
        return None
    return labels[int(np.argmax(a - b))]


def spectra_agree(label: str | None, truth: str, size: int = 5) -> bool:
    """Whether ``label`` and ``truth`` are the same answer (:data:`SAME_ANSWER_BC`)."""
    if label is None:
        return False
    labels, bank = bank_descriptors(size)
    return float(bank[labels.index(label)] @ bank[labels.index(truth)]) >= SAME_ANSWER_BC


def holm(p_values: list[float], alpha: float = 0.05) -> list[bool]:
    """Holm's step-down rule: which of the hypotheses are rejected at family-wise level ``alpha``."""
    order = np.argsort(p_values)
    reject = [False] * len(p_values)
    for rank, i in enumerate(order):
        if p_values[i] <= alpha / (len(p_values) - rank):
            reject[i] = True
        else:
            break
    return reject

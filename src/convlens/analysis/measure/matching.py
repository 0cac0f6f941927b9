"""Learned kernels vs the classical bank, always next to a null baseline.

Statistic: for a kernel ``w`` (one input channel of one output channel, ``k x k``) and the bank at
size ``k`` (:func:`convlens.kernels.matching_bank`), the **DC-removed, sign-invariant cosine**
``max_b |cos(w - mean w, b - mean b)|``. Sign-invariant because a conv layer followed by a ReLU and a
next layer can use ``-w`` as well as ``w``; DC-removed because the mean of a kernel is brightness, not
shape. Weights that are not ``(O, C, k, k)`` (1-D, ``1 x k``, other non-square, 3-D) are handled by
:mod:`convlens.analysis.measure.dims` (a 1-D bank and 1-D nulls; 3-D kernels measured, not matched).

Null baselines (the same statistic on kernels that learned nothing):
(a) the epoch-000 initial kernels of the same run (when snapshots exist);
(b) ``n_null`` random kernels drawn i.i.d. uniform, which is PyTorch's default ``Conv2d`` init
    (``kaiming_uniform_(a=sqrt(5))`` = ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``; the statistic is
    scale-invariant, so the bound does not matter).
(c) a stricter, **spectrum-matched** null: random kernels with the layer's own mean power spectrum
    (Gaussian noise filtered by the square root of the learned kernels' mean ``|FFT|^2``, DC removed).
    Smooth kernels match smooth classical kernels better than white noise does; beating (c) means the
    kernels' *arrangement* (orientation, phase), not just their smoothness, is classical-like.
Each kernel gets its percentile in (b) and a one-sided p-value ``(1 + #{null >= s}) / (n_null + 1)``;
the layer gets the fraction of kernels above the null's 95th percentile (5% by chance).

Taxonomy (a coarse version of Olah et al. 2020's first-layer families), applied in this order:
1. ``k == 1`` -> ``"unclear"`` (no spatial structure; matching skipped);
2. only in a layer that reads the image's 3 colour channels directly (``colour=True``: the first
   layer with 3 input channels, see :func:`convlens.analysis.measure.units.sees_colour`), colour opponency
   of the output unit ``1 - |sum_c w_c|^2 / (C * sum_c |w_c|^2) >= 0.9`` -> ``"colour-opponent"``
   (the channels largely cancel; random i.i.d. channels give about ``1 - 1/C``). Before the DC rule:
   an R-minus-G blob is colour-opponent, not smoothing;
3. DC energy fraction ``(mean * sqrt(n))^2 / |w|^2 >= 0.6`` -> ``"smoothing/DC"``;
4. score below the null's 95th percentile -> ``"unclear"``;
5. else by the best match's family: edge/emboss -> ``"edge/gradient"``, line -> ``"line"``,
   blob/sharpen/smoothing -> ``"blob/centre-surround"``, gabor -> ``"Gabor-like"``.

The same figures per output unit (best slice with a Sidak correction, dead units excluded, colour
counted per unit) are in ``LayerMatch.units`` (:mod:`convlens.analysis.measure.units`); verdicts use those.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens.analysis.measure.gaborfit import GaborFit, fit_gabor
from convlens.analysis.measure.units import unit_summary
from convlens.analysis.result import ChannelSummedMatch, KernelMatch, LayerMatch, NullSummary
from convlens.errors import ConvlensError
from convlens.kernels import bank_matrix

CATEGORY = {
    "edge": "edge/gradient",
    "emboss": "edge/gradient",
    "line": "line",
    "blob": "blob/centre-surround",
    "sharpen": "blob/centre-surround",
    "smoothing": "blob/centre-surround",
    "gabor": "Gabor-like",
}
DC_THRESHOLD = 0.6
COLOUR_THRESHOLD = 0.9
CATEGORY_NAMES = sorted({*CATEGORY.values(), "unclear", "colour-opponent", "smoothing/DC"})
DETAIL_LIMIT = 4096  # per-kernel records are kept for layers with at most this many kernels
DETAIL_TOTAL = 20_000
"""Most per-kernel records in one analysis (over all layers; see ``run.match_layers``): the JSON of
a ResNet-50-shaped model stays a few MB instead of tens."""
CHUNK = 65536
MAX_NULL_SIZE = 200_000
"""Most random kernels in a null baseline (``n_null``): 200,000 kernels of 11x11 are 194 MB of
float64, and the spectrum-matched null needs about twice that."""


def check_null_size(n: int) -> None:
    """Refuse a null size outside ``1..MAX_NULL_SIZE`` (before anything is drawn)."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise ConvlensError(f"null size must be an integer, got {n!r}")
    if not 1 <= n <= MAX_NULL_SIZE:
        raise ConvlensError(
            f"null size {n} is outside 1..{MAX_NULL_SIZE} (MAX_NULL_SIZE in "
            "convlens.analysis.measure.matching)"
        )


def has_bank(k: int) -> bool:
    """Whether the classical bank has kernels of size ``k x k`` (every size >= 2)."""
    return k > 1 and bool(bank_matrix(k)[1])


def nonfinite_message(name: str, weight: NDArray[Any]) -> str | None:
    """``"layer X: 12 of 400 weights are NaN or Inf; not analysed"``, or ``None`` if all are finite."""
    w = np.asarray(weight)
    if w.dtype.kind not in "fc":
        return None
    bad = int(np.count_nonzero(~np.isfinite(w)))
    if not bad:
        return None
    return f"layer {name}: {bad} of {w.size} weights are NaN or Inf; not analysed"


def dc_cosine_scores(
    vectors: NDArray[Any], bank: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.int8]]:
    """Best bank index, best |cosine| and its sign for each row of ``vectors`` (chunked)."""
    n = len(vectors)
    best = np.zeros(n, dtype=np.int64)
    score = np.zeros(n)
    sign = np.ones(n, dtype=np.int8)
    bank32 = bank.astype(np.float32)
    for s in range(0, n, CHUNK):
        v = np.asarray(vectors[s : s + CHUNK], dtype=np.float32)
        v = v - v.mean(axis=1, keepdims=True)
        norms = np.linalg.norm(v, axis=1)
        ok = norms > 0
        v[ok] /= norms[ok, None]
        c = v @ bank32.T
        idx = np.abs(c).argmax(axis=1)
        val = c[np.arange(len(c)), idx]
        best[s : s + len(c)] = idx
        score[s : s + len(c)] = np.where(ok, np.abs(val), 0.0)
        sign[s : s + len(c)] = np.where(val < 0, -1, 1)
    return best, score, sign


@lru_cache(maxsize=32)
def random_null(k: int, n: int, seed: int = 0) -> NDArray[np.float64]:
    """Scores of ``n`` i.i.d. uniform random ``k x k`` kernels (PyTorch's init distribution), sorted.

    Deterministic in ``(k, n, seed)`` and cached: matching, evolution and the report share one draw.
    The returned array is read-only. ``n`` is at most ``MAX_NULL_SIZE``; ``k`` must be a size the
    bank has (:func:`has_bank`)."""
    check_null_size(n)
    if not has_bank(k):
        raise ConvlensError(f"no classical kernels exist at size {k}x{k}; no null to draw")
    bank, _ = bank_matrix(k)
    scores = np.sort(dc_cosine_scores(random_kernels(k, n, seed), bank)[1])
    scores.flags.writeable = False
    return scores


def random_kernels(k: int, n: int, seed: int = 0) -> NDArray[np.float64]:
    """The kernels of :func:`random_null`: ``n`` i.i.d. ``U(-1, 1)`` kernels, flattened ``(n, k*k)``
    (the same draw for the same ``(k, n, seed)``; also the null of the patch statistics)."""
    return np.random.default_rng(seed).uniform(-1.0, 1.0, size=(n, k * k))


def spectrum_null(kernels: NDArray[Any], n: int, seed: int = 0) -> NDArray[np.float64]:
    """Scores of ``n`` random kernels with the mean power spectrum of ``kernels`` ``(K, k, k)``."""
    k = np.asarray(kernels).shape[-1]
    bank, _ = bank_matrix(k)
    shaped = spectrum_kernels(kernels, n, seed)
    return np.sort(dc_cosine_scores(shaped, bank)[1])


def spectrum_kernels(kernels: NDArray[Any], n: int, seed: int = 0) -> NDArray[np.float64]:
    """The kernels of :func:`spectrum_null`: ``n`` Gaussian-noise kernels filtered by the square root
    of the mean power spectrum of ``kernels`` ``(K, k, k)`` (DC removed), flattened ``(n, k*k)``."""
    w = np.asarray(kernels, dtype=np.float64)
    k = w.shape[-1]
    flat = w.reshape(-1, k * k)
    flat = flat - flat.mean(axis=1, keepdims=True)
    # |fft2|^2 of every kernel as two real GEMMs with the 2-D DFT matrix: one pass over (K, k*k)
    # instead of K tiny FFTs (the same numbers as np.fft.fft2 up to rounding)
    dft = np.fft.fft(np.eye(k))
    dft2 = np.kron(dft, dft)  # vec(F) = dft2 @ vec(w) for row-major vec
    power = (
        ((flat @ dft2.real.T) ** 2 + (flat @ dft2.imag.T) ** 2).mean(axis=0).reshape(k, k)
        if len(flat)
        else np.zeros((k, k))
    )
    rng = np.random.default_rng(seed + 7919)
    noise = rng.standard_normal((n, k, k))
    shaped = np.real(np.fft.ifft2(np.fft.fft2(noise) * np.sqrt(power)))
    return np.asarray(shaped.reshape(n, k * k), dtype=np.float64)


def null_summary(source: str, scores: NDArray[np.float64]) -> NullSummary:
    """Size, median and 95th percentile of a null's scores."""
    if not len(scores):
        return NullSummary(source, 0, None, None)
    return NullSummary(
        source, len(scores), float(np.median(scores)), float(np.percentile(scores, 95))
    )


def categorize_many(
    vecs: NDArray[Any],
    score: NDArray[Any],
    families: NDArray[Any],
    p95: float,
    opponency: NDArray[Any] | None = None,
) -> NDArray[np.str_]:
    """The taxonomy rule of this module, vectorised over kernels ``vecs`` ``(K, k*k)``."""
    uniq, inverse = np.unique(np.asarray(families), return_inverse=True)
    codes = _categorize_codes(vecs, score, inverse.ravel(), [str(f) for f in uniq], p95, opponency)
    return np.array(CATEGORY_NAMES, dtype="<U24")[codes]


def _categorize_codes(
    vecs: NDArray[Any],
    score: NDArray[Any],
    family_codes: NDArray[np.integer[Any]],
    family_names: list[str],
    p95: float,
    opponency: NDArray[Any] | None = None,
) -> NDArray[np.intp]:
    """:func:`categorize_many` on integer family codes, giving indices into ``CATEGORY_NAMES``
    (no sorting of string arrays: this runs over every kernel of a model)."""
    v = np.asarray(vecs, dtype=np.float64)
    n = v.shape[1]
    energy = np.einsum("ij,ij->i", v, v)
    dc = v.sum(axis=1) ** 2 / n
    safe = np.where(energy > 0, energy, 1.0)
    index = {name: i for i, name in enumerate(CATEGORY_NAMES)}
    unclear = index["unclear"]
    per_family = np.array([index[CATEGORY.get(f, "unclear")] for f in family_names], dtype=np.intp)
    out = per_family[family_codes] if len(family_names) else np.full(len(v), unclear, np.intp)
    out = np.where(score >= p95, out, unclear)
    out = np.where(dc / safe >= DC_THRESHOLD, index["smoothing/DC"], out)
    if opponency is not None:  # the colour rule comes before the DC rule (module docstring)
        out = np.where(opponency >= COLOUR_THRESHOLD, index["colour-opponent"], out)
    out = np.where(energy == 0, unclear, out)
    if n == 1:
        out[:] = unclear
    return out.astype(np.intp)


def match_layer(
    name: str,
    weight: NDArray[Any],
    *,
    init_weight: NDArray[Any] | None = None,
    n_null: int = 2000,
    seed: int = 0,
    null_scores: NDArray[np.float64] | None = None,
    gabor: bool = True,
    detail_limit: int = DETAIL_LIMIT,
    colour: bool = False,
    spectra: bool = False,
) -> LayerMatch:
    """Match every ``k x k`` kernel of a conv weight ``(O, C, k, k)`` against the bank, with nulls.

    ``colour``: the layer reads the image's colour channels directly (the colour rule applies;
    :func:`convlens.analysis.measure.units.sees_colour`). ``spectra``: keep each unit's power-spectrum
    descriptor and orientation tuning (the first layer: what the content tests of the kernel
    verdict compare)."""
    w = np.asarray(weight)
    if w.dtype.kind != "f":
        w = w.astype(np.float64)
    bad = nonfinite_message(name, w)
    if bad is not None:
        raise ConvlensError(bad)
    if w.ndim != 4 or w.shape[2] != w.shape[3]:
        from convlens.analysis.measure.dims import match_other  # 1-D, non-square and 3-D kernels

        return match_other(
            name, w, init_weight=init_weight, n_null=n_null, seed=seed, detail_limit=detail_limit
        )
    res = LayerMatch(name, list(w.shape), None)
    skipped = skip_reason(w)
    if skipped is not None:
        res.skipped = skipped
        res.kernel_size = w.shape[2]
        res.n_kernels = w.shape[0] * w.shape[1]
        return res
    o, c, k, _ = w.shape
    res.kernel_size = k
    bank, entries = bank_matrix(k)
    null = null_scores if null_scores is not None else random_null(k, n_null, seed)
    res.null = null_summary(
        f"{len(null)} i.i.d. uniform random kernels (PyTorch default init), seed {seed}", null
    )
    p95 = float(np.percentile(null, 95))
    vecs = w.reshape(o * c, k * k)
    best, score, sign = dc_cosine_scores(vecs, bank)
    res.n_kernels = len(vecs)
    above = score > p95
    res.fraction_above_null95 = float(above.mean())
    snull = _spectrum_stage(res, vecs.reshape(-1, k, k), score, len(null) or n_null, n_null, seed)
    exclude_zero_kernels(res, vecs, score)
    res.median_score = float(np.median(score))
    fam_names, fam_of_entry = np.unique([e.family for e in entries], return_inverse=True)
    fam_codes = fam_of_entry.ravel()[best]
    fam_counts = np.bincount(fam_codes, minlength=len(fam_names))
    res.best_families = {str(f): int(n) for f, n in zip(fam_names, fam_counts, strict=True) if n}
    if init_weight is not None:
        _init_null(res, init_weight, bank, p95)
    opponency = _opponency(w) if colour else None
    cat_codes = _categorize_codes(
        vecs,
        score,
        fam_codes,
        [str(f) for f in fam_names],
        p95,
        None if opponency is None else np.repeat(opponency, c),
    )
    cat_counts = np.bincount(cat_codes, minlength=len(CATEGORY_NAMES))
    res.categories = {name: int(n) for name, n in zip(CATEGORY_NAMES, cat_counts, strict=True) if n}
    cats = np.array(CATEGORY_NAMES)[cat_codes]
    res.units = unit_summary(
        w,
        score,
        cats,
        null,
        snull,
        colour=colour,
        keep_lists=o <= detail_limit,
        spectra=spectra and o <= detail_limit,
    )
    if len(vecs) <= detail_limit:
        scored = _Scored(best, score, sign, above, fam_names[fam_codes], cat_codes, null)
        res.kernels = _kernel_records(vecs, c, k, scored, entries, gabor)
        if c > 1:
            res.channel_summed = _channel_summed(w, bank, entries, p95, opponency)
    return res


def exclude_zero_kernels(res: LayerMatch, vecs: NDArray[Any], score: NDArray[Any]) -> None:
    """All-zero kernels (e.g. weights quantised to zero) have no shape: they are counted in
    ``n_zero_kernels`` and left out of the fractions above the random and spectrum nulls."""
    live = np.any(np.asarray(vecs) != 0, axis=1)
    n0 = int((~live).sum())
    if n0 == 0:
        return
    res.n_zero_kernels = n0
    res.notes.append(
        f"{n0} of {len(live)} kernels are all zero: counted apart, left out of the fractions "
        "above the nulls"
    )
    for null, attr in (
        (res.null, "fraction_above_null95"),
        (res.spectrum_null, "fraction_above_spectrum_null95"),
    ):
        if null is not None and null.p95 is not None:
            value = float((score[live] > null.p95).mean()) if live.any() else None
            setattr(res, attr, value)


def _spectrum_stage(
    res: LayerMatch,
    kernels: NDArray[Any],
    score: NDArray[Any],
    n_avail: int,
    n_null: int,
    seed: int,
) -> NDArray[np.float64]:
    """The spectrum-matched null of :func:`match_layer` (as many kernels as the random null)."""
    snull = spectrum_null(kernels, min(n_null, n_avail), seed)
    res.spectrum_null = null_summary(
        "random kernels with this layer's mean power spectrum (phase-randomised)", snull
    )
    res.fraction_above_spectrum_null95 = float((score > np.percentile(snull, 95)).mean())
    return snull


def _init_null(
    res: LayerMatch, init_weight: NDArray[Any], bank: NDArray[np.float64], p95: float
) -> None:
    """The epoch-000 null of :func:`match_layer`: the same layer's initial kernels scored alike."""
    k = bank.shape[1]
    iw = np.asarray(init_weight, dtype=np.float64).reshape(-1, k)
    init_scores = dc_cosine_scores(iw, bank)[1]
    res.init_null = null_summary("epoch-000 initial kernels of this layer", init_scores)
    res.init_fraction_above_null95 = float((init_scores > p95).mean())


def skip_reason(w: NDArray[Any]) -> str | None:
    """Why a weight cannot be matched against the square 2-D bank (``None`` when it can)."""
    if w.ndim >= 2 and 0 in w.shape:
        return f"no kernels: weight shape {'x'.join(map(str, w.shape))} has a zero dimension"
    if w.ndim != 4:
        return f"{w.ndim - 2}-D convolution: the classical bank is 2-D"
    kh, kw = w.shape[2:]
    if kh != kw:
        return f"non-square kernel {kh}x{kw}: the bank is square"
    if kh == 1:
        return "1x1 kernels have no spatial structure to compare (they only mix channels)"
    if not has_bank(kh):
        return f"no classical kernels exist at size {kh}x{kh}"
    return None


def _opponency(w: NDArray[Any]) -> NDArray[np.float64] | None:
    """Colour opponency per output unit ``1 - |sum_c w_c|^2 / (C sum_c |w_c|^2)`` (C > 1 only)."""
    c = w.shape[1]
    if c <= 1:
        return None
    summed = w.sum(axis=1)
    denom = c * (w**2).sum(axis=(1, 2, 3))
    return np.where(
        denom > 0, 1.0 - (summed**2).sum(axis=(1, 2)) / np.where(denom > 0, denom, 1), 0.0
    )


@dataclass
class _Scored:
    """Per-kernel match figures of one layer, as computed by :func:`match_layer`."""

    best: NDArray[np.int64]
    score: NDArray[np.float64]
    sign: NDArray[np.int8]
    above: NDArray[np.bool_]
    families: NDArray[Any]
    categories: NDArray[np.intp]
    null: NDArray[np.float64]


def _kernel_records(
    vecs: NDArray[Any], c: int, k: int, s: _Scored, entries: list[Any], gabor: bool
) -> list[KernelMatch]:
    # percentile and one-sided p-value of each score in the random null
    ge = len(s.null) - np.searchsorted(s.null, s.score, side="left")
    pvals = (1 + ge) / (len(s.null) + 1)
    pct = 100.0 * np.searchsorted(s.null, s.score, side="right") / len(s.null)
    cats = np.array(CATEGORY_NAMES)[s.categories]
    fits: list[GaborFit | None] = (
        list(fit_gabor(vecs.reshape(-1, k, k)))
        if gabor and k >= 5 and k % 2
        else [None] * len(vecs)
    )
    return [
        KernelMatch(
            out_channel=i // c,
            in_channel=i % c,
            best_match=entries[s.best[i]].label,
            family=str(s.families[i]),
            score=float(s.score[i]),
            sign=int(s.sign[i]),
            percentile=float(pct[i]),
            p_value=float(pvals[i]),
            above_null95=bool(s.above[i]),
            category=str(cats[i]),
            gabor_fit=fits[i],
        )
        for i in range(len(vecs))
    ]


def _channel_summed(
    w: NDArray[Any],
    bank: NDArray[np.float64],
    entries: list[Any],
    p95: float,
    opponency: NDArray[np.float64] | None,
) -> list[ChannelSummedMatch]:
    o, _, k, _ = w.shape
    sb, ss, sg = dc_cosine_scores(w.sum(axis=1).reshape(o, k * k), bank)
    return [
        ChannelSummedMatch(
            out_channel=i,
            best_match=entries[sb[i]].label,
            family=entries[sb[i]].family,
            score=float(ss[i]),
            sign=int(sg[i]),
            above_null95=bool(ss[i] > p95),
            colour_opponency=float(opponency[i]) if opponency is not None else None,
        )
        for i in range(o)
    ]

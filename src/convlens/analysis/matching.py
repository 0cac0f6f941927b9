"""Learned kernels vs the classical bank, always next to a null baseline.

Statistic: for a kernel ``w`` (one input channel of one output channel, ``k x k``) and the bank at
size ``k`` (:func:`convlens.kernels.matching_bank`), the **DC-removed, sign-invariant cosine**
``max_b |cos(w - mean w, b - mean b)|``. Sign-invariant because a conv layer followed by a ReLU and a
next layer can use ``-w`` as well as ``w``; DC-removed because the mean of a kernel is brightness, not
shape.

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
2. DC energy fraction ``(mean * sqrt(n))^2 / |w|^2 >= 0.6`` -> ``"smoothing/DC"``;
3. score below the null's 95th percentile -> ``"unclear"``;
4. (RGB) colour opponency ``1 - |sum_c w_c|^2 / (C * sum_c |w_c|^2) >= 0.9`` -> ``"colour-contrast"``
   (the channels of the output unit largely cancel; random i.i.d. channels give about ``1 - 1/C``);
5. else by the best match's family: edge/emboss -> ``"edge/gradient"``, line -> ``"line"``,
   blob/sharpen/smoothing -> ``"blob/centre-surround"``, gabor -> ``"Gabor-like"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens.analysis.gaborfit import GaborFit, fit_gabor
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
CATEGORY_NAMES = sorted({*CATEGORY.values(), "unclear", "colour-contrast", "smoothing/DC"})
DETAIL_LIMIT = 4096  # per-kernel records are kept for layers with at most this many kernels
CHUNK = 65536


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
    The returned array is read-only."""
    bank, _ = bank_matrix(k)
    rng = np.random.default_rng(seed)
    vecs = rng.uniform(-1.0, 1.0, size=(n, k * k))
    scores = np.sort(dc_cosine_scores(vecs, bank)[1])
    scores.flags.writeable = False
    return scores


def spectrum_null(kernels: NDArray[Any], n: int, seed: int = 0) -> NDArray[np.float64]:
    """Scores of ``n`` random kernels with the mean power spectrum of ``kernels`` ``(K, k, k)``."""
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
    bank, _ = bank_matrix(k)
    return np.sort(dc_cosine_scores(shaped.reshape(n, k * k), bank)[1])


@dataclass
class NullSummary:
    source: str
    n: int
    median: float
    p95: float

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "n": self.n, "median": self.median, "p95": self.p95}


@dataclass
class LayerMatch:
    """Matching result of one conv layer."""

    layer: str
    weight_shape: list[int]
    kernel_size: int | None
    skipped: str | None = None
    n_kernels: int = 0
    null: NullSummary | None = None
    init_null: NullSummary | None = None
    spectrum_null: NullSummary | None = None
    fraction_above_null95: float | None = None
    fraction_above_spectrum_null95: float | None = None
    init_fraction_above_null95: float | None = None
    median_score: float | None = None
    categories: dict[str, int] = field(default_factory=dict)
    best_families: dict[str, int] = field(default_factory=dict)
    kernels: list[dict[str, Any]] = field(default_factory=list)
    channel_summed: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "weight_shape": self.weight_shape,
            "kernel_size": self.kernel_size,
            "skipped": self.skipped,
            "n_kernels": self.n_kernels,
            "null": self.null.to_dict() if self.null else None,
            "init_null": self.init_null.to_dict() if self.init_null else None,
            "spectrum_null": self.spectrum_null.to_dict() if self.spectrum_null else None,
            "fraction_above_null95": self.fraction_above_null95,
            "fraction_above_spectrum_null95": self.fraction_above_spectrum_null95,
            "init_fraction_above_null95": self.init_fraction_above_null95,
            "median_score": self.median_score,
            "categories": self.categories,
            "best_families": self.best_families,
            "kernels": self.kernels,
            "channel_summed": self.channel_summed,
        }


def _summary(source: str, scores: NDArray[np.float64]) -> NullSummary:
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
    if opponency is not None:
        out = np.where(
            (score >= p95) & (opponency >= COLOUR_THRESHOLD), index["colour-contrast"], out
        )
    out = np.where(dc / safe >= DC_THRESHOLD, index["smoothing/DC"], out)
    out = np.where(energy == 0, unclear, out)
    if n == 1:
        out[:] = unclear
    return out.astype(np.intp)


def categorize(
    w: NDArray[Any], score: float, family: str | None, p95: float, colour_opponency: float | None
) -> str:
    """The taxonomy rule for one ``(k, k)`` kernel (see the module docstring)."""
    fam = np.array([family if family is not None else "none"])
    opp = None if colour_opponency is None else np.array([colour_opponency])
    return str(
        categorize_many(
            np.asarray(w).reshape(1, -1), np.array([score if family else -np.inf]), fam, p95, opp
        )[0]
    )


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
) -> LayerMatch:
    """Match every ``k x k`` kernel of a conv weight ``(O, C, k, k)`` against the bank, with nulls."""
    w = np.asarray(weight)
    if w.dtype.kind != "f":
        w = w.astype(np.float64)
    res = LayerMatch(name, list(w.shape), None)
    if w.ndim != 4:
        res.skipped = f"{w.ndim - 2}-D convolution: the classical bank is 2-D"
        return res
    o, c, kh, kw = w.shape
    if kh != kw:
        res.skipped = f"non-square kernel {kh}x{kw}: the bank is square"
        return res
    k = kh
    res.kernel_size = k
    if k == 1:
        res.skipped = "1x1 kernels have no spatial structure to compare (they only mix channels)"
        res.n_kernels = o * c
        return res
    bank, entries = bank_matrix(k)
    if not entries:
        res.skipped = f"no classical kernels exist at size {k}x{k} (even size)"
        res.n_kernels = o * c
        return res
    null = null_scores if null_scores is not None else random_null(k, n_null, seed)
    res.null = _summary(
        f"{len(null)} i.i.d. uniform random kernels (PyTorch default init), seed {seed}", null
    )
    p95 = res.null.p95
    vecs = w.reshape(o * c, k * k)
    best, score, sign = dc_cosine_scores(vecs, bank)
    res.n_kernels = len(vecs)
    above = score > p95
    res.fraction_above_null95 = float(above.mean())
    snull = spectrum_null(
        vecs.reshape(-1, k, k), min(n_null, len(null)) if len(null) else n_null, seed
    )
    res.spectrum_null = _summary(
        "random kernels with this layer's mean power spectrum (phase-randomised)", snull
    )
    res.fraction_above_spectrum_null95 = float((score > res.spectrum_null.p95).mean())
    res.median_score = float(np.median(score))
    fam_names, fam_of_entry = np.unique([e.family for e in entries], return_inverse=True)
    fam_codes = fam_of_entry.ravel()[best]
    fams = fam_names[fam_codes]
    fam_counts = np.bincount(fam_codes, minlength=len(fam_names))
    res.best_families = {str(f): int(n) for f, n in zip(fam_names, fam_counts, strict=True) if n}
    if init_weight is not None:
        iw = np.asarray(init_weight, dtype=np.float64).reshape(-1, k * k)
        init_scores = dc_cosine_scores(iw, bank)[1]
        res.init_null = _summary("epoch-000 initial kernels of this layer", init_scores)
        res.init_fraction_above_null95 = float((init_scores > p95).mean())
    # percentile / p-value against the random null
    ge = len(null) - np.searchsorted(null, score, side="left")
    pvals = (1 + ge) / (len(null) + 1)
    pct = 100.0 * np.searchsorted(null, score, side="right") / len(null)
    opponency = None
    if c > 1:
        summed = w.sum(axis=1)
        denom = c * (w**2).sum(axis=(1, 2, 3))
        opponency = np.where(
            denom > 0, 1.0 - (summed**2).sum(axis=(1, 2)) / np.where(denom > 0, denom, 1), 0.0
        )
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
    if len(vecs) <= detail_limit:
        cats = np.array(CATEGORY_NAMES)[cat_codes]
        fits: list[GaborFit | None] = (
            list(fit_gabor(vecs.reshape(-1, k, k))) if gabor and k >= 5 else [None] * len(vecs)
        )
        for i in range(len(vecs)):
            res.kernels.append(
                {
                    "out_channel": i // c,
                    "in_channel": i % c,
                    "best_match": entries[best[i]].label,
                    "family": str(fams[i]),
                    "score": float(score[i]),
                    "sign": int(sign[i]),
                    "percentile": float(pct[i]),
                    "p_value": float(pvals[i]),
                    "above_null95": bool(above[i]),
                    "category": str(cats[i]),
                    "gabor_fit": None if (fit := fits[i]) is None else fit.to_dict(),
                }
            )
        if c > 1:
            sv = w.sum(axis=1).reshape(o, k * k)
            sb, ss, sg = dc_cosine_scores(sv, bank)
            for i in range(o):
                res.channel_summed.append(
                    {
                        "out_channel": i,
                        "best_match": entries[sb[i]].label,
                        "family": entries[sb[i]].family,
                        "score": float(ss[i]),
                        "sign": int(sg[i]),
                        "above_null95": bool(ss[i] > p95),
                        "colour_opponency": float(opponency[i]) if opponency is not None else None,
                    }
                )
    return res

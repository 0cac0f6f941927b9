"""Statistics per output unit, dead units, proportion intervals and p-values at their resolution.

A conv layer's **output unit** is one output channel: all ``C`` input-channel slices of its kernel.
The slices of one unit are not independent evidence (the R, G and B slices of an RGB stem correlate
at |r| 0.9+), so the verdicts count units, never slices.

Unit score (**best slice**): the largest slice score of the unit (the DC-removed, sign-invariant
cosine of :mod:`convlens.analysis.measure.matching`). Under the null the ``C`` slices are i.i.d. draws
(PyTorch's init), so the best slice's null p-value is corrected for the ``C`` looks by Šidák:
``p_unit = 1 - (1 - min_c p_c)^C``, with ``p_c = (1 + #{null >= s_c}) / (n_null + 1)``. A unit is
*above the null* when ``p_unit < 0.05``, so chance stays 5% per unit for any ``C``.

Dead units: a unit whose L2 norm (over all its slices) is below ``DEAD_RELATIVE_NORM`` times the
largest unit norm of the layer is dead; it is excluded from every count and counted separately.

Colour rule: only for a layer that sees the image's colour channels directly (the first layer in
execution order with exactly 3 input channels, or a space-to-depth stem's kernels de-interleaved to
the image's 3 channels (:mod:`convlens.analysis.model.spacetodepth`); never a hidden layer). A unit with opponency ``1 - |sum_c w_c|^2 / (C sum_c |w_c|^2) >= 0.9`` is
``"colour-opponent"``, decided *before* the DC rule (an R-minus-G blob is colour, not smoothing);
otherwise a unit takes the category of its best slice ("unclear" when the unit is not above the
null, whatever its best slice's family).

Proportions carry a Wilson score 95% interval (``scipy.stats.binomtest(...).proportion_ci``'s
formula, written out in :func:`convlens.analysis.evidence.stats.wilson`; inside [0, 1] by construction); an empirical p-value at its floor ``1/(n_null + 1)`` is printed as
``"< 1/2001"``, never as 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens.analysis.evidence import kernelsets
from convlens.analysis.evidence.stats import wilson
from convlens.analysis.measure.gaborfit import fit_gabor
from convlens.analysis.result import UnitSummary

DEAD_RELATIVE_NORM = 1e-3
ALPHA = 0.05
COLOUR_THRESHOLD = 0.9
UNIT_SCORE = (
    "best slice: the largest slice score of the unit; unit p-value 1 - (1 - min_c p_c)^C "
    "(Sidak over its C input-channel slices, i.i.d. under the null); above the null when p < 0.05"
)


def slice_p_values(scores: NDArray[Any], null_sorted: NDArray[Any]) -> NDArray[np.float64]:
    """One-sided empirical p-values ``(1 + #{null >= s}) / (n + 1)`` of ``scores`` in a sorted null."""
    null = np.asarray(null_sorted, dtype=np.float64)
    ge = len(null) - np.searchsorted(null, np.asarray(scores, dtype=np.float64), side="left")
    return np.asarray((1.0 + ge) / (len(null) + 1.0), dtype=np.float64)


def sidak(p_min: NDArray[Any], c: int) -> NDArray[np.float64]:
    """``1 - (1 - p)^c``: the p-value of the best of ``c`` i.i.d. looks (computed stably)."""
    p = np.clip(np.asarray(p_min, dtype=np.float64), 0.0, 1.0)
    return np.asarray(-np.expm1(c * np.log1p(-np.minimum(p, 1.0 - 1e-16))), dtype=np.float64)


def unit_norms(w: NDArray[Any]) -> NDArray[np.float64]:
    """L2 norm of each output unit (all its input-channel slices) of a weight ``(O, C, ...)``."""
    flat = np.asarray(w, dtype=np.float64).reshape(w.shape[0], -1)
    return np.asarray(np.sqrt(np.einsum("ij,ij->i", flat, flat)), dtype=np.float64)


def dead_mask(w: NDArray[Any], rel: float = DEAD_RELATIVE_NORM) -> NDArray[np.bool_]:
    """Units whose norm is below ``rel`` times the layer's largest unit norm (all dead if all 0)."""
    norms = unit_norms(w)
    top = float(norms.max()) if len(norms) else 0.0
    return np.asarray(norms < rel * top if top > 0 else np.ones(len(norms), bool), dtype=bool)


def opponency(w: NDArray[Any]) -> NDArray[np.float64]:
    """Colour opponency per unit ``1 - |sum_c w_c|^2 / (C sum_c |w_c|^2)`` (0 for a zero unit)."""
    w = np.asarray(w, dtype=np.float64)
    c = w.shape[1]
    summed = w.sum(axis=1).reshape(w.shape[0], -1)
    denom = c * (w.reshape(w.shape[0], -1) ** 2).sum(axis=1)
    num = (summed**2).sum(axis=1)
    safe = np.where(denom > 0, denom, 1.0)
    return np.asarray(np.where(denom > 0, 1.0 - num / safe, 0.0), dtype=np.float64)


def sees_colour(index: int, in_channels: int, groups: int | None = 1) -> bool:
    """The colour rule applies: the first layer (execution index 0) reading exactly 3 channels."""
    return index == 0 and in_channels == 3 and (groups or 1) == 1


def unit_summary(
    w: NDArray[Any],
    scores: NDArray[Any],
    slice_categories: list[str] | NDArray[Any],
    null: NDArray[Any],
    spectrum: NDArray[Any] | None,
    *,
    colour: bool,
    keep_lists: bool = True,
    spectra: bool = False,
) -> UnitSummary:
    """Per-unit figures of one 2-D layer ``w (O, C, k, k)`` from its slice ``scores`` (``O*C``,
    kernel order ``out * C + in``) and slice categories, against the sorted random ``null`` (and the
    spectrum-matched null when given)."""
    o, c = w.shape[0], w.shape[1]
    s = np.asarray(scores, dtype=np.float64).reshape(o, c)
    best = s.max(axis=1)
    best_slice = s.argmax(axis=1)
    dead = dead_mask(w)
    live = ~dead
    n_live = int(live.sum())
    # the p-value falls as the score rises: a unit's smallest slice p-value is its best slice's
    p_unit = sidak(slice_p_values(best, null), c)
    above = (p_unit < ALPHA) & live
    out = UnitSummary(
        unit_score=UNIT_SCORE,
        n_units=o,
        n_live=n_live,
        n_dead=int(dead.sum()),
        dead_rule=f"unit L2 norm < {DEAD_RELATIVE_NORM:g} x the layer's largest unit norm",
        dead_units=[int(i) for i in np.flatnonzero(dead)][:1000],
        slices_per_unit=c,
        above_null95=int(above.sum()),
        fraction_above_null95=float(above.sum() / n_live) if n_live else None,
        ci_above_null95=wilson(int(above.sum()), n_live),
        n_null=len(null),
        min_unit_p=float(sidak(np.array([1.0 / (len(null) + 1)]), c)[0]),
    )
    if out.min_unit_p >= ALPHA:
        out.resolution_note = (
            f"with {len(null)} null kernels and {c} slices per unit the smallest unit p-value is "
            f"{out.min_unit_p:.3g} >= {ALPHA}: no unit can be above the null; use a larger null"
        )
    if spectrum is not None and len(spectrum):
        ps = sidak(slice_p_values(best, np.sort(np.asarray(spectrum))), c)
        sa = (ps < ALPHA) & live
        out.above_spectrum_null95 = int(sa.sum())
        out.fraction_above_spectrum_null95 = float(sa.sum() / n_live) if n_live else None
        out.ci_above_spectrum_null95 = wilson(int(sa.sum()), n_live)
    cats = np.asarray(slice_categories).reshape(o, c)[np.arange(o), best_slice].astype("<U24")
    family = ~np.isin(cats, ["smoothing/DC", "unclear", "colour-opponent"])
    cats = np.where(family & (p_unit >= ALPHA), "unclear", cats)  # the unit's own threshold
    if colour:
        out.colour_rule = (
            f"opponency 1 - |sum_c w_c|^2 / (C sum_c |w_c|^2) >= {COLOUR_THRESHOLD} -> "
            "colour-opponent, applied before the DC rule (this layer reads the image's 3 channels)"
        )
        cats = np.where(opponency(w) >= COLOUR_THRESHOLD, "colour-opponent", cats)
    cats = np.where(dead, "dead", cats)
    names, counts = np.unique(cats, return_counts=True)
    out.categories = {str(k): int(v) for k, v in zip(names, counts, strict=True)}
    if keep_lists:
        out.best_scores = [float(v) for v in best]
        out.p_values = [float(v) for v in p_unit]
        out.unit_categories = [str(v) for v in cats]
        if spectra:  # what each unit contains (orientation, frequency): for the content tests
            desc = kernelsets.descriptors(w)
            pref, sel, _ = kernelsets.orientation_tuning(w)
            out.spectra = [[_num(v) for v in row] for row in desc]
            out.orientation = [_num(v) for v in pref]
            out.selectivity = [_num(v) for v in sel]
            k = w.shape[-1]
            if k >= 5 and k % 2:  # the fit's grid needs a centre pixel and room for a period
                fits = fit_gabor(np.asarray(w, dtype=np.float64)[np.arange(o), best_slice])
                out.gabor_r2 = [_num(f.r2) for f in fits]
    return out


def _num(v: float) -> float | None:
    return round(float(v), 6) if np.isfinite(v) else None

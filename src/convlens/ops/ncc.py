"""Normalized cross-correlation: the Pearson correlation between a template and every window.

Raw cross-correlation (what a conv layer computes) grows with patch brightness and contrast; NCC
subtracts each window's mean and divides by both standard deviations, so every value is a
correlation coefficient in [-1, 1].

**Definition (every padding mode).** Zero-pad the image as :func:`~convlens.ops.correlate2d` does
for ``padding`` (``"valid"``: none; ``"same"``, ``"full"``, ints, ``(lo, hi)`` pairs: zeros). For
each output position ``p`` let ``W`` be the template-sized window of the **zero-padded** image at
``p``, padded zeros included. Then::

    r[p] = sum((W - mean W) * (T - mean T)) / sqrt(sum((W - mean W)**2) * sum((T - mean T)**2))

This is ``skimage.feature.match_template(image, T, pad_input=True, mode="constant",
constant_values=0)`` for ``padding="same"`` and odd template sides (and ``pad_input=False`` for
``"valid"``). For an even side ``h`` the two differ only in where the extra zero goes: ``"same"``
follows PyTorch (``(h - 1) // 2`` zeros before), scikit-image puts ``h // 2`` before, i.e. it equals
``padding=((h // 2, (h - 1) // 2), ...)`` here.

**Flat windows.** A window whose standard deviation is at most ``FLAT_RTOL`` (1e-12) times its own
root-mean-square value has no defined correlation (it is constant up to rounding of its own
values) and gets 0. The test is local: a bright plateau and a dark one are judged by their own
scale, never the whole image's. A template that is flat by the same rule is refused.

**Accuracy.** Window sums come from correlations of the padded image shifted by its mean. Where
those sums cancel badly (a window's variance below ``RECOMPUTE_RTOL`` (1e-6) times its shifted
energy, e.g. a faint pattern on a bright plateau) the window is recomputed directly, two-pass, from
its own values.

>>> import numpy as np
>>> img = np.array([[0, 0, 0, 0], [0, 1, 2, 0], [0, 3, 4, 0], [0, 0, 0, 0]], dtype=float)
>>> r = normalized_cross_correlation(img, [[1, 2], [3, 4]])
>>> round(float(r[1, 1]), 12)        # the template itself sits at (1, 1)
1.0
>>> img = np.arange(1.0, 26.0).reshape(5, 5)       # padded zeros count as part of the window
>>> round(float(normalized_cross_correlation(img, np.diag([1.0, 2, 3]), padding="same")[0, 0]), 4)
0.4971
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import ArrayLike, NDArray

from convlens.errors import ConvlensError
from convlens.ops.correlate import correlate2d
from convlens.ops.geometry import PaddingSpec, resolve_padding

FLAT_RTOL = 1e-12  # a window with std <= FLAT_RTOL * rms (its own) is flat: r = 0
RECOMPUTE_RTOL = 1e-6  # fast window sums are trusted where var > RECOMPUTE_RTOL * shifted energy
_CHUNK_ELEMENTS = 1 << 22  # windows gathered per block in the direct recomputation


def normalized_cross_correlation(
    image: ArrayLike, template: ArrayLike, *, padding: PaddingSpec = "valid"
) -> NDArray[np.float64]:
    """Pearson r between ``template`` and each zero-padded window of ``image`` (float64, in [-1, 1]).

    See the module docstring for the definition, the flat-window rule and the accuracy strategy.
    """
    img = np.asarray(image, dtype=np.float64)
    tpl = np.asarray(template, dtype=np.float64)
    if img.ndim != 2 or tpl.ndim != 2 or img.size == 0 or tpl.size == 0:
        raise ConvlensError(
            f"normalized_cross_correlation expects two non-empty 2-D arrays, got image {img.shape} "
            f"and template {tpl.shape}"
        )
    if not (np.all(np.isfinite(img)) and np.all(np.isfinite(tpl))):
        raise ConvlensError("normalized_cross_correlation needs finite values (found NaN or Inf)")
    # Pearson r and the flat rule are scale-invariant: scale both by a power of two (exact) so that
    # squares and sums of huge or tiny values neither overflow nor underflow.
    img, tpl = _unit_scale(img), _unit_scale(tpl)
    n = tpl.size
    tz = tpl - tpl.mean()
    t_energy = float(np.sum(tz * tz))
    if t_energy <= FLAT_RTOL**2 * float(np.sum(tpl * tpl)):
        raise ConvlensError(
            "template has zero variance (constant up to rounding); correlation is undefined"
        )
    t_norm = float(np.sqrt(t_energy))

    pads = resolve_padding(padding, img.shape, tpl.shape)
    padded = np.pad(img, pads) if any(lo or hi for lo, hi in pads) else img
    # Shift the padded image (zeros included) by its mean: variance is shift-invariant and
    # the shift limits cancellation in sum(x^2) - sum(x)^2 / n.
    shifted = padded - padded.mean()
    ones = np.ones_like(tpl)
    num = correlate2d(shifted, tz)
    s1 = correlate2d(shifted, ones)
    s2 = correlate2d(shifted * shifted, ones)
    e2 = correlate2d(padded * padded, ones)  # each window's own energy (flat rule)
    var = s2 - s1 * s1 / n
    # trusted: well-conditioned and clearly above the flat threshold (factor 4 of margin)
    trusted = (var > RECOMPUTE_RTOL * s2) & (var > 4.0 * FLAT_RTOL**2 * e2)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(trusted, num / (np.sqrt(np.where(trusted, var, 1.0)) * t_norm), 0.0)
    redo = np.argwhere(~trusted)
    if len(redo):
        r[redo[:, 0], redo[:, 1]] = _direct(padded, tz, t_norm, redo)
    return np.clip(r, -1.0, 1.0)


def _unit_scale(a: NDArray[np.float64]) -> NDArray[np.float64]:
    """``a`` times the power of two that brings its largest magnitude into [0.5, 1) (exact)."""
    top = float(np.max(np.abs(a)))
    if top == 0.0:
        return a
    return np.ldexp(a, -np.frexp(top)[1])


def _direct(
    padded: NDArray[np.float64], tz: NDArray[np.float64], t_norm: float, where: NDArray[np.intp]
) -> NDArray[np.float64]:
    """Pearson r of the windows at ``where`` (rows of (i, j)), two-pass from their own values."""
    windows = sliding_window_view(padded, tz.shape)
    n = tz.size
    flat_t = tz.reshape(-1)
    out = np.empty(len(where))
    step = max(1, _CHUNK_ELEMENTS // n)
    for a in range(0, len(where), step):
        b = min(len(where), a + step)
        w = windows[where[a:b, 0], where[a:b, 1]].reshape(b - a, n)
        d = w - w.mean(axis=1, keepdims=True)
        var = np.einsum("ij,ij->i", d, d)
        energy = np.einsum("ij,ij->i", w, w)
        flat = var <= FLAT_RTOL**2 * energy
        num = d @ flat_t
        with np.errstate(divide="ignore", invalid="ignore"):
            out[a:b] = np.where(flat, 0.0, num / (np.sqrt(np.where(flat, 1.0, var)) * t_norm))
    return out

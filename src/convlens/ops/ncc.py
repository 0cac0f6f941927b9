"""Normalized cross-correlation: the Pearson correlation between a template and every patch.

Raw cross-correlation (what a conv layer computes) grows with patch brightness and contrast; NCC
subtracts each patch's mean and divides by both standard deviations, so every value is a correlation
coefficient in [-1, 1]::

    r[p] = sum((P - mean P) * (T - mean T)) / sqrt(sum((P - mean P)**2) * sum((T - mean T)**2))

Patches with zero variance have no defined correlation; they get 0 (as ``skimage.feature.match_template``).

>>> import numpy as np
>>> img = np.array([[0, 0, 0, 0], [0, 1, 2, 0], [0, 3, 4, 0], [0, 0, 0, 0]], dtype=float)
>>> r = normalized_cross_correlation(img, [[1, 2], [3, 4]])
>>> round(float(r[1, 1]), 12)        # the template itself sits at (1, 1)
1.0
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from convlens.errors import ConvlensError
from convlens.ops.correlate import correlate2d
from convlens.ops.geometry import PaddingSpec


def normalized_cross_correlation(
    image: ArrayLike, template: ArrayLike, *, padding: PaddingSpec = "valid"
) -> NDArray[np.float64]:
    """Pearson r between ``template`` and each patch of ``image`` (float64, in [-1, 1])."""
    img = np.asarray(image, dtype=np.float64)
    tpl = np.asarray(template, dtype=np.float64)
    if img.ndim != 2 or tpl.ndim != 2 or img.size == 0 or tpl.size == 0:
        raise ConvlensError(
            f"normalized_cross_correlation expects two non-empty 2-D arrays, got image {img.shape} "
            f"and template {tpl.shape}"
        )
    if not (np.all(np.isfinite(img)) and np.all(np.isfinite(tpl))):
        raise ConvlensError("normalized_cross_correlation needs finite values (found NaN or Inf)")
    tz = tpl - tpl.mean()
    t_norm = float(np.sqrt(np.sum(tz * tz)))
    if t_norm == 0.0:
        raise ConvlensError("template has zero variance (constant); correlation is undefined")
    n = tpl.size
    ones = np.ones_like(tpl)
    num = correlate2d(img, tz, padding=padding)
    # Shift by the image mean first: variance is shift-invariant and this limits cancellation.
    shifted = img - img.mean()
    s1 = correlate2d(shifted, ones, padding=padding)
    s2 = correlate2d(shifted * shifted, ones, padding=padding)
    var = np.maximum(s2 - s1 * s1 / n, 0.0)
    denom = np.sqrt(var) * t_norm
    # Patches whose variance is at rounding level relative to their energy count as constant.
    flat = var <= 1e-12 * np.maximum(s2, 1e-300)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(flat, 0.0, num / np.where(flat, 1.0, denom))
    return np.clip(r, -1.0, 1.0)

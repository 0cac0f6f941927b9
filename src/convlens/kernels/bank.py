"""A matching bank: classical kernels built at one square size, for comparing with learned kernels.

``matching_bank(k)`` returns every bank kernel that exists at size ``k x k``:

- size-parametrised operators built at ``k``: Sobel and Prewitt (x, y), Gaussian derivatives (x, y),
  LoG and DoG at two scales, a Gabor family (8 orientations x 3 frequencies x 2 phases);
- fixed 3x3 operators (Scharr, Laplacians, Kirsch compass, line detectors, sharpen, emboss) for
  ``k >= 3``, centred in a ``k x k`` zero border (the same operator: taps outside are 0);
- Farid 5x5 for ``k >= 5`` likewise; Roberts 2x2 only at ``k == 2``.

Kernels whose DC-removed form is zero (box) are left out: they carry no shape to compare.
Smoothing kernels (Gaussian) are kept; after DC removal they are a centre-surround shape.

>>> names = [e.label for e in matching_bank(5)]
>>> "sobel_x" in names and "laplacian_4" in names and any(n.startswith("gabor") for n in names)
True
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens.errors import ConvlensError
from convlens.kernels.base import MAX_SIZE, get_kernel

GABOR_ANGLES = tuple(float(a) for a in np.arange(0, 180, 22.5))
GABOR_PHASES = (0.0, 90.0)


@dataclass(frozen=True)
class BankEntry:
    label: str  # unique, e.g. "gabor(angle=45,f=0.25,phase=90)"
    name: str  # the registry name
    family: str
    params: dict[str, Any]
    weights: NDArray[np.float64]


def _embed(w: NDArray[Any], k: int) -> NDArray[np.float64]:
    h = w.shape[0]
    off = (k - h) // 2
    out = np.zeros((k, k))
    out[off : off + h, off : off + h] = w
    return out


def gabor_frequencies(k: int) -> tuple[float, ...]:
    """Three carrier frequencies that fit a k x k window: from one cycle per window up to 0.4 c/px."""
    lo = max(1.0 / k, 0.1)
    return tuple(float(f) for f in np.round(np.linspace(lo, 0.4, 3), 4))


@lru_cache(maxsize=16)
def _bank(k: int) -> tuple[BankEntry, ...]:
    entries: list[BankEntry] = []

    def add(label: str, name: str, w: NDArray[Any], params: dict[str, Any] | None = None) -> None:
        kern = get_kernel(name, **(params or {}))
        weights = np.asarray(w, dtype=np.float64)
        if np.allclose(weights - weights.mean(), 0.0):
            return
        entries.append(BankEntry(label, name, kern.family, dict(params or {}), weights))

    if k == 2:
        for name in ("roberts_pos_diag", "roberts_neg_diag"):
            add(name, name, get_kernel(name).weights)
        return tuple(entries)
    if k % 2 == 0 or k < 3:
        return tuple(entries)
    for name in ("sobel_x", "sobel_y", "prewitt_x", "prewitt_y"):
        add(name, name, get_kernel(name, size=k).weights, {"size": k})
    for sigma in sorted({round(k / 6, 3), round(k / 4, 3)}):
        for name in ("gaussian_dx", "gaussian_dy", "log", "gaussian"):
            p = {"sigma": sigma, "size": k}
            add(f"{name}(sigma={sigma:g})", name, get_kernel(name, **p).weights, p)
        p2 = {"sigma1": sigma, "sigma2": round(1.6 * sigma, 3), "size": k}
        add(f"dog(sigma={sigma:g})", "dog", get_kernel("dog", **p2).weights, p2)
    fixed3 = [
        "scharr_x",
        "scharr_y",
        "laplacian_4",
        "laplacian_8",
        "sharpen",
        "emboss",
        "line_horizontal",
        "line_vertical",
        "line_diag_45",
        "line_diag_135",
    ]
    fixed3 += [f"kirsch_{d}" for d in ("n", "ne", "e", "se", "s", "sw", "w", "nw")]
    for name in fixed3:
        add(name, name, _embed(get_kernel(name).weights, k))
    if k >= 5:
        for name in ("farid_x", "farid_y"):
            add(name, name, _embed(get_kernel(name).weights, k))
    sigma_g = max(k / 4, 0.75)
    for f in gabor_frequencies(k):
        for angle in GABOR_ANGLES:
            for phase in GABOR_PHASES:
                p = {"angle": angle, "frequency": f, "phase": phase, "sigma": sigma_g, "size": k}
                add(
                    f"gabor(angle={angle:g},f={f:g},phase={phase:g})",
                    "gabor",
                    get_kernel("gabor", **p).weights,
                    p,
                )
    return tuple(entries)


def matching_bank(k: int) -> list[BankEntry]:
    """The bank at size ``k x k`` (empty for k == 1 and even k other than 2)."""
    if isinstance(k, bool | np.bool_) or not isinstance(k, int | np.integer) or k < 1:
        raise ConvlensError(f"kernel size must be a positive integer, got {k!r}")
    if k > MAX_SIZE:
        raise ConvlensError(f"kernel size must be <= {MAX_SIZE} for the matching bank, got {k}")
    return list(_bank(int(k)))


def bank_matrix(k: int) -> tuple[NDArray[np.float64], list[BankEntry]]:
    """Rows: the bank kernels flattened, DC removed and scaled to unit norm."""
    entries = matching_bank(k)
    if not entries:
        return np.zeros((0, k * k)), []
    m = np.stack([e.weights.ravel() for e in entries])
    m = m - m.mean(axis=1, keepdims=True)
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    return m, entries

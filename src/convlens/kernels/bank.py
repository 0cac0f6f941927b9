"""A matching bank: classical kernels built at one square size, for comparing with learned kernels.

``matching_bank(k)`` returns every bank kernel that exists at size ``k x k``:

- size-parametrised operators built at ``k``: Sobel and Prewitt (x, y), Gaussian derivatives (x, y),
  LoG and DoG at two scales, a Gabor family (8 orientations x 3 frequencies x 2 phases);
- fixed 3x3 operators (Scharr, Laplacians, Kirsch compass, line detectors, sharpen, emboss) for
  ``k >= 3``, centred in a ``k x k`` zero border (the same operator: taps outside are 0);
- Farid 5x5 for ``k >= 5`` likewise; Roberts 2x2 only at ``k == 2``.
- even sizes ``k >= 4`` (no centre tap, e.g. DCGAN's 4x4): the continuous families sampled on a grid
  centred between pixels (``x = i - (k - 1) / 2``): Gaussian derivatives, Gaussian, LoG and DoG at
  the two scales of odd sizes, the Gabor family, and half-plane step edges (x, y and both diagonals).

Kernels whose DC-removed form is zero (box) are left out: they carry no shape to compare.
Smoothing kernels (Gaussian) are kept; after DC removal they are a centre-surround shape.

>>> names = [e.label for e in matching_bank(5)]
>>> "sobel_x" in names and "laplacian_4" in names and any(n.startswith("gabor") for n in names)
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens.errors import ConvlensError
from convlens.kernels.base import MAX_SIZE, get_kernel

GABOR_ANGLES = tuple(float(a) for a in np.arange(0, 180, 22.5))
GABOR_PHASES = (0.0, 90.0)


@dataclass(frozen=True)
class BankEntry:
    """One bank kernel. The banks are cached and shared by every caller in the process, so
    ``weights`` is read-only and ``params`` a read-only mapping (see :func:`frozen_entry`)."""

    label: str  # unique, e.g. "gabor(angle=45,f=0.25,phase=90)"
    name: str  # the registry name
    family: str
    params: Mapping[str, Any]
    weights: NDArray[np.float64]


def frozen_entry(
    label: str, name: str, family: str, params: Mapping[str, Any], w: NDArray[Any]
) -> BankEntry:
    """A :class:`BankEntry` holding a read-only float64 copy of ``w`` and a read-only copy of
    ``params``: writing into a cached bank kernel raises instead of changing every later match."""
    weights = np.array(w, dtype=np.float64)
    weights.setflags(write=False)
    return BankEntry(label, name, family, MappingProxyType(dict(params)), weights)


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
        entries.append(frozen_entry(label, name, kern.family, params or {}, weights))

    if k == 2:
        for name in ("roberts_pos_diag", "roberts_neg_diag"):
            add(name, name, get_kernel(name).weights)
        return tuple(entries)
    if k % 2 == 0 and k >= 4:
        return _even_bank(k)
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


def _even_bank(k: int) -> tuple[BankEntry, ...]:
    """The bank at an even size ``k >= 4``: the continuous families sampled on a half-pixel grid.

    The registry's operators need a centre tap (odd sizes), so the formulas are evaluated here with
    the same parameters as at odd sizes; families come from the registry's odd-size kernels."""
    c = (k - 1) / 2.0
    y, x = np.mgrid[0:k, 0:k].astype(np.float64) - c
    entries: list[BankEntry] = []

    def add(label: str, name: str, w: NDArray[Any], params: dict[str, Any]) -> None:
        if np.allclose(w - w.mean(), 0.0):
            return
        family = "gabor" if name == "gabor" else get_kernel(name).family
        entries.append(frozen_entry(label, name, family, params, w))

    def gauss(s: float) -> NDArray[np.float64]:
        g: NDArray[np.float64] = np.exp(-(x**2 + y**2) / (2 * s * s))
        return g / g.sum()

    for s in sorted({round(k / 6, 3), round(k / 4, 3)}):
        g = gauss(s)
        p = {"sigma": s, "size": k}
        add(f"gaussian_dx(sigma={s:g})", "gaussian_dx", -x / (s * s) * g, p)
        add(f"gaussian_dy(sigma={s:g})", "gaussian_dy", -y / (s * s) * g, p)
        add(f"log(sigma={s:g})", "log", (x**2 + y**2 - 2 * s * s) / s**4 * g, p)
        add(f"gaussian(sigma={s:g})", "gaussian", g, p)
        s2 = round(1.6 * s, 3)
        add(f"dog(sigma={s:g})", "dog", g - gauss(s2), {"sigma1": s, "sigma2": s2, "size": k})
    steps = {
        "sobel_x": np.sign(x),
        "sobel_y": np.sign(y),
        "kirsch_ne": np.sign(x - y) * (x != y),
        "kirsch_nw": np.sign(x + y) * (x != -y),
    }
    for name, w in steps.items():
        add(f"step_{name.split('_')[1]}", name, w, {"size": k})
    sigma_g = max(k / 4, 0.75)
    env = np.exp(-(x**2 + y**2) / (2 * sigma_g**2))
    for f in gabor_frequencies(k):
        for angle in GABOR_ANGLES:
            t = np.deg2rad(angle)
            xr = x * np.cos(t) + y * np.sin(t)
            for phase in GABOR_PHASES:
                p = {"angle": angle, "frequency": f, "phase": phase, "sigma": sigma_g, "size": k}
                w = env * np.cos(2 * np.pi * f * xr + np.deg2rad(phase))
                add(f"gabor(angle={angle:g},f={f:g},phase={phase:g})", "gabor", w, p)
    return tuple(entries)


def matching_bank(k: int) -> list[BankEntry]:
    """The bank at size ``k x k`` (empty for k == 1; Roberts at k == 2; sampled families at even
    ``k >= 4``)."""
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

"""Best-fit Gabor for small kernels, by grid search with a closed-form phase and amplitude.

For each (angle, frequency, sigma) on a grid the model ``a * even + b * odd + c`` (even/odd = the
cosine/sine Gabor of that angle, frequency and sigma; c = a constant) is linear in ``(a, b, c)``, so the
least-squares fit is a projection onto a 3-D subspace. Its explained variance is
``|Q^T w|^2`` for an orthonormal basis ``Q``; the grid point with the highest R^2 wins, and the phase is
``atan2(-b, a)`` (since ``cos(x + phi) = cos(phi) cos x - sin(phi) sin x``).

``R^2 = 1 - SS_res / SS_tot`` with ``SS_tot = sum((w - mean w)^2)``.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens.analysis.result.layer import GaborFit

ANGLES = tuple(float(a) for a in np.arange(0.0, 180.0, 11.25))


def _grid(k: int) -> list[tuple[float, float, float]]:
    freqs = np.linspace(max(0.5 / k, 0.05), 0.45, 6)
    sigmas = sorted({round(k / 6, 3), round(k / 4, 3), round(k / 3, 3)})
    return [(a, float(f), s) for a in ANGLES for f in freqs for s in sigmas]


def _raw_basis(k: int, angle: float, f: float, sigma: float) -> NDArray[np.float64]:
    """Columns: the even (cosine) and odd (sine) Gabor of these parameters, and a constant."""
    r = k // 2
    y, x = np.meshgrid(np.arange(k) - r, np.arange(k) - r, indexing="ij")
    t = math.radians(angle)
    xr = x * math.cos(t) + y * math.sin(t)
    yr = -x * math.sin(t) + y * math.cos(t)
    env = np.exp(-0.5 * (xr**2 + yr**2) / sigma**2)
    even = (env * np.cos(2 * np.pi * f * xr)).ravel()
    odd = (env * np.sin(2 * np.pi * f * xr)).ravel()
    return np.stack([even, odd, np.ones(k * k)], axis=1)


@lru_cache(maxsize=8)
def _bases(k: int) -> tuple[NDArray[np.float64], tuple[tuple[float, float, float], ...]]:
    """Orthonormal bases ``(J, n, 3)`` and the raw (even, odd, const) coordinates transform
    (cached: the array is read-only and the grid a tuple)."""
    grid = tuple(_grid(k))
    qs = []
    for angle, f, sigma in grid:
        q, _ = np.linalg.qr(_raw_basis(k, angle, f, sigma))
        qs.append(q)
    bases = np.stack(qs)
    bases.setflags(write=False)
    return bases, grid


def fit_gabor(kernels: NDArray[Any]) -> list[GaborFit]:
    """Best-fit Gabor for each ``(k, k)`` kernel in ``kernels`` ``(K, k, k)`` (odd k >= 3)."""
    w = np.asarray(kernels, dtype=np.float64)
    k = w.shape[-1]
    flat = w.reshape(len(w), -1)
    qs, grid = _bases(k)
    proj = np.einsum("kn,jnc->kjc", flat, qs)  # (K, J, 3)
    explained = (proj**2).sum(axis=2)
    total = (flat**2).sum(axis=1)
    centred = ((flat - flat.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    best = explained.argmax(axis=1)
    out = []
    for i, j in enumerate(best):
        angle, f, sigma = grid[j]
        ss_res = max(total[i] - explained[i, j], 0.0)
        r2 = 1.0 - ss_res / centred[i] if centred[i] > 0 else 0.0
        basis = _raw_basis(k, angle, f, sigma)  # phase from the raw even/odd coefficients
        coef, *_ = np.linalg.lstsq(basis, flat[i], rcond=None)
        phase = math.degrees(math.atan2(-coef[1], coef[0]))
        out.append(
            GaborFit(angle, round(f, 4), round(phase, 2), sigma, float(np.clip(r2, 0.0, 1.0)))
        )
    return out

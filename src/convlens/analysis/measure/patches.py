"""The input's own correlation structure, and how much of it the first layer's kernels carry.

The seed asks whether a conv layer "learns the correlation between its input signals". For the first
layer those signals are the pixels of a ``C x k x k`` patch, and their correlation is the patch
covariance. This module measures it directly (torch-free):

1. ``N_PATCHES`` patches of ``C x k x k`` sampled uniformly (image, row, column) from the training
   images with a stated seed; each patch's per-channel mean removed (the bank statistic ignores DC
   too). PCA (``sklearn.decomposition.PCA``) of the ``d = C k^2`` dimensional patches.
2. For every learned output unit ``v`` (DC removed per channel):
   - **subspace energy**: ``|P_m v|^2 / |v|^2``, the fraction of its energy inside the top-``m``
     principal subspace, ``m = ceil(d / 5)`` (the top fifth of the dimensions);
   - **ZCA similarity**: ``max_j |cos(v, z_j)|`` over the rows ``z_j`` of the ZCA whitening matrix
     ``U diag(1 / sqrt(lambda + eps)) U^T`` (``eps = 0.01 x`` mean eigenvalue), each row the
     whitening filter of one pixel (Chowers & Weiss 2023: first layers drift towards these).
3. For the layer: the **principal angles** (``scipy.linalg.subspace_angles``) between the span of its
   units and the top-``m`` components, summarised by the mean ``cos^2`` (1: the layer spans the top
   components; a random layer of ``O`` units in ``d`` dimensions gets about ``O / d``).

Each figure against the two nulls of :mod:`convlens.analysis.measure.matching`: i.i.d. uniform kernels
(PyTorch's init) and kernels with the layer's own mean power spectrum; a unit is above a null when it
exceeds the null's 95th percentile (chance 5%); the layer figure against ``N_LAYER_NULL`` random
layers of the same size.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens.analysis.evidence.stats import wilson
from convlens.analysis.measure.matching import random_kernels, spectrum_kernels

N_PATCHES = 20_000
N_LAYER_NULL = 200
ZCA_EPS = 0.01
ABOVE = 95.0


def sample_patches(images: NDArray[Any], k: int, n: int, seed: int) -> NDArray[np.float64]:
    """``n`` random ``C x k x k`` patches of ``images (N, C, H, W)``, per-channel mean removed,
    flattened ``(n, C k^2)`` (uniform over image, row and column; ``numpy.random.default_rng(seed)``)."""
    x = np.asarray(images, dtype=np.float64)
    if x.ndim != 4 or x.shape[2] < k or x.shape[3] < k:
        raise ValueError(f"images {x.shape} cannot give {k}x{k} patches")
    rng = np.random.default_rng(seed)
    i = rng.integers(0, x.shape[0], n)
    r = rng.integers(0, x.shape[2] - k + 1, n)
    c = rng.integers(0, x.shape[3] - k + 1, n)
    offs = np.arange(k)
    rows = (r[:, None] + offs)[:, :, None]
    cols = (c[:, None] + offs)[:, None, :]
    p = x[
        i[:, None, None, None],
        np.arange(x.shape[1])[None, :, None, None],
        rows[:, None],
        cols[:, None],
    ]
    return _dc_removed(p.reshape(n, x.shape[1], k * k)).reshape(n, -1)


def _dc_removed(v: NDArray[Any]) -> NDArray[np.float64]:
    """Per-channel mean removed from ``(n, C, k*k)``."""
    a = np.asarray(v, dtype=np.float64)
    return np.asarray(a - a.mean(axis=2, keepdims=True), dtype=np.float64)


class PatchBasis:
    """PCA and ZCA of a patch sample: what the per-unit and per-layer figures are measured against."""

    def __init__(self, patches: NDArray[Any], channels: int, m: int | None = None) -> None:
        from sklearn.decomposition import PCA

        self.d = patches.shape[1]
        self.channels = channels
        self.m = m if m is not None else max(1, math.ceil(self.d / 5))
        pca = PCA(n_components=self.d, svd_solver="full").fit(patches)
        self.components = np.asarray(pca.components_, dtype=np.float64)  # (d, d) rows
        self.eigenvalues = np.asarray(pca.explained_variance_, dtype=np.float64)
        self.explained_top_m = float(pca.explained_variance_ratio_[: self.m].sum())
        eps = ZCA_EPS * float(self.eigenvalues.mean())
        u = self.components.T
        zca = (u / np.sqrt(self.eigenvalues + eps)) @ u.T
        self.zca = _unit_rows(_dc_removed(zca.reshape(self.d, channels, -1)).reshape(self.d, -1))

    @property
    def top(self) -> NDArray[np.float64]:
        return self.components[: self.m]

    def energy(self, units: NDArray[Any]) -> NDArray[np.float64]:
        """Fraction of each unit's (DC-removed) energy inside the top-``m`` principal subspace."""
        v = self._prep(units)
        total = np.einsum("ij,ij->i", v, v)
        proj = v @ self.top.T
        inside = np.einsum("ij,ij->i", proj, proj)
        return np.asarray(np.where(total > 0, inside / np.where(total > 0, total, 1), 0.0))

    def zca_similarity(self, units: NDArray[Any]) -> NDArray[np.float64]:
        """``max_j |cos(unit, zca_j)|`` over the ZCA whitening filters."""
        v = _unit_rows(self._prep(units))
        return np.asarray(np.abs(v @ self.zca.T).max(axis=1), dtype=np.float64)

    def angles_cos2(self, units: NDArray[Any]) -> float | None:
        """Mean ``cos^2`` of the principal angles between the units' span and the top components."""
        from scipy.linalg import subspace_angles

        v = self._prep(units)
        v = v[np.linalg.norm(v, axis=1) > 0]
        if not len(v):
            return None
        return float(np.mean(np.cos(subspace_angles(v.T, self.top.T)) ** 2))

    def _prep(self, units: NDArray[Any]) -> NDArray[np.float64]:
        u = np.asarray(units, dtype=np.float64).reshape(len(units), self.channels, -1)
        return _dc_removed(u).reshape(len(units), -1)


def _unit_rows(v: NDArray[Any]) -> NDArray[np.float64]:
    n = np.linalg.norm(v, axis=1, keepdims=True)
    return np.asarray(v / np.where(n > 0, n, 1.0), dtype=np.float64)


def null_units(kind: str, weight: NDArray[Any], n: int, seed: int) -> NDArray[np.float64]:
    """``n`` null units shaped like ``weight``'s ``(C, k, k)``: ``"random"`` i.i.d. uniform
    (the random null's draw) or ``"spectrum"`` (the layer's mean power spectrum per slice)."""
    _, c, k, _ = weight.shape
    if kind == "random":
        flat = random_kernels(k, n * c, seed)
    else:
        flat = spectrum_kernels(np.asarray(weight).reshape(-1, k, k), n * c, seed)
    return flat.reshape(n, c, k, k)


def layer_figures(
    basis: PatchBasis,
    weight: NDArray[Any],
    live: NDArray[np.bool_] | None,
    *,
    n_null: int,
    seed: int,
) -> dict[str, float | None]:
    """The figures of one first-layer weight ``(O, C, k, k)`` (live units only) against both nulls."""
    w = np.asarray(weight, dtype=np.float64)
    units = w if live is None else w[live]
    out: dict[str, float | None] = {"n_units": float(len(units))}
    if not len(units):
        return out
    energy, zca = basis.energy(units), basis.zca_similarity(units)
    out["energy_median"] = float(np.median(energy))
    out["zca_median"] = float(np.median(zca))
    out["angles_mean_cos2"] = basis.angles_cos2(units)
    for kind in ("random", "spectrum"):
        null = null_units(kind, units, n_null, seed)
        for name, mine, theirs in (
            ("energy", energy, basis.energy(null)),
            ("zca", zca, basis.zca_similarity(null)),
        ):
            p95 = float(np.percentile(theirs, ABOVE))
            x = int((mine > p95).sum())
            lo, hi = wilson(x, len(mine))
            out[f"{name}_{kind}_null_p95"] = p95
            out[f"{name}_above_{kind}_null95"] = x / len(mine)
            out[f"{name}_above_{kind}_null95_ci_low"] = lo
            out[f"{name}_above_{kind}_null95_ci_high"] = hi
        rows = null[: (len(null) // len(units)) * len(units)].reshape(
            -1, len(units), *units.shape[1:]
        )
        layers = [basis.angles_cos2(r) for r in rows[:N_LAYER_NULL]]
        vals = [v for v in layers if v is not None]
        out[f"angles_{kind}_null_p95"] = float(np.percentile(vals, ABOVE)) if vals else None
    return out

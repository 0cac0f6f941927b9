"""The input's own correlation structure, and how much of it the first layer's kernels carry.

The seed asks whether a conv layer "learns the correlation between its input signals". For the first
layer those signals are the pixels of a ``C x k x k`` patch, and their correlation is the patch
covariance. This module measures it directly (torch-free):

1. ``N_PATCHES`` patches of ``C x k x k`` sampled uniformly (image, row, column) from the training
   images with a stated seed; each patch's per-channel mean removed (the bank statistic ignores DC
   too). PCA (``sklearn.decomposition.PCA``) of the ``d = C k^2`` dimensional patches.
2. For every learned output unit ``v`` (DC removed per channel), the **subspace energy**
   ``|P_m v|^2 / |v|^2``: the fraction of its energy inside the top-``m`` principal subspace,
   ``m = ceil(d / 5)`` (the top fifth of the dimensions).
3. For the layer: the **principal angles** (``scipy.linalg.subspace_angles``) between the span of its
   units and the top-``m`` components, summarised by the mean ``cos^2`` (1: the layer spans the top
   components; a random layer of ``O`` units in ``d`` dimensions gets about ``O / d``).
4. **Whitening**, tested invariantly to rotations of the units (whitening is defined only up to one:
   every ``R Lambda^-1/2 U^T`` whitens, so no fixed whitening matrix, ZCA included, can be the
   yardstick). For the layer ``W`` (``O x d``, DC removed):

   - **energy vs eigenvalue**: ``e_j = |W u_j|^2 / |W|_F^2`` along each principal component
     ``u_j``; the least-squares slope of ``log e_j`` on ``log lambda_j`` over the components with
     ``lambda_j > EIGEN_CUTOFF x lambda_max`` (energies floored at ``ENERGY_FLOOR``). A whitening
     layer amplifies each direction by ``1 / sqrt(lambda_j)``: slope -1. A layer that follows the
     input's principal directions puts its energy where the variance is: slope > 0;
   - **filter power vs input spectrum**: the log-log slope of the units' mean power spectrum
     (per-channel DC removed, zero-padded to ``SPECTRUM_PAD x k``) on the patches' mean power
     spectrum ``S(f)`` (from the patch covariance), over the non-DC frequencies with
     ``S(f) > EIGEN_CUTOFF x max S``: whitening -1 (an approximation for finite kernels), a matched
     filter +1.

   Both depend on ``W^T W`` only. The null: ``n_null`` random layers of the same shape (i.i.d.
   uniform, PyTorch's init distribution; seeded), summarised by their 2.5th and 97.5th percentiles;
   the interval: a percentile bootstrap over units (``N_BOOT`` resamples). The verdict (``RULE``):
   "whitening-like" only when the interval lies below the null interval and below 0, "follows the
   input's principal directions" when above it and above 0, else "neither".

The subspace figures are compared with the two nulls of :mod:`convlens.analysis.measure.matching`:
i.i.d. uniform kernels (PyTorch's init) and kernels with the layer's own mean power spectrum; a unit is
above a null when it exceeds the null's 95th percentile (chance 5%); the layer figure against
``N_LAYER_NULL`` random layers of the same size.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens.analysis.evidence.stats import wilson
from convlens.analysis.measure.matching import random_kernels, spectrum_kernels
from convlens.analysis.result import Whitening, WhiteningTest

N_PATCHES = 20_000
N_LAYER_NULL = 200
ABOVE = 95.0
EIGEN_CUTOFF = 1e-6
ENERGY_FLOOR = 1e-12
SPECTRUM_PAD = 2
N_BOOT = 1000
WHITENING = "whitening-like"
PRINCIPAL = "follows the input's principal directions"
NEITHER = "neither"
RULE = (
    f'"{WHITENING}" when the slope\'s 95% bootstrap interval (units resampled after a random '
    "rotation) lies below the random-layer null's 2.5-97.5 percentile interval and below 0; "
    f'"{PRINCIPAL}" when it lies above the null interval and above 0; else "{NEITHER}" (a '
    "whitening layer: slope -1)"
)


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
    """PCA of a patch sample: what the per-unit and per-layer figures are measured against."""

    def __init__(self, patches: NDArray[Any], channels: int, m: int | None = None) -> None:
        from sklearn.decomposition import PCA

        self.d = patches.shape[1]
        self.channels = channels
        self.m = m if m is not None else max(1, math.ceil(self.d / 5))
        pca = PCA(n_components=self.d, svd_solver="full").fit(patches)
        self.components = np.asarray(pca.components_, dtype=np.float64)  # (d, d) rows
        self.eigenvalues = np.asarray(pca.explained_variance_, dtype=np.float64)
        self.explained_top_m = float(pca.explained_variance_ratio_[: self.m].sum())
        self.k = math.isqrt(self.d // channels)
        lam = self.eigenvalues
        self.kept = lam > EIGEN_CUTOFF * float(lam.max()) if len(lam) and lam.max() > 0 else lam > 0
        self.log_eigenvalues = np.log(lam[self.kept])
        # S(f) = mean over patches of |F p|^2 = sum_j lambda_j |F u_j|^2 (mean over channels)
        spectrum = (lam[:, None] * self.unit_spectra(self.components, dc=False)).sum(axis=0)
        mask = (
            spectrum > EIGEN_CUTOFF * float(spectrum.max()) if spectrum.max() > 0 else spectrum > 0
        )
        mask[0] = False  # the DC bin: zero after DC removal
        self.spectrum_bins = mask
        self.log_spectrum = np.log(spectrum[mask])
        self._nulls: dict[
            tuple[int, int, int], tuple[NDArray[np.float64], NDArray[np.float64]]
        ] = {}

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

    def unit_energies(self, units: NDArray[Any]) -> tuple[NDArray[Any], NDArray[Any]]:
        """``((w_i . u_j)^2`` over units ``i`` and kept components ``j``, ``|w_i|^2``) of the
        DC-removed units: the parts of ``e_j`` that a bootstrap over units resamples."""
        v = self._prep(units)
        proj = v @ self.components[self.kept].T
        return proj**2, np.einsum("ij,ij->i", v, v)

    def unit_spectra(self, units: NDArray[Any], dc: bool = True) -> NDArray[np.float64]:
        """Each unit's power spectrum ``|F w|^2`` (zero-padded to ``SPECTRUM_PAD x k`` per side,
        mean over channels, per-channel DC removed unless ``dc=False``), flattened ``(O, P^2)``."""
        power = np.abs(self.unit_transforms(units, dc)) ** 2
        return np.asarray(power.mean(axis=1), dtype=np.float64)

    def unit_transforms(self, units: NDArray[Any], dc: bool = True) -> NDArray[np.complex128]:
        """Each unit's zero-padded 2-D DFT per channel, flattened ``(O, C, P^2)`` (linear in the
        units: the DFT of a rotated layer is the rotated DFT)."""
        v = self._prep(units) if dc else np.asarray(units, dtype=np.float64)
        k, p = self.k, SPECTRUM_PAD * self.k
        x = v.reshape(len(v), self.channels, k, k)
        return np.fft.fft2(x, s=(p, p)).reshape(len(v), self.channels, p * p)

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
    energy = basis.energy(units)
    out["energy_median"] = float(np.median(energy))
    out["angles_mean_cos2"] = basis.angles_cos2(units)
    for kind in ("random", "spectrum"):
        null = null_units(kind, units, n_null, seed)
        for name, mine, theirs in (("energy", energy, basis.energy(null)),):
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


# ----------------------------------------------------------------------------- whitening
def _slopes(x: NDArray[Any], y: NDArray[Any]) -> NDArray[np.float64]:
    """Least-squares slope of ``log max(y, ENERGY_FLOOR)`` on ``x`` for every row of ``y``."""
    ly = np.log(np.maximum(np.asarray(y, dtype=np.float64), ENERGY_FLOOR))
    xc = x - x.mean()
    den = float(xc @ xc)
    if den <= 0:
        return np.full(len(ly), np.nan)
    return np.asarray((ly - ly.mean(axis=1, keepdims=True)) @ xc / den, dtype=np.float64)


def _layer_slopes(
    basis: PatchBasis, energies: NDArray[Any], norms: NDArray[Any], power: NDArray[Any]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Energy and spectrum slopes of layers given as summed unit parts: ``energies (L, n_kept)``,
    ``norms (L,)`` (``|W|_F^2``) and ``power (L, P^2)``."""
    total = np.where(norms > 0, norms, 1.0)[:, None]
    e = _slopes(basis.log_eigenvalues, energies / total)
    s = _slopes(basis.log_spectrum, power[:, basis.spectrum_bins] / total)
    return e, s


def layer_slopes(basis: PatchBasis, units: NDArray[Any]) -> tuple[float, float]:
    """``(energy slope, spectrum slope)`` of one layer ``(O, C, k, k)`` (or ``(O, d)``)."""
    a, n = basis.unit_energies(units)
    p = basis.unit_spectra(units)
    e, s = _layer_slopes(basis, a.sum(axis=0)[None], np.array([n.sum()]), p.sum(axis=0)[None])
    return float(e[0]), float(s[0])


def null_slopes(
    basis: PatchBasis, n_units: int, n_null: int, seed: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Energy and spectrum slopes of ``n_null`` random layers of ``n_units`` units: i.i.d. uniform
    kernels (PyTorch's init distribution, :func:`convlens.analysis.measure.matching.random_kernels`
    with ``seed``). Cached on ``basis`` per ``(n_units, n_null, seed)``."""
    key = (n_units, n_null, seed)
    if key not in basis._nulls:
        c, k = basis.channels, basis.k
        es, ss = [], []
        chunk = max(1, 20_000 // max(1, n_units * c))
        draw = random_kernels(k, n_null * n_units * c, seed).reshape(n_null, n_units, c * k * k)
        for s0 in range(0, n_null, chunk):
            part = draw[s0 : s0 + chunk]
            flat = part.reshape(-1, c * k * k)
            a, n = basis.unit_energies(flat)
            p = basis.unit_spectra(flat)
            sh = (len(part), n_units)
            e, s = _layer_slopes(
                basis,
                a.reshape(*sh, -1).sum(axis=1),
                n.reshape(sh).sum(axis=1),
                p.reshape(*sh, -1).sum(axis=1),
            )
            es.append(e)
            ss.append(s)
        basis._nulls[key] = (np.concatenate(es), np.concatenate(ss))
    return basis._nulls[key]


def verdict(ci: tuple[float | None, float | None], null: tuple[float | None, float | None]) -> str:
    """:data:`RULE` on a slope's interval ``ci`` and the null's 2.5-97.5 percentile interval."""
    lo, hi = ci
    nlo, nhi = null
    if lo is None or hi is None or nlo is None or nhi is None:
        return NEITHER
    if hi < nlo and hi < 0:
        return WHITENING
    if lo > nhi and lo > 0:
        return PRINCIPAL
    return NEITHER


def _interval(v: NDArray[Any], low: float, high: float) -> tuple[float | None, float | None]:
    v = np.asarray(v, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        return (None, None)
    return float(np.percentile(v, low)), float(np.percentile(v, high))


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _haar(rng: np.random.Generator, n: int, o: int) -> NDArray[np.float64]:
    """``n`` random orthogonal ``o x o`` matrices, uniform (Haar) on the orthogonal group."""
    q, r = np.linalg.qr(rng.standard_normal((n, o, o)))
    signs = np.sign(np.diagonal(r, axis1=1, axis2=2))
    return np.asarray(q * np.where(signs == 0, 1.0, signs)[:, None, :], dtype=np.float64)


def _bootstrap_slopes(
    basis: PatchBasis, units: NDArray[Any], n_boot: int, seed: int, chunk: int = 50
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Both slopes of ``n_boot`` resampled layers: each resample first rotates the units by a fresh
    random orthogonal matrix, then draws as many units with replacement. A plain resampling of units
    is not rotation-invariant: a PCA-whitening layer, whose units are single components, loses whole
    components in most resamples (their energy falls to the floor) and gets an interval of several
    units of slope; rotated first, it gets the interval of a ZCA layer, and ``W`` and ``R W`` have
    the same distribution of resamples."""
    rng = np.random.default_rng(seed)
    o = len(units)
    proj = basis._prep(units) @ basis.components[basis.kept].T  # (O, n_kept), linear in the units
    flat = basis._prep(units)  # (O, d)
    spec = basis.unit_transforms(units)  # (O, C, P^2), linear in the units
    es, ss = [], []
    for s0 in range(0, n_boot, chunk):
        b = min(chunk, n_boot - s0)
        rot = _haar(rng, b, o)
        counts = np.zeros((b, o))
        np.add.at(counts, (np.arange(b)[:, None], rng.integers(0, o, (b, o))), 1.0)
        energies = np.einsum("bi,bij->bj", counts, (rot @ proj) ** 2)
        norms = np.einsum("bi,bi->b", counts, ((rot @ flat) ** 2).sum(axis=2))
        turned = np.einsum("bio,ocf->bicf", rot, spec)
        power = np.einsum("bi,bif->bf", counts, (np.abs(turned) ** 2).mean(axis=2))
        e, s = _layer_slopes(basis, energies, norms, power)
        es.append(e)
        ss.append(s)
    return np.concatenate(es), np.concatenate(ss)


def whitening_test(
    basis: PatchBasis,
    weight: NDArray[Any],
    live: NDArray[np.bool_] | None = None,
    *,
    n_null: int,
    seed: int,
    n_boot: int = N_BOOT,
) -> WhiteningTest:
    """Both rotation-invariant whitening slopes of one first-layer weight ``(O, C, k, k)`` (live
    units only), with the bootstrap interval over units (:func:`_bootstrap_slopes`), the
    random-layer null and the verdict."""
    w = np.asarray(weight, dtype=np.float64)
    units = w if live is None else w[live]
    if not len(units):
        none: tuple[float | None, float | None] = (None, None)
        return WhiteningTest(0, None, none, none, NEITHER, None, none, none, NEITHER)
    units = units.reshape(len(units), -1)
    e0, s0 = layer_slopes(basis, units)
    eb, sb = _bootstrap_slopes(basis, units, n_boot, seed + 104_729)
    ne, ns = null_slopes(basis, len(units), n_null, seed)
    e_ci, s_ci = _interval(eb, 2.5, 97.5), _interval(sb, 2.5, 97.5)
    e_null, s_null = _interval(ne, 2.5, 97.5), _interval(ns, 2.5, 97.5)
    return WhiteningTest(
        n_units=len(units),
        energy_slope=_finite(e0),
        energy_slope_ci=e_ci,
        energy_null=e_null,
        energy_verdict=verdict(e_ci, e_null),
        spectrum_slope=_finite(s0),
        spectrum_slope_ci=s_ci,
        spectrum_null=s_null,
        spectrum_verdict=verdict(s_ci, s_null),
    )


def reference_layers(basis: PatchBasis, n_units: int) -> dict[str, NDArray[np.float64]]:
    """The reference layers (rows over the kept components ``u_j``): PCA whitening
    ``Lambda^-1/2 U^T``, the covariance square root ``Lambda^1/2 U^T`` and the top ``n_units``
    principal components."""
    u = basis.components[basis.kept]
    lam = basis.eigenvalues[basis.kept]
    return {
        "pca_whitening": u / np.sqrt(lam)[:, None],
        "covariance": u * np.sqrt(lam)[:, None],
        "top_components": u[: max(1, min(n_units, len(u)))],
    }


def whitening_summary(
    basis: PatchBasis,
    sets: dict[str, tuple[NDArray[Any], NDArray[np.bool_] | None]],
    *,
    n_null: int,
    seed: int,
    n_boot: int = N_BOOT,
) -> Whitening:
    """The tests of every kernel set (``name -> (weight, live mask)``) and the reference slopes; the
    top-components reference has as many units as the first set's live units."""
    tests = {
        name: whitening_test(basis, w, live, n_null=n_null, seed=seed, n_boot=n_boot)
        for name, (w, live) in sets.items()
    }
    first = next(iter(tests.values()), None)
    n_ref = first.n_units if first is not None and first.n_units else 1
    refs = {name: layer_slopes(basis, w) for name, w in reference_layers(basis, n_ref).items()}
    return Whitening(
        rule=RULE,
        n_components=int(basis.kept.sum()),
        n_null=n_null,
        n_boot=n_boot,
        seed=seed,
        energy_floor=ENERGY_FLOOR,
        spectrum_pad=SPECTRUM_PAD,
        reference_units=n_ref,
        reference_energy={k: _finite(v[0]) for k, v in refs.items()},
        reference_spectrum={k: _finite(v[1]) for k, v in refs.items()},
        sets=tests,
    )


def whitening_figures(t: WhiteningTest) -> dict[str, float | None]:
    """The flat figures of one set's test (``Control.figures`` / ``layers``)."""
    return {
        "whitening_slope": t.energy_slope,
        "whitening_slope_ci_low": t.energy_slope_ci[0],
        "whitening_slope_ci_high": t.energy_slope_ci[1],
        "whitening_null_low": t.energy_null[0],
        "whitening_null_high": t.energy_null[1],
        "spectrum_slope": t.spectrum_slope,
        "spectrum_slope_ci_low": t.spectrum_slope_ci[0],
        "spectrum_slope_ci_high": t.spectrum_slope_ci[1],
        "spectrum_null_low": t.spectrum_null[0],
        "spectrum_null_high": t.spectrum_null[1],
    }


# ----------------------------------------------------------------------------- calibration
def planted_layer(
    basis: PatchBasis, kind: str, n_units: int, rng: np.random.Generator, noise: float = 0.0
) -> NDArray[np.float64]:
    """A planted layer of ``n_units`` units ``(O, d)``: ``"whitening"`` (rows of ``Q Lambda^-1/2
    U^T`` for a random orthogonal ``Q``: a rotated PCA-whitening layer), ``"zca"`` (the ZCA
    whitening filters ``U Lambda^-1/2 U^T`` of ``n_units`` random pixels), ``"principal"`` (rows of
    ``Q Lambda^1/2 U^T``: energy follows the variance) or ``"random"`` (i.i.d. uniform). ``noise``:
    i.i.d. uniform noise added at that fraction of the layer's Frobenius norm."""
    ref = reference_layers(basis, n_units)
    n = int(basis.kept.sum())
    if kind == "random":
        w = rng.uniform(-1.0, 1.0, (n_units, basis.d))
    elif kind == "zca":
        u = basis.components[basis.kept]
        zca = u.T @ ref["pca_whitening"]
        w = zca[rng.choice(basis.d, size=n_units, replace=n_units > basis.d)]
    else:
        q, _ = np.linalg.qr(rng.standard_normal((n, n)))
        base = ref["pca_whitening" if kind == "whitening" else "covariance"]
        w = (q @ base)[np.arange(n_units) % n]
    if noise > 0:
        z = rng.uniform(-1.0, 1.0, w.shape)
        w = w + noise * np.linalg.norm(w) / np.linalg.norm(z) * z
    return np.asarray(w, dtype=np.float64)


def calibrate(
    basis: PatchBasis,
    *,
    n_units: int = 8,
    n_random: int = 200,
    n_planted: int = 100,
    noise: tuple[float, ...] = (0.0, 0.5, 1.0),
    n_null: int = 2000,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """How often each verdict of both tests comes out on random layers (the false-positive rate of
    "whitening-like" and of "follows ...") and on planted whitening, ZCA and principal layers (the
    power), ``n_units`` units each; one row per case with counts, Wilson intervals and the median
    slope. The random-layer null of every test is the same seeded draw (``seed``); the layers tested
    come from ``seed + 1``."""
    rng = np.random.default_rng(seed + 1)
    cases = [("random", 0.0, n_random)]
    cases += [(k, z, n_planted) for k in ("whitening", "zca", "principal") for z in noise]
    rows = []
    for kind, z, n in cases:
        tests = [
            whitening_test(
                basis,
                planted_layer(basis, kind, n_units, rng, z),
                n_null=n_null,
                seed=seed,
                n_boot=n_boot,
            )
            for _ in range(n)
        ]
        row: dict[str, Any] = {"layer": kind, "noise": z, "n": n}
        for test in ("energy", "spectrum"):
            verdicts = [getattr(t, f"{test}_verdict") for t in tests]
            slopes = [getattr(t, f"{test}_slope") for t in tests]
            for name, v in (("whitening", WHITENING), ("principal", PRINCIPAL)):
                x = sum(1 for u in verdicts if u == v)
                row[f"{test}_{name}"] = x
                row[f"{test}_{name}_ci"] = wilson(x, n)
            row[f"{test}_median_slope"] = float(np.median([s for s in slopes if s is not None]))
        rows.append(row)
    return rows

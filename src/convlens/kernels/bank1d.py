"""A 1-D matching bank: classical 1-D kernels (signals, audio) of one length ``K`` (pure NumPy).

``matching_bank_1d(K)`` returns, for a kernel length ``K >= 3``:

- ``"derivative/smoothing"``: sampled Gaussian derivatives of order 0, 1 and 2 at widths
  ``sigma = K/8, K/6, K/4`` (at least 0.5), centred;
- ``"Fourier/Gabor"``: periodic-Hann-windowed cosines and sines at the DFT frequencies ``j/K``
  (``j = 0 .. K//2``; the window is ``0.5 - 0.5 cos(2 pi n / K)``, ``torch.hann_window``'s default, so
  the first layer of a Hann-windowed Fourier front end matches at ``|cos| = 1``), and Gaussian-windowed
  Gabor atoms (``sigma = K/4``) at three frequencies from ``1/K`` to 0.4 cycles/sample, two phases;
- ``"windowed-sinc"``: Hann-windowed sinc low-pass filters (the window method of FIR design, as
  ``scipy.signal.firwin(K, 2 fc, window="hann")``) at cutoffs ``fc = 0.05, 0.1, ... 0.45``
  cycles/sample, and for odd ``K`` the matching high-pass filters (spectral inversion: the centre
  impulse minus the low-pass); ``K >= 8`` only (shorter, they are boxes and differences);
- ``"box"``: centred boxes of width 3, 5, ... (< K), the differences ``[-1, 1]``, ``[-1, 0, 1]``,
  ``[1, -2, 1]`` centred, and a step (half -1, half +1).

Kernels whose DC-removed form is zero are left out, and exact duplicates (after DC removal and
normalisation, up to sign) are kept once, first family first.

>>> labels = [e.label for e in matching_bank_1d(16)]
>>> "hann_cos(f=0.125)" in labels and "gauss_d1(sigma=2)" in labels and "diff_central" in labels
True
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens.errors import ConvlensError
from convlens.kernels.bank import BankEntry, frozen_entry

MAX_LENGTH_1D = 1024
FAMILIES_1D = ("derivative/smoothing", "Fourier/Gabor", "windowed-sinc", "box")
SINC_CUTOFFS = tuple(round(0.05 * i, 2) for i in range(1, 10))
MIN_SINC_LENGTH = 8


def hann_periodic(k: int) -> NDArray[np.float64]:
    """The periodic Hann window of length ``k`` (``torch.hann_window(k)``)."""
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(k) / k)


def hann_fourier_atom(k: int, j: float, phase: str = "cos") -> NDArray[np.float64]:
    """Periodic Hann window times ``cos`` (or ``sin``) of frequency ``j / k`` cycles/sample."""
    n = np.arange(k)
    wave = np.cos if phase == "cos" else np.sin
    return hann_periodic(k) * wave(2 * np.pi * j * n / k)


def _gaussian_derivatives(k: int) -> list[tuple[str, dict[str, Any], NDArray[np.float64]]]:
    x = np.arange(k) - (k - 1) / 2
    out = []
    for sigma in sorted({round(max(k / s, 0.5), 3) for s in (8, 6, 4)}):
        g = np.exp(-(x**2) / (2 * sigma**2))
        polys = {0: np.ones_like(x), 1: -x / sigma**2, 2: (x**2 - sigma**2) / sigma**4}
        for order, poly in polys.items():
            p = {"sigma": sigma, "order": order}
            out.append((f"gauss_d{order}(sigma={sigma:g})", p, g * poly))
    return out


def _fourier(k: int) -> list[tuple[str, dict[str, Any], NDArray[np.float64]]]:
    out = []
    for j in range(k // 2 + 1):
        f = round(j / k, 4)
        for kind in ("cos", "sin"):
            p: dict[str, Any] = {"frequency": j / k, "bin": j, "phase": kind}
            out.append((f"hann_{kind}(f={f:g})", p, hann_fourier_atom(k, j, kind)))
    x = np.arange(k) - (k - 1) / 2
    env = np.exp(-(x**2) / (2 * (k / 4) ** 2))
    for f in sorted({round(float(v), 4) for v in np.linspace(1.0 / k, 0.4, 3)}):
        for phase in (0, 90):
            p = {"frequency": f, "phase": phase, "sigma": k / 4}
            wave = np.cos(2 * np.pi * f * x + np.deg2rad(phase))
            out.append((f"gabor1d(f={f:g},phase={phase})", p, env * wave))
    return out


def windowed_sinc(k: int, cutoff: float) -> NDArray[np.float64]:
    """A Hann-windowed sinc low-pass of ``k`` taps with cutoff ``cutoff`` cycles/sample, unit DC
    gain (``scipy.signal.firwin(k, 2 * cutoff, window="hann")``)."""
    n = np.arange(k) - (k - 1) / 2
    h = (
        2
        * cutoff
        * np.sinc(2 * cutoff * n)
        * (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(k) / (k - 1)))
    )
    return np.asarray(h / h.sum(), dtype=np.float64)


def _sincs(k: int) -> list[tuple[str, dict[str, Any], NDArray[np.float64]]]:
    if k < MIN_SINC_LENGTH:
        return []
    out = []
    for fc in SINC_CUTOFFS:
        low = windowed_sinc(k, fc)
        out.append((f"sinc_lowpass(fc={fc:g})", {"cutoff": fc, "kind": "low-pass"}, low))
        if k % 2:
            high = -low
            high[k // 2] += 1.0
            out.append((f"sinc_highpass(fc={fc:g})", {"cutoff": fc, "kind": "high-pass"}, high))
    return out


def _boxes(k: int) -> list[tuple[str, dict[str, Any], NDArray[np.float64]]]:
    out = []

    def centred(v: list[float]) -> NDArray[np.float64]:
        w = np.zeros(k)
        off = (k - len(v)) // 2
        w[off : off + len(v)] = v
        return w

    for width in range(3, k, 2):
        out.append((f"box(width={width})", {"width": width}, centred([1.0] * width)))
    out.append(("diff_forward", {}, centred([-1.0, 1.0])))
    out.append(("diff_central", {}, centred([-1.0, 0.0, 1.0])))
    out.append(("diff_second", {}, centred([1.0, -2.0, 1.0])))
    step = np.where(np.arange(k) < k / 2, -1.0, 1.0)
    out.append(("step", {}, step))
    return out


@lru_cache(maxsize=32)
def _bank_1d(k: int) -> tuple[BankEntry, ...]:
    cands: list[tuple[str, str, dict[str, Any], NDArray[np.float64]]] = []
    groups = zip(FAMILIES_1D, (_gaussian_derivatives, _fourier, _sincs, _boxes), strict=True)
    for family, build in groups:
        for label, params, w in build(k):
            v = w - w.mean()
            if np.linalg.norm(v) > 1e-9 * max(1.0, float(np.abs(w).max())):
                cands.append((label, family, params, np.asarray(w, dtype=np.float64)))
    m = np.stack([c[3] - c[3].mean() for c in cands])
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    dup = np.triu(np.abs(m @ m.T) > 1 - 1e-9, k=1).any(axis=0)  # same as an earlier one
    return tuple(
        frozen_entry(label, label.split("(")[0], family, params, w)
        for (label, family, params, w), d in zip(cands, dup, strict=True)
        if not d
    )


def matching_bank_1d(k: int) -> list[BankEntry]:
    """The 1-D bank at length ``k`` (``3 <= k <= MAX_LENGTH_1D``)."""
    if isinstance(k, bool | np.bool_) or not isinstance(k, int | np.integer) or k < 3:
        raise ConvlensError(f"1-D kernel length must be an integer >= 3, got {k!r}")
    if k > MAX_LENGTH_1D:
        raise ConvlensError(f"1-D kernel length must be <= {MAX_LENGTH_1D}, got {k}")
    return list(_bank_1d(int(k)))


def bank_matrix_1d(k: int) -> tuple[NDArray[np.float64], list[BankEntry]]:
    """Rows: the 1-D bank kernels, DC removed and scaled to unit norm."""
    entries = matching_bank_1d(k)
    m = np.stack([e.weights for e in entries])
    m = m - m.mean(axis=1, keepdims=True)
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    return m, entries
